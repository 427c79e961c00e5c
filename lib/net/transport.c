/* libevent transport (see transport.h). Calls the conn layer and libevent. */
#include "transport.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

/* A name lookup in flight. evdns answers it later even when the transport
 * has gone meanwhile (t is then NULL), so it is never cancelled: with the
 * resolver freed, evdns fails it with a shutdown, which is safe. */
typedef struct lookup {
    tch_transport *t;
} lookup;

struct tch_transport {
    struct event_base *base;
    evutil_socket_t fd;
    struct event *rev;   /* readable (persistent) */
    struct event *wev;   /* writable: connect completion, or output backlog */
    struct event *flush; /* made active when output was queued: one write per loop pass */
    struct event *close_timer; /* bounds the flush of a closing connection */
    struct event *expiry; /* a request still arriving outlives its TTL */
    uint64_t expiry_at;   /* when expiry is due (monotonic ms); 0: not armed */
    struct event *frame_timer; /* a frame begun is still not whole */
    uint32_t frame_timeout_ms; /* 0: no bound */
    int paused;          /* reading stopped: too much output waiting */
    tch_mem_budget *budget; /* the owner's, shared: output waiting is counted in it */
    size_t out_charged;     /* bytes of out counted in budget */
    struct evbuffer *in, *out;
    struct evbuffer_iovec room; /* reserved in out while a frame is encoded */
    uint8_t *frame;      /* a frame that straddles input chains (lazily) */
    tch_conn *conn;
    tch_transport_events ev;
    void *ud;
    char peer[64];     /* host:port we dialled, for messages */
    int dialled;       /* outbound: we connect to peer */
    int unconnected;   /* no socket yet: a name being looked up or dialled */
    lookup *lookup;    /* the name's lookup in flight */
    int lookup_error;  /* EVUTIL_EAI_* when it failed */
    struct evutil_addrinfo *addrs, *next_addr; /* the name's, tried in order */
    struct event *dial; /* the next step of an unconnected one, from the loop */
    char addr[64];      /* the address dialled, for messages */
    char remote[64];    /* an accepted socket's peer address ("" if unknown) */
    uint64_t started_ms; /* when dialling began */
    int connecting;
    int connect_errno; /* connect(2) failed at once; reported from the loop */
    int flush_pending;
    int closing;       /* flushing output before close */
    int close_status;
    char close_why[TCH_ERROR_MSG_MAX];
    int in_read;       /* inside read_cb: defer the closed event */
};

/* Reads and writes go straight to the socket (no bufferevent): per call
 * that saves the epoll_ctl pair and FIONREAD that bufferevents spend, and
 * sendmsg(MSG_NOSIGNAL) keeps a vanished peer from raising SIGPIPE in the
 * host program. */
#define READ_CHUNK (64 * 1024)
#define WRITE_IOVECS 64
#define FLUSH_EVERY 32          /* frames read between writes of the answers */
/* Backpressure: a peer that sends requests but does not read the answers
 * stops being read once this much output waits, until it drains to LOW. */
#define OUT_HIGH (8u << 20)
#define OUT_LOW (1u << 20)
/* Output waiting is counted in the owner's memory budget. While that is
 * spent, a peer with more than this many bytes of answers unread is read
 * no further, and one more answer to it closes the connection. */
#define OUT_SPENT_MARK (64u << 10)
/* Input read and not yet taken: while reading is paused frames wait here,
 * so reading stops at this much rather than pile up. */
#define IN_MAX (1u << 20)
/* A closing connection gets this long to flush before it is cut. */
#define CLOSE_FLUSH_MS 2000
#define FLUSH_BYTES (64 * 1024) /* or as soon as this much output is queued */

static int bad_host_port(const char *host_port, tch_error *err, const char *why) {
    return tch_error_set(err, TCH_EINVAL, "invalid host:port \"%.100s\": %s", host_port, why);
}

/* Letters, digits, '-', '_' and dots: what /etc/hosts and DNS names use. */
static int is_host_name(const char *h) {
    if (!*h || *h == '-' || *h == '.')
        return 0;
    for (; *h; h++)
        if (!(*h >= 'a' && *h <= 'z') && !(*h >= 'A' && *h <= 'Z') &&
            !(*h >= '0' && *h <= '9') && *h != '-' && *h != '_' && *h != '.')
            return 0;
    return 1;
}

static int parse_port(const char *s, uint16_t *port) {
    unsigned long v = 0;
    size_t n = strlen(s);
    if (n == 0 || n > 5 || strspn(s, "0123456789") != n)
        return -1;
    v = strtoul(s, NULL, 10);
    if (v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

int tch_addr_parse(const char *host_port, tch_addr *a, tch_error *err) {
    /* evutil_parse_sockaddr_port refuses port 0, which listening needs,
     * and knows no names. */
    memset(a, 0, sizeof *a);
    if (!host_port)
        return tch_error_set(err, TCH_EINVAL, "invalid host:port: none given (NULL)");
    if (strlen(host_port) >= TCH_HOST_PORT_MAX)
        return bad_host_port(host_port, err, "longer than 63 bytes");
    const char *colon = strrchr(host_port, ':');
    if (!colon || parse_port(colon + 1, &a->port) != 0)
        return bad_host_port(host_port, err, "want HOST:PORT with a port 0-65535");
    size_t hlen = (size_t)(colon - host_port);
    memcpy(a->host, host_port, hlen);
    a->host[hlen] = '\0';
    if (hlen == 0)
        return bad_host_port(host_port, err, "the host is empty");
    if (a->host[0] == '[' && a->host[hlen - 1] == ']' && hlen > 2) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;
        memmove(a->host, a->host + 1, hlen - 2);
        a->host[hlen - 2] = '\0';
        if (evutil_inet_pton(AF_INET6, a->host, &sin6->sin6_addr) != 1)
            return bad_host_port(host_port, err, "what is in brackets is not an IPv6 address");
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(a->port);
        a->sslen = (int)sizeof *sin6;
        return 0;
    }
    if (strchr(a->host, ':'))
        return bad_host_port(host_port, err,
                             "an IPv6 address goes in brackets, as in [::1]:4040");
    struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;
    if (evutil_inet_pton(AF_INET, a->host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(a->port);
        a->sslen = (int)sizeof *sin;
        return 0;
    }
    if (!is_host_name(a->host))
        return bad_host_port(host_port, err,
                             "the host is neither an IP address nor a host name");
    return 0; /* a name: looked up when used */
}

int tch_parse_host_port(const char *host_port, struct sockaddr_storage *ss,
                        int *sslen, tch_error *err) {
    tch_addr a;
    int rc = tch_addr_parse(host_port, &a, err);
    if (rc == 0 && a.sslen == 0)
        rc = bad_host_port(host_port, err, "want a numeric address here");
    memcpy(ss, &a.ss, sizeof *ss);
    *sslen = a.sslen;
    return rc;
}

/* "1.2.3.4:80" or "[::1]:80". */
static void sockaddr_text(const struct sockaddr *sa, char *buf, size_t cap) {
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        evutil_inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
        port = ntohs(sin->sin_port);
        snprintf(buf, cap, "%s:%d", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        evutil_inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
        port = ntohs(sin6->sin6_port);
        snprintf(buf, cap, "[%s]:%d", host, port);
    } else {
        snprintf(buf, cap, "?:0");
    }
}

static void set_nodelay(evutil_socket_t fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* ---- output in the memory budget ---------------------------------------- */

/* Brings the budget's count of this connection's waiting output up to
 * date; called wherever output is added or written. */
static void charge_output(tch_transport *t) {
    size_t now = t->out ? evbuffer_get_length(t->out) : 0;
    if (t->budget)
        t->budget->used = t->budget->used - t->out_charged + now;
    t->out_charged = now;
}

static int budget_spent(const tch_transport *t) {
    return t->budget && t->budget->used > t->budget->limit;
}

/* Whether reading should stop: the peer is not taking its answers. A
 * connection we dialled stops only at OUT_HIGH, so that answers to our
 * calls are still read when the budget is spent by others. */
static int output_backlogged(const tch_transport *t) {
    size_t o = evbuffer_get_length(t->out);
    return o > OUT_HIGH || (!t->dialled && o > OUT_SPENT_MARK && budget_spent(t));
}

static void pause_if_backlogged(tch_transport *t) {
    if (t->paused || t->fd < 0 || t->connecting || !output_backlogged(t))
        return;
    t->paused = 1;
    event_del(t->rev);
}

/* ---- closing ---------------------------------------------------------- */

static void release_socket(tch_transport *t) {
    if (t->fd < 0)
        return;
    struct event *evs[] = {t->rev, t->wev, t->flush, t->close_timer, t->expiry,
                           t->frame_timer};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i]) /* NULL when construction ran out of memory */
            event_del(evs[i]);
    evutil_closesocket(t->fd);
    t->fd = -1;
}

static void finish_close(tch_transport *t) {
    release_socket(t);
    if (t->ev.closed)
        t->ev.closed(t->ud, t->close_status, t->close_why);
}

static void note_close(tch_transport *t, int status, const char *why) {
    if (t->closing)
        return;
    t->closing = 1;
    t->close_status = status;
    snprintf(t->close_why, sizeof t->close_why, "%s", why);
}

static void schedule_flush(tch_transport *t) {
    if (!t->flush_pending && t->fd >= 0) {
        t->flush_pending = 1;
        event_active(t->flush, EV_WRITE, 0);
    }
}

/* Stops reading; the flush writes what is queued (an error frame, say) and
 * then closes. Never completes synchronously, so neither the owner nor the
 * conn sees the transport vanish under its feet. */
static void begin_close(tch_transport *t, int status, const char *why) {
    note_close(t, status, why);
    if (t->fd < 0) {
        if (t->unconnected) /* dial_cb reports the close from the loop */
            event_active(t->dial, EV_TIMEOUT, 0);
        return;
    }
    event_del(t->rev);
    struct timeval tv = {CLOSE_FLUSH_MS / 1000, (CLOSE_FLUSH_MS % 1000) * 1000};
    if (!evtimer_pending(t->close_timer, NULL))
        evtimer_add(t->close_timer, &tv);
    schedule_flush(t);
}

/* The peer did not take what was left to send in time: close anyway. */
static void close_timeout_cb(evutil_socket_t fd, short what, void *arg) {
    tch_transport *t = arg;
    (void)fd, (void)what;
    evbuffer_drain(t->out, evbuffer_get_length(t->out));
    charge_output(t);
    if (!t->in_read)
        finish_close(t);
}

void tch_transport_close(tch_transport *t, int status, const char *why) {
    begin_close(t, status, why);
}

/* Connected by us and waiting for the peer's init response. */
static int in_handshake(const tch_transport *t) {
    return t->dialled && !t->connecting && t->fd >= 0 && !tch_conn_is_ready(t->conn);
}

/* What the peer sent so far, printable and bounded: its first line, at
 * most SENT_SHOWN bytes, other bytes as \xNN. */
#define SENT_SHOWN 48
static void sent_text(const tch_transport *t, char *buf, size_t cap) {
    uint8_t b[SENT_SHOWN];
    ev_ssize_t n = evbuffer_copyout(t->in, b, sizeof b);
    size_t o = 0, i = 0;
    int line_end = 0;
    buf[0] = '\0';
    for (; n > 0 && i < (size_t)n && o + 8 < cap; i++) {
        if ((b[i] == '\r' || b[i] == '\n') && i > 0) {
            line_end = 1;
            break;
        }
        if (b[i] >= 0x20 && b[i] < 0x7f && b[i] != '"' && b[i] != '\\')
            buf[o++] = (char)b[i];
        else
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", b[i]);
    }
    buf[o] = '\0';
    if (!line_end && i < evbuffer_get_length(t->in))
        snprintf(buf + o, cap - o, "...");
}

/* A handshake that failed over bytes that are not a TChannel frame (an
 * init response or an error) means the peer speaks something else. */
static int not_tchannel(tch_transport *t, char *why, size_t cap) {
    uint8_t hdr[3];
    if (!in_handshake(t) || evbuffer_copyout(t->in, hdr, sizeof hdr) < 1 ||
        (evbuffer_get_length(t->in) >= 3 &&
         (hdr[2] == TCH_FRAME_INIT_RES || hdr[2] == TCH_FRAME_ERROR)))
        return 0;
    char sent[SENT_SHOWN * 4 + 8];
    sent_text(t, sent, sizeof sent);
    snprintf(why, cap, "peer %s is not speaking TChannel: it sent \"%s\" instead of an init response",
             t->peer, sent);
    return 1;
}

static void socket_failed(tch_transport *t, int e) {
    char why[TCH_ERROR_MSG_MAX];
    if (e == 0 && in_handshake(t) && evbuffer_get_length(t->in) == 0)
        snprintf(why, sizeof why, "peer %s closed the connection without answering the TChannel handshake",
                 t->peer);
    else if (e == 0 && not_tchannel(t, why, sizeof why))
        ; /* said what it sent instead */
    else if (e == 0)
        snprintf(why, sizeof why, "connection %s%s closed by peer",
                 t->peer[0] ? "to " : "", t->peer);
    else if (t->connecting && t->addrs) /* a name: say which of its addresses */
        snprintf(why, sizeof why, "connection to %s (%s): %s", t->peer, t->addr,
                 evutil_socket_error_to_string(e));
    else
        snprintf(why, sizeof why, "connection %s%s: %s", t->peer[0] ? "to " : "",
                 t->peer, evutil_socket_error_to_string(e));
    t->closing = 0; /* the peer is gone: nothing more can be flushed */
    note_close(t, e == 0 ? TCH_ECLOSED : TCH_EIO, why);
    evbuffer_drain(t->out, evbuffer_get_length(t->out));
    charge_output(t);
    if (!t->in_read)
        finish_close(t);
}

/* ---- writing ------------------------------------------------------------ */

/* Writes as much queued output as the socket takes; waits for EV_WRITE for
 * the rest. Finishes a close once everything is out. */
static void maybe_resume(tch_transport *t);

static void try_write(tch_transport *t) {
    while (t->fd >= 0 && evbuffer_get_length(t->out) > 0) {
        struct evbuffer_iovec vec[WRITE_IOVECS];
        int n = evbuffer_peek(t->out, -1, NULL, vec, WRITE_IOVECS);
        if (n > WRITE_IOVECS)
            n = WRITE_IOVECS;
        struct iovec iov[WRITE_IOVECS];
        for (int i = 0; i < n; i++) {
            iov[i].iov_base = vec[i].iov_base;
            iov[i].iov_len = vec[i].iov_len;
        }
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(t->fd, &msg, MSG_NOSIGNAL);
        if (w < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            if (e == EAGAIN || e == EWOULDBLOCK) {
                event_add(t->wev, NULL);
                return;
            }
            socket_failed(t, e);
            return;
        }
        evbuffer_drain(t->out, (size_t)w);
        charge_output(t);
        maybe_resume(t);
    }
    if (t->fd >= 0)
        event_del(t->wev);
    if (t->closing && t->fd >= 0 && !t->in_read)
        finish_close(t);
}

/* Resumes reading once the peer has taken most of what was waiting; frames
 * already read but not yet processed are picked up by a read_cb pass. */
static void maybe_resume(tch_transport *t) {
    if (!t->paused || t->closing || t->fd < 0 || evbuffer_get_length(t->out) > OUT_LOW ||
        output_backlogged(t))
        return;
    t->paused = 0;
    event_add(t->rev, NULL);
    event_active(t->rev, EV_READ, 0);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg) {
    tch_transport *t = arg;
    (void)fd, (void)what;
    t->flush_pending = 0;
    try_write(t);
}

/* ---- conn callbacks: forwarded to the owner ---------------------------- */

/* Output was queued: it is written later in this loop pass, so calls made
 * together share one sendmsg; read_cb writes directly at its end. */
static void queued_output(tch_transport *t) {
    charge_output(t);
    pause_if_backlogged(t); /* answers made outside reading count too */
    if (!t->in_read && !t->connecting)
        schedule_flush(t);
}

static void conn_write(void *ud, const uint8_t *data, size_t len) {
    tch_transport *t = ud;
    if (t->fd < 0)
        return;
    if (evbuffer_add(t->out, data, len) != 0) {
        begin_close(t, TCH_ENOMEM, "cannot queue output");
        return;
    }
    queued_output(t);
}

/* Call frames are encoded straight into the output buffer's free space. */
static uint8_t *conn_reserve(void *ud, size_t len) {
    tch_transport *t = ud;
    if (t->fd < 0 || evbuffer_reserve_space(t->out, (ev_ssize_t)len, &t->room, 1) < 1)
        return NULL; /* conn_write then drops it, or reports the lack of memory */
    return t->room.iov_base;
}

static void conn_commit(void *ud, size_t used) {
    tch_transport *t = ud;
    t->room.iov_len = used;
    evbuffer_commit_space(t->out, &t->room, 1);
    if (used > 0)
        queued_output(t);
}

static void conn_ready(void *ud) {
    tch_transport *t = ud;
    if (t->ev.ready)
        t->ev.ready(t->ud);
}

static void conn_call_req(void *ud, tch_call_msg *m) {
    tch_transport *t = ud;
    t->ev.call_req(t->ud, m);
}

static void conn_call_res(void *ud, tch_call_msg *m) {
    tch_transport *t = ud;
    t->ev.call_res(t->ud, m);
}

static void conn_res_failed(void *ud, uint32_t id, int status, const char *why) {
    tch_transport *t = ud;
    if (t->ev.res_failed)
        t->ev.res_failed(t->ud, id, status, why);
}

static void conn_error_frame(void *ud, uint32_t id, const tch_error_frame *e) {
    tch_transport *t = ud;
    if (t->ev.error_frame)
        t->ev.error_frame(t->ud, id, e);
}

static int conn_expects_response(void *ud, uint32_t id) {
    tch_transport *t = ud;
    return t->ev.expects_response ? t->ev.expects_response(t->ud, id) : 1;
}

static void conn_ping_res(void *ud, uint32_t id) {
    tch_transport *t = ud;
    if (t->ev.ping_res)
        t->ev.ping_res(t->ud, id);
}

static void conn_cancel(void *ud, uint32_t id) {
    tch_transport *t = ud;
    if (t->ev.cancel)
        t->ev.cancel(t->ud, id);
}

static void conn_limit(void *ud, const char *why) {
    tch_transport *t = ud;
    if (t->ev.limit)
        t->ev.limit(t->ud, why);
}

/* An answer to a peer that has more than OUT_SPENT_MARK of answers unread
 * while the memory budget cannot pay for this one closes the connection:
 * waiting would hold the memory for as long as the peer likes. What waits
 * is dropped; the close is logged. */
static int conn_admit(void *ud, size_t len, char *why, size_t cap) {
    tch_transport *t = ud;
    size_t o = evbuffer_get_length(t->out);
    if (!t->budget || o <= OUT_SPENT_MARK || t->budget->used + len <= t->budget->limit)
        return 0;
    snprintf(why, cap,
             "closed: the peer is not reading its answers: %zu bytes of them wait to be "
             "written, and one more of up to %zu bytes would pass the memory budget of "
             "%zu bytes (%zu in use)",
             o, len, t->budget->limit, t->budget->used);
    if (t->ev.limit)
        t->ev.limit(t->ud, why);
    evbuffer_drain(t->out, o);
    charge_output(t);
    return -1;
}

static void conn_failed(void *ud, int status, const char *why) {
    tch_transport *t = ud;
    char instead[TCH_ERROR_MSG_MAX];
    if (t->in_read && status == TCH_EPROTO && not_tchannel(t, instead, sizeof instead))
        why = instead; /* what the peer sent says more than the frame type */
    begin_close(t, status, why);
}

/* ---- requests that arrive too slowly ------------------------------------ */

static uint64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t conn_now_ms(void *ud) {
    (void)ud;
    return mono_ms();
}

/* Keeps the expiry timer no later than the conn's earliest deadline. Early
 * is fine (the timer finds nothing due and re-arms), so an armed timer is
 * only moved forward: no timer churn while requests come and go. */
static void arm_expiry(tch_transport *t) {
    uint64_t due = tch_conn_next_deadline(t->conn);
    if (t->fd < 0 || due == 0 || (t->expiry_at && due >= t->expiry_at))
        return;
    uint64_t now = mono_ms(), wait = due > now ? due - now : 0;
    struct timeval tv = {(time_t)(wait / 1000), (suseconds_t)(wait % 1000) * 1000};
    evtimer_add(t->expiry, &tv);
    t->expiry_at = due;
}

static void expiry_cb(evutil_socket_t fd, short what, void *arg) {
    tch_transport *t = arg;
    (void)fd, (void)what;
    t->expiry_at = 0;
    tch_conn_expire_requests(t->conn, mono_ms()); /* queues Timeout error frames */
    arm_expiry(t);
}

/* ---- reading -------------------------------------------------------------- */

/* The first size bytes of the input, contiguous: in place when one chain
 * holds them, else copied into the connection's frame buffer. (A pullup
 * would allocate fresh memory and fault its pages in, for about one frame
 * in two at 64 KiB, which straddle the 64 KiB reads.) */
static const uint8_t *frame_bytes(tch_transport *t, size_t size) {
    struct evbuffer_iovec v;
    if (evbuffer_peek(t->in, (ev_ssize_t)size, NULL, &v, 1) == 1)
        return v.iov_base;
    if (!t->frame) {
        t->frame = malloc(TCH_FRAME_MAX_SIZE);
        if (!t->frame)
            return NULL;
    }
    evbuffer_copyout(t->in, t->frame, size);
    return t->frame;
}

/* Feeds every whole frame in the input buffer to the conn. Output made on
 * the way is written every FLUSH_EVERY frames (or FLUSH_BYTES) rather than
 * only at the end:
 * the peer starts on the first answers while later ones are still being
 * made, so both sides work at once instead of taking turns. */
static void feed_frames(tch_transport *t) {
    struct evbuffer *in = t->in;
    unsigned frames = 0;
    while (!t->closing && !t->paused) {
        size_t avail = evbuffer_get_length(in);
        uint8_t hdr[TCH_FRAME_HEADER_SIZE];
        if (avail < 2)
            break;
        evbuffer_copyout(in, hdr, avail < sizeof hdr ? avail : sizeof hdr);
        size_t size = (size_t)hdr[0] << 8 | hdr[1];
        if (size < TCH_FRAME_HEADER_SIZE)
            size = avail < TCH_FRAME_HEADER_SIZE ? avail : TCH_FRAME_HEADER_SIZE;
        if (avail < size) {
            if (avail >= sizeof hdr) /* refuse a garbage first frame now */
                tch_conn_peek_header(t->conn, hdr, sizeof hdr);
            break;
        }
        const uint8_t *p = frame_bytes(t, size);
        if (!p) {
            note_close(t, TCH_ENOMEM, "out of memory");
            break;
        }
        tch_conn_feed(t->conn, p, size);
        evbuffer_drain(in, size);
        size_t queued = evbuffer_get_length(t->out);
        if (queued > 0 && (++frames % FLUSH_EVERY == 0 || queued >= FLUSH_BYTES))
            try_write(t);
        pause_if_backlogged(t); /* the peer is not reading */
    }
}

/* Reads what the socket holds into the input buffer. Returns 0, or the
 * errno (-1 for EOF) that ended the connection. */
static int read_socket(tch_transport *t) {
    for (int rounds = 0; rounds < 16; rounds++) { /* bounded: others get a turn */
        if (evbuffer_get_length(t->in) >= IN_MAX) /* frames wait: reading is paused */
            return 0;
        struct evbuffer_iovec vec[1];
        if (evbuffer_reserve_space(t->in, READ_CHUNK, vec, 1) < 1)
            return ENOMEM;
        ssize_t n = recv(t->fd, vec[0].iov_base, vec[0].iov_len, 0);
        if (n < 0) {
            vec[0].iov_len = 0;
            evbuffer_commit_space(t->in, vec, 1);
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : errno;
        }
        vec[0].iov_len = (size_t)n;
        evbuffer_commit_space(t->in, vec, 1);
        if (n == 0)
            return -1;
        if ((size_t)n < READ_CHUNK)
            return 0;
    }
    return 0;
}

/* A peer that starts a frame and never finishes it (slowloris) would hold
 * the connection open: a frame begun must be whole within the frame
 * timeout. The clock starts when bytes of a new frame are left over after
 * a read, and stops when none are (or reading is paused by backpressure). */
static void frame_timeout_cb(evutil_socket_t fd, short what, void *arg) {
    tch_transport *t = arg;
    (void)fd, (void)what;
    char why[128];
    snprintf(why, sizeof why,
             "a frame begun %u ms ago is still not whole (%zu bytes of it arrived): frame timeout",
             t->frame_timeout_ms, evbuffer_get_length(t->in));
    if (t->ev.limit)
        t->ev.limit(t->ud, why);
    begin_close(t, TCH_ETIMEOUT, why); /* first: the close keeps this status */
    tch_conn_abort(t->conn, why);
}

static void watch_partial_frame(tch_transport *t, int took_frames) {
    if (!t->frame_timer || t->fd < 0)
        return;
    if (t->closing || t->paused || evbuffer_get_length(t->in) == 0) {
        event_del(t->frame_timer);
        return;
    }
    if (took_frames || !evtimer_pending(t->frame_timer, NULL)) { /* a new frame */
        uint32_t ms = t->frame_timeout_ms;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        evtimer_add(t->frame_timer, &tv);
    }
}

int tch_transport_set_frame_timeout(tch_transport *t, uint32_t ms) {
    if (!t->frame_timer && ms) {
        t->frame_timer = evtimer_new(t->base, frame_timeout_cb, t);
        if (!t->frame_timer)
            return TCH_ENOMEM;
    }
    t->frame_timeout_ms = ms;
    if (!ms && t->frame_timer)
        event_del(t->frame_timer);
    return 0;
}

static void read_cb(evutil_socket_t fd, short what, void *arg) {
    tch_transport *t = arg;
    (void)fd, (void)what;
    int rc = read_socket(t);
    size_t had = evbuffer_get_length(t->in);
    t->in_read = 1;
    feed_frames(t);
    t->in_read = 0;
    if (rc != 0 && !t->closing) { /* EOF or error, after what did arrive */
        socket_failed(t, rc < 0 ? 0 : rc);
        return;
    }
    if (rc != 0) {
        finish_close(t);
        return;
    }
    if (t->closing)
        event_del(t->rev);
    arm_expiry(t);
    watch_partial_frame(t, evbuffer_get_length(t->in) < had);
    try_write(t); /* answers made while reading go out now */
}

static void undial(tch_transport *t);
static void dial_next(tch_transport *t, int last_errno);

static void write_cb(evutil_socket_t fd, short what, void *arg) {
    tch_transport *t = arg;
    (void)fd, (void)what;
    if (t->connecting) {
        int e = t->connect_errno;
        socklen_t len = sizeof e;
        if (e == 0)
            getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &e, &len);
        if (e != 0 && t->next_addr && !t->closing) { /* the name has more addresses */
            undial(t);
            dial_next(t, e);
            return;
        }
        if (e != 0) {
            socket_failed(t, e);
            return;
        }
        t->connecting = 0;
        event_del(t->wev);
        event_add(t->rev, NULL);
        tch_conn_start(t->conn);
    }
    try_write(t);
}

/* ---- construction ------------------------------------------------------ */

static tch_transport *transport_new(struct event_base *base, evutil_socket_t fd,
                                    const tch_conn_config *cfg,
                                    const tch_transport_events *ev, void *ud,
                                    tch_error *err) {
    static const tch_conn_callbacks cb = {
        .write = conn_write, .reserve = conn_reserve, .commit = conn_commit,
        .ready = conn_ready, .call_req = conn_call_req,
        .call_res = conn_call_res, .res_failed = conn_res_failed,
        .error_frame = conn_error_frame, .cancel = conn_cancel,
        .failed = conn_failed, .expects_response = conn_expects_response,
        .ping_res = conn_ping_res, .now_ms = conn_now_ms, .limit = conn_limit,
        .admit = conn_admit,
    };
    tch_transport *t = calloc(1, sizeof *t);
    if (!t) {
        evutil_closesocket(fd);
        tch_error_set(err, TCH_ENOMEM, "out of memory");
        return NULL;
    }
    t->base = base;
    t->fd = fd;
    t->ev = *ev;
    t->ud = ud;
    t->budget = cfg->shared;
    t->conn = tch_conn_new(cfg, &cb, t);
    t->in = evbuffer_new();
    t->out = evbuffer_new();
    if (fd >= 0) { /* a dialled one gets them with its socket (dial) */
        t->rev = event_new(base, fd, EV_READ | EV_PERSIST, read_cb, t);
        t->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, write_cb, t);
    }
    t->flush = event_new(base, -1, 0, flush_cb, t);
    t->close_timer = evtimer_new(base, close_timeout_cb, t);
    t->expiry = evtimer_new(base, expiry_cb, t);
    if (!t->conn || !t->in || !t->out || (fd >= 0 && (!t->rev || !t->wev)) || !t->flush ||
        !t->close_timer || !t->expiry) {
        tch_transport_free(t);
        tch_error_set(err, TCH_ENOMEM, "out of memory");
        return NULL;
    }
    return t;
}

/* ---- dialling ------------------------------------------------------------ */

/* Opens a socket to sa and starts connecting. The socket's events are made
 * here, since a name's socket exists only once it is looked up. A refusal
 * at once is reported from the loop, like one that comes later. */
static int dial(tch_transport *t, const struct sockaddr *sa, socklen_t len, tch_error *err) {
    sockaddr_text(sa, t->addr, sizeof t->addr);
    /* close-on-exec from the start: a program we run must not hold it */
    evutil_socket_t fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return tch_error_set(err, TCH_EIO, "connection to %s: socket: %s", t->peer,
                             strerror(errno));
    evutil_make_socket_nonblocking(fd);
    set_nodelay(fd);
    t->rev = event_new(t->base, fd, EV_READ | EV_PERSIST, read_cb, t);
    t->wev = event_new(t->base, fd, EV_WRITE | EV_PERSIST, write_cb, t);
    t->fd = fd;
    if (!t->rev || !t->wev) {
        undial(t);
        return tch_error_set(err, TCH_ENOMEM, "out of memory");
    }
    t->unconnected = 0;
    t->connecting = 1;
    t->connect_errno = 0;
    if (connect(fd, sa, len) != 0 && errno != EINPROGRESS) {
        t->connect_errno = errno; /* reported from the loop, like a refusal */
        event_active(t->wev, EV_WRITE, 0);
    } else {
        event_add(t->wev, NULL); /* writable: connected, or SO_ERROR says why not */
    }
    return 0;
}

/* Drops the socket of an address that did not answer; the transport waits
 * for the next one. */
static void undial(tch_transport *t) {
    if (t->rev)
        event_free(t->rev);
    if (t->wev)
        event_free(t->wev);
    t->rev = t->wev = NULL;
    if (t->fd >= 0)
        evutil_closesocket(t->fd);
    t->fd = -1;
    t->unconnected = 1;
}

/* Closes a transport that has no socket; runs from the loop only. */
static void fail_unconnected(tch_transport *t, int status, const char *why) {
    note_close(t, status, why);
    t->unconnected = 0;
    finish_close(t);
}

/* Dials the name's next address; when none is left, the connection fails
 * with the last one's error. */
static void dial_next(tch_transport *t, int last_errno) {
    tch_error err = {0};
    while (t->next_addr) {
        const struct evutil_addrinfo *ai = t->next_addr;
        t->next_addr = ai->ai_next;
        if (dial(t, ai->ai_addr, (socklen_t)ai->ai_addrlen, &err) == 0)
            return;
        last_errno = 0;
    }
    char why[TCH_ERROR_MSG_MAX];
    if (last_errno)
        snprintf(why, sizeof why, "connection to %s (%s): %s", t->peer, t->addr,
                 evutil_socket_error_to_string(last_errno));
    else
        snprintf(why, sizeof why, "%s", err.msg[0] ? err.msg : "no address to connect to");
    fail_unconnected(t, err.code == TCH_ENOMEM ? TCH_ENOMEM : TCH_EIO, why);
}

/* The next step of a transport without a socket: its name was looked up,
 * or it was closed meanwhile. */
static void dial_cb(evutil_socket_t fd, short what, void *arg) {
    tch_transport *t = arg;
    (void)fd, (void)what;
    if (!t->unconnected)
        return;
    if (t->closing) {
        if (t->lookup) { /* its answer goes to nobody */
            t->lookup->t = NULL;
            t->lookup = NULL;
        }
        fail_unconnected(t, t->close_status, t->close_why);
        return;
    }
    if (t->lookup) /* not answered yet */
        return;
    if (t->lookup_error || !t->addrs) {
        char host[TCH_HOST_PORT_MAX], why[TCH_ERROR_MSG_MAX];
        const char *colon = strrchr(t->peer, ':');
        snprintf(host, sizeof host, "%.*s", colon ? (int)(colon - t->peer) : 0, t->peer);
        snprintf(why, sizeof why, "resolve \"%s\": %s", host,
                 t->lookup_error ? evutil_gai_strerror(t->lookup_error) : "no addresses");
        fail_unconnected(t, TCH_EIO, why); /* a network failure: retried, backed off */
        return;
    }
    dial_next(t, 0);
}

/* evdns' answer; may come from inside evdns_getaddrinfo itself, so it only
 * records and hands over to dial_cb. */
static void lookup_done(int result, struct evutil_addrinfo *res, void *arg) {
    lookup *lk = arg;
    tch_transport *t = lk->t;
    free(lk);
    if (!t) { /* closed meanwhile */
        if (res)
            evutil_freeaddrinfo(res);
        return;
    }
    t->lookup = NULL;
    t->lookup_error = result;
    t->addrs = t->next_addr = result ? NULL : res;
    if (result && res)
        evutil_freeaddrinfo(res);
    event_active(t->dial, EV_TIMEOUT, 0);
}

static int start_lookup(tch_transport *t, struct evdns_base *dns, const tch_addr *a,
                        tch_error *err) {
    if (!dns)
        return tch_error_set(err, TCH_EINVAL, "connection to %s: no resolver for a host name",
                             t->peer);
    lookup *lk = calloc(1, sizeof *lk);
    t->dial = event_new(t->base, -1, 0, dial_cb, t);
    if (!lk || !t->dial) {
        free(lk);
        return tch_error_set(err, TCH_ENOMEM, "out of memory");
    }
    lk->t = t;
    t->lookup = lk;
    t->unconnected = 1;
    char port[8];
    snprintf(port, sizeof port, "%u", a->port);
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                    .ai_protocol = IPPROTO_TCP,
                                    .ai_flags = EVUTIL_AI_NUMERICSERV};
    evdns_getaddrinfo(dns, a->host, port, &hints, lookup_done, lk);
    return 0;
}

tch_transport *tch_transport_connect(struct event_base *base,
                                     struct evdns_base *dns,
                                     const char *host_port,
                                     const tch_conn_config *cfg,
                                     const tch_transport_events *ev, void *ud,
                                     tch_error *err) {
    tch_addr a;
    if (tch_addr_parse(host_port, &a, err))
        return NULL;
    tch_transport *t = transport_new(base, -1, cfg, ev, ud, err);
    if (!t)
        return NULL;
    snprintf(t->peer, sizeof t->peer, "%s", host_port);
    t->dialled = 1;
    t->started_ms = mono_ms();
    int rc = a.sslen ? dial(t, (struct sockaddr *)&a.ss, (socklen_t)a.sslen, err)
                     : start_lookup(t, dns, &a, err);
    if (rc) {
        tch_transport_free(t);
        return NULL;
    }
    return t;
}

/* ---- accepting ------------------------------------------------------------ */

tch_transport *tch_transport_accept(struct event_base *base,
                                    evutil_socket_t fd,
                                    const tch_conn_config *cfg,
                                    const tch_transport_events *ev, void *ud,
                                    tch_error *err) {
    evutil_make_socket_nonblocking(fd);
    evutil_make_socket_closeonexec(fd);
    set_nodelay(fd);
    tch_transport *t = transport_new(base, fd, cfg, ev, ud, err);
    if (!t)
        return NULL;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
        sockaddr_text((const struct sockaddr *)&ss, t->remote, sizeof t->remote);
    event_add(t->rev, NULL);
    return t;
}

const char *tch_transport_remote_addr(const tch_transport *t) { return t->remote; }

tch_conn *tch_transport_conn(tch_transport *t) { return t->conn; }

size_t tch_transport_pending_output(const tch_transport *t) {
    return t->out ? evbuffer_get_length(t->out) : 0;
}

void tch_transport_explain_wait(const tch_transport *t, char *buf, size_t cap) {
    buf[0] = '\0';
    if (!t->dialled || tch_conn_is_ready(t->conn))
        return;
    unsigned ms = (unsigned)(mono_ms() - t->started_ms);
    if (t->lookup) {
        const char *colon = strrchr(t->peer, ':');
        snprintf(buf, cap, "resolve \"%.*s\": no answer within %u ms",
                 colon ? (int)(colon - t->peer) : 0, t->peer, ms);
    } else if (t->connecting || t->unconnected) {
        snprintf(buf, cap, "connection to %s not established within %u ms", t->peer, ms);
    } else if (evbuffer_get_length(t->in) > 0) {
        char sent[SENT_SHOWN * 4 + 8];
        sent_text(t, sent, sizeof sent);
        snprintf(buf, cap, "peer %s did not answer the TChannel handshake within %u ms (it sent \"%s\")",
                 t->peer, ms, sent);
    } else {
        snprintf(buf, cap, "peer %s did not answer the TChannel handshake within %u ms",
                 t->peer, ms);
    }
}

void tch_transport_free(tch_transport *t) {
    if (!t)
        return;
    if (t->lookup) /* evdns answers it later, to nobody */
        t->lookup->t = NULL;
    if (t->addrs)
        evutil_freeaddrinfo(t->addrs);
    if (t->dial)
        event_free(t->dial);
    release_socket(t);
    if (t->rev)
        event_free(t->rev);
    if (t->wev)
        event_free(t->wev);
    if (t->flush)
        event_free(t->flush);
    if (t->close_timer)
        event_free(t->close_timer);
    if (t->expiry)
        event_free(t->expiry);
    if (t->frame_timer)
        event_free(t->frame_timer);
    if (t->in)
        evbuffer_free(t->in);
    if (t->out) {
        evbuffer_drain(t->out, evbuffer_get_length(t->out));
        charge_output(t);
        evbuffer_free(t->out);
    }
    free(t->frame);
    tch_conn_free(t->conn);
    free(t);
}

/* ---- listener ---------------------------------------------------------- */

struct tch_listener {
    struct evconnlistener *l;
    tch_accept_fn fn;
    void *ud;
    char host_port[64];
};

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd,
                      struct sockaddr *sa, int socklen, void *arg) {
    tch_listener *ls = arg;
    (void)l, (void)sa, (void)socklen;
    ls->fn(fd, ls->ud);
}

static void bound_name(tch_listener *ls) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    evutil_socket_t fd = evconnlistener_get_fd(ls->l);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        sockaddr_text((struct sockaddr *)&ss, ls->host_port, sizeof ls->host_port);
    else
        snprintf(ls->host_port, sizeof ls->host_port, "?:0");
}

static struct evconnlistener *bind_one(tch_listener *ls, struct event_base *base,
                                       const struct sockaddr *sa, int len) {
    /* The listening socket and each one it accepts are close-on-exec from
     * the start (accept4): a program we run must not hold our port. */
    return evconnlistener_new_bind(base, accept_cb, ls,
                                   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                       LEV_OPT_CLOSE_ON_EXEC,
                                   128, sa, len);
}

/* Binds the first address of a name that takes it, IPv4 ones first (the
 * Node peer wants a numeric IPv4 host_port in init). Looked up with
 * getaddrinfo, which blocks: listening is a setup call. */
static int bind_name(tch_listener *ls, struct event_base *base, const tch_addr *a,
                     const char *host_port, tch_error *err) {
    char port[8];
    snprintf(port, sizeof port, "%u", a->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV}, *res = NULL;
    int rc = getaddrinfo(a->host, port, &hints, &res);
    if (rc != 0)
        return tch_error_set(err, TCH_EIO, "listen on %s: resolve \"%s\": %s", host_port,
                             a->host, rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
    int e = 0;
    for (int family = AF_INET; !ls->l && family; family = family == AF_INET ? AF_INET6 : 0) {
        for (struct addrinfo *ai = res; ai && !ls->l; ai = ai->ai_next) {
            if (ai->ai_family != family)
                continue;
            ls->l = bind_one(ls, base, ai->ai_addr, (int)ai->ai_addrlen);
            e = ls->l ? 0 : errno;
        }
    }
    freeaddrinfo(res);
    if (ls->l)
        return 0;
    return tch_error_set(err, TCH_EIO, "listen on %s: %s", host_port,
                         e ? strerror(e) : "the name has no IPv4 or IPv6 address");
}

tch_listener *tch_listener_new(struct event_base *base, const char *host_port,
                               tch_accept_fn fn, void *ud, tch_error *err) {
    tch_addr a;
    if (tch_addr_parse(host_port, &a, err))
        return NULL;
    tch_listener *ls = calloc(1, sizeof *ls);
    if (!ls) {
        tch_error_set(err, TCH_ENOMEM, "out of memory");
        return NULL;
    }
    ls->fn = fn;
    ls->ud = ud;
    if (a.sslen) {
        ls->l = bind_one(ls, base, (struct sockaddr *)&a.ss, a.sslen);
        if (!ls->l)
            tch_error_set(err, TCH_EIO, "listen on %s: %s", host_port, strerror(errno));
    } else {
        bind_name(ls, base, &a, host_port, err);
    }
    if (!ls->l) {
        free(ls);
        return NULL;
    }
    bound_name(ls);
    return ls;
}

const char *tch_listener_host_port(const tch_listener *l) { return l->host_port; }

void tch_listener_free(tch_listener *l) {
    if (!l)
        return;
    evconnlistener_free(l->l);
    free(l);
}
