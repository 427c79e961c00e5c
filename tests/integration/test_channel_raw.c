/* Raw calls between two channels over 127.0.0.1: handshake, echo,
 * multiplexing, timeouts, errors, limits, and hostile peers. */
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop.h"
#include "ports.h"
#include "result.h"
#include "wire.h"

typedef struct fixture {
    struct event_base *base;
    tch_channel *server;
    tch_channel *client;
    char hp[64]; /* a copy: the listener's string goes when it closes */
} fixture;

static void echo(tch_inbound *in, void *ud) {
    (void)ud;
    tch_inbound_respond(in, 0, tch_inbound_arg2(in), tch_inbound_arg3(in));
}

static void app_error(tch_inbound *in, void *ud) {
    (void)ud;
    tch_inbound_respond(in, 1, tch_slice_cstr(""), tch_slice_cstr("nope"));
}

/* Holds calls unanswered; answered at teardown. */
typedef struct holder {
    tch_inbound *held[256];
    int n;
} holder;

static void hold(tch_inbound *in, void *ud) {
    holder *h = ud;
    h->held[h->n++] = in;
}

static void answer_held(holder *h) {
    for (int i = 0; i < h->n; i++)
        tch_inbound_respond(h->held[i], 0, tch_slice_cstr(""), tch_slice_cstr("late"));
    h->n = 0;
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->base = event_base_new();
    tch_channel_new(f->base, "server", NULL, &f->server, NULL);
    tch_channel_new(f->base, "client", NULL, &f->client, NULL);
    tch_error err;
    assert_int_equal(tch_channel_listen(f->server, NULL, &err), 0);
    snprintf(f->hp, sizeof f->hp, "%s", tch_channel_host_port(f->server));
    tch_channel_register(f->server, NULL, "echo", echo, NULL);
    tch_channel_register(f->server, NULL, "apperr", app_error, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    tch_channel_free(f->client);
    if (f->server)
        tch_channel_free(f->server);
    event_base_free(f->base);
    free(f);
    return 0;
}

static int call(fixture *f, const char *endpoint, tch_slice arg2, tch_slice arg3,
                uint32_t timeout_ms, result *r) {
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr(endpoint),
                       .arg2 = arg2, .arg3 = arg3, .host_port = f->hp,
                       .timeout_ms = timeout_ms};
    tch_error err;
    return tch_channel_call(f->client, &o, on_result, r, &err);
}

static void listen_is_ephemeral_and_listen_twice_fails(void **state) {
    fixture *f = *state;
    assert_true(tch_channel_is_listening(f->server));
    assert_false(tch_channel_is_listening(f->client));
    assert_non_null(strstr(f->hp, "127.0.0.1:"));
    assert_int_not_equal(atoi(strchr(f->hp, ':') + 1), 0);
    tch_error err;
    assert_int_equal(tch_channel_listen(f->server, NULL, &err), TCH_ESTATE);
    assert_non_null(strstr(err.msg, "already listening"));
}

static void echo_round_trip(void **state) {
    fixture *f = *state;
    result r = {0};
    assert_int_equal(call(f, "echo", tch_slice_cstr("head"), tch_slice_cstr("body"), 1000, &r), 0);
    assert_int_equal(r.done, 0); /* never inside tch_channel_call */
    assert_true(tch_test_run_until(f->base, &r.done, 2000));
    assert_int_equal(r.status, 0);
    assert_int_equal(r.code, 0);
    assert_memory_equal(r.arg2.ptr, "head", 4);
    assert_memory_equal(r.arg3.ptr, "body", 4);
    result_free(&r);
}

static void application_error_code(void **state) {
    fixture *f = *state;
    result r = {0};
    call(f, "apperr", TCH_SLICE_NULL, TCH_SLICE_NULL, 1000, &r);
    assert_true(tch_test_run_until(f->base, &r.done, 2000));
    assert_int_equal(r.status, 0);
    assert_int_equal(r.code, 1);
    assert_int_equal(r.arg3.len, 4);
    result_free(&r);
}

static void unknown_endpoint_is_bad_request_naming_it(void **state) {
    fixture *f = *state;
    result r = {0};
    call(f, "nosuch", TCH_SLICE_NULL, TCH_SLICE_NULL, 1000, &r);
    assert_true(tch_test_run_until(f->base, &r.done, 2000));
    assert_int_equal(r.status, TCH_EREMOTE);
    assert_int_equal(r.error_code, TCH_PCODE_BAD_REQUEST);
    assert_non_null(strstr(r.message, "nosuch"));
    assert_non_null(strstr(r.message, "server"));
    result_free(&r);
}

static void unknown_service_is_bad_request_naming_it(void **state) {
    fixture *f = *state;
    result r = {0};
    tch_call_opts o = {.service = "nosvc", .endpoint = tch_slice_cstr("echo"),
                       .host_port = f->hp, .timeout_ms = 1000};
    assert_int_equal(tch_channel_call(f->client, &o, on_result, &r, NULL), 0);
    assert_true(tch_test_run_until(f->base, &r.done, 2000));
    assert_int_equal(r.status, TCH_EREMOTE);
    assert_int_equal(r.error_code, TCH_PCODE_BAD_REQUEST);
    assert_non_null(strstr(r.message, "\"nosvc\""));
    result_free(&r);
}

static void answer_with_service(tch_inbound *in, void *ud) {
    tch_inbound_respond(in, 0, TCH_SLICE_NULL, tch_slice_cstr(ud));
}

/* One channel serves several services; the same endpoint name in each
 * reaches that service's handler. */
static void handlers_are_per_service(void **state) {
    fixture *f = *state;
    tch_channel_register(f->server, "alpha", "who", answer_with_service, "alpha");
    tch_channel_register(f->server, "beta", "who", answer_with_service, "beta");
    const char *services[] = {"alpha", "beta"};
    for (int i = 0; i < 2; i++) {
        result r = {0};
        tch_call_opts o = {.service = services[i], .endpoint = tch_slice_cstr("who"),
                           .host_port = f->hp, .timeout_ms = 1000};
        assert_int_equal(tch_channel_call(f->client, &o, on_result, &r, NULL), 0);
        assert_true(tch_test_run_until(f->base, &r.done, 2000));
        assert_int_equal(r.status, 0);
        assert_int_equal(r.arg3.len, strlen(services[i]));
        assert_memory_equal(r.arg3.ptr, services[i], r.arg3.len);
        result_free(&r);
    }
}

/* A given host:port is used as given; a second channel asking for the same
 * one gets an error naming it, and the first keeps serving. */
static void listen_on_a_given_host_port(void **state) {
    fixture *f = *state;
    tch_channel *probe;
    tch_channel_new(f->base, "probe", NULL, &probe, NULL);
    tch_error err;
    assert_int_equal(tch_channel_listen(probe, NULL, &err), 0);
    char hp[64];
    snprintf(hp, sizeof hp, "%s", tch_channel_host_port(probe));
    /* The port is free again: listen there on purpose. (Another socket
     * could take it in between; ephemeral ports are drawn at random from
     * tens of thousands, so that is not worth a retry loop.) */
    tch_channel_free(probe);
    tch_channel *fixed;
    tch_channel_new(f->base, "fixed", NULL, &fixed, NULL);
    assert_int_equal(tch_channel_listen(fixed, hp, &err), 0);
    assert_string_equal(tch_channel_host_port(fixed), hp);
    tch_channel_register(fixed, NULL, "echo", echo, NULL);
    tch_channel *clash;
    tch_channel_new(f->base, "clash", NULL, &clash, NULL);
    assert_int_not_equal(tch_channel_listen(clash, hp, &err), 0);
    assert_non_null(strstr(err.msg, hp));
    assert_false(tch_channel_is_listening(clash));
    result r = {0};
    tch_call_opts o = {.service = "fixed", .endpoint = tch_slice_cstr("echo"),
                       .arg3 = tch_slice_cstr("x"), .host_port = hp, .timeout_ms = 1000};
    assert_int_equal(tch_channel_call(f->client, &o, on_result, &r, NULL), 0);
    assert_true(tch_test_run_until(f->base, &r.done, 2000));
    assert_int_equal(r.status, 0);
    result_free(&r);
    tch_channel_free(clash);
    tch_channel_free(fixed);
}

static void fallback(tch_inbound *in, void *ud) {
    (void)ud;
    tch_inbound_respond(in, 0, tch_slice_cstr("fallback"), tch_inbound_endpoint(in));
}

static void fallback_takes_unknown_endpoints(void **state) {
    fixture *f = *state;
    tch_channel_set_fallback(f->server, fallback, NULL);
    result r = {0};
    call(f, "whatever", TCH_SLICE_NULL, TCH_SLICE_NULL, 1000, &r);
    assert_true(tch_test_run_until(f->base, &r.done, 2000));
    assert_int_equal(r.status, 0);
    assert_int_equal(r.arg3.len, 8);
    assert_memory_equal(r.arg3.ptr, "whatever", 8);
    result_free(&r);
}

static void many_concurrent_calls_share_one_connection(void **state) {
    fixture *f = *state;
    enum { N = 500 };
    static result rs[N];
    memset(rs, 0, sizeof rs);
    int done = 0;
    for (int i = 0; i < N; i++) {
        char body[32];
        snprintf(body, sizeof body, "call-%d", i);
        call(f, "echo", TCH_SLICE_NULL, tch_slice_cstr(body), 5000, &rs[i]);
    }
    for (int spins = 0; spins < 100000 && done < N; spins++) {
        event_base_loop(f->base, EVLOOP_ONCE);
        done = 0;
        for (int i = 0; i < N; i++)
            done += rs[i].done;
    }
    assert_int_equal(done, N);
    assert_int_equal(tch_channel_connection_count(f->client), 1);
    assert_int_equal(tch_channel_connection_count(f->server), 1);
    for (int i = 0; i < N; i++) {
        char body[32];
        int n = snprintf(body, sizeof body, "call-%d", i);
        assert_int_equal(rs[i].status, 0);
        assert_int_equal(rs[i].arg3.len, (size_t)n);
        assert_memory_equal(rs[i].arg3.ptr, body, (size_t)n);
        result_free(&rs[i]);
    }
}

typedef struct later {
    tch_inbound *in;
    struct event *ev;
} later;

static void answer_later_cb(evutil_socket_t fd, short what, void *arg) {
    later *l = arg;
    (void)fd, (void)what;
    tch_inbound_respond(l->in, 0, tch_slice_cstr(""), tch_slice_cstr("later"));
    event_free(l->ev);
    free(l);
}

static void answer_later(tch_inbound *in, void *ud) {
    (void)ud;
    later *l = malloc(sizeof *l);
    l->in = in;
    l->ev = evtimer_new(tch_channel_base(tch_inbound_channel(in)), answer_later_cb, l);
    struct timeval tv = {0, 20000};
    evtimer_add(l->ev, &tv);
}

static void handler_answers_after_other_io(void **state) {
    fixture *f = *state;
    tch_channel_register(f->server, NULL, "later", answer_later, NULL);
    result r1 = {0}, r2 = {0};
    call(f, "later", TCH_SLICE_NULL, TCH_SLICE_NULL, 2000, &r1);
    call(f, "echo", TCH_SLICE_NULL, tch_slice_cstr("quick"), 2000, &r2);
    assert_true(tch_test_run_until(f->base, &r2.done, 2000));
    assert_int_equal(r1.done, 0); /* the quick call overtook the slow one */
    assert_true(tch_test_run_until(f->base, &r1.done, 2000));
    assert_int_equal(r1.status, 0);
    assert_memory_equal(r1.arg3.ptr, "later", 5);
    result_free(&r1);
    result_free(&r2);
}

static void caller_timeout_then_late_answer_is_dropped(void **state) {
    fixture *f = *state;
    holder h = {0};
    tch_channel_register(f->server, NULL, "hold", hold, &h);
    result r = {0};
    call(f, "hold", TCH_SLICE_NULL, TCH_SLICE_NULL, 50, &r);
    assert_true(tch_test_run_until(f->base, &r.done, 2000));
    /* Client timer or server TTL, whichever fired first: both say timeout. */
    assert_true(r.status == TCH_ETIMEOUT || r.status == TCH_EREMOTE);
    assert_int_equal(r.error_code, TCH_PCODE_TIMEOUT);
    assert_non_null(strstr(r.message, "timed out"));
    assert_int_equal(h.n, 1);
    /* The server's TTL passes too: its answer is then refused locally. */
    for (int i = 0; i < 100 && !tch_inbound_is_done(h.held[0]); i++)
        event_base_loop(f->base, EVLOOP_ONCE);
    assert_true(tch_inbound_is_done(h.held[0]));
    assert_int_equal(tch_inbound_respond(h.held[0], 0, TCH_SLICE_NULL, TCH_SLICE_NULL),
                     TCH_ECLOSED);
    h.n = 0;
    /* The connection still works. */
    result r2 = {0};
    call(f, "echo", TCH_SLICE_NULL, tch_slice_cstr("x"), 1000, &r2);
    assert_true(tch_test_run_until(f->base, &r2.done, 2000));
    assert_int_equal(r2.status, 0);
    assert_int_equal(r.done, 1);
    result_free(&r);
    result_free(&r2);
}

static void connection_refused_is_network_error(void **state) {
    fixture *f = *state;
    char hp[64];
    assert_int_equal(tch_test_dead_port(hp, sizeof hp), 0);
    result r = {0};
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("echo"),
                       .host_port = hp, .timeout_ms = 2000};
    assert_int_equal(tch_channel_call(f->client, &o, on_result, &r, NULL), 0);
    assert_true(tch_test_run_until(f->base, &r.done, 3000));
    assert_int_equal(r.error_code, TCH_PCODE_NETWORK);
    assert_true(r.status == TCH_EIO || r.status == TCH_ECLOSED);
    assert_non_null(strstr(r.message, hp));
    result_free(&r);
}

static void server_going_away_fails_in_flight_calls(void **state) {
    fixture *f = *state;
    holder h = {0};
    tch_channel_register(f->server, NULL, "hold", hold, &h);
    result rs[3] = {{0}};
    int done = 0;
    for (int i = 0; i < 3; i++)
        call(f, "hold", TCH_SLICE_NULL, TCH_SLICE_NULL, 5000, &rs[i]);
    assert_true(tch_test_run_until_count(f->base, &h.n, 3, 2000));
    tch_channel_free(f->server);
    f->server = NULL;
    answer_held(&h); /* detached: dropped, freed */
    for (int spins = 0; spins < 1000 && done < 3; spins++) {
        event_base_loop(f->base, EVLOOP_ONCE);
        done = rs[0].done + rs[1].done + rs[2].done;
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rs[i].done, 1);
        assert_int_equal(rs[i].error_code, TCH_PCODE_NETWORK);
        result_free(&rs[i]);
    }
}

static void arg_over_limit_is_refused_with_a_clear_error(void **state) {
    fixture *f = *state;
    tch_channel_options o = {.max_arg_size = 1024};
    tch_channel *small;
    tch_channel_new(f->base, "small", &o, &small, NULL);
    static uint8_t big[2048];
    tch_call_opts co = {.service = "server", .endpoint = tch_slice_cstr("echo"),
                        .arg3 = tch_slice_of(big, sizeof big), .host_port = f->hp};
    tch_error err;
    result r = {0};
    assert_int_equal(tch_channel_call(small, &co, on_result, &r, &err), TCH_ETOOBIG);
    assert_non_null(strstr(err.msg, "arg3"));
    assert_non_null(strstr(err.msg, "1024"));
    tch_channel_free(small);
}

static void server_limit_answers_bad_request(void **state) {
    fixture *f = *state;
    tch_channel_options o = {.max_arg_size = 1024};
    tch_channel *small;
    tch_channel_new(f->base, "server", &o, &small, NULL);
    tch_error err;
    assert_int_equal(tch_channel_listen(small, NULL, &err), 0);
    tch_channel_register(small, NULL, "echo", echo, NULL);
    static uint8_t big[4096];
    tch_call_opts co = {.service = "server", .endpoint = tch_slice_cstr("echo"),
                        .arg3 = tch_slice_of(big, sizeof big),
                        .host_port = tch_channel_host_port(small), .timeout_ms = 2000};
    result r = {0};
    assert_int_equal(tch_channel_call(f->client, &co, on_result, &r, &err), 0);
    assert_true(tch_test_run_until(f->base, &r.done, 3000));
    assert_int_equal(r.status, TCH_EREMOTE);
    assert_int_equal(r.error_code, TCH_PCODE_BAD_REQUEST);
    assert_non_null(strstr(r.message, "arg3"));
    tch_channel_free(small);
    result_free(&r);
}

static void idle_connections_are_closed_and_redialled(void **state) {
    fixture *f = *state;
    tch_channel_options o = {.idle_timeout_ms = 60};
    tch_channel *idle;
    tch_channel_new(f->base, "idler", &o, &idle, NULL);
    result r = {0};
    tch_call_opts co = {.service = "server", .endpoint = tch_slice_cstr("echo"),
                        .arg3 = tch_slice_cstr("1"), .host_port = f->hp, .timeout_ms = 1000};
    tch_channel_call(idle, &co, on_result, &r, NULL);
    assert_true(tch_test_run_until(f->base, &r.done, 2000));
    assert_int_equal(tch_channel_connection_count(idle), 1);
    /* The sweep runs every 30 ms: wait (bounded) for it to close the conn. */
    for (int i = 0; i < 200 && tch_channel_connection_count(idle) > 0; i++)
        event_base_loop(f->base, EVLOOP_ONCE);
    assert_int_equal(tch_channel_connection_count(idle), 0);
    result r2 = {0};
    tch_channel_call(idle, &co, on_result, &r2, NULL); /* dials again */
    assert_true(tch_test_run_until(f->base, &r2.done, 2000));
    assert_int_equal(r2.status, 0);
    tch_channel_free(idle);
    result_free(&r);
    result_free(&r2);
}

static void cancel_reaches_the_server_and_ends_the_call(void **state) {
    fixture *f = *state;
    holder h = {0};
    tch_channel_register(f->server, NULL, "hold", hold, &h);
    result r = {0};
    uint32_t handle = 0;
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("hold"),
                       .host_port = f->hp, .timeout_ms = 5000, .cancel_handle = &handle};
    assert_int_equal(tch_channel_call(f->client, &o, on_result, &r, NULL), 0);
    assert_int_not_equal(handle, 0);
    assert_true(tch_test_run_until(f->base, &h.n, 2000));
    assert_int_equal(tch_channel_cancel(f->client, handle, "user gave up"), 0);
    assert_int_equal(r.done, 0); /* reported from the loop */
    assert_true(tch_test_run_until(f->base, &r.done, 2000));
    assert_int_equal(r.status, TCH_ECANCELED);
    assert_int_equal(r.error_code, TCH_PCODE_CANCELLED);
    assert_non_null(strstr(r.message, "user gave up"));
    /* The cancel frame reaches the server: its call is done. */
    for (int i = 0; i < 100 && !tch_inbound_is_done(h.held[0]); i++)
        event_base_loop(f->base, EVLOOP_ONCE);
    assert_true(tch_inbound_is_done(h.held[0]));
    answer_held(&h);
    assert_int_equal(tch_channel_cancel(f->client, handle, NULL), TCH_ENOTFOUND);
    result_free(&r);
}

static void pending_call_limit_is_enforced(void **state) {
    fixture *f = *state;
    holder h = {0};
    tch_channel_register(f->server, NULL, "hold", hold, &h);
    tch_channel_options opts = {.max_pending_calls = 2};
    tch_channel *c;
    tch_channel_new(f->base, "limited", &opts, &c, NULL);
    result rs[3] = {{0}};
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("hold"),
                       .host_port = f->hp, .timeout_ms = 2000};
    tch_error err;
    assert_int_equal(tch_channel_call(c, &o, on_result, &rs[0], &err), 0);
    assert_int_equal(tch_channel_call(c, &o, on_result, &rs[1], &err), 0);
    assert_int_equal(tch_channel_call(c, &o, on_result, &rs[2], &err), TCH_ETOOBIG);
    assert_non_null(strstr(err.msg, "pending"));
    assert_true(tch_test_run_until_count(f->base, &h.n, 2, 2000));
    answer_held(&h);
    int done = 0;
    for (int i = 0; i < 100 && done < 2; i++) {
        event_base_loop(f->base, EVLOOP_ONCE);
        done = rs[0].done + rs[1].done;
    }
    assert_int_equal(done, 2);
    tch_channel_free(c);
    result_free(&rs[0]);
    result_free(&rs[1]);
}

/* max_pending_calls also bounds what a peer may have in progress on one
 * connection to us: the call beyond it gets Busy, and once the server
 * catches up the connection takes calls again. */
static void incoming_calls_beyond_the_limit_get_busy(void **state) {
    fixture *f = *state;
    holder h = {0};
    tch_channel_options opts = {.max_pending_calls = 2};
    tch_channel *srv;
    tch_channel_new(f->base, "limited", &opts, &srv, NULL);
    tch_error err;
    assert_int_equal(tch_channel_listen(srv, NULL, &err), 0);
    tch_channel_register(srv, NULL, "hold", hold, &h);
    tch_call_opts o = {.service = "limited", .endpoint = tch_slice_cstr("hold"),
                       .host_port = tch_channel_host_port(srv), .timeout_ms = 2000};
    result rs[4] = {{0}};
    for (int i = 0; i < 3; i++)
        assert_int_equal(tch_channel_call(f->client, &o, on_result, &rs[i], NULL), 0);
    assert_true(tch_test_run_until(f->base, &rs[2].done, 2000));
    assert_int_equal(rs[2].status, TCH_EREMOTE);
    assert_int_equal(rs[2].error_code, TCH_PCODE_BUSY);
    assert_non_null(strstr(rs[2].message, "2 calls already in progress"));
    assert_int_equal(h.n, 2);
    answer_held(&h);
    int done = 0;
    for (int i = 0; i < 200 && done < 2; i++) {
        event_base_loop(f->base, EVLOOP_ONCE);
        done = rs[0].done + rs[1].done;
    }
    assert_int_equal(done, 2);
    assert_int_equal(rs[0].status, 0);
    assert_int_equal(tch_channel_call(f->client, &o, on_result, &rs[3], NULL), 0);
    assert_true(tch_test_run_until_count(f->base, &h.n, 1, 2000));
    answer_held(&h);
    assert_true(tch_test_run_until(f->base, &rs[3].done, 2000));
    assert_int_equal(rs[3].status, 0);
    for (int i = 0; i < 4; i++)
        result_free(&rs[i]);
    tch_channel_free(srv);
}

/* Idle connections are closed by default (5 min), but the sweep that does
 * it is pending only while there are connections: a client whose peers
 * are gone leaves the loop with nothing to wait for, so dispatch returns. */
static void default_idle_sweep_leaves_an_empty_loop(void **state) {
    (void)state;
    struct event_base *base = event_base_new();
    tch_channel *srv;
    tch_channel_new(base, "srv", NULL, &srv, NULL);
    tch_channel *cli;
    tch_channel_new(base, "cli", NULL, &cli, NULL);
    tch_error err;
    assert_int_equal(tch_channel_listen(srv, NULL, &err), 0);
    tch_channel_register(srv, NULL, "echo", echo, NULL);
    result r = {0};
    tch_call_opts o = {.service = "srv", .endpoint = tch_slice_cstr("echo"),
                       .host_port = tch_channel_host_port(srv), .timeout_ms = 1000};
    assert_int_equal(tch_channel_call(cli, &o, on_result, &r, NULL), 0);
    assert_true(tch_test_run_until(base, &r.done, 2000));
    assert_int_equal(r.status, 0);
    tch_channel_free(srv); /* the client's connection now closes */
    int stuck = 0;
    struct event *bound = evtimer_new(base, tch_test_bound_fired, &stuck);
    struct timeval tv = {3, 0};
    evtimer_add(bound, &tv);
    for (int i = 0; i < 1000 && tch_channel_connection_count(cli) > 0 && !stuck; i++)
        event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(tch_channel_connection_count(cli), 0);
    event_free(bound);
    /* 1: nothing was pending (non-blocking, so a stray timer fails, not hangs) */
    assert_int_equal(event_base_loop(base, EVLOOP_NONBLOCK), 1);
    tch_channel_free(cli);
    event_base_free(base);
    result_free(&r);
}

typedef struct pinged {
    int done, status;
    uint64_t rtt_us;
} pinged;

static void on_ping(int status, uint64_t rtt_us, void *ud) {
    pinged *p = ud;
    p->done++;
    p->status = status;
    p->rtt_us = rtt_us;
}

static void ping_is_answered_by_the_peer(void **state) {
    fixture *f = *state;
    pinged p = {0};
    assert_int_equal(tch_channel_ping(f->client, f->hp, 1000, on_ping, &p, NULL), 0);
    assert_int_equal(p.done, 0);
    assert_true(tch_test_run_until(f->base, &p.done, 2000));
    assert_int_equal(p.status, 0);
    assert_true(p.rtt_us > 0 && p.rtt_us < 1000000);
    /* a dead peer: the ping fails as the connection does */
    char dead[64];
    assert_int_equal(tch_test_dead_port(dead, sizeof dead), 0);
    pinged q = {0};
    assert_int_equal(tch_channel_ping(f->client, dead, 1000, on_ping, &q, NULL), 0);
    assert_true(tch_test_run_until(f->base, &q.done, 2000));
    assert_true(q.status == TCH_EIO || q.status == TCH_ECLOSED);
}

static void on_closed(tch_channel *ch, void *ud) {
    (void)ch;
    (*(int *)ud)++;
}

static void graceful_close_lets_calls_in_flight_finish(void **state) {
    fixture *f = *state;
    holder h = {0};
    tch_channel_register(f->server, NULL, "hold", hold, &h);
    result held = {0};
    call(f, "hold", TCH_SLICE_NULL, TCH_SLICE_NULL, 5000, &held);
    assert_true(tch_test_run_until(f->base, &h.n, 2000));
    int closed = 0;
    assert_int_equal(tch_channel_close(f->server, 0, on_closed, &closed), 0);
    assert_false(tch_channel_is_listening(f->server));
    /* A new call on the open connection is declined, not lost. */
    result late = {0};
    call(f, "echo", TCH_SLICE_NULL, tch_slice_cstr("x"), 2000, &late);
    assert_true(tch_test_run_until(f->base, &late.done, 2000));
    assert_int_equal(late.error_code, TCH_PCODE_DECLINED);
    assert_int_equal(closed, 0); /* the held call is still owed */
    answer_held(&h);
    assert_true(tch_test_run_until(f->base, &held.done, 2000));
    assert_int_equal(held.status, 0);  /* the answer reached the client */
    assert_memory_equal(held.arg3.ptr, "late", 4);
    assert_true(tch_test_run_until(f->base, &closed, 2000));
    assert_int_equal(tch_channel_connection_count(f->server), 0);
    result_free(&held);
    result_free(&late);
}

static void graceful_close_times_out_stuck_calls(void **state) {
    fixture *f = *state;
    holder h = {0};
    tch_channel_register(f->server, NULL, "hold", hold, &h);
    result held = {0};
    call(f, "hold", TCH_SLICE_NULL, TCH_SLICE_NULL, 5000, &held);
    assert_true(tch_test_run_until(f->base, &h.n, 2000));
    int closed = 0;
    tch_channel_close(f->server, 50, on_closed, &closed);
    assert_true(tch_test_run_until(f->base, &closed, 2000));
    assert_true(tch_test_run_until(f->base, &held.done, 2000));
    assert_int_equal(held.error_code, TCH_PCODE_NETWORK);
    answer_held(&h); /* detached: dropped */
}

/* ---- hostile peers over a raw socket -------------------------------------- */

static int raw_connect(const char *hp) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    sin.sin_port = htons((uint16_t)atoi(strchr(hp, ':') + 1));
    assert_int_equal(connect(s, (struct sockaddr *)&sin, sizeof sin), 0);
    return s;
}

typedef struct raw_reader {
    int fd;
    tch_buf got;
    int closed;
} raw_reader;

static void raw_read_cb(evutil_socket_t fd, short what, void *arg) {
    raw_reader *r = arg;
    (void)what;
    uint8_t buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0)
        r->closed = 1;
    else
        tch_buf_append(&r->got, buf, (size_t)n);
}

/* Sends bytes, then collects what the server says until it closes. */
static void exchange(fixture *f, const uint8_t *bytes, size_t len, raw_reader *r) {
    r->fd = raw_connect(f->hp);
    assert_int_equal(write(r->fd, bytes, len), (ssize_t)len);
    struct event *ev = event_new(f->base, r->fd, EV_READ | EV_PERSIST, raw_read_cb, r);
    event_add(ev, NULL);
    int ok = tch_test_run_until(f->base, &r->closed, 3000);
    event_free(ev);
    close(r->fd);
    assert_true(ok);
}

/* An error frame with this id whose message holds needle. */
static void expect_error_frame(raw_reader *r, uint32_t id, const char *needle) {
    tch_slice in = tch_buf_slice(&r->got);
    int found = 0;
    while (in.len) {
        tch_frame fr;
        size_t used;
        if (tch_frame_parse(in, &fr, &used, NULL) != 0)
            break;
        if (fr.type == TCH_FRAME_ERROR) {
            tch_error_frame e;
            assert_int_equal(tch_error_frame_decode(fr.payload, &e, NULL), 0);
            char *m = tch_slice_strdup(e.message);
            if (strstr(m, needle) && fr.id == id)
                found = 1;
            else
                print_message("error frame (id 0x%08x) said: %s\n", fr.id, m);
            free(m);
        }
        in.ptr += used;
        in.len -= used;
    }
    assert_true(found);
    tch_buf_free(&r->got);
}

static void garbage_gets_an_error_frame_and_a_close(void **state) {
    fixture *f = *state;
    const uint8_t junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    raw_reader r = {0};
    exchange(f, junk, sizeof junk - 1, &r);
    expect_error_frame(&r, TCH_ID_NONE, "first frame"); /* garbage has no message id */
}

static void skipping_init_is_refused(void **state) {
    fixture *f = *state;
    uint8_t ping[16];
    size_t n = tch_ping_encode(TCH_FRAME_PING_REQ, 7, ping);
    raw_reader r = {0};
    exchange(f, ping, n, &r);
    expect_error_frame(&r, TCH_ID_NONE, "init req");
}

static void silent_peer_is_told_and_closed(void **state) {
    fixture *f = *state;
    tch_channel_options o = {.default_timeout_ms = 100};
    tch_channel *impatient;
    tch_channel_new(f->base, "impatient", &o, &impatient, NULL);
    tch_error err;
    assert_int_equal(tch_channel_listen(impatient, NULL, &err), 0);
    fixture g = *f;
    snprintf(g.hp, sizeof g.hp, "%s", tch_channel_host_port(impatient));
    raw_reader r = {0};
    exchange(&g, (const uint8_t *)"", 0, &r); /* connects, says nothing */
    expect_error_frame(&r, TCH_ID_NONE, "no init handshake within 100 ms");
    assert_int_equal(tch_channel_connection_count(impatient), 0);
    tch_channel_free(impatient);
}

/* An init req as a client would send it; buf needs 256 bytes. */
static size_t encode_init(uint16_t version, int with_process_name, uint8_t *buf) {
    tch_init m = {.version = version, .nheaders = with_process_name ? 2 : 1};
    m.headers[0] = (tch_kv){tch_slice_cstr("host_port"), tch_slice_cstr("0.0.0.0:0")};
    m.headers[1] = (tch_kv){tch_slice_cstr("process_name"), tch_slice_cstr("raw")};
    size_t n;
    assert_int_equal(tch_init_encode(TCH_FRAME_INIT_REQ, 1, &m, buf, 256, &n, NULL), 0);
    return n;
}

static void wrong_version_is_refused(void **state) {
    fixture *f = *state;
    uint8_t buf[256];
    raw_reader r = {0};
    exchange(f, buf, encode_init(1, 1, buf), &r);
    expect_error_frame(&r, 1, "version 1"); /* about the init req, id 1 */
}

static void missing_init_header_is_refused(void **state) {
    fixture *f = *state;
    uint8_t buf[256];
    raw_reader r = {0};
    exchange(f, buf, encode_init(2, 0, buf), &r);
    expect_error_frame(&r, 1, "process_name");
}

/* A fake server on a raw socket: answers our client's init req with
 * `reply`, then records what our client says until it closes. */
typedef struct fake_server {
    struct event_base *base;
    int lfd, fd;
    struct event *conn_ev;
    raw_reader r;
    const uint8_t *reply;
    size_t reply_len;
    int replied;
} fake_server;

static void fake_readable(evutil_socket_t fd, short what, void *arg) {
    fake_server *s = arg;
    raw_read_cb(fd, what, &s->r);
    tch_frame fr;
    size_t used;
    if (!s->replied && tch_frame_parse(tch_buf_slice(&s->r.got), &fr, &used, NULL) == 0) {
        assert_int_equal(fr.type, TCH_FRAME_INIT_REQ);
        assert_int_equal(write(fd, s->reply, s->reply_len), (ssize_t)s->reply_len);
        s->replied = 1;
        tch_buf_free(&s->r.got); /* keep only what comes after our answer */
    }
}

static void fake_accept(evutil_socket_t lfd, short what, void *arg) {
    fake_server *s = arg;
    (void)what;
    if (s->conn_ev)
        return;
    s->fd = accept(lfd, NULL, NULL);
    assert_true(s->fd >= 0);
    s->conn_ev = event_new(s->base, s->fd, EV_READ | EV_PERSIST, fake_readable, s);
    event_add(s->conn_ev, NULL);
}

static void client_fails_a_call_when_the_server_answers_init_badly(void **state) {
    fixture *f = *state;
    fake_server s = {.base = f->base, .fd = -1};
    s.lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    socklen_t len = sizeof sin;
    assert_int_equal(bind(s.lfd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(listen(s.lfd, 1), 0);
    getsockname(s.lfd, (struct sockaddr *)&sin, &len);
    char hp[64];
    snprintf(hp, sizeof hp, "127.0.0.1:%u", ntohs(sin.sin_port));
    uint8_t reply[256];
    tch_init m = {.version = 1, .nheaders = 2};
    m.headers[0] = (tch_kv){tch_slice_cstr("host_port"), tch_slice_cstr(hp)};
    m.headers[1] = (tch_kv){tch_slice_cstr("process_name"), tch_slice_cstr("fake")};
    assert_int_equal(tch_init_encode(TCH_FRAME_INIT_RES, 1, &m, reply, sizeof reply, &s.reply_len, NULL), 0);
    s.reply = reply;

    result r = {0};
    tch_call_opts o = {.service = "fake", .endpoint = tch_slice_cstr("echo"),
                       .host_port = hp, .timeout_ms = 2000};
    struct event *lev = event_new(f->base, s.lfd, EV_READ | EV_PERSIST, fake_accept, &s);
    event_add(lev, NULL);
    assert_int_equal(tch_channel_call(f->client, &o, on_result, &r, NULL), 0);
    assert_true(tch_test_run_until(f->base, &s.r.closed, 3000));
    assert_true(tch_test_run_until(f->base, &r.done, 3000));
    event_free(lev);
    if (s.conn_ev)
        event_free(s.conn_ev);
    close(s.fd);
    close(s.lfd);
    /* A protocol error, not a network one: retrying would only meet the
     * same peer's answer, and this message says what is wrong. */
    assert_int_equal(r.status, TCH_EPROTO);
    assert_non_null(strstr(r.message, "version 1"));
    expect_error_frame(&s.r, 1, "version 1"); /* the fake server was told, of its init res */
    result_free(&r);
}

/* A frame-level client over a raw socket: init, then two call requests
 * with the same id to a handler that answers later. */
static size_t encode_call(uint32_t id, const char *endpoint, uint8_t *out, size_t cap) {
    tch_call_fields *f = calloc(1, sizeof *f);
    f->ttl_ms = 5000;
    f->service = tch_slice_cstr("server");
    f->nheaders = 2;
    f->headers[0] = (tch_kv){tch_slice_cstr("as"), tch_slice_cstr("raw")};
    f->headers[1] = (tch_kv){tch_slice_cstr("cn"), tch_slice_cstr("raw-client")};
    tch_slice args[3] = {tch_slice_cstr(endpoint), TCH_SLICE_NULL, TCH_SLICE_NULL};
    tch_fragmenter fz;
    tch_fragmenter_init(&fz, TCH_FRAME_CALL_REQ, id, f, args);
    size_t n = 0;
    assert_true(cap >= TCH_FRAME_MAX_SIZE);
    assert_int_equal(tch_fragmenter_next(&fz, out, &n, NULL), 0);
    free(f);
    return n;
}

static void on_raw_readable(evutil_socket_t fd, short what, void *arg) {
    raw_reader *r = arg;
    (void)what;
    uint8_t buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0)
        r->closed = 1;
    else
        tch_buf_append(&r->got, buf, (size_t)n);
}

/* The first frame of this type and id the server sent, if any. */
static int find_frame(raw_reader *r, uint8_t type, uint32_t id, tch_frame *out) {
    tch_slice in = tch_buf_slice(&r->got);
    while (in.len) {
        size_t used;
        if (tch_frame_parse(in, out, &used, NULL) != 0)
            return 0;
        if (out->type == type && out->id == id)
            return 1;
        in.ptr += used;
        in.len -= used;
    }
    return 0;
}

static int got_frame(raw_reader *r, uint8_t type, uint32_t id) {
    tch_frame fr;
    return find_frame(r, type, id, &fr);
}

static int error_frame_for(raw_reader *r, uint32_t id, const char *needle) {
    tch_frame fr;
    tch_error_frame e;
    if (!find_frame(r, TCH_FRAME_ERROR, id, &fr) ||
        tch_error_frame_decode(fr.payload, &e, NULL) != 0)
        return 0;
    char *m = tch_slice_strdup(e.message);
    int found = strstr(m, needle) != NULL;
    free(m);
    return found;
}

static void a_reused_call_id_is_refused_not_lost(void **state) {
    fixture *f = *state;
    holder h = {0};
    tch_channel_register(f->server, NULL, "hold", hold, &h);
    uint8_t *buf = malloc(3 * TCH_FRAME_MAX_SIZE);
    size_t n = encode_init(2, 1, buf);
    n += encode_call(5, "hold", buf + n, TCH_FRAME_MAX_SIZE);
    n += encode_call(5, "hold", buf + n, TCH_FRAME_MAX_SIZE);
    raw_reader r = {0};
    r.fd = raw_connect(f->hp);
    assert_int_equal(write(r.fd, buf, n), (ssize_t)n);
    free(buf);
    struct event *ev = event_new(f->base, r.fd, EV_READ | EV_PERSIST, on_raw_readable, &r);
    event_add(ev, NULL);
    int found = 0;
    for (int i = 0; i < 200 && !found && !r.closed; i++) {
        event_base_loop(f->base, EVLOOP_ONCE);
        found = error_frame_for(&r, 5, "already in use");
    }
    assert_true(found);
    assert_int_equal(h.n, 1); /* the first call is still being served */
    event_free(ev);
    close(r.fd); /* the peer goes away with that call open */
    for (int i = 0; i < 200 && tch_channel_connection_count(f->server) > 0; i++)
        event_base_loop(f->base, EVLOOP_ONCE);
    assert_int_equal(tch_channel_connection_count(f->server), 0);
    assert_true(tch_inbound_is_done(h.held[0]));
    assert_int_equal(tch_inbound_respond(h.held[0], 0, TCH_SLICE_NULL, TCH_SLICE_NULL), TCH_ECLOSED);
    tch_buf_free(&r.got);
}

/* Runs the loop until the server sent a frame of this type and id, or
 * closed, or 3 s passed. */
static int wait_frame(fixture *f, raw_reader *r, uint8_t type, uint32_t id) {
    struct timeval tv = {3, 0};
    int expired = 0;
    struct event *t = evtimer_new(f->base, tch_test_bound_fired, &expired);
    evtimer_add(t, &tv);
    while (!got_frame(r, type, id) && !expired && !r->closed)
        event_base_loop(f->base, EVLOOP_ONCE);
    event_free(t);
    return got_frame(r, type, id);
}

/* A request whose frames stop coming is dropped once its TTL (counted from
 * its first frame) runs out, with a Timeout error frame; the connection
 * stays open and serves the next call. */
/* A two-frame echo request, id 9: fz gives its frames; its fields and args
 * live in pr, which must outlive fz. */
typedef struct partial_request {
    tch_call_fields cf;
    tch_slice args[3];
    tch_fragmenter fz;
} partial_request;

/* Connects to hp and sends init and the request's first frame only. */
static int start_partial_request(const char *hp, uint32_t ttl_ms, partial_request *pr,
                                 uint8_t *buf) {
    static uint8_t body[100000]; /* two frames */
    memset(pr, 0, sizeof *pr);
    pr->cf.ttl_ms = ttl_ms;
    pr->cf.service = tch_slice_cstr("server");
    pr->cf.nheaders = 1;
    pr->cf.headers[0] = (tch_kv){tch_slice_cstr("as"), tch_slice_cstr("raw")};
    pr->args[0] = tch_slice_cstr("echo");
    pr->args[2] = tch_slice_of(body, sizeof body);
    tch_fragmenter_init(&pr->fz, TCH_FRAME_CALL_REQ, 9, &pr->cf, pr->args);
    size_t n = encode_init(2, 1, buf), len;
    assert_int_equal(tch_fragmenter_next(&pr->fz, buf + n, &len, NULL), 1); /* the first only */
    n += len;
    int fd = raw_connect(hp);
    assert_int_equal(write(fd, buf, n), (ssize_t)n);
    return fd;
}

static void request_that_stops_arriving_times_out(void **state) {
    fixture *f = *state;
    uint8_t *buf = malloc(2 * TCH_FRAME_MAX_SIZE);
    partial_request *pr = malloc(sizeof *pr);
    size_t n, len;
    raw_reader r = {0};
    r.fd = start_partial_request(f->hp, 150, pr, buf);
    struct event *ev = event_new(f->base, r.fd, EV_READ | EV_PERSIST, on_raw_readable, &r);
    event_add(ev, NULL);
    assert_true(wait_frame(f, &r, TCH_FRAME_ERROR, 9));
    assert_true(error_frame_for(&r, 9, "service \"server\" timed out: its ttl of 150 ms ran out before its last frame arrived"));
    /* its last frame, now late, is ignored; a new call is served */
    assert_int_equal(tch_fragmenter_next(&pr->fz, buf, &len, NULL), 0);
    n = len + encode_call(10, "echo", buf + len, TCH_FRAME_MAX_SIZE);
    assert_int_equal(write(r.fd, buf, n), (ssize_t)n);
    assert_true(wait_frame(f, &r, TCH_FRAME_CALL_RES, 10));
    assert_false(got_frame(&r, TCH_FRAME_CALL_RES, 9));
    assert_false(r.closed);
    event_free(ev);
    close(r.fd);
    free(pr);
    free(buf);
    tch_buf_free(&r.got);
}

/* The idle sweep leaves a connection on which a request is still arriving
 * (its first frame came, its last not yet): that is call traffic. Another
 * connection that only did its handshake is closed by the same sweeps, which
 * is how the test knows they ran. */
static void idle_sweep_spares_a_request_still_arriving(void **state) {
    fixture *f = *state;
    tch_channel_options so = {.idle_timeout_ms = 20};
    tch_channel *srv;
    tch_channel_new(f->base, "server", &so, &srv, NULL);
    tch_channel_register(srv, NULL, "echo", echo, NULL);
    assert_int_equal(tch_channel_listen(srv, NULL, NULL), 0);
    char hp[64];
    snprintf(hp, sizeof hp, "%s", tch_channel_host_port(srv));
    uint8_t *buf = malloc(2 * TCH_FRAME_MAX_SIZE);
    partial_request *pr = malloc(sizeof *pr);
    size_t n, len;
    raw_reader r = {0}, idle = {0};
    r.fd = start_partial_request(hp, 5000, pr, buf);
    idle.fd = raw_connect(hp);
    n = encode_init(2, 1, buf);
    assert_int_equal(write(idle.fd, buf, n), (ssize_t)n);
    struct event *ev = event_new(f->base, r.fd, EV_READ | EV_PERSIST, on_raw_readable, &r);
    struct event *iev = event_new(f->base, idle.fd, EV_READ | EV_PERSIST, on_raw_readable, &idle);
    event_add(ev, NULL);
    event_add(iev, NULL);
    assert_true(tch_test_run_until(f->base, &idle.closed, 3000)); /* a sweep closed it */
    assert_false(r.closed);
    assert_int_equal(tch_fragmenter_next(&pr->fz, buf, &len, NULL), 0); /* the last frame */
    assert_int_equal(write(r.fd, buf, len), (ssize_t)len);
    assert_true(wait_frame(f, &r, TCH_FRAME_CALL_RES, 9));
    event_free(ev);
    event_free(iev);
    close(r.fd);
    close(idle.fd);
    tch_channel_free(srv);
    free(pr);
    free(buf);
    tch_buf_free(&r.got);
    tch_buf_free(&idle.got);
}

/* Constructors say why they refuse: code and message, and *out NULL. */
static void expect_new_fails(struct event_base *base, const char *name,
                             const tch_channel_options *o, int code, const char *says) {
    tch_channel *ch = (tch_channel *)&ch; /* must be overwritten */
    tch_error err = {0};
    assert_int_equal(tch_channel_new(base, name, o, &ch, &err), code);
    assert_null(ch);
    assert_int_equal(err.code, code);
    if (!strstr(err.msg, says))
        fail_msg("expected \"%s\" in \"%s\"", says, err.msg);
}

static void constructors_report_bad_input(void **state) {
    fixture *f = *state;
    char long_name[300];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    expect_new_fails(NULL, "svc", NULL, TCH_EINVAL, "no event_base");
    expect_new_fails(f->base, NULL, NULL, TCH_EINVAL, "name is empty");
    expect_new_fails(f->base, "", NULL, TCH_EINVAL, "name is empty");
    expect_new_fails(f->base, long_name, NULL, TCH_EINVAL, "longer than 255 bytes (299)");
    tch_channel_options o = {.checksum_type = 9};
    expect_new_fails(f->base, "svc", &o, TCH_EINVAL, "checksum_type 9 is not one of");
    o = (tch_channel_options){.process_name = long_name};
    expect_new_fails(f->base, "svc", &o, TCH_EINVAL, "process_name longer than 127");
    tch_error err = {0};
    assert_int_equal(tch_channel_new(f->base, "svc", NULL, NULL, &err), TCH_EINVAL);
    assert_non_null(strstr(err.msg, "out is NULL"));
    /* err may be NULL; the code still says what happened */
    tch_channel *ch = NULL;
    assert_int_equal(tch_channel_new(f->base, "", NULL, &ch, NULL), TCH_EINVAL);
    assert_int_equal(tch_channel_new(f->base, long_name + 44, NULL, &ch, NULL), 0);
    assert_non_null(ch); /* exactly 255 bytes is fine */
    tch_channel_free(ch);

    tch_sync_client *c = (tch_sync_client *)&c;
    o = (tch_channel_options){.checksum_type = TCH_CHECKSUM_NONE + 1};
    assert_int_equal(tch_sync_client_new("tool", &o, &c, &err), TCH_EINVAL);
    assert_null(c);
    assert_non_null(strstr(err.msg, "checksum_type 129"));
    assert_int_equal(tch_sync_client_new("", NULL, &c, &err), TCH_EINVAL);
    assert_non_null(strstr(err.msg, "name is empty"));
    assert_int_equal(tch_sync_client_new("tool", NULL, &c, &err), 0);
    assert_non_null(tch_sync_client_channel(c));
    tch_sync_client_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(constructors_report_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(listen_is_ephemeral_and_listen_twice_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(echo_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(application_error_code, setup, teardown),
        cmocka_unit_test_setup_teardown(unknown_endpoint_is_bad_request_naming_it, setup, teardown),
        cmocka_unit_test_setup_teardown(unknown_service_is_bad_request_naming_it, setup, teardown),
        cmocka_unit_test_setup_teardown(handlers_are_per_service, setup, teardown),
        cmocka_unit_test_setup_teardown(listen_on_a_given_host_port, setup, teardown),
        cmocka_unit_test_setup_teardown(fallback_takes_unknown_endpoints, setup, teardown),
        cmocka_unit_test_setup_teardown(many_concurrent_calls_share_one_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(handler_answers_after_other_io, setup, teardown),
        cmocka_unit_test_setup_teardown(caller_timeout_then_late_answer_is_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(connection_refused_is_network_error, setup, teardown),
        cmocka_unit_test_setup_teardown(server_going_away_fails_in_flight_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(arg_over_limit_is_refused_with_a_clear_error, setup, teardown),
        cmocka_unit_test_setup_teardown(server_limit_answers_bad_request, setup, teardown),
        cmocka_unit_test_setup_teardown(idle_connections_are_closed_and_redialled, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_reaches_the_server_and_ends_the_call, setup, teardown),
        cmocka_unit_test_setup_teardown(ping_is_answered_by_the_peer, setup, teardown),
        cmocka_unit_test_setup_teardown(pending_call_limit_is_enforced, setup, teardown),
        cmocka_unit_test_setup_teardown(incoming_calls_beyond_the_limit_get_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(default_idle_sweep_leaves_an_empty_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(graceful_close_lets_calls_in_flight_finish, setup, teardown),
        cmocka_unit_test_setup_teardown(graceful_close_times_out_stuck_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(a_reused_call_id_is_refused_not_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(request_that_stops_arriving_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(idle_sweep_spares_a_request_still_arriving, setup, teardown),
        cmocka_unit_test_setup_teardown(garbage_gets_an_error_frame_and_a_close, setup, teardown),
        cmocka_unit_test_setup_teardown(skipping_init_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(silent_peer_is_told_and_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(wrong_version_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_init_header_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(client_fails_a_call_when_the_server_answers_init_badly, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
