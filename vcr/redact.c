/* Declarative redaction (tchannel/redact.h): header keys, JSON paths and
 * Thrift field names whose values are replaced by a placeholder before an
 * interaction is stored. Bytes are rewritten only when something was
 * replaced, so a recording with nothing to hide keeps its exact bytes. */
#include <tchannel/redact.h>

#include "cassette_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define JPATH_MAX_LEN 1024
#define JPATH_MAX_SEGS 64
#define N_KINDS 4

typedef enum { SEG_KEY, SEG_INDEX, SEG_WILD } seg_kind;

typedef struct jseg {
    seg_kind kind;
    char *key;
    size_t index;
} jseg;

typedef struct jpath {
    jseg *segs;
    size_t n;
} jpath;

struct tch_cassette_redaction {
    char **names[N_KINDS];
    size_t n[N_KINDS];
    jpath *paths; /* parallel to names[TCH_REDACT_JSON_PATH] */
    const tch_cassette_thrift *thrift;
    const tch_thrift_idl *idl;
};

static const char *const KIND_KEYS[N_KINDS] = {"headers", "transportHeaders", "jsonPaths",
                                               "thriftFields"};

/* ---- JSON paths ------------------------------------------------------------------ */

static void jpath_free(jpath *p) {
    for (size_t i = 0; i < p->n; i++)
        free(p->segs[i].key);
    free(p->segs);
    p->segs = NULL, p->n = 0;
}

static int jpath_push(jpath *p, seg_kind kind, const char *key, size_t klen, size_t index) {
    jseg *s = realloc(p->segs, (p->n + 1) * sizeof *s);
    if (!s)
        return TCH_ENOMEM;
    p->segs = s;
    s[p->n] = (jseg){kind, NULL, index};
    if (kind == SEG_KEY && !(s[p->n].key = strndup(key, klen)))
        return TCH_ENOMEM;
    p->n++;
    return 0;
}

/* One bracketed segment at s[*i] == '[': [N], [*], ['key'] or ["key"]. */
static int jpath_bracket(jpath *p, const char *s, size_t *i, const char **why) {
    size_t at = *i + 1;
    if (s[at] == '*' && s[at + 1] == ']') {
        *i = at + 2;
        return jpath_push(p, SEG_WILD, NULL, 0, 0);
    }
    if (s[at] == '\'' || s[at] == '"') {
        const char *close = strchr(s + at + 1, s[at]);
        if (!close || close[1] != ']') {
            *why = "a quoted key needs its closing quote and ']'";
            return TCH_EINVAL;
        }
        *i = (size_t)(close - s) + 2;
        return jpath_push(p, SEG_KEY, s + at + 1, (size_t)(close - s) - at - 1, 0);
    }
    size_t index = 0, digits = 0;
    while (s[at] >= '0' && s[at] <= '9' && digits < 9)
        index = index * 10 + (size_t)(s[at++] - '0'), digits++;
    if (!digits || s[at] != ']') {
        *why = "expected [N], [*] or ['key']";
        return TCH_EINVAL;
    }
    *i = at + 1;
    return jpath_push(p, SEG_INDEX, NULL, 0, index);
}

/* $ followed by .key, .*, [N], [*], ['key'] or ["key"]; at least one. */
static int jpath_parse(const char *s, jpath *p, tch_error *err) {
    const char *why = NULL;
    size_t i = 1;
    int rc = 0;
    memset(p, 0, sizeof *p);
    if (strlen(s) > JPATH_MAX_LEN)
        return tch_error_set(err, TCH_EINVAL, "JSON path longer than %d bytes", JPATH_MAX_LEN);
    if (s[0] != '$') {
        why = "a JSON path starts with '$'";
        i = 0;
        rc = TCH_EINVAL;
    }
    while (!rc && s[i]) {
        if (p->n == JPATH_MAX_SEGS) {
            why = "too many steps (at most 64)";
            rc = TCH_EINVAL;
        } else if (s[i] == '.' && s[i + 1] == '*') {
            i += 2;
            rc = jpath_push(p, SEG_WILD, NULL, 0, 0);
        } else if (s[i] == '.') {
            size_t len = strcspn(s + i + 1, ".[");
            if (!len) {
                why = "expected a key after '.'";
                rc = TCH_EINVAL;
            } else {
                rc = jpath_push(p, SEG_KEY, s + i + 1, len, 0);
                i += 1 + len;
            }
        } else if (s[i] == '[') {
            rc = jpath_bracket(p, s, &i, &why);
        } else {
            why = "expected '.' or '['";
            rc = TCH_EINVAL;
        }
    }
    if (!rc && p->n == 0) {
        why = "'$' alone is the whole body: name what to redact in it";
        rc = TCH_EINVAL;
    }
    if (!rc)
        return 0;
    jpath_free(p);
    if (rc == TCH_ENOMEM)
        return tch_error_set(err, rc, "out of memory");
    return tch_error_set(err, rc, "JSON path \"%s\", column %zu: %s", s, i + 1, why);
}

static int set_placeholder_obj(json_t *o, const char *key, int *changed) {
    if (!json_object_get(o, key))
        return 0;
    *changed = 1;
    return json_object_set_new(o, key, json_string(TCH_CASSETTE_REDACTED)) ? TCH_ENOMEM : 0;
}

/* Replaces every value p reaches from v (step i on) with the placeholder. */
static int jpath_apply(const jpath *p, size_t i, json_t *v, int *changed) {
    const jseg *s = &p->segs[i];
    int last = i + 1 == p->n, rc = 0;
    if (s->kind == SEG_KEY && json_is_object(v)) {
        json_t *c = json_object_get(v, s->key);
        if (c)
            rc = last ? set_placeholder_obj(v, s->key, changed) : jpath_apply(p, i + 1, c, changed);
    } else if (s->kind == SEG_INDEX && json_is_array(v)) {
        json_t *c = json_array_get(v, s->index);
        if (c && last) {
            *changed = 1;
            rc = json_array_set_new(v, s->index, json_string(TCH_CASSETTE_REDACTED)) ? TCH_ENOMEM : 0;
        } else if (c) {
            rc = jpath_apply(p, i + 1, c, changed);
        }
    } else if (s->kind == SEG_WILD && json_is_object(v)) {
        const char *k;
        json_t *c;
        json_object_foreach(v, k, c) {
            rc = last ? set_placeholder_obj(v, k, changed) : jpath_apply(p, i + 1, c, changed);
            if (rc)
                break;
        }
    } else if (s->kind == SEG_WILD && json_is_array(v)) {
        for (size_t k = 0; !rc && k < json_array_size(v); k++) {
            if (last) {
                *changed = 1;
                rc = json_array_set_new(v, k, json_string(TCH_CASSETTE_REDACTED)) ? TCH_ENOMEM : 0;
            } else {
                rc = jpath_apply(p, i + 1, json_array_get(v, k), changed);
            }
        }
    }
    return rc;
}

/* ---- the set of names ------------------------------------------------------------- */

int tch_cassette_redaction_new(tch_cassette_redaction **out, tch_error *err) {
    if (!out)
        return tch_error_set(err, TCH_EINVAL, "redaction: out is NULL");
    *out = calloc(1, sizeof **out);
    return *out ? 0 : tch_error_set(err, TCH_ENOMEM, "redaction: out of memory");
}

static void clear_lists(tch_cassette_redaction *r) {
    for (size_t k = 0; k < N_KINDS; k++) {
        for (size_t i = 0; i < r->n[k]; i++) {
            free(r->names[k][i]);
            if (k == TCH_REDACT_JSON_PATH)
                jpath_free(&r->paths[i]);
        }
        free(r->names[k]);
        r->names[k] = NULL, r->n[k] = 0;
    }
    free(r->paths);
    r->paths = NULL;
}

void tch_cassette_redaction_free(tch_cassette_redaction *r) {
    if (!r)
        return;
    clear_lists(r);
    free(r);
}

static int known(const tch_cassette_redaction *r, tch_redact_kind kind, const char *name) {
    for (size_t i = 0; i < r->n[kind]; i++)
        if (kind <= TCH_REDACT_TRANSPORT_HEADER ? !strcasecmp(r->names[kind][i], name)
                                                : !strcmp(r->names[kind][i], name))
            return 1;
    return 0;
}

int tch_cassette_redaction_add(tch_cassette_redaction *r, tch_redact_kind kind, const char *name,
                               tch_error *err) {
    if ((unsigned)kind >= N_KINDS)
        return tch_error_set(err, TCH_EINVAL, "redaction: unknown kind %d", (int)kind);
    if (!name || !*name)
        return tch_error_set(err, TCH_EINVAL, "%s: an empty name redacts nothing", KIND_KEYS[kind]);
    if (kind == TCH_REDACT_TRANSPORT_HEADER && !strcasecmp(name, "as"))
        return tch_error_set(err, TCH_EINVAL, "transportHeaders: \"as\" names the arg scheme, "
                             "which matching and replay need: it cannot be redacted");
    if (known(r, kind, name))
        return 0;
    jpath p = {0};
    int rc = kind == TCH_REDACT_JSON_PATH ? jpath_parse(name, &p, err) : 0;
    if (rc)
        return rc;
    char *copy = strdup(name);
    char **names = copy ? realloc(r->names[kind], (r->n[kind] + 1) * sizeof *names) : NULL;
    if (names)
        r->names[kind] = names;
    jpath *paths = names && kind == TCH_REDACT_JSON_PATH
                       ? realloc(r->paths, (r->n[kind] + 1) * sizeof *paths)
                       : NULL;
    if (paths)
        r->paths = paths;
    if (!names || (kind == TCH_REDACT_JSON_PATH && !paths)) {
        free(copy);
        jpath_free(&p);
        return tch_error_set(err, TCH_ENOMEM, "out of memory");
    }
    if (kind == TCH_REDACT_JSON_PATH)
        r->paths[r->n[kind]] = p;
    r->names[kind][r->n[kind]++] = copy;
    return 0;
}

int tch_cassette_redaction_set_json(tch_cassette_redaction *r, const json_t *spec,
                                    tch_error *err) {
    if (!json_is_object(spec))
        return tch_error_set(err, TCH_EINVAL, "redactions: expected an object with headers, "
                             "transportHeaders, jsonPaths and thriftFields (lists of strings)");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)spec, key, v) {
        size_t k = 0;
        while (k < N_KINDS && strcmp(key, KIND_KEYS[k]))
            k++;
        if (k == N_KINDS)
            return tch_error_set(err, TCH_EINVAL, "redactions: unknown key \"%s\" (headers, "
                                 "transportHeaders, jsonPaths, thriftFields)", key);
        if (!json_is_array(v))
            return tch_error_set(err, TCH_EINVAL, "%s: expected a list of strings", key);
    }
    tch_cassette_redaction fresh = {.thrift = r->thrift, .idl = r->idl};
    int rc = 0;
    for (size_t k = 0; k < N_KINDS && !rc; k++) {
        json_t *list = json_object_get(spec, KIND_KEYS[k]);
        for (size_t i = 0; !rc && i < json_array_size(list); i++) {
            const char *name = json_string_value(json_array_get(list, i));
            rc = name ? tch_cassette_redaction_add(&fresh, (tch_redact_kind)k, name, err)
                      : tch_error_set(err, TCH_EINVAL, "expected a string");
            if (rc)
                tch_error_wrap(err, "%s[%zu]", KIND_KEYS[k], i);
        }
    }
    if (rc) {
        clear_lists(&fresh);
        return rc;
    }
    clear_lists(r);
    *r = fresh;
    return 0;
}

json_t *tch_cassette_redaction_to_json(const tch_cassette_redaction *r) {
    json_t *o = json_object();
    for (size_t k = 0; o && k < N_KINDS; k++) {
        json_t *list = json_array();
        for (size_t i = 0; list && i < r->n[k]; i++)
            json_array_append_new(list, json_string(r->names[k][i]));
        if (!list || json_object_set_new(o, KIND_KEYS[k], list)) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

bool tch_cassette_redaction_empty(const tch_cassette_redaction *r) {
    for (size_t k = 0; k < N_KINDS; k++)
        if (r->n[k])
            return 0;
    return 1;
}

size_t tch_cassette_redaction_count(const tch_cassette_redaction *r, tch_redact_kind kind) {
    return (unsigned)kind < N_KINDS ? r->n[kind] : 0;
}

void tch_cassette_redaction_set_idl(tch_cassette_redaction *r, const tch_cassette_thrift *thrift,
                                    const tch_thrift_idl *idl) {
    r->thrift = thrift;
    r->idl = idl;
}

/* ---- headers ----------------------------------------------------------------------- */

static int slice_named(const tch_cassette_redaction *r, tch_redact_kind kind, tch_slice key) {
    for (size_t i = 0; i < r->n[kind]; i++) {
        const char *n = r->names[kind][i];
        if (strlen(n) == key.len && key.len && !strncasecmp(n, (const char *)key.ptr, key.len))
            return 1;
    }
    return 0;
}

static int header_named(const tch_cassette_redaction *r, tch_slice key) {
    return slice_named(r, TCH_REDACT_HEADER, key);
}

static int transport_named(const tch_cassette_redaction *r, tch_slice key) {
    return slice_named(r, TCH_REDACT_TRANSPORT_HEADER, key);
}

/* b takes with's storage; with was made on b's allocator (with carries it). */
static int replace_buf(tch_buf *b, tch_buf *with) {
    tch_buf_free(b);
    *b = *with;
    memset(with, 0, sizeof *with);
    return 0;
}

static int dump_into(const json_t *j, tch_buf *b) {
    char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        return TCH_ENOMEM;
    tch_buf_reset(b);
    int rc = tch_buf_append(b, text, strlen(text));
    free(text);
    return rc;
}

/* arg2 of a json call: an object of strings. Anything else is left as is. */
static int redact_json_headers(const tch_cassette_redaction *r, tch_buf *arg2) {
    json_t *o = arg2->len ? json_loadb((const char *)arg2->ptr, arg2->len, 0, NULL) : NULL;
    int changed = 0, rc = 0;
    const char *k;
    json_t *v;
    if (json_is_object(o)) {
        json_object_foreach(o, k, v) {
            if (header_named(r, tch_slice_cstr(k)) && (rc = set_placeholder_obj(o, k, &changed)))
                break;
        }
    }
    if (!rc && changed)
        rc = dump_into(o, arg2);
    json_decref(o);
    return rc;
}

/* arg2 of a thrift call: nh:2 (k~2 v~2){nh}. */
static int redact_thrift_headers(const tch_cassette_redaction *r, tch_buf *arg2, const char *part,
                                 tch_error *err) {
    tch_kv *hs = NULL;
    size_t n = 0, hits = 0;
    if (!arg2->len)
        return 0;
    if (tch_thrift_headers_decode(tch_buf_slice(arg2), &hs, &n, NULL) != 0)
        return tch_error_set(err, TCH_EINVAL, "%s: thrift headers (arg2) do not decode, so the "
                             "headers to redact cannot be found", part);
    for (size_t i = 0; i < n; i++)
        if (header_named(r, hs[i].key)) {
            hs[i].value = tch_slice_cstr(TCH_CASSETTE_REDACTED);
            hits++;
        }
    tch_buf out = {.alloc = arg2->alloc}; /* it replaces arg2 */
    int rc = hits ? tch_thrift_headers_encode(hs, n, &out, err) : 0;
    free(hs);
    if (hits && !rc)
        replace_buf(arg2, &out);
    tch_buf_free(&out);
    return rc;
}

static int redact_arg2(const tch_cassette_redaction *r, tch_cassette_scheme scheme, tch_buf *arg2,
                       const char *part, tch_error *err) {
    if (!r->n[TCH_REDACT_HEADER])
        return 0;
    if (scheme == TCH_CASSETTE_JSON)
        return redact_json_headers(r, arg2) ? tch_error_set(err, TCH_ENOMEM, "out of memory") : 0;
    if (scheme == TCH_CASSETTE_THRIFT)
        return redact_thrift_headers(r, arg2, part, err);
    return 0;
}

/* ---- bodies -------------------------------------------------------------------------- */

static int redact_json_body(const tch_cassette_redaction *r, tch_buf *body) {
    if (!r->n[TCH_REDACT_JSON_PATH] || !body->len)
        return 0;
    json_t *j = json_loadb((const char *)body->ptr, body->len, JSON_DECODE_ANY, NULL);
    int changed = 0, rc = 0;
    for (size_t i = 0; j && !rc && i < r->n[TCH_REDACT_JSON_PATH]; i++)
        rc = jpath_apply(&r->paths[i], 0, j, &changed);
    if (!rc && changed)
        rc = dump_into(j, body);
    json_decref(j);
    return rc;
}

static int thrift_named(const tch_cassette_redaction *r, const char *name) {
    return known(r, TCH_REDACT_THRIFT_FIELD, name);
}

static int redact_tvalue(const tch_cassette_redaction *r, const tch_thrift_type *t,
                         tch_thrift_value **pv, int *changed, tch_error *err);

static int holds_fields(const tch_thrift_type *t) {
    tch_thrift_kind k = t ? tch_thrift_type_kind(t) : TCH_THRIFT_BOOL;
    return k == TCH_THRIFT_STRUCT || k == TCH_THRIFT_LIST || k == TCH_THRIFT_SET ||
           k == TCH_THRIFT_MAP;
}

static const char *kind_name(tch_thrift_kind k) {
    static const char *const names[] = {"?", "bool", "byte", "i16", "i32", "i64", "double",
                                        "string", "binary", "enum", "struct", "list", "set", "map"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

/* Fields are replaced in place; containers are rebuilt around copies. */
static int redact_tstruct(const tch_cassette_redaction *r, const tch_thrift_struct *st,
                          tch_thrift_value *v, int *changed, tch_error *err) {
    for (size_t i = 0; i < tch_thrift_value_struct_count(v); i++) {
        int16_t id;
        const tch_thrift_value *fv = tch_thrift_value_struct_at(v, i, &id);
        const tch_thrift_field *f = tch_thrift_struct_field_by_id(st, id);
        const tch_thrift_type *ft = f ? tch_thrift_field_type(f) : NULL;
        if (!f)
            continue;
        if (thrift_named(r, tch_thrift_field_name(f))) {
            tch_thrift_kind k = tch_thrift_type_kind(ft);
            if (k != TCH_THRIFT_STRING && k != TCH_THRIFT_BINARY)
                return tch_error_set(err, TCH_EINVAL, "thrift field %s.%s is %s: only string "
                                     "and binary fields can hold \"%s\"",
                                     tch_thrift_struct_name(st), tch_thrift_field_name(f),
                                     kind_name(k), TCH_CASSETTE_REDACTED);
            tch_thrift_value *ph = tch_thrift_value_new_string(tch_slice_cstr(TCH_CASSETTE_REDACTED));
            if (!ph || tch_thrift_value_struct_set_take(v, id, ph))
                return tch_error_set(err, TCH_ENOMEM, "out of memory");
            *changed = 1;
        } else if (holds_fields(ft)) {
            tch_thrift_value *copy = tch_thrift_value_copy(fv);
            int inner = 0;
            if (!copy)
                return tch_error_set(err, TCH_ENOMEM, "out of memory");
            int rc = redact_tvalue(r, ft, &copy, &inner, err);
            if (!rc && inner) {
                *changed = 1;
                if (tch_thrift_value_struct_set_take(v, id, copy))
                    return tch_error_set(err, TCH_ENOMEM, "out of memory");
            } else {
                tch_thrift_value_free(copy);
            }
            if (rc)
                return rc;
        }
    }
    return 0;
}

static int redact_tvalue(const tch_cassette_redaction *r, const tch_thrift_type *t,
                         tch_thrift_value **pv, int *changed, tch_error *err) {
    tch_thrift_kind k = tch_thrift_type_kind(t);
    if (k == TCH_THRIFT_STRUCT)
        return redact_tstruct(r, tch_thrift_type_struct(t), *pv, changed, err);
    if (k != TCH_THRIFT_LIST && k != TCH_THRIFT_SET && k != TCH_THRIFT_MAP)
        return 0;
    const tch_thrift_type *et = k == TCH_THRIFT_MAP ? tch_thrift_type_value(t) : tch_thrift_type_elem(t);
    if (!holds_fields(et))
        return 0;
    tch_thrift_value *v = *pv;
    tch_thrift_value *nv = k == TCH_THRIFT_LIST  ? tch_thrift_value_new_list()
                           : k == TCH_THRIFT_SET ? tch_thrift_value_new_set()
                                                 : tch_thrift_value_new_map();
    int rc = nv ? 0 : TCH_ENOMEM;
    for (size_t i = 0; !rc && i < tch_thrift_value_count(v); i++) {
        const tch_thrift_value *src =
            k == TCH_THRIFT_MAP ? tch_thrift_value_map_value_at(v, i) : tch_thrift_value_at(v, i);
        tch_thrift_value *e = tch_thrift_value_copy(src);
        if (!e) {
            rc = TCH_ENOMEM;
            break;
        }
        if ((rc = redact_tvalue(r, et, &e, changed, err))) {
            tch_thrift_value_free(e);
            tch_thrift_value_free(nv);
            return rc;
        }
        if (k == TCH_THRIFT_MAP) {
            tch_thrift_value *key = tch_thrift_value_copy(tch_thrift_value_map_key_at(v, i));
            rc = key ? tch_thrift_value_map_put_take(nv, key, e) : (tch_thrift_value_free(e), TCH_ENOMEM);
        } else {
            rc = tch_thrift_value_append_take(nv, e);
        }
    }
    if (rc) {
        tch_thrift_value_free(nv);
        return tch_error_set(err, TCH_ENOMEM, "out of memory");
    }
    tch_thrift_value_free(v);
    *pv = nv;
    return 0;
}

static const tch_thrift_method *method_of(const tch_cassette_redaction *r,
                                          const tch_cassette_request *req) {
    tch_slice svc = tch_buf_slice(&req->service), ep = tch_buf_slice(&req->endpoint);
    const tch_thrift_method *m = r->thrift ? tch_cassette_thrift_method(r->thrift, svc, ep) : NULL;
    tch_slice sname, mname;
    if (m || !r->idl || tch_thrift_arg1_split(ep, &sname, &mname, NULL) != 0)
        return m;
    char *s = tch_slice_strdup(sname), *mn = tch_slice_strdup(mname);
    const tch_thrift_service *ts = s ? tch_thrift_idl_find_service(r->idl, s) : NULL;
    m = ts && mn ? tch_thrift_service_find_method(ts, mn) : NULL;
    free(s);
    free(mn);
    return m;
}

static int redact_thrift_body(const tch_cassette_redaction *r, const tch_cassette_request *req,
                              tch_buf *body, int response, tch_error *err) {
    if (!r->n[TCH_REDACT_THRIFT_FIELD])
        return 0;
    int ep_len = (int)req->endpoint.len;
    const char *ep = req->endpoint.ptr ? (const char *)req->endpoint.ptr : "";
    if (!r->thrift && !r->idl)
        return tch_error_set(err, TCH_EINVAL, "cannot redact thrift fields in %.*s: no IDL was "
                             "given to the redaction", ep_len, ep);
    const tch_thrift_method *m = method_of(r, req);
    if (!m)
        return tch_error_set(err, TCH_EINVAL, "cannot redact thrift fields in %.*s: the IDL has "
                             "no such method", ep_len, ep);
    const tch_thrift_struct *st = response ? tch_thrift_method_result(m) : tch_thrift_method_args(m);
    tch_thrift_value *v = NULL;
    tch_error derr;
    if (tch_thrift_decode(st, tch_buf_slice(body), &v, &derr) != 0)
        return tch_error_set(err, TCH_EINVAL, "cannot redact thrift fields in %.*s: the %s "
                             "body does not decode (%s)", ep_len, ep,
                             response ? "response" : "request", derr.msg);
    int changed = 0;
    int rc = redact_tstruct(r, st, v, &changed, err);
    tch_buf out = {.alloc = body->alloc}; /* it replaces body */
    if (!rc && changed && (rc = tch_thrift_encode(st, v, &out, err)) == 0)
        replace_buf(body, &out);
    tch_buf_free(&out);
    tch_thrift_value_free(v);
    return rc;
}

static int redact_body(const tch_cassette_redaction *r, const tch_cassette_request *req,
                       tch_buf *body, int response, tch_error *err) {
    if (req->scheme == TCH_CASSETTE_JSON)
        return redact_json_body(r, body) ? tch_error_set(err, TCH_ENOMEM, "out of memory") : 0;
    if (req->scheme == TCH_CASSETTE_THRIFT)
        return redact_thrift_body(r, req, body, response, err);
    return 0;
}

/* ---- requests and responses ------------------------------------------------------------ */

int tch_cassette_redaction_request(const tch_cassette_redaction *r, tch_cassette_request *req,
                                   tch_error *err) {
    for (size_t i = 0; i < req->n_transport_headers; i++) {
        tch_cassette_kv *kv = &req->transport_headers[i];
        if (transport_named(r, tch_buf_slice(&kv->key)) &&
            tch__cas_buf_set(&kv->value, tch_slice_cstr(TCH_CASSETTE_REDACTED)))
            return tch_error_set(err, TCH_ENOMEM, "out of memory");
    }
    int rc = redact_arg2(r, req->scheme, &req->headers, "request", err);
    return rc ? rc : redact_body(r, req, &req->body, 0, err);
}

int tch_cassette_redaction_response(const tch_cassette_redaction *r,
                                    const tch_cassette_request *req,
                                    tch_cassette_response *resp, tch_error *err) {
    int rc = redact_arg2(r, req->scheme, &resp->headers, "response", err);
    return rc ? rc : redact_body(r, req, &resp->body, 1, err);
}

int tch_cassette_redaction_hook(tch_cassette_redact_phase phase, tch_cassette_request *req,
                                tch_cassette_response *resp, void *ud) {
    const tch_cassette_redaction *r = ud;
    tch_error err;
    if (!r || phase != TCH_CASSETTE_REDACT_RECORD)
        return 0;
    int rc = tch_cassette_redaction_request(r, req, &err);
    if (!rc && resp)
        rc = tch_cassette_redaction_response(r, req, resp, &err);
    return rc;
}

int tch_cassette_redaction_call(const tch_cassette_redaction *r, const tch_cassette_call *call,
                                tch_cassette_redacted_call *out, tch_error *err) {
    memset(out, 0, sizeof *out);
    if (tch__cas_request_from_call(NULL, call, &out->req)) /* the caller's: the C library */
        return tch_error_set(err, TCH_ENOMEM, "out of memory");
    int rc = tch_cassette_redaction_request(r, &out->req, err);
    size_t n = out->req.n_transport_headers;
    if (!rc && n && !(out->kv = calloc(n, sizeof *out->kv)))
        rc = tch_error_set(err, TCH_ENOMEM, "out of memory");
    if (rc) {
        tch_cassette_redacted_call_free(out);
        return rc;
    }
    for (size_t i = 0; i < n; i++)
        out->kv[i] = (tch_kv){tch_buf_slice(&out->req.transport_headers[i].key),
                                            tch_buf_slice(&out->req.transport_headers[i].value)};
    out->call = *call; /* host_port and known peers stay the caller's views */
    out->call.headers = tch_buf_slice(&out->req.headers);
    out->call.body = tch_buf_slice(&out->req.body);
    out->call.transport_headers = out->kv;
    out->call.n_transport_headers = n;
    return 0;
}

void tch_cassette_redacted_call_free(tch_cassette_redacted_call *rc) {
    tch__cas_request_free(NULL, &rc->req);
    free(rc->kv);
    memset(rc, 0, sizeof *rc);
}
