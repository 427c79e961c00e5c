/* The json arg scheme over the channel's raw calls. */
#include <tchannel/json.h>

#include "scheme.h"

#include "alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    const tch_allocator *alloc; /* the channel's, which outlives it */
    tch_json_handler_cb fn;
    void *ud;
} json_endpoint;

static void json_endpoint_free(void *ud) {
    json_endpoint *ep = ud;
    tch__free(ep->alloc, ep);
}

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
    const tch_allocator *a = tch_channel_allocator(ch);
    json_endpoint *ep = tch__malloc(a, sizeof *ep);
    if (!ep)
        return TCH_ENOMEM;
    ep->alloc = a;
    ep->fn = fn;
    ep->ud = ud;
    return tch_channel_register_with(ch, service, endpoint, on_json_call, ep,
                                     json_endpoint_free);
}

int tch_json_respond(tch_inbound *in, uint8_t code, const json_t *headers,
                     const json_t *body) {
    const tch_allocator *a = tch_inbound_channel(in) ? tch_channel_allocator(tch_inbound_channel(in))
                                                     : NULL; /* done: the answer is dropped */
    tch_buf h = {.alloc = a}, b = {.alloc = a};
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
    const tch_allocator *alloc; /* the channel's, which outlives the call */
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
    tch__free(jc->alloc, jc);
}

int tch_json_call(tch_channel *ch, const tch_call_opts *opts,
                  const json_t *headers, const json_t *body, tch_json_cb cb,
                  void *ud, tch_error *err) {
    if (!cb)
        return tch_error_set(err, TCH_EINVAL, "json call: callback is required");
    if (headers && !json_is_object(headers))
        return tch_error_set(err, TCH_EINVAL, "json call: headers must be a JSON object");
    const tch_allocator *a = tch_channel_allocator(ch);
    tch_buf h = {.alloc = a}, b = {.alloc = a};
    int rc = 0;
    rc = encode_headers(headers, &h, err);
    if (!rc)
        rc = tch_json_encode(body ? body : json_null(), &b, err);
    json_call *jc = rc ? NULL : tch__malloc(a, sizeof *jc);
    if (!rc && !jc)
        rc = tch_error_set(err, TCH_ENOMEM, "out of memory");
    if (!rc) {
        jc->alloc = a;
        jc->cb = cb;
        jc->ud = ud;
        tch_call_opts o = *opts;
        o.arg2 = tch_buf_slice(&h);
        o.arg3 = tch_buf_slice(&b);
        o.arg_scheme = "json";
        rc = tch_channel_call(ch, &o, on_json_response, jc, err); /* copies args */
        if (rc)
            tch__free(a, jc);
    }
    tch_buf_free(&h);
    tch_buf_free(&b);
    return rc;
}
