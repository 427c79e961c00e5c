/* libevent transport (see transport.h). Moves bytes; calls the conn for
 * them and libevent for the socket. */
#include "transport.h"

#include "alloc.h"

#include <errno.h>
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

/* A name lookup in flight. evdns answers it later even when the transport
 * has gone meanwhile (t is then NULL), so it is never cancelled: with the
 * resolver freed, evdns fails it with a shutdown, which is safe. It is on
 * the C library's malloc, not the owner's allocator: with a resolver of the
 * caller's (tch_channel_set_resolver) it may be answered after the channel,
 * and its allocator, are gone. */
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
    struct event *tick;   /* the conn's next deadline (TTLs, frame timeout) */
    uint64_t tick_at;     /* when tick is due (owner's clock); 0: not armed */
    int paused;          /* reading stopped: the conn wants no more input */
    tch_conn *conn;      /* the owner's */
    tch_transport_owner owner;
    uint8_t head[48];    /* the first bytes the peer sent, for messages */
    size_t head_len;
    int head_more;       /* it sent more than head holds */
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
 * host program. Reads land in the conn's input buffer, writes come from
 * its output blocks: no copy in between. */
#define READ_CHUNK (64 * 1024)
#define WRITE_IOVECS 64
#define FLUSH_EVERY 32          /* frames processed between writes of the answers */
/* Reading paused by the conn (backpressure) resumes once the output has
 * drained to this much. */
#define OUT_LOW (1u << 20)
/* A closing connection gets this long to flush before it is cut. */
#define CLOSE_FLUSH_MS 2000

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

static uint64_t now_ms(const tch_transport *t) { return t->owner.now_ms(t->owner.ud); }

static void pause_if_backlogged(tch_transport *t) {
    if (t->paused || t->fd < 0 || t->connecting || tch_conn_wants_read(t->conn))
        return;
    t->paused = 1;
    event_del(t->rev);
}

/* ---- closing ---------------------------------------------------------- */

static void release_socket(tch_transport *t) {
    if (t->fd < 0)
        return;
    struct event *evs[] = {t->rev, t->wev, t->flush, t->close_timer, t->tick};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i]) /* NULL when construction ran out of memory */
            event_del(evs[i]);
    evutil_closesocket(t->fd);
    t->fd = -1;
}

static void finish_close(tch_transport *t) {
    release_socket(t);
    t->owner.closed(t->owner.ud, t->close_status, t->close_why);
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
    tch_conn_out_drop(t->conn);
    if (!t->in_read)
        finish_close(t);
}

static int not_tchannel(tch_transport *t, char *why, size_t cap);

void tch_transport_close(tch_transport *t, int status, const char *why) {
    char instead[TCH_ERROR_MSG_MAX];
    if (status == TCH_EPROTO && not_tchannel(t, instead, sizeof instead))
        why = instead; /* what the peer sent says more than the frame type */
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
    const uint8_t *b = t->head;
    size_t n = t->head_len;
    size_t o = 0, i = 0;
    int line_end = 0;
    buf[0] = '\0';
    for (; i < n && o + 8 < cap; i++) {
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
    if (!line_end && (i < n || t->head_more))
        snprintf(buf + o, cap - o, "...");
}

/* A handshake that failed over bytes that are not a TChannel frame (an
 * init response or an error) means the peer speaks something else. */
static int not_tchannel(tch_transport *t, char *why, size_t cap) {
    tch_frame_header h;
    if (!in_handshake(t) || t->head_len < 1)
        return 0;
    tch_frame_header_decode(tch_slice_of(t->head, t->head_len), &h, NULL); /* h: what came */
    if (t->head_len >= 3 && (h.type == TCH_FRAME_INIT_RES || h.type == TCH_FRAME_ERROR))
        return 0; /* TChannel, however wrong */
    char sent[SENT_SHOWN * 4 + 8];
    sent_text(t, sent, sizeof sent);
    snprintf(why, cap, "peer %s is not speaking TChannel: it sent \"%s\" instead of an init response",
             t->peer, sent);
    return 1;
}

static void socket_failed(tch_transport *t, int e) {
    char why[TCH_ERROR_MSG_MAX];
    if (e == 0 && in_handshake(t) && t->head_len == 0)
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
    tch_conn_out_drop(t->conn);
    if (!t->in_read)
        finish_close(t);
}

/* ---- writing ------------------------------------------------------------ */

/* Writes as much queued output as the socket takes; waits for EV_WRITE for
 * the rest. Finishes a close once everything is out. */
static void maybe_resume(tch_transport *t);

static void try_write(tch_transport *t) {
    while (t->fd >= 0 && !t->connecting && tch_conn_out_pending(t->conn) > 0) {
        struct iovec iov[WRITE_IOVECS];
        int n = tch_conn_out(t->conn, iov, WRITE_IOVECS);
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
        tch_conn_out_done(t->conn, (size_t)w);
        maybe_resume(t);
    }
    if (t->fd >= 0 && !t->connecting)
        event_del(t->wev);
    if (t->closing && t->fd >= 0 && !t->in_read)
        finish_close(t);
}

/* Resumes reading once the peer has taken most of what was waiting; frames
 * already read but not yet processed are picked up by a read_cb pass. */
static void maybe_resume(tch_transport *t) {
    /* Not on tch_conn_wants_read: with a full input buffer (IN_MAX) it says
     * no, and nothing else would ever process those frames; read_cb does,
     * reading nothing from the socket while the buffer is full. */
    if (!t->paused || t->closing || t->fd < 0 || tch_conn_out_pending(t->conn) > OUT_LOW ||
        tch_conn_has_failed(t->conn))
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

void tch_transport_want_write(tch_transport *t) {
    pause_if_backlogged(t); /* answers made outside reading count too */
    if (!t->in_read && !t->connecting)
        schedule_flush(t);
}

/* ---- the conn's deadlines ---------------------------------------------- */

/* Keeps the tick timer no later than the conn's next deadline. Early is
 * fine (tick finds nothing due and re-arms), so an armed timer is only
 * moved forward: no timer churn while requests come and go. */
static void arm_tick(tch_transport *t, uint64_t now) {
    uint64_t due = tch_conn_next_deadline(t->conn);
    if (t->fd < 0 || due == 0)
        return;
    if (due <= now) { /* due by the owner's clock already (one a test moves, say) */
        due = tch_conn_tick(t->conn, now);
        if (due == 0 || t->fd < 0 || t->closing)
            return;
    }
    if (t->tick_at && due >= t->tick_at)
        return;
    uint64_t wait = due > now ? due - now : 0;
    struct timeval tv = {(time_t)(wait / 1000), (suseconds_t)(wait % 1000) * 1000};
    evtimer_add(t->tick, &tv);
    t->tick_at = due;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg) {
    tch_transport *t = arg;
    (void)fd, (void)what;
    t->tick_at = 0;
    uint64_t now = now_ms(t);
    tch_conn_tick(t->conn, now); /* Timeout error frames, or the conn fails */
    arm_tick(t, now);
}

/* ---- reading -------------------------------------------------------------- */

/* Has the conn process what was read. Output made on the way is written
 * whenever the conn stops early (every FLUSH_EVERY frames, or once 64 KiB
 * wait) rather than only at the end: the peer starts on the first answers
 * while later ones are still being made, so both sides work at once. */
static void process_input(tch_transport *t, uint64_t now) {
    while (!t->closing && tch_conn_process(t->conn, FLUSH_EVERY, now) == 1)
        try_write(t);
    pause_if_backlogged(t); /* the peer is not reading */
}

/* The first bytes of the peer's, kept while the handshake is on: they say
 * what it speaks when it is not TChannel. */
static void keep_head(tch_transport *t, const uint8_t *p, size_t n) {
    if (tch_conn_is_ready(t->conn))
        return;
    size_t k = sizeof t->head - t->head_len < n ? sizeof t->head - t->head_len : n;
    memcpy(t->head + t->head_len, p, k);
    t->head_len += k;
    t->head_more |= k < n;
}

/* Reads what the socket holds into the input buffer. Returns 0, or the
 * errno (-1 for EOF) that ended the connection. */
static int read_socket(tch_transport *t, uint64_t now) {
    for (int rounds = 0; rounds < 16; rounds++) { /* bounded: others get a turn */
        if (!tch_conn_wants_read(t->conn)) /* frames wait, or answers do */
            return 0;
        size_t cap;
        uint8_t *room = tch_conn_in_room(t->conn, READ_CHUNK, &cap);
        if (!room)
            return ENOMEM;
        ssize_t n = recv(t->fd, room, READ_CHUNK, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : errno;
        }
        if (n == 0)
            return -1;
        keep_head(t, room, (size_t)n);
        tch_conn_received(t->conn, (size_t)n, now);
        if ((size_t)n < READ_CHUNK)
            return 0;
    }
    return 0;
}

static void read_cb(evutil_socket_t fd, short what, void *arg) {
    tch_transport *t = arg;
    (void)fd, (void)what;
    uint64_t now = now_ms(t); /* one reading of the owner's clock per read */
    int rc = read_socket(t, now);
    t->in_read = 1;
    process_input(t, now);
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
    arm_tick(t, now);
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
                                    tch_conn *conn, const tch_transport_owner *owner,
                                    tch_error *err) {
    tch_transport *t = tch__calloc(owner->alloc, 1, sizeof *t);
    if (!t) {
        evutil_closesocket(fd);
        tch_error_set(err, TCH_ENOMEM, "out of memory");
        return NULL;
    }
    t->base = base;
    t->fd = fd;
    t->conn = conn;
    t->owner = *owner;
    if (fd >= 0) { /* a dialled one gets them with its socket (dial) */
        t->rev = event_new(base, fd, EV_READ | EV_PERSIST, read_cb, t);
        t->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, write_cb, t);
    }
    t->flush = event_new(base, -1, 0, flush_cb, t);
    t->close_timer = evtimer_new(base, close_timeout_cb, t);
    t->tick = evtimer_new(base, tick_cb, t);
    if ((fd >= 0 && (!t->rev || !t->wev)) || !t->flush || !t->close_timer || !t->tick) {
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
                                     const char *host_port, tch_conn *conn,
                                     const tch_transport_owner *owner,
                                     tch_error *err) {
    tch_addr a;
    if (tch_addr_parse(host_port, &a, err))
        return NULL;
    tch_transport *t = transport_new(base, -1, conn, owner, err);
    if (!t)
        return NULL;
    snprintf(t->peer, sizeof t->peer, "%s", host_port);
    t->dialled = 1;
    t->started_ms = now_ms(t);
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
                                    evutil_socket_t fd, tch_conn *conn,
                                    const tch_transport_owner *owner,
                                    tch_error *err) {
    evutil_make_socket_nonblocking(fd);
    evutil_make_socket_closeonexec(fd);
    set_nodelay(fd);
    tch_transport *t = transport_new(base, fd, conn, owner, err);
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

void tch_transport_explain_wait(const tch_transport *t, char *buf, size_t cap) {
    buf[0] = '\0';
    if (!t->dialled || tch_conn_is_ready(t->conn))
        return;
    unsigned ms = (unsigned)(now_ms(t) - t->started_ms);
    if (t->lookup) {
        const char *colon = strrchr(t->peer, ':');
        snprintf(buf, cap, "resolve \"%.*s\": no answer within %u ms",
                 colon ? (int)(colon - t->peer) : 0, t->peer, ms);
    } else if (t->connecting || t->unconnected) {
        snprintf(buf, cap, "connection to %s not established within %u ms", t->peer, ms);
    } else if (t->head_len > 0) {
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
    if (t->tick)
        event_free(t->tick);
    tch__free(t->owner.alloc, t);
}

/* ---- listener ---------------------------------------------------------- */

struct tch_listener {
    struct evconnlistener *l;
    tch_accept_fn fn;
    void *ud;
    const tch_allocator *alloc;
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
                               tch_accept_fn fn, void *ud, const tch_allocator *alloc,
                               tch_error *err) {
    tch_addr a;
    if (tch_addr_parse(host_port, &a, err))
        return NULL;
    tch_listener *ls = tch__calloc(alloc, 1, sizeof *ls);
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
        tch__free(alloc, ls);
        return NULL;
    }
    ls->alloc = alloc;
    bound_name(ls);
    return ls;
}

const char *tch_listener_host_port(const tch_listener *l) { return l->host_port; }

void tch_listener_free(tch_listener *l) {
    if (!l)
        return;
    evconnlistener_free(l->l);
    tch__free(l->alloc, l);
}
