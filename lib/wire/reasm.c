/* Reassembling one call message from its first frame and continue frames
 * into an owned tch_call_msg, verifying each frame's checksum (rules in
 * checksum.c; they are exactly what the Node peer sends and verifies).
 *
 * Chunk semantics (protocol.md, Node's InArgStream.handleFrame): the first
 * chunk of a continue frame continues the current arg; every later chunk in
 * a frame starts the next arg; the last chunk of a frame with MORE stays
 * open. So a frame can never "complete arg3 and still set MORE": arg3 stays
 * open and Node's streaming sender does send more arg3 data after such a
 * frame. What cannot be valid is a 4th arg, a continue after the last frame,
 * a checksum type change, or a last frame that leaves an arg missing.
 *
 * Cost for a small single-frame call: one malloc for meta (the fields
 * bytes that service/headers view into), one for the headers array (if
 * any), one exact-size malloc per non-empty arg. */
#include "wire_internal.h"

#include "alloc.h"

static const char *const arg_names[] = {"arg1", "arg2", "arg3"};

void tch_call_msg_uncharge(tch_call_msg *m) {
    if (m->budget)
        m->budget->used -= m->charged;
    m->budget = NULL;
    m->charged = 0;
}

size_t tch_call_msg_bytes(const tch_call_msg *m) {
    return m->args[0].cap + m->args[1].cap + m->args[2].cap + m->meta.cap +
           m->nheaders * sizeof *m->headers;
}

void tch_call_msg_free(tch_call_msg *m) {
    tch_call_msg_uncharge(m);
    tch__free(m->alloc, m->headers);
    m->headers = NULL;
    m->nheaders = 0;
    m->service = TCH_SLICE_NULL;
    for (int i = 0; i < 3; i++)
        tch_buf_free(&m->args[i]);
    tch_buf_free(&m->meta);
}

void tch_reasm_free(tch_reasm *r) {
    tch_call_msg_free(&r->msg);
    r->done = 1;
}

static size_t chunks_size(const tch_call_frame *cf) {
    size_t n = 0;
    for (size_t i = 0; i < cf->nchunks; i++)
        n += 2 + cf->chunks[i].len;
    return n;
}

static tch_slice rebase(tch_slice s, const uint8_t *from, const uint8_t *to) {
    tch_slice out = {to + (s.ptr - from), s.len};
    return out;
}

/* Copies the first frame's field bytes into msg.meta (one malloc) and
 * points service and headers into that copy. */
static int copy_fields(tch_call_msg *m, const tch_frame *fr,
                       const tch_call_frame *cf, tch_error *err) {
    size_t n = fr->payload.len - chunks_size(cf);
    const uint8_t *base = fr->payload.ptr;
    m->meta.ptr = tch__malloc(m->alloc, n);
    if (!m->meta.ptr)
        return tch_error_set(err, TCH_ENOMEM, "%s: out of memory for fields",
                             tch_frame_what(fr->type));
    memcpy(m->meta.ptr, base, n);
    m->meta.len = m->meta.cap = n;
    if (fr->type == TCH_FRAME_CALL_REQ)
        m->service = rebase(cf->f.service, base, m->meta.ptr);
    if (cf->f.nheaders == 0)
        return 0;
    m->headers = tch__malloc(m->alloc, cf->f.nheaders * sizeof *m->headers);
    if (!m->headers)
        return tch_error_set(err, TCH_ENOMEM, "%s: out of memory for headers",
                             tch_frame_what(fr->type));
    for (size_t i = 0; i < cf->f.nheaders; i++) {
        m->headers[i].key = rebase(cf->f.headers[i].key, base, m->meta.ptr);
        m->headers[i].value = rebase(cf->f.headers[i].value, base, m->meta.ptr);
    }
    m->nheaders = cf->f.nheaders;
    return 0;
}

/* Compares the checksum a frame carries with the one its data gives. */
static int check_csum(tch_reasm *r, const tch_frame *fr,
                      const tch_call_frame *cf, uint32_t want, tch_error *err) {
    uint8_t type = r->msg.csum_type;
    if (want != cf->csum)
        return tch_error_set(err, TCH_ECHECKSUM,
                             "%s: %s checksum mismatch in frame index %zu of "
                             "id %u: frame carries 0x%08x, data gives 0x%08x",
                             tch_frame_what(fr->type), tch_checksum_name(type),
                             r->nframes, fr->id, cf->csum, want);
    r->csum = want;
    return 0;
}

/* Room for extra more bytes in an arg whose final size is not known yet:
 * an eighth more than it needs (at least 64 bytes). Reallocations stay few
 * (glibc moves large blocks with mremap rather than copying), and what a
 * request holds stays within an eighth of its bytes, which is what the
 * memory budgets count; doubling would hold up to twice, and refuse
 * requests that fit. conn.c's growth_bound relies on this rule. */
static int reserve_arg(tch_buf *b, size_t extra) {
    if (extra > SIZE_MAX / 2 - b->len)
        return TCH_ENOMEM;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return 0;
    size_t cap = need + need / 8;
    if (cap < 64)
        cap = 64;
    uint8_t *p = tch__realloc(b->alloc, b->ptr, cap);
    if (!p)
        return TCH_ENOMEM;
    b->ptr = p;
    b->cap = cap;
    return 0;
}

/* Appends a chunk to an arg, advancing the running crc32/crc32c *csum over
 * it in the same pass. A chunk that closes an arg which has no data yet
 * (the common single-frame case) gets an exact-size buffer. */
static int append(tch_reasm *r, tch_slice c, int closes, uint32_t *csum) {
    tch_buf *b = &r->msg.args[r->arg];
    if (c.len == 0)
        return 0;
    if (closes && b->cap == 0) {
        b->ptr = tch__malloc(b->alloc, c.len);
        if (!b->ptr)
            return TCH_ENOMEM;
        b->cap = c.len;
    } else if (reserve_arg(b, c.len) != 0) {
        return TCH_ENOMEM;
    }
    *csum = tch_checksum_copy(r->msg.csum_type, *csum, b->ptr + b->len, c.ptr,
                              c.len);
    b->len += c.len;
    return 0;
}

/* Places a frame's chunks into the args; first says whether the first
 * chunk starts arg1 (first frame) or continues the current arg. */
static int take_chunks(tch_reasm *r, const tch_frame *fr,
                       const tch_call_frame *cf, int last_frame,
                       uint32_t *csum, tch_error *err) {
    const char *what = tch_frame_what(fr->type);
    for (size_t i = 0; i < cf->nchunks; i++) {
        if (i > 0 && ++r->arg > 2)
            return tch_error_set(err, TCH_EPROTO,
                                 "%s: more than 3 args in frame index %zu of "
                                 "id %u",
                                 what, r->nframes, fr->id);
        tch_slice c = cf->chunks[i];
        size_t have = r->msg.args[r->arg].len;
        if (c.len > r->max_arg - have)
            return tch_error_set(err, TCH_ETOOBIG,
                                 "%s: %s of at least %zu bytes exceeds the "
                                 "limit of %zu bytes (id %u)",
                                 what, arg_names[r->arg], have + c.len,
                                 r->max_arg, fr->id);
        int closes = last_frame || i + 1 < cf->nchunks;
        if (append(r, c, closes, csum))
            return tch_error_set(err, TCH_ENOMEM, "%s: out of memory for %s",
                                 what, arg_names[r->arg]);
    }
    return 0;
}

/* Common tail of start/continue: verify, take chunks, detect the end. */
static int absorb(tch_reasm *r, const tch_frame *fr, const tch_call_frame *cf,
                  tch_error *err) {
    int last = !(cf->f.flags & TCH_CALL_FLAG_MORE);
    uint8_t type = r->msg.csum_type;
    uint32_t csum = r->csum;
    int rc = 0;
    if (type == TCH_CSUM_FARMHASH) /* per frame, not running: see checksum.c */
        rc = check_csum(r, fr, cf,
                        tch_checksum_frame(type, r->csum, cf->chunks, cf->nchunks),
                        err);
    int running = type == TCH_CSUM_CRC32 || type == TCH_CSUM_CRC32C;
    if (!rc)
        rc = take_chunks(r, fr, cf, last, &csum, err);
    if (running) { /* a bad message is dropped whole, so checking last is fine */
        if (rc) /* a corrupt frame says so, whatever else is wrong with it */
            csum = tch_checksum_frame(type, r->csum, cf->chunks, cf->nchunks);
        if (!rc || csum != cf->csum)
            rc = check_csum(r, fr, cf, csum, err);
    }
    if (rc)
        return rc;
    r->nframes++;
    if (!last)
        return 0;
    r->done = 1;
    /* r->arg reaches 2 only after a chunk has started arg3. */
    if (r->arg != 2)
        return tch_error_set(err, TCH_EPROTO,
                             "%s: last frame of id %u ends the message before "
                             "arg3 started",
                             tch_frame_what(fr->type), fr->id);
    return 1;
}

int tch_reasm_start(tch_reasm *r, const tch_frame *first, size_t max_arg,
                    tch_error *err) {
    return tch__reasm_start_with(r, first, max_arg, NULL, err);
}

int tch__reasm_start_with(tch_reasm *r, const tch_frame *first, size_t max_arg,
                          const tch_allocator *alloc, tch_error *err) {
    memset(r, 0, sizeof *r);
    r->msg.alloc = alloc;
    for (int i = 0; i < 3; i++)
        r->msg.args[i].alloc = alloc;
    r->msg.meta.alloc = alloc;
    r->max_arg = max_arg ? max_arg : SIZE_MAX;
    if (first->type != TCH_FRAME_CALL_REQ && first->type != TCH_FRAME_CALL_RES)
        return tch_error_set(err, TCH_EPROTO,
                             "reasm: %s frame (0x%02x) cannot start a call",
                             tch_frame_type_name(first->type), first->type);
    tch_call_frame cf;
    int rc = tch_call_frame_decode(first, &cf, err);
    if (rc)
        return rc;
    tch_call_msg *m = &r->msg;
    m->type = first->type;
    m->id = first->id;
    m->flags = cf.f.flags & (uint8_t)~TCH_CALL_FLAG_MORE;
    m->ttl_ms = cf.f.ttl_ms;
    m->code = cf.f.code;
    m->tracing = cf.f.tracing;
    m->csum_type = cf.f.csum_type;
    rc = copy_fields(m, first, &cf, err);
    return rc ? rc : absorb(r, first, &cf, err);
}

static int check_continue(const tch_reasm *r, const tch_frame *cont,
                          tch_error *err) {
    uint8_t want = r->msg.type == TCH_FRAME_CALL_REQ ? TCH_FRAME_CALL_REQ_CONT
                                                     : TCH_FRAME_CALL_RES_CONT;
    const char *what = tch_frame_type_name(cont->type);
    if (r->done)
        return tch_error_set(err, TCH_EPROTO,
                             "%s: frame for id %u after the message was "
                             "complete",
                             what, cont->id);
    if (cont->type != want)
        return tch_error_set(err, TCH_EPROTO,
                             "%s: expected a %s frame for id %u",
                             what, tch_frame_type_name(want), r->msg.id);
    if (cont->id != r->msg.id)
        return tch_error_set(err, TCH_EPROTO,
                             "%s: id %u does not match message id %u", what,
                             cont->id, r->msg.id);
    return 0;
}

int tch_reasm_continue(tch_reasm *r, const tch_frame *cont, tch_error *err) {
    int rc = check_continue(r, cont, err);
    if (rc)
        return rc;
    tch_call_frame cf;
    rc = tch_call_frame_decode(cont, &cf, err);
    if (rc)
        return rc;
    if (cf.f.csum_type != r->msg.csum_type)
        return tch_error_set(err, TCH_EPROTO,
                             "%s: checksum type changed from %s to %s in frame "
                             "index %zu of id %u",
                             tch_frame_what(cont->type),
                             tch_checksum_name(r->msg.csum_type),
                             tch_checksum_name(cf.f.csum_type), r->nframes,
                             cont->id);
    return absorb(r, cont, &cf, err);
}
