/* tchannel-python's own cassettes (py2 and py3 styles, written by hand from
 * its format) replay through a channel with the VCR: no server anywhere. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <tchannel/channel.h>
#include <tchannel/json.h>
#include <tchannel/thrift.h>
#include <tchannel/vcr.h>

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loop.h"
#include "result.h"

#define FIXTURES TCH_SOURCE_DIR "/tests/fixtures/cassettes/"

typedef struct fixture {
    struct event_base *base;
    tch_channel *ch;
    tch_vcr *vcr;
} fixture;

static fixture *open_fixture(const char *name) {
    fixture *f = calloc(1, sizeof *f);
    f->base = event_base_new();
    tch_channel_new(f->base, "client", NULL, &f->ch, NULL);
    tch_vcr_options o;
    tch_vcr_options_init(&o);
    o.cassette.mode = TCH_CASSETTE_NONE; /* replay only: nothing is written */
    o.cassette.no_env_override = 1;
    char path[512];
    snprintf(path, sizeof path, FIXTURES "%s", name);
    tch_error err;
    if (tch_vcr_use_cassette(f->ch, path, &o, &f->vcr, &err) != 0)
        fail_msg("%s", err.msg);
    return f;
}

static void close_fixture(fixture *f) {
    tch_error err;
    assert_true(tch_cassette_all_played(tch_vcr_cassette(f->vcr)));
    if (tch_vcr_eject(f->vcr, &err) != 0)
        fail_msg("%s", err.msg);
    tch_channel_free(f->ch);
    event_base_free(f->base);
    free(f);
}

static result call(fixture *f, const char *service, const char *endpoint, const char *as,
                   tch_slice arg2, tch_slice arg3) {
    result r = {0};
    tch_call_opts o = {.service = service, .endpoint = tch_slice_cstr(endpoint),
                       .arg2 = arg2, .arg3 = arg3, .arg_scheme = as,
                       .host_port = "127.0.0.1:9", /* hostPort is not matched */
                       .timeout_ms = 1000};
    tch_error err;
    if (tch_channel_call(f->ch, &o, on_result, &r, &err) != 0)
        fail_msg("%s", err.msg);
    assert_true(tch_test_run_until(f->base, &r.done, 2000));
    if (r.status != 0)
        fail_msg("%s::%s: %s", service, endpoint, r.message);
    return r;
}

static void expect_body(result *r, const void *bytes, size_t len) {
    assert_int_equal(r->arg3.len, len);
    assert_memory_equal(r->arg3.ptr, bytes, len);
    result_free(r);
}

static void py2_cassette_replays(void **state) {
    (void)state;
    fixture *f = open_fixture("py2.yaml");
    /* json: !!python/unicode scalars; the $tracing$ header differs and is ignored */
    result r = call(f, "hello_service", "hello", "json",
                    tch_slice_cstr("{\"$tracing$uber-trace-id\": \"another-trace\"}"),
                    tch_slice_cstr("\"world\""));
    expect_body(&r, "\"world\"", 7);
    /* raw: !!python/str "caf\xE9" is the UTF-8 bytes of "café" */
    r = call(f, "keyvalue-server", "echo", "raw", TCH_SLICE_NULL,
             tch_slice_cstr("caf\xc3\xa9"));
    expect_body(&r, "caf\xc3\xa9", 5);
    /* thrift: headers as a map (other order, other trace id), body exact */
    tch_kv hs[2] = {
        {tch_slice_cstr("user"), tch_slice_cstr("alice")},
        {tch_slice_cstr("$tracing$uber-trace-id"), tch_slice_cstr("zzz:yyy:0:1")}};
    tch_buf arg2 = {0};
    assert_int_equal(tch_thrift_headers_encode(hs, 2, &arg2, NULL), 0);
    static const uint8_t get_foo[] = {0x0b, 0x00, 0x01, 0x00, 0x00, 0x00, 0x03, 'f', 'o', 'o', 0x00};
    r = call(f, "keyvalue-server", "KeyValue::getValue", "thrift", tch_buf_slice(&arg2),
             tch_slice_of(get_foo, sizeof get_foo));
    static const uint8_t success_bar[] = {0x0b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 'b', 'a', 'r', 0x00};
    expect_body(&r, success_bar, sizeof success_bar);
    tch_buf_free(&arg2);
    close_fixture(f);
}

static void py3_cassette_replays(void **state) {
    (void)state;
    fixture *f = open_fixture("py3.yaml");
    /* JSON compares by value: other key order and spacing still match */
    result r = call(f, "keyvalue-server", "json_echo", "json", tch_slice_cstr("{}"),
                    tch_slice_cstr("{\"value\":\"bar\",\"key\":\"foo\"}"));
    expect_body(&r, "{\"key\": \"foo\", \"value\": \"bar\"}", 30);
    uint8_t bytes[37];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (uint8_t)(i * 7);
    r = call(f, "keyvalue-server", "echo", "raw", TCH_SLICE_NULL,
             tch_slice_of(bytes, sizeof bytes));
    expect_body(&r, bytes, sizeof bytes);
    close_fixture(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(py2_cassette_replays),
        cmocka_unit_test(py3_cassette_replays),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
