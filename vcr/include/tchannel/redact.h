/* Declarative redaction: what a recording must not keep, by name.
 *
 *     tch_cassette_redaction *r;
 *     tch_cassette_redaction_new(&r, &err);
 *     tch_cassette_redaction_add(r, TCH_REDACT_HEADER, "authorization", &err);
 *     tch_cassette_redaction_add(r, TCH_REDACT_JSON_PATH, "$.user.password", &err);
 *
 * Before an interaction is stored, each named value is replaced by the
 * placeholder TCH_CASSETTE_REDACTED:
 *   - transport headers by key (request; "as" cannot be redacted);
 *   - application headers (arg2) by key, in json and thrift calls, request
 *     and response (raw arg2 is opaque bytes and is left alone);
 *   - JSON paths ($.a.b, $['a b'], $.list[0], $.list[*], $.*) in json
 *     bodies, request and response;
 *   - Thrift fields by name, at any depth, in thrift bodies decoded with the
 *     IDL (request args and response result); only string and binary fields
 *     can hold the placeholder, any other type is an error naming it.
 * Names compare without regard to case, except JSON keys and Thrift fields.
 * The matcher treats a recorded placeholder as "anything" (tchannel/stub.h),
 * so a replay still matches the live request.
 *
 * A redaction is plain data; once filled it may be shared (const) by any
 * number of cassettes, VCRs or threads. */
#ifndef TCHANNEL_REDACT_H
#define TCHANNEL_REDACT_H

#include <tchannel/cassette.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; the rest of the library is hidden */

#define TCH_CASSETTE_REDACTED "<redacted>"

typedef enum tch_redact_kind {
    TCH_REDACT_HEADER = 0,        /* application header (arg2) key */
    TCH_REDACT_TRANSPORT_HEADER,  /* transport header key */
    TCH_REDACT_JSON_PATH,         /* JSONPath in a json body */
    TCH_REDACT_THRIFT_FIELD,      /* Thrift field name */
} tch_redact_kind;

typedef struct tch_cassette_redaction tch_cassette_redaction;

/* An empty redaction in *out. Returns 0, TCH_EINVAL (out NULL),
 * TCH_ENOMEM. */
int tch_cassette_redaction_new(tch_cassette_redaction **out, tch_error *err);
void tch_cassette_redaction_free(tch_cassette_redaction *r);
/* Adds one name. A JSON path is parsed here: TCH_EINVAL naming the path and
 * the column that is wrong. An empty name is TCH_EINVAL. Duplicates are
 * kept once. Returns 0, TCH_EINVAL, TCH_ENOMEM. */
int tch_cassette_redaction_add(tch_cassette_redaction *r, tch_redact_kind kind, const char *name,
                               tch_error *err);
/* Replaces everything with spec: {"headers": [..], "transportHeaders": [..],
 * "jsonPaths": [..], "thriftFields": [..]} (each optional). On error r is
 * unchanged and err names the key and item, e.g. "jsonPaths[1]: ...".
 * Returns 0, TCH_EINVAL, TCH_ENOMEM. */
int tch_cassette_redaction_set_json(tch_cassette_redaction *r, const json_t *spec,
                                    tch_error *err);
/* The spec as above, every key present (a new reference; NULL on ENOMEM). */
json_t *tch_cassette_redaction_to_json(const tch_cassette_redaction *r);
/* true when nothing is to be redacted. */
bool tch_cassette_redaction_empty(const tch_cassette_redaction *r);
size_t tch_cassette_redaction_count(const tch_cassette_redaction *r, tch_redact_kind kind);
/* Borrowed IDL for Thrift fields (either or both; `thrift` is asked first).
 * Without any, a thrift body is an error when Thrift fields are named. */
void tch_cassette_redaction_set_idl(tch_cassette_redaction *r, const tch_cassette_thrift *thrift,
                                    const tch_thrift_idl *idl);

/* Redacts a request in place (transport headers, arg2, body). Returns 0,
 * TCH_EINVAL (a body or field that cannot be redacted: not JSON, a thrift
 * field that is not a string, no IDL for the method; err says which),
 * TCH_ENOMEM. */
int tch_cassette_redaction_request(const tch_cassette_redaction *r, tch_cassette_request *req,
                                   tch_error *err);
/* Redacts the answer to req in place (arg2, body); code 1 bodies are read
 * as the result struct too. Returns as tch_cassette_redaction_request. */
int tch_cassette_redaction_response(const tch_cassette_redaction *r,
                                    const tch_cassette_request *req,
                                    tch_cassette_response *resp, tch_error *err);

/* A tch_cassette_redact_cb (ud: the redaction): redacts in the RECORD phase
 * and does nothing in the MATCH phase, where the placeholder matches
 * anything already. Returns as tch_cassette_redaction_request. */
int tch_cassette_redaction_hook(tch_cassette_redact_phase phase, tch_cassette_request *req,
                                tch_cassette_response *resp, void *ud);

/* A redacted copy of a call, for a writer that records views
 * (tch_cassette_record_begin) but forwards the original. `call` is
 * valid until tch_cassette_redacted_call_free. */
typedef struct tch_cassette_redacted_call {
    tch_cassette_call call;
    tch_cassette_request req; /* owns the bytes call points into */
    tch_kv *kv;
} tch_cassette_redacted_call;

/* Returns 0 (out filled; free it with tch_cassette_redacted_call_free),
 * as tch_cassette_redaction_request otherwise. */
int tch_cassette_redaction_call(const tch_cassette_redaction *r, const tch_cassette_call *call,
                                tch_cassette_redacted_call *out, tch_error *err);
void tch_cassette_redacted_call_free(tch_cassette_redacted_call *rc);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
