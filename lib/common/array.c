#include "array.h"

#include "alloc.h"

#include <stdint.h>

void *tch_array_grow(void *items, size_t *cap, size_t elem_size, size_t first) {
    return tch__array_grow_with(NULL, items, cap, elem_size, first);
}

void *tch__array_grow_with(const tch_allocator *a, void *items, size_t *cap,
                           size_t elem_size, size_t first) {
    if (*cap > SIZE_MAX / 2 / elem_size || first > SIZE_MAX / elem_size)
        return NULL;
    size_t n = *cap ? *cap * 2 : first;
    void *p = tch__realloc(a, items, n * elem_size);
    if (p)
        *cap = n;
    return p;
}
