/* Match rules of stubs: parsing a request object of rules, evaluating them
 * against a request, and saying which rule failed and why. Regular
 * expressions are compiled once, when the rules are parsed. */
#include "cassette_internal.h"

#include <tchannel/stub.h>


#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>

const char *const tch__cas_stub_field_names[SF_COUNT] = {
    "serviceName", "endpoint", "argScheme", "headers", "body", "transportHeaders",
};

typedef enum rkind {
    RK_EXACT = 0,
    RK_ANY,
    RK_ABSENT,
    RK_EQUAL_TO,
    RK_CONTAINS,
    RK_MATCHES,
    RK_EQ_JSON,
    RK_JSONPATH,
} rkind;

static const char *const rule_names[] = {
    "exact", "any", "absent", "equalTo", "contains", "matches", "equalToJson", "matchesJsonPath",
};

typedef struct rule {
    rkind kind;
    tch_buf text;      /* EXACT bytes, EQUAL_TO string, CONTAINS needle */
    json_t *value;     /* EXACT as JSON (when it parses), EQUAL_TO, EQ_JSON */
    bool thrift_body;  /* EXACT: recorded thrift body bytes, decoded at match time */
    regex_t re;
    bool has_re;
    bool ignore_extra, ignore_order;
    cas_jpath path;
    struct rule *sub; /* JSONPATH: the rule its value must pass, NULL: it exists */
} rule;

typedef struct named_rule {
    char *name;
    rule r;
} named_rule;

typedef struct field_rules {
    bool set;
    bool per_name; /* headers / transportHeaders given as {NAME: rule} */
    rule whole;
    named_rule *named;
    size_t nnamed;
} field_rules;

struct tch_stub_rules {
    field_rules f[SF_COUNT];
    json_t *src; /* the request object as given (NULL: built from a recording) */
};

/* ---- freeing ---------------------------------------------------------- */

static void rule_clear(rule *r) {
    tch_buf_free(&r->text);
    json_decref(r->value);
    if (r->has_re)
        regfree(&r->re);
    tch__cas_jpath_free(&r->path);
    if (r->sub) {
        rule_clear(r->sub);
        free(r->sub);
    }
    memset(r, 0, sizeof *r);
}

void tch_stub_rules_free(tch_stub_rules *rs) {
    if (!rs)
        return;
    for (int f = 0; f < SF_COUNT; f++) {
        rule_clear(&rs->f[f].whole);
        for (size_t i = 0; i < rs->f[f].nnamed; i++) {
            free(rs->f[f].named[i].name);
            rule_clear(&rs->f[f].named[i].r);
        }
        free(rs->f[f].named);
    }
    json_decref(rs->src);
    free(rs);
}

/* ---- parsing ------------------------------------------------------------ */

static bool is_rule_name(const char *k) {
    for (size_t i = 1; i < sizeof rule_names / sizeof rule_names[0]; i++)
        if (strcmp(k, rule_names[i]) == 0)
            return true;
    return false;
}

/* A scalar as the bytes an exact rule compares: strings as they are,
 * numbers and booleans as their JSON text. */
static int scalar_text(const json_t *v, tch_buf *out) {
    if (json_is_string(v))
        return tch_buf_append(out, json_string_value(v), json_string_length(v)) ? TCH_ENOMEM : 0;
    char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    int rc = !t || tch_buf_append(out, t, strlen(t)) ? TCH_ENOMEM : 0;
    free(t);
    return rc;
}

static json_t *parse_json_text(tch_slice s) {
    if (!s.len)
        return NULL;
    return json_loadb((const char *)s.ptr, s.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
}

static int exact_rule(rule *r, const json_t *v, const char *where, tch_error *err) {
    if (!json_is_string(v) && !json_is_number(v) && !json_is_boolean(v))
        return tch_error_set(err, TCH_EINVAL, "%s: expected a value or a mapping of one rule",
                             where);
    r->kind = RK_EXACT;
    if (scalar_text(v, &r->text))
        return tch_error_set(err, TCH_ENOMEM, "%s: out of memory", where);
    r->value = parse_json_text(tch_buf_slice(&r->text));
    return 0;
}

/* ---- regular expressions: confined ----------------------------------------------------
 *
 * A stub rule comes from whoever reaches the admin API, and glibc's regex
 * has no step limit: regcomp copies a counted repeat's atom once per count
 * (nested counts multiply: (a{1,100}){1,100} is 10,000 copies), regexec
 * backtracks on back-references, and an unanchored search that fails starts
 * over at every byte ((a|aa)*(a|aa)*x takes seconds on 64 KiB of a). So a
 * pattern is checked when the rule is parsed, and run as ^.*(PATTERN): one
 * pass over the text, the same answer (REG_NEWLINE is not used, so ^ is
 * the start of the text and . takes any byte). What is accepted compiles
 * and runs in milliseconds on text up to the cap. */

#define RE_MAX_LEN 256          /* bytes of pattern */
#define RE_MAX_COUNT 32         /* the largest bound of {m,n} */
#define RE_MAX_WEIGHT 256       /* atoms once counted repeats are copied out */
#define RE_MAX_TEXT (64u << 10) /* longer text does not match */
_Static_assert(RE_MAX_TEXT == 65536, "the near miss names 65536 bytes");

/* Skips a bracket expression starting at p[i] == '['; the index after it. */
static size_t skip_bracket(const char *p, size_t len, size_t i) {
    size_t j = i + 1;
    if (j < len && p[j] == '^')
        j++;
    if (j < len && p[j] == ']') /* a leading ] is a member */
        j++;
    while (j < len && p[j] != ']') {
        if (p[j] == '[' && j + 1 < len && p[j + 1] && strchr(":=.", p[j + 1])) {
            size_t end = len; /* [:class:], [=x=], [.x.] */
            for (size_t k = j + 2; k + 1 < len && end == len; k++)
                if (p[k] == p[j + 1] && p[k + 1] == ']')
                    end = k + 2;
            j = end;
            continue;
        }
        j++;
    }
    return j < len ? j + 1 : len;
}

/* Reads {m}, {m,}, {,n} or {m,n} at p[i]: its largest count in *bound and
 * the index after it, or 0 when it is not one (regcomp will say why). */
static size_t read_interval(const char *p, size_t len, size_t i, unsigned long *bound) {
    unsigned long lo = 0, hi = 0;
    bool digits = false, comma = false;
    size_t j = i + 1;
    for (; j < len && p[j] != '}'; j++) {
        if (p[j] == ',' && !comma) {
            comma = true;
        } else if (p[j] >= '0' && p[j] <= '9') {
            unsigned long *n = comma ? &hi : &lo;
            if (*n < 1000000) /* large enough to refuse, small enough not to wrap */
                *n = *n * 10 + (unsigned long)(p[j] - '0');
            digits = true;
        } else {
            return 0;
        }
    }
    if (j >= len || !digits)
        return 0;
    *bound = lo > hi ? lo : hi;
    return j + 1;
}

/* One open group while a pattern is checked. */
typedef struct re_group {
    bool counted;  /* holds a counted repeat */
    size_t weight; /* its atoms, counts copied out, before the last atom */
} re_group;

/* 0 when pattern (len bytes) may be used; else -1 and why. Nested counted
 * repeats are refused outright, so no product of bounds passes 32; the
 * weight caps how many copies all the counts make together. */
static int regex_problem(const char *p, size_t len, char *why, size_t whysz) {
    if (len > RE_MAX_LEN)
        return snprintf(why, whysz, "longer than %d bytes", RE_MAX_LEN), -1;
    re_group g[RE_MAX_LEN + 2] = {{0}}; /* g[0]: the whole pattern */
    size_t depth = 0, atom = 0;         /* atom: the last atom's weight, 0: none */
    bool counted = false;               /* the last atom holds a counted repeat */
    bool repeated = false;              /* the last token was a repeat operator */
    for (size_t i = 0; i < len;) {
        char c = p[i];
        unsigned long bound = 0;
        size_t next = c == '{' && atom ? read_interval(p, len, i, &bound) : 0;
        if (!next && c != '*' && c != '+' && c != '?') {
            g[depth].weight += atom; /* the last atom is done: no repeat follows */
            if (g[depth].weight > RE_MAX_WEIGHT)
                return snprintf(why, whysz, "too large once its counted repeats are copied out "
                                "(over %d atoms)", RE_MAX_WEIGHT), -1;
            atom = 0;
        }
        if (c == '\\') {
            if (i + 1 < len && p[i + 1] >= '1' && p[i + 1] <= '9')
                return snprintf(why, whysz, "back-references (\\%c) are not supported", p[i + 1]),
                       -1;
            atom = 1, counted = false, i += 2;
        } else if (c == '[') {
            atom = 1, counted = false, i = skip_bracket(p, len, i);
        } else if (c == '(') {
            g[++depth] = (re_group){0}, i++;
        } else if (c == ')') {
            if (depth == 0)
                return snprintf(why, whysz, "an unmatched ')' (write \\) for the character)"),
                       -1;
            counted = g[depth].counted, atom = g[depth].weight + 1, depth--, i++;
            g[depth].counted |= counted;
        } else if (c == '|') {
            i++;
        } else if ((next || c == '*' || c == '+' || c == '?') && repeated) {
            /* glibc copies the tree once per stacked operator (a+++...): refuse */
            return snprintf(why, whysz, "a repeat of a repeat (%.2s): write one operator",
                            p + i - 1), -1;
        } else if (next) { /* a counted repeat of the last atom */
            if (counted)
                return snprintf(why, whysz, "a counted repeat {..} of something that holds one "
                                "(nested counts multiply)"), -1;
            if (bound > RE_MAX_COUNT)
                return snprintf(why, whysz, "a counted repeat over %d: %.*s", RE_MAX_COUNT,
                                (int)(next - i), p + i), -1;
            atom *= bound ? bound : 1;
            counted = true, g[depth].counted = true, i = next;
            repeated = true;
            continue;
        } else if (c == '*' || c == '+' || c == '?') {
            if (c == '+') /* glibc writes x+ as xx*: nested +'s double the copies */
                atom *= 2;
            i++;
            repeated = true;
            continue;
        } else {
            atom = 1, counted = false, i++;
        }
        repeated = false;
    }
    if (g[0].weight + atom > RE_MAX_WEIGHT)
        return snprintf(why, whysz, "too large once its counted repeats are copied out (over %d "
                        "atoms)", RE_MAX_WEIGHT), -1;
    return 0;
}

/* Compiles pattern as ^.*(pattern): see above. */
static int regex_compile(regex_t *re, const char *pattern) {
    size_t n = strlen(pattern) + 8;
    char *wrapped = malloc(n);
    if (!wrapped)
        return REG_ESPACE;
    snprintf(wrapped, n, "^.*(%s)", pattern);
    int e = regcomp(re, wrapped, REG_EXTENDED | REG_NOSUB);
    free(wrapped);
    return e;
}

static int bool_opt(const json_t *obj, const char *key, bool *out, const char *where,
                    tch_error *err) {
    const json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return tch_error_set(err, TCH_EINVAL, "%s.%s: expected true or false", where, key);
    *out = json_is_true(v);
    return 0;
}

static int parse_rule(const json_t *j, rule *r, const char *where, int depth, tch_error *err);

/* The literal text every match of ERE p starts with ("^abc"; the last
 * character dropped when a repeat follows it) into out, so a lookup refuses
 * most texts with one memcmp instead of regexec. None when p has a | (an
 * alternative may start elsewhere). */
static int regex_prefix(const char *p, tch_buf *out) {
    if (p[0] != '^' || strchr(p, '|'))
        return 0;
    size_t n = strcspn(p + 1, "\\^$.[]()*+?{}|");
    if (n && p[1 + n] && strchr("*?{", p[1 + n]))
        n--;
    return n && tch_buf_append(out, p + 1, n) ? TCH_ENOMEM : 0;
}

static int jsonpath_rule(rule *r, const json_t *arg, const char *where, int depth,
                         tch_error *err) {
    char at[200];
    snprintf(at, sizeof at, "%s.matchesJsonPath", where);
    const json_t *expr = arg;
    if (json_is_object(arg))
        expr = json_object_get(arg, "expression");
    if (!json_is_string(expr))
        return tch_error_set(err, TCH_EINVAL,
                             "%s: expected a path such as \"$.a.b[0]\", or {expression: PATH, "
                             "RULE: ...}",
                             at);
    int rc = tch__cas_jpath_parse(json_string_value(expr), &r->path, err);
    if (rc)
        return tch_error_wrap(err, "%s", at), rc;
    if (!json_is_object(arg) || json_object_size(arg) == 1)
        return 0;
    json_t *rest = json_deep_copy(arg);
    if (!rest || json_object_del(rest, "expression") ||
        !(r->sub = calloc(1, sizeof *r->sub))) {
        json_decref(rest);
        return tch_error_set(err, TCH_ENOMEM, "%s: out of memory", at);
    }
    rc = parse_rule(rest, r->sub, at, depth + 1, err);
    json_decref(rest);
    return rc;
}

/* {RULE: ARG, options...}: exactly one rule name among the keys. */
static int parse_rule(const json_t *j, rule *r, const char *where, int depth, tch_error *err) {
    if (depth > 8)
        return tch_error_set(err, TCH_EINVAL, "%s: rules nested too deeply", where);
    if (!json_is_object(j))
        return exact_rule(r, j, where, err);
    const char *key, *name = NULL;
    const json_t *v, *arg = NULL;
    json_object_foreach((json_t *)j, key, v) {
        if (is_rule_name(key)) {
            if (name)
                return tch_error_set(err, TCH_EINVAL, "%s: two rules (%s and %s); give one",
                                     where, name, key);
            name = key;
            arg = v;
        } else if (strcmp(key, "ignoreExtraElements") && strcmp(key, "ignoreArrayOrder")) {
            return tch_error_set(err, TCH_EINVAL,
                                 "%s: unknown rule '%.64s' (any, absent, equalTo, contains, "
                                 "matches, equalToJson, matchesJsonPath)",
                                 where, key);
        }
    }
    if (!name)
        return tch_error_set(err, TCH_EINVAL, "%s: a mapping without a rule", where);
    char at[200];
    snprintf(at, sizeof at, "%s.%s", where, name);
    int rc = bool_opt(j, "ignoreExtraElements", &r->ignore_extra, where, err);
    if (!rc)
        rc = bool_opt(j, "ignoreArrayOrder", &r->ignore_order, where, err);
    if (rc)
        return rc;
    if (strcmp(name, "any") == 0 || strcmp(name, "absent") == 0) {
        if (!json_is_true(arg))
            return tch_error_set(err, TCH_EINVAL, "%s: expected true", at);
        r->kind = name[1] == 'n' ? RK_ANY : RK_ABSENT;
        return 0;
    }
    if (strcmp(name, "equalTo") == 0) {
        r->kind = RK_EQUAL_TO;
        r->value = json_incref((json_t *)arg);
        if (json_is_string(arg) && scalar_text(arg, &r->text))
            return tch_error_set(err, TCH_ENOMEM, "%s: out of memory", at);
        return 0;
    }
    if (strcmp(name, "contains") == 0 || strcmp(name, "matches") == 0) {
        if (!json_is_string(arg))
            return tch_error_set(err, TCH_EINVAL, "%s: expected a string", at);
        if (name[0] == 'c') {
            r->kind = RK_CONTAINS;
            return scalar_text(arg, &r->text) ? tch_error_set(err, TCH_ENOMEM, "%s", at) : 0;
        }
        r->kind = RK_MATCHES;
        char why[160];
        if (regex_problem(json_string_value(arg), json_string_length(arg), why, sizeof why))
            return tch_error_set(err, TCH_EINVAL, "%s: regular expression '%.80s' refused: %s", at,
                                 json_string_value(arg), why);
        int e = regex_compile(&r->re, json_string_value(arg));
        if (e) {
            char msg[128];
            regerror(e, &r->re, msg, sizeof msg);
            return tch_error_set(err, TCH_EINVAL, "%s: bad regular expression '%.80s': %s", at,
                                 json_string_value(arg), msg);
        }
        r->has_re = true;
        return regex_prefix(json_string_value(arg), &r->text) ? tch_error_set(err, TCH_ENOMEM,
                                                                               "%s", at)
                                                               : 0;
    }
    if (strcmp(name, "equalToJson") == 0) {
        r->kind = RK_EQ_JSON;
        /* a string holds the JSON text; anything else is the value itself */
        if (json_is_string(arg)) {
            r->value = parse_json_text(tch_slice_of(json_string_value(arg), json_string_length(arg)));
            if (!r->value)
                return tch_error_set(err, TCH_EINVAL, "%s: '%.80s' is not JSON", at,
                                     json_string_value(arg));
        } else {
            r->value = json_incref((json_t *)arg);
        }
        return 0;
    }
    r->kind = RK_JSONPATH;
    return jsonpath_rule(r, arg, where, depth, err);
}

/* headers / transportHeaders: a rule on the whole, or {NAME: rule} */
static bool is_per_name(const json_t *j) {
    if (!json_is_object(j))
        return false;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)j, key, v) {
        (void)v;
        if (is_rule_name(key) || !strcmp(key, "ignoreExtraElements") ||
            !strcmp(key, "ignoreArrayOrder"))
            return false;
    }
    return json_object_size(j) > 0;
}

static int parse_named(field_rules *fr, const json_t *j, const char *field, tch_error *err) {
    fr->per_name = true;
    fr->named = calloc(json_object_size(j), sizeof *fr->named);
    if (!fr->named)
        return tch_error_set(err, TCH_ENOMEM, "%s: out of memory", field);
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)j, key, v) {
        named_rule *nr = &fr->named[fr->nnamed++];
        char at[200];
        snprintf(at, sizeof at, "%s.%.100s", field, key);
        if (!(nr->name = strdup(key)))
            return tch_error_set(err, TCH_ENOMEM, "%s: out of memory", at);
        int rc = parse_rule(v, &nr->r, at, 0, err);
        if (rc)
            return rc;
    }
    return 0;
}

static int theaders_list(rule *r, const json_t *list, tch_error *err);

static int parse_scheme_exact(rule *r, const json_t *v, tch_error *err) {
    static const char *const names[] = {"raw", "json", "thrift"};
    int s = -1;
    if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 2)
        s = (int)json_integer_value(v);
    for (int i = 0; i < 3 && json_is_string(v); i++)
        if (strcmp(json_string_value(v), names[i]) == 0)
            s = i;
    if (s < 0)
        return tch_error_set(err, TCH_EINVAL,
                             "argScheme: expected raw, json, thrift (or 0, 1, 2) or a rule");
    r->kind = RK_EXACT;
    return tch_buf_append(&r->text, names[s], strlen(names[s])) ? TCH_ENOMEM : 0;
}

int tch__cas_stub_field_of(const char *name) {
    for (int f = 0; f < SF_COUNT; f++)
        if (strcmp(name, tch__cas_stub_field_names[f]) == 0)
            return f;
    return -1;
}

int tch_stub_rules_from_json(const json_t *request, tch_stub_rules **out, tch_error *err) {
    *out = NULL;
    if (!json_is_object(request))
        return tch_error_set(err, TCH_EINVAL, "request: expected an object");
    tch_stub_rules *rs = calloc(1, sizeof *rs);
    if (!rs)
        return tch_error_set(err, TCH_ENOMEM, "request: out of memory");
    rs->src = json_incref((json_t *)request);
    const char *key;
    const json_t *v;
    int rc = 0;
    json_object_foreach((json_t *)request, key, v) {
        int f = tch__cas_stub_field_of(key);
        if (f < 0) {
            if (!strcmp(key, "hostPort") || !strcmp(key, "knownPeers") ||
                !strcmp(key, "headersDecoded") || !strcmp(key, "bodyDecoded"))
                continue; /* recorded, never matched */
            rc = tch_error_set(err, TCH_EINVAL,
                               "request: unknown field '%.64s' (serviceName, endpoint, argScheme, "
                               "headers, body, transportHeaders)",
                               key);
            break;
        }
        field_rules *fr = &rs->f[f];
        fr->set = true;
        if (json_is_null(v)) {
            fr->set = false;
            continue;
        }
        if (f == SF_SCHEME && !json_is_object(v))
            rc = parse_scheme_exact(&fr->whole, v, err);
        else if (f == SF_THEADERS && json_is_array(v))
            rc = theaders_list(&fr->whole, v, err);
        else if ((f == SF_HEADERS || f == SF_THEADERS) && is_per_name(v))
            rc = parse_named(fr, v, key, err);
        else
            rc = parse_rule(v, &fr->whole, key, 0, err);
        if (rc)
            break;
    }
    if (rc) {
        tch_stub_rules_free(rs);
        return rc;
    }
    *out = rs;
    return 0;
}

/* transportHeaders as a list of {key, value}: every one must be there. */
static int theaders_list(rule *r, const json_t *list, tch_error *err) {
    r->kind = RK_EQUAL_TO;
    size_t i;
    const json_t *item;
    json_array_foreach(list, i, item) {
        if (!json_is_string(json_object_get(item, "key")) ||
            !json_is_string(json_object_get(item, "value")))
            return tch_error_set(err, TCH_EINVAL,
                                 "transportHeaders[%zu]: expected {key: STRING, value: STRING}", i);
    }
    json_t *obj = json_object();
    json_array_foreach(list, i, item) json_object_set(obj, json_string_value(json_object_get(item, "key")),
                                                      json_object_get(item, "value"));
    r->value = obj;
    return obj ? 0 : TCH_ENOMEM;
}

json_t *tch_stub_rules_to_json(const tch_stub_rules *rs) {
    return rs && rs->src ? json_deep_copy(rs->src) : json_object();
}

bool tch__cas_rules_has(const tch_stub_rules *rs, int f) { return rs && rs->f[f].set; }

const json_t *tch__cas_rules_src(const tch_stub_rules *rs, int f) {
    return rs && rs->src ? json_object_get(rs->src, tch__cas_stub_field_names[f]) : NULL;
}

/* An exact rule for field f from a request's bytes (a recording, or a
 * cassette stub's plain field). */
int tch__cas_rules_add_exact(tch_stub_rules **rsp, int f, const tch_cassette_request *r) {
    if (!*rsp && !(*rsp = calloc(1, sizeof **rsp)))
        return TCH_ENOMEM;
    field_rules *fr = &(*rsp)->f[f];
    rule_clear(&fr->whole);
    fr->set = true;
    rule *x = &fr->whole;
    x->kind = RK_EXACT;
    tch_slice s = TCH_SLICE_NULL;
    switch (f) {
    case SF_SERVICE: s = tch_buf_slice(&r->service); break;
    case SF_ENDPOINT: s = tch_buf_slice(&r->endpoint); break;
    case SF_SCHEME: {
        static const char *const names[] = {"raw", "json", "thrift"};
        s = tch_slice_cstr(names[(unsigned)r->scheme < 3 ? r->scheme : 0]);
        break;
    }
    case SF_HEADERS: s = tch_buf_slice(&r->headers); break;
    case SF_BODY: s = tch_buf_slice(&r->body); break;
    case SF_THEADERS: {
        json_t *obj = json_object();
        for (size_t i = 0; obj && i < r->n_transport_headers; i++) {
            char *k = tch_slice_strdup(tch_buf_slice(&r->transport_headers[i].key));
            json_object_set_new(obj, k ? k : "",
                                json_stringn((const char *)r->transport_headers[i].value.ptr,
                                             r->transport_headers[i].value.len));
            free(k);
        }
        x->kind = RK_EQUAL_TO;
        x->value = obj;
        return obj ? 0 : TCH_ENOMEM;
    }
    }
    if (tch__cas_buf_set(&x->text, s))
        return TCH_ENOMEM;
    if (f == SF_HEADERS || f == SF_BODY) {
        x->value = parse_json_text(s);
        if (!x->value && f == SF_HEADERS && r->scheme == TCH_CASSETTE_THRIFT) {
            char *t = tch__cas_thrift_headers_json(s, true, true);
            x->value = t ? parse_json_text(tch_slice_cstr(t)) : NULL;
            free(t);
        }
        if (!x->value && s.len == 0 && r->scheme == TCH_CASSETTE_JSON)
            x->value = f == SF_HEADERS ? json_object() : json_null();
        x->thrift_body = f == SF_BODY && r->scheme == TCH_CASSETTE_THRIFT;
    }
    return 0;
}

/* ---- views of a request ------------------------------------------------- */

void tch__cas_view_init(cas_view *v, const tch_cassette_request *r, const tch_stub_idl *idl) {
    memset(v, 0, sizeof *v);
    v->r = r;
    if (idl)
        v->idl = *idl;
}

void tch__cas_view_free(cas_view *v) {
    json_decref(v->json[0]);
    json_decref(v->json[1]);
    free(v->text[0]);
    free(v->text[1]);
    memset(v, 0, sizeof *v);
}

static const tch_thrift_method *view_method(const cas_view *v, const tch_cassette_request *r) {
    const tch_thrift_method *m = tch_cassette_thrift_method(
        v->idl.thrift, tch_buf_slice(&r->service), tch_buf_slice(&r->endpoint));
    return m ? m : tch__cas_idl_method(v->idl.idl, tch_buf_slice(&r->endpoint));
}

static void drop_tracing(json_t *obj) {
    const char *key;
    json_t *val;
    void *tmp;
    json_object_foreach_safe(obj, tmp, key, val) {
        (void)val;
        if (strncmp(key, TRACING_PREFIX, sizeof TRACING_PREFIX - 1) == 0)
            json_object_del(obj, key);
    }
}

/* headers (0) or body (1) as JSON: JSON text, thrift headers, or a thrift
 * body decoded with the IDL; NULL when it does not read as any. */
const json_t *tch__cas_view_json(cas_view *v, int which) {
    if (v->done[which])
        return v->json[which];
    v->done[which] = true;
    const tch_cassette_request *r = v->r;
    tch_slice s = which ? tch_buf_slice(&r->body) : tch_buf_slice(&r->headers);
    json_t *j = NULL;
    if (r->scheme == TCH_CASSETTE_THRIFT && which == 0) {
        char *t = tch__cas_thrift_headers_json(s, true, true);
        j = t ? parse_json_text(tch_slice_cstr(t)) : NULL;
        free(t);
        if (!j && s.len == 0)
            j = json_object();
    } else if (r->scheme == TCH_CASSETTE_THRIFT) {
        const tch_thrift_method *m = view_method(v, r);
        if (m && tch_thrift_method_args_to_json(m, s, &j, NULL) != 0)
            j = NULL;
    } else {
        j = parse_json_text(s);
        if (!j && s.len == 0 && r->scheme == TCH_CASSETTE_JSON)
            j = which ? json_null() : json_object();
        if (j && which == 0 && json_is_null(j)) {
            json_decref(j);
            j = json_object();
        }
    }
    if (j && which == 0 && json_is_object(j))
        drop_tracing(j);
    v->json[which] = j;
    return j;
}

/* The text string rules see: the bytes, or a thrift body's JSON text. */
static tch_slice view_text(cas_view *v, int which) {
    const tch_cassette_request *r = v->r;
    tch_slice s = which ? tch_buf_slice(&r->body) : tch_buf_slice(&r->headers);
    if (r->scheme != TCH_CASSETTE_THRIFT)
        return s;
    if (!v->text[which]) {
        const json_t *j = tch__cas_view_json(v, which);
        v->text[which] = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
    }
    return v->text[which] ? tch_slice_cstr(v->text[which]) : s;
}

/* ---- evaluating ---------------------------------------------------------- */

/* A value a rule looks at: its text, and its JSON when it reads as JSON. */
typedef struct val {
    bool present;
    tch_slice text;
    const json_t *json;
    const cas_view *view; /* for a recorded thrift body */
} val;

#define SHOW 60

static void show_slice(tch_slice s, char *out, size_t n) {
    char p[SHOW * 4 + 8];
    tch__cas_preview(s, 0, SHOW, p, sizeof p);
    snprintf(out, n, "\"%s\"", p);
}

static void show_json_v(const json_t *j, char *out, size_t n) {
    if (!j) {
        snprintf(out, n, "(absent)");
        return;
    }
    char *t = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY | JSON_ENSURE_ASCII);
    snprintf(out, n, "%.*s%s", SHOW, t ? t : "?", t && strlen(t) > SHOW ? "..." : "");
    free(t);
}

static void show_val(const val *v, char *out, size_t n) {
    if (!v->present)
        snprintf(out, n, "(absent)");
    else if (v->json && !json_is_string(v->json))
        show_json_v(v->json, out, n);
    else
        show_slice(v->text, out, n);
}

static bool is_redacted(const json_t *j) {
    return json_is_string(j) && strcmp(json_string_value(j), TCH_STUB_REDACTED) == 0;
}

static bool numbers_equal(const json_t *a, const json_t *b) {
    if (json_is_integer(a) && json_is_integer(b))
        return json_integer_value(a) == json_integer_value(b);
    return json_number_value(a) == json_number_value(b);
}

static void say(char *why, size_t n, const char *label, const char *path, const char *fmt, ...)
    TCH_PRINTF(5, 6);
static void say(char *why, size_t n, const char *label, const char *path, const char *fmt, ...) {
    if (!why || !n)
        return;
    char tail[400];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(tail, sizeof tail, fmt, ap);
    va_end(ap);
    if (len >= (int)sizeof tail) /* two long values: show that the text was cut */
        memcpy(tail + sizeof tail - 4, "...", 4);
    bool show = path && *path && strcmp(path, "$") != 0;
    snprintf(why, n, "%s%s%s: %s", label, show ? " " : "", show ? path : "", tail);
}

/* expected vs actual, expected's "<redacted>" matching anything. */
static bool json_match(const json_t *e, const json_t *a, bool extra, bool order, char *path,
                       size_t plen, const char *label, char *why, size_t whysz) {
    char se[SHOW + 8], sa[SHOW + 8];
    bool ex = why && whysz; /* a lookup's pass asks yes or no: no text is formatted */
    if (is_redacted(e))
        return true;
    if (json_is_number(e) && json_is_number(a) && numbers_equal(e, a))
        return true;
    size_t at = strlen(path);
    if (json_is_object(e) && json_is_object(a)) {
        const char *k;
        const json_t *ev;
        json_object_foreach((json_t *)e, k, ev) {
            if (ex)
                snprintf(path + at, plen - at, ".%s", k);
            const json_t *av = json_object_get(a, k);
            if (!av) {
                if (!ex)
                    return false;
                show_json_v(ev, se, sizeof se);
                say(why, whysz, label, path, "expected %s, got (absent)%s", se, "");
                path[at] = 0;
                return false;
            }
            if (!json_match(ev, av, extra, order, path, plen, label, why, whysz))
                return false;
        }
        path[at] = 0;
        if (!extra && json_object_size(a) > json_object_size(e)) {
            json_object_foreach((json_t *)a, k, ev) {
                if (!json_object_get(e, k)) {
                    if (!ex)
                        return false;
                    snprintf(path + at, plen - at, ".%s", k);
                    show_json_v(ev, sa, sizeof sa);
                    say(why, whysz, label, path, "expected (absent), got %s%s", sa, "");
                    path[at] = 0;
                    return false;
                }
            }
        }
        return true;
    }
    if (json_is_array(e) && json_is_array(a)) {
        size_t ne = json_array_size(e), na = json_array_size(a);
        if (ne > na || (!extra && ne != na)) {
            if (!ex)
                return false;
            char x[32], y[32];
            snprintf(x, sizeof x, "%zu", ne);
            snprintf(y, sizeof y, "%zu", na);
            say(why, whysz, label, path, "expected %s elements, got %s", x, y);
            return false;
        }
        if (!order) {
            for (size_t i = 0; i < ne; i++) {
                if (ex)
                    snprintf(path + at, plen - at, "[%zu]", i);
                if (!json_match(json_array_get(e, i), json_array_get(a, i), extra, order, path,
                                plen, label, why, whysz))
                    return false;
            }
            path[at] = 0;
            return true;
        }
        /* any order: each expected element takes a distinct actual one */
        bool *used = calloc(na ? na : 1, sizeof *used);
        if (!used)
            return false;
        for (size_t i = 0; i < ne; i++) {
            size_t j = 0;
            for (; j < na; j++)
                if (!used[j] && json_match(json_array_get(e, i), json_array_get(a, j), extra,
                                           order, path, plen, label, NULL, 0))
                    break;
            if (j == na) {
                if (!ex) {
                    free(used);
                    return false;
                }
                snprintf(path + at, plen - at, "[%zu]", i);
                show_json_v(json_array_get(e, i), se, sizeof se);
                say(why, whysz, label, path, "expected %s somewhere in the array%s", se, "");
                path[at] = 0;
                free(used);
                return false;
            }
            used[j] = true;
        }
        free(used);
        return true;
    }
    if (json_equal((json_t *)e, (json_t *)a))
        return true;
    if (!ex)
        return false;
    show_json_v(e, se, sizeof se);
    show_json_v(a, sa, sizeof sa);
    say(why, whysz, label, path, "expected %s, got %s", se, sa);
    return false;
}

static bool slice_has(tch_slice hay, tch_slice needle) {
    if (needle.len == 0)
        return true;
    for (size_t i = 0; i + needle.len <= hay.len; i++)
        if (memcmp(hay.ptr + i, needle.ptr, needle.len) == 0)
            return true;
    return false;
}

static bool slice_eq(tch_slice a, tch_slice b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static int eval_rule(const rule *r, const val *v, const char *label, char *path, size_t plen,
                     char *why, size_t whysz);

static int eval_jsonpath(const rule *r, const val *v, const char *label, char *path, size_t plen,
                         char *why, size_t whysz) {
    if (!v->json) {
        say(why, whysz, label, r->path.text, "expected JSON, got %s%s",
            v->present ? "a value that is not JSON" : "(absent)", "");
        return 0;
    }
    const json_t *node = tch__cas_jpath_eval(&r->path, v->json);
    val sub = {.present = node != NULL, .json = node};
    char *own = NULL;
    if (node && json_is_string(node))
        sub.text = tch_slice_of(json_string_value(node), json_string_length(node));
    else if (node) {
        own = json_dumps(node, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        sub.text = own ? tch_slice_cstr(own) : TCH_SLICE_NULL;
    }
    int rc;
    if (!r->sub) {
        rc = node != NULL;
        if (!rc)
            say(why, whysz, label, r->path.text, "expected a value, got (absent)%s%s", "", "");
    } else {
        if (why && whysz)
            snprintf(path, plen, "%s", r->path.text);
        rc = eval_rule(r->sub, &sub, label, path, plen, why, whysz);
    }
    free(own);
    return rc;
}

/* 1 passes, 0 fails (why says how). */
static int eval_rule(const rule *r, const val *v, const char *label, char *path, size_t plen,
                     char *why, size_t whysz) {
    char se[SHOW * 4 + 16], sa[SHOW * 4 + 16];
    bool ex = why && whysz; /* a lookup's pass asks yes or no: no text is formatted */
    if (ex && !path[0] && !strchr(label, '.') && plen > 1) /* a whole body's paths start at $ */
        snprintf(path, plen, "$");
    switch (r->kind) {
    case RK_ANY: return 1;
    case RK_ABSENT:
        if (!v->present || v->text.len == 0)
            return 1;
        if (!ex)
            return 0;
        show_val(v, sa, sizeof sa);
        say(why, whysz, label, path, "expected (absent), got %s%s", sa, "");
        return 0;
    case RK_EXACT: {
        if (!v->present && r->text.len == 0) /* tchannel-python reads a missing field as empty */
            return 1;
        if (v->present && (slice_eq(v->text, tch_buf_slice(&r->text)) ||
                           slice_eq(tch_buf_slice(&r->text), tch_slice_cstr(TCH_STUB_REDACTED))))
            return 1;
        json_t *exp = json_incref(r->value);
        if (!exp && r->thrift_body && v->view && v->view->r->scheme == TCH_CASSETTE_THRIFT) {
            const tch_thrift_method *m = view_method(v->view, v->view->r);
            if (m && tch_thrift_method_args_to_json(m, tch_buf_slice(&r->text), &exp, NULL) != 0)
                exp = NULL;
        }
        if (exp && v->json) {
            int ok = json_match(exp, v->json, false, false, path, plen, label, why, whysz);
            json_decref(exp);
            return ok;
        }
        json_decref(exp);
        if (!ex)
            return 0;
        show_slice(tch_buf_slice(&r->text), se, sizeof se);
        show_val(v, sa, sizeof sa);
        say(why, whysz, label, path, "expected %s, got %s", se, sa);
        return 0;
    }
    case RK_EQUAL_TO:
        if (!json_is_string(r->value)) {
            if (v->json)
                return json_match(r->value, v->json, false, false, path, plen, label, why, whysz);
        } else if (v->present && (slice_eq(v->text, tch_buf_slice(&r->text)) ||
                                  is_redacted(r->value))) {
            return 1;
        }
        if (!ex)
            return 0;
        show_json_v(r->value, se, sizeof se);
        show_val(v, sa, sizeof sa);
        say(why, whysz, label, path, "expected %s, got %s", se, sa);
        return 0;
    case RK_CONTAINS:
        if (v->present && slice_has(v->text, tch_buf_slice(&r->text)))
            return 1;
        if (!ex)
            return 0;
        show_slice(tch_buf_slice(&r->text), se, sizeof se);
        show_val(v, sa, sizeof sa);
        say(why, whysz, label, path, "expected to contain %s, got %s", se, sa);
        return 0;
    case RK_MATCHES: {
        if (v->present && v->text.len > RE_MAX_TEXT) { /* bounds the time regexec takes */
            snprintf(sa, sizeof sa, "%zu bytes", v->text.len);
            say(why, whysz, label, path, "expected to match the regular expression, got %s: "
                "longer than the %s a regular expression is run on", sa, "65536 bytes");
            return 0;
        }
        /* text without the literal start every match has cannot match */
        bool may = v->present && v->text.len >= r->text.len &&
                   (!r->text.len || memcmp(v->text.ptr, r->text.ptr, r->text.len) == 0);
        char small[256], *t = may && v->text.len < sizeof small ? small : NULL;
        if (t && v->text.len)
            memcpy(small, v->text.ptr, v->text.len);
        if (t)
            small[v->text.len] = 0;
        else if (may && !(t = tch_slice_strdup(v->text)))
            return TCH_ENOMEM;
        int ok = t && regexec(&r->re, t, 0, NULL, 0) == 0;
        if (t != small)
            free(t);
        if (ok || !ex)
            return ok;
        show_val(v, sa, sizeof sa);
        say(why, whysz, label, path, "expected to match the regular expression, got %s%s", sa,
            "");
        return 0;
    }
    case RK_EQ_JSON:
        if (!v->json) {
            say(why, whysz, label, path, "expected JSON, got %s%s",
                v->present ? "a value that is not JSON" : "(absent)", "");
            return 0;
        }
        return json_match(r->value, v->json, r->ignore_extra, r->ignore_order, path, plen, label,
                          why, whysz);
    case RK_JSONPATH: return eval_jsonpath(r, v, label, path, plen, why, whysz);
    }
    return 0;
}

static void scalar_val(tch_slice s, val *v) {
    v->present = true;
    v->text = s;
}

/* A named header's value: a member of the JSON headers, or a transport
 * header. */
static int eval_named(const field_rules *fr, int f, cas_view *cv, char *why, size_t whysz,
                      size_t *passed, size_t *total) {
    int all = 1;
    for (size_t i = 0; i < fr->nnamed; i++) {
        const named_rule *nr = &fr->named[i];
        val v = {0};
        char *own = NULL;
        if (f == SF_THEADERS) {
            for (size_t k = 0; k < cv->r->n_transport_headers; k++) {
                const tch_cassette_kv *kv = &cv->r->transport_headers[k];
                if (slice_eq(tch_buf_slice(&kv->key), tch_slice_cstr(nr->name)))
                    scalar_val(tch_buf_slice(&kv->value), &v);
            }
        } else {
            const json_t *obj = tch__cas_view_json(cv, 0);
            const json_t *m = obj ? json_object_get(obj, nr->name) : NULL;
            if (m) {
                v.present = true;
                v.json = m;
                if (json_is_string(m))
                    v.text = tch_slice_of(json_string_value(m), json_string_length(m));
                else if ((own = json_dumps(m, JSON_COMPACT | JSON_ENCODE_ANY)))
                    v.text = tch_slice_cstr(own);
            }
        }
        char label[160] = "", path[256] = "";
        if (all && why && whysz)
            snprintf(label, sizeof label, "%s.%.100s", tch__cas_stub_field_names[f], nr->name);
        int ok = eval_rule(&nr->r, &v, label, path, sizeof path, all ? why : NULL,
                           all ? whysz : 0);
        free(own);
        if (ok < 0)
            return ok;
        ++*total;
        *passed += (size_t)ok;
        all = all && ok;
    }
    return all;
}

static int eval_field(const tch_stub_rules *rs, int f, cas_view *cv, char *why, size_t whysz,
                      size_t *passed, size_t *total) {
    const field_rules *fr = &rs->f[f];
    if (fr->per_name)
        return eval_named(fr, f, cv, why, whysz, passed, total);
    const tch_cassette_request *r = cv->r;
    static const char *const schemes[] = {"raw", "json", "thrift"};
    val v = {.view = cv};
    json_t *own = NULL;
    switch (f) {
    case SF_SERVICE: scalar_val(tch_buf_slice(&r->service), &v); break;
    case SF_ENDPOINT: scalar_val(tch_buf_slice(&r->endpoint), &v); break;
    case SF_SCHEME:
        scalar_val(tch_slice_cstr(schemes[(unsigned)r->scheme < 3 ? r->scheme : 0]), &v);
        break;
    case SF_HEADERS:
    case SF_BODY: {
        int which = f == SF_BODY;
        rkind k = fr->whole.kind;
        scalar_val(view_text(cv, which), &v);
        /* parsed only for rules that read JSON, or to show the value */
        if ((why && whysz) || (k != RK_MATCHES && k != RK_CONTAINS && k != RK_ANY))
            v.json = tch__cas_view_json(cv, which);
        if (f == SF_HEADERS && !r->headers.len)
            v.present = r->scheme == TCH_CASSETTE_JSON || r->scheme == TCH_CASSETTE_THRIFT;
        if (f == SF_HEADERS && v.json && json_object_size(v.json) == 0 &&
            fr->whole.kind == RK_ABSENT)
            v.present = false;
        break;
    }
    case SF_THEADERS: {
        own = json_object();
        for (size_t k = 0; own && k < r->n_transport_headers; k++) {
            char *key = tch_slice_strdup(tch_buf_slice(&r->transport_headers[k].key));
            json_object_set_new(own, key ? key : "",
                                json_stringn((const char *)r->transport_headers[k].value.ptr,
                                             r->transport_headers[k].value.len));
            free(key);
        }
        v.present = r->n_transport_headers > 0;
        v.json = own;
        break;
    }
    }
    char path[256] = "";
    const rule *x = &fr->whole;
    int ok;
    if (f == SF_THEADERS && x->kind == RK_EQUAL_TO && json_is_object(x->value) && own)
        ok = json_match(x->value, own, false, false, path, sizeof path, "transportHeaders", why,
                        whysz) ? 1 : 0;
    else
        ok = eval_rule(x, &v, tch__cas_stub_field_names[f], path, sizeof path, why, whysz);
    json_decref(own);
    if (ok >= 0) {
        ++*total;
        *passed += (size_t)ok;
    }
    return ok;
}

int tch__cas_rules_eval(const tch_stub_rules *rs, cas_view *cv, size_t *passed, size_t *total,
                   char *why, size_t whysz) {
    int all = 1;
    *passed = *total = 0;
    if (why && whysz)
        why[0] = 0;
    for (int f = 0; rs && f < SF_COUNT; f++) {
        if (!rs->f[f].set)
            continue;
        int ok = eval_field(rs, f, cv, all ? why : NULL, all ? whysz : 0, passed, total);
        if (ok < 0)
            return ok;
        all = all && ok;
    }
    return all;
}

int tch__cas_rules_pass(const tch_stub_rules *rs, cas_view *cv) {
    for (int f = 0; rs && f < SF_COUNT; f++) {
        size_t passed = 0, total = 0;
        int ok = rs->f[f].set ? eval_field(rs, f, cv, NULL, 0, &passed, &total) : 1;
        if (ok <= 0) /* the first rule that fails ends it */
            return ok;
    }
    return 1;
}

bool tch__cas_rules_exact_text(const tch_stub_rules *rs, int f, tch_slice *text) {
    const field_rules *fr = rs ? &rs->f[f] : NULL;
    if (!fr || !fr->set || fr->per_name)
        return false;
    const rule *r = &fr->whole;
    bool exact = r->kind == RK_EXACT || (r->kind == RK_EQUAL_TO && json_is_string(r->value));
    *text = tch_buf_slice(&r->text);
    return exact && !slice_eq(*text, tch_slice_cstr(TCH_STUB_REDACTED));
}

tch_slice tch__cas_rules_body_lead(const tch_stub_rules *rs) {
    const field_rules *fr = rs ? &rs->f[SF_BODY] : NULL;
    if (!fr || !fr->set || fr->per_name || fr->whole.kind != RK_MATCHES)
        return TCH_SLICE_NULL;
    return tch_buf_slice(&fr->whole.text);
}

tch_slice tch__cas_view_body_text(cas_view *v) { return view_text(v, 1); }

int tch_stub_rules_match(const tch_stub_rules *rs, const tch_cassette_call *call,
                         const tch_stub_idl *idl, char *why, size_t whysz, tch_error *err) {
    if (!rs || !call)
        return tch_error_set(err, TCH_EINVAL, "tch_stub_rules_match: NULL argument");
    tch_cassette_request req;
    if (tch__cas_request_from_call(NULL, call, &req)) /* no cassette: the C library */
        return tch_error_set(err, TCH_ENOMEM, "matching: out of memory");
    cas_view cv;
    tch__cas_view_init(&cv, &req, idl);
    size_t passed, total;
    int rc = tch__cas_rules_eval(rs, &cv, &passed, &total, why, whysz);
    tch__cas_view_free(&cv);
    tch__cas_request_free(NULL, &req);
    return rc < 0 ? tch_error_set(err, rc, "matching: %s", tch_strerror(rc)) : rc;
}

/* A recorded value holding the redaction placeholder: such an interaction
 * is matched by rules, not by its hash. */
bool tch__cas_request_has_redacted(const tch_cassette_request *r) {
    tch_slice p = tch_slice_cstr(TCH_STUB_REDACTED);
    if (slice_has(tch_buf_slice(&r->headers), p) || slice_has(tch_buf_slice(&r->body), p) ||
        slice_eq(tch_buf_slice(&r->service), p) || slice_eq(tch_buf_slice(&r->endpoint), p))
        return true;
    for (size_t i = 0; i < r->n_transport_headers; i++)
        if (slice_eq(tch_buf_slice(&r->transport_headers[i].value), p))
            return true;
    return false;
}
