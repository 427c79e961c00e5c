/* bench_client: closed-loop raw echo load from our C client.
 *
 *   bench_client --peer HOST:PORT [--impl LABEL] [--conc N] [--size BYTES]
 *                [--duration S] [--warmup S] [--checksum none|crc32|farmhash|crc32c]
 *                [--service NAME] [--args borrow|copy] [--bodies same|distinct]
 *
 * N callers share one tch_channel (so one connection, calls multiplexed);
 * each sends the next `echo` (arg3 = BYTES bytes, arg2 empty) as soon as its
 * previous one answered. After --warmup seconds it measures for --duration
 * seconds: throughput = calls completed inside the window / window length;
 * p50/p99 from every call that both started and ended inside the window.
 * The payload lives for the whole run, so calls borrow it (borrow_args, no
 * copy per call) unless --args copy. With --bodies distinct every call's
 * arg3 starts with its own number (each caller has its own copy), so a
 * recording mock records each one instead of replaying the first.
 * An error is any call that failed, answered with code != 0, or echoed the
 * wrong length; a caller stops at its first error. Prints one line (see bench_common.h); exit 0, 2 on bad usage,
 * 1 when nothing could be measured.
 */
#include "bench_common.h"

#include <tchannel/channel.h>
#include <tchannel/common.h>

#include <event2/event.h>

#include <inttypes.h>
#include <signal.h>

typedef struct bench bench;

typedef struct slot {
    bench *b;
    uint64_t start_ns;
    uint8_t *own; /* --bodies distinct: this caller's payload */
} slot;

struct bench {
    struct event_base *base;
    tch_channel *ch;
    const char *peer;
    const char *service;
    uint8_t *payload;
    size_t size;
    int borrow;
    int distinct;
    uint64_t next_id;
    uint64_t warm_end_ns, end_ns;
    unsigned active;
    unsigned long errors;
    unsigned long completed_in_window;
    bench_lat lat;
    slot *slots;
};

static void on_response(const tch_response *res, void *ud);

static int start_call(slot *s) {
    bench *b = s->b;
    tch_call_opts o = {0};
    o.service = b->service;
    o.endpoint = tch_slice_cstr("echo");
    o.arg3 = tch_slice_of(b->payload, b->size);
    if (b->distinct) { /* the number replaces the first bytes; the size stays */
        char id[24];
        int n = snprintf(id, sizeof id, "%" PRIu64 "-", b->next_id++);
        memcpy(s->own, b->payload, b->size);
        memcpy(s->own, id, (size_t)n < b->size ? (size_t)n : b->size);
        o.arg3 = tch_slice_of(s->own, b->size);
    }
    o.host_port = b->peer;
    o.timeout_ms = 10000;
    o.borrow_args = b->borrow;
    s->start_ns = bench_now_ns();
    tch_error err = {0};
    int rc = tch_channel_call(b->ch, &o, on_response, s, &err);
    if (rc != 0) {
        fprintf(stderr, "bench_client: tch_channel_call: %s (%s)\n", tch_strerror(rc), err.msg);
        b->errors++;
    }
    return rc;
}

static void slot_done(bench *b) {
    if (--b->active == 0)
        event_base_loopbreak(b->base);
}

static void on_response(const tch_response *res, void *ud) {
    slot *s = ud;
    bench *b = s->b;
    uint64_t now = bench_now_ns();
    int ok = res->status == 0 && res->code == 0 && res->arg3.len == b->size;
    int in_window = now >= b->warm_end_ns && now <= b->end_ns;
    if (!ok) {
        if (b->errors++ < 5)
            fprintf(stderr, "bench_client: call failed: status %s, error_code %s, code %u, %zu bytes: %s\n",
                    tch_strerror(res->status), tch_proto_code_name(res->error_code), res->code,
                    res->arg3.len, res->message ? res->message : "");
    } else if (in_window) {
        b->completed_in_window++;
        if (s->start_ns >= b->warm_end_ns && bench_lat_add(&b->lat, now - s->start_ns) != 0) {
            fprintf(stderr, "bench_client: out of memory\n");
            exit(1);
        }
    }
    /* A caller that saw an error stops: errors should be 0, and a dead peer
     * must not turn into a busy loop. */
    if (!ok || now >= b->end_ns || start_call(s) != 0)
        slot_done(b);
}

static void on_give_up(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    bench *b = arg;
    fprintf(stderr, "bench_client: %u calls still outstanding 10 s after the end; giving up\n",
            b->active);
    b->errors += b->active;
    event_base_loopbreak(b->base);
}

static int usage(const char *bad) {
    fprintf(stderr,
            "bench_client: bad argument '%s'\n"
            "usage: bench_client --peer HOST:PORT [--impl LABEL] [--conc N] [--size BYTES]\n"
            "                    [--duration S] [--warmup S] [--checksum none|crc32|farmhash|crc32c]\n"
            "                    [--service NAME] [--args borrow|copy] [--bodies same|distinct]\n",
            bad);
    return 2;
}

int main(int argc, char **argv) {
    const char *impl = "ours->ours";
    const char *checksum = "crc32c";
    uint64_t conc = 1, size = 100;
    double duration = 5, warmup = 1;
    bench b = {0};
    b.service = "keyvalue-server";
    b.borrow = 1;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            return usage(a);
        const char *v = argv[++i];
        if (!strcmp(a, "--peer"))
            b.peer = v;
        else if (!strcmp(a, "--impl"))
            impl = v;
        else if (!strcmp(a, "--service"))
            b.service = v;
        else if (!strcmp(a, "--args")) {
            if (strcmp(v, "borrow") && strcmp(v, "copy"))
                return usage(v);
            b.borrow = !strcmp(v, "borrow");
        } else if (!strcmp(a, "--bodies")) {
            if (strcmp(v, "same") && strcmp(v, "distinct"))
                return usage(v);
            b.distinct = !strcmp(v, "distinct");
        } else if (!strcmp(a, "--checksum"))
            checksum = v;
        else if (!strcmp(a, "--conc")) {
            if (bench_parse_u64(v, 100000, 0, &conc))
                return usage(v);
        } else if (!strcmp(a, "--size")) {
            if (bench_parse_u64(v, 64u * 1024 * 1024, 1, &size))
                return usage(v);
        } else if (!strcmp(a, "--duration")) {
            if (bench_parse_seconds(v, &duration) || duration <= 0)
                return usage(v);
        } else if (!strcmp(a, "--warmup")) {
            if (bench_parse_seconds(v, &warmup))
                return usage(v);
        } else
            return usage(a);
    }
    if (!b.peer)
        return usage("--peer (missing)");
    static const char *const names[] = {"none", "crc32", "farmhash", "crc32c"};
    int csum = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(checksum, names[i]))
            csum = i;
    if (csum < 0)
        return usage(checksum);

    signal(SIGPIPE, SIG_IGN);
    b.size = (size_t)size;
    b.payload = malloc(b.size ? b.size : 1);
    b.slots = calloc((size_t)conc, sizeof *b.slots);
    b.base = event_base_new();
    tch_channel_options opts = {0};
    opts.checksum_type = csum == 0 ? TCH_CHECKSUM_NONE : (uint8_t)csum;
    opts.default_timeout_ms = 10000;
    if (b.payload && b.base)
        tch_channel_new(b.base, "bench-client", &opts, &b.ch, NULL);
    if (!b.payload || !b.slots || !b.base || !b.ch) {
        fprintf(stderr, "bench_client: setup failed (out of memory?)\n");
        return 1;
    }
    for (size_t i = 0; i < b.size; i++)
        b.payload[i] = (uint8_t)('a' + i % 26);

    uint64_t t0 = bench_now_ns();
    b.warm_end_ns = t0 + (uint64_t)(warmup * 1e9);
    b.end_ns = b.warm_end_ns + (uint64_t)(duration * 1e9);
    for (uint64_t i = 0; i < conc; i++) {
        b.slots[i].b = &b;
        if (b.distinct && !(b.slots[i].own = malloc(b.size))) {
            fprintf(stderr, "bench_client: out of memory\n");
            return 1;
        }
        if (start_call(&b.slots[i]) == 0)
            b.active++;
    }
    struct event *give_up = evtimer_new(b.base, on_give_up, &b);
    struct timeval tv = {(time_t)(warmup + duration) + 10, 0};
    if (!give_up || evtimer_add(give_up, &tv) != 0) {
        fprintf(stderr, "bench_client: evtimer failed\n");
        return 1;
    }
    if (b.active > 0)
        event_base_dispatch(b.base);

    bench_report(impl, (unsigned)conc, b.size, b.completed_in_window, &b.lat, duration, b.errors);

    event_free(give_up);
    tch_channel_free(b.ch);
    event_base_free(b.base);
    free(b.lat.us);
    for (uint64_t i = 0; i < conc; i++)
        free(b.slots[i].own);
    free(b.slots);
    free(b.payload);
    return b.lat.len ? 0 : 1;
}
