/* Growing a plain array (items + count + capacity) by doubling. Internal to
 * the project; not installed. */
#ifndef TCH_ARRAY_H
#define TCH_ARRAY_H

#include <tchannel/common.h>

#include <stddef.h>

/* Reallocates items to twice *cap elements of elem_size bytes (first when
 * *cap is 0) and updates *cap. Returns the new array, or NULL when out of
 * memory or the size would overflow; then items and *cap are unchanged. */
void *tch_array_grow(void *items, size_t *cap, size_t elem_size, size_t first);
/* The same with the array's allocator (NULL: the C library). */
void *tch__array_grow_with(const tch_allocator *a, void *items, size_t *cap,
                           size_t elem_size, size_t first);

#endif
