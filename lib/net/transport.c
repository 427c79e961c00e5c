/* libevent transport (see transport.h). Calls the conn layer and libevent. */
#include "transport.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

struct tch_transport {
    struct event_base *base;
    evutil_socket_t fd;
    struct event *rev;   /* readable (persistent) */
    struct event *wev;   /* writable: connect completion, or output backlog */
    struct event *flush; /* made active when output was queued: one write per loop pass */
    struct event *close_timer; /* bounds the flush of a closing connection */
    struct event *expiry; /* a request still arriving outlives its TTL */
    uint64_t expiry_at;   /* when expiry is due (monotonic ms); 0: not armed */
    int paused;          /* reading stopped: too much output waiting */
    struct evbuffer *in, *out;
    struct evbuffer_iovec room; /* reserved in out while a frame is encoded */
    uint8_t *frame;      /* a frame that straddles input chains (lazily) */
    tch_conn *conn;
    tch_transport_events ev;
    void *ud;
    char peer[64];     /* host:port we dialled, for messages */
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
/* A closing connection gets this long to flush before it is cut. */
#define CLOSE_FLUSH_MS 2000
#define FLUSH_BYTES (64 * 1024) /* or as soon as this much output is queued */

int tch_parse_host_port(const char *host_port, struct sockaddr_storage *ss,
                        int *sslen, tch_error *err) {
    /* evutil_parse_sockaddr_port refuses port 0, which listening needs. */
    memset(ss, 0, sizeof *ss);
    const char *colon = host_port ? strrchr(host_port, ':') : NULL;
    char host[64];
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    size_t hlen = colon ? (size_t)(colon - host_port) : 0;
    if (!colon || colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535 ||
        hlen == 0 || hlen >= sizeof host)
        goto bad;
    memcpy(host, host_port, hlen);
    host[hlen] = '\0';
    if (host[0] == '[' && host[hlen - 1] == ']') {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        host[hlen - 1] = '\0';
        if (evutil_inet_pton(AF_INET6, host + 1, &sin6->sin6_addr) != 1)
            goto bad;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        *sslen = (int)sizeof *sin6;
        return 0;
    }
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    if (evutil_inet_pton(AF_INET, host, &sin->sin_addr) != 1)
        goto bad;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    *sslen = (int)sizeof *sin;
    return 0;
bad:
    return tch_error_set(err, TCH_EINVAL,
                         "invalid host:port \"%s\" (want a numeric IP and a port 0-65535)",
                         host_port ? host_port : "(null)");
}

static void set_nodelay(evutil_socket_t fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* ---- closing ---------------------------------------------------------- */

static void release_socket(tch_transport *t) {
    if (t->fd < 0)
        return;
    struct event *evs[] = {t->rev, t->wev, t->flush, t->close_timer, t->expiry};
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
    if (t->fd < 0)
        return;
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
    if (!t->in_read)
        finish_close(t);
}

void tch_transport_close(tch_transport *t, int status, const char *why) {
    begin_close(t, status, why);
}

static void socket_failed(tch_transport *t, int e) {
    char why[TCH_ERROR_MSG_MAX];
    if (e == 0)
        snprintf(why, sizeof why, "connection %s%s closed by peer",
                 t->peer[0] ? "to " : "", t->peer);
    else
        snprintf(why, sizeof why, "connection %s%s: %s", t->peer[0] ? "to " : "",
                 t->peer, evutil_socket_error_to_string(e));
    t->closing = 0; /* the peer is gone: nothing more can be flushed */
    note_close(t, e == 0 ? TCH_ECLOSED : TCH_EIO, why);
    evbuffer_drain(t->out, evbuffer_get_length(t->out));
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
    if (!t->paused || t->closing || t->fd < 0 || evbuffer_get_length(t->out) > OUT_LOW)
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

static void conn_failed(void *ud, int status, const char *why) {
    begin_close(ud, status, why);
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
        if (evbuffer_get_length(t->out) > OUT_HIGH) { /* the peer is not reading */
            t->paused = 1;
            event_del(t->rev);
        }
    }
}

/* Reads what the socket holds into the input buffer. Returns 0, or the
 * errno (-1 for EOF) that ended the connection. */
static int read_socket(tch_transport *t) {
    for (int rounds = 0; rounds < 16; rounds++) { /* bounded: others get a turn */
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

static void read_cb(evutil_socket_t fd, short what, void *arg) {
    tch_transport *t = arg;
    (void)fd, (void)what;
    int rc = read_socket(t);
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
    try_write(t); /* answers made while reading go out now */
}

static void write_cb(evutil_socket_t fd, short what, void *arg) {
    tch_transport *t = arg;
    (void)fd, (void)what;
    if (t->connecting) {
        int e = t->connect_errno;
        socklen_t len = sizeof e;
        if (e == 0)
            getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &e, &len);
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
        .ping_res = conn_ping_res, .now_ms = conn_now_ms,
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
    t->conn = tch_conn_new(cfg, &cb, t);
    t->in = evbuffer_new();
    t->out = evbuffer_new();
    t->rev = event_new(base, fd, EV_READ | EV_PERSIST, read_cb, t);
    t->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, write_cb, t);
    t->flush = event_new(base, -1, 0, flush_cb, t);
    t->close_timer = evtimer_new(base, close_timeout_cb, t);
    t->expiry = evtimer_new(base, expiry_cb, t);
    if (!t->conn || !t->in || !t->out || !t->rev || !t->wev || !t->flush ||
        !t->close_timer || !t->expiry) {
        tch_transport_free(t);
        tch_error_set(err, TCH_ENOMEM, "out of memory");
        return NULL;
    }
    return t;
}

tch_transport *tch_transport_connect(struct event_base *base,
                                     const char *host_port,
                                     const tch_conn_config *cfg,
                                     const tch_transport_events *ev, void *ud,
                                     tch_error *err) {
    struct sockaddr_storage ss;
    int sslen;
    if (tch_parse_host_port(host_port, &ss, &sslen, err))
        return NULL;
    evutil_socket_t fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd < 0) {
        tch_error_set(err, TCH_EIO, "socket: %s", strerror(errno));
        return NULL;
    }
    evutil_make_socket_nonblocking(fd);
    evutil_make_socket_closeonexec(fd);
    set_nodelay(fd);
    tch_transport *t = transport_new(base, fd, cfg, ev, ud, err);
    if (!t)
        return NULL;
    snprintf(t->peer, sizeof t->peer, "%s", host_port);
    t->connecting = 1;
    if (connect(fd, (struct sockaddr *)&ss, (socklen_t)sslen) != 0 && errno != EINPROGRESS) {
        t->connect_errno = errno; /* reported from the loop, like a refusal */
        event_active(t->wev, EV_WRITE, 0);
    } else {
        event_add(t->wev, NULL); /* writable: connected, or SO_ERROR says why not */
    }
    return t;
}

tch_transport *tch_transport_accept(struct event_base *base,
                                    evutil_socket_t fd,
                                    const tch_conn_config *cfg,
                                    const tch_transport_events *ev, void *ud,
                                    tch_error *err) {
    evutil_make_socket_nonblocking(fd);
    evutil_make_socket_closeonexec(fd);
    set_nodelay(fd);
    tch_transport *t = transport_new(base, fd, cfg, ev, ud, err);
    if (t)
        event_add(t->rev, NULL);
    return t;
}

tch_conn *tch_transport_conn(tch_transport *t) { return t->conn; }

size_t tch_transport_pending_output(const tch_transport *t) {
    return t->out ? evbuffer_get_length(t->out) : 0;
}

void tch_transport_free(tch_transport *t) {
    if (!t)
        return;
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
    if (t->in)
        evbuffer_free(t->in);
    if (t->out)
        evbuffer_free(t->out);
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
    char host[48] = "?";
    int port = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
            evutil_inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
            port = ntohs(sin->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
            char h6[46];
            evutil_inet_ntop(AF_INET6, &sin6->sin6_addr, h6, sizeof h6);
            snprintf(host, sizeof host, "[%s]", h6);
            port = ntohs(sin6->sin6_port);
        }
    }
    snprintf(ls->host_port, sizeof ls->host_port, "%s:%d", host, port);
}

tch_listener *tch_listener_new(struct event_base *base, const char *host_port,
                               tch_accept_fn fn, void *ud, tch_error *err) {
    struct sockaddr_storage ss;
    int sslen;
    if (tch_parse_host_port(host_port, &ss, &sslen, err))
        return NULL;
    tch_listener *ls = calloc(1, sizeof *ls);
    if (!ls) {
        tch_error_set(err, TCH_ENOMEM, "out of memory");
        return NULL;
    }
    ls->fn = fn;
    ls->ud = ud;
    ls->l = evconnlistener_new_bind(base, accept_cb, ls,
                                    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                    128, (struct sockaddr *)&ss, sslen);
    if (!ls->l) {
        tch_error_set(err, TCH_EIO, "listen on %s: %s", host_port,
                      strerror(errno));
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
