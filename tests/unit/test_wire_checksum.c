/* Checksums: reference values, chaining, and agreement with the Node peer's
 * own modules (crc, sse4_crc32, farmhash) over many lengths. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "wire.h"
#include "wire_vectors_node.h"

static const uint8_t *str(const char *s) { return (const uint8_t *)s; }

static void reference_values(void **state) {
    (void)state;
    assert_int_equal(tch_crc32c(0, str("hello"), 5), 2591144780u);
    assert_int_equal(tch_farmhash32(str("hello"), 5), 2039911270u);
    /* Standard check values ("123456789"). */
    assert_int_equal(tch_crc32c(0, str("123456789"), 9), 0xE3069283u);
    assert_int_equal(tch_crc32(0, str("123456789"), 9), 0xCBF43926u);
    /* fingerprint32("") is what Node puts in a frame whose last chunk is
     * empty. */
    assert_int_equal(tch_farmhash32(NULL, 0), 3696677242u);
    assert_int_equal(tch_crc32(0, NULL, 0), 0);
    assert_int_equal(tch_crc32c(0, NULL, 0), 0);
}

static void crc_chaining_equals_one_pass(void **state) {
    (void)state;
    uint8_t buf[1000];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 7 + 3);
    for (size_t cut = 0; cut <= sizeof buf; cut += 37) {
        uint32_t a = tch_crc32c(tch_crc32c(0, buf, cut), buf + cut,
                                sizeof buf - cut);
        assert_int_equal(a, tch_crc32c(0, buf, sizeof buf));
        uint32_t b = tch_crc32(tch_crc32(0, buf, cut), buf + cut,
                               sizeof buf - cut);
        assert_int_equal(b, tch_crc32(0, buf, sizeof buf));
    }
}

/* wv_sums holds Node's values for pat(len, 0) at many lengths. */
static void matches_node_modules(void **state) {
    (void)state;
    size_t max = 0;
    for (size_t i = 0; i < WV_NSUMS; i++)
        if (wv_sums[i].len > max)
            max = wv_sums[i].len;
    uint8_t *buf = malloc(max + 1);
    assert_non_null(buf);
    for (size_t i = 0; i < max; i++)
        buf[i] = (uint8_t)(i * 31 + 1);
    for (size_t i = 0; i < WV_NSUMS; i++) {
        const wv_sum *s = &wv_sums[i];
        if (tch_crc32(0, buf, s->len) != s->crc32 ||
            tch_crc32c(0, buf, s->len) != s->crc32c ||
            tch_farmhash32(buf, s->len) != s->farm32)
            fail_msg("checksum of %zu bytes differs from Node", s->len);
    }
    /* Unaligned start must not change the crc32c slicing result. */
    memmove(buf + 1, buf, 4096);
    assert_int_equal(tch_crc32c(0, buf + 1, 4096), wv_sums[WV_NSUMS - 5].crc32c);
    free(buf);
}

/* Bit-at-a-time Castagnoli: slow, obviously right. */
static uint32_t crc32c_bitwise(uint32_t prev, const uint8_t *p, size_t len) {
    uint32_t crc = ~prev;
    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return ~crc;
}

/* Whichever path tch_crc32c takes on this CPU (SSE4.2 or tables), every
 * length, alignment and prior value agrees with the definition. */
static void crc32c_matches_the_definition(void **state) {
    (void)state;
    uint8_t buf[600];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof buf; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16);
    }
    for (size_t off = 0; off < 8; off++)
        for (size_t len = 0; len + off <= sizeof buf; len += 7)
            assert_int_equal(tch_crc32c(len * 31u, buf + off, len),
                             crc32c_bitwise(len * 31u, buf + off, len));
}

/* Lengths past the 3-stream blocks (3 KiB at a time) and their joins. */
static void crc32c_long_inputs_match_the_definition(void **state) {
    (void)state;
    static uint8_t buf[20000];
    uint32_t x = 777;
    for (size_t i = 0; i < sizeof buf; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16);
    }
    static const size_t lens[] = {3071, 3072, 3073, 4096, 6143, 6144, 6151, 9216, 12289, 19990};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
        for (size_t off = 0; off < 3; off++)
            assert_int_equal(tch_crc32c(0xdeadbeefu + (uint32_t)i, buf + off, lens[i]),
                             crc32c_bitwise(0xdeadbeefu + (uint32_t)i, buf + off, lens[i]));
    /* chaining across calls still equals one pass */
    uint32_t a = tch_crc32c(0, buf, 5000);
    assert_int_equal(tch_crc32c(a, buf + 5000, 9000), tch_crc32c(0, buf, 14000));
}

/* The copying variant: the same checksum as one pass over src, an exact
 * copy at dst (odd offsets, 3-stream lengths and their joins), and for the
 * other types a plain copy that leaves the running value alone. */
static void checksum_copy_equals_copy_then_checksum(void **state) {
    (void)state;
    static uint8_t src[20000], dst[20010];
    uint32_t x = 4242;
    for (size_t i = 0; i < sizeof src; i++) {
        x = x * 1103515245u + 12345u;
        src[i] = (uint8_t)(x >> 16);
    }
    static const size_t lens[] = {0, 1, 7, 8, 9, 3071, 3072, 3073, 9217, 19990};
    static const uint8_t types[] = {TCH_CSUM_NONE, TCH_CSUM_CRC32, TCH_CSUM_FARMHASH,
                                    TCH_CSUM_CRC32C};
    for (size_t t = 0; t < sizeof types; t++)
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
            for (size_t off = 0; off < 3; off++) {
                uint32_t prev = 0x1234567u * (uint32_t)(i + 1);
                uint32_t want = prev;
                if (types[t] == TCH_CSUM_CRC32)
                    want = tch_crc32(prev, src + off, lens[i]);
                else if (types[t] == TCH_CSUM_CRC32C)
                    want = tch_crc32c(prev, src + off, lens[i]);
                memset(dst, 0xA5, sizeof dst);
                assert_int_equal(tch_checksum_copy(types[t], prev, dst + 2 * off + 1,
                                                   src + off, lens[i]),
                                 want);
                assert_memory_equal(dst + 2 * off + 1, src + off, lens[i]);
                assert_int_equal(dst[2 * off], 0xA5); /* nothing outside */
                assert_int_equal(dst[2 * off + 1 + lens[i]], 0xA5);
            }
}

/* Every implementation this CPU has (tables, SSE4.2, AVX-512 folding), with
 * and without the copy, agrees with the definition: lengths around the
 * folding steps (256-byte rounds, 64-byte blocks, the SSE4.2 tail), odd
 * offsets on both sides, and prior values. */
static void crc32c_every_impl_matches_the_definition(void **state) {
    (void)state;
    enum { N = 70000 };
    uint8_t *src = malloc(N), *dst = malloc(N + 16);
    assert_non_null(src);
    assert_non_null(dst);
    uint32_t x = 99;
    for (size_t i = 0; i < N; i++) {
        x = x * 1103515245u + 12345u;
        src[i] = (uint8_t)(x >> 16);
    }
    static const size_t lens[] = {0,   1,   63,  64,   255,  256,   257,   319,   320,
                                  383, 511, 512, 575,  767,  1023,  3073,  4159,  65535,
                                  65536, 65536 + 63, 69000};
    static const tch_crc32c_impl impls[] = {TCH_CRC32C_TABLE, TCH_CRC32C_SSE42,
                                            TCH_CRC32C_AVX512};
    int ran = 0;
    for (size_t m = 0; m < sizeof impls / sizeof impls[0]; m++) {
        if (!tch_crc32c_impl_usable(impls[m]))
            continue;
        ran++;
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
            for (size_t off = 0; off < 3; off++) {
                uint32_t prev = 0x9e3779b9u * (uint32_t)(i + off + 1);
                uint32_t want = crc32c_bitwise(prev, src + off, lens[i]);
                assert_int_equal(tch_crc32c_with(impls[m], prev, NULL, src + off, lens[i]),
                                 want);
                memset(dst, 0x5A, N + 16);
                assert_int_equal(
                    tch_crc32c_with(impls[m], prev, dst + 2 * off + 1, src + off, lens[i]),
                    want);
                assert_memory_equal(dst + 2 * off + 1, src + off, lens[i]);
                assert_int_equal(dst[2 * off], 0x5A);
                assert_int_equal(dst[2 * off + 1 + lens[i]], 0x5A);
            }
    }
    assert_true(ran >= 1); /* the tables always run */
    free(src);
    free(dst);
}

static void checksum_sizes(void **state) {
    (void)state;
    assert_int_equal(tch_checksum_size(TCH_CSUM_NONE), 0);
    assert_int_equal(tch_checksum_size(TCH_CSUM_CRC32), 4);
    assert_int_equal(tch_checksum_size(TCH_CSUM_FARMHASH), 4);
    assert_int_equal(tch_checksum_size(TCH_CSUM_CRC32C), 4);
    assert_int_equal(tch_checksum_size(4), -1);
    assert_int_equal(tch_checksum_size(0xff), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reference_values),
        cmocka_unit_test(crc_chaining_equals_one_pass),
        cmocka_unit_test(matches_node_modules),
        cmocka_unit_test(checksum_sizes),
        cmocka_unit_test(checksum_copy_equals_copy_then_checksum),
        cmocka_unit_test(crc32c_matches_the_definition),
        cmocka_unit_test(crc32c_long_inputs_match_the_definition),
        cmocka_unit_test(crc32c_every_impl_matches_the_definition),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
