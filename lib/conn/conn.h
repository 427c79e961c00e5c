/* The connection state machine: bytes in, bytes out, no sockets, no clock.
 *
 * In nghttp2's shape: the conn owns framing and all protocol state (the
 * init handshake, message ids, reassembly, answering pings, budgets,
 * output backpressure, TTLs of requests still arriving, the frame
 * timeout). It takes bytes in (tch_conn_feed, or tch_conn_in_room +
 * tch_conn_received + tch_conn_process), hands bytes out when asked
 * (tch_conn_out / tch_conn_out_done), takes the time as an argument
 * (tch_conn_tick(now_ms)) and reports through one event table. The
 * transport below only moves bytes between a socket and the conn; the
 * channel above owns the conn, implements its events and sends through it.
 *
 * After `failed` the conn queues nothing more; the owner flushes what
 * waits and closes. */
#ifndef TCH_CONN_H
#define TCH_CONN_H

#include "wire.h"

#include <sys/uio.h>

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
    /* A frame begun must be whole within this many ms (0: no bound);
     * past it tch_conn_tick fails the conn. */
    uint32_t frame_timeout_ms;
    /* Optional, shared by the owner's connections: bytes of requests still
     * arriving plus those delivered and not yet released (a delivered
     * request carries its charge: tch_call_msg_uncharge or _free gives it
     * back). Past its limit new requests get Busy too. Bytes are counted
     * as allocated, and checked before a frame is taken, so what is held
     * stays under both budgets. */
    tch_mem_budget *shared;
    /* Where the conn, its buffers and the messages it delivers get their
     * memory (NULL: the C library); must outlive the conn and them. */
    const tch_allocator *alloc;
} tch_conn_config;

/* The one table of events, implemented by the conn's owner (the channel).
 * Every event runs synchronously from a conn function (feed, send, tick);
 * user_data is the pointer given to tch_conn_new. */
typedef struct tch_conn_events {
    void (*ready)(void *ud); /* handshake done */
    /* A complete inbound request or response; the callee owns msg (free
     * with tch_call_msg_free, then tch__free(msg->alloc, msg)). */
    void (*call_req)(void *ud, tch_call_msg *msg);
    void (*call_res)(void *ud, tch_call_msg *msg);
    /* A response for id could not be reassembled (checksum, limit). */
    void (*res_failed)(void *ud, uint32_t id, int status, const char *why);
    /* An error frame about message id (id may be TCH_ID_NONE: a notice about
     * the connection). Only code 0xff (protocol error) fails the conn. */
    void (*error_frame)(void *ud, uint32_t id, const tch_error_frame *e);
    void (*cancel)(void *ud, uint32_t id);
    /* The conn failed: it takes no more input and queues nothing more (an
     * error frame telling the peer why may still wait in its output). */
    void (*failed)(void *ud, int status, const char *why);
    /* Optional: whether a response for id is awaited. Responses nobody
     * awaits are dropped before any of their bytes are kept, so a peer
     * cannot fill memory with fragments of answers to nothing. */
    int (*expects_response)(void *ud, uint32_t id);
    void (*ping_res)(void *ud, uint32_t id); /* optional */
    /* Optional: a limit acted (a request refused with Busy, the frame
     * timeout, an answer refused to a peer that does not read): why, for
     * a log line. */
    void (*limit)(void *ud, const char *why);
    /* Optional: output became waiting where none was (tch_conn_out has
     * something to hand out): the owner gets it written. */
    void (*output)(void *ud);
} tch_conn_events;

tch_conn *tch_conn_new(const tch_conn_config *cfg,
                       const tch_conn_events *ev, void *ud);
void tch_conn_free(tch_conn *c);

/* Outbound connections queue their init req here. */
int tch_conn_start(tch_conn *c);

/* ---- bytes in ------------------------------------------------------------
 * The conn owns framing: it takes bytes as they come and decodes frames
 * itself (with wire's one frame-header decoder). now_ms is the owner's
 * clock: when a frame began (the frame timeout) and a request's first
 * frame arrived (its TTL) are counted with it. */

/* Takes len bytes (copied), then processes every whole frame. Returns 0,
 * or negative after `failed` ran. */
int tch_conn_feed(tch_conn *c, const uint8_t *data, size_t len, uint64_t now_ms);
/* Zero-copy input: room for at least want bytes at the end of the conn's
 * input buffer (NULL: out of memory). Read into it, then tch_conn_received. */
uint8_t *tch_conn_in_room(tch_conn *c, size_t want, size_t *cap);
/* The first n bytes of the room were filled. Processes nothing. */
void tch_conn_received(tch_conn *c, size_t n, uint64_t now_ms);
/* Processes whole frames from the input, at most max_frames of them, and
 * stops early while the output is backlogged (tch_conn_wants_read). Returns
 * 1 when whole frames are left to process, 0 when none are, negative after
 * `failed` ran. */
int tch_conn_process(tch_conn *c, unsigned max_frames, uint64_t now_ms);
/* Whether the owner should read more: not while the output waiting is
 * backlogged (a peer that sends but does not read its answers) or the
 * input holds frames enough. */
int tch_conn_wants_read(const tch_conn *c);
/* Bytes received and not yet processed (a frame still arriving). */
size_t tch_conn_in_pending(const tch_conn *c);

/* Gives back the buffers kept for the next read and write (the input's,
 * when it holds nothing, and the spare output block): a busy connection
 * keeps them so that it allocates nothing per call; the owner trims one
 * that has gone quiet. */
void tch_conn_trim(tch_conn *c);

/* ---- bytes out -----------------------------------------------------------
 * Frames are queued in the conn's blocks; the owner writes them. */

/* Fills up to n iovecs with the output waiting, in order, and returns how
 * many (0: nothing waits). The bytes stay valid until tch_conn_out_done
 * or any other conn call. */
int tch_conn_out(const tch_conn *c, struct iovec *iov, int n);
/* n bytes of the output were written: drops them. */
void tch_conn_out_done(tch_conn *c, size_t n);
/* Bytes waiting to be written. */
size_t tch_conn_out_pending(const tch_conn *c);
/* Drops the output waiting (the peer is gone). */
void tch_conn_out_drop(tch_conn *c);

/* ---- time ----------------------------------------------------------------- */

/* When (now_ms clock) tick has something to do: a request still arriving
 * outlives its TTL, or a frame begun is past the frame timeout; 0: never.
 * May be early, never late. */
uint64_t tch_conn_next_deadline(const tch_conn *c);
/* Acts on what is due by now_ms: requests still arriving past their TTL
 * are dropped and answered with Timeout (a peer that trickles a request in
 * cannot hold it open past its TTL); a frame begun more than frame_timeout
 * ms ago fails the conn (TCH_ETIMEOUT, with a fatal error frame to the
 * peer). Returns the new tch_conn_next_deadline. */
uint64_t tch_conn_tick(tch_conn *c, uint64_t now_ms);

int tch_conn_is_ready(const tch_conn *c);
int tch_conn_has_failed(const tch_conn *c);
/* Requests whose first frames arrived and whose last has not yet. */
size_t tch_conn_partial_requests(const tch_conn *c);
/* When (now_ms) a frame of such a request last arrived. A request that
 * stopped arriving long ago keeps nothing busy. */
uint64_t tch_conn_partial_active_ms(const tch_conn *c);
/* The peer's init headers (valid once ready): host_port, process_name. */
const char *tch_conn_remote_host_port(const tch_conn *c);
const char *tch_conn_remote_process(const tch_conn *c);

/* Message ids for outgoing calls and pings. */
uint32_t tch_conn_next_id(tch_conn *c);

/* Queues a call req/res (fragmenting it, each frame encoded straight into
 * the output). Before the handshake completes the frames are held and
 * queued right after init. An answer (call res) to a peer that has more
 * than 64 KiB of answers unread while the shared budget cannot pay for
 * this one fails the conn (TCH_ETOOBIG, `limit` says why): waiting would
 * hold the memory for as long as the peer likes. */
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

#endif
