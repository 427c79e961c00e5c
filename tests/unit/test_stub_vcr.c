/* The in-process VCR answers from stubs too: the same matching, and a
 * templated response filled from the call (no network: the outbound hook
 * answers before any connection is made). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tchannel/vcr.h>
#include <unistd.h>

typedef struct result {
    int done, status;
    char arg3[256], message[512];
} result;

static void on_answer(const tch_response *res, void *ud) {
    result *r = ud;
    r->done = 1;
    r->status = res->status;
    snprintf(r->arg3, sizeof r->arg3, "%.*s", (int)res->arg3.len, (const char *)res->arg3.ptr);
    snprintf(r->message, sizeof r->message, "%s", res->message ? res->message : "");
}

static void stop(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    *(int *)arg = 1;
}

/* The answer comes from the hook; the loop runs only in case it is deferred. */
static result call(struct event_base *base, tch_channel *ch, const char *body) {
    result r = {0};
    tch_call_opts o = {.service = "users", .endpoint = tch_slice_cstr("get"),
                       .arg2 = tch_slice_cstr("{}"), .arg3 = tch_slice_cstr(body),
                       .host_port = "127.0.0.1:9", .timeout_ms = 1000, .arg_scheme = "json",
                       .retry_limit = TCH_RETRY_LIMIT_NONE};
    tch_error err;
    assert_int_equal(tch_channel_call(ch, &o, on_answer, &r, &err), 0);
    int expired = 0;
    struct timeval tv = {2, 0};
    struct event *t = evtimer_new(base, stop, &expired);
    evtimer_add(t, &tv);
    while (!r.done && !expired && event_base_loop(base, EVLOOP_ONCE) == 0)
        ;
    event_free(t);
    assert_true(r.done);
    return r;
}

static void test_vcr_answers_from_a_templated_stub(void **state) {
    (void)state;
    char path[] = "/tmp/tch-stub-vcr-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    static const char yaml[] =
        "version: 1\n"
        "interactions:\n"
        "- id: user\n"
        "  request:\n"
        "    serviceName: users\n"
        "    body: {matchesJsonPath: {expression: '$.id', matches: '^[0-9]+$'}}\n"
        "  response:\n"
        "    template: true\n"
        "    body: '{\"id\": {{request.body.id}}, \"name\": \"user {{request.body.id}}\"}'\n";
    assert_int_equal(write(fd, yaml, sizeof yaml - 1), (ssize_t)(sizeof yaml - 1));
    close(fd);
    struct event_base *base = event_base_new();
    tch_channel *ch;
    tch_channel_new(base, "vcr-client", NULL, &ch, NULL);
    tch_vcr_options o;
    tch_vcr_options_init(&o);
    o.cassette.mode = TCH_CASSETTE_NONE;
    o.cassette.no_env_override = 1;
    tch_vcr *v = NULL;
    tch_error err = {0};
    if (tch_vcr_use_cassette(ch, path, &o, &v, &err))
        fail_msg("vcr: %s", err.msg);
    result r = call(base, ch, "{\"id\": 7}");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.arg3, "{\"id\": 7, \"name\": \"user 7\"}");
    r = call(base, ch, "{\"id\": 8}"); /* a stub answers again */
    assert_string_equal(r.arg3, "{\"id\": 8, \"name\": \"user 8\"}");
    r = call(base, ch, "{\"id\": \"x\"}");
    assert_int_equal(r.status, TCH_ENOTFOUND);
    if (!strstr(r.message, "nearest stub user"))
        fail_msg("miss: %s", r.message);
    assert_int_equal(tch_vcr_eject(v, &err), 0);
    tch_channel_free(ch);
    event_base_free(base);
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vcr_answers_from_a_templated_stub),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
