/* Internal helpers shared by the wire codec's .c files: a bounds-checked
 * big-endian reader over one frame payload and a big-endian writer. Not
 * installed; nothing outside lib/wire includes it.
 *
 * Every reader failure fills err with "<what>: <field> ..." and the payload
 * offset where the problem is, so a bad frame can be found in a capture. */
#ifndef TCH_WIRE_INTERNAL_H
#define TCH_WIRE_INTERNAL_H

#include "wire.h"

#include <string.h>

/* A cursor over a payload. what names the frame type for messages. */
typedef struct tch_rd {
    const uint8_t *p;
    size_t len;
    size_t off;
    const char *what;
    tch_error *err;
} tch_rd;

static inline tch_rd tch_rd_make(tch_slice s, const char *what,
                                 tch_error *err) {
    tch_rd r = {s.ptr, s.len, 0, what, err};
    return r;
}

static inline size_t tch_rd_left(const tch_rd *r) { return r->len - r->off; }

/* Fails unless n more bytes remain; field names what is being read. */
static inline int tch_rd_need(tch_rd *r, size_t n, const char *field) {
    if (n <= tch_rd_left(r))
        return 0;
    return tch_error_set(r->err, TCH_EPROTO,
                         "%s: truncated %s: need %zu bytes, %zu remain at "
                         "offset %zu",
                         r->what, field, n, tch_rd_left(r), r->off);
}

static inline int tch_rd_u8(tch_rd *r, const char *field, uint8_t *v) {
    int rc = tch_rd_need(r, 1, field);
    if (rc)
        return rc;
    *v = r->p[r->off++];
    return 0;
}

static inline uint16_t tch_get16(const uint8_t *p) {
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static inline uint32_t tch_get32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

static inline uint64_t tch_get64(const uint8_t *p) {
    return (uint64_t)tch_get32(p) << 32 | tch_get32(p + 4);
}

static inline int tch_rd_u16(tch_rd *r, const char *field, uint16_t *v) {
    int rc = tch_rd_need(r, 2, field);
    if (rc)
        return rc;
    *v = tch_get16(r->p + r->off);
    r->off += 2;
    return 0;
}

static inline int tch_rd_u32(tch_rd *r, const char *field, uint32_t *v) {
    int rc = tch_rd_need(r, 4, field);
    if (rc)
        return rc;
    *v = tch_get32(r->p + r->off);
    r->off += 4;
    return 0;
}

/* Reads a length-prefixed string (prefix of 1 or 2 bytes) as a view. The
 * error reports the offset where the bytes would start. */
static inline int tch_rd_str(tch_rd *r, int width, const char *field,
                             tch_slice *out) {
    size_t n;
    int rc;
    if (width == 1) {
        uint8_t v;
        rc = tch_rd_u8(r, field, &v);
        n = v;
    } else {
        uint16_t v;
        rc = tch_rd_u16(r, field, &v);
        n = v;
    }
    if (rc)
        return rc;
    if (n > tch_rd_left(r))
        return tch_error_set(r->err, TCH_EPROTO,
                             "%s: %s length %zu exceeds remaining %zu bytes at "
                             "offset %zu",
                             r->what, field, n, tch_rd_left(r), r->off);
    out->ptr = r->p + r->off;
    out->len = n;
    r->off += n;
    return 0;
}

/* tracing:25 = spanid:8 parentid:8 traceid:8 flags:1 */
static inline int tch_rd_tracing(tch_rd *r, tch_trace *t) {
    int rc = tch_rd_need(r, 25, "tracing");
    if (rc)
        return rc;
    const uint8_t *p = r->p + r->off;
    t->span_id = tch_get64(p);
    t->parent_id = tch_get64(p + 8);
    t->trace_id = tch_get64(p + 16);
    t->flags = p[24];
    r->off += 25;
    return 0;
}

/* ---- writing: callers check capacity first, so these never fail ---- */

static inline uint8_t *tch_put8(uint8_t *p, uint8_t v) {
    *p = v;
    return p + 1;
}

static inline uint8_t *tch_put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}

static inline uint8_t *tch_put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return p + 4;
}

static inline uint8_t *tch_put64(uint8_t *p, uint64_t v) {
    p = tch_put32(p, (uint32_t)(v >> 32));
    return tch_put32(p, (uint32_t)v);
}

static inline uint8_t *tch_put_bytes(uint8_t *p, tch_slice s) {
    if (s.len)
        memcpy(p, s.ptr, s.len);
    return p + s.len;
}

static inline uint8_t *tch_put_tracing(uint8_t *p, const tch_trace *t) {
    p = tch_put64(p, t->span_id);
    p = tch_put64(p, t->parent_id);
    p = tch_put64(p, t->trace_id);
    return tch_put8(p, t->flags);
}

/* Checks that an encoded frame of payload_len bytes fits both the protocol
 * limit and the caller's buffer. */
int tch_wire_check_fit(const char *what, size_t payload_len, size_t cap,
                       tch_error *err);

/* Human names used in error messages ("call req", "call res cont"...). */
const char *tch_frame_what(uint8_t type);

/* Checksum over one frame's chunks, seeded with prev: the value that frame
 * must carry (see checksum.c for the per-type rules). */
uint32_t tch_checksum_frame(uint8_t type, uint32_t prev,
                            const tch_slice *chunks, size_t nchunks);
const char *tch_checksum_name(uint8_t type);

#endif
