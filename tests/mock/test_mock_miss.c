/* tchannel-mock's miss answers, as a caller reads them: with --thrift the
 * Thrift fields that differ (not escaped bytes), JSON paths, scheme names;
 * and a JSON call with an empty arg2 (as Uber's tcurl sends one) replays
 * what was recorded with {}. The mock runs as a child process. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <tchannel/channel.h>

#define MOCK_FX_CLIENT "keyvalue-client"
#define MOCK_FX_DIR NULL
#include "mock_fixture.h"

#define SRC TCH_SOURCE_DIR
#define KV_YAML SRC "/cassettes/keyvalue.yaml"
#define KV_IDL SRC "/cassettes/keyvalue.thrift"

/* argv after the binary, NULL-terminated; waits for `listening`. */
#define start_mock(f, ...) fx_start_mock((f), 1, __VA_ARGS__)

static result call(fx *f, const char *as, const char *endpoint, tch_slice arg2, tch_slice arg3) {
    tch_call_opts o = {.service = "keyvalue-server", .endpoint = tch_slice_cstr(endpoint),
                       .arg2 = arg2, .arg3 = arg3, .arg_scheme = as, .timeout_ms = 3000,
                       .retry_limit = TCH_RETRY_LIMIT_NONE};
    return fx_call(f, o, 5000);
}

#define assert_has(text, part)                                                                    \
    do {                                                                                          \
        if (!strstr((text), (part)))                                                              \
            fail_msg("missing [%s] in: %s", (part), (text));                                      \
    } while (0)

/* KeyValue::getValue args {key: "baz"}; no application headers (nh = 0) */
static const uint8_t ARGS_BAZ[] = {0x0b, 0, 1, 0, 0, 0, 3, 'b', 'a', 'z', 0};
static const uint8_t NO_HEADERS[] = {0, 0};

static result get_baz(fx *f) {
    return call(f, "thrift", "KeyValue::getValue", tch_slice_of(NO_HEADERS, sizeof NO_HEADERS),
                tch_slice_of(ARGS_BAZ, sizeof ARGS_BAZ));
}

static void thrift_miss_names_decoded_fields(void **state) {
    fx *f = *state;
    assert_int_equal(start_mock(f, "--thrift", KV_IDL, KV_YAML, NULL), 0);
    result r = get_baz(f);
    assert_int_equal(r.status, TCH_EREMOTE);
    assert_int_equal(r.error_code, TCH_PCODE_BAD_REQUEST);
    assert_has(r.message, "keyvalue-server::KeyValue::getValue (thrift) args {\"key\":\"baz\"}");
    assert_has(r.message, "differs: body KeyValue::getValue args: key: recorded \"foo\" vs "
                          "requested \"baz\"");
    /* the journal carries the same, as data */
    json_t *j = NULL;
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_GET, "/journal?outcome=unmatched",
                              NULL, &j),
                     200);
    json_t *e = json_array_get(json_object_get(j, "entries"), 0);
    json_t *d = json_array_get(json_object_get(json_object_get(e, "nearMiss"), "diffs"), 0);
    assert_string_equal(json_string_value(json_object_get(d, "form")), "json");
    assert_string_equal(json_string_value(json_object_get(d, "decodedAs")),
                        "KeyValue::getValue args");
    assert_string_equal(json_string_value(json_object_get(d, "path")), "key");
    assert_string_equal(json_string_value(json_object_get(d, "recorded")), "\"foo\"");
    assert_string_equal(json_string_value(json_object_get(d, "requested")), "\"baz\"");
    json_decref(j);
    /* a hit still replays */
    const uint8_t foo[] = {0x0b, 0, 1, 0, 0, 0, 3, 'f', 'o', 'o', 0};
    r = call(f, "thrift", "KeyValue::getValue", tch_slice_of(NO_HEADERS, sizeof NO_HEADERS),
             tch_slice_of(foo, sizeof foo));
    assert_int_equal(r.status, 0);
}

/* The same IDL as a folder, tcurl -t style: keyvalue-server.thrift. */
static void thrift_folder_names_decoded_fields(void **state) {
    fx *f = *state;
    char dir[] = "/tmp/tch-mock-idl-XXXXXX", path[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/keyvalue-server.thrift", dir);
    assert_int_equal(symlink(KV_IDL, path), 0);
    int started = start_mock(f, "--thrift", dir, KV_YAML, NULL);
    unlink(path);
    rmdir(dir);
    assert_int_equal(started, 0);
    result r = get_baz(f);
    assert_has(r.message,
               "body KeyValue::getValue args: key: recorded \"foo\" vs requested \"baz\"");
}

static void without_idl_thrift_bodies_stay_bytes(void **state) {
    fx *f = *state;
    assert_int_equal(start_mock(f, KV_YAML, NULL), 0);
    result r = get_baz(f);
    assert_int_equal(r.error_code, TCH_PCODE_BAD_REQUEST);
    assert_has(r.message, "body: recorded \"\\x0b\\x00\\x01");
}

static void json_empty_arg2_replays_and_misses_read_as_json(void **state) {
    fx *f = *state;
    assert_int_equal(start_mock(f, KV_YAML, NULL), 0);
    /* recorded with headers {}; Uber's tcurl sends none at all */
    result r = call(f, "json", "json_echo", TCH_SLICE_NULL,
                    tch_slice_cstr("{\"key\": \"foo\", \"value\": \"bar\"}"));
    if (r.status != 0)
        fail_msg("empty arg2 did not replay: %s", r.message);
    r = call(f, "json", "json_echo", TCH_SLICE_NULL,
             tch_slice_cstr("{\"key\":\"foo\",\"value\":\"qux\"}"));
    assert_int_equal(r.error_code, TCH_PCODE_BAD_REQUEST);
    assert_has(r.message, "body json: value: recorded \"bar\" vs requested \"qux\"");
}

static void scheme_is_named_in_a_miss(void **state) {
    fx *f = *state;
    assert_int_equal(start_mock(f, SRC "/cassettes/echo-raw.yaml", NULL), 0);
    /* a json call where raw was recorded */
    result r = call(f, "json", "echo", TCH_SLICE_NULL, tch_slice_cstr("hello"));
    assert_int_equal(r.error_code, TCH_PCODE_BAD_REQUEST);
    assert_has(r.message, "keyvalue-server::echo (json)");
    assert_has(r.message, "argScheme: recorded raw vs requested json");
}

static void bad_thrift_option_stops_start_up(void **state) {
    fx *f = *state;
    char dir[] = "/tmp/tch-mock-idl-XXXXXX", path[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/broken.thrift", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("service Broken {\n  void x(\n", fp);
    assert_int_equal(fclose(fp), 0);
    assert_int_not_equal(start_mock(f, "--thrift", path, KV_YAML, NULL), 0);
    char err[2048] = "";
    mp_stderr(&f->mp, err, sizeof err);
    int status = mp_stop(&f->mp, f->base, SIGKILL, 5000);
    unlink(path);
    assert_int_equal(rmdir(dir), 0);
    assert_has(err, "--thrift");
    assert_has(err, "broken.thrift:");
    assert_int_not_equal(status, 0);
    /* an empty folder says so */
    char empty[] = "/tmp/tch-mock-idl-XXXXXX";
    assert_non_null(mkdtemp(empty));
    assert_int_not_equal(start_mock(f, "--thrift", empty, KV_YAML, NULL), 0);
    err[0] = '\0';
    mp_stderr(&f->mp, err, sizeof err);
    mp_stop(&f->mp, f->base, SIGKILL, 5000);
    assert_int_equal(rmdir(empty), 0);
    assert_has(err, "no .thrift files");
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(thrift_miss_names_decoded_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(thrift_folder_names_decoded_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(without_idl_thrift_bodies_stay_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(json_empty_arg2_replays_and_misses_read_as_json, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(scheme_is_named_in_a_miss, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_thrift_option_stops_start_up, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
