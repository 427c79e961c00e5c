/* TChannel's Thrift conventions, with no networking: arg1 "Service::method",
 * arg2 application headers (nh:2 (k~2 v~2){nh}), what a result struct holds,
 * and the method-level JSON helpers built on the codec (args and results as
 * the VCR and command-line client show them). */
#include "thrift_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int tch_thrift_method_check_supported(const tch_thrift_method *m, tch_error *err) {
    if (!m)
        return tch_error_set(err, TCH_EINVAL, "thrift: no method");
    if (m->oneway)
        return tch_error_set(err, TCH_EINVAL, "%s::%s: oneway methods are not supported by TChannel Thrift",
                             m->service->name, m->name);
    return 0;
}

/* ------------------------------------------------------------------- arg1 */

int tch_thrift_arg1_split(tch_slice arg1, tch_slice *service, tch_slice *method, tch_error *err) {
    for (size_t i = 0; i + 1 < arg1.len; i++) {
        if (arg1.ptr[i] == ':' && arg1.ptr[i + 1] == ':') {
            if (i == 0 || i + 2 == arg1.len)
                break;
            *service = tch_slice_of(arg1.ptr, i);
            *method = tch_slice_of(arg1.ptr + i + 2, arg1.len - i - 2);
            return 0;
        }
    }
    return tch_error_set(err, TCH_EPROTO, "thrift arg1 '%.*s' is not Service::method",
                         (int)(arg1.len > 100 ? 100 : arg1.len), arg1.ptr ? (const char *)arg1.ptr : "");
}

int tch_thrift_arg1_join(const char *service, const char *method, tch_buf *out, tch_error *err) {
    if (!service || !method || !*service || !*method || strstr(service, "::"))
        return tch_error_set(err, TCH_EINVAL, "thrift arg1: need a service and a method name");
    if (tch_buf_append(out, service, strlen(service)) || tch_buf_append(out, "::", 2) ||
        tch_buf_append(out, method, strlen(method)))
        return tch_error_set(err, TCH_ENOMEM, "thrift arg1: out of memory");
    return 0;
}

/* ------------------------------------------------------------------- arg2 */

static int get_u16(tch_slice in, size_t *pos, uint16_t *v) {
    if (in.len - *pos < 2)
        return TCH_EPROTO;
    *v = (uint16_t)(in.ptr[*pos] << 8 | in.ptr[*pos + 1]);
    *pos += 2;
    return 0;
}

/* A k~2 or v~2 string as a view into in. */
static int get_str(tch_slice in, size_t *pos, tch_slice *s) {
    uint16_t n;
    if (get_u16(in, pos, &n) || in.len - *pos < n)
        return TCH_EPROTO;
    *s = tch_slice_of(in.ptr + *pos, n);
    *pos += n;
    return 0;
}

int tch_thrift_headers_decode(tch_slice arg2, tch_kv **headers, size_t *count, tch_error *err) {
    *headers = NULL;
    *count = 0;
    if (arg2.len == 0)
        return 0;
    size_t pos = 0;
    uint16_t nh;
    if (get_u16(arg2, &pos, &nh))
        return tch_error_set(err, TCH_EPROTO, "thrift headers: truncated count");
    /* each header needs at least 4 bytes: refuse counts the input cannot hold
     * before allocating for them */
    if ((size_t)nh * 4 > arg2.len - pos)
        return tch_error_set(err, TCH_EPROTO, "thrift headers: %u headers cannot fit in %zu bytes", nh,
                             arg2.len - pos);
    tch_kv *h = nh ? calloc(nh, sizeof *h) : NULL;
    if (nh && !h)
        return tch_error_set(err, TCH_ENOMEM, "thrift headers: out of memory");
    for (size_t i = 0; i < nh; i++) {
        if (get_str(arg2, &pos, &h[i].key) || get_str(arg2, &pos, &h[i].value)) {
            free(h);
            return tch_error_set(err, TCH_EPROTO, "thrift headers: header %zu truncated", i);
        }
    }
    if (pos != arg2.len) {
        free(h);
        return tch_error_set(err, TCH_EPROTO, "thrift headers: %zu trailing bytes", arg2.len - pos);
    }
    *headers = h;
    *count = nh;
    return 0;
}

static int put_u16(tch_buf *out, size_t v) {
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    return tch_buf_append(out, b, 2);
}

static int cmp_header_keys(const void *a, const void *b) {
    const tch_slice *x = *(const tch_slice *const *)a, *y = *(const tch_slice *const *)b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = n ? memcmp(x->ptr, y->ptr, n) : 0;
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* The Node peer refuses a header with an empty key or a key given twice
 * (the whole arg2 then fails to parse): refuse them here, naming the key. */
static int check_header_keys(const tch_kv *headers, size_t count, tch_error *err) {
    for (size_t i = 0; i < count; i++)
        if (headers[i].key.len == 0)
            return tch_error_set(err, TCH_EINVAL, "thrift headers: header %zu has an empty key", i);
    if (count < 2)
        return 0;
    const tch_slice **keys = malloc(count * sizeof *keys);
    if (!keys)
        return tch_error_set(err, TCH_ENOMEM, "thrift headers: out of memory");
    for (size_t i = 0; i < count; i++)
        keys[i] = &headers[i].key;
    qsort(keys, count, sizeof *keys, cmp_header_keys);
    int rc = 0;
    for (size_t i = 1; !rc && i < count; i++)
        if (cmp_header_keys(&keys[i - 1], &keys[i]) == 0)
            rc = tch_error_set(err, TCH_EINVAL, "thrift headers: key \"%.*s\" given twice",
                               (int)(keys[i]->len > 100 ? 100 : keys[i]->len),
                               (const char *)keys[i]->ptr);
    free(keys);
    return rc;
}

int tch_thrift_headers_encode(const tch_kv *headers, size_t count, tch_buf *out, tch_error *err) {
    if (count > UINT16_MAX)
        return tch_error_set(err, TCH_ETOOBIG, "thrift headers: %zu headers (max 65535)", count);
    int checked = check_header_keys(headers, count, err);
    if (checked)
        return checked;
    for (size_t i = 0; i < count; i++)
        if (headers[i].key.len > UINT16_MAX || headers[i].value.len > UINT16_MAX)
            return tch_error_set(err, TCH_ETOOBIG, "thrift headers: header %zu longer than 65535 bytes", i);
    size_t start = out->len;
    int rc = put_u16(out, count);
    for (size_t i = 0; !rc && i < count; i++)
        rc = put_u16(out, headers[i].key.len) || tch_buf_append_slice(out, headers[i].key) ||
             put_u16(out, headers[i].value.len) || tch_buf_append_slice(out, headers[i].value);
    if (rc) {
        out->len = start;
        return tch_error_set(err, TCH_ENOMEM, "thrift headers: out of memory");
    }
    return 0;
}

/* ----------------------------------------------------------------- result */

int tch_thrift_result_classify(const tch_thrift_method *m, const tch_thrift_value *result, tch_thrift_outcome *out,
                               tch_error *err) {
    if (!m || !result || tch_thrift_value_kind(result) != TCH_THRIFT_STRUCT)
        return tch_error_set(err, TCH_EINVAL, "thrift result: missing method or result struct");
    size_t n = tch_thrift_value_struct_count(result);
    memset(out, 0, sizeof *out);
    if (n == 0) {
        if (m->ret)
            return tch_error_set(err, TCH_EPROTO, "%s::%s: result holds no value (method is not void)",
                                 m->service->name, m->name);
        out->kind = TCH_THRIFT_OUTCOME_SUCCESS;
        return 0;
    }
    if (n > 1)
        return tch_error_set(err, TCH_EPROTO, "%s::%s: result holds %zu values", m->service->name, m->name, n);
    int16_t id;
    out->value = tch_thrift_value_struct_at(result, 0, &id);
    out->field = tch_thrift_struct_field_by_id(m->result, id);
    if (!out->field)
        return tch_error_set(err, TCH_EPROTO, "%s::%s: result field %d is not declared", m->service->name, m->name,
                             id);
    out->kind = id == 0 && m->ret ? TCH_THRIFT_OUTCOME_SUCCESS : TCH_THRIFT_OUTCOME_EXCEPTION;
    return 0;
}

/* ------------------------------------------------------------ method JSON */

int tch_thrift_method_args_from_json(const tch_thrift_method *m, const json_t *args, tch_buf *out, tch_error *err) {
    int rc = tch_thrift_method_check_supported(m, err);
    if (rc)
        return rc;
    tch_thrift_value *v;
    if ((rc = tch_thrift_struct_from_json(m->args, args, &v, err)))
        return rc;
    rc = tch_thrift_encode(m->args, v, out, err);
    tch_thrift_value_free(v);
    return rc;
}

int tch_thrift_method_args_to_json(const tch_thrift_method *m, tch_slice bytes, json_t **out, tch_error *err) {
    int rc = tch_thrift_method_check_supported(m, err);
    if (rc)
        return rc;
    tch_thrift_value *v;
    if ((rc = tch_thrift_decode(m->args, bytes, &v, err)))
        return rc;
    rc = tch_thrift_struct_to_json(m->args, v, out, err);
    tch_thrift_value_free(v);
    return rc;
}

int tch_thrift_method_result_from_json(const tch_thrift_method *m, const json_t *result, tch_buf *out,
                                       tch_error *err) {
    int rc = tch_thrift_method_check_supported(m, err);
    if (rc)
        return rc;
    /* void methods answer {"success": null} (what result_to_json writes) */
    json_t *copy = NULL;
    if (!m->ret && json_is_object(result) && json_is_null(json_object_get(result, "success"))) {
        if (!(copy = json_copy((json_t *)result)) || json_object_del(copy, "success")) {
            json_decref(copy);
            return tch_error_set(err, TCH_ENOMEM, "thrift json: out of memory");
        }
        result = copy;
    }
    tch_thrift_value *v;
    rc = tch_thrift_struct_from_json(m->result, result, &v, err);
    json_decref(copy);
    if (rc)
        return rc;
    tch_thrift_outcome oc;
    if (!(rc = tch_thrift_result_classify(m, v, &oc, err)))
        rc = tch_thrift_encode(m->result, v, out, err);
    tch_thrift_value_free(v);
    return rc;
}

int tch_thrift_method_result_to_json(const tch_thrift_method *m, tch_slice bytes, json_t **out, tch_error *err) {
    int rc = tch_thrift_method_check_supported(m, err);
    if (rc)
        return rc;
    tch_thrift_value *v;
    if ((rc = tch_thrift_decode(m->result, bytes, &v, err)))
        return rc;
    tch_thrift_outcome oc;
    if (!(rc = tch_thrift_result_classify(m, v, &oc, err))) {
        if (!oc.field) { /* void success: say so explicitly */
            *out = json_pack("{s:n}", "success");
            rc = *out ? 0 : tch_error_set(err, TCH_ENOMEM, "thrift json: out of memory");
        } else {
            rc = tch_thrift_struct_to_json(m->result, v, out, err);
        }
    }
    tch_thrift_value_free(v);
    return rc;
}
