/* JSON mapping: field names, enum names, base64 binary, maps as objects or
 * key/value lists, defaults, and the method-level args/result helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <tchannel/thrift.h>

static const char *IDL = "enum Color { RED = 1, GREEN = 2 }\n"
                         "struct P { 1: i32 x, 2: i32 y }\n"
                         "struct S {\n"
                         "  1: required string name\n"
                         "  2: Color color = Color.GREEN\n"
                         "  3: binary blob\n"
                         "  4: map<string, i64> counts\n"
                         "  5: map<i32, P> by_id\n"
                         "  6: map<Color, bool> by_color\n"
                         "  7: set<double> ds\n"
                         "  8: byte b\n"
                         "}\n"
                         "exception NotFoundError { 1: string key }\n"
                         "service KeyValue {\n"
                         "  string getValue(1: string key) throws (1: NotFoundError notFound)\n"
                         "  void setValue(1: string key, 2: string value)\n"
                         "  oneway void fire()\n"
                         "}\n";

static int setup(void **state) {
    tch_thrift_idl *idl;
    if (tch_thrift_load_string("json.thrift", tch_slice_cstr(IDL), NULL, &idl, NULL))
        return -1;
    *state = idl;
    return 0;
}

static int teardown(void **state) {
    tch_thrift_idl_free(*state);
    return 0;
}

static json_t *parse(const char *s) {
    json_t *j = json_loads(s, 0, NULL);
    assert_non_null(j);
    return j;
}

/* JSON text -> value -> bytes -> value -> JSON text, compared with want. */
static void round_trip(void **state, const char *in, const char *want) {
    const tch_thrift_struct *st = tch_thrift_idl_find_struct(*state, "S");
    json_t *j = parse(in);
    tch_thrift_value *v, *d;
    tch_error err = {0};
    tch_buf buf = {0};
    int rc = tch_thrift_struct_from_json(st, j, &v, &err);
    if (rc)
        print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(tch_thrift_encode(st, v, &buf, &err), 0);
    assert_int_equal(tch_thrift_decode(st, tch_buf_slice(&buf), &d, &err), 0);
    json_t *out;
    assert_int_equal(tch_thrift_struct_to_json(st, d, &out, &err), 0);
    char *s = json_dumps(out, JSON_COMPACT);
    if (strcmp(s, want) != 0)
        print_error("got  %s\nwant %s\n", s, want);
    assert_string_equal(s, want);
    free(s);
    json_decref(out);
    json_decref(j);
    tch_thrift_value_free(v);
    tch_thrift_value_free(d);
    tch_buf_free(&buf);
}

static void mapping_round_trips(void **state) {
    round_trip(state,
               "{\"name\":\"n\",\"color\":\"RED\",\"blob\":\"AAH/\",\"counts\":{\"a\":9007199254740993},"
               "\"by_id\":[{\"key\":-1,\"value\":{\"x\":1}}],\"by_color\":{\"GREEN\":true},\"ds\":[0.5,-2.0],"
               "\"b\":-3}",
               "{\"name\":\"n\",\"color\":\"RED\",\"blob\":\"AAH/\",\"counts\":{\"a\":9007199254740993},"
               "\"by_id\":[{\"key\":-1,\"value\":{\"x\":1}}],\"by_color\":{\"GREEN\":true},\"ds\":[0.5,-2.0],"
               "\"b\":-3}");
    /* defaults filled, enum given as an int, binary as a byte array, null = unset */
    round_trip(state, "{\"name\":\"x\",\"by_color\":{\"1\":false},\"blob\":[104,105],\"b\":null}",
               "{\"name\":\"x\",\"color\":\"GREEN\",\"blob\":\"aGk=\",\"by_color\":{\"RED\":false}}");
    round_trip(state, "{\"name\":\"\",\"color\":7}", "{\"name\":\"\",\"color\":7}");
}

static void expect_from_json_error(void **state, const char *in, const char *want) {
    const tch_thrift_struct *st = tch_thrift_idl_find_struct(*state, "S");
    json_t *j = parse(in);
    tch_thrift_value *v = NULL;
    tch_error err = {0};
    assert_int_equal(tch_thrift_struct_from_json(st, j, &v, &err), TCH_EINVAL);
    if (!strstr(err.msg, want))
        print_error("msg \"%s\", wanted \"%s\"\n", err.msg, want);
    assert_non_null(strstr(err.msg, want));
    json_decref(j);
}

static void bad_json_is_rejected_with_a_path(void **state) {
    expect_from_json_error(state, "{\"color\":\"RED\"}", "required field 'name' missing");
    expect_from_json_error(state, "{\"name\":\"n\",\"nope\":1}", "S has no field 'nope'");
    expect_from_json_error(state, "{\"name\":\"n\",\"color\":\"BLUE\"}", "color: 'BLUE' is not a value of enum Color");
    expect_from_json_error(state, "{\"name\":\"n\",\"b\":300}", "b: 300 out of range for byte");
    expect_from_json_error(state, "{\"name\":\"n\",\"blob\":\"!!\"}", "not valid base64");
    expect_from_json_error(state, "{\"name\":\"n\",\"by_id\":{\"1\":{}}}", "list of {\"key\", \"value\"}");
    expect_from_json_error(state, "{\"name\":\"n\",\"by_id\":[{\"key\":1}]}", "expected {\"key\": k");
    expect_from_json_error(state, "{\"name\":\"n\",\"ds\":[1,\"x\"]}", "ds: [1]: expected double, got string");
    expect_from_json_error(state, "[]", "expected object for S");
    /* one enum value spelled twice would be one key twice */
    expect_from_json_error(state, "{\"name\":\"n\",\"by_color\":{\"RED\":true,\"1\":false}}",
                           "keys \"RED\" and \"1\" are the same Color value");
}

/* A map can repeat a key on the wire; a JSON object cannot, so rendering
 * one refuses rather than drops an entry. */
static void repeated_map_keys_cannot_be_an_object(void **state) {
    const tch_thrift_struct *st = tch_thrift_idl_find_struct(*state, "S");
    /* S{name: "n", counts: {"a": 1, "a": 2}} as the wire has it */
    static const uint8_t wire[] = {0x0b, 0x00, 0x01, 0, 0, 0, 1, 'n', 0x0d, 0x00, 0x04, 0x0b, 0x0a,
                                   0,    0,    0,    2, 0, 0, 0, 1,   'a',  0,    0,    0,    0,
                                   0,    0,    0,    1, 0, 0, 0, 1,   'a',  0,    0,    0,    0,
                                   0,    0,    0,    2, 0x00};
    tch_thrift_value *v = NULL;
    tch_error err = {0};
    assert_int_equal(tch_thrift_decode(st, tch_slice_of(wire, sizeof wire), &v, &err), 0);
    json_t *out = NULL;
    assert_int_equal(tch_thrift_struct_to_json(st, v, &out, &err), TCH_EINVAL);
    if (!strstr(err.msg, "map key \"a\" appears more than once"))
        fail_msg("msg \"%s\"", err.msg);
    assert_null(out);
    tch_thrift_value_free(v);
}

static void invalid_utf8_string_cannot_be_json(void **state) {
    const tch_thrift_struct *st = tch_thrift_idl_find_struct(*state, "S");
    tch_thrift_value *v = tch_thrift_value_new_struct();
    tch_thrift_value_struct_set_take(v, 1, tch_thrift_value_new_string(tch_slice_of("\xff", 1)));
    json_t *out = NULL;
    tch_error err = {0};
    assert_int_equal(tch_thrift_struct_to_json(st, v, &out, &err), TCH_EINVAL);
    assert_non_null(strstr(err.msg, "UTF-8"));
    tch_thrift_value_free(v);
}

static const tch_thrift_method *method(void **state, const char *name) {
    return tch_thrift_service_find_method(tch_thrift_idl_find_service(*state, "KeyValue"), name);
}

static char *result_json(const tch_thrift_method *m, const uint8_t *bytes, size_t n, int *rc) {
    json_t *out = NULL;
    tch_error err = {0};
    *rc = tch_thrift_method_result_to_json(m, tch_slice_of(bytes, n), &out, &err);
    char *s = out ? json_dumps(out, JSON_COMPACT) : NULL;
    json_decref(out);
    return s;
}

static void method_results_as_json(void **state) {
    int rc;
    const uint8_t ok[] = {0x0b, 0, 0, 0, 0, 0, 3, 'b', 'a', 'r', 0};
    char *s = result_json(method(state, "getValue"), ok, sizeof ok, &rc);
    assert_string_equal(s, "{\"success\":\"bar\"}");
    free(s);
    const uint8_t nf[] = {0x0c, 0, 1, 0x0b, 0, 1, 0, 0, 0, 1, 'k', 0, 0};
    s = result_json(method(state, "getValue"), nf, sizeof nf, &rc);
    assert_string_equal(s, "{\"notFound\":{\"key\":\"k\"}}");
    free(s);
    const uint8_t empty[] = {0};
    s = result_json(method(state, "setValue"), empty, 1, &rc);
    assert_string_equal(s, "{\"success\":null}");
    free(s);
    assert_null(result_json(method(state, "getValue"), empty, 1, &rc));
    assert_int_equal(rc, TCH_EPROTO);

    /* and back: JSON results encode to the same bytes */
    tch_buf buf = {0};
    tch_error err = {0};
    json_t *j = parse("{\"notFound\":{\"key\":\"k\"}}");
    assert_int_equal(tch_thrift_method_result_from_json(method(state, "getValue"), j, &buf, &err), 0);
    assert_int_equal(buf.len, sizeof nf);
    assert_memory_equal(buf.ptr, nf, sizeof nf);
    json_decref(j);
    tch_buf_reset(&buf);
    j = parse("{\"success\":null}");
    assert_int_equal(tch_thrift_method_result_from_json(method(state, "setValue"), j, &buf, &err), 0);
    assert_int_equal(buf.len, 1);
    json_decref(j);
    tch_buf_free(&buf);
}

static void method_args_as_json(void **state) {
    tch_buf buf = {0};
    tch_error err = {0};
    json_t *j = parse("{\"key\":\"foo\"}");
    assert_int_equal(tch_thrift_method_args_from_json(method(state, "getValue"), j, &buf, &err), 0);
    const uint8_t want[] = {0x0b, 0, 1, 0, 0, 0, 3, 'f', 'o', 'o', 0};
    assert_int_equal(buf.len, sizeof want);
    assert_memory_equal(buf.ptr, want, sizeof want);
    json_t *back;
    assert_int_equal(tch_thrift_method_args_to_json(method(state, "getValue"), tch_buf_slice(&buf), &back, &err), 0);
    assert_true(json_equal(back, j));
    json_decref(back);
    json_decref(j);
    j = parse("{}");
    assert_int_equal(tch_thrift_method_args_from_json(method(state, "fire"), j, &buf, &err), TCH_EINVAL);
    assert_non_null(strstr(err.msg, "KeyValue::fire: oneway methods are not supported"));
    json_decref(j);
    tch_buf_free(&buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mapping_round_trips),
        cmocka_unit_test(bad_json_is_rejected_with_a_path),
        cmocka_unit_test(invalid_utf8_string_cannot_be_json),
        cmocka_unit_test(repeated_map_keys_cannot_be_an_object),
        cmocka_unit_test(method_results_as_json),
        cmocka_unit_test(method_args_as_json),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
