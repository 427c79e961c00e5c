/* libFuzzer target: a redaction spec and a body. The input is split at the
 * first NUL: before it, the spec's JSON (or, when it does not parse as
 * JSON, one JSON path); after it, a json body and a thrift-headers arg2.
 * Whatever parses is applied; a redacted body must still be JSON, and a
 * spec must survive its own to_json. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <tchannel/redact.h>

static void apply(const tch_cassette_redaction *r, tch_slice body) {
    tch_kv th[] = {{tch_slice_cstr("as"), tch_slice_cstr("json")},
                                 {tch_slice_cstr("authorization"), tch_slice_cstr("x")}};
    tch_cassette_call c = {.service = tch_slice_cstr("svc"), .endpoint = tch_slice_cstr("ep"),
                           .headers = body, .body = body, .scheme = TCH_CASSETTE_JSON,
                           .transport_headers = th, .n_transport_headers = 2};
    tch_cassette_redacted_call out;
    tch_error err;
    for (int scheme = TCH_CASSETTE_RAW; scheme <= TCH_CASSETTE_THRIFT; scheme++) {
        c.scheme = (tch_cassette_scheme)scheme;
        if (tch_cassette_redaction_call(r, &c, &out, &err) != 0)
            continue;
        json_t *before = json_loadb((const char *)body.ptr, body.len, JSON_DECODE_ANY, NULL);
        json_t *after = json_loadb((const char *)out.call.body.ptr, out.call.body.len,
                                   JSON_DECODE_ANY, NULL);
        if (scheme == TCH_CASSETTE_JSON && before && !after)
            abort(); /* redaction broke a JSON body */
        json_decref(before);
        json_decref(after);
        tch_cassette_redacted_call_free(&out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t spec_len = nul ? (size_t)(nul - data) : size;
    tch_slice body = nul ? tch_slice_of(nul + 1, size - spec_len - 1) : TCH_SLICE_NULL;
    tch_cassette_redaction *r = NULL;
    tch_error err;
    if (tch_cassette_redaction_new(&r, NULL) != 0)
        return 0;
    json_t *spec = json_loadb((const char *)data, spec_len, 0, NULL);
    int rc;
    if (spec) {
        rc = tch_cassette_redaction_set_json(r, spec, &err);
    } else {
        char *path = strndup((const char *)data, spec_len);
        rc = path ? tch_cassette_redaction_add(r, TCH_REDACT_JSON_PATH, path, &err) : -1;
        if (!rc)
            tch_cassette_redaction_add(r, TCH_REDACT_HEADER, "authorization", &err);
        free(path);
    }
    json_decref(spec);
    if (rc == 0) {
        json_t *back = tch_cassette_redaction_to_json(r);
        tch_cassette_redaction *again = NULL;
        if (!back || tch_cassette_redaction_new(&again, NULL) != 0 ||
            tch_cassette_redaction_set_json(again, back, &err) != 0)
            abort(); /* what we list we must read back */
        json_decref(back);
        tch_cassette_redaction_free(again);
        apply(r, body);
    }
    tch_cassette_redaction_free(r);
    return 0;
}
