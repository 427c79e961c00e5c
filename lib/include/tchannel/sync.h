/* A blocking client (the counterpart of tchannel-python's tchannel.sync)
 * for programs and tests that run no event loop of their own. It owns an
 * event_base and a channel, and runs the loop only inside tch_sync_call. */
#ifndef TCHANNEL_SYNC_H
#define TCHANNEL_SYNC_H

#include <tchannel/channel.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; the rest of the library is hidden */

typedef struct tch_sync_client tch_sync_client;

/* A response with owned storage; free with tch_sync_response_free. With
 * an allocator in the client's options its storage comes from it (alloc
 * points at the client's copy): free such a response before the client. */
typedef struct tch_sync_response {
    int status;         /* as tch_response.status */
    uint8_t code;       /* call res code when status is 0 */
    uint8_t error_code; /* tch_proto_code when status is not 0 */
    /* Never NULL: "" when none. When the response could not be copied
     * (status TCH_ENOMEM) a static "out of memory", which
     * tch_sync_response_free knows; do not write to or free it. */
    char *message;
    tch_buf arg2;
    tch_buf arg3;
    tch_kv *headers; /* slices point into header_store */
    size_t nheaders;
    tch_buf header_store;
    const tch_allocator *alloc; /* message's and headers' (NULL: malloc) */
} tch_sync_response;

/* A client with its own event_base and a channel named name. *out gets
 * it, or NULL on failure. Returns 0, TCH_EINVAL (as tch_channel_new: a bad
 * name or options), TCH_ENOMEM. */
int tch_sync_client_new(const char *name, const tch_channel_options *opts,
                        tch_sync_client **out, tch_error *err);
void tch_sync_client_free(tch_sync_client *c);
/* The channel inside, e.g. to add peers or install an outbound hook. */
tch_channel *tch_sync_client_channel(tch_sync_client *c);

/* Makes the call and waits for its outcome (bounded by the call's timeout).
 * Returns 0 when *out holds an outcome (check out->status), or an error
 * when the call could not be started: tch_channel_call's (TCH_EINVAL,
 * TCH_ETOOBIG, TCH_ENOTFOUND, TCH_ECLOSED, TCH_EIO, TCH_ENOMEM), or
 * TCH_EIO when the event loop fails. */
int tch_sync_call(tch_sync_client *c, const tch_call_opts *opts,
                  tch_sync_response *out, tch_error *err);
void tch_sync_response_free(tch_sync_response *r);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
