/* The json arg scheme over the channel's raw calls. */
#include <tchannel/json.h>

#include "scheme.h"

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

/* Application headers: an object; empty means {}. */
static int decode_headers(tch_slice in, json_t **out, tch_error *err) {
    json_t *empty = json_object();
    int rc = tch_json_decode(in, "arg2 (headers)", empty, out, err);
    json_decref(empty);
    if (rc == 0 && json_is_null(*out)) { /* some peers send "null" for none */
        json_decref(*out);
        *out = json_object();
    }
    if (rc == 0 && !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return tch_error_set(err, TCH_EPARSE, "arg2 (headers) must be a JSON object");
    }
    return rc;
}

/* Headers go out as an object, "{}" when there are none: empty arg2 is
 * valid per the spec, but the Node peer fails to parse it. */
static int encode_headers(const json_t *headers, tch_buf *out, tch_error *err) {
    if (headers)
        return tch_json_encode(headers, out, err);
    return tch_buf_append(out, "{}", 2) ? tch_error_set(err, TCH_ENOMEM, "out of memory") : 0;
}

/* ---- serving ---------------------------------------------------------- */

typedef struct json_endpoint {
    tch_json_handler_cb fn;
    void *ud;
} json_endpoint;

static void on_json_call(tch_inbound *in, void *ud) {
    json_endpoint *ep = ud;
    if (tch__scheme_check_as(in, "json") != 0)
        return;
    json_t *headers = NULL, *body = NULL;
    tch_error err;
    if (decode_headers(tch_inbound_arg2(in), &headers, &err) != 0 ||
        tch_json_decode(tch_inbound_arg3(in), "arg3 (body)", json_null(), &body, &err) != 0) {
        json_decref(headers);
        tch__scheme_bad_request(in, err.msg);
        return;
    }
    ep->fn(in, headers, body, ep->ud);
    json_decref(headers);
    json_decref(body);
}

int tch_json_register(tch_channel *ch, const char *service,
                      const char *endpoint, tch_json_handler_cb fn, void *ud) {
    if (!fn)
        return TCH_EINVAL;
    json_endpoint *ep = malloc(sizeof *ep);
    if (!ep)
        return TCH_ENOMEM;
    ep->fn = fn;
    ep->ud = ud;
    return tch_channel_register_with(ch, service, endpoint, on_json_call, ep, free);
}

int tch_json_respond(tch_inbound *in, uint8_t code, const json_t *headers,
                     const json_t *body) {
    tch_buf h = {0}, b = {0};
    tch_error err;
    int rc = 0;
    if (headers && !json_is_object(headers))
        rc = tch_error_set(&err, TCH_EINVAL, "response headers must be a JSON object");
    if (!rc) /* never empty: the Node peer cannot parse an empty arg2 */
        rc = encode_headers(headers, &h, &err);
    if (!rc)
        rc = tch_json_encode(body ? body : json_null(), &b, &err);
    if (rc) {
        tch_inbound_respond_error(in, TCH_PCODE_UNEXPECTED, err.msg);
    } else {
        rc = tch_inbound_respond(in, code, tch_buf_slice(&h), tch_buf_slice(&b));
    }
    tch_buf_free(&h);
    tch_buf_free(&b);
    return rc;
}

/* ---- calling ---------------------------------------------------------- */

typedef struct json_call {
    tch_json_cb cb;
    void *ud;
} json_call;

static void on_json_response(const tch_response *res, void *ud) {
    json_call *jc = ud;
    tch_json_response out = {.status = res->status, .code = res->code,
                             .error_code = res->error_code, .message = res->message};
    json_t *headers = NULL, *body = NULL;
    tch_error err;
    if (res->status == 0) {
        if (decode_headers(res->arg2, &headers, &err) != 0 ||
            tch_json_decode(res->arg3, "response arg3 (body)", json_null(), &body, &err) != 0) {
            out.status = TCH_EPARSE;
            out.error_code = TCH_PCODE_UNEXPECTED;
            out.message = err.msg;
        } else {
            out.headers = headers;
            out.body = body;
        }
    }
    jc->cb(&out, jc->ud);
    json_decref(headers);
    json_decref(body);
    free(jc);
}

int tch_json_call(tch_channel *ch, const tch_call_opts *opts,
                  const json_t *headers, const json_t *body, tch_json_cb cb,
                  void *ud, tch_error *err) {
    if (!cb)
        return tch_error_set(err, TCH_EINVAL, "json call: callback is required");
    if (headers && !json_is_object(headers))
        return tch_error_set(err, TCH_EINVAL, "json call: headers must be a JSON object");
    tch_buf h = {0}, b = {0};
    int rc = 0;
    rc = encode_headers(headers, &h, err);
    if (!rc)
        rc = tch_json_encode(body ? body : json_null(), &b, err);
    json_call *jc = rc ? NULL : malloc(sizeof *jc);
    if (!rc && !jc)
        rc = tch_error_set(err, TCH_ENOMEM, "out of memory");
    if (!rc) {
        jc->cb = cb;
        jc->ud = ud;
        tch_call_opts o = *opts;
        o.arg2 = tch_buf_slice(&h);
        o.arg3 = tch_buf_slice(&b);
        o.arg_scheme = "json";
        rc = tch_channel_call(ch, &o, on_json_response, jc, err); /* copies args */
        if (rc)
            free(jc);
    }
    tch_buf_free(&h);
    tch_buf_free(&b);
    return rc;
}
