/* Channel lifecycle, listening, connections and peers, handler registry.
 * Serving lives in inbound.c, calling in outbound.c. */
#include "channel_internal.h"

#include "array.h"

#include <event2/dns.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void idle_sweep(evutil_socket_t fd, short what, void *arg);
static void arm_idle_sweep(tch_channel *ch);

static const tch_channel_options default_opts = {
    .process_name = NULL,
    .checksum_type = TCH_CHECKSUM_CRC32C,
    .default_timeout_ms = 5000,
    .max_arg_size = 64u << 20,
    .max_pending_calls = 65536,
    .idle_timeout_ms = 5 * 60 * 1000,
    .frame_timeout_ms = 10 * 1000,
    .max_connections = 1024,
    .max_partial_bytes = (size_t)128 << 20,
    .max_request_bytes = (size_t)256 << 20,
};

/* Why name and opts cannot make a channel, or 0. */
static int check_new_args(const struct event_base *base, const char *name,
                          const tch_channel_options *opts, tch_error *err) {
    if (!base)
        return tch_error_set(err, TCH_EINVAL, "tch_channel_new: no event_base");
    if (!name || !*name)
        return tch_error_set(err, TCH_EINVAL, "tch_channel_new: the channel name is empty");
    if (strlen(name) > 255)
        return tch_error_set(err, TCH_EINVAL,
                             "tch_channel_new: channel name longer than 255 bytes (%zu)",
                             strlen(name));
    if (!opts)
        return 0;
    if (opts->checksum_type > TCH_CHECKSUM_CRC32C && opts->checksum_type != TCH_CHECKSUM_NONE)
        return tch_error_set(err, TCH_EINVAL,
                             "tch_channel_new: checksum_type %d is not one of DEFAULT (0), "
                             "CRC32 (1), FARMHASH (2), CRC32C (3), NONE (0x80)",
                             (int)opts->checksum_type);
    const tch_allocator *a = opts->allocator;
    if (a && (!a->malloc_cb || !a->realloc_cb || !a->free_cb))
        return tch_error_set(err, TCH_EINVAL,
                             "tch_channel_new: the allocator lacks malloc_cb, realloc_cb or free_cb");
    if (opts->process_name && strlen(opts->process_name) >= 128)
        return tch_error_set(err, TCH_EINVAL,
                             "tch_channel_new: process_name longer than 127 bytes (%zu)",
                             strlen(opts->process_name));
    return 0;
}

static int new_failed(tch_channel **out, tch_error *err, const char *what) {
    *out = NULL;
    return tch_error_set(err, TCH_ENOMEM, "tch_channel_new: out of memory (%s)", what);
}

int tch_channel_new(struct event_base *base, const char *name, const tch_channel_options *opts,
                    tch_channel **out, tch_error *err) {
    if (!out)
        return tch_error_set(err, TCH_EINVAL, "tch_channel_new: out is NULL");
    *out = NULL;
    int rc = check_new_args(base, name, opts, err);
    if (rc)
        return rc;
    const tch_allocator *alloc = opts ? opts->allocator : NULL;
    tch_channel *ch = tch__calloc(alloc, 1, sizeof *ch);
    if (!ch)
        return new_failed(out, err, "channel");
    ch->alloc = tch__alloc_keep(&ch->alloc_copy, alloc); /* the caller's may go */
    ch->cancellable.alloc = ch->alloc;
    ch->base = base;
    ch->name = tch__strdup(ch->alloc, name);
    if (!ch->name) {
        tch__free(alloc, ch);
        return new_failed(out, err, "name");
    }
    ch->opts = default_opts;
    if (opts) {
        if (opts->checksum_type == TCH_CHECKSUM_NONE)
            ch->opts.checksum_type = 0; /* the wire's "none" */
        else if (opts->checksum_type != TCH_CHECKSUM_DEFAULT)
            ch->opts.checksum_type = opts->checksum_type;
        if (opts->default_timeout_ms)
            ch->opts.default_timeout_ms = opts->default_timeout_ms;
        if (opts->max_arg_size)
            ch->opts.max_arg_size = opts->max_arg_size;
        if (opts->max_pending_calls)
            ch->opts.max_pending_calls = opts->max_pending_calls;
        if (opts->idle_timeout_ms)
            ch->opts.idle_timeout_ms = opts->idle_timeout_ms;
        if (opts->frame_timeout_ms)
            ch->opts.frame_timeout_ms = opts->frame_timeout_ms;
        if (opts->max_connections)
            ch->opts.max_connections = opts->max_connections;
        if (opts->max_partial_bytes)
            ch->opts.max_partial_bytes = opts->max_partial_bytes;
        if (opts->max_request_bytes)
            ch->opts.max_request_bytes = opts->max_request_bytes;
        ch->opts.log = opts->log;
        ch->opts.log_ud = opts->log_ud;
        ch->opts.trace = opts->trace;
        ch->opts.now_ms = opts->now_ms;
        ch->opts.clock_ud = opts->clock_ud;
    }
    if (ch->opts.frame_timeout_ms == TCH_IDLE_NEVER)
        ch->opts.frame_timeout_ms = 0; /* inside the channel, 0 is never */
    ch->budget.limit = ch->opts.max_request_bytes;
    if (opts && opts->process_name)
        snprintf(ch->process_name, sizeof ch->process_name, "%s", opts->process_name);
    else
        snprintf(ch->process_name, sizeof ch->process_name, "%s[%ld]", name,
                 (long)getpid());
    ch->opts.process_name = ch->process_name;
    if (ch->opts.idle_timeout_ms == TCH_IDLE_NEVER)
        ch->opts.idle_timeout_ms = 0; /* inside the channel, 0 is never */
    /* the sweep also trims quiet connections' buffers: on even with no idle
     * timeout */
    ch->idle_sweep = evtimer_new(base, idle_sweep, ch);
    if (!ch->idle_sweep) {
        tch_channel_free(ch);
        return new_failed(out, err, "idle timer");
    }
    tch__hooks_init(ch);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ch->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^
              (uint64_t)(uintptr_t)ch;
    *out = ch;
    return 0;
}

uint64_t tch__channel_random(tch_channel *ch) {
    /* xorshift64*: trace ids and peer choice need spread, not secrecy */
    uint64_t x = ch->rng ? ch->rng : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    ch->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

void tch__channel_log(tch_channel *ch, const char *fmt, ...) {
    if (!ch->opts.log)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    CHANNEL_USER_CALL(ch, ch->opts.log(line, ch->opts.log_ud));
}

const char *tch_channel_name(const tch_channel *ch) { return ch->name; }
struct event_base *tch_channel_base(const tch_channel *ch) { return ch->base; }

/* ---- connections -------------------------------------------------------- */

static void chconn_unlink(chconn *cc) {
    tch_channel *ch = cc->ch;
    if (cc->prev)
        cc->prev->next = cc->next;
    else if (ch->conns == cc)
        ch->conns = cc->next;
    if (cc->next)
        cc->next->prev = cc->prev;
    if (!cc->outbound) /* each connection is unlinked once */
        ch->ninbound--;
    cc->prev = cc->next = NULL;
    if (!ch->conns && ch->idle_sweep) /* nothing left to sweep: leave the loop free */
        evtimer_del(ch->idle_sweep);
}

static void chconn_destroy(chconn *cc, int status, const char *why) {
    tch_channel *ch = cc->ch;
    chconn_unlink(cc);
    tch__outbound_fail_all(cc, status, why);
    tch__ping_fail_all(cc, status);
    tch__inbound_detach_all(cc);
    tch_intmap_free(&cc->pings);
    tch_intmap_free(&cc->calls);
    tch_intmap_free(&cc->inbound);
    tch_transport_free(cc->t);
    tch_conn_free(cc->conn); /* after its transport, which writes from it */
    if (cc->handshake_timer)
        event_free(cc->handshake_timer);
    tch__free(ch->alloc, cc->draining);
    tch__free(ch->alloc, cc);
    if (!ch->freeing)
        tch__channel_close_progress(ch);
}

static void touch(chconn *cc) {
    if (cc->ch->opts.idle_timeout_ms)
        cc->last_active_ms = tch__channel_now_ms(cc->ch);
}

static void on_call_req(void *ud, tch_call_msg *msg) {
    touch(ud);
    tch__inbound_dispatch(ud, msg);
}
static void on_call_res(void *ud, tch_call_msg *msg) {
    touch(ud);
    tch__outbound_on_response(ud, msg);
}
static void on_res_failed(void *ud, uint32_t id, int status, const char *why) {
    tch__outbound_on_failed(ud, id, status, why);
}
/* An error frame about no call: a peer that drains (the Node peer's
 * graceful shutdown) says so with Declined "draining: <why>" and answers
 * the calls already on the connection; new calls must go elsewhere. Other
 * notices carry nothing to act on (a protocol error fails the conn). */
static void on_connection_notice(chconn *cc, const tch_error_frame *e) {
    static const char prefix[] = "draining:";
    if (e->code != TCH_PCODE_DECLINED || cc->draining || e->message.len < sizeof prefix - 1 ||
        memcmp(e->message.ptr, prefix, sizeof prefix - 1) != 0)
        return;
    cc->draining = tch_slice_strdup_with(cc->ch->alloc, e->message); /* NULL on ENOMEM: not marked */
}

static void on_error_frame(void *ud, uint32_t id, const tch_error_frame *e) {
    if (id == TCH_ID_NONE)
        on_connection_notice(ud, e);
    else
        tch__outbound_on_error_frame(ud, id, e);
}
static void on_cancel(void *ud, uint32_t id) { tch__inbound_cancel(ud, id); }
static void on_ping_res(void *ud, uint32_t id) { tch__ping_on_response(ud, id); }
static int on_expects_response(void *ud, uint32_t id) {
    chconn *cc = ud;
    return tch_intmap_get(&cc->calls, id) != NULL;
}

static void on_ready(void *ud) {
    chconn *cc = ud;
    if (cc->handshake_timer)
        event_del(cc->handshake_timer);
    if (!cc->outbound) /* name inbound conns by what the peer announced */
        snprintf(cc->host_port, sizeof cc->host_port, "%s",
                 tch_conn_remote_host_port(cc->conn));
}
static void on_closed(void *ud, int status, const char *why) {
    chconn_destroy(ud, status, why);
}

/* A limit the connection's layers enforce acted (frame timeout, budget). */
static void on_limit(void *ud, const char *why) {
    chconn *cc = ud;
    tch__channel_log(cc->ch, "%s: %s connection %s: %s", cc->ch->name,
                cc->outbound ? "outbound" : "inbound",
                cc->host_port[0] ? cc->host_port : "(before init)", why);
}

/* The conn failed: its transport flushes what waits (the error frame that
 * tells the peer why) and closes; `closed` then ends the chconn. */
static void on_failed(void *ud, int status, const char *why) {
    chconn *cc = ud;
    if (cc->t)
        tch_transport_close(cc->t, status, why);
}

/* The conn has output waiting: its transport writes it. */
static void on_output(void *ud) {
    chconn *cc = ud;
    if (cc->t)
        tch_transport_want_write(cc->t);
}

static const tch_conn_events chconn_events = {
    .ready = on_ready, .call_req = on_call_req, .call_res = on_call_res,
    .res_failed = on_res_failed, .error_frame = on_error_frame,
    .cancel = on_cancel, .failed = on_failed, .expects_response = on_expects_response,
    .ping_res = on_ping_res, .limit = on_limit, .output = on_output,
};

static uint64_t owner_now_ms(void *ud) {
    chconn *cc = ud;
    return tch__channel_now_ms(cc->ch);
}

/* A peer that connects (or is dialled) and never completes the init
 * handshake is told why in an error frame and dropped; the calls waiting
 * on it fail. */
static void on_handshake_timeout(evutil_socket_t fd, short what, void *arg) {
    chconn *cc = arg;
    (void)fd, (void)what;
    char why[TCH_ERROR_MSG_MAX];
    tch_transport_explain_wait(cc->t, why, sizeof why); /* ours: lookup, connect, silence */
    if (!why[0]) /* the peer connected to us and sent no init */
        snprintf(why, sizeof why, "no init handshake within %u ms", cc->ch->opts.default_timeout_ms);
    tch__channel_log(cc->ch, "%s: closed %s connection %s: %s", cc->ch->name,
                cc->outbound ? "outbound" : "inbound", cc->host_port[0] ? cc->host_port : "(before init)", why);
    cc->closing = 1;
    tch__outbound_fail_all(cc, TCH_EIO, why); /* a network failure: retried elsewhere */
    tch_transport_close(cc->t, TCH_EIO, why); /* first: the close keeps this status */
    tch_conn_abort(cc->conn, why);
}

static int arm_handshake_timer(chconn *cc) {
    uint32_t ms = cc->ch->opts.default_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    cc->handshake_timer = evtimer_new(cc->ch->base, on_handshake_timeout, cc);
    return cc->handshake_timer && evtimer_add(cc->handshake_timer, &tv) == 0 ? 0 : TCH_ENOMEM;
}

const char *tch__channel_host_port_or_zero(const tch_channel *ch) {
    /* a client that does not listen announces 0.0.0.0:0 */
    return ch->listener ? tch_listener_host_port(ch->listener) : "0.0.0.0:0";
}

static tch_conn_config conn_config(tch_channel *ch, int outbound) {
    tch_conn_config cfg = {
        .outbound = outbound,
        .host_port = tch__channel_host_port_or_zero(ch),
        .process_name = ch->process_name,
        .max_arg_size = ch->opts.max_arg_size,
        .max_partial_bytes = ch->opts.max_partial_bytes,
        .frame_timeout_ms = ch->opts.frame_timeout_ms,
        .shared = &ch->budget,
        .alloc = ch->alloc,
    };
    return cfg;
}

static chconn *chconn_new(tch_channel *ch, int outbound, const char *host_port) {
    chconn *cc = tch__calloc(ch->alloc, 1, sizeof *cc);
    if (!cc)
        return NULL;
    cc->calls.alloc = cc->inbound.alloc = cc->pings.alloc = ch->alloc;
    cc->ch = ch;
    cc->outbound = outbound;
    cc->last_active_ms = tch__channel_now_ms(ch);
    snprintf(cc->host_port, sizeof cc->host_port, "%s", host_port ? host_port : "");
    if (!outbound)
        ch->ninbound++;
    cc->next = ch->conns;
    if (ch->conns)
        ch->conns->prev = cc;
    ch->conns = cc;
    arm_idle_sweep(ch);
    return cc;
}

/* Over max_connections a new connection is told why (a fatal error frame,
 * which the peer reads as a refused handshake) and closed at once, rather
 * than left waiting in the listen backlog: the caller learns now, and the
 * server keeps accepting, so it can tell the next one too. */
static int refuse_over_cap(tch_channel *ch, evutil_socket_t fd) {
    if (ch->ninbound < ch->opts.max_connections)
        return 0;
    char why[128];
    snprintf(why, sizeof why, "too many connections: %zu are open (the limit); try again later",
             ch->ninbound);
    tch__channel_log(ch, "%s: refused a connection: %s", ch->name, why);
    uint8_t frame[256];
    size_t len;
    tch_error_frame e = {.code = TCH_PCODE_FATAL, .message = tch_slice_cstr(why)};
    if (tch_error_frame_encode(TCH_ID_NONE, &e, frame, sizeof frame, &len, NULL) == 0 &&
        send(fd, frame, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        /* best effort: the close tells it anyway */
    }
    /* Unread input (its init, say) would turn the close into a reset,
     * which can overtake the error frame: read what has come first. */
    uint8_t sink[4096];
    for (int i = 0; i < 16 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; i++)
        ;
    evutil_closesocket(fd);
    return 1;
}

static void accept_fd(evutil_socket_t fd, void *ud) {
    tch_channel *ch = ud;
    if (refuse_over_cap(ch, fd))
        return;
    chconn *cc = chconn_new(ch, 0, "");
    if (!cc) {
        evutil_closesocket(fd);
        return;
    }
    tch_conn_config cfg = conn_config(ch, 0);
    tch_transport_owner owner = {owner_now_ms, on_closed, cc, ch->alloc};
    cc->conn = tch_conn_new(&cfg, &chconn_events, cc);
    cc->t = cc->conn ? tch_transport_accept(ch->base, fd, cc->conn, &owner, NULL) : NULL;
    if (!cc->t) {
        if (!cc->conn)
            evutil_closesocket(fd);
        tch_conn_free(cc->conn);
        chconn_unlink(cc);
        tch__free(ch->alloc, cc);
        return;
    }
    arm_handshake_timer(cc); /* without it (ENOMEM) the conn just has no bound */
}

/* The resolver for peers' host names: the one the user set, or the
 * channel's own, made on first use from /etc/resolv.conf and /etc/hosts. */
static struct evdns_base *channel_dns(tch_channel *ch, tch_error *err) {
    if (ch->dns)
        return ch->dns;
    ch->dns = evdns_base_new(ch->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                           EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (!ch->dns) {
        tch_error_set(err, TCH_ENOMEM, "cannot start the DNS resolver");
        return NULL;
    }
    ch->own_dns = 1;
    /* 0x20 case randomizing trips servers that do not echo the case */
    evdns_base_set_option(ch->dns, "randomize-case:", "0");
    return ch->dns;
}

void tch_channel_set_resolver(tch_channel *ch, struct evdns_base *dns) {
    if (ch->own_dns)
        evdns_base_free(ch->dns, 1); /* lookups in flight answer nobody */
    ch->dns = dns;
    ch->own_dns = 0;
}

/* An outbound connection to host_port that is not closing, or a new one. */
chconn *tch__chconn_for_peer(tch_channel *ch, const char *host_port, tch_error *err) {
    for (chconn *cc = ch->conns; cc; cc = cc->next) {
        if (cc->outbound && !cc->closing && strcmp(cc->host_port, host_port) == 0 &&
            !tch_conn_has_failed(cc->conn))
            return cc;
    }
    tch_addr a;
    struct evdns_base *dns = NULL;
    if (tch_addr_parse(host_port, &a, err) || (!a.sslen && !(dns = channel_dns(ch, err))))
        return NULL;
    chconn *cc = chconn_new(ch, 1, host_port);
    if (!cc) {
        tch_error_set(err, TCH_ENOMEM, "out of memory");
        return NULL;
    }
    tch_conn_config cfg = conn_config(ch, 1);
    tch_transport_owner owner = {owner_now_ms, on_closed, cc, ch->alloc};
    cc->conn = tch_conn_new(&cfg, &chconn_events, cc);
    if (!cc->conn)
        tch_error_set(err, TCH_ENOMEM, "out of memory");
    else
        cc->t = tch_transport_connect(ch->base, dns, host_port, cc->conn, &owner, err);
    if (!cc->t) {
        tch_conn_free(cc->conn);
        chconn_unlink(cc);
        tch__free(ch->alloc, cc);
        return NULL;
    }
    arm_handshake_timer(cc);
    return cc;
}

size_t tch_channel_connection_count(const tch_channel *ch) {
    size_t n = 0;
    for (const chconn *cc = ch->conns; cc; cc = cc->next)
        n++;
    return n;
}

/* The sweep runs every half idle timeout but at least once a second (it
 * also gives quiet connections' read and write buffers back, up to 1 MiB
 * each), and only while the channel has connections: a channel with none
 * leaves nothing pending in the loop. */
#define SWEEP_MAX_MS 1000u
static void arm_idle_sweep(tch_channel *ch) {
    if (!ch->idle_sweep || evtimer_pending(ch->idle_sweep, NULL))
        return;
    uint32_t every = ch->opts.idle_timeout_ms / 2;
    if (!ch->opts.idle_timeout_ms || every > SWEEP_MAX_MS) /* none: trim only */
        every = SWEEP_MAX_MS;
    struct timeval tv = {every / 1000, (every % 1000) * 1000 + (every ? 0 : 1000)};
    evtimer_add(ch->idle_sweep, &tv);
}

/* Closes connections with nothing in flight and no traffic for the idle
 * timeout, or draining ones as soon as nothing is in flight; a later call
 * simply dials again. */
static void idle_sweep(evutil_socket_t fd, short what, void *arg) {
    tch_channel *ch = arg;
    (void)fd, (void)what;
    uint64_t now = tch__channel_now_ms(ch);
    for (chconn *cc = ch->conns; cc; cc = cc->next) {
        tch_conn *conn = cc->conn;
        /* the buffers kept for the next read and write go back: a quiet
         * connection holds none, a busy one allocates them again once */
        tch_conn_trim(conn);
        /* a request still arriving keeps it busy while its frames keep
         * coming, at most a frame timeout apart (a slow upload, not one
         * that stopped) */
        if (cc->closing || cc->calls.len || cc->inbound.len || cc->pings.len ||
            (tch_conn_partial_requests(conn) &&
             (!ch->opts.frame_timeout_ms ||
              now - tch_conn_partial_active_ms(conn) < ch->opts.frame_timeout_ms)) ||
            (!cc->draining && (!ch->opts.idle_timeout_ms ||
                               now - cc->last_active_ms < ch->opts.idle_timeout_ms)))
            continue;
        char why[96];
        snprintf(why, sizeof why, cc->draining ? "the peer is draining" : "idle for %u ms",
                 ch->opts.idle_timeout_ms);
        if (!cc->draining)
            tch__channel_log(ch, "%s: closed %s connection %s: %s (idle timeout)", ch->name,
                        cc->outbound ? "outbound" : "inbound",
                        cc->host_port[0] ? cc->host_port : "(before init)", why);
        cc->closing = 1;
        tch_transport_close(cc->t, TCH_ECLOSED, why);
    }
    if (ch->conns)
        arm_idle_sweep(ch);
}

/* ---- listening and peers ------------------------------------------------ */

int tch_channel_listen(tch_channel *ch, const char *host_port, tch_error *err) {
    if (ch->listener)
        return tch_error_set(err, TCH_ESTATE, "channel \"%s\" is already listening on %s",
                             ch->name, tch_listener_host_port(ch->listener));
    ch->listener = tch_listener_new(ch->base, host_port ? host_port : "127.0.0.1:0",
                                    accept_fd, ch, ch->alloc, err);
    return ch->listener ? 0 : (err ? err->code : TCH_EIO);
}

bool tch_channel_is_listening(const tch_channel *ch) { return ch->listener != NULL; }

const char *tch_channel_host_port(const tch_channel *ch) {
    return ch->listener ? tch_listener_host_port(ch->listener) : NULL;
}

uint64_t tch__channel_now_ms(const tch_channel *ch) {
    if (ch->opts.now_ms)
        return ch->opts.now_ms(ch->opts.clock_ud);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

peer *tch__channel_find_peer(tch_channel *ch, const char *host_port) {
    for (size_t i = 0; i < ch->npeers; i++)
        if (strcmp(ch->peers[i].host_port, host_port) == 0)
            return &ch->peers[i];
    return NULL;
}

/* Backs a failing peer off exponentially (100 ms doubling, at most 10 s);
 * one success restores it. */
void tch__channel_peer_result(tch_channel *ch, const char *host_port, int ok) {
    peer *p = tch__channel_find_peer(ch, host_port);
    if (!p)
        return;
    if (ok) {
        p->failures = 0;
        p->backoff_until_ms = 0;
        return;
    }
    if (p->failures < 16)
        p->failures++;
    uint64_t delay = 100u << (p->failures - 1);
    p->backoff_until_ms = tch__channel_now_ms(ch) + (delay > 10000 ? 10000 : delay);
}

int tch_host_port_check(const char *host_port, tch_error *err) {
    tch_addr a; /* the form only: a name is looked up when it is called */
    return tch_addr_parse(host_port, &a, err);
}

int tch_channel_add_peer(tch_channel *ch, const char *host_port, tch_error *err) {
    int rc = tch_host_port_check(host_port, err);
    if (rc)
        return rc;
    if (tch__channel_find_peer(ch, host_port))
        return 0;
    if (ch->npeers == ch->cap_peers) {
        peer *p = tch__array_grow_with(ch->alloc, ch->peers, &ch->cap_peers, sizeof *p, 4);
        if (!p)
            return tch_error_set(err, TCH_ENOMEM, "out of memory");
        ch->peers = p;
    }
    peer *p = &ch->peers[ch->npeers++];
    memset(p, 0, sizeof *p);
    snprintf(p->host_port, sizeof p->host_port, "%s", host_port);
    return 0;
}

int tch_channel_remove_peer(tch_channel *ch, const char *host_port) {
    peer *p = host_port ? tch__channel_find_peer(ch, host_port) : NULL;
    if (!p)
        return TCH_ENOTFOUND;
    size_t i = (size_t)(p - ch->peers);
    memmove(p, p + 1, (ch->npeers - i - 1) * sizeof *p);
    ch->npeers--;
    return 0;
}

void tch_channel_set_outbound_hook(tch_channel *ch, tch_outbound_hook_cb fn,
                                   void *ud) {
    ch->hook = fn;
    ch->hook_ud = ud;
}

tch_inbound *tch_channel_current(const tch_channel *ch) { return ch->current; }

/* ---- handlers ------------------------------------------------------------ */

int tch_channel_register(tch_channel *ch, const char *service,
                         const char *endpoint, tch_handler_cb fn, void *ud) {
    return tch_channel_register_with(ch, service, endpoint, fn, ud, NULL);
}

static void release_ud(handler_entry *h) {
    if (h->free_ud)
        h->free_ud(h->ud);
}

int tch_channel_register_with(tch_channel *ch, const char *service,
                              const char *endpoint, tch_handler_cb fn,
                              void *ud, void (*free_ud)(void *)) {
    if (!endpoint || !fn) {
        if (free_ud)
            free_ud(ud);
        return TCH_EINVAL;
    }
    if (!service)
        service = ch->name;
    for (size_t i = 0; i < ch->nhandlers; i++) {
        handler_entry *h = &ch->handlers[i];
        if (strcmp(h->service, service) == 0 && strcmp(h->endpoint, endpoint) == 0) {
            release_ud(h);
            h->fn = fn;
            h->ud = ud;
            h->free_ud = free_ud;
            return 0;
        }
    }
    if (ch->nhandlers == ch->cap_handlers) {
        handler_entry *p = tch__array_grow_with(ch->alloc, ch->handlers, &ch->cap_handlers, sizeof *p, 8);
        if (!p) {
            if (free_ud)
                free_ud(ud);
            return TCH_ENOMEM;
        }
        ch->handlers = p;
    }
    handler_entry *h = &ch->handlers[ch->nhandlers];
    h->service = tch__strdup(ch->alloc, service);
    h->endpoint = tch__strdup(ch->alloc, endpoint);
    if (!h->service || !h->endpoint) {
        tch__free(ch->alloc, h->service);
        tch__free(ch->alloc, h->endpoint);
        if (free_ud)
            free_ud(ud);
        return TCH_ENOMEM;
    }
    h->fn = fn;
    h->ud = ud;
    h->free_ud = free_ud;
    ch->nhandlers++;
    return 0;
}

void tch_channel_set_fallback(tch_channel *ch, tch_handler_cb fn, void *ud) {
    ch->fallback = fn;
    ch->fallback_ud = ud;
}

/* ---- graceful close ------------------------------------------------------ */

void tch__channel_close_progress(tch_channel *ch) {
    if (!ch->closing || ch->close_reported)
        return;
    for (chconn *cc = ch->conns; cc; cc = cc->next)
        if (cc->calls.len || cc->inbound.len)
            return; /* answers still to come or to give */
    for (chconn *cc = ch->conns; cc; cc = cc->next) {
        if (!cc->closing) {
            cc->closing = 1;
            tch_transport_close(cc->t, TCH_ECLOSED, "channel closed"); /* flushes first */
        }
    }
    if (!ch->conns) {
        ch->close_reported = 1;
        event_active(ch->close_done, EV_TIMEOUT, 0);
    }
}

static void on_close_done(evutil_socket_t fd, short what, void *arg) {
    tch_channel *ch = arg;
    (void)fd, (void)what;
    if (ch->close_cb)
        CHANNEL_USER_CALL(ch, ch->close_cb(ch, ch->close_ud));
}

static void on_close_timeout(evutil_socket_t fd, short what, void *arg) {
    tch_channel *ch = arg;
    (void)fd, (void)what;
    while (ch->conns && !ch->close_reported)
        chconn_destroy(ch->conns, TCH_ECLOSED, "channel closed before the call finished");
}

int tch_channel_close(tch_channel *ch, uint32_t timeout_ms, tch_closed_cb cb,
                      void *ud) {
    if (ch->closing)
        return TCH_ESTATE;
    if (!ch->close_done)
        ch->close_done = event_new(ch->base, -1, 0, on_close_done, ch);
    if (!ch->close_timeout)
        ch->close_timeout = evtimer_new(ch->base, on_close_timeout, ch);
    if (!ch->close_done || !ch->close_timeout)
        return TCH_ENOMEM; /* both are freed with the channel */
    ch->closing = 1;
    ch->close_cb = cb;
    ch->close_ud = ud;
    tch_listener_free(ch->listener);
    ch->listener = NULL;
    if (timeout_ms) {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        evtimer_add(ch->close_timeout, &tv);
    }
    tch__channel_close_progress(ch);
    return 0;
}

static void free_now(evutil_socket_t fd, short what, void *arg) {
    tch_channel *ch = arg;
    (void)fd, (void)what;
    ch->free_pending = 0;
    tch_channel_free(ch);
}

void tch_channel_free(tch_channel *ch) {
    if (!ch || ch->freeing || ch->free_pending)
        return;
    if (ch->depth > 0) {
        /* Called from a callback: the code that called it still uses the
         * channel, its connections and calls on the way back. Take no new
         * calls, and free from the loop. */
        struct timeval now = {0, 0};
        ch->free_pending = 1;
        tch_listener_free(ch->listener);
        ch->listener = NULL;
        if (event_base_once(ch->base, -1, EV_TIMEOUT, free_now, ch, &now) == 0)
            return;
        ch->free_pending = 0; /* could not defer: free now, as before */
    }
    ch->freeing = 1;
    if (ch->close_done)
        event_free(ch->close_done);
    if (ch->close_timeout)
        event_free(ch->close_timeout);
    if (ch->idle_sweep)
        event_free(ch->idle_sweep);
    ch->idle_sweep = NULL; /* chconn_destroy below would stop it again */
    tch_listener_free(ch->listener);
    while (ch->conns)
        chconn_destroy(ch->conns, TCH_ECLOSED, "channel closed");
    tch__inbound_release_detached(ch);
    tch__outbound_end_all(ch);
    for (size_t i = 0; i < ch->nhandlers; i++) {
        release_ud(&ch->handlers[i]);
        tch__free(ch->alloc, ch->handlers[i].service);
        tch__free(ch->alloc, ch->handlers[i].endpoint);
    }
    tch__free(ch->alloc, ch->handlers);
    tch__free(ch->alloc, ch->peers);
    if (ch->own_dns) /* after the connections: none is waiting on it now */
        evdns_base_free(ch->dns, 1);
    tch_intmap_free(&ch->cancellable);
    tch__hooks_free(ch);
    tch__free(ch->alloc, ch->name);
    tch__free_self(ch->alloc, ch);
}

const tch_allocator *tch_channel_allocator(const tch_channel *ch) {
    return ch ? ch->alloc : NULL;
}
