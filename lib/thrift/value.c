/* The dynamic value model: a tree of heap nodes the caller owns. Containers
 * keep insertion order (so encodings are deterministic and match other
 * implementations fed the same values in the same order). */
#include "thrift_internal.h"

#include <stdlib.h>
#include <string.h>

static tch_thrift_value *new_value(tch_thrift_kind kind) {
    tch_thrift_value *v = calloc(1, sizeof *v);
    if (v)
        v->kind = kind;
    return v;
}

static tch_thrift_value *new_int(tch_thrift_kind kind, int64_t i) {
    tch_thrift_value *v = new_value(kind);
    if (v)
        v->u.i = i;
    return v;
}

tch_thrift_value *tch_thrift_value_new_bool(bool b) { return new_int(TCH_THRIFT_BOOL, b != 0); }
tch_thrift_value *tch_thrift_value_new_byte(int8_t v) { return new_int(TCH_THRIFT_BYTE, v); }
tch_thrift_value *tch_thrift_value_new_i16(int16_t v) { return new_int(TCH_THRIFT_I16, v); }
tch_thrift_value *tch_thrift_value_new_i32(int32_t v) { return new_int(TCH_THRIFT_I32, v); }
tch_thrift_value *tch_thrift_value_new_i64(int64_t v) { return new_int(TCH_THRIFT_I64, v); }

tch_thrift_value *tch_thrift_value_new_double(double d) {
    tch_thrift_value *v = new_value(TCH_THRIFT_DOUBLE);
    if (v)
        v->u.d = d;
    return v;
}

tch_thrift_value *tch_thrift_value_new_string(tch_slice bytes) {
    tch_thrift_value *v = new_value(TCH_THRIFT_STRING);
    if (!v)
        return NULL;
    /* always allocate (1 extra byte) so an empty string is not a NULL ptr */
    v->u.s.ptr = malloc(bytes.len + 1);
    if (!v->u.s.ptr) {
        free(v);
        return NULL;
    }
    if (bytes.len)
        memcpy(v->u.s.ptr, bytes.ptr, bytes.len);
    v->u.s.len = bytes.len;
    return v;
}

tch_thrift_value *tch_thrift_value_new_struct(void) { return new_value(TCH_THRIFT_STRUCT); }
tch_thrift_value *tch_thrift_value_new_list(void) { return new_value(TCH_THRIFT_LIST); }
tch_thrift_value *tch_thrift_value_new_set(void) { return new_value(TCH_THRIFT_SET); }
tch_thrift_value *tch_thrift_value_new_map(void) { return new_value(TCH_THRIFT_MAP); }

static int is_container(const tch_thrift_value *v) {
    return v->kind == TCH_THRIFT_STRUCT || v->kind == TCH_THRIFT_LIST || v->kind == TCH_THRIFT_SET ||
           v->kind == TCH_THRIFT_MAP;
}

/* Slots used: maps store key and value side by side. */
static size_t slots(const tch_thrift_value *v) { return v->kind == TCH_THRIFT_MAP ? v->u.c.n * 2 : v->u.c.n; }

void tch_thrift_value_free(tch_thrift_value *v) {
    if (!v)
        return;
    if (v->kind == TCH_THRIFT_STRING) {
        free(v->u.s.ptr);
    } else if (is_container(v)) {
        for (size_t i = 0; i < slots(v); i++)
            tch_thrift_value_free(v->u.c.items[i]);
        free(v->u.c.items);
        free(v->u.c.ids);
    }
    free(v);
}

/* Makes room for one more entry (need = slots per entry). */
static int grow(tch_thrift_value *v, size_t need) {
    if (slots(v) + need <= v->u.c.cap)
        return 0;
    size_t cap = v->u.c.cap ? v->u.c.cap * 2 : 8;
    if (cap > SIZE_MAX / sizeof(void *) / 2)
        return TCH_ENOMEM;
    tch_thrift_value **items = realloc(v->u.c.items, cap * sizeof *items);
    if (!items)
        return TCH_ENOMEM;
    v->u.c.items = items;
    if (v->kind == TCH_THRIFT_STRUCT) {
        int16_t *ids = realloc(v->u.c.ids, cap * sizeof *ids);
        if (!ids)
            return TCH_ENOMEM;
        v->u.c.ids = ids;
    }
    v->u.c.cap = cap;
    return 0;
}

int tch_thrift_value_struct_set_take(tch_thrift_value *st, int16_t id, tch_thrift_value *field) {
    if (!st || st->kind != TCH_THRIFT_STRUCT || !field) {
        tch_thrift_value_free(field);
        return TCH_EINVAL;
    }
    for (size_t i = 0; i < st->u.c.n; i++)
        if (st->u.c.ids[i] == id) {
            tch_thrift_value_free(st->u.c.items[i]);
            st->u.c.items[i] = field;
            return 0;
        }
    if (grow(st, 1)) {
        tch_thrift_value_free(field);
        return TCH_ENOMEM;
    }
    st->u.c.ids[st->u.c.n] = id;
    st->u.c.items[st->u.c.n++] = field;
    return 0;
}

const tch_thrift_value *tch_thrift_value_struct_get(const tch_thrift_value *st, int16_t id) {
    if (!st || st->kind != TCH_THRIFT_STRUCT)
        return NULL;
    for (size_t i = 0; i < st->u.c.n; i++)
        if (st->u.c.ids[i] == id)
            return st->u.c.items[i];
    return NULL;
}

size_t tch_thrift_value_struct_count(const tch_thrift_value *st) {
    return st && st->kind == TCH_THRIFT_STRUCT ? st->u.c.n : 0;
}

const tch_thrift_value *tch_thrift_value_struct_at(const tch_thrift_value *st, size_t i, int16_t *id) {
    if (!st || st->kind != TCH_THRIFT_STRUCT || i >= st->u.c.n)
        return NULL;
    if (id)
        *id = st->u.c.ids[i];
    return st->u.c.items[i];
}

int tch_thrift_value_append_take(tch_thrift_value *l, tch_thrift_value *elem) {
    if (!l || (l->kind != TCH_THRIFT_LIST && l->kind != TCH_THRIFT_SET) || !elem) {
        tch_thrift_value_free(elem);
        return TCH_EINVAL;
    }
    if (grow(l, 1)) {
        tch_thrift_value_free(elem);
        return TCH_ENOMEM;
    }
    l->u.c.items[l->u.c.n++] = elem;
    return 0;
}

size_t tch_thrift_value_count(const tch_thrift_value *v) {
    return v && (v->kind == TCH_THRIFT_LIST || v->kind == TCH_THRIFT_SET || v->kind == TCH_THRIFT_MAP)
               ? v->u.c.n
               : 0;
}

const tch_thrift_value *tch_thrift_value_at(const tch_thrift_value *l, size_t i) {
    if (!l || (l->kind != TCH_THRIFT_LIST && l->kind != TCH_THRIFT_SET) || i >= l->u.c.n)
        return NULL;
    return l->u.c.items[i];
}

int tch_thrift_value_map_put_take(tch_thrift_value *m, tch_thrift_value *key, tch_thrift_value *val) {
    if (!m || m->kind != TCH_THRIFT_MAP || !key || !val || grow(m, 2)) {
        int rc = (!m || m->kind != TCH_THRIFT_MAP || !key || !val) ? TCH_EINVAL : TCH_ENOMEM;
        tch_thrift_value_free(key);
        tch_thrift_value_free(val);
        return rc;
    }
    m->u.c.items[2 * m->u.c.n] = key;
    m->u.c.items[2 * m->u.c.n + 1] = val;
    m->u.c.n++;
    return 0;
}

const tch_thrift_value *tch_thrift_value_map_key_at(const tch_thrift_value *m, size_t i) {
    return m && m->kind == TCH_THRIFT_MAP && i < m->u.c.n ? m->u.c.items[2 * i] : NULL;
}

const tch_thrift_value *tch_thrift_value_map_value_at(const tch_thrift_value *m, size_t i) {
    return m && m->kind == TCH_THRIFT_MAP && i < m->u.c.n ? m->u.c.items[2 * i + 1] : NULL;
}

tch_thrift_kind tch_thrift_value_kind(const tch_thrift_value *v) { return v->kind; }
bool tch_thrift_value_bool(const tch_thrift_value *v) { return v->kind == TCH_THRIFT_BOOL && v->u.i != 0; }

int64_t tch_thrift_value_int(const tch_thrift_value *v) {
    switch (v->kind) {
    case TCH_THRIFT_BOOL:
    case TCH_THRIFT_BYTE:
    case TCH_THRIFT_I16:
    case TCH_THRIFT_I32:
    case TCH_THRIFT_I64:
        return v->u.i;
    default:
        return 0;
    }
}

double tch_thrift_value_double(const tch_thrift_value *v) { return v->kind == TCH_THRIFT_DOUBLE ? v->u.d : 0.0; }

tch_slice tch_thrift_value_bytes(const tch_thrift_value *v) {
    if (v->kind != TCH_THRIFT_STRING)
        return TCH_SLICE_NULL;
    return tch_slice_of(v->u.s.ptr, v->u.s.len);
}

tch_thrift_value *tch_thrift_value_copy(const tch_thrift_value *v) {
    if (!v)
        return NULL;
    if (v->kind == TCH_THRIFT_STRING)
        return tch_thrift_value_new_string(tch_thrift_value_bytes(v));
    tch_thrift_value *c = new_value(v->kind);
    if (!c)
        return NULL;
    if (!is_container(v)) {
        c->u = v->u;
        return c;
    }
    size_t per = v->kind == TCH_THRIFT_MAP ? 2 : 1;
    for (size_t i = 0; i < v->u.c.n; i++) {
        if (grow(c, per))
            goto fail;
        for (size_t k = 0; k < per; k++) {
            c->u.c.items[i * per + k] = tch_thrift_value_copy(v->u.c.items[i * per + k]);
            if (!c->u.c.items[i * per + k]) {
                /* keep the tree freeable: count only complete entries */
                if (k == 1)
                    tch_thrift_value_free(c->u.c.items[i * per]);
                goto fail;
            }
        }
        if (v->kind == TCH_THRIFT_STRUCT)
            c->u.c.ids[i] = v->u.c.ids[i];
        c->u.c.n++;
    }
    return c;
fail:
    tch_thrift_value_free(c);
    return NULL;
}

bool tch_thrift_value_equal(const tch_thrift_value *a, const tch_thrift_value *b) {
    if (!a || !b)
        return a == b;
    if (a->kind != b->kind)
        return 0;
    switch (a->kind) {
    case TCH_THRIFT_DOUBLE:
        return memcmp(&a->u.d, &b->u.d, sizeof a->u.d) == 0;
    case TCH_THRIFT_STRING:
        return a->u.s.len == b->u.s.len && (a->u.s.len == 0 || memcmp(a->u.s.ptr, b->u.s.ptr, a->u.s.len) == 0);
    case TCH_THRIFT_STRUCT:
        /* fields by id, regardless of the order they were set in */
        if (a->u.c.n != b->u.c.n)
            return 0;
        for (size_t i = 0; i < a->u.c.n; i++)
            if (!tch_thrift_value_equal(a->u.c.items[i], tch_thrift_value_struct_get(b, a->u.c.ids[i])))
                return 0;
        return 1;
    case TCH_THRIFT_LIST:
    case TCH_THRIFT_SET:
    case TCH_THRIFT_MAP:
        if (a->u.c.n != b->u.c.n)
            return 0;
        for (size_t i = 0; i < slots(a); i++)
            if (!tch_thrift_value_equal(a->u.c.items[i], b->u.c.items[i]))
                return 0;
        return 1;
    default:
        return a->u.i == b->u.i;
    }
}
