/* lib/common: the id -> pointer map under churn, and array growth. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <tchannel/common.h>

#include "array.h"
#include "intmap.h"

static int values[4096];

static void intmap_put_get_remove(void **state) {
    (void)state;
    tch_intmap m = {0};
    assert_null(tch_intmap_get(&m, 1));
    assert_null(tch_intmap_remove(&m, 1));
    for (uint32_t k = 0; k < 4096; k++)
        assert_int_equal(tch_intmap_put(&m, k * 7919u, &values[k]), 0);
    assert_int_equal(m.len, 4096);
    for (uint32_t k = 0; k < 4096; k++)
        assert_ptr_equal(tch_intmap_get(&m, k * 7919u), &values[k]);
    assert_int_equal(tch_intmap_put(&m, 0, &values[1]), 0); /* replaces */
    assert_int_equal(m.len, 4096);
    assert_ptr_equal(tch_intmap_get(&m, 0), &values[1]);
    for (uint32_t k = 0; k < 4096; k += 2) /* backward shift keeps the rest reachable */
        assert_ptr_equal(tch_intmap_remove(&m, k * 7919u), k ? &values[k] : &values[1]);
    assert_int_equal(m.len, 2048);
    for (uint32_t k = 0; k < 4096; k++)
        assert_ptr_equal(tch_intmap_get(&m, k * 7919u), k % 2 ? &values[k] : NULL);
    size_t drained = 0;
    uint32_t key;
    void *v;
    while ((v = tch_intmap_pop_any(&m, &key)) != NULL) {
        assert_int_equal(key % 7919u, 0);
        assert_int_equal((key / 7919u) % 2, 1);
        assert_ptr_equal(v, &values[key / 7919u]);
        drained++;
    }
    assert_int_equal(drained, 2048);
    assert_int_equal(m.len, 0);
    tch_intmap_free(&m);
}

static void intmap_churn_keeps_every_live_key(void **state) {
    (void)state;
    tch_intmap m = {0};
    for (uint32_t round = 0; round < 20000; round++) { /* ids advance, 64 live */
        assert_int_equal(tch_intmap_put(&m, round, &values[round % 4096]), 0);
        if (round >= 64)
            assert_ptr_equal(tch_intmap_remove(&m, round - 64), &values[(round - 64) % 4096]);
    }
    assert_int_equal(m.len, 64);
    for (uint32_t k = 20000 - 64; k < 20000; k++)
        assert_ptr_equal(tch_intmap_get(&m, k), &values[k % 4096]);
    assert_true(m.cap <= 1024); /* no tombstones piling up */
    tch_intmap_free(&m);
}

static void array_grows_by_doubling(void **state) {
    (void)state;
    size_t cap = 0;
    int *a = tch_array_grow(NULL, &cap, sizeof *a, 4);
    assert_non_null(a);
    assert_int_equal(cap, 4);
    for (int i = 0; i < 4; i++)
        a[i] = i;
    a = tch_array_grow(a, &cap, sizeof *a, 4);
    assert_non_null(a);
    assert_int_equal(cap, 8);
    for (int i = 0; i < 4; i++)
        assert_int_equal(a[i], i); /* kept */
    size_t huge = SIZE_MAX / 2;
    assert_null(tch_array_grow(a, &huge, sizeof *a, 4)); /* overflow: unchanged */
    assert_int_equal(huge, SIZE_MAX / 2);
    free(a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(intmap_put_get_remove),
        cmocka_unit_test(intmap_churn_keeps_every_live_key),
        cmocka_unit_test(array_grows_by_doubling),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
