/* The allocator hook's helpers that are not inline (alloc.h). */
#include "alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void *tch__calloc_with(const tch_allocator *a, size_t n, size_t size) {
    if (size && n > SIZE_MAX / size)
        return NULL;
    size_t bytes = n * size;
    void *p = tch__malloc(a, bytes);
    if (p && bytes != 0)
        memset(p, 0, bytes);
    return p;
}

char *tch__strndup(const tch_allocator *a, const char *s, size_t n) {
    size_t len = strnlen(s, n);
    char *d = tch__malloc(a, len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

char *tch__strdup(const tch_allocator *a, const char *s) {
    return tch__strndup(a, s, SIZE_MAX);
}

