/* lib/common: byte views, growable buffers and the error helpers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <tchannel/common.h>

static void slices_compare_bytes(void **state) {
    (void)state;
    tch_slice a = tch_slice_cstr("abc"), b = tch_slice_of("abcd", 3);
    assert_int_equal(a.len, 3);
    assert_true(tch_slice_eq(a, b));
    assert_false(tch_slice_eq(a, tch_slice_of("abd", 3)));
    assert_false(tch_slice_eq(a, tch_slice_of("ab", 2)));
    assert_true(tch_slice_eq_cstr(a, "abc"));
    assert_false(tch_slice_eq_cstr(a, "abcd"));
    assert_true(tch_slice_eq(TCH_SLICE_NULL, tch_slice_of("", 0)));
    assert_int_equal(tch_slice_cstr(NULL).len, 0);
    char *s = tch_slice_strdup(tch_slice_of("hello world", 5));
    assert_non_null(s);
    assert_string_equal(s, "hello");
    free(s);
}

static void buffers_grow_reset_and_hand_over(void **state) {
    (void)state;
    tch_buf b = {0};
    assert_int_equal(tch_buf_slice(&b).len, 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(tch_buf_append(&b, "0123456789", 10), 0);
    assert_int_equal(b.len, 10000);
    assert_true(b.cap >= b.len);
    assert_memory_equal(b.ptr + 9990, "0123456789", 10);
    assert_int_equal(tch_buf_append_slice(&b, tch_slice_cstr("!")), 0);
    assert_int_equal(b.ptr[10000], '!');
    size_t cap = b.cap;
    tch_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, cap); /* storage kept */
    assert_int_equal(tch_buf_reserve(&b, cap + 1), 0);
    assert_true(b.cap >= cap + 1);
    tch_buf_append(&b, "xy", 2);
    size_t len = 0;
    uint8_t *p = tch_buf_take(&b, &len);
    assert_int_equal(len, 2);
    assert_memory_equal(p, "xy", 2);
    assert_null(b.ptr);
    assert_int_equal(b.len, 0);
    free(p);
    tch_buf_free(&b); /* empty: a no-op */
    /* a size that overflows is refused before any allocation, b unchanged */
    assert_int_equal(tch_buf_append(&b, "z", 1), 0);
    assert_int_equal(tch_buf_reserve(&b, SIZE_MAX), TCH_ENOMEM);
    assert_int_equal(b.len, 1);
    assert_int_equal(b.ptr[0], 'z');
    tch_buf_free(&b);
}

static void errors_set_wrap_and_name(void **state) {
    (void)state;
    tch_error err = {0};
    assert_int_equal(tch_error_set(&err, TCH_EPARSE, "line %d", 7), TCH_EPARSE);
    assert_int_equal(err.code, TCH_EPARSE);
    assert_string_equal(err.msg, "line 7");
    assert_int_equal(tch_error_wrap(&err, "file %s", "a.yaml"), TCH_EPARSE);
    assert_string_equal(err.msg, "file a.yaml: line 7");
    assert_int_equal(tch_error_set(NULL, TCH_EIO, "nobody hears this"), TCH_EIO);
    /* a message too long is cut, still NUL-terminated */
    char longer[2 * TCH_ERROR_MSG_MAX];
    memset(longer, 'x', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    tch_error_set(&err, TCH_EINVAL, "%s", longer);
    assert_int_equal(strlen(err.msg), TCH_ERROR_MSG_MAX - 1);
    tch_error_wrap(&err, "ctx");
    assert_int_equal(strlen(err.msg), TCH_ERROR_MSG_MAX - 1);
    assert_memory_equal(err.msg, "ctx: xxx", 8);
    assert_non_null(tch_strerror(TCH_ETIMEOUT));
    assert_string_not_equal(tch_strerror(TCH_ETIMEOUT), tch_strerror(TCH_EIO));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(slices_compare_bytes),
        cmocka_unit_test(buffers_grow_reset_and_hand_over),
        cmocka_unit_test(errors_set_wrap_and_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
