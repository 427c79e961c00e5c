/* Serving: the channel's fallback handler takes every inbound call, turns it
 * into a tch_cassette_call and asks the cassettes in order. The first replay
 * wins; otherwise the record target may record it (record.c); otherwise the
 * caller gets BadRequest with the nearest interaction's near-miss message. */
#include "mock.h"

#include <tchannel/stub.h>
#include <tchannel/vcr_adapt.h>

#include "intmap.h"

#include <event2/event.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The protocol allows 255 transport headers (nh:1), and an implicit "as". */
#define MOCK_MAX_HEADERS 256

int mock_scheme_of(const tch_inbound *in) {
    tch_slice as = TCH_SLICE_NULL;
    tch_inbound_header(in, "as", &as);
    return tch_cassette_scheme_of_as(as);
}

/* ---- answering -------------------------------------------------------------- */

/* An answer waiting for its delay holds its bytes here, not in the
 * interaction: a reload or a stub's removal (admin API) may free that
 * meanwhile. One copy serves every call waiting with the same answer
 * (--allow-repeats and a delay would otherwise copy it per call: a caller
 * that never reads made the mock hold a copy for each call it sent). */
struct mock_held {
    size_t refs;
    uint32_t key;  /* its slot in m->held (the source's address, folded), 0: not shared */
    size_t bytes;  /* counted in m->held_bytes */
    int is_error;
    uint8_t code;
    char *message;
    tch_buf arg2, arg3;
    tch_stub_fault fault;
};

struct mock_delayed {
    mock *m;
    tch_inbound *in;
    struct event *timer;
    mock_held *a;
    int hold; /* noAnswer: answer only once the call is done (the caller gave up) */
    mock_delayed *prev, *next;
};

/* What an interaction answers: its fault if it has one, else its recorded
 * error frame, else its response. Slices borrow from the interaction. */
typedef struct answer {
    int is_error;
    uint8_t code;
    const char *message;
    tch_slice arg2, arg3;
    /* CLOSE: close the connection instead (message says why, for the log);
     * BAD_CHECKSUM: the response goes out with its checksum spoiled */
    tch_stub_fault fault;
} answer;

static answer answer_of(const tch_cassette_interaction *it) {
    answer a = {0};
    if (it->has_fault) {
        a.is_error = 1;
        a.code = it->fault_code;
        a.message = it->fault_message ? it->fault_message : "fault injected by tchannel-mock";
    } else if (it->is_error) {
        a.is_error = 1;
        a.code = it->error.code;
        a.message = it->error.message ? it->error.message : "";
    } else {
        a.code = (uint8_t)it->response.code;
        a.arg2 = tch_buf_slice(&it->response.headers);
        a.arg3 = tch_buf_slice(&it->response.body);
    }
    return a;
}

static void respond(tch_inbound *in, const answer *a) {
    if (a->fault == TCH_STUB_FAULT_CLOSE)
        tch_inbound_close_connection(in, a->message);
    else if (a->is_error)
        tch_inbound_respond_error(in, a->code, a->message);
    else if (a->fault == TCH_STUB_FAULT_BAD_CHECKSUM)
        tch_inbound_respond_bad_checksum(in, a->code, a->arg2, a->arg3);
    else
        tch_inbound_respond(in, a->code, a->arg2, a->arg3);
}

/* ---- answers held for a delay ------------------------------------------------ */

/* The slot of an answer's bytes in m->held: where they live in the
 * interaction, folded. Two sources on one slot are told apart by content
 * (held_same); the later one takes the slot. */
static uint32_t held_key(const answer *a) {
    uintptr_t p = (uintptr_t)(a->arg3.len ? (const void *)a->arg3.ptr
                              : a->arg2.len ? (const void *)a->arg2.ptr
                                            : (const void *)a->message);
    uint64_t x = (uint64_t)p * 0x9e3779b97f4a7c15ull;
    uint32_t k = (uint32_t)(x >> 32);
    return k ? k : 1;
}

static int slice_is(tch_slice s, const tch_buf *b) {
    return s.len == b->len && (!s.len || memcmp(s.ptr, b->ptr, s.len) == 0);
}

static int held_same(const mock_held *h, const answer *a) {
    return h->is_error == a->is_error && h->code == a->code && h->fault == a->fault &&
           !strcmp(h->message ? h->message : "", a->message ? a->message : "") &&
           slice_is(a->arg2, &h->arg2) && slice_is(a->arg3, &h->arg3);
}

static void held_release(mock *m, mock_held *h) {
    if (!h || --h->refs > 0)
        return;
    if (h->key && tch_intmap_get(&m->held, h->key) == h)
        tch_intmap_remove(&m->held, h->key);
    m->held_bytes -= h->bytes;
    free(h->message);
    tch_buf_free(&h->arg2);
    tch_buf_free(&h->arg3);
    free(h);
}

/* What the mock may hold for delayed answers: the --memory-budget. */
static size_t held_limit(const mock *m) {
    size_t b = m->cfg->limits.max_request_bytes;
    return b ? b : (size_t)256 << 20;
}

/* A reference to a's bytes: the copy held already for the same answer, or
 * a new one (shared when it can be: a template's answer, made per call,
 * never is). NULL with *rc: TCH_ENOMEM, or TCH_ETOOBIG when a new copy
 * would take the bytes held past the memory budget. */
static mock_held *held_take(mock *m, const answer *a, int share, int *rc) {
    uint32_t key = share ? held_key(a) : 0;
    mock_held *h = key ? tch_intmap_get(&m->held, key) : NULL;
    if (h && held_same(h, a)) {
        h->refs++;
        return h;
    }
    size_t msg = a->message ? strlen(a->message) + 1 : 0;
    size_t bytes = sizeof *h + msg + a->arg2.len + a->arg3.len;
    if (bytes > held_limit(m) - (m->held_bytes < held_limit(m) ? m->held_bytes : held_limit(m))) {
        *rc = TCH_ETOOBIG;
        return NULL;
    }
    *rc = TCH_ENOMEM;
    if (!(h = calloc(1, sizeof *h)))
        return NULL;
    h->refs = 1, h->is_error = a->is_error, h->code = a->code, h->fault = a->fault;
    h->bytes = bytes;
    m->held_bytes += bytes;
    if ((a->message && !(h->message = strdup(a->message))) ||
        tch_buf_append_slice(&h->arg2, a->arg2) || tch_buf_append_slice(&h->arg3, a->arg3)) {
        held_release(m, h);
        return NULL;
    }
    /* a slot held by other bytes (a source freed, its address reused) goes
     * to the newest: those calls keep their copy, the next ones share this */
    mock_held *old = key ? tch_intmap_get(&m->held, key) : NULL;
    if (key && tch_intmap_put(&m->held, key, h) == 0) {
        h->key = key;
        if (old)
            old->key = 0;
    }
    return h;
}

static void delayed_free(mock_delayed *d) {
    mock *m = d->m;
    if (d->prev)
        d->prev->next = d->next;
    else
        m->delayed = d->next;
    if (d->next)
        d->next->prev = d->prev;
    if (d->timer)
        event_free(d->timer);
    held_release(m, d->a);
    free(d);
}

/* How often a held call looks again whether its caller gave up. */
#define MOCK_HOLD_RECHECK_MS 50

static void delayed_fire(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    mock_delayed *d = arg;
    if (d->hold && what && !tch_inbound_is_done(d->in)) { /* what 0: a flush, answer now */
        struct timeval tv = {0, MOCK_HOLD_RECHECK_MS * 1000};
        if (evtimer_add(d->timer, &tv) == 0)
            return;
    }
    const mock_held *h = d->a;
    answer a = {h->is_error, h->code, h->message ? h->message : "",
                tch_buf_slice(&h->arg2), tch_buf_slice(&h->arg3), h->fault};
    respond(d->in, &a);
    delayed_free(d);
}

void mock_serve_flush_delayed(mock *m) {
    while (m->delayed)
        delayed_fire(-1, 0, m->delayed);
    tch_intmap_free(&m->held);
}

/* Returns 0, or an error (nothing scheduled) so the caller can answer now:
 * TCH_ETOOBIG when holding a's bytes would pass the memory budget.
 * share: a's bytes are the interaction's own (not made for this call). */
static int answer_later(mock *m, tch_inbound *in, const answer *a, uint32_t delay_ms, int share) {
    int rc = 0;
    mock_delayed *d = calloc(1, sizeof *d);
    if (!d)
        return TCH_ENOMEM;
    d->m = m, d->in = in;
    d->next = m->delayed;
    if (m->delayed)
        m->delayed->prev = d;
    m->delayed = d;
    struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
    if (!(d->a = held_take(m, a, share, &rc)) ||
        !(d->timer = evtimer_new(m->base, delayed_fire, d)) || evtimer_add(d->timer, &tv)) {
        delayed_free(d);
        return rc ? rc : TCH_ENOMEM;
    }
    return 0;
}

/* A delayed answer the budget cannot hold: Busy now, as the channel
 * refuses a request over it (the caller may retry). */
static void answer_over_budget(mock *m, tch_inbound *in, const answer *a) {
    char msg[300];
    snprintf(msg, sizeof msg, "tchannel-mock: a delayed answer of %zu bytes would take what the "
             "mock holds for delayed answers (%zu bytes) past the memory budget of %zu bytes "
             "(--memory-budget); retry later",
             a->arg2.len + a->arg3.len, m->held_bytes, held_limit(m));
    mock_log("refused: %s", msg + 14);
    tch_inbound_respond_error(in, TCH_PCODE_BUSY, msg);
}

/* The wait before an answer: a stub's random delay, else its fixed one. */
static uint32_t delay_of(mock *m, const tch_cassette_interaction *it) {
    const tch_stub_info *st = tch_cassette_stub_of(it);
    if (st && st->delay.kind != TCH_STUB_DELAY_NONE) {
        if (!m->delay_rng)
            m->delay_rng = mock_now_ms() | 1;
        return tch_stub_delay_sample(&st->delay, &m->delay_rng);
    }
    return it->has_delay ? it->delay_ms : 0;
}

/* noAnswer: the call is held until the library says it is done (its TTL
 * passed or the caller went away), then answered into the void: answering
 * is still owed to the library, and nobody waits for it any more. */
#define MOCK_NO_ANSWER_MAX_MS 3600000u

static void replay(mock *m, tch_inbound *in, tch_cassette *c, size_t index,
                   const tch_cassette_call *call, const tch_cassette_interaction *it) {
    const tch_stub_info *st = tch_cassette_stub_of(it);
    answer a = answer_of(it);
    tch_buf arg2 = {0}, arg3 = {0};
    int rendered = 0;
    char msg[TCH_ERROR_MSG_MAX + 64];
    if (st && st->fault == TCH_STUB_FAULT_NO_ANSWER) {
        uint32_t ttl = tch_inbound_ttl_ms(in);
        answer late = {1, TCH_PCODE_TIMEOUT, "tchannel-mock: noAnswer fault", {0}, {0},
                       TCH_STUB_FAULT_NONE};
        if (answer_later(m, in, &late, ttl < MOCK_NO_ANSWER_MAX_MS ? ttl : MOCK_NO_ANSWER_MAX_MS,
                         1) == 0) {
            m->delayed->hold = 1; /* answer_later put it first */
            return;
        }
        respond(in, &late);
        return;
    }
    const char *id = st && st->id ? st->id : "(no id)";
    if (st && st->fault == TCH_STUB_FAULT_CLOSE) {
        snprintf(msg, sizeof msg, "stub %s: closeConnection fault", id);
        a = (answer){.message = msg, .fault = TCH_STUB_FAULT_CLOSE};
    } else if (st && st->fault == TCH_STUB_FAULT_BAD_CHECKSUM && it->is_error) {
        /* an error frame carries no checksum: say so rather than answer as
         * if the fault had been injected */
        snprintf(msg, sizeof msg, "tchannel-mock: stub %s: fault badChecksum needs a response "
                 "to spoil, and this stub answers with an error frame", id);
        a = (answer){1, TCH_PCODE_UNEXPECTED, msg, {0}, {0}, TCH_STUB_FAULT_NONE};
    } else if (st && st->template_response && !it->is_error && !it->has_fault) {
        tch_error err = {0};
        int code = 0;
        if (tch_cassette_render_response(c, index, call, &code, &arg2, &arg3, &err)) {
            mock_log("template: %s", err.msg);
            snprintf(msg, sizeof msg, "tchannel-mock: %s", err.msg);
            a = (answer){1, TCH_PCODE_UNEXPECTED, msg, {0}, {0}, TCH_STUB_FAULT_NONE};
        } else {
            a.code = (uint8_t)code;
            rendered = 1;
            a.arg2 = tch_buf_slice(&arg2);
            a.arg3 = tch_buf_slice(&arg3);
        }
    }
    if (st && st->fault == TCH_STUB_FAULT_BAD_CHECKSUM && !a.is_error)
        a.fault = TCH_STUB_FAULT_BAD_CHECKSUM; /* a template that failed is answered as such */
    uint32_t delay = delay_of(m, it);
    /* a rendered template is this call's own: not worth a slot to share */
    int rc = delay ? answer_later(m, in, &a, delay, !rendered) : -1;
    if (rc == TCH_ETOOBIG)
        answer_over_budget(m, in, &a);
    else if (rc != 0)
        respond(in, &a);
    tch_buf_free(&arg2);
    tch_buf_free(&arg3);
}

/* Whether the run-time stubs (stubs.c) hold anything to ask. */
static int have_stubs(const mock *m) {
    return m->stubs && m->n_stubs > 0; /* counted by stubs.c: no scan per call */
}

/* ---- the miss ---------------------------------------------------------------- */

/* The best explanation over all cassettes: the near miss with the most
 * matching fields (ties: the earlier cassette). */
typedef struct miss {
    int have;
    const tch_cassette_near_miss *nm_best;
    size_t best_matched;
    int best_found;
    tch_error err;
    json_t *near_miss;
} miss;

static void miss_consider(miss *ms, const tch_cassette_decision *d, const tch_error *err) {
    const tch_cassette_near_miss *nm = &d->near_miss;
    int better = !ms->have || (nm->found && !ms->best_found) ||
                 (nm->found && ms->best_found && nm->matched_fields > ms->best_matched);
    if (!better)
        return;
    ms->have = 1;
    ms->best_found = nm->found;
    ms->best_matched = nm->matched_fields;
    ms->err = *err;
    json_decref(ms->near_miss);
    ms->near_miss = nm->found ? tch_cassette_near_miss_to_json(nm) : NULL;
}

static void answer_miss(mock *m, tch_inbound *in, const tch_cassette_call *call, miss *ms) {
    const char *msg = ms->have ? ms->err.msg : "tchannel-mock: no cassette loaded";
    m->misses++;
    mock_log("miss: %s", msg);
    mock_journal_add(&m->journal, call->service, call->endpoint, tch_inbound_peer(in),
                     call->scheme, MOCK_UNMATCHED, NULL, -1, msg, ms->near_miss);
    ms->near_miss = NULL; /* the journal owns it */
    tch_inbound_respond_error(in, TCH_PCODE_BAD_REQUEST, msg);
}

/* ---- the handler --------------------------------------------------------------- */

static void log_request(const mock *m, const tch_cassette_call *call, const char *what,
                        const char *cassette, long index) {
    if (!m->cfg->verbose)
        return;
    char at[32] = ""; /* a recording's index is known only once it is answered */
    if (index >= 0)
        snprintf(at, sizeof at, " #%ld", index);
    mock_log("%.*s::%.*s (%s) %s %s%s", (int)call->service.len,
             (const char *)call->service.ptr, (int)call->endpoint.len,
             (const char *)call->endpoint.ptr, mock_scheme_name(call->scheme), what,
             cassette ? cassette : "-", at);
}

void mock_serve_handler(tch_inbound *in, void *ud) {
    mock *m = ud;
    m->calls++;
    tch_kv kv[MOCK_MAX_HEADERS];
    tch_cassette_call call;
    tch_vcr_call_of_inbound(in, kv, MOCK_MAX_HEADERS, &call); /* as the VCR reads it */
    if (m->shutting_down) {
        tch_inbound_respond_error(in, TCH_PCODE_DECLINED, "tchannel-mock: shutting down");
        return;
    }
    miss ms = {0};
    mock_cassette *record_into = NULL;
    if (have_stubs(m)) { /* run-time stubs first: a test added them to be answered */
        tch_cassette_decision d;
        tch_error err = {0};
        int rc = tch_cassette_lookup(m->stubs, &call, &d, &err);
        if (rc == 0 && d.action == TCH_CASSETTE_ACT_REPLAY) {
            const tch_stub_info *st = tch_cassette_stub_of(d.interaction);
            log_request(m, &call, "answered by stub", st && st->id ? st->id : "-",
                        (long)d.index);
            mock_journal_add(&m->journal, call.service, call.endpoint, tch_inbound_peer(in),
                             call.scheme, MOCK_REPLAYED, "(run-time stubs)", (long)d.index, NULL,
                             NULL);
            replay(m, in, m->stubs, d.index, &call, d.interaction);
            tch_cassette_decision_clear(&d);
            return;
        }
        if (rc == TCH_ENOTFOUND)
            miss_consider(&ms, &d, &err);
        else if (rc != 0)
            mock_log("lookup in the run-time stubs failed: %s", err.msg);
        tch_cassette_decision_clear(&d);
    }
    for (size_t i = 0; i < m->store.n; i++) {
        mock_cassette *mc = m->store.items[i];
        tch_cassette_decision d;
        tch_error err = {0};
        int rc = tch_cassette_lookup(mc->c, &call, &d, &err);
        if (rc == 0 && d.action == TCH_CASSETTE_ACT_REPLAY) {
            log_request(m, &call, "replayed from", mc->path, (long)d.index);
            mock_journal_add(&m->journal, call.service, call.endpoint, tch_inbound_peer(in),
                             call.scheme, MOCK_REPLAYED, mc->path, (long)d.index, NULL, NULL);
            replay(m, in, mc->c, d.index, &call, d.interaction);
            tch_cassette_decision_clear(&d);
            json_decref(ms.near_miss);
            return;
        }
        if (rc == 0 && d.action == TCH_CASSETTE_ACT_RECORD && mc->record_target && m->upstream)
            record_into = mc;
        else if (rc == 0 && d.action == TCH_CASSETTE_ACT_RECORD) {
            /* its mode would record the call, but the mock records only into its target */
            tch_error_set(&err, TCH_ENOTFOUND,
                          "tchannel-mock: cassette %s has nothing recorded for %.*s::%.*s; its "
                          "mode would record it, but %s",
                          mc->path, (int)call.service.len, (const char *)call.service.ptr,
                          (int)call.endpoint.len, (const char *)call.endpoint.ptr,
                          m->upstream ? "it is not the record target (--record-to)"
                                      : "no --upstream was given");
            miss_consider(&ms, &d, &err);
        } else if (rc == TCH_ENOTFOUND)
            miss_consider(&ms, &d, &err);
        else if (rc != 0)
            mock_log("lookup in %s failed: %s", mc->path, err.msg);
        tch_cassette_decision_clear(&d);
    }
    if (record_into) {
        json_decref(ms.near_miss);
        log_request(m, &call, "forwarded, recording into", record_into->path, -1);
        mock_record_call(m, in, record_into, &call);
        return;
    }
    if (mock_relay_take(m, in, &call)) { /* an instance of the service answers (relay.c) */
        json_decref(ms.near_miss);
        return;
    }
    answer_miss(m, in, &call, &ms);
}

/* ---- record-through: an upstream that is down ------------------------------------ */

/* How long an upstream that refused a connection is left alone. Long enough
 * that a client's retries do not each knock on it, short enough that a
 * restarted service is used again at once for a test. */
#define MOCK_UPSTREAM_DOWN_MS 1000

/* Index of the upstream host_port names, or -1. */
static int upstream_index(const mock *m, const char *host_port) {
    for (size_t i = 0; host_port && i < m->cfg->upstreams.n; i++)
        if (!strcmp(m->cfg->upstreams.v[i], host_port))
            return (int)i;
    return -1;
}

/* Every upstream is in its down period: nothing to try. */
static int all_down(const mock *m, uint64_t now) {
    for (size_t i = 0; i < m->cfg->upstreams.n; i++)
        if (m->upstream_down_until_ms[i] <= now)
            return 0;
    return 1;
}

/* Sees each attempt's outcome: a connection that failed (Network, no
 * answer from the service) marks that upstream down; an answer clears it. */
static void observe_upstream(const tch_response *res, void *ud) {
    mock *m = ud;
    if (m->shutting_down) /* calls cut short by our own exit say nothing of the upstream */
        return;
    int i = upstream_index(m, res->peer);
    if (m->cfg->upstreams.n == 1)
        i = 0; /* the one there is, whatever spelling the channel reports */
    if (i < 0)
        return;
    if (res->status == 0 || res->status == TCH_EREMOTE) {
        m->upstream_down_until_ms[i] = 0;
        return;
    }
    if (res->error_code != TCH_PCODE_NETWORK)
        return;
    if (m->upstream_down_until_ms[i] == 0)
        mock_log("upstream %s is down: %s", m->cfg->upstreams.v[i],
                 res->message ? res->message : "no connection");
    m->upstream_down_until_ms[i] = mock_now_ms() + MOCK_UPSTREAM_DOWN_MS;
    snprintf(m->upstream_down_why, sizeof m->upstream_down_why, "%s",
             res->message ? res->message : "no connection");
}

/* The outbound hook of the upstream channel: every attempt, retries too. */
static void upstream_hook(tch_outbound *call, void *ud) {
    mock *m = ud;
    if (!all_down(m, mock_now_ms())) {
        tch_outbound_forward(call, observe_upstream, m);
        return;
    }
    char msg[512];
    snprintf(msg, sizeof msg, "tchannel-mock: upstream %s is down (%s); the call was not "
             "forwarded and not recorded",
             m->cfg->upstreams.n == 1 ? m->cfg->upstreams.v[0] : "(every --upstream)",
             m->upstream_down_why);
    /* Unexpected: callers do not retry it blindly (Declined and Busy they
     * would, each retry knocking on the upstream again). Not a remote error,
     * so record.c aborts the slot instead of recording this answer. */
    tch_response res = {.status = TCH_ECLOSED, .error_code = TCH_PCODE_UNEXPECTED,
                        .message = msg, .peer = ""};
    tch_outbound_answer(call, &res);
}

int mock_upstream_gate_start(mock *m, tch_error *err) {
    if (!m->upstream)
        return 0;
    m->upstream_down_until_ms = calloc(m->cfg->upstreams.n, sizeof *m->upstream_down_until_ms);
    if (!m->upstream_down_until_ms)
        return tch_error_set(err, TCH_ENOMEM, "out of memory");
    tch_channel_set_outbound_hook(m->upstream, upstream_hook, m);
    return 0;
}

void mock_upstream_gate_free(mock *m) {
    free(m->upstream_down_until_ms);
    m->upstream_down_until_ms = NULL;
}
