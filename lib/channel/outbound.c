/* Calling: send a call on a connection to a chosen peer, match its answer
 * by message id, enforce the caller's timeout, report exactly once. */
#include "channel_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct outcall {
    tch_channel *ch;
    chconn *cc;
    uint32_t id;
    tch_call_cb cb;
    void *ud;
    struct event timer;
    uint32_t timeout_ms;
    int deferred_status; /* a local failure reported from the loop */
    uint8_t deferred_code;
    char what[160];      /* "service::endpoint" for messages */
    char msg[TCH_ERROR_MSG_MAX];
};

static uint8_t code_for_status(int status) {
    switch (status) {
    case TCH_ETIMEOUT: return TCH_PCODE_TIMEOUT;
    case TCH_ECLOSED:
    case TCH_EIO: return TCH_PCODE_NETWORK;
    case TCH_ECANCELED: return TCH_PCODE_CANCELLED;
    case TCH_ETOOBIG: return TCH_PCODE_BUSY;
    default: return TCH_PCODE_UNEXPECTED;
    }
}

static void complete(outcall *oc, const tch_response *res) {
    event_del(&oc->timer);
    oc->cb(res, oc->ud);
    free(oc);
}

static void complete_local(outcall *oc, int status, const char *peer,
                           const char *why) {
    tch_response res = {.status = status, .error_code = code_for_status(status),
                        .message = why, .peer = peer ? peer : ""};
    complete(oc, &res);
}

static outcall *take(chconn *cc, uint32_t id) {
    return tch_intmap_remove(&cc->calls, id);
}

void outbound_on_response(chconn *cc, tch_call_msg *msg) {
    outcall *oc = take(cc, msg->id);
    if (oc) {
        tch_header hs[TCH_CALL_MAX_HEADERS];
        for (size_t i = 0; i < msg->nheaders; i++)
            hs[i] = (tch_header){msg->headers[i].key, msg->headers[i].value};
        tch_response res = {
            .status = 0, .code = msg->code, .message = "",
            .arg2 = tch_buf_slice(&msg->args[1]),
            .arg3 = tch_buf_slice(&msg->args[2]),
            .headers = hs, .nheaders = msg->nheaders, .peer = cc->host_port,
        };
        complete(oc, &res);
    } /* else: a late answer to a call that already timed out */
    tch_call_msg_free(msg);
    free(msg);
}

void outbound_on_error_frame(chconn *cc, uint32_t id, const tch_error_frame *e) {
    outcall *oc = id == TCH_ID_NONE ? NULL : take(cc, id);
    if (!oc)
        return;
    snprintf(oc->msg, sizeof oc->msg, "%.*s", (int)e->message.len,
             (const char *)e->message.ptr);
    tch_response res = {.status = TCH_EREMOTE, .error_code = e->code,
                        .message = oc->msg, .peer = cc->host_port};
    complete(oc, &res);
}

void outbound_on_failed(chconn *cc, uint32_t id, int status, const char *why) {
    outcall *oc = take(cc, id);
    if (oc)
        complete_local(oc, status, cc->host_port, why);
}

void outbound_fail_all(chconn *cc, int status, const char *why) {
    outcall *oc;
    while ((oc = tch_intmap_pop_any(&cc->calls, NULL))) {
        snprintf(oc->msg, sizeof oc->msg, "%s failed: %s", oc->what, why);
        complete_local(oc, status, cc->host_port, oc->msg);
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg) {
    outcall *oc = arg;
    (void)fd, (void)what;
    if (oc->deferred_status) {
        complete_local(oc, oc->deferred_status, "", oc->msg);
        return;
    }
    take(oc->cc, oc->id);
    snprintf(oc->msg, sizeof oc->msg, "call to %s at %s timed out after %u ms",
             oc->what, oc->cc->host_port, oc->timeout_ms);
    complete_local(oc, TCH_ETIMEOUT, oc->cc->host_port, oc->msg);
}

/* Reports a failure from the event loop, never from inside the call. */
static void defer_failure(outcall *oc, int status, const char *why) {
    oc->deferred_status = status;
    snprintf(oc->msg, sizeof oc->msg, "%s", why);
    struct timeval now = {0, 0};
    evtimer_add(&oc->timer, &now);
}

/* ---- starting a call ------------------------------------------------------ */

static int validate(const tch_channel *ch, const tch_call_opts *o, tch_error *err) {
    if (!o || !o->service || !*o->service)
        return tch_error_set(err, TCH_EINVAL, "call: service is required");
    if (strlen(o->service) > 255)
        return tch_error_set(err, TCH_EINVAL, "call: service name longer than 255 bytes");
    if (o->endpoint.len == 0)
        return tch_error_set(err, TCH_EINVAL, "call to %s: endpoint is required", o->service);
    const tch_slice *args[3] = {&o->endpoint, &o->arg2, &o->arg3};
    for (int i = 0; i < 3; i++)
        if (args[i]->len > ch->opts.max_arg_size)
            return tch_error_set(err, TCH_ETOOBIG,
                                 "call to %s: arg%d is %zu bytes, over the limit of %zu",
                                 o->service, i + 1, args[i]->len, ch->opts.max_arg_size);
    if (o->nheaders > TCH_CALL_MAX_HEADERS - 2)
        return tch_error_set(err, TCH_EINVAL, "call to %s: too many transport headers (%zu)",
                             o->service, o->nheaders);
    return 0;
}

static const char *pick_peer(tch_channel *ch, const tch_call_opts *o, tch_error *err) {
    if (o->host_port && *o->host_port)
        return o->host_port;
    if (ch->npeers == 0) {
        tch_error_set(err, TCH_ENOTFOUND,
                      "call to %s: no host_port given and no known peers", o->service);
        return NULL;
    }
    return ch->peers[ch->next_peer++ % ch->npeers];
}

static tch_tracing make_tracing(tch_channel *ch, const tch_trace *parent) {
    tch_tracing t;
    t.span_id = channel_random(ch);
    if (parent) {
        t.parent_id = parent->span_id;
        t.trace_id = parent->trace_id ? parent->trace_id : t.span_id;
        t.flags = parent->flags;
    } else {
        t.parent_id = 0;
        t.trace_id = t.span_id;
        t.flags = 0;
    }
    return t;
}

static int header_given(const tch_call_opts *o, const char *key) {
    for (size_t i = 0; i < o->nheaders; i++)
        if (tch_slice_eq_cstr(o->headers[i].key, key))
            return 1;
    return 0;
}

static void fill_fields(tch_channel *ch, const tch_call_opts *o, uint32_t ttl,
                        tch_call_fields *f) {
    f->flags = 0;
    f->ttl_ms = ttl;
    f->code = 0;
    f->tracing = make_tracing(ch, o->trace);
    f->service = tch_slice_cstr(o->service);
    f->csum_type = ch->opts.checksum_type;
    f->nheaders = 0;
    if (!header_given(o, "as"))
        f->headers[f->nheaders++] = (tch_kv){
            tch_slice_cstr("as"), tch_slice_cstr(o->arg_scheme ? o->arg_scheme : "raw")};
    if (!header_given(o, "cn"))
        f->headers[f->nheaders++] = (tch_kv){tch_slice_cstr("cn"), tch_slice_cstr(ch->name)};
    for (size_t i = 0; i < o->nheaders; i++)
        f->headers[f->nheaders++] = (tch_kv){o->headers[i].key, o->headers[i].value};
}

int tch_channel_call(tch_channel *ch, const tch_call_opts *o, tch_call_cb cb,
                     void *ud, tch_error *err) {
    int rc = validate(ch, o, err);
    if (rc)
        return rc;
    if (!cb)
        return tch_error_set(err, TCH_EINVAL, "call: callback is required");
    const char *peer = pick_peer(ch, o, err);
    if (!peer)
        return err ? err->code : TCH_ENOTFOUND;
    chconn *cc = chconn_for_peer(ch, peer, err);
    if (!cc)
        return err ? err->code : TCH_EIO;
    outcall *oc = calloc(1, sizeof *oc);
    tch_call_fields *f = malloc(sizeof *f);
    if (!oc || !f) {
        free(oc);
        free(f);
        return tch_error_set(err, TCH_ENOMEM, "out of memory");
    }
    oc->ch = ch;
    oc->cc = cc;
    oc->cb = cb;
    oc->ud = ud;
    oc->timeout_ms = o->timeout_ms ? o->timeout_ms : ch->opts.default_timeout_ms;
    snprintf(oc->what, sizeof oc->what, "%s::%.*s", o->service,
             (int)(o->endpoint.len > 100 ? 100 : o->endpoint.len),
             (const char *)o->endpoint.ptr);
    evtimer_assign(&oc->timer, ch->base, on_timer, oc);
    if (cc->calls.len >= ch->opts.max_pending_calls) {
        char why[TCH_ERROR_MSG_MAX];
        snprintf(why, sizeof why, "call to %s: %zu calls already pending on the connection to %s (limit)",
                 oc->what, cc->calls.len, cc->host_port);
        defer_failure(oc, TCH_ETOOBIG, why);
        free(f);
        return 0;
    }
    oc->id = tch_conn_next_id(tch_transport_conn(cc->t));
    fill_fields(ch, o, oc->timeout_ms, f);
    tch_slice args[3] = {o->endpoint, o->arg2, o->arg3};
    if (tch_intmap_put(&cc->calls, oc->id, oc) != 0) {
        free(f);
        free(oc);
        return tch_error_set(err, TCH_ENOMEM, "out of memory");
    }
    rc = tch_conn_send_call(tch_transport_conn(cc->t), TCH_FRAME_CALL_REQ, oc->id,
                            f, args, err);
    free(f);
    if (rc) {
        take(cc, oc->id);
        free(oc);
        return rc;
    }
    struct timeval tv = {oc->timeout_ms / 1000, (oc->timeout_ms % 1000) * 1000};
    evtimer_add(&oc->timer, &tv);
    return 0;
}
