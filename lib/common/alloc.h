/* Allocation through a tch_allocator (tchannel/common.h), NULL meaning the
 * C library. Internal to the project; not installed. Every block the
 * library keeps comes from these with the allocator of the object that
 * owns it, and goes back with tch__free and the same allocator. */
#ifndef TCH_ALLOC_H
#define TCH_ALLOC_H

#include <tchannel/common.h>

#include <stddef.h>
#include <stdlib.h>

/* Inline: the default path (a NULL allocator) costs one test over calling
 * the C library itself. */

/* NULL when out of memory. A size of 0 asks for 1 byte, so that NULL
 * always means failure and the hook is never asked for 0. */
static inline void *tch__malloc(const tch_allocator *a, size_t size) {
    if (size == 0)
        size = 1;
    return a ? a->malloc_cb(size, a->user_data) : malloc(size);
}

/* As realloc: a NULL p allocates; NULL on failure leaves p as it was. */
static inline void *tch__realloc(const tch_allocator *a, void *p, size_t size) {
    if (size == 0)
        size = 1;
    if (!a)
        return realloc(p, size);
    return p ? a->realloc_cb(p, size, a->user_data) : a->malloc_cb(size, a->user_data);
}

/* p may be NULL. */
static inline void tch__free(const tch_allocator *a, void *p) {
    if (!a)
        free(p);
    else if (p)
        a->free_cb(p, a->user_data);
}

/* n * size zeroed bytes; NULL on overflow too. */
void *tch__calloc_with(const tch_allocator *a, size_t n, size_t size);
static inline void *tch__calloc(const tch_allocator *a, size_t n, size_t size) {
    return a ? tch__calloc_with(a, n, size) : calloc(n ? n : 1, size ? size : 1);
}
char *tch__strdup(const tch_allocator *a, const char *s);
/* At most n bytes of s, NUL-terminated. */
char *tch__strndup(const tch_allocator *a, const char *s, size_t n);

/* For an object that may outlive whoever lent it the allocator (an
 * inbound call answered after its channel is freed): copies *a into *keep
 * and returns keep, or NULL for NULL. */
static inline const tch_allocator *tch__alloc_keep(tch_allocator *keep, const tch_allocator *a) {
    if (!a)
        return NULL;
    *keep = *a;
    return keep;
}

/* Frees p with a when *a lies inside p itself (a tch__alloc_keep copy). */
static inline void tch__free_self(const tch_allocator *a, void *p) {
    if (!a) {
        free(p);
        return;
    }
    tch_allocator copy = *a; /* p holds *a: read it before p goes */
    tch__free(&copy, p);
}

#endif
