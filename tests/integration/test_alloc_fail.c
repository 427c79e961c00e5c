/* Every allocation may fail, and a failure is an error, never a crash or a
 * leak. One scenario on 127.0.0.1 with one event_base: a server channel
 * with raw, JSON and Thrift (KeyValue.getValue) handlers; a client channel
 * with the VCR recording into a fresh cassette (with the IDL, so Thrift
 * bodies are also written decoded); a raw, a JSON and a Thrift call; eject
 * (save); the server goes away; a second client replays all three from
 * the cassette (mode none); eject; teardown. Loading the IDL is a step too.
 *
 * A clean run counts its allocations (M). Then, for N = 1..M, the N-th
 * allocation fails and the scenario runs again in a forked child, so one
 * crash does not hide the next. Each child checks that a step either
 * returned an error or did its work (a call that succeeded got the echo; a
 * save that succeeded wrote the interaction; a replay that succeeded gave
 * the recorded answer), that every call's callback ran within its bound,
 * and that every block the scenario allocated was freed.
 *
 * Reach: the link wraps malloc, calloc, realloc, free, strdup and strndup
 * (-Wl,--wrap) for the objects linked statically, i.e. this test and the
 * project's archives. Allocations made inside the shared libevent,
 * jansson, libyaml and libc are neither counted nor failed (the same reach
 * a per-channel allocator hook would have). Blocks such a library hands us
 * to free are told apart from ours by a set of the pointers we handed out.
 * Under AddressSanitizer each child also runs LeakSanitizer, which sees
 * what leaks through those libraries' allocations too (an event never
 * freed, a JSON value never released).
 *
 * A failure the library absorbs (the whole run succeeds) is not an error
 * here; TCH_ALLOC_FAIL_VERBOSE=1 prints where each one happened, for a
 * reviewer. Known and harmless: a buffer shrink (the larger one is kept),
 * the clean-up of a dead process's temp files, and the decoded form of a
 * Thrift body (a renderer's NULL means "exact bytes only"; those are
 * always written).
 *
 * TCH_ALLOC_FAIL_ONLY=N runs only that N, in this process (for a
 * debugger); TCH_ALLOC_FAIL_VERBOSE=1 prints every N's outcome;
 * TCH_ALLOC_FAIL_PERSIST=1 fails every allocation from the N-th on (the
 * error paths then get no memory either). */
#include <tchannel/cassette.h>
#include <tchannel/channel.h>
#include <tchannel/json.h>
#include <tchannel/thrift_scheme.h>
#include <tchannel/vcr.h>

#include <event2/event.h>
#include <execinfo.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"
#include "vcr_calls.h"

#if defined(__SANITIZE_ADDRESS__)
#define TCH_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TCH_LSAN 1
#endif
#endif
#ifdef TCH_LSAN
#include <sanitizer/lsan_interface.h>
#endif

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);
void __wrap_free(void *p);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

/* ---- the counting allocator -------------------------------------------- */

/* Process-wide by nature: the wrapped allocator has no context argument. */
static struct {
    int counting;        /* 0: pass through without counting or failing */
    long count;          /* allocations counted so far */
    long fail_at;        /* this allocation fails (1-based); 0: none */
    int persist;         /* 1: and every one after it */
    long failed;         /* how many were failed */
    void *where[16];     /* the failed allocation's stack */
    int nwhere;
    void **set;          /* open addressing: our live blocks */
    size_t cap, live;
} A;

#define TOMB ((void *)1)

static size_t slot_of(const void *p) {
    uintptr_t x = (uintptr_t)p;
    x ^= x >> 17;
    x *= 0x9E3779B97F4A7C15u;
    return (size_t)(x >> 7) & (A.cap - 1);
}

static void set_grow(void) {
    size_t oldcap = A.cap;
    void **old = A.set;
    A.cap = oldcap ? oldcap * 2 : 1u << 16;
    A.set = __real_calloc(A.cap, sizeof *A.set);
    if (!A.set)
        abort();
    for (size_t i = 0; i < oldcap; i++)
        if (old[i] && old[i] != TOMB) {
            size_t j = slot_of(old[i]);
            while (A.set[j])
                j = (j + 1) & (A.cap - 1);
            A.set[j] = old[i];
        }
    __real_free(old);
}

static void set_add(void *p) {
    if ((A.live + 1) * 2 > A.cap)
        set_grow();
    size_t j = slot_of(p);
    while (A.set[j] && A.set[j] != TOMB)
        j = (j + 1) & (A.cap - 1);
    A.set[j] = p;
    A.live++;
}

/* Returns 1 when p was ours (and forgets it). */
static int set_remove(void *p) {
    if (!A.cap)
        return 0;
    for (size_t j = slot_of(p); A.set[j]; j = (j + 1) & (A.cap - 1))
        if (A.set[j] == p) {
            A.set[j] = TOMB;
            A.live--;
            return 1;
        }
    return 0;
}

/* 1 when this allocation is to fail. */
static int should_fail(void) {
    if (!A.counting)
        return 0;
    A.count++;
    if (A.count == A.fail_at || (A.persist && A.fail_at && A.count > A.fail_at)) {
        if (A.failed++ == 0)
            A.nwhere = backtrace(A.where, 16);
        return 1;
    }
    return 0;
}

static void *track(void *p) {
    if (p)
        set_add(p);
    return p;
}

void *__wrap_malloc(size_t n) {
    return should_fail() ? NULL : track(__real_malloc(n));
}

void *__wrap_calloc(size_t k, size_t n) {
    return should_fail() ? NULL : track(__real_calloc(k, n));
}

void *__wrap_realloc(void *p, size_t n) {
    if (!p)
        return __wrap_malloc(n);
    if (should_fail())
        return NULL;
    int ours = set_remove(p);
    void *q = __real_realloc(p, n);
    if (!q && n && ours)
        set_add(p); /* the real one failed: p is still live */
    else if (q && ours)
        set_add(q);
    return q;
}

void __wrap_free(void *p) {
    if (p)
        set_remove(p);
    __real_free(p);
}

char *__wrap_strndup(const char *s, size_t n) {
    size_t len = strnlen(s, n);
    char *d = __wrap_malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

char *__wrap_strdup(const char *s) {
    return __wrap_strndup(s, SIZE_MAX);
}

/* ---- the scenario (vcr_calls.h) -------------------------------------------- */

typedef tch_test_outcome outcome;
typedef tch_test_result result;

/* 1 when p is a live block of ours. */
static int set_has(const void *p) {
    for (size_t j = slot_of(p); A.set[j]; j = (j + 1) & (A.cap - 1))
        if (A.set[j] == p)
            return 1;
    return 0;
}

static int eject(tch_vcr *v) {
    tch_error err = {0};
    int rc = tch_vcr_eject(v, &err);
    /* Eject keeps v only when the file could not be written, and says so
     * with its own code; v's block must then still be live, and only then. */
    if ((rc == TCH_ENOTSAVED) != set_has(v)) { /* a broken contract: fail loudly */
        fprintf(stderr, "eject returned %s but v is %s\n", tch_strerror(rc),
                set_has(v) ? "live" : "freed");
        abort();
    }
    if (rc == TCH_ENOTSAVED)
        tch_vcr_discard(v);
    return rc;
}

/* Reads the saved cassette without counting: 1 when it holds the three calls. */
static int cassette_holds_calls(const char *path) {
    int was = A.counting;
    A.counting = 0;
    int ok = tch_test_cassette_holds_calls(path);
    A.counting = was;
    return ok;
}

/* The client's half: the three calls through the VCR. A failed step ejects
 * what was installed (its error paths are under test too). */
static int calls_through_vcr(struct event_base *base, const char *hp, const tch_thrift_idl *idl,
                             const char *path, tch_cassette_mode mode, outcome *o,
                             tch_channel **ch, tch_vcr **vcr, result r[3]) {
    int rc = tch_test_calls_through_vcr(base, NULL, hp, idl, path, mode, o, ch, vcr, r);
    if (rc && *vcr)
        eject(*vcr);
    return rc;
}

/* Record then replay, through every step that may fail. */
static void record_and_replay(struct event_base *base, const char *path, outcome *o) {
    tch_channel *server = NULL, *client = NULL, *replayer = NULL;
    tch_vcr *vcr = NULL;
    result r1[3] = {{0}}, r2[3] = {{0}};
    tch_thrift_idl *idl = NULL;
    char hp[64] = "";
    int rc;

    o->steps = 1;
    tch_error err = {0};
    if ((rc = tch_thrift_load(TCH_TEST_KV_IDL, &idl, &err)) != 0) {
        tch_test_step_failed(o, rc);
        goto out;
    }
    o->steps++;
    if ((rc = tch_channel_new(base, "server", NULL, &server, NULL)) != 0) {
        tch_test_step_failed(o, rc);
        goto out;
    }
    o->steps++;
    if ((rc = tch_channel_listen(server, NULL, &err)) != 0) {
        tch_test_step_failed(o, rc);
        goto out;
    }
    snprintf(hp, sizeof hp, "%s", tch_channel_host_port(server));
    o->steps++;
    if ((rc = tch_channel_register(server, NULL, "echo", tch_test_echo, NULL)) != 0) {
        tch_test_step_failed(o, rc);
        goto out;
    }
    o->steps++;
    if ((rc = tch_json_register(server, NULL, "json_echo", tch_test_json_echo, NULL)) != 0) {
        tch_test_step_failed(o, rc);
        goto out;
    }
    o->steps++;
    if ((rc = tch_thrift_register(server, NULL, tch_thrift_idl_find_service(idl, "KeyValue"),
                                  "getValue", tch_test_get_value, NULL)) != 0) {
        tch_test_step_failed(o, rc);
        goto out;
    }
    if (calls_through_vcr(base, hp, idl, path, TCH_CASSETTE_ONCE, o, &client, &vcr, r1) != 0)
        goto out;
    o->recorded = 1;
    o->steps++;
    rc = eject(vcr);
    if (rc != 0) {
        tch_test_step_failed(o, rc);
        goto out;
    }
    o->saved = 1;
    if (!cassette_holds_calls(path)) {
        tch_test_broken(o, "eject succeeded but the cassette lacks the interaction", 0);
        goto out;
    }
    /* Offline from here: the replay must not need the server. */
    tch_channel_free(server);
    server = NULL;
    if (calls_through_vcr(base, hp, idl, path, TCH_CASSETTE_NONE, o, &replayer, &vcr, r2) != 0)
        goto out;
    o->replayed = 1;
    o->steps++;
    if ((rc = eject(vcr)) != 0)
        tch_test_step_failed(o, rc);
out:
    tch_channel_free(replayer);
    tch_channel_free(client);
    tch_channel_free(server);
    tch_thrift_idl_free(idl);
    for (int i = 0; i < 3; i++)
        if (r1[i].done > 1 || r2[i].done > 1)
            tch_test_broken(o, "a callback ran twice", i);
}

/* The failed allocation's callers, as the C library can name them. */
static void print_where(void) {
    if (!A.failed)
        return;
    fflush(stdout);
    backtrace_symbols_fd(A.where, A.nwhere, STDOUT_FILENO);
}

/* Runs the scenario with allocation fail_at failing (0: none). Returns 0
 * when every promise held; prints why not. *count receives the number of
 * allocations counted. */
static int run_once(const char *dir, long fail_at, long *count, int verbose) {
    char path[256];
    snprintf(path, sizeof path, "%s/c%ld.yaml", dir, fail_at);
    tch_test_remove_cassette(path);
    struct event_base *base = event_base_new();
    if (!base) {
        fprintf(stderr, "event_base_new failed\n");
        return 1;
    }
    outcome o = {0};
    size_t live0 = A.live;
    A.count = 0;
    A.failed = 0;
    A.fail_at = fail_at;
    A.counting = 1;
    record_and_replay(base, path, &o);
    A.counting = 0;
    event_base_free(base);
    tch_test_remove_cassette(path);
    *count = A.count;
    if (A.live != live0)
        tch_test_broken(&o, "blocks leaked", (int)(A.live - live0));
    if (fail_at == 0 && (o.failed_at || !o.replayed))
        tch_test_broken(&o, "the clean run failed", o.code);
    if (o.why[0]) {
        printf("N=%ld: %s (allocations %ld; failed step %d code %d)\n", fail_at,
               o.why, A.count, o.failed_at, o.code);
        print_where();
        return 1;
    }
    if (verbose) {
        printf("N=%ld: ok: failed step %d code %d, recorded %d saved %d replayed %d\n",
               fail_at, o.failed_at, o.code, o.recorded, o.saved, o.replayed);
        if (A.failed && !o.failed_at) /* absorbed: say where, for a reviewer */
            print_where();
    }
    return 0;
}

/* Runs one N in a child so a crash is reported, not fatal. */
static int run_child(const char *dir, long n, int verbose) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        long count;
        int bad = run_once(dir, n, &count, verbose);
#ifdef TCH_LSAN /* what leaks through libevent's or jansson's allocator too */
        if (__lsan_do_recoverable_leak_check()) {
            printf("N=%ld: LeakSanitizer found a leak (above)\n", n);
            bad = 1;
        }
#endif
        _exit(bad ? 1 : 0);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid) {
        perror("waitpid");
        return 1;
    }
    if (WIFSIGNALED(st)) {
        printf("N=%ld: crashed with signal %d\n", n, WTERMSIG(st));
        return 1;
    }
    return WEXITSTATUS(st) != 0;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* In memory when it can: each run syncs the journal and the cassette,
     * which is what takes the time on a disk. */
    char dir[] = "/dev/shm/tch-alloc-fail-XXXXXX", alt[] = "/tmp/tch-alloc-fail-XXXXXX";
    char *d = mkdtemp(dir);
    if (!d)
        d = mkdtemp(alt);
    if (!d) {
        perror("mkdtemp");
        return 1;
    }
    int verbose = getenv("TCH_ALLOC_FAIL_VERBOSE") != NULL;
    const char *only = getenv("TCH_ALLOC_FAIL_ONLY");
    A.persist = getenv("TCH_ALLOC_FAIL_PERSIST") != NULL;
    long m = 0;
    int bad = 0;
    if (only) {
        bad = run_once(d, atol(only), &m, 1);
    } else if (run_once(d, 0, &m, verbose) != 0 || m == 0) {
        printf("the clean run failed (allocations %ld)\n", m);
        bad = 1;
    } else {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        long nbad = 0;
        for (long n = 1; n <= m; n++)
            nbad += run_child(d, n, verbose);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        printf("allocations in a clean run: %ld; failed each in turn: %ld runs, "
               "%ld broke a promise; %.1f s\n", m, m, nbad, s);
        bad = nbad != 0;
    }
    rmdir(d);
    return bad;
}
