/* Reading cassettes: libyaml's document API, then a schema walk that turns
 * nodes into interactions. Accepts what tchannel-python writes under py2
 * (plain, !!python/str, !!python/unicode) and py3 (!!binary) plus our
 * extensions; rejects unknown keys and wrong shapes with file:line:column. */
#include "cassette_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#define TAG_BINARY "tag:yaml.org,2002:binary"
#define TAG_NULL "tag:yaml.org,2002:null"
#define TAG_INT "tag:yaml.org,2002:int"
#define MAX_DELAY_MS 3600000

typedef struct ld {
    tch_cassette *c;
    yaml_document_t *doc;
    tch_error *err;
} ld;

static int fail_at(ld *l, const yaml_node_t *n, const char *fmt, const char *a, const char *b) {
    char what[256];
    snprintf(what, sizeof what, fmt, a ? a : "", b ? b : "");
    return tch_error_set(l->err, TCH_EPARSE, "%s:%zu:%zu: %s", l->c->name,
                         n ? n->start_mark.line + 1 : 0, n ? n->start_mark.column + 1 : 0, what);
}

static const char *scalar_text(const yaml_node_t *n) {
    return (const char *)n->data.scalar.value;
}

/* Strings in any of the spellings Python's YAML dumpers produce. */
static bool is_string_tag(const char *tag) {
    static const char *const ok[] = {
        "tag:yaml.org,2002:str", "tag:yaml.org,2002:python/str",
        "tag:yaml.org,2002:python/unicode", "tag:yaml.org,2002:python/bytes",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (strcmp(tag, ok[i]) == 0)
            return true;
    return false;
}

/* A plain `~`/`null`/empty scalar or an explicit !!null: the field is unset. */
static bool is_null(const yaml_node_t *n) {
    if (n->type != YAML_SCALAR_NODE)
        return false;
    if (n->tag && strcmp((const char *)n->tag, TAG_NULL) == 0)
        return true;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = scalar_text(n);
    return n->data.scalar.length == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static int read_bytes(ld *l, const yaml_node_t *n, const char *what, tch_buf *out) {
    tch_buf_reset(out);
    if (is_null(n))
        return cas_buf_set(out, TCH_SLICE_NULL);
    if (n->type != YAML_SCALAR_NODE)
        return fail_at(l, n, "%s: expected a string or !!binary scalar%s", what, NULL);
    const char *tag = n->tag ? (const char *)n->tag : "";
    if (strcmp(tag, TAG_BINARY) == 0) {
        int rc = cas_b64_decode(scalar_text(n), n->data.scalar.length, out);
        if (rc == TCH_ENOMEM)
            return tch_error_set(l->err, rc, "%s: out of memory", l->c->name);
        if (rc)
            return fail_at(l, n, "%s: invalid base64 in !!binary%s", what, NULL);
        if (!out->ptr)
            return cas_buf_set(out, TCH_SLICE_NULL);
        return 0;
    }
    /* plain scalars such as 123 resolve to !!int in Python; the bytes are
     * still the text, which is what tchannel-python would have sent */
    if (!is_string_tag(tag) && strcmp(tag, TAG_INT) != 0)
        return fail_at(l, n, "%s: unsupported tag %s (expected a string or !!binary)", what, tag);
    if (cas_buf_set(out, tch_slice_of(n->data.scalar.value, n->data.scalar.length)))
        return tch_error_set(l->err, TCH_ENOMEM, "%s: out of memory", l->c->name);
    return 0;
}

static int read_long(ld *l, const yaml_node_t *n, const char *what, long min, long max,
                     long *out) {
    if (n->type != YAML_SCALAR_NODE)
        return fail_at(l, n, "%s: expected an integer%s", what, NULL);
    const char *v = scalar_text(n);
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < min || x > max) {
        char range[64];
        snprintf(range, sizeof range, " from %ld to %ld", min, max);
        return fail_at(l, n, "%s: expected an integer%s", what, range);
    }
    *out = x;
    return 0;
}

/* argScheme: the proxy.thrift number, or a name (lenient for hand-written files). */
static int read_scheme(ld *l, const yaml_node_t *n, tch_cassette_scheme *out) {
    static const char *const names[] = {"raw", "json", "thrift"};
    if (n->type == YAML_SCALAR_NODE)
        for (int i = 0; i < 3; i++)
            if (strcasecmp(scalar_text(n), names[i]) == 0) {
                *out = (tch_cassette_scheme)i;
                return 0;
            }
    long v;
    int rc = read_long(l, n, "argScheme (0 raw, 1 json, 2 thrift)", 0, 2, &v);
    *out = (tch_cassette_scheme)v;
    return rc;
}

static int read_errcode(ld *l, const yaml_node_t *n, const char *what, uint8_t *out) {
    if (n->type == YAML_SCALAR_NODE && tch_cassette_errcode_parse(scalar_text(n), out) == 0)
        return 0;
    long v;
    if (n->type == YAML_SCALAR_NODE && read_long(l, n, what, 1, 255, &v) == 0 &&
        tch_cassette_errcode_name((uint8_t)v)) {
        *out = (uint8_t)v;
        return 0;
    }
    return fail_at(l, n,
                   "%s: expected an error code name (timeout, cancelled, busy, declined, "
                   "unexpected, badRequest, networkError, unhealthy, fatal)%s",
                   what, NULL);
}

static int read_cstr(ld *l, const yaml_node_t *n, const char *what, char **out) {
    tch_buf b = {0};
    int rc = read_bytes(l, n, what, &b);
    if (!rc) {
        free(*out);
        *out = tch_slice_strdup(tch_buf_slice(&b));
        if (!*out)
            rc = tch_error_set(l->err, TCH_ENOMEM, "%s: out of memory", l->c->name);
    }
    tch_buf_free(&b);
    return rc;
}

/* ---- mappings with a fixed key set ----------------------------------- */

typedef int (*field_fn)(ld *l, const yaml_node_t *val, void *target, int which);

typedef struct key_spec {
    const char *name;
    int which;
} key_spec;

/* Walks a mapping, dispatching known keys to fn; an unknown or repeated key
 * is an error that names it and lists what is allowed. */
static int walk_mapping(ld *l, const yaml_node_t *map, const char *what, const key_spec *keys,
                        size_t nkeys, field_fn fn, void *target, unsigned *seen) {
    if (map->type != YAML_MAPPING_NODE)
        return fail_at(l, map, "%s: expected a mapping%s", what, NULL);
    *seen = 0;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *k = yaml_document_get_node(l->doc, p->key);
        const yaml_node_t *v = yaml_document_get_node(l->doc, p->value);
        if (!k || !v || k->type != YAML_SCALAR_NODE)
            return fail_at(l, k, "%s: expected a scalar key%s", what, NULL);
        size_t i = 0;
        while (i < nkeys && strcmp(keys[i].name, scalar_text(k)) != 0)
            i++;
        if (i == nkeys) {
            char allowed[256] = "";
            for (size_t j = 0; j < nkeys; j++) {
                strncat(allowed, j ? ", " : " (allowed: ", sizeof allowed - strlen(allowed) - 1);
                strncat(allowed, keys[j].name, sizeof allowed - strlen(allowed) - 1);
            }
            strncat(allowed, ")", sizeof allowed - strlen(allowed) - 1);
            char who[200];
            snprintf(who, sizeof who, "%s: unknown key '%.100s'", what, scalar_text(k));
            return fail_at(l, k, "%s%s", who, allowed);
        }
        if (*seen & (1u << i))
            return fail_at(l, k, "%s: duplicate key '%s'", what, keys[i].name);
        *seen |= 1u << i;
        int rc = fn(l, v, target, keys[i].which);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- request / response / error --------------------------------------- */

enum {
    RQ_SERVICE, RQ_ENDPOINT, RQ_HEADERS, RQ_BODY, RQ_SCHEME, RQ_HOSTPORT, RQ_PEERS, RQ_THEADERS,
    RQ_HEADERS_DEC, RQ_BODY_DEC,
};

typedef struct req_ctx {
    tch_cassette_request *r;
    tch_buf headers_dec, body_dec;
    const yaml_node_t *headers_dec_node, *body_dec_node;
} req_ctx;

static int read_peers(ld *l, const yaml_node_t *v, tch_cassette_request *r) {
    if (is_null(v))
        return 0;
    if (v->type != YAML_SEQUENCE_NODE)
        return fail_at(l, v, "knownPeers: expected a list%s%s", NULL, NULL);
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    r->known_peers = n ? calloc(n, sizeof *r->known_peers) : NULL;
    if (n && !r->known_peers)
        return tch_error_set(l->err, TCH_ENOMEM, "%s: out of memory", l->c->name);
    for (size_t i = 0; i < n; i++) {
        const yaml_node_t *it = yaml_document_get_node(l->doc, v->data.sequence.items.start[i]);
        r->n_known_peers = i + 1;
        int rc = it ? read_bytes(l, it, "knownPeers item", &r->known_peers[i])
                    : fail_at(l, v, "knownPeers: bad item%s%s", NULL, NULL);
        if (rc)
            return rc;
    }
    return 0;
}

static int th_field(ld *l, const yaml_node_t *v, void *target, int which) {
    tch_cassette_kv *kv = target;
    return read_bytes(l, v, which ? "transportHeaders value" : "transportHeaders key",
                      which ? &kv->value : &kv->key);
}

static int read_theaders(ld *l, const yaml_node_t *v, tch_cassette_request *r) {
    static const key_spec keys[] = {{"key", 0}, {"value", 1}};
    if (is_null(v))
        return 0;
    if (v->type != YAML_SEQUENCE_NODE)
        return fail_at(l, v, "transportHeaders: expected a list of {key, value}%s%s", NULL, NULL);
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    r->transport_headers = n ? calloc(n, sizeof *r->transport_headers) : NULL;
    if (n && !r->transport_headers)
        return tch_error_set(l->err, TCH_ENOMEM, "%s: out of memory", l->c->name);
    for (size_t i = 0; i < n; i++) {
        const yaml_node_t *it = yaml_document_get_node(l->doc, v->data.sequence.items.start[i]);
        unsigned seen;
        r->n_transport_headers = i + 1;
        if (!it)
            return fail_at(l, v, "transportHeaders: bad item%s%s", NULL, NULL);
        int rc = walk_mapping(l, it, "transportHeaders item", keys, 2, th_field,
                              &r->transport_headers[i], &seen);
        if (rc)
            return rc;
        if (seen != 3)
            return fail_at(l, it, "transportHeaders item: expected both key and value%s%s", NULL,
                           NULL);
    }
    return 0;
}

static int req_field(ld *l, const yaml_node_t *v, void *target, int which) {
    req_ctx *rc = target;
    tch_cassette_request *r = rc->r;
    switch (which) {
    case RQ_SERVICE: return read_bytes(l, v, "serviceName", &r->service);
    case RQ_ENDPOINT: return read_bytes(l, v, "endpoint", &r->endpoint);
    case RQ_HEADERS: return read_bytes(l, v, "headers", &r->headers);
    case RQ_BODY: return read_bytes(l, v, "body", &r->body);
    case RQ_SCHEME: return is_null(v) ? 0 : read_scheme(l, v, &r->scheme);
    case RQ_HOSTPORT: return read_bytes(l, v, "hostPort", &r->host_port);
    case RQ_PEERS: return read_peers(l, v, r);
    case RQ_THEADERS: return read_theaders(l, v, r);
    case RQ_HEADERS_DEC: rc->headers_dec_node = v; return read_bytes(l, v, "headersDecoded", &rc->headers_dec);
    case RQ_BODY_DEC: rc->body_dec_node = v; return read_bytes(l, v, "bodyDecoded", &rc->body_dec);
    }
    return TCH_EINVAL;
}

/* The exact bytes win; a hand-written cassette may give only the decoded
 * JSON, which for the json scheme is the bytes themselves. */
static int use_decoded(ld *l, tch_cassette_scheme scheme, bool have_exact, tch_buf *exact,
                       tch_buf *dec, const yaml_node_t *dec_node, const char *what) {
    if (have_exact || !dec_node)
        return 0;
    if (scheme != TCH_CASSETTE_JSON)
        return fail_at(l, dec_node,
                       "%sDecoded without %s: only json bodies can be rebuilt from the decoded "
                       "form; add the exact bytes",
                       what, what);
    tch_buf_free(exact);
    *exact = *dec;
    memset(dec, 0, sizeof *dec);
    return 0;
}

static const key_spec req_keys[] = {
    {"serviceName", RQ_SERVICE}, {"endpoint", RQ_ENDPOINT},   {"headers", RQ_HEADERS},
    {"body", RQ_BODY},           {"argScheme", RQ_SCHEME},    {"hostPort", RQ_HOSTPORT},
    {"knownPeers", RQ_PEERS},    {"transportHeaders", RQ_THEADERS},
    {"headersDecoded", RQ_HEADERS_DEC}, {"bodyDecoded", RQ_BODY_DEC},
};

static int read_request(ld *l, const yaml_node_t *n, tch_cassette_request *r) {
    req_ctx rc = {.r = r};
    unsigned seen;
    int e = walk_mapping(l, n, "request", req_keys, sizeof req_keys / sizeof req_keys[0],
                         req_field, &rc, &seen);
    if (!e)
        e = use_decoded(l, r->scheme, seen & (1u << 2), &r->headers, &rc.headers_dec,
                        rc.headers_dec_node, "headers");
    if (!e)
        e = use_decoded(l, r->scheme, seen & (1u << 3), &r->body, &rc.body_dec,
                        rc.body_dec_node, "body");
    tch_buf_free(&rc.headers_dec);
    tch_buf_free(&rc.body_dec);
    return e;
}

enum { RS_CODE, RS_HEADERS, RS_BODY, RS_HEADERS_DEC, RS_BODY_DEC };

typedef struct resp_ctx {
    tch_cassette_response *r;
    tch_buf headers_dec, body_dec;
    const yaml_node_t *headers_dec_node, *body_dec_node;
} resp_ctx;

static int resp_field(ld *l, const yaml_node_t *v, void *target, int which) {
    resp_ctx *rc = target;
    long code;
    int e;
    switch (which) {
    case RS_CODE:
        e = read_long(l, v, "response code (0 ok, 1 application error)", 0, 1, &code);
        rc->r->code = (int)code;
        return e;
    case RS_HEADERS: return read_bytes(l, v, "response headers", &rc->r->headers);
    case RS_BODY: return read_bytes(l, v, "response body", &rc->r->body);
    case RS_HEADERS_DEC: rc->headers_dec_node = v; return read_bytes(l, v, "headersDecoded", &rc->headers_dec);
    case RS_BODY_DEC: rc->body_dec_node = v; return read_bytes(l, v, "bodyDecoded", &rc->body_dec);
    }
    return TCH_EINVAL;
}

static int read_response(ld *l, const yaml_node_t *n, tch_cassette_scheme scheme,
                         tch_cassette_response *r) {
    static const key_spec keys[] = {{"code", RS_CODE},
                                    {"headers", RS_HEADERS},
                                    {"body", RS_BODY},
                                    {"headersDecoded", RS_HEADERS_DEC},
                                    {"bodyDecoded", RS_BODY_DEC}};
    resp_ctx rc = {.r = r};
    unsigned seen;
    int e = walk_mapping(l, n, "response", keys, 5, resp_field, &rc, &seen);
    if (!e)
        e = use_decoded(l, scheme, seen & (1u << 1), &r->headers, &rc.headers_dec,
                        rc.headers_dec_node, "headers");
    if (!e)
        e = use_decoded(l, scheme, seen & (1u << 2), &r->body, &rc.body_dec, rc.body_dec_node,
                        "body");
    tch_buf_free(&rc.headers_dec);
    tch_buf_free(&rc.body_dec);
    return e;
}

typedef struct err_ctx {
    uint8_t *code;
    char **message;
} err_ctx;

static int err_field(ld *l, const yaml_node_t *v, void *target, int which) {
    err_ctx *ec = target;
    return which == 0 ? read_errcode(l, v, "error code", ec->code)
                      : read_cstr(l, v, "error message", ec->message);
}

/* `error: {code: busy, message: ...}`; `fault` also takes a bare code name. */
static int read_error_frame(ld *l, const yaml_node_t *n, const char *what, uint8_t *code,
                            char **message) {
    static const key_spec keys[] = {{"code", 0}, {"message", 1}};
    if (n->type == YAML_SCALAR_NODE && strcmp(what, "fault") == 0)
        return read_errcode(l, n, what, code);
    err_ctx ec = {code, message};
    unsigned seen;
    int rc = walk_mapping(l, n, what, keys, 2, err_field, &ec, &seen);
    if (!rc && !(seen & 1u))
        return fail_at(l, n, "%s: missing 'code'%s", what, NULL);
    if (!rc && !*message && !(*message = strdup("")))
        return tch_error_set(l->err, TCH_ENOMEM, "%s: out of memory", l->c->name);
    return rc;
}

/* ---- interactions ------------------------------------------------------ */

enum { IT_REQUEST, IT_RESPONSE, IT_ERROR, IT_DELAY, IT_FAULT };

typedef struct it_ctx {
    tch_cassette_interaction *it;
    const yaml_node_t *response;
} it_ctx;

static int it_field(ld *l, const yaml_node_t *v, void *target, int which) {
    it_ctx *ic = target;
    tch_cassette_interaction *it = ic->it;
    long ms;
    int rc;
    switch (which) {
    case IT_REQUEST: return read_request(l, v, &it->request);
    case IT_RESPONSE: ic->response = v; return 0; /* needs argScheme: read after the walk */
    case IT_ERROR:
        it->is_error = 1;
        return read_error_frame(l, v, "error", &it->error.code, &it->error.message);
    case IT_DELAY:
        rc = read_long(l, v, "delay (milliseconds)", 0, MAX_DELAY_MS, &ms);
        it->has_delay = 1;
        it->delay_ms = (uint32_t)ms;
        return rc;
    case IT_FAULT:
        it->has_fault = 1;
        return read_error_frame(l, v, "fault", &it->fault_code, &it->fault_message);
    }
    return TCH_EINVAL;
}

static int read_interaction(ld *l, const yaml_node_t *n, tch_cassette_interaction *it) {
    static const key_spec keys[] = {{"request", IT_REQUEST}, {"response", IT_RESPONSE},
                                    {"error", IT_ERROR},     {"delay", IT_DELAY},
                                    {"fault", IT_FAULT}};
    it_ctx ic = {it, NULL};
    unsigned seen;
    it->line = n->start_mark.line + 1;
    int rc = walk_mapping(l, n, "interaction", keys, 5, it_field, &ic, &seen);
    if (rc)
        return rc;
    if (!(seen & 1u))
        return fail_at(l, n, "interaction: missing 'request'%s%s", NULL, NULL);
    if (!!(seen & 2u) == !!(seen & 4u))
        return fail_at(l, n, "interaction: expected exactly one of 'response' or 'error'%s%s",
                       NULL, NULL);
    if (ic.response)
        return read_response(l, ic.response, it->request.scheme, &it->response);
    return 0;
}

static int read_interactions(ld *l, const yaml_node_t *seq) {
    if (is_null(seq))
        return 0;
    if (seq->type != YAML_SEQUENCE_NODE)
        return fail_at(l, seq, "interactions: expected a list%s%s", NULL, NULL);
    for (yaml_node_item_t *p = seq->data.sequence.items.start; p < seq->data.sequence.items.top;
         p++) {
        const yaml_node_t *n = yaml_document_get_node(l->doc, *p);
        cas_entry *e = NULL;
        if (!n)
            return fail_at(l, seq, "interactions: bad item%s%s", NULL, NULL);
        if (cas_append_entry(l->c, &e))
            return tch_error_set(l->err, TCH_ENOMEM, "%s: out of memory", l->c->name);
        e->from_file = true;
        int rc = read_interaction(l, n, &e->it);
        if (rc)
            return rc;
    }
    return 0;
}

typedef struct top_ctx {
    const yaml_node_t *version, *interactions;
} top_ctx;

static int top_field(ld *l, const yaml_node_t *v, void *target, int which) {
    (void)l;
    top_ctx *t = target;
    if (which == 0)
        t->version = v;
    else
        t->interactions = v;
    return 0;
}

static int read_top(ld *l, const yaml_node_t *root) {
    static const key_spec keys[] = {{"version", 0}, {"interactions", 1}};
    top_ctx t = {0};
    unsigned seen;
    if (is_null(root)) /* a file of only comments or `~` is empty, like an empty file */
        return 0;
    int rc = walk_mapping(l, root, "cassette", keys, 2, top_field, &t, &seen);
    if (rc)
        return rc;
    /* tchannel-python: a mapping without interactions is an empty cassette */
    if (!t.interactions && !t.version)
        return 0;
    if (!t.version)
        return fail_at(l, root, "cassette: missing 'version' (expected version: 1)%s%s", NULL,
                       NULL);
    if (t.version->type != YAML_SCALAR_NODE || strcmp(scalar_text(t.version), "1") != 0)
        return fail_at(l, t.version, "unsupported cassette version '%s' (only version 1 is known)%s",
                       t.version->type == YAML_SCALAR_NODE ? scalar_text(t.version) : "?", NULL);
    return t.interactions ? read_interactions(l, t.interactions) : 0;
}

static int parser_error(tch_cassette *c, const yaml_parser_t *p, tch_error *err) {
    if (p->error == YAML_MEMORY_ERROR)
        return tch_error_set(err, TCH_ENOMEM, "%s: out of memory while parsing", c->name);
    const yaml_mark_t *m = &p->problem_mark;
    if (p->context)
        return tch_error_set(err, TCH_EPARSE, "%s:%zu:%zu: malformed YAML: %s %s (which started at line %zu)",
                             c->name, m->line + 1, m->column + 1,
                             p->problem ? p->problem : "error", p->context,
                             p->context_mark.line + 1);
    return tch_error_set(err, TCH_EPARSE, "%s:%zu:%zu: malformed YAML: %s", c->name, m->line + 1,
                         m->column + 1, p->problem ? p->problem : "error");
}

int cas_load_buffer(tch_cassette *c, const char *data, size_t len, tch_error *err) {
    yaml_parser_t parser;
    yaml_document_t doc;
    if (len == 0) /* tchannel-python: an existing empty file is an empty cassette */
        return 0;
    if (!yaml_parser_initialize(&parser))
        return tch_error_set(err, TCH_ENOMEM, "%s: yaml parser", c->name);
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
    if (!yaml_parser_load(&parser, &doc)) {
        int rc = parser_error(c, &parser, err);
        yaml_parser_delete(&parser);
        return rc;
    }
    ld l = {c, &doc, err};
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    int rc = root ? read_top(&l, root) : 0;
    yaml_document_delete(&doc);
    if (!rc && root) { /* a second document is not a cassette */
        if (!yaml_parser_load(&parser, &doc)) {
            rc = parser_error(c, &parser, err);
        } else {
            yaml_node_t *extra = yaml_document_get_root_node(&doc);
            if (extra)
                rc = tch_error_set(err, TCH_EPARSE, "%s:%zu:%zu: expected one YAML document",
                                   c->name, extra->start_mark.line + 1,
                                   extra->start_mark.column + 1);
            yaml_document_delete(&doc);
        }
    }
    yaml_parser_delete(&parser);
    return rc;
}
