/* Event hooks: the list of observers on a channel and the events handed to
 * them. inbound.c and outbound.c call in here only when HOOKS_ON, so a
 * channel with no hook pays one branch per call. */
#include "channel_internal.h"

#include <tchannel/hooks.h>

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

typedef struct hook_entry {
    tch_event_cb fn; /* NULL: removed while the list was being walked */
    void *ud;
    uint32_t handle;
} hook_entry;

struct channel_hooks {
    hook_entry *v;
    size_t n, cap;
    uint32_t next_handle;
    int walking;  /* events being dispatched right now (they may nest) */
    int removed;  /* entries with fn NULL waiting to be dropped */
};

const char *tch_event_kind_name(tch_event_kind kind) {
    switch (kind) {
    case TCH_EVENT_SEND_REQUEST: return "send_request";
    case TCH_EVENT_RECEIVE_RESPONSE: return "receive_response";
    case TCH_EVENT_RECEIVE_REQUEST: return "receive_request";
    case TCH_EVENT_SEND_RESPONSE: return "send_response";
    case TCH_EVENT_ERROR: return "error";
    default: return "unknown";
    }
}

static uint64_t mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void tch__hooks_init(tch_channel *ch) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    ch->clock_wall_us = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
    ch->clock_mono_us = mono_us();
}

uint64_t tch_channel_now_us(const tch_channel *ch) {
    return ch->clock_wall_us + (mono_us() - ch->clock_mono_us);
}

void tch__hooks_free(tch_channel *ch) {
    if (!ch->hooks)
        return;
    tch__free(ch->alloc, ch->hooks->v);
    tch__free(ch->alloc, ch->hooks);
    ch->hooks = NULL;
    ch->nhooks = 0;
}

int tch_channel_add_hook(tch_channel *ch, tch_event_cb fn, void *ud, uint32_t *handle) {
    if (!ch || !fn)
        return TCH_EINVAL;
    channel_hooks *h = ch->hooks;
    if (!h && !(h = ch->hooks = tch__calloc(ch->alloc, 1, sizeof *h)))
        return TCH_ENOMEM;
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 4;
        hook_entry *v = tch__realloc(ch->alloc, h->v, cap * sizeof *v);
        if (!v)
            return TCH_ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    if (++h->next_handle == 0)
        h->next_handle = 1;
    h->v[h->n++] = (hook_entry){fn, ud, h->next_handle};
    ch->nhooks++;
    if (handle)
        *handle = h->next_handle;
    return 0;
}

/* Drops removed entries once no dispatch is walking the list. */
static void compact(channel_hooks *h) {
    size_t k = 0;
    for (size_t i = 0; i < h->n; i++)
        if (h->v[i].fn)
            h->v[k++] = h->v[i];
    h->n = k;
    h->removed = 0;
}

int tch_channel_remove_hook(tch_channel *ch, uint32_t handle) {
    channel_hooks *h = ch ? ch->hooks : NULL;
    for (size_t i = 0; h && handle && i < h->n; i++) {
        if (h->v[i].handle != handle || !h->v[i].fn)
            continue;
        h->v[i].fn = NULL;
        h->removed = 1;
        ch->nhooks--;
        if (!h->walking)
            compact(h);
        return 0;
    }
    return TCH_ENOTFOUND;
}

size_t tch_channel_hook_count(const tch_channel *ch) { return ch->nhooks; }

static void emit(tch_channel *ch, const tch_call_event *ev) {
    channel_hooks *h = ch->hooks;
    h->walking++;
    size_t n = h->n; /* hooks added by a hook hear from the next event */
    for (size_t i = 0; i < n && !ch->freeing; i++) {
        hook_entry e = h->v[i]; /* the array may move if a hook adds one */
        if (e.fn)
            CHANNEL_USER_CALL(ch, e.fn(ev, e.ud));
    }
    if (--h->walking == 0 && h->removed)
        compact(h);
}

static int header_of(const tch_kv *hs, size_t n, const char *key, tch_slice *out) {
    for (size_t i = 0; i < n; i++)
        if (tch_slice_eq_cstr(hs[i].key, key)) {
            *out = hs[i].value;
            return 1;
        }
    return 0;
}

static int opt_header(const tch_call_opts *o, const char *key, tch_slice *out) {
    for (size_t i = 0; i < o->nheaders; i++)
        if (tch_slice_eq_cstr(o->headers[i].key, key)) {
            *out = o->headers[i].value;
            return 1;
        }
    return 0;
}

static tch_trace trace_of(const tch_trace *t) {
    tch_trace out = {0, 0, 0, 0};
    if (t)
        out = (tch_trace){t->span_id, t->parent_id, t->trace_id, t->flags};
    return out;
}

static void set_outcome(tch_call_event *ev, const tch_response *res) {
    ev->status = res->status;
    ev->message = res->message ? res->message : "";
    if (res->status != 0) {
        ev->outcome = TCH_OUTCOME_ERROR;
        ev->error_code = res->error_code;
    } else {
        ev->outcome = res->code == 0 ? TCH_OUTCOME_OK : TCH_OUTCOME_APP_ERROR;
    }
}

void tch__hooks_call_out(tch_channel *ch, int kind, const tch_call_opts *req,
                    const tch_trace *t, const char *peer_hp, int attempt,
                    uint64_t start_us, const tch_response *res) {
    tch_call_event ev = {
        .kind = kind, .outgoing = 1, .service = tch_slice_cstr(req->service),
        .endpoint = req->endpoint, .trace = trace_of(t), .peer = peer_hp ? peer_hp : "",
        .attempt = attempt, .start_us = start_us, .message = "",
    };
    if (!opt_header(req, "as", &ev.scheme))
        ev.scheme = tch_slice_cstr(req->arg_scheme ? req->arg_scheme : "raw");
    if (!opt_header(req, "cn", &ev.caller))
        ev.caller = tch_slice_cstr(ch->name);
    if (res) {
        ev.end_us = tch_channel_now_us(ch);
        set_outcome(&ev, res);
        if (!*ev.peer && res->peer)
            ev.peer = res->peer;
    }
    emit(ch, &ev);
}

void tch__hooks_call_in(tch_channel *ch, const tch_call_msg *msg, const char *peer_hp,
                   uint64_t start_us, const tch_response *end) {
    tch_call_event ev = {
        .kind = end ? TCH_EVENT_SEND_RESPONSE : TCH_EVENT_RECEIVE_REQUEST,
        .service = msg->service, .endpoint = tch_buf_slice(&msg->args[0]),
        .trace = trace_of(&msg->tracing), .peer = peer_hp, .start_us = start_us,
        .message = "",
    };
    header_of(msg->headers, msg->nheaders, "as", &ev.scheme);
    header_of(msg->headers, msg->nheaders, "cn", &ev.caller);
    if (end) {
        ev.end_us = tch_channel_now_us(ch);
        set_outcome(&ev, end);
    }
    emit(ch, &ev);
    if (end && end->status != 0 && HOOKS_ON(ch)) {
        ev.kind = TCH_EVENT_ERROR;
        emit(ch, &ev);
    }
}
