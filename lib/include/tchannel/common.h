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
    TCH_ENOTSAVED = -15, /* a file could not be written; the object that would
                            have written it is kept (tch_vcr_eject) */
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

/* ---- allocators ------------------------------------------------------------
 * Where a channel (tch_channel_options.allocator), a cassette
 * (tch_cassette_options.allocator) or a buffer (tch_buf.alloc) gets its
 * memory. A NULL `const tch_allocator *` everywhere means the C library's
 * malloc, realloc and free.
 *
 * The library never asks malloc_cb or realloc_cb for 0 bytes, never calls
 * realloc_cb with a NULL ptr (it calls malloc_cb) and never calls free_cb
 * with NULL. Blocks must be aligned for any type (as malloc's are).
 * malloc_cb and realloc_cb return NULL when out of memory (realloc_cb then
 * leaves ptr as it was); the library answers that with TCH_ENOMEM, never a
 * crash. Every block the library gets from an allocator it gives back to the
 * same allocator, unless the API says the caller takes it (tch_buf_take,
 * strings a function documents as freed with an allocator).
 *
 * The callbacks run on whatever thread uses the object that allocates (a
 * channel: its event loop's thread), so an allocator shared by objects on
 * several threads must be thread-safe itself. user_data must outlive every
 * object made with the allocator; the struct itself is copied by a channel
 * and a cassette, but a tch_buf keeps the pointer (see tch_buf.alloc). */
typedef void *(*tch_malloc_cb)(size_t size, void *user_data);
typedef void *(*tch_realloc_cb)(void *ptr, size_t size, void *user_data);
typedef void (*tch_free_cb)(void *ptr, void *user_data);

typedef struct tch_allocator {
    tch_malloc_cb malloc_cb;   /* all three required */
    tch_realloc_cb realloc_cb;
    tch_free_cb free_cb;
    void *user_data;
} tch_allocator;

/* An owned, growable byte buffer. Zero-initialised is empty and valid (and
 * uses the C library). tch_buf_free releases the storage; tch_buf_take
 * hands it to the caller.
 *
 * alloc is where the storage comes from and goes back to: NULL for the C
 * library. Set it only while the buffer holds no storage (ptr NULL); it
 * must stay valid for as long as the buffer has storage. A buffer the
 * library fills for the caller (tch_base64_encode's, say) keeps the
 * caller's alloc; one the library hands out says whose it is. */
typedef struct tch_buf {
    uint8_t *ptr;
    size_t len;
    size_t cap;
    const tch_allocator *alloc;
} tch_buf;

/* These return 0 or TCH_ENOMEM (b is left as it was). */
int tch_buf_reserve(tch_buf *b, size_t extra);
int tch_buf_append(tch_buf *b, const void *data, size_t len);
int tch_buf_append_slice(tch_buf *b, tch_slice s);
void tch_buf_reset(tch_buf *b); /* len = 0, keeps storage */
void tch_buf_free(tch_buf *b);
/* Returns the storage and leaves b empty (its alloc unchanged). The caller
 * frees it with the buffer's allocator: free() when b->alloc is NULL,
 * else b->alloc->free_cb (tch_free_with does either). NULL when empty. */
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

/* Copies s into a new NUL-terminated heap string (NULL on ENOMEM), from
 * malloc (free it with free()). */
char *tch_slice_strdup(tch_slice s);
/* The same from alloc (NULL: malloc); free it with tch_free_with(alloc, s). */
char *tch_slice_strdup_with(const tch_allocator *alloc, tch_slice s);
/* Gives p (may be NULL) back to alloc (NULL: free()): for what a function
 * hands out from an allocator, such as tch_buf_take's storage. */
void tch_free_with(const tch_allocator *alloc, void *p);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
