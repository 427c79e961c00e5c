/* JSON text <-> jansson values as Node reads and writes them: shared by the
 * json arg scheme, the cassette library and tcurl, none of which needs the
 * channel for this (so the cassette library links without it). */
#include <tchannel/json_text.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int has_real(const json_t *v) {
    const char *k;
    json_t *x;
    size_t i;
    switch (json_typeof(v)) {
    case JSON_REAL: return 1;
    case JSON_OBJECT:
        json_object_foreach((json_t *)v, k, x) if (has_real(x)) return 1;
        return 0;
    case JSON_ARRAY:
        json_array_foreach(v, i, x) if (has_real(x)) return 1;
        return 0;
    default: return 0;
    }
}

char *tch_json_dumps(const json_t *v, size_t flags) {
    /* jansson writes reals with 17 digits (0.1 as 0.10000000000000001);
     * take the fewest, 15 or 16, that read back to the same values */
    for (int digits = 15; digits <= 16 && has_real(v); digits++) {
        char *text = json_dumps(v, flags | JSON_REAL_PRECISION(digits));
        json_t *back = text ? json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL) : NULL;
        int same = back && json_equal(back, (json_t *)v);
        json_decref(back);
        if (same)
            return text;
        free(text);
    }
    return json_dumps(v, flags);
}

int tch_json_encode(const json_t *v, tch_buf *out, tch_error *err) {
    char *text = tch_json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        return tch_error_set(err, TCH_EINVAL, "json: value cannot be encoded");
    int rc = tch_buf_append(out, text, strlen(text));
    free(text);
    return rc ? tch_error_set(err, rc, "out of memory") : 0;
}

/* As JSON.parse reads it: "\u0000" inside strings is valid JSON, and an
 * integer beyond 64 bits is a number (a double, as Node's). */
static json_t *load_as_node(const char *text, size_t len, json_error_t *je) {
    const size_t flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;
    json_t *v = json_loadb(text, len, flags, je);
    if (!v && json_error_code(je) == json_error_numeric_overflow)
        v = json_loadb(text, len, flags | JSON_DECODE_INT_AS_REAL, je);
    return v;
}

static long hex4(const char *p) {
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int c = (unsigned char)p[i], lc = c | 0x20;
        int d = c >= '0' && c <= '9' ? c - '0' : lc >= 'a' && lc <= 'f' ? lc - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* JSON.stringify writes a lone UTF-16 surrogate (a JS string cut inside a
 * pair) as its escape, which jansson refuses and Node reads. In a copy,
 * each becomes \uFFFD, what Node's UTF-8 makes of it. NULL when there is
 * none (or out of memory). */
static char *without_lone_surrogates(tch_slice in) {
    char *t = malloc(in.len ? in.len : 1);
    int changed = 0;
    if (!t)
        return NULL;
    memcpy(t, in.ptr, in.len);
    for (size_t i = 0; i + 1 < in.len; i++) {
        if (t[i] != '\\')
            continue;
        if (t[i + 1] != 'u' || i + 6 > in.len) { /* another escape: skip its character */
            i++;
            continue;
        }
        long v = hex4(t + i + 2);
        int high = v >= 0xd800 && v < 0xdc00, low = v >= 0xdc00 && v < 0xe000;
        long next = i + 12 <= in.len && t[i + 6] == '\\' && t[i + 7] == 'u' ? hex4(t + i + 8) : -1;
        if (high && next >= 0xdc00 && next < 0xe000) { /* a pair */
            i += 11;
            continue;
        }
        if (high || low) {
            memcpy(t + i + 2, "FFFD", 4);
            changed = 1;
        }
        i += 5;
    }
    if (!changed) {
        free(t);
        return NULL;
    }
    return t;
}

int tch_json_decode(tch_slice in, const char *what, json_t *empty_default,
                    json_t **out, tch_error *err) {
    *out = NULL;
    if (in.len == 0) {
        if (!empty_default)
            return tch_error_set(err, TCH_EPARSE, "%s: empty, expected JSON", what);
        *out = json_incref(empty_default);
        return 0;
    }
    json_error_t je;
    *out = load_as_node((const char *)in.ptr, in.len, &je);
    char *fixed = !*out && strstr(je.text, "invalid Unicode") ? without_lone_surrogates(in) : NULL;
    if (fixed) { /* same length: a later error's position still holds */
        *out = load_as_node(fixed, in.len, &je);
        free(fixed);
    }
    if (!*out)
        return tch_error_set(err, TCH_EPARSE, "%s is not valid JSON: %s at line %d column %d",
                             what, je.text, je.line, je.column);
    return 0;
}
