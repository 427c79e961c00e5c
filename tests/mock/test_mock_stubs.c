/* tchannel-mock's run-time stubs over real sockets: the admin API adds,
 * lists, replaces, deletes, saves and drops stubs (JSON and YAML), bad
 * input is a 400 naming the field while the mock keeps serving, near
 * misses name the failed rule, templates, scenarios, and faults (noAnswer
 * makes the caller time out, a random delay stays within its bounds,
 * closeConnection drops the caller's connection with its other calls on it,
 * badChecksum is refused by the caller's checksum check). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <tchannel/cassette.h>
#include <tchannel/channel.h>
#include <tchannel/stub.h>

#define MOCK_FX_CLIENT "stubs-client"
#define MOCK_FX_DIR "/tmp/tch-mock-stubs-XXXXXX"
#include "mock_fixture.h"

/* The mock on an empty folder: every answer comes from run-time stubs. */
static void start_mock(fx *f) {
    assert_int_equal(fx_start_mock(f, 2, f->dir, NULL), 0);
}

static result call_t(fx *f, const char *endpoint, const char *headers, const char *body,
                     uint32_t timeout_ms) {
    tch_call_opts o = {.service = "keyvalue-server", .endpoint = tch_slice_cstr(endpoint),
                       .arg2 = tch_slice_cstr(headers), .arg3 = tch_slice_cstr(body),
                       .timeout_ms = timeout_ms, .retry_limit = TCH_RETRY_LIMIT_NONE,
                       .arg_scheme = "json"};
    return fx_call(f, o, (int)timeout_ms + 5000);
}

static result call(fx *f, const char *endpoint, const char *body) {
    return call_t(f, endpoint, "", body, 3000);
}

/* One admin request with an optional Content-Type; the HTTP code, or -1. */
static int admin_ct(fx *f, enum evhttp_cmd_type method, const char *uri, const char *ctype,
                    const char *body, json_t **out) {
    struct evhttp_connection *conn = evhttp_connection_base_new(
        f->base, NULL, f->mp.admin_host, (uint16_t)f->mp.admin_port);
    mp_http h = {0};
    struct evhttp_request *req = evhttp_request_new(mp_http_done, &h);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Host", "localhost");
    if (ctype)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
    if (body)
        evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
    evhttp_make_request(conn, req, method, uri);
    tch_test_run_until(f->base, &h.done, 5000);
    evhttp_connection_free(conn);
    if (out)
        *out = h.body;
    else
        json_decref(h.body);
    return h.done ? h.code : -1;
}

static int admin(fx *f, enum evhttp_cmd_type m, const char *uri, const char *body, json_t **out) {
    return admin_ct(f, m, uri, NULL, body, out);
}

static const char *str(const json_t *o, const char *key) {
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "(none)";
}

/* A 400 whose error says `says`. */
static void bad(fx *f, const char *body, const char *says) {
    json_t *j = NULL;
    int code = admin(f, EVHTTP_REQ_POST, "/stubs", body, &j);
    if (code != 400 || !strstr(str(j, "error"), says))
        fail_msg("POST %s: %d %s (wanted 400 saying '%s')", body, code, str(j, "error"), says);
    json_decref(j);
}

static void stubs_crud(void **state) {
    fx *f = *state;
    start_mock(f);
    json_t *j = NULL;
    assert_int_equal(admin(f, EVHTTP_REQ_POST, "/stubs",
                           "{\"id\": \"get-foo\", \"request\": {\"endpoint\": \"get\", \"body\": "
                           "{\"matchesJsonPath\": {\"expression\": \"$.user.id\", \"equalTo\": "
                           "42}}}, \"response\": {\"body\": {\"value\": \"bar\"}}}",
                           &j),
                     201);
    assert_string_equal(str(j, "id"), "get-foo");
    json_decref(j);
    result r = call(f, "get", "{\"user\": {\"id\": 42}}");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.arg3, "{\"value\":\"bar\"}");
    r = call(f, "get", "{\"user\": {\"id\": 41}}"); /* the near miss names the rule */
    assert_int_equal(r.error_code, TCH_PCODE_BAD_REQUEST);
    if (!strstr(r.message, "nearest stub get-foo") ||
        !strstr(r.message, "body $.user.id: expected 42, got 41"))
        fail_msg("miss: %s", r.message);
    /* YAML, by its content type */
    assert_int_equal(admin_ct(f, EVHTTP_REQ_POST, "/stubs", "application/yaml",
                              "request:\n  endpoint: {matches: '^ech'}\nresponse:\n  body: '\"yaml\"'\n",
                              &j),
                     201);
    char yaml_id[64];
    snprintf(yaml_id, sizeof yaml_id, "%s", str(j, "id"));
    json_decref(j);
    r = call(f, "echo", "{}");
    assert_string_equal(r.arg3, "\"yaml\"");
    /* list, get, replace, delete */
    assert_int_equal(admin(f, EVHTTP_REQ_GET, "/stubs", NULL, &j), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 2);
    json_decref(j);
    assert_int_equal(admin(f, EVHTTP_REQ_GET, "/stubs/get-foo", NULL, &j), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "plays")), 1);
    json_decref(j);
    assert_int_equal(admin(f, EVHTTP_REQ_PUT, "/stubs/get-foo",
                           "{\"request\": {\"endpoint\": \"get\"}, \"response\": {\"body\": "
                           "\"\\\"any\\\"\"}}",
                           NULL),
                     200);
    r = call(f, "get", "{\"user\": {\"id\": 1}}");
    assert_string_equal(r.arg3, "\"any\"");
    assert_int_equal(admin(f, EVHTTP_REQ_DELETE, "/stubs/get-foo", NULL, NULL), 200);
    assert_int_equal(admin(f, EVHTTP_REQ_GET, "/stubs/get-foo", NULL, NULL), 404);
    assert_int_equal(admin(f, EVHTTP_REQ_DELETE, "/stubs/get-foo", NULL, NULL), 404);
    r = call(f, "get", "{}");
    assert_int_equal(r.error_code, TCH_PCODE_BAD_REQUEST);
    /* save: inside the roots only; the file reads back as a cassette */
    char path[400], body[500];
    snprintf(path, sizeof path, "%s/saved.yaml", f->dir);
    snprintf(body, sizeof body, "{\"path\": \"%s\"}", path);
    assert_int_equal(admin(f, EVHTTP_REQ_POST, "/stubs/save", body, &j), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "saved")), 1);
    json_decref(j);
    tch_cassette *c = NULL;
    tch_error err = {0};
    if (tch_cassette_open(path, NULL, &c, &err))
        fail_msg("saved stubs: %s", err.msg);
    size_t idx;
    assert_int_equal(tch_cassette_stub_find(c, yaml_id, &idx), 0);
    tch_cassette_free(c);
    assert_int_equal(admin(f, EVHTTP_REQ_POST, "/stubs/save", "{\"path\": \"/etc/stubs.yaml\"}",
                           NULL),
                     403);
    /* drop them all */
    assert_int_equal(admin(f, EVHTTP_REQ_DELETE, "/stubs", NULL, &j), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "deleted")), 1);
    json_decref(j);
    r = call(f, "echo", "{}");
    assert_int_equal(r.error_code, TCH_PCODE_BAD_REQUEST);
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0);
}

static void bad_input_is_400_and_serving_goes_on(void **state) {
    fx *f = *state;
    start_mock(f);
    assert_int_equal(admin(f, EVHTTP_REQ_POST, "/stubs",
                           "{\"request\": {\"endpoint\": \"ok\"}, \"response\": {\"body\": \"1\"}}",
                           NULL),
                     201);
    bad(f, "{\"request\": ", "malformed JSON");
    bad(f, "{\"request\": {\"body\": {\"looksLike\": 1}}, \"response\": {}}",
        "body: unknown rule 'looksLike'");
    bad(f, "{\"request\": {\"body\": {\"matches\": \"(\"}}, \"response\": {}}",
        "body.matches: bad regular expression");
    bad(f, "{\"request\": {\"body\": {\"matchesJsonPath\": \"$.a[x]\"}}, \"response\": {}}",
        "body.matchesJsonPath");
    bad(f, "{\"request\": {}, \"response\": {\"template\": true, \"body\": \"{{request.nope}}\"}}",
        "refers to nothing");
    bad(f, "{\"request\": {}, \"response\": {}, \"priority\": \"high\"}", "priority");
    bad(f, "{\"request\": {}, \"response\": {}, \"delayDistribution\": {\"type\": \"weird\"}}",
        "delayDistribution");
    assert_int_equal(admin_ct(f, EVHTTP_REQ_POST, "/stubs", "text/yaml", "request: [", NULL), 400);
    assert_int_equal(admin(f, EVHTTP_REQ_PATCH, "/stubs", "{}", NULL), 405);
    assert_int_equal(call(f, "ok", "{}").status, 0); /* still serving */
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0);
}

static void templates_fill_from_the_request(void **state) {
    fx *f = *state;
    start_mock(f);
    assert_int_equal(admin(f, EVHTTP_REQ_POST, "/stubs",
                           "{\"id\": \"tpl\", \"request\": {\"endpoint\": \"hello\"}, \"response\":"
                           " {\"template\": true, \"headers\": \"{\\\"ep\\\": "
                           "\\\"{{request.endpoint}}\\\"}\", \"body\": \"{\\\"hi\\\": "
                           "\\\"{{request.body.name}}\\\", \\\"n\\\": {{counter}}}\"}}",
                           NULL),
                     201);
    result r = call(f, "hello", "{\"name\": \"Ada\"}");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.arg3, "{\"hi\": \"Ada\", \"n\": 1}");
    assert_string_equal(r.arg2, "{\"ep\": \"hello\"}");
    r = call(f, "hello", "{}"); /* nothing to fill: an error naming stub and value */
    assert_int_not_equal(r.status, 0);
    if (!strstr(r.message, "stub tpl") || !strstr(r.message, "{{request.body.name}}"))
        fail_msg("unfilled template: %s", r.message);
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0);
}

static void scenarios_move_and_reset(void **state) {
    fx *f = *state;
    start_mock(f);
    const char *stubs[] = {
        "{\"request\": {\"endpoint\": \"cart\"}, \"scenario\": \"shop\", \"requiredState\": "
        "\"Started\", \"response\": {\"body\": \"\\\"empty\\\"\"}}",
        "{\"request\": {\"endpoint\": \"add\"}, \"scenario\": \"shop\", \"newState\": \"full\", "
        "\"response\": {\"body\": \"\\\"added\\\"\"}}",
        "{\"request\": {\"endpoint\": \"cart\"}, \"scenario\": \"shop\", \"requiredState\": "
        "\"full\", \"response\": {\"body\": \"\\\"one\\\"\"}}",
    };
    for (int i = 0; i < 3; i++)
        assert_int_equal(admin(f, EVHTTP_REQ_POST, "/stubs", stubs[i], NULL), 201);
    assert_string_equal(call(f, "cart", "{}").arg3, "\"empty\"");
    assert_string_equal(call(f, "add", "{}").arg3, "\"added\"");
    assert_string_equal(call(f, "cart", "{}").arg3, "\"one\"");
    json_t *j = NULL;
    assert_int_equal(admin(f, EVHTTP_REQ_GET, "/scenarios", NULL, &j), 200);
    json_t *s0 = json_array_get(json_object_get(j, "scenarios"), 0);
    assert_string_equal(str(s0, "name"), "shop");
    assert_string_equal(str(s0, "state"), "full");
    json_decref(j);
    assert_int_equal(admin(f, EVHTTP_REQ_POST, "/scenarios/reset", NULL, NULL), 200);
    assert_string_equal(call(f, "cart", "{}").arg3, "\"empty\"");
    assert_int_equal(admin(f, EVHTTP_REQ_PUT, "/scenarios/shop/state", "{\"state\": \"full\"}",
                           NULL),
                     200);
    assert_string_equal(call(f, "cart", "{}").arg3, "\"one\"");
    assert_int_equal(admin(f, EVHTTP_REQ_PUT, "/scenarios/nope/state", "{\"state\": \"x\"}", NULL),
                     404);
    /* a state nothing requires or moves to would leave the scenario stuck */
    assert_int_equal(admin(f, EVHTTP_REQ_PUT, "/scenarios/shop/state", "{\"state\": \"Typo\"}",
                           &j),
                     400);
    assert_string_equal(str(j, "error"), "state: 'Typo' is not a state of scenario 'shop'; its "
                                         "states: 'Started', 'full'");
    json_decref(j);
    assert_string_equal(call(f, "cart", "{}").arg3, "\"one\""); /* still full */
    assert_int_equal(admin(f, EVHTTP_REQ_PUT, "/scenarios/shop/state",
                           "{\"state\": \"Started\"}", NULL),
                     200);
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0);
}

static void faults(void **state) {
    fx *f = *state;
    start_mock(f);
    assert_int_equal(admin(f, EVHTTP_REQ_POST, "/stubs",
                           "{\"request\": {\"endpoint\": \"hang\"}, \"fault\": \"noAnswer\", "
                           "\"response\": {\"body\": \"1\"}}",
                           NULL),
                     201);
    assert_int_equal(admin(f, EVHTTP_REQ_POST, "/stubs",
                           "{\"request\": {\"endpoint\": \"slow\"}, \"delayDistribution\": "
                           "{\"type\": \"uniform\", \"min\": 150, \"max\": 250}, \"response\": "
                           "{\"body\": \"1\"}}",
                           NULL),
                     201);
    assert_int_equal(admin(f, EVHTTP_REQ_POST, "/stubs",
                           "{\"request\": {\"endpoint\": \"lognormal\"}, \"delayDistribution\": "
                           "{\"type\": \"lognormal\", \"median\": 20, \"sigma\": 0.1}, "
                           "\"response\": {\"body\": \"1\"}}",
                           NULL),
                     201);
    result r = call_t(f, "hang", "", "{}", 300);
    /* the caller's own timer, or the channel's timeout frame sent when the TTL
     * passes on the server: either way the call timed out, with no answer */
    if (r.status != TCH_ETIMEOUT &&
        !(r.status == TCH_EREMOTE && r.error_code == TCH_PCODE_TIMEOUT))
        fail_msg("noAnswer: status %d code %u: %s", r.status, r.error_code, r.message);
    assert_true(r.ms >= 290);
    for (int i = 0; i < 3; i++) {
        r = call(f, "slow", "{}");
        assert_int_equal(r.status, 0);
        if (r.ms < 150 || r.ms > 1500)
            fail_msg("uniform 150..250 ms took %ld ms", r.ms);
    }
    r = call(f, "lognormal", "{}");
    assert_int_equal(r.status, 0);
    assert_true(r.ms >= 10);
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0);
}

static void add_stub(fx *f, const char *json) {
    json_t *j = NULL;
    int code = admin(f, EVHTTP_REQ_POST, "/stubs", json, &j);
    if (code != 201)
        fail_msg("POST /stubs %s: %d %s", json, code, str(j, "error"));
    json_decref(j);
}

/* Starts a call; the answer lands in *r. */
static void start_call(fx *f, const char *endpoint, uint32_t timeout_ms, result *r) {
    memset(r, 0, sizeof *r);
    tch_call_opts o = {.service = "keyvalue-server", .endpoint = tch_slice_cstr(endpoint),
                       .arg3 = tch_slice_cstr("{}"), .host_port = f->mp.hp,
                       .timeout_ms = timeout_ms, .retry_limit = TCH_RETRY_LIMIT_NONE,
                       .arg_scheme = "json"};
    tch_error err;
    assert_int_equal(tch_channel_call(f->client, &o, fx_on_answer, r, &err), 0);
}

/* A call that ended because its connection went away, not by an answer. */
static void expect_closed(const result *r, const char *what) {
    if (r->status != TCH_ECLOSED && r->status != TCH_EIO)
        fail_msg("%s: status %d code %u: %s (wanted the connection closed)", what, r->status,
                 r->error_code, r->message);
    assert_int_equal(r->error_code, TCH_PCODE_NETWORK);
}

static void close_connection_fault(void **state) {
    fx *f = *state;
    start_mock(f);
    add_stub(f, "{\"id\": \"drop\", \"request\": {\"endpoint\": \"drop\"}, "
                "\"fault\": \"closeConnection\", \"response\": {\"body\": \"1\"}}");
    add_stub(f, "{\"id\": \"drop-late\", \"request\": {\"endpoint\": \"drop-late\"}, "
                "\"fault\": \"closeConnection\", \"delayDistribution\": {\"type\": "
                "\"uniform\", \"min\": 150, \"max\": 200}, \"response\": {\"body\": \"1\"}}");
    add_stub(f, "{\"request\": {\"endpoint\": \"hang\"}, \"fault\": \"noAnswer\", "
                "\"response\": {\"body\": \"1\"}}");
    add_stub(f, "{\"request\": {\"endpoint\": \"ok\"}, \"response\": {\"body\": \"fine\"}}");
    /* a call held on the connection ends with it, long before its 5 s timeout */
    result held, r;
    start_call(f, "hang", 5000, &held);
    long t0 = mp_now_ms();
    start_call(f, "drop", 5000, &r);
    assert_true(tch_test_run_until(f->base, &r.done, 4000));
    assert_true(tch_test_run_until(f->base, &held.done, 1000));
    expect_closed(&r, "closeConnection");
    expect_closed(&held, "the other call on the connection");
    assert_true(mp_now_ms() - t0 < 3000);
    assert_int_equal(tch_channel_connection_count(f->client), 0);
    /* after its delay, like an answer */
    start_call(f, "drop-late", 5000, &r);
    assert_true(tch_test_run_until(f->base, &r.done, 5000));
    expect_closed(&r, "closeConnection after a delay");
    assert_true(mp_now_ms() - t0 >= 150);
    /* the mock serves on: a new connection gets its answer */
    r = call(f, "ok", "{}");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.arg3, "fine");
    json_t *j = NULL;
    assert_int_equal(admin(f, EVHTTP_REQ_GET, "/stubs/drop", NULL, &j), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "plays")), 1);
    json_decref(j);
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0);
}

/* Calls "spoil" from a client channel with this checksum: refused. */
static void expect_spoiled(fx *f, uint8_t checksum_type) {
    tch_channel_options o = {.checksum_type = checksum_type};
    tch_channel *ch;
    tch_channel_new(f->base, "checksum-client", &o, &ch, NULL);
    tch_channel *keep = f->client;
    f->client = ch;
    result r = call(f, "spoil", "{}");
    if (r.status != TCH_ECHECKSUM || !strstr(r.message, "checksum mismatch in frame index 0"))
        fail_msg("badChecksum (client checksum 0x%02x): status %d code %u: %s", checksum_type,
                 r.status, r.error_code, r.message);
    /* only that answer was refused: the connection carries the next call */
    assert_int_equal(tch_channel_connection_count(ch), 1);
    r = call(f, "ok", "{}");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.arg3, "fine");
    f->client = keep;
    tch_channel_free(ch);
}

static void bad_checksum_fault(void **state) {
    fx *f = *state;
    start_mock(f);
    add_stub(f, "{\"id\": \"spoil\", \"request\": {\"endpoint\": \"spoil\"}, "
                "\"fault\": \"badChecksum\", \"response\": {\"body\": \"spoiled\"}}");
    add_stub(f, "{\"request\": {\"endpoint\": \"ok\"}, \"response\": {\"body\": \"fine\"}}");
    add_stub(f, "{\"id\": \"spoil-error\", \"request\": {\"endpoint\": \"spoil-error\"}, "
                "\"fault\": \"badChecksum\", \"error\": {\"code\": \"busy\", "
                "\"message\": \"no\"}}");
    expect_spoiled(f, TCH_CHECKSUM_DEFAULT);
    expect_spoiled(f, TCH_CHECKSUM_CRC32);
    expect_spoiled(f, TCH_CHECKSUM_FARMHASH);
    expect_spoiled(f, TCH_CHECKSUM_NONE); /* answered with a crc32c, wrong */
    /* an error frame has no checksum to spoil: said so, not answered as if */
    result r = call(f, "spoil-error", "{}");
    assert_int_equal(r.status, TCH_EREMOTE);
    assert_int_equal(r.error_code, TCH_PCODE_UNEXPECTED);
    assert_non_null(strstr(r.message, "stub spoil-error: fault badChecksum needs a response"));
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0);
}

static long rss_kib(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *fp = fopen(path, "r");
    long kib = -1;
    while (fp && fgets(line, sizeof line, fp))
        if (!strncmp(line, "VmRSS:", 6))
            kib = atol(line + 6);
    if (fp)
        fclose(fp);
    return kib;
}

/* Deleted stubs are let go: add-and-delete churn leaves the memory where a
 * few stubs put it (16 MiB of bodies went through; kept, they would show). */
static void stub_churn_frees(void **state) {
    fx *f = *state;
    /* freed memory is used again at once, also under AddressSanitizer */
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[512];
    snprintf(opts, sizeof opts, "%s%squarantine_size_mb=0", asan ? asan : "", asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    start_mock(f);
    static char stub[20000];
    char big[8001];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    snprintf(stub, sizeof stub, "{\"request\": {\"endpoint\": \"e\", \"body\": \"%s\"}, "
             "\"response\": {\"body\": \"%s\"}}", big, big);
    long before = 0;
    for (int i = 0; i < 1000; i++) {
        json_t *j = NULL;
        assert_int_equal(admin(f, EVHTTP_REQ_POST, "/stubs", stub, &j), 201);
        char uri[128];
        snprintf(uri, sizeof uri, "/stubs/%s", str(j, "id"));
        json_decref(j);
        assert_int_equal(admin(f, EVHTTP_REQ_DELETE, uri, NULL, NULL), 200);
        if (i == 49) /* settled: the first rounds grow the heap to its working size */
            before = rss_kib(f->mp.pid);
    }
    long after = rss_kib(f->mp.pid);
    if (before <= 0 || after - before > 4096)
        fail_msg("RSS went from %ld to %ld KiB over 950 add+delete rounds", before, after);
    json_t *j = NULL;
    assert_int_equal(admin(f, EVHTTP_REQ_GET, "/stubs", NULL, &j), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 0);
    json_decref(j);
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0);
}

/* At most 10,000 run-time stubs; the next is a 409 naming the cap, and a
 * deleted one makes room. */
static void stub_cap(void **state) {
    fx *f = *state;
    start_mock(f);
    const char *stub = "{\"request\": {\"endpoint\": \"e\"}, \"response\": {\"body\": \"b\"}}";
    for (int i = 0; i < 10000; i++)
        if (admin(f, EVHTTP_REQ_POST, "/stubs", stub, NULL) != 201)
            fail_msg("stub %d refused", i + 1);
    json_t *j = NULL;
    assert_int_equal(admin(f, EVHTTP_REQ_POST, "/stubs", stub, &j), 409);
    assert_string_equal(str(j, "error"), "run-time stubs: 10000 already, the most the mock "
                                         "keeps (--max-stubs); delete some first (DELETE "
                                         "/stubs/ID, DELETE /stubs)");
    json_decref(j);
    assert_int_equal(admin(f, EVHTTP_REQ_DELETE, "/stubs/stub-77", NULL, NULL), 200);
    assert_int_equal(admin(f, EVHTTP_REQ_POST, "/stubs", stub, NULL), 201);
    assert_string_equal(call(f, "e", "{}").arg3, "b");
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0);
}

/* Stub ids are found through a hash, not a scan: adding, finding and
 * deleting by id cost the same however many stubs there are (30,000 here,
 * past any cap: about 0.6 s, and 26 s when each add scanned the ids), and
 * the index stays true through delete, replace, re-add and clear. */
static void stub_ids_are_hashed(void **state) {
    (void)state;
    enum { N = 30000 };
    tch_cassette_options o;
    tch_cassette_options_init(&o);
    o.no_env_override = 1;
    tch_cassette *c = NULL;
    tch_error err = {0};
    assert_int_equal(tch_cassette_open_memory("ids", "", 0, &o, &c, &err), 0);
    json_t *stub = json_pack("{s:{s:s},s:{s:s}}", "request", "endpoint", "e", "response",
                             "body", "b");
    long t0 = mp_now_ms();
    char id[32];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "s%d", i);
        json_object_set_new(stub, "id", json_string(id));
        if (tch_cassette_stub_add(c, stub, NULL, &err))
            fail_msg("add %s: %s", id, err.msg);
    }
    size_t idx;
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "s%d", i);
        assert_int_equal(tch_cassette_stub_find(c, id, &idx), 0);
        assert_int_equal(idx, (size_t)i);
    }
    long ms = mp_now_ms() - t0;
    print_message("%d stubs added and found by id in %ld ms\n", N, ms);
    if (ms > 8000)
        fail_msg("%d stubs added and found by id in %ld ms", N, ms);
    assert_int_equal(tch_cassette_stub_remove(c, "s7", &err), 0);
    assert_int_equal(tch_cassette_stub_find(c, "s7", &idx), TCH_ENOTFOUND);
    assert_int_equal(tch_cassette_stub_remove(c, "s7", &err), TCH_ENOTFOUND);
    json_object_set_new(stub, "id", json_string("s7"));
    assert_int_equal(tch_cassette_stub_add(c, stub, NULL, &err), 0); /* the id is free again */
    assert_int_equal(tch_cassette_stub_find(c, "s7", &idx), 0);
    assert_int_equal(idx, (size_t)N);
    assert_int_equal(tch_cassette_stub_add(c, stub, NULL, &err), TCH_ESTATE); /* in use */
    json_object_del(stub, "id");
    assert_int_equal(tch_cassette_stub_replace(c, "s9", stub, &err), 0);
    assert_int_equal(tch_cassette_stub_find(c, "s9", &idx), 0);
    assert_int_equal(idx, (size_t)N + 1);
    const char *gen = NULL;
    assert_int_equal(tch_cassette_stub_add(c, stub, &gen, &err), 0); /* a made-up id */
    assert_int_equal(tch_cassette_stub_find(c, gen, &idx), 0);
    assert_int_equal(idx, (size_t)N + 2);
    tch_cassette_stub_clear(c);
    assert_int_equal(tch_cassette_stub_find(c, "s1", &idx), TCH_ENOTFOUND);
    json_object_set_new(stub, "id", json_string("s1"));
    assert_int_equal(tch_cassette_stub_add(c, stub, NULL, &err), 0);
    assert_int_equal(tch_cassette_stub_find(c, "s1", &idx), 0);
    json_decref(stub);
    tch_cassette_free(c);
}

/* What the mock holds for delayed answers is held to --memory-budget: a
 * templated answer is rendered per call, so 40 calls waiting on a 100 KB
 * one would hold 4 MB; with a budget of 1 MiB the ones past it get Busy at
 * once, naming the flag, and the others their answer. */
static void delayed_copies_are_held_to_the_budget(void **state) {
    fx *f = *state;
    assert_int_equal(fx_start_mock(f, 2, "--memory-budget", "1", f->dir, NULL), 0);
    enum { BIG = 100000, N = 40 };
    static char stub[BIG + 300];
    int at = snprintf(stub, sizeof stub, "{\"request\": {\"endpoint\": \"big\"}, \"delay\": "
                      "500, \"response\": {\"template\": true, \"body\": \"[\\\"");
    memset(stub + at, 'z', BIG); /* the body: ["zz..z", REQUEST BODY] */
    snprintf(stub + at + BIG, sizeof stub - (size_t)(at + BIG), "\\\", {{request.body}}]\"}}");
    add_stub(f, stub);
    static result r[N];
    for (int i = 0; i < N; i++)
        start_call(f, "big", 5000, &r[i]);
    int busy = 0, answered = 0;
    for (int i = 0; i < N; i++) {
        assert_true(tch_test_run_until(f->base, &r[i].done, 10000));
        if (r[i].status == 0) {
            answered++;
        } else {
            if (r[i].error_code != TCH_PCODE_BUSY || !strstr(r[i].message, "delayed answer") || !strstr(r[i].message, "--memory-budget"))
                fail_msg("Busy: %s", r[i].message);
            busy++;
        }
    }
    if (busy == 0 || answered == 0 || answered > 11)
        fail_msg("%d answered, %d Busy", answered, busy);
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0);
}

/* --max-stubs sets the cap: past it 409 naming the flag; a delete (one,
 * or all) makes room, and a replace counts once. */
static void max_stubs_flag(void **state) {
    fx *f = *state;
    assert_int_equal(fx_start_mock(f, 2, "--max-stubs", "3", f->dir, NULL), 0);
    const char *stub = "{\"request\": {\"endpoint\": \"e\"}, \"response\": {\"body\": \"b\"}}";
    for (int i = 0; i < 3; i++)
        add_stub(f, stub);
    assert_int_equal(admin(f, EVHTTP_REQ_PUT, "/stubs/stub-2", stub, NULL), 200);
    json_t *j = NULL;
    assert_int_equal(admin(f, EVHTTP_REQ_POST, "/stubs", stub, &j), 409);
    assert_string_equal(str(j, "error"), "run-time stubs: 3 already, the most the mock keeps "
                                         "(--max-stubs); delete some first (DELETE /stubs/ID, "
                                         "DELETE /stubs)");
    json_decref(j);
    assert_int_equal(admin(f, EVHTTP_REQ_DELETE, "/stubs/stub-1", NULL, NULL), 200);
    add_stub(f, stub);
    assert_int_equal(admin(f, EVHTTP_REQ_POST, "/stubs", stub, NULL), 409);
    assert_int_equal(admin(f, EVHTTP_REQ_DELETE, "/stubs", NULL, NULL), 200);
    for (int i = 0; i < 3; i++)
        add_stub(f, stub);
    assert_int_equal(admin(f, EVHTTP_REQ_POST, "/stubs", stub, NULL), 409);
    assert_string_equal(call(f, "e", "{}").arg3, "b");
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0);
}

/* Calls waiting on a delayed stub hold its answer, not the stub: deleting
 * the stub (or replacing it) meanwhile changes nothing for them, and calls
 * waiting on one answer each get it whole. */
static void delayed_answers_outlive_their_stub(void **state) {
    fx *f = *state;
    start_mock(f);
    add_stub(f, "{\"id\": \"late\", \"request\": {\"endpoint\": \"late\"}, \"delay\": 300, "
                "\"plays\": 100, \"response\": {\"body\": \"late answer\"}}");
    add_stub(f, "{\"id\": \"other\", \"request\": {\"endpoint\": \"other\"}, \"delay\": 300, "
                "\"response\": {\"body\": \"other answer\"}}");
    enum { N = 4 };
    result r[N + 1];
    for (int i = 0; i < N; i++)
        start_call(f, "late", 5000, &r[i]);
    start_call(f, "other", 5000, &r[N]);
    /* the calls reach the mock before the admin request does: wait for them */
    json_t *j = NULL;
    long deadline = mp_now_ms() + 5000;
    json_int_t seen = 0;
    while (seen < N + 1 && mp_now_ms() < deadline) {
        assert_int_equal(admin(f, EVHTTP_REQ_GET, "/journal", NULL, &j), 200);
        seen = json_integer_value(json_object_get(j, "total"));
        json_decref(j);
    }
    assert_int_equal(seen, N + 1);
    assert_int_equal(admin(f, EVHTTP_REQ_DELETE, "/stubs/late", NULL, NULL), 200);
    assert_int_equal(admin(f, EVHTTP_REQ_PUT, "/stubs/other",
                           "{\"request\": {\"endpoint\": \"other\"}, "
                           "\"response\": {\"body\": \"replaced\"}}", NULL),
                     200);
    for (int i = 0; i <= N; i++) {
        assert_true(tch_test_run_until(f->base, &r[i].done, 5000));
        assert_int_equal(r[i].status, 0);
        assert_string_equal(r[i].arg3, i < N ? "late answer" : "other answer");
    }
    assert_int_equal(call(f, "late", "{}").status, TCH_EREMOTE); /* gone: a miss */
    assert_string_equal(call(f, "other", "{}").arg3, "replaced");
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(stubs_crud, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_input_is_400_and_serving_goes_on, setup, teardown),
        cmocka_unit_test_setup_teardown(templates_fill_from_the_request, setup, teardown),
        cmocka_unit_test_setup_teardown(scenarios_move_and_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(faults, setup, teardown),
        cmocka_unit_test_setup_teardown(close_connection_fault, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_checksum_fault, setup, teardown),
        cmocka_unit_test_setup_teardown(stub_churn_frees, setup, teardown),
        cmocka_unit_test_setup_teardown(stub_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(delayed_answers_outlive_their_stub, setup, teardown),
        cmocka_unit_test_setup_teardown(max_stubs_flag, setup, teardown),
        cmocka_unit_test(stub_ids_are_hashed),
        cmocka_unit_test_setup_teardown(delayed_copies_are_held_to_the_budget, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
