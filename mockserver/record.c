/* Record-through: a call no cassette replays, in a mode that may record, is
 * made again to the real service through a client channel (same service,
 * endpoint, arg2, arg3, scheme and transport headers). The slot is reserved
 * with tch_cassette_record_begin when the call arrives, so the file keeps
 * arrival order. The upstream's answer fills the slot and waits: once per
 * loop turn, every recording that finished is committed to the cassette's
 * journal in one write and one fdatasync (group commit), and only then do
 * their callers get their answers. A caller is never told "ok" for a
 * recording that is not on disk: when the commit fails it gets an error
 * saying so (the upstream's answer goes to the log), unless
 * --record-failure=answer. */
#include "mock.h"

#include <tchannel/redact.h>
#include <tchannel/vcr_adapt.h>

#include <event2/event.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The upstream's answer, copied: it goes to the caller after the commit. */
typedef struct mock_answer {
    int ok;             /* 1: a call response; 0: an error frame */
    uint8_t code;       /* response code, or error frame code */
    tch_buf arg2, arg3; /* ok */
    char *message;      /* error frame */
    tch_kv *headers;
    size_t nheaders;
    tch_buf header_bytes; /* the headers' keys and values */
} mock_answer;

struct mock_recording {
    mock *m;
    mock_cassette *target;
    tch_cassette_slot slot;
    tch_inbound *in;
    char *service; /* NUL-terminated for tch_call_opts */
    int scheme;
    int waiting;   /* recorded; the answer waits for the commit */
    mock_answer answer;
    mock_recording *prev, *next;
};

static void commit_waiting(evutil_socket_t fd, short what, void *arg);

int mock_record_init(mock *m, tch_error *err) {
    /* relay.c records through its own channels: the commit is always needed */
    m->commit_ev = event_new(m->base, -1, 0, commit_waiting, m);
    if (!m->commit_ev)
        return tch_error_set(err, TCH_ENOMEM, "cannot create the commit event");
    if (m->cfg->upstreams.n == 0)
        return 0;
    tch_channel_options o = {0};
    o.process_name = "tchannel-mock";
    if (tch_channel_new(m->base, "tchannel-mock", &o, &m->upstream, err) != 0)
        return tch_error_wrap(err, "upstream channel");
    m->upstream_tracer = mock_trace_attach(m, m->upstream);
    for (size_t i = 0; i < m->cfg->upstreams.n; i++) {
        if (mock_is_self(m, m->cfg->upstreams.v[i]))
            return tch_error_set(err, TCH_EINVAL, "--upstream %s: that is this mock's own "
                                 "listening address; calls sent there would loop",
                                 m->cfg->upstreams.v[i]);
        int rc = tch_channel_add_peer(m->upstream, m->cfg->upstreams.v[i], err);
        if (rc)
            return tch_error_wrap(err, "--upstream %s", m->cfg->upstreams.v[i]);
    }
    return 0;
}

static void answer_free(mock_answer *a) {
    tch_buf_free(&a->arg2);
    tch_buf_free(&a->arg3);
    tch_buf_free(&a->header_bytes);
    free(a->message);
    free(a->headers);
    memset(a, 0, sizeof *a);
}

static int answer_copy(mock_answer *a, const tch_response *res) {
    a->ok = res->status == 0;
    a->code = a->ok ? res->code : res->error_code;
    if (!a->ok)
        return (a->message = strdup(res->message ? res->message : "")) ? 0 : TCH_ENOMEM;
    size_t total = 0;
    for (size_t i = 0; i < res->nheaders; i++)
        total += res->headers[i].key.len + res->headers[i].value.len;
    /* one reservation, so the slices below never move */
    if (tch_buf_append_slice(&a->arg2, res->arg2) || tch_buf_append_slice(&a->arg3, res->arg3) ||
        tch_buf_reserve(&a->header_bytes, total + 1) ||
        (res->nheaders && !(a->headers = calloc(res->nheaders, sizeof *a->headers))))
        return TCH_ENOMEM;
    for (size_t i = 0; i < res->nheaders; i++) {
        tch_slice k = res->headers[i].key, v = res->headers[i].value;
        size_t at = a->header_bytes.len;
        tch_buf_append_slice(&a->header_bytes, k);
        tch_buf_append_slice(&a->header_bytes, v);
        a->headers[i].key = tch_slice_of(a->header_bytes.ptr + at, k.len);
        a->headers[i].value = tch_slice_of(a->header_bytes.ptr + at + k.len, v.len);
    }
    a->nheaders = res->nheaders;
    return 0;
}

static void unlink_rec(mock *m, mock_recording *r) {
    if (r->prev)
        r->prev->next = r->next;
    else
        m->recordings = r->next;
    if (r->next)
        r->next->prev = r->prev;
    m->n_recordings--;
    answer_free(&r->answer);
    free(r->service);
    free(r);
}

/* The answer as it is recorded: with --redact-*, a redacted copy held in
 * *copy (the caller gets the answer as it came). */
static int reply_to_record(const mock *m, const mock_recording *r, const tch_response *res,
                           tch_cassette_response *copy, tch_cassette_reply *out, tch_error *err) {
    const tch_cassette_redaction *red = m->cfg->redaction;
    *out = (tch_cassette_reply){res->code, res->arg2, res->arg3};
    if (!red || tch_cassette_redaction_empty(red))
        return 0;
    tch_cassette_request req = {.scheme = (tch_cassette_scheme)r->scheme};
    int rc = tch_buf_append(&req.service, r->service, strlen(r->service)) ||
                     tch_buf_append_slice(&req.endpoint, tch_inbound_endpoint(r->in)) ||
                     tch_buf_append_slice(&copy->headers, res->arg2) ||
                     tch_buf_append_slice(&copy->body, res->arg3)
                 ? tch_error_set(err, TCH_ENOMEM, "out of memory")
                 : tch_cassette_redaction_response(red, &req, copy, err);
    tch_buf_free(&req.service);
    tch_buf_free(&req.endpoint);
    out->headers = tch_buf_slice(&copy->headers);
    out->body = tch_buf_slice(&copy->body);
    return rc;
}

/* How the call ended, recorded as the VCR records it (tchannel/vcr_adapt.h:
 * a local timeout is `local: true`); with --redact-*, an answer's redacted
 * copy. *unredacted: the answer could not be redacted, so it was not
 * recorded. */
static int record_outcome(const mock *m, const mock_recording *r, const tch_response *res,
                          int *recorded, int *unredacted, tch_error *err) {
    mock_cassette *t = r->target;
    tch_response as_recorded = *res;
    tch_cassette_response copy = {0};
    int rc = 0;
    *recorded = 0;
    if (res->status == 0) {
        tch_cassette_reply reply;
        *unredacted = reply_to_record(m, r, res, &copy, &reply, err) != 0;
        as_recorded.arg2 = reply.headers;
        as_recorded.arg3 = reply.body;
    }
    if (*unredacted) {
        rc = err->code;
        tch_cassette_record_abort(t->c, r->slot, NULL);
    } else {
        rc = tch_vcr_record_response(t->c, r->slot, &as_recorded, err);
        *recorded = rc == 1;
    }
    tch_buf_free(&copy.headers);
    tch_buf_free(&copy.body);
    return rc < 0 ? rc : 0;
}

static void respond_upstream(tch_inbound *in, const tch_response *res) {
    if (res->status == 0)
        tch_inbound_respond_with(in, res->code, res->arg2, res->arg3, res->headers,
                                 res->nheaders);
    else
        tch_inbound_respond_error(in, res->error_code ? res->error_code : TCH_PCODE_UNEXPECTED,
                                  res->message ? res->message : "upstream failed");
}

/* The caller's answer is settled: forget r, and end a shutdown that waited. */
static void settle(mock *m, mock_recording *r) {
    r->target->pending--;
    unlink_rec(m, r);
    if (m->shutting_down && m->n_recordings == 0)
        mock_begin_shutdown(m); /* the last one we waited for */
}

/* Group commit: a sync costs milliseconds, so it waits for every recording
 * still at the upstream to join the batch, for at most COMMIT_GATHER_US.
 * Committing at the first answer instead would split the callers into two
 * batches that alternate, each waiting out the other's sync. */
#define COMMIT_GATHER_US 1000

static void schedule_commit(mock *m) {
    size_t waiting = 0;
    for (const mock_recording *r = m->recordings; r; r = r->next)
        waiting += (size_t)r->waiting;
    if (waiting == m->n_recordings || m->shutting_down) {
        event_active(m->commit_ev, EV_TIMEOUT, 0);
    } else if (!event_pending(m->commit_ev, EV_TIMEOUT, NULL)) {
        struct timeval tv = {0, COMMIT_GATHER_US};
        event_add(m->commit_ev, &tv);
    }
}

static void on_upstream(const tch_response *res, void *ud) {
    mock_recording *r = ud;
    mock *m = r->m;
    mock_cassette *t = r->target;
    tch_error err = {0};
    int recorded = 0, unredacted = 0;
    char msg[TCH_ERROR_MSG_MAX + 128];
    if (record_outcome(m, r, res, &recorded, &unredacted, &err) != 0)
        mock_log("%s: could not record: %s", t->path, err.msg);
    if (recorded && answer_copy(&r->answer, res) == 0) {
        r->waiting = 1; /* answered once the recording is on disk */
        schedule_commit(m);
        return;
    }
    const char *why = res->message ? res->message : "upstream failed";
    if (recorded) { /* no memory to hold the answer: give up the recording */
        tch_cassette_record_drop(t->c, r->slot, NULL);
        why = "tchannel-mock: out of memory holding the answer; not recorded";
    } else if (unredacted) {
        snprintf(msg, sizeof msg, "tchannel-mock: the upstream answered, but its answer could "
                 "not be redacted, so it was not recorded: %s", err.msg);
        why = msg;
    }
    mock_journal_add_from(&m->journal, r->in, MOCK_FAILED, t->path, -1, why);
    mock_log("upstream call %s::%.*s failed, not recorded: %s", r->service,
             (int)tch_inbound_endpoint(r->in).len,
             (const char *)tch_inbound_endpoint(r->in).ptr, why);
    if ((recorded || unredacted) && !m->cfg->record_failure_answer)
        tch_inbound_respond_error(r->in, TCH_PCODE_UNEXPECTED, why);
    else
        respond_upstream(r->in, res);
    settle(m, r);
}

/* ---- group commit ------------------------------------------------------------------------ */

#define MAX_COMMITS 8 /* targets committed per turn; there is one record target at a time */

typedef struct commit_result {
    mock_cassette *t;
    int rc;
    tch_error err;
} commit_result;

static commit_result *result_for(commit_result *res, size_t n, const mock_cassette *t) {
    for (size_t i = 0; i < n; i++)
        if (res[i].t == t)
            return &res[i];
    return NULL;
}

#define FOLD_AT_LEAST ((size_t)64 << 20)

/* A journal as large as the cassette (and 64 MiB) is folded: each fold
 * costs the cassette's size, so recordings still cost the same on average,
 * and the journal stays far below what a load accepts. */
static void fold_if_large(mock *m, mock_cassette *t) {
    size_t bytes = tch_cassette_journal_bytes(t->journal);
    if (bytes < FOLD_AT_LEAST || bytes < (size_t)t->known.size)
        return;
    tch_error err;
    if (mock_store_save(m, t, &err) != 0)
        mock_log("%s%s", t->moved_aside ? "" : "folding the journal failed, it keeps growing: ",
                 err.msg);
}

/* One write and one sync for everything t recorded since the last commit
 * (a whole-file save when t has no journal). */
static int commit_target(mock *m, mock_cassette *t, tch_error *err) {
    if (t->journal) {
        int rc = tch_cassette_journal_commit(t->journal, err);
        if (!rc)
            fold_if_large(m, t);
        return rc;
    }
    int rc = mock_store_save(m, t, err);
    return rc && t->moved_aside ? 0 : rc; /* saved beside an edited file */
}

static void log_unsaved(const mock_recording *r, const char *why) {
    const mock_answer *a = &r->answer;
    tch_slice ep = tch_inbound_endpoint(r->in);
    if (a->ok)
        mock_log("%s::%.*s: recording not saved (%s); the upstream had answered code %u, arg3 "
                 "%zu bytes \"%.*s%s\"", r->service, (int)ep.len, (const char *)ep.ptr, why,
                 a->code, a->arg3.len, (int)(a->arg3.len < 64 ? a->arg3.len : 64),
                 a->arg3.ptr ? (const char *)a->arg3.ptr : "", a->arg3.len > 64 ? "..." : "");
    else
        mock_log("%s::%.*s: recording not saved (%s); the upstream had answered error frame "
                 "0x%02x \"%s\"", r->service, (int)ep.len, (const char *)ep.ptr, why, a->code,
                 a->message);
}

static void answer_one(mock *m, mock_recording *r, const commit_result *cr) {
    mock_cassette *t = r->target;
    int answer_anyway = m->cfg->record_failure_answer;
    char msg[TCH_ERROR_MSG_MAX + 128];
    if (cr->rc) {
        snprintf(msg, sizeof msg, "tchannel-mock: the upstream answered, but the recording could "
                 "not be saved: %s", cr->err.msg);
        log_unsaved(r, answer_anyway ? "answered anyway, --record-failure=answer; saved later if "
                                       "the disk allows" : "the caller got an error");
        if (!answer_anyway) /* the cassette keeps what callers were told */
            tch_cassette_record_drop(t->c, r->slot, NULL);
    }
    mock_journal_add_from(&m->journal, r->in, cr->rc && !answer_anyway ? MOCK_FAILED : MOCK_RECORDED,
                          t->path, cr->rc && !answer_anyway ? -1 : (long)r->slot,
                          cr->rc ? msg : NULL);
    const mock_answer *a = &r->answer;
    if (cr->rc && !answer_anyway)
        tch_inbound_respond_error(r->in, TCH_PCODE_UNEXPECTED, msg);
    else if (a->ok)
        tch_inbound_respond_with(r->in, a->code, tch_buf_slice(&a->arg2), tch_buf_slice(&a->arg3),
                                 a->headers, a->nheaders);
    else
        tch_inbound_respond_error(r->in, a->code ? a->code : TCH_PCODE_UNEXPECTED, a->message);
    settle(m, r);
}

/* Runs once per loop turn while recordings wait: commits each target
 * once, then answers every waiting caller. */
static void commit_waiting(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    mock *m = arg;
    if (m->commit_ev)
        event_del(m->commit_ev); /* a gather timer still pending: this is the commit */
    commit_result res[MAX_COMMITS];
    size_t n = 0;
    int again = 0;
    for (mock_recording *r = m->recordings; r; r = r->next) {
        if (!r->waiting || result_for(res, n, r->target))
            continue;
        if (n == MAX_COMMITS) {
            again = 1;
            continue;
        }
        res[n].t = r->target;
        res[n].err.msg[0] = '\0';
        res[n].rc = commit_target(m, r->target, &res[n].err);
        if (res[n].rc)
            mock_log("%s: recordings could not be saved: %s", r->target->path, res[n].err.msg);
        n++;
    }
    for (mock_recording *r = m->recordings, *next; r; r = next) {
        next = r->next;
        const commit_result *cr = r->waiting ? result_for(res, n, r->target) : NULL;
        if (cr)
            answer_one(m, r, cr); /* may free r, never next */
    }
    if (again && m->commit_ev)
        event_active(m->commit_ev, EV_TIMEOUT, 0);
}

static void fail(mock *m, tch_inbound *in, const tch_cassette_call *call, const char *why,
                 uint8_t code) {
    mock_log("record-through %.*s::%.*s failed: %s", (int)call->service.len,
             (const char *)call->service.ptr, (int)call->endpoint.len,
             (const char *)call->endpoint.ptr, why);
    mock_journal_add(&m->journal, call->service, call->endpoint, tch_inbound_peer(in),
                     call->scheme, MOCK_FAILED, NULL, -1, why, NULL);
    tch_inbound_respond_error(in, code, why);
}

static void start_upstream(mock *m, mock_recording *r, const tch_cassette_call *call) {
    mock_forward fw; /* the library copies the headers at the call */
    tch_call_opts o = {0};
    o.service = r->service;
    o.endpoint = call->endpoint;
    o.arg2 = call->headers;
    o.arg3 = call->body;
    o.host_port = m->cfg->upstreams.n == 1 ? m->cfg->upstreams.v[0] : NULL;
    uint32_t ttl = tch_inbound_ttl_ms(r->in); /* the caller's budget less our hop (1 ms) */
    o.timeout_ms = ttl > 1 ? ttl - 1 : 1;
    tch_trace parent = tch_inbound_trace(r->in);
    o.trace = &parent;
    tch_channel *via = m->upstream; /* an instance of the service first (relay.c) */
    mock_relay_route(m, call, &via, &o.host_port);
    tch_error err = {0};
    int refused = mock_forward_headers(call, mock_scheme_name(call->scheme), &o, &fw, &err);
    if (!refused && !via)
        tch_error_set(&err, TCH_ENOTFOUND, "no upstream for service %s", r->service);
    if (refused || !via || tch_channel_call(via, &o, on_upstream, r, &err) != 0) {
        tch_error e2;
        tch_cassette_record_abort(r->target->c, r->slot, &e2);
        r->target->pending--;
        fail(m, r->in, call, err.msg, refused == TCH_ETOOBIG ? TCH_PCODE_BAD_REQUEST
                          : refused ? TCH_PCODE_DECLINED : TCH_PCODE_UNEXPECTED);
        unlink_rec(m, r);
    }
}

void mock_record_call(mock *m, tch_inbound *in, mock_cassette *target,
                      const tch_cassette_call *call) {
    /* What the original client would have recorded: the upstream as hostPort
     * and knownPeers, not the mock's caller. */
    tch_slice peers[64];
    size_t np = m->cfg->upstreams.n < 64 ? m->cfg->upstreams.n : 64;
    for (size_t i = 0; i < np; i++)
        peers[i] = tch_slice_cstr(m->cfg->upstreams.v[i]);
    tch_cassette_call rc = *call;
    rc.host_port = np == 1 ? peers[0] : TCH_SLICE_NULL;
    rc.known_peers = peers;
    rc.n_known_peers = np;

    mock_recording *r = calloc(1, sizeof *r);
    if (!r || !(r->service = tch_slice_strdup(call->service))) {
        free(r);
        fail(m, in, call, "tchannel-mock: out of memory", TCH_PCODE_UNEXPECTED);
        return;
    }
    tch_error err = {0};
    /* with --redact-*, the cassette gets a redacted copy; the upstream the call */
    const tch_cassette_redaction *red = m->cfg->redaction;
    tch_cassette_redacted_call redacted = {0};
    int redact = red && !tch_cassette_redaction_empty(red);
    int begun = redact && tch_cassette_redaction_call(red, &rc, &redacted, &err) != 0
                    ? (tch_error_wrap(&err, "tchannel-mock: the call was not forwarded: its "
                                      "recording could not be redacted"), -1)
                    : tch_cassette_record_begin(target->c, redact ? &redacted.call : &rc,
                                                &r->slot, &err);
    tch_cassette_redacted_call_free(&redacted);
    if (begun != 0) {
        free(r->service);
        free(r);
        fail(m, in, call, err.msg, TCH_PCODE_UNEXPECTED);
        return;
    }
    r->m = m, r->target = target, r->in = in, r->scheme = call->scheme;
    target->pending++;
    r->next = m->recordings;
    if (m->recordings)
        m->recordings->prev = r;
    m->recordings = r;
    m->n_recordings++;
    start_upstream(m, r, &rc);
}

/* Recordings waiting for the disk are committed and answered first.
 * Freeing the client channel then fails every outstanding call with
 * TCH_ECLOSED; on_upstream aborts each slot and answers its caller. */
void mock_record_shutdown(mock *m) {
    if (m->commit_ev)
        commit_waiting(-1, 0, m);
    tch_tracer_free(m->upstream_tracer); /* before its channel */
    m->upstream_tracer = NULL;
    if (m->upstream) {
        tch_channel *up = m->upstream;
        m->upstream = NULL;
        tch_channel_free(up);
    }
    mock_relay_shutdown(m); /* the same for recordings relayed to instances */
    if (m->commit_ev) {
        commit_waiting(-1, 0, m);
        event_free(m->commit_ev);
        m->commit_ev = NULL;
    }
}
