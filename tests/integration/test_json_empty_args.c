/* Empty JSON args over 127.0.0.1: an empty (or "null") arg2 reaches a JSON
 * handler as {} and an empty arg3 as null, as Node's tchannel and
 * tchannel-python read them; a caller reads an empty answer the same way.
 * Uber's tcurl sends an empty arg2 for a call without headers. */
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
    json_t *seen_headers, *seen_body; /* what the handler got */
} fixture;

static void remember(tch_inbound *in, const json_t *headers, const json_t *body, void *ud) {
    fixture *f = ud;
    json_decref(f->seen_headers);
    json_decref(f->seen_body);
    f->seen_headers = json_deep_copy(headers);
    f->seen_body = json_deep_copy(body);
    tch_json_respond(in, 0, NULL, json_true());
}

/* A peer that answers as=json with empty args. */
static void empty_answer(tch_inbound *in, void *ud) {
    (void)ud;
    tch_inbound_respond(in, 0, TCH_SLICE_NULL, TCH_SLICE_NULL);
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->base = event_base_new();
    tch_channel_new(f->base, "server", NULL, &f->server, NULL);
    tch_channel_new(f->base, "client", NULL, &f->client, NULL);
    assert_int_equal(tch_channel_listen(f->server, NULL, NULL), 0);
    f->hp = tch_channel_host_port(f->server);
    assert_int_equal(tch_json_register(f->server, NULL, "remember", remember, f), 0);
    tch_channel_register(f->server, NULL, "empty_answer", empty_answer, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    tch_channel_free(f->client);
    tch_channel_free(f->server);
    event_base_free(f->base);
    json_decref(f->seen_headers);
    json_decref(f->seen_body);
    free(f);
    return 0;
}

typedef struct rresult {
    int done, status;
    char message[512];
} rresult;

static void on_raw(const tch_response *res, void *ud) {
    rresult *r = ud;
    r->done = 1;
    r->status = res->status;
    snprintf(r->message, sizeof r->message, "%s", res->message ? res->message : "");
}

/* A json call with these exact arg2/arg3 bytes, as another client sends them. */
static void send_as_json(fixture *f, tch_slice arg2, tch_slice arg3) {
    rresult r = {0};
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("remember"), .arg2 = arg2,
                       .arg3 = arg3, .arg_scheme = "json", .host_port = f->hp,
                       .timeout_ms = 2000};
    assert_int_equal(tch_channel_call(f->client, &o, on_raw, &r, NULL), 0);
    assert_true(tch_test_run_until(f->base, &r.done, 3000));
    if (r.status != 0)
        fail_msg("the handler refused it: %s", r.message);
}

static void empty_arg2_reaches_the_handler_as_no_headers(void **state) {
    fixture *f = *state;
    send_as_json(f, TCH_SLICE_NULL, tch_slice_cstr("{\"key\":\"foo\"}"));
    assert_true(json_is_object(f->seen_headers));
    assert_int_equal(json_object_size(f->seen_headers), 0);
    assert_string_equal(json_string_value(json_object_get(f->seen_body, "key")), "foo");
    /* a Node caller's null head: no headers either */
    send_as_json(f, tch_slice_cstr("null"), tch_slice_cstr("1"));
    assert_true(json_is_object(f->seen_headers));
    assert_int_equal(json_object_size(f->seen_headers), 0);
    /* empty arg3 is a null body */
    send_as_json(f, TCH_SLICE_NULL, TCH_SLICE_NULL);
    assert_true(json_is_object(f->seen_headers));
    assert_true(json_is_null(f->seen_body));
}

typedef struct jresult {
    int done, status;
    json_t *headers, *body;
} jresult;

static void on_json(const tch_json_response *res, void *ud) {
    jresult *r = ud;
    r->done = 1;
    r->status = res->status;
    r->headers = res->headers ? json_deep_copy(res->headers) : NULL;
    r->body = res->body ? json_deep_copy(res->body) : NULL;
}

static void empty_answer_reads_as_no_headers_and_null(void **state) {
    fixture *f = *state;
    jresult r = {0};
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("empty_answer"),
                       .host_port = f->hp, .timeout_ms = 2000};
    assert_int_equal(tch_json_call(f->client, &o, NULL, json_null(), on_json, &r, NULL), 0);
    assert_true(tch_test_run_until(f->base, &r.done, 3000));
    assert_int_equal(r.status, 0);
    assert_true(json_is_object(r.headers));
    assert_int_equal(json_object_size(r.headers), 0);
    assert_true(json_is_null(r.body));
    json_decref(r.headers);
    json_decref(r.body);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(empty_arg2_reaches_the_handler_as_no_headers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(empty_answer_reads_as_no_headers_and_null, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
