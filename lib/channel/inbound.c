/* Serving: dispatch inbound calls to handlers, enforce their TTL, send the
 * answers. An inbound lives until its handler answers, even when its
 * connection is gone (then it is "detached": cc is NULL). */
#include "channel_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tch_inbound {
    tch_channel *ch;
    chconn *cc; /* NULL once detached */
    uint32_t id;
    int done;
    tch_call_msg *msg;
    struct event ttl_timer;
    int timer_set;
    char peer[64];
    uint64_t start_us; /* for the event hooks; 0: they did not hear of it */
    /* Detached while its handler still holds it: listed in home->detached,
     * its message's bytes still in home's budget (the charge follows the
     * memory, or cancel-and-repeat would get past the budget). */
    tch_channel *home;
    tch_inbound *dprev, *dnext;
    /* The channel's allocator, copied: an inbound (and its message) may be
     * answered, and freed, after the channel is gone. NULL: the C library,
     * else &alloc_copy. */
    const tch_allocator *alloc;
    tch_allocator alloc_copy;
};

/* The event hooks hear how the call ended, once (before detach, which
 * forgets the channel). */
static void hook_end(tch_inbound *in, int status, uint8_t code, const char *why) {
    uint64_t start = in->start_us;
    in->start_us = 0;
    if (!start || !in->ch || !HOOKS_ON(in->ch))
        return;
    tch_response end = {.status = status, .code = code, .error_code = code,
                        .message = why};
    tch__hooks_call_in(in->ch, in->msg, in->peer, start, &end);
}

/* Off home's list of detached calls; the charge stays with the message. */
static void unlist_detached(tch_inbound *in) {
    if (!in->home)
        return;
    if (in->dprev)
        in->dprev->dnext = in->dnext;
    else
        in->home->detached = in->dnext;
    if (in->dnext)
        in->dnext->dprev = in->dprev;
    in->home = NULL;
    in->dprev = in->dnext = NULL;
}

void tch__inbound_release_detached(tch_channel *ch) {
    while (ch->detached) {
        tch_inbound *in = ch->detached;
        tch_call_msg_uncharge(in->msg);
        unlist_detached(in);
    }
}

static void inbound_free(tch_inbound *in) {
    unlist_detached(in); /* freeing the message gives its bytes back */
    if (in->ch && in->ch->current == in) /* answered inside its handler */
        in->ch->current = NULL;
    if (in->timer_set)
        event_del(&in->ttl_timer);
    tch_call_msg_free(in->msg);
    tch__free(in->alloc, in->msg);
    tch__free_self(in->alloc, in);
}

/* The message and its buffers move to the inbound's copy of the allocator,
 * which lives as long as they do. */
static void adopt_msg(tch_inbound *in, tch_call_msg *msg) {
    in->msg = msg;
    if (!in->alloc)
        return;
    msg->alloc = in->alloc;
    msg->meta.alloc = in->alloc;
    for (int i = 0; i < 3; i++)
        msg->args[i].alloc = in->alloc;
}

/* Stops tracking the call on its connection; the handler still owns it. */
static void detach(tch_inbound *in) {
    tch_channel *ch = in->ch;
    if (in->cc && tch_intmap_get(&in->cc->inbound, in->id) == in)
        tch_intmap_remove(&in->cc->inbound, in->id);
    if (in->ch && in->ch->current == in)
        in->ch->current = NULL;
    in->ch = NULL; /* the channel may be freed before the handler answers */
    in->cc = NULL;
    if (in->msg && in->msg->budget && ch && !ch->freeing && !in->home) {
        in->home = ch; /* its bytes stay counted until the handler lets go */
        in->dnext = ch->detached;
        if (ch->detached)
            ch->detached->dprev = in;
        ch->detached = in;
    } else if (in->msg && !in->home) {
        tch_call_msg_uncharge(in->msg);
    }
    in->done = 1;
    if (in->timer_set) {
        event_del(&in->ttl_timer);
        in->timer_set = 0;
    }
    if (ch && !ch->freeing)
        tch__channel_close_progress(ch);
}

static void on_ttl(evutil_socket_t fd, short what, void *arg) {
    tch_inbound *in = arg;
    (void)fd, (void)what;
    in->timer_set = 0;
    if (in->cc) {
        char msg[128];
        snprintf(msg, sizeof msg, "call timed out on the server after %u ms",
                 in->msg->ttl_ms);
        tch_conn_send_error(in->cc->conn, in->id,
                            TCH_PCODE_TIMEOUT, &in->msg->tracing, msg);
        hook_end(in, TCH_ETIMEOUT, TCH_PCODE_TIMEOUT, msg);
    }
    detach(in);
}

static const handler_entry *find_handler(const tch_channel *ch, tch_slice service,
                                         tch_slice endpoint) {
    for (size_t i = 0; i < ch->nhandlers; i++) {
        const handler_entry *h = &ch->handlers[i];
        if (tch_slice_eq_cstr(service, h->service) &&
            tch_slice_eq_cstr(endpoint, h->endpoint))
            return h;
    }
    return NULL;
}

static void reject_unknown(tch_inbound *in) {
    char msg[640];
    tch_slice s = in->msg->service, e = tch_buf_slice(&in->msg->args[0]);
    snprintf(msg, sizeof msg, "no handler for service \"%.*s\" and endpoint \"%.*s\"",
             (int)(s.len > 255 ? 255 : s.len), (const char *)s.ptr,
             (int)(e.len > 255 ? 255 : e.len), (const char *)e.ptr);
    tch_inbound_respond_error(in, TCH_PCODE_BAD_REQUEST, msg);
}

/* Why this call cannot be taken (the text of the error frame, with its
 * code in *code), or NULL. */
static const char *refusal(const chconn *cc, const tch_call_msg *msg, uint8_t *code,
                           char *buf, size_t cap) {
    const tch_channel *ch = cc->ch;
    if (ch->closing || ch->free_pending) {
        *code = TCH_PCODE_DECLINED;
        return "server is shutting down";
    }
    if (tch_intmap_get(&cc->inbound, msg->id)) {
        *code = TCH_PCODE_BAD_REQUEST;
        return "call id already in use by a call in progress";
    }
    if (cc->inbound.len >= ch->opts.max_pending_calls) {
        *code = TCH_PCODE_BUSY;
        snprintf(buf, cap, "%zu calls already in progress on this connection (the limit)",
                 cc->inbound.len);
        return buf;
    }
    return NULL;
}

/* Meta::health over the thrift scheme, which tchannel-python and tchannel-go
 * servers answer without being asked to (health checkers and `tcurl
 * --health` call it, under any service name). */
static int is_meta_health(const tch_inbound *in) {
    tch_slice as;
    return tch_slice_eq_cstr(tch_buf_slice(&in->msg->args[0]), "Meta::health") &&
           tch_inbound_header(in, "as", &as) && tch_slice_eq_cstr(as, "thrift");
}

/* Meta.health()'s result, thrift binary: success (field 0) is
 * HealthStatus{1: ok = true}; no application headers. */
static void answer_healthy(tch_inbound *in) {
    static const uint8_t no_headers[] = {0x00, 0x00};
    static const uint8_t result[] = {0x0c, 0x00, 0x00,       /* struct success, id 0 */
                                     0x02, 0x00, 0x01, 0x01, /* bool ok, id 1: true */
                                     0x00,                   /* end of HealthStatus */
                                     0x00};                  /* end of the result */
    tch_inbound_respond(in, 0, tch_slice_of(no_headers, sizeof no_headers),
                        tch_slice_of(result, sizeof result));
}

void tch__inbound_dispatch(chconn *cc, tch_call_msg *msg) {
    tch_channel *ch = cc->ch;
    uint8_t code;
    char why[96];
    const char *refuse = refusal(cc, msg, &code, why, sizeof why);
    if (refuse) {
        tch_conn_send_error(cc->conn, msg->id, code, &msg->tracing, refuse);
        tch_call_msg_free(msg);
        tch__free(msg->alloc, msg);
        return;
    }
    tch_inbound *in = tch__calloc(ch->alloc, 1, sizeof *in);
    if (!in || tch_intmap_put(&cc->inbound, msg->id, in) != 0) {
        tch_conn_send_error(cc->conn, msg->id, TCH_PCODE_BUSY,
                            &msg->tracing, "server out of memory");
        tch__free(ch->alloc, in);
        tch_call_msg_free(msg);
        tch__free(msg->alloc, msg);
        return;
    }
    in->alloc = tch__alloc_keep(&in->alloc_copy, ch->alloc);
    in->ch = ch;
    in->cc = cc;
    in->id = msg->id;
    adopt_msg(in, msg);
    _Static_assert(sizeof in->peer == sizeof cc->host_port, "peer names are copied whole");
    memcpy(in->peer, cc->host_port, sizeof in->peer); /* hot path: no snprintf */
    if (msg->ttl_ms > 0) {
        struct timeval tv = {msg->ttl_ms / 1000, (msg->ttl_ms % 1000) * 1000};
        evtimer_assign(&in->ttl_timer, ch->base, on_ttl, in);
        evtimer_add(&in->ttl_timer, &tv);
        in->timer_set = 1;
    }
    const handler_entry *h = find_handler(ch, msg->service,
                                          tch_buf_slice(&msg->args[0]));
    if (HOOKS_ON(ch)) {
        in->start_us = tch_channel_now_us(ch);
        tch__hooks_call_in(ch, msg, in->peer, in->start_us, NULL);
    }
    tch_inbound *outer = ch->current; /* handlers may nest via loopback */
    ch->current = in;
    if (h)
        CHANNEL_USER_CALL(ch, h->fn(in, h->ud));
    else if (is_meta_health(in)) /* a handler registered for it wins */
        answer_healthy(in);
    else if (ch->fallback)
        CHANNEL_USER_CALL(ch, ch->fallback(in, ch->fallback_ud));
    else
        reject_unknown(in);
    ch->current = outer;
}

void tch__inbound_cancel(chconn *cc, uint32_t id) {
    tch_inbound *in = tch_intmap_get(&cc->inbound, id);
    if (in) {
        hook_end(in, TCH_ECANCELED, TCH_PCODE_CANCELLED, "cancelled by the caller");
        detach(in);
    }
}

void tch__inbound_detach_all(chconn *cc) {
    tch_inbound *in;
    while ((in = tch_intmap_pop_any(&cc->inbound, NULL))) {
        hook_end(in, TCH_ECLOSED, TCH_PCODE_NETWORK, "connection closed before the answer");
        in->cc = NULL;
        detach(in);
    }
}

/* ---- accessors ------------------------------------------------------------ */

tch_slice tch_inbound_service(const tch_inbound *in) { return in->msg->service; }
tch_slice tch_inbound_endpoint(const tch_inbound *in) { return tch_buf_slice(&in->msg->args[0]); }
tch_slice tch_inbound_arg2(const tch_inbound *in) { return tch_buf_slice(&in->msg->args[1]); }
tch_slice tch_inbound_arg3(const tch_inbound *in) { return tch_buf_slice(&in->msg->args[2]); }
uint32_t tch_inbound_ttl_ms(const tch_inbound *in) { return in->msg->ttl_ms; }
uint8_t tch_inbound_flags(const tch_inbound *in) { return in->msg->flags; }

tch_slice tch_inbound_caller(const tch_inbound *in) {
    tch_slice cn = TCH_SLICE_NULL;
    tch_inbound_header(in, "cn", &cn);
    return cn;
}
const char *tch_inbound_peer(const tch_inbound *in) { return in->peer; }
const char *tch_inbound_remote_addr(const tch_inbound *in) {
    return in->cc && in->cc->t ? tch_transport_remote_addr(in->cc->t) : "";
}
bool tch_inbound_is_done(const tch_inbound *in) { return in->done || !in->cc; }
tch_channel *tch_inbound_channel(const tch_inbound *in) { return in->ch; }

tch_trace tch_inbound_trace(const tch_inbound *in) {
    const tch_trace *t = &in->msg->tracing;
    tch_trace out = {t->span_id, t->parent_id, t->trace_id, t->flags};
    return out;
}

size_t tch_inbound_header_count(const tch_inbound *in) { return in->msg->nheaders; }

tch_kv tch_inbound_header_at(const tch_inbound *in, size_t i) {
    tch_kv h = {TCH_SLICE_NULL, TCH_SLICE_NULL};
    if (i < in->msg->nheaders) {
        h.key = in->msg->headers[i].key;
        h.value = in->msg->headers[i].value;
    }
    return h;
}

bool tch_inbound_header(const tch_inbound *in, const char *key, tch_slice *value) {
    for (size_t i = 0; i < in->msg->nheaders; i++) {
        if (tch_slice_eq_cstr(in->msg->headers[i].key, key)) {
            *value = in->msg->headers[i].value;
            return 1;
        }
    }
    return 0;
}

/* ---- answering -------------------------------------------------------------- */

/* A call response; send_flags are tch_conn_send_call_with's. */
static int answer(tch_inbound *in, uint8_t code, tch_slice arg2, tch_slice arg3,
                  const tch_kv *headers, size_t nheaders, unsigned send_flags) {
    if (tch_inbound_is_done(in)) {
        inbound_free(in);
        return TCH_ECLOSED;
    }
    tch_call_fields *f = &in->cc->ch->fields;
    f->flags = 0;
    f->ttl_ms = 0;
    f->code = code;
    f->tracing = in->msg->tracing;
    f->service = TCH_SLICE_NULL;
    f->csum_type = in->msg->csum_type; /* answer in the caller's checksum */
    if ((send_flags & TCH_CONN_SEND_BAD_CHECKSUM) && f->csum_type == TCH_CSUM_NONE)
        f->csum_type = TCH_CSUM_CRC32C; /* a caller that sent none still gets one to fail */
    f->nheaders = 0;
    tch_slice as;
    int has_as = 0;
    for (size_t i = 0; i < nheaders && f->nheaders < TCH_CALL_MAX_HEADERS; i++) {
        has_as |= tch_slice_eq_cstr(headers[i].key, "as");
        f->headers[f->nheaders++] = (tch_kv){headers[i].key, headers[i].value};
    }
    if (!has_as && tch_inbound_header(in, "as", &as) && f->nheaders < TCH_CALL_MAX_HEADERS)
        f->headers[f->nheaders++] = (tch_kv){tch_slice_cstr("as"), as};
    /* arg1 of a response is empty, as the Node and Go peers send it */
    tch_slice args[3] = {TCH_SLICE_NULL, arg2, arg3};
    tch_error err;
    int rc = tch_conn_send_call_with(in->cc->conn, TCH_FRAME_CALL_RES,
                                     in->id, f, args, send_flags, &err);
    if (rc < 0) /* e.g. an arg too large for the protocol: tell the caller */
        tch_conn_send_error(in->cc->conn, in->id,
                            TCH_PCODE_UNEXPECTED, &in->msg->tracing, err.msg);
    if (in->start_us)
        hook_end(in, rc < 0 ? TCH_EPROTO : 0, rc < 0 ? TCH_PCODE_UNEXPECTED : code,
                 rc < 0 ? err.msg : "");
    detach(in);
    inbound_free(in);
    return rc;
}

int tch_inbound_respond_with(tch_inbound *in, uint8_t code, tch_slice arg2,
                             tch_slice arg3, const tch_kv *headers,
                             size_t nheaders) {
    return answer(in, code, arg2, arg3, headers, nheaders, 0);
}

int tch_inbound_respond(tch_inbound *in, uint8_t code, tch_slice arg2,
                        tch_slice arg3) {
    return answer(in, code, arg2, arg3, NULL, 0, 0);
}

int tch_inbound_respond_bad_checksum(tch_inbound *in, uint8_t code, tch_slice arg2,
                                     tch_slice arg3) {
    return answer(in, code, arg2, arg3, NULL, 0, TCH_CONN_SEND_BAD_CHECKSUM);
}

int tch_inbound_close_connection(tch_inbound *in, const char *why) {
    if (tch_inbound_is_done(in)) {
        inbound_free(in);
        return TCH_ECLOSED;
    }
    chconn *cc = in->cc;
    tch_channel *ch = cc->ch;
    char msg[TCH_ERROR_MSG_MAX];
    snprintf(msg, sizeof msg, "connection closed by the handler of %.*s::%.*s%s%s",
             (int)(in->msg->service.len > 255 ? 255 : in->msg->service.len),
             (const char *)in->msg->service.ptr,
             (int)(in->msg->args[0].len > 255 ? 255 : in->msg->args[0].len),
             (const char *)in->msg->args[0].ptr, why && *why ? ": " : "", why ? why : "");
    tch__channel_log(ch, "%s: closed %s connection %s: %s", ch->name,
                cc->outbound ? "outbound" : "inbound",
                cc->host_port[0] ? cc->host_port : "(before init)", msg);
    hook_end(in, TCH_ECLOSED, TCH_PCODE_NETWORK, msg);
    detach(in);
    inbound_free(in);
    /* As if the peer had gone: the other calls on it end now (their answers
     * are dropped, ours fail), then what was already queued is flushed. */
    cc->closing = 1;
    tch__inbound_detach_all(cc);
    tch__outbound_fail_all(cc, TCH_ECLOSED, msg);
    tch_transport_close(cc->t, TCH_ECLOSED, msg);
    return 0;
}

int tch_inbound_respond_error(tch_inbound *in, uint8_t code, const char *msg) {
    if (tch_inbound_is_done(in)) {
        inbound_free(in);
        return TCH_ECLOSED;
    }
    int rc = tch_conn_send_error(in->cc->conn, in->id, code,
                                 &in->msg->tracing, msg ? msg : "");
    hook_end(in, TCH_EREMOTE, code, msg ? msg : "");
    detach(in);
    inbound_free(in);
    return rc;
}
