#include "vcr_calls.h"

#include "loop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BOUND_MS 3000

void tch_test_broken(tch_test_outcome *o, const char *what, int detail) {
    if (!o->why[0])
        snprintf(o->why, sizeof o->why, "step %d: %s (%d)", o->steps, what, detail);
}

int tch_test_step_failed(tch_test_outcome *o, int code) {
    o->failed_at = o->steps;
    o->code = code;
    if (code >= 0)
        tch_test_broken(o, "a failing step returned no error code", code);
    return code;
}

void tch_test_echo(tch_inbound *in, void *ud) {
    (void)ud;
    char body[64];
    snprintf(body, sizeof body, "echo:%.*s", (int)tch_inbound_arg3(in).len,
             (const char *)tch_inbound_arg3(in).ptr);
    tch_inbound_respond(in, 0, tch_inbound_arg2(in), tch_slice_cstr(body));
}

void tch_test_json_echo(tch_inbound *in, const json_t *h, const json_t *b, void *ud) {
    (void)ud;
    tch_json_respond(in, 0, h, b);
}

void tch_test_get_value(tch_thrift_inbound *call, void *ud) {
    (void)ud;
    tch_slice key = tch_thrift_value_bytes(tch_thrift_inbound_arg(call, "key"));
    char val[64];
    snprintf(val, sizeof val, "v:%.*s", (int)key.len, (const char *)key.ptr);
    tch_thrift_value *v = tch_thrift_value_new_string(tch_slice_cstr(val));
    if (v)
        tch_thrift_respond(call, v, NULL, 0);
    else
        tch_thrift_respond_error(call, TCH_PCODE_UNEXPECTED, "out of memory");
    tch_thrift_value_free(v);
}

static void on_result(const tch_response *res, void *ud) {
    tch_test_result *r = ud;
    r->done++;
    r->status = res->status;
    if (res->status == 0)
        snprintf(r->body, sizeof r->body, "%.*s", (int)res->arg3.len,
                 (const char *)res->arg3.ptr);
}

static void on_json(const tch_json_response *res, void *ud) {
    tch_test_result *r = ud;
    r->done++;
    r->status = res->status;
    char *t = res->status == 0 && res->body ? json_dumps(res->body, JSON_COMPACT) : NULL;
    snprintf(r->body, sizeof r->body, "%s", t ? t : "");
    free(t);
}

static void on_thrift(const tch_thrift_response *res, void *ud) {
    tch_test_result *r = ud;
    r->done++;
    r->status = res->status;
    if (res->status == 0 && res->outcome.value) {
        tch_slice b = tch_thrift_value_bytes(res->outcome.value);
        snprintf(r->body, sizeof r->body, "%.*s", (int)b.len, (const char *)b.ptr);
    }
}

/* Waits for a started call; 0 when its answer is the expected one. */
static int await(tch_channel *ch, tch_test_outcome *o, tch_test_result *r, const char *want,
                 const char *what) {
    if (!tch_test_run_until(tch_channel_base(ch), &r->done, BOUND_MS)) {
        tch_test_broken(o, what, 0);
        return -1000;
    }
    if (r->status == 0 && strcmp(r->body, want) != 0)
        tch_test_broken(o, "a call succeeded without the expected answer", 0);
    return r->status;
}

static int call_raw(tch_channel *ch, const char *hp, tch_test_outcome *o, tch_test_result *r) {
    tch_call_opts opts = {.service = "server", .endpoint = tch_slice_cstr("echo"),
                          .arg2 = tch_slice_cstr("h"), .arg3 = tch_slice_cstr(TCH_TEST_BODY),
                          .host_port = hp, .timeout_ms = 1000,
                          .retry_limit = TCH_RETRY_LIMIT_NONE};
    int rc = tch_channel_call(ch, &opts, on_result, r, NULL);
    return rc ? rc : await(ch, o, r, TCH_TEST_ECHOED, "the raw call's callback never ran");
}

static int call_json(tch_channel *ch, const char *hp, tch_test_outcome *o, tch_test_result *r) {
    tch_call_opts opts = {.service = "server", .endpoint = tch_slice_cstr("json_echo"),
                          .host_port = hp, .timeout_ms = 1000,
                          .retry_limit = TCH_RETRY_LIMIT_NONE};
    json_t *b = json_loads(TCH_TEST_JSON_BODY, 0, NULL), *h = json_object();
    int rc = b && h ? tch_json_call(ch, &opts, h, b, on_json, r, NULL) : TCH_ENOMEM;
    json_decref(b);
    json_decref(h);
    return rc ? rc : await(ch, o, r, TCH_TEST_JSON_BODY, "the JSON call's callback never ran");
}

static int call_thrift(tch_channel *ch, const char *hp, const tch_thrift_idl *idl,
                       tch_test_outcome *o, tch_test_result *r) {
    tch_call_opts opts = {.service = "server", .host_port = hp, .timeout_ms = 1000,
                          .retry_limit = TCH_RETRY_LIMIT_NONE};
    tch_thrift_value *args = tch_thrift_value_new_struct();
    int rc = args ? tch_thrift_value_struct_set_take(
                        args, 1, tch_thrift_value_new_string(tch_slice_cstr("k")))
                  : TCH_ENOMEM;
    if (!rc)
        rc = tch_thrift_call(ch, &opts, tch_thrift_idl_find_service(idl, "KeyValue"),
                             "getValue", args, NULL, 0, on_thrift, r, NULL);
    tch_thrift_value_free(args);
    return rc ? rc : await(ch, o, r, "v:k", "the Thrift call's callback never ran");
}

int tch_test_calls_through_vcr(struct event_base *base, const tch_allocator *alloc,
                               const char *hp, const tch_thrift_idl *idl, const char *path,
                               tch_cassette_mode mode, tch_test_outcome *o, tch_channel **ch,
                               tch_vcr **vcr, tch_test_result r[3]) {
    tch_channel_options co = {.allocator = alloc};
    *vcr = NULL;
    o->steps++;
    int rc = tch_channel_new(base, "client", &co, ch, NULL);
    if (rc)
        return tch_test_step_failed(o, rc);
    tch_vcr_options vo;
    tch_vcr_options_init(&vo);
    vo.idl = idl;
    vo.cassette.mode = mode;
    vo.cassette.no_env_override = 1;
    o->steps++;
    if ((rc = tch_vcr_use_cassette(*ch, path, &vo, vcr, NULL)) != 0)
        return tch_test_step_failed(o, rc);
    o->steps++;
    rc = call_raw(*ch, hp, o, &r[0]);
    if (!rc) {
        o->steps++;
        rc = call_json(*ch, hp, o, &r[1]);
    }
    if (!rc) {
        o->steps++;
        rc = call_thrift(*ch, hp, idl, o, &r[2]);
    }
    return rc ? tch_test_step_failed(o, rc) : 0;
}

int tch_test_cassette_holds_calls(const char *path) {
    tch_cassette_options co;
    tch_cassette_options_init(&co);
    co.mode = TCH_CASSETTE_NONE;
    co.no_env_override = 1;
    tch_cassette *c = NULL;
    int ok = 0;
    if (tch_cassette_open(path, &co, &c, NULL) == 0) {
        const tch_cassette_interaction *it =
            tch_cassette_count(c) == 3 ? tch_cassette_get(c, 0) : NULL;
        const tch_cassette_interaction *js = it ? tch_cassette_get(c, 1) : NULL;
        const tch_cassette_interaction *th = it ? tch_cassette_get(c, 2) : NULL;
        ok = it && !it->is_error && it->response.body.len == strlen(TCH_TEST_ECHOED) &&
             memcmp(it->response.body.ptr, TCH_TEST_ECHOED, strlen(TCH_TEST_ECHOED)) == 0 &&
             js && !js->is_error && js->request.scheme == TCH_CASSETTE_JSON &&
             js->response.body.len > 0 && th && !th->is_error &&
             th->request.scheme == TCH_CASSETTE_THRIFT && th->response.body.len > 0;
        tch_cassette_free(c);
    }
    return ok;
}

void tch_test_remove_cassette(const char *path) {
    char p[512];
    unlink(path);
    snprintf(p, sizeof p, "%s.journal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s.lock", path);
    unlink(p);
}
