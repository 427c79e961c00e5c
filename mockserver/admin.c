/* The admin API: a thin HTTP face (evhttp + jansson) over the cassette store
 * and the journal. Bound to 127.0.0.1 by default: it can load any file the
 * process can read. Every answer is JSON; errors are {"error": "..."} with a
 * 4xx code. */
#include "mock.h"

#include <errno.h>
#include <sys/stat.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <arpa/inet.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define ADMIN_MAX_BODY (1u << 20)

static void reply_json(struct evhttp_request *req, int code, json_t *body) {
    struct evbuffer *out = evbuffer_new();
    char *text = body ? json_dumps(body, JSON_INDENT(2)) : NULL;
    json_decref(body);
    if (!out) {
        free(text);
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    evbuffer_add_printf(out, "%s\n", text ? text : "{\"error\": \"out of memory\"}");
    free(text);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, code, NULL, out);
    evbuffer_free(out);
}

static void reply_error(struct evhttp_request *req, int code, const char *fmt, ...) TCH_PRINTF(3, 4);
static void reply_error(struct evhttp_request *req, int code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    reply_json(req, code, json_pack("{s:o}", "error", mock_json_text(msg, strlen(msg))));
}

static int http_code_of(int rc) {
    switch (rc) {
    case TCH_ENOTFOUND:
        return 404;
    case TCH_ESTATE:
        return 409;
    default:
        return 400;
    }
}

/* The request body as a JSON object; NULL after replying 400. */
static json_t *body_object(struct evhttp_request *req) {
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    const char *data = n ? (const char *)evbuffer_pullup(in, -1) : "";
    json_error_t jerr;
    json_t *o = json_loadb(data, n, 0, &jerr);
    if (!json_is_object(o)) {
        json_decref(o);
        reply_error(req, 400, "body must be a JSON object%s%s", o ? "" : ": ", o ? "" : jerr.text);
        return NULL;
    }
    return o;
}

/* ---- endpoints ---------------------------------------------------------------- */

static json_t *cassettes_json(const mock *m) {
    json_t *list = json_array();
    for (size_t i = 0; i < m->store.n; i++)
        json_array_append_new(list, mock_cassette_to_json(m, m->store.items[i]));
    return json_pack("{s:s, s:o}", "mode", tch_cassette_mode_name(m->mode), "cassettes", list);
}

/* Whether a call no cassette replays would be recorded now: an upstream,
 * a record target, and a mode that lets that target record. */
static int recording(mock *m) {
    mock_cassette *target = mock_store_target(&m->store);
    return m->upstream != NULL && target && tch_cassette_can_record(target->c);
}

static void get_health(mock *m, struct evhttp_request *req) {
    size_t interactions = 0, errors = 0;
    for (size_t i = 0; i < m->store.n; i++) {
        interactions += tch_cassette_count(m->store.items[i]->c);
        errors += m->store.items[i]->load_error != NULL;
    }
    reply_json(req, 200,
               json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:b}", "status", "ok",
                         "listening", tch_channel_host_port(m->ch), "mode",
                         tch_cassette_mode_name(m->mode), "cassettes", (json_int_t)m->store.n,
                         "interactions", (json_int_t)interactions, "loadErrors",
                         (json_int_t)errors, "calls", (json_int_t)m->calls, "misses",
                         (json_int_t)m->misses, "uptimeMs",
                         (json_int_t)(mock_now_ms() - m->started_ms), "recording",
                         recording(m)));
}

/* Reads GET /journal's parameters into *jq; replies 400 naming the bad one. */
static int journal_query(struct evhttp_request *req, struct evkeyvalq *q, mock_journal_query *jq) {
    *jq = (mock_journal_query){.outcome = -1};
    for (struct evkeyval *kv = q->tqh_first; kv; kv = kv->next.tqe_next) {
        const char *v = kv->value;
        if (!strcmp(kv->key, "service")) {
            jq->service = v;
        } else if (!strcmp(kv->key, "endpoint")) {
            jq->endpoint = v;
        } else if (!strcmp(kv->key, "outcome")) {
            mock_outcome o;
            if (mock_outcome_parse(v, &o) != 0) {
                reply_error(req, 400, "outcome: expected replayed, recorded, unmatched, failed or "
                                      "hyperbahn, got \"%s\"", v);
                return -1;
            }
            jq->outcome = (int)o;
        } else if (!strcmp(kv->key, "limit")) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(v, &end, 10);
            if (!*v || *end || v[0] == '-' || errno == ERANGE || n > SIZE_MAX) {
                reply_error(req, 400, "limit: expected a whole number, got \"%s\"", v);
                return -1;
            }
            jq->limit = (size_t)n;
        } else {
            reply_error(req, 400, "unknown parameter \"%s\" (journal takes limit, service, "
                                  "endpoint and outcome)", kv->key);
            return -1;
        }
    }
    return 0;
}

static void get_journal(mock *m, struct evhttp_request *req, struct evkeyvalq *q) {
    mock_journal_query jq;
    if (journal_query(req, q, &jq) != 0)
        return;
    size_t matching;
    json_t *entries = mock_journal_to_json(&m->journal, &jq, &matching);
    reply_json(req, 200,
               json_pack("{s:I, s:I, s:I, s:I, s:o}", "capacity", (json_int_t)m->journal.cap,
                         "total", (json_int_t)m->journal.total, "dropped",
                         (json_int_t)m->journal.dropped, "matching",
                         (json_int_t)matching, "entries", entries));
}

static void post_cassettes(mock *m, struct evhttp_request *req) {
    json_t *body = body_object(req);
    if (!body)
        return;
    const char *path = json_string_value(json_object_get(body, "path"));
    int target = json_is_true(json_object_get(body, "recordTarget"));
    if (!path || !*path) {
        json_decref(body);
        reply_error(req, 400, "body needs \"path\": a cassette file or directory");
        return;
    }
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT && !target) {
        /* a typo should not load an empty cassette; a new file is for recording */
        reply_error(req, 404, "no such file: %s (give \"recordTarget\": true to start a new cassette)",
                    path);
        json_decref(body); /* after: path points into it */
        return;
    }
    mock_strv paths = {0};
    tch_error err = {0};
    int rc = mock_expand_path(path, &paths, &err);
    json_t *loaded = json_array();
    /* a folder's files already loaded are skipped, as at start-up */
    int folder = !rc && (paths.n != 1 || strcmp(paths.v[0], path) != 0);
    for (size_t i = 0; !rc && i < paths.n; i++) {
        mock_cassette *mc;
        rc = mock_store_add(m, paths.v[i], &mc, &err);
        int skipped = rc == TCH_ESTATE && folder;
        if (skipped)
            rc = 0;
        if (!rc && target && i == 0) { /* before it is described in the answer */
            for (size_t k = 0; k < m->store.n; k++)
                m->store.items[k]->record_target = m->store.items[k] == mc;
        }
        if (!rc && !skipped)
            json_array_append_new(loaded, mock_cassette_to_json(m, mc));
    }
    mock_strv_free(&paths);
    if (rc) { /* files loaded before the failure stay loaded (listed in GET /cassettes) */
        json_decref(loaded);
        mock_log("load via admin API failed: %s", err.msg);
        reply_error(req, rc == TCH_ESTATE ? 409 : 400, "%s", err.msg);
    } else {
        mock_log("loaded %s via admin API", path);
        reply_json(req, 201, json_pack("{s:o}", "loaded", loaded));
    }
    json_decref(body); /* path points into it */
}

static void delete_cassettes(mock *m, struct evhttp_request *req, struct evkeyvalq *q) {
    const char *path = evhttp_find_header(q, "path");
    if (!path) {
        reply_error(req, 400, "DELETE /cassettes needs ?path=...");
        return;
    }
    tch_error err = {0};
    int rc = mock_store_remove(m, path, &err);
    if (rc) {
        reply_error(req, http_code_of(rc), "%s", err.msg);
        return;
    }
    mock_log("unloaded %s via admin API", path);
    reply_json(req, 200, json_pack("{s:o}", "unloaded", mock_json_text(path, strlen(path))));
}

/* Re-reads every cassette from disk; failures keep the old version. */
static json_t *reload_all(mock *m, size_t *failed) {
    json_t *results = json_array();
    *failed = 0;
    for (size_t i = 0; i < m->store.n; i++) {
        mock_cassette *mc = m->store.items[i];
        tch_error err = {0};
        int rc = mock_store_reload(m, mc, &err);
        if (rc) {
            (*failed)++;
            mock_log("reload %s failed, still serving the last good version: %s", mc->path,
                     err.msg);
        }
        json_array_append_new(results, json_pack("{s:s, s:b, s:s?}", "path", mc->path, "ok",
                                                 rc == 0, "error", rc ? err.msg : NULL));
    }
    return results;
}

static void post_reload(mock *m, struct evhttp_request *req) {
    size_t failed;
    json_t *results = reload_all(m, &failed);
    reply_json(req, failed ? 409 : 200, json_pack("{s:o}", "reloaded", results));
}

static void post_reset(mock *m, struct evhttp_request *req) {
    size_t failed;
    json_t *results = reload_all(m, &failed);
    mock_journal_clear(&m->journal);
    m->calls = m->misses = 0;
    reply_json(req, failed ? 409 : 200, json_pack("{s:o, s:b}", "reloaded", results,
                                                  "journalCleared", 1));
}

/* Play counts back to zero in memory: no disk access, the journal kept. */
static void post_rewind(mock *m, struct evhttp_request *req) {
    for (size_t i = 0; i < m->store.n; i++)
        tch_cassette_rewind(m->store.items[i]->c);
    mock_log("play counts rewound via admin API (%zu cassette%s)", m->store.n,
             m->store.n == 1 ? "" : "s");
    reply_json(req, 200, json_pack("{s:I}", "rewound", (json_int_t)m->store.n));
}

static void put_mode(mock *m, struct evhttp_request *req) {
    json_t *body = body_object(req);
    if (!body)
        return;
    const char *name = json_string_value(json_object_get(body, "mode"));
    tch_cassette_mode mode;
    tch_error err = {0};
    int rc = name ? tch_cassette_mode_parse(name, &mode, &err)
                  : tch_error_set(&err, TCH_EINVAL, "body needs \"mode\": once|new_episodes|none|all");
    if (!rc && mode != TCH_CASSETTE_NONE && !m->upstream)
        rc = tch_error_set(&err, TCH_EINVAL, "mode %s records, but no --upstream was given",
                           name);
    if (!rc)
        rc = mock_store_set_mode(m, mode, &err);
    json_decref(body);
    if (rc) {
        reply_error(req, http_code_of(rc), "%s", err.msg);
        return;
    }
    mock_log("mode set to %s via admin API", tch_cassette_mode_name(mode));
    reply_json(req, 200, json_pack("{s:s}", "mode", tch_cassette_mode_name(mode)));
}

static void get_hyperbahn(mock *m, struct evhttp_request *req) {
    json_t *adv = json_array();
    for (size_t i = 0; i < m->cfg->advertise_to.n; i++)
        json_array_append_new(adv, json_string(m->cfg->advertise_to.v[i]));
    reply_json(req, 200, json_pack("{s:O, s:o, s:s?}", "advertised", m->advertised,
                                   "advertiseTo", adv, "selfAdvertise", m->hb_status));
}

/* ---- routing -------------------------------------------------------------------- */

static int is_endpoint(const char *path) {
    static const char *const paths[] = {"/health", "/cassettes", "/journal", "/reset",
                                        "/reload", "/rewind",    "/mode",    "/hyperbahn"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (!strcmp(path, paths[i]))
            return 1;
    return 0;
}

static void on_request(struct evhttp_request *req, void *ud) {
    mock *m = ud;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = evhttp_uri_get_path(uri);
    const char *query = evhttp_uri_get_query(uri);
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    struct evkeyvalq q = {0};
    if (query && evhttp_parse_query_str(query, &q) != 0) {
        reply_error(req, 400, "bad query string");
        return;
    }
    if (!path)
        path = "/";
    int get = method == EVHTTP_REQ_GET, post = method == EVHTTP_REQ_POST;
    if (!strcmp(path, "/health") && get)
        get_health(m, req);
    else if (!strcmp(path, "/cassettes") && get)
        reply_json(req, 200, cassettes_json(m));
    else if (!strcmp(path, "/cassettes") && post)
        post_cassettes(m, req);
    else if (!strcmp(path, "/cassettes") && method == EVHTTP_REQ_DELETE)
        delete_cassettes(m, req, &q);
    else if (!strcmp(path, "/journal") && get)
        get_journal(m, req, &q);
    else if (!strcmp(path, "/reset") && post)
        post_reset(m, req);
    else if (!strcmp(path, "/reload") && post)
        post_reload(m, req);
    else if (!strcmp(path, "/rewind") && post)
        post_rewind(m, req);
    else if (!strcmp(path, "/mode") && method == EVHTTP_REQ_PUT)
        put_mode(m, req);
    else if (!strcmp(path, "/mode") && get)
        reply_json(req, 200, json_pack("{s:s}", "mode", tch_cassette_mode_name(m->mode)));
    else if (!strcmp(path, "/hyperbahn") && get)
        get_hyperbahn(m, req);
    else if (is_endpoint(path))
        reply_error(req, 405, "method not allowed on %s", path);
    else
        reply_error(req, 404, "no such endpoint: %s", path);
    evhttp_clear_headers(&q);
}

int mock_admin_start(mock *m, tch_error *err) {
    if (m->cfg->admin_port < 0)
        return 0;
    m->http = evhttp_new(m->base);
    if (!m->http)
        return tch_error_set(err, TCH_ENOMEM, "admin: evhttp_new failed");
    evhttp_set_max_body_size(m->http, ADMIN_MAX_BODY);
    /* every method reaches on_request, so a wrong one gets our JSON 405, not
     * libevent's HTML 501 */
    evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(m->http, on_request, m);
    struct evhttp_bound_socket *bs =
        evhttp_bind_socket_with_handle(m->http, m->cfg->admin_host, (uint16_t)m->cfg->admin_port);
    if (!bs)
        return tch_error_set(err, TCH_EIO, "admin: cannot listen on %s:%d", m->cfg->admin_host,
                             m->cfg->admin_port);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int port = m->cfg->admin_port;
    if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET)
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    snprintf(m->admin_host_port, sizeof m->admin_host_port, "%s:%d", m->cfg->admin_host, port);
    return 0;
}

void mock_admin_free(mock *m) {
    if (m->http)
        evhttp_free(m->http);
    m->http = NULL;
}
