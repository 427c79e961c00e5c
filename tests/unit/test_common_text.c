/* lib/common: base64 (RFC 4648 vectors) and UTF-8 one code point at a time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <tchannel/common.h>

#include "utf8.h"

static void base64_rfc4648_vectors(void **state) {
    (void)state;
    const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        tch_buf e = {0}, d = {0};
        assert_int_equal(tch_base64_encode(tch_slice_cstr(plain[i]), 0, &e), 0);
        assert_int_equal(e.len, strlen(coded[i]));
        assert_memory_equal(e.ptr ? (const char *)e.ptr : "", coded[i], e.len);
        assert_int_equal(tch_base64_decode(coded[i], strlen(coded[i]), &d), 0);
        assert_int_equal(d.len, strlen(plain[i]));
        assert_memory_equal(d.ptr ? (const char *)d.ptr : "", plain[i], d.len);
        tch_buf_free(&e);
        tch_buf_free(&d);
    }
}

static void base64_lines_spaces_padding_and_garbage(void **state) {
    (void)state;
    tch_buf e = {0}, d = {0};
    assert_int_equal(tch_base64_encode(tch_slice_cstr("foobarfoobar"), 8, &e), 0);
    assert_int_equal(e.len, 17);
    assert_memory_equal(e.ptr, "Zm9vYmFy\nZm9vYmFy", 17);
    assert_int_equal(tch_base64_decode((const char *)e.ptr, e.len, &d), 0);
    assert_int_equal(d.len, 12);
    assert_memory_equal(d.ptr, "foobarfoobar", 12);
    tch_buf_reset(&d);
    assert_int_equal(tch_base64_decode(" Zm9v\tYg ", 9, &d), 0); /* no padding */
    assert_int_equal(d.len, 4);
    assert_memory_equal(d.ptr, "foob", 4);
    tch_buf_reset(&d);
    assert_int_equal(tch_base64_decode("Zm9*", 4, &d), TCH_EPARSE);
    tch_buf_free(&e);
    tch_buf_free(&d);
}

static void utf8_round_trips_and_rejects(void **state) {
    (void)state;
    const uint32_t cps[] = {0x24, 0xA2, 0x20AC, 0x10348, 0x10FFFF};
    const size_t lens[] = {1, 2, 3, 4, 4};
    for (size_t i = 0; i < 5; i++) {
        char out[4];
        uint32_t cp = 0;
        assert_int_equal(tch_utf8_encode(cps[i], out), lens[i]);
        assert_int_equal(tch_utf8_decode((const uint8_t *)out, lens[i], &cp), lens[i]);
        assert_int_equal(cp, cps[i]);
        if (lens[i] > 1) /* cut short */
            assert_int_equal(tch_utf8_decode((const uint8_t *)out, lens[i] - 1, &cp), 0);
    }
    uint32_t cp;
    assert_int_equal(tch_utf8_decode((const uint8_t *)"\xC0\xAF", 2, &cp), 0);         /* overlong */
    assert_int_equal(tch_utf8_decode((const uint8_t *)"\xED\xA0\x80", 3, &cp), 0);     /* surrogate */
    assert_int_equal(tch_utf8_decode((const uint8_t *)"\xF4\x90\x80\x80", 4, &cp), 0); /* > 10FFFF */
    assert_int_equal(tch_utf8_decode((const uint8_t *)"\x80", 1, &cp), 0);             /* lone tail */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(base64_rfc4648_vectors),
        cmocka_unit_test(base64_lines_spaces_padding_and_garbage),
        cmocka_unit_test(utf8_round_trips_and_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
