/* tchannel-mock as a child process, driven by our C client: replay in all
 * three schemes, misses, delay and fault, reload, record-through, SIGTERM,
 * the admin API, Hyperbahn advertise, and the command line. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <tchannel/cassette.h>
#include <tchannel/channel.h>
#include <tchannel/json.h>
#include <tchannel/thrift_scheme.h>

#include <sys/stat.h>

#define MOCK_FX_CLIENT "keyvalue-client"
#define MOCK_FX_DIR "/tmp/tch-mock-test-XXXXXX"
#include "mock_fixture.h"
#include "ports.h"

#define SRC TCH_SOURCE_DIR
#define KV_YAML SRC "/cassettes/keyvalue.yaml"
#define ECHO_YAML SRC "/cassettes/echo-raw.yaml"
#define KV_IDL SRC "/cassettes/keyvalue.thrift"

/* Starts the mock with the given arguments (NULL-terminated) plus an
 * ephemeral admin port. */
#define start_mock(f, ...) assert_int_equal(fx_start_mock((f), 1, __VA_ARGS__), 0)

static void write_file(const char *path, const char *text) {
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    FILE *fp = fopen(tmp, "w");
    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(rename(tmp, path), 0); /* as editors do: the watcher sees a whole file */
}

/* ---- calls ---------------------------------------------------------------------- */

static result raw_call(fx *f, const char *service, const char *endpoint, tch_slice arg2,
                       tch_slice arg3) {
    tch_call_opts o = {.service = service, .endpoint = tch_slice_cstr(endpoint), .arg2 = arg2,
                       .arg3 = arg3, .timeout_ms = 3000, .retry_limit = TCH_RETRY_LIMIT_NONE};
    return fx_call(f, o, 5000);
}

static result echo(fx *f, const char *service, const char *body) {
    return raw_call(f, service, "echo", TCH_SLICE_NULL, tch_slice_cstr(body));
}

static json_t *admin_get(fx *f, const char *uri) {
    json_t *j = NULL;
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_GET, uri, NULL, &j), 200);
    assert_non_null(j);
    return j;
}

/* PUT /mode with {"mode": mode}: the HTTP status (and the answer, in *out). */
static int put_mode(fx *f, const char *mode, json_t **out) {
    char body[64];
    snprintf(body, sizeof body, "{\"mode\": \"%s\"}", mode);
    return mp_admin(&f->mp, f->base, EVHTTP_REQ_PUT, "/mode", body, out);
}

/* How many interactions the cassette file at path holds; it must load. */
static size_t interactions_in(const char *path) {
    tch_cassette *c;
    tch_error err;
    assert_int_equal(tch_cassette_open(path, NULL, &c, &err), 0);
    size_t n = tch_cassette_count(c);
    tch_cassette_free(c);
    return n;
}

/* Polls GET /cassettes (bounded) until cassettes[0] has `key` satisfying want. */
static int wait_cassette(fx *f, const char *key, int want_nonnull, json_int_t want_int) {
    long deadline = mp_now_ms() + 5000;
    while (mp_now_ms() < deadline) {
        json_t *j = admin_get(f, "/cassettes");
        json_t *v = json_object_get(json_array_get(json_object_get(j, "cassettes"), 0), key);
        int ok = want_nonnull ? (v && !json_is_null(v)) : json_integer_value(v) == want_int;
        json_decref(j);
        if (ok)
            return 1;
        int never = 0;
        tch_test_run_until(f->base, &never, 50); /* bounded pause between polls */
    }
    return 0;
}

/* ---- replay -------------------------------------------------------------------- */

static void replays_raw_interactions(void **state) {
    fx *f = *state;
    start_mock(f, KV_YAML, ECHO_YAML, NULL);
    result r = echo(f, "keyvalue-server", "hello");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.arg3, "hello");
    r = echo(f, "keyvalue-server", "line one\nline two\n");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.arg3, "line one\nline two\n");
    const uint8_t bin[] = {0x00, 0x01, 0x02, 0xff, 0xfe, 0x78};
    r = raw_call(f, "keyvalue-server", "echo", tch_slice_cstr("trace=1"), tch_slice_of(bin, 6));
    assert_int_equal(r.status, 0);
    assert_string_equal(r.arg2, "trace=1");
    /* the recorded error frame */
    r = echo(f, "keyvalue-server", "slow");
    assert_int_equal(r.status, TCH_EREMOTE);
    assert_int_equal(r.error_code, TCH_PCODE_TIMEOUT);
    assert_non_null(strstr(r.message, "timeout after 100ms"));
    /* "hello" is in both cassettes: once each, then a miss */
    r = echo(f, "keyvalue-server", "hello");
    assert_int_equal(r.status, 0);
    r = echo(f, "keyvalue-server", "hello");
    assert_int_equal(r.error_code, TCH_PCODE_BAD_REQUEST);
    assert_non_null(strstr(r.message, "already"));
}

typedef struct jresult {
    int done, status;
    char body[512];
} jresult;

static void on_json(const tch_json_response *res, void *ud) {
    jresult *r = ud;
    r->done = 1;
    r->status = res->status;
    char *t = res->body ? json_dumps(res->body, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
    snprintf(r->body, sizeof r->body, "%s", t ? t : "");
    free(t);
}

static void replays_json_interactions(void **state) {
    fx *f = *state;
    start_mock(f, KV_YAML, NULL);
    json_t *body = json_pack("{s:s, s:s}", "value", "bar", "key", "foo"); /* key order differs */
    json_t *headers = json_object();
    tch_call_opts o = {.service = "keyvalue-server", .endpoint = tch_slice_cstr("json_echo"),
                       .host_port = f->mp.hp, .timeout_ms = 3000};
    jresult r = {0};
    tch_error err;
    assert_int_equal(tch_json_call(f->client, &o, headers, body, on_json, &r, &err), 0);
    assert_true(tch_test_run_until(f->base, &r.done, 5000));
    assert_int_equal(r.status, 0);
    assert_string_equal(r.body, "{\"key\":\"foo\",\"value\":\"bar\"}");
    json_decref(body);
    json_decref(headers);
}

typedef struct tres {
    int done, status;
    uint8_t code;
    tch_thrift_outcome_kind kind;
    char text[128];
} tres;

static void on_thrift(const tch_thrift_response *res, void *ud) {
    tres *r = ud;
    r->done = 1;
    r->status = res->status;
    r->code = res->code;
    if (res->status)
        return;
    r->kind = res->outcome.kind;
    const tch_thrift_value *v = res->outcome.kind == TCH_THRIFT_OUTCOME_SUCCESS
                                    ? res->outcome.value
                                    : tch_thrift_value_struct_get(res->outcome.value, 1);
    tch_slice s = v ? tch_thrift_value_bytes(v) : TCH_SLICE_NULL;
    snprintf(r->text, sizeof r->text, "%.*s", (int)s.len, (const char *)s.ptr);
}

static tres get_value(fx *f, const tch_thrift_service *svc, const char *key) {
    tch_thrift_value *args = tch_thrift_value_new_struct();
    tch_thrift_value_struct_set_take(args, 1, tch_thrift_value_new_string(tch_slice_cstr(key)));
    tch_call_opts o = {.service = "keyvalue-server", .host_port = f->mp.hp, .timeout_ms = 3000};
    tres r = {0};
    tch_error err;
    assert_int_equal(tch_thrift_call(f->client, &o, svc, "getValue", args, NULL, 0, on_thrift,
                                     &r, &err), 0);
    assert_true(tch_test_run_until(f->base, &r.done, 5000));
    tch_thrift_value_free(args);
    return r;
}

static void replays_thrift_interactions(void **state) {
    fx *f = *state;
    start_mock(f, KV_YAML, NULL);
    tch_thrift_idl *idl;
    tch_error err;
    assert_int_equal(tch_thrift_load(KV_IDL, &idl, &err), 0);
    const tch_thrift_service *svc = tch_thrift_idl_find_service(idl, "KeyValue");
    tres r = get_value(f, svc, "foo");
    assert_int_equal(r.status, 0);
    assert_int_equal(r.kind, TCH_THRIFT_OUTCOME_SUCCESS);
    assert_string_equal(r.text, "bar");
    r = get_value(f, svc, "missing");
    assert_int_equal(r.status, 0);
    assert_int_equal(r.code, 1);
    assert_int_equal(r.kind, TCH_THRIFT_OUTCOME_EXCEPTION);
    assert_string_equal(r.text, "missing");
    tch_thrift_idl_free(idl);
}

/* ---- misses ----------------------------------------------------------------------- */

static void miss_names_nearest_and_differing_fields(void **state) {
    fx *f = *state;
    start_mock(f, ECHO_YAML, NULL);
    result r = raw_call(f, "keyvalue-server", "echo2", TCH_SLICE_NULL, tch_slice_cstr("hello!"));
    assert_int_equal(r.status, TCH_EREMOTE);
    assert_int_equal(r.error_code, TCH_PCODE_BAD_REQUEST);
    assert_non_null(strstr(r.message, "nearest #0"));
    assert_non_null(strstr(r.message, "endpoint: recorded \"echo\" vs requested \"echo2\""));
    assert_non_null(strstr(r.message, "body"));
    /* the journal has it with the near miss as data */
    json_t *j = admin_get(f, "/journal");
    json_t *e = json_array_get(json_object_get(j, "entries"), 0);
    assert_string_equal(json_string_value(json_object_get(e, "outcome")), "unmatched");
    assert_false(json_is_true(json_object_get(e, "matched")));
    json_t *nm = json_object_get(e, "nearMiss");
    assert_int_equal(json_integer_value(json_object_get(nm, "index")), 0);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(nm, "diffs"), 0), "field")),
                        "endpoint");
    json_decref(j);
    /* journal queries: filters, a limit, and clear errors for bad ones */
    assert_string_equal(echo(f, "keyvalue-server", "hello").arg3, "hello");
    j = admin_get(f, "/journal?outcome=unmatched");
    assert_int_equal(json_integer_value(json_object_get(j, "matching")), 1);
    e = json_array_get(json_object_get(j, "entries"), 0);
    assert_string_equal(json_string_value(json_object_get(e, "endpoint")), "echo2");
    json_decref(j);
    j = admin_get(f, "/journal?service=keyvalue-server&endpoint=echo");
    assert_int_equal(json_integer_value(json_object_get(j, "matching")), 1);
    e = json_array_get(json_object_get(j, "entries"), 0);
    assert_string_equal(json_string_value(json_object_get(e, "outcome")), "replayed");
    json_decref(j);
    j = admin_get(f, "/journal?limit=1");
    assert_int_equal(json_integer_value(json_object_get(j, "matching")), 2);
    assert_int_equal(json_array_size(json_object_get(j, "entries")), 1);
    e = json_array_get(json_object_get(j, "entries"), 0); /* the newest */
    assert_string_equal(json_string_value(json_object_get(e, "endpoint")), "echo");
    json_decref(j);
    j = admin_get(f, "/journal?service=nobody");
    assert_int_equal(json_integer_value(json_object_get(j, "matching")), 0);
    assert_int_equal(json_array_size(json_object_get(j, "entries")), 0);
    json_decref(j);
    static const struct {
        const char *uri, *says;
    } bad[] = {
        {"/journal?outcome=missed", "outcome: expected replayed, recorded"},
        {"/journal?limit=ten", "limit: expected a whole number, got \"ten\""},
        {"/journal?limit=-1", "limit: expected a whole number"},
        {"/journal?servce=x", "unknown parameter \"servce\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_GET, bad[i].uri, NULL, &j), 400);
        const char *msg = json_string_value(json_object_get(j, "error"));
        if (!msg || !strstr(msg, bad[i].says))
            fail_msg("%s answered %s", bad[i].uri, msg ? msg : "(no error)");
        json_decref(j);
    }
    /* and one log line */
    int fired = 0;
    char log[8192] = "";
    for (long end = mp_now_ms() + 3000; !strstr(log, "miss:") && mp_now_ms() < end;) {
        tch_test_run_until(f->base, &fired, 20);
        mp_stderr(&f->mp, log, sizeof log);
    }
    assert_non_null(strstr(log, "tchannel-mock: miss: cassette"));
}

/* ---- delay and fault ---------------------------------------------------------------- */

static const char EXT_YAML[] =
    "interactions:\n"
    "- request: {serviceName: svc, endpoint: slow, body: x}\n"
    "  response: {body: y}\n"
    "  delay: 300\n"
    "- request: {serviceName: svc, endpoint: flaky, body: x}\n"
    "  response: {body: y}\n"
    "  fault: busy\n"
    "- request: {serviceName: svc, endpoint: gone, body: x}\n"
    "  response: {body: y}\n"
    "  fault: {code: declined, message: go away}\n"
    "  delay: 100\n"
    "version: 1\n";

static void delay_and_fault_injection(void **state) {
    fx *f = *state;
    char path[300];
    snprintf(path, sizeof path, "%s/ext.yaml", f->dir);
    write_file(path, EXT_YAML);
    start_mock(f, path, NULL);
    /* start the slow one and a fast miss together: the delay must not block others */
    result slow = {0}, fast = {0};
    slow.started = fast.started = mp_now_ms();
    tch_call_opts o = {.service = "svc", .endpoint = tch_slice_cstr("slow"),
                       .arg3 = tch_slice_cstr("x"), .host_port = f->mp.hp, .timeout_ms = 3000};
    tch_error err;
    assert_int_equal(tch_channel_call(f->client, &o, fx_on_answer, &slow, &err), 0);
    o.endpoint = tch_slice_cstr("nothing");
    assert_int_equal(tch_channel_call(f->client, &o, fx_on_answer, &fast, &err), 0);
    assert_true(tch_test_run_until(f->base, &slow.done, 5000));
    assert_true(fast.done);
    assert_int_equal(slow.status, 0);
    assert_string_equal(slow.arg3, "y");
    assert_true(slow.ms >= 290);
    assert_true(fast.ms < slow.ms);

    result r = raw_call(f, "svc", "flaky", TCH_SLICE_NULL, tch_slice_cstr("x"));
    assert_int_equal(r.status, TCH_EREMOTE);
    assert_int_equal(r.error_code, TCH_PCODE_BUSY);
    r = raw_call(f, "svc", "gone", TCH_SLICE_NULL, tch_slice_cstr("x"));
    assert_int_equal(r.error_code, TCH_PCODE_DECLINED);
    assert_string_equal(r.message, "go away");
    assert_true(r.ms >= 95);
}

/* ---- reload -------------------------------------------------------------------------- */

static const char V1[] = "interactions:\n"
                         "- request: {serviceName: svc, endpoint: echo, body: a}\n"
                         "  response: {body: one}\n"
                         "version: 1\n";
static const char V2[] = "interactions:\n"
                         "- request: {serviceName: svc, endpoint: echo, body: a}\n"
                         "  response: {body: second}\n"
                         "version: 1\n";
static const char BROKEN[] = "interactions:\n"
                             "- request: {serviceName: svc, endpoint: echo, body: a\n"
                             "  response: [\n";

static void reload_on_change_and_broken_edit_keeps_serving(void **state) {
    fx *f = *state;
    char path[300];
    snprintf(path, sizeof path, "%s/live.yaml", f->dir);
    write_file(path, V1);
    start_mock(f, "--allow-repeats", "--watch-interval", "50", path, NULL);
    assert_string_equal(echo(f, "svc", "a").arg3, "one");
    write_file(path, V2);
    assert_true(wait_cassette(f, "reloads", 0, 1));
    assert_string_equal(echo(f, "svc", "a").arg3, "second");
    write_file(path, BROKEN);
    assert_true(wait_cassette(f, "loadError", 1, 0));
    json_t *j = admin_get(f, "/cassettes");
    const char *msg = json_string_value(json_object_get(
        json_array_get(json_object_get(j, "cassettes"), 0), "loadError"));
    assert_non_null(strstr(msg, "live.yaml:"));
    json_decref(j);
    assert_string_equal(echo(f, "svc", "a").arg3, "second"); /* the last good version */
    /* fixing the file clears the error */
    write_file(path, V1);
    assert_true(wait_cassette(f, "reloads", 0, 2));
    assert_string_equal(echo(f, "svc", "a").arg3, "one");
    char log[16384] = "";
    mp_stderr(&f->mp, log, sizeof log);
    assert_non_null(strstr(log, "still serving the last good version"));
}

/* ---- record-through ----------------------------------------------------------------------- */

static void record_through_then_replay_without_upstream(void **state) {
    fx *f = *state;
    mock_proc up;
    char *uargv[] = {TCH_INTEROP_SERVER, "--idl", KV_IDL, NULL};
    assert_int_equal(mp_start(&up, uargv, 0, 0), 0);
    char path[300];
    snprintf(path, sizeof path, "%s/sub/rec.yaml", f->dir);
    start_mock(f, "--mode", "new_episodes", "--upstream", up.hp, "--record-to", path, ECHO_YAML,
               NULL);
    /* replayed from echo-raw.yaml, not forwarded */
    assert_string_equal(echo(f, "keyvalue-server", "hello").arg3, "hello");
    /* recorded through */
    result r = echo(f, "keyvalue-server", "fresh body");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.arg3, "fresh body");
    r = raw_call(f, "keyvalue-server", "busy", TCH_SLICE_NULL, tch_slice_cstr("b"));
    assert_int_equal(r.error_code, TCH_PCODE_BUSY);
    assert_int_equal(mp_stop(&up, NULL, SIGTERM, 5000), 0);
    /* already on disk, before any shutdown */
    tch_cassette *c;
    tch_error err;
    assert_int_equal(tch_cassette_open(path, NULL, &c, &err), 0);
    assert_int_equal(tch_cassette_count(c), 2);
    const tch_cassette_interaction *it = tch_cassette_get(c, 0);
    assert_int_equal(it->request.body.len, 10);
    assert_memory_equal(it->request.host_port.ptr, up.hp, strlen(up.hp));
    assert_true(tch_cassette_get(c, 1)->is_error);
    tch_cassette_free(c);
    /* upstream gone: replayed */
    r = echo(f, "keyvalue-server", "fresh body");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.arg3, "fresh body");
    r = raw_call(f, "keyvalue-server", "busy", TCH_SLICE_NULL, tch_slice_cstr("b"));
    assert_int_equal(r.error_code, TCH_PCODE_BUSY);
    json_t *j = admin_get(f, "/journal");
    json_t *entries = json_object_get(j, "entries");
    assert_string_equal(json_string_value(json_object_get(json_array_get(entries, 1), "outcome")),
                        "recorded");
    assert_string_equal(json_string_value(json_object_get(json_array_get(entries, 3), "outcome")),
                        "replayed");
    json_decref(j);
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0);
}

/* An in-process upstream: echoes, except `hold` calls, kept until the test answers. */
typedef struct upstream {
    tch_inbound *held[8];
    int nheld;
} upstream;

static void up_echo(tch_inbound *in, void *ud) {
    (void)ud;
    tch_inbound_respond(in, 0, tch_inbound_arg2(in), tch_inbound_arg3(in));
}

static void up_hold(tch_inbound *in, void *ud) {
    upstream *u = ud;
    u->held[u->nheld++] = in;
}

/* A real service for the mock to record through: keyvalue-server with
 * echo (answers at once) and hold (answers when the test says). */
static tch_channel *start_upstream(fx *f, upstream *u) {
    tch_channel *srv;
    tch_channel_new(f->base, "keyvalue-server", NULL, &srv, NULL);
    tch_error err;
    assert_int_equal(tch_channel_listen(srv, NULL, &err), 0);
    tch_channel_register(srv, NULL, "echo", up_echo, u);
    tch_channel_register(srv, NULL, "hold", up_hold, u);
    return srv;
}

static void on_answer_held(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    upstream *u = arg;
    for (int i = 0; i < u->nheld; i++)
        tch_inbound_respond(u->held[i], 0, tch_slice_cstr(""), tch_slice_cstr("late"));
    u->nheld = 0;
}

/* A recording that cannot be saved (a file where its folder should be) is
 * logged, and its caller gets an error saying so (the recording helper's
 * default; --record-failure=answer serves it instead). */
static void an_unsaved_recording_is_refused_to_its_caller(void **state) {
    fx *f = *state;
    upstream u = {0};
    tch_channel *srv = start_upstream(f, &u);
    char blocker[300], path[340];
    snprintf(blocker, sizeof blocker, "%s/blocker", f->dir);
    snprintf(path, sizeof path, "%s/rec.yaml", blocker);
    start_mock(f, "--mode", "once", "--upstream", tch_channel_host_port(srv), path, NULL);
    write_file(blocker, "not a folder\n");
    /* the caller is told its recording was not kept, not served as if it were */
    result r = echo(f, "keyvalue-server", "lost");
    assert_int_equal(r.error_code, TCH_PCODE_UNEXPECTED);
    assert_non_null(strstr(r.message, "could not be saved"));
    int status = mp_stop(&f->mp, f->base, SIGTERM, 5000);
    /* what the caller was refused is not the cassette's: nothing is lost at exit */
    assert_int_equal(status, 0);
    unlink(blocker);
    tch_channel_free(srv);
}

/* A cassette whose mode would record, but that is not the record target:
 * the miss says so, rather than "no cassette loaded". */
static void miss_names_a_cassette_that_would_record(void **state) {
    fx *f = *state;
    upstream u = {0};
    tch_channel *srv = start_upstream(f, &u);
    char target[300], other[300];
    snprintf(target, sizeof target, "%s/target.yaml", f->dir);
    snprintf(other, sizeof other, "%s/other.yaml", f->dir);
    write_file(other, V1);
    start_mock(f, "--mode", "new_episodes", "--upstream", tch_channel_host_port(srv),
               "--record-to", target, other, NULL);
    char uri[400];
    snprintf(uri, sizeof uri, "/cassettes?path=%s", target);
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_DELETE, uri, NULL, NULL), 200);
    result r = echo(f, "svc", "nothing like it");
    assert_int_equal(r.error_code, TCH_PCODE_BAD_REQUEST);
    if (!strstr(r.message, "not the record target") || !strstr(r.message, other))
        fail_msg("miss: %s", r.message);
    tch_channel_free(srv);
}

/* --record-to naming a file of the folder given beside it in another
 * spelling (here ./): the folder's copy is the one loaded, and it records. */
static void record_to_in_another_spelling_still_records(void **state) {
    fx *f = *state;
    upstream u = {0};
    tch_channel *srv = start_upstream(f, &u);
    char dir[300], file[340], spelt[360];
    snprintf(dir, sizeof dir, "%s/rec", f->dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(file, sizeof file, "%s/t.yaml", dir);
    snprintf(spelt, sizeof spelt, "%s/./t.yaml", dir);
    write_file(file, V1);
    start_mock(f, "--mode", "new_episodes", "--upstream", tch_channel_host_port(srv),
               "--record-to", spelt, dir, NULL);
    json_t *j = admin_get(f, "/health");
    assert_true(json_is_true(json_object_get(j, "recording")));
    json_decref(j);
    result r = echo(f, "keyvalue-server", "fresh");
    if (r.status != 0)
        fail_msg("not recorded: %s", r.message);
    assert_string_equal(r.arg3, "fresh");
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0);
    assert_int_equal(interactions_in(file), 2); /* V1's, and the recording */
    tch_channel_free(srv);
}

/* The record target edited on disk while a recording was in flight: the
 * edit is not overwritten, and the run's cassette goes beside it. */
static void an_edit_is_not_overwritten_by_a_save(void **state) {
    fx *f = *state;
    upstream u = {0};
    tch_channel *srv = start_upstream(f, &u);
    tch_error err;
    char path[300], conflict[340];
    snprintf(path, sizeof path, "%s/rec.yaml", f->dir);
    snprintf(conflict, sizeof conflict, "%s.conflict.yaml", path);
    start_mock(f, "--no-watch", "--mode", "once", "--upstream", tch_channel_host_port(srv), path,
               NULL);
    result held = {0};
    tch_call_opts o = {.service = "keyvalue-server", .endpoint = tch_slice_cstr("hold"),
                       .arg3 = tch_slice_cstr("h"), .host_port = f->mp.hp, .timeout_ms = 5000};
    assert_int_equal(tch_channel_call(f->client, &o, fx_on_answer, &held, &err), 0);
    assert_true(tch_test_run_until_count(f->base, &u.nheld, 1, 5000));
    write_file(path, V1); /* the user's edit, while the recording waits */
    tch_inbound_respond(u.held[0], 0, tch_slice_cstr(""), tch_slice_cstr("late"));
    assert_true(tch_test_run_until(f->base, &held.done, 5000));
    assert_string_equal(held.arg3, "late");
    /* saved beside the edit is saved: a mode change goes ahead (was 409) */
    assert_int_equal(put_mode(f, "once", NULL), 200);
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0); /* nothing was lost */
    tch_cassette *c;
    assert_int_equal(tch_cassette_open(path, NULL, &c, &err), 0);
    assert_int_equal(tch_cassette_count(c), 1); /* V1 as the user wrote it */
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&tch_cassette_get(c, 0)->response.body), "one"));
    tch_cassette_free(c);
    assert_int_equal(tch_cassette_open(conflict, NULL, &c, &err), 0);
    assert_int_equal(tch_cassette_count(c), 1); /* this run's recording */
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&tch_cassette_get(c, 0)->response.body), "late"));
    tch_cassette_free(c);
    unlink(conflict);
    tch_channel_free(srv);
}

/* A broken edit of the record target (it fails to load) is still the
 * user's: the next recording goes beside it, not over it. */
static void a_broken_edit_is_not_overwritten_either(void **state) {
    fx *f = *state;
    upstream u = {0};
    tch_channel *srv = start_upstream(f, &u);
    char path[300], conflict[340];
    snprintf(path, sizeof path, "%s/rec.yaml", f->dir);
    snprintf(conflict, sizeof conflict, "%s.conflict.yaml", path);
    start_mock(f, "--watch-interval", "50", "--mode", "new_episodes", "--upstream",
               tch_channel_host_port(srv), path, NULL);
    assert_string_equal(echo(f, "keyvalue-server", "first").arg3, "first"); /* recorded */
    write_file(path, BROKEN);
    assert_true(wait_cassette(f, "loadError", 1, 0));
    assert_string_equal(echo(f, "keyvalue-server", "second").arg3, "second"); /* recorded */
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0);
    char got[256] = "";
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    size_t n = fread(got, 1, sizeof got - 1, fp);
    fclose(fp);
    got[n] = '\0';
    assert_string_equal(got, BROKEN); /* the user's text, untouched */
    assert_int_equal(interactions_in(conflict), 2); /* both recordings */
    unlink(conflict);
    tch_channel_free(srv);
}

/* A recording whose call never reaches the upstream is aborted: the caller
 * gets the error, and GET /cassettes shows the slot as aborted, not pending. */
static void an_unreachable_upstream_aborts_the_slot(void **state) {
    fx *f = *state;
    char dead[64], path[300];
    assert_int_equal(tch_test_dead_port(dead, sizeof dead), 0);
    snprintf(path, sizeof path, "%s/rec.yaml", f->dir);
    start_mock(f, "--mode", "once", "--upstream", dead, path, NULL);
    result r = echo(f, "keyvalue-server", "x");
    assert_int_not_equal(r.error_code, 0);
    json_t *j = admin_get(f, "/cassettes");
    json_t *c0 = json_array_get(json_object_get(j, "cassettes"), 0);
    json_t *i0 = json_array_get(json_object_get(c0, "interactions"), 0);
    assert_true(json_is_true(json_object_get(i0, "aborted")));
    assert_null(json_object_get(i0, "pending"));
    assert_int_equal(json_integer_value(json_object_get(c0, "pendingRecordings")), 0);
    json_decref(j);
}

static void sigterm_saves_every_recording(void **state) {
    fx *f = *state;
    upstream u = {0};
    tch_channel *srv = start_upstream(f, &u);
    tch_error err;
    char path[300];
    snprintf(path, sizeof path, "%s/rec.yaml", f->dir);
    start_mock(f, "--mode", "once", "--upstream", tch_channel_host_port(srv), path, NULL);
    enum { N = 40 };
    static result rs[N];
    memset(rs, 0, sizeof rs);
    int done = 0;
    for (int i = 0; i < N; i++) {
        char body[32];
        snprintf(body, sizeof body, "call-%d", i);
        tch_call_opts o = {.service = "keyvalue-server", .endpoint = tch_slice_cstr("echo"),
                           .arg3 = tch_slice_cstr(body), .host_port = f->mp.hp,
                           .timeout_ms = 5000};
        assert_int_equal(tch_channel_call(f->client, &o, fx_on_answer, &rs[i], &err), 0);
    }
    for (long end = mp_now_ms() + 5000; done < N && mp_now_ms() < end;) {
        event_base_loop(f->base, EVLOOP_ONCE);
        done = 0;
        for (int i = 0; i < N; i++)
            done += rs[i].done;
    }
    assert_int_equal(done, N);
    /* one call in flight upstream when SIGTERM arrives: answered 200 ms later */
    result held = {0};
    tch_call_opts o = {.service = "keyvalue-server", .endpoint = tch_slice_cstr("hold"),
                       .arg3 = tch_slice_cstr("h"), .host_port = f->mp.hp, .timeout_ms = 5000};
    assert_int_equal(tch_channel_call(f->client, &o, fx_on_answer, &held, &err), 0);
    assert_true(tch_test_run_until_count(f->base, &u.nheld, 1, 5000));
    struct event *t = evtimer_new(f->base, on_answer_held, &u);
    struct timeval tv = {0, 200000};
    evtimer_add(t, &tv);
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0);
    event_free(t);
    assert_true(tch_test_run_until(f->base, &held.done, 3000));
    assert_int_equal(held.status, 0);
    assert_string_equal(held.arg3, "late");
    tch_cassette *c;
    int orc = tch_cassette_open(path, NULL, &c, &err);
    if (orc)
        fprintf(stderr, "open: %s\n", err.msg);
    assert_int_equal(orc, 0);
    assert_int_equal(tch_cassette_count(c), N + 1);
    const tch_cassette_interaction *last = tch_cassette_get(c, N);
    assert_int_equal(last->response.body.len, 4);
    tch_cassette_free(c);
    tch_channel_free(srv);
}

/* ---- admin API ------------------------------------------------------------------------ */

static void admin_api_endpoints(void **state) {
    fx *f = *state;
    char path[300];
    snprintf(path, sizeof path, "%s/live.yaml", f->dir);
    write_file(path, V1);
    /* the test's folder and the fixtures are roots: the admin API loads there */
    start_mock(f, "--no-watch", "--cassette-root", f->dir, "--cassette-root",
               SRC "/tests/fixtures/cassettes", ECHO_YAML, NULL);
    json_t *j = admin_get(f, "/health");
    assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
    assert_string_equal(json_string_value(json_object_get(j, "listening")), f->mp.hp);
    json_decref(j);

    assert_string_equal(echo(f, "keyvalue-server", "hello").arg3, "hello");
    j = admin_get(f, "/cassettes");
    json_t *c0 = json_array_get(json_object_get(j, "cassettes"), 0);
    assert_string_equal(json_string_value(json_object_get(c0, "mode")), "none");
    json_t *i0 = json_array_get(json_object_get(c0, "interactions"), 0);
    assert_int_equal(json_integer_value(json_object_get(i0, "plays")), 1);
    assert_string_equal(json_string_value(json_object_get(i0, "endpoint")), "echo");
    assert_string_equal(json_string_value(json_object_get(i0, "scheme")), "raw");
    assert_int_equal(json_array_size(json_object_get(c0, "interactions")), 4);
    json_decref(j);

    /* rewind: play counts only, in memory; the journal keeps its entry */
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_POST, "/rewind", "", &j), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "rewound")), 1);
    json_decref(j);
    j = admin_get(f, "/cassettes");
    c0 = json_array_get(json_object_get(j, "cassettes"), 0);
    i0 = json_array_get(json_object_get(c0, "interactions"), 0);
    assert_int_equal(json_integer_value(json_object_get(i0, "plays")), 0);
    json_decref(j);
    j = admin_get(f, "/journal");
    assert_int_equal(json_array_size(json_object_get(j, "entries")), 1);
    json_decref(j);
    assert_string_equal(echo(f, "keyvalue-server", "hello").arg3, "hello"); /* replayable again */
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_GET, "/rewind", NULL, NULL), 405);

    /* reset: play counts and journal, its counts too (nothing was dropped) */
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_POST, "/reset", "", NULL), 200);
    j = admin_get(f, "/journal");
    assert_int_equal(json_array_size(json_object_get(j, "entries")), 0);
    assert_int_equal(json_integer_value(json_object_get(j, "total")), 0);
    assert_int_equal(json_integer_value(json_object_get(j, "dropped")), 0);
    json_decref(j);
    assert_string_equal(echo(f, "keyvalue-server", "hello").arg3, "hello"); /* replayable again */
    j = admin_get(f, "/journal");
    assert_int_equal(json_integer_value(json_object_get(j, "total")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "dropped")), 0);
    json_decref(j);

    /* load, then serve from it */
    char body[400];
    snprintf(body, sizeof body, "{\"path\": \"%s\"}", path);
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_POST, "/cassettes", body, NULL), 201);
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_POST, "/cassettes", body, &j), 409);
    assert_non_null(strstr(json_string_value(json_object_get(j, "error")), "already loaded"));
    json_decref(j);
    /* the same file spelled another way is the same cassette */
    snprintf(body, sizeof body, "{\"path\": \"%s/./live.yaml\"}", f->dir);
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_POST, "/cassettes", body, &j), 409);
    assert_non_null(strstr(json_string_value(json_object_get(j, "error")), "already loaded, as"));
    json_decref(j);
    assert_string_equal(echo(f, "svc", "a").arg3, "one");
    /* bytes that are not UTF-8 are shown as U+FFFD, not lost: in an error
     * (was "out of memory") and in the journal (was a missing key) */
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_DELETE, "/cassettes?path=%FFx", NULL, &j),
                     404);
    assert_non_null(strstr(json_string_value(json_object_get(j, "error")), "\xef\xbf\xbdx: not loaded"));
    json_decref(j);
    raw_call(f, "svc", "\xff" "ep", TCH_SLICE_NULL, tch_slice_cstr("b"));
    j = admin_get(f, "/journal?limit=1");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(j, "entries"), 0), "endpoint")),
                        "\xef\xbf\xbd" "ep");
    json_decref(j);
    /* a folder: its files already loaded are skipped, the others loaded */
    char other[340];
    snprintf(other, sizeof other, "%s/other.yaml", f->dir);
    write_file(other, V2);
    snprintf(body, sizeof body, "{\"path\": \"%s\"}", f->dir);
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_POST, "/cassettes", body, &j), 201);
    json_t *loaded = json_object_get(j, "loaded");
    assert_int_equal(json_array_size(loaded), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(loaded, 0), "path")), other);
    json_decref(j);
    /* again, as the record target: the folder's first file (loaded already)
     * becomes it, though nothing new is loaded */
    snprintf(body, sizeof body, "{\"path\": \"%s\", \"recordTarget\": true}", f->dir);
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_POST, "/cassettes", body, &j), 201);
    assert_int_equal(json_array_size(json_object_get(j, "loaded")), 0);
    json_decref(j);
    j = admin_get(f, "/cassettes");
    json_t *list = json_object_get(j, "cassettes");
    int targets = 0;
    for (size_t k = 0; k < json_array_size(list); k++) {
        json_t *cj = json_array_get(list, k);
        if (json_is_true(json_object_get(cj, "recordTarget"))) {
            targets++;
            assert_string_equal(json_string_value(json_object_get(cj, "path")), path);
        }
    }
    assert_int_equal(targets, 1);
    json_decref(j);
    char drop[400];
    snprintf(drop, sizeof drop, "/cassettes?path=%s", other);
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_DELETE, drop, NULL, NULL), 200);
    /* POST /reload picks up an edit even with --no-watch */
    write_file(path, V2);
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_POST, "/reload", "", NULL), 200);
    assert_string_equal(echo(f, "svc", "a").arg3, "second");
    /* a deleted file: the reload is refused, naming it, and the last version stays */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_POST, "/reload", "", &j), 409);
    char *dump = json_dumps(j, 0);
    if (!strstr(dump, "the file is gone"))
        fail_msg("reload answer: %s", dump);
    free(dump);
    json_decref(j);
    j = admin_get(f, "/cassettes");
    size_t kept = 0;
    json_t *cas;
    size_t ci;
    json_array_foreach(json_object_get(j, "cassettes"), ci, cas)
        if (!strcmp(json_string_value(json_object_get(cas, "path")), path))
            kept = json_array_size(json_object_get(cas, "interactions"));
    json_decref(j);
    assert_int_equal(kept, 1);
    write_file(path, V2);
    /* unload */
    char uri[400];
    snprintf(uri, sizeof uri, "/cassettes?path=%s", path);
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_DELETE, uri, NULL, NULL), 200);
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_DELETE, uri, NULL, NULL), 404);
    assert_int_equal(echo(f, "svc", "a").error_code, TCH_PCODE_BAD_REQUEST);
    /* errors */
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_POST, "/cassettes", "{not json", NULL),
                     400);
    snprintf(body, sizeof body, "{\"path\": \"%s/fixtures/cassettes/corrupt.yaml\"}",
             SRC "/tests");
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_POST, "/cassettes", body, &j), 400);
    assert_non_null(strstr(json_string_value(json_object_get(j, "error")), "corrupt.yaml:5:"));
    json_decref(j);
    /* a path that is not there: 404 naming it (the name came from the freed body) */
    snprintf(body, sizeof body, "{\"path\": \"%s/no-such-file.yaml\"}", f->dir);
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_POST, "/cassettes", body, &j), 404);
    assert_non_null(strstr(json_string_value(json_object_get(j, "error")), "no such file"));
    assert_non_null(strstr(json_string_value(json_object_get(j, "error")), "no-such-file.yaml"));
    json_decref(j);
    /* ...unless it is to be the record target: the answer says it is one */
    snprintf(body, sizeof body, "{\"path\": \"%s/new.yaml\", \"recordTarget\": true}", f->dir);
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_POST, "/cassettes", body, &j), 201);
    assert_true(json_is_true(
        json_object_get(json_array_get(json_object_get(j, "loaded"), 0), "recordTarget")));
    json_decref(j);
    /* not on disk yet, spelled another way: the same cassette (not a second copy) */
    snprintf(body, sizeof body, "{\"path\": \"%s/./new.yaml\", \"recordTarget\": true}", f->dir);
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_POST, "/cassettes", body, &j), 409);
    assert_non_null(strstr(json_string_value(json_object_get(j, "error")), "already loaded, as"));
    json_decref(j);
    assert_int_equal(put_mode(f, "new_episodes", &j), 400);
    assert_non_null(strstr(json_string_value(json_object_get(j, "error")), "upstream"));
    json_decref(j);
    assert_int_equal(put_mode(f, "bogus", NULL), 400);
    assert_int_equal(put_mode(f, "none", NULL), 200);
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_GET, "/nope", NULL, NULL), 404);
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_PUT, "/health", "", NULL), 405);
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_PATCH, "/health", "", &j), 405);
    assert_non_null(json_object_get(j, "error")); /* ours, in JSON */
    json_decref(j);
}

static void put_mode_switches_to_recording(void **state) {
    fx *f = *state;
    upstream u = {0};
    tch_channel *srv = start_upstream(f, &u);
    char path[300];
    snprintf(path, sizeof path, "%s/live.yaml", f->dir);
    write_file(path, V1);
    start_mock(f, "--upstream", tch_channel_host_port(srv), path, NULL);
    assert_int_equal(echo(f, "keyvalue-server", "new").error_code, TCH_PCODE_BAD_REQUEST);
    assert_int_equal(put_mode(f, "new_episodes", NULL), 200);
    result r = echo(f, "keyvalue-server", "new");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.arg3, "new");
    assert_int_equal(interactions_in(path), 2);
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0);
    tch_channel_free(srv);
}

/* A mode change is not a new run: in mode all, what this run recorded stays
 * in the file (a new run would drop it as old), and a record target that did
 * not exist when the run began goes on recording in mode once. */
static void put_mode_keeps_the_run(void **state) {
    fx *f = *state;
    upstream u = {0};
    tch_channel *srv = start_upstream(f, &u);
    char path[300];
    snprintf(path, sizeof path, "%s/all.yaml", f->dir);
    start_mock(f, "--mode", "all", "--upstream", tch_channel_host_port(srv), path, NULL);
    assert_int_equal(echo(f, "keyvalue-server", "b1").status, 0);
    assert_int_equal(put_mode(f, "all", NULL), 200);
    assert_int_equal(echo(f, "keyvalue-server", "b2").status, 0);
    assert_int_equal(put_mode(f, "once", NULL), 200);
    json_t *j = admin_get(f, "/health");
    assert_true(json_is_true(json_object_get(j, "recording"))); /* all.yaml is this run's */
    json_decref(j);
    assert_int_equal(echo(f, "keyvalue-server", "b3").status, 0);
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0);
    assert_int_equal(interactions_in(path), 3); /* b1 to b3 */
    tch_channel_free(srv);
}

/* A file that existed at start: mode all writes only this run's calls (V1's
 * goes); after a spell in new_episodes, back in all, they are still this
 * run's, with what new_episodes added. */
static void all_then_another_mode_then_all_keeps_the_run(void **state) {
    fx *f = *state;
    upstream u = {0};
    tch_channel *srv = start_upstream(f, &u);
    char path[300];
    snprintf(path, sizeof path, "%s/all.yaml", f->dir);
    write_file(path, V1);
    start_mock(f, "--mode", "all", "--upstream", tch_channel_host_port(srv), path, NULL);
    assert_int_equal(echo(f, "keyvalue-server", "b1").status, 0);
    assert_int_equal(put_mode(f, "new_episodes", NULL), 200);
    assert_int_equal(echo(f, "keyvalue-server", "b2").status, 0);
    assert_int_equal(put_mode(f, "all", NULL), 200);
    assert_int_equal(echo(f, "keyvalue-server", "b3").status, 0);
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0);
    assert_int_equal(interactions_in(path), 3); /* b1 to b3, not V1's */
    tch_channel_free(srv);
}

/* ---- Hyperbahn ------------------------------------------------------------------------- */

static void answers_hyperbahn_advertise(void **state) {
    fx *f = *state;
    start_mock(f, ECHO_YAML, NULL);
    json_t *body = json_pack("{s:[{s:s, s:i}]}", "services", "serviceName", "my-svc", "cost", 0);
    tch_kv cn = {tch_slice_cstr("cn"), tch_slice_cstr("my-svc")};
    tch_call_opts o = {.service = "hyperbahn", .endpoint = tch_slice_cstr("ad"),
                       .host_port = f->mp.hp, .timeout_ms = 3000, .headers = &cn, .nheaders = 1};
    jresult r = {0};
    tch_error err;
    assert_int_equal(tch_json_call(f->client, &o, NULL, body, on_json, &r, &err), 0);
    assert_true(tch_test_run_until(f->base, &r.done, 5000));
    assert_int_equal(r.status, 0);
    assert_string_equal(r.body, "{\"connectionCount\":1}");
    json_decref(body);
    json_t *j = admin_get(f, "/hyperbahn");
    assert_non_null(json_object_get(json_object_get(j, "advertised"), "my-svc"));
    json_decref(j);
}

/* ---- command line ------------------------------------------------------------------------ */

static int run_status(char *const argv[], char *err, size_t n) {
    mock_proc mp;
    memset(&mp, 0, sizeof mp);
    int out[2], e[2];
    assert_int_equal(pipe(out), 0);
    assert_int_equal(pipe(e), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(out[1], 1), dup2(e[1], 2);
        close(out[0]), close(e[0]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(out[1]), close(e[1]);
    size_t len = 0;
    for (ssize_t r; len + 1 < n && (r = read(e[0], err + len, n - len - 1)) > 0;)
        len += (size_t)r;
    err[len] = 0;
    close(out[0]), close(e[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void bad_command_line_and_corrupt_cassette(void **state) {
    (void)state;
    char err[4096];
    char *a1[] = {TCH_MOCK_BIN, "--bogus", ECHO_YAML, NULL};
    assert_int_equal(run_status(a1, err, sizeof err), 2);
    assert_non_null(strstr(err, "--bogus"));
    /* one line naming the problem, not the whole usage text */
    assert_non_null(strstr(err, "unknown option --bogus; try 'tchannel-mock --help'\n"));
    assert_null(strstr(err, "usage:"));
    char *a2[] = {TCH_MOCK_BIN, "--port", "x70000", ECHO_YAML, NULL};
    assert_int_equal(run_status(a2, err, sizeof err), 2);
    assert_non_null(strstr(err, "--port: expected a port 0-65535, got \"x70000\""));
    char *a8[] = {TCH_MOCK_BIN, "--mode=bogus", ECHO_YAML, NULL};
    assert_int_equal(run_status(a8, err, sizeof err), 2);
    assert_non_null(strstr(err, "--mode: invalid record mode 'bogus': expected once, new_episodes, none or all"));
    char *a3[] = {TCH_MOCK_BIN, "--mode", "new_episodes", ECHO_YAML, NULL};
    assert_int_equal(run_status(a3, err, sizeof err), 2);
    assert_non_null(strstr(err, "--upstream"));
    char *a6[] = {TCH_MOCK_BIN, "--match", "body,bogus", ECHO_YAML, NULL};
    assert_int_equal(run_status(a6, err, sizeof err), 2);
    assert_non_null(strstr(err, "unknown matcher \"bogus\""));
    char *a9[] = {TCH_MOCK_BIN, "--match", "body,hostPort", ECHO_YAML, NULL};
    assert_int_equal(run_status(a9, err, sizeof err), 2);
    assert_non_null(strstr(err, "--match: hostPort cannot match here"));
    /* checked before anything starts: no "listening" line for a harness to trust */
    char *a10[] = {TCH_MOCK_BIN, "--advertise-to", "foo:bar", ECHO_YAML, NULL};
    assert_int_equal(run_status(a10, err, sizeof err), 2);
    assert_non_null(strstr(err, "--advertise-to: invalid host:port \"foo:bar\""));
    char *a11[] = {TCH_MOCK_BIN, "--upstream", "127.0.0.1:notaport", ECHO_YAML, NULL};
    assert_int_equal(run_status(a11, err, sizeof err), 2);
    assert_non_null(strstr(err, "--upstream: invalid host:port \"127.0.0.1:notaport\""));
    char *a7[] = {TCH_MOCK_BIN, "--match=", ECHO_YAML, NULL};
    assert_int_equal(run_status(a7, err, sizeof err), 2);
    assert_non_null(strstr(err, "name at least one matcher"));
    char *a4[] = {TCH_MOCK_BIN, SRC "/tests/fixtures/cassettes/corrupt.yaml", NULL};
    assert_int_equal(run_status(a4, err, sizeof err), 1);
    assert_non_null(strstr(err, "corrupt.yaml:5:4:"));
    char *a5[] = {TCH_MOCK_BIN, SRC "/tests/fixtures/cassettes/unknown_key.yaml", NULL};
    assert_int_equal(run_status(a5, err, sizeof err), 1);
    assert_non_null(strstr(err, "unknown_key.yaml:"));
}

static void serves_a_directory_with_python_cassettes(void **state) {
    fx *f = *state;
    start_mock(f, SRC "/tests/fixtures/cassettes/py3.yaml", SRC "/cassettes", NULL);
    json_t *j = admin_get(f, "/cassettes");
    assert_true(json_array_size(json_object_get(j, "cassettes")) >= 3);
    json_decref(j);
    assert_string_equal(echo(f, "keyvalue-server", "hello").arg3, "hello");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(replays_raw_interactions, setup, teardown),
        cmocka_unit_test_setup_teardown(replays_json_interactions, setup, teardown),
        cmocka_unit_test_setup_teardown(replays_thrift_interactions, setup, teardown),
        cmocka_unit_test_setup_teardown(miss_names_nearest_and_differing_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(delay_and_fault_injection, setup, teardown),
        cmocka_unit_test_setup_teardown(reload_on_change_and_broken_edit_keeps_serving, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(record_through_then_replay_without_upstream, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(sigterm_saves_every_recording, setup, teardown),
        cmocka_unit_test_setup_teardown(an_unsaved_recording_is_refused_to_its_caller, setup, teardown),
        cmocka_unit_test_setup_teardown(record_to_in_another_spelling_still_records, setup, teardown),
        cmocka_unit_test_setup_teardown(a_broken_edit_is_not_overwritten_either, setup, teardown),
        cmocka_unit_test_setup_teardown(miss_names_a_cassette_that_would_record, setup, teardown),
        cmocka_unit_test_setup_teardown(an_edit_is_not_overwritten_by_a_save, setup, teardown),
        cmocka_unit_test_setup_teardown(an_unreachable_upstream_aborts_the_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(admin_api_endpoints, setup, teardown),
        cmocka_unit_test_setup_teardown(put_mode_switches_to_recording, setup, teardown),
        cmocka_unit_test_setup_teardown(put_mode_keeps_the_run, setup, teardown),
        cmocka_unit_test_setup_teardown(all_then_another_mode_then_all_keeps_the_run, setup, teardown),
        cmocka_unit_test_setup_teardown(answers_hyperbahn_advertise, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_command_line_and_corrupt_cassette, setup, teardown),
        cmocka_unit_test_setup_teardown(serves_a_directory_with_python_cassettes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
