/* The connection state machine: frames in, frames out, no sockets.
 *
 * A tch_conn is fed frames (or raw bytes) read by the transport and emits
 * the bytes to write through the write callback. It owns the init
 * handshake, message-id allocation, reassembly of fragmented messages,
 * answering pings, and protocol-error handling. Calls, timers and handlers
 * live in the channel above; the conn only reports complete messages.
 *
 * Callbacks run synchronously from feed/send functions. After `failed`
 * the conn emits nothing more; the owner should flush and close. */
#ifndef TCH_CONN_H
#define TCH_CONN_H

#include "wire.h"

typedef struct tch_conn tch_conn;

typedef struct tch_conn_config {
    int outbound;             /* we connected: we send init req */
    const char *host_port;    /* ours for init; "0.0.0.0:0" when not listening */
    const char *process_name;
    size_t max_arg_size;
    /* Requests whose frames are still arriving: at most this many (0: 1024)
     * holding at most this many bytes together (0: 256 MiB); past either
     * limit a new request is refused with Busy, so a peer that starts
     * messages and never ends them cannot exhaust memory. */
    size_t max_partial_requests;
    size_t max_partial_bytes;
    /* Optional, shared by the owner's connections: bytes of requests still
     * arriving plus those delivered and not yet released (a delivered
     * request carries its charge: tch_call_msg_uncharge or _free gives it
     * back). Past its limit new requests get Busy too. Bytes are counted
     * as allocated, and checked before a frame is taken, so what is held
     * stays under both budgets. */
    tch_mem_budget *shared;
} tch_conn_config;

typedef struct tch_conn_callbacks {
    void (*write)(void *ud, const uint8_t *data, size_t len);
    void (*ready)(void *ud); /* handshake done */
    /* A complete inbound request or response; the callee owns msg (free
     * with tch_call_msg_free, then free()). */
    void (*call_req)(void *ud, tch_call_msg *msg);
    void (*call_res)(void *ud, tch_call_msg *msg);
    /* A response for id could not be reassembled (checksum, limit). */
    void (*res_failed)(void *ud, uint32_t id, int status, const char *why);
    /* An error frame about message id (id may be TCH_ID_NONE: a notice about
     * the connection). Only code 0xff (protocol error) fails the conn. */
    void (*error_frame)(void *ud, uint32_t id, const tch_error_frame *e);
    void (*cancel)(void *ud, uint32_t id);
    void (*failed)(void *ud, int status, const char *why);
    /* Optional: whether a response for id is awaited. Responses nobody
     * awaits are dropped before any of their bytes are kept, so a peer
     * cannot fill memory with fragments of answers to nothing. */
    int (*expects_response)(void *ud, uint32_t id);
    void (*ping_res)(void *ud, uint32_t id); /* optional */
    /* Optional: a monotonic clock in ms. With it, a request whose frames
     * are still arriving when its TTL (counted from its first frame) runs
     * out can be expired by tch_conn_expire_requests. */
    uint64_t (*now_ms)(void *ud);
    /* Optional: lets call frames be written in place instead of through
     * write. reserve returns room for at least len bytes of output (NULL:
     * use write); commit then appends the first used bytes of that room
     * (0 when nothing was written). Each reserve is followed by one
     * commit before anything else is written. */
    uint8_t *(*reserve)(void *ud, size_t len);
    void (*commit)(void *ud, size_t used);
    /* Optional: a limit acted (a request refused with Busy): why, for a
     * log line. */
    void (*limit)(void *ud, const char *why);
    /* Optional: asked before a call response of at most len bytes is
     * queued. Nonzero refuses it (a peer that does not read its answers
     * while memory runs short): why then says so, and the conn fails with
     * it (TCH_ETOOBIG), queuing nothing. */
    int (*admit)(void *ud, size_t len, char *why, size_t cap);
} tch_conn_callbacks;

tch_conn *tch_conn_new(const tch_conn_config *cfg,
                       const tch_conn_callbacks *cb, void *ud);
void tch_conn_free(tch_conn *c);

/* Outbound connections send their init req here. */
int tch_conn_start(tch_conn *c);

/* Feeds one whole frame. Returns 0, or negative after `failed` ran. */
int tch_conn_feed_frame(tch_conn *c, const tch_frame *fr);
/* Looks at a frame header before its payload has arrived (len >= 16),
 * so a peer that sends garbage instead of init fails at once. */
int tch_conn_peek_header(tch_conn *c, const uint8_t *hdr, size_t len);
/* Feeds arbitrary bytes, buffering partial frames. */
int tch_conn_feed(tch_conn *c, const uint8_t *data, size_t len);

int tch_conn_is_ready(const tch_conn *c);
int tch_conn_has_failed(const tch_conn *c);
/* Requests whose first frames arrived and whose last has not yet. */
size_t tch_conn_partial_requests(const tch_conn *c);
/* When (now_ms clock) a frame of such a request last arrived; 0 without
 * now_ms. A request that stopped arriving long ago keeps nothing busy. */
uint64_t tch_conn_partial_active_ms(const tch_conn *c);
/* The peer's init headers (valid once ready): host_port, process_name. */
const char *tch_conn_remote_host_port(const tch_conn *c);
const char *tch_conn_remote_process(const tch_conn *c);

/* Message ids for outgoing calls and pings. */
uint32_t tch_conn_next_id(tch_conn *c);

/* Sends a call req/res (fragmenting it). Before the handshake completes
 * the frames are held and written right after it. */
int tch_conn_send_call(tch_conn *c, uint8_t type, uint32_t id,
                       const tch_call_fields *f, const tch_slice args[3],
                       tch_error *err);
/* tch_conn_send_call_with flags. */
enum {
    /* The first frame's checksum is sent deliberately wrong (computed, then
     * inverted), so the peer rejects the message: a fault a test server
     * injects. f->csum_type must not be none (TCH_EINVAL, nothing sent). */
    TCH_CONN_SEND_BAD_CHECKSUM = 0x1,
};
/* tch_conn_send_call with TCH_CONN_SEND_* flags. */
int tch_conn_send_call_with(tch_conn *c, uint8_t type, uint32_t id,
                            const tch_call_fields *f, const tch_slice args[3],
                            unsigned flags, tch_error *err);
int tch_conn_send_error(tch_conn *c, uint32_t id, uint8_t code,
                        const tch_trace *tracing, const char *msg);
int tch_conn_send_cancel(tch_conn *c, uint32_t id, const tch_trace *t,
                         const char *why);
int tch_conn_send_ping(tch_conn *c, uint32_t id);
/* The owner gives up on the connection (a handshake that did not finish in
 * time, say): a fatal error frame with id 0xFFFFFFFF tells the peer why,
 * then the conn fails. Returns TCH_EPROTO. */
int tch_conn_abort(tch_conn *c, const char *why);

/* Drops any partial reassembly for a request id (after a cancel or TTL). */
void tch_conn_forget_request(tch_conn *c, uint32_t id);
/* The same for a response whose call ended (timeout, cancel). */
void tch_conn_forget_response(tch_conn *c, uint32_t id);

/* The earliest time (now_ms clock) at which a request still arriving
 * outlives its TTL; 0 when none can. May be early, never late: the owner
 * arms a timer for it and then calls tch_conn_expire_requests. */
uint64_t tch_conn_next_deadline(const tch_conn *c);
/* Drops every request still arriving whose TTL has run out by now_ms and
 * answers each with a Timeout error frame, so a peer that trickles a
 * request in cannot hold it open past its TTL. Returns the new
 * tch_conn_next_deadline. */
uint64_t tch_conn_expire_requests(tch_conn *c, uint64_t now_ms);

#endif
