/* Client behaviour over 127.0.0.1: retries and retry_on, peer choice,
 * transport headers, trace propagation, the request context, the outbound
 * hook, and the blocking client. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <tchannel/channel.h>
#include <tchannel/sync.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "channel_internal.h" /* white box: a peer's backoff */
#include "loop.h"
#include "ports.h"
#include "result.h"

typedef struct fixture {
    struct event_base *base;
    tch_channel *server, *client;
    const char *hp;
    int busy_left;      /* "flaky" answers busy this many times first */
    int timeouts_left;  /* "slowpoke" answers a timeout error this many times */
    int hits;
    char *scribble;     /* "flaky_echo" overwrites it when it answers busy */
    tch_trace seen_trace;
    tch_inbound *seen_current;
    char seen_headers[512];
    char seen_caller[64];
    uint32_t seen_ttl;
    uint8_t seen_flags;
} fixture;

static void echo(tch_inbound *in, void *ud) {
    fixture *f = ud;
    f->hits++;
    f->seen_current = tch_channel_current(tch_inbound_channel(in));
    f->seen_headers[0] = '\0';
    for (size_t i = 0; i < tch_inbound_header_count(in); i++) {
        tch_kv h = tch_inbound_header_at(in, i);
        size_t at = strlen(f->seen_headers);
        snprintf(f->seen_headers + at, sizeof f->seen_headers - at, "%.*s=%.*s;",
                 (int)h.key.len, (const char *)h.key.ptr, (int)h.value.len,
                 (const char *)h.value.ptr);
    }
    f->seen_trace = tch_inbound_trace(in);
    f->seen_ttl = tch_inbound_ttl_ms(in);
    snprintf(f->seen_caller, sizeof f->seen_caller, "%.*s", (int)tch_inbound_caller(in).len,
             (const char *)tch_inbound_caller(in).ptr);
    f->seen_flags = tch_inbound_flags(in);
    tch_inbound_respond(in, 0, tch_inbound_arg2(in), tch_inbound_arg3(in));
}

static void flaky(tch_inbound *in, void *ud) {
    fixture *f = ud;
    f->hits++;
    f->seen_trace = tch_inbound_trace(in);
    if (f->busy_left > 0) {
        f->busy_left--;
        tch_inbound_respond_error(in, TCH_PCODE_BUSY, "try later");
        return;
    }
    tch_inbound_respond(in, 0, TCH_SLICE_NULL, tch_slice_cstr("ok"));
}

/* Busy while busy_left lasts (scribbling over the caller's body, so the
 * retry shows what it read), then an echo of arg3. */
static void flaky_echo(tch_inbound *in, void *ud) {
    fixture *f = ud;
    f->hits++;
    if (f->busy_left > 0) {
        f->busy_left--;
        memset(f->scribble, 'b', strlen(f->scribble));
        tch_inbound_respond_error(in, TCH_PCODE_BUSY, "try later");
        return;
    }
    tch_inbound_respond(in, 0, TCH_SLICE_NULL, tch_inbound_arg3(in));
}

static void slowpoke(tch_inbound *in, void *ud) {
    fixture *f = ud;
    f->hits++;
    if (f->timeouts_left > 0) {
        f->timeouts_left--;
        tch_inbound_respond_error(in, TCH_PCODE_TIMEOUT, "downstream timed out");
        return;
    }
    tch_inbound_respond(in, 0, TCH_SLICE_NULL, tch_slice_cstr("ok"));
}

/* "front" calls the endpoint its arg3 names ("echo" when empty) on the same
 * server while handling: trace and the request context must carry over. */
typedef struct relay {
    tch_inbound *in;
} relay;

static void relay_done(const tch_response *res, void *ud) {
    relay *r = ud;
    tch_inbound_respond(r->in, res->status == 0 ? 0 : 1, TCH_SLICE_NULL, res->arg3);
    free(r);
}

static void front(tch_inbound *in, void *ud) {
    fixture *f = ud;
    relay *r = malloc(sizeof *r);
    r->in = in;
    tch_slice target = tch_inbound_arg3(in);
    tch_call_opts o = {.service = "server",
                       .endpoint = target.len ? target : tch_slice_cstr("echo"),
                       .arg3 = tch_slice_cstr("relayed"), .host_port = f->hp};
    tch_channel_call(tch_inbound_channel(in), &o, relay_done, r, NULL);
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->base = event_base_new();
    tch_channel_new(f->base, "server", NULL, &f->server, NULL);
    tch_channel_new(f->base, "client", NULL, &f->client, NULL);
    assert_int_equal(tch_channel_listen(f->server, NULL, NULL), 0);
    f->hp = tch_channel_host_port(f->server);
    tch_channel_register(f->server, NULL, "echo", echo, f);
    tch_channel_register(f->server, NULL, "flaky", flaky, f);
    tch_channel_register(f->server, NULL, "slowpoke", slowpoke, f);
    tch_channel_register(f->server, NULL, "flaky_echo", flaky_echo, f);
    tch_channel_register(f->server, NULL, "front", front, f);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    tch_channel_free(f->client);
    tch_channel_free(f->server);
    event_base_free(f->base);
    free(f);
    return 0;
}

static void dead_port(char *hp, size_t n) {
    assert_int_equal(tch_test_dead_port(hp, n), 0);
}

static result run_call(fixture *f, tch_call_opts *o) {
    result r = {0};
    if (!o->service)
        o->service = "server";
    if (!o->timeout_ms)
        o->timeout_ms = 2000;
    tch_error err;
    int rc = tch_channel_call(f->client, o, on_result, &r, &err);
    if (rc != 0)
        fail_msg("call failed to start: %s", err.msg);
    assert_true(tch_test_run_until(f->base, &r.done, 5000));
    return r;
}

static void retries_go_to_the_live_peer(void **state) {
    fixture *f = *state;
    char dead[64];
    dead_port(dead, sizeof dead);
    tch_channel_add_peer(f->client, dead, NULL);
    tch_channel_add_peer(f->client, f->hp, NULL);
    for (int i = 0; i < 6; i++) { /* whichever peer comes first */
        tch_call_opts o = {.endpoint = tch_slice_cstr("echo"), .arg3 = tch_slice_cstr("hi")};
        result r = run_call(f, &o);
        assert_int_equal(r.status, 0);
        assert_int_equal(r.arg3.len, 2);
        result_free(&r);
    }
    assert_int_equal(f->hits, 6);
}

/* Eight calls riding one refused connection are one failure of the peer:
 * one backoff step (100 ms), not eight (10 s). */
static void one_failed_connection_is_one_peer_failure(void **state) {
    fixture *f = *state;
    char dead[64];
    dead_port(dead, sizeof dead);
    tch_channel_add_peer(f->client, dead, NULL);
    result r[8] = {{0}};
    for (int i = 0; i < 8; i++) {
        tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("echo"),
                           .timeout_ms = 2000, .retry_on = TCH_RETRY_NEVER};
        assert_int_equal(tch_channel_call(f->client, &o, on_result, &r[i], NULL), 0);
    }
    assert_int_equal(tch_channel_connection_count(f->client), 1);
    for (int i = 0; i < 8; i++) {
        assert_true(tch_test_run_until(f->base, &r[i].done, 5000));
        assert_int_equal(r[i].error_code, TCH_PCODE_NETWORK);
        result_free(&r[i]);
    }
    assert_int_equal(f->client->npeers, 1);
    assert_int_equal(f->client->peers[0].failures, 1);
}

/* Twelve peers, all Busy: a call with eleven retries tries each once, even
 * when other calls go through the peer list meanwhile (made here by the
 * ninth attempt's handler, past the first eight peers a call remembers
 * inline). */
#define MANY 12
typedef struct many_peers {
    tch_channel *client;
    int hits[MANY], attempts, side_done;
} many_peers;

static void side_done(const tch_response *res, void *ud) {
    (void)res;
    ((many_peers *)ud)->side_done++;
}

typedef struct one_peer {
    many_peers *m;
    int index;
} one_peer;

static void busy_counting(tch_inbound *in, void *ud) {
    one_peer *p = ud;
    many_peers *m = p->m;
    tch_slice a3 = tch_inbound_arg3(in);
    if (a3.len == 4 && memcmp(a3.ptr, "main", 4) == 0) {
        m->hits[p->index]++;
        if (++m->attempts == 9)
            for (int i = 0; i < 3; i++) {
                tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("x"),
                                   .retry_on = TCH_RETRY_NEVER, .arg3 = tch_slice_cstr("side")};
                tch_channel_call(m->client, &o, side_done, m, NULL);
            }
    }
    tch_inbound_respond_error(in, TCH_PCODE_BUSY, "busy");
}

static void a_retry_goes_to_a_peer_not_tried_yet(void **state) {
    fixture *f = *state;
    many_peers m = {.client = f->client};
    tch_channel *s[MANY];
    one_peer ud[MANY];
    for (int i = 0; i < MANY; i++) {
        ud[i] = (one_peer){&m, i};
        tch_channel_new(f->base, "server", NULL, &s[i], NULL);
        tch_channel_register(s[i], NULL, "x", busy_counting, &ud[i]);
        assert_int_equal(tch_channel_listen(s[i], NULL, NULL), 0);
        assert_int_equal(tch_channel_add_peer(f->client, tch_channel_host_port(s[i]), NULL), 0);
    }
    result r = {0};
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("x"),
                       .retry_limit = MANY - 1, .arg3 = tch_slice_cstr("main"), .timeout_ms = 5000};
    assert_int_equal(tch_channel_call(f->client, &o, on_result, &r, NULL), 0);
    assert_true(tch_test_run_until(f->base, &r.done, 5000));
    assert_true(tch_test_run_until_count(f->base, &m.side_done, 3, 5000));
    assert_int_equal(r.error_code, TCH_PCODE_BUSY);
    for (int i = 0; i < MANY; i++)
        if (m.hits[i] != 1)
            fail_msg("peer %d got %d attempts (want 1 each)", i, m.hits[i]);
    result_free(&r);
    for (int i = 0; i < MANY; i++)
        tch_channel_free(s[i]);
}

/* A peer whose connection announced a drain takes no new calls while that
 * connection lasts: with two peers, every call goes to the other one (the
 * backoff alone would cover 100 ms). */
static void a_draining_peer_is_avoided(void **state) {
    fixture *f = *state;
    tch_channel *b;
    tch_channel_new(f->base, "server", NULL, &b, NULL);
    fixture fb = {0};
    tch_channel_register(b, NULL, "echo", echo, &fb);
    assert_int_equal(tch_channel_listen(b, NULL, NULL), 0);
    tch_channel_add_peer(f->client, f->hp, NULL);
    tch_channel_add_peer(f->client, tch_channel_host_port(b), NULL);
    tch_call_opts o = {.endpoint = tch_slice_cstr("echo"), .host_port = f->hp};
    result r = run_call(f, &o); /* the connection to A is up */
    assert_int_equal(r.status, 0);
    result_free(&r);
    /* A drains, as Node does: an error frame about no call on every connection */
    assert_non_null(f->server->conns);
    tch_conn_send_error(f->server->conns->conn, TCH_ID_NONE,
                        TCH_PCODE_DECLINED, NULL, "draining: going away");
    int expired = 0; /* wait for the client to have read it, 3 s at most */
    struct timeval bound = {3, 0};
    struct event *t = evtimer_new(f->base, tch_test_bound_fired, &expired);
    evtimer_add(t, &bound);
    while (!expired && !(f->client->conns && f->client->conns->draining))
        event_base_loop(f->base, EVLOOP_ONCE);
    event_free(t);
    assert_false(expired);
    for (int i = 0; i < 10; i++) {
        tch_call_opts any = {.endpoint = tch_slice_cstr("echo"), .retry_on = TCH_RETRY_NEVER};
        r = run_call(f, &any);
        if (r.status != 0)
            fail_msg("call %d: %s", i, r.message);
        result_free(&r);
    }
    assert_int_equal(fb.hits, 10);
    tch_channel_free(b);
}

static void retry_on_never_reports_the_connection_error(void **state) {
    fixture *f = *state;
    char dead[64];
    dead_port(dead, sizeof dead);
    tch_call_opts o = {.endpoint = tch_slice_cstr("echo"), .host_port = dead,
                       .retry_on = TCH_RETRY_NEVER};
    result r = run_call(f, &o);
    assert_int_equal(r.error_code, TCH_PCODE_NETWORK);
    assert_int_equal(tch_proto_code_retryability(r.error_code), TCH_MAYBE_RETRYABLE);
}

static void busy_is_retried_within_the_limit(void **state) {
    fixture *f = *state;
    f->busy_left = 2;
    tch_call_opts o = {.endpoint = tch_slice_cstr("flaky"), .host_port = f->hp};
    result r = run_call(f, &o);
    assert_int_equal(r.status, 0);
    assert_int_equal(f->hits, 3);
    result_free(&r);

    f->hits = 0;
    f->busy_left = 10;
    tch_call_opts o2 = {.endpoint = tch_slice_cstr("flaky"), .host_port = f->hp,
                        .retry_limit = 2};
    r = run_call(f, &o2);
    assert_int_equal(r.status, TCH_EREMOTE);
    assert_int_equal(r.error_code, TCH_PCODE_BUSY);
    assert_int_equal(f->hits, 3); /* first try + 2 retries */
    assert_int_equal(tch_proto_code_retryability(TCH_PCODE_BUSY), TCH_RETRYABLE);
}

static void retry_limit_none_and_retry_on_never_make_one_try(void **state) {
    fixture *f = *state;
    f->busy_left = 5;
    tch_call_opts o = {.endpoint = tch_slice_cstr("flaky"), .host_port = f->hp,
                       .retry_limit = TCH_RETRY_LIMIT_NONE};
    result r = run_call(f, &o);
    assert_int_equal(r.error_code, TCH_PCODE_BUSY);
    assert_int_equal(f->hits, 1);
    tch_call_opts o2 = {.endpoint = tch_slice_cstr("flaky"), .host_port = f->hp,
                        .retry_on = TCH_RETRY_NEVER};
    r = run_call(f, &o2);
    assert_int_equal(r.error_code, TCH_PCODE_BUSY);
    assert_int_equal(f->hits, 2);
}

static void timeouts_are_retried_only_with_t(void **state) {
    fixture *f = *state;
    f->timeouts_left = 1;
    tch_call_opts o = {.endpoint = tch_slice_cstr("slowpoke"), .host_port = f->hp};
    result r = run_call(f, &o); /* default: connection errors only */
    assert_int_equal(r.error_code, TCH_PCODE_TIMEOUT);
    assert_int_equal(f->hits, 1);
    f->timeouts_left = 1;
    tch_call_opts o2 = {.endpoint = tch_slice_cstr("slowpoke"), .host_port = f->hp,
                        .retry_on = TCH_RETRY_CONNECTION_TIMEOUT};
    r = run_call(f, &o2);
    assert_int_equal(r.status, 0);
    assert_int_equal(f->hits, 3);
    result_free(&r);
}

static void transport_headers_reach_the_handler(void **state) {
    fixture *f = *state;
    tch_kv extra = {tch_slice_cstr("fd"), tch_slice_cstr("zone-a")};
    tch_call_opts o = {.endpoint = tch_slice_cstr("echo"), .host_port = f->hp,
                       .retry_on = TCH_RETRY_TIMEOUT, .shard_key = "shard-7",
                       .routing_delegate = "router", .headers = &extra, .nheaders = 1};
    result r = run_call(f, &o);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(f->seen_headers, "as=raw;"));
    assert_non_null(strstr(f->seen_headers, "cn=client;"));
    assert_non_null(strstr(f->seen_headers, "re=t;"));
    assert_non_null(strstr(f->seen_headers, "sk=shard-7;"));
    assert_non_null(strstr(f->seen_headers, "rd=router;"));
    assert_non_null(strstr(f->seen_headers, "fd=zone-a;"));
    assert_string_equal(f->seen_caller, "client");
    assert_true(f->seen_ttl > 0 && f->seen_ttl <= 2000); /* what was left of the timeout */
    assert_int_equal(f->seen_flags, 0);
    result_free(&r);
}

static void trace_propagates_through_a_handler_call(void **state) {
    fixture *f = *state;
    tch_trace parent = {.span_id = 111, .trace_id = 222, .flags = 1};
    tch_call_opts o = {.endpoint = tch_slice_cstr("front"), .host_port = f->hp,
                       .trace = &parent};
    result r = run_call(f, &o);
    assert_int_equal(r.status, 0);
    assert_memory_equal(r.arg3.ptr, "relayed", 7);
    /* echo ran for the nested call: same trace, traced flag kept, and its
     * parent is front's span (a child of ours), not ours. */
    assert_int_equal(f->seen_trace.trace_id, 222);
    assert_int_equal(f->seen_trace.flags, 1);
    assert_true(f->seen_trace.parent_id != 0);
    assert_true(f->seen_trace.parent_id != 111);
    assert_non_null(f->seen_current);
    result_free(&r);
}

/* A handler's call keeps the handler's trace on its retries too: they are
 * sent from the loop, after the handler returned. */
static void trace_propagates_to_a_retry(void **state) {
    fixture *f = *state;
    f->busy_left = 1;
    tch_trace parent = {.span_id = 111, .trace_id = 222, .flags = 1};
    tch_call_opts o = {.endpoint = tch_slice_cstr("front"), .host_port = f->hp,
                       .arg3 = tch_slice_cstr("flaky"), .trace = &parent};
    result r = run_call(f, &o);
    assert_int_equal(r.status, 0);
    assert_int_equal(f->hits, 2); /* Busy, then the retry */
    assert_int_equal(f->seen_trace.trace_id, 222);
    assert_int_equal(f->seen_trace.flags, 1);
    assert_true(f->seen_trace.parent_id != 0 && f->seen_trace.parent_id != 111);
    result_free(&r);
}

/* ---- the outbound hook ---------------------------------------------------- */

typedef struct hook_state {
    int mode; /* 0 answer locally, 1 forward */
    int seen, observed;
    char observed_body[64];
} hook_state;

static void observer(const tch_response *res, void *ud) {
    hook_state *h = ud;
    h->observed++;
    snprintf(h->observed_body, sizeof h->observed_body, "%.*s", (int)res->arg3.len,
             (const char *)res->arg3.ptr);
}

static void hook(tch_outbound *call, void *ud) {
    hook_state *h = ud;
    h->seen++;
    const tch_call_opts *req = tch_outbound_request(call);
    assert_string_equal(req->service, "server");
    if (h->mode == 0) {
        tch_response res = {.status = 0, .arg3 = tch_slice_cstr("from the hook"), .message = ""};
        tch_outbound_answer(call, &res);
    } else {
        tch_outbound_forward(call, observer, h);
    }
}

static void hook_can_answer_or_forward(void **state) {
    fixture *f = *state;
    hook_state h = {0};
    tch_channel_set_outbound_hook(f->client, hook, &h);
    tch_call_opts o = {.endpoint = tch_slice_cstr("echo"), .host_port = f->hp,
                       .arg3 = tch_slice_cstr("real")};
    result r = run_call(f, &o);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.arg3.len, 13);
    assert_int_equal(f->hits, 0); /* the server never saw it */
    result_free(&r);
    h.mode = 1;
    r = run_call(f, &o);
    assert_int_equal(r.status, 0);
    assert_int_equal(f->hits, 1);
    assert_int_equal(h.observed, 1);
    assert_string_equal(h.observed_body, "real");
    assert_int_equal(h.seen, 2);
    result_free(&r);
}

/* borrow_args: every attempt reads the body where the caller keeps it, so
 * the retry sends it as it is by then; without it, the copy made when the
 * call started. */
static void borrowed_args_are_read_in_place(void **state) {
    fixture *f = *state;
    char body[] = "aaaa";
    f->scribble = body;
    for (int borrow = 1; borrow >= 0; borrow--) {
        memcpy(body, "aaaa", 4);
        f->busy_left = 1;
        f->hits = 0;
        tch_call_opts o = {.endpoint = tch_slice_cstr("flaky_echo"), .host_port = f->hp,
                           .arg3 = tch_slice_of(body, 4), .borrow_args = borrow};
        result r = run_call(f, &o);
        assert_int_equal(r.status, 0);
        assert_int_equal(f->hits, 2);
        assert_int_equal(r.arg3.len, 4);
        assert_memory_equal(r.arg3.ptr, borrow ? "bbbb" : "aaaa", 4);
        result_free(&r);
    }
    f->scribble = NULL;
}

static void holding_hook(tch_outbound *call, void *ud) { *(tch_outbound **)ud = call; }

/* A hook may hold a call past the caller's callback (here its deadline
 * passes first), when the caller is free to reuse a borrowed body: the
 * hook sees a copy taken when the call reached it. */
static void a_hook_holds_a_copy_of_borrowed_args(void **state) {
    fixture *f = *state;
    tch_outbound *held = NULL;
    tch_channel_set_outbound_hook(f->client, holding_hook, &held);
    char body[] = "aaaa";
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("echo"),
                       .host_port = f->hp, .arg3 = tch_slice_of(body, 4),
                       .timeout_ms = 20, .borrow_args = 1};
    result r = {0};
    assert_int_equal(tch_channel_call(f->client, &o, on_result, &r, NULL), 0);
    assert_non_null(held);
    assert_true(tch_test_run_until(f->base, &r.done, 5000));
    assert_int_equal(r.status, TCH_ETIMEOUT);
    memcpy(body, "bbbb", 4); /* its callback ran: the caller may */
    const tch_call_opts *req = tch_outbound_request(held);
    assert_int_equal(req->arg3.len, 4);
    assert_memory_equal(req->arg3.ptr, "aaaa", 4);
    tch_response res = {.status = 0, .message = ""};
    tch_outbound_answer(held, &res); /* expired: it is just freed */
    assert_int_equal(r.done, 1);
    result_free(&r);
}

static void freeing_the_channel_ends_answers_still_queued(void **state) {
    fixture *f = *state;
    hook_state h = {0};
    tch_channel *c;
    tch_channel_new(f->base, "short-lived", NULL, &c, NULL);
    tch_channel_set_outbound_hook(c, hook, &h); /* answers locally, from the loop */
    result r = {0};
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("echo"),
                       .host_port = f->hp, .timeout_ms = 1000};
    assert_int_equal(tch_channel_call(c, &o, on_result, &r, NULL), 0);
    assert_int_equal(r.done, 0);
    tch_channel_free(c); /* before the loop ran: the answer is reported now */
    assert_int_equal(r.done, 1);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.arg3.len, 13);
    result_free(&r);
    event_base_loop(f->base, EVLOOP_NONBLOCK); /* nothing of c's may fire */
}

/* ---- cancelling around the outcome ------------------------------------------ */

typedef struct canceller {
    tch_channel *ch;
    uint32_t handle;
    int rc;      /* what tch_channel_cancel returned */
    int busy;    /* busy_hook: Busy answers left before an ok */
    int hooked;  /* busy_hook: calls it saw */
    result before, after; /* the response as the callback got it, and after its cancel */
} canceller;

static void cancel_from_callback(const tch_response *res, void *ud) {
    canceller *c = ud;
    on_result(res, &c->before);
    c->rc = tch_channel_cancel(c->ch, c->handle, "first answer won");
    on_result(res, &c->after);
}

/* "First answer wins, cancel the rest" reaches the call that answered: its
 * cancel finds nothing, and the response its callback reads stays as it was,
 * whether the answer came from the server (an error frame here) or the hook. */
static void a_callback_cancelling_its_own_call_changes_nothing(void **state) {
    fixture *f = *state;
    hook_state h = {0};
    for (int from_hook = 0; from_hook <= 1; from_hook++) {
        if (from_hook)
            tch_channel_set_outbound_hook(f->client, hook, &h); /* answers "from the hook" */
        canceller c = {.ch = f->client, .rc = 1};
        tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("nope"),
                           .host_port = f->hp, .timeout_ms = 2000, .cancel_handle = &c.handle};
        assert_int_equal(tch_channel_call(f->client, &o, cancel_from_callback, &c, NULL), 0);
        assert_true(tch_test_run_until(f->base, &c.after.done, 5000));
        event_base_loop(f->base, EVLOOP_NONBLOCK); /* a second outcome would come now */
        assert_int_equal(c.rc, TCH_ENOTFOUND);
        assert_int_equal(c.before.done, 1);
        assert_int_equal(c.after.status, c.before.status);
        assert_string_equal(c.after.message, c.before.message);
        assert_int_equal(c.after.arg3.len, c.before.arg3.len);
        assert_int_equal(c.before.status, from_hook ? 0 : TCH_EREMOTE);
        result_free(&c.before);
        result_free(&c.after);
    }
    assert_int_equal(h.seen, 1);
}

static void busy_hook(tch_outbound *call, void *ud) {
    canceller *c = ud;
    c->hooked++;
    tch_response res = {.status = 0, .arg3 = tch_slice_cstr("ok"), .message = ""};
    if (c->busy > 0) {
        c->busy--;
        res = (tch_response){.status = TCH_EREMOTE, .error_code = TCH_PCODE_BUSY,
                             .message = "busy"};
    }
    tch_outbound_answer(call, &res);
}

/* A Busy answer waiting for the loop is not the end of the call, it is
 * retried: cancelling then stops the call before its retry. */
static void a_call_waiting_to_retry_can_be_cancelled(void **state) {
    fixture *f = *state;
    canceller c = {.busy = 2};
    tch_channel_set_outbound_hook(f->client, busy_hook, &c);
    result r = {0};
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("echo"),
                       .host_port = f->hp, .timeout_ms = 2000, .cancel_handle = &c.handle};
    assert_int_equal(tch_channel_call(f->client, &o, on_result, &r, NULL), 0);
    assert_int_equal(c.hooked, 1); /* answered Busy, the retry not yet started */
    assert_int_equal(tch_channel_cancel(f->client, c.handle, "enough"), 0);
    assert_true(tch_test_run_until(f->base, &r.done, 5000));
    assert_int_equal(r.status, TCH_ECANCELED);
    assert_non_null(strstr(r.message, "enough"));
    assert_int_equal(c.hooked, 1);
    result_free(&r);
}

static void cancelling_observer(const tch_response *res, void *ud) {
    canceller *c = ud;
    on_result(res, &c->before);
    c->rc = tch_channel_cancel(c->ch, c->handle, "observer gave up");
}

static void forward_to_cancelling_observer(tch_outbound *call, void *ud) {
    canceller *c = ud;
    c->hooked++;
    tch_outbound_forward(call, cancelling_observer, c);
}

/* An observer (the VCR's recorder, say) that cancels when it sees a Busy
 * answer ends the call there: the caller hears the cancel, not the Busy,
 * and nothing is retried. */
static void an_observer_cancelling_ends_the_call(void **state) {
    fixture *f = *state;
    f->busy_left = 1;
    canceller c = {.ch = f->client, .rc = 1};
    tch_channel_set_outbound_hook(f->client, forward_to_cancelling_observer, &c);
    result r = {0};
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("flaky"),
                       .host_port = f->hp, .timeout_ms = 2000, .cancel_handle = &c.handle};
    assert_int_equal(tch_channel_call(f->client, &o, on_result, &r, NULL), 0);
    assert_true(tch_test_run_until(f->base, &r.done, 5000));
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    assert_int_equal(c.before.error_code, TCH_PCODE_BUSY); /* what the observer saw */
    assert_int_equal(c.rc, 0);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.status, TCH_ECANCELED);
    assert_non_null(strstr(r.message, "observer gave up"));
    assert_int_equal(f->hits, 1);
    assert_int_equal(c.hooked, 1);
    result_free(&c.before);
    result_free(&r);
}

typedef struct freer {
    tch_channel *ch;
    int calls;
} freer;

static void free_channel_in_callback(const tch_response *res, void *ud) {
    freer *fr = ud;
    (void)res;
    fr->calls++;
    tch_channel_free(fr->ch); /* from inside the channel's own callback */
}

static void freeing_the_channel_from_its_own_callback_is_safe(void **state) {
    fixture *f = *state;
    freer fr = {0};
    assert_int_equal(tch_channel_new(f->base, "freed-in-callback", NULL, &fr.ch, NULL), 0);
    result other = {0};
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("echo"),
                       .host_port = f->hp, .timeout_ms = 2000};
    tch_call_opts slow = {.service = "server", .endpoint = tch_slice_cstr("flaky"),
                          .host_port = f->hp, .timeout_ms = 2000};
    f->busy_left = 100; /* keeps the second call retrying until the free */
    assert_int_equal(tch_channel_call(fr.ch, &o, free_channel_in_callback, &fr, NULL), 0);
    assert_int_equal(tch_channel_call(fr.ch, &slow, on_result, &other, NULL), 0);
    assert_true(tch_test_run_until(f->base, &fr.calls, 2000));
    assert_true(tch_test_run_until(f->base, &other.done, 2000)); /* ended, exactly once */
    assert_int_equal(other.done, 1);
    assert_int_equal(fr.calls, 1);
    result_free(&other);
}

static void big_answer(tch_inbound *in, void *ud) {
    fixture *f = ud;
    static uint8_t big[200000];
    f->hits++;
    tch_inbound_respond(in, 0, TCH_SLICE_NULL, tch_slice_of(big, sizeof big));
}

static void an_answer_over_the_limit_is_not_retried(void **state) {
    fixture *f = *state;
    tch_channel_register(f->server, NULL, "big", big_answer, f);
    tch_channel_options opts = {.max_arg_size = 100000};
    tch_channel *c;
    tch_channel_new(f->base, "small-client", &opts, &c, NULL);
    result r = {0};
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("big"),
                       .host_port = f->hp, .timeout_ms = 2000};
    assert_int_equal(tch_channel_call(c, &o, on_result, &r, NULL), 0);
    assert_true(tch_test_run_until(f->base, &r.done, 3000));
    assert_int_equal(r.status, TCH_ETOOBIG);
    assert_int_equal(r.error_code, TCH_PCODE_UNEXPECTED);
    assert_int_equal(f->hits, 1); /* the service ran once: no retry as if Busy */
    tch_channel_free(c);
    result_free(&r);
}

/* ---- blocking client ------------------------------------------------------ */

typedef struct served {
    struct event_base *base;
    tch_channel *ch;
    char hp[64];
    int stop;
    int conns; /* the server's connection count, published by its thread */
} served;

static void stop_cb(evutil_socket_t fd, short what, void *arg) {
    served *s = arg;
    (void)fd, (void)what;
    __atomic_store_n(&s->conns, (int)tch_channel_connection_count(s->ch), __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&s->stop, __ATOMIC_SEQ_CST))
        event_base_loopbreak(s->base);
}

static void *serve(void *arg) {
    served *s = arg;
    struct event *tick = event_new(s->base, -1, EV_PERSIST, stop_cb, s);
    struct timeval tv = {0, 10000};
    event_add(tick, &tv);
    event_base_dispatch(s->base);
    event_free(tick);
    return NULL;
}

/* A server with an echo endpoint on its own loop, in its own thread. */
static pthread_t serve_echo(served *s, fixture *f, const tch_channel_options *opts) {
    s->base = event_base_new();
    tch_channel_new(s->base, "server", opts, &s->ch, NULL);
    tch_channel_register(s->ch, NULL, "echo", echo, f);
    assert_int_equal(tch_channel_listen(s->ch, NULL, NULL), 0);
    snprintf(s->hp, sizeof s->hp, "%s", tch_channel_host_port(s->ch));
    pthread_t th;
    pthread_create(&th, NULL, serve, s);
    return th;
}

static void stop_serving(served *s, pthread_t th) {
    __atomic_store_n(&s->stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(th, NULL);
    tch_channel_free(s->ch);
    event_base_free(s->base);
}

static void blocking_client_calls_without_a_loop(void **state) {
    (void)state;
    served s = {0};
    fixture f = {0};
    pthread_t th = serve_echo(&s, &f, NULL);

    tch_sync_client *c;
    tch_sync_client_new("sync-client", NULL, &c, NULL);
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("echo"),
                       .arg2 = tch_slice_cstr("h"), .arg3 = tch_slice_cstr("blocking"),
                       .host_port = s.hp, .timeout_ms = 2000};
    tch_sync_response res;
    assert_int_equal(tch_sync_call(c, &o, &res, NULL), 0);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.arg3.len, 8);
    assert_memory_equal(res.arg3.ptr, "blocking", 8);
    assert_true(res.nheaders >= 1); /* "as" comes back */
    tch_sync_response_free(&res);

    tch_call_opts bad = o;
    bad.endpoint = tch_slice_cstr("missing");
    assert_int_equal(tch_sync_call(c, &bad, &res, NULL), 0);
    assert_int_equal(res.status, TCH_EREMOTE);
    assert_int_equal(res.error_code, TCH_PCODE_BAD_REQUEST);
    assert_non_null(strstr(res.message, "missing"));
    tch_sync_response_free(&res);
    tch_sync_client_free(c);
    stop_serving(&s, th);
}

static uint64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The blocking client's loop runs only inside its calls: a connection the
 * server closed in between must not carry the next call (with retries off,
 * that call would fail without reaching the server). */
static void blocking_client_sees_a_close_between_calls(void **state) {
    (void)state;
    served s = {0};
    fixture f = {0};
    tch_channel_options so = {.idle_timeout_ms = 20}; /* closes the client's connection soon */
    pthread_t th = serve_echo(&s, &f, &so);
    tch_sync_client *c;
    tch_sync_client_new("sync-client", NULL, &c, NULL);
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("echo"),
                       .arg3 = tch_slice_cstr("x"), .host_port = s.hp, .timeout_ms = 2000,
                       .retry_on = TCH_RETRY_NEVER};
    for (int i = 0; i < 2; i++) {
        tch_sync_response res;
        assert_int_equal(tch_sync_call(c, &o, &res, NULL), 0);
        if (res.status != 0)
            fail_msg("call %d: %s", i, res.message);
        tch_sync_response_free(&res);
        /* wait (bounded) for the server to have closed the idle connection:
         * for a count it publishes from now on */
        __atomic_store_n(&s.conns, -1, __ATOMIC_SEQ_CST);
        uint64_t until = mono_ms() + 5000;
        while (__atomic_load_n(&s.conns, __ATOMIC_SEQ_CST) != 0 && mono_ms() < until)
            sched_yield();
        assert_int_equal(__atomic_load_n(&s.conns, __ATOMIC_SEQ_CST), 0);
    }
    tch_sync_client_free(c);
    stop_serving(&s, th);
}

/* ---- the channel's one clock ---------------------------------------------- */

typedef struct fake_clock {
    uint64_t ms;
} fake_clock;

static uint64_t read_fake_clock(void *ud) { return ((fake_clock *)ud)->ms; }

/* Runs base until done(ud) or ms (real) pass; returns done(ud). */
static int run_until_fn(struct event_base *base, int (*done)(void *), void *ud, int ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    int expired = 0;
    struct event *t = evtimer_new(base, tch_test_bound_fired, &expired);
    evtimer_add(t, &tv);
    while (!done(ud) && !expired && event_base_loop(base, EVLOOP_ONCE) == 0)
        ;
    event_free(t);
    return done(ud);
}

static int frame_begun(void *ud) {
    tch_channel *ch = ud;
    return ch->conns && tch_conn_in_pending(ch->conns->conn) >= 8;
}

static int no_conns(void *ud) { return ((tch_channel *)ud)->conns == NULL; }

/* Every deadline of a connection is read from the channel's clock: moved
 * by a test, it drives a frame timeout of a minute in no time. */
static void the_channels_clock_drives_the_frame_timeout(void **state) {
    (void)state;
    struct event_base *base = event_base_new();
    fake_clock clk = {.ms = 1000000};
    tch_channel_options o = {.frame_timeout_ms = 60000, .now_ms = read_fake_clock,
                             .clock_ud = &clk};
    tch_channel *ch;
    tch_error err;
    assert_int_equal(tch_channel_new(base, "clocked", &o, &ch, &err), 0);
    assert_int_equal(tch_channel_listen(ch, "127.0.0.1:0", &err), 0);
    struct sockaddr_storage ss;
    int sslen;
    assert_int_equal(tch_parse_host_port(tch_channel_host_port(ch), &ss, &sslen, &err), 0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&ss, (socklen_t)sslen), 0);
    static const uint8_t header[] = {0x07, 0xd0, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01};
    assert_int_equal(send(fd, header, sizeof header, 0), (ssize_t)sizeof header); /* an init begins */
    assert_true(run_until_fn(base, frame_begun, ch, 3000));
    clk.ms += 59999;
    assert_int_equal(send(fd, "z", 1, 0), 1);
    assert_false(run_until_fn(base, no_conns, ch, 100)); /* within the timeout still */
    clk.ms += 1;
    assert_int_equal(send(fd, "z", 1, 0), 1); /* read: the deadline has passed */
    assert_true(run_until_fn(base, no_conns, ch, 3000));
    uint8_t got[512];
    ssize_t n = recv(fd, got, sizeof got - 1, MSG_DONTWAIT);
    assert_true(n > 16);
    assert_int_equal(got[2], TCH_FRAME_ERROR); /* the peer is told why */
    got[n] = 0;
    for (ssize_t i = 0; i < n; i++) /* the message, as text */
        got[i] = got[i] ? got[i] : ' ';
    assert_non_null(strstr((char *)got, "frame timeout"));
    close(fd);
    tch_channel_free(ch);
    event_base_free(base);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(retries_go_to_the_live_peer, setup, teardown),
        cmocka_unit_test_setup_teardown(retry_on_never_reports_the_connection_error, setup, teardown),
        cmocka_unit_test_setup_teardown(one_failed_connection_is_one_peer_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(a_retry_goes_to_a_peer_not_tried_yet, setup, teardown),
        cmocka_unit_test_setup_teardown(a_draining_peer_is_avoided, setup, teardown),
        cmocka_unit_test_setup_teardown(busy_is_retried_within_the_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(retry_limit_none_and_retry_on_never_make_one_try, setup, teardown),
        cmocka_unit_test_setup_teardown(timeouts_are_retried_only_with_t, setup, teardown),
        cmocka_unit_test_setup_teardown(transport_headers_reach_the_handler, setup, teardown),
        cmocka_unit_test_setup_teardown(trace_propagates_through_a_handler_call, setup, teardown),
        cmocka_unit_test_setup_teardown(trace_propagates_to_a_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(hook_can_answer_or_forward, setup, teardown),
        cmocka_unit_test_setup_teardown(borrowed_args_are_read_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(a_hook_holds_a_copy_of_borrowed_args, setup, teardown),
        cmocka_unit_test_setup_teardown(freeing_the_channel_ends_answers_still_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(a_callback_cancelling_its_own_call_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(a_call_waiting_to_retry_can_be_cancelled, setup, teardown),
        cmocka_unit_test_setup_teardown(an_observer_cancelling_ends_the_call, setup, teardown),
        cmocka_unit_test_setup_teardown(freeing_the_channel_from_its_own_callback_is_safe, setup, teardown),
        cmocka_unit_test_setup_teardown(an_answer_over_the_limit_is_not_retried, setup, teardown),
        cmocka_unit_test(blocking_client_calls_without_a_loop),
        cmocka_unit_test(blocking_client_sees_a_close_between_calls),
        cmocka_unit_test(the_channels_clock_drives_the_frame_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
