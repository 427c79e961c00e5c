/* tcurl's load mode, as Uber's tcurl runs it: rounds of --rate calls sent
 * at once; when a round's answers are all in, a pause of --delay ms, then
 * the next round, until --requests calls were made or --time ms passed.
 * Answers are counted, not printed; the summary goes to stdout.
 *
 * It runs on the sync client's own event loop (the client runs that loop
 * only inside tch_sync_call, so between calls it is ours to drive). */
#include "tcurl.h"

#include <event2/event.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct load_run {
    const tcurl_cli *c;
    tch_channel *ch;
    tch_call_opts opts;
    struct event *pause;    /* --delay between rounds */
    struct event *interrupt; /* SIGINT: no more rounds, then the summary */
    uint64_t t0_ns, stop_ns; /* stop_ns 0: no --time bound */
    uint64_t round_t0_ns;
    uint64_t started, in_round;
    int stopping, finished;
    tch_error start_err; /* a call that could not even start */
    int start_failed;
    /* outcomes */
    double *lat_ms;
    size_t nlat, cap;
    uint64_t ok, app_errors, failures;
    uint64_t by_code[256]; /* failures by tch_proto_code */
    int out_of_memory;
} load_run;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void record_latency(load_run *L, double ms) {
    if (L->nlat == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 1024;
        double *p = realloc(L->lat_ms, cap * sizeof *p);
        if (!p) {
            L->out_of_memory = 1;
            return;
        }
        L->lat_ms = p;
        L->cap = cap;
    }
    L->lat_ms[L->nlat++] = ms;
}

static void start_round(load_run *L);

static void round_done(load_run *L) {
    int count_reached = L->c->requests && L->started >= L->c->requests;
    if (L->stopping || count_reached || L->out_of_memory) {
        L->finished = 1;
        return;
    }
    struct timeval tv = {(time_t)(L->c->delay_ms / 1000), (suseconds_t)(L->c->delay_ms % 1000) * 1000};
    if (evtimer_add(L->pause, &tv) != 0)
        L->finished = 1;
}

static void on_answer(const tch_response *res, void *ud) {
    load_run *L = ud;
    record_latency(L, (double)(now_ns() - L->round_t0_ns) / 1e6);
    if (res->status == 0 && res->code == 0)
        L->ok++;
    else if (res->status == 0)
        L->app_errors++;
    else {
        L->failures++;
        L->by_code[res->error_code]++;
    }
    if (--L->in_round == 0)
        round_done(L);
}

static void start_round(load_run *L) {
    uint64_t now = now_ns();
    uint64_t n = L->c->rate;
    if (L->c->requests && L->c->requests - L->started < n)
        n = L->c->requests - L->started;
    if (L->stopping || (L->stop_ns && now >= L->stop_ns) || n == 0) {
        L->finished = 1;
        return;
    }
    L->round_t0_ns = now;
    L->in_round = n;
    for (uint64_t i = 0; i < n; i++) {
        if (tch_channel_call(L->ch, &L->opts, on_answer, L, &L->start_err) != 0) {
            /* it would fail the same way every time: end the run */
            L->start_failed = 1;
            L->stopping = 1;
            L->in_round -= n - i;
            break;
        }
        L->started++;
    }
    if (L->in_round == 0)
        L->finished = 1;
}

static void on_pause_over(evutil_socket_t fd, short what, void *ud) {
    (void)fd;
    (void)what;
    start_round(ud);
}

static void on_interrupt(evutil_socket_t fd, short what, void *ud) {
    (void)fd;
    (void)what;
    load_run *L = ud;
    L->stopping = 1;
    if (L->in_round == 0) { /* between rounds */
        evtimer_del(L->pause);
        L->finished = 1;
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest value with at least p% of the values at or below it. */
static double percentile(const double *sorted, size_t n, unsigned p) {
    size_t rank = (n * p + 99) / 100;
    return sorted[rank ? rank - 1 : 0];
}

static void print_summary(load_run *L, double seconds) {
    uint64_t calls = L->ok + L->app_errors + L->failures;
    printf("calls: %llu\n", (unsigned long long)calls);
    printf("errors: %llu", (unsigned long long)(L->app_errors + L->failures));
    const char *sep = " (";
    if (L->app_errors) {
        printf("%sapplication error: %llu", sep, (unsigned long long)L->app_errors);
        sep = ", ";
    }
    for (unsigned code = 0; code < 256; code++) {
        if (L->by_code[code]) {
            printf("%s%s: %llu", sep, tch_proto_code_name((uint8_t)code),
                   (unsigned long long)L->by_code[code]);
            sep = ", ";
        }
    }
    printf("%s\n", sep[0] == ',' ? ")" : "");
    printf("time: %.3f s\n", seconds);
    printf("calls/s: %.1f\n", seconds > 0 ? (double)calls / seconds : 0.0);
    if (L->nlat) {
        qsort(L->lat_ms, L->nlat, sizeof *L->lat_ms, cmp_double);
        printf("p50: %.3f ms\n", percentile(L->lat_ms, L->nlat, 50));
        printf("p99: %.3f ms\n", percentile(L->lat_ms, L->nlat, 99));
    }
}

static int run_loop(load_run *L, struct event_base *base) {
    start_round(L);
    while (!L->finished)
        if (event_base_loop(base, EVLOOP_ONCE) < 0)
            return tcurl_fail(EXIT_INTERNAL, "the event loop failed");
    return 0;
}

int tcurl_load_run(const tcurl_cli *c, tch_sync_client *client, const tcurl_request *r) {
    load_run L = {.c = c, .ch = tch_sync_client_channel(client), .opts = tcurl_call_opts(c, r)};
    struct event_base *base = tch_channel_base(L.ch);
    L.pause = evtimer_new(base, on_pause_over, &L);
    L.interrupt = evsignal_new(base, SIGINT, on_interrupt, &L);
    int rc = L.pause && L.interrupt && evsignal_add(L.interrupt, NULL) == 0
                 ? 0 : tcurl_fail(EXIT_INTERNAL, "cannot set up the load run's timer");
    L.t0_ns = now_ns();
    L.stop_ns = c->time_ms ? L.t0_ns + c->time_ms * 1000000u : 0;
    if (!rc)
        rc = run_loop(&L, base);
    double seconds = (double)(now_ns() - L.t0_ns) / 1e9;
    if (L.pause)
        event_free(L.pause);
    if (L.interrupt)
        event_free(L.interrupt);
    if (!rc && L.out_of_memory)
        rc = tcurl_fail(EXIT_INTERNAL, "out of memory counting the answers");
    if (!rc && L.start_failed && L.started == 0)
        rc = tcurl_fail(L.start_err.code == TCH_ENOMEM ? EXIT_INTERNAL : EXIT_USAGE, "%s",
                        L.start_err.msg);
    if (!rc) {
        if (L.start_failed)
            tcurl_fail(0, "calls stopped: %s", L.start_err.msg);
        print_summary(&L, seconds);
        rc = L.failures || L.start_failed ? EXIT_CALL : L.app_errors ? EXIT_APP_ERROR : EXIT_OK;
    }
    free(L.lat_ms);
    return rc;
}
