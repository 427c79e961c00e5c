/* TChannel Thrift conventions: arg1, arg2 headers, result classification. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <tchannel/thrift.h>

static void arg1_split_and_join(void **state) {
    (void)state;
    tch_slice svc, m;
    tch_error err = {0};
    assert_int_equal(tch_thrift_arg1_split(tch_slice_cstr("KeyValue::getValue"), &svc, &m, &err), 0);
    assert_true(tch_slice_eq_cstr(svc, "KeyValue"));
    assert_true(tch_slice_eq_cstr(m, "getValue"));
    assert_int_equal(tch_thrift_arg1_split(tch_slice_cstr("KeyValue:getValue"), &svc, &m, &err), TCH_EPROTO);
    assert_int_equal(tch_thrift_arg1_split(tch_slice_cstr("::m"), &svc, &m, &err), TCH_EPROTO);
    assert_int_equal(tch_thrift_arg1_split(tch_slice_cstr("S::"), &svc, &m, &err), TCH_EPROTO);
    assert_int_equal(tch_thrift_arg1_split(TCH_SLICE_NULL, &svc, &m, &err), TCH_EPROTO);
    tch_buf b = {0};
    assert_int_equal(tch_thrift_arg1_join("KeyValue", "setValue", &b, &err), 0);
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&b), "KeyValue::setValue"));
    assert_int_equal(tch_thrift_arg1_join("", "x", &b, &err), TCH_EINVAL);
    tch_buf_free(&b);
}

static void headers_round_trip(void **state) {
    (void)state;
    tch_kv hs[] = {{tch_slice_cstr("cn"), tch_slice_cstr("client")}, {tch_slice_cstr("k"), tch_slice_cstr("")}};
    tch_buf b = {0};
    tch_error err = {0};
    assert_int_equal(tch_thrift_headers_encode(hs, 2, &b, &err), 0);
    const uint8_t want[] = {0, 2, 0, 2, 'c', 'n', 0, 6, 'c', 'l', 'i', 'e', 'n', 't', 0, 1, 'k', 0, 0};
    assert_int_equal(b.len, sizeof want);
    assert_memory_equal(b.ptr, want, sizeof want);
    tch_kv *got;
    size_t n;
    assert_int_equal(tch_thrift_headers_decode(tch_buf_slice(&b), &got, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_true(tch_slice_eq_cstr(got[0].value, "client"));
    assert_true(tch_slice_eq_cstr(got[1].key, "k"));
    free(got);
    for (size_t cut = 1; cut < sizeof want; cut++) /* every truncation */
        assert_int_equal(tch_thrift_headers_decode(tch_slice_of(want, cut), &got, &n, &err), TCH_EPROTO);
    tch_buf_reset(&b);
    assert_int_equal(tch_thrift_headers_encode(NULL, 0, &b, &err), 0);
    assert_int_equal(b.len, 2);
    tch_buf_free(&b);
}

/* What the Node peer refuses is refused before sending, naming the key; an
 * empty value is fine. */
static void empty_and_repeated_keys_are_refused(void **state) {
    (void)state;
    tch_buf b = {0};
    tch_error err = {0};
    tch_kv empty[] = {{tch_slice_cstr("a"), tch_slice_cstr("")},
                                 {tch_slice_cstr(""), tch_slice_cstr("v")}};
    assert_int_equal(tch_thrift_headers_encode(empty, 2, &b, &err), TCH_EINVAL);
    assert_non_null(strstr(err.msg, "header 1 has an empty key"));
    tch_kv twice[] = {{tch_slice_cstr("b"), tch_slice_cstr("1")},
                                 {tch_slice_cstr("a"), tch_slice_cstr("2")},
                                 {tch_slice_cstr("b"), tch_slice_cstr("3")}};
    assert_int_equal(tch_thrift_headers_encode(twice, 3, &b, &err), TCH_EINVAL);
    assert_non_null(strstr(err.msg, "key \"b\" given twice"));
    assert_int_equal(b.len, 0); /* nothing written */
    assert_int_equal(tch_thrift_headers_encode(empty, 1, &b, &err), 0);
    tch_buf_free(&b);
}

static void empty_arg2_means_no_headers(void **state) {
    (void)state;
    tch_kv *got = (void *)1;
    size_t n = 9;
    assert_int_equal(tch_thrift_headers_decode(TCH_SLICE_NULL, &got, &n, NULL), 0);
    assert_null(got);
    assert_int_equal(n, 0);
    const uint8_t huge[] = {0xff, 0xff, 0, 0}; /* 65535 headers in 2 bytes: refused before allocating */
    assert_int_equal(tch_thrift_headers_decode(tch_slice_of(huge, 4), &got, &n, NULL), TCH_EPROTO);
}

static void result_classification(void **state) {
    (void)state;
    const char *idl_text = "exception NotFoundError { 1: string key }\n"
                           "service KeyValue {\n"
                           "  string getValue(1: string key) throws (1: NotFoundError notFound)\n"
                           "  void setValue(1: string key, 2: string value)\n"
                           "}\n";
    tch_thrift_idl *idl;
    assert_int_equal(tch_thrift_load_string("kv.thrift", tch_slice_cstr(idl_text), NULL, &idl, NULL), 0);
    const tch_thrift_service *kv = tch_thrift_idl_find_service(idl, "KeyValue");
    const tch_thrift_method *get = tch_thrift_service_find_method(kv, "getValue");
    const tch_thrift_method *set = tch_thrift_service_find_method(kv, "setValue");
    tch_thrift_outcome oc;
    tch_error err = {0};
    tch_thrift_value *r = tch_thrift_value_new_struct();
    assert_int_equal(tch_thrift_result_classify(get, r, &oc, &err), TCH_EPROTO);
    assert_non_null(strstr(err.msg, "KeyValue::getValue: result holds no value"));
    assert_int_equal(tch_thrift_result_classify(set, r, &oc, &err), 0);
    assert_int_equal(oc.kind, TCH_THRIFT_OUTCOME_SUCCESS);
    assert_null(oc.field);
    tch_thrift_value_struct_set_take(r, 1, tch_thrift_value_new_struct());
    assert_int_equal(tch_thrift_result_classify(get, r, &oc, &err), 0);
    assert_int_equal(oc.kind, TCH_THRIFT_OUTCOME_EXCEPTION);
    assert_string_equal(tch_thrift_field_name(oc.field), "notFound");
    tch_thrift_value_free(r);
    r = tch_thrift_value_new_struct();
    tch_thrift_value_struct_set_take(r, 0, tch_thrift_value_new_string(tch_slice_cstr("v")));
    assert_int_equal(tch_thrift_result_classify(get, r, &oc, &err), 0);
    assert_int_equal(oc.kind, TCH_THRIFT_OUTCOME_SUCCESS);
    assert_true(tch_slice_eq_cstr(tch_thrift_value_bytes(oc.value), "v"));
    tch_thrift_value_free(r);
    assert_int_equal(tch_thrift_method_check_supported(get, &err), 0);
    tch_thrift_idl_free(idl);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(arg1_split_and_join),
        cmocka_unit_test(headers_round_trip),
        cmocka_unit_test(empty_arg2_means_no_headers),
        cmocka_unit_test(empty_and_repeated_keys_are_refused),
        cmocka_unit_test(result_classification),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
