/* libFuzzer target: the stub parsers. The first byte picks what the rest
 * is: a request object of match rules (JSON), a JSONPath, a stub in YAML,
 * or a response template; whatever parses is then used (matched against a
 * request, added to a cassette, looked up, written back as JSON). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tchannel/stub.h>

static const tch_cassette_call CALL = {
    .service = {(const uint8_t *)"kv", 2},
    .endpoint = {(const uint8_t *)"get", 3},
    .headers = {(const uint8_t *)"{\"user\":\"a\"}", 12},
    .body = {(const uint8_t *)"{\"a\":{\"b\":[1,\"x\",{\"c\":null}]},\"k\":\"v\"}", 37},
    .scheme = TCH_CASSETTE_JSON,
};

static void rules(const json_t *request) {
    tch_stub_rules *rs = NULL;
    tch_error err;
    char why[256];
    if (tch_stub_rules_from_json(request, &rs, &err) != 0)
        return;
    int rc = tch_stub_rules_match(rs, &CALL, NULL, why, sizeof why, &err);
    if (rc != 0 && rc != 1)
        abort(); /* a parsed rule set always runs */
    json_decref(tch_stub_rules_to_json(rs));
    tch_stub_rules_free(rs);
}

static void stub(const json_t *interaction) {
    tch_cassette *c = NULL;
    tch_error err;
    tch_cassette_options o;
    tch_cassette_options_init(&o);
    o.mode = TCH_CASSETTE_NONE;
    o.no_env_override = 1;
    if (tch_cassette_open_memory("fuzz", "", 0, &o, &c, &err))
        abort();
    const char *id = NULL;
    if (tch_cassette_stub_add(c, interaction, &id, &err) == 0) {
        tch_cassette_decision d;
        if (tch_cassette_lookup(c, &CALL, &d, &err) == 0 && d.action == TCH_CASSETTE_ACT_REPLAY) {
            tch_buf a2 = {0}, a3 = {0};
            int code;
            tch_cassette_render_response(c, d.index, &CALL, &code, &a2, &a3, &err);
            tch_buf_free(&a2);
            tch_buf_free(&a3);
        }
        json_decref(tch_cassette_near_miss_to_json(&d.near_miss));
        tch_cassette_decision_clear(&d);
        json_decref(tch_cassette_interaction_to_json(c, 0));
        json_decref(tch_cassette_scenarios(c));
        if (tch_cassette_stub_remove(c, id, &err))
            abort();
    }
    tch_cassette_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 65536)
        return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    json_t *j = NULL;
    tch_error err;
    switch (data[0] % 4) {
    case 0: /* a rule set */
        j = json_loadb(text, len, 0, NULL);
        if (j)
            rules(j);
        break;
    case 1: { /* a JSONPath */
        json_t *s = json_stringn(text, len);
        j = s ? json_pack("{s:{s:o}}", "body", "matchesJsonPath", s) : NULL;
        if (j)
            rules(j);
        break;
    }
    case 2: /* a stub in YAML */
        if (tch_stub_yaml_to_json(text, len, &j, &err) == 0 && json_is_object(j))
            stub(j);
        break;
    case 3: { /* a response template */
        json_t *s = json_stringn(text, len);
        j = s ? json_pack("{s:{},s:{s:b,s:o}}", "request", "response", "template", 1, "body", s)
              : NULL;
        if (j)
            stub(j);
        break;
    }
    }
    json_decref(j);
    return 0;
}
