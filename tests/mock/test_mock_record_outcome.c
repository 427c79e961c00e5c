/* tchannel-mock records what a call's attempt came to as the VCR does
 * (tchannel/vcr_adapt.h): an upstream that never answers before the
 * deadline is a local timeout (`local: true`), not an error frame the
 * service sent; an error frame the service sent is not local.
 *
 * The upstream runs in a child process that stops itself (SIGSTOP) when
 * the "silent" call arrives: a library server would answer a Timeout frame
 * when the call's TTL ends, at the very moment the mock's own deadline
 * fires, and which one came first would be up to the scheduler. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <tchannel/cassette.h>
#include <tchannel/channel.h>

#define MOCK_FX_EXTRA                                                                             \
    pid_t upstream;                                                                               \
    char inst_hp[64];                                                                             \
    char cas[300];
#include "mock_fixture.h"

#include <sys/wait.h>
#include <unistd.h>

/* the whole upstream process stops: no answer, no TTL error frame */
static void on_silent(tch_inbound *in, void *ud) {
    (void)in, (void)ud;
    raise(SIGSTOP);
}

static void on_busy(tch_inbound *in, void *ud) {
    (void)ud;
    tch_inbound_respond_error(in, TCH_PCODE_BUSY, "too busy");
}

/* The child: serves alpha's "busy" and "silent" until killed; its
 * host:port goes to the parent through fd. */
static void run_upstream(int fd) {
    struct event_base *base = event_base_new();
    tch_channel *ch = NULL;
    if (!base || tch_channel_new(base, "alpha", NULL, &ch, NULL) != 0 ||
        tch_channel_listen(ch, "127.0.0.1:0", NULL) != 0 ||
        tch_channel_register(ch, "alpha", "silent", on_silent, NULL) != 0 ||
        tch_channel_register(ch, "alpha", "busy", on_busy, NULL) != 0)
        _exit(1);
    const char *hp = tch_channel_host_port(ch);
    if (write(fd, hp, strlen(hp)) != (ssize_t)strlen(hp))
        _exit(1);
    close(fd);
    event_base_dispatch(base);
    _exit(0);
}

static int setup(void **state) {
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        run_upstream(p[1]);
    }
    close(p[1]);
    fx *f = fx_new("outcome-client", "/tmp/tch-mock-outcome-XXXXXX");
    f->upstream = pid;
    ssize_t n = read(p[0], f->inst_hp, sizeof f->inst_hp - 1); /* blocks until it listens */
    close(p[0]);
    assert_true(n > 0);
    f->inst_hp[n] = '\0';
    snprintf(f->cas, sizeof f->cas, "%s/rec.yaml", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    if (f->mp.pid)
        mp_stop(&f->mp, f->base, SIGKILL, 5000);
    kill(f->upstream, SIGKILL);
    waitpid(f->upstream, NULL, 0);
    fx_free(f);
    return 0;
}

static int call_alpha(fx *f, const char *endpoint, uint32_t timeout_ms) {
    tch_call_opts opts = {.service = "alpha", .endpoint = tch_slice_cstr(endpoint),
                          .arg3 = tch_slice_cstr("x"), .timeout_ms = timeout_ms,
                          .retry_limit = TCH_RETRY_LIMIT_NONE};
    return fx_call(f, opts, 5000).status;
}

/* The mock's journal says `recorded` once the recording is committed;
 * asked until it does, for at most about 5 s. */
static int recorded_count(fx *f) {
    json_t *j = NULL;
    int n = -1;
    if (mp_admin(&f->mp, f->base, EVHTTP_REQ_GET, "/journal?outcome=recorded", NULL, &j) == 200)
        n = (int)json_integer_value(json_object_get(j, "matching"));
    json_decref(j);
    return n;
}

static void wait_recorded(fx *f, int want) {
    long deadline = mp_now_ms() + 5000;
    while (recorded_count(f) < want)
        if (mp_now_ms() > deadline)
            fail_msg("the mock did not record %d call(s) within 5 s", want);
}

static void a_silent_upstream_is_a_local_timeout(void **state) {
    fx *f = *state;
    assert_int_equal(fx_start_mock(f, 2, "--mode", "all", "--upstream", f->inst_hp, f->cas, NULL),
                     0);
    /* busy first: the upstream stops for good on the silent call */
    assert_int_equal(call_alpha(f, "busy", 2000), TCH_EREMOTE);
    wait_recorded(f, 1);
    int st = call_alpha(f, "silent", 300);
    assert_true(st == TCH_ETIMEOUT || st == TCH_EREMOTE);
    wait_recorded(f, 2);
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 10000), 0); /* folds the journal */

    tch_cassette *c;
    tch_error err;
    if (tch_cassette_open(f->cas, NULL, &c, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(tch_cassette_count(c), 2);
    const tch_cassette_interaction *busy = tch_cassette_get(c, 0), *timeout = tch_cassette_get(c, 1);
    assert_non_null(timeout);
    assert_true(timeout->is_error);
    assert_int_equal(timeout->error.code, TCH_PCODE_TIMEOUT);
    assert_true(timeout->error.local); /* the mock's own deadline: no frame came */
    assert_non_null(busy);
    assert_true(busy->is_error);
    assert_int_equal(busy->error.code, TCH_PCODE_BUSY);
    assert_false(busy->error.local);
    /* the request as the VCR records it: "as" first */
    assert_true(timeout->request.n_transport_headers >= 1);
    assert_int_equal(timeout->request.transport_headers[0].key.len, 2);
    assert_memory_equal(timeout->request.transport_headers[0].key.ptr, "as", 2);
    tch_cassette_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_silent_upstream_is_a_local_timeout, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
