/* libevent transport: moves bytes between a socket and a tch_conn.
 *
 * A tch_transport owns one bufferevent and one tch_conn. It reads whole
 * frames out of the input buffer and feeds them to the conn, writes what the
 * conn emits, and on failure flushes what was queued (an error frame, say)
 * before closing. Owner callbacks are never run from inside tch_conn code,
 * so the owner may free the transport from `closed`. A host name is looked
 * up with the caller's evdns resolver (never blocking the loop) and its
 * addresses are tried in order. */
#ifndef TCH_TRANSPORT_H
#define TCH_TRANSPORT_H

#include "conn.h"

#include <event2/util.h>

#include <netinet/in.h>
#include <sys/socket.h>

struct event_base;
struct evdns_base;
typedef struct tch_transport tch_transport;

typedef struct tch_transport_events {
    void (*ready)(void *ud);
    void (*call_req)(void *ud, tch_call_msg *msg); /* callee owns msg */
    void (*call_res)(void *ud, tch_call_msg *msg); /* callee owns msg */
    void (*res_failed)(void *ud, uint32_t id, int status, const char *why);
    void (*error_frame)(void *ud, uint32_t id, const tch_error_frame *e);
    void (*cancel)(void *ud, uint32_t id);
    int (*expects_response)(void *ud, uint32_t id); /* optional */
    void (*ping_res)(void *ud, uint32_t id);         /* optional */
    /* The connection is gone; no further events. The owner frees the
     * transport (it may do so from this callback). */
    void (*closed)(void *ud, int status, const char *why);
    /* Optional: a limit acted on this connection (a request refused with
     * Busy over a budget, the frame timeout), for a log line. */
    void (*limit)(void *ud, const char *why);
} tch_transport_events;

/* dns looks up host names; it may be NULL when host_port is numeric. A
 * failed lookup or connect ends in `closed` (TCH_EIO), never here. */
tch_transport *tch_transport_connect(struct event_base *base,
                                     struct evdns_base *dns,
                                     const char *host_port,
                                     const tch_conn_config *cfg,
                                     const tch_transport_events *ev, void *ud,
                                     tch_error *err);
/* Takes ownership of fd (an accepted socket). */
tch_transport *tch_transport_accept(struct event_base *base,
                                    evutil_socket_t fd,
                                    const tch_conn_config *cfg,
                                    const tch_transport_events *ev, void *ud,
                                    tch_error *err);
tch_conn *tch_transport_conn(tch_transport *t);
/* Flushes pending output then closes; `closed` follows. */
void tch_transport_close(tch_transport *t, int status, const char *why);
/* Closes at once without callbacks and frees. */
void tch_transport_free(tch_transport *t);
size_t tch_transport_pending_output(const tch_transport *t);
/* An accepted socket's remote address, "IP:PORT" or "[IP6]:PORT" (read
 * once at accept); "" for one we dialled or when it could not be read. */
const char *tch_transport_remote_addr(const tch_transport *t);
/* A frame begun must be whole within ms (0: no bound, the default); past
 * it the peer gets a fatal error frame and the connection closes with
 * TCH_ETIMEOUT. */
int tch_transport_set_frame_timeout(tch_transport *t, uint32_t ms);
/* Why an outbound connection is not ready yet, for a timeout's message:
 * the lookup, the connect or the peer's silence (with what it sent, if
 * anything), and for how long. Empty once ready, or for an accepted one. */
void tch_transport_explain_wait(const tch_transport *t, char *buf, size_t cap);

/* A listening socket. A host name is looked up with getaddrinfo (blocking:
 * listening is a setup call) and the first address that binds is used,
 * IPv4 ones first, since the Node peer wants a numeric IPv4 host_port. */
typedef struct tch_listener tch_listener;
typedef void (*tch_accept_fn)(evutil_socket_t fd, void *ud);
tch_listener *tch_listener_new(struct event_base *base, const char *host_port,
                               tch_accept_fn fn, void *ud, tch_error *err);
/* The numeric "host:port" actually bound ("[::1]:4040" for IPv6). */
const char *tch_listener_host_port(const tch_listener *l);
void tch_listener_free(tch_listener *l);

/* HOST:PORT taken apart. HOST is a host name, an IPv4 address, or an
 * IPv6 address in brackets ("[::1]:4040"); PORT is 0-65535. Peers and
 * connections keep the string, so it is at most TCH_HOST_PORT_MAX - 1
 * bytes. */
#define TCH_HOST_PORT_MAX 64
typedef struct tch_addr {
    char host[TCH_HOST_PORT_MAX]; /* without the brackets */
    uint16_t port;
    struct sockaddr_storage ss; /* a numeric host as a socket address */
    int sslen;                  /* 0: host is a name, to be looked up */
} tch_addr;
int tch_addr_parse(const char *host_port, tch_addr *a, tch_error *err);

/* Splits "host:port" into a sockaddr; a host name is TCH_EINVAL (this
 * never looks anything up). */
int tch_parse_host_port(const char *host_port, struct sockaddr_storage *ss,
                        int *sslen, tch_error *err);

#endif
