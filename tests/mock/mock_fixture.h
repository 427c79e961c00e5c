/* The fixture the tchannel-mock test programs share: an event base, a client
 * channel, a temporary folder and the mock child process (mock_proc.h);
 * setup and teardown, starting the mock with an ephemeral admin port, and the
 * answer of one call. A test that needs more in its fixture defines
 * MOCK_FX_EXTRA (struct members) before including this header; one that needs
 * no more defines MOCK_FX_CLIENT (the client's name) and MOCK_FX_DIR (its
 * folder's mkdtemp template, or NULL) and gets setup and teardown. */
#ifndef TCH_TEST_MOCK_FIXTURE_H
#define TCH_TEST_MOCK_FIXTURE_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <tchannel/channel.h>

#include "mock_proc.h"

#ifndef MOCK_FX_EXTRA
#define MOCK_FX_EXTRA
#endif

typedef struct fx {
    struct event_base *base;
    tch_channel *client;
    char dir[256]; /* "" when the test made no folder */
    mock_proc mp;
    MOCK_FX_EXTRA
} fx;

/* A new fixture: a client channel named client_name and, when dir_template
 * is not NULL, a new folder made from it (mkdtemp's XXXXXX). */
static inline fx *fx_new(const char *client_name, const char *dir_template) {
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->base = event_base_new();
    tch_channel_new(f->base, client_name, NULL, &f->client, NULL);
    if (dir_template) {
        snprintf(f->dir, sizeof f->dir, "%s", dir_template);
        assert_non_null(mkdtemp(f->dir));
    }
    return f;
}

/* Stops the mock if it runs, frees the channel and the base, removes the
 * folder and the fixture. */
static inline void fx_free(fx *f) {
    if (f->mp.pid)
        mp_stop(&f->mp, f->base, SIGKILL, 5000);
    tch_channel_free(f->client);
    event_base_free(f->base);
    if (f->dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
    }
    free(f);
}

/* Starts the mock with an ephemeral admin port and the arguments from first
 * on (NULL-terminated); capture_err as mp_start's. Waits for `listening`. */
static inline int fx_start_mock(fx *f, int capture_err, const char *first, ...) {
    char *argv[40];
    int n = 0;
    argv[n++] = TCH_MOCK_BIN;
    argv[n++] = "--admin-port";
    argv[n++] = "0";
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && n < 39; a = va_arg(ap, const char *))
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    return mp_start(&f->mp, argv, 1, capture_err);
}

/* The answer of one call, as the caller reads it. */
typedef struct result {
    int done, status;
    uint8_t code, error_code;
    char message[1024];
    char arg2[512], arg3[512];
    long started, ms; /* when the call was made, and how long it took (ms) */
} result;

static inline void fx_on_answer(const tch_response *res, void *ud) {
    result *r = ud;
    r->done = 1;
    r->status = res->status, r->code = res->code, r->error_code = res->error_code;
    r->ms = mp_now_ms() - r->started;
    snprintf(r->message, sizeof r->message, "%s", res->message ? res->message : "");
    snprintf(r->arg2, sizeof r->arg2, "%.*s", (int)res->arg2.len, (const char *)res->arg2.ptr);
    snprintf(r->arg3, sizeof r->arg3, "%.*s", (int)res->arg3.len, (const char *)res->arg3.ptr);
}

/* Makes the call o (host_port is the mock's) and runs the loop until the
 * answer, at most wait_ms. */
static inline result fx_call(fx *f, tch_call_opts o, int wait_ms) {
    result r = {0};
    o.host_port = f->mp.hp;
    tch_error err;
    r.started = mp_now_ms();
    assert_int_equal(tch_channel_call(f->client, &o, fx_on_answer, &r, &err), 0);
    assert_true(tch_test_run_until(f->base, &r.done, wait_ms));
    return r;
}

#ifdef MOCK_FX_CLIENT
static int setup(void **state) {
    *state = fx_new(MOCK_FX_CLIENT, MOCK_FX_DIR);
    return 0;
}

static int teardown(void **state) {
    fx_free(*state);
    return 0;
}
#endif

#endif
