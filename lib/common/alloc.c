/* The allocator hook: one NULL check on the default path. */
#include "alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void *tch__malloc(const tch_allocator *a, size_t size) {
    if (size == 0)
        size = 1;
    return a ? a->malloc_cb(size, a->user_data) : malloc(size);
}

void *tch__calloc(const tch_allocator *a, size_t n, size_t size) {
    if (!a)
        return calloc(n ? n : 1, size ? size : 1);
    if (size && n > SIZE_MAX / size)
        return NULL;
    size_t bytes = n * size;
    void *p = tch__malloc(a, bytes);
    if (p && bytes != 0)
        memset(p, 0, bytes);
    return p;
}

void *tch__realloc(const tch_allocator *a, void *p, size_t size) {
    if (size == 0)
        size = 1;
    if (!a)
        return realloc(p, size);
    return p ? a->realloc_cb(p, size, a->user_data) : a->malloc_cb(size, a->user_data);
}

void tch__free(const tch_allocator *a, void *p) {
    if (!p)
        return;
    if (a)
        a->free_cb(p, a->user_data);
    else
        free(p);
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

const tch_allocator *tch__alloc_keep(tch_allocator *keep, const tch_allocator *a) {
    if (!a)
        return NULL;
    *keep = *a;
    return keep;
}

void tch__free_self(const tch_allocator *a, void *p) {
    if (!a) {
        free(p);
        return;
    }
    tch_allocator copy = *a; /* p holds *a: read it before p goes */
    tch__free(&copy, p);
}
