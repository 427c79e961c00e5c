/* Matching: JSON by value, $tracing$ ignored (json and thrift headers),
 * configurable and custom matchers, redaction before matching, and
 * near-miss explanations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tchannel/cassette.h>

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

static int reject_foo(void *ud, const tch_cassette_request *in, const tch_cassette_request *rec) {
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
static int mask_token(void *ud, tch_cassette_redact_phase phase, tch_cassette_request *req,
                      tch_cassette_response *resp) {
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
