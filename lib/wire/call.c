/* Decoding of call frames (call req/res and their continue frames) into
 * fields, checksum and arg chunk views. No allocation: the reassembler
 * (reasm.c) copies what must outlive the frame. */
#include "wire_internal.h"

static int is_call_type(uint8_t t) {
    return t == TCH_FRAME_CALL_REQ || t == TCH_FRAME_CALL_RES ||
           t == TCH_FRAME_CALL_REQ_CONT || t == TCH_FRAME_CALL_RES_CONT;
}

/* Whether key appears among the first n headers. */
static int has_key(const tch_call_fields *f, size_t n, tch_slice key) {
    for (size_t i = 0; i < n; i++)
        if (tch_slice_eq(f->headers[i].key, key))
            return 1;
    return 0;
}

/* nh:1 (hk~1 hv~1){nh}. As the Node peer reads them: at most 128, no
 * empty key, no key twice (a peer that accepted these would hide the
 * caller's bug from it). */
static int read_headers(tch_rd *r, tch_call_fields *f) {
    uint8_t nh;
    size_t at = r->off;
    int rc = tch_rd_u8(r, "header count", &nh);
    if (rc)
        return rc;
    if (nh > TCH_CALL_HEADERS_ALLOWED)
        return tch_error_set(r->err, TCH_EPROTO,
                             "%s: %u transport headers at offset %zu; the "
                             "protocol allows at most %d",
                             r->what, nh, at, TCH_CALL_HEADERS_ALLOWED);
    for (size_t i = 0; i < nh; i++) {
        at = r->off;
        rc = tch_rd_str(r, 1, "header key", &f->headers[i].key);
        if (!rc)
            rc = tch_rd_str(r, 1, "header value", &f->headers[i].value);
        if (rc)
            return rc;
        tch_slice k = f->headers[i].key;
        if (k.len == 0)
            return tch_error_set(r->err, TCH_EPROTO,
                                 "%s: transport header %zu at offset %zu has "
                                 "an empty key",
                                 r->what, i, at);
        if (has_key(f, i, k))
            return tch_error_set(r->err, TCH_EPROTO,
                                 "%s: duplicate transport header key \"%.*s\" "
                                 "at offset %zu",
                                 r->what, (int)k.len, (const char *)k.ptr, at);
    }
    f->nheaders = nh;
    return 0;
}

/* csumtype:1 (csum:4){0,1}; unknown types are rejected because the csum's
 * width (and so every later offset) would be unknown. */
static int read_csum(tch_rd *r, tch_call_frame *out) {
    size_t at = r->off;
    int rc = tch_rd_u8(r, "checksum type", &out->f.csum_type);
    if (rc)
        return rc;
    int width = tch_checksum_size(out->f.csum_type);
    if (width < 0)
        return tch_error_set(r->err, TCH_EPROTO,
                             "%s: unknown checksum type 0x%02x at offset %zu",
                             r->what, out->f.csum_type, at);
    out->csum = 0;
    if (width)
        rc = tch_rd_u32(r, "checksum", &out->csum);
    return rc;
}

/* (arg~2)* up to the end of the payload. A frame carries at most 3 chunks
 * (one per arg); more can never be valid. */
static int read_chunks(tch_rd *r, int first, tch_call_frame *out) {
    static const char *const arg_names[] = {"arg1", "arg2", "arg3"};
    static const char *const chunk_names[] = {"chunk 1", "chunk 2", "chunk 3"};
    out->nchunks = 0;
    while (tch_rd_left(r) > 0) {
        if (out->nchunks == 3)
            return tch_error_set(r->err, TCH_EPROTO,
                                 "%s: more than 3 arg chunks at offset %zu",
                                 r->what, r->off);
        const char *name = (first ? arg_names : chunk_names)[out->nchunks];
        int rc = tch_rd_str(r, 2, name, &out->chunks[out->nchunks]);
        if (rc)
            return rc;
        out->nchunks++;
    }
    return 0;
}

/* flags:1 ttl:4 tracing:25 service~1 nh:1 ... */
static int read_req_fields(tch_rd *r, tch_call_fields *f) {
    int rc = tch_rd_u8(r, "flags", &f->flags);
    if (!rc)
        rc = tch_rd_u32(r, "ttl", &f->ttl_ms);
    if (!rc)
        rc = tch_rd_tracing(r, &f->tracing);
    if (!rc)
        rc = tch_rd_str(r, 1, "service", &f->service);
    if (!rc)
        rc = read_headers(r, f);
    f->code = 0;
    return rc;
}

/* flags:1 code:1 tracing:25 nh:1 ... */
static int read_res_fields(tch_rd *r, tch_call_fields *f) {
    int rc = tch_rd_u8(r, "flags", &f->flags);
    if (!rc)
        rc = tch_rd_u8(r, "code", &f->code);
    if (!rc)
        rc = tch_rd_tracing(r, &f->tracing);
    if (!rc)
        rc = read_headers(r, f);
    f->ttl_ms = 0;
    f->service = TCH_SLICE_NULL;
    return rc;
}

int tch_call_frame_decode(const tch_frame *fr, tch_call_frame *out,
                          tch_error *err) {
    if (!is_call_type(fr->type))
        return tch_error_set(err, TCH_EINVAL,
                             "call: frame type 0x%02x is not a call frame",
                             fr->type);
    tch_rd r = tch_rd_make(fr->payload, tch_frame_what(fr->type), err);
    int first = 1, rc;
    if (fr->type == TCH_FRAME_CALL_REQ) {
        rc = read_req_fields(&r, &out->f);
    } else if (fr->type == TCH_FRAME_CALL_RES) {
        rc = read_res_fields(&r, &out->f);
    } else {
        /* Continue frames carry only flags before the checksum; clear the
         * rest so nobody reads stale fields. */
        first = 0;
        memset(&out->f.tracing, 0, sizeof out->f.tracing);
        out->f.ttl_ms = 0;
        out->f.code = 0;
        out->f.service = TCH_SLICE_NULL;
        out->f.nheaders = 0;
        rc = tch_rd_u8(&r, "flags", &out->f.flags);
    }
    if (!rc)
        rc = read_csum(&r, out);
    if (!rc)
        rc = read_chunks(&r, first, out);
    return rc;
}
