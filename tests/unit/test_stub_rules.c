/* Stubs in the cassette library: each match rule, priorities, exact hits
 * that never evaluate a pattern, near-miss texts naming the failed rule,
 * the redaction placeholder, run-time stubs from JSON, required, scenarios
 * and delays. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cassette_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <tchannel/stub.h>

static tch_slice S(const char *s) { return tch_slice_cstr(s); }

static tch_cassette *open_yaml(const char *yaml) {
    tch_cassette_options o;
    tch_cassette_options_init(&o);
    o.mode = TCH_CASSETTE_NONE;
    o.no_env_override = 1;
    tch_cassette *c = NULL;
    tch_error err = {0};
    if (tch_cassette_open_memory("stubs.yaml", yaml, strlen(yaml), &o, &c, &err))
        fail_msg("open: %s", err.msg);
    return c;
}

static tch_cassette *open_yaml_len(const char *yaml, size_t len) {
    tch_cassette_options o;
    tch_cassette_options_init(&o);
    o.mode = TCH_CASSETTE_NONE;
    o.no_env_override = 1;
    tch_cassette *c = NULL;
    tch_error err = {0};
    if (tch_cassette_open_memory("again.yaml", yaml, len, &o, &c, &err))
        fail_msg("reopen: %s\n%.*s", err.msg, (int)len, yaml);
    return c;
}

static int open_fails(const char *yaml, tch_error *err) {
    tch_cassette_options o;
    tch_cassette_options_init(&o);
    o.mode = TCH_CASSETTE_NONE;
    o.no_env_override = 1;
    tch_cassette *c = NULL;
    int rc = tch_cassette_open_memory("bad.yaml", yaml, strlen(yaml), &o, &c, err);
    tch_cassette_free(c);
    return rc;
}

static tch_cassette_call call_of(const char *svc, const char *ep, tch_cassette_scheme s,
                                 const char *headers, const char *body) {
    tch_cassette_call call;
    memset(&call, 0, sizeof call);
    call.service = S(svc);
    call.endpoint = S(ep);
    call.scheme = s;
    call.headers = S(headers);
    call.body = S(body);
    return call;
}

/* The index that answers call, or -1 (err gets the miss message). */
static long answer(tch_cassette *c, const tch_cassette_call *call, tch_error *err) {
    tch_cassette_decision d;
    int rc = tch_cassette_lookup(c, call, &d, err);
    long idx = rc == 0 && d.action == TCH_CASSETTE_ACT_REPLAY ? (long)d.index : -1;
    tch_cassette_decision_clear(&d);
    return idx;
}

static const char *RULES =
    "version: 1\n"
    "interactions:\n"
    "- request:\n" /* 0: exact */
    "    serviceName: kv\n"
    "    endpoint: get\n"
    "    argScheme: json\n"
    "    body: '{\"key\": \"exact\"}'\n"
    "  response: {body: '\"exact\"'}\n"
    "- id: jp\n" /* 1 */
    "  request:\n"
    "    serviceName: kv\n"
    "    endpoint: get\n"
    "    body: {matchesJsonPath: {expression: '$.user.id', equalTo: 42}}\n"
    "  response: {body: '\"jsonpath\"'}\n"
    "- id: re\n" /* 2 */
    "  request:\n"
    "    serviceName: {matches: '^kv-[0-9]+$'}\n"
    "    endpoint: {any: true}\n"
    "  response: {body: regex}\n"
    "- id: contains\n" /* 3 */
    "  request:\n"
    "    serviceName: kv\n"
    "    endpoint: echo\n"
    "    body: {contains: needle}\n"
    "  response: {body: contains}\n"
    "- id: eqjson\n" /* 4 */
    "  request:\n"
    "    endpoint: set\n"
    "    body: {equalToJson: '{\"a\": [1, 2]}', ignoreExtraElements: true, ignoreArrayOrder: "
    "true}\n"
    "  response: {body: eqjson}\n"
    "- id: hdr\n" /* 5 */
    "  request:\n"
    "    endpoint: auth\n"
    "    headers: {user: {equalTo: alice}, token: {absent: true}}\n"
    "  response: {body: hdr}\n"
    "- id: th\n" /* 6 */
    "  request:\n"
    "    endpoint: th\n"
    "    transportHeaders: {cn: {equalTo: caller}}\n"
    "  response: {body: th}\n";

static void test_rules_each(void **state) {
    (void)state;
    tch_cassette *c = open_yaml(RULES);
    tch_error err = {0};
    tch_cassette_call call = call_of("kv", "get", TCH_CASSETTE_JSON, "", "{\"key\":\"exact\"}");
    assert_int_equal(answer(c, &call, &err), 0);
    call = call_of("kv", "get", TCH_CASSETTE_JSON, "", "{\"user\": {\"id\": 42}}");
    assert_int_equal(answer(c, &call, &err), 1);
    assert_int_equal(answer(c, &call, &err), 1); /* a stub answers again */
    call = call_of("kv-17", "anything", TCH_CASSETTE_RAW, "", "x");
    assert_int_equal(answer(c, &call, &err), 2);
    call = call_of("kv", "echo", TCH_CASSETTE_RAW, "", "hay needle hay");
    assert_int_equal(answer(c, &call, &err), 3);
    call = call_of("kv", "echo", TCH_CASSETTE_RAW, "", "hay only");
    assert_int_equal(answer(c, &call, &err), -1);
    call = call_of("kv", "set", TCH_CASSETTE_JSON, "", "{\"a\": [3, 2, 1], \"b\": 0}");
    assert_int_equal(answer(c, &call, &err), 4);
    call = call_of("kv", "set", TCH_CASSETTE_JSON, "", "{\"a\": [3, 1]}");
    assert_int_equal(answer(c, &call, &err), -1);
    call = call_of("kv", "auth", TCH_CASSETTE_JSON, "{\"user\": \"alice\"}", "null");
    assert_int_equal(answer(c, &call, &err), 5);
    call = call_of("kv", "auth", TCH_CASSETTE_JSON, "{\"user\": \"alice\", \"token\": \"t\"}", "");
    assert_int_equal(answer(c, &call, &err), -1);
    tch_kv th[] = {{S("cn"), S("caller")}};
    call = call_of("kv", "th", TCH_CASSETTE_RAW, "", "");
    call.transport_headers = th;
    call.n_transport_headers = 1;
    assert_int_equal(answer(c, &call, &err), 6);
    call.n_transport_headers = 0;
    assert_int_equal(answer(c, &call, &err), -1);
    tch_cassette_free(c);
}

static void test_near_miss_names_rule(void **state) {
    (void)state;
    tch_cassette *c = open_yaml(RULES);
    tch_error err = {0};
    tch_cassette_call call = call_of("kv", "get", TCH_CASSETTE_JSON, "", "{\"user\": {\"id\": 41}}");
    tch_cassette_decision d;
    assert_int_equal(tch_cassette_lookup(c, &call, &d, &err), TCH_ENOTFOUND);
    assert_true(d.near_miss.is_stub);
    assert_string_equal(d.near_miss.stub_id, "jp");
    assert_string_equal(d.near_miss.rule_failed, "body $.user.id: expected 42, got 41");
    assert_non_null(strstr(err.msg, "nearest stub jp"));
    assert_non_null(strstr(err.msg, "body $.user.id: expected 42, got 41"));
    json_t *j = tch_cassette_near_miss_to_json(&d.near_miss);
    assert_string_equal(json_string_value(json_object_get(j, "ruleFailed")),
                        "body $.user.id: expected 42, got 41");
    json_decref(j);
    tch_cassette_decision_clear(&d);
    tch_cassette_free(c);
}

/* An exact hit is answered from the hash: no pattern of default priority
 * is evaluated; a miss of the hash evaluates them. */
static void test_exact_hit_scans_no_pattern(void **state) {
    (void)state;
    tch_buf y = {0};
    const char *head = "version: 1\ninteractions:\n";
    tch_buf_append(&y, head, strlen(head));
    char one[300];
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(one, sizeof one,
                         "- request: {serviceName: kv, endpoint: e%d, body: b%d}\n"
                         "  response: {body: r%d}\n",
                         i, i, i);
        tch_buf_append(&y, one, (size_t)n);
    }
    for (int i = 0; i < 100; i++) {
        int n = snprintf(one, sizeof one,
                         "- request: {serviceName: kv, endpoint: {matches: 'p%d$'}}\n"
                         "  response: {body: p%d}\n",
                         i, i);
        tch_buf_append(&y, one, (size_t)n);
    }
    tch_buf_append(&y, "", 1);
    tch_cassette *c = open_yaml((const char *)y.ptr);
    tch_buf_free(&y);
    assert_int_equal(c->npatterns, 100);
    tch_error err = {0};
    tch_cassette_call call = call_of("kv", "e500", TCH_CASSETTE_RAW, "", "b500");
    assert_int_equal(answer(c, &call, &err), 500);
    assert_int_equal(c->pattern_evals, 0);
    call = call_of("kv", "xp42", TCH_CASSETTE_RAW, "", "");
    assert_int_equal(answer(c, &call, &err), 1042);
    assert_true(c->pattern_evals > 0);
    tch_cassette_free(c);
}

static tch_cassette *open_yaml_repeats(const char *yaml) {
    tch_cassette_options o;
    tch_cassette_options_init(&o);
    o.mode = TCH_CASSETTE_NONE;
    o.no_env_override = 1;
    o.allow_playback_repeats = 1;
    tch_cassette *c = NULL;
    tch_error err = {0};
    if (tch_cassette_open_memory("repeats.yaml", yaml, strlen(yaml), &o, &c, &err))
        fail_msg("open: %s", err.msg);
    return c;
}

/* 1,000 exact interactions on kv::e0..e999, then 1,000 pattern stubs: on
 * `same` they all name kv::same (bodies matching '^pNNNN-', the last '^hit'),
 * else one per endpoint kv::o0..o999 and the last on kv::same. */
static char *index_yaml(bool same) {
    tch_buf y = {0};
    const char *head = "version: 1\ninteractions:\n";
    tch_buf_append(&y, head, strlen(head));
    char one[300];
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(one, sizeof one,
                         "- request: {serviceName: kv, endpoint: e%d, body: b%d}\n"
                         "  response: {body: r%d}\n",
                         i, i, i);
        tch_buf_append(&y, one, (size_t)n);
    }
    for (int i = 0; i < 1000; i++) {
        char ep[16], re[16];
        snprintf(ep, sizeof ep, same || i == 999 ? "same" : "o%d", i);
        snprintf(re, sizeof re, i == 999 ? "^hit" : "^p%04d-", i);
        int n = snprintf(one, sizeof one,
                         "- request: {serviceName: kv, endpoint: %s, body: {matches: '%s'}}\n"
                         "  response: {body: s%d}\n",
                         ep, re, i);
        tch_buf_append(&y, one, (size_t)n);
    }
    tch_buf_append(&y, "", 1);
    return (char *)y.ptr;
}

/* Lookups count the rule sets they evaluate: an exact hit, first or
 * repeated, none; a pattern hit among 1,000 patterns on other endpoints, or
 * on the same endpoint with other literal starts, one. */
static void test_pattern_evaluations_counted(void **state) {
    (void)state;
    for (int same = 0; same < 2; same++) {
        char *y = index_yaml(same);
        tch_cassette *c = open_yaml_repeats(y);
        free(y);
        assert_int_equal(c->npatterns, 1000);
        tch_error err = {0};
        tch_cassette_call call = call_of("kv", "e500", TCH_CASSETTE_RAW, "", "b500");
        for (int i = 0; i < 3; i++) /* played, then repeated */
            assert_int_equal(answer(c, &call, &err), 500);
        assert_int_equal(c->pattern_evals, 0);
        call = call_of("kv", "same", TCH_CASSETTE_RAW, "", "hit me");
        assert_int_equal(answer(c, &call, &err), 1999);
        assert_int_equal(c->pattern_evals, 1);
        assert_int_equal(answer(c, &call, &err), 1999);
        assert_int_equal(c->pattern_evals, 2);
        /* a miss still names the nearest stub and the rule it failed */
        call = call_of("kv", "same", TCH_CASSETTE_RAW, "", "p0003+");
        assert_int_equal(answer(c, &call, &err), -1);
        if (!strstr(err.msg, "nearest stub") || !strstr(err.msg, "body: expected to match"))
            fail_msg("%s", err.msg);
        tch_cassette_free(c);
    }
}

/* The groups, the body-start groups and the wild list are walked as one
 * list in priority order; a removed stub leaves its group. */
static void test_pattern_index_order(void **state) {
    (void)state;
    tch_cassette *c = open_yaml("version: 1\n"
                                "interactions:\n"
                                "- request: {serviceName: kv, endpoint: get}\n" /* 0: group */
                                "  priority: 7\n"
                                "  response: {body: group}\n"
                                "- request: {serviceName: kv, endpoint: get, body: {matches: "
                                "'^ab'}}\n" /* 1: group and body start */
                                "  priority: 6\n"
                                "  response: {body: lead}\n"
                                "- request: {serviceName: {any: true}, endpoint: get}\n" /* 2 */
                                "  priority: 8\n"
                                "  response: {body: wild}\n"
                                "- request: {serviceName: kv, endpoint: {matches: '^g'}}\n"
                                "  priority: 2\n" /* 3: wild, before exact hits */
                                "  response: {body: early}\n"
                                "- request: {serviceName: kv, endpoint: get, body: x}\n" /* 4 */
                                "  response: {body: exact}\n");
    tch_error err = {0};
    tch_cassette_call call = call_of("kv", "get", TCH_CASSETTE_RAW, "", "x");
    assert_int_equal(answer(c, &call, &err), 3); /* priority 2 beats the exact one */
    call = call_of("kv", "put", TCH_CASSETTE_RAW, "", "abc");
    assert_int_equal(answer(c, &call, &err), -1);
    json_error_t je;
    json_t *s = json_loads("{\"id\": \"low\", \"priority\": 1, \"request\": {\"serviceName\": "
                           "\"kv\", \"endpoint\": \"put\", \"body\": {\"matches\": \"^ab\"}},"
                           " \"response\": {\"body\": \"rt\"}}",
                           0, &je);
    assert_int_equal(tch_cassette_stub_add(c, s, NULL, &err), 0);
    assert_int_equal(answer(c, &call, &err), 5);
    assert_int_equal(tch_cassette_stub_remove(c, "low", &err), 0);
    assert_int_equal(answer(c, &call, &err), -1);
    json_decref(s);
    tch_cassette_free(c);
    /* without the early stub: body start (6), group (7), wild (8) */
    c = open_yaml("version: 1\n"
                  "interactions:\n"
                  "- request: {serviceName: kv, endpoint: get}\n"
                  "  priority: 7\n"
                  "  response: {body: group}\n"
                  "- request: {serviceName: kv, endpoint: get, body: {matches: '^ab'}}\n"
                  "  priority: 6\n"
                  "  response: {body: lead}\n"
                  "- request: {serviceName: {any: true}, endpoint: get}\n"
                  "  priority: 5\n"
                  "  response: {body: wild}\n");
    call = call_of("kv", "get", TCH_CASSETTE_RAW, "", "abc");
    assert_int_equal(answer(c, &call, &err), 2);
    call = call_of("other", "get", TCH_CASSETTE_RAW, "", "abc");
    assert_int_equal(answer(c, &call, &err), 2);
    tch_cassette_free(c);
    c = open_yaml("version: 1\n"
                  "interactions:\n"
                  "- request: {serviceName: kv, endpoint: get}\n"
                  "  priority: 7\n"
                  "  response: {body: group}\n"
                  "- request: {serviceName: kv, endpoint: get, body: {matches: '^ab'}}\n"
                  "  priority: 6\n"
                  "  response: {body: lead}\n");
    assert_int_equal(answer(c, &call, &err), -1);
    call = call_of("kv", "get", TCH_CASSETTE_RAW, "", "abc");
    assert_int_equal(answer(c, &call, &err), 1);
    call.body = S("xbc");
    assert_int_equal(answer(c, &call, &err), 0);
    tch_cassette_free(c);
}

/* With playback repeats, an exact interaction played before answers again
 * ahead of a stub of default priority (a repeat is an exact hit); a stub
 * that outranks exact hits still wins. */
static void test_repeat_is_exact_hit(void **state) {
    (void)state;
    tch_cassette *c = open_yaml_repeats("version: 1\n"
                                        "interactions:\n"
                                        "- request: {serviceName: kv, endpoint: get, body: x}\n"
                                        "  response: {body: exact}\n"
                                        "- request: {serviceName: kv, endpoint: {any: true}}\n"
                                        "  response: {body: stub}\n"
                                        "- request: {serviceName: kv, endpoint: put}\n"
                                        "  priority: 1\n"
                                        "  response: {body: early}\n"
                                        "- request: {serviceName: kv, endpoint: put, body: y}\n"
                                        "  response: {body: exact-put}\n");
    tch_error err = {0};
    tch_cassette_call call = call_of("kv", "get", TCH_CASSETTE_RAW, "", "x");
    assert_int_equal(answer(c, &call, &err), 0);
    assert_int_equal(answer(c, &call, &err), 0);
    call.body = S("z");
    assert_int_equal(answer(c, &call, &err), 1);
    call = call_of("kv", "put", TCH_CASSETTE_RAW, "", "y");
    assert_int_equal(answer(c, &call, &err), 2);
    tch_cassette_free(c);
}

/* tchannel-python reads a missing arg2 as empty: an exact field '' passes
 * a call without one, in a stub (id) as in a recording. */
static void test_empty_equals_absent(void **state) {
    (void)state;
    tch_cassette *c = open_yaml("version: 1\n"
                                "interactions:\n"
                                "- id: echo\n"
                                "  request: {serviceName: kv, endpoint: echo, argScheme: 0, "
                                "headers: '', body: hi}\n"
                                "  response: {body: hi}\n"
                                "- id: nobody\n"
                                "  request: {serviceName: kv, endpoint: empty, headers: '', "
                                "body: ''}\n"
                                "  response: {body: none}\n");
    tch_error err = {0};
    tch_cassette_call call = call_of("kv", "echo", TCH_CASSETTE_RAW, "", "hi");
    if (answer(c, &call, &err) != 0)
        fail_msg("%s", err.msg);
    call = call_of("kv", "empty", TCH_CASSETTE_RAW, "", "");
    call.headers = TCH_SLICE_NULL;
    call.body = TCH_SLICE_NULL;
    if (answer(c, &call, &err) != 1)
        fail_msg("%s", err.msg);
    call = call_of("kv", "echo", TCH_CASSETTE_RAW, "h", "hi"); /* not empty: differs */
    assert_int_equal(answer(c, &call, &err), -1);
    assert_non_null(strstr(err.msg, "headers: expected \"\", got \"h\""));
    tch_cassette_free(c);
}

static void test_priority(void **state) {
    (void)state;
    tch_cassette *c = open_yaml("version: 1\n"
                                "interactions:\n"
                                "- request: {serviceName: kv, endpoint: get, body: x}\n"
                                "  response: {body: exact}\n"
                                "- request: {serviceName: kv, endpoint: {any: true}}\n"
                                "  priority: 9\n"
                                "  response: {body: low}\n"
                                "- request: {serviceName: kv, endpoint: {contains: ge}}\n"
                                "  priority: 1\n"
                                "  response: {body: high}\n");
    tch_error err = {0};
    tch_cassette_call call = call_of("kv", "get", TCH_CASSETTE_RAW, "", "x");
    assert_int_equal(answer(c, &call, &err), 2); /* priority 1 beats the exact one */
    call = call_of("kv", "put", TCH_CASSETTE_RAW, "", "x");
    assert_int_equal(answer(c, &call, &err), 1);
    tch_cassette_free(c);
}

static void test_redacted_matches_anything(void **state) {
    (void)state;
    tch_cassette *c = open_yaml("version: 1\n"
                                "interactions:\n"
                                "- request:\n"
                                "    serviceName: kv\n"
                                "    endpoint: login\n"
                                "    argScheme: 1\n"
                                "    headers: '{\"token\": \"<redacted>\", \"user\": \"a\"}'\n"
                                "    body: '{\"password\": \"<redacted>\", \"n\": 1}'\n"
                                "  response: {body: '\"ok\"'}\n");
    tch_error err = {0};
    tch_cassette_call call = call_of("kv", "login", TCH_CASSETTE_JSON,
                                     "{\"token\": \"s3cret\", \"user\": \"a\"}",
                                     "{\"password\": \"hunter2\", \"n\": 1}");
    assert_int_equal(answer(c, &call, &err), 0);
    assert_int_equal(answer(c, &call, &err), -1); /* a recording answers once */
    tch_cassette_rewind(c);
    call.body = S("{\"password\": \"hunter2\", \"n\": 2}");
    assert_int_equal(answer(c, &call, &err), -1);
    if (!strstr(err.msg, "body $.n: expected 1, got 2"))
        fail_msg("%s", err.msg);
    tch_cassette_free(c);
}

static void test_rules_match_api(void **state) {
    (void)state;
    json_error_t je;
    json_t *rq = json_loads("{\"endpoint\": \"KeyValue::setValue\", \"body\": {\"matchesJsonPath\": "
                            "{\"expression\": \"$.key\", \"equalTo\": \"foo\"}}}",
                            0, &je);
    tch_stub_rules *rs = NULL;
    tch_error err = {0};
    assert_int_equal(tch_stub_rules_from_json(rq, &rs, &err), 0);
    tch_cassette_call call = call_of("kv", "KeyValue::setValue", TCH_CASSETTE_JSON, "",
                                     "{\"key\": \"foo\", \"value\": \"bar\"}");
    char why[200];
    assert_int_equal(tch_stub_rules_match(rs, &call, NULL, why, sizeof why, &err), 1);
    call.body = S("{\"key\": \"fob\"}");
    assert_int_equal(tch_stub_rules_match(rs, &call, NULL, why, sizeof why, &err), 0);
    assert_string_equal(why, "body $.key: expected \"foo\", got \"fob\"");
    json_t *back = tch_stub_rules_to_json(rs);
    assert_true(json_equal(back, rq));
    json_decref(back);
    tch_stub_rules_free(rs);
    json_decref(rq);
}

static void parse_error(const char *text, const char *expect) {
    json_error_t je;
    json_t *rq = json_loads(text, 0, &je);
    assert_non_null(rq);
    tch_stub_rules *rs = NULL;
    tch_error err = {0};
    assert_int_equal(tch_stub_rules_from_json(rq, &rs, &err), TCH_EINVAL);
    assert_null(rs);
    if (!strstr(err.msg, expect))
        fail_msg("'%s' does not say '%s'", err.msg, expect);
    json_decref(rq);
}

static void test_bad_rules(void **state) {
    (void)state;
    parse_error("{\"body\": {\"looksLike\": 1}}", "body: unknown rule 'looksLike'");
    parse_error("{\"body\": {\"matches\": \"a(\"}}", "body.matches: bad regular expression");
    parse_error("{\"body\": {\"matchesJsonPath\": \"$.a[\"}}", "body.matchesJsonPath");
    parse_error("{\"body\": {\"matchesJsonPath\": \"a.b\"}}", "starts with '$'");
    parse_error("{\"bogus\": 1}", "unknown field 'bogus'");
    parse_error("{\"argScheme\": \"xml\"}", "argScheme");
    parse_error("{\"headers\": {\"user\": {\"equalTo\": 1, \"contains\": \"x\"}}}", "two rules");
    tch_error err = {0};
    assert_int_equal(open_fails("version: 1\ninteractions:\n"
                                "- request: {body: {matches: '('}}\n"
                                "  response: {body: x}\n",
                                &err),
                     TCH_EPARSE);
    assert_non_null(strstr(err.msg, "bad.yaml:3:"));
    assert_non_null(strstr(err.msg, "body.matches"));
}

static void test_runtime_stubs(void **state) {
    (void)state;
    tch_cassette *c = open_yaml("");
    json_error_t je;
    json_t *s = json_loads("{\"request\": {\"serviceName\": \"kv\", \"endpoint\": \"get\"},"
                           " \"response\": {\"body\": {\"v\": 1}}, \"required\": true}",
                           0, &je);
    const char *id = NULL;
    tch_error err = {0};
    assert_int_equal(tch_cassette_stub_add(c, s, &id, &err), 0);
    assert_string_equal(id, "stub-1");
    size_t *req = NULL, nreq = 0;
    assert_int_equal(tch_cassette_required_unplayed(c, &req, &nreq), 0);
    assert_int_equal(nreq, 1);
    free(req);
    tch_cassette_call call = call_of("kv", "get", TCH_CASSETTE_JSON, "", "{}");
    assert_int_equal(answer(c, &call, &err), 0);
    const tch_buf *rb = &tch_cassette_get(c, 0)->response.body;
    assert_int_equal(rb->len, 7);
    assert_memory_equal(rb->ptr, "{\"v\":1}", 7);
    assert_int_equal(tch_cassette_required_unplayed(c, &req, &nreq), 0);
    assert_int_equal(nreq, 0);
    json_t *j = tch_cassette_interaction_to_json(c, 0);
    assert_string_equal(json_string_value(json_object_get(j, "id")), "stub-1");
    assert_int_equal(json_integer_value(json_object_get(j, "plays")), 1);
    json_decref(j);
    /* an id in use is refused, replace keeps the id, remove drops it */
    json_object_set_new(s, "id", json_string("stub-1"));
    assert_int_equal(tch_cassette_stub_add(c, s, &id, &err), TCH_ESTATE);
    json_object_set_new(json_object_get(s, "request"), "endpoint", json_string("put"));
    assert_int_equal(tch_cassette_stub_replace(c, "stub-1", s, &err), 0);
    assert_int_equal(answer(c, &call, &err), -1);
    call.endpoint = S("put");
    assert_true(answer(c, &call, &err) >= 0);
    assert_int_equal(tch_cassette_stub_remove(c, "stub-1", &err), 0);
    assert_int_equal(tch_cassette_stub_remove(c, "stub-1", &err), TCH_ENOTFOUND);
    assert_int_equal(answer(c, &call, &err), -1);
    /* bad input names the field */
    json_t *bad = json_loads("{\"request\": {}, \"response\": {}, \"priority\": \"x\"}", 0, &je);
    assert_int_equal(tch_cassette_stub_add(c, bad, &id, &err), TCH_EINVAL);
    assert_non_null(strstr(err.msg, "priority"));
    json_decref(bad);
    json_decref(s);
    tch_cassette_free(c);
}

static void test_scenarios(void **state) {
    (void)state;
    tch_cassette *c = open_yaml("version: 1\n"
                                "interactions:\n"
                                "- request: {endpoint: get}\n"
                                "  scenario: cart\n"
                                "  requiredState: Started\n"
                                "  response: {body: empty}\n"
                                "- request: {endpoint: add}\n"
                                "  scenario: cart\n"
                                "  newState: full\n"
                                "  response: {body: added}\n"
                                "- request: {endpoint: get}\n"
                                "  scenario: cart\n"
                                "  requiredState: full\n"
                                "  response: {body: one}\n");
    tch_error err = {0};
    tch_cassette_call get = call_of("kv", "get", TCH_CASSETTE_RAW, "", "");
    tch_cassette_call add = call_of("kv", "add", TCH_CASSETTE_RAW, "", "");
    assert_int_equal(answer(c, &get, &err), 0);
    assert_int_equal(answer(c, &get, &err), 0);
    assert_int_equal(answer(c, &add, &err), 1);
    assert_int_equal(answer(c, &get, &err), 2);
    json_t *sc = tch_cassette_scenarios(c);
    assert_int_equal(json_array_size(sc), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(sc, 0), "state")), "full");
    json_decref(sc);
    tch_cassette_scenarios_reset(c);
    assert_int_equal(answer(c, &get, &err), 0);
    assert_int_equal(tch_cassette_scenario_set(c, "cart", "full", &err), 0);
    assert_int_equal(answer(c, &get, &err), 2);
    assert_int_equal(tch_cassette_scenario_set(c, "nope", "x", &err), TCH_ENOTFOUND);
    tch_cassette_free(c);
}

static void test_delay_sample(void **state) {
    (void)state;
    tch_stub_delay u = {.kind = TCH_STUB_DELAY_UNIFORM, .min_ms = 10, .max_ms = 20};
    tch_stub_delay ln = {.kind = TCH_STUB_DELAY_LOGNORMAL, .median_ms = 100, .sigma = 0.5};
    uint64_t s = 1;
    int below = 0;
    for (int i = 0; i < 2000; i++) {
        uint32_t d = tch_stub_delay_sample(&u, &s);
        assert_true(d >= 10 && d <= 20);
        below += tch_stub_delay_sample(&ln, &s) < 100;
    }
    assert_true(below > 850 && below < 1150); /* the median halves the draws */
}

static void test_templates(void **state) {
    (void)state;
    tch_cassette *c = open_yaml("version: 1\n"
                                "interactions:\n"
                                "- id: tpl\n"
                                "  request: {endpoint: {any: true}}\n"
                                "  response:\n"
                                "    template: true\n"
                                "    headers: '{\"who\": \"{{request.headers.user}}\"}'\n"
                                "    body: '{\"id\": {{request.body.user.id}}, \"ep\": "
                                "\"{{request.endpoint}}\", \"n\": {{counter}}, \"t\": "
                                "\"{{now}}\", \"r\": \"{{randomId}}\"}'\n");
    tch_error err = {0};
    tch_cassette_call call = call_of("kv", "get", TCH_CASSETTE_JSON, "{\"user\": \"a\\\"b\"}",
                                     "{\"user\": {\"id\": 7}}");
    long idx = answer(c, &call, &err);
    assert_int_equal(idx, 0);
    tch_buf a2 = {0}, a3 = {0};
    int code = -1;
    assert_int_equal(tch_cassette_render_response(c, 0, &call, &code, &a2, &a3, &err), 0);
    assert_int_equal(code, 0);
    json_error_t je;
    json_t *h = json_loadb((const char *)a2.ptr, a2.len, 0, &je);
    json_t *b = json_loadb((const char *)a3.ptr, a3.len, 0, &je);
    assert_non_null(h);
    assert_non_null(b);
    assert_string_equal(json_string_value(json_object_get(h, "who")), "a\"b");
    assert_int_equal(json_integer_value(json_object_get(b, "id")), 7);
    assert_string_equal(json_string_value(json_object_get(b, "ep")), "get");
    assert_int_equal(json_integer_value(json_object_get(b, "n")), 1);
    assert_int_equal(strlen(json_string_value(json_object_get(b, "t"))), 24);
    assert_int_equal(strlen(json_string_value(json_object_get(b, "r"))), 36);
    json_decref(h);
    json_decref(b);
    /* a value the request lacks: an error naming the stub and the value */
    call.body = S("{\"user\": {}}");
    tch_buf_reset(&a2);
    tch_buf_reset(&a3);
    assert_int_equal(tch_cassette_render_response(c, 0, &call, &code, &a2, &a3, &err), TCH_EINVAL);
    assert_non_null(strstr(err.msg, "stub tpl"));
    assert_non_null(strstr(err.msg, "{{request.body.user.id}}"));
    tch_buf_free(&a2);
    tch_buf_free(&a3);
    tch_cassette_free(c);
    /* a template that refers to nothing is refused when loaded */
    assert_int_equal(open_fails("version: 1\ninteractions:\n"
                                "- request: {endpoint: x}\n"
                                "  response: {template: true, body: '{{request.nothing}}'}\n",
                                &err),
                     TCH_EPARSE);
    assert_non_null(strstr(err.msg, "refers to nothing"));
}

/* A value that is not a string, put inside a JSON string of the template,
 * goes in as its JSON text escaped, so the answer stays JSON; a filled json
 * answer that does not parse is an error naming the stub. */
static void test_template_values_inside_strings(void **state) {
    (void)state;
    tch_cassette *c = open_yaml("version: 1\n"
                                "interactions:\n"
                                "- id: greet\n"
                                "  request: {endpoint: greet}\n"
                                "  response:\n"
                                "    template: true\n"
                                "    body: '{\"greeting\": \"hello, {{request.body.name}}\", "
                                "\"said\": \"a \\\"{{request.body.name}}\\\"\", "
                                "\"name\": {{request.body.name}}}'\n"
                                "- id: broken\n"
                                "  request: {endpoint: broken}\n"
                                "  response:\n"
                                "    template: true\n"
                                "    body: '{\"x\": {{request.body.s}}}'\n");
    tch_error err = {0};
    tch_cassette_call call = call_of("kv", "greet", TCH_CASSETTE_JSON, "{}",
                                     "{\"name\": {\"a\": [1, 2]}, \"s\": \"text\"}");
    assert_int_equal(answer(c, &call, &err), 0);
    tch_buf a2 = {0}, a3 = {0};
    int code = -1;
    assert_int_equal(tch_cassette_render_response(c, 0, &call, &code, &a2, &a3, &err), 0);
    json_error_t je;
    json_t *b = json_loadb((const char *)a3.ptr, a3.len, 0, &je);
    assert_non_null(b);
    assert_string_equal(json_string_value(json_object_get(b, "greeting")),
                        "hello, {\"a\":[1,2]}");
    assert_string_equal(json_string_value(json_object_get(b, "said")), "a \"{\"a\":[1,2]}\"");
    assert_true(json_is_array(json_object_get(json_object_get(b, "name"), "a")));
    json_decref(b);
    call.endpoint = S("broken");
    tch_buf_reset(&a2);
    tch_buf_reset(&a3);
    assert_int_equal(tch_cassette_render_response(c, 1, &call, &code, &a2, &a3, &err),
                     TCH_EINVAL);
    assert_non_null(strstr(err.msg, "stub broken"));
    assert_non_null(strstr(err.msg, "filled body is not JSON"));
    tch_buf_free(&a2);
    tch_buf_free(&a3);
    tch_cassette_free(c);
}

static void test_yaml_to_json(void **state) {
    (void)state;
    const char *y = "request:\n  endpoint: get\n  body: {matchesJsonPath: {expression: '$.a',"
                    " equalTo: 42}}\nresponse: {body: 'x', code: 0}\nrequired: true\n";
    json_t *j = NULL;
    tch_error err = {0};
    assert_int_equal(tch_stub_yaml_to_json(y, strlen(y), &j, &err), 0);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(json_object_get(j, "request"), "body"),
                                         "matchesJsonPath"),
                         "equalTo")),
                     42);
    assert_true(json_is_true(json_object_get(j, "required")));
    json_decref(j);
    assert_int_equal(tch_stub_yaml_to_json("a: [", 4, &j, &err), TCH_EPARSE);
    assert_non_null(strstr(err.msg, "YAML line"));
}

/* Thrift: rules read the body decoded with the IDL; a templated answer is
 * encoded with the method's result type. */
static void test_thrift_rules_and_template(void **state) {
    (void)state;
    tch_cassette_thrift *t = NULL;
    tch_error err = {0};
    if (tch_cassette_thrift_load(TCH_SOURCE_DIR "/cassettes/keyvalue.thrift", &t, &err))
        fail_msg("idl: %s", err.msg);
    const char *y = "version: 1\n"
                    "interactions:\n"
                    "- id: kv\n"
                    "  request:\n"
                    "    endpoint: KeyValue::getValue\n"
                    "    body: {matchesJsonPath: {expression: '$.key', matches: '^fo+$'}}\n"
                    "  response:\n"
                    "    template: true\n"
                    "    body: '{\"success\": \"value of {{request.body.key}}\"}'\n";
    tch_cassette_options o;
    tch_cassette_options_init(&o);
    o.mode = TCH_CASSETTE_NONE;
    o.no_env_override = 1;
    o.thrift = t;
    tch_cassette *c = NULL;
    if (tch_cassette_open_memory("thrift.yaml", y, strlen(y), &o, &c, &err))
        fail_msg("open: %s", err.msg);
    static const uint8_t foo[] = {0x0b, 0, 1, 0, 0, 0, 3, 'f', 'o', 'o', 0};
    static const uint8_t bar[] = {0x0b, 0, 1, 0, 0, 0, 3, 'b', 'a', 'r', 0};
    tch_cassette_call call = call_of("keyvalue-server", "KeyValue::getValue",
                                     TCH_CASSETTE_THRIFT, "", "");
    call.body = tch_slice_of(foo, sizeof foo);
    assert_int_equal(answer(c, &call, &err), 0);
    tch_buf a2 = {0}, a3 = {0};
    int code;
    assert_int_equal(tch_cassette_render_response(c, 0, &call, &code, &a2, &a3, &err), 0);
    /* result struct: field 0 string "value of foo", then stop */
    static const uint8_t want[] = {0x0b, 0, 0, 0, 0, 0, 12, 'v', 'a', 'l', 'u', 'e', ' ',
                                   'o',  'f', ' ', 'f', 'o', 'o', 0};
    assert_int_equal(a3.len, sizeof want);
    assert_memory_equal(a3.ptr, want, sizeof want);
    tch_buf_free(&a2);
    tch_buf_free(&a3);
    call.body = tch_slice_of(bar, sizeof bar);
    assert_int_equal(answer(c, &call, &err), -1);
    if (!strstr(err.msg, "body $.key: expected to match the regular expression, got \"bar\""))
        fail_msg("%s", err.msg);
    tch_cassette_free(c);
    tch_cassette_thrift_free(t);
}

/* A cassette's stubs survive a save: rules, id, priority, scenario, delay
 * distribution, template and a body that is not UTF-8; run-time stubs are
 * not written by tch_cassette_emit but by tch_cassette_stubs_emit. */
static void test_stubs_survive_emit(void **state) {
    (void)state;
    tch_cassette *c = open_yaml(RULES);
    json_error_t je;
    json_t *s = json_loads("{\"id\": \"rt\", \"priority\": 2, \"scenario\": \"s\", \"newState\": "
                           "\"t\", \"delayDistribution\": {\"type\": \"lognormal\", \"median\": "
                           "10.0, \"sigma\": 0.5}, \"request\": {\"endpoint\": {\"equalTo\": "
                           "\"007\"}, \"body\": {\"equalToJson\": {\"n\": 1.5, \"t\": true}}}, "
                           "\"response\": {\"template\": true, \"body\": \"{{counter}}\"}}",
                           0, &je);
    assert_non_null(s);
    tch_error err = {0};
    assert_int_equal(tch_cassette_stub_add(c, s, NULL, &err), 0);
    tch_buf out = {0};
    assert_int_equal(tch_cassette_emit(c, &out, &err), 0);
    tch_cassette *again = open_yaml_len((const char *)out.ptr, out.len);
    assert_int_equal(tch_cassette_count(again), 7); /* the run-time stub stays out */
    tch_cassette_call call = call_of("kv", "get", TCH_CASSETTE_JSON, "", "{\"user\": {\"id\": 42}}");
    assert_int_equal(answer(again, &call, &err), 1);
    json_t *a = tch_cassette_interaction_to_json(c, 1), *b = tch_cassette_interaction_to_json(again, 1);
    json_object_del(b, "plays"); /* played once above */
    json_object_del(a, "plays");
    if (!json_equal(a, b)) {
        char *x = json_dumps(a, JSON_SORT_KEYS), *y = json_dumps(b, JSON_SORT_KEYS);
        fail_msg("%s\nvs\n%s", x, y);
    }
    json_decref(a);
    json_decref(b);
    tch_cassette_free(again);
    tch_buf_reset(&out);
    assert_int_equal(tch_cassette_stubs_emit(c, &out, &err), 0);
    again = open_yaml_len((const char *)out.ptr, out.len);
    assert_int_equal(tch_cassette_count(again), 1);
    a = tch_cassette_interaction_to_json(c, 7);
    b = tch_cassette_interaction_to_json(again, 0);
    if (!json_equal(a, b)) {
        char *x = json_dumps(a, JSON_SORT_KEYS), *y = json_dumps(b, JSON_SORT_KEYS);
        fail_msg("%s\nvs\n%s\nfrom\n%.*s", x, y, (int)out.len, (const char *)out.ptr);
    }
    json_decref(a);
    json_decref(b);
    tch_cassette_free(again);
    tch_buf_free(&out);
    json_decref(s);
    tch_cassette_free(c);
}

/* ---- regular expressions: confined ---------------------------------------------------- */

static void test_regex_limits_refuse(void **state) {
    (void)state;
    parse_error("{\"body\": {\"matches\": \"^((a{1,100}){1,100}){1,20}$\"}}",
                "body.matches: regular expression '^((a{1,100}){1,100}){1,20}$' refused: a "
                "counted repeat over 32: {1,100}");
    parse_error("{\"body\": {\"matches\": \"(a{1,1000}){1,1000}\"}}", "over 32: {1,1000}");
    parse_error("{\"body\": {\"matches\": \"a{33}\"}}", "over 32: {33}");
    parse_error("{\"body\": {\"matches\": \"a{,99999999999999999999}\"}}", "over 32");
    parse_error("{\"body\": {\"matches\": \"((a{1,10})b){1,10}\"}}", "nested counts multiply");
    parse_error("{\"body\": {\"matches\": \"a{2}{2}\"}}", "a repeat of a repeat");
    /* glibc copies the tree per stacked operator and per nested +: a fuzzer's
     * ^%%+++...+ took 2 GB */
    parse_error("{\"headers\": {\"matches\": \"^%%%++++++++++++++++++++++++++++++++%?%\"}}",
                "a repeat of a repeat (++)");
    parse_error("{\"body\": {\"matches\": \"a*?\"}}", "a repeat of a repeat (*?)");
    parse_error("{\"body\": {\"matches\": \"(((((((((a+)+)+)+)+)+)+)+)+)+\"}}", "over 256 atoms");
    parse_error("{\"body\": {\"matches\": \"(a)\\\\1\"}}", "back-references (\\1)");
    parse_error("{\"body\": {\"matches\": \"(a|b|c|d|e|f|g|h){32}\"}}",
                "too large once its counted repeats are copied out (over 256 atoms)");
    parse_error("{\"body\": {\"matches\": \"a{32}b{32}c{32}d{32}e{32}f{32}g{32}h{32}i\"}}",
                "over 256 atoms");
    parse_error("{\"body\": {\"matches\": \"a)|((a|aa)*x\"}}", "an unmatched ')'");
    char text[400];
    snprintf(text, sizeof text, "{\"endpoint\": {\"matches\": \"%0257d\"}}", 0);
    parse_error(text, "endpoint.matches: regular expression '0000");
    parse_error(text, "refused: longer than 256 bytes");
    /* what looks like a repeat inside brackets or escaped is a character */
    const char *fine[] = {"[{]1000}", "\\{1000}", "[[:digit:]{]{32}", "a{32}b{32}", "(a{32})*"};
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
        json_t *rq = json_pack("{s:{s:s}}", "body", "matches", fine[i]);
        tch_stub_rules *rs = NULL;
        tch_error err = {0};
        if (tch_stub_rules_from_json(rq, &rs, &err))
            fail_msg("%s: %s", fine[i], err.msg);
        tch_stub_rules_free(rs);
        json_decref(rq);
    }
}

static long now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000L + ts.tv_nsec / 1000;
}

/* The worst patterns the limits let through still compile and run in
 * milliseconds on the longest text they are run on. */
static void test_regex_accepted_stay_fast(void **state) {
    (void)state;
    static char body[(64 << 10) + 1];
    memset(body, 'a', sizeof body - 1);
    const char *nasty[] = {
        "^(a|aa|aaa|aaaa)*(a{1,32}b{1,32}c{1,32}d{1,32}e{1,32}f{1,32})$",
        "(.*){32}x",
        "((((((((a*)*)*)*)*)*)*)*)*b",
        "([a-z]*[a-z]*[a-z]*){32}$b",
        "(a|aa)*(a|aa)*(a|aa)*(a|aa)*(a|aa)*(a|aa)*(a|aa)*(a|aa)*(a|aa)*(a|aa)*x",
        "(a?){32}a{32}(a|b|c|d|e|f|g){12}(.*.*.*.*){8}x",
        "(a|a?){16}(a*|b*){16}(.?){30}(a{0,32}|b{0,32}|c{0,32})z",
    };
    for (size_t i = 0; i < sizeof nasty / sizeof nasty[0]; i++) {
        long t0 = now_us();
        json_t *rq = json_pack("{s:{s:s}}", "body", "matches", nasty[i]);
        tch_stub_rules *rs = NULL;
        tch_error err = {0};
        if (tch_stub_rules_from_json(rq, &rs, &err))
            fail_msg("%s: %s", nasty[i], err.msg);
        tch_cassette_call call = call_of("kv", "get", TCH_CASSETTE_RAW, "", body);
        char why[300];
        assert_int_equal(tch_stub_rules_match(rs, &call, NULL, why, sizeof why, &err), 0);
        long took = now_us() - t0;
        print_message("  %6ld us: %s\n", took, nasty[i]);
        /* milliseconds in a plain build; the bound leaves room for
         * sanitizers on a busy machine, far below the seconds refused */
        if (took > 1000000)
            fail_msg("%s took %ld us", nasty[i], took);
        tch_stub_rules_free(rs);
        json_decref(rq);
    }
}

/* Text over 64 KiB does not match a regular expression, and says why. */
static void test_regex_text_cap(void **state) {
    (void)state;
    static char body[(64 << 10) + 2];
    memset(body, 'a', sizeof body - 1);
    json_t *rq = json_pack("{s:{s:s}}", "body", "matches", "^a+$");
    tch_stub_rules *rs = NULL;
    tch_error err = {0};
    assert_int_equal(tch_stub_rules_from_json(rq, &rs, &err), 0);
    char why[300];
    body[64 << 10] = 0; /* 65536 bytes: run */
    tch_cassette_call call = call_of("kv", "get", TCH_CASSETTE_RAW, "", body);
    assert_int_equal(tch_stub_rules_match(rs, &call, NULL, why, sizeof why, &err), 1);
    body[64 << 10] = 'a'; /* 65537 */
    call = call_of("kv", "get", TCH_CASSETTE_RAW, "", body);
    assert_int_equal(tch_stub_rules_match(rs, &call, NULL, why, sizeof why, &err), 0);
    if (!strstr(why, "got 65537 bytes: longer than the 65536 bytes a regular expression is "
                     "run on"))
        fail_msg("why: %s", why);
    tch_stub_rules_free(rs);
    json_decref(rq);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules_each),
        cmocka_unit_test(test_near_miss_names_rule),
        cmocka_unit_test(test_exact_hit_scans_no_pattern),
        cmocka_unit_test(test_pattern_evaluations_counted),
        cmocka_unit_test(test_pattern_index_order),
        cmocka_unit_test(test_repeat_is_exact_hit),
        cmocka_unit_test(test_empty_equals_absent),
        cmocka_unit_test(test_priority),
        cmocka_unit_test(test_redacted_matches_anything),
        cmocka_unit_test(test_regex_limits_refuse),
        cmocka_unit_test(test_regex_accepted_stay_fast),
        cmocka_unit_test(test_regex_text_cap),
        cmocka_unit_test(test_rules_match_api),
        cmocka_unit_test(test_bad_rules),
        cmocka_unit_test(test_runtime_stubs),
        cmocka_unit_test(test_scenarios),
        cmocka_unit_test(test_delay_sample),
        cmocka_unit_test(test_templates),
        cmocka_unit_test(test_template_values_inside_strings),
        cmocka_unit_test(test_yaml_to_json),
        cmocka_unit_test(test_thrift_rules_and_template),
        cmocka_unit_test(test_stubs_survive_emit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
