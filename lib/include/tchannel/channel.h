/* A TChannel channel: listens, calls, dispatches inbound calls to handlers.
 *
 * Everything runs on the caller's libevent event_base, single-threaded;
 * callbacks run from that loop. Ownership:
 *  - tch_channel_new/tch_channel_free.
 *  - An inbound call (tch_inbound) is owned by the channel until the handler
 *    answers it with tch_inbound_respond*; the handler may keep the pointer
 *    and answer later. Every inbound must be answered exactly once, even if
 *    it timed out or its connection closed meanwhile (then the answer is
 *    dropped and the inbound freed).
 *  - A tch_response passed to a call callback, and the slices in it, are
 *    valid only during the callback.
 */
#ifndef TCHANNEL_CHANNEL_H
#define TCHANNEL_CHANNEL_H

#include <tchannel/common.h>
#include <tchannel/protocol.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; the rest of the library is hidden */

struct event_base;
struct evdns_base;

typedef struct tch_channel tch_channel;

/* Callbacks are named *_cb and take their user data (ud) last. */

/* One line of text for a log the caller keeps (the library has none). */
typedef void (*tch_log_cb)(const char *line, void *ud);
/* The channel's clock (tch_channel_options.now_ms): monotonic milliseconds. */
typedef uint64_t (*tch_clock_cb)(void *ud);

/* Checksum of outgoing calls (tch_channel_options.checksum_type). Zero is
 * the default so that a zeroed options struct means defaults. */
typedef enum tch_checksum {
    TCH_CHECKSUM_DEFAULT = 0,  /* crc32c, as the Node peer */
    TCH_CHECKSUM_CRC32 = 1,    /* zlib's IEEE CRC-32 */
    TCH_CHECKSUM_FARMHASH = 2, /* farmhash Fingerprint32, as the Node peer */
    TCH_CHECKSUM_CRC32C = 3,   /* Castagnoli; SSE4.2 when the CPU has it */
    TCH_CHECKSUM_NONE = 0x80,  /* no checksum */
} tch_checksum;

typedef struct tch_channel_options {
    const char *process_name;    /* default "<name>[<pid>]" */
    tch_checksum checksum_type;  /* any other value: tch_channel_new fails */
    uint32_t default_timeout_ms; /* default 5000 */
    size_t max_arg_size;         /* per arg, both directions; default 64 MiB */
    size_t max_pending_calls;    /* calls in flight on one connection, in each
                                    direction; default 65536. An outgoing call
                                    beyond it fails with TCH_ETOOBIG, an
                                    incoming one gets a Busy error frame */
    uint32_t idle_timeout_ms;    /* close connections with no call in flight
                                    and no traffic for this long; default
                                    300000 (5 min); TCH_IDLE_NEVER keeps them */
    /* Limits that keep a hostile or broken peer from holding connections
     * and memory. Each acts with a line to `log` (when set). */
    uint32_t frame_timeout_ms;   /* a frame begun must be whole within this,
                                    or the connection is closed (slowloris);
                                    default 10000; TCH_IDLE_NEVER: no bound */
    size_t max_connections;      /* inbound connections open at once; one
                                    more is sent a fatal error frame and
                                    closed at once; default 1024;
                                    TCH_NO_LIMIT: none */
    size_t max_partial_bytes;    /* per connection: bytes held by requests
                                    whose frames are still arriving; default
                                    128 MiB */
    size_t max_request_bytes;    /* per channel, all connections together:
                                    bytes held by requests arriving or being
                                    served (until answered); default 256 MiB.
                                    Past either budget a new request gets a
                                    Busy error frame (the caller may retry) */
    /* Called when a limit acts (a connection closed idle or over the frame
     * timeout or the handshake timeout, one refused over max_connections, a
     * request refused over a budget) with one line saying what and why.
     * The library has no logger of its own. */
    tch_log_cb log;
    void *log_ud;
    /* true: calls that start a new trace (no parent span) set the
     * traced flag, as tchannel-python's TChannel(trace=True); a call with a
     * parent keeps the parent's flag, and tch_call_opts.traced overrides
     * both. Default false: not traced, so programs that never ask send what
     * they sent before. See tchannel/trace.h and docs/library.md. */
    bool trace;
    /* The channel's clock: monotonic milliseconds, with clock_ud. NULL: the
     * system's monotonic clock. Every deadline the channel and its
     * connections keep (call timeouts, TTLs of requests still arriving, the
     * frame timeout, idle connections, peers' backoff) is read from it, so
     * a test can replace it to drive a timeout without waiting for it. */
    tch_clock_cb now_ms;
    void *clock_ud;
    /* Where the channel gets its memory (tchannel/common.h); NULL: the C
     * library. The struct is copied; user_data must outlive the channel,
     * the inbound calls its handlers still hold and its sync responses.
     * The channel, its connections (buffers, reassembly, messages),
     * transport, calls, inbound calls, pings, hooks, the json and thrift
     * schemes' per-call work, the tracer, Hyperbahn's advertiser and a VCR
     * on the channel (and its cassettes) use it. libevent's, jansson's and
     * the Thrift values' memory do not (docs/library.md lists what does
     * not). One missing callback is TCH_EINVAL. */
    const tch_allocator *allocator;
} tch_channel_options;

#define TCH_IDLE_NEVER UINT32_MAX /* idle_timeout_ms, frame_timeout_ms */
#define TCH_NO_LIMIT SIZE_MAX     /* max_connections, the byte budgets */

/* Makes a channel named name (1 to 255 bytes) on base; opts may be NULL
 * (defaults). *out gets the channel, or NULL on failure. Returns 0,
 * TCH_EINVAL (no base or out, a bad name, an unknown checksum_type, a
 * process_name over 127 bytes; err says which), TCH_ENOMEM. */
int tch_channel_new(struct event_base *base, const char *name,
                    const tch_channel_options *opts, tch_channel **out,
                    tch_error *err);
/* Closes listeners and connections; outstanding calls fail with
 * TCH_ECLOSED (callbacks run before this returns). Called from one of the
 * channel's own callbacks or handlers, it stops taking calls at once and
 * does the rest from the event loop, when that callback has returned. */
void tch_channel_free(tch_channel *ch);

/* Graceful close: stops listening and taking new calls (inbound ones get a
 * Declined error frame, outbound ones TCH_ECLOSED), lets calls in flight
 * finish and their answers reach the socket, closes every connection, then
 * runs cb from the loop. Calls still in flight after timeout_ms are failed
 * (0: wait as long as they take). Free the channel from cb or after it.
 * Returns 0, TCH_ESTATE (already closing), TCH_ENOMEM. */
typedef void (*tch_closed_cb)(tch_channel *ch, void *ud);
int tch_channel_close(tch_channel *ch, uint32_t timeout_ms, tch_closed_cb cb,
                      void *ud);

const char *tch_channel_name(const tch_channel *ch);
/* The channel's allocator (its copy of opts.allocator), or NULL for the C
 * library: for layers above that allocate on its behalf. Valid as long as
 * the channel. */
const tch_allocator *tch_channel_allocator(const tch_channel *ch);
struct event_base *tch_channel_base(const tch_channel *ch);

/* Addresses. Wherever a HOST:PORT is taken (listen, peers, a call's
 * host_port, ping, Hyperbahn routers), HOST is a host name ("localhost",
 * a name in /etc/hosts or DNS), an IPv4 address, or an IPv6 address in
 * brackets ("[::1]:4040"), 63 bytes at most in all. A malformed one is
 * TCH_EINVAL naming it. */

/* Listens on host_port ("127.0.0.1:0" when NULL: an ephemeral port).
 * Listening twice is TCH_ESTATE. A host name is looked up here with
 * getaddrinfo, which blocks: this is a setup call, for before the loop
 * runs. The first of its addresses that binds is used, IPv4 ones first.
 * Returns 0, TCH_EINVAL (a malformed host_port), TCH_ESTATE (listening
 * already), TCH_EIO (lookup, bind or listen failed; err says which),
 * TCH_ENOMEM. */
int tch_channel_listen(tch_channel *ch, const char *host_port, tch_error *err);
bool tch_channel_is_listening(const tch_channel *ch);
/* The local IP address ("10.0.0.5", "[fe80::1]") through which this host
 * reaches host_port, for a service that announces where to call it back
 * (Hyperbahn advertise listens there). A name is looked up (blocks). 0, or
 * TCH_EINVAL (malformed, or ip too small: TCH_IP_TEXT_MAX is enough),
 * TCH_ENOTFOUND (no such host), TCH_EIO (no route). */
#define TCH_IP_TEXT_MAX 48
int tch_local_ip_towards(const char *host_port, char *ip, size_t cap);
/* The numeric "host:port" actually bound ("127.0.0.1:4040", "[::1]:4040"),
 * never a name, or NULL when not listening; valid until the channel stops
 * listening (tch_channel_close) or is freed. It is also what the channel
 * announces as host_port in the init handshake (0.0.0.0:0 when not
 * listening), as the Node peer wants it. */
const char *tch_channel_host_port(const tch_channel *ch);

/* Open connections, inbound and outbound (for tests and tools). */
size_t tch_channel_connection_count(const tch_channel *ch);

/* Known peers for calls that give no host_port. A peer is known by the
 * string given: "localhost:4040" and "127.0.0.1:4040" are two peers, each
 * with its own connection and backoff. A name is checked for form here and
 * looked up when a call first connects to it. Returns 0 (also for a peer
 * known already), TCH_EINVAL (a malformed host_port), TCH_ENOMEM. */
int tch_channel_add_peer(tch_channel *ch, const char *host_port, tch_error *err);
/* Forgets a known peer (spelled as it was added): later calls that give no
 * host_port no longer choose it; calls in flight and its connections are
 * left alone. TCH_ENOTFOUND when it is not a known peer. */
int tch_channel_remove_peer(tch_channel *ch, const char *host_port);

/* 0 when host_port is what peers, routers and listen take (a host name, an
 * IPv4 address or an [IPv6] address, and a port 0-65535); otherwise
 * TCH_EINVAL with a message naming it. Looks nothing up. For command lines
 * that check their options before starting anything. */
int tch_host_port_check(const char *host_port, tch_error *err);

/* Host names of peers are looked up asynchronously with libevent's evdns,
 * never blocking the loop; the addresses are tried in order. By default the
 * channel makes its own resolver on first use (from /etc/resolv.conf and
 * /etc/hosts) and frees it with the channel. This makes it use dns
 * instead, which stays the caller's: free it after the channel (or set
 * NULL first). Set it before the first call: lookups already running on
 * the channel's own resolver then fail. A lookup that fails fails the connection's calls with
 * TCH_EIO (network error: retried and backed off like a refused
 * connection), message `resolve "NAME": why`. */
void tch_channel_set_resolver(tch_channel *ch, struct evdns_base *dns);

/* ---- inbound ---------------------------------------------------------- */

typedef struct tch_inbound tch_inbound;
typedef void (*tch_handler_cb)(tch_inbound *call, void *ud);

/* service NULL means the channel's own name. Registering the same
 * (service, endpoint) twice replaces the handler. Returns 0, TCH_EINVAL
 * (no endpoint or fn), TCH_ENOMEM. */
int tch_channel_register(tch_channel *ch, const char *service,
                         const char *endpoint, tch_handler_cb fn, void *ud);
/* Like tch_channel_register; the channel calls free_ud(ud) when the
 * handler is replaced or the channel freed (for wrappers such as the json
 * and thrift schemes that allocate a context per endpoint). free_ud(ud)
 * also runs when registering fails. Returns as tch_channel_register. */
int tch_channel_register_with(tch_channel *ch, const char *service,
                              const char *endpoint, tch_handler_cb fn,
                              void *ud, void (*free_ud)(void *));
/* Called for calls no registered handler takes; without one such calls get
 * a BadRequest error frame naming the service and endpoint. */
void tch_channel_set_fallback(tch_channel *ch, tch_handler_cb fn, void *ud);

tch_slice tch_inbound_service(const tch_inbound *in);
tch_slice tch_inbound_endpoint(const tch_inbound *in); /* arg1 */
tch_slice tch_inbound_arg2(const tch_inbound *in);
tch_slice tch_inbound_arg3(const tch_inbound *in);
/* The TTL left when the request was complete: the caller's TTL less the
 * time its frames took to arrive (counted from the first). */
uint32_t tch_inbound_ttl_ms(const tch_inbound *in);
/* The caller's name (transport header "cn"), empty when it sent none. */
tch_slice tch_inbound_caller(const tch_inbound *in);
/* Call flags of the request (0x02: streaming). */
uint8_t tch_inbound_flags(const tch_inbound *in);
tch_trace tch_inbound_trace(const tch_inbound *in);
size_t tch_inbound_header_count(const tch_inbound *in);
tch_kv tch_inbound_header_at(const tch_inbound *in, size_t i);
/* Transport header by key; returns true and sets *value when present. */
bool tch_inbound_header(const tch_inbound *in, const char *key, tch_slice *value);
/* Remote "host:port" as announced in the peer's init, or "" if unknown.
 * A client that does not listen announces "0.0.0.0:0". */
const char *tch_inbound_peer(const tch_inbound *in);
/* The caller's socket address, "IP:PORT" or "[IP6]:PORT", or "" once the
 * call's connection is gone. Valid until the handler returns. */
const char *tch_inbound_remote_addr(const tch_inbound *in);
/* true once the call can no longer be answered usefully (TTL passed, caller
 * cancelled, connection gone). Answering is still required. */
bool tch_inbound_is_done(const tch_inbound *in);
/* The channel serving the call; NULL once the call is done. */
tch_channel *tch_inbound_channel(const tch_inbound *in);

/* Answer with a call response: code 0 (ok) or 1 (application error).
 * Frees the inbound. Returns 0, TCH_ECLOSED (answer dropped) when the call
 * is already done, or the send's error (TCH_ETOOBIG: an arg over the
 * protocol's limit; TCH_ENOMEM), when the caller gets an Unexpected error
 * frame instead; the inbound is freed either way. */
int tch_inbound_respond(tch_inbound *in, uint8_t code, tch_slice arg2,
                        tch_slice arg3);
/* Like tch_inbound_respond, with transport headers on the response; the
 * same returns. */
int tch_inbound_respond_with(tch_inbound *in, uint8_t code, tch_slice arg2,
                             tch_slice arg3, const tch_kv *headers,
                             size_t nheaders);
/* Answer with an error frame (tch_proto_code). Frees the inbound. Returns
 * 0, TCH_ECLOSED (the call was already done), TCH_ENOMEM. */
int tch_inbound_respond_error(tch_inbound *in, uint8_t code, const char *msg);

/* Faults, for servers that test their callers (tchannel-mock's stubs). */

/* Like tch_inbound_respond, but the answer's checksum is deliberately
 * wrong, so a caller that verifies checksums (this library, the Node and
 * Go peers) rejects it. A request sent without a checksum is answered with
 * a wrong crc32c. Frees the inbound; TCH_ECLOSED as tch_inbound_respond. */
int tch_inbound_respond_bad_checksum(tch_inbound *in, uint8_t code, tch_slice arg2,
                                     tch_slice arg3);
/* Closes the connection the call came on instead of answering, as if the
 * network had dropped it: the call is finished (the inbound is freed),
 * the connection's other inbound calls are done (their answers dropped),
 * its outgoing calls fail with TCH_ECLOSED, and output already queued is
 * flushed first. why (may be NULL) goes into the log line and the event
 * hooks. Returns 0, or TCH_ECLOSED when the call was already done. */
int tch_inbound_close_connection(tch_inbound *in, const char *why);

/* ---- outbound ----------------------------------------------------------- */

/* Which failures a call retries on (transport header "re"). */
typedef enum tch_retry_on {
    TCH_RETRY_DEFAULT = 0,     /* connection errors */
    TCH_RETRY_NEVER,           /* "n" */
    TCH_RETRY_CONNECTION,      /* "c": network errors, busy, declined */
    TCH_RETRY_TIMEOUT,         /* "t": timeouts, busy, declined */
    TCH_RETRY_CONNECTION_TIMEOUT, /* "ct" */
} tch_retry_on;

/* Transport headers a call may always give besides as/cn/re/sk/rd. The
 * limit is 128 in all on the wire, what the Node peer accepts (nh is one
 * byte): a call that gives some of those five itself may give that many
 * more (the library adds only those not given). */
#define TCH_MAX_TRANSPORT_HEADERS 123
/* tch_call_opts.traced: the traced flag (0x01) sent with a call. */
typedef enum tch_traced {
    TCH_TRACED_DEFAULT = 0, /* the parent's flag, else the channel's trace */
    TCH_TRACED_ON,
    TCH_TRACED_OFF,
} tch_traced;

#define TCH_RETRY_LIMIT_NONE (-1)
#define TCH_RETRY_LIMIT_DEFAULT 4

typedef struct tch_call_opts {
    const char *service;  /* required */
    tch_slice endpoint;   /* arg1, required */
    tch_slice arg2;
    tch_slice arg3;
    const char *host_port; /* NULL: choose among known peers */
    uint32_t timeout_ms;   /* 0: the channel's default */
    const tch_kv *headers; /* transport headers (as, cn are added when absent) */
    size_t nheaders;
    const char *arg_scheme; /* value of the "as" header; default "raw" */
    const tch_trace *trace; /* parent span; NULL: the inbound call being
                               handled (if any), else a new trace */
    tch_retry_on retry_on;
    int retry_limit;       /* retries after the first try: 0 means the
                              default (4); TCH_RETRY_LIMIT_NONE for none */
    const char *shard_key;        /* "sk" */
    const char *routing_delegate; /* "rd" */
    uint32_t *cancel_handle;      /* if set, receives a handle for tch_channel_cancel */
    tch_traced traced;     /* this call's traced flag */
    /* true: endpoint, arg2 and arg3 are read where they are (for every
     * attempt) instead of being copied when the call starts, which saves a
     * copy of each large body. They must then stay valid and unchanged
     * until cb has run, or until tch_channel_call returns an error. The
     * other fields are always copied. With an outbound hook installed they
     * are copied before the hook sees the call, since a hook may hold it
     * past the callback. */
    bool borrow_args;
} tch_call_opts;

/* The outcome of a call. status is 0 when a call response arrived (code 0
 * or 1, args set), TCH_EREMOTE when the peer answered with an error frame,
 * or a local failure (TCH_ETIMEOUT, TCH_ECLOSED, TCH_EIO, TCH_ECHECKSUM,
 * TCH_ETOOBIG, TCH_EPROTO...). For every non-zero status, error_code holds
 * the matching tch_proto_code (a local timeout is TCH_PCODE_TIMEOUT, a
 * connection failure TCH_PCODE_NETWORK) and message says what happened. A
 * peer that is not TChannel fails the call with TCH_EPROTO, message `peer
 * HOST:PORT is not speaking TChannel: it sent "..." instead of an init
 * response`; a timeout while the connection was not ready says why (the
 * lookup, the connect, or `peer HOST:PORT did not answer the TChannel
 * handshake within N ms`). */
typedef struct tch_response {
    int status;
    uint8_t code;
    uint8_t error_code;
    const char *message;
    tch_slice arg2;
    tch_slice arg3;
    const tch_kv *headers;
    size_t nheaders;
    const char *peer; /* host:port that answered, or "" */
} tch_response;

typedef void (*tch_call_cb)(const tch_response *res, void *ud);

/* Cancels a call started with a cancel_handle: the peer gets a cancel frame
 * (so it can stop work) and the callback gets status TCH_ECANCELED (code
 * cancelled) from the loop; a retry waiting to start is not started.
 * TCH_ENOTFOUND when the call already finished or its final outcome is
 * decided (from the call's own callback, say); TCH_ESTATE while the
 * outbound hook holds it. */
int tch_channel_cancel(tch_channel *ch, uint32_t handle, const char *why);

/* Pings host_port (a ping req frame; the peer's library answers it, no
 * handler involved). cb runs once from the loop: status 0 with the round
 * trip in microseconds, TCH_ETIMEOUT, or a connection error. Returns 0
 * (cb will run), or (cb will not run) TCH_EINVAL (a malformed host_port),
 * TCH_ECLOSED (the channel is closing), TCH_EIO, TCH_ENOMEM. */
typedef void (*tch_ping_cb)(int status, uint64_t rtt_us, void *ud);
int tch_channel_ping(tch_channel *ch, const char *host_port, uint32_t timeout_ms,
                     tch_ping_cb cb, void *ud, tch_error *err);

/* Starts a call. cb runs exactly once, from the event loop (never inside
 * tch_channel_call itself). Returns 0, or an error (and cb is not called)
 * when the options are invalid or the first attempt cannot even start (no
 * peers, a malformed host:port, the pending-call limit, a closing
 * channel). With an outbound hook installed, such attempt failures reach
 * cb instead, since the hook decides when the attempt starts.
 * Returns 0, TCH_EINVAL (bad options: no service or endpoint, too many
 * transport headers, a malformed host_port...; err names it), TCH_ETOOBIG
 * (an arg over max_arg_size, the pending-call limit), TCH_ENOTFOUND (no
 * host_port and no known peer), TCH_ECLOSED (the channel is closing),
 * TCH_EIO, TCH_ENOMEM. */
int tch_channel_call(tch_channel *ch, const tch_call_opts *opts,
                     tch_call_cb cb, void *ud, tch_error *err);

/* How an error may be retried, as tchannel-python classifies it. */
typedef enum tch_retryability {
    TCH_NOT_RETRYABLE = 0,   /* bad request, cancelled, unhealthy, fatal */
    TCH_RETRYABLE,           /* busy, declined: the request was not handled */
    TCH_MAYBE_RETRYABLE,     /* timeout, unexpected, network: only if idempotent */
} tch_retryability;
/* An unknown code is TCH_NOT_RETRYABLE. */
tch_retryability tch_proto_code_retryability(uint8_t code);

/* ---- the outbound hook (the VCR plugs in here) ------------------------- */

/* An outgoing call before it is sent. The hook must resolve it exactly once,
 * now or later, with tch_outbound_forward (send it; an observer may watch
 * the answer) or tch_outbound_answer (answer it locally). */
typedef struct tch_outbound tch_outbound;
typedef void (*tch_outbound_hook_cb)(tch_outbound *call, void *ud);

/* One hook per channel; NULL removes it. A hook must resolve the calls it
 * holds before the channel is freed. */
void tch_channel_set_outbound_hook(tch_channel *ch, tch_outbound_hook_cb fn,
                                   void *ud);
/* The request as made (owned by the call; valid until it is resolved). */
const tch_call_opts *tch_outbound_request(const tch_outbound *call);
tch_channel *tch_outbound_channel(const tch_outbound *call);
/* Sends the call (with retries). observer, if not NULL, sees the final
 * response just before the caller's callback does. */
void tch_outbound_forward(tch_outbound *call, tch_call_cb observer, void *ud);
/* A check on each attempt's outcome: 0 lets res stand; a negative TCH_E*
 * code replaces it with a local failure of that status, error code
 * Unexpected (TCH_PCODE_UNEXPECTED) and why->msg as the message, which is
 * final (never retried). For a hook whose own work on the answer can fail
 * (the VCR saving a recording): the caller then hears that it failed
 * instead of an answer whose side effect was lost. */
typedef int (*tch_outbound_check_cb)(const tch_response *res, tch_error *why, void *ud);
/* Like tch_outbound_forward, with check in place of an observer. */
void tch_outbound_forward_checked(tch_outbound *call, tch_outbound_check_cb check, void *ud);
/* Answers the call locally; res is copied. The caller's callback runs from
 * the event loop. */
void tch_outbound_answer(tch_outbound *call, const tch_response *res);

/* The inbound call whose handler is running right now on this channel (so
 * code deep in a handler can read it, and calls made from it inherit its
 * trace), or NULL. Only valid during the handler's synchronous part. */
tch_inbound *tch_channel_current(const tch_channel *ch);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
