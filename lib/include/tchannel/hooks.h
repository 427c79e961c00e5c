/* Event hooks: code that watches the calls of a channel without taking part
 * in them (metrics, logs, the span reporter of tchannel/trace.h). Any number
 * of hooks may be installed; each sees every event of every call, outgoing
 * and incoming, in the order they were added.
 *
 * Events, per call:
 *  outgoing, per attempt (a retry is a new attempt with its own span id):
 *    TCH_EVENT_SEND_REQUEST      the request is queued on its connection; its
 *                                bytes leave when the loop next writes
 *    TCH_EVENT_RECEIVE_RESPONSE  the attempt ended: a call response, an error
 *                                frame, or a local failure (timeout, network,
 *                                cancel); end_us and the outcome are set
 *    TCH_EVENT_ERROR             once, after the last attempt, when the call
 *                                failed (status != 0); it also comes for a
 *                                call that failed before any attempt was sent
 *  incoming:
 *    TCH_EVENT_RECEIVE_REQUEST   the request is whole, before its handler runs
 *    TCH_EVENT_SEND_RESPONSE     the answer (a call response or an error
 *                                frame) was queued, or the call ended without
 *                                one (TTL passed, cancelled, connection
 *                                gone); end_us and the outcome are set
 *    TCH_EVENT_ERROR             after SEND_RESPONSE when the outcome is an
 *                                error (an error frame or no answer)
 *
 * Calls answered by the outbound hook (the VCR replaying) send nothing: they
 * raise no SEND_REQUEST/RECEIVE_RESPONSE, only ERROR when they fail. Calls
 * ended by tch_channel_free raise no events. With no hook installed the
 * channel does no work for them (no clock read, no event built).
 *
 * A hook runs on the loop, inside the channel's own code: it must return
 * quickly and must not answer, cancel or free anything it is told about.
 * It may add or remove hooks (a removed hook hears nothing more, an added
 * one hears from the next event) and make new calls. Everything in the event
 * is valid only during the hook. */
#ifndef TCHANNEL_HOOKS_H
#define TCHANNEL_HOOKS_H

#include <tchannel/channel.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; the rest of the library is hidden */

typedef enum tch_event_kind {
    TCH_EVENT_SEND_REQUEST = 0,
    TCH_EVENT_RECEIVE_RESPONSE,
    TCH_EVENT_RECEIVE_REQUEST,
    TCH_EVENT_SEND_RESPONSE,
    TCH_EVENT_ERROR,
} tch_event_kind;
/* "send_request", ...; "unknown" for a value not in the enum. */
const char *tch_event_kind_name(tch_event_kind kind);

typedef enum tch_outcome {
    TCH_OUTCOME_PENDING = 0, /* SEND_REQUEST, RECEIVE_REQUEST: not over yet */
    TCH_OUTCOME_OK,          /* a call response with code 0 */
    TCH_OUTCOME_APP_ERROR,   /* a call response with code 1 */
    TCH_OUTCOME_ERROR,       /* an error frame or a local failure */
} tch_outcome;

typedef struct tch_call_event {
    tch_event_kind kind;
    bool outgoing;   /* true: our call to a peer; false: a peer's call to us */
    tch_slice service;
    tch_slice endpoint;  /* arg1 */
    tch_slice scheme;    /* the "as" transport header; empty when absent */
    tch_slice caller;    /* "cn": our channel's name, or the caller's */
    tch_trace trace;     /* the ids on the wire for this call (attempt) */
    const char *peer;    /* "host:port" of the other side; "" unknown */
    int attempt;         /* outgoing: 1 for the first try, 2 for a retry... */
    /* Microseconds on the channel's clock (tch_channel_now_us): end_us is 0
     * while the call is pending. */
    uint64_t start_us;
    uint64_t end_us;
    tch_outcome outcome;
    int status;          /* 0, TCH_EREMOTE, or the local TCH_E* failure */
    uint8_t error_code;  /* tch_proto_code when outcome is ERROR */
    const char *message; /* what went wrong; "" when nothing did */
} tch_call_event;

typedef void (*tch_event_cb)(const tch_call_event *ev, void *ud);

/* Adds a hook; *handle (when not NULL) receives its handle for removal.
 * TCH_EINVAL without fn, TCH_ENOMEM. */
int tch_channel_add_hook(tch_channel *ch, tch_event_cb fn, void *ud,
                         uint32_t *handle);
/* TCH_ENOTFOUND when no hook has that handle. */
int tch_channel_remove_hook(tch_channel *ch, uint32_t handle);
size_t tch_channel_hook_count(const tch_channel *ch);

/* The channel's clock: microseconds since the Unix epoch, taken from the
 * wall clock when the channel was made and advanced by the monotonic clock
 * since, so durations never go backwards when the wall clock is set. */
uint64_t tch_channel_now_us(const tch_channel *ch);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
