/* The per-channel allocator hook (tch_channel_options.allocator): every
 * allocation made through it may fail, and a failure is an error, never a
 * crash, a leak or a block given back to the wrong allocator.
 *
 * The scenario, on 127.0.0.1 with one event_base: a server channel (the
 * C library's allocator) with raw, JSON and Thrift (KeyValue.getValue)
 * handlers; a client channel with the hook and the VCR recording a raw, a
 * JSON and a Thrift call into a fresh cassette in a temp dir; eject (save);
 * the server goes away; a second client with the hook replays the three
 * from the cassette (mode none); eject; teardown.
 *
 * The hook counts the allocations asked of it (malloc_cb and realloc_cb)
 * and fails the N-th; for N = 1, 2, ... the scenario runs again in this
 * process until a run asks for fewer than N (nothing failed). Each run
 * checks that a step either returned an error or did its work, that every
 * callback ran once within its bound, and, after teardown, that no block
 * of the hook is live (a leak check that needs no valgrind) and that
 * free_cb and realloc_cb saw only blocks the hook made (each carries a
 * tagged header).
 *
 * Reach: what the channel, its VCR and cassette allocate. The server's,
 * libevent's, jansson's, libyaml's, the Thrift values' and the IDL's
 * memory are on their own allocators (robust.test_alloc_fail wraps malloc
 * itself for those).
 *
 * Also: a NULL allocator and one that forwards to the C library give the
 * same outcome; an allocator lacking a callback is refused; a tch_buf uses
 * its own allocator; a sync call (the client calling its own channel) with
 * each of its allocations failing in turn hands back a response whose
 * message is a string.
 *
 * TCH_ALLOC_HOOK_VERBOSE=1 prints every N's outcome. */
#include <tchannel/cassette.h>
#include <tchannel/channel.h>
#include <tchannel/json.h>
#include <tchannel/sync.h>
#include <tchannel/thrift_scheme.h>
#include <tchannel/vcr.h>

#include <event2/event.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loop.h"
#include "vcr_calls.h"

/* ---- the counting allocator ----------------------------------------------- */

#define TAG 0x7463682d686f6f6bull /* "tch-hook" */

typedef union header {
    struct {
        uint64_t tag;
        size_t size;
        union header *prev, *next; /* the hook's live blocks */
    } h;
    max_align_t align; /* the block after it stays aligned for any type */
} header;

typedef struct counter {
    long count;    /* allocations asked (malloc_cb and realloc_cb) */
    long fail_at;  /* this one fails (1-based); 0: none */
    long failed;
    long live;     /* blocks */
    size_t bytes;  /* their bytes */
    long foreign;  /* pointers given back that the hook never made */
    long zero;     /* sizes of 0 asked */
    header *head;  /* live blocks */
} counter;

static int should_fail(counter *c, size_t size) {
    if (size == 0)
        c->zero++;
    if (++c->count == c->fail_at) {
        c->failed++;
        return 1;
    }
    return 0;
}

/* p's header when p is a live block of c's; found by address, so a
 * foreign pointer is never read. */
static header *live_block(const counter *c, const void *p) {
    for (header *h = c->head; h; h = h->h.next)
        if (h + 1 == p)
            return h->h.tag == TAG ? h : NULL;
    return NULL;
}

static header *header_of(counter *c, void *p) {
    header *h = live_block(c, p);
    if (!h)
        c->foreign++;
    return h;
}

static void link_block(counter *c, header *h) {
    h->h.prev = NULL;
    h->h.next = c->head;
    if (c->head)
        c->head->h.prev = h;
    c->head = h;
}

static void unlink_block(counter *c, header *h) {
    if (h->h.prev)
        h->h.prev->h.next = h->h.next;
    else
        c->head = h->h.next;
    if (h->h.next)
        h->h.next->h.prev = h->h.prev;
}

static void *hook_malloc(size_t size, void *ud) {
    counter *c = ud;
    if (should_fail(c, size))
        return NULL;
    header *h = malloc(sizeof *h + size);
    if (!h)
        return NULL;
    h->h.tag = TAG;
    h->h.size = size;
    link_block(c, h);
    c->live++;
    c->bytes += size;
    return h + 1;
}

static void *hook_realloc(void *p, size_t size, void *ud) {
    counter *c = ud;
    if (!p) { /* the library promises never to; count it as foreign */
        c->foreign++;
        return NULL;
    }
    header *h = header_of(c, p);
    if (!h || should_fail(c, size))
        return NULL;
    size_t old = h->h.size;
    unlink_block(c, h);
    header *n = realloc(h, sizeof *n + size);
    if (!n) {
        link_block(c, h);
        return NULL;
    }
    n->h.size = size;
    link_block(c, n);
    c->bytes = c->bytes - old + size;
    return n + 1;
}

static void hook_free(void *p, void *ud) {
    counter *c = ud;
    if (!p) { /* promised never */
        c->foreign++;
        return;
    }
    header *h = header_of(c, p);
    if (!h)
        return; /* not ours: leaked rather than freed wrongly */
    unlink_block(c, h);
    h->h.tag = 0;
    c->live--;
    c->bytes -= h->h.size;
    free(h);
}

/* The plain C library, through the hook's interface. */
static void *libc_malloc(size_t size, void *ud) {
    ++*(long *)ud;
    return malloc(size);
}
static void *libc_realloc(void *p, size_t size, void *ud) {
    ++*(long *)ud;
    return realloc(p, size);
}
static void libc_free(void *p, void *ud) {
    (void)ud;
    free(p);
}

/* ---- the scenario (vcr_calls.h) -------------------------------------------- */

typedef tch_test_outcome outcome;
typedef tch_test_result result;

/* Eject; when it keeps the VCR (TCH_ENOTSAVED: the file could not be
 * written), discard. The code must agree with the VCR's block (on its
 * channel's allocator) still being live. */
static int eject(tch_vcr *v, const counter *c) {
    tch_error err = {0};
    int rc = tch_vcr_eject(v, &err);
    if (c && (rc == TCH_ENOTSAVED) != (live_block(c, v) != NULL)) { /* a broken contract */
        fprintf(stderr, "eject returned %s but the VCR is %s\n", tch_strerror(rc),
                live_block(c, v) ? "live" : "freed");
        abort();
    }
    if (rc == TCH_ENOTSAVED)
        tch_vcr_discard(v);
    return rc;
}

/* The client's half on alloc: the three calls through the VCR; a failed
 * step discards what was installed. */
static int calls_through_vcr(struct event_base *base, const tch_allocator *alloc, const char *hp,
                             const tch_thrift_idl *idl, const char *path, tch_cassette_mode mode,
                             outcome *o, tch_channel **ch, tch_vcr **vcr, result r[3]) {
    int rc = tch_test_calls_through_vcr(base, alloc, hp, idl, path, mode, o, ch, vcr, r);
    if (rc) {
        tch_vcr_discard(*vcr);
        *vcr = NULL;
    }
    return rc;
}

/* Record then replay through the clients on alloc; c counts it (or NULL). */
static void record_and_replay(const tch_allocator *alloc, const counter *c,
                              const tch_thrift_idl *idl, const char *path, outcome *o) {
    struct event_base *base = event_base_new();
    tch_channel *server = NULL, *client = NULL, *replayer = NULL;
    tch_vcr *vcr = NULL;
    result r1[3] = {{0}}, r2[3] = {{0}};
    char hp[64] = "";
    if (!base) {
        tch_test_broken(o, "event_base_new failed", 0);
        return;
    }
    /* the server is not under test: it must simply work */
    if (tch_channel_new(base, "server", NULL, &server, NULL) != 0 ||
        tch_channel_listen(server, NULL, NULL) != 0 ||
        tch_channel_register(server, NULL, "echo", tch_test_echo, NULL) != 0 ||
        tch_json_register(server, NULL, "json_echo", tch_test_json_echo, NULL) != 0 ||
        tch_thrift_register(server, NULL, tch_thrift_idl_find_service(idl, "KeyValue"),
                            "getValue", tch_test_get_value, NULL) != 0) {
        tch_test_broken(o, "the server could not start", 0);
        goto out;
    }
    snprintf(hp, sizeof hp, "%s", tch_channel_host_port(server));
    if (calls_through_vcr(base, alloc, hp, idl, path, TCH_CASSETTE_ONCE, o, &client, &vcr, r1))
        goto out;
    o->recorded = 1;
    o->steps++;
    int rc = eject(vcr, c);
    if (rc) {
        tch_test_step_failed(o, rc);
        goto out;
    }
    o->saved = 1;
    if (!tch_test_cassette_holds_calls(path)) {
        tch_test_broken(o, "eject succeeded but the cassette lacks the calls", 0);
        goto out;
    }
    tch_channel_free(server); /* offline from here: the replay must not need it */
    server = NULL;
    if (calls_through_vcr(base, alloc, hp, idl, path, TCH_CASSETTE_NONE, o, &replayer, &vcr, r2))
        goto out;
    o->replayed = 1;
    for (int i = 0; i < 3; i++)
        snprintf(o->body[i], sizeof o->body[i], "%s", r2[i].body);
    o->steps++;
    if ((rc = eject(vcr, c)) != 0)
        tch_test_step_failed(o, rc);
out:
    tch_channel_free(replayer);
    tch_channel_free(client);
    tch_channel_free(server);
    event_base_free(base);
    for (int i = 0; i < 3; i++)
        if (r1[i].done > 1 || r2[i].done > 1)
            tch_test_broken(o, "a callback ran twice", i);
}

/* One run with allocation fail_at failing (0: none). 0 when every promise
 * held; *count gets the allocations the hook was asked for. */
static int run_once(const char *dir, const tch_thrift_idl *idl, long fail_at, long *count,
                    long *failed, int verbose) {
    char path[256];
    snprintf(path, sizeof path, "%s/c%ld.yaml", dir, fail_at);
    tch_test_remove_cassette(path);
    counter c = {.fail_at = fail_at};
    tch_allocator a = {hook_malloc, hook_realloc, hook_free, &c};
    outcome o = {0};
    record_and_replay(&a, &c, idl, path, &o);
    tch_test_remove_cassette(path);
    *count = c.count;
    *failed = c.failed;
    if (c.live != 0)
        tch_test_broken(&o, "blocks leaked", (int)c.live);
    if (c.bytes != 0 && c.live == 0)
        tch_test_broken(&o, "the byte count does not return to 0", (int)c.bytes);
    if (c.foreign)
        tch_test_broken(&o, "free_cb or realloc_cb saw a block the hook never made",
               (int)c.foreign);
    if (c.zero)
        tch_test_broken(&o, "the hook was asked for 0 bytes", (int)c.zero);
    if (fail_at == 0 && (o.failed_at || !o.replayed))
        tch_test_broken(&o, "the clean run failed", o.code);
    if (o.why[0]) {
        printf("N=%ld: %s (allocations %ld; failed step %d code %d)\n", fail_at, o.why,
               c.count, o.failed_at, o.code);
        return 1;
    }
    if (verbose)
        printf("N=%ld: ok: failed step %d code %d, recorded %d saved %d replayed %d\n",
               fail_at, o.failed_at, o.code, o.recorded, o.saved, o.replayed);
    return 0;
}

/* ---- plain checks ---------------------------------------------------------- */

static int check(int ok, const char *what) {
    if (!ok)
        printf("FAIL: %s\n", what);
    return !ok;
}

/* NULL and a libc-forwarding allocator: the same answers, and the
 * forwarding one is used. */
static int same_with_and_without(const char *dir, const tch_thrift_idl *idl) {
    char path[256];
    outcome plain = {0}, fwd = {0};
    snprintf(path, sizeof path, "%s/plain.yaml", dir);
    tch_test_remove_cassette(path);
    record_and_replay(NULL, NULL, idl, path, &plain);
    tch_test_remove_cassette(path);
    long used = 0;
    tch_allocator a = {libc_malloc, libc_realloc, libc_free, &used};
    snprintf(path, sizeof path, "%s/fwd.yaml", dir);
    record_and_replay(&a, NULL, idl, path, &fwd);
    tch_test_remove_cassette(path);
    int bad = check(!plain.why[0] && plain.replayed, "the run on the C library") +
              check(!fwd.why[0] && fwd.replayed, "the run on a forwarding allocator") +
              check(used > 0, "the forwarding allocator was used");
    for (int i = 0; i < 3; i++)
        bad += check(strcmp(plain.body[i], fwd.body[i]) == 0 && plain.body[i][0],
                     "the same replayed answers");
    if (plain.why[0] || fwd.why[0])
        printf("  plain: %s; forwarding: %s\n", plain.why, fwd.why);
    return bad;
}

static int refuses_incomplete(void) {
    struct event_base *base = event_base_new();
    counter c = {0};
    tch_allocator a = {hook_malloc, NULL, hook_free, &c};
    tch_channel_options co = {.allocator = &a};
    tch_channel *ch = (tch_channel *)1;
    tch_error err = {0};
    int rc = tch_channel_new(base, "x", &co, &ch, &err);
    int bad = check(rc == TCH_EINVAL && ch == NULL && c.count == 0,
                    "an allocator without realloc_cb is refused");
    /* the channel keeps its own copy of the struct */
    a.realloc_cb = hook_realloc;
    rc = tch_channel_new(base, "x", &co, &ch, &err);
    bad += check(rc == 0, "a channel on the hook");
    if (rc == 0) {
        const tch_allocator *mine = tch_channel_allocator(ch);
        bad += check(mine && mine != &a && mine->malloc_cb == hook_malloc && mine->user_data == &c,
                     "tch_channel_allocator is the channel's copy");
        a.malloc_cb = NULL; /* the caller's struct may change or go */
        bad += check(tch_channel_register(ch, NULL, "e", tch_test_echo, NULL) == 0 && c.live > 0,
                     "the channel allocates through its copy");
        tch_channel_free(ch);
    }
    bad += check(c.live == 0 && c.foreign == 0, "the channel gives every block back");
    /* the sync client: its own struct on the allocator too */
    tch_sync_client *sc = NULL;
    a.malloc_cb = NULL;
    bad += check(tch_sync_client_new("s", &co, &sc, NULL) == TCH_EINVAL && !sc,
                 "a sync client refuses an allocator without malloc_cb");
    a.malloc_cb = hook_malloc;
    bad += check(tch_sync_client_new("s", &co, &sc, NULL) == 0 && c.live >= 2,
                 "a sync client on the hook");
    tch_sync_client_free(sc);
    bad += check(c.live == 0 && c.foreign == 0, "the sync client gives every block back");
    bad += check(tch_channel_allocator(NULL) == NULL, "no channel: the C library");
    event_base_free(base);
    return bad;
}

/* One sync call, the client calling its own channel (its loop serves both
 * ends), with allocation fail_at failing: a response it hands back has a
 * message (tchannel/sync.h), and every block goes back. */
static int sync_run(long fail_at, long *failed) {
    counter c = {0};
    tch_allocator a = {hook_malloc, hook_realloc, hook_free, &c};
    tch_channel_options co = {.allocator = &a};
    tch_sync_client *sc = NULL;
    if (tch_sync_client_new("server", &co, &sc, NULL) != 0)
        return check(0, "a sync client on the hook");
    tch_channel *ch = tch_sync_client_channel(sc);
    int bad = check(tch_channel_register(ch, NULL, "echo", tch_test_echo, NULL) == 0 &&
                        tch_channel_listen(ch, "127.0.0.1:0", NULL) == 0,
                    "the sync client's channel listens");
    tch_call_opts opts = {.service = "server", .endpoint = tch_slice_cstr("echo"),
                          .arg2 = tch_slice_cstr("h"), .arg3 = tch_slice_cstr(TCH_TEST_BODY),
                          .host_port = tch_channel_host_port(ch), .timeout_ms = 1000,
                          .retry_limit = TCH_RETRY_LIMIT_NONE};
    c.count = 0;
    c.fail_at = bad ? 0 : fail_at;
    tch_sync_response res;
    if (!bad && tch_sync_call(sc, &opts, &res, NULL) == 0) {
        if (check(res.message != NULL, "a sync response has a message"))
            printf("  N=%ld: status %d\n", fail_at, res.status);
        bad += res.message == NULL;
        bad += check(res.status != 0 || (res.arg3.len == strlen(TCH_TEST_ECHOED) &&
                                          memcmp(res.arg3.ptr, TCH_TEST_ECHOED, res.arg3.len) == 0),
                     "a sync response with status 0 holds the answer");
        bad += check(fail_at != 0 || res.status == 0, "the clean sync call succeeds");
        tch_sync_response_free(&res);
    }
    *failed = c.failed;
    c.fail_at = 0;
    tch_sync_client_free(sc);
    bad += check(c.live == 0 && c.foreign == 0, "the sync client gives every block back");
    return bad;
}

static int sync_each_allocation(void) {
    long failed = 0, n = 0;
    int bad = sync_run(0, &failed);
    do
        bad += sync_run(++n, &failed);
    while (failed && n < 2000);
    bad += check(n > 1 && !failed, "a sync call fails each allocation in turn, then passes");
    return bad;
}

static int buf_uses_its_allocator(void) {
    counter c = {0};
    tch_allocator a = {hook_malloc, hook_realloc, hook_free, &c};
    tch_buf b = {.alloc = &a};
    int bad = check(tch_buf_append(&b, "abc", 3) == 0 && c.live == 1, "a buffer on the hook");
    for (int i = 0; i < 10; i++)
        tch_buf_append(&b, "0123456789abcdef0123456789abcdef", 32);
    bad += check(b.len == 323 && c.live == 1 && c.bytes == b.cap, "it grows through realloc_cb");
    size_t n = 0;
    uint8_t *p = tch_buf_take(&b, &n);
    bad += check(p && n == 323 && b.alloc == &a && c.live == 1, "take hands the block out");
    tch_free_with(b.alloc, p);
    char *s = tch_slice_strdup_with(&a, tch_slice_cstr("str"));
    bad += check(s && strcmp(s, "str") == 0 && c.live == 1, "strdup on the hook");
    tch_free_with(&a, s);
    c.fail_at = c.count + 1;
    bad += check(tch_buf_append(&b, "x", 1) == TCH_ENOMEM && b.ptr == NULL, "a failure is ENOMEM");
    tch_buf_free(&b);
    bad += check(c.live == 0 && c.bytes == 0 && c.foreign == 0, "every block given back");
    return bad;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    char dir[] = "/dev/shm/tch-alloc-hook-XXXXXX", alt[] = "/tmp/tch-alloc-hook-XXXXXX";
    char *d = mkdtemp(dir);
    if (!d)
        d = mkdtemp(alt);
    if (!d) {
        perror("mkdtemp");
        return 1;
    }
    tch_thrift_idl *idl = NULL;
    if (tch_thrift_load(TCH_TEST_KV_IDL, &idl, NULL) != 0) {
        printf("cannot load %s\n", TCH_TEST_KV_IDL);
        return 1;
    }
    int verbose = getenv("TCH_ALLOC_HOOK_VERBOSE") != NULL;
    int bad = buf_uses_its_allocator() + refuses_incomplete() + sync_each_allocation() +
              same_with_and_without(d, idl);
    long m = 0, nbad = 0, n = 0, failed = 0, count;
    if (run_once(d, idl, 0, &m, &failed, verbose) != 0 || m == 0) {
        printf("the clean run failed (allocations %ld)\n", m);
        bad++;
    } else {
        /* until a whole run completes with nothing failed (N past its
         * allocations); bounded, should a run allocate without end */
        do {
            n++;
            nbad += run_once(d, idl, n, &count, &failed, verbose);
        } while (failed && n < 4 * m);
        printf("allocations through the hook in a clean run: %ld; failed each in turn: "
               "%ld runs, %ld broke a promise\n", m, n - 1, nbad);
        bad += nbad != 0 || failed;
    }
    tch_thrift_idl_free(idl);
    rmdir(d);
    return bad != 0;
}
