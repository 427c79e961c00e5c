/* The arena that owns a loaded IDL's definitions: many small allocations
 * that all die together in tch_thrift_idl_free, so nothing needs its own
 * free path (which keeps the parser's error paths simple). */
#include "thrift_internal.h"

#include <stdlib.h>
#include <string.h>

struct arena_chunk {
    arena_chunk *next;
    size_t used, cap;
    max_align_t data[];
};

#define ARENA_CHUNK_MIN 4096

void *tch__arena_alloc(arena *a, size_t n) {
    const size_t align = sizeof(max_align_t);
    if (n > SIZE_MAX - align)
        return NULL;
    n = (n + align - 1) / align * align;
    if (n == 0)
        n = align;
    arena_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > ARENA_CHUNK_MIN ? n : ARENA_CHUNK_MIN;
        c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

char *tch__arena_strndup(arena *a, const char *s, size_t n) {
    if (n == SIZE_MAX)
        return NULL;
    char *p = tch__arena_alloc(a, n + 1);
    if (p) {
        if (n)
            memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

void tch__arena_free(arena *a) {
    arena_chunk *c = a->head;
    while (c) {
        arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}

/* Grows by doubling into fresh arena storage; the old array is simply left
 * behind (bounded waste, freed with the arena). */
int tch__ptrvec_push(arena *a, ptrvec *v, void *item) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        if (cap > SIZE_MAX / sizeof(void *))
            return TCH_ENOMEM;
        void **items = tch__arena_alloc(a, cap * sizeof(void *));
        if (!items)
            return TCH_ENOMEM;
        if (v->n)
            memcpy(items, v->items, v->n * sizeof(void *));
        v->items = items;
        v->cap = cap;
    }
    v->items[v->n++] = item;
    return 0;
}

/* Prepends "a.b: " (or "a: " when b is NULL) to err's message, but only
 * while it fits: deep values would otherwise push the actual error out of the
 * fixed-size message. */
int tch__thrift_wrap(tch_error *err, const char *a, const char *b) {
    if (!err)
        return TCH_EINVAL;
    size_t need = strlen(a) + (b ? strlen(b) + 1 : 0) + 2;
    if (strlen(err->msg) + need < sizeof err->msg) {
        if (b)
            tch_error_wrap(err, "%s.%s", a, b);
        else
            tch_error_wrap(err, "%s", a);
    }
    return err->code;
}
