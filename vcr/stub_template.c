/* Response templates: a stub with `response: {template: true}` has each
 * {{...}} in its response headers and body replaced by a value taken from
 * the request or a helper:
 *
 *   {{request.service}} {{request.endpoint}}
 *   {{request.headers.NAME}}              an application header
 *   {{request.body}} {{request.body.a.b[0]}}   the body, or a place in its
 *                                          JSON view (thrift through the IDL)
 *   {{now}}    UTC time, ISO 8601 with milliseconds (2026-01-02T03:04:05.678Z)
 *   {{nowMs}}  milliseconds since the epoch
 *   {{counter}}   1, 2, 3, ... per cassette
 *   {{randomId}}  a random UUID (version 4 form)
 *
 * Strings go in as their characters (JSON-escaped, without quotes, when
 * the call's scheme is json or thrift, whose templates are JSON text);
 * other values as their JSON text, itself escaped when the placeholder is
 * inside a JSON string ("hi {{request.body.o}}" with o = {"a":1} gives
 * "hi {\"a\":1}"). A json answer's filled text must parse, a thrift one's
 * encode, or the call gets an error naming the stub. For thrift the filled body is JSON
 * ({"success": ...}) encoded with the method's result type, and filled
 * headers a JSON object of strings encoded as thrift headers. */
#include "cassette_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define MAX_EXPR 256

typedef enum texpr {
    TX_SERVICE,
    TX_ENDPOINT,
    TX_HEADER,
    TX_BODY,
    TX_NOW,
    TX_NOW_MS,
    TX_COUNTER,
    TX_RANDOM_ID,
} texpr;

typedef struct parsed {
    texpr kind;
    char name[MAX_EXPR]; /* TX_HEADER: the header */
    cas_jpath path;      /* TX_BODY: "$" for the whole body */
} parsed;

static void trim(const char *s, size_t n, char *out, size_t outsz) {
    while (n && (*s == ' ' || *s == '\t'))
        s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    snprintf(out, outsz, "%.*s", (int)n, s);
}

static int parse_expr(const char *e, parsed *p, const char *where, tch_error *err) {
    static const struct {
        const char *name;
        texpr kind;
    } plain[] = {{"request.service", TX_SERVICE}, {"request.endpoint", TX_ENDPOINT},
                 {"now", TX_NOW},                 {"nowMs", TX_NOW_MS},
                 {"counter", TX_COUNTER},         {"randomId", TX_RANDOM_ID}};
    memset(p, 0, sizeof *p);
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        if (strcmp(e, plain[i].name) == 0) {
            p->kind = plain[i].kind;
            return 0;
        }
    if (strncmp(e, "request.headers.", 16) == 0 && e[16]) {
        p->kind = TX_HEADER;
        snprintf(p->name, sizeof p->name, "%s", e + 16);
        return 0;
    }
    if (strcmp(e, "request.body") == 0 || strncmp(e, "request.body.", 13) == 0 ||
        strncmp(e, "request.body[", 13) == 0) {
        char jp[MAX_EXPR + 2];
        snprintf(jp, sizeof jp, "$%s", e + 12);
        p->kind = TX_BODY;
        tch_error pe = {0};
        if (tch__cas_jpath_parse(jp, &p->path, &pe))
            return tch_error_set(err, TCH_EINVAL, "%s: template {{%s}}: %s", where, e, pe.msg);
        return 0;
    }
    return tch_error_set(err, TCH_EINVAL,
                         "%s: template {{%s}} refers to nothing (request.service, "
                         "request.endpoint, request.headers.NAME, request.body[.PATH], now, "
                         "nowMs, counter, randomId)",
                         where, e);
}

/* Calls fn on each {{...}}; text between goes to out when out is set. */
typedef int (*expr_fn)(void *ud, const parsed *p, const char *text, tch_buf *out,
                       tch_error *err);

static int walk(tch_slice tpl, const char *where, expr_fn fn, void *ud, tch_buf *out,
                tch_error *err) {
    const char *s = (const char *)tpl.ptr;
    size_t n = tpl.len, i = 0;
    while (i < n) {
        const char *open = NULL;
        for (size_t k = i; k + 1 < n; k++)
            if (s[k] == '{' && s[k + 1] == '{') {
                open = s + k;
                break;
            }
        size_t upto = open ? (size_t)(open - s) : n;
        if (out && tch_buf_append(out, s + i, upto - i))
            return tch_error_set(err, TCH_ENOMEM, "%s: template", where);
        if (!open)
            break;
        const char *close = NULL;
        for (size_t k = upto + 2; k + 1 < n; k++)
            if (s[k] == '}' && s[k + 1] == '}') {
                close = s + k;
                break;
            }
        if (!close)
            return tch_error_set(err, TCH_EINVAL, "%s: template: '{{' without '}}'", where);
        char expr[MAX_EXPR];
        trim(open + 2, (size_t)(close - open - 2), expr, sizeof expr);
        parsed p;
        int rc = parse_expr(expr, &p, where, err);
        if (!rc)
            rc = fn(ud, &p, expr, out, err);
        tch__cas_jpath_free(&p.path);
        if (rc)
            return rc;
        i = (size_t)(close - s) + 2;
    }
    return 0;
}

static int check_one(void *ud, const parsed *p, const char *text, tch_buf *out, tch_error *err) {
    (void)ud, (void)p, (void)text, (void)out, (void)err;
    return 0;
}

static void stub_name(const tch_cassette_interaction *it, char *out, size_t n) {
    if (it->stub && it->stub->id)
        snprintf(out, n, "stub %.100s", it->stub->id);
    else
        snprintf(out, n, "stub at line %zu", it->line);
}

int tch__cas_template_check(const tch_cassette_interaction *it, tch_error *err) {
    char where[140];
    stub_name(it, where, sizeof where);
    int rc = walk(tch_buf_slice(&it->response.headers), where, check_one, NULL, NULL, err);
    return rc ? rc : walk(tch_buf_slice(&it->response.body), where, check_one, NULL, NULL, err);
}

/* ---- filling ------------------------------------------------------------------ */

typedef struct fill_ctx {
    tch_cassette *c;
    const tch_cassette_interaction *it;
    cas_view *view;
    bool json_text; /* escape strings for JSON */
    const char *where;
    /* json_text: whether the text filled so far ends inside a JSON string,
     * read up to scanned (filled values never change it) */
    bool in_str, esc;
    size_t scanned;
} fill_ctx;

static void scan_strings(fill_ctx *f, const tch_buf *out) {
    for (size_t i = f->scanned; i < out->len; i++) {
        char ch = (char)out->ptr[i];
        if (f->esc)
            f->esc = false;
        else if (f->in_str && ch == '\\')
            f->esc = true;
        else if (ch == '"')
            f->in_str = !f->in_str;
    }
    f->scanned = out->len;
}

static int put_text(fill_ctx *f, tch_buf *out, const char *s, size_t n) {
    if (!f->json_text)
        return tch_buf_append(out, s, n) ? TCH_ENOMEM : 0;
    json_t *j = json_stringn(s, n);
    char *t = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    if (!t) /* not UTF-8: as it is */
        return tch_buf_append(out, s, n) ? TCH_ENOMEM : 0;
    int rc = tch_buf_append(out, t + 1, strlen(t) - 2) ? TCH_ENOMEM : 0; /* without quotes */
    free(t);
    return rc;
}

/* An object, array, number... inside a JSON string goes in as its JSON
 * text escaped as string content, so the answer stays JSON. */
static int put_json(fill_ctx *f, tch_buf *out, const json_t *v) {
    if (json_is_string(v))
        return put_text(f, out, json_string_value(v), json_string_length(v));
    char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    int rc = !t ? TCH_ENOMEM
             : f->json_text && f->in_str ? put_text(f, out, t, strlen(t))
             : tch_buf_append(out, t, strlen(t)) ? TCH_ENOMEM : 0;
    free(t);
    return rc;
}

static int missing(fill_ctx *f, const char *text, const char *what, tch_error *err) {
    return tch_error_set(err, TCH_EINVAL, "%s: template {{%s}}: %s", f->where, text, what);
}

static void put_now(char *buf, size_t n, bool ms_only) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    if (ms_only) {
        snprintf(buf, n, "%lld", (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000);
        return;
    }
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char day[40];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, n, "%s.%03ldZ", day, (long)(tv.tv_usec / 1000));
}

static void put_uuid(tch_cassette *c, char *buf, size_t n) {
    /* xorshift seeded from the clock and the cassette's counter: unique
     * enough for ids in answers, not for secrets */
    struct timeval tv;
    gettimeofday(&tv, NULL);
    uint64_t s = ((uint64_t)tv.tv_sec << 20) ^ (uint64_t)tv.tv_usec ^ (c->counter << 40) ^
                 (uint64_t)(uintptr_t)c;
    uint8_t b[16];
    for (int i = 0; i < 16; i++) {
        s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
        b[i] = (uint8_t)((s * 0x2545f4914f6cdd1dULL) >> 56);
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(buf, n,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
}

static int fill_one(void *ud, const parsed *p, const char *text, tch_buf *out, tch_error *err) {
    fill_ctx *f = ud;
    const tch_cassette_request *r = f->view->r;
    char buf[64];
    int rc = 0;
    if (f->json_text)
        scan_strings(f, out);
    switch (p->kind) {
    case TX_SERVICE:
        rc = put_text(f, out, (const char *)r->service.ptr, r->service.len);
        break;
    case TX_ENDPOINT:
        rc = put_text(f, out, (const char *)r->endpoint.ptr, r->endpoint.len);
        break;
    case TX_HEADER: {
        const json_t *h = tch__cas_view_json(f->view, 0);
        const json_t *v = h ? json_object_get(h, p->name) : NULL;
        if (!v)
            return missing(f, text, "the request has no such header", err);
        rc = put_json(f, out, v);
        break;
    }
    case TX_BODY: {
        if (p->path.n == 0 && r->scheme == TCH_CASSETTE_RAW) {
            rc = put_text(f, out, (const char *)r->body.ptr, r->body.len);
            break;
        }
        const json_t *b = tch__cas_view_json(f->view, 1);
        if (!b)
            return missing(f, text,
                           r->scheme == TCH_CASSETTE_THRIFT
                               ? "the request body does not decode (is the IDL given?)"
                               : "the request body is not JSON",
                           err);
        const json_t *v = tch__cas_jpath_eval(&p->path, b);
        if (!v)
            return missing(f, text, "the request body has no such value", err);
        rc = put_json(f, out, v);
        break;
    }
    case TX_NOW:
    case TX_NOW_MS:
        put_now(buf, sizeof buf, p->kind == TX_NOW_MS);
        rc = tch_buf_append(out, buf, strlen(buf)) ? TCH_ENOMEM : 0;
        break;
    case TX_COUNTER:
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)++f->c->counter);
        rc = tch_buf_append(out, buf, strlen(buf)) ? TCH_ENOMEM : 0;
        break;
    case TX_RANDOM_ID:
        put_uuid(f->c, buf, sizeof buf);
        rc = tch_buf_append(out, buf, strlen(buf)) ? TCH_ENOMEM : 0;
        break;
    }
    f->scanned = out->len; /* a filled value leaves the string state as it was */
    return rc ? tch_error_set(err, rc, "%s: template: out of memory", f->where) : 0;
}

/* A thrift answer from filled JSON text: the body through the method's
 * result type, the headers as thrift headers. */
static int thrift_encode(fill_ctx *f, bool headers, tch_buf *text, tch_buf *out,
                         tch_error *err) {
    json_error_t je;
    json_t *j = json_loadb((const char *)text->ptr, text->len, JSON_DECODE_ANY, &je);
    if (!j)
        return tch_error_set(err, TCH_EINVAL, "%s: filled %s are not JSON: %s", f->where,
                             headers ? "headers" : "body", je.text);
    int rc = 0;
    tch_error e = {0};
    if (headers) {
        size_t n = json_object_size(j), i = 0;
        tch_kv *h = tch__calloc(f->c->alloc, n, sizeof *h);
        const char *k;
        json_t *v;
        if (!h)
            rc = tch_error_set(err, TCH_ENOMEM, "%s: template", f->where);
        json_object_foreach(j, k, v) {
            if (rc)
                break;
            if (!json_is_string(v)) {
                rc = tch_error_set(err, TCH_EINVAL, "%s: thrift header %s: expected a string",
                                   f->where, k);
                break;
            }
            h[i++] = (tch_kv){tch_slice_cstr(k),
                                         tch_slice_of(json_string_value(v), json_string_length(v))};
        }
        if (!rc && !json_is_object(j))
            rc = tch_error_set(err, TCH_EINVAL, "%s: thrift headers: expected an object", f->where);
        if (!rc && tch_thrift_headers_encode(h, i, out, &e))
            rc = tch_error_set(err, TCH_EINVAL, "%s: thrift headers: %s", f->where, e.msg);
        tch__free(f->c->alloc, h);
    } else {
        const tch_cassette_request *r = f->view->r;
        const tch_thrift_method *m = tch_cassette_thrift_method(
            f->c->opts.thrift, tch_buf_slice(&r->service), tch_buf_slice(&r->endpoint));
        if (!m)
            m = tch__cas_idl_method(f->c->opts.thrift_idl, tch_buf_slice(&r->endpoint));
        if (!m)
            rc = tch_error_set(err, TCH_EINVAL, "%s: no IDL describes %.*s to encode the answer",
                               f->where, (int)r->endpoint.len, (const char *)r->endpoint.ptr);
        else if (tch_thrift_method_result_from_json(m, j, out, &e))
            rc = tch_error_set(err, TCH_EINVAL, "%s: the filled body does not encode: %s",
                               f->where, e.msg);
    }
    json_decref(j);
    return rc;
}

/* A json answer must be JSON: a template whose filled text is not (a value
 * that broke it, or a template that never was) is an error naming the stub,
 * not an answer the client cannot read. */
static int json_check(fill_ctx *f, bool headers, const tch_buf *text, tch_error *err) {
    if (f->view->r->scheme != TCH_CASSETTE_JSON || text->len == 0)
        return 0;
    json_error_t je;
    json_t *j = json_loadb((const char *)text->ptr, text->len, JSON_DECODE_ANY, &je);
    if (j) {
        json_decref(j);
        return 0;
    }
    return tch_error_set(err, TCH_EINVAL, "%s: the filled %s not JSON: %s at column %d",
                         f->where, headers ? "headers are" : "body is", je.text, je.column);
}

static int fill(fill_ctx *f, tch_slice tpl, bool headers, tch_buf *out, tch_error *err) {
    tch_buf text = {.alloc = f->c->alloc};
    f->in_str = f->esc = false;
    f->scanned = 0;
    int rc = walk(tpl, f->where, fill_one, f, &text, err);
    if (!rc)
        rc = json_check(f, headers, &text, err);
    if (!rc && f->view->r->scheme == TCH_CASSETTE_THRIFT && tpl.len)
        rc = thrift_encode(f, headers, &text, out, err);
    else if (!rc && f->view->r->scheme == TCH_CASSETTE_THRIFT && headers) /* nh = 0: peers refuse an empty arg2 */
        rc = tch_buf_append(out, "\0\0", 2) ? tch_error_set(err, TCH_ENOMEM, "template") : 0;
    else if (!rc && tch_buf_append(out, text.ptr ? text.ptr : (const uint8_t *)"", text.len))
        rc = tch_error_set(err, TCH_ENOMEM, "%s: template", f->where);
    tch_buf_free(&text);
    return rc;
}

int tch_cassette_render_response(tch_cassette *c, size_t index, const tch_cassette_call *call,
                                 int *code, tch_buf *arg2, tch_buf *arg3, tch_error *err) {
    const tch_cassette_interaction *it = tch_cassette_get(c, index);
    if (!it || it->is_error)
        return tch_error_set(err, TCH_EINVAL, "interaction %zu has no response to render", index);
    *code = it->response.code;
    if (!it->stub || !it->stub->template_response) {
        if (tch_buf_append_slice(arg2, tch_buf_slice(&it->response.headers)) ||
            tch_buf_append_slice(arg3, tch_buf_slice(&it->response.body)))
            return tch_error_set(err, TCH_ENOMEM, "rendering: out of memory");
        return 0;
    }
    tch_cassette_request req;
    if (tch__cas_request_from_call(c->alloc, call, &req))
        return tch_error_set(err, TCH_ENOMEM, "rendering: out of memory");
    tch_stub_idl idl = {c->opts.thrift, c->opts.thrift_idl};
    cas_view v;
    tch__cas_view_init(&v, &req, &idl);
    char where[140];
    stub_name(it, where, sizeof where);
    fill_ctx f = {.c = c, .it = it, .view = &v, .json_text = req.scheme != TCH_CASSETTE_RAW,
                  .where = where};
    int rc = fill(&f, tch_buf_slice(&it->response.headers), true, arg2, err);
    if (!rc)
        rc = fill(&f, tch_buf_slice(&it->response.body), false, arg3, err);
    tch__cas_view_free(&v);
    tch__cas_request_free(c->alloc, &req);
    return rc;
}
