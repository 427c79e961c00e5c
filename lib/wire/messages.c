/* Decoders and encoders for the small frames: init req/res, cancel, claim,
 * error. Decoders return views into the payload; encoders write a whole
 * frame (header included) into a caller buffer after checking it fits. */
#include "wire_internal.h"

/* Trailing bytes after the last field mean a layout we do not understand. */
static int check_end(tch_rd *r) {
    if (tch_rd_left(r) == 0)
        return 0;
    return tch_error_set(r->err, TCH_EPROTO,
                         "%s: %zu unexpected trailing bytes at offset %zu",
                         r->what, tch_rd_left(r), r->off);
}

/* ---- init ------------------------------------------------------------- */

int tch_init_decode(tch_slice payload, tch_init *out, tch_error *err) {
    tch_rd r = tch_rd_make(payload, "init", err);
    uint16_t nh;
    int rc = tch_rd_u16(&r, "version", &out->version);
    if (!rc)
        rc = tch_rd_u16(&r, "header count", &nh);
    if (rc)
        return rc;
    if (nh > TCH_INIT_MAX_HEADERS)
        return tch_error_set(err, TCH_ETOOBIG,
                             "init: %u headers exceed the limit of %d at "
                             "offset 2",
                             nh, TCH_INIT_MAX_HEADERS);
    for (size_t i = 0; i < nh; i++) {
        rc = tch_rd_str(&r, 2, "header key", &out->headers[i].key);
        if (!rc)
            rc = tch_rd_str(&r, 2, "header value", &out->headers[i].value);
        if (rc)
            return rc;
    }
    out->nheaders = nh;
    return check_end(&r);
}

int tch_init_get(const tch_init *m, const char *key, tch_slice *value) {
    for (size_t i = 0; i < m->nheaders; i++) {
        if (tch_slice_eq_cstr(m->headers[i].key, key)) {
            if (value)
                *value = m->headers[i].value;
            return 1;
        }
    }
    return 0;
}

int tch_init_encode(uint8_t type, uint32_t id, const tch_init *m, uint8_t *out,
                    size_t cap, size_t *len, tch_error *err) {
    const char *what = tch_frame_what(type);
    if (type != TCH_FRAME_INIT_REQ && type != TCH_FRAME_INIT_RES)
        return tch_error_set(err, TCH_EINVAL, "init: bad frame type 0x%02x",
                             type);
    if (m->nheaders > TCH_INIT_MAX_HEADERS)
        return tch_error_set(err, TCH_EINVAL, "%s: %zu headers exceed %d",
                             what, m->nheaders, TCH_INIT_MAX_HEADERS);
    size_t n = 4;
    for (size_t i = 0; i < m->nheaders; i++) {
        const tch_kv *h = &m->headers[i];
        if (h->key.len > 0xFFFF || h->value.len > 0xFFFF)
            return tch_error_set(err, TCH_EINVAL,
                                 "%s: header %zu longer than 65535 bytes",
                                 what, i);
        n += 4 + h->key.len + h->value.len;
    }
    int rc = tch_wire_check_fit(what, n, cap, err);
    if (rc)
        return rc;
    tch_frame_header_write(out, type, id, n);
    uint8_t *p = out + TCH_FRAME_HEADER_SIZE;
    p = tch_put16(p, m->version);
    p = tch_put16(p, (uint16_t)m->nheaders);
    for (size_t i = 0; i < m->nheaders; i++) {
        p = tch_put16(p, (uint16_t)m->headers[i].key.len);
        p = tch_put_bytes(p, m->headers[i].key);
        p = tch_put16(p, (uint16_t)m->headers[i].value.len);
        p = tch_put_bytes(p, m->headers[i].value);
    }
    *len = (size_t)(p - out);
    return 0;
}

/* ---- cancel / claim ---------------------------------------------------- */

int tch_cancel_decode(uint8_t type, tch_slice payload, tch_cancel *out,
                      tch_error *err) {
    if (type != TCH_FRAME_CANCEL && type != TCH_FRAME_CLAIM)
        return tch_error_set(err, TCH_EINVAL, "cancel: bad frame type 0x%02x",
                             type);
    tch_rd r = tch_rd_make(payload, tch_frame_what(type), err);
    int rc = tch_rd_u32(&r, "ttl", &out->ttl_ms);
    if (!rc)
        rc = tch_rd_tracing(&r, &out->tracing);
    out->why = TCH_SLICE_NULL;
    if (!rc && type == TCH_FRAME_CANCEL)
        rc = tch_rd_str(&r, 2, "why", &out->why);
    return rc ? rc : check_end(&r);
}

int tch_cancel_encode(uint8_t type, uint32_t id, const tch_cancel *m,
                      uint8_t *out, size_t cap, size_t *len, tch_error *err) {
    if (type != TCH_FRAME_CANCEL && type != TCH_FRAME_CLAIM)
        return tch_error_set(err, TCH_EINVAL, "cancel: bad frame type 0x%02x",
                             type);
    const char *what = tch_frame_what(type);
    size_t n = 4 + 25;
    if (type == TCH_FRAME_CANCEL) {
        if (m->why.len > 0xFFFF)
            return tch_error_set(err, TCH_EINVAL,
                                 "cancel: why of %zu bytes exceeds 65535",
                                 m->why.len);
        n += 2 + m->why.len;
    }
    int rc = tch_wire_check_fit(what, n, cap, err);
    if (rc)
        return rc;
    tch_frame_header_write(out, type, id, n);
    uint8_t *p = out + TCH_FRAME_HEADER_SIZE;
    p = tch_put32(p, m->ttl_ms);
    p = tch_put_tracing(p, &m->tracing);
    if (type == TCH_FRAME_CANCEL) {
        p = tch_put16(p, (uint16_t)m->why.len);
        p = tch_put_bytes(p, m->why);
    }
    *len = (size_t)(p - out);
    return 0;
}

/* ---- error ------------------------------------------------------------ */

int tch_error_frame_decode(tch_slice payload, tch_error_frame *out,
                           tch_error *err) {
    tch_rd r = tch_rd_make(payload, "error", err);
    int rc = tch_rd_u8(&r, "code", &out->code);
    if (!rc)
        rc = tch_rd_tracing(&r, &out->tracing);
    if (!rc)
        rc = tch_rd_str(&r, 2, "message", &out->message);
    return rc ? rc : check_end(&r);
}

int tch_error_frame_encode(uint32_t id, const tch_error_frame *m, uint8_t *out,
                           size_t cap, size_t *len, tch_error *err) {
    size_t n = 1 + 25 + 2 + m->message.len;
    if (m->message.len > 0xFFFF)
        return tch_error_set(err, TCH_EINVAL,
                             "error: message of %zu bytes exceeds 65535",
                             m->message.len);
    int rc = tch_wire_check_fit("error", n, cap, err);
    if (rc)
        return rc;
    tch_frame_header_write(out, TCH_FRAME_ERROR, id, n);
    uint8_t *p = out + TCH_FRAME_HEADER_SIZE;
    p = tch_put8(p, m->code);
    p = tch_put_tracing(p, &m->tracing);
    p = tch_put16(p, (uint16_t)m->message.len);
    p = tch_put_bytes(p, m->message);
    *len = (size_t)(p - out);
    return 0;
}
