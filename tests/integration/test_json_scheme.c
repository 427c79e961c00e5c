/* The json arg scheme between two channels over 127.0.0.1. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <tchannel/channel.h>
#include <tchannel/json.h>

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loop.h"

typedef struct fixture {
    struct event_base *base;
    tch_channel *server, *client;
    const char *hp;
} fixture;

typedef struct jresult {
    int done, status;
    uint8_t code, error_code;
    char message[512];
    json_t *headers, *body;
} jresult;

typedef struct rresult {
    int done, status;
    uint8_t error_code;
    char message[512];
} rresult;

static void on_json(const tch_json_response *res, void *ud) {
    jresult *r = ud;
    r->done = 1;
    r->status = res->status;
    r->code = res->code;
    r->error_code = res->error_code;
    snprintf(r->message, sizeof r->message, "%s", res->message ? res->message : "");
    r->headers = res->headers ? json_deep_copy(res->headers) : NULL;
    r->body = res->body ? json_deep_copy(res->body) : NULL;
}

static void on_raw(const tch_response *res, void *ud) {
    rresult *r = ud;
    r->done = 1;
    r->status = res->status;
    r->error_code = res->error_code;
    snprintf(r->message, sizeof r->message, "%s", res->message);
}

static void json_echo(tch_inbound *in, const json_t *headers, const json_t *body, void *ud) {
    (void)ud;
    json_t *out = json_pack("{s:O,s:O}", "headers", (json_t *)headers, "body", (json_t *)body);
    tch_json_respond(in, 0, headers, out);
    json_decref(out);
}

static void json_error(tch_inbound *in, const json_t *headers, const json_t *body, void *ud) {
    (void)ud, (void)headers, (void)body;
    json_t *out = json_pack("{s:s}", "message", "it went wrong");
    tch_json_respond(in, 1, NULL, out);
    json_decref(out);
}

static void not_json(tch_inbound *in, void *ud) {
    (void)ud;
    tch_inbound_respond(in, 0, tch_slice_cstr(""), tch_slice_cstr("{oops"));
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->base = event_base_new();
    tch_channel_new(f->base, "server", NULL, &f->server, NULL);
    tch_channel_new(f->base, "client", NULL, &f->client, NULL);
    assert_int_equal(tch_channel_listen(f->server, NULL, NULL), 0);
    f->hp = tch_channel_host_port(f->server);
    assert_int_equal(tch_json_register(f->server, NULL, "json_echo", json_echo, NULL), 0);
    assert_int_equal(tch_json_register(f->server, NULL, "json_error", json_error, NULL), 0);
    tch_channel_register(f->server, NULL, "not_json", not_json, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    tch_channel_free(f->client);
    tch_channel_free(f->server);
    event_base_free(f->base);
    free(f);
    return 0;
}

static jresult jcall(fixture *f, const char *ep, json_t *headers, json_t *body) {
    jresult r = {0};
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr(ep),
                       .host_port = f->hp, .timeout_ms = 2000};
    assert_int_equal(tch_json_call(f->client, &o, headers, body, on_json, &r, NULL), 0);
    assert_true(tch_test_run_until(f->base, &r.done, 3000));
    return r;
}

static void jresult_free(jresult *r) {
    json_decref(r->headers);
    json_decref(r->body);
}

static void echo_returns_headers_and_body(void **state) {
    fixture *f = *state;
    json_t *h = json_pack("{s:s}", "user", "alice");
    json_t *b = json_pack("{s:i,s:[i,i]}", "n", 7, "list", 1, 2);
    jresult r = jcall(f, "json_echo", h, b);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.code, 0);
    assert_true(json_equal(json_object_get(r.body, "headers"), h));
    assert_true(json_equal(json_object_get(r.body, "body"), b));
    assert_string_equal(json_string_value(json_object_get(r.headers, "user")), "alice");
    json_decref(h);
    json_decref(b);
    jresult_free(&r);
}

static void no_headers_and_scalar_body(void **state) {
    fixture *f = *state;
    json_t *b = json_string("just a string");
    jresult r = jcall(f, "json_echo", NULL, b);
    assert_int_equal(r.status, 0);
    assert_true(json_is_object(json_object_get(r.body, "headers")));
    assert_int_equal(json_object_size(json_object_get(r.body, "headers")), 0);
    assert_true(json_equal(json_object_get(r.body, "body"), b));
    json_decref(b);
    jresult_free(&r);
}

static void application_error_has_code_1(void **state) {
    fixture *f = *state;
    jresult r = jcall(f, "json_error", NULL, json_null());
    assert_int_equal(r.status, 0);
    assert_int_equal(r.code, 1);
    assert_string_equal(json_string_value(json_object_get(r.body, "message")), "it went wrong");
    jresult_free(&r);
}

static rresult raw_call(fixture *f, const char *as, const char *arg2, const char *arg3) {
    rresult r = {0};
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("json_echo"),
                       .arg2 = tch_slice_cstr(arg2), .arg3 = tch_slice_cstr(arg3),
                       .host_port = f->hp, .timeout_ms = 2000, .arg_scheme = as};
    assert_int_equal(tch_channel_call(f->client, &o, on_raw, &r, NULL), 0);
    assert_true(tch_test_run_until(f->base, &r.done, 3000));
    return r;
}

static void malformed_request_json_is_bad_request_naming_it(void **state) {
    fixture *f = *state;
    rresult r = raw_call(f, "json", "{}", "{\"a\": tru}");
    assert_int_equal(r.status, TCH_EREMOTE);
    assert_int_equal(r.error_code, TCH_PCODE_BAD_REQUEST);
    assert_non_null(strstr(r.message, "arg3"));
    assert_non_null(strstr(r.message, "column"));
    assert_non_null(strstr(r.message, "json_echo"));
    r = raw_call(f, "json", "[1]", "1");
    assert_int_equal(r.error_code, TCH_PCODE_BAD_REQUEST);
    assert_non_null(strstr(r.message, "object"));
}

/* What JSON.parse reads (a Node client's JSON.stringify writes it) is read:
 * "\u0000" in a string, an integer beyond 64 bits (then a real). */
static void json_that_node_writes_is_read(void **state) {
    fixture *f = *state;
    const char *text = "{\"s\": \"a\\u0000b\", \"big\": 12345678901234567890, \"n\": 1}";
    json_t *v = NULL;
    tch_error err = {0};
    assert_int_equal(tch_json_decode(tch_slice_cstr(text), "body", NULL, &v, &err), 0);
    assert_int_equal(json_string_length(json_object_get(v, "s")), 3);
    assert_memory_equal(json_string_value(json_object_get(v, "s")), "a\0b", 3);
    assert_true(json_is_real(json_object_get(v, "big")));
    assert_true(json_real_value(json_object_get(v, "big")) == 12345678901234567890.0);
    assert_true(json_is_real(json_object_get(v, "n"))); /* the whole text reads as reals */
    json_decref(v);
    assert_int_equal(tch_json_decode(tch_slice_cstr("[1e999]"), "body", NULL, &v, &err), TCH_EPARSE);
    /* JSON.stringify of a string cut inside a surrogate pair; a pair stays */
    const char *cut = "[\"ab\\ud83d\", \"\\ude00x\", \"\\ud83d\\ude00\", \"\\\\ud83d\"]";
    assert_int_equal(tch_json_decode(tch_slice_cstr(cut), "body", NULL, &v, &err), 0);
    assert_string_equal(json_string_value(json_array_get(v, 0)), "ab\xef\xbf\xbd");
    assert_string_equal(json_string_value(json_array_get(v, 1)), "\xef\xbf\xbdx");
    assert_string_equal(json_string_value(json_array_get(v, 2)), "\xf0\x9f\x98\x80");
    assert_string_equal(json_string_value(json_array_get(v, 3)), "\\ud83d"); /* an escaped backslash */
    json_decref(v);
    /* only hex digits are read as such: raw control bytes after \u stay an error */
    const char bad[] = "[\"\\ud83d\", \"\\uD\x18\x10\x10\"]"; /* read as D800, it would pass */
    assert_int_equal(tch_json_decode(tch_slice_of(bad, sizeof bad - 1), "body", NULL, &v, &err),
                     TCH_EPARSE);
    rresult r = raw_call(f, "json", "{}", text);
    if (r.status != 0)
        fail_msg("server refused it: %s", r.message);
}

/* Reals in the fewest digits that read back the same, for the whole text. */
static void reals_are_written_short_when_exact(void **state) {
    (void)state;
    json_t *v = json_pack("{s:f,s:f,s:i}", "x", 0.1, "y", 1.5e300, "n", 3);
    char *text = tch_json_dumps(v, JSON_COMPACT);
    assert_string_equal(text, "{\"x\":0.1,\"y\":1.5e300,\"n\":3}");
    free(text);
    json_object_set_new(v, "w", json_real(0.1 + 0.2)); /* needs 17 digits: all get them */
    text = tch_json_dumps(v, JSON_COMPACT);
    json_t *back = json_loads(text, 0, NULL);
    assert_true(json_equal(back, v));
    assert_non_null(strstr(text, "0.30000000000000004"));
    json_decref(back);
    free(text);
    json_decref(v);
}

static void wrong_arg_scheme_is_bad_request(void **state) {
    fixture *f = *state;
    rresult r = raw_call(f, "thrift", "{}", "1");
    assert_int_equal(r.error_code, TCH_PCODE_BAD_REQUEST);
    assert_non_null(strstr(r.message, "as=thrift"));
}

static void malformed_response_json_is_a_client_error(void **state) {
    fixture *f = *state;
    jresult r = jcall(f, "not_json", NULL, json_null());
    assert_int_equal(r.status, TCH_EPARSE);
    assert_non_null(strstr(r.message, "response arg3"));
    assert_null(r.body);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(echo_returns_headers_and_body, setup, teardown),
        cmocka_unit_test_setup_teardown(no_headers_and_scalar_body, setup, teardown),
        cmocka_unit_test_setup_teardown(application_error_has_code_1, setup, teardown),
        cmocka_unit_test_setup_teardown(malformed_request_json_is_bad_request_naming_it, setup, teardown),
        cmocka_unit_test_setup_teardown(wrong_arg_scheme_is_bad_request, setup, teardown),
        cmocka_unit_test_setup_teardown(json_that_node_writes_is_read, setup, teardown),
        cmocka_unit_test(reals_are_written_short_when_exact),
        cmocka_unit_test_setup_teardown(malformed_response_json_is_a_client_error, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
