/* A cassette on an allocator that fails the Nth allocation, for every N a
 * step makes: what the step answers is the truth. A commit or save that
 * fails wrote nothing the caller must undo (the recording can be dropped,
 * the file does not hold it); one that succeeds made the recording
 * replayable. A lookup that answers with a scenario stub moved its
 * scenario; one that could not is TCH_ENOMEM with nothing played. A YAML
 * writer that runs out of memory is TCH_ENOMEM. Every block is given back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <tchannel/cassette.h>
#include <tchannel/stub.h>

/* ---- the failing allocator ---------------------------------------------- */

typedef union header {
    size_t size;
    max_align_t align;
} header;

typedef struct counter {
    long count;   /* allocations asked */
    long fail_at; /* this one fails (1-based); 0: none */
    long failed;
    long live;    /* blocks */
} counter;

static int should_fail(counter *c) {
    if (++c->count != c->fail_at)
        return 0;
    c->failed++;
    return 1;
}

static void *hook_malloc(size_t size, void *ud) {
    counter *c = ud;
    header *h = should_fail(c) ? NULL : malloc(sizeof *h + size);
    if (!h)
        return NULL;
    h->size = size;
    c->live++;
    return h + 1;
}

static void *hook_realloc(void *p, size_t size, void *ud) {
    counter *c = ud;
    header *h = should_fail(c) ? NULL : realloc((header *)p - 1, sizeof *h + size);
    if (!h)
        return NULL;
    h->size = size;
    return h + 1;
}

static void hook_free(void *p, void *ud) {
    counter *c = ud;
    c->live--;
    free((header *)p - 1);
}

static tch_slice S(const char *s) { return tch_slice_cstr(s); }

/* Failing each allocation in turn stops when a run failed none; bounded. */
#define MAX_RUNS 5000

/* ---- files ----------------------------------------------------------------- */

typedef struct dir {
    char path[64];
    char file[96];
} dir;

static void dir_make(dir *d) {
    snprintf(d->path, sizeof d->path, "/tmp/cassette_alloc_XXXXXX");
    assert_non_null(mkdtemp(d->path));
    snprintf(d->file, sizeof d->file, "%s/c.yaml", d->path);
}

static void dir_clear(const dir *d) {
    char p[128];
    unlink(d->file);
    snprintf(p, sizeof p, "%s.journal", d->file);
    unlink(p);
}

/* Interactions the file holds, read on the C library. */
static size_t file_count(const char *path) {
    if (access(path, F_OK) != 0)
        return 0;
    tch_cassette_options o;
    tch_cassette_options_init(&o);
    o.mode = TCH_CASSETTE_NONE;
    tch_cassette *r = NULL;
    tch_error err = {0};
    int rc = tch_cassette_open(path, &o, &r, &err);
    if (rc)
        fail_msg("reading %s back: %s", path, err.msg);
    size_t n = tch_cassette_count(r);
    tch_cassette_free(r);
    return n;
}

static tch_cassette *open_on(const char *path, counter *cnt, tch_allocator *a) {
    *a = (tch_allocator){hook_malloc, hook_realloc, hook_free, cnt};
    tch_cassette_options o;
    tch_cassette_options_init(&o);
    o.allocator = a;
    o.mode = TCH_CASSETTE_NEW_EPISODES;
    tch_cassette *c = NULL;
    tch_error err = {0};
    if (tch_cassette_open(path, &o, &c, &err))
        fail_msg("open: %s", err.msg);
    return c;
}

static tch_cassette_slot record(tch_cassette *c, const char *body) {
    tch_cassette_call call = {.service = S("svc"), .endpoint = S("ep"), .body = S(body)};
    tch_cassette_reply rep = {0, S(""), S("answer")};
    tch_cassette_slot s;
    tch_error err = {0};
    if (tch_cassette_record_begin(c, &call, &s, &err) ||
        tch_cassette_record_finish(c, s, &rep, &err))
        fail_msg("record: %s", err.msg);
    return s;
}

/* Whether c replays the recording now (no failures). */
static bool replays(tch_cassette *c, const char *body) {
    tch_cassette_call call = {.service = S("svc"), .endpoint = S("ep"), .body = S(body)};
    tch_cassette_decision d;
    tch_error err = {0};
    int rc = tch_cassette_lookup(c, &call, &d, &err);
    bool yes = rc == 0 && d.action == TCH_CASSETTE_ACT_REPLAY;
    tch_cassette_decision_clear(&d);
    return yes;
}

/* ---- a commit (or save) that fails wrote nothing -------------------------- */

typedef enum how { BY_COMMIT, BY_SAVE } how;

/* One run with allocation fail_at of the commit or save failing. Returns
 * whether one failed. */
static bool commit_run(const dir *d, how h, const char *body, const char *asked, long fail_at,
                       int *failures) {
    dir_clear(d);
    counter cnt = {0};
    tch_allocator a;
    tch_cassette *c = open_on(d->file, &cnt, &a);
    tch_cassette_journal *j = NULL;
    tch_error err = {0};
    if (h == BY_COMMIT && tch_cassette_journal_open(c, &j, NULL, &err))
        fail_msg("journal: %s", err.msg);
    tch_cassette_slot s = record(c, body);
    cnt.count = 0;
    cnt.fail_at = fail_at;
    int rc = h == BY_COMMIT ? tch_cassette_journal_commit(j, &err) : tch_cassette_save(c, &err);
    bool failed = cnt.failed > 0;
    cnt.fail_at = 0;
    if (rc) {
        (*failures)++;
        if (rc != TCH_ENOMEM)
            fail_msg("N=%ld: a failed allocation answered %d (%s)", fail_at, rc, err.msg);
        /* as the VCR does: the caller is told, the recording dropped */
        if (tch_cassette_record_drop(c, s, &err) != 0)
            fail_msg("N=%ld: failed (%s), yet the recording cannot be dropped: %s", fail_at,
                     tch_strerror(rc), err.msg);
    } else if (!replays(c, asked)) {
        fail_msg("N=%ld: saved, yet not replayed", fail_at);
    }
    if (h == BY_COMMIT && tch_cassette_journal_fold(j, &err))
        fail_msg("N=%ld: fold: %s", fail_at, err.msg);
    size_t want = rc ? 0 : 1;
    if (h == BY_SAVE && !rc && file_count(d->file) != 1)
        fail_msg("N=%ld: saved, yet the file does not hold it", fail_at);
    if (h == BY_SAVE && rc && file_count(d->file) != 0)
        fail_msg("N=%ld: the save failed, yet the file holds the recording", fail_at);
    if (h == BY_COMMIT && file_count(d->file) != want)
        fail_msg("N=%ld: commit answered %d, yet the file holds %zu", fail_at, rc,
                 file_count(d->file));
    tch_cassette_journal_free(j);
    tch_cassette_free(c);
    assert_int_equal(cnt.live, 0);
    return failed;
}

/* asked: a request the recording answers */
static void each_allocation(how h, const char *body, const char *asked) {
    dir d;
    dir_make(&d);
    int failures = 0;
    long n = 1;
    while (commit_run(&d, h, body, asked, n, &failures) && n < MAX_RUNS)
        n++;
    assert_true(n > 1 && n < MAX_RUNS);
    assert_int_equal(failures, n - 1); /* every failed allocation was told */
    dir_clear(&d);
    rmdir(d.path);
}

static void test_commit_exact(void **state) {
    (void)state;
    each_allocation(BY_COMMIT, "b", "b");
}

/* A recording with a redacted value is matched by rules (it answers any
 * body): its own index, and implicit rules. */
static void test_commit_pattern(void **state) {
    (void)state;
    each_allocation(BY_COMMIT, TCH_STUB_REDACTED, "anything");
}

static void test_save_exact(void **state) {
    (void)state;
    each_allocation(BY_SAVE, "b", "b");
}

static void test_save_pattern(void **state) {
    (void)state;
    each_allocation(BY_SAVE, TCH_STUB_REDACTED, "anything");
}

/* ---- a scenario step is never lost ----------------------------------------- */

static const char *replayed_body(tch_cassette *c, int *rc, size_t *plays, tch_error *err) {
    static char body[8];
    tch_cassette_call call = {.service = S("svc"), .endpoint = S("go")};
    tch_cassette_decision d;
    *rc = tch_cassette_lookup(c, &call, &d, err);
    snprintf(body, sizeof body, "%.*s",
             *rc == 0 && d.action == TCH_CASSETTE_ACT_REPLAY ? (int)d.interaction->response.body.len
                                                             : 1,
             *rc == 0 && d.action == TCH_CASSETTE_ACT_REPLAY
                 ? (const char *)d.interaction->response.body.ptr : "-");
    if (*rc && d.action != TCH_CASSETTE_ACT_ERROR)
        fail_msg("a failed lookup's action is %d", d.action);
    tch_cassette_decision_clear(&d);
    *plays = tch_cassette_play_count(c);
    return body;
}

static bool scenario_run(long fail_at, int *failures) {
    counter cnt = {0};
    tch_allocator a = {hook_malloc, hook_realloc, hook_free, &cnt};
    tch_cassette_options o;
    tch_cassette_options_init(&o);
    o.allocator = &a;
    o.mode = TCH_CASSETTE_NONE;
    const char *y = "version: 1\ninteractions: []\n";
    tch_cassette *c = NULL;
    tch_error err = {0};
    assert_int_equal(tch_cassette_open_memory("m", y, strlen(y), &o, &c, &err), 0);
    json_t *s1 = json_loads("{\"id\":\"first\",\"request\":{\"serviceName\":\"svc\",\"endpoint\":"
                            "\"go\"},\"response\":{\"body\":\"one\"},\"scenario\":\"sc\","
                            "\"newState\":\"two\"}", 0, NULL);
    json_t *s2 = json_loads("{\"id\":\"second\",\"request\":{\"serviceName\":\"svc\",\"endpoint\":"
                            "\"go\"},\"response\":{\"body\":\"two\"},\"scenario\":\"sc\","
                            "\"requiredState\":\"two\",\"priority\":1}", 0, NULL);
    assert_int_equal(tch_cassette_stub_add(c, s1, NULL, &err), 0);
    assert_int_equal(tch_cassette_stub_add(c, s2, NULL, &err), 0);
    json_decref(s1);
    json_decref(s2);
    cnt.count = 0;
    cnt.fail_at = fail_at;
    int rc;
    size_t plays;
    char first[8];
    snprintf(first, sizeof first, "%s", replayed_body(c, &rc, &plays, &err));
    bool failed = cnt.failed > 0;
    cnt.fail_at = 0;
    if (rc) {
        (*failures)++;
        assert_int_equal(rc, TCH_ENOMEM);
        assert_true(err.msg[0] != '\0');
        assert_int_equal(plays, 0);
    } else {
        assert_string_equal(first, "one");
        assert_int_equal(plays, 1);
    }
    int rc2;
    const char *second = replayed_body(c, &rc2, &plays, &err);
    assert_int_equal(rc2, 0);
    /* the scenario moved exactly when the first lookup answered */
    assert_string_equal(second, rc ? "one" : "two");
    assert_int_equal(plays, rc ? 1 : 2);
    tch_cassette_free(c);
    assert_int_equal(cnt.live, 0);
    return failed;
}

static void test_scenario_step(void **state) {
    (void)state;
    int failures = 0;
    long n = 1;
    while (scenario_run(n, &failures) && n < MAX_RUNS)
        n++;
    assert_true(n > 1 && n < MAX_RUNS);
    assert_int_equal(failures, n - 1);
}

/* ---- the YAML writer out of memory ----------------------------------------- */

static void test_emit_enomem(void **state) {
    (void)state;
    counter cnt = {0};
    tch_allocator a = {hook_malloc, hook_realloc, hook_free, &cnt};
    tch_cassette_options o;
    tch_cassette_options_init(&o);
    o.allocator = &a;
    o.mode = TCH_CASSETTE_NEW_EPISODES;
    const char *y = "version: 1\ninteractions: []\n";
    tch_cassette *c = NULL;
    tch_error err = {0};
    assert_int_equal(tch_cassette_open_memory("m", y, strlen(y), &o, &c, &err), 0);
    /* bodies larger than libyaml's output buffer: the writer runs, often */
    size_t big = 200000;
    char *body = malloc(big + 1);
    assert_non_null(body);
    for (size_t i = 0; i < big; i++)
        body[i] = (char)('a' + i % 26);
    body[big] = '\0';
    record(c, body);
    record(c, body);
    free(body);
    long n = 1, failures = 0;
    for (;; n++) {
        tch_buf out = {.alloc = &a};
        cnt.count = 0;
        cnt.failed = 0;
        cnt.fail_at = n;
        int rc = tch_cassette_emit(c, &out, &err);
        cnt.fail_at = 0;
        tch_buf_free(&out);
        if (!cnt.failed) {
            assert_int_equal(rc, 0);
            break;
        }
        failures++;
        if (rc != TCH_ENOMEM)
            fail_msg("N=%ld: the emitter out of memory answered %d (%s)", n, rc, err.msg);
        assert_non_null(strstr(err.msg, "out of memory"));
        assert_true(n < MAX_RUNS);
    }
    assert_true(failures > 2);
    tch_cassette_free(c);
    assert_int_equal(cnt.live, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_exact),  cmocka_unit_test(test_commit_pattern),
        cmocka_unit_test(test_save_exact),    cmocka_unit_test(test_save_pattern),
        cmocka_unit_test(test_scenario_step), cmocka_unit_test(test_emit_enomem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
