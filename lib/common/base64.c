/* Base64 (RFC 4648, standard alphabet): !!binary cassette scalars and the
 * JSON form of Thrift binary fields share it. */
#include <tchannel/common.h>

#include <ctype.h>
#include <string.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int tch_base64_encode(tch_slice in, size_t line_len, tch_buf *out) {
    size_t col = 0;
    if (tch_buf_reserve(out, (in.len + 2) / 3 * 4 + (line_len ? in.len / line_len + 1 : 0)))
        return TCH_ENOMEM;
    for (size_t i = 0; i < in.len; i += 3) {
        uint32_t v = (uint32_t)in.ptr[i] << 16;
        size_t rem = in.len - i;
        if (rem > 1)
            v |= (uint32_t)in.ptr[i + 1] << 8;
        if (rem > 2)
            v |= in.ptr[i + 2];
        char q[4] = {alphabet[(v >> 18) & 63], alphabet[(v >> 12) & 63],
                     rem > 1 ? alphabet[(v >> 6) & 63] : '=', rem > 2 ? alphabet[v & 63] : '='};
        if (line_len && col + 4 > line_len) {
            if (tch_buf_append(out, "\n", 1))
                return TCH_ENOMEM;
            col = 0;
        }
        if (tch_buf_append(out, q, 4))
            return TCH_ENOMEM;
        col += 4;
    }
    return 0;
}

static int digit(char c) {
    const char *p = c ? strchr(alphabet, c) : NULL;
    return p ? (int)(p - alphabet) : -1;
}

int tch_base64_decode(const char *in, size_t n, tch_buf *out) {
    uint32_t acc = 0;
    int bits = 0, pad = 0;
    if (n && tch_buf_reserve(out, n / 4 * 3 + 3)) /* one allocation up front */
        return TCH_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (isspace((unsigned char)c))
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = digit(c);
        if (v < 0 || pad)
            return TCH_EPARSE;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            uint8_t byte = (uint8_t)(acc >> bits);
            if (tch_buf_append(out, &byte, 1))
                return TCH_ENOMEM;
        }
    }
    return pad > 2 || bits >= 6 ? TCH_EPARSE : 0;
}
