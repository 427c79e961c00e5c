/* Declarative redaction (tchannel/redact.h): transport and application
 * headers, JSON paths, Thrift fields through the IDL, the spec as JSON, and
 * a redacted recording that still answers the live request. */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tchannel/redact.h>
#include <tchannel/stub.h>

#define PH TCH_CASSETTE_REDACTED

static tch_slice S(const char *s) { return tch_slice_cstr(s); }

static int slice_is(tch_slice s, const char *want) {
    return s.len == strlen(want) && (!s.len || memcmp(s.ptr, want, s.len) == 0);
}

static tch_cassette_redaction *make(const char *spec_json) {
    tch_cassette_redaction *r = NULL;
    tch_error err = {0};
    assert_int_equal(tch_cassette_redaction_new(&r, NULL), 0);
    json_t *spec = json_loads(spec_json, 0, NULL);
    assert_non_null(spec);
    if (tch_cassette_redaction_set_json(r, spec, &err))
        fail_msg("set_json: %s", err.msg);
    json_decref(spec);
    return r;
}

static const tch_kv JSON_TH[] = {
    {{(const uint8_t *)"as", 2}, {(const uint8_t *)"json", 4}},
    {{(const uint8_t *)"Authorization", 13}, {(const uint8_t *)"Bearer s3cret", 13}},
    {{(const uint8_t *)"cn", 2}, {(const uint8_t *)"client", 6}},
};

static tch_cassette_call json_call(const char *headers, const char *body) {
    tch_cassette_call c = {.service = S("svc"), .endpoint = S("login"), .headers = S(headers),
                           .body = S(body), .scheme = TCH_CASSETTE_JSON,
                           .transport_headers = JSON_TH, .n_transport_headers = 3};
    return c;
}

static void test_headers_and_paths(void **state) {
    (void)state;
    tch_cassette_redaction *r = make("{\"headers\": [\"X-Token\"], \"transportHeaders\": "
                                     "[\"authorization\"], \"jsonPaths\": [\"$.user.password\", "
                                     "\"$.cards[*].number\", \"$['api key']\"]}");
    tch_cassette_call c = json_call("{\"x-token\":\"t1\",\"keep\":\"k\"}",
                                    "{\"user\":{\"name\":\"ada\",\"password\":\"pw\"},"
                                    "\"cards\":[{\"number\":\"4111\"},{\"number\":\"5500\"}],"
                                    "\"api key\":\"abc\",\"other\":1}");
    tch_cassette_redacted_call rc;
    tch_error err = {0};
    assert_int_equal(tch_cassette_redaction_call(r, &c, &rc, &err), 0);
    assert_true(slice_is(rc.call.transport_headers[0].value, "json"));
    assert_true(slice_is(rc.call.transport_headers[1].value, PH));
    assert_true(slice_is(rc.call.transport_headers[2].value, "client"));
    assert_true(slice_is(rc.call.headers, "{\"x-token\":\"" PH "\",\"keep\":\"k\"}"));
    assert_true(slice_is(rc.call.body, "{\"user\":{\"name\":\"ada\",\"password\":\"" PH "\"},"
                                       "\"cards\":[{\"number\":\"" PH "\"},{\"number\":\"" PH
                                       "\"}],\"api key\":\"" PH "\",\"other\":1}"));
    /* the original call is untouched: it is what goes to the service */
    assert_true(slice_is(c.transport_headers[1].value, "Bearer s3cret"));
    tch_cassette_redacted_call_free(&rc);

    /* nothing named in it: the exact bytes stay, spacing included */
    tch_cassette_call plain = json_call("{ }", "{ \"user\": {\"name\": \"ada\"} }");
    assert_int_equal(tch_cassette_redaction_call(r, &plain, &rc, &err), 0);
    assert_true(slice_is(rc.call.body, "{ \"user\": {\"name\": \"ada\"} }"));
    assert_true(slice_is(rc.call.headers, "{ }"));
    tch_cassette_redacted_call_free(&rc);

    /* a response: headers and body */
    tch_cassette_request req = {0};
    tch_cassette_response resp = {0};
    req.scheme = TCH_CASSETTE_JSON;
    tch_buf_append(&resp.headers, "{\"X-TOKEN\":\"t2\"}", 16);
    tch_buf_append(&resp.body, "[1]", 3);
    assert_int_equal(tch_cassette_redaction_response(r, &req, &resp, &err), 0);
    assert_true(slice_is(tch_buf_slice(&resp.headers), "{\"X-TOKEN\":\"" PH "\"}"));
    assert_true(slice_is(tch_buf_slice(&resp.body), "[1]"));
    tch_buf_free(&resp.headers);
    tch_buf_free(&resp.body);
    tch_cassette_redaction_free(r);
}

static void test_bad_specs(void **state) {
    (void)state;
    tch_cassette_redaction *r = NULL;
    tch_error err = {0};
    assert_int_equal(tch_cassette_redaction_new(&r, NULL), 0);
    static const struct {
        const char *path, *says;
    } bad[] = {
        {"user.password", "column 1: a JSON path starts with '$'"},
        {"$", "'$' alone is the whole body"},
        {"$.a..b", "column 4: expected a key after '.'"},
        {"$.a[x]", "column 4: expected [N], [*] or ['key']"},
        {"$['a", "needs its closing quote"},
        {"$a", "column 2: expected '.' or '['"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(tch_cassette_redaction_add(r, TCH_REDACT_JSON_PATH, bad[i].path, &err),
                         TCH_EINVAL);
        if (!strstr(err.msg, bad[i].says) || !strstr(err.msg, bad[i].path))
            fail_msg("%s: got \"%s\"", bad[i].path, err.msg);
    }
    assert_int_equal(tch_cassette_redaction_add(r, TCH_REDACT_HEADER, "", &err), TCH_EINVAL);
    assert_int_equal(tch_cassette_redaction_add(r, TCH_REDACT_TRANSPORT_HEADER, "AS", &err),
                     TCH_EINVAL);
    assert_non_null(strstr(err.msg, "arg scheme"));
    assert_true(tch_cassette_redaction_empty(r));

    /* set_json: a bad item names its list and place, and changes nothing */
    assert_int_equal(tch_cassette_redaction_add(r, TCH_REDACT_HEADER, "keep", &err), 0);
    const char *specs[][2] = {
        {"{\"jsonPaths\": [\"$.a\", \"$.b[\"]}", "jsonPaths[1]: JSON path \"$.b[\""},
        {"{\"headerz\": []}", "unknown key \"headerz\""},
        {"{\"headers\": \"x\"}", "headers: expected a list of strings"},
        {"{\"thriftFields\": [1]}", "thriftFields[0]: expected a string"},
        {"[]", "expected an object"},
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        json_t *j = json_loads(specs[i][0], JSON_DECODE_ANY, NULL);
        assert_non_null(j);
        assert_int_equal(tch_cassette_redaction_set_json(r, j, &err), TCH_EINVAL);
        if (!strstr(err.msg, specs[i][1]))
            fail_msg("%s: got \"%s\"", specs[i][0], err.msg);
        json_decref(j);
    }
    assert_int_equal(tch_cassette_redaction_count(r, TCH_REDACT_HEADER), 1);
    assert_int_equal(tch_cassette_redaction_count(r, TCH_REDACT_JSON_PATH), 0);

    /* duplicates are kept once; to_json lists every key */
    assert_int_equal(tch_cassette_redaction_add(r, TCH_REDACT_HEADER, "KEEP", &err), 0);
    json_t *out = tch_cassette_redaction_to_json(r);
    char *text = json_dumps(out, JSON_COMPACT);
    assert_string_equal(text, "{\"headers\":[\"keep\"],\"transportHeaders\":[],\"jsonPaths\":[],"
                              "\"thriftFields\":[]}");
    free(text);
    json_decref(out);
    tch_cassette_redaction_free(r);
}

static const char IDL[] = "struct Card { 1: string number, 2: i32 cvv }\n"
                          "struct Login { 1: string user, 2: string password, "
                          "3: list<Card> cards, 4: map<string, Card> byName }\n"
                          "exception Denied { 1: string password }\n"
                          "service Auth {\n"
                          "  string login(1: Login req, 2: string otp) throws (1: Denied denied)\n"
                          "}\n";

static tch_thrift_idl *load_idl(void) {
    tch_thrift_idl *idl = NULL;
    tch_error err = {0};
    if (tch_thrift_load_string("auth.thrift", S(IDL), NULL, &idl, &err))
        fail_msg("idl: %s", err.msg);
    return idl;
}

static const tch_thrift_method *login_method(const tch_thrift_idl *idl) {
    return tch_thrift_service_find_method(tch_thrift_idl_find_service(idl, "Auth"), "login");
}

static void test_thrift_fields(void **state) {
    (void)state;
    tch_thrift_idl *idl = load_idl();
    const tch_thrift_method *m = login_method(idl);
    tch_error err = {0};
    json_t *args = json_loads("{\"req\": {\"user\": \"ada\", \"password\": \"pw\", \"cards\": "
                              "[{\"number\": \"4111\", \"cvv\": 123}], \"byName\": {\"main\": "
                              "{\"number\": \"5500\"}}}, \"otp\": \"999\"}", 0, NULL);
    tch_buf body = {0}, arg2 = {0};
    assert_int_equal(tch_thrift_method_args_from_json(m, args, &body, &err), 0);
    tch_kv hs[] = {{S("auth"), S("tok")}, {S("cn"), S("c")}};
    assert_int_equal(tch_thrift_headers_encode(hs, 2, &arg2, &err), 0);

    tch_cassette_redaction *r = make("{\"thriftFields\": [\"password\", \"number\", \"otp\"], "
                                     "\"headers\": [\"AUTH\"]}");
    tch_cassette_call c = {.service = S("auth"), .endpoint = S("Auth::login"),
                           .headers = tch_buf_slice(&arg2), .body = tch_buf_slice(&body),
                           .scheme = TCH_CASSETTE_THRIFT};
    tch_cassette_redacted_call rc;
    /* no IDL: refused, naming the call (a secret is never written unread) */
    assert_int_equal(tch_cassette_redaction_call(r, &c, &rc, &err), TCH_EINVAL);
    assert_non_null(strstr(err.msg, "no IDL"));
    tch_cassette_redaction_set_idl(r, NULL, idl);
    if (tch_cassette_redaction_call(r, &c, &rc, &err))
        fail_msg("redact: %s", err.msg);
    json_t *got = NULL;
    assert_int_equal(tch_thrift_method_args_to_json(m, rc.call.body, &got, &err), 0);
    char *text = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(text, "{\"otp\":\"" PH "\",\"req\":{\"byName\":{\"main\":{\"number\":\""
                              PH "\"}},\"cards\":[{\"cvv\":123,\"number\":\"" PH "\"}],"
                              "\"password\":\"" PH "\",\"user\":\"ada\"}}");
    free(text);
    json_decref(got);
    tch_kv *out = NULL;
    size_t n = 0;
    assert_int_equal(tch_thrift_headers_decode(rc.call.headers, &out, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_true(slice_is(out[0].value, PH));
    assert_true(slice_is(out[1].value, "c"));
    free(out);
    tch_cassette_redacted_call_free(&rc);

    /* the response: an exception's field */
    tch_cassette_request req = {0};
    tch_cassette_response resp = {0};
    req.scheme = TCH_CASSETTE_THRIFT;
    tch_buf_append(&req.service, "auth", 4);
    tch_buf_append(&req.endpoint, "Auth::login", 11);
    json_t *res = json_loads("{\"denied\": {\"password\": \"pw\"}}", 0, NULL);
    assert_int_equal(tch_thrift_method_result_from_json(m, res, &resp.body, &err), 0);
    resp.code = 1;
    assert_int_equal(tch_cassette_redaction_response(r, &req, &resp, &err), 0);
    assert_int_equal(tch_thrift_method_result_to_json(m, tch_buf_slice(&resp.body), &got, &err), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(got, "denied"),
                                                          "password")), PH);
    json_decref(got);

    /* a field that cannot hold the placeholder is an error naming it */
    tch_cassette_redaction *bad = make("{\"thriftFields\": [\"cvv\"]}");
    tch_cassette_redaction_set_idl(bad, NULL, idl);
    assert_int_equal(tch_cassette_redaction_call(bad, &c, &rc, &err), TCH_EINVAL);
    assert_non_null(strstr(err.msg, "Card.cvv is i32"));
    /* a method the IDL does not have */
    c.endpoint = S("Auth::logout");
    assert_int_equal(tch_cassette_redaction_call(r, &c, &rc, &err), TCH_EINVAL);
    assert_non_null(strstr(err.msg, "Auth::logout: the IDL has no such method"));

    tch_cassette_redaction_free(bad);
    tch_cassette_redaction_free(r);
    json_decref(res);
    json_decref(args);
    tch_buf_free(&resp.body);
    tch_buf_free(&req.service);
    tch_buf_free(&req.endpoint);
    tch_buf_free(&body);
    tch_buf_free(&arg2);
    tch_thrift_idl_free(idl);
}

/* Recorded through the hook, a redacted interaction answers the live
 * request, whatever secret it carries. */
static void test_replay_matches(void **state) {
    (void)state;
    tch_cassette_redaction *r = make("{\"transportHeaders\": [\"authorization\"], \"headers\": "
                                     "[\"x-token\"], \"jsonPaths\": [\"$.user.password\"]}");
    tch_cassette_options o;
    tch_cassette_options_init(&o);
    o.mode = TCH_CASSETTE_NEW_EPISODES;
    o.no_env_override = 1;
    o.redact = tch_cassette_redaction_hook;
    o.redact_ud = r;
    o.matchers = (const char *const[]){"serviceName", "endpoint", "headers", "body",
                                       "argScheme", "transportHeaders"};
    o.n_matchers = 6;
    tch_cassette *c = NULL;
    tch_error err = {0};
    assert_int_equal(tch_cassette_open_memory("mem", "", 0, &o, &c, &err), 0);
    tch_cassette_call call = json_call("{\"x-token\":\"t1\"}",
                                       "{\"user\":{\"name\":\"ada\",\"password\":\"pw1\"}}");
    tch_cassette_decision d;
    assert_int_equal(tch_cassette_lookup(c, &call, &d, &err), 0);
    assert_int_equal(d.action, TCH_CASSETTE_ACT_RECORD);
    tch_cassette_decision_clear(&d);
    tch_cassette_slot slot;
    assert_int_equal(tch_cassette_record_begin(c, &call, &slot, &err), 0);
    tch_cassette_reply reply = {0, S("{}"), S("{\"ok\":true}")};
    assert_int_equal(tch_cassette_record_finish(c, slot, &reply, &err), 0);
    const tch_cassette_interaction *it = tch_cassette_get(c, slot);
    assert_true(slice_is(tch_buf_slice(&it->request.transport_headers[1].value), PH));
    assert_true(slice_is(tch_buf_slice(&it->request.body),
                         "{\"user\":{\"name\":\"ada\",\"password\":\"" PH "\"}}"));
    tch_buf yaml = {0};
    assert_int_equal(tch_cassette_emit(c, &yaml, &err), 0);
    assert_null(memmem(yaml.ptr, yaml.len, "pw1", 3));
    assert_null(memmem(yaml.ptr, yaml.len, "s3cret", 6));
    assert_null(memmem(yaml.ptr, yaml.len, "t1", 2));

    /* the same call with other secrets is answered from the recording */
    tch_cassette *replay = NULL;
    o.mode = TCH_CASSETTE_NONE;
    assert_int_equal(tch_cassette_open_memory("mem2", yaml.ptr, yaml.len, &o, &replay, &err), 0);
    tch_cassette_call live = json_call("{\"x-token\":\"t9\"}",
                                       "{\"user\":{\"name\":\"ada\",\"password\":\"pw9\"}}");
    int rc = tch_cassette_lookup(replay, &live, &d, &err);
    if (rc || d.action != TCH_CASSETTE_ACT_REPLAY)
        fail_msg("live request not replayed: %s", err.msg);
    tch_cassette_decision_clear(&d);
    /* a field that is not redacted still has to match */
    tch_cassette_call other = json_call("{\"x-token\":\"t9\"}",
                                        "{\"user\":{\"name\":\"bob\",\"password\":\"pw9\"}}");
    tch_cassette_rewind(replay);
    assert_int_equal(tch_cassette_lookup(replay, &other, &d, &err), TCH_ENOTFOUND);
    tch_cassette_decision_clear(&d);
    tch_cassette_free(replay);
    tch_buf_free(&yaml);
    tch_cassette_free(c);
    tch_cassette_redaction_free(r);
}

static void test_new_reports_bad_input(void **state) {
    (void)state;
    tch_error err = {0};
    assert_int_equal(tch_cassette_redaction_new(NULL, &err), TCH_EINVAL);
    assert_int_equal(err.code, TCH_EINVAL);
    assert_non_null(strstr(err.msg, "out is NULL"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_reports_bad_input),
        cmocka_unit_test(test_headers_and_paths),
        cmocka_unit_test(test_bad_specs),
        cmocka_unit_test(test_thrift_fields),
        cmocka_unit_test(test_replay_matches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
