/* What the service under test did, over the admin API:
 *
 *   POST /journal/find     body: match rules (tchannel/stub.h) -> {"count", "entries"}
 *   POST /journal/count    the same -> {"count"}
 *   GET  /journal/unmatched  requests no cassette or stub answered
 *   DELETE /journal        clears the journal
 *   GET|POST /verify       every `required` interaction called, no request unmatched
 *   GET|PUT /redactions    what recordings must not keep (tchannel/redact.h)
 *
 * admin.c authenticates and routes here; answers are JSON as everywhere in
 * the admin API, errors {"error": "..."} naming the field. */
#include "mock.h"

#include <tchannel/redact.h>
#include <tchannel/stub.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNMATCHED_SHOWN 10 /* /verify lists the newest few misses */

/* The body as a JSON object (an empty body is {}); NULL after a 400. */
static json_t *body_object(struct evhttp_request *req) {
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    if (n == 0)
        return json_object();
    json_error_t jerr;
    json_t *o = json_loadb((const char *)evbuffer_pullup(in, -1), n, 0, &jerr);
    if (!json_is_object(o)) {
        mock_admin_reply_error(req, 400, "body must be a JSON object%s%s", o ? "" : ": ", o ? "" : jerr.text);
        json_decref(o);
        return NULL;
    }
    return o;
}

static int no_params(struct evhttp_request *req, struct evkeyvalq *q, const char *path) {
    if (!q->tqh_first)
        return 1;
    mock_admin_reply_error(req, 400, "%s takes no parameters (got \"%s\")", path, q->tqh_first->key);
    return 0;
}

/* ---- journal queries ---------------------------------------------------------- */

static void journal_find(mock *m, struct evhttp_request *req, int want_entries) {
    json_t *body = body_object(req);
    if (!body)
        return;
    tch_stub_rules *rules = NULL;
    tch_error err = {0};
    int rc = tch_stub_rules_from_json(body, &rules, &err);
    json_decref(body);
    if (rc) {
        mock_admin_reply_error(req, rc == TCH_ENOMEM ? 500 : 400, "%s", err.msg);
        return;
    }
    json_t *entries = want_entries ? json_array() : NULL;
    size_t count = 0;
    rc = mock_journal_find(&m->journal, rules, &count, entries, &err);
    tch_stub_rules_free(rules);
    if (rc) {
        json_decref(entries);
        mock_admin_reply_error(req, 400, "%s", err.msg);
        return;
    }
    if (want_entries)
        mock_admin_reply(req, 200, json_pack("{s:I, s:o}", "count", (json_int_t)count, "entries", entries));
    else
        mock_admin_reply(req, 200, json_pack("{s:I}", "count", (json_int_t)count));
}

static void journal_unmatched(mock *m, struct evhttp_request *req) {
    mock_journal_query q = {.outcome = MOCK_UNMATCHED};
    size_t n = 0;
    json_t *entries = mock_journal_to_json(&m->journal, &q, &n);
    mock_admin_reply(req, 200, json_pack("{s:I, s:I, s:o}", "count", (json_int_t)n, "unmatchedSinceClear",
                              (json_int_t)m->journal.unmatched, "entries", entries));
}

static void journal_clear(mock *m, struct evhttp_request *req) {
    size_t n = m->journal.n;
    mock_journal_clear(&m->journal);
    mock_log("journal cleared via admin API (%zu entr%s)", n, n == 1 ? "y" : "ies");
    mock_admin_reply(req, 200, json_pack("{s:I}", "cleared", (json_int_t)n));
}

/* ---- verification ----------------------------------------------------------------- */

static json_t *not_called_json(const char *where, const tch_cassette *c, size_t index) {
    const tch_cassette_interaction *it = tch_cassette_get(c, index);
    const tch_stub_info *stub = it ? tch_cassette_stub_of(it) : NULL;
    const tch_cassette_request *rq = it ? &it->request : NULL;
    char desc[600], line[40] = "";
    if (it && it->line) /* a run-time stub has none */
        snprintf(line, sizeof line, " (line %zu)", it->line);
    snprintf(desc, sizeof desc, "%s #%zu%s%s%s%s %.*s::%.*s", where, index,
             stub && stub->id ? " [" : "", stub && stub->id ? stub->id : "",
             stub && stub->id ? "]" : "", line,
             rq ? (int)(rq->service.len > 200 ? 200 : rq->service.len) : 0,
             rq && rq->service.ptr ? (const char *)rq->service.ptr : "",
             rq ? (int)(rq->endpoint.len > 200 ? 200 : rq->endpoint.len) : 0,
             rq && rq->endpoint.ptr ? (const char *)rq->endpoint.ptr : "");
    json_t *o = json_pack("{s:s, s:I, s:I, s:o}", "cassette", where, "index",
                          (json_int_t)index, "line", (json_int_t)(it ? it->line : 0), "describe",
                          mock_json_text(desc, strlen(desc)));
    if (o && stub && stub->id)
        json_object_set_new(o, "id", json_string(stub->id));
    if (o && rq) {
        json_object_set_new(o, "service", mock_json_text((const char *)rq->service.ptr,
                                                         rq->service.len));
        json_object_set_new(o, "endpoint", mock_json_text((const char *)rq->endpoint.ptr,
                                                          rq->endpoint.len));
    }
    return o;
}

/* Appends c's required interactions that were never played. */
static int add_not_called(json_t *nc, const char *where, const tch_cassette *c) {
    size_t *idx = NULL, n = 0;
    if (tch_cassette_required_unplayed(c, &idx, &n) != 0)
        return TCH_ENOMEM;
    for (size_t k = 0; k < n; k++)
        json_array_append_new(nc, not_called_json(where, c, idx[k]));
    free(idx);
    return 0;
}

json_t *mock_verify_report(mock *m) {
    json_t *nc = json_array();
    int rc = nc && m->stubs ? add_not_called(nc, "(run-time stubs)", m->stubs) : 0;
    for (size_t i = 0; nc && !rc && i < m->store.n; i++)
        rc = add_not_called(nc, m->store.items[i]->path, m->store.items[i]->c);
    if (rc) {
        json_decref(nc);
        return NULL;
    }
    mock_journal_query q = {.outcome = MOCK_UNMATCHED, .limit = UNMATCHED_SHOWN};
    size_t shown;
    json_t *recent = mock_journal_to_json(&m->journal, &q, &shown);
    int ok = nc && json_array_size(nc) == 0 && m->journal.unmatched == 0;
    return json_pack("{s:b, s:o, s:I, s:o}", "ok", ok, "notCalled", nc ? nc : json_array(),
                     "unmatched", (json_int_t)m->journal.unmatched, "unmatchedRequests",
                     recent ? recent : json_array());
}

static void verify(mock *m, struct evhttp_request *req) {
    json_t *r = mock_verify_report(m);
    if (!r) {
        mock_admin_reply_error(req, 500, "out of memory");
        return;
    }
    mock_admin_reply(req, json_is_true(json_object_get(r, "ok")) ? 200 : 409, r);
}

/* ---- redactions ----------------------------------------------------------------------- */

static void put_redactions(mock *m, struct evhttp_request *req) {
    json_t *body = body_object(req);
    if (!body)
        return;
    tch_error err = {0};
    json_t *tf = json_object_get(body, "thriftFields");
    int rc = json_array_size(tf) && !m->cfg->thrift
                 ? tch_error_set(&err, TCH_EINVAL, "thriftFields: thrift bodies are read through "
                                 "the IDL: start tchannel-mock with --thrift FILE|DIR")
                 : tch_cassette_redaction_set_json(m->cfg->redaction, body, &err);
    json_decref(body);
    if (rc) {
        mock_admin_reply_error(req, rc == TCH_ENOMEM ? 500 : 400, "%s", err.msg);
        return;
    }
    mock_log("redactions set via admin API");
    mock_admin_reply(req, 200, tch_cassette_redaction_to_json(m->cfg->redaction));
}

/* ---- routing ---------------------------------------------------------------------------- */

int mock_verify_route(mock *m, struct evhttp_request *req, const char *path, int method,
                      struct evkeyvalq *query) {
    int get = method == EVHTTP_REQ_GET, post = method == EVHTTP_REQ_POST,
        put = method == EVHTTP_REQ_PUT, del = method == EVHTTP_REQ_DELETE;
    if (!strcmp(path, "/journal") && del) {
        if (no_params(req, query, path))
            journal_clear(m, req);
    } else if (!strcmp(path, "/journal/find") && post) {
        journal_find(m, req, 1);
    } else if (!strcmp(path, "/journal/count") && post) {
        journal_find(m, req, 0);
    } else if (!strcmp(path, "/journal/unmatched") && get) {
        if (no_params(req, query, path))
            journal_unmatched(m, req);
    } else if (!strcmp(path, "/verify") && (get || post)) {
        if (no_params(req, query, path))
            verify(m, req);
    } else if (!strcmp(path, "/redactions") && get) {
        mock_admin_reply(req, 200, tch_cassette_redaction_to_json(m->cfg->redaction));
    } else if (!strcmp(path, "/redactions") && put) {
        put_redactions(m, req);
    } else if (!strcmp(path, "/journal/find") || !strcmp(path, "/journal/count") ||
               !strcmp(path, "/journal/unmatched") || !strcmp(path, "/verify") ||
               !strcmp(path, "/redactions")) {
        mock_admin_reply_error(req, 405, "method not allowed on %s", path);
    } else {
        return 0;
    }
    return 1;
}
