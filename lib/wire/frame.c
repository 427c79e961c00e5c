/* Frame header parsing and writing, and frame type names.
 * Header: size:2 type:1 reserved:1 id:4 reserved:8; size counts the header. */
#include "wire_internal.h"

const char *tch_frame_type_name(uint8_t type) {
    switch (type) {
    case TCH_FRAME_INIT_REQ: return "init req";
    case TCH_FRAME_INIT_RES: return "init res";
    case TCH_FRAME_CALL_REQ: return "call req";
    case TCH_FRAME_CALL_RES: return "call res";
    case TCH_FRAME_CALL_REQ_CONT: return "call req cont";
    case TCH_FRAME_CALL_RES_CONT: return "call res cont";
    case TCH_FRAME_CANCEL: return "cancel";
    case TCH_FRAME_CLAIM: return "claim";
    case TCH_FRAME_PING_REQ: return "ping req";
    case TCH_FRAME_PING_RES: return "ping res";
    case TCH_FRAME_ERROR: return "error";
    default: return "unknown";
    }
}

const char *tch_frame_what(uint8_t type) { return tch_frame_type_name(type); }

int tch_frame_header_decode(tch_slice in, tch_frame_header *h, tch_error *err) {
    h->size = 0;
    h->type = 0;
    h->id = 0;
    if (in.len < 2)
        return tch_error_set(err, TCH_EAGAIN, "frame: need 2 bytes for size, "
                             "have %zu", in.len);
    /* What has arrived is decoded (type with 3 bytes, id with 8), so even a
     * short or bad start can be judged. Reserved bytes (1 and 8) are
     * ignored, as the Node peer does. */
    h->size = tch_get16(in.ptr);
    if (in.len >= 3)
        h->type = in.ptr[2];
    if (in.len >= 8)
        h->id = tch_get32(in.ptr + 4);
    if (h->size < TCH_FRAME_HEADER_SIZE)
        return tch_error_set(err, TCH_EPROTO,
                             "frame: size %zu is smaller than the %d-byte "
                             "header at offset 0",
                             h->size, TCH_FRAME_HEADER_SIZE);
    if (in.len < TCH_FRAME_HEADER_SIZE)
        return tch_error_set(err, TCH_EAGAIN, "frame: need %d bytes for the header, have %zu",
                             TCH_FRAME_HEADER_SIZE, in.len);
    return 0;
}

int tch_frame_parse(tch_slice in, tch_frame *out, size_t *consumed,
                    tch_error *err) {
    tch_frame_header h;
    int rc = tch_frame_header_decode(in, &h, err);
    if (rc == TCH_EAGAIN && h.size && in.len < h.size)
        return tch_error_set(err, TCH_EAGAIN, "frame: need %zu bytes, have %zu",
                             h.size, in.len);
    if (rc)
        return rc;
    if (in.len < h.size)
        return tch_error_set(err, TCH_EAGAIN, "frame: need %zu bytes, have %zu",
                             h.size, in.len);
    out->type = h.type;
    out->id = h.id;
    out->payload.ptr = in.ptr + TCH_FRAME_HEADER_SIZE;
    out->payload.len = h.size - TCH_FRAME_HEADER_SIZE;
    if (consumed)
        *consumed = h.size;
    return 0;
}

void tch_frame_header_write(uint8_t out[TCH_FRAME_HEADER_SIZE], uint8_t type,
                            uint32_t id, size_t payload_len) {
    /* Callers guarantee payload_len <= TCH_FRAME_MAX_PAYLOAD. */
    tch_put16(out, (uint16_t)(payload_len + TCH_FRAME_HEADER_SIZE));
    out[2] = type;
    out[3] = 0;
    tch_put32(out + 4, id);
    memset(out + 8, 0, 8);
}

int tch_wire_check_fit(const char *what, size_t payload_len, size_t cap,
                       tch_error *err) {
    if (payload_len > TCH_FRAME_MAX_PAYLOAD)
        return tch_error_set(err, TCH_ETOOBIG,
                             "%s: payload of %zu bytes exceeds the frame "
                             "limit of %d",
                             what, payload_len, TCH_FRAME_MAX_PAYLOAD);
    if (payload_len + TCH_FRAME_HEADER_SIZE > cap)
        return tch_error_set(err, TCH_EINVAL,
                             "%s: frame of %zu bytes exceeds output capacity "
                             "%zu",
                             what, payload_len + TCH_FRAME_HEADER_SIZE, cap);
    return 0;
}

size_t tch_ping_encode(uint8_t type, uint32_t id, uint8_t *out) {
    tch_frame_header_write(out, type, id, 0);
    return TCH_FRAME_HEADER_SIZE;
}
