/* Matching: JSON by value, $tracing$ ignored (json and thrift headers),
 * empty JSON arg2 as no headers, configurable and custom matchers,
 * redaction before matching, and near-miss explanations (JSON paths, Thrift
 * fields through the IDL, scheme names). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tchannel/cassette.h>
#include <unistd.h>

static tch_slice S(const char *s) { return tch_slice_cstr(s); }

static const char *CAS =
    "version: 1\n"
    "interactions:\n"
    "- request:\n"
    "    serviceName: keyvalue-server\n"
    "    endpoint: json_echo\n"
    "    argScheme: 1\n"
    "    headers: '{\"user\": \"alice\", \"$tracing$uber-trace-id\": \"1:2:0:1\"}'\n"
    "    body: '{\"key\": \"foo\", \"n\": [1, 2]}'\n"
    "    hostPort: 10.0.0.1:4040\n"
    "  response: {code: 0, body: '\"json-ok\"'}\n"
    "- request:\n"
    "    serviceName: keyvalue-server\n"
    "    endpoint: echo\n"
    "    argScheme: 0\n"
    "    body: 'hello world'\n"
    "  response: {code: 0, body: raw-ok}\n"
    "- request:\n"
    "    serviceName: keyvalue-server\n"
    "    endpoint: KeyValue::getValue\n"
    "    argScheme: 2\n"
    "    headers: !!binary AAIABHVzZXIABWFsaWNlAAokdHJhY2luZyR4AAF5\n" /* user=alice, $tracing$x=y */
    "    body: !!binary CwABAAAAA2ZvbwA=\n"
    "  response: {code: 0, body: thrift-ok}\n";

static tch_cassette *open_with(const tch_cassette_options *extra) {
    tch_cassette_options o;
    tch_cassette *c = NULL;
    tch_error err = {0};
    if (extra)
        o = *extra;
    else
        tch_cassette_options_init(&o);
    o.mode = TCH_CASSETTE_NONE;
    o.no_env_override = 1;
    if (tch_cassette_open_memory("match.yaml", CAS, strlen(CAS), &o, &c, &err))
        fail_msg("open: %s", err.msg);
    return c;
}

static int lookup(tch_cassette *c, tch_cassette_call *call, tch_cassette_decision *d,
                  tch_error *err) {
    int rc = tch_cassette_lookup(c, call, d, err);
    return rc == 0 ? (int)d->action : rc;
}

static tch_cassette_call json_call(const char *headers, const char *body) {
    tch_cassette_call c = {.service = S("keyvalue-server"), .endpoint = S("json_echo"),
                           .headers = S(headers), .body = S(body), .scheme = TCH_CASSETTE_JSON,
                           .host_port = S("192.168.1.1:1")};
    return c;
}

static void json_matches_by_value_ignoring_tracing(void **state) {
    (void)state;
    tch_cassette *c = open_with(NULL);
    tch_cassette_decision d;
    tch_error err = {0};
    /* other key order, spacing, a different trace id, another hostPort */
    tch_cassette_call call = json_call("{\"$tracing$uber-trace-id\":\"9:9:0:1\",\"user\":\"alice\"}",
                                       "{ \"n\" : [1,2], \"key\":\"foo\" }");
    assert_int_equal(lookup(c, &call, &d, &err), TCH_CASSETTE_ACT_REPLAY);
    assert_int_equal(d.index, 0);
    tch_cassette_decision_clear(&d);
    tch_cassette_free(c);

    c = open_with(NULL);
    /* a different value is a different request */
    call = json_call("{\"user\":\"alice\"}", "{\"key\":\"foo\",\"n\":[2,1]}");
    assert_int_equal(lookup(c, &call, &d, &err), TCH_ENOTFOUND);
    assert_int_equal(d.near_miss.n_diffs, 1);
    assert_string_equal(d.near_miss.diffs[0].field, "body");
    tch_cassette_decision_clear(&d);
    /* tracing keys are only ignored in headers, other header keys count */
    call = json_call("{\"user\":\"bob\"}", "{\"key\":\"foo\",\"n\":[1,2]}");
    assert_int_equal(lookup(c, &call, &d, &err), TCH_ENOTFOUND);
    assert_string_equal(d.near_miss.diffs[0].field, "headers");
    tch_cassette_decision_clear(&d);
    tch_cassette_free(c);
}

/* Numbers compare as Python compares them: integers beyond int64 digit for
 * digit, and a whole real equal to its integer. */
static void json_big_integers_match_exactly(void **state) {
    (void)state;
    static const char big[] =
        "version: 1\n"
        "interactions:\n"
        "- request:\n"
        "    serviceName: svc\n"
        "    endpoint: big\n"
        "    argScheme: 1\n"
        "    body: '{\"id\": 123456789012345678901234, \"a\": [1, -98765432109876543210]}'\n"
        "  response: {code: 0, body: ok}\n";
    tch_cassette_options o;
    tch_cassette_options_init(&o);
    o.mode = TCH_CASSETTE_NONE;
    o.no_env_override = 1;
    tch_cassette *c = NULL;
    tch_error err = {0};
    if (tch_cassette_open_memory("big.yaml", big, strlen(big), &o, &c, &err))
        fail_msg("open: %s", err.msg);
    tch_cassette_decision d;
    tch_cassette_call call = {.service = S("svc"), .endpoint = S("big"),
                              .body = S("{\"a\":[1,-98765432109876543210],\"id\":123456789012345678901234}"),
                              .scheme = TCH_CASSETTE_JSON};
    assert_int_equal(lookup(c, &call, &d, &err), TCH_CASSETTE_ACT_REPLAY);
    tch_cassette_decision_clear(&d);
    tch_cassette_rewind(c);
    call.body = S("{\"a\":[1,-98765432109876543210],\"id\":123456789012345678901235}");
    assert_int_equal(lookup(c, &call, &d, &err), TCH_ENOTFOUND);
    assert_string_equal(d.near_miss.diffs[0].field, "body");
    tch_cassette_decision_clear(&d);
    /* a whole real is the integer it stands for, as in Python; 1.5 is not 1 */
    tch_cassette_rewind(c);
    call.body = S("{\"a\":[1.0,-98765432109876543210],\"id\":123456789012345678901234}");
    assert_int_equal(lookup(c, &call, &d, &err), TCH_CASSETTE_ACT_REPLAY);
    tch_cassette_decision_clear(&d);
    tch_cassette_rewind(c);
    call.body = S("{\"a\":[1.5,-98765432109876543210],\"id\":123456789012345678901234}");
    assert_int_equal(lookup(c, &call, &d, &err), TCH_ENOTFOUND);
    tch_cassette_decision_clear(&d);
    /* an out-of-range real is not an integer: the bytes are compared */
    call.body = S("{\"a\":[1,-98765432109876543210],\"id\":1e999}");
    assert_int_equal(lookup(c, &call, &d, &err), TCH_ENOTFOUND);
    tch_cassette_decision_clear(&d);
    tch_cassette_free(c);
}

static void raw_bodies_compare_bytes(void **state) {
    (void)state;
    tch_cassette *c = open_with(NULL);
    tch_cassette_decision d;
    tch_error err = {0};
    tch_cassette_call call = {.service = S("keyvalue-server"), .endpoint = S("echo"),
                              .body = S("hello  world"), .scheme = TCH_CASSETTE_RAW};
    assert_int_equal(lookup(c, &call, &d, &err), TCH_ENOTFOUND);
    assert_int_equal(d.near_miss.index, 1);
    assert_int_equal(d.near_miss.matched_fields, 4);
    assert_int_equal(d.near_miss.total_fields, 5);
    assert_int_equal(d.near_miss.diffs[0].offset, 6);
    assert_non_null(strstr(err.msg, "nearest #1"));
    assert_non_null(strstr(err.msg, "body: recorded \"hello world\" vs requested \"hello  world\""));
    tch_cassette_decision_clear(&d);
    /* an empty body is shown as "", not whatever the buffer held before */
    call.body = S("");
    memset(err.msg, 'X', sizeof err.msg - 1);
    err.msg[sizeof err.msg - 1] = '\0';
    assert_int_equal(lookup(c, &call, &d, &err), TCH_ENOTFOUND);
    if (!strstr(err.msg, "vs requested \"\""))
        fail_msg("miss message: %s", err.msg);
    tch_cassette_decision_clear(&d);
    tch_cassette_free(c);
}

static void thrift_headers_ignore_tracing_and_order(void **state) {
    (void)state;
    tch_cassette *c = open_with(NULL);
    tch_cassette_decision d;
    tch_error err = {0};
    const uint8_t args[] = {0x0b, 0, 1, 0, 0, 0, 3, 'f', 'o', 'o', 0};
    /* $tracing$k=v first, then user=alice: different order and trace */
    const uint8_t hdr[] = {0, 2, 0, 10, '$', 't', 'r', 'a', 'c', 'i', 'n', 'g', '$', 'k', 0, 1, 'v',
                           0, 4,  'u', 's', 'e', 'r', 0, 5, 'a', 'l', 'i', 'c', 'e'};
    tch_cassette_call call = {.service = S("keyvalue-server"), .endpoint = S("KeyValue::getValue"),
                              .headers = tch_slice_of(hdr, sizeof hdr),
                              .body = tch_slice_of(args, sizeof args), .scheme = TCH_CASSETTE_THRIFT};
    assert_int_equal(lookup(c, &call, &d, &err), TCH_CASSETTE_ACT_REPLAY);
    assert_int_equal(d.index, 2);
    tch_cassette_decision_clear(&d);
    tch_cassette_free(c);
}

static void near_miss_names_every_differing_field(void **state) {
    (void)state;
    tch_cassette *c = open_with(NULL);
    tch_cassette_decision d;
    tch_error err = {0};
    tch_cassette_call call = {.service = S("keyvalue-server"), .endpoint = S("echo2"),
                              .body = S("hello world!"), .scheme = TCH_CASSETTE_RAW};
    assert_int_equal(lookup(c, &call, &d, &err), TCH_ENOTFOUND);
    assert_int_equal(d.action, TCH_CASSETTE_ACT_ERROR);
    assert_int_equal(d.near_miss.index, 1);
    assert_int_equal(d.near_miss.n_diffs, 2);
    assert_string_equal(d.near_miss.diffs[0].field, "endpoint");
    assert_string_equal(d.near_miss.diffs[1].field, "body");
    assert_non_null(strstr(err.msg, "endpoint: recorded \"echo\" vs requested \"echo2\""));
    assert_non_null(strstr(err.msg, "mode none"));
    assert_non_null(strstr(err.msg, "match.yaml"));
    json_t *j = tch_cassette_near_miss_to_json(&d.near_miss);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "index")), 1);
    json_t *diffs = json_object_get(j, "diffs");
    assert_int_equal(json_array_size(diffs), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(diffs, 1), "field")), "body");
    json_decref(j);
    tch_cassette_decision_clear(&d);
    tch_cassette_free(c);
}

static void configured_matchers(void **state) {
    (void)state;
    tch_cassette_options o;
    tch_cassette_options_init(&o);
    const char *only[] = {"serviceName", "endpoint"};
    o.matchers = only;
    o.n_matchers = 2;
    tch_cassette *c = open_with(&o);
    tch_cassette_decision d;
    tch_error err = {0};
    tch_cassette_call call = {.service = S("keyvalue-server"), .endpoint = S("echo"),
                              .body = S("anything"), .scheme = TCH_CASSETTE_RAW};
    assert_int_equal(lookup(c, &call, &d, &err), TCH_CASSETTE_ACT_REPLAY);
    tch_cassette_decision_clear(&d);
    tch_cassette_free(c);

    const char *with_host[] = {"serviceName", "endpoint", "headers", "body", "argScheme", "hostPort"};
    o.matchers = with_host;
    o.n_matchers = 6;
    c = open_with(&o);
    tch_cassette_call jc = json_call("{\"user\":\"alice\"}", "{\"key\":\"foo\",\"n\":[1,2]}");
    assert_int_equal(lookup(c, &jc, &d, &err), TCH_ENOTFOUND);
    assert_string_equal(d.near_miss.diffs[0].field, "hostPort");
    tch_cassette_decision_clear(&d);
    jc.host_port = S("10.0.0.1:4040");
    assert_int_equal(lookup(c, &jc, &d, &err), TCH_CASSETTE_ACT_REPLAY);
    tch_cassette_decision_clear(&d);
    tch_cassette_free(c);

    const char *bad[] = {"serviceName", "colour"};
    o.matchers = bad;
    o.n_matchers = 2;
    c = NULL;
    assert_int_equal(tch_cassette_open_memory("m", CAS, strlen(CAS), &o, &c, &err), TCH_EINVAL);
    assert_non_null(strstr(err.msg, "'colour' is not a known matcher"));
}

static bool reject_foo(const tch_cassette_request *in, const tch_cassette_request *rec, void *ud) {
    (void)rec;
    ++*(int *)ud;
    return !tch_slice_eq_cstr(tch_buf_slice(&in->endpoint), "echo");
}

static void custom_matcher_filters_candidates(void **state) {
    (void)state;
    tch_cassette *c = open_with(NULL);
    int calls = 0;
    tch_error err = {0};
    assert_int_equal(tch_cassette_add_matcher(c, "no-echo", reject_foo, &calls, &err), 0);
    tch_cassette_decision d;
    tch_cassette_call call = {.service = S("keyvalue-server"), .endpoint = S("echo"),
                              .body = S("hello world"), .scheme = TCH_CASSETTE_RAW};
    assert_int_equal(lookup(c, &call, &d, &err), TCH_ENOTFOUND);
    assert_int_equal(calls, 1); /* consulted only for the built-in match */
    assert_string_equal(d.near_miss.custom_rejected, "no-echo");
    assert_non_null(strstr(err.msg, "matcher no-echo refused it"));
    tch_cassette_decision_clear(&d);
    tch_cassette_free(c);
}

/* Masks the digits after "token=" (in place: same length). */
static int mask_token(tch_cassette_redact_phase phase, tch_cassette_request *req,
                      tch_cassette_response *resp, void *ud) {
    (void)resp;
    ++((int *)ud)[phase];
    for (size_t i = 0; i + 6 <= req->body.len; i++)
        if (memcmp(req->body.ptr + i, "token=", 6) == 0)
            for (size_t j = i + 6; j < req->body.len && req->body.ptr[j] != ';'; j++)
                req->body.ptr[j] = '*';
    return 0;
}

static void redaction_applies_before_matching(void **state) {
    (void)state;
    const char *y = "version: 1\ninteractions:\n- request: {serviceName: s, endpoint: e, body: "
                    "'u=bob;token=******'}\n  response: {body: ok}\n";
    tch_cassette_options o;
    tch_cassette_options_init(&o);
    o.mode = TCH_CASSETTE_NONE;
    o.no_env_override = 1;
    int counts[2] = {0, 0};
    o.redact = mask_token;
    o.redact_ud = counts;
    tch_cassette *c = NULL;
    tch_error err = {0};
    assert_int_equal(tch_cassette_open_memory("r", y, strlen(y), &o, &c, &err), 0);
    tch_cassette_call call = {.service = S("s"), .endpoint = S("e"), .body = S("u=bob;token=123456")};
    tch_cassette_decision d;
    assert_int_equal(lookup(c, &call, &d, &err), TCH_CASSETTE_ACT_REPLAY);
    assert_int_equal(counts[TCH_CASSETTE_REDACT_MATCH], 1);
    tch_cassette_decision_clear(&d);
    tch_cassette_free(c);
}

/* ---- empty JSON arg2 is no headers; diffs in readable form ------------ */

static tch_cassette *open_text(const char *name, const char *yaml,
                               const tch_cassette_options *extra) {
    tch_cassette_options o;
    tch_cassette *c = NULL;
    tch_error err = {0};
    if (extra)
        o = *extra;
    else
        tch_cassette_options_init(&o);
    o.mode = TCH_CASSETTE_NONE;
    o.no_env_override = 1;
    if (tch_cassette_open_memory(name, yaml, strlen(yaml), &o, &c, &err))
        fail_msg("open %s: %s", name, err.msg);
    return c;
}

/* Replays index `want`, or fails showing the miss. Rewinds first. */
static void expect_replay(tch_cassette *c, tch_cassette_call call, size_t want) {
    tch_cassette_decision d;
    tch_error err = {0};
    tch_cassette_rewind(c);
    int rc = lookup(c, &call, &d, &err);
    if (rc != TCH_CASSETTE_ACT_REPLAY)
        fail_msg("expected a replay of #%zu: %s", want, err.msg);
    assert_int_equal(d.index, want);
    tch_cassette_decision_clear(&d);
}

/* Misses and returns the message (static); d is cleared by the caller. */
static const char *expect_miss(tch_cassette *c, tch_cassette_call call, tch_cassette_decision *d) {
    static tch_error err;
    memset(&err, 0, sizeof err);
    tch_cassette_rewind(c);
    int rc = lookup(c, &call, d, &err);
    if (rc != TCH_ENOTFOUND)
        fail_msg("expected a miss, got %d", rc);
    return err.msg;
}

#define assert_has(text, part)                                                                    \
    do {                                                                                          \
        if (!strstr((text), (part)))                                                              \
            fail_msg("missing [%s] in: %s", (part), (text));                                      \
    } while (0)

static const char *EMPTIES =
    "version: 1\n"
    "interactions:\n"
    "- request: {serviceName: s, endpoint: braces, argScheme: 1, headers: '{}', body: '{\"a\": 1}'}\n"
    "  response: {body: '1'}\n"
    "- request: {serviceName: s, endpoint: empty, argScheme: 1, body: '{\"a\": 1}'}\n"
    "  response: {body: '2'}\n"
    "- request: {serviceName: s, endpoint: nobody, argScheme: 1, headers: '{}'}\n"
    "  response: {body: '3'}\n"
    "- request: {serviceName: s, endpoint: nullbody, argScheme: 1, headers: '{}', body: 'null'}\n"
    "  response: {body: '4'}\n"
    "- request:\n"
    "    serviceName: keyvalue-server\n"
    "    endpoint: KeyValue::getValue\n"
    "    argScheme: 2\n"
    "    headers: !!binary AAA=\n" /* nh = 0 */
    "    body: !!binary CwABAAAAA2ZvbwA=\n"
    "  response: {body: '5'}\n"
    "- request:\n"
    "    serviceName: keyvalue-server\n"
    "    endpoint: KeyValue::setValue\n"
    "    argScheme: 2\n"
    "    body: !!binary CwABAAAAA2ZvbwA=\n"
    "  response: {body: '6'}\n";

static tch_cassette_call scall(const char *ep, const char *headers, const char *body) {
    tch_cassette_call c = {.service = S("s"), .endpoint = S(ep), .headers = S(headers),
                           .body = S(body), .scheme = TCH_CASSETTE_JSON};
    return c;
}

static void empty_json_headers_equal_empty_object(void **state) {
    (void)state;
    tch_cassette *c = open_text("empties.yaml", EMPTIES, NULL);
    /* recorded {} answers Uber's tcurl (empty arg2), and the other way round */
    expect_replay(c, scall("braces", "", "{\"a\":1}"), 0);
    expect_replay(c, scall("braces", "{}", "{\"a\":1}"), 0);
    expect_replay(c, scall("braces", " { } ", "{\"a\":1}"), 0);
    expect_replay(c, scall("empty", "{}", "{\"a\":1}"), 1);
    expect_replay(c, scall("empty", "", "{\"a\":1}"), 1);
    /* a Node caller's null head is no headers too, as every handler reads it */
    expect_replay(c, scall("braces", "null", "{\"a\":1}"), 0);
    /* empty arg3 reads as null (Node, tchannel-python): the same body */
    expect_replay(c, scall("nobody", "", "null"), 2);
    expect_replay(c, scall("nobody", "{}", ""), 2);
    expect_replay(c, scall("nullbody", "", ""), 3);
    /* thrift: empty arg2 and nh=0 are both no headers */
    const uint8_t args[] = {0x0b, 0, 1, 0, 0, 0, 3, 'f', 'o', 'o', 0};
    const uint8_t nh0[] = {0, 0};
    tch_cassette_call t = {.service = S("keyvalue-server"), .endpoint = S("KeyValue::getValue"),
                           .body = tch_slice_of(args, sizeof args), .scheme = TCH_CASSETTE_THRIFT};
    expect_replay(c, t, 4);
    t.endpoint = S("KeyValue::setValue");
    t.headers = tch_slice_of(nh0, sizeof nh0);
    expect_replay(c, t, 5);

    /* headers that are really there still count, and the miss says which */
    tch_cassette_decision d;
    const char *msg = expect_miss(c, scall("braces", "{\"user\":\"bob\"}", "{\"a\":1}"), &d);
    assert_has(msg, "headers json: user: recorded (absent) vs requested \"bob\"");
    tch_cassette_decision_clear(&d);
    msg = expect_miss(c, scall("empty", "[]", "{\"a\":1}"), &d);
    assert_has(msg, "headers json: recorded {} vs requested []");
    tch_cassette_decision_clear(&d);
    tch_cassette_free(c);
}

static void json_miss_names_the_first_differing_path(void **state) {
    (void)state;
    tch_cassette *c = open_with(NULL);
    tch_cassette_decision d;
    const char *msg =
        expect_miss(c, json_call("{\"user\":\"alice\"}", "{\"key\":\"foo\",\"n\":[1,3]}"), &d);
    assert_int_equal(d.near_miss.n_diffs, 1);
    const tch_cassette_field_diff *df = &d.near_miss.diffs[0];
    assert_string_equal(df->field, "body");
    assert_int_equal(df->form, TCH_CASSETTE_DIFF_JSON);
    assert_string_equal(df->decoded_as, "json");
    assert_string_equal(df->path, "n[1]");
    assert_string_equal(df->recorded, "2");
    assert_string_equal(df->requested, "3");
    assert_has(msg, "differs: body json: n[1]: recorded 2 vs requested 3");
    json_t *j = tch_cassette_near_miss_to_json(&d.near_miss);
    json_t *jd = json_array_get(json_object_get(j, "diffs"), 0);
    assert_string_equal(json_string_value(json_object_get(jd, "form")), "json");
    assert_string_equal(json_string_value(json_object_get(jd, "path")), "n[1]");
    assert_string_equal(json_string_value(json_object_get(jd, "decodedAs")), "json");
    json_decref(j);
    tch_cassette_decision_clear(&d);

    /* a key one side lacks; headers by value (tracing keys ignored) */
    msg = expect_miss(c, json_call("{\"user\":\"bob\",\"$tracing$x\":\"1\"}", "{\"key\":\"foo\"}"),
                      &d);
    assert_has(msg, "headers json: user: recorded \"alice\" vs requested \"bob\"");
    assert_has(msg, "body json: n: recorded [1,2] vs requested (absent)");
    tch_cassette_decision_clear(&d);

    /* keys that are not plain names are quoted; the first differing one in key order */
    msg = expect_miss(
        c, json_call("{\"user\":\"alice\"}", "{\"a.b\":1,\"key\":\"foo\",\"n\":[1,2]}"), &d);
    assert_has(msg, "body json: [\"a.b\"]: recorded (absent) vs requested 1");
    tch_cassette_decision_clear(&d);

    /* not JSON at all: bytes, and a note saying so */
    msg = expect_miss(c, json_call("{\"user\":\"alice\"}", "{\"key\": fo"), &d);
    assert_int_equal(d.near_miss.diffs[0].form, TCH_CASSETTE_DIFF_BYTES);
    assert_has(msg, "(requested is not JSON)");
    tch_cassette_decision_clear(&d);
    tch_cassette_free(c);

    /* long values are cut around the difference; big integers show their digits */
    char a80[81], yaml[400], body[300];
    memset(a80, 'a', 80);
    a80[80] = '\0';
    snprintf(yaml, sizeof yaml,
             "version: 1\ninteractions:\n- request: {serviceName: s, endpoint: e, argScheme: 1, "
             "body: '{\"t\": \"%sX\", \"big\": 123456789012345678901234}'}\n"
             "  response: {body: '1'}\n", a80);
    c = open_text("long.yaml", yaml, NULL);
    snprintf(body, sizeof body, "{\"big\":123456789012345678901234,\"t\":\"%sY\"}", a80);
    msg = expect_miss(c, scall("e", "", body), &d);
    assert_has(msg, "body json: t: recorded \"...aaaaaaaaaaaaaaaaaaaaX\" vs requested "
                    "\"...aaaaaaaaaaaaaaaaaaaaY\"");
    tch_cassette_decision_clear(&d);
    snprintf(body, sizeof body, "{\"big\":123456789012345678901235,\"t\":\"%sX\"}", a80);
    msg = expect_miss(c, scall("e", "", body), &d);
    assert_has(msg, "body json: big: recorded 123456789012345678901234 vs requested "
                    "123456789012345678901235");
    tch_cassette_decision_clear(&d);
    tch_cassette_free(c);
}

static const uint8_t ARGS_BAR[] = {0x0b, 0, 1, 0, 0, 0, 3, 'b', 'a', 'r', 0};

static tch_cassette_call get_value(tch_slice body) {
    tch_cassette_call c = {.service = S("keyvalue-server"), .endpoint = S("KeyValue::getValue"),
                           .body = body, .scheme = TCH_CASSETTE_THRIFT};
    return c;
}

static void check_thrift_miss(const tch_cassette_options *o) {
    tch_cassette *c = open_with(o);
    tch_cassette_decision d;
    const char *msg = expect_miss(c, get_value(tch_slice_of(ARGS_BAR, sizeof ARGS_BAR)), &d);
    assert_has(msg, "body KeyValue::getValue args: key: recorded \"foo\" vs requested \"bar\"");
    assert_has(msg, "no recorded interaction for keyvalue-server::KeyValue::getValue (thrift) args "
                    "{\"key\":\"bar\"}");
    const tch_cassette_field_diff *body = &d.near_miss.diffs[d.near_miss.n_diffs - 1];
    assert_string_equal(body->field, "body");
    assert_int_equal(body->form, TCH_CASSETTE_DIFF_JSON);
    assert_string_equal(body->decoded_as, "KeyValue::getValue args");
    assert_string_equal(body->path, "key");
    tch_cassette_decision_clear(&d);
    /* bytes the IDL cannot read: shown as bytes, saying so */
    const uint8_t cut[] = {0x0b, 0, 1, 0, 0, 0, 9, 'b'};
    msg = expect_miss(c, get_value(tch_slice_of(cut, sizeof cut)), &d);
    assert_has(msg, "body: recorded \"\\x0b");
    assert_has(msg, "(requested does not decode with the IDL)");
    tch_cassette_decision_clear(&d);
    tch_cassette_free(c);
}

static void thrift_miss_shows_decoded_fields(void **state) {
    (void)state;
    /* without IDL: the bytes, as before */
    tch_cassette *c = open_with(NULL);
    tch_cassette_decision d;
    const char *msg = expect_miss(c, get_value(tch_slice_of(ARGS_BAR, sizeof ARGS_BAR)), &d);
    assert_has(msg, "body: recorded \"\\x0b\\x00\\x01\\x00\\x00\\x00\\x03foo");
    tch_cassette_decision_clear(&d);
    tch_cassette_free(c);

    tch_error err = {0};
    const char *idl_path = TCH_SOURCE_DIR "/cassettes/keyvalue.thrift";
    tch_cassette_options o;
    tch_cassette_options_init(&o);
    /* a loaded file */
    tch_cassette_thrift *t = NULL;
    if (tch_cassette_thrift_load(idl_path, &t, &err))
        fail_msg("load: %s", err.msg);
    o.thrift = t;
    check_thrift_miss(&o);
    tch_cassette_thrift_free(t);
    /* an IDL the caller loaded itself (the VCR's) */
    tch_thrift_idl *idl = NULL;
    assert_int_equal(tch_thrift_load(idl_path, &idl, &err), 0);
    tch_cassette_options_init(&o);
    o.thrift_idl = idl;
    check_thrift_miss(&o);
    tch_thrift_idl_free(idl);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A folder, as tcurl -t reads one: NAME.thrift for service NAME first. */
static void thrift_idl_folder(void **state) {
    (void)state;
    char dir[] = "/tmp/cassette-idl-XXXXXX", path[128];
    assert_non_null(mkdtemp(dir));
    tch_cassette_thrift *t = NULL;
    tch_error err = {0};
    assert_int_equal(tch_cassette_thrift_load(dir, &t, &err), TCH_ENOTFOUND);
    assert_has(err.msg, "no .thrift files");
    /* another service's file declares KeyValue differently: not ours */
    snprintf(path, sizeof path, "%s/a-other.thrift", dir);
    write_file(path, "service KeyValue { string getValue(1: i32 id) }\n");
    snprintf(path, sizeof path, "%s/keyvalue-server.thrift", dir);
    write_file(path, "exception NotFoundError { 1: string key }\n"
                     "service KeyValue {\n"
                     "  string getValue(1: string key) throws (1: NotFoundError nf)\n"
                     "}\n");
    if (tch_cassette_thrift_load(dir, &t, &err))
        fail_msg("load: %s", err.msg);
    const tch_thrift_method *m =
        tch_cassette_thrift_method(t, S("keyvalue-server"), S("KeyValue::getValue"));
    assert_non_null(m);
    const tch_thrift_field *f = tch_thrift_struct_field_by_id(tch_thrift_method_args(m), 1);
    assert_string_equal(tch_thrift_field_name(f), "key");
    /* a service without its own file: any file that has the method */
    m = tch_cassette_thrift_method(t, S("elsewhere"), S("KeyValue::getValue"));
    f = tch_thrift_struct_field_by_id(tch_thrift_method_args(m), 1);
    assert_string_equal(tch_thrift_field_name(f), "id");
    assert_null(tch_cassette_thrift_method(t, S("keyvalue-server"), S("KeyValue::nope")));
    tch_cassette_options o;
    tch_cassette_options_init(&o);
    o.thrift = t;
    check_thrift_miss(&o);
    tch_cassette_thrift_free(t);
    /* a broken file is refused, naming file, line and column */
    snprintf(path, sizeof path, "%s/zz-broken.thrift", dir);
    write_file(path, "service Broken {\n  void x(\n");
    assert_int_equal(tch_cassette_thrift_load(dir, &t, &err) < 0, 1);
    assert_has(err.msg, "zz-broken.thrift:");
    unlink(path);
    snprintf(path, sizeof path, "%s/a-other.thrift", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/keyvalue-server.thrift", dir);
    unlink(path);
    assert_int_equal(rmdir(dir), 0);
    assert_int_equal(tch_cassette_thrift_load("/nonexistent/kv.thrift", &t, &err), TCH_ENOTFOUND);
    assert_has(err.msg, "/nonexistent/kv.thrift");
}

static void scheme_is_named_in_misses(void **state) {
    (void)state;
    tch_cassette *c = open_with(NULL);
    tch_cassette_decision d;
    tch_cassette_call call = {.service = S("keyvalue-server"), .endpoint = S("echo"),
                              .body = S("hello world"), .scheme = TCH_CASSETTE_JSON};
    const char *msg = expect_miss(c, call, &d);
    assert_has(msg, "argScheme: recorded raw vs requested json");
    assert_has(msg, "keyvalue-server::echo (json)");
    const tch_cassette_field_diff *df = &d.near_miss.diffs[d.near_miss.n_diffs - 1];
    assert_string_equal(df->field, "argScheme");
    assert_int_equal(df->form, TCH_CASSETTE_DIFF_NAME);
    json_t *j = tch_cassette_near_miss_to_json(&d.near_miss);
    json_t *diffs = json_object_get(j, "diffs");
    json_t *last = json_array_get(diffs, json_array_size(diffs) - 1);
    assert_string_equal(json_string_value(json_object_get(last, "form")), "name");
    assert_string_equal(json_string_value(json_object_get(last, "recorded")), "raw");
    assert_string_equal(json_string_value(json_object_get(last, "requested")), "json");
    json_decref(j);
    tch_cassette_decision_clear(&d);
    tch_cassette_free(c);
}

/* Transport headers (an opt-in matcher) name the header that differs. */
static void transport_header_miss_names_the_header(void **state) {
    (void)state;
    static const char y[] =
        "version: 1\ninteractions:\n- request:\n    serviceName: s\n    endpoint: e\n"
        "    body: hi\n    transportHeaders:\n    - {key: as, value: raw}\n"
        "    - {key: cn, value: client-a}\n  response: {body: ok}\n";
    const char *with_th[] = {"serviceName", "endpoint", "body", "transportHeaders"};
    tch_cassette_options o;
    tch_cassette_options_init(&o);
    o.matchers = with_th;
    o.n_matchers = 4;
    tch_cassette *c = open_text("th.yaml", y, &o);
    tch_kv th[] = {{S("as"), S("raw")}, {S("cn"), S("client-b")}};
    tch_cassette_call call = {.service = S("s"), .endpoint = S("e"), .body = S("hi"),
                              .transport_headers = th, .n_transport_headers = 2};
    tch_cassette_decision d;
    const char *msg = expect_miss(c, call, &d);
    assert_has(msg, "transportHeaders: [1].cn: recorded \"client-a\" vs requested \"client-b\"");
    tch_cassette_decision_clear(&d);
    call.n_transport_headers = 1;
    msg = expect_miss(c, call, &d);
    assert_has(msg, "transportHeaders: [1]: recorded {\"cn\":\"client-a\"} vs requested (absent)");
    tch_cassette_decision_clear(&d);
    th[1].value = S("client-a");
    call.n_transport_headers = 2;
    expect_replay(c, call, 0);
    tch_cassette_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_matches_by_value_ignoring_tracing),
        cmocka_unit_test(json_big_integers_match_exactly),
        cmocka_unit_test(raw_bodies_compare_bytes),
        cmocka_unit_test(thrift_headers_ignore_tracing_and_order),
        cmocka_unit_test(near_miss_names_every_differing_field),
        cmocka_unit_test(configured_matchers),
        cmocka_unit_test(custom_matcher_filters_candidates),
        cmocka_unit_test(redaction_applies_before_matching),
        cmocka_unit_test(empty_json_headers_equal_empty_object),
        cmocka_unit_test(json_miss_names_the_first_differing_path),
        cmocka_unit_test(thrift_miss_shows_decoded_fields),
        cmocka_unit_test(thrift_idl_folder),
        cmocka_unit_test(scheme_is_named_in_misses),
        cmocka_unit_test(transport_header_miss_names_the_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
