/* Strict TBinaryProtocol for one struct, no message envelope (TChannel puts
 * the bare args/result struct in arg3). Big-endian throughout.
 *
 * Decoding is written for hostile input: every length is checked against the
 * bytes left (times the smallest possible element size) before anything is
 * allocated, nesting is bounded by TCH_THRIFT_MAX_DEPTH, and unknown fields
 * (or known ids with the wrong wire type, as generated Apache code does) are
 * skipped without building values. */
#include "thrift_internal.h"

#include <string.h>

enum wire_type {
    W_STOP = 0,
    W_BOOL = 2,
    W_BYTE = 3,
    W_DOUBLE = 4,
    W_I16 = 6,
    W_I32 = 8,
    W_I64 = 10,
    W_STRING = 11,
    W_STRUCT = 12,
    W_MAP = 13,
    W_SET = 14,
    W_LIST = 15,
};

static uint8_t wire_of(const tch_thrift_type *t) {
    static const uint8_t map[] = {
        [TCH_THRIFT_BOOL] = W_BOOL,     [TCH_THRIFT_BYTE] = W_BYTE,     [TCH_THRIFT_I16] = W_I16,
        [TCH_THRIFT_I32] = W_I32,       [TCH_THRIFT_I64] = W_I64,       [TCH_THRIFT_DOUBLE] = W_DOUBLE,
        [TCH_THRIFT_STRING] = W_STRING, [TCH_THRIFT_BINARY] = W_STRING, [TCH_THRIFT_ENUM] = W_I32,
        [TCH_THRIFT_STRUCT] = W_STRUCT, [TCH_THRIFT_LIST] = W_LIST,     [TCH_THRIFT_SET] = W_SET,
        [TCH_THRIFT_MAP] = W_MAP,
    };
    return map[t->kind];
}

/* The value kind a type's values have (enums are i32, binary is bytes). */
static tch_thrift_kind value_kind_of(const tch_thrift_type *t) {
    switch (t->kind) {
    case TCH_THRIFT_ENUM: return TCH_THRIFT_I32;
    case TCH_THRIFT_BINARY: return TCH_THRIFT_STRING;
    default: return (tch_thrift_kind)t->kind;
    }
}

/* ---------------------------------------------------------------- encoder */

typedef struct enc {
    tch_buf *out;
    tch_error *err;
} enc;

static int put(enc *e, const void *p, size_t n) {
    return tch_buf_append(e->out, p, n) ? tch_error_set(e->err, TCH_ENOMEM, "thrift encode: out of memory") : 0;
}

static int put_be(enc *e, uint64_t v, int bytes) {
    uint8_t b[8];
    for (int i = 0; i < bytes; i++)
        b[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
    return put(e, b, (size_t)bytes);
}

static int enc_struct(enc *e, const tch_thrift_struct *st, const tch_thrift_value *v, int depth);

static int enc_value(enc *e, const tch_thrift_type *t, const tch_thrift_value *v, int depth);

static int enc_len(enc *e, size_t n) {
    if (n > INT32_MAX)
        return tch_error_set(e->err, TCH_ETOOBIG, "thrift encode: %zu elements/bytes exceed i32", n);
    return put_be(e, n, 4);
}

static int enc_container(enc *e, const tch_thrift_type *t, const tch_thrift_value *v, int depth) {
    size_t n = v->u.c.n;
    int rc;
    if (t->kind == TCH_THRIFT_MAP) {
        uint8_t hdr[2] = {wire_of(t->elem), wire_of(t->val)};
        if ((rc = put(e, hdr, 2)) || (rc = enc_len(e, n)))
            return rc;
        for (size_t i = 0; i < n; i++)
            if ((rc = enc_value(e, t->elem, v->u.c.items[2 * i], depth + 1)) ||
                (rc = enc_value(e, t->val, v->u.c.items[2 * i + 1], depth + 1)))
                return rc;
        return 0;
    }
    uint8_t et = wire_of(t->elem);
    if ((rc = put(e, &et, 1)) || (rc = enc_len(e, n)))
        return rc;
    for (size_t i = 0; i < n; i++)
        if ((rc = enc_value(e, t->elem, v->u.c.items[i], depth + 1)))
            return rc;
    return 0;
}

static int enc_value(enc *e, const tch_thrift_type *t, const tch_thrift_value *v, int depth) {
    if (depth > TCH_THRIFT_MAX_DEPTH)
        return tch_error_set(e->err, TCH_ETOOBIG, "thrift encode: nested more than %d deep", TCH_THRIFT_MAX_DEPTH);
    if (v->kind != value_kind_of(t))
        return tch_error_set(e->err, TCH_EINVAL, "thrift encode: %s value for a %s",
                             tch_thrift_kind_name(v->kind), tch_thrift_kind_name(t->kind));
    uint64_t bits;
    switch (t->kind) {
    case TCH_THRIFT_BOOL:
    case TCH_THRIFT_BYTE:
        return put_be(e, (uint64_t)v->u.i, 1);
    case TCH_THRIFT_I16:
        return put_be(e, (uint64_t)v->u.i, 2);
    case TCH_THRIFT_I32:
    case TCH_THRIFT_ENUM:
        return put_be(e, (uint64_t)v->u.i, 4);
    case TCH_THRIFT_I64:
        return put_be(e, (uint64_t)v->u.i, 8);
    case TCH_THRIFT_DOUBLE:
        memcpy(&bits, &v->u.d, 8);
        return put_be(e, bits, 8);
    case TCH_THRIFT_STRING:
    case TCH_THRIFT_BINARY: {
        int rc = enc_len(e, v->u.s.len);
        return rc ? rc : put(e, v->u.s.ptr, v->u.s.len);
    }
    case TCH_THRIFT_STRUCT:
        return enc_struct(e, t->st, v, depth + 1);
    default:
        return enc_container(e, t, v, depth);
    }
}

static int enc_field(enc *e, const tch_thrift_struct *st, const tch_thrift_field *f, const tch_thrift_value *fv,
                     int depth) {
    uint8_t hdr[3] = {wire_of(f->type), (uint8_t)((uint16_t)f->id >> 8), (uint8_t)f->id};
    int rc = put(e, hdr, 3);
    if (!rc && (rc = enc_value(e, f->type, fv, depth)))
        tch__thrift_wrap(e->err, st->name, f->name);
    return rc;
}

static int enc_struct(enc *e, const tch_thrift_struct *st, const tch_thrift_value *v, int depth) {
    size_t used = 0, set = 0;
    int rc;
    for (size_t i = 0; i < st->fields.n; i++) { /* fields are sorted by id, as Apache writes them */
        const tch_thrift_field *f = st->fields.items[i];
        const tch_thrift_value *fv = tch_thrift_value_struct_get(v, f->id);
        if (!fv) {
            if (f->req == TCH_THRIFT_REQ_REQUIRED)
                return tch_error_set(e->err, TCH_EINVAL, "thrift encode: %s: required field '%s' (%d) missing",
                                     st->name, f->name, f->id);
            continue;
        }
        used++;
        set++;
        if ((rc = enc_field(e, st, f, fv, depth)))
            return rc;
    }
    if (used != v->u.c.n) {
        for (size_t i = 0; i < v->u.c.n; i++)
            if (!tch_thrift_struct_field_by_id(st, v->u.c.ids[i]))
                return tch_error_set(e->err, TCH_EINVAL, "thrift encode: %s has no field with id %d", st->name,
                                     v->u.c.ids[i]);
    }
    if (st->kind == TCH_THRIFT_STRUCT_UNION && set > 1)
        return tch_error_set(e->err, TCH_EINVAL, "thrift encode: union %s has %zu fields set", st->name, set);
    uint8_t stop = W_STOP;
    return put(e, &stop, 1);
}

int tch_thrift_encode(const tch_thrift_struct *st, const tch_thrift_value *v, tch_buf *out, tch_error *err) {
    if (!st || !v || !out)
        return tch_error_set(err, TCH_EINVAL, "thrift encode: missing argument");
    if (v->kind != TCH_THRIFT_STRUCT)
        return tch_error_set(err, TCH_EINVAL, "thrift encode: %s: value is a %s, not a struct", st->name,
                             tch_thrift_kind_name(v->kind));
    enc e = {out, err};
    size_t start = out->len;
    int rc = enc_struct(&e, st, v, 0);
    if (rc)
        out->len = start; /* leave no half-written struct behind */
    return rc;
}

/* ---------------------------------------------------------------- decoder */

typedef struct dec {
    const uint8_t *p;
    size_t left;
    tch_error *err;
} dec;

static int short_input(dec *d, const char *what) {
    return tch_error_set(d->err, TCH_EPROTO, "thrift decode: truncated %s", what);
}

static int get_be(dec *d, int bytes, uint64_t *v, const char *what) {
    if (d->left < (size_t)bytes)
        return short_input(d, what);
    uint64_t x = 0;
    for (int i = 0; i < bytes; i++)
        x = (x << 8) | d->p[i];
    d->p += bytes;
    d->left -= (size_t)bytes;
    *v = x;
    return 0;
}

/* Smallest encoding of one value of a wire type; 0 for an invalid type. */
static size_t min_size(uint8_t w) {
    switch (w) {
    case W_BOOL: case W_BYTE: return 1;
    case W_I16: return 2;
    case W_I32: return 4;
    case W_I64: case W_DOUBLE: return 8;
    case W_STRING: return 4;
    case W_STRUCT: return 1;   /* STOP */
    case W_MAP: return 6;      /* kt vt size */
    case W_SET: case W_LIST: return 5;
    default: return 0;
    }
}

/* Reads a container size and checks that n elements of at least per bytes
 * each can fit in what is left. */
static int get_count(dec *d, size_t per, size_t *n) {
    uint64_t raw = 0;
    int rc = get_be(d, 4, &raw, "container size");
    if (rc)
        return rc;
    int32_t s = (int32_t)(uint32_t)raw;
    if (s < 0)
        return tch_error_set(d->err, TCH_EPROTO, "thrift decode: negative size %d", s);
    if (per == 0)
        return tch_error_set(d->err, TCH_EPROTO, "thrift decode: invalid element type");
    if ((size_t)s > d->left / per)
        return tch_error_set(d->err, TCH_EPROTO, "thrift decode: size %d exceeds the %zu bytes left", s, d->left);
    *n = (size_t)s;
    return 0;
}

static int skip(dec *d, uint8_t w, int depth) {
    if (depth > TCH_THRIFT_MAX_DEPTH)
        return tch_error_set(d->err, TCH_EPROTO, "thrift decode: nested more than %d deep", TCH_THRIFT_MAX_DEPTH);
    uint64_t x = 0;
    size_t n;
    int rc;
    uint8_t hdr[2];
    switch (w) {
    case W_BOOL: case W_BYTE: case W_I16: case W_I32: case W_I64: case W_DOUBLE:
        return get_be(d, (int)min_size(w), &x, "value");
    case W_STRING:
        if ((rc = get_count(d, 1, &n)))
            return rc;
        d->p += n;
        d->left -= n;
        return 0;
    case W_STRUCT:
        for (;;) {
            if ((rc = get_be(d, 1, &x, "field header")))
                return rc;
            if (x == W_STOP)
                return 0;
            if ((rc = get_be(d, 2, &(uint64_t){0}, "field id")) || (rc = skip(d, (uint8_t)x, depth + 1)))
                return rc;
        }
    case W_MAP:
        if ((rc = get_be(d, 1, &x, "map key type")))
            return rc;
        hdr[0] = (uint8_t)x;
        if ((rc = get_be(d, 1, &x, "map value type")))
            return rc;
        hdr[1] = (uint8_t)x;
        if ((rc = get_count(d, min_size(hdr[0]) && min_size(hdr[1]) ? min_size(hdr[0]) + min_size(hdr[1]) : 0, &n)))
            return rc;
        for (size_t i = 0; i < n; i++)
            if ((rc = skip(d, hdr[0], depth + 1)) || (rc = skip(d, hdr[1], depth + 1)))
                return rc;
        return 0;
    case W_SET:
    case W_LIST:
        if ((rc = get_be(d, 1, &x, "element type")) || (rc = get_count(d, min_size((uint8_t)x), &n)))
            return rc;
        for (size_t i = 0; i < n; i++)
            if ((rc = skip(d, (uint8_t)x, depth + 1)))
                return rc;
        return 0;
    default:
        return tch_error_set(d->err, TCH_EPROTO, "thrift decode: invalid wire type %u", w);
    }
}

static int dec_value(dec *d, const tch_thrift_type *t, int depth, tch_thrift_value **out);
static int dec_struct(dec *d, const tch_thrift_struct *st, int depth, tch_thrift_value **out);

static int dec_scalar(dec *d, const tch_thrift_type *t, tch_thrift_value **out) {
    uint64_t x = 0;
    int rc = get_be(d, (int)min_size(wire_of(t)), &x, tch_thrift_kind_name(t->kind));
    if (rc)
        return rc;
    switch (t->kind) {
    case TCH_THRIFT_BOOL: *out = tch_thrift_value_new_bool(x != 0); break;
    case TCH_THRIFT_BYTE: *out = tch_thrift_value_new_byte((int8_t)(uint8_t)x); break;
    case TCH_THRIFT_I16: *out = tch_thrift_value_new_i16((int16_t)(uint16_t)x); break;
    case TCH_THRIFT_I64: *out = tch_thrift_value_new_i64((int64_t)x); break;
    case TCH_THRIFT_DOUBLE: {
        double v;
        memcpy(&v, &x, 8);
        *out = tch_thrift_value_new_double(v);
        break;
    }
    default: *out = tch_thrift_value_new_i32((int32_t)(uint32_t)x); break; /* i32, enum */
    }
    return *out ? 0 : tch_error_set(d->err, TCH_ENOMEM, "thrift decode: out of memory");
}

/* Element types must match the IDL (an empty container may say anything). */
static int check_elem(dec *d, uint8_t got, const tch_thrift_type *want, size_t n) {
    if (n == 0 || got == wire_of(want))
        return 0;
    return tch_error_set(d->err, TCH_EPROTO, "thrift decode: container of wire type %u where %s expected", got,
                         tch_thrift_kind_name(want->kind));
}

static int dec_container(dec *d, const tch_thrift_type *t, int depth, tch_thrift_value **out) {
    uint64_t kt = 0, vt = 0;
    size_t n;
    int is_map = t->kind == TCH_THRIFT_MAP, rc;
    if ((rc = get_be(d, 1, &kt, "element type")) || (is_map && (rc = get_be(d, 1, &vt, "map value type"))))
        return rc;
    size_t per = is_map ? (min_size((uint8_t)kt) && min_size((uint8_t)vt) ? min_size((uint8_t)kt) + min_size((uint8_t)vt) : 0)
                        : min_size((uint8_t)kt);
    if ((rc = get_count(d, per, &n)) || (rc = check_elem(d, (uint8_t)kt, t->elem, n)) ||
        (is_map && (rc = check_elem(d, (uint8_t)vt, t->val, n))))
        return rc;
    tch_thrift_value *c = is_map ? tch_thrift_value_new_map()
                          : t->kind == TCH_THRIFT_SET ? tch_thrift_value_new_set() : tch_thrift_value_new_list();
    if (!c)
        return tch_error_set(d->err, TCH_ENOMEM, "thrift decode: out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        tch_thrift_value *k = NULL, *v = NULL;
        if ((rc = dec_value(d, t->elem, depth + 1, &k)))
            break;
        if (is_map && (rc = dec_value(d, t->val, depth + 1, &v))) {
            tch_thrift_value_free(k);
            break;
        }
        /* the _take calls free k and v themselves when they fail */
        rc = is_map ? tch_thrift_value_map_put_take(c, k, v) : tch_thrift_value_append_take(c, k);
        if (rc)
            rc = tch_error_set(d->err, TCH_ENOMEM, "thrift decode: out of memory");
    }
    if (rc) {
        tch_thrift_value_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

static int dec_value(dec *d, const tch_thrift_type *t, int depth, tch_thrift_value **out) {
    if (depth > TCH_THRIFT_MAX_DEPTH)
        return tch_error_set(d->err, TCH_EPROTO, "thrift decode: nested more than %d deep", TCH_THRIFT_MAX_DEPTH);
    size_t n;
    int rc;
    switch (t->kind) {
    case TCH_THRIFT_STRING:
    case TCH_THRIFT_BINARY:
        if ((rc = get_count(d, 1, &n)))
            return rc;
        *out = tch_thrift_value_new_string(tch_slice_of(d->p, n));
        if (!*out)
            return tch_error_set(d->err, TCH_ENOMEM, "thrift decode: out of memory");
        d->p += n;
        d->left -= n;
        return 0;
    case TCH_THRIFT_STRUCT:
        return dec_struct(d, t->st, depth + 1, out);
    case TCH_THRIFT_LIST:
    case TCH_THRIFT_SET:
    case TCH_THRIFT_MAP:
        return dec_container(d, t, depth, out);
    default:
        return dec_scalar(d, t, out);
    }
}

/* After STOP: required fields present, unions hold at most one field. */
static int check_struct(dec *d, const tch_thrift_struct *st, const tch_thrift_value *v) {
    for (size_t i = 0; i < st->fields.n; i++) {
        const tch_thrift_field *f = st->fields.items[i];
        if (f->req == TCH_THRIFT_REQ_REQUIRED && !tch_thrift_value_struct_get(v, f->id))
            return tch_error_set(d->err, TCH_EPROTO, "thrift decode: %s: required field '%s' (%d) missing",
                                 st->name, f->name, f->id);
    }
    if (st->kind == TCH_THRIFT_STRUCT_UNION && v->u.c.n > 1)
        return tch_error_set(d->err, TCH_EPROTO, "thrift decode: union %s has %zu fields set", st->name, v->u.c.n);
    return 0;
}

static int dec_field(dec *d, const tch_thrift_struct *st, tch_thrift_value *v, uint8_t w, int16_t id, int depth) {
    const tch_thrift_field *f = tch_thrift_struct_field_by_id(st, id);
    if (!f || wire_of(f->type) != w)
        return skip(d, w, depth); /* unknown, or known with another type: skipped like generated code */
    tch_thrift_value *fv;
    int rc = dec_value(d, f->type, depth, &fv);
    if (!rc && tch_thrift_value_struct_set_take(v, id, fv))
        rc = tch_error_set(d->err, TCH_ENOMEM, "thrift decode: out of memory");
    if (rc && rc != TCH_ENOMEM)
        tch__thrift_wrap(d->err, st->name, f->name);
    return rc;
}

static int dec_struct(dec *d, const tch_thrift_struct *st, int depth, tch_thrift_value **out) {
    if (depth > TCH_THRIFT_MAX_DEPTH)
        return tch_error_set(d->err, TCH_EPROTO, "thrift decode: nested more than %d deep", TCH_THRIFT_MAX_DEPTH);
    tch_thrift_value *v = tch_thrift_value_new_struct();
    if (!v)
        return tch_error_set(d->err, TCH_ENOMEM, "thrift decode: out of memory");
    int rc;
    for (;;) {
        uint64_t w = 0, id = 0;
        if ((rc = get_be(d, 1, &w, "field header")))
            break;
        if (w == W_STOP) {
            rc = check_struct(d, st, v);
            break;
        }
        if ((rc = get_be(d, 2, &id, "field id")) || (rc = dec_field(d, st, v, (uint8_t)w, (int16_t)(uint16_t)id, depth)))
            break;
    }
    if (rc) {
        tch_thrift_value_free(v);
        return rc;
    }
    *out = v;
    return 0;
}

int tch_thrift_decode(const tch_thrift_struct *st, tch_slice in, tch_thrift_value **out, tch_error *err) {
    if (!st || !out || (!in.ptr && in.len))
        return tch_error_set(err, TCH_EINVAL, "thrift decode: missing argument");
    dec d = {in.ptr, in.len, err};
    tch_thrift_value *v = NULL;
    int rc = dec_struct(&d, st, 0, &v);
    if (rc)
        return rc;
    if (d.left) {
        tch_thrift_value_free(v);
        return tch_error_set(err, TCH_EPROTO, "thrift decode: %s: %zu trailing bytes after the struct", st->name,
                             d.left);
    }
    *out = v;
    return 0;
}
