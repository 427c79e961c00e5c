/* Stubs: cassette interactions whose request carries match rules instead
 * of exact values, with a priority, a scenario step, faults, a template
 * flag and a `required` mark. An extension of the v1 cassette format; an
 * interaction without any of it is exact and reads as tchannel-python's.
 *
 * One matcher serves the in-process VCR, tchannel-mock's cassettes and its
 * run-time stubs, and journal queries (tch_stub_rules_match).
 *
 * Rules per field (serviceName, endpoint, argScheme, headers, body,
 * transportHeaders): a plain value is exact; a mapping of one rule is
 *   {any: true} {absent: true} {equalTo: V} {contains: S} {matches: ERE}
 *   {equalToJson: V, ignoreExtraElements: B, ignoreArrayOrder: B}
 *   {matchesJsonPath: "$.a.b[0]"}                      (the path exists)
 *   {matchesJsonPath: {expression: "$.a", <rule>}}     (its value passes)
 * `headers` may also be a mapping of header name to a rule (or a value),
 * and `transportHeaders` a mapping of key to a rule. JSON rules read JSON
 * bodies and headers, thrift headers, and thrift bodies decoded with the
 * cassette's IDL. A recorded value equal to TCH_STUB_REDACTED matches
 * anything (a header value, a JSON value at any path, a thrift field). */
#ifndef TCHANNEL_STUB_H
#define TCHANNEL_STUB_H

#include <tchannel/cassette.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; the rest of the library is hidden */

/* What redaction writes in place of a secret; matching ignores it. */
#define TCH_STUB_REDACTED "<redacted>"

/* The priority of a stub that names none; lower wins. Exact interactions
 * are tried before any stub whose priority is not below this. */
#define TCH_STUB_PRIORITY_DEFAULT 5

/* ---- rule sets: a request's match rules -------------------------------- */

typedef struct tch_stub_rules tch_stub_rules;

/* Parses a request object ({"serviceName": .., "endpoint": .., "argScheme":
 * .., "headers": .., "body": .., "transportHeaders": ..}; a field left out
 * matches anything). Regular expressions are compiled here. Errors name the
 * field and the rule: "body.matchesJsonPath: cannot parse '$.a[': ...".
 * Returns 0, TCH_EINVAL, TCH_ENOMEM. */
int tch_stub_rules_from_json(const json_t *request, tch_stub_rules **out, tch_error *err);
/* The rules as they were given (a new reference; NULL on ENOMEM). */
json_t *tch_stub_rules_to_json(const tch_stub_rules *r);
void tch_stub_rules_free(tch_stub_rules *r);

/* Thrift IDL for reading thrift bodies as JSON; either may be NULL. */
typedef struct tch_stub_idl {
    const tch_cassette_thrift *thrift;
    const tch_thrift_idl *idl;
} tch_stub_idl;

/* 1 when call passes every rule, 0 when not (why, if not NULL, gets which
 * rule failed and how: "body $.user.id: expected 42, got 41"), or a
 * negative TCH_E* (err says why: TCH_EINVAL for a NULL argument,
 * TCH_ENOMEM). idl may be NULL. */
int tch_stub_rules_match(const tch_stub_rules *r, const tch_cassette_call *call,
                         const tch_stub_idl *idl, char *why, size_t whysz, tch_error *err);

/* ---- a stub's extras on an interaction ---------------------------------- */

typedef enum tch_stub_delay_kind {
    TCH_STUB_DELAY_NONE = 0,
    TCH_STUB_DELAY_UNIFORM,   /* min_ms..max_ms, uniform */
    TCH_STUB_DELAY_LOGNORMAL, /* median_ms, sigma */
} tch_stub_delay_kind;

typedef struct tch_stub_delay {
    tch_stub_delay_kind kind;
    uint32_t min_ms, max_ms;
    double median_ms, sigma;
} tch_stub_delay;

typedef enum tch_stub_fault {
    TCH_STUB_FAULT_NONE = 0,
    TCH_STUB_FAULT_CLOSE,        /* `closeConnection`: close instead of answering */
    TCH_STUB_FAULT_NO_ANSWER,    /* `noAnswer`: never answer; the caller times out */
    TCH_STUB_FAULT_BAD_CHECKSUM, /* `badChecksum`: answer with a corrupted checksum */
} tch_stub_fault;

/* Interaction keys beside request/response/error/delay/fault:
 *   id, priority, required, scenario, requiredState, newState,
 *   delayDistribution: {type: uniform, min: MS, max: MS}
 *                    | {type: lognormal, median: MS, sigma: S}
 *   fault: closeConnection | noAnswer | badChecksum   (beside error codes)
 *   response: {template: true, ...}                   */
typedef struct tch_stub_info {
    char *id;               /* owned; NULL when the interaction has none */
    tch_stub_rules *rules;  /* owned; NULL: the request's exact fields match */
    int priority;           /* TCH_STUB_PRIORITY_DEFAULT unless given */
    bool has_priority;
    bool required;          /* tch_cassette_required_unplayed lists it until played */
    char *scenario;         /* owned, or NULL */
    char *required_state;   /* owned, or NULL: any state */
    char *new_state;        /* owned, or NULL: the state stays */
    bool template_response; /* response: {template: true} */
    tch_stub_delay delay;
    tch_stub_fault fault;
} tch_stub_info;

/* The stub part of an interaction, or NULL (a plain exact interaction). */
const tch_stub_info *tch_cassette_stub_of(const tch_cassette_interaction *it);

/* A delay drawn from d (0 for NONE); state is the caller's PRNG state. */
uint32_t tch_stub_delay_sample(const tch_stub_delay *d, uint64_t *state);

/* ---- run-time stubs on a cassette ---------------------------------------- */

/* Adds an interaction from an object with the same fields as a cassette
 * interaction (YAML's field names; bytes as strings). Replayable at once.
 * *id gets its id (given, or "stub-N"), borrowed from the cassette.
 * Returns 0, TCH_EINVAL naming the field for bad input, TCH_ESTATE for an
 * id in use, TCH_ENOMEM. */
int tch_cassette_stub_add(tch_cassette *c, const json_t *interaction, const char **id,
                          tch_error *err);
/* Replaces stub id in place (its play count restarts). Returns 0,
 * TCH_ENOTFOUND (no stub id), TCH_EINVAL (as tch_cassette_stub_add),
 * TCH_ENOMEM. */
int tch_cassette_stub_replace(tch_cassette *c, const char *id, const json_t *interaction,
                              tch_error *err);
/* Removes stub id. Returns 0, TCH_ENOTFOUND. */
int tch_cassette_stub_remove(tch_cassette *c, const char *id, tch_error *err);
/* Removes every stub added at run time (what came from the file stays). */
void tch_cassette_stub_clear(tch_cassette *c);
/* The run-time stubs as a YAML cassette document (appended to out), which
 * tch_cassette_open reads back with their rules. A cassette file's own
 * stubs keep their rules and extras when tch_cassette_save writes it.
 * Returns 0, TCH_ENOMEM. */
int tch_cassette_stubs_emit(const tch_cassette *c, tch_buf *out, tch_error *err);
/* Index of the interaction with this id: 0 or TCH_ENOTFOUND. */
int tch_cassette_stub_find(const tch_cassette *c, const char *id, size_t *index);
/* An interaction as the object tch_cassette_stub_add reads, plus "plays";
 * NULL for an index without one, or on ENOMEM. */
json_t *tch_cassette_interaction_to_json(const tch_cassette *c, size_t index);

/* ---- required ------------------------------------------------------------ */

/* The indexes of interactions marked `required: true` that were never
 * played, in order: *out malloc'd (NULL when *n is 0). Returns 0,
 * TCH_ENOMEM. */
int tch_cassette_required_unplayed(const tch_cassette *c, size_t **out, size_t *n);

/* ---- scenarios ------------------------------------------------------------ */

#define TCH_STUB_STATE_STARTED "Started"

/* [{"name": .., "state": .., "possibleStates": [..]}], names sorted. */
json_t *tch_cassette_scenarios(const tch_cassette *c);
/* Returns 0, TCH_ENOTFOUND for a scenario no interaction names,
 * TCH_EINVAL (no name, no or an empty state), TCH_ENOMEM. */
int tch_cassette_scenario_set(tch_cassette *c, const char *name, const char *state,
                              tch_error *err);
/* Every scenario back to "Started". */
void tch_cassette_scenarios_reset(tch_cassette *c);

/* A YAML text (one document) as JSON, for stubs written in YAML: plain
 * true/false/null and numbers as such, everything else a string. Errors
 * name the line. Aliases expand, within a bound. Returns 0 (*out a new
 * reference), TCH_EPARSE, TCH_ENOMEM. */
int tch_stub_yaml_to_json(const char *data, size_t len, json_t **out, tch_error *err);

/* ---- templates ------------------------------------------------------------ */

/* The answer of interaction `index` for `call`: its response with every
 * {{...}} filled when the stub asks for templating (else the response
 * copied). arg2/arg3 receive the bytes; *code the response code. A value
 * that cannot be filled is TCH_EINVAL, err naming the stub and the value.
 * Returns 0, TCH_EINVAL, TCH_ENOMEM. */
int tch_cassette_render_response(tch_cassette *c, size_t index, const tch_cassette_call *call,
                                 int *code, tch_buf *arg2, tch_buf *arg3, tch_error *err);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
