/* Record modes (tchannel-python's once/new_episodes/none/all), at-most-once
 * playback in file order, recording slots, strictness, env override and
 * reload. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <tchannel/cassette.h>

static tch_slice S(const char *s) { return tch_slice_cstr(s); }

static tch_cassette_call call_of(const char *ep, const char *body) {
    tch_cassette_call c = {.service = S("keyvalue-server"), .endpoint = S(ep), .body = S(body),
                           .scheme = TCH_CASSETTE_RAW};
    return c;
}

static char *tmp_path(const char *name) {
    char dir[] = "/tmp/cassette_modes_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    assert_non_null(p);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

static void rm_path(char *p) {
    unlink(p);
    char *slash = strrchr(p, '/');
    *slash = '\0';
    rmdir(p);
    free(p);
}

static tch_cassette *open_opts(const char *path, tch_cassette_mode mode, int repeats) {
    tch_cassette_options o;
    tch_cassette *c = NULL;
    tch_error err = {0};
    tch_cassette_options_init(&o);
    o.mode = mode;
    o.no_env_override = 1;
    o.allow_playback_repeats = repeats;
    if (tch_cassette_open(path, &o, &c, &err))
        fail_msg("open: %s", err.msg);
    return c;
}

static tch_cassette *open_mode(const char *path, tch_cassette_mode mode) {
    return open_opts(path, mode, 0);
}

/* Mode NONE with allow_playback_repeats. */
static tch_cassette *open_repeating(const char *path) {
    return open_opts(path, TCH_CASSETTE_NONE, 1);
}

/* answer: a 64-byte buffer for the replayed body (buffers are not NUL-terminated) */
static int decide(tch_cassette *c, const char *ep, const char *body, tch_error *err,
                  char *answer) {
    tch_cassette_call call = call_of(ep, body);
    tch_cassette_decision d;
    int rc = tch_cassette_lookup(c, &call, &d, err);
    int act = d.action;
    if (answer) {
        answer[0] = '\0';
        if (act == TCH_CASSETTE_ACT_REPLAY)
            snprintf(answer, 64, "%.*s", (int)d.interaction->response.body.len,
                     (const char *)d.interaction->response.body.ptr);
    }
    assert_true(rc == 0 || act == TCH_CASSETTE_ACT_ERROR);
    tch_cassette_decision_clear(&d);
    return act;
}

static void record(tch_cassette *c, const char *ep, const char *body, const char *answer) {
    tch_cassette_call call = call_of(ep, body);
    tch_cassette_slot s;
    tch_error err = {0};
    if (tch_cassette_record_begin(c, &call, &s, &err))
        fail_msg("record_begin: %s", err.msg);
    tch_cassette_reply r = {0, S(""), S(answer)};
    assert_int_equal(tch_cassette_record_finish(c, s, &r, &err), 0);
}

static void save_ok(tch_cassette *c) {
    tch_error err = {0};
    if (tch_cassette_save(c, &err))
        fail_msg("save: %s", err.msg);
}

/* A saved file named `name` holding echo(body)->answer for each pair. */
static char *seed_file(const char *name, const char *const (*calls)[2], size_t n) {
    char *p = tmp_path(name);
    tch_cassette *c = open_mode(p, TCH_CASSETTE_ONCE);
    for (size_t i = 0; i < n; i++)
        record(c, "echo", calls[i][0], calls[i][1]);
    save_ok(c);
    tch_cassette_free(c);
    return p;
}

/* A file with echo(a)->A and echo(b)->B. */
static char *seeded(void) {
    static const char *const calls[][2] = {{"a", "A"}, {"b", "B"}};
    return seed_file("seed.yaml", calls, 2);
}

static void once_new_file_records_and_replays_after_save(void **state) {
    (void)state;
    char *p = tmp_path("once.yaml");
    tch_cassette *c = open_mode(p, TCH_CASSETTE_ONCE);
    assert_false(tch_cassette_existed(c));
    assert_int_equal(decide(c, "echo", "hi", NULL, NULL), TCH_CASSETTE_ACT_RECORD);
    record(c, "echo", "hi", "HI");
    /* as tchannel-python: not replayable until saved */
    assert_int_equal(decide(c, "echo", "hi", NULL, NULL), TCH_CASSETTE_ACT_RECORD);
    save_ok(c);
    tch_cassette_free(c);

    c = open_mode(p, TCH_CASSETTE_ONCE);
    char ans[64];
    assert_int_equal(decide(c, "echo", "hi", NULL, ans), TCH_CASSETTE_ACT_REPLAY);
    tch_error err = {0};
    assert_int_equal(decide(c, "echo", "hi", &err, NULL), TCH_CASSETTE_ACT_ERROR);
    assert_int_equal(err.code, TCH_ENOTFOUND);
    assert_non_null(strstr(err.msg, "already played"));
    tch_cassette_free(c);
    rm_path(p);
}

static void once_existing_file_refuses_new_requests(void **state) {
    (void)state;
    char *p = seeded();
    tch_cassette *c = open_mode(p, TCH_CASSETTE_ONCE);
    tch_error err = {0};
    assert_int_equal(decide(c, "echo", "zzz", &err, NULL), TCH_CASSETTE_ACT_ERROR);
    assert_non_null(strstr(err.msg, "mode once"));
    assert_non_null(strstr(err.msg, p));
    assert_non_null(strstr(err.msg, "keyvalue-server::echo (raw) body \"zzz\""));
    tch_cassette_call call = call_of("echo", "zzz");
    tch_cassette_slot s;
    assert_int_equal(tch_cassette_record_begin(c, &call, &s, &err), TCH_ESTATE);
    tch_cassette_free(c);
    rm_path(p);
}

static void new_episodes_replays_and_appends(void **state) {
    (void)state;
    char *p = seeded();
    tch_cassette *c = open_mode(p, TCH_CASSETTE_NEW_EPISODES);
    char ans[64];
    assert_int_equal(decide(c, "echo", "b", NULL, ans), TCH_CASSETTE_ACT_REPLAY);
    assert_string_equal(ans, "B");
    assert_int_equal(decide(c, "echo", "c", NULL, NULL), TCH_CASSETTE_ACT_RECORD);
    record(c, "echo", "c", "C");
    save_ok(c);
    tch_cassette_free(c);
    c = open_mode(p, TCH_CASSETTE_NONE);
    assert_int_equal(tch_cassette_count(c), 3);
    /* old interactions kept in file order, the new one appended */
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&tch_cassette_get(c, 0)->response.body), "A"));
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&tch_cassette_get(c, 2)->response.body), "C"));
    tch_cassette_free(c);
    rm_path(p);
}

static void none_replays_only(void **state) {
    (void)state;
    char *p = tmp_path("none.yaml"); /* even a missing file may not record */
    tch_cassette *c = open_mode(p, TCH_CASSETTE_NONE);
    tch_error err = {0};
    assert_int_equal(decide(c, "echo", "a", &err, NULL), TCH_CASSETTE_ACT_ERROR);
    assert_non_null(strstr(err.msg, "mode none"));
    assert_non_null(strstr(err.msg, "no replayable interactions"));
    tch_cassette_free(c);
    free(p);
}

static void all_never_replays_and_rewrites(void **state) {
    (void)state;
    char *p = seeded();
    tch_cassette *c = open_mode(p, TCH_CASSETTE_ALL);
    assert_int_equal(decide(c, "echo", "a", NULL, NULL), TCH_CASSETTE_ACT_RECORD);
    record(c, "echo", "a", "A2");
    save_ok(c);
    tch_cassette_free(c);
    c = open_mode(p, TCH_CASSETTE_NONE);
    assert_int_equal(tch_cassette_count(c), 1);
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&tch_cassette_get(c, 0)->response.body), "A2"));
    tch_cassette_free(c);
    rm_path(p);
}

/* tchannel-mock reloads a cassette it records into: in mode ALL what this
 * run already wrote must survive the reload (it is this run's, not old). */
static void all_keeps_this_runs_calls_across_a_reload(void **state) {
    (void)state;
    char *p = seeded();
    tch_cassette *c = open_mode(p, TCH_CASSETTE_ALL);
    record(c, "echo", "a", "A2");
    save_ok(c);
    tch_cassette *again = NULL;
    tch_error err = {0};
    if (tch_cassette_reload(c, &again, &err))
        fail_msg("reload: %s", err.msg);
    tch_cassette_free(c);
    record(again, "echo", "b", "B2");
    save_ok(again);
    tch_cassette_free(again);
    c = open_mode(p, TCH_CASSETTE_NONE);
    assert_int_equal(tch_cassette_count(c), 2); /* A2 and B2; the seeded A and B are gone */
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&tch_cassette_get(c, 0)->response.body), "A2"));
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&tch_cassette_get(c, 1)->response.body), "B2"));
    tch_cassette_free(c);
    rm_path(p);
}

/* A reload is not a new run: in mode ONCE a cassette that did not exist
 * when the run began still records after it (the file exists by then). */
static void once_new_file_keeps_recording_across_a_reload(void **state) {
    (void)state;
    char *p = tmp_path("once-reload.yaml");
    tch_cassette *c = open_mode(p, TCH_CASSETTE_ONCE);
    record(c, "echo", "a", "A");
    save_ok(c);
    tch_cassette *again = NULL;
    tch_error err = {0};
    if (tch_cassette_reload(c, &again, &err))
        fail_msg("reload: %s", err.msg);
    tch_cassette_free(c);
    assert_int_equal(decide(again, "echo", "b", NULL, NULL), TCH_CASSETTE_ACT_RECORD);
    char ans[64];
    assert_int_equal(decide(again, "echo", "a", NULL, ans), TCH_CASSETTE_ACT_REPLAY);
    assert_string_equal(ans, "A");
    tch_cassette_free(again);
    c = open_mode(p, TCH_CASSETTE_ONCE); /* a new run: the file exists, replay only */
    assert_int_equal(decide(c, "echo", "b", &err, NULL), TCH_CASSETTE_ACT_ERROR);
    tch_cassette_free(c);
    rm_path(p);
}

/* What a run recorded and saved is not "unused" to the strict check. */
static void strict_ignores_what_this_run_recorded(void **state) {
    (void)state;
    char *p = tmp_path("strict-new.yaml");
    tch_cassette_options o;
    tch_cassette_options_init(&o);
    o.no_env_override = 1;
    o.strict = 1;
    tch_cassette *c = NULL;
    tch_error err = {0};
    assert_int_equal(tch_cassette_open(p, &o, &c, &err), 0);
    record(c, "echo", "a", "A");
    assert_true(tch_cassette_all_played(c));
    if (tch_cassette_finish(c, &err))
        fail_msg("finish: %s", err.msg);
    assert_true(tch_cassette_all_played(c));
    tch_cassette_free(c);
    rm_path(p);
}

static void only_regular_files_are_read(void **state) {
    (void)state;
    tch_cassette_options o;
    tch_cassette_options_init(&o);
    o.no_env_override = 1;
    tch_cassette *c = NULL;
    tch_error err = {0};
    assert_int_equal(tch_cassette_open("/dev/zero", &o, &c, &err), TCH_EINVAL);
    assert_non_null(strstr(err.msg, "not a regular file"));
    assert_null(c);
}

static void all_without_recording_leaves_file(void **state) {
    (void)state;
    char *p = seeded();
    struct stat before, after;
    assert_int_equal(stat(p, &before), 0);
    tch_cassette *c = open_mode(p, TCH_CASSETTE_ALL);
    save_ok(c);
    tch_cassette_free(c);
    assert_int_equal(stat(p, &after), 0);
    assert_int_equal(before.st_ino, after.st_ino);
    c = open_mode(p, TCH_CASSETTE_NONE);
    assert_int_equal(tch_cassette_count(c), 2);
    tch_cassette_free(c);
    rm_path(p);
}

static void identical_requests_play_in_file_order_once(void **state) {
    (void)state;
    static const char *const calls[][2] = {{"x", "first"}, {"y", "other"}, {"x", "second"}};
    char *p = seed_file("same.yaml", calls, 3);
    tch_cassette *c = open_mode(p, TCH_CASSETTE_NONE);
    char ans[64];
    assert_int_equal(decide(c, "echo", "x", NULL, ans), TCH_CASSETTE_ACT_REPLAY);
    assert_string_equal(ans, "first");
    assert_int_equal(decide(c, "echo", "x", NULL, ans), TCH_CASSETTE_ACT_REPLAY);
    assert_string_equal(ans, "second");
    assert_int_equal(decide(c, "echo", "x", NULL, NULL), TCH_CASSETTE_ACT_ERROR);
    assert_int_equal(tch_cassette_play_count(c), 2);
    assert_int_equal(tch_cassette_play_count_of(c, 0), 1);
    assert_int_equal(tch_cassette_play_count_of(c, 1), 0);
    assert_false(tch_cassette_all_played(c));
    tch_cassette_free(c);

    c = open_repeating(p);
    assert_int_equal(decide(c, "echo", "x", NULL, ans), TCH_CASSETTE_ACT_REPLAY);
    assert_int_equal(decide(c, "echo", "x", NULL, ans), TCH_CASSETTE_ACT_REPLAY);
    assert_int_equal(decide(c, "echo", "x", NULL, ans), TCH_CASSETTE_ACT_REPLAY);
    assert_string_equal(ans, "second"); /* repeats the last one */
    assert_int_equal(tch_cassette_play_count_of(c, 2), 2);
    tch_cassette_free(c);
    rm_path(p);
}

/* Rewinding starts playback over (first match again, not the one a repeat
 * last gave) and leaves this run's recordings alone. */
static void rewind_plays_from_the_start(void **state) {
    (void)state;
    static const char *const calls[][2] = {{"x", "first"}, {"x", "second"}};
    char *p = seed_file("rewind.yaml", calls, 2);
    char ans[64];
    tch_cassette *c = open_repeating(p);
    for (int i = 0; i < 3; i++)
        assert_int_equal(decide(c, "echo", "x", NULL, ans), TCH_CASSETTE_ACT_REPLAY);
    assert_string_equal(ans, "second");
    assert_true(tch_cassette_all_played(c));
    tch_cassette_rewind(c);
    assert_int_equal(tch_cassette_play_count(c), 0);
    assert_int_equal(tch_cassette_play_count_of(c, 0), 0);
    assert_int_equal(tch_cassette_play_count_of(c, 1), 0);
    assert_false(tch_cassette_all_played(c));
    assert_int_equal(decide(c, "echo", "x", NULL, ans), TCH_CASSETTE_ACT_REPLAY);
    assert_string_equal(ans, "first");
    assert_int_equal(decide(c, "echo", "x", NULL, ans), TCH_CASSETTE_ACT_REPLAY);
    assert_string_equal(ans, "second");
    tch_cassette_free(c);

    /* without repeats: played out, then rewound, then played out again */
    c = open_mode(p, TCH_CASSETTE_NEW_EPISODES);
    assert_int_equal(decide(c, "echo", "x", NULL, ans), TCH_CASSETTE_ACT_REPLAY);
    assert_int_equal(decide(c, "echo", "x", NULL, ans), TCH_CASSETTE_ACT_REPLAY);
    record(c, "echo", "y", "new");
    tch_cassette_rewind(c);
    assert_int_equal(decide(c, "echo", "x", NULL, ans), TCH_CASSETTE_ACT_REPLAY);
    assert_string_equal(ans, "first");
    assert_true(tch_cassette_dirty(c)); /* the recording is still to be saved */
    assert_int_equal(tch_cassette_count(c), 3);
    save_ok(c);
    tch_cassette_free(c);
    c = open_mode(p, TCH_CASSETTE_NONE);
    assert_int_equal(tch_cassette_count(c), 3);
    assert_int_equal(decide(c, "echo", "y", NULL, ans), TCH_CASSETTE_ACT_REPLAY);
    assert_string_equal(ans, "new");
    tch_cassette_free(c);
    rm_path(p);
}

static void concurrent_slots_save_in_issue_order(void **state) {
    (void)state;
    char *p = tmp_path("slots.yaml");
    tch_cassette *c = open_mode(p, TCH_CASSETTE_ONCE);
    tch_cassette_call x = call_of("echo", "x"), y = call_of("echo", "y"), z = call_of("echo", "z");
    tch_cassette_slot sx, sy, sz;
    tch_error err = {0};
    assert_int_equal(tch_cassette_record_begin(c, &x, &sx, &err), 0);
    assert_int_equal(tch_cassette_record_begin(c, &y, &sy, &err), 0);
    assert_int_equal(tch_cassette_record_begin(c, &z, &sz, &err), 0);
    tch_cassette_reply ry = {0, S(""), S("Y")};
    assert_int_equal(tch_cassette_record_finish(c, sy, &ry, &err), 0);
    assert_int_equal(tch_cassette_record_finish_error(c, sx, 0x03, "busy now", &err), 0);
    assert_int_equal(tch_cassette_record_abort(c, sz, &err), 0);
    assert_int_equal(tch_cassette_record_abort(c, sz, &err), TCH_ESTATE); /* only once */
    save_ok(c);
    tch_cassette_free(c);
    c = open_mode(p, TCH_CASSETTE_NONE);
    assert_int_equal(tch_cassette_count(c), 2);
    assert_true(tch_cassette_get(c, 0)->is_error);
    assert_int_equal(tch_cassette_get(c, 0)->error.code, 0x03);
    assert_string_equal(tch_cassette_get(c, 0)->error.message, "busy now");
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&tch_cassette_get(c, 1)->response.body), "Y"));
    tch_cassette_free(c);
    rm_path(p);
}

static void env_overrides_mode(void **state) {
    (void)state;
    char *p = seeded();
    tch_cassette_options o;
    tch_cassette *c = NULL;
    tch_error err = {0};
    tch_cassette_options_init(&o); /* env override allowed by default */
    setenv(TCH_CASSETTE_ENV_MODE, "New_Episodes", 1);
    assert_int_equal(tch_cassette_open(p, &o, &c, &err), 0);
    assert_int_equal(tch_cassette_get_mode(c), TCH_CASSETTE_NEW_EPISODES);
    assert_int_equal(decide(c, "echo", "new", NULL, NULL), TCH_CASSETTE_ACT_RECORD);
    tch_cassette_free(c);
    o.no_env_override = 1;
    assert_int_equal(tch_cassette_open(p, &o, &c, &err), 0);
    assert_int_equal(tch_cassette_get_mode(c), TCH_CASSETTE_ONCE);
    tch_cassette_free(c);
    o.no_env_override = 0;
    setenv(TCH_CASSETTE_ENV_MODE, "sometimes", 1);
    c = NULL;
    assert_int_equal(tch_cassette_open(p, &o, &c, &err), TCH_EINVAL);
    assert_null(c);
    assert_non_null(strstr(err.msg, TCH_CASSETTE_ENV_MODE));
    assert_non_null(strstr(err.msg, "'sometimes'"));
    unsetenv(TCH_CASSETTE_ENV_MODE);
    rm_path(p);
}

static void strict_reports_unused(void **state) {
    (void)state;
    char *p = seeded();
    tch_cassette_options o;
    tch_cassette *c = NULL;
    tch_error err = {0};
    tch_cassette_options_init(&o);
    o.no_env_override = 1;
    o.strict = 1;
    assert_int_equal(tch_cassette_open(p, &o, &c, &err), 0);
    assert_int_equal(decide(c, "echo", "a", NULL, NULL), TCH_CASSETTE_ACT_REPLAY);
    assert_int_equal(tch_cassette_finish(c, &err), TCH_ESTATE);
    assert_non_null(strstr(err.msg, "1 interaction left unused: #1"));
    assert_non_null(strstr(err.msg, "body \"b\""));
    assert_int_equal(decide(c, "echo", "b", NULL, NULL), TCH_CASSETTE_ACT_REPLAY);
    assert_true(tch_cassette_all_played(c));
    assert_int_equal(tch_cassette_finish(c, &err), 0);
    tch_cassette_free(c);
    rm_path(p);
}

static void reload_keeps_old_on_failure(void **state) {
    (void)state;
    char *p = seeded();
    tch_cassette *old = open_mode(p, TCH_CASSETTE_NONE), *fresh = NULL;
    tch_error err = {0};
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("version: 1\ninteractions: [\n", f);
    fclose(f);
    assert_int_equal(tch_cassette_reload(old, &fresh, &err), TCH_EPARSE);
    assert_null(fresh);
    assert_int_equal(decide(old, "echo", "a", NULL, NULL), TCH_CASSETTE_ACT_REPLAY);
    f = fopen(p, "w");
    assert_non_null(f);
    fputs("version: 1\ninteractions:\n- request: {serviceName: keyvalue-server, endpoint: echo, "
          "body: q}\n  response: {body: Q}\n",
          f);
    fclose(f);
    assert_int_equal(tch_cassette_reload(old, &fresh, &err), 0);
    assert_int_equal(tch_cassette_get_mode(fresh), TCH_CASSETTE_NONE);
    assert_int_equal(decide(fresh, "echo", "q", NULL, NULL), TCH_CASSETTE_ACT_REPLAY);
    assert_int_equal(tch_cassette_count(old), 2);
    tch_cassette_free(old);
    tch_cassette_free(fresh);
    rm_path(p);
}

static void mode_names_parse(void **state) {
    (void)state;
    tch_cassette_mode m;
    assert_int_equal(tch_cassette_mode_parse("ALL", &m, NULL), 0);
    assert_int_equal(m, TCH_CASSETTE_ALL);
    assert_int_equal(tch_cassette_mode_parse("none", &m, NULL), 0);
    assert_int_equal(m, TCH_CASSETTE_NONE);
    assert_int_equal(tch_cassette_mode_parse("record", &m, NULL), TCH_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(once_new_file_records_and_replays_after_save),
        cmocka_unit_test(once_existing_file_refuses_new_requests),
        cmocka_unit_test(new_episodes_replays_and_appends),
        cmocka_unit_test(none_replays_only),
        cmocka_unit_test(all_never_replays_and_rewrites),
        cmocka_unit_test(all_without_recording_leaves_file),
        cmocka_unit_test(all_keeps_this_runs_calls_across_a_reload),
        cmocka_unit_test(once_new_file_keeps_recording_across_a_reload),
        cmocka_unit_test(strict_ignores_what_this_run_recorded),
        cmocka_unit_test(only_regular_files_are_read),
        cmocka_unit_test(identical_requests_play_in_file_order_once),
        cmocka_unit_test(rewind_plays_from_the_start),
        cmocka_unit_test(concurrent_slots_save_in_issue_order),
        cmocka_unit_test(env_overrides_mode),
        cmocka_unit_test(strict_reports_unused),
        cmocka_unit_test(reload_keeps_old_on_failure),
        cmocka_unit_test(mode_names_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
