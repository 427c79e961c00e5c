/* Run-time stubs and scenarios over the admin API. The stubs live in one
 * cassette held in memory (m->stubs), asked before the cassette files, so
 * a test can stub a service with no file on disk:
 *
 *   POST   /stubs             add one (JSON, or YAML with Content-Type
 *                             application/yaml or text/yaml) -> 201 {"id", "stub"}
 *   GET    /stubs             list them
 *   DELETE /stubs             drop them all (and their scenarios' states)
 *   GET    /stubs/ID          one
 *   PUT    /stubs/ID          replace it (same id)
 *   DELETE /stubs/ID          drop it
 *   POST   /stubs/save        {"path": FILE}: write them as a cassette, inside
 *                             the cassette roots only
 *   GET    /scenarios         every scenario, of the stubs and the cassettes
 *   PUT    /scenarios/NAME/state  {"state": S}
 *   POST   /scenarios/reset   every scenario back to "Started"
 *
 * Bad input is a 400 naming the field; nothing here stops the serving. */
#include "mock.h"

#include <tchannel/stub.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>

static int code_of(int rc) {
    return rc == TCH_ENOTFOUND ? 404 : rc == TCH_ESTATE ? 409 : rc == TCH_ENOMEM ? 500 : 400;
}

/* The stubs' cassette, made on first use with the mock's IDL (thrift
 * bodies are matched and templated through it). */
static tch_cassette *stubs_of(mock *m, tch_error *err) {
    if (m->stubs)
        return m->stubs;
    tch_cassette_options o;
    tch_cassette_options_init(&o);
    o.mode = TCH_CASSETTE_NONE;
    o.no_env_override = 1;
    o.allow_playback_repeats = m->cfg->allow_repeats;
    o.thrift = m->cfg->thrift;
    if (tch_cassette_open_memory("(run-time stubs)", "", 0, &o, &m->stubs, err))
        return NULL;
    return m->stubs;
}

void mock_stubs_free(mock *m) {
    tch_cassette_free(m->stubs);
    m->stubs = NULL;
    m->n_stubs = 0;
}

/* The body as JSON (or YAML by its Content-Type); NULL after a 400. */
static json_t *body_json(struct evhttp_request *req) {
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    const char *data = n ? (const char *)evbuffer_pullup(in, -1) : "";
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    char msg[TCH_ERROR_MSG_MAX + 16];
    json_t *j = NULL;
    if (ct && (!strncasecmp(ct, "application/yaml", 16) || !strncasecmp(ct, "text/yaml", 9) ||
               !strncasecmp(ct, "application/x-yaml", 18))) {
        tch_error err = {0};
        if (tch_stub_yaml_to_json(data, n, &j, &err)) {
            snprintf(msg, sizeof msg, "body: %s", err.msg);
            mock_admin_reply_error(req, 400, "%s", msg);
            return NULL;
        }
    } else {
        json_error_t je;
        if (!(j = json_loadb(data, n, 0, &je))) {
            snprintf(msg, sizeof msg, "body: malformed JSON at line %d column %d: %s", je.line,
                     je.column, je.text);
            mock_admin_reply_error(req, 400, "%s", msg);
            return NULL;
        }
    }
    if (!json_is_object(j)) {
        json_decref(j);
        mock_admin_reply_error(req, 400, "body: expected an object");
        return NULL;
    }
    return j;
}

static json_t *stub_json(mock *m, const char *id) {
    size_t idx;
    if (!m->stubs || tch_cassette_stub_find(m->stubs, id, &idx))
        return NULL;
    return tch_cassette_interaction_to_json(m->stubs, idx);
}

static json_t *list_json(mock *m) {
    json_t *list = json_array();
    size_t n = m->stubs ? tch_cassette_count(m->stubs) : 0;
    for (size_t i = 0; list && i < n; i++) {
        json_t *one = tch_cassette_interaction_to_json(m->stubs, i);
        if (one)
            json_array_append_new(list, one);
    }
    return json_pack("{s:I,s:o}", "count", (json_int_t)json_array_size(list), "stubs", list);
}

/* Run-time stubs kept at once are capped (--max-stubs): each is asked on
 * every call that no exact interaction answers, so whoever reaches the
 * admin API cannot grow that work, or the memory, without bound. m->n_stubs
 * counts them (a scan after a replace that failed half-way). */
static size_t live_stubs(mock *m) {
    size_t live = 0, n = m->stubs ? tch_cassette_count(m->stubs) : 0;
    for (size_t i = 0; i < n; i++)
        live += tch_cassette_get(m->stubs, i) != NULL;
    return live;
}

static void post_stub(mock *m, struct evhttp_request *req) {
    if (m->n_stubs >= m->cfg->max_stubs) {
        char msg[200];
        snprintf(msg, sizeof msg, "run-time stubs: %zu already, the most the mock keeps "
                 "(--max-stubs); delete some first (DELETE /stubs/ID, DELETE /stubs)",
                 m->n_stubs);
        mock_admin_reply_error(req, 409, "%s", msg);
        return;
    }
    json_t *body = body_json(req);
    if (!body)
        return;
    tch_error err = {0};
    const char *id = NULL;
    tch_cassette *c = stubs_of(m, &err);
    int rc = c ? tch_cassette_stub_add(c, body, &id, &err) : err.code;
    json_decref(body);
    if (rc) {
        mock_admin_reply_error(req, code_of(rc), "%s", err.msg);
        return;
    }
    m->n_stubs++;
    mock_log("stub %s added via admin API", id);
    mock_admin_reply(req, 201, json_pack("{s:s,s:o}", "id", id, "stub", stub_json(m, id)));
}

static void put_stub(mock *m, struct evhttp_request *req, const char *id) {
    json_t *body = body_json(req);
    if (!body)
        return;
    tch_error err = {0};
    int rc = m->stubs ? tch_cassette_stub_replace(m->stubs, id, body, &err)
                      : tch_error_set(&err, TCH_ENOTFOUND, "no stub with id '%.100s'", id);
    json_decref(body);
    if (rc) {
        m->n_stubs = live_stubs(m); /* a replace that failed may have dropped the old one */
        mock_admin_reply_error(req, code_of(rc), "%s", err.msg);
        return;
    }
    mock_log("stub %s replaced via admin API", id);
    mock_admin_reply(req, 200, json_pack("{s:s,s:o}", "id", id, "stub", stub_json(m, id)));
}

static void delete_stub(mock *m, struct evhttp_request *req, const char *id) {
    tch_error err = {0};
    int rc = m->stubs ? tch_cassette_stub_remove(m->stubs, id, &err)
                      : tch_error_set(&err, TCH_ENOTFOUND, "no stub with id '%.100s'", id);
    if (rc) {
        mock_admin_reply_error(req, code_of(rc), "%s", err.msg);
        return;
    }
    m->n_stubs--;
    mock_log("stub %s deleted via admin API", id);
    mock_admin_reply(req, 200, json_pack("{s:s}", "deleted", id));
}

static void delete_all(mock *m, struct evhttp_request *req) {
    size_t n = m->n_stubs;
    m->n_stubs = 0;
    if (m->stubs) {
        tch_cassette_stub_clear(m->stubs);
        tch_cassette_scenarios_reset(m->stubs);
    }
    mock_log("run-time stubs dropped via admin API (%zu)", n);
    mock_admin_reply(req, 200, json_pack("{s:I}", "deleted", (json_int_t)n));
}

static int write_all(int fd, const char *p, size_t len) {
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w, len -= (size_t)w;
    }
    return 0;
}

/* Writes text to real (already resolved and checked) through a temporary
 * file made by mkstemp beside it, .NAME.tmp.PID.XXXXXX as the cassette
 * saver names them: O_EXCL, so a link planted under a guessed name is never
 * followed, and a reader never sees half a cassette. */
static int write_atomic(const char *real, const char *text, char *why, size_t whysz) {
    char *c1 = strdup(real), *c2 = strdup(real);
    size_t n = strlen(real) + 48;
    char *tmp = c1 && c2 ? malloc(n) : NULL;
    if (!tmp) {
        free(c1), free(c2);
        return snprintf(why, whysz, "out of memory"), -1;
    }
    const char *dir = dirname(c1);
    snprintf(tmp, n, "%s/.%s.tmp.%ld.XXXXXX", dir, basename(c2), (long)getpid());
    int fd = mkstemp(tmp), ok = fd >= 0, made = ok;
    ok = ok && fchmod(fd, 0644) == 0 && write_all(fd, text, strlen(text)) == 0 &&
         fsync(fd) == 0;
    if (fd >= 0 && close(fd) != 0)
        ok = 0;
    ok = ok && rename(tmp, real) == 0;
    if (!ok) {
        snprintf(why, whysz, "%s: %s", real, strerror(errno));
        if (made)
            unlink(tmp);
    } else {
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) { /* the rename itself lasts; best effort */
            (void)fsync(dfd);
            close(dfd);
        }
    }
    free(tmp);
    free(c1);
    free(c2);
    return ok ? 0 : -1;
}

static int same_file(const struct stat *a, const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && st.st_dev == a->st_dev && st.st_ino == a->st_ino;
}

/* Whether real is the file at path: by device and inode when real exists,
 * else by resolved name. */
static int is_file(const char *real, const struct stat *st, int exists, const char *path) {
    if (exists)
        return same_file(st, path);
    char *rp = mock_real_target(path);
    int same = rp && !strcmp(rp, real);
    free(rp);
    return same;
}

/* The loaded cassette or journal that real is (its name in buf), or NULL:
 * saving there would swap a file the mock serves under its feet. */
static const char *loaded_as(mock *m, const char *real, char *buf, size_t bufsz) {
    struct stat st;
    int exists = stat(real, &st) == 0;
    for (size_t i = 0; i < m->store.n; i++) {
        const char *p = m->store.items[i]->path;
        snprintf(buf, bufsz, "%s", p);
        if (is_file(real, &st, exists, buf))
            return buf;
        snprintf(buf, bufsz, "%s.journal", p);
        if (is_file(real, &st, exists, buf))
            return buf;
        char *rp = mock_real_target(p); /* a link's journal may lie beside its target */
        int hit = rp && snprintf(buf, bufsz, "%s.journal", rp) > 0 &&
                  is_file(real, &st, exists, buf);
        free(rp);
        if (hit)
            return buf;
    }
    return NULL;
}

/* 0 when the stubs may be written to *real (set, to free); else answered. */
static int save_target(mock *m, struct evhttp_request *req, const char *path, int overwrite,
                       char **real) {
    char msg[1200], buf[PATH_MAX + 16];
    if (mock_admin_check_write(m, req, path))
        return -1;
    /* checked again once resolved: the answer holds for the file written */
    if (!(*real = mock_real_target(path))) {
        snprintf(msg, sizeof msg, "%.400s: %s", path, strerror(errno));
        mock_admin_reply_error(req, errno == ENOMEM ? 500 : 400, "%s", msg);
        return -1;
    }
    if (mock_admin_check_write(m, req, *real)) {
        free(*real);
        *real = NULL;
        return -1;
    }
    const char *loaded = loaded_as(m, *real, buf, sizeof buf);
    struct stat st;
    int code = 409;
    if (stat(*real, &st) == 0 && S_ISDIR(st.st_mode))
        code = 400; /* no overwrite makes a folder a file */
    if (code == 400)
        snprintf(msg, sizeof msg, "%.400s: is a folder; give the file to write", path);
    else if (loaded)
        snprintf(msg, sizeof msg, "%.400s: is the loaded cassette %.400s; save elsewhere, or "
                 "unload it first (DELETE /cassettes?path=...)", path, loaded);
    else if (!overwrite && lstat(*real, &st) == 0)
        snprintf(msg, sizeof msg, "%.400s: exists; give \"overwrite\": true to replace it", path);
    else
        return 0;
    mock_admin_reply_error(req, code, "%s", msg);
    free(*real);
    *real = NULL;
    return -1;
}

/* The stubs as a YAML cassette: ids, rules and the rest stay; plays do not. */
static void save_stubs(mock *m, struct evhttp_request *req) {
    json_t *body = body_json(req);
    if (!body)
        return;
    const char *path = json_string_value(json_object_get(body, "path"));
    json_t *ow = json_object_get(body, "overwrite");
    char *real = NULL;
    if (!path || !*path) {
        mock_admin_reply_error(req, 400, "path: expected the cassette file to write");
        json_decref(body);
        return;
    }
    if (ow && !json_is_boolean(ow)) {
        mock_admin_reply_error(req, 400, "overwrite: expected true or false");
        json_decref(body);
        return;
    }
    if (save_target(m, req, path, json_is_true(ow), &real)) {
        json_decref(body);
        return;
    }
    tch_buf out = {0};
    tch_error err = {0};
    size_t saved = m->n_stubs;
    static const char empty[] = "version: 1\ninteractions: []\n";
    int rc = m->stubs ? tch_cassette_stubs_emit(m->stubs, &out, &err)
                      : (tch_buf_append(&out, empty, sizeof empty - 1) ? TCH_ENOMEM : 0);
    char why[PATH_MAX + 300];
    if (!rc && tch_buf_append(&out, "", 1))
        rc = tch_error_set(&err, TCH_ENOMEM, "out of memory");
    if (rc) {
        mock_admin_reply_error(req, 500, "%s", err.msg);
    } else if (write_atomic(real, (const char *)out.ptr, why, sizeof why)) {
        mock_admin_reply_error(req, 500, "%s", why);
    } else {
        mock_log("%zu run-time stub%s saved to %s via admin API", saved, saved == 1 ? "" : "s",
                 path);
        mock_admin_reply(req, 200, json_pack("{s:s,s:I}", "path", path, "saved", (json_int_t)saved));
    }
    free(real);
    tch_buf_free(&out);
    json_decref(body);
}

/* ---- scenarios -------------------------------------------------------------------- */

static int merge_scenarios(json_t *all, json_t *more) {
    size_t i;
    json_t *s;
    if (!more)
        return -1;
    json_array_foreach(more, i, s) json_array_append(all, s);
    json_decref(more);
    return 0;
}

static json_t *scenarios_json(mock *m) {
    json_t *all = json_array();
    if (m->stubs && merge_scenarios(all, tch_cassette_scenarios(m->stubs)))
        return json_decref(all), NULL;
    for (size_t i = 0; i < m->store.n; i++)
        if (merge_scenarios(all, tch_cassette_scenarios(m->store.items[i]->c)))
            return json_decref(all), NULL;
    return json_pack("{s:o}", "scenarios", all);
}

/* A state no stub or interaction of the scenario requires or moves to
 * would leave it stuck: 400 naming those that are (1), else 0. A scenario
 * nothing names is left to the 404 below. */
static int state_refused(mock *m, struct evhttp_request *req, const char *name,
                         const char *state) {
    json_t *all = scenarios_json(m), *sc, *possible = json_array(), *v;
    size_t i, k;
    int known = 0;
    json_array_foreach(json_object_get(all, "scenarios"), i, sc) {
        if (strcmp(json_string_value(json_object_get(sc, "name")), name))
            continue;
        json_array_foreach(json_object_get(sc, "possibleStates"), k, v) {
            known |= !strcmp(json_string_value(v), state);
            json_array_append(possible, v);
        }
    }
    int refuse = !known && json_array_size(possible) > 0;
    if (refuse) {
        char msg[1200];
        size_t len = (size_t)snprintf(msg, sizeof msg, "state: '%.100s' is not a state of "
                                      "scenario '%.100s'; its states:", state, name);
        json_array_foreach(possible, i, v) {
            int dup = 0; /* the cassettes may each name the same state */
            for (k = 0; k < i && !dup; k++)
                dup = !strcmp(json_string_value(json_array_get(possible, k)),
                              json_string_value(v));
            if (!dup && len < sizeof msg)
                len += (size_t)snprintf(msg + len, sizeof msg - len, "%s '%.100s'",
                                        i ? "," : "", json_string_value(v));
        }
        mock_admin_reply_error(req, 400, "%s", msg);
    }
    json_decref(possible);
    json_decref(all);
    return refuse;
}

static void put_state(mock *m, struct evhttp_request *req, const char *name) {
    json_t *body = body_json(req);
    if (!body)
        return;
    const char *state = json_string_value(json_object_get(body, "state"));
    if (!state || !*state) {
        mock_admin_reply_error(req, 400, "state: expected a non-empty string");
        json_decref(body);
        return;
    }
    if (state_refused(m, req, name, state)) {
        json_decref(body);
        return;
    }
    size_t set = 0;
    tch_error err = {0};
    if (m->stubs && tch_cassette_scenario_set(m->stubs, name, state, &err) == 0)
        set++;
    for (size_t i = 0; i < m->store.n; i++)
        if (tch_cassette_scenario_set(m->store.items[i]->c, name, state, &err) == 0)
            set++;
    if (!set) {
        char msg[300];
        snprintf(msg, sizeof msg, "scenario '%.100s': no stub or interaction names it", name);
        mock_admin_reply_error(req, 404, "%s", msg);
    } else {
        mock_log("scenario %s set to %s via admin API", name, state);
        mock_admin_reply(req, 200, json_pack("{s:s,s:s}", "name", name, "state", state));
    }
    json_decref(body);
}

static void reset_scenarios(mock *m, struct evhttp_request *req) {
    if (m->stubs)
        tch_cassette_scenarios_reset(m->stubs);
    for (size_t i = 0; i < m->store.n; i++)
        tch_cassette_scenarios_reset(m->store.items[i]->c);
    mock_log("scenarios reset via admin API");
    mock_admin_reply(req, 200, json_pack("{s:b}", "reset", 1));
}

/* ---- routing ------------------------------------------------------------------------- */

/* A path segment after prefix, decoded (%XX); NULL when path is not
 * prefix + one segment + suffix. */
static char *segment(const char *path, const char *prefix, const char *suffix) {
    size_t p = strlen(prefix), s = strlen(suffix), n = strlen(path);
    if (n <= p + s || strncmp(path, prefix, p) || strcmp(path + n - s, suffix))
        return NULL;
    char *raw = strndup(path + p, n - p - s);
    if (!raw || strchr(raw, '/')) {
        free(raw);
        return NULL;
    }
    char *dec = evhttp_uridecode(raw, 0, NULL);
    free(raw);
    return dec;
}

int mock_stubs_route(mock *m, struct evhttp_request *req, const char *path, int method) {
    int get = method == EVHTTP_REQ_GET, post = method == EVHTTP_REQ_POST,
        put = method == EVHTTP_REQ_PUT, del = method == EVHTTP_REQ_DELETE;
    char *seg = NULL;
    if (!strcmp(path, "/stubs")) {
        if (get)
            mock_admin_reply(req, 200, list_json(m));
        else if (post)
            post_stub(m, req);
        else if (del)
            delete_all(m, req);
        else
            mock_admin_reply_error(req, 405, "method not allowed on /stubs (GET, POST, DELETE)");
    } else if (!strcmp(path, "/stubs/save")) {
        if (post)
            save_stubs(m, req);
        else
            mock_admin_reply_error(req, 405, "method not allowed on /stubs/save (POST)");
    } else if ((seg = segment(path, "/stubs/", ""))) {
        json_t *one;
        if (get && (one = stub_json(m, seg)))
            mock_admin_reply(req, 200, one);
        else if (get) {
            char msg[300];
            snprintf(msg, sizeof msg, "no stub with id '%.100s'", seg);
            mock_admin_reply_error(req, 404, "%s", msg);
        } else if (put)
            put_stub(m, req, seg);
        else if (del)
            delete_stub(m, req, seg);
        else
            mock_admin_reply_error(req, 405, "method not allowed on /stubs/ID (GET, PUT, DELETE)");
    } else if (!strcmp(path, "/scenarios")) {
        if (get)
            mock_admin_reply(req, 200, scenarios_json(m));
        else
            mock_admin_reply_error(req, 405, "method not allowed on /scenarios (GET)");
    } else if (!strcmp(path, "/scenarios/reset")) {
        if (post)
            reset_scenarios(m, req);
        else
            mock_admin_reply_error(req, 405, "method not allowed on /scenarios/reset (POST)");
    } else if ((seg = segment(path, "/scenarios/", "/state"))) {
        if (put)
            put_state(m, req, seg);
        else
            mock_admin_reply_error(req, 405, "method not allowed on /scenarios/NAME/state (PUT)");
    } else {
        return 0;
    }
    free(seg);
    return 1;
}
