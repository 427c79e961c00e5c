/* Event hooks on channels over 127.0.0.1: which events come, in what order,
 * with what fields; removal; the channel's trace switch and a call's
 * override. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <tchannel/channel.h>
#include <tchannel/hooks.h>

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loop.h"
#include "result.h"

/* One event copied out of a hook. */
typedef struct seen {
    int kind, outgoing, outcome, status, attempt;
    uint8_t error_code;
    char service[64], endpoint[64], scheme[16], caller[64], peer[64], message[256];
    tch_trace trace;
    uint64_t start_us, end_us;
} seen;

typedef struct evlog {
    seen ev[64];
    int n;
    tch_channel *ch;       /* for the hook that removes itself */
    uint32_t self_handle;
} evlog;

static void copy_slice(char *dst, size_t cap, tch_slice s) {
    snprintf(dst, cap, "%.*s", (int)s.len, s.len ? (const char *)s.ptr : "");
}

static void record(const tch_call_event *e, void *ud) {
    evlog *l = ud;
    if (l->n == 64)
        return;
    seen *s = &l->ev[l->n++];
    s->kind = e->kind;
    s->outgoing = e->outgoing;
    s->outcome = e->outcome;
    s->status = e->status;
    s->attempt = e->attempt;
    s->error_code = e->error_code;
    copy_slice(s->service, sizeof s->service, e->service);
    copy_slice(s->endpoint, sizeof s->endpoint, e->endpoint);
    copy_slice(s->scheme, sizeof s->scheme, e->scheme);
    copy_slice(s->caller, sizeof s->caller, e->caller);
    snprintf(s->peer, sizeof s->peer, "%s", e->peer);
    snprintf(s->message, sizeof s->message, "%s", e->message);
    s->trace = e->trace;
    s->start_us = e->start_us;
    s->end_us = e->end_us;
}

static void remove_self(const tch_call_event *e, void *ud) {
    evlog *l = ud;
    record(e, ud);
    assert_int_equal(tch_channel_remove_hook(l->ch, l->self_handle), 0);
}

typedef struct fixture {
    struct event_base *base;
    tch_channel *server, *client;
    char hp[64];
    evlog cl, sv;
    int busy_left; /* "flaky" answers Busy this many times first */
    tch_inbound *held;
} fixture;

static void echo(tch_inbound *in, void *ud) {
    (void)ud;
    tch_inbound_respond(in, 0, tch_inbound_arg2(in), tch_inbound_arg3(in));
}

static void app_error(tch_inbound *in, void *ud) {
    (void)ud;
    tch_inbound_respond(in, 1, tch_slice_cstr(""), tch_slice_cstr("nope"));
}

static void flaky(tch_inbound *in, void *ud) {
    fixture *f = ud;
    if (f->busy_left-- > 0)
        tch_inbound_respond_error(in, TCH_PCODE_BUSY, "try again");
    else
        tch_inbound_respond(in, 0, tch_slice_cstr(""), tch_slice_cstr("ok"));
}

static void hold(tch_inbound *in, void *ud) {
    fixture *f = ud;
    f->held = in;
}

static int setup_with(void **state, int client_trace) {
    fixture *f = calloc(1, sizeof *f);
    f->base = event_base_new();
    tch_channel_options co = {.trace = client_trace};
    tch_channel_new(f->base, "server", NULL, &f->server, NULL);
    tch_channel_new(f->base, "client", &co, &f->client, NULL);
    tch_error err;
    assert_int_equal(tch_channel_listen(f->server, NULL, &err), 0);
    snprintf(f->hp, sizeof f->hp, "%s", tch_channel_host_port(f->server));
    tch_channel_register(f->server, NULL, "echo", echo, NULL);
    tch_channel_register(f->server, NULL, "apperr", app_error, NULL);
    tch_channel_register(f->server, NULL, "flaky", flaky, f);
    tch_channel_register(f->server, NULL, "hold", hold, f);
    assert_int_equal(tch_channel_add_hook(f->client, record, &f->cl, NULL), 0);
    assert_int_equal(tch_channel_add_hook(f->server, record, &f->sv, NULL), 0);
    *state = f;
    return 0;
}

static int setup(void **state) { return setup_with(state, 0); }
static int setup_traced(void **state) { return setup_with(state, 1); }

static int teardown(void **state) {
    fixture *f = *state;
    tch_channel_free(f->client);
    tch_channel_free(f->server);
    if (f->held) /* answered after its channel is gone: freed, not sent */
        tch_inbound_respond(f->held, 0, TCH_SLICE_NULL, TCH_SLICE_NULL);
    event_base_free(f->base);
    free(f);
    return 0;
}

/* Calls endpoint and runs the loop until the callback and `want_server`
 * server events came. */
static void call(fixture *f, const char *endpoint, tch_call_opts *o, result *r,
                 int want_server) {
    tch_call_opts d = {0};
    if (!o)
        o = &d;
    o->service = "server";
    o->endpoint = tch_slice_cstr(endpoint);
    o->arg3 = tch_slice_cstr("body");
    o->host_port = f->hp;
    tch_error err;
    assert_int_equal(tch_channel_call(f->client, o, on_result, r, &err), 0);
    assert_true(tch_test_run_until(f->base, &r->done, 5000));
    assert_true(tch_test_run_until_count(f->base, &f->sv.n, want_server, 5000));
}

static void test_ok_call_events(void **state) {
    fixture *f = *state;
    result r = {0};
    tch_call_opts o = {.arg_scheme = "json"};
    call(f, "echo", &o, &r, 2);
    assert_int_equal(r.status, 0);

    assert_int_equal(f->cl.n, 2);
    seen *send = &f->cl.ev[0], *recv = &f->cl.ev[1];
    assert_int_equal(send->kind, TCH_EVENT_SEND_REQUEST);
    assert_int_equal(send->outgoing, 1);
    assert_int_equal(send->outcome, TCH_OUTCOME_PENDING);
    assert_string_equal(send->service, "server");
    assert_string_equal(send->endpoint, "echo");
    assert_string_equal(send->scheme, "json");
    assert_string_equal(send->caller, "client");
    assert_string_equal(send->peer, f->hp);
    assert_int_equal(send->attempt, 1);
    assert_int_equal(send->end_us, 0);
    assert_true(send->trace.span_id != 0);
    assert_int_equal(send->trace.trace_id, send->trace.span_id); /* a new trace */
    assert_int_equal(send->trace.parent_id, 0);
    assert_int_equal(send->trace.flags, 0); /* the channel's default: off */

    assert_int_equal(recv->kind, TCH_EVENT_RECEIVE_RESPONSE);
    assert_int_equal(recv->outcome, TCH_OUTCOME_OK);
    assert_int_equal(recv->status, 0);
    assert_int_equal(recv->start_us, send->start_us);
    assert_true(recv->end_us >= recv->start_us);
    assert_int_equal(recv->trace.span_id, send->trace.span_id);
    assert_int_equal(recv->trace.trace_id, send->trace.trace_id);
    assert_int_equal(recv->trace.parent_id, send->trace.parent_id);
    assert_int_equal(recv->trace.flags, send->trace.flags);

    seen *in = &f->sv.ev[0], *out = &f->sv.ev[1];
    assert_int_equal(in->kind, TCH_EVENT_RECEIVE_REQUEST);
    assert_int_equal(in->outgoing, 0);
    assert_string_equal(in->service, "server");
    assert_string_equal(in->endpoint, "echo");
    assert_string_equal(in->scheme, "json");
    assert_string_equal(in->caller, "client");
    assert_true(in->peer[0] != 0);
    assert_int_equal(in->trace.span_id, send->trace.span_id); /* the ids on the wire */
    assert_int_equal(in->trace.trace_id, send->trace.trace_id);
    assert_int_equal(out->kind, TCH_EVENT_SEND_RESPONSE);
    assert_int_equal(out->outcome, TCH_OUTCOME_OK);
    assert_int_equal(out->start_us, in->start_us);
    assert_true(out->end_us >= out->start_us);
    /* the server's span lies within the client's (one clock per channel,
     * both from the same wall clock and process) */
    assert_true(in->start_us + 2000000 > send->start_us);
    result_free(&r);
}

static void test_app_error_is_not_an_error_event(void **state) {
    fixture *f = *state;
    result r = {0};
    call(f, "apperr", NULL, &r, 2);
    assert_int_equal(r.code, 1);
    assert_int_equal(f->cl.n, 2);
    assert_int_equal(f->cl.ev[1].outcome, TCH_OUTCOME_APP_ERROR);
    assert_int_equal(f->sv.n, 2);
    assert_int_equal(f->sv.ev[1].outcome, TCH_OUTCOME_APP_ERROR);
    result_free(&r);
}

static void test_error_frame_events(void **state) {
    fixture *f = *state;
    result r = {0};
    call(f, "nosuch", NULL, &r, 3);
    assert_int_equal(r.status, TCH_EREMOTE);
    assert_int_equal(f->cl.n, 3);
    assert_int_equal(f->cl.ev[1].kind, TCH_EVENT_RECEIVE_RESPONSE);
    assert_int_equal(f->cl.ev[1].outcome, TCH_OUTCOME_ERROR);
    assert_int_equal(f->cl.ev[1].error_code, TCH_PCODE_BAD_REQUEST);
    assert_non_null(strstr(f->cl.ev[1].message, "nosuch"));
    assert_int_equal(f->cl.ev[2].kind, TCH_EVENT_ERROR);
    assert_int_equal(f->cl.ev[2].status, TCH_EREMOTE);
    assert_int_equal(f->cl.ev[2].error_code, TCH_PCODE_BAD_REQUEST);
    assert_int_equal(f->sv.n, 3);
    assert_int_equal(f->sv.ev[1].kind, TCH_EVENT_SEND_RESPONSE);
    assert_int_equal(f->sv.ev[1].outcome, TCH_OUTCOME_ERROR);
    assert_int_equal(f->sv.ev[1].error_code, TCH_PCODE_BAD_REQUEST);
    assert_int_equal(f->sv.ev[2].kind, TCH_EVENT_ERROR);
    result_free(&r);
}

static void test_timeout_events(void **state) {
    fixture *f = *state;
    result r = {0};
    tch_call_opts o = {.timeout_ms = 50, .retry_on = TCH_RETRY_NEVER};
    call(f, "hold", &o, &r, 3); /* the server's TTL passes too */
    assert_int_equal(r.status, TCH_ETIMEOUT);
    assert_int_equal(f->cl.ev[1].kind, TCH_EVENT_RECEIVE_RESPONSE);
    assert_int_equal(f->cl.ev[1].error_code, TCH_PCODE_TIMEOUT);
    assert_true(f->cl.ev[1].end_us - f->cl.ev[1].start_us >= 40000);
    assert_int_equal(f->cl.ev[2].kind, TCH_EVENT_ERROR);
    assert_int_equal(f->sv.ev[1].kind, TCH_EVENT_SEND_RESPONSE);
    assert_int_equal(f->sv.ev[1].error_code, TCH_PCODE_TIMEOUT);
    assert_int_equal(f->sv.ev[2].kind, TCH_EVENT_ERROR);
    result_free(&r);
}

static void test_retry_is_a_new_attempt(void **state) {
    fixture *f = *state;
    f->busy_left = 1;
    result r = {0};
    call(f, "flaky", NULL, &r, 4);
    assert_int_equal(r.status, 0);
    /* send, busy, send again, ok: no ERROR, the call succeeded */
    assert_int_equal(f->cl.n, 4);
    assert_int_equal(f->cl.ev[0].attempt, 1);
    assert_int_equal(f->cl.ev[1].error_code, TCH_PCODE_BUSY);
    assert_int_equal(f->cl.ev[2].kind, TCH_EVENT_SEND_REQUEST);
    assert_int_equal(f->cl.ev[2].attempt, 2);
    assert_int_equal(f->cl.ev[3].outcome, TCH_OUTCOME_OK);
    assert_true(f->cl.ev[2].trace.span_id != f->cl.ev[0].trace.span_id);
    result_free(&r);
}

static void test_no_peer_is_only_an_error(void **state) {
    fixture *f = *state;
    result r = {0};
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("echo"),
                       .host_port = "127.0.0.1:1", .retry_on = TCH_RETRY_NEVER,
                       .timeout_ms = 2000};
    tch_error err;
    assert_int_equal(tch_channel_call(f->client, &o, on_result, &r, &err), 0);
    assert_true(tch_test_run_until(f->base, &r.done, 5000));
    assert_int_not_equal(r.status, 0);
    /* the connection was refused: the request was queued, so its attempt
     * ends with the network error, then the call's ERROR */
    assert_int_equal(f->cl.ev[f->cl.n - 1].kind, TCH_EVENT_ERROR);
    assert_int_equal(f->cl.ev[f->cl.n - 1].error_code, TCH_PCODE_NETWORK);
    result_free(&r);
}

static void test_remove_hooks(void **state) {
    fixture *f = *state;
    uint32_t h1 = 0;
    evlog extra = {0};
    assert_int_equal(tch_channel_add_hook(f->client, record, &extra, &h1), 0);
    assert_int_equal(tch_channel_hook_count(f->client), 2);
    evlog self = {.ch = f->client};
    assert_int_equal(tch_channel_add_hook(f->client, remove_self, &self, &self.self_handle), 0);
    result r = {0};
    call(f, "echo", NULL, &r, 2);
    assert_int_equal(extra.n, 2);
    assert_int_equal(self.n, 1); /* removed itself on the first event */
    assert_int_equal(tch_channel_hook_count(f->client), 2);
    assert_int_equal(tch_channel_remove_hook(f->client, h1), 0);
    assert_int_equal(tch_channel_remove_hook(f->client, h1), TCH_ENOTFOUND);
    assert_int_equal(tch_channel_remove_hook(f->client, 0), TCH_ENOTFOUND);
    assert_int_equal(tch_channel_add_hook(f->client, NULL, NULL, NULL), TCH_EINVAL);
    result r2 = {0};
    call(f, "echo", NULL, &r2, 4);
    assert_int_equal(extra.n, 2);
    assert_int_equal(f->cl.n, 4);
    result_free(&r);
    result_free(&r2);
}

/* A handler that calls onwards: its call inherits the trace. */
typedef struct relay {
    fixture *f;
    tch_inbound *in;
    result r;
} relay;

static void relay_done(const tch_response *res, void *ud) {
    relay *rl = ud;
    on_result(res, &rl->r);
    tch_inbound_respond(rl->in, 0, TCH_SLICE_NULL, res->arg3);
}

static void relay_handler(tch_inbound *in, void *ud) {
    relay *rl = ud;
    rl->in = in;
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("echo"),
                       .host_port = rl->f->hp};
    tch_error err;
    assert_int_equal(tch_channel_call(rl->f->server, &o, relay_done, rl, &err), 0);
}

static void test_trace_switch_and_override(void **state) {
    fixture *f = *state; /* client made with .trace = 1 */
    result r = {0};
    call(f, "echo", NULL, &r, 2);
    assert_int_equal(f->cl.ev[0].trace.flags, 1);
    assert_int_equal(f->sv.ev[0].trace.flags, 1);

    result r2 = {0};
    tch_call_opts off = {.traced = TCH_TRACED_OFF};
    call(f, "echo", &off, &r2, 4);
    assert_int_equal(f->sv.ev[2].trace.flags, 0);

    /* the server relays to itself: the child keeps the parent's trace and
     * flag, its parent id is the incoming span */
    relay rl = {.f = f};
    tch_channel_register(f->server, NULL, "relay", relay_handler, &rl);
    result r3 = {0};
    call(f, "relay", NULL, &r3, 8);
    assert_int_equal(r3.status, 0);
    const seen *top = &f->cl.ev[4];
    int found = 0;
    for (int i = 4; i < f->sv.n; i++) {
        const seen *e = &f->sv.ev[i];
        if (e->outgoing && e->kind == TCH_EVENT_SEND_REQUEST) {
            assert_int_equal(e->trace.trace_id, top->trace.trace_id);
            assert_int_equal(e->trace.parent_id, top->trace.span_id);
            assert_int_equal(e->trace.flags, 1);
            found = 1;
        }
    }
    assert_true(found);

    tch_call_opts bad = {.service = "server", .endpoint = tch_slice_cstr("echo"),
                         .host_port = f->hp, .traced = 7};
    tch_error err;
    assert_int_equal(tch_channel_call(f->client, &bad, on_result, &r, &err), TCH_EINVAL);
    assert_non_null(strstr(err.msg, "traced"));
    result_free(&r);
    result_free(&r2);
    result_free(&r3);
    result_free(&rl.r);
}

static void test_traced_on_with_channel_off(void **state) {
    fixture *f = *state;
    result r = {0};
    tch_call_opts on = {.traced = TCH_TRACED_ON};
    call(f, "echo", &on, &r, 2);
    assert_int_equal(f->sv.ev[0].trace.flags, 1);
    result_free(&r);
}

/* An outbound hook that answers every call itself (as the VCR replaying),
 * with an error when asked to. */
static void answer_locally(tch_outbound *call, void *ud) {
    int *fail = ud;
    tch_response res = {.status = *fail ? TCH_EREMOTE : 0,
                        .error_code = *fail ? TCH_PCODE_UNEXPECTED : 0,
                        .message = *fail ? "recorded failure" : "", .peer = ""};
    tch_outbound_answer(call, &res);
}

static void test_locally_answered_calls(void **state) {
    fixture *f = *state;
    int fail = 0;
    tch_channel_set_outbound_hook(f->client, answer_locally, &fail);
    result r = {0};
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("echo"),
                       .host_port = f->hp, .retry_on = TCH_RETRY_NEVER};
    tch_error err;
    assert_int_equal(tch_channel_call(f->client, &o, on_result, &r, &err), 0);
    assert_true(tch_test_run_until(f->base, &r.done, 5000));
    assert_int_equal(r.status, 0);
    assert_int_equal(f->cl.n, 0); /* nothing was sent: nothing to hear */
    fail = 1;
    result r2 = {0};
    assert_int_equal(tch_channel_call(f->client, &o, on_result, &r2, &err), 0);
    assert_true(tch_test_run_until(f->base, &r2.done, 5000));
    assert_int_equal(f->cl.n, 1);
    assert_int_equal(f->cl.ev[0].kind, TCH_EVENT_ERROR);
    assert_int_equal(f->cl.ev[0].error_code, TCH_PCODE_UNEXPECTED);
    assert_string_equal(f->cl.ev[0].message, "recorded failure");
    assert_int_equal(f->sv.n, 0);
    tch_channel_set_outbound_hook(f->client, NULL, NULL);
    result_free(&r);
    result_free(&r2);
}

static void test_clock(void **state) {
    fixture *f = *state;
    uint64_t a = tch_channel_now_us(f->client), b = tch_channel_now_us(f->client);
    assert_true(b >= a);
    assert_true(a > UINT64_C(1600000000) * 1000000); /* wall-clock based */
    assert_string_equal(tch_event_kind_name(TCH_EVENT_SEND_RESPONSE), "send_response");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ok_call_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_app_error_is_not_an_error_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_frame_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_is_a_new_attempt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_peer_is_only_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_hooks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trace_switch_and_override, setup_traced, teardown),
        cmocka_unit_test_setup_teardown(test_traced_on_with_channel_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locally_answered_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clock, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
