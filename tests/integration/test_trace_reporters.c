/* Spans and their reporters over 127.0.0.1: the Zipkin reporter against an
 * HTTP receiver inside the test (every field of the JSON checked), its
 * batching, flush interval, bounded queue and flush on close; the JSON-lines
 * file reporter. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <tchannel/channel.h>
#include <tchannel/trace.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"
#include "ports.h"
#include "result.h"

/* ---- the receiver: an evhttp server that keeps what was posted ---------- */

typedef struct receiver {
    struct evhttp *http;
    char url[128];
    int port;
    int code;      /* the answer; 0: never answer */
    int fail_first; /* answer this many POSTs 500 first */
    int posts;
    int spans;     /* in every body so far */
    json_t *all;   /* every span received, in order */
    char path[128], method[8], content_type[64];
} receiver;

static void on_post(struct evhttp_request *req, void *arg) {
    receiver *rx = arg;
    rx->posts++;
    snprintf(rx->path, sizeof rx->path, "%s", evhttp_request_get_uri(req));
    snprintf(rx->method, sizeof rx->method, "%s",
             evhttp_request_get_command(req) == EVHTTP_REQ_POST ? "POST" : "other");
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    snprintf(rx->content_type, sizeof rx->content_type, "%s", ct ? ct : "");
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    json_error_t jerr;
    json_t *body = json_loadb((const char *)evbuffer_pullup(in, -1), n, 0, &jerr);
    assert_non_null(body);
    assert_true(json_is_array(body));
    rx->spans += (int)json_array_size(body);
    json_array_extend(rx->all, body);
    json_decref(body);
    int code = rx->posts <= rx->fail_first ? 500 : rx->code;
    if (code)
        evhttp_send_reply(req, code, code < 300 ? "Accepted" : "Oops", NULL);
    /* else: held until the receiver is freed, as a stuck collector would */
}

/* On port (0: any free one). */
static void receiver_start_on(receiver *rx, struct event_base *base, int code, int port) {
    memset(rx, 0, sizeof *rx);
    rx->code = code;
    rx->all = json_array();
    rx->http = evhttp_new(base);
    evhttp_set_gencb(rx->http, on_post, rx);
    struct evhttp_bound_socket *s =
        evhttp_bind_socket_with_handle(rx->http, "127.0.0.1", (uint16_t)port);
    assert_non_null(s);
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&a, &len), 0);
    rx->port = ntohs(a.sin_port);
    snprintf(rx->url, sizeof rx->url, "http://127.0.0.1:%d/api/v2/spans", rx->port);
}

static void receiver_start(receiver *rx, struct event_base *base, int code) {
    receiver_start_on(rx, base, code, 0);
}

static void receiver_free(receiver *rx) {
    evhttp_free(rx->http);
    json_decref(rx->all);
}

/* ---- fixture: a server and a client channel, both traced ------------------ */

typedef struct fixture {
    struct event_base *base;
    tch_channel *server, *client;
    char hp[64];
    receiver rx;
    tch_zipkin_reporter *zc, *zs;
    tch_tracer *tc, *ts;
} fixture;

static void echo(tch_inbound *in, void *ud) {
    (void)ud;
    tch_inbound_respond(in, 0, tch_inbound_arg2(in), tch_inbound_arg3(in));
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->base = event_base_new();
    tch_channel_options co = {.trace = 1};
    tch_channel_new(f->base, "kv-server", NULL, &f->server, NULL);
    tch_channel_new(f->base, "kv-client", &co, &f->client, NULL);
    tch_error err;
    assert_int_equal(tch_channel_listen(f->server, NULL, &err), 0);
    snprintf(f->hp, sizeof f->hp, "%s", tch_channel_host_port(f->server));
    /* a listening client announces its address: the server's span names it */
    assert_int_equal(tch_channel_listen(f->client, NULL, &err), 0);
    tch_channel_register(f->server, NULL, "get", echo, NULL);
    receiver_start(&f->rx, f->base, 202);
    tch_zipkin_options zo = {.batch_size = 1};
    tch_zipkin_reporter_new(f->base, f->rx.url, &zo, &f->zc, &err);
    tch_zipkin_reporter_new(f->base, f->rx.url, &zo, &f->zs, &err);
    assert_non_null(f->zc);
    assert_non_null(f->zs);
    tch_tracer_new(f->client, tch_zipkin_reporter_iface(f->zc), &f->tc, &err);
    tch_tracer_new(f->server, tch_zipkin_reporter_iface(f->zs), &f->ts, &err);
    assert_non_null(f->tc);
    assert_non_null(f->ts);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    tch_tracer_free(f->tc);
    tch_tracer_free(f->ts);
    tch_channel_free(f->client);
    tch_channel_free(f->server);
    tch_zipkin_reporter_free(f->zc);
    tch_zipkin_reporter_free(f->zs);
    receiver_free(&f->rx);
    event_base_free(f->base);
    free(f);
    return 0;
}

static void call(fixture *f, const char *endpoint, const tch_trace *parent, int traced,
                 result *r) {
    tch_call_opts o = {.service = "kv-server", .endpoint = tch_slice_cstr(endpoint),
                       .arg3 = tch_slice_cstr("{}"), .host_port = f->hp,
                       .arg_scheme = "json", .trace = parent, .traced = traced,
                       .retry_on = TCH_RETRY_NEVER};
    tch_error err;
    assert_int_equal(tch_channel_call(f->client, &o, on_result, r, &err), 0);
    assert_true(tch_test_run_until(f->base, &r->done, 5000));
}

static const char *str(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    assert_non_null(v);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

static json_int_t num(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    assert_non_null(v);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static void assert_hex16(const char *s) {
    assert_int_equal(strlen(s), 16);
    for (const char *p = s; *p; p++)
        assert_true((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'));
}

static json_t *span_of_kind(const json_t *all, const char *kind) {
    size_t i;
    json_t *s;
    json_array_foreach(all, i, s) if (!strcmp(str(s, "kind"), kind)) return s;
    fail_msg("no %s span", kind);
    return NULL;
}

/* Every field, for a client span and the server span of the same call. */
static void test_zipkin_every_field(void **state) {
    fixture *f = *state;
    tch_trace parent = {.span_id = 0x0123456789abcdefull, .trace_id = 0xfedcba9876543210ull,
                        .parent_id = 0, .flags = 1};
    uint64_t before = tch_channel_now_us(f->client);
    result r = {0};
    call(f, "get", &parent, 0, &r);
    assert_int_equal(r.status, 0);
    uint64_t after = tch_channel_now_us(f->client);
    assert_true(tch_test_run_until_count(f->base, &f->rx.spans, 2, 5000));
    assert_string_equal(f->rx.method, "POST");
    assert_string_equal(f->rx.path, "/api/v2/spans");
    assert_string_equal(f->rx.content_type, "application/json");

    json_t *c = span_of_kind(f->rx.all, "CLIENT");
    json_t *s = span_of_kind(f->rx.all, "SERVER");
    assert_string_equal(str(c, "traceId"), "fedcba9876543210");
    assert_string_equal(str(c, "parentId"), "0123456789abcdef");
    assert_hex16(str(c, "id"));
    assert_string_not_equal(str(c, "id"), "0123456789abcdef");
    assert_string_equal(str(c, "name"), "get");
    assert_true((uint64_t)num(c, "timestamp") >= before);
    assert_true((uint64_t)num(c, "timestamp") <= after);
    assert_true(num(c, "duration") >= 1);
    assert_true((uint64_t)(num(c, "timestamp") + num(c, "duration")) <= after);
    assert_null(json_object_get(c, "shared"));
    assert_string_equal(str(json_object_get(c, "localEndpoint"), "serviceName"), "kv-client");
    json_t *re = json_object_get(c, "remoteEndpoint");
    assert_string_equal(str(re, "serviceName"), "kv-server");
    assert_string_equal(str(re, "ipv4"), "127.0.0.1");
    char port[16];
    snprintf(port, sizeof port, "%lld", (long long)num(re, "port"));
    assert_non_null(strstr(f->hp, port));
    json_t *tags = json_object_get(c, "tags");
    assert_string_equal(str(tags, "as"), "json");
    assert_string_equal(str(tags, "cn"), "kv-client");
    assert_string_equal(str(tags, "peer"), f->hp);
    assert_string_equal(str(tags, "tchannel.status"), "ok");
    assert_null(json_object_get(tags, "error"));
    assert_int_equal(json_object_size(tags), 4);
    assert_int_equal(json_object_size(c), 10); /* traceId id parentId kind name timestamp
                                                  duration localEndpoint remoteEndpoint tags */

    /* the server span shares the client's id, as TChannel (and Node) do */
    assert_string_equal(str(s, "traceId"), "fedcba9876543210");
    assert_string_equal(str(s, "id"), str(c, "id"));
    assert_string_equal(str(s, "parentId"), "0123456789abcdef");
    assert_true(json_is_true(json_object_get(s, "shared")));
    assert_string_equal(str(s, "name"), "get");
    assert_string_equal(str(json_object_get(s, "localEndpoint"), "serviceName"), "kv-server");
    json_t *sre = json_object_get(s, "remoteEndpoint");
    assert_string_equal(str(sre, "serviceName"), "kv-client");
    assert_string_equal(str(sre, "ipv4"), "127.0.0.1");
    snprintf(port, sizeof port, ":%lld", (long long)num(sre, "port"));
    assert_non_null(strstr(tch_channel_host_port(f->client), port));

    assert_true(num(s, "timestamp") >= num(c, "timestamp"));
    assert_true(num(s, "duration") >= 1);
    json_t *stags = json_object_get(s, "tags");
    assert_string_equal(str(stags, "as"), "json");
    assert_string_equal(str(stags, "cn"), "kv-client");
    assert_string_equal(str(stags, "tchannel.status"), "ok");
    assert_string_equal(str(stags, "peer"), tch_channel_host_port(f->client));
    assert_int_equal(json_object_size(s), 11);
    assert_int_equal(tch_tracer_spans(f->tc), 1);
    assert_int_equal(tch_tracer_spans(f->ts), 1);
    result_free(&r);
}

static void test_zipkin_error_span_and_untraced(void **state) {
    fixture *f = *state;
    result r = {0};
    call(f, "missing", NULL, 0, &r); /* traced by the channel's switch */
    assert_int_equal(r.status, TCH_EREMOTE);
    assert_true(tch_test_run_until_count(f->base, &f->rx.spans, 2, 5000));
    json_t *c = span_of_kind(f->rx.all, "CLIENT");
    assert_null(json_object_get(c, "parentId")); /* a root span */
    assert_string_equal(str(c, "traceId"), str(c, "id"));
    json_t *tags = json_object_get(c, "tags");
    assert_string_equal(str(tags, "tchannel.status"), "badRequest");
    assert_non_null(strstr(str(tags, "error"), "missing"));
    json_t *s = span_of_kind(f->rx.all, "SERVER");
    assert_non_null(strstr(str(json_object_get(s, "tags"), "error"), "missing"));

    result r2 = {0};
    call(f, "get", NULL, TCH_TRACED_OFF, &r2);
    assert_int_equal(r2.status, 0);
    assert_int_equal(tch_tracer_spans(f->tc), 1); /* the untraced call made none */
    assert_int_equal(tch_tracer_spans(f->ts), 1);
    result_free(&r);
    result_free(&r2);
}

/* ---- the queue, batches and close, with spans made up -------------------- */

static tch_span made_up(uint64_t id) {
    return (tch_span){.trace_id = id, .id = id, .kind = TCH_SPAN_CLIENT,
                      .name = tch_slice_cstr("e"), .local_service = tch_slice_cstr("a"),
                      .remote_service = tch_slice_cstr("b"), .peer = "127.0.0.1:1",
                      .scheme = tch_slice_cstr("raw"), .timestamp_us = 1, .duration_us = 1,
                      .outcome = TCH_OUTCOME_OK, .message = ""};
}

static void report_n(tch_span_reporter rep, int n, uint64_t first) {
    for (int i = 0; i < n; i++) {
        tch_span s = made_up(first + (uint64_t)i);
        rep.report(&s, rep.ud);
    }
}

static void closed(tch_zipkin_reporter *z, void *ud) {
    (void)z;
    (*(int *)ud)++;
}

static void test_zipkin_batches_by_count_and_time(void **state) {
    (void)state;
    struct event_base *base = event_base_new();
    receiver rx;
    receiver_start(&rx, base, 202);
    tch_error err;
    tch_zipkin_options o = {.batch_size = 3, .flush_interval_ms = 100};
    tch_zipkin_reporter *z;
    tch_zipkin_reporter_new(base, rx.url, &o, &z, &err);
    assert_non_null(z);
    report_n(tch_zipkin_reporter_iface(z), 3, 1); /* a full batch: posted at once */
    assert_true(tch_test_run_until_count(base, &rx.spans, 3, 5000));
    assert_int_equal(rx.posts, 1);
    report_n(tch_zipkin_reporter_iface(z), 1, 4); /* alone: posted after the interval */
    assert_true(tch_test_run_until_count(base, &rx.spans, 4, 5000));
    assert_int_equal(rx.posts, 2);
    tch_zipkin_stats st;
    tch_zipkin_reporter_stats(z, &st);
    assert_int_equal(st.reported, 4);
    assert_int_equal(st.posts, 2);
    int done = 0;
    assert_int_equal(tch_zipkin_reporter_close(z, 2000, closed, &done), 0);
    assert_int_equal(tch_zipkin_reporter_close(z, 2000, closed, &done), TCH_ESTATE);
    assert_true(tch_test_run_until(base, &done, 5000));
    tch_zipkin_reporter_stats(z, &st);
    assert_int_equal(st.sent, 4);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.failed, 0);
    assert_string_equal(tch_zipkin_reporter_last_error(z), "");
    /* ids in order, as reported */
    assert_string_equal(str(json_array_get(rx.all, 0), "id"), "0000000000000001");
    assert_string_equal(str(json_array_get(rx.all, 3), "id"), "0000000000000004");
    tch_zipkin_reporter_free(z);
    receiver_free(&rx);
    event_base_free(base);
}

static void test_zipkin_flush_on_close(void **state) {
    (void)state;
    struct event_base *base = event_base_new();
    receiver rx;
    receiver_start(&rx, base, 202);
    tch_error err;
    tch_zipkin_options o = {.batch_size = 100, .flush_interval_ms = 60000};
    tch_zipkin_reporter *z;
    tch_zipkin_reporter_new(base, rx.url, &o, &z, &err);
    report_n(tch_zipkin_reporter_iface(z), 5, 1);
    int done = 0;
    assert_int_equal(tch_zipkin_reporter_close(z, 2000, closed, &done), 0);
    assert_true(tch_test_run_until(base, &done, 5000));
    assert_int_equal(rx.spans, 5); /* posted before the callback ran */
    tch_zipkin_stats st;
    tch_zipkin_reporter_stats(z, &st);
    assert_int_equal(st.sent, 5);
    report_n(tch_zipkin_reporter_iface(z), 1, 9); /* after close: dropped */
    tch_zipkin_reporter_stats(z, &st);
    assert_int_equal(st.dropped, 1);
    tch_zipkin_reporter_free(z);
    receiver_free(&rx);
    event_base_free(base);
}

/* A collector that never answers: one POST hangs, the queue fills, the rest
 * are dropped and counted; reporting never waits; close gives up in time. */
static void test_zipkin_drops_when_full(void **state) {
    (void)state;
    struct event_base *base = event_base_new();
    receiver rx;
    receiver_start(&rx, base, 0);
    tch_error err;
    tch_zipkin_options o = {.batch_size = 2, .max_queue = 4, .post_timeout_ms = 30000};
    tch_zipkin_reporter *z;
    tch_zipkin_reporter_new(base, rx.url, &o, &z, &err);
    report_n(tch_zipkin_reporter_iface(z), 10, 1);
    tch_zipkin_stats st;
    tch_zipkin_reporter_stats(z, &st);
    assert_int_equal(st.reported, 10);
    assert_int_equal(st.posts, 1);   /* 2 in flight */
    assert_int_equal(st.queued, 4);  /* the queue's bound */
    assert_int_equal(st.dropped, 4);
    assert_true(tch_test_run_until(base, &rx.posts, 5000)); /* it arrived, unanswered */
    int done = 0;
    assert_int_equal(tch_zipkin_reporter_close(z, 100, closed, &done), 0);
    assert_true(tch_test_run_until(base, &done, 5000));
    tch_zipkin_reporter_stats(z, &st);
    assert_int_equal(st.sent, 0);
    assert_int_equal(st.dropped, 10); /* 4 full, 4 queued and 2 in flight at close */
    tch_zipkin_reporter_free(z);
    receiver_free(&rx);
    event_base_free(base);
}

static void test_zipkin_failures_are_counted(void **state) {
    (void)state;
    struct event_base *base = event_base_new();
    receiver rx;
    receiver_start(&rx, base, 500);
    tch_error err;
    tch_zipkin_options o = {.batch_size = 2};
    tch_zipkin_reporter *z;
    tch_zipkin_reporter_new(base, rx.url, &o, &z, &err);
    report_n(tch_zipkin_reporter_iface(z), 2, 1);
    int done = 0;
    assert_int_equal(tch_zipkin_reporter_close(z, 2000, closed, &done), 0);
    assert_true(tch_test_run_until(base, &done, 5000));
    tch_zipkin_stats st;
    tch_zipkin_reporter_stats(z, &st);
    assert_int_equal(st.failed, 2);
    assert_non_null(strstr(tch_zipkin_reporter_last_error(z), "HTTP 500"));
    tch_zipkin_reporter_free(z);

    char dead[64], url[128];
    assert_int_equal(tch_test_dead_port(dead, sizeof dead), 0);
    snprintf(url, sizeof url, "http://%s", dead); /* the default path */
    tch_zipkin_reporter_new(base, url, &o, &z, &err);
    assert_non_null(z);
    report_n(tch_zipkin_reporter_iface(z), 2, 1);
    done = 0;
    assert_int_equal(tch_zipkin_reporter_close(z, 2000, closed, &done), 0);
    assert_true(tch_test_run_until(base, &done, 5000));
    tch_zipkin_reporter_stats(z, &st);
    assert_int_equal(st.failed, 2);
    assert_non_null(strstr(tch_zipkin_reporter_last_error(z), "no answer"));
    assert_non_null(strstr(tch_zipkin_reporter_last_error(z), dead));
    tch_zipkin_reporter_free(z);
    receiver_free(&rx);
    event_base_free(base);
}

/* Runs the loop until z counts want spans sent and failed together (the
 * collector's answer reaches z after the collector has the spans), at
 * most 5 s; its stats. */
static tch_zipkin_stats settled(struct event_base *base, tch_zipkin_reporter *z, uint64_t want) {
    tch_zipkin_stats st;
    tch_zipkin_reporter_stats(z, &st);
    for (time_t end = time(NULL) + 5; st.sent + st.failed < want && time(NULL) <= end;) {
        event_base_loop(base, EVLOOP_ONCE);
        tch_zipkin_reporter_stats(z, &st);
    }
    return st;
}

/* A failed POST costs its own batch only: spans queued while it was in
 * flight are posted when it fails, and a span reported after it, alone, is
 * still posted when the flush interval passes (the timer is armed again). */
static void test_zipkin_after_a_failed_post(void **state) {
    (void)state;
    struct event_base *base = event_base_new();
    receiver rx;
    receiver_start(&rx, base, 202);
    rx.fail_first = 1;
    tch_error err;
    tch_zipkin_options o = {.batch_size = 2, .flush_interval_ms = 100};
    tch_zipkin_reporter *z;
    assert_int_equal(tch_zipkin_reporter_new(base, rx.url, &o, &z, &err), 0);
    report_n(tch_zipkin_reporter_iface(z), 2, 1); /* posted at once: answered 500 */
    report_n(tch_zipkin_reporter_iface(z), 2, 3); /* queued behind it */
    assert_true(tch_test_run_until_count(base, &rx.posts, 2, 5000));
    tch_zipkin_stats st;
    assert_true(tch_test_run_until_count(base, &rx.spans, 4, 5000));
    assert_non_null(strstr(tch_zipkin_reporter_last_error(z), "HTTP 500"));
    report_n(tch_zipkin_reporter_iface(z), 1, 5); /* less than a batch: the timer posts it */
    assert_true(tch_test_run_until_count(base, &rx.spans, 5, 5000));
    assert_int_equal(rx.posts, 3);
    st = settled(base, z, 5);
    assert_int_equal(st.failed, 2);
    assert_int_equal(st.sent, 3);
    assert_int_equal(st.dropped, 0);
    /* what the collector kept: the spans after the failure, in order */
    assert_string_equal(str(json_array_get(rx.all, 2), "id"), "0000000000000003");
    assert_string_equal(str(json_array_get(rx.all, 4), "id"), "0000000000000005");
    tch_zipkin_reporter_free(z);
    receiver_free(&rx);
    event_base_free(base);
}

/* A collector that refuses connections, then comes up on the same port:
 * the spans reported once it listens are delivered (the connection is
 * dialled again after the refusal). */
static void test_zipkin_refused_then_accepted(void **state) {
    (void)state;
    struct event_base *base = event_base_new();
    char dead[64], url[128];
    assert_int_equal(tch_test_dead_port(dead, sizeof dead), 0);
    snprintf(url, sizeof url, "http://%s/api/v2/spans", dead);
    tch_error err;
    tch_zipkin_options o = {.batch_size = 2, .flush_interval_ms = 100};
    tch_zipkin_reporter *z;
    assert_int_equal(tch_zipkin_reporter_new(base, url, &o, &z, &err), 0);
    report_n(tch_zipkin_reporter_iface(z), 2, 1); /* refused */
    tch_zipkin_stats st = settled(base, z, 2);
    assert_int_equal(st.failed, 2);
    assert_non_null(strstr(tch_zipkin_reporter_last_error(z), "no answer"));
    receiver rx;
    receiver_start_on(&rx, base, 202, atoi(strrchr(dead, ':') + 1));
    report_n(tch_zipkin_reporter_iface(z), 2, 3); /* a batch */
    assert_true(tch_test_run_until_count(base, &rx.spans, 2, 5000));
    report_n(tch_zipkin_reporter_iface(z), 1, 5); /* and one on the timer */
    assert_true(tch_test_run_until_count(base, &rx.spans, 3, 5000));
    st = settled(base, z, 5);
    assert_int_equal(st.sent, 3);
    assert_int_equal(st.failed, 2);
    assert_string_equal(str(json_array_get(rx.all, 0), "id"), "0000000000000003");
    tch_zipkin_reporter_free(z);
    receiver_free(&rx);
    event_base_free(base);
}

static void test_zipkin_bad_urls(void **state) {
    (void)state;
    struct event_base *base = event_base_new();
    const char *bad[] = {"https://127.0.0.1/api/v2/spans", "ftp://127.0.0.1/", "no url at all",
                         "http:///api/v2/spans"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tch_error err = {0};
        tch_zipkin_reporter *z = (tch_zipkin_reporter *)&err; /* overwritten with NULL */
        assert_int_equal(tch_zipkin_reporter_new(base, bad[i], NULL, &z, &err), TCH_EINVAL);
        assert_null(z);
        assert_int_equal(err.code, TCH_EINVAL);
        assert_non_null(strstr(err.msg, bad[i]));
    }
    tch_error err = {0};
    tch_zipkin_reporter *z = NULL;
    assert_int_equal(tch_zipkin_reporter_new(base, NULL, NULL, &z, &err), TCH_EINVAL);
    assert_int_equal(err.code, TCH_EINVAL);
    event_base_free(base);
}

/* ---- the file reporter ------------------------------------------------------- */

static void test_file_reporter(void **state) {
    fixture *f = *state;
    char path[] = "/tmp/tch-spans-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    tch_error err;
    tch_file_reporter *fr;
    tch_file_reporter_open(path, &fr, &err);
    assert_non_null(fr);
    tch_tracer *t;
    tch_tracer_new(f->server, tch_file_reporter_iface(fr), &t, &err);
    for (int i = 0; i < 3; i++) {
        result r = {0};
        call(f, "get", NULL, 0, &r);
        result_free(&r);
    }
    assert_true(tch_test_run_until_count(f->base, &f->rx.spans, 6, 5000));
    tch_tracer_free(t);
    assert_int_equal(tch_file_reporter_written(fr), 3);
    assert_int_equal(tch_file_reporter_failed(fr), 0);
    assert_int_equal(tch_file_reporter_close(fr, &err), 0);

    /* the same spans the Zipkin reporter posted for the server, a line each */
    FILE *in = fopen(path, "r");
    char line[4096];
    int lines = 0;
    while (fgets(line, sizeof line, in)) {
        assert_non_null(strchr(line, '\n'));
        json_error_t jerr;
        json_t *s = json_loads(line, 0, &jerr);
        assert_non_null(s);
        assert_string_equal(str(s, "kind"), "SERVER");
        int found = 0;
        size_t i;
        json_t *z;
        json_array_foreach(f->rx.all, i, z) found |= json_equal(z, s);
        assert_true(found);
        json_decref(s);
        lines++;
    }
    fclose(in);
    assert_int_equal(lines, 3);
    unlink(path);

    assert_int_equal(tch_file_reporter_open("/nonexistent-dir/spans.jsonl", &fr, &err), TCH_EIO);
    assert_null(fr);
    assert_int_equal(err.code, TCH_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent-dir/spans.jsonl"));
}

/* A FIFO with no reader would block the loop at open and at every span:
 * refused at open, at once (alarm bounds the test if the open waits). */
static void test_file_reporter_refuses_fifo(void **state) {
    (void)state;
    char dir[] = "/tmp/tch-fifo-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/spans", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    tch_error err = {0};
    alarm(10);
    tch_file_reporter *fr;
    tch_file_reporter_open(path, &fr, &err);
    alarm(0);
    assert_null(fr);
    assert_int_equal(err.code, TCH_EINVAL);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "not a regular file"));
    assert_int_equal(tch_file_reporter_open("/dev/null", &fr, &err), TCH_EINVAL);
    assert_non_null(strstr(err.msg, "not a regular file"));
    unlink(path);
    rmdir(dir);
}

/* Zipkin has no all-zero ids: a traced call that carried them gives no span,
 * not one with id "0000000000000000". */
static void test_no_span_for_zero_ids(void **state) {
    (void)state;
    tch_call_event ev = {.kind = TCH_EVENT_SEND_RESPONSE, .trace = {.flags = 1},
                         .service = tch_slice_cstr("svc"), .endpoint = tch_slice_cstr("ep"),
                         .peer = ""};
    tch_span s;
    assert_int_equal(tch_span_from_event(&ev, &s), 0);
    ev.trace.trace_id = 7;
    assert_int_equal(tch_span_from_event(&ev, &s), 0); /* span id still 0 */
    ev.trace.span_id = 9;
    assert_int_equal(tch_span_from_event(&ev, &s), 1);
    assert_int_equal(s.id, 9);
}

static void test_span_json_edges(void **state) {
    (void)state;
    tch_span s = made_up(0xabcull);
    s.kind = TCH_SPAN_SERVER;
    s.shared = 1;
    s.parent_id = 0;
    s.duration_us = 0;
    s.name = tch_slice_of((const uint8_t *)"bad\xff", 4);
    s.peer = "[::1]:4040";
    s.outcome = TCH_OUTCOME_ERROR;
    s.error_code = TCH_PCODE_TIMEOUT;
    s.message = "";
    char *text = tch_span_to_json(&s);
    assert_non_null(text);
    assert_null(strchr(text, '\n'));
    json_error_t jerr;
    json_t *o = json_loads(text, 0, &jerr);
    assert_non_null(o);
    assert_string_equal(str(o, "id"), "0000000000000abc");
    assert_null(json_object_get(o, "parentId"));
    assert_int_equal(num(o, "duration"), 1);
    assert_string_equal(str(o, "name"), "bad\xef\xbf\xbd");
    json_t *re = json_object_get(o, "remoteEndpoint");
    assert_string_equal(str(re, "ipv6"), "::1");
    assert_int_equal(num(re, "port"), 4040);
    assert_string_equal(str(json_object_get(o, "tags"), "error"), "timeout");
    assert_string_equal(str(json_object_get(o, "tags"), "tchannel.status"), "timeout");
    json_decref(o);
    free(text);

    s.peer = "0.0.0.0:0"; /* a caller that does not listen: no address */
    text = tch_span_to_json(&s);
    o = json_loads(text, 0, &jerr);
    re = json_object_get(o, "remoteEndpoint");
    assert_string_equal(str(re, "serviceName"), "b");
    assert_int_equal(json_object_size(re), 1);
    json_decref(o);
    free(text);

    tch_error err;
    tch_span_reporter none = {0};
    tch_tracer *t = NULL;
    assert_int_equal(tch_tracer_new(NULL, none, &t, &err), TCH_EINVAL);
    assert_null(t);
    assert_int_equal(err.code, TCH_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_zipkin_every_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zipkin_error_span_and_untraced, setup, teardown),
        cmocka_unit_test(test_zipkin_batches_by_count_and_time),
        cmocka_unit_test(test_zipkin_flush_on_close),
        cmocka_unit_test(test_zipkin_drops_when_full),
        cmocka_unit_test(test_zipkin_failures_are_counted),
        cmocka_unit_test(test_zipkin_after_a_failed_post),
        cmocka_unit_test(test_zipkin_refused_then_accepted),
        cmocka_unit_test(test_zipkin_bad_urls),
        cmocka_unit_test_setup_teardown(test_file_reporter, setup, teardown),
        cmocka_unit_test(test_file_reporter_refuses_fifo),
        cmocka_unit_test(test_no_span_for_zero_ids),
        cmocka_unit_test(test_span_json_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
