/* libevent transport: moves bytes between a socket and a tch_conn.
 *
 * A tch_transport owns one bufferevent and one tch_conn. It reads whole
 * frames out of the input buffer and feeds them to the conn, writes what the
 * conn emits, and on failure flushes what was queued (an error frame, say)
 * before closing. Owner callbacks are never run from inside tch_conn code,
 * so the owner may free the transport from `closed`. Numeric host:port
 * only: no DNS. */
#ifndef TCH_TRANSPORT_H
#define TCH_TRANSPORT_H

#include "conn.h"

#include <event2/util.h>

struct event_base;
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
} tch_transport_events;

tch_transport *tch_transport_connect(struct event_base *base,
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

/* A listening socket. */
typedef struct tch_listener tch_listener;
typedef void (*tch_accept_fn)(evutil_socket_t fd, void *ud);
tch_listener *tch_listener_new(struct event_base *base, const char *host_port,
                               tch_accept_fn fn, void *ud, tch_error *err);
const char *tch_listener_host_port(const tch_listener *l);
void tch_listener_free(tch_listener *l);

/* Splits "host:port" into a sockaddr (numeric hosts only). */
int tch_parse_host_port(const char *host_port, struct sockaddr_storage *ss,
                        int *sslen, tch_error *err);

#endif
