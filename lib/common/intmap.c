#include "intmap.h"

#include "alloc.h"

#include <tchannel/common.h>

static size_t slot_of(uint32_t key, size_t cap) {
    /* Fibonacci hashing spreads sequential message ids. */
    return (size_t)((key * 2654435769u) >> 7) & (cap - 1);
}

void tch_intmap_free(tch_intmap *m) {
    tch__free(m->alloc, m->slots);
    m->slots = NULL;
    m->cap = m->len = 0;
}

void *tch_intmap_get(const tch_intmap *m, uint32_t key) {
    if (m->cap == 0)
        return NULL;
    for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        const tch_intmap_slot *s = &m->slots[i];
        if (!s->value)
            return NULL;
        if (s->key == key)
            return s->value;
    }
}

static void insert_slot(tch_intmap_slot *slots, size_t cap, uint32_t key,
                        void *value, size_t *len) {
    for (size_t i = slot_of(key, cap);; i = (i + 1) & (cap - 1)) {
        if (!slots[i].value) {
            slots[i].key = key;
            slots[i].value = value;
            (*len)++;
            return;
        }
        if (slots[i].key == key) {
            slots[i].value = value;
            return;
        }
    }
}

static int grow(tch_intmap *m) {
    size_t cap = m->cap ? m->cap * 2 : 16;
    tch_intmap_slot *slots = tch__calloc(m->alloc, cap, sizeof *slots);
    if (!slots)
        return TCH_ENOMEM;
    size_t len = 0;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].value)
            insert_slot(slots, cap, m->slots[i].key, m->slots[i].value, &len);
    tch__free(m->alloc, m->slots);
    m->slots = slots;
    m->cap = cap;
    m->len = len;
    return 0;
}

int tch_intmap_put(tch_intmap *m, uint32_t key, void *value) {
    if ((m->len + 1) * 4 > m->cap * 3) { /* keep load under 3/4 */
        int rc = grow(m);
        if (rc)
            return rc;
    }
    insert_slot(m->slots, m->cap, key, value, &m->len);
    return 0;
}

static void remove_at(tch_intmap *m, size_t i) {
    size_t mask = m->cap - 1;
    m->slots[i].value = NULL;
    m->len--;
    /* Backward-shift: move later entries of the probe run into the hole. */
    for (size_t j = (i + 1) & mask; m->slots[j].value; j = (j + 1) & mask) {
        size_t home = slot_of(m->slots[j].key, m->cap);
        if (((j - home) & mask) >= ((j - i) & mask)) {
            m->slots[i] = m->slots[j];
            m->slots[j].value = NULL;
            i = j;
        }
    }
}

void *tch_intmap_remove(tch_intmap *m, uint32_t key) {
    if (m->cap == 0)
        return NULL;
    for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        tch_intmap_slot *s = &m->slots[i];
        if (!s->value)
            return NULL;
        if (s->key == key) {
            void *v = s->value;
            remove_at(m, i);
            return v;
        }
    }
}

void *tch_intmap_pop_any(tch_intmap *m, uint32_t *key) {
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].value) {
            void *v = m->slots[i].value;
            if (key)
                *key = m->slots[i].key;
            remove_at(m, i);
            return v;
        }
    }
    return NULL;
}
