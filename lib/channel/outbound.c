/* Calling. A tch_outbound is one logical call: it owns a copy of the
 * request and makes one or more attempts (retries go to another peer when
 * there is one) until an answer, a final error, or the caller's deadline.
 * Each attempt passes through the outbound hook when one is set, which
 * either forwards it to the network or answers it locally; either way the
 * outcome goes through the same retry decision, so a recorded Busy followed
 * by a recorded success replays as a retried call. The caller's callback
 * runs once, always from the event loop. */
#include "channel_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRIED_INLINE 8 /* peers tried, kept in the call; more go to the heap */
#define TCH_MAX_ARG1 (16 * 1024)

typedef char peer_name[sizeof(((chconn *)0)->host_port)];

struct tch_outbound {
    tch_channel *ch;
    tch_outbound *prev, *next; /* the channel's live calls */
    tch_call_opts req;   /* points into store */
    uint8_t *store;      /* one allocation holding every copied field */
    tch_trace parent;
    tch_call_cb cb;
    void *ud;
    tch_call_cb observer;
    tch_outbound_check_cb check; /* instead of an observer: may replace the outcome */
    void *observer_ud;
    tch_response checked; /* the outcome a check put in place of an attempt's */
    struct event deadline;
    struct event defer;  /* zero delay: a local answer reaches the loop */
    uint64_t deadline_ms;
    uint32_t timeout_ms;
    int retry_on;
    int retry_limit;
    int attempts;
    chconn *cc;          /* current attempt, NULL when none is in flight */
    uint32_t id;
    peer_name tried_inline[TRIED_INLINE];
    peer_name *tried;    /* tried_inline, or a heap copy once more were tried */
    size_t ntried, cap_tried;
    uint32_t handle;     /* for tch_channel_cancel; 0 when not cancellable */
    int hooked;          /* the hook holds the current attempt */
    int borrowed;        /* req's endpoint and args are the caller's (borrow_args) */
    uint8_t *arg_store;  /* their copy, once the hook takes a borrowed call */
    int expired;         /* deadline passed while the hook held it */
    /* for the event hooks (hooks.c), kept only while some are installed */
    tch_trace span;    /* the ids the latest attempt carried */
    uint64_t start_us;   /* when the call started */
    uint64_t sent_us;    /* when the attempt in flight was sent; 0: none */
    peer_name sent_peer;
    /* a local answer or failure, delivered from the loop */
    int have_local;
    tch_response local;
    tch_buf local_store;
    char msg[TCH_ERROR_MSG_MAX];
};

/* ---- classification ------------------------------------------------------ */

tch_retryability tch_proto_code_retryability(uint8_t code) {
    switch (code) {
    case TCH_PCODE_BUSY:
    case TCH_PCODE_DECLINED: return TCH_RETRYABLE;
    case TCH_PCODE_TIMEOUT:
    case TCH_PCODE_UNEXPECTED:
    case TCH_PCODE_NETWORK: return TCH_MAYBE_RETRYABLE;
    default: return TCH_NOT_RETRYABLE;
    }
}

static uint8_t code_for_status(int status) {
    switch (status) {
    case TCH_ETIMEOUT: return TCH_PCODE_TIMEOUT;
    case TCH_ECLOSED:
    case TCH_EIO: return TCH_PCODE_NETWORK;
    case TCH_ECANCELED: return TCH_PCODE_CANCELLED;
    case TCH_ETOOBIG: return TCH_PCODE_BUSY;
    case TCH_ENOTFOUND: return TCH_PCODE_DECLINED;
    default: return TCH_PCODE_UNEXPECTED;
    }
}

static const char *retry_flags(int retry_on) {
    switch (retry_on) {
    case TCH_RETRY_NEVER: return "n";
    case TCH_RETRY_TIMEOUT: return "t";
    case TCH_RETRY_CONNECTION_TIMEOUT: return "ct";
    default: return "c";
    }
}

/* Whether this outcome may be tried again under the call's retry_on. */
static int should_retry(const tch_outbound *call, const tch_response *res) {
    if (res->status == 0 || call->retry_on == TCH_RETRY_NEVER || call->ch->freeing ||
        call->ch->closing || call->ch->free_pending)
        return 0;
    if (res->status == TCH_ETIMEOUT) /* our own deadline: no time is left */
        return 0;
    const char *f = retry_flags(call->retry_on);
    switch (res->error_code) {
    case TCH_PCODE_BUSY:
    case TCH_PCODE_DECLINED: return 1;
    case TCH_PCODE_NETWORK: return strchr(f, 'c') != NULL;
    case TCH_PCODE_TIMEOUT: return strchr(f, 't') != NULL;
    default: return 0;
    }
}

/* ---- owning a copy of the request --------------------------------------------- */

static size_t str_size(const char *s) { return s ? strlen(s) + 1 : 0; }

static char *put_str(uint8_t **at, const char *s) {
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *out = (char *)*at;
    memcpy(out, s, n);
    *at += n;
    return out;
}

static tch_slice put_slice(uint8_t **at, tch_slice s) {
    tch_slice out = {*at, s.len};
    if (s.len)
        memcpy(*at, s.ptr, s.len);
    *at += s.len;
    return out;
}

static size_t args_size(const tch_call_opts *o) {
    return o->endpoint.len + o->arg2.len + o->arg3.len;
}

/* Copies src's endpoint and args to *at and points r's at the copies
 * (r may be src). */
static void put_args(uint8_t **at, tch_call_opts *r, const tch_call_opts *src) {
    r->endpoint = put_slice(at, src->endpoint);
    r->arg2 = put_slice(at, src->arg2);
    r->arg3 = put_slice(at, src->arg3);
}

/* Copies every field of o into one allocation owned by call; with
 * borrow_args, endpoint and args stay where the caller keeps them. */
static int copy_request(tch_outbound *call, const tch_call_opts *o) {
    call->borrowed = o->borrow_args != 0;
    size_t size = o->nheaders * sizeof(tch_kv) + str_size(o->service) +
                  str_size(o->host_port) + str_size(o->arg_scheme) +
                  str_size(o->shard_key) + str_size(o->routing_delegate);
    if (!call->borrowed)
        size += args_size(o);
    for (size_t i = 0; i < o->nheaders; i++)
        size += o->headers[i].key.len + o->headers[i].value.len;
    call->store = tch__malloc(call->ch->alloc, size);
    if (!call->store)
        return TCH_ENOMEM;
    uint8_t *at = call->store;
    tch_kv *hs = (tch_kv *)at; /* headers first: keeps them aligned */
    at += o->nheaders * sizeof(tch_kv);
    call->req = *o;
    call->req.cancel_handle = NULL; /* the caller's variable: not for the hook */
    for (size_t i = 0; i < o->nheaders; i++) {
        hs[i].key = put_slice(&at, o->headers[i].key);
        hs[i].value = put_slice(&at, o->headers[i].value);
    }
    call->req.headers = o->nheaders ? hs : NULL;
    call->req.service = put_str(&at, o->service);
    call->req.host_port = put_str(&at, o->host_port);
    call->req.arg_scheme = put_str(&at, o->arg_scheme);
    call->req.shard_key = put_str(&at, o->shard_key);
    call->req.routing_delegate = put_str(&at, o->routing_delegate);
    if (!call->borrowed)
        put_args(&at, &call->req, o);
    if (o->trace)
        call->parent = *o->trace;
    call->req.trace = o->trace ? &call->parent : NULL;
    return 0;
}

/* A hook may hold the request past the caller's callback, so a borrowed
 * request is copied before a hook sees it. */
static int own_args(tch_outbound *call) {
    if (!call->borrowed)
        return 0;
    size_t size = args_size(&call->req);
    uint8_t *at = call->arg_store = tch__malloc(call->ch->alloc, size);
    if (!at)
        return TCH_ENOMEM;
    put_args(&at, &call->req, &call->req);
    call->borrowed = 0;
    return 0;
}

/* The event hooks hear of an attempt sent (its ids copied first: a hook's
 * own calls reuse the channel's fields). */
static void hook_sent(tch_outbound *call, const tch_trace *t) {
    call->span = *t;
    call->sent_us = tch_channel_now_us(call->ch);
    memcpy(call->sent_peer, call->cc->host_port, sizeof call->sent_peer);
    tch__hooks_call_out(call->ch, TCH_EVENT_SEND_REQUEST, &call->req, &call->span,
                   call->sent_peer, call->attempts, call->sent_us, NULL);
}

/* ... and of its end, once, whatever ended it. */
static void hook_heard(tch_outbound *call, const tch_response *res) {
    uint64_t sent = call->sent_us;
    call->sent_us = 0;
    if (sent && HOOKS_ON(call->ch))
        tch__hooks_call_out(call->ch, TCH_EVENT_RECEIVE_RESPONSE, &call->req, &call->span,
                       call->sent_peer, call->attempts, sent, res);
}

/* ... and of a call that failed, after its last attempt. */
static void hook_failed(tch_outbound *call, const tch_response *res) {
    if (res->status != 0 && HOOKS_ON(call->ch))
        tch__hooks_call_out(call->ch, TCH_EVENT_ERROR, &call->req, &call->span,
                       call->sent_peer, call->attempts,
                       call->start_us ? call->start_us : tch_channel_now_us(call->ch), res);
}

/* ---- finishing -------------------------------------------------------------- */

static void call_free(tch_outbound *call) {
    tch_channel *ch = call->ch;
    if (call->prev)
        call->prev->next = call->next;
    else if (ch->outbound == call)
        ch->outbound = call->next;
    if (call->next)
        call->next->prev = call->prev;
    if (call->handle)
        tch_intmap_remove(&call->ch->cancellable, call->handle);
    event_del(&call->deadline);
    event_del(&call->defer);
    tch_buf_free(&call->local_store);
    if (call->tried != call->tried_inline)
        tch__free(ch->alloc, call->tried);
    tch__free(ch->alloc, call->store);
    tch__free(ch->alloc, call->arg_store);
    tch__free(ch->alloc, call);
}

/* The hook's observer or check hears how an attempt ended; returns the
 * outcome that stands: res, or the failure a check put in its place. */
static const tch_response *observe(tch_outbound *call, const tch_response *res) {
    tch_call_cb observer = call->observer;
    tch_outbound_check_cb check = call->check;
    void *ud = call->observer_ud;
    call->observer = NULL;
    call->check = NULL;
    if (observer)
        CHANNEL_USER_CALL(call->ch, observer(res, ud));
    if (!check)
        return res;
    tch_error why = {0};
    int rc;
    CHANNEL_USER_CALL(call->ch, rc = check(res, &why, ud));
    if (rc == 0)
        return res;
    /* res->message may be call->msg: the check has read it by now */
    snprintf(call->msg, sizeof call->msg, "%s",
             why.msg[0] ? why.msg : "the outbound hook refused the answer");
    call->checked = (tch_response){.status = rc < 0 ? rc : TCH_ESTATE,
                                   .error_code = TCH_PCODE_UNEXPECTED, .message = call->msg,
                                   .peer = res->peer ? res->peer : ""};
    return &call->checked;
}

/* The final outcome: the caller hears it once, then the call is gone. */
static void deliver(tch_outbound *call, const tch_response *res) {
    tch_channel *ch = call->ch;
    hook_heard(call, res);
    event_del(&call->deadline);
    event_del(&call->defer);
    if (call->handle) { /* final now: a cancel from the callbacks finds nothing */
        tch_intmap_remove(&ch->cancellable, call->handle);
        call->handle = 0;
    }
    res = observe(call, res); /* the attempt ended here too: its observer hears it */
    hook_failed(call, res);
    if (call->cb) /* NULL once a deadline reported it while the hook held it */
        CHANNEL_USER_CALL(ch, call->cb(res, call->ud));
    call_free(call);
    if (!ch->freeing)
        tch__channel_close_progress(ch);
}

/* Keeps a copy of res to hand to attempt_done from the loop (on_defer). */
static void defer_response(tch_outbound *call, const tch_response *res) {
    tch_buf *b = &call->local_store;
    tch_buf_reset(b);
    size_t hsize = res->nheaders * sizeof(tch_kv);
    size_t size = hsize + res->arg2.len + res->arg3.len;
    for (size_t i = 0; i < res->nheaders; i++)
        size += res->headers[i].key.len + res->headers[i].value.len;
    call->local = *res;
    snprintf(call->msg, sizeof call->msg, "%s", res->message ? res->message : "");
    call->local.message = call->msg;
    call->local.peer = "";
    if (tch_buf_reserve(b, size + 1) != 0) {
        call->local = (tch_response){.status = TCH_ENOMEM,
                                     .error_code = TCH_PCODE_UNEXPECTED,
                                     .message = "out of memory", .peer = ""};
    } else {
        uint8_t *at = b->ptr;
        tch_kv *hs = (tch_kv *)at;
        at += hsize;
        for (size_t i = 0; i < res->nheaders; i++) {
            hs[i].key = put_slice(&at, res->headers[i].key);
            hs[i].value = put_slice(&at, res->headers[i].value);
        }
        call->local.headers = res->nheaders ? hs : NULL;
        call->local.arg2 = put_slice(&at, res->arg2);
        call->local.arg3 = put_slice(&at, res->arg3);
    }
    call->have_local = 1;
    call->cc = NULL;
    struct timeval now = {0, 0};
    evtimer_add(&call->defer, &now);
}

static void defer_failure(tch_outbound *call, int status, const char *why) {
    tch_response res = {.status = status, .error_code = code_for_status(status),
                        .message = why};
    defer_response(call, &res);
}

/* ---- attempts ----------------------------------------------------------------- */

static int was_tried(const tch_outbound *call, const char *hp) {
    for (size_t i = 0; i < call->ntried; i++)
        if (strcmp(call->tried[i], hp) == 0)
            return 1;
    return 0;
}

/* Calls in flight to hp; *draining set when its connection announced a
 * drain (it takes no new calls while that connection lasts). */
static size_t peer_load(tch_channel *ch, const char *hp, int *draining) {
    size_t n = 0;
    *draining = 0;
    for (chconn *cc = ch->conns; cc; cc = cc->next)
        if (cc->outbound && strcmp(cc->host_port, hp) == 0) {
            n += cc->calls.len;
            *draining |= cc->draining && !cc->closing;
        }
    return n;
}

/* Prefers untried, not draining, healthy (not backed off), less-loaded
 * peers; rotates among equals so load spreads. */
static const char *pick_peer(tch_outbound *call) {
    tch_channel *ch = call->ch;
    if (call->req.host_port && *call->req.host_port)
        return call->req.host_port;
    if (ch->npeers == 0)
        return NULL;
    uint64_t now = tch__channel_now_ms(ch);
    const peer *best = NULL;
    int64_t best_score = 0;
    size_t start = ch->next_peer++;
    for (size_t k = 0; k < ch->npeers; k++) {
        const peer *p = &ch->peers[(start + k) % ch->npeers];
        int draining;
        int64_t score = (int64_t)peer_load(ch, p->host_port, &draining);
        if (was_tried(call, p->host_port))
            score += INT64_C(1) << 40;
        if (draining)
            score += INT64_C(1) << 35;
        if (p->backoff_until_ms > now)
            score += INT64_C(1) << 30;
        if (!best || score < best_score) {
            best = p;
            best_score = score;
        }
    }
    return best->host_port;
}

/* A new span, the child of the caller's trace or of the handler's that made
 * the call (taken when the call started: retries run later, from the loop). */
static tch_trace make_tracing(tch_outbound *call) {
    const tch_trace *parent = call->req.trace;
    tch_trace t = {.span_id = tch__channel_random(call->ch)};
    if (parent) {
        t.parent_id = parent->span_id;
        t.trace_id = parent->trace_id ? parent->trace_id : t.span_id;
        t.flags = parent->flags;
    } else {
        t.trace_id = t.span_id;
        t.flags = call->ch->opts.trace ? 0x01 : 0;
    }
    if (call->req.traced != TCH_TRACED_DEFAULT)
        t.flags = (uint8_t)((t.flags & ~0x01) | (call->req.traced == TCH_TRACED_ON));
    return t;
}

static int header_given(const tch_call_opts *o, const char *key) {
    for (size_t i = 0; i < o->nheaders; i++)
        if (tch_slice_eq_cstr(o->headers[i].key, key))
            return 1;
    return 0;
}

static void add_header(tch_call_fields *f, const tch_call_opts *o,
                       const char *key, const char *value) {
    if (value && !header_given(o, key))
        f->headers[f->nheaders++] = (tch_kv){tch_slice_cstr(key), tch_slice_cstr(value)};
}

static void fill_fields(tch_outbound *call, uint32_t ttl, tch_call_fields *f) {
    const tch_call_opts *o = &call->req;
    f->flags = 0;
    f->ttl_ms = ttl;
    f->code = 0;
    f->tracing = make_tracing(call);
    f->service = tch_slice_cstr(o->service);
    f->csum_type = call->ch->opts.checksum_type;
    f->nheaders = 0;
    add_header(f, o, "as", o->arg_scheme ? o->arg_scheme : "raw");
    add_header(f, o, "cn", call->ch->name);
    add_header(f, o, "re", retry_flags(call->retry_on));
    add_header(f, o, "sk", o->shard_key);
    add_header(f, o, "rd", o->routing_delegate);
    for (size_t i = 0; i < o->nheaders; i++)
        f->headers[f->nheaders++] = (tch_kv){o->headers[i].key, o->headers[i].value};
}

/* Every peer an attempt went to, so retries prefer the others (out of
 * memory, a peer is just not remembered). */
static void note_tried(tch_outbound *call, const char *host_port) {
    if (!call->attempts)
        call->attempts = 1;
    if (was_tried(call, host_port))
        return;
    if (call->ntried == call->cap_tried) {
        size_t cap = call->cap_tried * 2;
        const tch_allocator *a = call->ch->alloc;
        peer_name *more = call->tried == call->tried_inline
                              ? tch__malloc(a, cap * sizeof *more)
                              : tch__realloc(a, call->tried, cap * sizeof *more);
        if (!more)
            return;
        if (call->tried == call->tried_inline)
            memcpy(more, call->tried_inline, sizeof call->tried_inline);
        call->tried = more;
        call->cap_tried = cap;
    }
    snprintf(call->tried[call->ntried++], sizeof(peer_name), "%s", host_port);
}

/* A connection's failure counts once against its peer (one backoff step),
 * however many calls rode on it. */
static void conn_failed_peer(chconn *cc) {
    if (cc->peer_failed)
        return;
    cc->peer_failed = 1;
    tch__channel_peer_result(cc->ch, cc->host_port, 0);
}

/* A peer that announced it is draining takes no new calls (as the Node peer
 * refuses them locally): this attempt is declined, which is retried on
 * another peer, and the peer is backed off like one that failed. */
static int decline_draining(tch_outbound *call, chconn *cc) {
    note_tried(call, cc->host_port);
    conn_failed_peer(cc);
    char msg[TCH_ERROR_MSG_MAX]; /* defer_response copies it into call->msg */
    snprintf(msg, sizeof msg, "call to %s: peer %s is %s", call->req.service, cc->host_port,
             cc->draining);
    tch_response res = {.status = TCH_EREMOTE, .error_code = TCH_PCODE_DECLINED,
                        .message = msg, .peer = cc->host_port};
    defer_response(call, &res);
    return 0;
}

/* Sends one attempt. Returns 0, or an error (with err) when nothing was
 * sent. */
static int start_attempt(tch_outbound *call, tch_error *err) {
    tch_channel *ch = call->ch;
    const char *hp = pick_peer(call);
    if (!hp)
        return tch_error_set(err, TCH_ENOTFOUND,
                             "call to %s: no host_port given and no known peers",
                             call->req.service);
    chconn *cc = tch__chconn_for_peer(ch, hp, err);
    if (!cc)
        return err ? err->code : TCH_EIO;
    if (cc->draining)
        return decline_draining(call, cc);
    if (cc->calls.len >= ch->opts.max_pending_calls)
        return tch_error_set(err, TCH_ETOOBIG,
                             "call to %s: %zu calls already pending on the connection to %s (the limit)",
                             call->req.service, cc->calls.len, cc->host_port);
    uint64_t now = tch__channel_now_ms(ch);
    uint64_t left = call->deadline_ms > now ? call->deadline_ms - now : 1;
    tch_call_fields *f = &ch->fields;
    fill_fields(call, (uint32_t)left, f);
    uint32_t id = tch_conn_next_id(cc->conn);
    while (tch_intmap_get(&cc->calls, id)) /* after a wrap, skip ids still live */
        id = tch_conn_next_id(cc->conn);
    tch_slice args[3] = {call->req.endpoint, call->req.arg2, call->req.arg3};
    int rc = tch_intmap_put(&cc->calls, id, call);
    if (rc == 0) {
        rc = tch_conn_send_call(cc->conn, TCH_FRAME_CALL_REQ, id,
                                f, args, err);
        if (rc)
            tch_intmap_remove(&cc->calls, id);
    } else {
        tch_error_set(err, rc, "out of memory");
    }
    if (rc)
        return rc;
    call->cc = cc;
    call->id = id;
    if (ch->opts.idle_timeout_ms)
        cc->last_active_ms = tch__channel_now_ms(ch);
    note_tried(call, cc->host_port);
    if (HOOKS_ON(ch))
        hook_sent(call, &f->tracing);
    return 0;
}

/* Lets the hook decide the attempt. */
static int hand_to_hook(tch_outbound *call) {
    if (own_args(call) != 0)
        return TCH_ENOMEM;
    call->hooked = 1;
    CHANNEL_USER_CALL(call->ch, call->ch->hook(call, call->ch->hook_ud));
    return 0;
}

/* Starts the next attempt: through the hook when there is one. */
static void next_attempt(tch_outbound *call) {
    tch_channel *ch = call->ch;
    call->observer = NULL;
    call->check = NULL;
    call->observer_ud = NULL;
    call->have_local = 0;
    if (ch->hook) {
        if (hand_to_hook(call) != 0)
            defer_failure(call, TCH_ENOMEM, "out of memory");
        return;
    }
    tch_error err;
    if (start_attempt(call, &err) != 0)
        defer_failure(call, err.code, err.msg);
}

/* Whether an attempt that ended with res is followed by another. */
static int retries_after(const tch_outbound *call, const tch_response *res) {
    int attempts = call->attempts ? call->attempts : 1; /* a hook's answer is one */
    return should_retry(call, res) && attempts <= call->retry_limit &&
           tch__channel_now_ms(call->ch) < call->deadline_ms;
}

/* An attempt ended with res: retry, or deliver. */
static void attempt_done(tch_outbound *call, const tch_response *res) {
    hook_heard(call, res);
    if (call->cc && res->status != 0 && res->error_code == TCH_PCODE_NETWORK)
        conn_failed_peer(call->cc);
    else if (call->cc)
        tch__channel_peer_result(call->ch, call->cc->host_port, 1);
    call->cc = NULL;
    const tch_response *heard = res;
    res = observe(call, res);
    if (call->have_local) /* the observer cancelled: that outcome comes from the loop */
        return;
    if (!call->attempts) /* answered by the hook: still an attempt */
        call->attempts = 1;
    if (res == heard && retries_after(call, res)) { /* a check's failure is final */
        call->attempts++;
        next_attempt(call);
        return;
    }
    deliver(call, res);
}

static void on_defer(evutil_socket_t fd, short what, void *arg) {
    tch_outbound *call = arg;
    (void)fd, (void)what;
    call->have_local = 0;
    attempt_done(call, &call->local);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg) {
    tch_outbound *call = arg;
    (void)fd, (void)what;
    if (call->hooked) { /* the hook still holds it: it frees on resolution */
        call->expired = 1;
        event_del(&call->defer);
        snprintf(call->msg, sizeof call->msg, "call to %s timed out after %u ms",
                 call->req.service, call->timeout_ms);
        tch_response res = {.status = TCH_ETIMEOUT, .error_code = TCH_PCODE_TIMEOUT,
                            .message = call->msg, .peer = ""};
        tch_call_cb cb = call->cb;
        call->cb = NULL; /* reported: nothing may report it again */
        hook_failed(call, &res);
        CHANNEL_USER_CALL(call->ch, cb(&res, call->ud));
        return;
    }
    const char *hp = call->cc ? call->cc->host_port : "";
    char waiting[TCH_ERROR_MSG_MAX] = ""; /* the connection never got ready: why */
    if (call->cc) {
        tch_intmap_remove(&call->cc->calls, call->id);
        tch_conn_forget_response(call->cc->conn, call->id);
        tch_transport_explain_wait(call->cc->t, waiting, sizeof waiting);
    }
    snprintf(call->msg, sizeof call->msg, "call to %s::%.*s at %s timed out after %u ms%s%.300s",
             call->req.service, (int)(call->req.endpoint.len > 100 ? 100 : call->req.endpoint.len),
             (const char *)call->req.endpoint.ptr, hp, call->timeout_ms,
             waiting[0] ? ": " : "", waiting);
    tch_response res = {.status = TCH_ETIMEOUT, .error_code = TCH_PCODE_TIMEOUT,
                        .message = call->msg, .peer = hp};
    call->cc = NULL;
    deliver(call, &res);
}

/* ---- events from connections --------------------------------------------------- */

void tch__outbound_on_response(chconn *cc, tch_call_msg *msg) {
    tch_outbound *call = tch_intmap_remove(&cc->calls, msg->id);
    if (call) {
        tch_kv hs[TCH_CALL_MAX_HEADERS];
        for (size_t i = 0; i < msg->nheaders; i++)
            hs[i] = (tch_kv){msg->headers[i].key, msg->headers[i].value};
        tch_response res = {
            .status = 0, .code = msg->code, .message = "",
            .arg2 = tch_buf_slice(&msg->args[1]), .arg3 = tch_buf_slice(&msg->args[2]),
            .headers = hs, .nheaders = msg->nheaders, .peer = cc->host_port,
        };
        attempt_done(call, &res);
    } /* else: a late answer to a call that already timed out */
    tch_call_msg_free(msg);
    tch__free(msg->alloc, msg);
}

void tch__outbound_on_error_frame(chconn *cc, uint32_t id, const tch_error_frame *e) {
    tch_outbound *call = id == TCH_ID_NONE ? NULL : tch_intmap_remove(&cc->calls, id);
    if (!call)
        return;
    snprintf(call->msg, sizeof call->msg, "%.*s", (int)e->message.len,
             (const char *)e->message.ptr);
    tch_response res = {.status = TCH_EREMOTE, .error_code = e->code,
                        .message = call->msg, .peer = cc->host_port};
    attempt_done(call, &res);
}

void tch__outbound_on_failed(chconn *cc, uint32_t id, int status, const char *why) {
    tch_outbound *call = tch_intmap_remove(&cc->calls, id);
    if (!call)
        return;
    snprintf(call->msg, sizeof call->msg, "%s", why);
    /* The answer came but could not be taken (checksum, size): the service
     * did run, so this must not look like a retryable Busy. */
    tch_response res = {.status = status, .error_code = TCH_PCODE_UNEXPECTED,
                        .message = call->msg, .peer = cc->host_port};
    attempt_done(call, &res);
}

void tch__outbound_fail_all(chconn *cc, int status, const char *why) {
    tch_outbound *call;
    while ((call = tch_intmap_pop_any(&cc->calls, NULL))) {
        snprintf(call->msg, sizeof call->msg, "call to %s::%.*s failed: %s",
                 call->req.service, (int)(call->req.endpoint.len > 100 ? 100 : call->req.endpoint.len),
                 (const char *)call->req.endpoint.ptr, why);
        tch_response res = {.status = status, .error_code = code_for_status(status),
                            .message = call->msg, .peer = cc->host_port};
        attempt_done(call, &res);
    }
}

void tch__outbound_end_all(tch_channel *ch) {
    while (ch->outbound) {
        tch_outbound *call = ch->outbound;
        if (call->have_local) { /* decided, not yet reported: report it now */
            deliver(call, &call->local);
            continue;
        }
        tch_response res = {.status = TCH_ECLOSED, .error_code = TCH_PCODE_NETWORK,
                            .message = "channel closed", .peer = ""};
        deliver(call, &res);
    }
}

/* ---- the hook's side ------------------------------------------------------------- */

const tch_call_opts *tch_outbound_request(const tch_outbound *call) { return &call->req; }
tch_channel *tch_outbound_channel(const tch_outbound *call) { return call->ch; }

/* A hook resolving a call whose deadline already passed: just free it. */
static int drop_if_expired(tch_outbound *call) {
    call->hooked = 0;
    if (!call->expired)
        return 0;
    call_free(call);
    return 1;
}

static void forward(tch_outbound *call, tch_call_cb observer, tch_outbound_check_cb check,
                    void *ud) {
    if (drop_if_expired(call))
        return;
    call->observer = observer;
    call->check = check;
    call->observer_ud = ud;
    tch_error err;
    if (start_attempt(call, &err) != 0)
        defer_failure(call, err.code, err.msg);
}

void tch_outbound_forward(tch_outbound *call, tch_call_cb observer, void *ud) {
    forward(call, observer, NULL, ud);
}

void tch_outbound_forward_checked(tch_outbound *call, tch_outbound_check_cb check, void *ud) {
    forward(call, NULL, check, ud);
}

void tch_outbound_answer(tch_outbound *call, const tch_response *res) {
    if (drop_if_expired(call))
        return;
    defer_response(call, res);
}

/* ---- cancelling ------------------------------------------------------------------------ */

int tch_channel_cancel(tch_channel *ch, uint32_t handle, const char *why) {
    tch_outbound *call = handle ? tch_intmap_get(&ch->cancellable, handle) : NULL;
    /* A decided outcome still waiting for the loop is final unless it is
     * retried; a retry can still be cancelled. */
    if (!call || (call->have_local && !retries_after(call, &call->local)))
        return TCH_ENOTFOUND;
    if (call->hooked)
        return TCH_ESTATE;
    if (call->cc) { /* in flight: tell the peer, forget its answer */
        tch_intmap_remove(&call->cc->calls, call->id);
        tch_conn_forget_response(call->cc->conn, call->id);
        tch_conn_send_cancel(call->cc->conn, call->id, NULL,
                             why ? why : "cancelled by the caller");
    }
    call->retry_on = TCH_RETRY_NEVER; /* a cancelled call is final */
    char msg[TCH_ERROR_MSG_MAX];
    snprintf(msg, sizeof msg, "call to %s cancelled: %s", call->req.service,
             why ? why : "by the caller");
    defer_failure(call, TCH_ECANCELED, msg);
    return 0;
}

static int make_cancellable(tch_channel *ch, tch_outbound *call, uint32_t *out) {
    if (++ch->next_handle == 0)
        ch->next_handle = 1;
    call->handle = ch->next_handle;
    if (tch_intmap_put(&ch->cancellable, call->handle, call) != 0) {
        call->handle = 0;
        return TCH_ENOMEM;
    }
    *out = call->handle;
    return 0;
}

/* ---- starting a call ----------------------------------------------------------------- */

static int validate(const tch_channel *ch, const tch_call_opts *o, tch_error *err) {
    if (!o || !o->service || !*o->service)
        return tch_error_set(err, TCH_EINVAL, "call: service is required");
    if (strlen(o->service) > 255)
        return tch_error_set(err, TCH_EINVAL, "call: service name longer than 255 bytes");
    if (o->endpoint.len == 0)
        return tch_error_set(err, TCH_EINVAL, "call to %s: endpoint is required", o->service);
    if (o->endpoint.len > TCH_MAX_ARG1) /* the Node peer refuses longer ones */
        return tch_error_set(err, TCH_ETOOBIG, "call to %s: endpoint (arg1) is %zu bytes, over %d",
                             o->service, o->endpoint.len, TCH_MAX_ARG1);
    const tch_slice *args[3] = {&o->endpoint, &o->arg2, &o->arg3};
    for (int i = 0; i < 3; i++)
        if (args[i]->len > ch->opts.max_arg_size)
            return tch_error_set(err, TCH_ETOOBIG,
                                 "call to %s: arg%d is %zu bytes, over the limit of %zu",
                                 o->service, i + 1, args[i]->len, ch->opts.max_arg_size);
    /* what goes on the wire: the given headers and those of as, cn, re, sk
     * and rd that fill_fields adds (re always has a value) */
    size_t added = !header_given(o, "as") + !header_given(o, "cn") + !header_given(o, "re") +
                   (o->shard_key && !header_given(o, "sk")) +
                   (o->routing_delegate && !header_given(o, "rd"));
    if (o->nheaders + added > TCH_CALL_HEADERS_ALLOWED)
        return tch_error_set(err, TCH_EINVAL, "call to %s: too many transport headers (%zu, "
                             "and %zu of as, cn, re, sk, rd added: over %d)",
                             o->service, o->nheaders, added, TCH_CALL_HEADERS_ALLOWED);
    if (o->retry_on < TCH_RETRY_DEFAULT || o->retry_on > TCH_RETRY_CONNECTION_TIMEOUT)
        return tch_error_set(err, TCH_EINVAL, "call to %s: invalid retry_on %d",
                             o->service, o->retry_on);
    if (o->traced < TCH_TRACED_DEFAULT || o->traced > TCH_TRACED_OFF)
        return tch_error_set(err, TCH_EINVAL, "call to %s: invalid traced %d",
                             o->service, o->traced);
    if (o->retry_limit < TCH_RETRY_LIMIT_NONE)
        return tch_error_set(err, TCH_EINVAL, "call to %s: invalid retry_limit %d",
                             o->service, o->retry_limit);
    return 0;
}

int tch_channel_call(tch_channel *ch, const tch_call_opts *o, tch_call_cb cb,
                     void *ud, tch_error *err) {
    int rc = validate(ch, o, err);
    if (rc)
        return rc;
    if (!cb)
        return tch_error_set(err, TCH_EINVAL, "call: callback is required");
    if (ch->closing || ch->freeing || ch->free_pending) /* e.g. from a callback run by tch_channel_free */
        return tch_error_set(err, TCH_ECLOSED, "call to %s: channel %s is closing",
                             o->service, ch->name);
    tch_outbound *call = tch__calloc(ch->alloc, 1, sizeof *call);
    if (call) {
        call->ch = ch;
        call->local_store.alloc = ch->alloc;
    }
    if (!call || copy_request(call, o) != 0) {
        tch__free(ch->alloc, call);
        return tch_error_set(err, TCH_ENOMEM, "out of memory");
    }
    call->tried = call->tried_inline;
    call->cap_tried = TRIED_INLINE;
    if (!o->trace && ch->current) { /* a handler's call: its trace, for every attempt */
        call->parent = tch_inbound_trace(ch->current);
        call->req.trace = &call->parent;
    }
    call->cb = cb;
    call->ud = ud;
    if (HOOKS_ON(ch))
        call->start_us = tch_channel_now_us(ch);
    call->next = ch->outbound;
    if (ch->outbound)
        ch->outbound->prev = call;
    ch->outbound = call;
    call->timeout_ms = o->timeout_ms ? o->timeout_ms : ch->opts.default_timeout_ms;
    call->deadline_ms = tch__channel_now_ms(ch) + call->timeout_ms;
    call->retry_on = o->retry_on;
    call->retry_limit = o->retry_limit == 0 ? TCH_RETRY_LIMIT_DEFAULT
                      : o->retry_limit < 0 ? 0 : o->retry_limit;
    evtimer_assign(&call->deadline, ch->base, on_deadline, call);
    evtimer_assign(&call->defer, ch->base, on_defer, call);
    if (o->cancel_handle && make_cancellable(ch, call, o->cancel_handle) != 0) {
        call_free(call);
        return tch_error_set(err, TCH_ENOMEM, "out of memory");
    }
    struct timeval tv = {call->timeout_ms / 1000, (call->timeout_ms % 1000) * 1000};
    evtimer_add(&call->deadline, &tv);
    if (ch->hook) {
        rc = hand_to_hook(call);
        if (rc)
            call_free(call);
        return rc ? tch_error_set(err, rc, "out of memory") : 0;
    }
    rc = start_attempt(call, err); /* report what fails at once to the caller */
    if (rc)
        call_free(call);
    return rc;
}
