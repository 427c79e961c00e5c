/* JSON text helpers (target tch_jsontext, below the channel: tch_common and
 * jansson only). tchannel/json.h includes this header. */
#ifndef TCHANNEL_JSON_TEXT_H
#define TCHANNEL_JSON_TEXT_H

#include <jansson.h>
#include <tchannel/common.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; the rest of the library is hidden */

/* JSON text <-> value, shared by the json scheme, the cassette library and tools. */
/* json_dumps, but reals in the fewest digits (15 to 17) with which every
 * real of v reads back the same: 0.1 as Node writes it, not jansson's
 * 0.10000000000000001 (one precision for the whole text). free() it. */
char *tch_json_dumps(const json_t *v, size_t flags);
/* Appends v's JSON text to out. Returns 0, TCH_EINVAL (v cannot be
 * written: NaN, infinity), TCH_ENOMEM. */
int tch_json_encode(const json_t *v, tch_buf *out, tch_error *err);
/* empty_default: the value for empty input (NULL: empty is an error).
 * Reads what JSON.parse reads: strings may hold "\u0000" (use
 * json_string_length), a lone surrogate escape (a JS string cut inside a
 * pair) reads as U+FFFD, and a text with an integer beyond 64 bits has all
 * its integers as reals (JSON_DECODE_INT_AS_REAL), as Node's are doubles.
 * what names the input in messages. Returns 0 (*out a new reference),
 * TCH_EPARSE (not JSON, or empty without a default; err says where). */
int tch_json_decode(tch_slice in, const char *what, json_t *empty_default,
                    json_t **out, tch_error *err);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
