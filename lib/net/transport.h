/* libevent transport: moves bytes between a socket and a tch_conn.
 *
 * A tch_transport owns the socket, its libevent events and the dialling
 * (name lookup, connect) or the accepted socket. It reads straight into
 * the conn's input, has the conn process it, and writes what the conn
 * hands out (tch_conn_out / tch_conn_out_done); it decodes no frames and
 * reports no protocol events: those go from the conn to its owner through
 * the conn's one event table. The conn belongs to the owner, which frees
 * it after the transport. A host name is looked up with the caller's
 * evdns resolver (never blocking the loop) and its addresses are tried in
 * order. */
#ifndef TCH_TRANSPORT_H
#define TCH_TRANSPORT_H

#include "conn.h"

#include <event2/util.h>

#include <netinet/in.h>
#include <sys/socket.h>

struct event_base;
struct evdns_base;
typedef struct tch_transport tch_transport;

/* What the transport needs from its owner: the owner's clock (passed to
 * the conn, the one clock of the connection) and the end. */
typedef struct tch_transport_owner {
    uint64_t (*now_ms)(void *ud); /* monotonic ms */
    /* The connection is gone; no further events. The owner frees the
     * transport (it may do so from this callback). Never run from inside
     * a tch_transport or tch_conn call. */
    void (*closed)(void *ud, int status, const char *why);
    void *ud;
    /* Where the transport's own struct comes from (NULL: the C library);
     * must outlive it. libevent's events and evdns' lookups inside it use
     * libevent's allocator (event_set_mem_functions is process-wide). */
    const tch_allocator *alloc;
} tch_transport_owner;

/* dns looks up host names; it may be NULL when host_port is numeric. A
 * failed lookup or connect ends in `closed` (TCH_EIO), never here. The
 * conn (outbound) gets its init queued once connected. */
tch_transport *tch_transport_connect(struct event_base *base,
                                     struct evdns_base *dns,
                                     const char *host_port, tch_conn *conn,
                                     const tch_transport_owner *owner,
                                     tch_error *err);
/* Takes ownership of fd (an accepted socket). */
tch_transport *tch_transport_accept(struct event_base *base,
                                    evutil_socket_t fd, tch_conn *conn,
                                    const tch_transport_owner *owner,
                                    tch_error *err);
/* The conn has output waiting (its `output` event): written later in this
 * loop pass, so what is queued together shares one write. */
void tch_transport_want_write(tch_transport *t);
/* Flushes pending output then closes; `closed` follows with status and
 * why (a conn that failed during the handshake over bytes that are not
 * TChannel gets why replaced by what the peer sent). */
void tch_transport_close(tch_transport *t, int status, const char *why);
/* Closes at once without callbacks and frees. */
void tch_transport_free(tch_transport *t);
/* An accepted socket's remote address, "IP:PORT" or "[IP6]:PORT" (read
 * once at accept); "" for one we dialled or when it could not be read. */
const char *tch_transport_remote_addr(const tch_transport *t);
/* Why an outbound connection is not ready yet, for a timeout's message:
 * the lookup, the connect or the peer's silence (with what it sent, if
 * anything), and for how long. Empty once ready, or for an accepted one. */
void tch_transport_explain_wait(const tch_transport *t, char *buf, size_t cap);

/* A listening socket. A host name is looked up with getaddrinfo (blocking:
 * listening is a setup call) and the first address that binds is used,
 * IPv4 ones first, since the Node peer wants a numeric IPv4 host_port. */
typedef struct tch_listener tch_listener;
typedef void (*tch_accept_fn)(evutil_socket_t fd, void *ud);
/* alloc (NULL: the C library) is for the listener's struct; must outlive it. */
tch_listener *tch_listener_new(struct event_base *base, const char *host_port,
                               tch_accept_fn fn, void *ud, const tch_allocator *alloc,
                               tch_error *err);
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
