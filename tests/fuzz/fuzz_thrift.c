/* libFuzzer target: decode arbitrary bytes as a fixed rich struct; whatever
 * decodes must re-encode, decode again to an equal value, and convert to
 * JSON without crashing (JSON may refuse e.g. invalid UTF-8). The same
 * bytes are also read as a Thrift call's arg2 headers, whose encoding has
 * one form: what decodes must encode to exactly the input, unless it holds
 * an empty or repeated key (read leniently, refused when writing). */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <tchannel/thrift.h>

#include "rich_idl.h"

/* An empty key, or a key given twice: what encode refuses. */
static int refused_keys(const tch_kv *h, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (h[i].key.len == 0)
            return 1;
        for (size_t j = 0; j < i; j++)
            if (tch_slice_eq(h[i].key, h[j].key))
                return 1;
    }
    return 0;
}

static void headers_round_trip(tch_slice in) {
    tch_kv *h;
    size_t n;
    tch_buf out = {0};
    if (tch_thrift_headers_decode(in, &h, &n, NULL) != 0)
        return;
    int rc = tch_thrift_headers_encode(h, n, &out, NULL);
    if (rc == TCH_EINVAL && refused_keys(h, n)) { /* read leniently, written strictly */
        free(h);
        tch_buf_free(&out);
        return;
    }
    if (rc != 0)
        abort();
    /* no headers may be written as nothing at all or as a zero count */
    if (!(n == 0 && out.len <= 2) && (out.len != in.len || memcmp(out.ptr, in.ptr, in.len) != 0))
        abort();
    free(h);
    tch_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    headers_round_trip(tch_slice_of(data, size));
    tch_thrift_idl *idl;
    if (tch_thrift_load_string("fuzz.thrift", tch_slice_of(RICH_IDL, sizeof RICH_IDL - 1), NULL, &idl, NULL))
        abort();
    const tch_thrift_struct *st = tch_thrift_idl_find_struct(idl, "R");
    tch_thrift_value *v = NULL, *again = NULL;
    tch_buf out = {0};
    tch_error err;
    if (tch_thrift_decode(st, tch_slice_of(data, size), &v, &err) == 0) {
        if (tch_thrift_encode(st, v, &out, &err) != 0)
            abort(); /* anything we decode must encode */
        if (tch_thrift_decode(st, tch_buf_slice(&out), &again, &err) != 0 || !tch_thrift_value_equal(v, again))
            abort();
        json_t *j = NULL;
        if (tch_thrift_struct_to_json(st, v, &j, &err) == 0) {
            tch_thrift_value *fromj = NULL;
            /* JSON fills IDL defaults, so only require that it converts back */
            if (tch_thrift_struct_from_json(st, j, &fromj, &err) != 0)
                abort();
            tch_thrift_value_free(fromj);
            json_decref(j);
        }
    }
    tch_thrift_value_free(v);
    tch_thrift_value_free(again);
    tch_buf_free(&out);
    tch_thrift_idl_free(idl);
    return 0;
}
