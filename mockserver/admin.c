/* The admin API: a thin HTTP face (evhttp + jansson) over the cassette store
 * and the journal. Every answer is JSON; errors are {"error": "..."} with a
 * 4xx code. It can read and write files, so it is fenced in:
 *
 *   - it listens on 127.0.0.1 by default, or on a Unix socket (mode 0600);
 *   - with --admin-token-file, every request needs Authorization: Bearer TOKEN
 *     (compared in constant time), else 401;
 *   - it loads from and records into the cassette roots only (the folders of
 *     the cassettes on the command line, and --cassette-root), judged after
 *     symbolic links and `..` are resolved; anything else is 403 and no byte
 *     of the file is read;
 *   - a request must arrive whole within --admin-timeout, and at most
 *     --admin-max-connections connections are open; past either, the
 *     connection is closed and the log says so. */
#include "mock.h"

#include <errno.h>
#include <sys/stat.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>

#include <arpa/inet.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define ADMIN_MAX_BODY (1u << 20)
#define ADMIN_MAX_HEADERS (64u << 10)

/* One admin connection we watch: its deadline and its place in the count. */
typedef struct admin_conn {
    struct mock_admin *a;
    struct bufferevent *bev;           /* made by us for evhttp (new_conn) */
    struct evhttp_connection *evcon;   /* known from the loop's next turn */
    struct event *ev;                  /* attach, then the request deadline */
    char peer[80];
    struct admin_conn *prev, *next;
} admin_conn;

struct mock_admin {
    mock *m;
    mock_strv roots;     /* real paths of the folders the API may use */
    char *token;         /* NULL: no authentication */
    size_t token_len;
    char *socket_path;   /* ours to remove at exit */
    admin_conn *conns;
    size_t live;         /* connections counted against the cap */
    uint64_t cap_logged_ms;
    size_t cap_refused;  /* refused since the last log line */
};

void mock_admin_reply(struct evhttp_request *req, int code, json_t *body) {
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

void mock_admin_reply_error(struct evhttp_request *req, int code, const char *fmt, ...) {
    char msg[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    mock_admin_reply(req, code, json_pack("{s:o}", "error", mock_json_text(msg, strlen(msg))));
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
        mock_admin_reply_error(req, 400, "body must be a JSON object%s%s", o ? "" : ": ", o ? "" : jerr.text);
        return NULL;
    }
    return o;
}

/* ---- confinement ---------------------------------------------------------------- */

char *mock_real_target(const char *p) {
    char *r = realpath(p, NULL);
    if (r || errno != ENOENT)
        return r;
    struct stat st;
    if (lstat(p, &st) == 0) { /* a link to nothing: where it leads is unknown */
        errno = ENOENT;
        return NULL;
    }
    char *c1 = strdup(p), *c2 = strdup(p), *dir = NULL, *out = NULL;
    const char *base = c2 ? basename(c2) : NULL;
    if (c1 && base && strcmp(base, "..") && strcmp(base, ".") && strcmp(base, "/") &&
        (dir = realpath(dirname(c1), NULL))) {
        size_t n = strlen(dir) + strlen(base) + 2;
        if ((out = malloc(n)))
            snprintf(out, n, "%s%s%s", dir, strcmp(dir, "/") ? "/" : "", base);
    }
    free(c1);
    free(c2);
    free(dir);
    return out;
}

static int under(const char *root, const char *real) {
    size_t n = strlen(root);
    if (n == 1 && root[0] == '/')
        return 1;
    return strncmp(real, root, n) == 0 && (real[n] == '/' || real[n] == 0);
}

static int inside_roots(const struct mock_admin *a, const char *real) {
    int ok = 0;
    for (size_t i = 0; real && i < a->roots.n && !ok; i++)
        ok = under(a->roots.v[i], real);
    return ok;
}

/* Whether path may be used by the admin API: inside a root, once resolved. */
static int allowed(const struct mock_admin *a, const char *path) {
    char *real = mock_real_target(path);
    int ok = inside_roots(a, real);
    free(real);
    return ok;
}

/* path made absolute with `.` and `..` taken away by spelling alone (no
 * look at the disk), or NULL. For saying why a path inside a root cannot be
 * resolved: its folder is missing. */
static char *lexical(const char *path) {
    char cwd[PATH_MAX];
    if (path[0] != '/' && !getcwd(cwd, sizeof cwd))
        return NULL;
    size_t n = (path[0] == '/' ? 0 : strlen(cwd)) + strlen(path) + 2;
    char *in = malloc(n), *out = malloc(n);
    if (!in || !out) {
        free(in);
        free(out);
        return NULL;
    }
    snprintf(in, n, "%s/%s", path[0] == '/' ? "" : cwd, path);
    size_t len = 0;
    for (char *save = NULL, *t = strtok_r(in, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
        if (!strcmp(t, "."))
            continue;
        if (!strcmp(t, "..")) {
            while (len > 0 && out[len - 1] != '/')
                len--;
            if (len > 0)
                len--; /* the slash */
            continue;
        }
        len += (size_t)snprintf(out + len, n - len, "/%s", t);
    }
    if (len == 0)
        out[len++] = '/';
    out[len] = 0;
    free(in);
    return out;
}

/* Whether the deepest folder of lex that exists is inside a root once
 * resolved: otherwise a 404 would tell whether a folder exists outside the
 * roots, reached through a link. */
static int deepest_inside(const struct mock_admin *a, const char *lex) {
    char *cur = strdup(lex), *real = NULL;
    while (cur && !(real = realpath(cur, NULL)) && strcmp(cur, "/")) {
        char *up = strdup(dirname(cur));
        free(cur);
        cur = up;
    }
    int ok = inside_roots(a, real);
    free(cur);
    free(real);
    return ok;
}

/* A record target inside a root whose folder does not exist yet: 1 after
 * answering 404 (folders are not created), else 0. */
static int missing_folder(const struct mock_admin *a, struct evhttp_request *req,
                          const char *path) {
    char *lex = lexical(path), *parent = lex ? strdup(lex) : NULL;
    struct stat st;
    const char *folder = parent ? dirname(parent) : NULL;
    int missing = folder && inside_roots(a, lex) && stat(folder, &st) != 0 &&
                  deepest_inside(a, folder);
    if (missing)
        mock_admin_reply_error(req, 404, "%s: its folder does not exist; the admin API does not create "
                    "folders", path);
    free(lex);
    free(parent);
    return missing;
}

/* 403 naming the rule; never anything from the file itself. */
static void reply_outside(struct evhttp_request *req, const char *path) {
    mock_admin_reply_error(req, 403, "%s: outside the folders the admin API may use (the folders of the "
                "cassettes given on the command line, and --cassette-root DIR), once symbolic "
                "links and '..' are resolved", path);
}

int mock_admin_check_write(mock *m, struct evhttp_request *req, const char *path) {
    if (allowed(m->admin, path))
        return 0;
    if (!missing_folder(m->admin, req, path))
        reply_outside(req, path);
    return -1;
}

static int add_root(struct mock_admin *a, const char *dir, int given, tch_error *err) {
    char *real = realpath(dir, NULL);
    struct stat st;
    if (!real || stat(real, &st) != 0 || !S_ISDIR(st.st_mode)) {
        int e = real ? ENOTDIR : errno;
        free(real);
        /* a cassette's folder that is not there yet adds nothing; a root
         * asked for by name must exist */
        return given ? tch_error_set(err, TCH_ENOTFOUND, "--cassette-root %s: %s", dir,
                                     strerror(e))
                     : 0;
    }
    int rc = mock_strv_push(&a->roots, real);
    free(real);
    return rc ? tch_error_set(err, TCH_ENOMEM, "out of memory") : 0;
}

/* A cassette's root is its folder; a folder given is its own root. */
static int add_root_of(struct mock_admin *a, const char *path, tch_error *err) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return add_root(a, path, 0, err);
    char *copy = strdup(path);
    int rc = copy ? add_root(a, dirname(copy), 0, err) : tch_error_set(err, TCH_ENOMEM, "out of memory");
    free(copy);
    return rc;
}

static int compute_roots(struct mock_admin *a, const mock_config *c, tch_error *err) {
    int rc = 0;
    for (size_t i = 0; i < c->inputs.n && !rc; i++)
        rc = add_root_of(a, c->inputs.v[i], err);
    if (!rc && c->record_to)
        rc = add_root_of(a, c->record_to, err);
    for (size_t i = 0; i < c->cassette_roots.n && !rc; i++)
        rc = add_root(a, c->cassette_roots.v[i], 1, err);
    return rc;
}

/* ---- authentication ------------------------------------------------------------------ */

/* The token is the file's first line, trimmed: it stays out of `ps`. */
static int read_token(struct mock_admin *a, const char *file, tch_error *err) {
    FILE *fp = fopen(file, "r");
    if (!fp)
        return tch_error_set(err, TCH_EIO, "--admin-token-file %s: %s", file, strerror(errno));
    char *line = NULL; /* the whole first line, however long: never a cut token */
    size_t cap = 0;
    ssize_t got = getline(&line, &cap, fp);
    fclose(fp);
    if (got < 0) {
        free(line);
        line = NULL;
    }
    char *b = line, *e = got > 0 ? line + got : line;
    while (b < e && strchr(" \t\r\n", *b))
        b++;
    while (e > b && strchr(" \t\r\n", e[-1]))
        e--;
    if (e == b) {
        free(line);
        return tch_error_set(err, TCH_EINVAL, "--admin-token-file %s: the first line is empty: "
                             "no token to ask for", file);
    }
    a->token_len = (size_t)(e - b);
    a->token = strndup(b, a->token_len);
    free(line);
    return a->token ? 0 : tch_error_set(err, TCH_ENOMEM, "out of memory");
}

/* Time depends on the expected token's length only, not on where a guess
 * first differs. */
static int token_equal(const struct mock_admin *a, const char *given, size_t n) {
    volatile unsigned char diff = n != a->token_len;
    for (size_t i = 0; i < a->token_len; i++)
        diff |= (unsigned char)(a->token[i] ^ (i < n ? given[i] : 0));
    return diff == 0;
}

/* 1 when the request may go on; else 401 has been sent. */
static int authorized(const struct mock_admin *a, struct evhttp_request *req) {
    if (!a->token)
        return 1;
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (h && strncasecmp(h, "Bearer ", 7) == 0) {
        const char *t = h + 7;
        while (*t == ' ')
            t++;
        if (token_equal(a, t, strlen(t)))
            return 1;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                      "Bearer realm=\"tchannel-mock\"");
    mock_admin_reply_error(req, 401, h ? "wrong token in Authorization" :
                "the admin API needs Authorization: Bearer TOKEN (the token of --admin-token-file)");
    return 0;
}

/* ---- endpoints ---------------------------------------------------------------- */

static json_t *cassettes_json(const mock *m) {
    json_t *list = json_array();
    for (size_t i = 0; i < m->store.n; i++)
        json_array_append_new(list, mock_cassette_to_json(m, m->store.items[i]));
    return json_pack("{s:s, s:o}", "mode", tch_cassette_mode_name(m->mode), "cassettes", list);
}

/* Whether a call could be recorded from somewhere now: --upstream, a
 * service given as --upstream SERVICE=HOST:PORT, a router, or an instance
 * that advertised to us and is still live (asked as relay.c routes). */
static int has_source(mock *m) {
    const mock_config *c = m->cfg;
    if (m->upstream || c->service_upstreams.n || c->upstream_routers.n)
        return 1;
    const char *service;
    json_t *hosts;
    json_object_foreach(m->advertised, service, hosts) {
        tch_cassette_call call = {.service = tch_slice_cstr(service)};
        tch_channel *via;
        const char *hp;
        if (mock_relay_route(m, &call, &via, &hp))
            return 1;
    }
    return 0;
}

/* Whether a call no cassette replays would be recorded now: somewhere to
 * record from, and a mode that lets the record target record (with
 * --record-to DIR/, each service's own cassette, made when needed). */
static int recording(mock *m) {
    if (m->mode == TCH_CASSETTE_NONE || !has_source(m))
        return 0;
    if (m->cfg->record_dir)
        return 1;
    mock_cassette *target = mock_store_target(&m->store);
    return target && tch_cassette_can_record(target->c);
}

static void get_health(mock *m, struct evhttp_request *req) {
    size_t interactions = 0, errors = 0;
    for (size_t i = 0; i < m->store.n; i++) {
        interactions += tch_cassette_count(m->store.items[i]->c);
        errors += m->store.items[i]->load_error != NULL;
    }
    mock_admin_reply(req, 200,
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
                mock_admin_reply_error(req, 400, "outcome: expected replayed, recorded, unmatched, failed or "
                                      "hyperbahn, got \"%s\"", v);
                return -1;
            }
            jq->outcome = (int)o;
        } else if (!strcmp(kv->key, "limit")) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(v, &end, 10);
            if (!*v || *end || v[0] == '-' || errno == ERANGE || n > SIZE_MAX) {
                mock_admin_reply_error(req, 400, "limit: expected a whole number, got \"%s\"", v);
                return -1;
            }
            jq->limit = (size_t)n;
        } else {
            mock_admin_reply_error(req, 400, "unknown parameter \"%s\" (journal takes limit, service, "
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
    mock_admin_reply(req, 200,
               json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "capacity",
                         (json_int_t)m->journal.cap, "bytes", (json_int_t)m->journal.bytes,
                         "maxBytes", (json_int_t)m->journal.max_bytes, "total",
                         (json_int_t)m->journal.total, "dropped",
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
        mock_admin_reply_error(req, 400, "body needs \"path\": a cassette file or directory");
        return;
    }
    if (!allowed(m->admin, path)) { /* before any look at the file: no oracle either */
        if (!(target && missing_folder(m->admin, req, path)))
            reply_outside(req, path);
        json_decref(body); /* after: path points into it */
        return;
    }
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT && !target) {
        /* a typo should not load an empty cassette; a new file is for recording */
        mock_admin_reply_error(req, 404, "no such file: %s (give \"recordTarget\": true to start a new cassette)",
                    path);
        json_decref(body); /* after: path points into it */
        return;
    }
    mock_strv paths = {0};
    tch_error err = {0};
    int rc = mock_expand_path(path, &paths, &err);
    /* a folder's file may be a link to somewhere else: each is checked */
    for (size_t i = 0; !rc && i < paths.n; i++) {
        if (!allowed(m->admin, paths.v[i])) {
            reply_outside(req, paths.v[i]);
            mock_strv_free(&paths);
            json_decref(body);
            return;
        }
    }
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
        mock_admin_reply_error(req, rc == TCH_ESTATE ? 409 : 400, "%s", err.msg);
    } else {
        mock_log("loaded %s via admin API", path);
        mock_admin_reply(req, 201, json_pack("{s:o}", "loaded", loaded));
    }
    json_decref(body); /* path points into it */
}

static void delete_cassettes(mock *m, struct evhttp_request *req, struct evkeyvalq *q) {
    const char *path = evhttp_find_header(q, "path");
    if (!path) {
        mock_admin_reply_error(req, 400, "DELETE /cassettes needs ?path=...");
        return;
    }
    tch_error err = {0};
    int rc = mock_store_remove(m, path, &err);
    if (rc) {
        mock_admin_reply_error(req, http_code_of(rc), "%s", err.msg);
        return;
    }
    mock_log("unloaded %s via admin API", path);
    mock_admin_reply(req, 200, json_pack("{s:o}", "unloaded", mock_json_text(path, strlen(path))));
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
    mock_admin_reply(req, failed ? 409 : 200, json_pack("{s:o}", "reloaded", results));
}

static void post_reset(mock *m, struct evhttp_request *req) {
    size_t failed;
    json_t *results = reload_all(m, &failed);
    mock_journal_clear(&m->journal);
    m->calls = m->misses = 0;
    mock_admin_reply(req, failed ? 409 : 200, json_pack("{s:o, s:b}", "reloaded", results,
                                                  "journalCleared", 1));
}

/* Play counts back to zero in memory: no disk access, the journal kept. */
static void post_rewind(mock *m, struct evhttp_request *req) {
    for (size_t i = 0; i < m->store.n; i++)
        tch_cassette_rewind(m->store.items[i]->c);
    mock_log("play counts rewound via admin API (%zu cassette%s)", m->store.n,
             m->store.n == 1 ? "" : "s");
    mock_admin_reply(req, 200, json_pack("{s:I}", "rewound", (json_int_t)m->store.n));
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
    /* as at start-up: --relay counts, instances are to advertise to us */
    if (!rc && mode != TCH_CASSETTE_NONE && !m->cfg->relay && !has_source(m))
        rc = tch_error_set(&err, TCH_EINVAL, "mode %s records, but there is nothing to record "
                           "from: no --upstream [SERVICE=]HOST:PORT, no --upstream-router, no "
                           "--relay, and no instance has advertised to this mock", name);
    if (!rc)
        rc = mock_store_set_mode(m, mode, &err);
    json_decref(body);
    if (rc) {
        mock_admin_reply_error(req, http_code_of(rc), "%s", err.msg);
        return;
    }
    mock_log("mode set to %s via admin API", tch_cassette_mode_name(mode));
    mock_admin_reply(req, 200, json_pack("{s:s}", "mode", tch_cassette_mode_name(mode)));
}

static void get_hyperbahn(mock *m, struct evhttp_request *req) {
    json_t *adv = json_array();
    for (size_t i = 0; i < m->cfg->advertise_to.n; i++)
        json_array_append_new(adv, json_string(m->cfg->advertise_to.v[i]));
    mock_admin_reply(req, 200, json_pack("{s:O, s:o, s:s?}", "advertised", m->advertised,
                                   "advertiseTo", adv, "selfAdvertise", m->hb_status));
}

/* ---- connections: the cap and the deadline ---------------------------------------------- */

static void arm(admin_conn *c, uint32_t ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->ev, &tv);
}

/* evhttp is done with the connection (or we closed it): forget it. */
static void conn_closed(struct evhttp_connection *evcon, void *arg) {
    admin_conn *c = arg;
    evhttp_connection_set_closecb(evcon, NULL, NULL); /* once */
    struct mock_admin *a = c->a;
    if (c->prev)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    a->live--;
    event_free(c->ev);
    free(c);
}

static void conn_deadline(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    admin_conn *c = arg;
    mock_log("admin: closed the connection from %s: no whole request within %u ms "
             "(--admin-timeout)", c->peer, c->a->m->cfg->admin_timeout_ms);
    evhttp_connection_free(c->evcon); /* conn_closed frees c */
}

/* Says how many connections the cap closed, at most once a second. */
static void log_refused(struct mock_admin *a) {
    a->cap_refused++;
    uint64_t now = mock_now_ms();
    if (now - a->cap_logged_ms < 1000)
        return;
    mock_log("admin: %zu connections open, the most --admin-max-connections allows: closed %zu "
             "new connection%s", a->live, a->cap_refused, a->cap_refused == 1 ? "" : "s");
    a->cap_logged_ms = now;
    a->cap_refused = 0;
}

static void peer_name(int fd, char *out, size_t n) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    snprintf(out, n, "a client");
    if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(out, n, "%s:%d", host, ntohs(in->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *in = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &in->sin6_addr, host, sizeof host);
        snprintf(out, n, "[%s]:%d", host, ntohs(in->sin6_port));
    } else if (ss.ss_family == AF_UNIX) {
        snprintf(out, n, "a Unix socket client");
    }
}

/* The loop's next turn after accept: evhttp has made its connection around
 * our bufferevent (it is the callbacks' argument) and nothing of it has run
 * yet. Count it, or close it when the cap is reached. */
static void conn_attach(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    admin_conn *c = arg;
    struct mock_admin *a = c->a;
    c->evcon = c->bev->cbarg;
    event_free(c->ev);
    c->ev = evtimer_new(a->m->base, conn_deadline, c);
    if (!c->ev || !c->evcon) {
        if (c->evcon)
            evhttp_connection_free(c->evcon);
        free(c);
        return;
    }
    if (a->live >= a->m->cfg->admin_max_conns) {
        log_refused(a);
        event_free(c->ev);
        struct evhttp_connection *evcon = c->evcon;
        free(c);
        evhttp_connection_free(evcon);
        return;
    }
    peer_name(bufferevent_getfd(c->bev), c->peer, sizeof c->peer);
    c->next = a->conns;
    if (a->conns)
        a->conns->prev = c;
    a->conns = c;
    a->live++;
    evhttp_connection_set_closecb(c->evcon, conn_closed, c);
    arm(c, a->m->cfg->admin_timeout_ms);
}

/* evhttp asks us for each accepted connection's bufferevent: our way to see
 * every connection, also those that never send a whole request. */
static struct bufferevent *new_conn(struct event_base *base, void *arg) {
    struct mock_admin *a = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    admin_conn *c = bev ? calloc(1, sizeof *c) : NULL;
    if (c && !(c->ev = event_new(base, -1, 0, conn_attach, c))) {
        free(c);
        c = NULL;
    }
    if (!c) /* unwatched, but served: evhttp's own timeout still applies */
        return bev;
    c->a = a, c->bev = bev;
    event_active(c->ev, EV_TIMEOUT, 0);
    return bev;
}

static admin_conn *conn_of(struct mock_admin *a, struct evhttp_request *req) {
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    for (admin_conn *c = a->conns; c; c = c->next)
        if (c->evcon == evcon)
            return c;
    return NULL;
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

static void route(mock *m, struct evhttp_request *req);

static void on_request(struct evhttp_request *req, void *ud) {
    mock *m = ud;
    admin_conn *c = conn_of(m->admin, req);
    if (c) /* the next request on this connection has its own time */
        arm(c, m->cfg->admin_timeout_ms);
    if (authorized(m->admin, req))
        route(m, req);
}

static void route(mock *m, struct evhttp_request *req) {
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = evhttp_uri_get_path(uri);
    const char *query = evhttp_uri_get_query(uri);
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    struct evkeyvalq q = {0};
    if (query && evhttp_parse_query_str(query, &q) != 0) {
        mock_admin_reply_error(req, 400, "bad query string");
        return;
    }
    if (!path)
        path = "/";
    int get = method == EVHTTP_REQ_GET, post = method == EVHTTP_REQ_POST;
    if (!strcmp(path, "/health") && get)
        get_health(m, req);
    else if (!strcmp(path, "/cassettes") && get)
        mock_admin_reply(req, 200, cassettes_json(m));
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
        mock_admin_reply(req, 200, json_pack("{s:s}", "mode", tch_cassette_mode_name(m->mode)));
    else if (!strcmp(path, "/hyperbahn") && get)
        get_hyperbahn(m, req);
    else if (mock_stubs_route(m, req, path, (int)method))
        ; /* run-time stubs and scenarios (stubs.c) */
    else if (mock_verify_route(m, req, path, (int)method, &q))
        ; /* journal queries, verify, redactions (verify.c) */
    else if (is_endpoint(path))
        mock_admin_reply_error(req, 405, "method not allowed on %s", path);
    else
        mock_admin_reply_error(req, 404, "no such endpoint: %s", path);
    evhttp_clear_headers(&q);
}

/* ---- listening ------------------------------------------------------------------------ */

/* A Unix socket only we can use (0600). A socket file left by a run that
 * died is replaced; one that answers belongs to a live process. */
static int bind_unix(mock *m, const char *path, tch_error *err) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return tch_error_set(err, TCH_EINVAL, "--admin-socket %s: longer than %zu bytes", path,
                             sizeof sa.sun_path - 1);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return tch_error_set(err, TCH_EINVAL, "--admin-socket %s: exists and is not a socket",
                                 path);
        int probe = socket(AF_UNIX, SOCK_STREAM, 0);
        int in_use = probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0;
        if (probe >= 0)
            close(probe);
        if (in_use)
            return tch_error_set(err, TCH_EIO, "--admin-socket %s: in use by another process", path);
        unlink(path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return tch_error_set(err, TCH_EIO, "--admin-socket %s: %s", path, strerror(errno));
    mode_t old = umask(0177); /* born 0600: no moment where others may connect */
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc != 0 || chmod(path, 0600) != 0 || listen(fd, 128) != 0 ||
        evutil_make_socket_nonblocking(fd) != 0 || evutil_make_socket_closeonexec(fd) != 0) {
        int e = errno;
        close(fd);
        return tch_error_set(err, TCH_EIO, "--admin-socket %s: %s", path, strerror(e));
    }
    if (!evhttp_accept_socket_with_handle(m->http, fd)) {
        close(fd);
        return tch_error_set(err, TCH_EIO, "--admin-socket %s: cannot serve on it", path);
    }
    if (!(m->admin->socket_path = strdup(path)))
        return tch_error_set(err, TCH_ENOMEM, "out of memory");
    snprintf(m->admin_host_port, sizeof m->admin_host_port, "unix:%s", path);
    return 0;
}

/* Judged by the address bound, not by how the host was spelled: a name
 * such as 127.x.example may lead anywhere, ::ffff:127.0.0.1 is loopback. */
static int is_loopback(const struct sockaddr_storage *ss) {
    if (ss->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
    if (ss->ss_family != AF_INET6)
        return 0;
    const struct in6_addr *a6 = &((const struct sockaddr_in6 *)ss)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a6) || (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
}

static int bind_tcp(mock *m, tch_error *err) {
    const char *host = m->cfg->admin_host;
    char bare[256]; /* evhttp takes an IPv6 address without its brackets */
    size_t n = strlen(host);
    if (host[0] == '[' && n > 2 && host[n - 1] == ']' && n - 2 < sizeof bare)
        snprintf(bare, sizeof bare, "%.*s", (int)(n - 2), host + 1);
    else
        snprintf(bare, sizeof bare, "%s", host);
    struct evhttp_bound_socket *bs =
        evhttp_bind_socket_with_handle(m->http, bare, (uint16_t)m->cfg->admin_port);
    if (!bs)
        return tch_error_set(err, TCH_EIO, "admin: cannot listen on %s:%d: %s", host,
                             m->cfg->admin_port, strerror(errno));
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int port = m->cfg->admin_port;
    int loopback = 0;
    if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &len) == 0) {
        loopback = is_loopback(&ss);
        if (ss.ss_family == AF_INET)
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    snprintf(m->admin_host_port, sizeof m->admin_host_port, "%s:%d", host, port);
    if (!loopback && !m->admin->token)
        mock_log("warning: the admin API listens on %s without a token: whoever reaches it can "
                 "load and record cassettes; give --admin-token-file FILE, or --admin-socket",
                 m->admin_host_port);
    return 0;
}

int mock_admin_start(mock *m, tch_error *err) {
    if (m->cfg->admin_port < 0 && !m->cfg->admin_socket)
        return 0;
    struct mock_admin *a = calloc(1, sizeof *a);
    if (!a)
        return tch_error_set(err, TCH_ENOMEM, "out of memory");
    a->m = m;
    m->admin = a;
    int rc = compute_roots(a, m->cfg, err);
    if (!rc && m->cfg->admin_token_file)
        rc = read_token(a, m->cfg->admin_token_file, err);
    if (rc)
        return rc;
    m->http = evhttp_new(m->base);
    if (!m->http)
        return tch_error_set(err, TCH_ENOMEM, "admin: evhttp_new failed");
    evhttp_set_max_body_size(m->http, ADMIN_MAX_BODY);
    evhttp_set_max_headers_size(m->http, ADMIN_MAX_HEADERS);
    /* evhttp's own timeout (a connection silent this long, reading or
     * writing) backs up ours, which acts first and says so in the log */
    uint64_t backup_ms = 2 * (uint64_t)m->cfg->admin_timeout_ms;
    struct timeval tv = {(time_t)(backup_ms / 1000), (suseconds_t)((backup_ms % 1000) * 1000)};
    evhttp_set_timeout_tv(m->http, &tv);
    evhttp_set_bevcb(m->http, new_conn, a);
    /* every method reaches on_request, so a wrong one gets our JSON 405, not
     * libevent's HTML 501 */
    evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(m->http, on_request, m);
    return m->cfg->admin_socket ? bind_unix(m, m->cfg->admin_socket, err) : bind_tcp(m, err);
}

void mock_admin_free(mock *m) {
    if (m->http) /* closes every connection: conn_closed forgets each */
        evhttp_free(m->http);
    m->http = NULL;
    mock_stubs_free(m); /* made through the admin API only */
    struct mock_admin *a = m->admin;
    if (!a)
        return;
    if (a->socket_path)
        unlink(a->socket_path);
    free(a->socket_path);
    free(a->token);
    mock_strv_free(&a->roots);
    free(a);
    m->admin = NULL;
}
