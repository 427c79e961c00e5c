/* Record-through: a call no cassette replays, in a mode that may record, is
 * made again to the real service through a client channel (same service,
 * endpoint, arg2, arg3, scheme and transport headers). The slot is reserved
 * with tch_cassette_record_begin when the call arrives, so the file keeps
 * arrival order; the upstream's answer fills it, goes back to the caller,
 * and the cassette is saved at once (atomic rename), so a crash loses at
 * most the calls still in flight. */
#include "mock.h"

#include <stdlib.h>
#include <string.h>

struct mock_recording {
    mock *m;
    mock_cassette *target;
    tch_cassette_slot slot;
    tch_inbound *in;
    char *service; /* NUL-terminated for tch_call_opts */
    int scheme;
    mock_recording *prev, *next;
};

int mock_record_init(mock *m, tch_error *err) {
    if (m->cfg->upstreams.n == 0)
        return 0;
    tch_channel_options o = {0};
    o.process_name = "tchannel-mock";
    m->upstream = tch_channel_new(m->base, "tchannel-mock", &o);
    if (!m->upstream)
        return tch_error_set(err, TCH_ENOMEM, "cannot create the upstream channel");
    for (size_t i = 0; i < m->cfg->upstreams.n; i++) {
        int rc = tch_channel_add_peer(m->upstream, m->cfg->upstreams.v[i], err);
        if (rc)
            return tch_error_wrap(err, "--upstream %s", m->cfg->upstreams.v[i]);
    }
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
    free(r->service);
    free(r);
}

/* Error frames and timeouts are recorded (a cassette can replay a Busy or a
 * timeout); a call that never reached the service is not, as in vcr.c. */
static int record_outcome(mock_cassette *t, tch_cassette_slot slot, const tch_response *res,
                          int *recorded, tch_error *err) {
    int rc;
    *recorded = 1;
    if (res->status == 0) {
        tch_cassette_reply reply = {res->code, res->arg2, res->arg3};
        rc = tch_cassette_record_finish(t->c, slot, &reply, err);
    } else if (res->status == TCH_EREMOTE || res->status == TCH_ETIMEOUT) {
        rc = tch_cassette_record_finish_error(t->c, slot, res->error_code,
                                              res->message ? res->message : "", err);
    } else {
        *recorded = 0;
        return tch_cassette_record_abort(t->c, slot, err);
    }
    if (rc) { /* e.g. an error code the cassette cannot name: leave no slot pending */
        *recorded = 0;
        tch_cassette_record_abort(t->c, slot, NULL);
    }
    return rc;
}

static void on_upstream(const tch_response *res, void *ud) {
    mock_recording *r = ud;
    mock *m = r->m;
    mock_cassette *t = r->target;
    tch_error err = {0};
    int recorded = 0;
    if (record_outcome(t, r->slot, res, &recorded, &err) != 0)
        mock_log("%s: could not record: %s", t->path, err.msg);
    t->pending--;
    if (recorded && mock_store_save(m, t, &err) != 0)
        mock_log("%s: save failed (will retry on the next recording and at exit): %s", t->path,
                 err.msg);
    mock_journal_add(&m->journal, tch_inbound_service(r->in), tch_inbound_endpoint(r->in),
                     tch_inbound_peer(r->in), r->scheme, recorded ? MOCK_RECORDED : MOCK_FAILED,
                     t->path, recorded ? (long)r->slot : -1,
                     recorded ? NULL : (res->message ? res->message : "upstream failed"), NULL);
    if (!recorded)
        mock_log("upstream call %s::%.*s failed, not recorded: %s", r->service,
                 (int)tch_inbound_endpoint(r->in).len,
                 (const char *)tch_inbound_endpoint(r->in).ptr, res->message ? res->message : "");
    if (res->status == 0)
        tch_inbound_respond_with(r->in, res->code, res->arg2, res->arg3, res->headers,
                                 res->nheaders);
    else
        tch_inbound_respond_error(r->in, res->error_code ? res->error_code : TCH_PCODE_UNEXPECTED,
                                  res->message ? res->message : "upstream failed");
    unlink_rec(m, r);
    if (m->shutting_down && m->n_recordings == 0)
        mock_begin_shutdown(m); /* the last one we waited for */
}

static void fail(mock *m, tch_inbound *in, const tch_cassette_call *call, const char *why) {
    mock_log("record-through %.*s::%.*s failed: %s", (int)call->service.len,
             (const char *)call->service.ptr, (int)call->endpoint.len,
             (const char *)call->endpoint.ptr, why);
    mock_journal_add(&m->journal, call->service, call->endpoint, tch_inbound_peer(in),
                     call->scheme, MOCK_FAILED, NULL, -1, why, NULL);
    tch_inbound_respond_error(in, TCH_PCODE_UNEXPECTED, why);
}

static void start_upstream(mock *m, mock_recording *r, const tch_cassette_call *call) {
    tch_header hs[256];
    size_t nh = call->n_transport_headers < 256 ? call->n_transport_headers : 256;
    for (size_t i = 0; i < nh; i++)
        hs[i] = (tch_header){call->transport_headers[i].key, call->transport_headers[i].value};
    tch_call_opts o = {0};
    o.service = r->service;
    o.endpoint = call->endpoint;
    o.arg2 = call->headers;
    o.arg3 = call->body;
    o.headers = hs;
    o.nheaders = nh;
    o.arg_scheme = mock_scheme_name(call->scheme);
    o.host_port = m->cfg->upstreams.n == 1 ? m->cfg->upstreams.v[0] : NULL;
    o.timeout_ms = tch_inbound_ttl_ms(r->in); /* the caller's budget, not ours */
    tch_error err = {0};
    if (tch_channel_call(m->upstream, &o, on_upstream, r, &err) != 0) {
        tch_error e2;
        tch_cassette_record_abort(r->target->c, r->slot, &e2);
        r->target->pending--;
        fail(m, r->in, call, err.msg);
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
        fail(m, in, call, "tchannel-mock: out of memory");
        return;
    }
    tch_error err = {0};
    if (tch_cassette_record_begin(target->c, &rc, &r->slot, &err) != 0) {
        free(r->service);
        free(r);
        fail(m, in, call, err.msg);
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

/* Freeing the client channel fails every outstanding call with
 * TCH_ECLOSED; on_upstream then aborts each slot and answers its caller. */
void mock_record_shutdown(mock *m) {
    if (!m->upstream)
        return;
    tch_channel *up = m->upstream;
    m->upstream = NULL;
    tch_channel_free(up);
}
