/* tchannel-mock's admin API on recording: PUT /mode accepts a recording
 * mode only when there is somewhere to record from (--upstream, --upstream
 * SERVICE=HOST:PORT, --upstream-router, --relay, or an instance that
 * advertised to the mock), and GET /health's `recording` says whether a
 * call no cassette replays would be recorded now, relaying included. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <tchannel/cassette.h>
#include <tchannel/channel.h>
#include <tchannel/hyperbahn.h>

#include <sys/stat.h>

#define MOCK_FX_EXTRA                                                                             \
    tch_channel *inst;                                                                            \
    char inst_hp[64];                                                                             \
    char empty[300], rec[300];
#include "mock_fixture.h"

static void on_echo(tch_inbound *in, void *ud) {
    (void)ud;
    tch_inbound_respond(in, 0, TCH_SLICE_NULL, tch_inbound_arg3(in));
}

static int setup(void **state) {
    fx *f = fx_new("mode-client", "/tmp/tch-mock-mode-XXXXXX");
    tch_channel_new(f->base, "alpha", NULL, &f->inst, NULL);
    assert_int_equal(tch_channel_listen(f->inst, "127.0.0.1:0", NULL), 0);
    snprintf(f->inst_hp, sizeof f->inst_hp, "%s", tch_channel_host_port(f->inst));
    assert_int_equal(tch_channel_register(f->inst, "alpha", "echo", on_echo, NULL), 0);
    snprintf(f->empty, sizeof f->empty, "%s/empty.yaml", f->dir);
    snprintf(f->rec, sizeof f->rec, "%s/rec/", f->dir);
    FILE *fp = fopen(f->empty, "w");
    assert_non_null(fp);
    fputs("version: 1\ninteractions: []\n", fp);
    assert_int_equal(fclose(fp), 0);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    if (f->mp.pid)
        mp_stop(&f->mp, f->base, SIGKILL, 5000);
    tch_channel_free(f->inst);
    fx_free(f);
    return 0;
}

#define start_mock(f, ...) assert_int_equal(fx_start_mock((f), 2, __VA_ARGS__), 0)

/* PUT /mode; returns the HTTP code, the error text (if any) in msg. */
static int put_mode(fx *f, const char *mode, char *msg, size_t n) {
    char body[64];
    snprintf(body, sizeof body, "{\"mode\": \"%s\"}", mode);
    json_t *j = NULL;
    int code = mp_admin(&f->mp, f->base, EVHTTP_REQ_PUT, "/mode", body, &j);
    const char *e = json_string_value(json_object_get(j, "error"));
    snprintf(msg, n, "%s", e ? e : "");
    json_decref(j);
    return code;
}

/* GET /health: `recording` (0 or 1), and the mode into mode. */
static int health_recording(fx *f, char *mode, size_t n) {
    json_t *j = NULL;
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_GET, "/health", NULL, &j), 200);
    json_t *rec = json_object_get(j, "recording");
    assert_true(json_is_boolean(rec));
    snprintf(mode, n, "%s", json_string_value(json_object_get(j, "mode")));
    int r = json_is_true(rec);
    json_decref(j);
    return r;
}

/* A call to service alpha through the mock; returns its status. */
static int call_alpha(fx *f, const char *body) {
    tch_call_opts opts = {.service = "alpha", .endpoint = tch_slice_cstr("echo"),
                          .arg3 = tch_slice_cstr(body), .timeout_ms = 2000,
                          .retry_limit = TCH_RETRY_LIMIT_NONE};
    return fx_call(f, opts, 5000).status;
}

static size_t count_in(const char *path) {
    tch_cassette *c;
    tch_error err;
    if (tch_cassette_open(path, NULL, &c, &err) != 0)
        fail_msg("%s", err.msg);
    size_t n = tch_cassette_count(c);
    tch_cassette_free(c);
    return n;
}

/* Nothing to record from: a recording mode is refused, naming what is
 * missing, and the mode stays none. */
static void a_recording_mode_needs_somewhere_to_record_from(void **state) {
    fx *f = *state;
    start_mock(f, f->empty, NULL);
    char msg[1024], mode[32];
    assert_int_equal(put_mode(f, "new_episodes", msg, sizeof msg), 400);
    assert_non_null(strstr(msg, "nothing to record from"));
    assert_non_null(strstr(msg, "--upstream-router"));
    assert_false(health_recording(f, mode, sizeof mode));
    assert_string_equal(mode, "none");
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 10000), 0);
}

/* --upstream SERVICE=HOST:PORT with --record-to DIR/: no plain --upstream,
 * yet the mode may record, health says so, and a call is recorded into
 * DIR/<service>.yaml. */
static void a_service_upstream_is_somewhere_to_record_from(void **state) {
    fx *f = *state;
    char up[128], path[320], msg[1024], mode[32];
    snprintf(up, sizeof up, "alpha=%s", f->inst_hp);
    start_mock(f, "--record-to", f->rec, "--upstream", up, NULL);
    assert_false(health_recording(f, mode, sizeof mode)); /* mode none */
    int code = put_mode(f, "new_episodes", msg, sizeof msg);
    if (code != 200)
        print_message("PUT /mode: %d %s\n", code, msg);
    assert_int_equal(code, 200);
    assert_true(health_recording(f, mode, sizeof mode));
    assert_string_equal(mode, "new_episodes");
    assert_int_equal(call_alpha(f, "recorded"), 0);
    assert_int_equal(put_mode(f, "none", msg, sizeof msg), 200);
    assert_false(health_recording(f, mode, sizeof mode));
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 10000), 0);
    snprintf(path, sizeof path, "%salpha.yaml", f->rec);
    assert_int_equal(count_in(path), 1);
}

/* A router is somewhere to record from: every service routes to it. Health
 * says so from the start, in the mode given on the command line. */
static void a_router_is_somewhere_to_record_from(void **state) {
    fx *f = *state;
    char msg[1024], mode[32];
    start_mock(f, "--mode", "all", "--upstream-router", f->inst_hp, f->empty, NULL);
    assert_true(health_recording(f, mode, sizeof mode));
    assert_string_equal(mode, "all");
    assert_int_equal(put_mode(f, "none", msg, sizeof msg), 200);
    assert_false(health_recording(f, mode, sizeof mode));
    assert_int_equal(put_mode(f, "all", msg, sizeof msg), 200);
    assert_true(health_recording(f, mode, sizeof mode));
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 10000), 0);
}

static void on_advertised(int status, const char *message, void *ud) {
    (void)message;
    *(int *)ud = status == 0 ? 1 : -1;
}

/* An instance that advertised to the mock is somewhere to record from;
 * with --relay a recording mode is accepted before any has (as at start),
 * but health says nothing would be recorded until one does. */
static void an_advertised_instance_is_somewhere_to_record_from(void **state) {
    fx *f = *state;
    char msg[1024], mode[32];
    start_mock(f, f->empty, NULL);
    assert_int_equal(put_mode(f, "new_episodes", msg, sizeof msg), 400);
    const char *routers[] = {f->mp.hp};
    const char *services[] = {"alpha"};
    tch_hyperbahn_options o = {.routers = routers, .nrouters = 1, .services = services,
                               .nservices = 1};
    tch_hyperbahn *hb;
    tch_error err;
    int advertised = 0;
    assert_int_equal(tch_hyperbahn_advertise(f->inst, &o, on_advertised, &advertised, &hb, &err),
                     0);
    assert_true(tch_test_run_until(f->base, &advertised, 5000));
    assert_int_equal(advertised, 1);
    int code = put_mode(f, "new_episodes", msg, sizeof msg);
    if (code != 200)
        print_message("PUT /mode: %d %s\n", code, msg);
    assert_int_equal(code, 200);
    assert_true(health_recording(f, mode, sizeof mode));
    assert_int_equal(call_alpha(f, "via ad"), 0);
    tch_hyperbahn_free(hb);
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 10000), 0);
    assert_int_equal(count_in(f->empty), 1);

    start_mock(f, "--relay", f->empty, NULL); /* nobody has advertised to this one */
    assert_int_equal(put_mode(f, "new_episodes", msg, sizeof msg), 200);
    assert_false(health_recording(f, mode, sizeof mode));
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 10000), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_recording_mode_needs_somewhere_to_record_from, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_service_upstream_is_somewhere_to_record_from, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_router_is_somewhere_to_record_from, setup, teardown),
        cmocka_unit_test_setup_teardown(an_advertised_instance_is_somewhere_to_record_from,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
