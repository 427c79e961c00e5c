/* Internal structures of the channel layer, shared by channel.c (lifecycle,
 * connections, peers), inbound.c (serving) and outbound.c (calling). */
#ifndef TCH_CHANNEL_INTERNAL_H
#define TCH_CHANNEL_INTERNAL_H

#include <tchannel/channel.h>
#include <tchannel/hooks.h>

#include "alloc.h"
#include "intmap.h"
#include "transport.h"

#include <event2/event.h>
#include <event2/event_struct.h>

typedef struct chconn chconn;
typedef struct outcall outcall;
typedef struct channel_hooks channel_hooks;

/* One connection (inbound or outbound) and the calls riding on it. */
struct chconn {
    tch_channel *ch;
    tch_conn *conn;      /* the protocol state; the channel implements its events */
    tch_transport *t;    /* moves conn's bytes to and from the socket */
    int outbound;
    char host_port[64]; /* dialled address, or the peer's announced one */
    tch_intmap calls;    /* our outgoing call ids -> outcall* */
    tch_intmap inbound;  /* peer's call ids -> tch_inbound* */
    tch_intmap pings;    /* our ping ids -> ping* */
    uint64_t last_active_ms; /* for closing idle connections */
    int closing;
    char *draining; /* the peer's "draining: why" notice: no new calls here */
    int peer_failed; /* counted against its peer already: once per connection */
    struct event *handshake_timer; /* fails a connection that never inits */
    chconn *prev, *next;
};

/* A known peer and its health: failing peers are backed off. */
typedef struct peer {
    char host_port[64];
    int failures;
    uint64_t backoff_until_ms;
} peer;

typedef struct handler_entry {
    char *service;
    char *endpoint;
    tch_handler_cb fn;
    void *ud;
    void (*free_ud)(void *);
} handler_entry;

struct tch_channel {
    /* Where everything the channel makes comes from: NULL (the C library)
     * or &alloc_copy (opts.allocator, copied). */
    const tch_allocator *alloc;
    tch_allocator alloc_copy;
    struct event_base *base;
    char *name;
    char process_name[128];
    tch_channel_options opts;
    tch_listener *listener;
    struct evdns_base *dns; /* looks up peers' host names; made on first use */
    int own_dns;            /* dns is ours to free (not tch_channel_set_resolver's) */
    handler_entry *handlers;
    size_t nhandlers, cap_handlers;
    tch_handler_cb fallback;
    void *fallback_ud;
    chconn *conns; /* every live connection */
    peer *peers; /* known peers */
    size_t npeers, cap_peers;
    size_t next_peer;
    tch_outbound_hook_cb hook;
    void *hook_ud;
    channel_hooks *hooks;  /* event observers (hooks.c); NULL until one is added */
    size_t nhooks;         /* live ones: the one branch a call pays without */
    uint64_t clock_wall_us, clock_mono_us; /* tch_channel_now_us's origin */
    tch_inbound *current; /* inbound whose handler is running */
    tch_intmap cancellable; /* cancel handle -> tch_outbound* */
    tch_outbound *outbound;  /* every live call, to end them when freed */
    uint32_t next_handle;
    struct event *idle_sweep; /* when opts.idle_timeout_ms is set */
    size_t ninbound;        /* accepted connections open, for max_connections */
    tch_mem_budget budget;  /* bytes of requests arriving or being served */
    tch_inbound *detached;  /* calls detached (cancelled, timed out, connection
                               gone) that their handler still holds: their
                               bytes stay in budget until answered */
    /* graceful close (tch_channel_close) */
    int closing;
    int close_reported;
    struct event *close_done;    /* runs close_cb from the loop */
    struct event *close_timeout;
    tch_closed_cb close_cb;
    void *close_ud;
    uint64_t rng;
    int freeing;
    int depth;        /* user callbacks running right now */
    int free_pending; /* tch_channel_free was called from one of them */
    /* Fields of the call or answer being encoded (~8 KiB, so neither on the
     * stack nor malloc'd per message). Filled and sent in one go: sending
     * runs no user code, so nothing can reach it halfway. */
    tch_call_fields fields;
};

/* Around every call into user code that the channel outlives on the way
 * back: tch_channel_free from inside such code is deferred to the loop. */
#define CHANNEL_USER_CALL(ch, call) \
    do {                            \
        (ch)->depth++;              \
        call;                       \
        (ch)->depth--;              \
    } while (0)

/* channel.c */
/* The channel's one clock (opts.now_ms, or the monotonic clock). */
uint64_t tch__channel_now_ms(const tch_channel *ch);
/* One line to opts.log, when set: a limit acted. */
void tch__channel_log(tch_channel *ch, const char *fmt, ...) TCH_PRINTF(2, 3);
/* While closing: closes idle connections and reports when none are left. */
void tch__channel_close_progress(tch_channel *ch);
peer *tch__channel_find_peer(tch_channel *ch, const char *host_port);
void tch__channel_peer_result(tch_channel *ch, const char *host_port, int ok);
chconn *tch__chconn_for_peer(tch_channel *ch, const char *host_port, tch_error *err);
const char *tch__channel_host_port_or_zero(const tch_channel *ch);
uint64_t tch__channel_random(tch_channel *ch);

/* hooks.c: events for the observers of tchannel/hooks.h */
#define HOOKS_ON(ch) ((ch)->nhooks != 0 && !(ch)->freeing)
void tch__hooks_init(tch_channel *ch);
void tch__hooks_free(tch_channel *ch);
/* An outgoing call's event; res is NULL for SEND_REQUEST. */
void tch__hooks_call_out(tch_channel *ch, int kind, const tch_call_opts *req,
                    const tch_trace *t, const char *peer, int attempt,
                    uint64_t start_us, const tch_response *res);
/* An incoming call's event: RECEIVE_REQUEST when end is NULL, else
 * SEND_RESPONSE with end's outcome (and ERROR after it for a failure). */
void tch__hooks_call_in(tch_channel *ch, const tch_call_msg *msg, const char *peer,
                   uint64_t start_us, const tch_response *end);

/* ping.c */
void tch__ping_on_response(chconn *cc, uint32_t id);
void tch__ping_fail_all(chconn *cc, int status);

/* inbound.c */
void tch__inbound_dispatch(chconn *cc, tch_call_msg *msg);
void tch__inbound_cancel(chconn *cc, uint32_t id);
void tch__inbound_detach_all(chconn *cc);
/* At free: detached calls still held give their bytes back (the budget
 * goes with the channel). */
void tch__inbound_release_detached(tch_channel *ch);

/* outbound.c */
void tch__outbound_on_response(chconn *cc, tch_call_msg *msg);
void tch__outbound_on_error_frame(chconn *cc, uint32_t id, const tch_error_frame *e);
void tch__outbound_on_failed(chconn *cc, uint32_t id, int status, const char *why);
void tch__outbound_fail_all(chconn *cc, int status, const char *why);
/* Ends calls on no connection (answers waiting for the loop) at free. */
void tch__outbound_end_all(tch_channel *ch);

#endif
