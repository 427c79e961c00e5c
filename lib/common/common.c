/* Error reporting, byte slices and growable buffers shared by all layers. */
#include <tchannel/common.h>

#include "alloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tch_error_set(tch_error *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

int tch_error_wrap(tch_error *err, const char *fmt, ...) {
    if (!err)
        return TCH_EINVAL;
    char old[TCH_ERROR_MSG_MAX];
    va_list ap;
    memcpy(old, err->msg, sizeof old);
    old[sizeof old - 1] = '\0';
    va_start(ap, fmt);
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n + 2 < sizeof err->msg) {
        size_t at = (size_t)n, room = sizeof err->msg - at;
        err->msg[at] = ':';
        err->msg[at + 1] = ' ';
        size_t k = strlen(old);
        if (k > room - 3)
            k = room - 3;
        memcpy(err->msg + at + 2, old, k);
        err->msg[at + 2 + k] = '\0';
    }
    return err->code;
}

const char *tch_strerror(int code) {
    switch (code) {
    case TCH_OK: return "ok";
    case TCH_EAGAIN: return "need more input";
    case TCH_EPROTO: return "protocol error";
    case TCH_ENOMEM: return "out of memory";
    case TCH_EINVAL: return "invalid argument";
    case TCH_ECHECKSUM: return "checksum mismatch";
    case TCH_ETOOBIG: return "limit exceeded";
    case TCH_ETIMEOUT: return "timeout";
    case TCH_ECLOSED: return "connection closed";
    case TCH_ESTATE: return "invalid state";
    case TCH_EIO: return "I/O error";
    case TCH_EREMOTE: return "remote error";
    case TCH_ENOTFOUND: return "not found";
    case TCH_EPARSE: return "parse error";
    case TCH_ECANCELED: return "cancelled";
    case TCH_ENOTSAVED: return "not saved";
    default: return "unknown error";
    }
}

tch_slice tch_slice_of(const void *ptr, size_t len) {
    tch_slice s = {(const uint8_t *)ptr, len};
    return s;
}

tch_slice tch_slice_cstr(const char *s) {
    return tch_slice_of(s, s ? strlen(s) : 0);
}

bool tch_slice_eq(tch_slice a, tch_slice b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

bool tch_slice_eq_cstr(tch_slice a, const char *s) {
    return tch_slice_eq(a, tch_slice_cstr(s));
}

char *tch_slice_strdup(tch_slice s) {
    return tch_slice_strdup_with(NULL, s);
}

char *tch_slice_strdup_with(const tch_allocator *alloc, tch_slice s) {
    char *out = tch__malloc(alloc, s.len + 1);
    if (!out)
        return NULL;
    if (s.len)
        memcpy(out, s.ptr, s.len);
    out[s.len] = '\0';
    return out;
}

int tch_buf_reserve(tch_buf *b, size_t extra) {
    if (extra > SIZE_MAX - b->len)
        return TCH_ENOMEM;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *p = tch__realloc(b->alloc, b->ptr, cap);
    if (!p)
        return TCH_ENOMEM;
    b->ptr = p;
    b->cap = cap;
    return 0;
}

int tch_buf_append(tch_buf *b, const void *data, size_t len) {
    if (len == 0)
        return 0;
    int rc = tch_buf_reserve(b, len);
    if (rc)
        return rc;
    memcpy(b->ptr + b->len, data, len);
    b->len += len;
    return 0;
}

int tch_buf_append_slice(tch_buf *b, tch_slice s) {
    return tch_buf_append(b, s.ptr, s.len);
}

void tch_buf_reset(tch_buf *b) { b->len = 0; }

void tch_buf_free(tch_buf *b) {
    tch__free(b->alloc, b->ptr);
    b->ptr = NULL;
    b->len = b->cap = 0;
}

uint8_t *tch_buf_take(tch_buf *b, size_t *len) {
    uint8_t *p = b->ptr;
    if (len)
        *len = b->len;
    b->ptr = NULL;
    b->len = b->cap = 0;
    return p;
}

void tch_free_with(const tch_allocator *alloc, void *p) {
    tch__free(alloc, p);
}
