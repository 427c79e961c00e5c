/* Types shared by every layer: byte views, growable buffers, and the one
 * error convention (int return: 0 or a negative TCH_E* code; details in a
 * caller-provided tch_error). */
#ifndef TCHANNEL_COMMON_H
#define TCHANNEL_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; the rest of the library is hidden */

/* Library error codes (always negative). Protocol error frame codes are a
 * separate enum, tch_proto_code, in tchannel/protocol.h. */
enum tch_errcode {
    TCH_OK = 0,
    TCH_EAGAIN = -1,     /* need more input; not a failure */
    TCH_EPROTO = -2,     /* malformed or out-of-order protocol data */
    TCH_ENOMEM = -3,
    TCH_EINVAL = -4,     /* bad argument from the caller */
    TCH_ECHECKSUM = -5,  /* checksum mismatch */
    TCH_ETOOBIG = -6,    /* a configured limit was exceeded */
    TCH_ETIMEOUT = -7,
    TCH_ECLOSED = -8,    /* connection closed or not usable */
    TCH_ESTATE = -9,     /* call not valid in this state (e.g. listen twice) */
    TCH_EIO = -10,       /* socket or file error; errno detail in message */
    TCH_EREMOTE = -11,   /* the peer answered with an error frame */
    TCH_ENOTFOUND = -12, /* no such service, endpoint, peer, file, key */
    TCH_EPARSE = -13,    /* malformed text input (IDL, cassette, JSON) */
    TCH_ECANCELED = -14,
};

#define TCH_ERROR_MSG_MAX 512

/* Filled by functions that can fail, when the caller passes one (may be
 * NULL). msg names what went wrong and where. */
typedef struct tch_error {
    int code;
    char msg[TCH_ERROR_MSG_MAX];
} tch_error;

/* Marks a printf-style function, so the compiler checks its arguments. */
#if defined(__GNUC__)
#define TCH_PRINTF(fmt_arg, first_arg) __attribute__((format(printf, fmt_arg, first_arg)))
#else
#define TCH_PRINTF(fmt_arg, first_arg)
#endif

/* Sets err (if non-NULL) and returns code, so callers can write
 * `return tch_error_set(err, TCH_EPROTO, "call req: service length %u", n);` */
int tch_error_set(tch_error *err, int code, const char *fmt, ...) TCH_PRINTF(3, 4);
/* Prepends "prefix: " to an already-set message (adds context on the way
 * up). Returns err->code; with a NULL err there is no code to return
 * (TCH_EINVAL), so a function whose caller may pass NULL returns its own:
 * `return tch_error_wrap(err, "request"), rc;`. */
int tch_error_wrap(tch_error *err, const char *fmt, ...) TCH_PRINTF(2, 3);
const char *tch_strerror(int code);

/* A borrowed view of bytes. Never assumed NUL-terminated. */
typedef struct tch_slice {
    const uint8_t *ptr;
    size_t len;
} tch_slice;

#define TCH_SLICE_NULL ((tch_slice){NULL, 0})
tch_slice tch_slice_of(const void *ptr, size_t len);
tch_slice tch_slice_cstr(const char *s);

/* A key and its value: transport headers, init headers, application
 * headers. Views; whoever hands one out says how long the bytes live. */
typedef struct tch_kv {
    tch_slice key;
    tch_slice value;
} tch_kv;

/* Zipkin-style tracing as the protocol carries it (25 bytes on the wire). */
typedef struct tch_trace {
    uint64_t span_id;
    uint64_t parent_id;
    uint64_t trace_id;
    uint8_t flags; /* 0x01: traced */
} tch_trace;
/* Same length and bytes. */
bool tch_slice_eq(tch_slice a, tch_slice b);
bool tch_slice_eq_cstr(tch_slice a, const char *s);

/* An owned, growable byte buffer. Zero-initialised is empty and valid.
 * tch_buf_free releases the storage; tch_buf_take hands it to the caller. */
typedef struct tch_buf {
    uint8_t *ptr;
    size_t len;
    size_t cap;
} tch_buf;

/* These return 0 or TCH_ENOMEM (b is left as it was). */
int tch_buf_reserve(tch_buf *b, size_t extra);
int tch_buf_append(tch_buf *b, const void *data, size_t len);
int tch_buf_append_slice(tch_buf *b, tch_slice s);
void tch_buf_reset(tch_buf *b); /* len = 0, keeps storage */
void tch_buf_free(tch_buf *b);
/* Returns the storage (caller frees with free()) and leaves b empty. */
uint8_t *tch_buf_take(tch_buf *b, size_t *len);
static inline tch_slice tch_buf_slice(const tch_buf *b) {
    tch_slice s = {b->ptr, b->len};
    return s;
}

/* Base64, RFC 4648 standard alphabet. encode appends, breaking lines every
 * line_len characters (0: one line). decode appends; white space is
 * skipped and padding is optional. Both return 0 or TCH_ENOMEM; decode
 * TCH_EPARSE for anything else. */
int tch_base64_encode(tch_slice in, size_t line_len, tch_buf *out);
int tch_base64_decode(const char *in, size_t len, tch_buf *out);

/* Copies s into a new NUL-terminated heap string (NULL on ENOMEM). */
char *tch_slice_strdup(tch_slice s);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
