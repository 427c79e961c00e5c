/* The json arg scheme (transport header as=json): arg2 is a JSON object of
 * application headers (empty arg2 means none), arg3 any JSON value.
 *
 * JSON values handed to callbacks and handlers are borrowed: valid during
 * the call; json_incref() one to keep it (e.g. to answer later). */
#ifndef TCHANNEL_JSON_H
#define TCHANNEL_JSON_H

#include <jansson.h>
#include <tchannel/channel.h>
#include <tchannel/json_text.h> /* tch_json_dumps, _encode, _decode */

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; the rest of the library is hidden */

/* ---- serving ---------------------------------------------------------- */

typedef void (*tch_json_handler_cb)(tch_inbound *in, const json_t *headers,
                                    const json_t *body, void *ud);

/* A request whose arg2/arg3 is not JSON, or whose "as" header names another
 * scheme, is answered with BadRequest naming the problem; fn never sees it.
 * Returns 0, TCH_EINVAL (no endpoint or fn), TCH_ENOMEM. */
int tch_json_register(tch_channel *ch, const char *service,
                      const char *endpoint, tch_json_handler_cb fn, void *ud);
/* Answers with code 0 (ok) or 1 (application error); headers NULL: none.
 * Returns as tch_inbound_respond, or TCH_EINVAL when headers is not an
 * object or a value cannot be written as JSON (the caller then gets an
 * Unexpected error frame). */
int tch_json_respond(tch_inbound *in, uint8_t code, const json_t *headers,
                     const json_t *body);

/* ---- calling ---------------------------------------------------------- */

typedef struct tch_json_response {
    int status;         /* as tch_response; TCH_EPARSE: answer not JSON */
    uint8_t code;
    uint8_t error_code;
    const char *message;
    const json_t *headers; /* an object (empty when none); NULL on error */
    const json_t *body;    /* NULL on error */
} tch_json_response;

typedef void (*tch_json_cb)(const tch_json_response *res, void *ud);

/* opts gives service, endpoint, target, timeout...; its arg2/arg3 and
 * arg_scheme are replaced. headers NULL: none. Returns 0, TCH_EINVAL
 * (headers not an object, a value not writable as JSON), TCH_ENOMEM, or
 * tch_channel_call's errors. */
int tch_json_call(tch_channel *ch, const tch_call_opts *opts,
                  const json_t *headers, const json_t *body, tch_json_cb cb,
                  void *ud, tch_error *err);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
