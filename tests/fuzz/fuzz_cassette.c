/* libFuzzer target: load a cassette from memory, and for anything that
 * loads, exercise the paths a loaded cassette feeds: emit it again, reload
 * the emitted text, and look its first request up. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <tchannel/cassette.h>

static void exercise(tch_cassette *c) {
    tch_buf out = {0};
    tch_error err;
    if (tch_cassette_emit(c, &out, &err) == 0) {
        tch_cassette *again = NULL;
        /* what we write we must read back */
        if (tch_cassette_open_memory("re-emitted", out.ptr, out.len, NULL, &again, &err) != 0)
            abort();
        if (tch_cassette_count(again) != tch_cassette_count(c))
            abort();
        tch_cassette_free(again);
    }
    tch_buf_free(&out);
    const tch_cassette_interaction *it = tch_cassette_get(c, 0);
    if (!it)
        return;
    tch_cassette_call call = {
        .service = tch_buf_slice(&it->request.service),
        .endpoint = tch_buf_slice(&it->request.endpoint),
        .headers = tch_buf_slice(&it->request.headers),
        .body = tch_buf_slice(&it->request.body),
        .scheme = it->request.scheme,
    };
    tch_cassette_decision d;
    for (int i = 0; i < 2; i++) { /* a replay, then (usually) a near-miss */
        tch_cassette_lookup(c, &call, &d, &err);
        json_t *j = tch_cassette_near_miss_to_json(&d.near_miss);
        json_decref(j);
        tch_cassette_decision_clear(&d);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tch_cassette_options o;
    tch_cassette *c = NULL;
    tch_error err;
    tch_cassette_options_init(&o);
    o.mode = TCH_CASSETTE_NONE;
    o.no_env_override = 1;
    if (tch_cassette_open_memory("fuzz.yaml", data, size, &o, &c, &err) == 0) {
        exercise(c);
        tch_cassette_free(c);
    }
    return 0;
}
