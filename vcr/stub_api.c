/* Placeholders for the stub API (tchannel/stub.h) until each part lands:
 * every call says it is not available yet. */
#include "cassette_internal.h"

#include <tchannel/stub.h>

#include <stdlib.h>

#define NOT_YET(err) tch_error_set(err, TCH_ESTATE, "%s: not implemented yet", __func__)

int tch_stub_rules_from_json(const json_t *request, tch_stub_rules **out, tch_error *err) {
    (void)request;
    *out = NULL;
    return NOT_YET(err);
}
json_t *tch_stub_rules_to_json(const tch_stub_rules *r) {
    (void)r;
    return NULL;
}
void tch_stub_rules_free(tch_stub_rules *r) {
    (void)r;
}
int tch_stub_rules_match(const tch_stub_rules *r, const tch_cassette_call *call,
                         const tch_stub_idl *idl, char *why, size_t whysz, tch_error *err) {
    (void)r, (void)call, (void)idl, (void)why, (void)whysz;
    return NOT_YET(err);
}
const tch_stub_info *tch_cassette_stub_of(const tch_cassette_interaction *it) {
    return it->stub;
}
uint32_t tch_stub_delay_sample(const tch_stub_delay *d, uint64_t *state) {
    (void)d, (void)state;
    return 0;
}
int tch_cassette_stub_add(tch_cassette *c, const json_t *interaction, const char **id,
                          tch_error *err) {
    (void)c, (void)interaction, (void)id;
    return NOT_YET(err);
}
int tch_cassette_stub_replace(tch_cassette *c, const char *id, const json_t *interaction,
                              tch_error *err) {
    (void)c, (void)id, (void)interaction;
    return NOT_YET(err);
}
int tch_cassette_stub_remove(tch_cassette *c, const char *id, tch_error *err) {
    (void)c, (void)id;
    return NOT_YET(err);
}
void tch_cassette_stub_clear(tch_cassette *c) {
    (void)c;
}
int tch_cassette_stub_find(const tch_cassette *c, const char *id, size_t *index) {
    (void)c, (void)id, (void)index;
    return TCH_ENOTFOUND;
}
json_t *tch_cassette_interaction_to_json(const tch_cassette *c, size_t index) {
    (void)c, (void)index;
    return NULL;
}
int tch_cassette_required_unplayed(const tch_cassette *c, size_t **out, size_t *n) {
    (void)c;
    *out = NULL;
    *n = 0;
    return 0;
}
json_t *tch_cassette_scenarios(const tch_cassette *c) {
    (void)c;
    return json_array();
}
int tch_cassette_scenario_set(tch_cassette *c, const char *name, const char *state,
                              tch_error *err) {
    (void)c, (void)name, (void)state;
    return NOT_YET(err);
}
void tch_cassette_scenarios_reset(tch_cassette *c) {
    (void)c;
}
int tch_cassette_render_response(tch_cassette *c, size_t index, const tch_cassette_call *call,
                                 int *code, tch_buf *arg2, tch_buf *arg3, tch_error *err) {
    (void)c, (void)index, (void)call, (void)code, (void)arg2, (void)arg3;
    return NOT_YET(err);
}
