/* The in-process VCR over real sockets: record against a live server, stop
 * it, replay offline; every mode; repeats; retries from a cassette;
 * concurrent recording order; the env override; the blocking client. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <tchannel/channel.h>
#include <tchannel/json.h>
#include <tchannel/sync.h>
#include <tchannel/thrift_scheme.h>
#include <tchannel/vcr.h>

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loop.h"

#define KV_IDL TCH_SOURCE_DIR "/cassettes/keyvalue.thrift"

typedef struct fixture {
    struct event_base *base;
    tch_channel *server, *client;
    char hp[64];
    char dir[64], path[128];
    int hits;
    int busy_left;
    tch_inbound *held[64];
    int nheld;
    int hold;
    tch_thrift_idl *idl;
} fixture;

typedef struct result {
    int done, status;
    uint8_t code, error_code;
    char message[1024];
    char body[256];
} result;

static void on_result(const tch_response *res, void *ud) {
    result *r = ud;
    r->done = 1;
    r->status = res->status;
    r->code = res->code;
    r->error_code = res->error_code;
    snprintf(r->message, sizeof r->message, "%s", res->message ? res->message : "");
    snprintf(r->body, sizeof r->body, "%.*s", (int)res->arg3.len, (const char *)res->arg3.ptr);
}

/* ---- the live server -------------------------------------------------------- */

static void echo(tch_inbound *in, void *ud) {
    fixture *f = ud;
    f->hits++;
    if (f->hold) {
        f->held[f->nheld++] = in;
        return;
    }
    char body[300];
    snprintf(body, sizeof body, "%.*s#%d", (int)tch_inbound_arg3(in).len,
             (const char *)tch_inbound_arg3(in).ptr, f->hits);
    tch_inbound_respond(in, 0, tch_inbound_arg2(in), tch_slice_cstr(body));
}

static void flaky(tch_inbound *in, void *ud) {
    fixture *f = ud;
    f->hits++;
    if (f->busy_left > 0) {
        f->busy_left--;
        tch_inbound_respond_error(in, TCH_PCODE_BUSY, "busy now");
        return;
    }
    tch_inbound_respond(in, 0, TCH_SLICE_NULL, tch_slice_cstr("finally"));
}

static void json_echo(tch_inbound *in, const json_t *h, const json_t *b, void *ud) {
    fixture *f = ud;
    f->hits++;
    tch_json_respond(in, 0, h, b);
}

static void get_value(tch_thrift_inbound *call, void *ud) {
    fixture *f = ud;
    f->hits++;
    tch_thrift_value *exc = tch_thrift_value_new_struct();
    tch_thrift_value_struct_set_take(exc, 1, tch_thrift_value_copy(tch_thrift_inbound_arg(call, "key")));
    tch_thrift_respond_exception(call, "notFound", exc, NULL, 0);
    tch_thrift_value_free(exc);
}

static void start_server(fixture *f) {
    tch_channel_new(f->base, "server", NULL, &f->server, NULL);
    assert_int_equal(tch_channel_listen(f->server, f->hp[0] ? f->hp : NULL, NULL), 0);
    snprintf(f->hp, sizeof f->hp, "%s", tch_channel_host_port(f->server));
    tch_channel_register(f->server, NULL, "echo", echo, f);
    tch_channel_register(f->server, NULL, "flaky", flaky, f);
    tch_json_register(f->server, NULL, "json_echo", json_echo, f);
    tch_thrift_register(f->server, NULL, tch_thrift_idl_find_service(f->idl, "KeyValue"),
                        "getValue", get_value, f);
}

static void stop_server(fixture *f) {
    tch_channel_free(f->server);
    f->server = NULL;
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->base = event_base_new();
    snprintf(f->dir, sizeof f->dir, "/tmp/tch-vcr-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/cassette.yaml", f->dir);
    assert_int_equal(tch_thrift_load(KV_IDL, &f->idl, NULL), 0);
    start_server(f);
    tch_channel_new(f->base, "client", NULL, &f->client, NULL);
    unsetenv(TCH_CASSETTE_ENV_MODE);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    tch_channel_free(f->client);
    if (f->server)
        stop_server(f);
    event_base_free(f->base);
    tch_thrift_idl_free(f->idl);
    if (getenv("TCH_KEEP_CASSETTE")) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "cat %s", f->path);
        (void)!system(cmd);
    }
    unlink(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

static tch_vcr *use(fixture *f, tch_cassette_mode mode, int repeats) {
    tch_vcr_options o;
    tch_vcr_options_init(&o);
    o.cassette.mode = mode;
    o.cassette.allow_playback_repeats = repeats;
    o.idl = f->idl;
    tch_vcr *v;
    tch_error err;
    if (tch_vcr_use_cassette(f->client, f->path, &o, &v, &err) != 0)
        fail_msg("use_cassette: %s", err.msg);
    return v;
}

static void eject(tch_vcr *v) {
    tch_error err;
    if (tch_vcr_eject(v, &err) != 0)
        fail_msg("eject: %s", err.msg);
}

static result raw(fixture *f, const char *ep, const char *body) {
    result r = {0};
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr(ep),
                       .arg2 = tch_slice_cstr("h"), .arg3 = tch_slice_cstr(body),
                       .host_port = f->hp, .timeout_ms = 2000};
    assert_int_equal(tch_channel_call(f->client, &o, on_result, &r, NULL), 0);
    assert_true(tch_test_run_until(f->base, &r.done, 5000));
    return r;
}

static void on_json(const tch_json_response *res, void *ud) {
    result *r = ud;
    r->done = 1;
    r->status = res->status;
    char *t = res->body ? json_dumps(res->body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    snprintf(r->body, sizeof r->body, "%s", t ? t : "");
    free(t);
}

static result json_call(fixture *f, const char *text) {
    result r = {0};
    json_t *b = json_loads(text, 0, NULL);
    json_t *h = json_pack("{s:s,s:s}", "user", "ann", "$tracing$", "abc");
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("json_echo"),
                       .host_port = f->hp, .timeout_ms = 2000};
    assert_int_equal(tch_json_call(f->client, &o, h, b, on_json, &r, NULL), 0);
    json_decref(b);
    json_decref(h);
    assert_true(tch_test_run_until(f->base, &r.done, 5000));
    return r;
}

static void on_thrift(const tch_thrift_response *res, void *ud) {
    result *r = ud;
    r->done = 1;
    r->status = res->status;
    r->code = res->code;
    snprintf(r->body, sizeof r->body, "%s",
             res->status == 0 && res->outcome.field ? tch_thrift_field_name(res->outcome.field) : "");
}

static result thrift_get(fixture *f, const char *key) {
    result r = {0};
    tch_thrift_value *args = tch_thrift_value_new_struct();
    tch_thrift_value_struct_set_take(args, 1, tch_thrift_value_new_string(tch_slice_cstr(key)));
    tch_call_opts o = {.service = "server", .host_port = f->hp, .timeout_ms = 2000};
    assert_int_equal(tch_thrift_call(f->client, &o, tch_thrift_idl_find_service(f->idl, "KeyValue"),
                                     "getValue", args, NULL, 0, on_thrift, &r, NULL), 0);
    tch_thrift_value_free(args);
    assert_true(tch_test_run_until(f->base, &r.done, 5000));
    return r;
}

static char *slurp(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    return buf;
}

/* ---- tests ---------------------------------------------------------------------- */

static void record_once_then_replay_offline(void **state) {
    fixture *f = *state;
    tch_vcr *v = use(f, TCH_CASSETTE_ONCE, 0);
    result a = raw(f, "echo", "hello");
    result b = json_call(f, "{\"n\": 1, \"list\": [1, 2]}");
    result c = thrift_get(f, "missing");
    assert_int_equal(a.status, 0);
    assert_string_equal(a.body, "hello#1");
    assert_int_equal(b.status, 0);
    assert_int_equal(c.code, 1);
    assert_string_equal(c.body, "notFound");
    assert_int_equal(f->hits, 3);
    eject(v);

    const char *text = slurp(f->path);
    assert_non_null(text);
    assert_non_null(strstr(text, "serviceName: server"));
    assert_non_null(strstr(text, "hello#1"));
    assert_non_null(strstr(text, "bodyDecoded"));  /* thrift decoded for review */
    assert_non_null(strstr(text, "notFound"));

    stop_server(f); /* offline from here on */
    v = use(f, TCH_CASSETTE_ONCE, 0);
    a = raw(f, "echo", "hello");
    b = json_call(f, "{\"list\": [1, 2], \"n\": 1}"); /* same JSON, other key order */
    c = thrift_get(f, "missing");
    assert_int_equal(a.status, 0);
    assert_string_equal(a.body, "hello#1");
    assert_int_equal(b.status, 0);
    assert_string_equal(b.body, "{\"list\":[1,2],\"n\":1}");
    assert_int_equal(c.code, 1);
    assert_string_equal(c.body, "notFound");
    assert_true(tch_cassette_all_played(tch_vcr_cassette(v)));

    result miss = raw(f, "echo", "goodbye");
    assert_int_equal(miss.status, TCH_ENOTFOUND);
    assert_non_null(strstr(miss.message, "once"));
    assert_non_null(strstr(miss.message, f->path));
    assert_non_null(strstr(miss.message, "body"));
    eject(v);
}

static void new_episodes_replays_and_appends(void **state) {
    fixture *f = *state;
    tch_vcr *v = use(f, TCH_CASSETTE_ONCE, 0);
    raw(f, "echo", "first");
    eject(v);
    v = use(f, TCH_CASSETTE_NEW_EPISODES, 0);
    result a = raw(f, "echo", "first");
    assert_string_equal(a.body, "first#1");
    assert_int_equal(f->hits, 1); /* replayed */
    result b = raw(f, "echo", "second");
    assert_string_equal(b.body, "second#2");
    assert_int_equal(f->hits, 2);
    eject(v);
    v = use(f, TCH_CASSETTE_NONE, 0);
    assert_int_equal(tch_cassette_count(tch_vcr_cassette(v)), 2);
    eject(v);
}

static void none_mode_never_records(void **state) {
    fixture *f = *state;
    tch_vcr *v = use(f, TCH_CASSETTE_NONE, 0);
    result r = raw(f, "echo", "x");
    assert_int_equal(r.status, TCH_ENOTFOUND);
    assert_non_null(strstr(r.message, "none"));
    assert_int_equal(f->hits, 0);
    eject(v);
    assert_int_equal(access(f->path, F_OK), -1); /* nothing written */
}

static void all_mode_rewrites_with_this_run(void **state) {
    fixture *f = *state;
    tch_vcr *v = use(f, TCH_CASSETTE_ONCE, 0);
    raw(f, "echo", "a");
    raw(f, "echo", "b");
    eject(v);
    v = use(f, TCH_CASSETTE_ALL, 0);
    result r = raw(f, "echo", "a");
    assert_string_equal(r.body, "a#3"); /* never replayed */
    eject(v);
    v = use(f, TCH_CASSETTE_NONE, 0);
    assert_int_equal(tch_cassette_count(tch_vcr_cassette(v)), 1);
    eject(v);
}

static void identical_requests_replay_in_order_once_each(void **state) {
    fixture *f = *state;
    tch_vcr *v = use(f, TCH_CASSETTE_ONCE, 0);
    raw(f, "echo", "same");
    raw(f, "echo", "same");
    eject(v);
    v = use(f, TCH_CASSETTE_NONE, 0);
    assert_string_equal(raw(f, "echo", "same").body, "same#1");
    assert_string_equal(raw(f, "echo", "same").body, "same#2");
    result third = raw(f, "echo", "same");
    assert_int_equal(third.status, TCH_ENOTFOUND);
    eject(v);
    v = use(f, TCH_CASSETTE_NONE, 1);
    raw(f, "echo", "same");
    raw(f, "echo", "same");
    assert_string_equal(raw(f, "echo", "same").body, "same#2"); /* repeats allowed */
    eject(v);
}

static void retries_replay_from_a_cassette(void **state) {
    fixture *f = *state;
    f->busy_left = 1;
    tch_vcr *v = use(f, TCH_CASSETTE_ONCE, 0);
    result r = raw(f, "flaky", "x");
    assert_int_equal(r.status, 0);
    assert_int_equal(f->hits, 2); /* busy, then the retry */
    eject(v);
    stop_server(f);
    v = use(f, TCH_CASSETTE_NONE, 0);
    r = raw(f, "flaky", "x");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.body, "finally");
    assert_int_equal(tch_cassette_play_count(tch_vcr_cassette(v)), 2);
    eject(v);
    v = use(f, TCH_CASSETTE_NONE, 0); /* without retries the recorded Busy shows */
    result once = {0};
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("flaky"),
                       .arg2 = tch_slice_cstr("h"), .arg3 = tch_slice_cstr("x"),
                       .host_port = f->hp, .timeout_ms = 2000, .retry_on = TCH_RETRY_NEVER};
    tch_channel_call(f->client, &o, on_result, &once, NULL);
    assert_true(tch_test_run_until(f->base, &once.done, 3000));
    assert_int_equal(once.status, TCH_EREMOTE);
    assert_int_equal(once.error_code, TCH_PCODE_BUSY);
    assert_string_equal(once.message, "busy now");
    tch_vcr_eject(v, NULL);
}

static void concurrent_recording_keeps_issue_order(void **state) {
    fixture *f = *state;
    enum { N = 20 };
    result rs[N];
    memset(rs, 0, sizeof rs);
    f->hold = 1;
    tch_vcr *v = use(f, TCH_CASSETTE_ONCE, 0);
    for (int i = 0; i < N; i++) {
        char body[16];
        snprintf(body, sizeof body, "call-%02d", i);
        tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("echo"),
                           .arg3 = tch_slice_cstr(body), .host_port = f->hp, .timeout_ms = 5000};
        tch_channel_call(f->client, &o, on_result, &rs[i], NULL);
    }
    assert_true(tch_test_run_until_count(f->base, &f->nheld, N, 5000));
    for (int i = N - 1; i >= 0; i--) /* answer in reverse order */
        tch_inbound_respond(f->held[i], 0, TCH_SLICE_NULL, tch_inbound_arg3(f->held[i]));
    int done = 0;
    for (int spins = 0; spins < 1000 && done < N; spins++) {
        event_base_loop(f->base, EVLOOP_ONCE);
        done = 0;
        for (int i = 0; i < N; i++)
            done += rs[i].done;
    }
    assert_int_equal(done, N);
    eject(v);
    v = use(f, TCH_CASSETTE_NONE, 0);
    tch_cassette *c = tch_vcr_cassette(v);
    assert_int_equal(tch_cassette_count(c), N);
    for (int i = 0; i < N; i++) {
        char body[16];
        snprintf(body, sizeof body, "call-%02d", i);
        const tch_cassette_interaction *it = tch_cassette_get(c, (size_t)i);
        assert_int_equal(it->request.body.len, strlen(body));
        assert_memory_equal(it->request.body.ptr, body, strlen(body));
    }
    eject(v);
}

static void a_local_timeout_is_recorded_and_replayed(void **state) {
    fixture *f = *state;
    f->hold = 1; /* the server never answers */
    tch_vcr *v = use(f, TCH_CASSETTE_ONCE, 0);
    result r = {0};
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("echo"),
                       .arg3 = tch_slice_cstr("slow"), .host_port = f->hp, .timeout_ms = 100,
                       .retry_on = TCH_RETRY_NEVER};
    assert_int_equal(tch_channel_call(f->client, &o, on_result, &r, NULL), 0);
    assert_true(tch_test_run_until(f->base, &r.done, 3000));
    assert_int_equal(r.status, TCH_ETIMEOUT);
    assert_int_equal(r.error_code, TCH_PCODE_TIMEOUT);
    assert_int_equal(tch_vcr_pending(v), 0); /* the recording was finished, not left open */
    eject(v);
    for (int i = 0; i < f->nheld; i++)
        tch_inbound_respond(f->held[i], 0, TCH_SLICE_NULL, TCH_SLICE_NULL);
    f->nheld = 0;
    const char *saved = slurp(f->path);
    assert_non_null(strstr(saved, "code: timeout"));
    assert_non_null(strstr(saved, "local: true"));
    stop_server(f);
    /* Replayed as the same outcome, with no server: our own deadline, which
     * no retry_on retries (an error frame with code timeout would be retried
     * under ct, find the entry played, and end as "not found"). */
    v = use(f, TCH_CASSETTE_NONE, 0);
    o.retry_on = TCH_RETRY_CONNECTION_TIMEOUT;
    result again = {0};
    assert_int_equal(tch_channel_call(f->client, &o, on_result, &again, NULL), 0);
    assert_true(tch_test_run_until(f->base, &again.done, 3000));
    assert_int_equal(again.status, TCH_ETIMEOUT);
    assert_int_equal(again.error_code, TCH_PCODE_TIMEOUT);
    assert_string_equal(again.message, r.message);
    eject(v);
}

static void env_forces_the_mode(void **state) {
    fixture *f = *state;
    setenv(TCH_CASSETTE_ENV_MODE, "none", 1);
    tch_vcr *v = use(f, TCH_CASSETTE_ONCE, 0); /* would record, but CI says none */
    result r = raw(f, "echo", "x");
    assert_int_equal(r.status, TCH_ENOTFOUND);
    assert_int_equal(f->hits, 0);
    eject(v);
    unsetenv(TCH_CASSETTE_ENV_MODE);
}

/* Masks the value of the "authorization" key in JSON headers. */
static int mask_in(tch_buf *headers) {
    json_t *h = json_loadb((const char *)headers->ptr, headers->len, 0, NULL);
    if (!json_is_object(h) || !json_object_get(h, "authorization")) {
        json_decref(h);
        return 0;
    }
    json_object_set_new(h, "authorization", json_string("REDACTED"));
    char *text = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(h);
    if (!text)
        return TCH_ENOMEM;
    tch_buf_reset(headers);
    int rc = tch_buf_append(headers, text, strlen(text));
    free(text);
    return rc;
}

/* The request before matching and writing; the answer (the server echoes
 * the headers back) before writing. */
static int mask_authorization(tch_cassette_redact_phase phase, tch_cassette_request *req,
                              tch_cassette_response *resp, void *ud) {
    (void)ud, (void)phase;
    int rc = mask_in(&req->headers);
    return rc || !resp ? rc : mask_in(&resp->headers);
}

static result json_with_secret(fixture *f, const char *secret) {
    result r = {0};
    json_t *h = json_pack("{s:s,s:s}", "authorization", secret, "user", "ann");
    json_t *b = json_pack("{s:i}", "n", 1);
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("json_echo"),
                       .host_port = f->hp, .timeout_ms = 2000};
    assert_int_equal(tch_json_call(f->client, &o, h, b, on_json, &r, NULL), 0);
    json_decref(h);
    json_decref(b);
    assert_true(tch_test_run_until(f->base, &r.done, 5000));
    return r;
}

static void secrets_are_redacted_before_writing_and_matching(void **state) {
    fixture *f = *state;
    tch_vcr_options o;
    tch_vcr_options_init(&o);
    o.cassette.redact = mask_authorization;
    tch_vcr *v;
    assert_int_equal(tch_vcr_use_cassette(f->client, f->path, &o, &v, NULL), 0);
    assert_int_equal(json_with_secret(f, "secret-one").status, 0);
    eject(v);
    const char *text = slurp(f->path);
    assert_null(strstr(text, "secret-one"));
    assert_non_null(strstr(text, "REDACTED"));
    stop_server(f);
    assert_int_equal(tch_vcr_use_cassette(f->client, f->path, &o, &v, NULL), 0);
    result r = json_with_secret(f, "secret-two"); /* another secret still matches */
    assert_int_equal(r.status, 0);
    eject(v);
}

/* Strict mode checks what the file held; what this run recorded (and
 * saved) was never there to be played and does not count as unused. */
static void strict_accepts_a_run_that_recorded(void **state) {
    fixture *f = *state;
    tch_vcr_options o;
    tch_vcr_options_init(&o);
    o.cassette.strict = 1;
    tch_vcr *v;
    assert_int_equal(tch_vcr_use_cassette(f->client, f->path, &o, &v, NULL), 0);
    assert_int_equal(raw(f, "echo", "hello").status, 0);
    tch_error err = {0};
    int rc = tch_vcr_eject(v, &err);
    if (rc)
        print_message("eject: %s\n", err.msg);
    assert_int_equal(rc, 0);
    stop_server(f);
    assert_int_equal(tch_vcr_use_cassette(f->client, f->path, &o, &v, NULL), 0);
    assert_int_equal(tch_vcr_eject(v, &err), TCH_ESTATE); /* replayed nothing: unused */
    assert_non_null(strstr(err.msg, "1 interaction left unused"));
}

/* A fold that fails at eject keeps the VCR and what it recorded; once the
 * cause is fixed, ejecting again writes it. */
static void a_failed_save_loses_nothing(void **state) {
    fixture *f = *state;
    char sub[160], away[170], path[200];
    snprintf(sub, sizeof sub, "%s/later", f->dir);
    snprintf(away, sizeof away, "%s/away", f->dir);
    snprintf(path, sizeof path, "%s/cassette.yaml", sub);
    tch_vcr *v;
    assert_int_equal(tch_vcr_use_cassette(f->client, path, NULL, &v, NULL), 0);
    assert_int_equal(raw(f, "echo", "keep me").status, 0); /* in the journal */
    /* The folder moved away and a file in its place: the cassette cannot
     * be written (permissions would not stop a test that runs as root). */
    assert_int_equal(rename(sub, away), 0);
    FILE *blocker = fopen(sub, "w");
    assert_non_null(blocker);
    fclose(blocker);
    tch_error err = {0};
    assert_int_equal(tch_vcr_eject(v, &err), TCH_ENOTSAVED); /* v kept */
    assert_int_equal(err.code, TCH_ENOTSAVED);
    assert_non_null(strstr(err.msg, path));
    assert_int_equal(unlink(sub), 0); /* the cause fixed */
    assert_int_equal(rename(away, sub), 0);
    err = (tch_error){0};
    int rc = tch_vcr_eject(v, &err); /* v was kept */
    if (rc)
        print_message("second eject: %s\n", err.msg);
    assert_int_equal(rc, 0);
    const char *text = slurp(path);
    assert_non_null(text);
    assert_non_null(strstr(text, "keep me"));
    unlink(path);
    rmdir(sub);
}

/* Recording into a folder that cannot take it: each call whose recording
 * is lost fails (the service did answer), eject names the file, and the
 * cassette holds what its callers were told was recorded, and only that. */
static void a_recording_that_cannot_be_saved_fails_its_call(void **state) {
    fixture *f = *state;
    char sub[160], path[200], journal[220];
    snprintf(sub, sizeof sub, "%s/gone", f->dir);
    snprintf(path, sizeof path, "%s/cassette.yaml", sub);
    snprintf(journal, sizeof journal, "%s.journal", path);
    tch_vcr *v;
    assert_int_equal(tch_vcr_use_cassette(f->client, path, NULL, &v, NULL), 0);
    result first = raw(f, "echo", "first");
    assert_int_equal(first.status, 0);
    assert_int_equal(access(journal, F_OK), 0); /* durable before the answer came */
    /* The folder removed, a file in its place. */
    assert_int_equal(unlink(journal), 0);
    assert_int_equal(rmdir(sub), 0);
    FILE *blocker = fopen(sub, "w");
    assert_non_null(blocker);
    fclose(blocker);
    result second = raw(f, "echo", "second");
    assert_int_equal(f->hits, 2); /* the service answered it */
    assert_int_equal(second.status, TCH_EIO);
    assert_int_equal(second.error_code, TCH_PCODE_UNEXPECTED);
    assert_non_null(strstr(second.message, path));
    assert_non_null(strstr(second.message, "recording not saved"));
    assert_non_null(strstr(second.message, "the service had answered code 0"));
    assert_string_equal(second.body, "");
    tch_error err = {0};
    assert_int_equal(tch_vcr_eject(v, &err), TCH_ENOTSAVED); /* the file cannot be written */
    assert_non_null(strstr(err.msg, path));
    assert_int_equal(unlink(sub), 0);
    err = (tch_error){0};
    assert_int_equal(tch_vcr_eject(v, &err), TCH_EIO); /* saved, and the lost one reported */
    assert_non_null(strstr(err.msg, "recording not saved"));
    const char *text = slurp(path);
    assert_non_null(text);
    assert_non_null(strstr(text, "first#1"));
    assert_null(strstr(text, "second"));
    unlink(path);
    rmdir(sub);
}

/* A folder blocked before the first recording (use_cassette itself
 * refuses a path already blocked): the VCR cannot record, so that call
 * fails naming the cassette before it goes out, and nothing is written. */
static void a_blocked_folder_fails_the_first_call(void **state) {
    fixture *f = *state;
    char sub[160], path[200];
    snprintf(sub, sizeof sub, "%s/file", f->dir);
    snprintf(path, sizeof path, "%s/cassette.yaml", sub);
    tch_vcr *v;
    assert_int_equal(tch_vcr_use_cassette(f->client, path, NULL, &v, NULL), 0);
    FILE *blocker = fopen(sub, "w");
    assert_non_null(blocker);
    fclose(blocker);
    result r = raw(f, "echo", "lost");
    assert_int_equal(f->hits, 0);
    assert_int_not_equal(r.status, 0);
    assert_int_equal(r.error_code, TCH_PCODE_UNEXPECTED);
    assert_non_null(strstr(r.message, path));
    tch_error err = {0};
    assert_int_equal(tch_vcr_eject(v, &err), 0); /* nothing recorded, nothing lost */
    struct stat st;
    assert_int_equal(stat(sub, &st), 0);
    assert_true(S_ISREG(st.st_mode) && st.st_size == 0);
    unlink(sub);
}

static int refuse_to_record(tch_cassette_redact_phase phase, tch_cassette_request *req,
                            tch_cassette_response *resp, void *ud) {
    (void)ud, (void)req, (void)resp;
    return phase == TCH_CASSETTE_REDACT_RECORD ? TCH_EINVAL : 0;
}

/* A redactor that fails while recording: the interaction is not written,
 * so the call fails instead of answering, and eject says so too. */
static void a_failed_redaction_is_reported_by_eject(void **state) {
    fixture *f = *state;
    tch_vcr_options o;
    tch_vcr_options_init(&o);
    o.cassette.redact = refuse_to_record;
    tch_vcr *v;
    assert_int_equal(tch_vcr_use_cassette(f->client, f->path, &o, &v, NULL), 0);
    result r = raw(f, "echo", "secret");
    assert_int_equal(r.status, TCH_EINVAL);
    assert_int_equal(r.error_code, TCH_PCODE_UNEXPECTED);
    assert_non_null(strstr(r.message, "redaction hook failed"));
    assert_string_equal(r.body, "");
    tch_error err = {0};
    assert_int_equal(tch_vcr_eject(v, &err), TCH_EINVAL);
    assert_non_null(strstr(err.msg, "redaction hook failed"));
    assert_null(slurp(f->path)); /* nothing was written */
}

/* With the transportHeaders matcher on, a tchannel-python cassette (which
 * always records "as") answers our calls, which do not set it by hand. */
static void python_transport_headers_match(void **state) {
    fixture *f = *state;
    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    fputs("interactions:\n"
          "- request:\n"
          "    argScheme: 0\n"
          "    body: hello\n"
          "    endpoint: echo\n"
          "    headers: h\n"
          "    hostPort: ''\n"
          "    knownPeers: []\n"
          "    serviceName: server\n"
          "    transportHeaders:\n"
          "    - key: as\n"
          "      value: raw\n"
          "  response:\n"
          "    body: from python\n"
          "    code: 0\n"
          "    headers: ''\n"
          "version: 1\n",
          fp);
    fclose(fp);
    stop_server(f);
    tch_vcr_options o;
    tch_vcr_options_init(&o);
    static const char *const matchers[] = {"serviceName", "endpoint", "body", "transportHeaders"};
    o.cassette.matchers = matchers;
    o.cassette.n_matchers = 4;
    tch_vcr *v;
    tch_error err;
    if (tch_vcr_use_cassette(f->client, f->path, &o, &v, &err) != 0)
        fail_msg("use_cassette: %s", err.msg);
    result r = raw(f, "echo", "hello");
    if (r.status)
        print_message("miss: %s\n", r.message);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.body, "from python");
    eject(v);
}

static void blocking_client_goes_through_the_vcr(void **state) {
    fixture *f = *state;
    tch_vcr *v = use(f, TCH_CASSETTE_ONCE, 0);
    raw(f, "echo", "sync");
    eject(v);
    stop_server(f);
    tch_sync_client *sc;
    tch_sync_client_new("sync", NULL, &sc, NULL);
    tch_vcr *sv;
    assert_int_equal(tch_vcr_use_cassette(tch_sync_client_channel(sc), f->path, NULL, &sv, NULL), 0);
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("echo"),
                       .arg2 = tch_slice_cstr("h"), .arg3 = tch_slice_cstr("sync"),
                       .host_port = f->hp, .timeout_ms = 1000};
    tch_sync_response res;
    assert_int_equal(tch_sync_call(sc, &o, &res, NULL), 0);
    assert_int_equal(res.status, 0);
    assert_memory_equal(res.arg3.ptr, "sync#1", 6);
    tch_sync_response_free(&res);
    tch_vcr_eject(sv, NULL);
    tch_sync_client_free(sc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(record_once_then_replay_offline, setup, teardown),
        cmocka_unit_test_setup_teardown(new_episodes_replays_and_appends, setup, teardown),
        cmocka_unit_test_setup_teardown(none_mode_never_records, setup, teardown),
        cmocka_unit_test_setup_teardown(all_mode_rewrites_with_this_run, setup, teardown),
        cmocka_unit_test_setup_teardown(identical_requests_replay_in_order_once_each, setup, teardown),
        cmocka_unit_test_setup_teardown(retries_replay_from_a_cassette, setup, teardown),
        cmocka_unit_test_setup_teardown(concurrent_recording_keeps_issue_order, setup, teardown),
        cmocka_unit_test_setup_teardown(a_local_timeout_is_recorded_and_replayed, setup, teardown),
        cmocka_unit_test_setup_teardown(env_forces_the_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(secrets_are_redacted_before_writing_and_matching, setup, teardown),
        cmocka_unit_test_setup_teardown(blocking_client_goes_through_the_vcr, setup, teardown),
        cmocka_unit_test_setup_teardown(strict_accepts_a_run_that_recorded, setup, teardown),
        cmocka_unit_test_setup_teardown(a_failed_save_loses_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(a_recording_that_cannot_be_saved_fails_its_call, setup, teardown),
        cmocka_unit_test_setup_teardown(a_blocked_folder_fails_the_first_call, setup, teardown),
        cmocka_unit_test_setup_teardown(a_failed_redaction_is_reported_by_eject, setup, teardown),
        cmocka_unit_test_setup_teardown(python_transport_headers_match, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
