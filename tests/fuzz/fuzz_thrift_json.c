/* libFuzzer target: arbitrary bytes as JSON for a fixed rich struct, the
 * way tcurl and cassettes with decoded Thrift bodies read it. Whatever
 * converts must encode, decode to an equal value, and survive a trip
 * through JSON unchanged (defaults are filled on the first conversion, so
 * the second adds nothing). */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <tchannel/thrift.h>

#include "rich_idl.h"

static void round_trip(const tch_thrift_struct *st, const tch_thrift_value *v) {
    tch_buf out = {0};
    tch_thrift_value *decoded = NULL, *again = NULL;
    json_t *j = NULL;
    tch_error err;
    if (tch_thrift_encode(st, v, &out, &err) != 0)
        abort(); /* what JSON accepted must encode */
    if (tch_thrift_decode(st, tch_buf_slice(&out), &decoded, &err) != 0 ||
        !tch_thrift_value_equal(v, decoded))
        abort();
    if (tch_thrift_struct_to_json(st, v, &j, &err) != 0)
        abort(); /* it came from JSON: its strings are UTF-8, its doubles finite */
    if (tch_thrift_struct_from_json(st, j, &again, &err) != 0 || !tch_thrift_value_equal(v, again))
        abort();
    json_decref(j);
    tch_thrift_value_free(again);
    tch_thrift_value_free(decoded);
    tch_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tch_thrift_idl *idl;
    if (tch_thrift_load_string("fuzz.thrift", tch_slice_of(RICH_IDL, sizeof RICH_IDL - 1), NULL,
                               &idl, NULL))
        abort();
    const tch_thrift_struct *st = tch_thrift_idl_find_struct(idl, "R");
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    tch_thrift_value *v = NULL;
    tch_error err;
    if (j && tch_thrift_struct_from_json(st, j, &v, &err) == 0)
        round_trip(st, v);
    tch_thrift_value_free(v);
    json_decref(j);
    tch_thrift_idl_free(idl);
    return 0;
}
