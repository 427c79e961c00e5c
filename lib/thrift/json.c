/* Thrift values <-> jansson JSON, guided by the IDL type. The mapping is
 * documented at the top of tchannel/thrift.h; the short version: structs are
 * objects keyed by field name, enums are names, binary is base64, maps with
 * string/enum keys are objects and any other map is a list of
 * {"key": k, "value": v} objects. Errors name the path to the bad element. */
#include "thrift_internal.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------------- base64 */

static json_t *base64_json(tch_slice s) {
    tch_buf b = {0};
    json_t *j = tch_base64_encode(s, 0, &b) ? NULL
                                            : json_stringn(b.ptr ? (const char *)b.ptr : "", b.len);
    tch_buf_free(&b);
    return j;
}

/* ---------------------------------------------------------- value -> JSON */

static int to_json(const tch_thrift_type *t, const tch_thrift_value *v, int depth, json_t **out, tch_error *err);

static int oom(tch_error *err) { return tch_error_set(err, TCH_ENOMEM, "thrift json: out of memory"); }

static int kind_error(tch_error *err, const tch_thrift_type *t, const char *got) {
    return tch_error_set(err, TCH_EINVAL, "expected %s, got %s", tch_thrift_kind_name(t->kind), got);
}

static tch_thrift_kind value_kind_of(const tch_thrift_type *t) {
    return t->kind == TCH_THRIFT_ENUM ? TCH_THRIFT_I32
           : t->kind == TCH_THRIFT_BINARY ? TCH_THRIFT_STRING : (tch_thrift_kind)t->kind;
}

static int struct_to_json(const tch_thrift_struct *st, const tch_thrift_value *v, int depth, json_t **out,
                          tch_error *err) {
    json_t *obj = json_object();
    if (!obj)
        return oom(err);
    size_t used = 0;
    for (size_t i = 0; i < st->fields.n; i++) {
        const tch_thrift_field *f = st->fields.items[i];
        const tch_thrift_value *fv = tch_thrift_value_struct_get(v, f->id);
        if (!fv)
            continue;
        used++;
        json_t *j;
        int rc = to_json(f->type, fv, depth + 1, &j, err);
        if (rc) {
            json_decref(obj);
            return tch__thrift_wrap(err, f->name, NULL);
        }
        if (json_object_set_new(obj, f->name, j)) {
            json_decref(obj);
            return oom(err);
        }
    }
    if (used != tch_thrift_value_struct_count(v)) {
        json_decref(obj);
        return tch_error_set(err, TCH_EINVAL, "value has fields that %s does not declare", st->name);
    }
    *out = obj;
    return 0;
}

static int is_object_key_type(const tch_thrift_type *t) {
    return t->kind == TCH_THRIFT_STRING || t->kind == TCH_THRIFT_ENUM;
}

/* A string or enum map key as the JSON object key it becomes: the string,
 * the enum value's name, or its number ("7") when it has no name. */
static int object_key(const tch_thrift_type *kt, const tch_thrift_value *k, int depth, json_t **out,
                      tch_error *err) {
    json_t *j = NULL;
    int rc = to_json(kt, k, depth, &j, err);
    if (rc)
        return rc;
    if (json_is_integer(j)) {
        char num[24];
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(j));
        json_decref(j);
        j = json_string(num);
    }
    *out = j;
    return j ? 0 : oom(err);
}

/* A JSON object holds a key once, so a map whose keys repeat (possible on
 * the wire) cannot become one without losing an entry: that is an error. */
static int put_object_entry(json_t *obj, json_t *key, json_t *val, tch_error *err) {
    const char *ks = json_string_value(key);
    size_t kl = json_string_length(key);
    int rc = 0;
    if (json_object_getn(obj, ks, kl)) {
        rc = tch_error_set(err, TCH_EINVAL, "map key \"%.*s\" appears more than once", (int)kl, ks);
        json_decref(val);
    } else if (json_object_setn_new(obj, ks, kl, val)) {
        rc = oom(err);
    }
    json_decref(key);
    return rc;
}

static int map_to_json(const tch_thrift_type *t, const tch_thrift_value *v, int depth, json_t **out, tch_error *err) {
    int as_object = is_object_key_type(t->elem);
    json_t *res = as_object ? json_object() : json_array();
    if (!res)
        return oom(err);
    int rc = 0;
    for (size_t i = 0; !rc && i < v->u.c.n; i++) {
        json_t *k = NULL, *val = NULL;
        const tch_thrift_value *kv = v->u.c.items[2 * i];
        rc = as_object ? object_key(t->elem, kv, depth + 1, &k, err) : to_json(t->elem, kv, depth + 1, &k, err);
        if (rc || (rc = to_json(t->val, v->u.c.items[2 * i + 1], depth + 1, &val, err))) {
            json_decref(k);
            break;
        }
        if (as_object) {
            rc = put_object_entry(res, k, val, err);
        } else {
            json_t *pair = json_pack("{s:o,s:o}", "key", k, "value", val);
            rc = !pair || json_array_append_new(res, pair) ? oom(err) : 0;
        }
    }
    if (rc) {
        json_decref(res);
        return rc;
    }
    *out = res;
    return 0;
}

static int list_to_json(const tch_thrift_type *t, const tch_thrift_value *v, int depth, json_t **out, tch_error *err) {
    json_t *arr = json_array();
    if (!arr)
        return oom(err);
    for (size_t i = 0; i < v->u.c.n; i++) {
        json_t *j;
        int rc = to_json(t->elem, v->u.c.items[i], depth + 1, &j, err);
        if (!rc && json_array_append_new(arr, j))
            rc = oom(err);
        if (rc) {
            json_decref(arr);
            if (rc != TCH_ENOMEM) {
                char idx[32];
                snprintf(idx, sizeof idx, "[%zu]", i);
                tch__thrift_wrap(err, idx, NULL);
            }
            return rc;
        }
    }
    *out = arr;
    return 0;
}

static int scalar_to_json(const tch_thrift_type *t, const tch_thrift_value *v, json_t **out, tch_error *err) {
    const char *name;
    switch (t->kind) {
    case TCH_THRIFT_BOOL:
        *out = json_boolean(v->u.i);
        break;
    case TCH_THRIFT_DOUBLE:
        if (!isfinite(v->u.d))
            return tch_error_set(err, TCH_EINVAL, "double %g cannot be written as JSON", v->u.d);
        *out = json_real(v->u.d);
        break;
    case TCH_THRIFT_STRING:
        *out = json_stringn((const char *)v->u.s.ptr, v->u.s.len);
        if (!*out)
            return tch_error_set(err, TCH_EINVAL, "string is not valid UTF-8 (declare it binary)");
        break;
    case TCH_THRIFT_BINARY:
        *out = base64_json(tch_thrift_value_bytes(v));
        break;
    case TCH_THRIFT_ENUM:
        name = tch_thrift_enum_name_of(t->en, (int32_t)v->u.i);
        *out = name ? json_string(name) : json_integer(v->u.i);
        break;
    default:
        *out = json_integer(v->u.i);
    }
    return *out ? 0 : oom(err);
}

static int to_json(const tch_thrift_type *t, const tch_thrift_value *v, int depth, json_t **out, tch_error *err) {
    if (depth > TCH_THRIFT_MAX_DEPTH)
        return tch_error_set(err, TCH_ETOOBIG, "nested more than %d deep", TCH_THRIFT_MAX_DEPTH);
    if (v->kind != value_kind_of(t))
        return kind_error(err, t, tch_thrift_kind_name(v->kind));
    switch (t->kind) {
    case TCH_THRIFT_STRUCT:
        return struct_to_json(t->st, v, depth, out, err);
    case TCH_THRIFT_LIST:
    case TCH_THRIFT_SET:
        return list_to_json(t, v, depth, out, err);
    case TCH_THRIFT_MAP:
        return map_to_json(t, v, depth, out, err);
    default:
        return scalar_to_json(t, v, out, err);
    }
}

int tch_thrift_to_json(const tch_thrift_type *t, const tch_thrift_value *v, json_t **out, tch_error *err) {
    if (!t || !v || !out)
        return tch_error_set(err, TCH_EINVAL, "thrift json: missing argument");
    int rc = to_json(t, v, 0, out, err);
    if (rc && rc != TCH_ENOMEM)
        tch__thrift_wrap(err, "thrift to json", NULL);
    return rc;
}

int tch_thrift_struct_to_json(const tch_thrift_struct *st, const tch_thrift_value *v, json_t **out, tch_error *err) {
    if (!st)
        return tch_error_set(err, TCH_EINVAL, "thrift json: missing argument");
    return tch_thrift_to_json(&st->self, v, out, err);
}

/* ---------------------------------------------------------- JSON -> value */

static int from_json(const tch_thrift_type *t, const json_t *j, int depth, tch_thrift_value **out, tch_error *err);

static const char *json_kind(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "real";
    case JSON_TRUE: case JSON_FALSE: return "boolean";
    default: return "null";
    }
}

static int int_from_json(const tch_thrift_type *t, const json_t *j, tch_thrift_value **out, tch_error *err) {
    if (!json_is_integer(j))
        return kind_error(err, t, json_kind(j));
    json_int_t i = json_integer_value(j);
    int64_t lo = t->kind == TCH_THRIFT_BYTE ? INT8_MIN : t->kind == TCH_THRIFT_I16 ? INT16_MIN
               : t->kind == TCH_THRIFT_I64 ? INT64_MIN : INT32_MIN;
    int64_t hi = t->kind == TCH_THRIFT_BYTE ? INT8_MAX : t->kind == TCH_THRIFT_I16 ? INT16_MAX
               : t->kind == TCH_THRIFT_I64 ? INT64_MAX : INT32_MAX;
    if (i < lo || i > hi)
        return tch_error_set(err, TCH_EINVAL, "%lld out of range for %s", (long long)i, tch_thrift_kind_name(t->kind));
    switch (t->kind) {
    case TCH_THRIFT_BYTE: *out = tch_thrift_value_new_byte((int8_t)i); break;
    case TCH_THRIFT_I16: *out = tch_thrift_value_new_i16((int16_t)i); break;
    case TCH_THRIFT_I64: *out = tch_thrift_value_new_i64(i); break;
    default: *out = tch_thrift_value_new_i32((int32_t)i); break;
    }
    return *out ? 0 : oom(err);
}

static int enum_from_json(const tch_thrift_type *t, const json_t *j, tch_thrift_value **out, tch_error *err) {
    if (json_is_integer(j))
        return int_from_json(t, j, out, err);
    if (!json_is_string(j))
        return kind_error(err, t, json_kind(j));
    int32_t v;
    if (tch_thrift_enum_value_of(t->en, json_string_value(j), &v))
        return tch_error_set(err, TCH_EINVAL, "'%s' is not a value of enum %s", json_string_value(j), t->en->name);
    *out = tch_thrift_value_new_i32(v);
    return *out ? 0 : oom(err);
}

static int binary_from_json(const tch_thrift_type *t, const json_t *j, tch_thrift_value **out, tch_error *err) {
    tch_buf b = {0};
    int rc = 0;
    if (json_is_string(j)) {
        rc = tch_base64_decode(json_string_value(j), json_string_length(j), &b);
        if (rc == TCH_EPARSE) /* a bad value, like every other from_json error */
            rc = tch_error_set(err, TCH_EINVAL, "binary: not valid base64");
    } else if (json_is_array(j)) { /* [104, 105] */
        size_t i;
        json_t *e;
        json_array_foreach(j, i, e) {
            if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) > 255) {
                rc = tch_error_set(err, TCH_EINVAL, "binary: element %zu is not a byte", i);
                break;
            }
            uint8_t byte = (uint8_t)json_integer_value(e);
            if (tch_buf_append(&b, &byte, 1)) {
                rc = TCH_ENOMEM;
                break;
            }
        }
    } else {
        rc = kind_error(err, t, json_kind(j));
    }
    if (!rc && !(*out = tch_thrift_value_new_string(tch_buf_slice(&b))))
        rc = TCH_ENOMEM;
    tch_buf_free(&b);
    return rc == TCH_ENOMEM ? oom(err) : rc;
}

static int scalar_from_json(const tch_thrift_type *t, const json_t *j, tch_thrift_value **out, tch_error *err) {
    switch (t->kind) {
    case TCH_THRIFT_BOOL:
        if (!json_is_boolean(j))
            return kind_error(err, t, json_kind(j));
        *out = tch_thrift_value_new_bool(json_is_true(j));
        break;
    case TCH_THRIFT_DOUBLE:
        if (!json_is_number(j))
            return kind_error(err, t, json_kind(j));
        *out = tch_thrift_value_new_double(json_number_value(j));
        break;
    case TCH_THRIFT_STRING:
        if (!json_is_string(j))
            return kind_error(err, t, json_kind(j));
        *out = tch_thrift_value_new_string(tch_slice_of(json_string_value(j), json_string_length(j)));
        break;
    case TCH_THRIFT_BINARY:
        return binary_from_json(t, j, out, err);
    case TCH_THRIFT_ENUM:
        return enum_from_json(t, j, out, err);
    default:
        return int_from_json(t, j, out, err);
    }
    return *out ? 0 : oom(err);
}

/* Missing fields: the IDL default if there is one, else an error if required. */
static int struct_finish(const tch_thrift_struct *st, tch_thrift_value *v, tch_error *err) {
    for (size_t i = 0; i < st->fields.n; i++) {
        const tch_thrift_field *f = st->fields.items[i];
        if (tch_thrift_value_struct_get(v, f->id))
            continue;
        if (f->def) {
            tch_thrift_value *d = tch_thrift_value_copy(f->def);
            if (!d || tch_thrift_value_struct_set_take(v, f->id, d))
                return oom(err);
        } else if (f->req == TCH_THRIFT_REQ_REQUIRED) {
            return tch_error_set(err, TCH_EINVAL, "%s: required field '%s' missing", st->name, f->name);
        }
    }
    if (st->kind == TCH_THRIFT_STRUCT_UNION && tch_thrift_value_struct_count(v) > 1)
        return tch_error_set(err, TCH_EINVAL, "union %s: more than one field set", st->name);
    return 0;
}

static int struct_from_json(const tch_thrift_struct *st, const json_t *j, int depth, tch_thrift_value **out,
                            tch_error *err) {
    if (!json_is_object(j))
        return tch_error_set(err, TCH_EINVAL, "expected object for %s, got %s", st->name, json_kind(j));
    tch_thrift_value *v = tch_thrift_value_new_struct();
    if (!v)
        return oom(err);
    const char *key;
    json_t *fj;
    int rc = 0;
    json_object_foreach((json_t *)j, key, fj) {
        const tch_thrift_field *f = tch_thrift_struct_field_by_name(st, key);
        if (!f) {
            rc = tch_error_set(err, TCH_EINVAL, "%s has no field '%s'", st->name, key);
            break;
        }
        if (json_is_null(fj))
            continue; /* null means unset */
        tch_thrift_value *fv;
        if ((rc = from_json(f->type, fj, depth + 1, &fv, err))) {
            if (rc != TCH_ENOMEM)
                tch__thrift_wrap(err, f->name, NULL);
            break;
        }
        if (tch_thrift_value_struct_set_take(v, f->id, fv)) {
            rc = oom(err);
            break;
        }
    }
    if (!rc)
        rc = struct_finish(st, v, err);
    if (rc) {
        tch_thrift_value_free(v);
        return rc;
    }
    *out = v;
    return 0;
}

static int list_from_json(const tch_thrift_type *t, const json_t *j, int depth, tch_thrift_value **out,
                          tch_error *err) {
    if (!json_is_array(j))
        return kind_error(err, t, json_kind(j));
    tch_thrift_value *v = t->kind == TCH_THRIFT_LIST ? tch_thrift_value_new_list() : tch_thrift_value_new_set();
    if (!v)
        return oom(err);
    size_t i;
    json_t *e;
    json_array_foreach(j, i, e) {
        tch_thrift_value *ev;
        int rc = from_json(t->elem, e, depth + 1, &ev, err);
        if (!rc && tch_thrift_value_append_take(v, ev))
            rc = oom(err);
        if (rc) {
            tch_thrift_value_free(v);
            if (rc != TCH_ENOMEM) {
                char idx[32];
                snprintf(idx, sizeof idx, "[%zu]", i);
                tch__thrift_wrap(err, idx, NULL);
            }
            return rc;
        }
    }
    *out = v;
    return 0;
}

/* An object key as a map key: the string itself, or an enum name (or the
 * decimal number map_to_json writes for an unnamed enum value). */
static int key_from_string(const tch_thrift_type *kt, const char *key, size_t len, tch_thrift_value **out,
                           tch_error *err) {
    if (kt->kind == TCH_THRIFT_STRING) {
        *out = tch_thrift_value_new_string(tch_slice_of(key, len));
        return *out ? 0 : oom(err);
    }
    char *end = NULL;
    long long n = strtoll(key, &end, 10);
    json_t *j = (len && end == key + len) ? json_integer(n) : json_stringn(key, len);
    if (!j)
        return oom(err);
    int rc = from_json(kt, j, 0, out, err);
    json_decref(j);
    return rc;
}

static int map_put_json(const tch_thrift_type *t, tch_thrift_value *m, tch_thrift_value *k, const json_t *vj,
                        int depth, tch_error *err) {
    tch_thrift_value *v;
    int rc = from_json(t->val, vj, depth + 1, &v, err);
    if (rc) {
        tch_thrift_value_free(k);
        return rc;
    }
    return tch_thrift_value_map_put_take(m, k, v) ? oom(err) : 0;
}

/* Two spellings of one enum value ("A" and "0") would put its key in the
 * map twice: refused, naming both. `seen` maps each key as map_to_json
 * would write it to the spelling that gave it. */
static int check_enum_key(const tch_thrift_type *kt, const tch_thrift_value *k, const char *key, size_t klen,
                          json_t *seen, tch_error *err) {
    json_t *canon;
    int rc = object_key(kt, k, 0, &canon, err);
    if (rc)
        return rc;
    const char *cs = json_string_value(canon);
    size_t cl = json_string_length(canon);
    json_t *first = json_object_getn(seen, cs, cl);
    if (first)
        rc = tch_error_set(err, TCH_EINVAL, "keys \"%s\" and \"%.*s\" are the same %s value",
                           json_string_value(first), (int)klen, key, tch_thrift_enum_name(kt->en));
    else if (json_object_setn_new(seen, cs, cl, json_stringn(key, klen)))
        rc = oom(err);
    json_decref(canon);
    return rc;
}

static int object_map_from_json(const tch_thrift_type *t, const json_t *j, int depth, tch_thrift_value *m,
                                tch_error *err) {
    json_t *seen = t->elem->kind == TCH_THRIFT_ENUM ? json_object() : NULL;
    if (t->elem->kind == TCH_THRIFT_ENUM && !seen)
        return oom(err);
    const char *key;
    size_t klen;
    json_t *vj;
    void *tmp;
    int rc = 0;
    json_object_keylen_foreach_safe((json_t *)j, tmp, key, klen, vj) {
        tch_thrift_value *k;
        if ((rc = key_from_string(t->elem, key, klen, &k, err)))
            break;
        if (seen && (rc = check_enum_key(t->elem, k, key, klen, seen, err))) {
            tch_thrift_value_free(k);
            break;
        }
        if ((rc = map_put_json(t, m, k, vj, depth, err)))
            break;
    }
    json_decref(seen);
    return rc;
}

static int map_from_json(const tch_thrift_type *t, const json_t *j, int depth, tch_thrift_value **out, tch_error *err) {
    if (!json_is_object(j) && !json_is_array(j))
        return kind_error(err, t, json_kind(j));
    if (json_is_object(j) && !is_object_key_type(t->elem))
        return tch_error_set(err, TCH_EINVAL, "map with %s keys is a list of {\"key\", \"value\"} objects",
                             tch_thrift_kind_name(t->elem->kind));
    tch_thrift_value *m = tch_thrift_value_new_map();
    if (!m)
        return oom(err);
    int rc = 0;
    if (json_is_object(j)) {
        rc = object_map_from_json(t, j, depth, m, err);
    } else {
        size_t i;
        json_t *pair;
        json_array_foreach(j, i, pair) {
            json_t *kj = json_object_get(pair, "key"), *vj = json_object_get(pair, "value");
            tch_thrift_value *k;
            if (!kj || !vj || json_object_size(pair) != 2) {
                rc = tch_error_set(err, TCH_EINVAL, "[%zu]: expected {\"key\": k, \"value\": v}", i);
                break;
            }
            if ((rc = from_json(t->elem, kj, depth + 1, &k, err)) || (rc = map_put_json(t, m, k, vj, depth, err)))
                break;
        }
    }
    if (rc) {
        tch_thrift_value_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

static int from_json(const tch_thrift_type *t, const json_t *j, int depth, tch_thrift_value **out, tch_error *err) {
    if (depth > TCH_THRIFT_MAX_DEPTH)
        return tch_error_set(err, TCH_ETOOBIG, "nested more than %d deep", TCH_THRIFT_MAX_DEPTH);
    switch (t->kind) {
    case TCH_THRIFT_STRUCT:
        return struct_from_json(t->st, j, depth, out, err);
    case TCH_THRIFT_LIST:
    case TCH_THRIFT_SET:
        return list_from_json(t, j, depth, out, err);
    case TCH_THRIFT_MAP:
        return map_from_json(t, j, depth, out, err);
    default:
        return scalar_from_json(t, j, out, err);
    }
}

int tch_thrift_from_json(const tch_thrift_type *t, const json_t *j, tch_thrift_value **out, tch_error *err) {
    if (!t || !j || !out)
        return tch_error_set(err, TCH_EINVAL, "thrift json: missing argument");
    int rc = from_json(t, j, 0, out, err);
    if (rc && rc != TCH_ENOMEM)
        tch__thrift_wrap(err, "thrift from json", NULL);
    return rc;
}

int tch_thrift_struct_from_json(const tch_thrift_struct *st, const json_t *j, tch_thrift_value **out, tch_error *err) {
    if (!st)
        return tch_error_set(err, TCH_EINVAL, "thrift json: missing argument");
    return tch_thrift_from_json(&st->self, j, out, err);
}
