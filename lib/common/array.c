#include "array.h"

#include <stdint.h>
#include <stdlib.h>

void *tch_array_grow(void *items, size_t *cap, size_t elem_size, size_t first) {
    if (*cap > SIZE_MAX / 2 / elem_size || first > SIZE_MAX / elem_size)
        return NULL;
    size_t n = *cap ? *cap * 2 : first;
    void *p = realloc(items, n * elem_size);
    if (p)
        *cap = n;
    return p;
}
