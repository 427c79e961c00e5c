/* The connection state machine, fed bytes by hand: no sockets, no clock.
 * Two conns are wired back to back through byte queues that the test
 * pumps; each side's time is an explicit now_ms the test sets. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"

typedef struct side {
    tch_conn *c;
    tch_buf out; /* bytes it wrote, not yet delivered */
    int ready;
    int failed;
    char why[512];
    tch_call_msg *req, *res;
    int nreq, nres, nerr, ncancel, nresfail;
    uint32_t err_id;
    uint8_t err_code;
    char err_msg[512];
    uint64_t now; /* its clock, set by the test, given to feed and tick */
    int hold_output; /* leave output in the conn (the output event takes none) */
    int noutput;     /* output events */
    int nlimit;      /* limits that acted, and the last one's text */
    char limit_why[256];
} side;

/* Takes what the conn hands out, in iovecs, as a transport would. */
static void drain(side *s) {
    struct iovec iov[4];
    int n;
    while ((n = tch_conn_out(s->c, iov, 4)) > 0) {
        size_t total = 0;
        for (int i = 0; i < n; i++) {
            tch_buf_append(&s->out, iov[i].iov_base, iov[i].iov_len);
            total += iov[i].iov_len;
        }
        tch_conn_out_done(s->c, total);
    }
    assert_int_equal(tch_conn_out_pending(s->c), 0);
}

/* Output became waiting: taken at once (a transport that writes
 * everything), unless the test holds it. */
static void outev(void *ud) {
    side *s = ud;
    s->noutput++;
    if (!s->hold_output)
        drain(s);
}
static void rdy(void *ud) { ((side *)ud)->ready = 1; }
static void keep(tch_call_msg **slot, tch_call_msg *m) {
    if (*slot) {
        tch_call_msg_free(*slot);
        free(*slot);
    }
    *slot = m;
}
static void creq(void *ud, tch_call_msg *m) { side *s = ud; s->nreq++; keep(&s->req, m); }
static void cres(void *ud, tch_call_msg *m) { side *s = ud; s->nres++; keep(&s->res, m); }
static void resfail(void *ud, uint32_t id, int st, const char *why) {
    side *s = ud;
    (void)id, (void)st;
    s->nresfail++;
    snprintf(s->why, sizeof s->why, "%s", why);
}
static void errf(void *ud, uint32_t id, const tch_error_frame *e) {
    side *s = ud;
    s->nerr++;
    s->err_id = id;
    s->err_code = e->code;
    snprintf(s->err_msg, sizeof s->err_msg, "%.*s", (int)e->message.len, (const char *)e->message.ptr);
}
static void canc(void *ud, uint32_t id) { (void)id; ((side *)ud)->ncancel++; }
static void fld(void *ud, int st, const char *why) {
    side *s = ud;
    (void)st;
    s->failed = 1;
    snprintf(s->why, sizeof s->why, "%s", why);
}

static void lim(void *ud, const char *why) {
    side *s = ud;
    s->nlimit++;
    snprintf(s->limit_why, sizeof s->limit_why, "%s", why);
}

static const tch_conn_events cbs = {.ready = rdy, .call_req = creq, .call_res = cres,
                                    .res_failed = resfail, .error_frame = errf,
                                    .cancel = canc, .failed = fld, .limit = lim,
                                    .output = outev};

typedef struct pair {
    side client, server;
} pair;

static void make(pair *p, size_t max_arg) {
    memset(p, 0, sizeof *p);
    tch_conn_config cc = {.outbound = 1, .process_name = "client", .max_arg_size = max_arg};
    tch_conn_config sc = {.outbound = 0, .host_port = "127.0.0.1:4040", .process_name = "server", .max_arg_size = max_arg};
    p->client.c = tch_conn_new(&cc, &cbs, &p->client);
    p->server.c = tch_conn_new(&sc, &cbs, &p->server);
}

static void destroy(pair *p) {
    side *ss[2] = {&p->client, &p->server};
    for (int i = 0; i < 2; i++) {
        tch_conn_free(ss[i]->c);
        tch_buf_free(&ss[i]->out);
        keep(&ss[i]->req, NULL);
        keep(&ss[i]->res, NULL);
    }
}

/* Moves queued bytes across until both queues are empty, in odd-sized
 * pieces so frames arrive split. */
static void pump(pair *p) {
    for (int round = 0; round < 1000; round++) {
        int moved = 0;
        side *from[2] = {&p->client, &p->server}, *to[2] = {&p->server, &p->client};
        for (int i = 0; i < 2; i++) {
            if (!from[i]->out.len)
                continue;
            tch_buf b = from[i]->out;
            from[i]->out = (tch_buf){0};
            for (size_t off = 0; off < b.len; off += 7777) {
                size_t n = b.len - off < 7777 ? b.len - off : 7777;
                tch_conn_feed(to[i]->c, b.ptr + off, n, to[i]->now);
            }
            tch_buf_free(&b);
            moved = 1;
        }
        if (!moved)
            return;
    }
}

/* make, then the handshake: both sides ready for calls. */
static void make_ready(pair *p, size_t max_arg) {
    make(p, max_arg);
    tch_conn_start(p->client.c);
    pump(p);
}

static tch_call_fields *req_fields(void) {
    tch_call_fields *f = calloc(1, sizeof *f);
    f->ttl_ms = 1000;
    f->service = tch_slice_cstr("svc");
    f->csum_type = TCH_CSUM_CRC32;
    f->nheaders = 1;
    f->headers[0] = (tch_kv){tch_slice_cstr("as"), tch_slice_cstr("raw")};
    return f;
}

static void handshake_completes_and_names_peers(void **state) {
    (void)state;
    pair p;
    make(&p, 1 << 20);
    assert_int_equal(tch_conn_start(p.client.c), 0);
    pump(&p);
    assert_true(p.client.ready && p.server.ready);
    assert_string_equal(tch_conn_remote_host_port(p.client.c), "127.0.0.1:4040");
    assert_string_equal(tch_conn_remote_process(p.server.c), "client");
    assert_string_equal(tch_conn_remote_host_port(p.server.c), "0.0.0.0:0");
    destroy(&p);
}

/* The one frame in out, decoded as init of this type; its bytes are consumed. */
static void expect_init(side *s, uint8_t type, const char *host_port, const char *process) {
    tch_frame fr;
    size_t used;
    assert_int_equal(tch_frame_parse(tch_buf_slice(&s->out), &fr, &used, NULL), 0);
    assert_int_equal(used, s->out.len);
    assert_int_equal(fr.type, type);
    tch_init m;
    assert_int_equal(tch_init_decode(fr.payload, &m, NULL), 0);
    assert_int_equal(m.version, 2);
    static const char *const required[] = {"host_port", "process_name", "tchannel_language",
                                           "tchannel_language_version", "tchannel_version"};
    for (size_t i = 0; i < sizeof required / sizeof *required; i++) {
        tch_slice v;
        assert_true(tch_init_get(&m, required[i], &v));
        assert_true(v.len > 0);
    }
    tch_slice v;
    tch_init_get(&m, "host_port", &v);
    assert_true(tch_slice_eq_cstr(v, host_port));
    tch_init_get(&m, "process_name", &v);
    assert_true(tch_slice_eq_cstr(v, process));
    tch_init_get(&m, "tchannel_language", &v);
    assert_true(tch_slice_eq_cstr(v, "c"));
}

static void init_frames_carry_every_header_peers_expect(void **state) {
    (void)state;
    pair p;
    make(&p, 1 << 20);
    tch_conn_start(p.client.c);
    expect_init(&p.client, TCH_FRAME_INIT_REQ, "0.0.0.0:0", "client");
    tch_conn_feed(p.server.c, p.client.out.ptr, p.client.out.len, p.server.now);
    expect_init(&p.server, TCH_FRAME_INIT_RES, "127.0.0.1:4040", "server");
    destroy(&p);
}

/* Feeds `to` an init frame of `type` with these headers (NULL value: left out). */
static void feed_init(side *to, uint8_t type, uint16_t version, const char *host_port,
                      const char *process) {
    tch_init m = {.version = version};
    if (host_port)
        m.headers[m.nheaders++] = (tch_kv){tch_slice_cstr("host_port"), tch_slice_cstr(host_port)};
    if (process)
        m.headers[m.nheaders++] = (tch_kv){tch_slice_cstr("process_name"), tch_slice_cstr(process)};
    uint8_t buf[256];
    size_t n;
    assert_int_equal(tch_init_encode(type, 1, &m, buf, sizeof buf, &n, NULL), 0);
    tch_conn_feed(to->c, buf, n, to->now);
}

/* The error frame `s` sent, which must be its last frame: its id and text. */
static void expect_error_sent(side *s, uint32_t id, const char *needle) {
    tch_slice in = tch_buf_slice(&s->out);
    tch_frame fr = {0};
    size_t used;
    while (in.len && tch_frame_parse(in, &fr, &used, NULL) == 0) {
        in.ptr += used;
        in.len -= used;
    }
    assert_int_equal(in.len, 0);
    assert_int_equal(fr.type, TCH_FRAME_ERROR);
    assert_int_equal(fr.id, id);
    tch_error_frame e;
    assert_int_equal(tch_error_frame_decode(fr.payload, &e, NULL), 0);
    char msg[512];
    snprintf(msg, sizeof msg, "%.*s", (int)e.message.len, (const char *)e.message.ptr);
    if (!strstr(msg, needle))
        print_message("error frame said: %s\n", msg);
    assert_non_null(strstr(msg, needle));
}

static void init_req_without_host_port_is_refused(void **state) {
    (void)state;
    pair p;
    make(&p, 1 << 20);
    feed_init(&p.server, TCH_FRAME_INIT_REQ, 2, NULL, "raw");
    assert_true(p.server.failed);
    expect_error_sent(&p.server, 1, "host_port");
    destroy(&p);
}

/* Our client refuses a bad answer to its init req the way our server
 * refuses a bad init req: an error frame naming the fault, then failed. */
static void client_refuses_a_bad_init_res(void **state) {
    (void)state;
    static const struct {
        uint16_t version;
        const char *host_port, *process, *needle;
    } cases[] = {
        {1, "127.0.0.1:1", "srv", "version 1"},
        {2, "127.0.0.1:1", NULL, "process_name"},
        {2, NULL, "srv", "host_port"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        pair p;
        make(&p, 1 << 20);
        tch_conn_start(p.client.c);
        tch_buf_free(&p.client.out);
        feed_init(&p.client, TCH_FRAME_INIT_RES, cases[i].version, cases[i].host_port,
                  cases[i].process);
        assert_true(p.client.failed);
        assert_false(p.client.ready);
        expect_error_sent(&p.client, 1, cases[i].needle);
        destroy(&p);
    }
}

static void client_refuses_garbage_for_an_init_res(void **state) {
    (void)state;
    pair p;
    make(&p, 1 << 20);
    tch_conn_start(p.client.c);
    tch_buf_free(&p.client.out);
    const char junk[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
    /* A first header that cannot start an init res is refused at once,
     * before its (garbage) length of payload arrives. */
    assert_true(tch_conn_feed(p.client.c, (const uint8_t *)junk, sizeof junk - 1, 0) < 0);
    assert_true(p.client.failed);
    expect_error_sent(&p.client, TCH_ID_NONE, "init res");
    destroy(&p);
}

static void call_before_handshake_is_held_then_delivered(void **state) {
    (void)state;
    pair p;
    make(&p, 1 << 20);
    tch_call_fields *f = req_fields();
    tch_slice args[3] = {tch_slice_cstr("ep"), tch_slice_cstr("h"), tch_slice_cstr("body")};
    uint32_t id = tch_conn_next_id(p.client.c);
    assert_int_equal(tch_conn_send_call(p.client.c, TCH_FRAME_CALL_REQ, id, f, args, NULL), 0);
    assert_int_equal(p.client.out.len, 0); /* nothing before init req */
    tch_conn_start(p.client.c);
    pump(&p);
    assert_int_equal(p.server.nreq, 1);
    assert_int_equal(p.server.req->id, id);
    assert_true(tch_slice_eq_cstr(p.server.req->service, "svc"));
    assert_int_equal(p.server.req->args[2].len, 4);
    assert_memory_equal(p.server.req->args[2].ptr, "body", 4);
    free(f);
    destroy(&p);
}

static void large_fragmented_call_arrives_whole(void **state) {
    (void)state;
    pair p;
    make_ready(&p, 4 << 20);
    size_t n = 3 << 20;
    uint8_t *big = malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = (uint8_t)(i % 251);
    tch_call_fields *f = req_fields();
    tch_slice args[3] = {tch_slice_cstr("ep"), tch_slice_of(big, 70000), tch_slice_of(big, n)};
    tch_conn_send_call(p.client.c, TCH_FRAME_CALL_REQ, tch_conn_next_id(p.client.c), f, args, NULL);
    pump(&p);
    assert_int_equal(p.server.nreq, 1);
    assert_int_equal(p.server.req->args[1].len, 70000);
    assert_int_equal(p.server.req->args[2].len, n);
    assert_memory_equal(p.server.req->args[2].ptr, big, n);
    /* and a fragmented answer back (responses carry no TTL to run out) */
    tch_call_fields *rf = calloc(1, sizeof *rf);
    rf->csum_type = TCH_CSUM_CRC32C;
    tch_slice rargs[3] = {TCH_SLICE_NULL, TCH_SLICE_NULL, tch_slice_of(big, n)};
    assert_int_equal(tch_conn_send_call(p.server.c, TCH_FRAME_CALL_RES, p.server.req->id, rf,
                                        rargs, NULL), 0);
    pump(&p);
    assert_int_equal(p.client.nres, 1);
    assert_int_equal(p.client.nerr, 0);
    assert_int_equal(p.client.res->args[2].len, n);
    assert_memory_equal(p.client.res->args[2].ptr, big, n);
    free(rf);
    free(big);
    free(f);
    destroy(&p);
}

/* Output stays in the conn until the owner says it was written: handed
 * out as iovecs over its blocks, taken in pieces of any size, the bytes
 * are those of a conn drained in one go. */
static void output_is_handed_out_until_written(void **state) {
    (void)state;
    size_t n = 500000;
    uint8_t *big = malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = (uint8_t)(i * 7);
    tch_call_fields *f = req_fields();
    f->csum_type = TCH_CSUM_CRC32C;
    tch_slice args[3] = {tch_slice_cstr("ep"), tch_slice_cstr("h"), tch_slice_of(big, n)};
    tch_buf sent[2] = {{0}};
    for (int way = 0; way < 2; way++) { /* drained at once; held, then taken in pieces */
        pair p;
        make_ready(&p, 1 << 20);
        side *s = &p.client;
        tch_buf_reset(&s->out);
        s->hold_output = way == 1;
        s->noutput = 0;
        assert_int_equal(tch_conn_send_call(s->c, TCH_FRAME_CALL_REQ, 7, f, args, NULL), 0);
        if (way == 1) {
            assert_int_equal(s->noutput, 1); /* once: when output began to wait */
            assert_int_equal(s->out.len, 0);
            assert_true(tch_conn_out_pending(s->c) > n);
            struct iovec iov[8];
            int k = tch_conn_out(s->c, iov, 8);
            assert_true(k > 1); /* more than one block: no copy into one buffer */
            while (tch_conn_out_pending(s->c) > 0) { /* 10000 bytes a "write" */
                k = tch_conn_out(s->c, iov, 1);
                size_t take = iov[0].iov_len < 10000 ? iov[0].iov_len : 10000;
                tch_buf_append(&s->out, iov[0].iov_base, take);
                tch_conn_out_done(s->c, take);
            }
        }
        sent[way] = s->out;
        s->out = (tch_buf){0};
        destroy(&p);
    }
    assert_true(sent[0].len > n);
    assert_int_equal(sent[1].len, sent[0].len);
    assert_memory_equal(sent[1].ptr, sent[0].ptr, sent[0].len);
    for (int way = 0; way < 2; way++)
        tch_buf_free(&sent[way]);
    free(f);
    free(big);
}

/* A frame begun must be whole within frame_timeout_ms of the owner's
 * clock: tick with an explicit now fails the conn (TCH_ETIMEOUT) and tells
 * the peer; frames that keep coming restart the count. */
static void frame_timeout_runs_on_the_owners_clock(void **state) {
    (void)state;
    pair p;
    make(&p, 1 << 20);
    tch_conn_free(p.server.c);
    tch_conn_config sc = {.host_port = "127.0.0.1:4040", .process_name = "server",
                          .max_arg_size = 1 << 20, .frame_timeout_ms = 1000};
    p.server.c = tch_conn_new(&sc, &cbs, &p.server);
    tch_conn_start(p.client.c);
    pump(&p);
    assert_true(tch_conn_is_ready(p.server.c));
    tch_buf_reset(&p.server.out);
    assert_int_equal(tch_conn_next_deadline(p.server.c), 0);
    uint8_t ping[TCH_FRAME_HEADER_SIZE];
    tch_ping_encode(TCH_FRAME_PING_REQ, 5, ping);
    p.server.now = 10000;
    tch_conn_feed(p.server.c, ping, 10, p.server.now); /* a frame begun */
    assert_int_equal(tch_conn_in_pending(p.server.c), 10);
    assert_int_equal(tch_conn_next_deadline(p.server.c), 11000);
    assert_int_equal(tch_conn_tick(p.server.c, 10999), 11000); /* not yet */
    assert_false(p.server.failed);
    p.server.now = 10500; /* its rest and half of another: the count restarts */
    uint8_t more[TCH_FRAME_HEADER_SIZE - 10 + 8];
    memcpy(more, ping + 10, TCH_FRAME_HEADER_SIZE - 10);
    memcpy(more + (TCH_FRAME_HEADER_SIZE - 10), ping, 8);
    tch_conn_feed(p.server.c, more, sizeof more, p.server.now);
    assert_int_equal(p.server.out.len, TCH_FRAME_HEADER_SIZE); /* the ping was answered */
    assert_int_equal(tch_conn_next_deadline(p.server.c), 11500);
    tch_buf_reset(&p.server.out);
    tch_conn_tick(p.server.c, 11500);
    assert_true(p.server.failed);
    assert_non_null(strstr(p.server.why, "frame timeout"));
    assert_int_equal(p.server.nlimit, 1);
    expect_error_sent(&p.server, TCH_ID_NONE, "frame timeout");
    destroy(&p);
}

/* A peer that does not read its answers: past the output's high mark the
 * conn wants no more input and processes none, until the owner writes. */
static void a_backlog_of_output_stops_reading(void **state) {
    (void)state;
    pair p;
    make_ready(&p, 1 << 20);
    p.server.hold_output = 1;
    uint8_t ping[TCH_FRAME_HEADER_SIZE];
    tch_ping_encode(TCH_FRAME_PING_REQ, 9, ping);
    assert_true(tch_conn_wants_read(p.server.c));
    size_t fed = 0;
    while (tch_conn_wants_read(p.server.c) && fed < 2000000) { /* 16 bytes a ping */
        tch_conn_feed(p.server.c, ping, sizeof ping, p.server.now);
        fed++;
    }
    assert_false(tch_conn_wants_read(p.server.c));
    size_t waiting = tch_conn_out_pending(p.server.c);
    tch_conn_feed(p.server.c, ping, sizeof ping, p.server.now);
    assert_int_equal(tch_conn_out_pending(p.server.c), waiting); /* not processed */
    assert_int_equal(tch_conn_in_pending(p.server.c), sizeof ping);
    drain(&p.server); /* written: reading resumes, the ping left is answered */
    assert_true(tch_conn_wants_read(p.server.c));
    assert_int_equal(tch_conn_process(p.server.c, 32, p.server.now), 0);
    assert_int_equal(tch_conn_out_pending(p.server.c), sizeof ping);
    tch_conn_trim(p.server.c); /* buffers given back; the conn goes on */
    drain(&p.server);
    tch_conn_trim(p.server.c);
    tch_conn_feed(p.server.c, ping, sizeof ping, p.server.now);
    assert_int_equal(tch_conn_out_pending(p.server.c), sizeof ping);
    assert_false(p.server.failed);
    destroy(&p);
}

static void over_limit_request_gets_bad_request_not_a_close(void **state) {
    (void)state;
    pair p;
    make_ready(&p, 1000);
    static uint8_t big[5000];
    tch_call_fields *f = req_fields();
    tch_slice args[3] = {tch_slice_cstr("ep"), TCH_SLICE_NULL, tch_slice_of(big, sizeof big)};
    uint32_t id = tch_conn_next_id(p.client.c);
    tch_conn_send_call(p.client.c, TCH_FRAME_CALL_REQ, id, f, args, NULL);
    pump(&p);
    assert_int_equal(p.server.nreq, 0);
    assert_int_equal(p.client.nerr, 1);
    assert_int_equal(p.client.err_id, id);
    assert_int_equal(p.client.err_code, 0x06);
    assert_false(p.server.failed);
    assert_false(p.client.failed);
    free(f);
    destroy(&p);
}

static void corrupted_checksum_is_reported_for_that_call(void **state) {
    (void)state;
    pair p;
    make_ready(&p, 1 << 20);
    tch_call_fields *f = req_fields();
    tch_slice args[3] = {tch_slice_cstr("ep"), TCH_SLICE_NULL, tch_slice_cstr("payload")};
    uint32_t id = tch_conn_next_id(p.client.c);
    tch_conn_send_call(p.client.c, TCH_FRAME_CALL_REQ, id, f, args, NULL);
    p.client.out.ptr[p.client.out.len - 1] ^= 0x01; /* flip a bit of arg3 */
    pump(&p);
    assert_int_equal(p.server.nreq, 0);
    assert_int_equal(p.client.nerr, 1);
    assert_int_equal(p.client.err_code, 0x06);
    assert_non_null(strstr(p.client.err_msg, "checksum"));
    free(f);
    destroy(&p);
}

static void corrupted_response_checksum_fails_that_call_only(void **state) {
    (void)state;
    pair p;
    make_ready(&p, 1 << 20);
    tch_call_fields *f = req_fields();
    tch_slice args[3] = {tch_slice_cstr("ep"), TCH_SLICE_NULL, tch_slice_cstr("payload")};
    uint32_t id = tch_conn_next_id(p.client.c);
    tch_conn_send_call(p.client.c, TCH_FRAME_CALL_REQ, id, f, args, NULL);
    pump(&p);
    assert_int_equal(p.server.nreq, 1);
    tch_call_fields rf = {.csum_type = TCH_CSUM_CRC32};
    tch_slice rargs[3] = {TCH_SLICE_NULL, TCH_SLICE_NULL, tch_slice_cstr("answer")};
    assert_int_equal(tch_conn_send_call(p.server.c, TCH_FRAME_CALL_RES, id, &rf, rargs, NULL), 0);
    p.server.out.ptr[p.server.out.len - 1] ^= 0x01; /* flip a bit of arg3 */
    pump(&p);
    assert_int_equal(p.client.nres, 0);
    assert_int_equal(p.client.nresfail, 1);
    assert_non_null(strstr(p.client.why, "checksum"));
    assert_false(p.client.failed);
    /* The connection still carries the next call. */
    id = tch_conn_next_id(p.client.c);
    tch_conn_send_call(p.client.c, TCH_FRAME_CALL_REQ, id, f, args, NULL);
    pump(&p);
    assert_int_equal(p.server.nreq, 2);
    free(f);
    destroy(&p);
}

/* Bytes at which two encodings of one message differ: where, and how many. */
static size_t differing(const tch_buf *a, const tch_buf *b, size_t *first) {
    size_t n = 0;
    assert_int_equal(a->len, b->len);
    for (size_t i = 0; i < a->len; i++)
        if (a->ptr[i] != b->ptr[i] && n++ == 0)
            *first = i;
    return n;
}

/* TCH_CONN_SEND_BAD_CHECKSUM: the first frame goes out with its checksum
 * inverted and nothing else changed, so the peer refuses that message only,
 * whether it is written in place (server) or through write (client). */
static void a_message_can_be_sent_with_a_bad_checksum(void **state) {
    (void)state;
    static uint8_t big[150000]; /* three frames: only the first is spoiled */
    pair p;
    make_ready(&p, 1 << 20);
    tch_call_fields *f = req_fields();
    tch_slice args[3] = {tch_slice_cstr("ep"), TCH_SLICE_NULL, tch_slice_cstr("payload")};
    uint32_t id = tch_conn_next_id(p.client.c);
    assert_int_equal(tch_conn_send_call(p.client.c, TCH_FRAME_CALL_REQ, id, f, args, NULL), 0);
    pump(&p);
    assert_int_equal(p.server.nreq, 1);
    tch_call_fields rf = {.csum_type = TCH_CSUM_CRC32C};
    tch_slice rargs[3] = {TCH_SLICE_NULL, tch_slice_cstr("h"), tch_slice_of(big, sizeof big)};
    tch_error err;
    assert_int_equal(tch_conn_send_call(p.server.c, TCH_FRAME_CALL_RES, id, &rf, rargs, &err), 0);
    tch_buf good = p.server.out;
    p.server.out = (tch_buf){0};
    assert_int_equal(tch_conn_send_call_with(p.server.c, TCH_FRAME_CALL_RES, id, &rf, rargs,
                                             TCH_CONN_SEND_BAD_CHECKSUM, &err),
                     0);
    size_t at = 0;
    assert_int_equal(differing(&good, &p.server.out, &at), 4);
    assert_true(at < 64); /* in the first frame's fields */
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(good.ptr[at + i] ^ p.server.out.ptr[at + i], 0xff);
    tch_buf_free(&good);
    pump(&p);
    assert_int_equal(p.client.nres, 0);
    assert_int_equal(p.client.nresfail, 1);
    assert_non_null(strstr(p.client.why, "checksum mismatch in frame index 0"));
    assert_false(p.client.failed);
    /* a request too, through write: the server answers BadRequest */
    id = tch_conn_next_id(p.client.c);
    assert_int_equal(tch_conn_send_call_with(p.client.c, TCH_FRAME_CALL_REQ, id, f, args,
                                             TCH_CONN_SEND_BAD_CHECKSUM, &err),
                     0);
    pump(&p);
    assert_int_equal(p.server.nreq, 1);
    assert_int_equal(p.client.nerr, 1);
    assert_int_equal(p.client.err_code, 0x06);
    assert_non_null(strstr(p.client.err_msg, "checksum"));
    /* the connection carries the next call, checksummed as usual */
    id = tch_conn_next_id(p.client.c);
    assert_int_equal(tch_conn_send_call(p.client.c, TCH_FRAME_CALL_REQ, id, f, args, NULL), 0);
    pump(&p);
    assert_int_equal(p.server.nreq, 2);
    /* no checksum, nothing to spoil: refused, and nothing is sent */
    f->csum_type = TCH_CSUM_NONE;
    assert_int_equal(tch_conn_send_call_with(p.client.c, TCH_FRAME_CALL_REQ, id, f, args,
                                             TCH_CONN_SEND_BAD_CHECKSUM, &err),
                     TCH_EINVAL);
    assert_non_null(strstr(err.msg, "no checksum to spoil"));
    assert_int_equal(p.client.out.len, 0);
    free(f);
    destroy(&p);
}

static void ping_is_answered(void **state) {
    (void)state;
    pair p;
    make_ready(&p, 1 << 20);
    tch_conn_send_ping(p.client.c, 99);
    assert_int_equal(p.client.out.len, 16);
    tch_buf b = p.client.out;
    p.client.out = (tch_buf){0};
    tch_conn_feed(p.server.c, b.ptr, b.len, p.server.now);
    tch_buf_free(&b);
    assert_int_equal(p.server.out.len, 16);
    assert_int_equal(p.server.out.ptr[2], TCH_FRAME_PING_RES);
    assert_int_equal(p.server.out.ptr[7], 99);
    destroy(&p);
}

static void fatal_error_frame_fails_the_connection(void **state) {
    (void)state;
    pair p;
    make_ready(&p, 1 << 20);
    tch_conn_send_error(p.server.c, TCH_ID_NONE, 0xff, NULL, "going away");
    pump(&p);
    assert_true(p.client.failed);
    assert_non_null(strstr(p.client.why, "going away"));
    destroy(&p);
}

/* An error frame about no call with another code is a notice (the Node
 * peer's "draining"): reported, and the connection goes on. */
static void a_notice_error_frame_keeps_the_connection(void **state) {
    (void)state;
    pair p;
    make_ready(&p, 1 << 20);
    tch_conn_send_error(p.server.c, TCH_ID_NONE, 0x04 /* declined */, NULL, "draining: going away");
    pump(&p);
    assert_false(p.client.failed);
    assert_int_equal(p.client.nerr, 1);
    assert_int_equal(p.client.err_id, TCH_ID_NONE);
    assert_int_equal(p.client.err_code, 0x04);
    assert_string_equal(p.client.err_msg, "draining: going away");
    assert_true(tch_conn_is_ready(p.client.c));
    destroy(&p);
}

static void unknown_frame_type_after_handshake_is_fatal(void **state) {
    (void)state;
    pair p;
    make_ready(&p, 1 << 20);
    uint8_t fr[16];
    tch_frame_header_write(fr, 0x42, 5, 0);
    tch_conn_feed(p.server.c, fr, sizeof fr, p.server.now);
    assert_true(p.server.failed);
    assert_non_null(strstr(p.server.why, "0x42"));
    /* the server told the client before failing */
    assert_true(p.server.out.len > 16);
    assert_int_equal(p.server.out.ptr[2], TCH_FRAME_ERROR);
    destroy(&p);
}

static void response_is_matched_and_cancel_reported(void **state) {
    (void)state;
    pair p;
    make_ready(&p, 1 << 20);
    tch_call_fields *f = req_fields();
    tch_slice args[3] = {tch_slice_cstr("ep"), TCH_SLICE_NULL, tch_slice_cstr("q")};
    uint32_t id = tch_conn_next_id(p.client.c);
    tch_conn_send_call(p.client.c, TCH_FRAME_CALL_REQ, id, f, args, NULL);
    pump(&p);
    tch_slice rargs[3] = {TCH_SLICE_NULL, TCH_SLICE_NULL, tch_slice_cstr("answer")};
    f->code = 1;
    tch_conn_send_call(p.server.c, TCH_FRAME_CALL_RES, id, f, rargs, NULL);
    pump(&p);
    assert_int_equal(p.client.nres, 1);
    assert_int_equal(p.client.res->id, id);
    assert_int_equal(p.client.res->code, 1);
    tch_conn_send_cancel(p.client.c, 77, NULL, "bored");
    pump(&p);
    assert_int_equal(p.server.ncancel, 1);
    free(f);
    destroy(&p);
}

/* Feeds the server frames [skip, skip + frames) of a request whose arg3 is
 * `len` bytes (frames < 0: to the end). */
static void send_frames(pair *p, uint32_t id, size_t len, int skip, int frames) {
    static uint8_t big[1200000];
    tch_call_fields *f = req_fields();
    tch_slice args[3] = {tch_slice_cstr("ep"), TCH_SLICE_NULL, tch_slice_of(big, len)};
    tch_fragmenter fz;
    tch_fragmenter_init(&fz, TCH_FRAME_CALL_REQ, id, f, args);
    uint8_t *frame = malloc(TCH_FRAME_MAX_SIZE);
    int more = 1;
    for (int i = 0; more && (frames < 0 || i < skip + frames); i++) {
        size_t n;
        more = tch_fragmenter_next(&fz, frame, &n, NULL);
        assert_true(more >= 0);
        if (i >= skip)
            tch_conn_feed(p->server.c, frame, n, p->server.now);
    }
    free(frame);
    free(f);
}

/* The first `frames` frames only, leaving the rest unsent. */
static void send_partial(pair *p, uint32_t id, size_t len, int frames) {
    assert_true(frames > 0);
    send_frames(p, id, len, 0, frames);
}

static void requests_left_unfinished_are_bounded(void **state) {
    (void)state;
    pair p;
    make(&p, 1 << 20);
    tch_conn_free(p.server.c); /* again, with small limits */
    tch_conn_config sc = {.outbound = 0, .host_port = "127.0.0.1:4040", .process_name = "server",
                          .max_arg_size = 1 << 20, .max_partial_requests = 2,
                          .max_partial_bytes = 300000};
    p.server.c = tch_conn_new(&sc, &cbs, &p.server);
    tch_conn_start(p.client.c);
    pump(&p);
    tch_buf_reset(&p.server.out);
    send_partial(&p, 11, 300000, 1);
    send_partial(&p, 12, 300000, 1);
    assert_int_equal(p.server.out.len, 0); /* two may be arriving */
    send_partial(&p, 13, 300000, 1);       /* a third is refused */
    pump(&p);
    assert_int_equal(p.client.nerr, 1);
    assert_int_equal(p.client.err_id, 13);
    assert_int_equal(p.client.err_code, 0x03);
    assert_non_null(strstr(p.client.err_msg, "limit"));
    assert_false(p.server.failed);
    /* A request whose frames push the bytes held past the budget is dropped. */
    tch_conn_forget_request(p.server.c, 12);
    send_partial(&p, 14, 390000, 5);
    pump(&p);
    assert_int_equal(p.client.nerr, 2);
    assert_int_equal(p.client.err_id, 14);
    assert_non_null(strstr(p.client.err_msg, "bytes"));
    assert_int_equal(p.server.nreq, 0);
    destroy(&p);
}

/* A request still arriving when its TTL (1000 ms, counted from its first
 * frame) runs out is dropped with a Timeout error frame; its late frames
 * are ignored, and the connection lives on. */
static void request_arriving_past_its_ttl_is_expired(void **state) {
    (void)state;
    pair p;
    make_ready(&p, 1 << 20);
    tch_buf_reset(&p.server.out);
    assert_int_equal(tch_conn_next_deadline(p.server.c), 0);
    p.server.now = 5000;
    send_partial(&p, 21, 300000, 1);
    p.server.now = 5400;
    send_partial(&p, 22, 300000, 1);
    assert_int_equal(tch_conn_next_deadline(p.server.c), 6000);
    assert_int_equal(tch_conn_tick(p.server.c, 5999), 6000);
    pump(&p);
    assert_int_equal(p.client.nerr, 0); /* not yet */
    assert_int_equal(tch_conn_tick(p.server.c, 6000), 6400);
    pump(&p);
    assert_int_equal(p.client.nerr, 1);
    assert_int_equal(p.client.err_id, 21);
    assert_int_equal(p.client.err_code, 0x01);
    assert_non_null(strstr(p.client.err_msg, "ttl of 1000 ms ran out before its last frame arrived"));
    send_frames(&p, 21, 300000, 1, -1); /* the rest of 21, too late */
    assert_int_equal(p.server.nreq, 0);
    p.server.now = 6100;
    send_frames(&p, 22, 300000, 1, -1); /* 22 completes in time... */
    assert_int_equal(p.server.nreq, 1);
    assert_int_equal(p.server.req->id, 22);
    assert_int_equal(p.server.req->args[2].len, 300000);
    assert_int_equal(p.server.req->ttl_ms, 300); /* ...with what is left of its TTL */
    assert_int_equal(tch_conn_next_deadline(p.server.c), 0);
    assert_int_equal(tch_conn_tick(p.server.c, 99999), 0);
    pump(&p);
    assert_int_equal(p.client.nerr, 1);
    /* Completed after its deadline but before any expiry ran: refused too. */
    send_partial(&p, 23, 300000, 1);
    p.server.now = 7100;
    send_frames(&p, 23, 300000, 1, -1);
    pump(&p);
    assert_int_equal(p.server.nreq, 1);
    assert_int_equal(p.client.nerr, 2);
    assert_int_equal(p.client.err_id, 23);
    assert_int_equal(p.client.err_code, 0x01);
    assert_non_null(strstr(p.client.err_msg, "service \"svc\" timed out: its ttl of 1000 ms ran out by the time its last frame arrived"));
    assert_false(p.server.failed);
    destroy(&p);
}


/* A second request under an id whose first request is still arriving:
 * both are refused with one BadRequest error frame naming the reuse, and
 * the connection carries the next call. */
static void id_reused_while_arriving_gets_an_error(void **state) {
    (void)state;
    pair p;
    make_ready(&p, 1 << 20);
    tch_buf_reset(&p.server.out);
    p.server.now = 777;
    send_partial(&p, 31, 300000, 2);
    assert_int_equal(tch_conn_partial_active_ms(p.server.c), 777); /* its last frame */
    send_partial(&p, 31, 1000, 1); /* one whole frame, same id */
    pump(&p);
    assert_int_equal(p.server.nreq, 0);
    assert_int_equal(p.client.nerr, 1);
    assert_int_equal(p.client.err_id, 31);
    assert_int_equal(p.client.err_code, 0x06);
    assert_non_null(strstr(p.client.err_msg, "call id 31 reused while"));
    assert_int_equal(tch_conn_partial_requests(p.server.c), 0);
    send_frames(&p, 31, 300000, 2, -1); /* the first one's rest: ignored */
    assert_int_equal(p.server.nreq, 0);
    send_partial(&p, 32, 1000, 1);
    assert_int_equal(p.server.nreq, 1);
    assert_false(p.server.failed);
    destroy(&p);
}

/* A call req frame built by hand (the fragmenter refuses what these test):
 * no checksum, nh headers key_i=v (key_i from keys, or "k<i>"), arg1 of
 * arg1_len bytes, empty arg2 and arg3. */
static size_t raw_call_req(uint8_t *out, uint32_t id, const char *const *keys, size_t nh,
                           size_t arg1_len) {
    uint8_t *q = out + TCH_FRAME_HEADER_SIZE;
    *q++ = 0;                                   /* flags */
    memcpy(q, "\x00\x00\x03\xe8", 4), q += 4;     /* ttl 1000 */
    memset(q, 0, 25), q += 25;                  /* tracing */
    *q++ = 3, memcpy(q, "svc", 3), q += 3;
    *q++ = (uint8_t)nh;
    for (size_t i = 0; i < nh; i++) {
        char k[24];
        snprintf(k, sizeof k, "k%zu", i);
        const char *key = keys ? keys[i] : k;
        *q++ = (uint8_t)strlen(key), memcpy(q, key, strlen(key)), q += strlen(key);
        *q++ = 1, *q++ = 'v';
    }
    *q++ = 0; /* no checksum */
    *q++ = (uint8_t)(arg1_len >> 8), *q++ = (uint8_t)arg1_len;
    memset(q, 'e', arg1_len), q += arg1_len;
    memset(q, 0, 4), q += 4; /* arg2, arg3 empty */
    size_t n = (size_t)(q - out);
    tch_frame_header_write(out, TCH_FRAME_CALL_REQ, id, n - TCH_FRAME_HEADER_SIZE);
    return n;
}

/* What the Node and Go peers refuse is refused here too: BadRequest naming
 * the rule, and the connection lives on. */
static void strict_call_fields_get_bad_request(void **state) {
    (void)state;
    static const char *const dup[] = {"as", "cn", "as"};
    static const char *const empty[] = {"as", ""};
    static const struct {
        const char *const *keys;
        size_t nh, arg1;
        const char *needle;
    } cases[] = {
        {dup, 3, 2, "duplicate transport header key \"as\""},
        {empty, 2, 2, "empty key"},
        {NULL, 129, 2, "129 transport headers"},
        {NULL, 128, 0x4001, "arg1 of at least 16385 bytes is longer than the protocol allows"},
    };
    uint8_t *frame = malloc(TCH_FRAME_MAX_SIZE);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        pair p;
        make_ready(&p, 1 << 20);
        size_t n = raw_call_req(frame, 40 + (uint32_t)i, cases[i].keys, cases[i].nh, cases[i].arg1);
        tch_conn_feed(p.server.c, frame, n, p.server.now);
        assert_int_equal(p.server.nreq, 0);
        assert_false(p.server.failed);
        expect_error_sent(&p.server, 40 + (uint32_t)i, cases[i].needle);
        assert_int_equal(p.server.out.ptr[TCH_FRAME_HEADER_SIZE], 0x06); /* bad request */
        /* the limits themselves pass: 128 headers, a 16 KiB arg1 */
        n = raw_call_req(frame, 50, NULL, 128, 0x4000);
        tch_conn_feed(p.server.c, frame, n, p.server.now);
        assert_int_equal(p.server.nreq, 1);
        destroy(&p);
    }
    free(frame);
}

/* Two connections share one budget: a request holds its charge while it
 * arrives and until its owner releases it; past the budget new requests
 * get Busy (the owner's limit hook hears why), and memory held stays under
 * the budget. */
static void shared_budget_refuses_with_busy(void **state) {
    (void)state;
    tch_mem_budget budget = {.limit = 450000};
    pair a, b;
    pair *ps[2] = {&a, &b};
    for (int i = 0; i < 2; i++) {
        make(ps[i], 1 << 20);
        tch_conn_free(ps[i]->server.c);
        tch_conn_config sc = {.host_port = "127.0.0.1:4040", .process_name = "server",
                              .max_arg_size = 1 << 20, .shared = &budget};
        ps[i]->server.c = tch_conn_new(&sc, &cbs, &ps[i]->server);
        tch_conn_start(ps[i]->client.c);
        pump(ps[i]);
        tch_buf_reset(&ps[i]->server.out);
    }
    send_frames(&a, 61, 300000, 0, -1); /* whole, and held by its owner */
    assert_int_equal(a.server.nreq, 1);
    size_t held = budget.used;
    assert_true(held >= 300000 && held <= 300000 + 300000 / 8 + 4096); /* near what it holds */
    assert_int_equal(a.server.req->charged, held);
    send_partial(&b, 62, 300000, 2); /* would pass the budget */
    pump(&b);
    assert_int_equal(b.client.nerr, 1);
    assert_int_equal(b.client.err_id, 62);
    assert_int_equal(b.client.err_code, 0x03);
    assert_non_null(strstr(b.client.err_msg, "budget of 450000 bytes; retry later"));
    assert_non_null(strstr(b.client.err_msg, "it would hold ")); /* its own bytes, not 0 */
    assert_int_equal(b.server.nlimit, 1);
    assert_non_null(strstr(b.server.limit_why, "request id 62 refused"));
    assert_true(budget.used <= budget.limit);
    assert_int_equal(tch_conn_partial_requests(b.server.c), 0);
    tch_call_msg_uncharge(a.server.req); /* answered: the charge goes back */
    assert_int_equal(budget.used, 0);
    send_frames(&b, 63, 300000, 0, -1);
    assert_int_equal(b.server.nreq, 1);
    keep(&b.server.req, NULL); /* freeing gives it back too */
    assert_int_equal(budget.used, 0);
    send_partial(&b, 64, 300000, 2);
    assert_true(budget.used > 0);
    destroy(&b); /* a conn freed with a request arriving gives its charge back */
    assert_int_equal(budget.used, 0);
    destroy(&a);
}

/* A server whose connection and shared budgets are both 1 MiB: a request
 * of 900 KB (fragmented, nothing else held) is taken, since what it holds
 * is counted close to its size; one of 1.2 MB can never be taken and gets
 * BadRequest saying so, not a Busy that invites endless retries. */
static void a_request_is_measured_against_the_budget_by_its_size(void **state) {
    (void)state;
    tch_mem_budget budget = {.limit = 1 << 20};
    pair p;
    make(&p, 4 << 20);
    tch_conn_free(p.server.c);
    tch_conn_config sc = {.host_port = "127.0.0.1:4040", .process_name = "server",
                          .max_arg_size = 4 << 20, .max_partial_bytes = 1 << 20,
                          .shared = &budget};
    p.server.c = tch_conn_new(&sc, &cbs, &p.server);
    tch_conn_start(p.client.c);
    pump(&p);
    tch_buf_reset(&p.server.out);
    send_frames(&p, 71, 900000, 0, -1);
    pump(&p);
    assert_int_equal(p.client.nerr, 0);
    assert_int_equal(p.server.nreq, 1);
    assert_int_equal(p.server.req->args[2].len, 900000);
    assert_true(budget.used <= budget.limit);
    keep(&p.server.req, NULL);
    assert_int_equal(budget.used, 0);
    send_frames(&p, 72, 1200000, 0, -1);
    pump(&p);
    assert_int_equal(p.server.nreq, 1);
    assert_int_equal(p.client.nerr, 1);
    assert_int_equal(p.client.err_id, 72);
    assert_int_equal(p.client.err_code, 0x06); /* bad request: retrying cannot help */
    assert_non_null(strstr(p.client.err_msg, "is larger than this server's budget of 1048576 bytes"));
    assert_int_equal(budget.used, 0);
    assert_int_equal(tch_conn_partial_requests(p.server.c), 0);
    assert_false(p.server.failed);
    destroy(&p);
}

/* Many small requests left arriving: each is charged what holds it (its
 * structs, map slot, allocator headers), not only its few buffer bytes, so
 * the number held stays within what the budget can pay for. */
static void small_partial_requests_are_charged_their_overhead(void **state) {
    (void)state;
    tch_mem_budget budget = {.limit = 100000};
    pair p;
    make(&p, 1 << 20);
    tch_conn_free(p.server.c);
    tch_conn_config sc = {.host_port = "127.0.0.1:4040", .process_name = "server",
                          .max_arg_size = 1 << 20, .max_partial_requests = 100000,
                          .shared = &budget};
    p.server.c = tch_conn_new(&sc, &cbs, &p.server);
    tch_conn_start(p.client.c);
    pump(&p);
    tch_buf_reset(&p.server.out);
    uint8_t frame[512];
    for (uint32_t id = 100; id < 1100; id++) {
        size_t n = raw_call_req(frame, id, NULL, 1, 4);
        frame[TCH_FRAME_HEADER_SIZE] = TCH_CALL_FLAG_MORE; /* arg3 stays open */
        tch_conn_feed(p.server.c, frame, n, p.server.now);
    }
    size_t held = tch_conn_partial_requests(p.server.c);
    assert_true(held > 0);
    assert_true(held * 512 <= budget.limit); /* 512: what each is charged at least */
    assert_true(budget.used <= budget.limit);
    pump(&p);
    assert_int_equal(p.client.nerr, 1000 - (int)held); /* the rest got Busy */
    assert_int_equal(p.client.err_code, 0x03);
    destroy(&p);
    assert_int_equal(budget.used, 0);
}

/* An answer to a peer with answers unread while the shared budget cannot
 * pay for it is refused: nothing of it is queued, what waited is dropped,
 * and the conn fails saying why (the peer is not reading). */
static void an_answer_to_a_peer_that_does_not_read_is_refused(void **state) {
    (void)state;
    static uint8_t big[200000];
    tch_mem_budget budget = {.limit = 1 << 20};
    pair p;
    make(&p, 1 << 20);
    tch_conn_free(p.server.c);
    tch_conn_config sc = {.host_port = "127.0.0.1:4040", .process_name = "server",
                          .max_arg_size = 1 << 20, .shared = &budget};
    p.server.c = tch_conn_new(&sc, &cbs, &p.server);
    tch_conn_start(p.client.c);
    pump(&p);
    p.server.hold_output = 1;
    tch_call_fields *f = req_fields();
    f->service = TCH_SLICE_NULL;
    tch_slice args[3] = {TCH_SLICE_NULL, tch_slice_cstr("h"), tch_slice_of(big, sizeof big)};
    tch_error err;
    int rc = 0;
    uint32_t id = 5;
    for (; rc == 0 && id < 100; id++) /* unread answers count in the budget */
        rc = tch_conn_send_call(p.server.c, TCH_FRAME_CALL_RES, id, f, args, &err);
    assert_int_equal(rc, TCH_ETOOBIG);
    assert_true(id > 6 && id < 12); /* about limit / 200000 were taken */
    assert_non_null(strstr(err.msg, "not reading"));
    assert_int_equal(tch_conn_out_pending(p.server.c), 0); /* dropped */
    assert_int_equal(budget.used, 0);
    assert_true(p.server.failed);
    assert_int_equal(p.server.nlimit, 1);
    assert_non_null(strstr(p.server.why, "not reading"));
    free(f);
    destroy(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(handshake_completes_and_names_peers),
        cmocka_unit_test(init_frames_carry_every_header_peers_expect),
        cmocka_unit_test(init_req_without_host_port_is_refused),
        cmocka_unit_test(client_refuses_a_bad_init_res),
        cmocka_unit_test(client_refuses_garbage_for_an_init_res),
        cmocka_unit_test(call_before_handshake_is_held_then_delivered),
        cmocka_unit_test(large_fragmented_call_arrives_whole),
        cmocka_unit_test(output_is_handed_out_until_written),
        cmocka_unit_test(frame_timeout_runs_on_the_owners_clock),
        cmocka_unit_test(a_backlog_of_output_stops_reading),
        cmocka_unit_test(over_limit_request_gets_bad_request_not_a_close),
        cmocka_unit_test(corrupted_checksum_is_reported_for_that_call),
        cmocka_unit_test(corrupted_response_checksum_fails_that_call_only),
        cmocka_unit_test(a_message_can_be_sent_with_a_bad_checksum),
        cmocka_unit_test(ping_is_answered),
        cmocka_unit_test(fatal_error_frame_fails_the_connection),
        cmocka_unit_test(a_notice_error_frame_keeps_the_connection),
        cmocka_unit_test(unknown_frame_type_after_handshake_is_fatal),
        cmocka_unit_test(response_is_matched_and_cancel_reported),
        cmocka_unit_test(requests_left_unfinished_are_bounded),
        cmocka_unit_test(request_arriving_past_its_ttl_is_expired),
        cmocka_unit_test(id_reused_while_arriving_gets_an_error),
        cmocka_unit_test(strict_call_fields_get_bad_request),
        cmocka_unit_test(shared_budget_refuses_with_busy),
        cmocka_unit_test(a_request_is_measured_against_the_budget_by_its_size),
        cmocka_unit_test(small_partial_requests_are_charged_their_overhead),
        cmocka_unit_test(an_answer_to_a_peer_that_does_not_read_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
