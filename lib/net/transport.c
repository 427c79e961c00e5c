/* libevent transport (see transport.h). Calls the conn layer and libevent. */
#include "transport.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct tch_transport {
    struct bufferevent *bev;
    tch_conn *conn;
    tch_transport_events ev;
    void *ud;
    char peer[64];     /* host:port we dialled, for messages */
    int closing;       /* flushing output before close */
    int close_status;
    char close_why[TCH_ERROR_MSG_MAX];
    int in_read;       /* inside read_cb: defer the closed event */
};

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

static void finish_close(tch_transport *t) {
    if (t->bev) {
        bufferevent_free(t->bev);
        t->bev = NULL;
    }
    if (t->ev.closed)
        t->ev.closed(t->ud, t->close_status, t->close_why);
}

static void begin_close(tch_transport *t, int status, const char *why) {
    if (t->closing)
        return;
    t->closing = 1;
    t->close_status = status;
    snprintf(t->close_why, sizeof t->close_why, "%s", why);
    if (!t->bev)
        return;
    bufferevent_disable(t->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(t->bev)) == 0 && !t->in_read)
        finish_close(t);
    /* otherwise write_cb (or read_cb's tail) finishes once flushed */
}

void tch_transport_close(tch_transport *t, int status, const char *why) {
    begin_close(t, status, why);
}

/* ---- conn callbacks: forwarded to the owner ---------------------------- */

static void conn_write(void *ud, const uint8_t *data, size_t len) {
    tch_transport *t = ud;
    if (t->bev && bufferevent_write(t->bev, data, len) != 0)
        begin_close(t, TCH_ENOMEM, "cannot queue output");
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

static void conn_cancel(void *ud, uint32_t id) {
    tch_transport *t = ud;
    if (t->ev.cancel)
        t->ev.cancel(t->ud, id);
}

static void conn_failed(void *ud, int status, const char *why) {
    begin_close(ud, status, why);
}

/* ---- libevent callbacks ------------------------------------------------ */

static void read_cb(struct bufferevent *bev, void *arg) {
    tch_transport *t = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    t->in_read = 1;
    while (!t->closing) {
        size_t avail = evbuffer_get_length(in);
        uint8_t size_be[2];
        if (avail < 2)
            break;
        evbuffer_copyout(in, size_be, 2);
        size_t size = (size_t)size_be[0] << 8 | size_be[1];
        if (size < TCH_FRAME_HEADER_SIZE)
            size = avail < TCH_FRAME_HEADER_SIZE ? avail : TCH_FRAME_HEADER_SIZE;
        if (avail < size) {
            uint8_t hdr[TCH_FRAME_HEADER_SIZE];
            if (avail >= sizeof hdr) {
                evbuffer_copyout(in, hdr, sizeof hdr);
                tch_conn_peek_header(t->conn, hdr, sizeof hdr);
            }
            break;
        }
        /* A whole frame (or a too-short size the conn will reject) */
        const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)size);
        if (!p) {
            begin_close(t, TCH_ENOMEM, "out of memory");
            break;
        }
        tch_conn_feed(t->conn, p, size);
        evbuffer_drain(in, size);
    }
    t->in_read = 0;
    if (t->closing && t->bev &&
        evbuffer_get_length(bufferevent_get_output(t->bev)) == 0)
        finish_close(t);
}

static void write_cb(struct bufferevent *bev, void *arg) {
    tch_transport *t = arg;
    (void)bev;
    if (t->closing && !t->in_read)
        finish_close(t);
}

static void event_cb(struct bufferevent *bev, short what, void *arg) {
    tch_transport *t = arg;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        set_nodelay(bufferevent_getfd(t->bev));
        tch_conn_start(t->conn);
        return;
    }
    char why[TCH_ERROR_MSG_MAX];
    int status;
    if (what & BEV_EVENT_EOF) {
        status = TCH_ECLOSED;
        snprintf(why, sizeof why, "connection %s%s closed by peer",
                 t->peer[0] ? "to " : "", t->peer);
    } else {
        int e = EVUTIL_SOCKET_ERROR();
        status = TCH_EIO;
        snprintf(why, sizeof why, "connection %s%s: %s", t->peer[0] ? "to " : "",
                 t->peer, evutil_socket_error_to_string(e));
    }
    /* The peer is gone: nothing more can be flushed. */
    if (!t->closing) {
        t->closing = 1;
        t->close_status = status;
        snprintf(t->close_why, sizeof t->close_why, "%s", why);
    }
    finish_close(t);
}

/* ---- construction ------------------------------------------------------ */

static tch_transport *transport_new(struct event_base *base, evutil_socket_t fd,
                                    const tch_conn_config *cfg,
                                    const tch_transport_events *ev, void *ud,
                                    tch_error *err) {
    tch_transport *t = calloc(1, sizeof *t);
    if (!t)
        goto nomem;
    static const tch_conn_callbacks cb = {
        .write = conn_write, .ready = conn_ready, .call_req = conn_call_req,
        .call_res = conn_call_res, .res_failed = conn_res_failed,
        .error_frame = conn_error_frame, .cancel = conn_cancel,
        .failed = conn_failed,
    };
    t->ev = *ev;
    t->ud = ud;
    t->conn = tch_conn_new(cfg, &cb, t);
    t->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!t->conn || !t->bev)
        goto nomem;
    bufferevent_setcb(t->bev, read_cb, write_cb, event_cb, t);
    bufferevent_enable(t->bev, EV_READ | EV_WRITE);
    return t;
nomem:
    if (t) {
        if (!t->bev && fd >= 0)
            evutil_closesocket(fd);
        tch_transport_free(t);
    } else if (fd >= 0) {
        evutil_closesocket(fd);
    }
    tch_error_set(err, TCH_ENOMEM, "out of memory");
    return NULL;
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
    tch_transport *t = transport_new(base, -1, cfg, ev, ud, err);
    if (!t)
        return NULL;
    snprintf(t->peer, sizeof t->peer, "%s", host_port);
    if (bufferevent_socket_connect(t->bev, (struct sockaddr *)&ss, sslen) != 0) {
        tch_error_set(err, TCH_EIO, "connect to %s: %s", host_port,
                      strerror(errno));
        tch_transport_free(t);
        return NULL;
    }
    return t;
}

tch_transport *tch_transport_accept(struct event_base *base,
                                    evutil_socket_t fd,
                                    const tch_conn_config *cfg,
                                    const tch_transport_events *ev, void *ud,
                                    tch_error *err) {
    evutil_make_socket_nonblocking(fd);
    set_nodelay(fd);
    return transport_new(base, fd, cfg, ev, ud, err);
}

tch_conn *tch_transport_conn(tch_transport *t) { return t->conn; }

size_t tch_transport_pending_output(const tch_transport *t) {
    return t->bev ? evbuffer_get_length(bufferevent_get_output(t->bev)) : 0;
}

void tch_transport_free(tch_transport *t) {
    if (!t)
        return;
    if (t->bev)
        bufferevent_free(t->bev);
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
