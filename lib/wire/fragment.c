/* Splitting one call (fields + arg1..3) into frames of at most
 * TCH_FRAME_MAX_SIZE bytes, the way the Node peer does (v2/args.js
 * writeFragmentInto), so that our frames are byte-identical to Node's:
 *
 *  - the first frame holds every field, then as much arg data as fits;
 *  - while at least 2 bytes (a chunk length) remain, the next arg is started
 *    in the same frame, even if only as a 0-length chunk (Node does this
 *    when exactly 2 bytes remain after an arg);
 *  - an arg that ends with fewer than 2 bytes left in the frame is closed by
 *    a 0-length chunk at the start of the next continue frame. (Node 4.0.1
 *    has a bug here: it silently drops the remaining args. We do not copy it.)
 *  - MORE is set on every frame but the last; continue frames carry
 *    flags:1 csumtype:1 (csum:4){0,1} then chunks;
 *  - checksums follow checksum.c: crc32/crc32c run over all arg bytes,
 *    farmhash is fingerprint32 of the frame's last chunk. */
#include "wire_internal.h"

void tch_fragmenter_init(tch_fragmenter *fz, uint8_t type, uint32_t id,
                         const tch_call_fields *f, const tch_slice args[3]) {
    memset(fz, 0, sizeof *fz);
    fz->type = type;
    fz->id = id;
    fz->f = f;
    for (int i = 0; i < 3; i++)
        fz->args[i] = args ? args[i] : TCH_SLICE_NULL;
}

/* Bytes of the first frame's payload before the args (csum included). */
static int fields_size(const tch_fragmenter *fz, size_t *out, tch_error *err) {
    const tch_call_fields *f = fz->f;
    const char *what = tch_frame_what(fz->type);
    size_t n = (fz->type == TCH_FRAME_CALL_REQ) ? 1 + 4 + 25 + 1 + f->service.len
                                                : 1 + 1 + 25;
    if (fz->type == TCH_FRAME_CALL_REQ && f->service.len > 0xFF)
        return tch_error_set(err, TCH_EINVAL,
                             "%s: service of %zu bytes exceeds 255", what,
                             f->service.len);
    if (f->nheaders > TCH_CALL_MAX_HEADERS)
        return tch_error_set(err, TCH_EINVAL, "%s: %zu headers exceed 255",
                             what, f->nheaders);
    n += 1;
    for (size_t i = 0; i < f->nheaders; i++) {
        if (f->headers[i].key.len > 0xFF || f->headers[i].value.len > 0xFF)
            return tch_error_set(err, TCH_EINVAL,
                                 "%s: header %zu key or value exceeds 255 "
                                 "bytes",
                                 what, i);
        n += 2 + f->headers[i].key.len + f->headers[i].value.len;
    }
    int cs = tch_checksum_size(f->csum_type);
    if (cs < 0)
        return tch_error_set(err, TCH_EINVAL, "%s: unknown checksum type 0x%02x",
                             what, f->csum_type);
    *out = n + 1 + (size_t)cs;
    return 0;
}

static int validate(const tch_fragmenter *fz, size_t *fields, tch_error *err) {
    if (fz->type != TCH_FRAME_CALL_REQ && fz->type != TCH_FRAME_CALL_RES)
        return tch_error_set(err, TCH_EINVAL,
                             "fragmenter: frame type 0x%02x is not call req/res",
                             fz->type);
    int rc = fields_size(fz, fields, err);
    if (rc)
        return rc;
    /* Every field plus arg1's length must fit in the first frame: the
     * protocol requires it and peers parse fields from the first frame only. */
    if (*fields + 2 > TCH_FRAME_MAX_PAYLOAD)
        return tch_error_set(err, TCH_ETOOBIG,
                             "%s: %zu bytes of fields do not fit in the first "
                             "frame (limit %d)",
                             tch_frame_what(fz->type), *fields,
                             TCH_FRAME_MAX_PAYLOAD - 2);
    return 0;
}

/* Writes the first frame's fields; returns where the checksum goes. */
static uint8_t *write_fields(const tch_fragmenter *fz, uint8_t *p,
                             uint8_t **csum_at) {
    const tch_call_fields *f = fz->f;
    p++; /* flags: written once we know whether more frames follow */
    if (fz->type == TCH_FRAME_CALL_REQ) {
        p = tch_put32(p, f->ttl_ms);
        p = tch_put_tracing(p, &f->tracing);
        p = tch_put8(p, (uint8_t)f->service.len);
        p = tch_put_bytes(p, f->service);
    } else {
        p = tch_put8(p, f->code);
        p = tch_put_tracing(p, &f->tracing);
    }
    p = tch_put8(p, (uint8_t)f->nheaders);
    for (size_t i = 0; i < f->nheaders; i++) {
        p = tch_put8(p, (uint8_t)f->headers[i].key.len);
        p = tch_put_bytes(p, f->headers[i].key);
        p = tch_put8(p, (uint8_t)f->headers[i].value.len);
        p = tch_put_bytes(p, f->headers[i].value);
    }
    p = tch_put8(p, f->csum_type);
    *csum_at = p;
    return p + tch_checksum_size(f->csum_type);
}

/* Writes one chunk of args[arg] from off, at most room - 2 data bytes. */
static uint8_t *write_chunk(tch_fragmenter *fz, uint8_t *p, size_t room,
                            tch_slice *chunk) {
    tch_slice a = fz->args[fz->arg];
    size_t n = a.len - fz->off;
    if (n > room - 2)
        n = room - 2;
    chunk->ptr = a.ptr ? a.ptr + fz->off : a.ptr;
    chunk->len = n;
    p = tch_put16(p, (uint16_t)n);
    /* crc32/crc32c run over the data as it is copied; farmhash is taken
     * per frame in tch_fragmenter_next. */
    fz->csum = tch_checksum_copy(fz->f->csum_type, fz->csum, p, chunk->ptr, n);
    fz->off += n;
    return p + n;
}

/* Fills the rest of a frame with chunks; returns 1 if more frames follow. */
static int write_chunks(tch_fragmenter *fz, uint8_t **pp, const uint8_t *end,
                        tch_slice *last) {
    uint8_t *p = *pp;
    int more = 1;
    while ((size_t)(end - p) >= 2) {
        p = write_chunk(fz, p, (size_t)(end - p), last);
        if (fz->off < fz->args[fz->arg].len)
            break; /* arg continues in the next frame */
        if (fz->arg == 2) {
            more = 0; /* arg3 done: the message is complete */
            break;
        }
        if ((size_t)(end - p) < 2)
            break; /* arg ends at the boundary; next frame closes it */
        fz->arg++;
        fz->off = 0;
    }
    *pp = p;
    return more;
}

size_t tch_fragmenter_bound(const tch_fragmenter *fz) {
    size_t n = TCH_FRAME_HEADER_SIZE + 2 + 4; /* a continue frame's flags, type, csum */
    if (!fz->started) {
        size_t fields;
        if (fields_size(fz, &fields, NULL) != 0)
            return TCH_FRAME_MAX_SIZE; /* next() reports the error */
        n = TCH_FRAME_HEADER_SIZE + fields;
    }
    /* what is left of the args, and a length for each chunk: a frame holds
     * at most one chunk per arg not yet finished */
    n += fz->args[fz->arg].len - fz->off + 2 * (size_t)(3 - fz->arg);
    for (int i = fz->arg + 1; i < 3; i++)
        n += fz->args[i].len;
    return n < TCH_FRAME_MAX_SIZE ? n : TCH_FRAME_MAX_SIZE;
}

int tch_fragmenter_next(tch_fragmenter *fz, uint8_t *out, size_t *len,
                        tch_error *err) {
    if (fz->done)
        return tch_error_set(err, TCH_ESTATE, "fragmenter: message already "
                             "complete");
    uint8_t *start = out + TCH_FRAME_HEADER_SIZE, *p, *csum_at;
    uint8_t type = fz->type;
    uint8_t flags = 0;
    if (!fz->started) {
        size_t fields = 0;
        int rc = validate(fz, &fields, err);
        if (rc)
            return rc;
        p = write_fields(fz, start, &csum_at);
        flags = fz->f->flags & (uint8_t)~TCH_CALL_FLAG_MORE;
        fz->started = 1;
    } else {
        type = (type == TCH_FRAME_CALL_REQ) ? TCH_FRAME_CALL_REQ_CONT
                                            : TCH_FRAME_CALL_RES_CONT;
        p = start + 1;
        p = tch_put8(p, fz->f->csum_type);
        csum_at = p;
        p += tch_checksum_size(fz->f->csum_type);
    }
    tch_slice last = TCH_SLICE_NULL;
    int more = write_chunks(fz, &p, out + TCH_FRAME_MAX_SIZE, &last);
    if (fz->f->csum_type == TCH_CSUM_FARMHASH)
        fz->csum = tch_farmhash32(last.ptr, last.len); /* >= 1 chunk written */
    if (fz->f->csum_type != TCH_CSUM_NONE)
        tch_put32(csum_at, fz->csum);
    start[0] = more ? (uint8_t)(flags | TCH_CALL_FLAG_MORE) : flags;
    tch_frame_header_write(out, type, fz->id, (size_t)(p - start));
    *len = (size_t)(p - out);
    fz->done = !more;
    return more;
}
