/* A hash map from uint32_t ids to pointers (message ids -> calls).
 * Open addressing with linear probing and backward-shift deletion, so no
 * tombstones build up under constant insert/remove churn. The map does not
 * own the values. */
#ifndef TCH_INTMAP_H
#define TCH_INTMAP_H

#include <stddef.h>
#include <stdint.h>

#include <tchannel/common.h>

typedef struct tch_intmap_slot {
    uint32_t key;
    void *value; /* NULL marks an empty slot; values must be non-NULL */
} tch_intmap_slot;

typedef struct tch_intmap {
    tch_intmap_slot *slots;
    size_t cap; /* power of two, or 0 */
    size_t len;
    const tch_allocator *alloc; /* the slots' (NULL: the C library); set
                                   while empty, must outlive the slots */
} tch_intmap;

/* Zero-initialised is an empty, valid map (on the C library). */
void tch_intmap_free(tch_intmap *m);
void *tch_intmap_get(const tch_intmap *m, uint32_t key);
/* Inserts or replaces. Returns 0 or TCH_ENOMEM. */
int tch_intmap_put(tch_intmap *m, uint32_t key, void *value);
/* Removes and returns the value, or NULL when absent. */
void *tch_intmap_remove(tch_intmap *m, uint32_t key);
/* Removes and returns any one value (for draining), or NULL when empty. */
void *tch_intmap_pop_any(tch_intmap *m, uint32_t *key);

#endif
