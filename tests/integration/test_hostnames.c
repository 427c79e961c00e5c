/* Host names and IPv6 literals wherever HOST:PORT is taken (calls, peers,
 * listen, ping, Hyperbahn routers), over real sockets on the loopback, and
 * the errors for a name that does not resolve and for a peer that is not
 * TChannel (tiny fake peers written here with libevent). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <tchannel/channel.h>
#include <tchannel/hyperbahn.h>
#include <tchannel/json.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"
#include "result.h"

typedef struct fixture {
    struct event_base *base;
    int base_events; /* libevent's own, right after event_base_new */
    tch_channel *server, *client;
    char port[8];     /* the server's, on 127.0.0.1 */
    char peer_seen[64]; /* what the server's handler saw as the caller */
    int served;
    struct evdns_base *dns; /* a test's own resolver, when it sets one */
    char hosts_file[64];
} fixture;

static void on_echo(tch_inbound *in, void *ud) {
    fixture *f = ud;
    f->served++;
    snprintf(f->peer_seen, sizeof f->peer_seen, "%s", tch_inbound_peer(in));
    tch_inbound_respond(in, 0, tch_inbound_arg2(in), tch_inbound_arg3(in));
}

static tch_channel *echo_server(fixture *f, const char *listen_on, tch_error *err) {
    tch_channel *ch;
    tch_channel_new(f->base, "echo-svc", NULL, &ch, NULL);
    assert_non_null(ch);
    assert_int_equal(tch_channel_register(ch, NULL, "echo", on_echo, f), 0);
    if (tch_channel_listen(ch, listen_on, err) != 0) {
        tch_channel_free(ch);
        return NULL;
    }
    return ch;
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->base = event_base_new();
    f->base_events = event_base_get_num_events(f->base, EVENT_BASE_COUNT_ADDED);
    tch_error err;
    f->server = echo_server(f, "127.0.0.1:0", &err);
    assert_non_null(f->server);
    const char *hp = tch_channel_host_port(f->server);
    snprintf(f->port, sizeof f->port, "%s", strrchr(hp, ':') + 1);
    tch_channel_new(f->base, "caller", NULL, &f->client, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    tch_channel_free(f->client);
    tch_channel_free(f->server);
    if (f->dns)
        evdns_base_free(f->dns, 1);
    if (f->hosts_file[0])
        unlink(f->hosts_file);
    /* a leaked connection, timer or lookup would still be in the loop */
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    assert_int_equal(event_base_get_num_events(f->base, EVENT_BASE_COUNT_ADDED), f->base_events);
    event_base_free(f->base);
    free(f);
    return 0;
}

/* Calls echo at host_port and runs the loop until the answer, within ms. */
static void call(fixture *f, tch_channel *from, const char *host_port, uint32_t timeout_ms,
                 result *r) {
    tch_call_opts o = {
        .service = "echo-svc", .endpoint = tch_slice_cstr("echo"),
        .arg3 = tch_slice_cstr("hello"), .host_port = host_port,
        .timeout_ms = timeout_ms, .retry_limit = TCH_RETRY_LIMIT_NONE,
    };
    tch_error err;
    assert_int_equal(tch_channel_call(from, &o, on_result, r, &err), 0);
    assert_true(tch_test_run_until(f->base, &r->done, (int)timeout_ms + 2000));
    assert_int_equal(r->done, 1);
}

static void assert_echoed(const result *r) {
    if (r->status != 0)
        fail_msg("call failed: %d %s", r->status, r->message);
    assert_int_equal(r->code, 0);
    assert_int_equal(r->arg3.len, 5);
    assert_memory_equal(r->arg3.ptr, "hello", 5);
}

static int has(const char *s, const char *part) {
    if (strstr(s, part))
        return 1;
    print_message("wanted \"%s\" in \"%s\"\n", part, s);
    return 0;
}

/* ---- names and IPv6 --------------------------------------------------------- */

/* localhost, looked up by the channel's own resolver (from /etc/hosts). */
static void calls_localhost_by_name(void **state) {
    fixture *f = *state;
    char hp[64];
    snprintf(hp, sizeof hp, "localhost:%s", f->port);
    result r = {0};
    call(f, f->client, hp, 5000, &r);
    assert_echoed(&r);
    result_free(&r);
    /* a second call rides the same connection: one lookup, one connect */
    result r2 = {0};
    call(f, f->client, hp, 5000, &r2);
    assert_echoed(&r2);
    result_free(&r2);
    assert_int_equal(tch_channel_connection_count(f->client), 1);
}

/* What goes in init is the numeric address bound, never the name typed. */
static void listening_on_localhost_binds_and_announces_a_number(void **state) {
    fixture *f = *state;
    tch_error err;
    assert_int_equal(tch_channel_listen(f->client, "localhost:0", &err), 0);
    const char *hp = tch_channel_host_port(f->client);
    assert_true(has(hp, "127.0.0.1:"));
    char target[64];
    snprintf(target, sizeof target, "localhost:%s", f->port);
    result r = {0};
    call(f, f->client, target, 5000, &r);
    assert_echoed(&r);
    result_free(&r);
    assert_string_equal(f->peer_seen, hp); /* the server saw our init's host_port */
}

static void calls_an_ipv6_literal(void **state) {
    fixture *f = *state;
    tch_error err;
    tch_channel *v6 = echo_server(f, "[::1]:0", &err);
    if (!v6) {
        print_message("skipped: no IPv6 loopback here (%s)\n", err.msg);
        skip();
    }
    const char *hp = tch_channel_host_port(v6);
    assert_true(has(hp, "[::1]:"));
    result r = {0};
    call(f, f->client, hp, 5000, &r);
    assert_echoed(&r);
    result_free(&r);
    tch_channel_free(v6);
}

/* Names from a hosts file of the test's own, through tch_channel_set_resolver.
 * 127.0.0.3 and .4 are loopback too, but the server is bound to 127.0.0.1
 * only: they refuse. tch-test-peer's first address refuses whichever way
 * its list is read, so the call shows the next ones are tried. */
static void tries_a_names_addresses_in_order(void **state) {
    fixture *f = *state;
    snprintf(f->hosts_file, sizeof f->hosts_file, "/tmp/tch-hosts-XXXXXX");
    int fd = mkstemp(f->hosts_file);
    assert_true(fd >= 0);
    const char *text = "127.0.0.3 tch-test-peer\n127.0.0.1 tch-test-peer\n"
                       "127.0.0.4 tch-test-peer\n127.0.0.3 tch-dead-peer\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    f->dns = evdns_base_new(f->base, 0);
    assert_non_null(f->dns);
    assert_int_equal(evdns_base_load_hosts(f->dns, f->hosts_file), 0);
    tch_channel_set_resolver(f->client, f->dns);
    char hp[64];
    snprintf(hp, sizeof hp, "tch-test-peer:%s", f->port);
    result r = {0};
    call(f, f->client, hp, 5000, &r);
    assert_echoed(&r);
    result_free(&r);
    /* the last address's refusal, naming it */
    snprintf(hp, sizeof hp, "tch-dead-peer:%s", f->port);
    result dead = {0};
    call(f, f->client, hp, 5000, &dead);
    assert_int_equal(dead.status, TCH_EIO);
    char want[128];
    snprintf(want, sizeof want, "connection to %s (127.0.0.3:%s): ", hp, f->port);
    assert_true(has(dead.message, want));
    result_free(&dead);
}

static void on_ping(int status, uint64_t rtt_us, void *ud) {
    (void)rtt_us;
    int *st = ud;
    st[0] = 1;
    st[1] = status;
}

static void pings_a_peer_by_name(void **state) {
    fixture *f = *state;
    char hp[64];
    snprintf(hp, sizeof hp, "localhost:%s", f->port);
    int st[2] = {0, -1};
    assert_int_equal(tch_channel_ping(f->client, hp, 3000, on_ping, st, NULL), 0);
    assert_true(tch_test_run_until(f->base, &st[0], 5000));
    assert_int_equal(st[1], 0);
}

/* Peers are known by the string given: a name and its address are two. */
static void peers_by_name_are_chosen_and_called(void **state) {
    fixture *f = *state;
    char hp[64];
    snprintf(hp, sizeof hp, "localhost:%s", f->port);
    tch_error err;
    assert_int_equal(tch_channel_add_peer(f->client, hp, &err), 0);
    assert_int_equal(tch_channel_add_peer(f->client, "[::1]:4040", &err), 0);
    result r = {0};
    tch_call_opts o = {.service = "echo-svc", .endpoint = tch_slice_cstr("echo"),
                       .arg3 = tch_slice_cstr("hello"), .timeout_ms = 5000};
    /* whichever peer is picked first, the other is tried next */
    assert_int_equal(tch_channel_call(f->client, &o, on_result, &r, &err), 0);
    assert_true(tch_test_run_until(f->base, &r.done, 7000));
    assert_echoed(&r);
    result_free(&r);
}

/* ---- names that do not resolve ------------------------------------------------ */

/* A resolver of the test's own with a short timeout, so a machine without
 * DNS fails the lookup quickly as well (with "timeout" as its reason). */
static void use_quick_resolver(fixture *f) {
    f->dns = evdns_base_new(f->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                         EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    assert_non_null(f->dns);
    evdns_base_set_option(f->dns, "timeout:", "1");
    evdns_base_set_option(f->dns, "attempts:", "1");
    tch_channel_set_resolver(f->client, f->dns);
}

static void a_name_that_does_not_resolve_fails_the_call(void **state) {
    fixture *f = *state;
    use_quick_resolver(f);
    result r = {0};
    call(f, f->client, "nosuch.invalid:4040", 8000, &r);
    assert_int_equal(r.status, TCH_EIO);
    assert_int_equal(r.error_code, TCH_PCODE_NETWORK); /* as a refused connection */
    assert_true(has(r.message, "resolve \"nosuch.invalid\": "));
    result_free(&r);
}

/* The failure counts as a connection failure: the retry goes to the peer
 * that works, and the failed one is backed off. */
static void an_unresolvable_peer_is_retried_elsewhere(void **state) {
    fixture *f = *state;
    use_quick_resolver(f);
    char good[64];
    snprintf(good, sizeof good, "127.0.0.1:%s", f->port);
    tch_error err;
    assert_int_equal(tch_channel_add_peer(f->client, "nosuch.invalid:4040", &err), 0);
    assert_int_equal(tch_channel_add_peer(f->client, good, &err), 0);
    for (int i = 0; i < 3; i++) {
        result r = {0};
        tch_call_opts o = {.service = "echo-svc", .endpoint = tch_slice_cstr("echo"),
                           .arg3 = tch_slice_cstr("hello"), .timeout_ms = 8000};
        assert_int_equal(tch_channel_call(f->client, &o, on_result, &r, &err), 0);
        assert_true(tch_test_run_until(f->base, &r.done, 10000));
        assert_echoed(&r);
        result_free(&r);
    }
    assert_int_equal(f->served, 3);
}

/* A resolver whose only nameserver is a UDP socket of the test's that never
 * answers: lookups stay in flight. Returns the socket (closed by the caller). */
static int use_silent_resolver(fixture *f) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    char ns[32];
    snprintf(ns, sizeof ns, "127.0.0.1:%u", ntohs(sin.sin_port));
    f->dns = evdns_base_new(f->base, 0);
    assert_non_null(f->dns);
    assert_int_equal(evdns_base_nameserver_ip_add(f->dns, ns), 0);
    tch_channel_set_resolver(f->client, f->dns);
    return fd;
}

static void a_lookup_that_takes_too_long_is_named_in_the_timeout(void **state) {
    fixture *f = *state;
    int ns = use_silent_resolver(f);
    result r = {0};
    call(f, f->client, "slow.test:4040", 300, &r);
    assert_int_equal(r.status, TCH_ETIMEOUT);
    assert_true(has(r.message, "resolve \"slow.test\": no answer within "));
    result_free(&r);
    close(ns);
}

/* The channel goes while its lookup is in flight: the call ends, and the
 * lookup's late answer (the resolver's shutdown) finds nothing to touch. */
static void freeing_the_channel_during_a_lookup_is_harmless(void **state) {
    fixture *f = *state;
    int ns = use_silent_resolver(f);
    result r = {0};
    tch_call_opts o = {.service = "echo-svc", .endpoint = tch_slice_cstr("echo"),
                       .host_port = "slow.test:4040", .timeout_ms = 5000};
    assert_int_equal(tch_channel_call(f->client, &o, on_result, &r, NULL), 0);
    /* run until the query reached the nameserver */
    fd_set rd;
    for (int i = 0; i < 100; i++) {
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        FD_ZERO(&rd);
        FD_SET(ns, &rd);
        struct timeval tv = {0, 20000};
        if (select(ns + 1, &rd, NULL, NULL, &tv) == 1)
            break;
    }
    assert_true(FD_ISSET(ns, &rd));
    tch_channel_free(f->client);
    f->client = NULL;
    assert_int_equal(r.done, 1);
    assert_int_equal(r.status, TCH_ECLOSED);
    result_free(&r);
    close(ns);
    /* teardown frees the resolver, whose shutdown answers the lookup */
}

static void malformed_host_ports_are_named(void **state) {
    (void)state;
    static const struct {
        const char *hp, *why;
    } bad[] = {
        {"::1:4040", "an IPv6 address goes in brackets"},
        {"[::g]:4040", "not an IPv6 address"},
        {"localhost:65536", "a port 0-65535"},
        {"localhost", "want HOST:PORT"},
        {"localhost:+80", "a port 0-65535"},
        {":4040", "the host is empty"},
        {"bad host:80", "neither an IP address nor a host name"},
        {"a-very-long-host-name.that-goes-on.and-on.example.internal.test:4040",
         "longer than 63 bytes"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tch_error err;
        assert_int_equal(tch_host_port_check(bad[i].hp, &err), TCH_EINVAL);
        assert_true(has(err.msg, bad[i].hp) || has(err.msg, "longer"));
        assert_true(has(err.msg, bad[i].why));
    }
    static const char *good[] = {"localhost:0", "[::1]:4040", "127.0.0.1:65535",
                                 "router-1.example.com:21300", "my_host:1"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_int_equal(tch_host_port_check(good[i], NULL), 0);
}

static void listening_on_a_name_that_does_not_resolve_says_so(void **state) {
    fixture *f = *state;
    tch_error err;
    assert_int_not_equal(tch_channel_listen(f->client, "nosuch.invalid:0", &err), 0);
    assert_true(has(err.msg, "listen on nosuch.invalid:0: resolve \"nosuch.invalid\""));
}

/* ---- peers that are not TChannel ------------------------------------------------ */

/* A listener that answers whatever it gets with `reply` and closes, or
 * (reply NULL) reads and stays silent, or (close_at_once) reads and closes. */
typedef struct fake_peer {
    struct evconnlistener *l;
    struct bufferevent *bev;
    const char *reply;
    int close_at_once;
    char hp[64];
} fake_peer;

static void fake_close(fake_peer *p) {
    if (p->bev)
        bufferevent_free(p->bev);
    p->bev = NULL;
}

static void fake_written(struct bufferevent *bev, void *arg) {
    (void)bev;
    fake_close(arg);
}

static void fake_read(struct bufferevent *bev, void *arg) {
    fake_peer *p = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    if (p->close_at_once) {
        fake_close(p);
    } else if (p->reply) {
        bufferevent_setcb(bev, NULL, fake_written, NULL, p);
        bufferevent_write(bev, p->reply, strlen(p->reply));
        p->reply = NULL; /* once */
    }
}

static void fake_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                        int len, void *arg) {
    fake_peer *p = arg;
    (void)sa, (void)len;
    if (p->bev) { /* one connection at a time is all these tests make */
        evutil_closesocket(fd);
        return;
    }
    p->bev = bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(p->bev, fake_read, NULL, NULL, p);
    bufferevent_enable(p->bev, EV_READ);
}

static void fake_start(fixture *f, fake_peer *p) {
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    p->l = evconnlistener_new_bind(f->base, fake_accept, p, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                   16, (struct sockaddr *)&sin, sizeof sin);
    assert_non_null(p->l);
    socklen_t slen = sizeof sin;
    getsockname(evconnlistener_get_fd(p->l), (struct sockaddr *)&sin, &slen);
    snprintf(p->hp, sizeof p->hp, "127.0.0.1:%u", ntohs(sin.sin_port));
}

static void fake_stop(fake_peer *p) {
    fake_close(p);
    evconnlistener_free(p->l);
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* An HTTP server answers our init with a 400: said at once, with its words. */
static void an_http_server_is_not_tchannel(void **state) {
    fixture *f = *state;
    fake_peer p = {.reply = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                            "Connection: close\r\n\r\n"};
    fake_start(f, &p);
    uint64_t t0 = now_ms();
    result r = {0};
    call(f, f->client, p.hp, 5000, &r);
    assert_true(now_ms() - t0 < 2500); /* not the call's timeout */
    assert_int_equal(r.status, TCH_EPROTO);
    char want[200];
    snprintf(want, sizeof want,
             "peer %s is not speaking TChannel: it sent \"HTTP/1.1 400 Bad Request\" "
             "instead of an init response", p.hp);
    assert_true(has(r.message, want));
    result_free(&r);
    fake_stop(&p);
}

/* Fewer bytes than a frame header, then the peer closes. */
static void a_short_answer_then_close_is_shown(void **state) {
    fixture *f = *state;
    fake_peer p = {.reply = "nope\x01\n"};
    fake_start(f, &p);
    result r = {0};
    call(f, f->client, p.hp, 5000, &r);
    assert_int_not_equal(r.status, TCH_ETIMEOUT);
    assert_true(has(r.message, "is not speaking TChannel: it sent \"nope\\x01\" instead"));
    result_free(&r);
    fake_stop(&p);
}

static void a_silent_peer_times_out_saying_so(void **state) {
    fixture *f = *state;
    fake_peer p = {0};
    fake_start(f, &p);
    result r = {0};
    call(f, f->client, p.hp, 300, &r);
    assert_int_equal(r.status, TCH_ETIMEOUT);
    char want[200];
    snprintf(want, sizeof want, "peer %s did not answer the TChannel handshake within ", p.hp);
    assert_true(has(r.message, want));
    result_free(&r);
    fake_stop(&p);
}

static void a_peer_that_hangs_up_says_so(void **state) {
    fixture *f = *state;
    fake_peer p = {.close_at_once = 1};
    fake_start(f, &p);
    result r = {0};
    call(f, f->client, p.hp, 5000, &r);
    char want[200];
    snprintf(want, sizeof want, "peer %s closed the connection without answering the TChannel handshake",
             p.hp);
    assert_true(has(r.message, want));
    result_free(&r);
    fake_stop(&p);
}

/* ---- Hyperbahn routers by name ------------------------------------------------ */

static void on_ad(tch_inbound *in, const json_t *headers, const json_t *body, void *ud) {
    (void)headers, (void)body;
    int *ads = ud;
    (*ads)++;
    json_t *ok = json_pack("{s:i}", "connectionCount", 1);
    tch_json_respond(in, 0, NULL, ok);
    json_decref(ok);
}

typedef struct advertised {
    int done, status;
    char message[512];
} advertised;

static void on_advertised(int status, const char *message, void *ud) {
    advertised *a = ud;
    a->done = 1;
    a->status = status;
    snprintf(a->message, sizeof a->message, "%s", message ? message : "");
}

static void advertises_to_a_router_named(void **state) {
    fixture *f = *state;
    int ads = 0;
    assert_int_equal(tch_json_register(f->server, "hyperbahn", "ad", on_ad, &ads), 0);
    char router[64];
    snprintf(router, sizeof router, "localhost:%s", f->port);
    const char *routers[1] = {router};
    tch_hyperbahn_options o = {.routers = routers, .nrouters = 1};
    tch_hyperbahn *hb = NULL;
    advertised a = {0};
    tch_error err;
    assert_int_equal(tch_hyperbahn_advertise(f->client, &o, on_advertised, &a, &hb, &err), 0);
    assert_true(has(tch_channel_host_port(f->client), "127.0.0.1:")); /* towards localhost */
    assert_true(tch_test_run_until(f->base, &a.done, 5000));
    if (a.status != 0)
        fail_msg("advertise failed: %s", a.message);
    assert_int_equal(ads, 1);
    tch_hyperbahn_free(hb);
}

static void a_router_list_entry_is_checked_by_form(void **state) {
    fixture *f = *state;
    const char *routers[2] = {"localhost:21300", "::1:21300"};
    tch_hyperbahn_options o = {.routers = routers, .nrouters = 2};
    tch_hyperbahn *hb = NULL;
    advertised a = {0};
    tch_error err;
    assert_int_equal(tch_hyperbahn_advertise(f->client, &o, on_advertised, &a, &hb, &err),
                     TCH_EINVAL);
    assert_true(has(err.msg, "routers[1]"));
    assert_true(has(err.msg, "brackets"));
    assert_null(hb);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(calls_localhost_by_name, setup, teardown),
        cmocka_unit_test_setup_teardown(listening_on_localhost_binds_and_announces_a_number, setup, teardown),
        cmocka_unit_test_setup_teardown(calls_an_ipv6_literal, setup, teardown),
        cmocka_unit_test_setup_teardown(tries_a_names_addresses_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(pings_a_peer_by_name, setup, teardown),
        cmocka_unit_test_setup_teardown(peers_by_name_are_chosen_and_called, setup, teardown),
        cmocka_unit_test_setup_teardown(a_name_that_does_not_resolve_fails_the_call, setup, teardown),
        cmocka_unit_test_setup_teardown(an_unresolvable_peer_is_retried_elsewhere, setup, teardown),
        cmocka_unit_test_setup_teardown(a_lookup_that_takes_too_long_is_named_in_the_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(freeing_the_channel_during_a_lookup_is_harmless, setup, teardown),
        cmocka_unit_test_setup_teardown(malformed_host_ports_are_named, setup, teardown),
        cmocka_unit_test_setup_teardown(listening_on_a_name_that_does_not_resolve_says_so, setup, teardown),
        cmocka_unit_test_setup_teardown(an_http_server_is_not_tchannel, setup, teardown),
        cmocka_unit_test_setup_teardown(a_short_answer_then_close_is_shown, setup, teardown),
        cmocka_unit_test_setup_teardown(a_silent_peer_times_out_saying_so, setup, teardown),
        cmocka_unit_test_setup_teardown(a_peer_that_hangs_up_says_so, setup, teardown),
        cmocka_unit_test_setup_teardown(advertises_to_a_router_named, setup, teardown),
        cmocka_unit_test_setup_teardown(a_router_list_entry_is_checked_by_form, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
