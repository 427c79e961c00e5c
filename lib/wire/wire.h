/* TChannel wire codec: bytes <-> frames <-> call messages.
 *
 * Pure code: no sockets, no timers, no logging. Decoders return views
 * (tch_slice) into the caller's bytes; only the reassembler (tch_reasm),
 * which must outlive a single frame, allocates. Every length read from the
 * wire is checked against what remains in the frame.
 *
 * Return convention: 0 (or a documented positive value) on success, a
 * negative TCH_E* code on failure with err filled (err may be NULL). */
#ifndef TCH_WIRE_H
#define TCH_WIRE_H

#include <tchannel/common.h>
#include <tchannel/protocol.h>

#define TCH_FRAME_HEADER_SIZE 16
#define TCH_FRAME_MAX_SIZE 0xFFFF
#define TCH_FRAME_MAX_PAYLOAD (TCH_FRAME_MAX_SIZE - TCH_FRAME_HEADER_SIZE)
#define TCH_ID_NONE 0xFFFFFFFFu /* error frames not about one message */
#define TCH_PROTOCOL_VERSION 2

enum tch_frame_type {
    TCH_FRAME_INIT_REQ = 0x01,
    TCH_FRAME_INIT_RES = 0x02,
    TCH_FRAME_CALL_REQ = 0x03,
    TCH_FRAME_CALL_RES = 0x04,
    TCH_FRAME_CALL_REQ_CONT = 0x13,
    TCH_FRAME_CALL_RES_CONT = 0x14,
    TCH_FRAME_CANCEL = 0xc0,
    TCH_FRAME_CLAIM = 0xc1,
    TCH_FRAME_PING_REQ = 0xd0,
    TCH_FRAME_PING_RES = 0xd1,
    TCH_FRAME_ERROR = 0xff,
};

enum tch_checksum_type {
    TCH_CSUM_NONE = 0x00,
    TCH_CSUM_CRC32 = 0x01,    /* IEEE CRC-32 as zlib's crc32() */
    TCH_CSUM_FARMHASH = 0x02, /* farmhash Fingerprint32, as the Node peer */
    TCH_CSUM_CRC32C = 0x03,   /* Castagnoli */
};

enum tch_call_flags {
    TCH_CALL_FLAG_MORE = 0x01,      /* more fragments follow */
    TCH_CALL_FLAG_STREAMING = 0x02, /* request is streaming */
};

/* Call response codes (call res "code" byte). */
enum { TCH_CALL_RES_OK = 0x00, TCH_CALL_RES_APP_ERROR = 0x01 };

const char *tch_frame_type_name(uint8_t type);

/* ---- frames ---------------------------------------------------------- */

typedef struct tch_frame {
    uint8_t type;
    uint32_t id;
    tch_slice payload; /* view into the input */
} tch_frame;

/* A frame's header, decoded before its payload has arrived. */
typedef struct tch_frame_header {
    size_t size; /* the whole frame's, header included */
    uint8_t type;
    uint32_t id;
} tch_frame_header;

/* The one decoder of frame headers: everything that looks at a frame's
 * size, type or id comes through here. Returns 0 with h set when in holds
 * the 16 header bytes; TCH_EAGAIN when it does not; TCH_EPROTO when the
 * size field is smaller than the header. Either way what has arrived is
 * decoded (size once 2 bytes are there, type 3, id 8; else 0). */
int tch_frame_header_decode(tch_slice in, tch_frame_header *h, tch_error *err);

/* Parses one frame from the front of in. Returns 0 and sets *consumed;
 * TCH_EAGAIN when in holds less than a whole frame; TCH_EPROTO when the
 * size field is smaller than the header. */
int tch_frame_parse(tch_slice in, tch_frame *out, size_t *consumed,
                    tch_error *err);

/* Writes the 16-byte header for a frame whose payload is payload_len bytes. */
void tch_frame_header_write(uint8_t out[TCH_FRAME_HEADER_SIZE], uint8_t type,
                            uint32_t id, size_t payload_len);

/* ---- shared payload parts -------------------------------------------- */

/* ---- init req/res ---------------------------------------------------- */

#define TCH_INIT_MAX_HEADERS 32

typedef struct tch_init {
    uint16_t version;
    size_t nheaders;
    tch_kv headers[TCH_INIT_MAX_HEADERS];
} tch_init;

int tch_init_decode(tch_slice payload, tch_init *out, tch_error *err);
/* Looks up a header by key; returns 1 and sets *value when present. */
int tch_init_get(const tch_init *m, const char *key, tch_slice *value);
/* Encodes a whole frame (header included) of type INIT_REQ or INIT_RES. */
int tch_init_encode(uint8_t type, uint32_t id, const tch_init *m, uint8_t *out,
                    size_t cap, size_t *len, tch_error *err);

/* ---- call req/res (first frame) and continue frames ------------------ */

#define TCH_CALL_MAX_HEADERS 255 /* nh is one byte */
/* Transport headers a call frame may carry when read: the protocol's spec
 * and the Node peer allow at most 128 (tch_call_frame_decode refuses more,
 * and refuses an empty or repeated key, as Node does). */
#define TCH_CALL_HEADERS_ALLOWED TCH_PROTO_MAX_CALL_HEADERS
/* arg1 (the endpoint) is at most 16 KiB: Go's maxMethodSize, Node's
 * MaxArg1Size; both peers refuse a longer one, and so does tch_conn. */
#define TCH_ARG1_MAX_SIZE 0x4000

/* Fields of a call req/res before its arg chunks. For a call req, code is
 * unused; for a call res, ttl_ms and service are unused. For a continue
 * frame only flags and csum_type are meaningful. */
typedef struct tch_call_fields {
    uint8_t flags;
    uint32_t ttl_ms;
    uint8_t code;
    tch_trace tracing;
    tch_slice service;
    size_t nheaders;
    tch_kv headers[TCH_CALL_MAX_HEADERS];
    uint8_t csum_type;
} tch_call_fields;

/* One decoded call frame (CALL_REQ, CALL_RES, CALL_REQ_CONT, CALL_RES_CONT):
 * its fields, the checksum it carries and its arg chunks (views). */
typedef struct tch_call_frame {
    tch_call_fields f;
    uint32_t csum;
    size_t nchunks;
    tch_slice chunks[3];
} tch_call_frame;

int tch_call_frame_decode(const tch_frame *fr, tch_call_frame *out,
                          tch_error *err);

/* ---- cancel, claim, error, ping --------------------------------------- */

typedef struct tch_cancel {
    uint32_t ttl_ms;
    tch_trace tracing;
    tch_slice why; /* empty for claim */
} tch_cancel;

int tch_cancel_decode(uint8_t type, tch_slice payload, tch_cancel *out,
                      tch_error *err); /* type CANCEL or CLAIM */
int tch_cancel_encode(uint8_t type, uint32_t id, const tch_cancel *m,
                      uint8_t *out, size_t cap, size_t *len, tch_error *err);

typedef struct tch_error_frame {
    uint8_t code; /* tch_proto_code */
    tch_trace tracing;
    tch_slice message;
} tch_error_frame;

int tch_error_frame_decode(tch_slice payload, tch_error_frame *out,
                           tch_error *err);
int tch_error_frame_encode(uint32_t id, const tch_error_frame *m, uint8_t *out,
                           size_t cap, size_t *len, tch_error *err);

/* Ping req/res: a header with an empty payload. out must hold 16 bytes. */
size_t tch_ping_encode(uint8_t type, uint32_t id, uint8_t *out);

/* ---- checksums -------------------------------------------------------- */

/* Bytes the checksum occupies on the wire (0 or 4); -1 for an unknown type. */
int tch_checksum_size(uint8_t type);
uint32_t tch_crc32(uint32_t prev, const uint8_t *data, size_t len); /* zlib */
uint32_t tch_crc32c(uint32_t prev, const uint8_t *data, size_t len);
uint32_t tch_farmhash32(const uint8_t *data, size_t len); /* Fingerprint32 */
/* The crc32c implementations: tch_crc32c and tch_checksum_copy take the
 * fastest usable one; tests run each that this CPU has. */
typedef enum tch_crc32c_impl {
    TCH_CRC32C_TABLE,  /* slicing-by-8, any CPU */
    TCH_CRC32C_SSE42,  /* the crc32 instruction, three streams */
    TCH_CRC32C_AVX512, /* carry-less multiplication folding, 256 bytes a step */
} tch_crc32c_impl;
int tch_crc32c_impl_usable(tch_crc32c_impl impl);
/* tch_crc32c by impl (which must be usable); with dst, also copies src
 * there as tch_checksum_copy does. */
uint32_t tch_crc32c_with(tch_crc32c_impl impl, uint32_t prev, uint8_t *dst,
                         const uint8_t *src, size_t len);
/* Copies len bytes from src to dst (which must not overlap) and returns the
 * running crc32 or crc32c advanced over them; for any other type it only
 * copies and returns prev. One pass where a copy and a checksum take two. */
uint32_t tch_checksum_copy(uint8_t type, uint32_t prev, uint8_t *dst,
                           const uint8_t *src, size_t len);

/* ---- a whole call message: fragmenting and reassembling --------------- */

/* Bytes of messages held, counted against a limit. Bookkeeping only:
 * whoever holds the struct decides what to do when used passes limit. */
typedef struct tch_mem_budget {
    size_t limit;
    size_t used;
} tch_mem_budget;

/* A complete call request or response with owned storage. */
typedef struct tch_call_msg {
    uint8_t type; /* TCH_FRAME_CALL_REQ or TCH_FRAME_CALL_RES */
    uint32_t id;
    uint8_t flags; /* of the first frame, less TCH_CALL_FLAG_MORE */
    uint32_t ttl_ms;
    uint8_t code;
    tch_trace tracing;
    tch_slice service;   /* view into meta */
    size_t nheaders;
    tch_kv *headers;     /* owned array; slices view into meta */
    uint8_t csum_type;
    tch_buf args[3];     /* arg1, arg2, arg3 */
    tch_buf meta;        /* owned copy of the bytes the views point into */
    /* Where the headers array and the buffers' storage come from (the
     * buffers carry it too): the reassembler's, NULL for the C library. */
    const tch_allocator *alloc;
    /* Set by whoever charged the message's bytes to a budget (the conn, for
     * requests); the charge is given back by tch_call_msg_uncharge or
     * tch_call_msg_free, whichever comes first. */
    tch_mem_budget *budget;
    size_t charged;
} tch_call_msg;

void tch_call_msg_free(tch_call_msg *m); /* frees the members, not m */
void tch_call_msg_uncharge(tch_call_msg *m);
/* Bytes the message's buffers hold allocated (what a budget counts). */
size_t tch_call_msg_bytes(const tch_call_msg *m);

/* Splits a call into frames of at most TCH_FRAME_MAX_SIZE bytes. The
 * fields and args are borrowed and must stay valid until the last frame
 * is produced. */
typedef struct tch_fragmenter {
    uint8_t type; /* CALL_REQ or CALL_RES */
    uint32_t id;
    const tch_call_fields *f;
    tch_slice args[3];
    int arg;        /* index of the arg being written */
    size_t off;     /* bytes of args[arg] already written */
    uint32_t csum;  /* running checksum */
    int started;    /* first frame written */
    int done;
} tch_fragmenter;

void tch_fragmenter_init(tch_fragmenter *fz, uint8_t type, uint32_t id,
                         const tch_call_fields *f, const tch_slice args[3]);
/* The most bytes the next frame can take (at most TCH_FRAME_MAX_SIZE):
 * small messages need not reserve a whole frame's room. */
size_t tch_fragmenter_bound(const tch_fragmenter *fz);
/* Writes the next frame into out (at least tch_fragmenter_bound bytes).
 * Returns 1 when more frames follow, 0 when it wrote the last one,
 * negative on error (fields that do not fit in one frame, bad csum type). */
int tch_fragmenter_next(tch_fragmenter *fz, uint8_t *out, size_t *len,
                        tch_error *err);

/* Reassembles one message from its first frame and continue frames,
 * verifying checksums. max_arg bounds each arg's size (TCH_ETOOBIG). */
typedef struct tch_reasm {
    tch_call_msg msg;
    int arg;       /* index of the arg currently being filled */
    uint32_t csum; /* running checksum */
    size_t max_arg;
    size_t nframes; /* frames consumed so far (for error messages) */
    int done;       /* message complete: further continues are errors */
} tch_reasm;

/* Returns 1 when the message is complete (take it from r->msg), 0 when
 * continue frames must follow, negative on error. On error or when the
 * caller abandons it, free with tch_reasm_free. max_arg 0 means no limit.
 * The frames are only borrowed for the duration of each call.
 * A taken message is freed with tch_call_msg_free, not tch_reasm_free. */
int tch_reasm_start(tch_reasm *r, const tch_frame *first, size_t max_arg,
                    tch_error *err);
/* The same with an allocator for the message's storage (NULL: the C
 * library); it must outlive the message. */
int tch__reasm_start_with(tch_reasm *r, const tch_frame *first, size_t max_arg,
                          const tch_allocator *alloc, tch_error *err);
int tch_reasm_continue(tch_reasm *r, const tch_frame *cont, tch_error *err);
void tch_reasm_free(tch_reasm *r);

#endif
