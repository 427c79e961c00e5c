/* Spans: each traced call (traced flag 0x01 set) becomes a span, handed to
 * a reporter. Built on the event hooks of tchannel/hooks.h.
 *
 *  - An outgoing call gives a CLIENT span per attempt (a retry carries its
 *    own span id), made when the attempt ends.
 *  - An incoming call gives a SERVER span when it is answered (or ends
 *    unanswered). Its id is the caller's span id, its parent the caller's
 *    parent, as TChannel puts them on the wire and as the Node peer reports
 *    them: client and server share one span id ("shared" in Zipkin v2).
 *
 * Two reporters ship: Zipkin v2 JSON posted in batches over HTTP
 * (tch_zipkin_reporter), and the same JSON one span per line to a file
 * (tch_file_reporter). Any struct tch_span_reporter will do.
 *
 * Everything runs on the channel's event loop, one thread. */
#ifndef TCHANNEL_TRACE_H
#define TCHANNEL_TRACE_H

#include <tchannel/hooks.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; the rest of the library is hidden */

struct event_base;

typedef enum tch_span_kind {
    TCH_SPAN_CLIENT = 0,
    TCH_SPAN_SERVER,
} tch_span_kind;

typedef struct tch_span {
    uint64_t trace_id;
    uint64_t id;
    uint64_t parent_id;     /* 0: a root span */
    tch_span_kind kind;
    bool shared;            /* a server span with its caller's id */
    tch_slice name;         /* the endpoint (arg1) */
    tch_slice local_service;  /* CLIENT: the caller's name; SERVER: the service called */
    tch_slice remote_service; /* CLIENT: the service called; SERVER: the caller's name */
    const char *peer;       /* "host:port" of the other side, "" unknown */
    tch_slice scheme;       /* "as" */
    uint64_t timestamp_us;  /* start, microseconds since the Unix epoch */
    uint64_t duration_us;
    tch_outcome outcome;    /* OK, APP_ERROR or ERROR */
    uint8_t error_code;     /* tch_proto_code when outcome is ERROR */
    const char *message;    /* the error's message, "" */
} tch_span;

/* Fills *out from an event that ends a traced call (RECEIVE_RESPONSE or
 * SEND_RESPONSE with the traced flag) and returns true; false for any
 * other event. out points into ev: valid while ev is. */
bool tch_span_from_event(const tch_call_event *ev, tch_span *out);

/* The span as one line of Zipkin v2 JSON (no newline), malloc'd; NULL on
 * ENOMEM. Ids are 16 lowercase hex digits; timestamp and duration are in
 * microseconds (duration at least 1, as Zipkin wants); localEndpoint and
 * remoteEndpoint carry serviceName, remoteEndpoint the peer's ipv4 or ipv6
 * and port when it is an address; tags: "as" (the arg scheme), "cn" (the
 * caller), "peer" (host:port as known), "tchannel.status" ("ok",
 * "app_error" or the protocol code's name: "timeout", "busy"...) and, for
 * errors only, "error" with the message. */
char *tch_span_to_json(const tch_span *s);

/* A reporter: report is called once per span, on the loop, and must copy
 * what it keeps (the span is valid during the call only). It must not
 * block: a reporter that cannot keep up drops and counts. */
typedef void (*tch_span_report_cb)(const tch_span *span, void *ud);
typedef struct tch_span_reporter {
    tch_span_report_cb report;
    void *ud;
} tch_span_reporter;

/* Turns a channel's traced calls into spans for rep (an event hook on ch).
 * Free it before the channel. *out gets it, or NULL on failure. Returns 0,
 * TCH_EINVAL (no channel, no report function), TCH_ENOMEM. */
typedef struct tch_tracer tch_tracer;
int tch_tracer_new(tch_channel *ch, tch_span_reporter rep, tch_tracer **out, tch_error *err);
void tch_tracer_free(tch_tracer *t);
uint64_t tch_tracer_spans(const tch_tracer *t); /* spans reported so far */

/* ---- JSON lines to a file ------------------------------------------------- */

typedef struct tch_file_reporter tch_file_reporter;
/* Appends to path (created when missing). Each span is one line, written
 * out (flushed) before report returns. *out gets the reporter, or NULL on
 * failure. Returns 0, TCH_EINVAL (no path, or not a regular file: a FIFO
 * or device could block the loop), TCH_EIO (it cannot be opened; err names
 * the path and why), TCH_ENOMEM. */
int tch_file_reporter_open(const char *path, tch_file_reporter **out, tch_error *err);
tch_span_reporter tch_file_reporter_iface(tch_file_reporter *r);
uint64_t tch_file_reporter_written(const tch_file_reporter *r);
uint64_t tch_file_reporter_failed(const tch_file_reporter *r); /* lines not written */
/* Closes the file and frees r. Returns 0, or TCH_EIO (naming the path and
 * the first failure) when any span could not be written. */
int tch_file_reporter_close(tch_file_reporter *r, tch_error *err);

/* ---- Zipkin v2 over HTTP ---------------------------------------------------- */

typedef struct tch_zipkin_options {
    size_t batch_size;          /* spans per POST; default 100 */
    uint32_t flush_interval_ms; /* the longest a span waits for a batch to
                                   fill; default 1000 */
    size_t max_queue;           /* spans waiting to be posted; one more is
                                   dropped and counted; default 10000 */
    uint32_t post_timeout_ms;   /* a POST not answered within this fails;
                                   default 5000 */
} tch_zipkin_options;

typedef struct tch_zipkin_stats {
    uint64_t reported; /* spans handed to the reporter */
    uint64_t sent;     /* in POSTs answered 2xx */
    uint64_t failed;   /* in POSTs that failed (no answer, refused, non-2xx) */
    uint64_t dropped;  /* the queue was full, or unsent at close */
    uint64_t posts;    /* POSTs made */
    size_t queued;     /* waiting now (not counting a POST in flight) */
} tch_zipkin_stats;

typedef struct tch_zipkin_reporter tch_zipkin_reporter;
/* url: http://HOST[:PORT][/PATH]; PATH defaults to /api/v2/spans (a Zipkin
 * collector's). One POST is in flight at a time, a JSON array of spans,
 * Content-Type application/json. opts may be NULL. *out gets the reporter,
 * or NULL on failure. Returns 0, TCH_EINVAL (no base, a url that is missing
 * or malformed, naming it and what is wrong; https is not supported),
 * TCH_ENOMEM. */
int tch_zipkin_reporter_new(struct event_base *base, const char *url,
                            const tch_zipkin_options *opts, tch_zipkin_reporter **out,
                            tch_error *err);
tch_span_reporter tch_zipkin_reporter_iface(tch_zipkin_reporter *z);
void tch_zipkin_reporter_stats(const tch_zipkin_reporter *z, tch_zipkin_stats *out);
/* Why the last POST failed ("" when none did). */
const char *tch_zipkin_reporter_last_error(const tch_zipkin_reporter *z);

/* Flush on close: posts every span still queued, in batches, then runs cb
 * from the loop once the last POST is answered, or when timeout_ms pass
 * (0: the post timeout); spans not sent by then are counted dropped. Spans
 * reported meanwhile are still taken. Free z from cb or after it.
 * Returns 0, TCH_ESTATE (already closing), TCH_ENOMEM. */
typedef void (*tch_zipkin_closed_cb)(tch_zipkin_reporter *z, void *ud);
int tch_zipkin_reporter_close(tch_zipkin_reporter *z, uint32_t timeout_ms,
                              tch_zipkin_closed_cb cb, void *ud);
/* Frees at once: a POST in flight is abandoned; queued spans are lost. */
void tch_zipkin_reporter_free(tch_zipkin_reporter *z);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
