/* tchannel-mock's journal and verification, and redaction in record-through,
 * driven over real sockets: whole requests in the journal, its count and
 * byte budgets, find/count with stub rules, unmatched, clear, GET /verify
 * and --verify-on-exit, --redact-* and GET/PUT /redactions. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <tchannel/cassette.h>
#include <tchannel/channel.h>
#include <tchannel/json.h>
#include <tchannel/thrift_scheme.h>

#define MOCK_FX_EXTRA mock_proc up; /* the upstream of record-through, when started */
#include "mock_fixture.h"

#define SRC TCH_SOURCE_DIR
#define KV_YAML SRC "/cassettes/keyvalue.yaml"
#define KV_IDL SRC "/cassettes/keyvalue.thrift"

static int setup(void **state) {
    *state = fx_new("journal-client", "/tmp/tch-mock-journal-XXXXXX");
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    if (f->up.pid) /* a failed assertion left it running */
        mp_stop(&f->up, NULL, SIGKILL, 5000);
    fx_free(f);
    return 0;
}

/* argv: NULL-terminated, after the binary and an ephemeral admin port. */
#define start_mock(f, ...) assert_int_equal(fx_start_mock((f), 1, __VA_ARGS__), 0)

static void write_file(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
}

/* ---- calls -------------------------------------------------------------------- */

static result call(fx *f, const char *scheme, const char *endpoint, const char *arg2,
                   tch_slice arg3, const tch_kv *hs, size_t nh) {
    tch_call_opts o = {.service = "keyvalue-server", .endpoint = tch_slice_cstr(endpoint),
                       .arg2 = tch_slice_cstr(arg2), .arg3 = arg3, .timeout_ms = 3000,
                       .retry_limit = TCH_RETRY_LIMIT_NONE, .arg_scheme = scheme,
                       .headers = hs, .nheaders = nh};
    return fx_call(f, o, 5000);
}

static result json_call(fx *f, const char *endpoint, const char *headers, const char *body) {
    static const tch_kv hs[] = {{{(const uint8_t *)"authorization", 13},
                                     {(const uint8_t *)"Bearer live-secret", 18}}};
    return call(f, "json", endpoint, headers, tch_slice_cstr(body), hs, 1);
}

static result raw(fx *f, const char *endpoint, const char *body) {
    return call(f, "raw", endpoint, "", tch_slice_cstr(body), NULL, 0);
}

/* KeyValue::getValue {"key": key} over thrift. */
static result get_value(fx *f, const char *key) {
    uint8_t body[64];
    size_t n = strlen(key);
    /* field 1 string: 0b 0001 len:4 bytes, then stop */
    body[0] = 0x0b, body[1] = 0, body[2] = 1;
    body[3] = 0, body[4] = 0, body[5] = 0, body[6] = (uint8_t)n;
    memcpy(body + 7, key, n);
    body[7 + n] = 0;
    return call(f, "thrift", "KeyValue::getValue", "", tch_slice_of(body, n + 8), NULL, 0);
}

/* ---- admin -------------------------------------------------------------------- */

static int admin(fx *f, enum evhttp_cmd_type m, const char *uri, const char *body, json_t **out) {
    return mp_admin(&f->mp, f->base, m, uri, body, out);
}

static json_t *get(fx *f, const char *uri) {
    json_t *j = NULL;
    assert_int_equal(admin(f, EVHTTP_REQ_GET, uri, NULL, &j), 200);
    return j;
}

static json_int_t count(fx *f, const char *rules) {
    json_t *j = NULL;
    int code = admin(f, EVHTTP_REQ_POST, "/journal/count", rules, &j);
    if (code != 200)
        fail_msg("count %s: %d %s", rules, code, json_string_value(json_object_get(j, "error")));
    json_int_t n = json_integer_value(json_object_get(j, "count"));
    json_decref(j);
    return n;
}

static const char *str(const json_t *o, const char *key) {
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "(none)";
}

/* ---- the journal ----------------------------------------------------------------- */

static void journal_keeps_each_request_whole(void **state) {
    fx *f = *state;
    start_mock(f, "--thrift", KV_IDL, KV_YAML, NULL);
    assert_int_equal(get_value(f, "foo").status, 0);
    result r = json_call(f, "json_echo", "{\"x-token\":\"t1\"}", "{\"key\":\"foo\",\"n\":[1,2]}");
    assert_int_equal(r.error_code, TCH_PCODE_BAD_REQUEST); /* not in the cassette */
    json_t *j = get(f, "/journal");
    json_t *e0 = json_array_get(json_object_get(j, "entries"), 0);
    json_t *e1 = json_array_get(json_object_get(j, "entries"), 1);
    /* thrift: replayed, the body decoded through --thrift */
    assert_string_equal(str(e0, "outcome"), "replayed");
    assert_string_equal(str(e0, "endpoint"), "KeyValue::getValue");
    assert_string_equal(str(e0, "scheme"), "thrift");
    assert_string_equal(str(json_object_get(e0, "bodyDecoded"), "key"), "foo");
    assert_string_equal(str(json_object_get(e0, "transportHeaders"), "as"), "thrift");
    assert_int_equal(json_integer_value(json_object_get(e0, "index")), 0);
    assert_non_null(strstr(str(e0, "cassette"), "keyvalue.yaml"));
    /* json: unmatched, headers and body raw and decoded, the near miss */
    assert_string_equal(str(e1, "outcome"), "unmatched");
    assert_string_equal(str(e1, "headers"), "{\"x-token\":\"t1\"}");
    assert_string_equal(str(json_object_get(e1, "headersDecoded"), "x-token"), "t1");
    assert_string_equal(str(e1, "body"), "{\"key\":\"foo\",\"n\":[1,2]}");
    assert_int_equal(json_integer_value(json_array_get(
                         json_object_get(json_object_get(e1, "bodyDecoded"), "n"), 1)), 2);
    assert_string_equal(str(json_object_get(e1, "transportHeaders"), "authorization"),
                        "Bearer live-secret");
    assert_non_null(json_object_get(e1, "nearMiss"));
    /* peer: the caller's socket; what it announced in init apart (this
     * client does not listen, so it announced 0.0.0.0:0) */
    const char *peer = str(e1, "peer");
    assert_true(strncmp(peer, "127.0.0.1:", 10) == 0 && atoi(peer + 10) > 0);
    assert_string_equal(str(e1, "announcedHostPort"), "0.0.0.0:0");
    json_decref(j);
    /* bytes that are not UTF-8 come as text and as base64 */
    static const uint8_t bin[] = {0xff, 0x00, 'a'};
    call(f, "raw", "bin", "", tch_slice_of(bin, 3), NULL, 0);
    j = get(f, "/journal?endpoint=bin");
    json_t *e = json_array_get(json_object_get(j, "entries"), 0);
    assert_string_equal(str(e, "bodyBase64"), "/wBh");
    assert_int_equal(json_integer_value(json_object_get(e, "bodyBytes")), 3);
    json_decref(j);
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0);
}

static void journal_budgets_drop_the_oldest(void **state) {
    fx *f = *state;
    start_mock(f, "--journal-size", "3", "--journal-bytes", "8K", KV_YAML, NULL);
    for (int i = 0; i < 5; i++)
        raw(f, "echo", "x");
    json_t *j = get(f, "/journal");
    assert_int_equal(json_integer_value(json_object_get(j, "total")), 5);
    assert_int_equal(json_integer_value(json_object_get(j, "dropped")), 2);
    assert_int_equal(json_array_size(json_object_get(j, "entries")), 3);
    json_decref(j);
    /* three 3 KiB bodies do not fit in 8 KiB: the oldest made room */
    char big[3073];
    memset(big, 'b', 3072);
    big[3072] = 0;
    admin(f, EVHTTP_REQ_DELETE, "/journal", NULL, NULL);
    for (int i = 0; i < 3; i++)
        raw(f, "echo", big);
    j = get(f, "/journal");
    assert_int_equal(json_integer_value(json_object_get(j, "total")), 3);
    assert_int_equal(json_integer_value(json_object_get(j, "dropped")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "bytes")) <= 8192, 1);
    json_decref(j);
    /* one larger than the whole budget keeps its names, not its bytes */
    char huge[9000];
    memset(huge, 'h', sizeof huge - 1);
    huge[sizeof huge - 1] = 0;
    raw(f, "echo", huge);
    j = get(f, "/journal?limit=1");
    json_t *e = json_array_get(json_object_get(j, "entries"), 0);
    assert_string_equal(str(e, "endpoint"), "echo");
    assert_non_null(strstr(str(e, "omitted"), "--journal-bytes"));
    assert_null(json_object_get(e, "body"));
    json_decref(j);
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0);
}

static void journal_find_count_unmatched_clear(void **state) {
    fx *f = *state;
    start_mock(f, "--thrift", KV_IDL, "--allow-repeats", KV_YAML, NULL);
    get_value(f, "foo");
    json_call(f, "json_echo", "{}", "{\"key\":\"a\",\"user\":{\"id\":42}}");
    json_call(f, "json_echo", "{}", "{\"key\":\"b\",\"user\":{\"id\":41}}");
    assert_int_equal(count(f, "{\"endpoint\": \"json_echo\"}"), 2);
    assert_int_equal(count(f, "{}"), 3);
    assert_int_equal(count(f, "{\"endpoint\": \"KeyValue::getValue\", \"body\": "
                              "{\"matchesJsonPath\": {\"expression\": \"$.key\", "
                              "\"equalTo\": \"foo\"}}}"), 1);
    assert_int_equal(count(f, "{\"endpoint\": \"json_echo\", \"body\": {\"matchesJsonPath\": "
                              "{\"expression\": \"$.user.id\", \"equalTo\": 42}}}"), 1);
    assert_int_equal(count(f, "{\"endpoint\": {\"matches\": \"^json_\"}, \"transportHeaders\": "
                              "{\"authorization\": {\"contains\": \"live\"}}}"), 2);
    json_t *j = NULL;
    assert_int_equal(admin(f, EVHTTP_REQ_POST, "/journal/find",
                           "{\"body\": {\"contains\": \"\\\"b\\\"\"}}", &j), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 1);
    assert_string_equal(str(json_object_get(json_array_get(json_object_get(j, "entries"), 0),
                                            "bodyDecoded"), "key"), "b");
    json_decref(j);
    /* bad input: 400 naming the field, and the mock keeps serving */
    static const char *const bad[][2] = {
        {"{\"endpoint\": {\"matches\": \"(\"}}", "endpoint"},
        {"{\"body\": {\"matchesJsonPath\": \"$.a[\"}}", "body"},
        {"{\"body\": {\"sounds like\": 1}}", "body"},
        {"not json", "JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(admin(f, EVHTTP_REQ_POST, "/journal/count", bad[i][0], &j), 400);
        if (!strstr(str(j, "error"), bad[i][1]))
            fail_msg("%s: %s", bad[i][0], str(j, "error"));
        json_decref(j);
    }
    assert_int_equal(admin(f, EVHTTP_REQ_GET, "/journal/count", NULL, NULL), 405);
    /* unmatched: the two json calls */
    j = get(f, "/journal/unmatched");
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 2);
    assert_string_equal(str(json_array_get(json_object_get(j, "entries"), 0), "outcome"),
                        "unmatched");
    json_decref(j);
    /* clear */
    assert_int_equal(admin(f, EVHTTP_REQ_DELETE, "/journal", NULL, &j), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "cleared")), 3);
    json_decref(j);
    assert_int_equal(count(f, "{}"), 0);
    assert_int_equal(get_value(f, "foo").status, 0); /* still serving */
    assert_int_equal(count(f, "{}"), 1);
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0);
}

/* ---- verification ------------------------------------------------------------------ */

static const char REQUIRED[] =
    "version: 1\n"
    "interactions:\n"
    "- request: {serviceName: keyvalue-server, endpoint: echo, body: must}\n"
    "  response: {body: called}\n"
    "  required: true\n"
    "  id: must\n"
    "- request: {serviceName: keyvalue-server, endpoint: echo, body: may}\n"
    "  response: {body: optional}\n";

static void verify_required_and_unmatched(void **state) {
    fx *f = *state;
    char path[300];
    snprintf(path, sizeof path, "%s/required.yaml", f->dir);
    write_file(path, REQUIRED);
    start_mock(f, path, NULL);
    json_t *j = NULL;
    assert_int_equal(admin(f, EVHTTP_REQ_GET, "/verify", NULL, &j), 409);
    assert_false(json_is_true(json_object_get(j, "ok")));
    assert_int_equal(json_array_size(json_object_get(j, "notCalled")), 1);
    json_t *nc = json_array_get(json_object_get(j, "notCalled"), 0);
    assert_int_equal(json_integer_value(json_object_get(nc, "index")), 0);
    assert_non_null(strstr(str(nc, "describe"), "[must] (line 3) keyvalue-server::echo"));
    assert_string_equal(str(nc, "id"), "must");
    json_decref(j);
    assert_string_equal(raw(f, "echo", "must").arg3, "called");
    j = get(f, "/journal"); /* the stub that answered, by its id */
    assert_string_equal(str(json_array_get(json_object_get(j, "entries"), 0), "stubId"), "must");
    json_decref(j);
    assert_int_equal(admin(f, EVHTTP_REQ_POST, "/verify", NULL, &j), 200);
    assert_true(json_is_true(json_object_get(j, "ok")));
    json_decref(j);
    /* a request nothing answered fails the check */
    raw(f, "echo", "nobody recorded this");
    assert_int_equal(admin(f, EVHTTP_REQ_GET, "/verify", NULL, &j), 409);
    assert_int_equal(json_integer_value(json_object_get(j, "unmatched")), 1);
    assert_int_equal(json_array_size(json_object_get(j, "notCalled")), 0);
    assert_string_equal(str(json_array_get(json_object_get(j, "unmatchedRequests"), 0), "body"),
                        "nobody recorded this");
    json_decref(j);
    assert_int_equal(admin(f, EVHTTP_REQ_GET, "/verify?x=1", NULL, NULL), 400);
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0); /* no --verify-on-exit */
}

static void verify_on_exit_sets_the_exit_status(void **state) {
    fx *f = *state;
    char path[300];
    snprintf(path, sizeof path, "%s/required.yaml", f->dir);
    write_file(path, REQUIRED);
    start_mock(f, "--verify-on-exit", path, NULL);
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 3);
    /* stderr was read by mp_stop's close; start again to see the message */
    start_mock(f, "--verify-on-exit", path, NULL);
    raw(f, "echo", "not there");
    kill(f->mp.pid, SIGTERM);
    char log[8192] = "";
    long deadline = mp_now_ms() + 5000;
    while (!strstr(log, "not called:") && mp_now_ms() < deadline) {
        struct pollfd p = {f->mp.err_fd, POLLIN, 0};
        if (poll(&p, 1, 100) > 0)
            mp_stderr(&f->mp, log, sizeof log);
    }
    assert_non_null(strstr(log, "verify failed: 1 required interaction never called, 1 "
                                "request unmatched"));
    assert_non_null(strstr(log, "not called: "));
    /* SIGTERM was sent above: a second one during shutdown would be a
     * different test. Signal 0 only waits for the exit. */
    assert_int_equal(mp_stop(&f->mp, f->base, 0, 5000), 3);
    /* all called, nothing unmatched: 0 */
    start_mock(f, "--verify-on-exit", path, NULL);
    assert_string_equal(raw(f, "echo", "must").arg3, "called");
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0);
}

/* ---- redaction ----------------------------------------------------------------------- */

static char *slurp(const char *path) {
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    buf[n] = 0;
    fclose(fp);
    return buf;
}

static void record_through_redacts(void **state) {
    fx *f = *state;
    mock_proc *up = &f->up;
    char *uargv[] = {TCH_INTEROP_SERVER, "--idl", KV_IDL, NULL};
    assert_int_equal(mp_start(up, uargv, 0, 0), 0);
    char path[300];
    snprintf(path, sizeof path, "%s/rec.yaml", f->dir);
    start_mock(f, "--mode", "new_episodes", "--upstream", up->hp, "--record-to", path,
               "--redact-transport-header", "Authorization", "--redact-header", "x-token",
               "--redact-json-path", "$.password", "--redact-json-path", "$.body.password",
               "--redact-json-path", "$.headers['x-token']", NULL);
    json_t *j = get(f, "/redactions");
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "jsonPaths"), 0)),
                        "$.password");
    json_decref(j);
    result r = json_call(f, "json_echo", "{\"x-token\":\"tok-one\"}",
                         "{\"user\":\"ada\",\"password\":\"pw1\"}");
    assert_int_equal(r.status, 0);
    /* the caller gets the service's answer as it was */
    assert_non_null(strstr(r.arg3, "pw1"));
    /* on disk before the answer: in the cassette's journal until it is folded */
    char journal_path[320];
    snprintf(journal_path, sizeof journal_path, "%s.journal", path);
    const char *yaml = slurp(access(journal_path, F_OK) == 0 ? journal_path : path);
    if (strstr(yaml, "pw1"))
        fail_msg("a secret was recorded:\n%s", yaml);
    assert_null(strstr(yaml, "live-secret"));
    if (strstr(yaml, "tok-one"))
        fail_msg("a header was recorded:\n%s", yaml);
    assert_non_null(strstr(yaml, "<redacted>"));
    assert_int_equal(mp_stop(up, NULL, SIGTERM, 5000), 0);
    /* the upstream is gone: other secrets replay from the redacted recording */
    r = json_call(f, "json_echo", "{\"x-token\":\"t2\"}", "{\"user\":\"ada\",\"password\":\"pw2\"}");
    if (r.status != 0)
        fail_msg("not replayed: %s", r.message);
    /* PUT /redactions replaces the set; a bad one is a 400 naming it */
    assert_int_equal(admin(f, EVHTTP_REQ_PUT, "/redactions",
                           "{\"headers\": [\"cookie\"], \"jsonPaths\": [\"$.a[\"]}", &j), 400);
    assert_non_null(strstr(str(j, "error"), "jsonPaths[0]"));
    json_decref(j);
    assert_int_equal(admin(f, EVHTTP_REQ_PUT, "/redactions", "{\"thriftFields\": [\"key\"]}", &j),
                     400);
    assert_non_null(strstr(str(j, "error"), "--thrift"));
    json_decref(j);
    assert_int_equal(admin(f, EVHTTP_REQ_PUT, "/redactions", "{\"headers\": [\"cookie\"]}", &j),
                     200);
    assert_int_equal(json_array_size(json_object_get(j, "jsonPaths")), 0);
    json_decref(j);
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0);
}

static void redact_flags_are_checked(void **state) {
    (void)state;
    static const char *const cases[][3] = {
        {"--redact-json-path", "password", "a JSON path starts with '$'"},
        {"--redact-transport-header", "as", "cannot be redacted"},
        {"--redact-thrift-field", "key", "needs --thrift"},
        {"--journal-bytes", "12Q", "--journal-bytes: expected a byte count"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mock_proc mp;
        char *argv[] = {TCH_MOCK_BIN, (char *)cases[i][0], (char *)cases[i][1], KV_YAML, NULL};
        assert_int_not_equal(mp_start(&mp, argv, 0, 1), 0); /* no listening line */
        char log[2048] = "";
        mp_stderr(&mp, log, sizeof log);
        assert_int_equal(mp_stop(&mp, NULL, SIGTERM, 5000), 2);
        if (!strstr(log, cases[i][2]))
            fail_msg("%s %s: %s", cases[i][0], cases[i][1], log);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(journal_keeps_each_request_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(journal_budgets_drop_the_oldest, setup, teardown),
        cmocka_unit_test_setup_teardown(journal_find_count_unmatched_clear, setup, teardown),
        cmocka_unit_test_setup_teardown(verify_required_and_unmatched, setup, teardown),
        cmocka_unit_test_setup_teardown(verify_on_exit_sets_the_exit_status, setup, teardown),
        cmocka_unit_test_setup_teardown(record_through_redacts, setup, teardown),
        cmocka_unit_test(redact_flags_are_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
