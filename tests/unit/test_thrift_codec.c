/* Binary codec: exact bytes, skipping unknown and mistyped fields, required
 * fields, and hostile input (huge lengths, deep nesting, truncation). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <tchannel/thrift.h>

static const char *IDL = "enum E { A = 1, B = 2 }\n"
                         "struct Inner { 1: required i32 n }\n"
                         "struct S {\n"
                         "  1: i32 a\n"
                         "  2: string s\n"
                         "  3: optional list<Inner> l\n"
                         "  4: map<i16, set<E>> m\n"
                         "  5: bool t\n"
                         "  6: double d\n"
                         "}\n"
                         "struct Deep { 1: Deep next }\n"
                         "union U { 1: i32 a, 2: string b }\n";

static int setup(void **state) {
    tch_thrift_idl *idl;
    tch_error err = {0};
    if (tch_thrift_load_string("codec.thrift", tch_slice_cstr(IDL), NULL, &idl, &err))
        return -1;
    *state = idl;
    return 0;
}

static int teardown(void **state) {
    tch_thrift_idl_free(*state);
    return 0;
}

static const tch_thrift_struct *S(void **state, const char *name) {
    return tch_thrift_idl_find_struct(*state, name);
}

static tch_thrift_value *inner(int32_t n) {
    tch_thrift_value *v = tch_thrift_value_new_struct();
    assert_int_equal(tch_thrift_value_struct_set_take(v, 1, tch_thrift_value_new_i32(n)), 0);
    return v;
}

static void encodes_exact_bytes_and_decodes_back(void **state) {
    tch_thrift_value *v = tch_thrift_value_new_struct();
    /* set out of id order: the encoder writes fields by id */
    tch_thrift_value *l = tch_thrift_value_new_list();
    tch_thrift_value_append_take(l, inner(7));
    tch_thrift_value_struct_set_take(v, 3, l);
    tch_thrift_value_struct_set_take(v, 1, tch_thrift_value_new_i32(-2));
    tch_thrift_value_struct_set_take(v, 2, tch_thrift_value_new_string(tch_slice_cstr("hi")));
    tch_thrift_value *m = tch_thrift_value_new_map(), *set = tch_thrift_value_new_set();
    tch_thrift_value_append_take(set, tch_thrift_value_new_i32(2));
    tch_thrift_value_map_put_take(m, tch_thrift_value_new_i16(9), set);
    tch_thrift_value_struct_set_take(v, 4, m);
    tch_thrift_value_struct_set_take(v, 5, tch_thrift_value_new_bool(1));
    tch_thrift_value_struct_set_take(v, 6, tch_thrift_value_new_double(1.0));
    const uint8_t want[] = {
        0x08, 0, 1, 0xff, 0xff, 0xff, 0xfe,                /* 1: i32 -2 */
        0x0b, 0, 2, 0, 0, 0, 2, 'h', 'i',                  /* 2: "hi" */
        0x0f, 0, 3, 0x0c, 0, 0, 0, 1, 0x08, 0, 1, 0, 0, 0, 7, 0x00, /* 3: [Inner{7}] */
        0x0d, 0, 4, 0x06, 0x0e, 0, 0, 0, 1, 0, 9, 0x08, 0, 0, 0, 1, 0, 0, 0, 2, /* 4: {9: {2}} */
        0x02, 0, 5, 1,                                      /* 5: true */
        0x04, 0, 6, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0,           /* 6: 1.0 */
        0x00};
    tch_buf out = {0};
    tch_error err = {0};
    assert_int_equal(tch_thrift_encode(S(state, "S"), v, &out, &err), 0);
    assert_int_equal(out.len, sizeof want);
    assert_memory_equal(out.ptr, want, sizeof want);
    tch_thrift_value *d;
    assert_int_equal(tch_thrift_decode(S(state, "S"), tch_slice_of(want, sizeof want), &d, &err), 0);
    assert_true(tch_thrift_value_equal(v, d));
    tch_thrift_value *copy = tch_thrift_value_copy(d);
    assert_true(tch_thrift_value_equal(copy, v));
    tch_thrift_value_free(copy);
    tch_thrift_value_free(d);
    tch_thrift_value_free(v);
    tch_buf_free(&out);
}

static void skips_unknown_fields_of_every_wire_type(void **state) {
    const uint8_t in[] = {
        0x02, 0, 50, 1,                                 /* bool */
        0x03, 0, 51, 9,                                 /* byte */
        0x04, 0, 52, 0, 0, 0, 0, 0, 0, 0, 0,            /* double */
        0x06, 0, 53, 0, 1,                              /* i16 */
        0x0a, 0, 54, 0, 0, 0, 0, 0, 0, 0, 1,            /* i64 */
        0x0b, 0, 55, 0, 0, 0, 1, 'x',                   /* string */
        0x0c, 0, 56, 0x0f, 0, 1, 0x0b, 0, 0, 0, 1, 0, 0, 0, 0, 0x00, /* struct{list<string>} */
        0x0d, 0, 57, 0x08, 0x0d, 0, 0, 0, 1, 0, 0, 0, 1, 0x0b, 0x0b, 0, 0, 0, 0, /* map<i32,map> */
        0x0e, 0, 58, 0x0f, 0, 0, 0, 1, 0x03, 0, 0, 0, 2, 1, 2, /* set<list<byte>> */
        0x08, 0, 1, 0, 0, 0, 5,                         /* known: 1: i32 5 */
        0x0b, 0, 1, 0, 0, 0, 0,                         /* known id, wrong type: skipped */
        0x00};
    tch_thrift_value *d;
    tch_error err = {0};
    int rc = tch_thrift_decode(S(state, "S"), tch_slice_of(in, sizeof in), &d, &err);
    if (rc)
        print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(tch_thrift_value_struct_count(d), 1);
    assert_int_equal(tch_thrift_value_int(tch_thrift_value_struct_get(d, 1)), 5);
    tch_thrift_value_free(d);
}

static void missing_required_field_is_named(void **state) {
    const uint8_t in[] = {0x0f, 0, 3, 0x0c, 0, 0, 0, 1, 0x00, 0x00};
    tch_thrift_value *d;
    tch_error err = {0};
    assert_int_equal(tch_thrift_decode(S(state, "S"), tch_slice_of(in, sizeof in), &d, &err), TCH_EPROTO);
    assert_non_null(strstr(err.msg, "Inner: required field 'n' (1) missing"));
    tch_thrift_value *v = tch_thrift_value_new_struct();
    tch_buf out = {0};
    assert_int_equal(tch_thrift_encode(S(state, "Inner"), v, &out, &err), TCH_EINVAL);
    assert_non_null(strstr(err.msg, "Inner: required field 'n' (1) missing"));
    assert_int_equal(out.len, 0);
    tch_thrift_value_free(v);
}

static void huge_lengths_fail_fast(void **state) {
    tch_thrift_value *d;
    tch_error err = {0};
    const uint8_t list[] = {0x0f, 0, 3, 0x0c, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(tch_thrift_decode(S(state, "S"), tch_slice_of(list, sizeof list), &d, &err), TCH_EPROTO);
    assert_non_null(strstr(err.msg, "exceeds"));
    const uint8_t str[] = {0x0b, 0, 2, 0x80, 0, 0, 0, 'x', 0};
    assert_int_equal(tch_thrift_decode(S(state, "S"), tch_slice_of(str, sizeof str), &d, &err), TCH_EPROTO);
    const uint8_t skipped_map[] = {0x0d, 0, 99, 0x0b, 0x0b, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(tch_thrift_decode(S(state, "S"), tch_slice_of(skipped_map, sizeof skipped_map), &d, &err),
                     TCH_EPROTO);
    const uint8_t bad_type[] = {0x0f, 0, 99, 0x01, 0, 0, 0, 1, 0};
    assert_int_equal(tch_thrift_decode(S(state, "S"), tch_slice_of(bad_type, sizeof bad_type), &d, &err), TCH_EPROTO);
}

static void nesting_is_bounded(void **state) {
    uint8_t in[3 * 200 + 200];
    size_t n = 0;
    for (int i = 0; i < 200; i++) { /* 1: Deep, 200 levels */
        in[n++] = 0x0c;
        in[n++] = 0;
        in[n++] = 1;
    }
    for (int i = 0; i < 200; i++)
        in[n++] = 0;
    tch_thrift_value *d;
    tch_error err = {0};
    assert_int_equal(tch_thrift_decode(S(state, "Deep"), tch_slice_of(in, n), &d, &err), TCH_EPROTO);
    assert_non_null(strstr(err.msg, "nested more than"));
    in[2] = 2; /* the same nesting under an unknown id goes through skip() */
    assert_int_equal(tch_thrift_decode(S(state, "Deep"), tch_slice_of(in, n), &d, &err), TCH_EPROTO);
    assert_non_null(strstr(err.msg, "nested more than"));
}

static void every_truncation_fails_cleanly(void **state) {
    const uint8_t in[] = {0x08, 0, 1, 0, 0, 0, 5, 0x0b, 0, 2, 0, 0, 0, 1, 'x',
                          0x0d, 0, 4, 0x06, 0x0e, 0, 0, 0, 1, 0, 9, 0x08, 0, 0, 0, 1, 0, 0, 0, 2, 0x00};
    tch_error err = {0};
    tch_thrift_value *d;
    for (size_t n = 0; n < sizeof in; n++)
        assert_int_equal(tch_thrift_decode(S(state, "S"), tch_slice_of(in, n), &d, &err), TCH_EPROTO);
    assert_int_equal(tch_thrift_decode(S(state, "S"), tch_slice_of(in, sizeof in), &d, &err), 0);
    tch_thrift_value_free(d);
    const uint8_t trailing[] = {0x00, 0x00};
    assert_int_equal(tch_thrift_decode(S(state, "S"), tch_slice_of(trailing, 2), &d, &err), TCH_EPROTO);
    assert_non_null(strstr(err.msg, "trailing"));
}

static void encode_rejects_wrong_values(void **state) {
    tch_error err = {0};
    tch_buf out = {0};
    tch_thrift_value *v = tch_thrift_value_new_struct();
    tch_thrift_value_struct_set_take(v, 1, tch_thrift_value_new_string(tch_slice_cstr("x")));
    assert_int_equal(tch_thrift_encode(S(state, "S"), v, &out, &err), TCH_EINVAL);
    assert_non_null(strstr(err.msg, "S.a"));
    tch_thrift_value_struct_set_take(v, 1, tch_thrift_value_new_i32(1));
    tch_thrift_value_struct_set_take(v, 77, tch_thrift_value_new_i32(1));
    assert_int_equal(tch_thrift_encode(S(state, "S"), v, &out, &err), TCH_EINVAL);
    assert_non_null(strstr(err.msg, "no field with id 77"));
    tch_thrift_value_free(v);
    tch_thrift_value *u = tch_thrift_value_new_struct();
    tch_thrift_value_struct_set_take(u, 1, tch_thrift_value_new_i32(1));
    tch_thrift_value_struct_set_take(u, 2, tch_thrift_value_new_string(tch_slice_cstr("b")));
    assert_int_equal(tch_thrift_encode(S(state, "U"), u, &out, &err), TCH_EINVAL);
    assert_int_equal(out.len, 0);
    tch_thrift_value_free(u);
    assert_int_equal(tch_thrift_value_append_take(NULL, tch_thrift_value_new_i32(1)), TCH_EINVAL);
    tch_buf_free(&out);
}

/* Pinned against the Node peer: thriftrw 3.12 writes an empty union as a
 * lone STOP and reads one back. */
static void empty_union_is_a_lone_stop(void **state) {
    tch_error err = {0};
    tch_buf out = {0};
    tch_thrift_value *u = tch_thrift_value_new_struct();
    assert_int_equal(tch_thrift_encode(S(state, "U"), u, &out, &err), 0);
    assert_int_equal(out.len, 1);
    assert_int_equal(out.ptr[0], 0);
    tch_thrift_value_free(u);
    tch_thrift_value *d = NULL;
    assert_int_equal(tch_thrift_decode(S(state, "U"), tch_buf_slice(&out), &d, &err), 0);
    assert_int_equal(tch_thrift_value_struct_count(d), 0);
    tch_thrift_value_free(d);
    tch_buf_free(&out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encodes_exact_bytes_and_decodes_back),
        cmocka_unit_test(skips_unknown_fields_of_every_wire_type),
        cmocka_unit_test(missing_required_field_is_named),
        cmocka_unit_test(huge_lengths_fail_fast),
        cmocka_unit_test(nesting_is_bounded),
        cmocka_unit_test(every_truncation_fails_cleanly),
        cmocka_unit_test(encode_rejects_wrong_values),
        cmocka_unit_test(empty_union_is_a_lone_stop),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
