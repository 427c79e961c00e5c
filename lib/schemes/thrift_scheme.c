/* The thrift arg scheme over the channel's raw calls, using the run-time
 * IDL and binary codec of lib/thrift. */
#include <tchannel/thrift_scheme.h>

#include "scheme.h"

#include "alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- serving ---------------------------------------------------------- */

typedef struct thrift_endpoint {
    const tch_allocator *alloc; /* the channel's, which outlives it */
    const tch_thrift_method *method;
    tch_thrift_handler_cb fn;
    void *ud;
} thrift_endpoint;

/* args and headers are lib/thrift's (the C library); the struct is the
 * channel's allocator's, copied: it may be answered after the channel is
 * freed, as its inbound may. */
struct tch_thrift_inbound {
    tch_inbound *in;
    const tch_thrift_method *method;
    tch_thrift_value *args;
    tch_kv *headers;
    size_t nheaders;
    const tch_allocator *alloc; /* NULL or &alloc_copy */
    tch_allocator alloc_copy;
};

static void thrift_inbound_free(tch_thrift_inbound *ti) {
    tch_thrift_value_free(ti->args);
    free(ti->headers);
    tch__free_self(ti->alloc, ti);
}

static void thrift_endpoint_free(void *ud) {
    thrift_endpoint *ep = ud;
    tch__free(ep->alloc, ep);
}

static void on_thrift_call(tch_inbound *in, void *ud) {
    thrift_endpoint *ep = ud;
    if (tch__scheme_check_as(in, "thrift") != 0)
        return;
    const tch_allocator *a = tch_channel_allocator(tch_inbound_channel(in));
    tch_thrift_inbound *ti = tch__calloc(a, 1, sizeof *ti);
    if (!ti) {
        tch_inbound_respond_error(in, TCH_PCODE_BUSY, "server out of memory");
        return;
    }
    ti->alloc = tch__alloc_keep(&ti->alloc_copy, a);
    ti->in = in;
    ti->method = ep->method;
    tch_error err;
    if (tch_thrift_headers_decode(tch_inbound_arg2(in), &ti->headers, &ti->nheaders, &err) != 0) {
        tch_error_wrap(&err, "arg2 (headers)");
        goto bad;
    }
    if (tch_thrift_decode(tch_thrift_method_args(ep->method), tch_inbound_arg3(in),
                          &ti->args, &err) != 0) {
        tch_error_wrap(&err, "arg3 (args)");
        goto bad;
    }
    ep->fn(ti, ep->ud);
    return;
bad:
    tch__scheme_bad_request(in, err.msg);
    thrift_inbound_free(ti);
}

int tch_thrift_register(tch_channel *ch, const char *service,
                        const tch_thrift_service *svc, const char *method,
                        tch_thrift_handler_cb fn, void *ud) {
    const tch_thrift_method *m = svc ? tch_thrift_service_find_method(svc, method) : NULL;
    if (!m || !fn || tch_thrift_method_check_supported(m, NULL) != 0)
        return m ? TCH_EINVAL : TCH_ENOTFOUND;
    const tch_allocator *a = tch_channel_allocator(ch);
    tch_buf arg1 = {.alloc = a};
    if (tch_thrift_arg1_join(tch_thrift_service_name(svc), method, &arg1, NULL) != 0 ||
        tch_buf_append(&arg1, "", 1) != 0) {
        tch_buf_free(&arg1);
        return TCH_ENOMEM;
    }
    thrift_endpoint *ep = tch__malloc(a, sizeof *ep);
    int rc = TCH_ENOMEM;
    if (ep) {
        ep->alloc = a;
        ep->method = m;
        ep->fn = fn;
        ep->ud = ud;
        rc = tch_channel_register_with(ch, service, (const char *)arg1.ptr,
                                       on_thrift_call, ep, thrift_endpoint_free);
    }
    tch_buf_free(&arg1);
    return rc;
}

const tch_thrift_method *tch_thrift_inbound_method(const tch_thrift_inbound *ti) { return ti->method; }
const tch_thrift_value *tch_thrift_inbound_args(const tch_thrift_inbound *ti) { return ti->args; }
size_t tch_thrift_inbound_header_count(const tch_thrift_inbound *ti) { return ti->nheaders; }
tch_inbound *tch_thrift_inbound_raw(tch_thrift_inbound *ti) { return ti->in; }

tch_kv tch_thrift_inbound_header_at(const tch_thrift_inbound *ti, size_t i) {
    tch_kv none = {TCH_SLICE_NULL, TCH_SLICE_NULL};
    return i < ti->nheaders ? ti->headers[i] : none;
}

const tch_thrift_value *tch_thrift_inbound_arg(const tch_thrift_inbound *ti, const char *name) {
    const tch_thrift_field *f =
        tch_thrift_struct_field_by_name(tch_thrift_method_args(ti->method), name);
    return f ? tch_thrift_value_struct_get(ti->args, tch_thrift_field_id(f)) : NULL;
}

/* Encodes the result struct with `v` at `field` (NULL field: void success)
 * and answers with code. */
static int respond_result(tch_thrift_inbound *ti, uint8_t code, const tch_thrift_field *field,
                          const tch_thrift_value *v, const tch_kv *headers,
                          size_t nheaders) {
    tch_error err;
    tch_buf h = {.alloc = ti->alloc}, body = {.alloc = ti->alloc};
    tch_thrift_value *result = tch_thrift_value_new_struct();
    tch_thrift_value *copy = v ? tch_thrift_value_copy(v) : NULL;
    int rc = result && (!v || copy) ? 0 : tch_error_set(&err, TCH_ENOMEM, "out of memory");
    if (!rc && field) {
        rc = tch_thrift_value_struct_set_take(result, tch_thrift_field_id(field), copy);
        copy = NULL;
        if (rc)
            tch_error_set(&err, rc, "out of memory");
    }
    if (!rc)
        rc = tch_thrift_headers_encode(headers, nheaders, &h, &err);
    if (!rc)
        rc = tch_thrift_encode(tch_thrift_method_result(ti->method), result, &body, &err);
    if (rc)
        tch_inbound_respond_error(ti->in, TCH_PCODE_UNEXPECTED, err.msg);
    else
        rc = tch_inbound_respond(ti->in, code, tch_buf_slice(&h), tch_buf_slice(&body));
    tch_thrift_value_free(copy);
    tch_thrift_value_free(result);
    tch_buf_free(&h);
    tch_buf_free(&body);
    thrift_inbound_free(ti);
    return rc;
}

int tch_thrift_respond(tch_thrift_inbound *ti, const tch_thrift_value *v,
                       const tch_kv *headers, size_t nheaders) {
    const tch_thrift_field *success =
        tch_thrift_struct_field_by_id(tch_thrift_method_result(ti->method), 0);
    if (success && !v) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s returned no value but is not void",
                 tch_thrift_method_name(ti->method));
        tch_inbound_respond_error(ti->in, TCH_PCODE_UNEXPECTED, msg);
        thrift_inbound_free(ti);
        return TCH_EINVAL;
    }
    return respond_result(ti, 0, success, v, headers, nheaders);
}

int tch_thrift_respond_exception(tch_thrift_inbound *ti, const char *name,
                                 const tch_thrift_value *exc,
                                 const tch_kv *headers, size_t nheaders) {
    const tch_thrift_field *f =
        tch_thrift_struct_field_by_name(tch_thrift_method_result(ti->method), name);
    if (!f || tch_thrift_field_id(f) == 0 || !exc) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s declares no exception named \"%s\"",
                 tch_thrift_method_name(ti->method), name ? name : "");
        tch_inbound_respond_error(ti->in, TCH_PCODE_UNEXPECTED, msg);
        thrift_inbound_free(ti);
        return TCH_EINVAL;
    }
    return respond_result(ti, 1, f, exc, headers, nheaders);
}

int tch_thrift_respond_error(tch_thrift_inbound *ti, uint8_t code, const char *msg) {
    int rc = tch_inbound_respond_error(ti->in, code, msg);
    thrift_inbound_free(ti);
    return rc;
}

/* ---- calling ---------------------------------------------------------- */

typedef struct thrift_call {
    const tch_allocator *alloc; /* the channel's, which outlives the call */
    const tch_thrift_method *method;
    tch_thrift_cb cb;
    void *ud;
} thrift_call;

static void on_thrift_response(const tch_response *res, void *ud) {
    thrift_call *tc = ud;
    tch_thrift_response out = {.status = res->status, .code = res->code,
                               .error_code = res->error_code, .message = res->message};
    tch_thrift_value *result = NULL;
    tch_kv *headers = NULL;
    size_t nheaders = 0;
    tch_error err;
    if (res->status == 0) {
        int rc = tch_thrift_headers_decode(res->arg2, &headers, &nheaders, &err);
        if (rc == 0)
            rc = tch_thrift_decode(tch_thrift_method_result(tc->method), res->arg3, &result, &err);
        /* not ok, and the exception's field unknown to this IDL (skipped by
         * the decoder): a failure, whatever the method returns */
        if (rc == 0 && res->code != 0 && tch_thrift_value_struct_count(result) == 0)
            rc = tch_error_set(&err, TCH_EPROTO,
                               "%s::%s failed (code %u) with an exception this IDL does not declare",
                               tch_thrift_service_name(tch_thrift_method_service(tc->method)),
                               tch_thrift_method_name(tc->method), res->code);
        if (rc == 0)
            rc = tch_thrift_result_classify(tc->method, result, &out.outcome, &err);
        if (rc) {
            out.status = TCH_EPROTO;
            out.error_code = TCH_PCODE_UNEXPECTED;
            tch_error_wrap(&err, "response from %s", res->peer);
            out.message = err.msg;
        } else {
            out.result = result;
            out.headers = headers;
            out.nheaders = nheaders;
        }
    }
    tc->cb(&out, tc->ud);
    tch_thrift_value_free(result);
    free(headers); /* tch_thrift_headers_decode's */
    tch__free(tc->alloc, tc);
}

int tch_thrift_call(tch_channel *ch, const tch_call_opts *opts,
                    const tch_thrift_service *svc, const char *method,
                    const tch_thrift_value *args,
                    const tch_kv *headers, size_t nheaders,
                    tch_thrift_cb cb, void *ud, tch_error *err) {
    const tch_thrift_method *m = svc ? tch_thrift_service_find_method(svc, method) : NULL;
    if (!m)
        return tch_error_set(err, TCH_ENOTFOUND, "thrift call: service %s has no method \"%s\"",
                             svc ? tch_thrift_service_name(svc) : "(null)", method ? method : "");
    if (!cb)
        return tch_error_set(err, TCH_EINVAL, "thrift call: callback is required");
    int rc = tch_thrift_method_check_supported(m, err);
    if (rc)
        return rc;
    const tch_allocator *a = tch_channel_allocator(ch);
    tch_buf arg1 = {.alloc = a}, arg2 = {.alloc = a}, arg3 = {.alloc = a};
    thrift_call *tc = NULL;
    rc = tch_thrift_arg1_join(tch_thrift_service_name(svc), method, &arg1, err);
    if (!rc)
        rc = tch_thrift_headers_encode(headers, nheaders, &arg2, err);
    if (!rc)
        rc = tch_thrift_encode(tch_thrift_method_args(m), args, &arg3, err);
    if (!rc && !(tc = tch__malloc(a, sizeof *tc)))
        rc = tch_error_set(err, TCH_ENOMEM, "out of memory");
    if (!rc) {
        tc->alloc = a;
        tc->method = m;
        tc->cb = cb;
        tc->ud = ud;
        tch_call_opts o = *opts;
        o.endpoint = tch_buf_slice(&arg1);
        o.arg2 = tch_buf_slice(&arg2);
        o.arg3 = tch_buf_slice(&arg3);
        o.arg_scheme = "thrift";
        rc = tch_channel_call(ch, &o, on_thrift_response, tc, err);
        if (rc)
            tch__free(a, tc);
    }
    tch_buf_free(&arg1);
    tch_buf_free(&arg2);
    tch_buf_free(&arg3);
    return rc;
}
