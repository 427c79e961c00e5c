/* Pings: a ping req on the connection to a peer, answered by the peer's
 * library; the round trip is reported from the loop, or a timeout. */
#include "channel_internal.h"

#include <stdlib.h>
#include <time.h>

typedef struct ping {
    chconn *cc;
    uint32_t id;
    uint64_t started_us;
    tch_ping_cb cb;
    void *ud;
    struct event timer;
} ping;

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void finish(ping *p, int status) {
    event_del(&p->timer);
    tch_channel *ch = p->cc->ch;
    uint64_t rtt = status == 0 ? now_us() - p->started_us : 0;
    tch_ping_cb cb = p->cb;
    void *ud = p->ud;
    tch__free(ch->alloc, p);
    CHANNEL_USER_CALL(ch, cb(status, rtt, ud));
}

static void on_timeout(evutil_socket_t fd, short what, void *arg) {
    ping *p = arg;
    (void)fd, (void)what;
    tch_intmap_remove(&p->cc->pings, p->id);
    finish(p, TCH_ETIMEOUT);
}

void tch__ping_on_response(chconn *cc, uint32_t id) {
    ping *p = tch_intmap_remove(&cc->pings, id);
    if (p)
        finish(p, 0);
}

void tch__ping_fail_all(chconn *cc, int status) {
    ping *p;
    while ((p = tch_intmap_pop_any(&cc->pings, NULL)))
        finish(p, status ? status : TCH_ECLOSED);
}

int tch_channel_ping(tch_channel *ch, const char *host_port, uint32_t timeout_ms,
                     tch_ping_cb cb, void *ud, tch_error *err) {
    if (!cb)
        return tch_error_set(err, TCH_EINVAL, "ping: callback is required");
    if (ch->closing || ch->freeing || ch->free_pending)
        return tch_error_set(err, TCH_ECLOSED, "ping: channel %s is closing", ch->name);
    chconn *cc = tch__chconn_for_peer(ch, host_port, err);
    if (!cc)
        return err ? err->code : TCH_EIO;
    ping *p = tch__calloc(ch->alloc, 1, sizeof *p);
    if (!p)
        return tch_error_set(err, TCH_ENOMEM, "out of memory");
    tch_conn *conn = cc->conn;
    p->cc = cc;
    p->cb = cb;
    p->ud = ud;
    p->started_us = now_us();
    do
        p->id = tch_conn_next_id(conn);
    while (tch_intmap_get(&cc->calls, p->id) || tch_intmap_get(&cc->pings, p->id));
    if (tch_intmap_put(&cc->pings, p->id, p) != 0) {
        tch__free(ch->alloc, p);
        return tch_error_set(err, TCH_ENOMEM, "out of memory");
    }
    uint32_t ms = timeout_ms ? timeout_ms : ch->opts.default_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_assign(&p->timer, ch->base, on_timeout, p);
    evtimer_add(&p->timer, &tv);
    tch_conn_send_ping(conn, p->id); /* held until the handshake, like calls */
    return 0;
}
