/* tchannel-mock as a Hyperbahn stand-in: calls relayed by service name to
 * instances (given with --upstream SERVICE=HOST:PORT, or advertised), each
 * service recorded into its own cassette and replayed from it, errors passed
 * through as sent, the TTL shrunk, tracing and cn/rd kept, Declined naming a
 * service with no instance, and an advertised instance taken out when its
 * connection fails. The instances are channels in this process. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <tchannel/cassette.h>
#include <tchannel/channel.h>
#include <tchannel/hyperbahn.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#define MOCK_FX_EXTRA                                                                             \
    tch_channel *inst[3]; /* services alpha, beta, and a second alpha */                          \
    char inst_hp[3][64];                                                                          \
    char rec[300];                                                                                \
    const char *rd; /* the routing delegate calls send, or NULL */
#include "mock_fixture.h"

/* Echoes arg3 and says what the instance received: the TTL, the transport
 * headers the relay must keep, and the tracing ids. */
static void on_echo(tch_inbound *in, void *ud) {
    const char *label = ud;
    tch_slice cn = TCH_SLICE_NULL, rd = TCH_SLICE_NULL, as = TCH_SLICE_NULL;
    tch_inbound_header(in, "cn", &cn);
    tch_inbound_header(in, "rd", &rd);
    tch_inbound_header(in, "as", &as);
    tch_trace t = tch_inbound_trace(in);
    char info[512];
    snprintf(info, sizeof info,
             "ttl=%u cn=%.*s rd=%.*s as=%.*s trace=%llx parent=%llx flags=%u by=%s",
             tch_inbound_ttl_ms(in), (int)cn.len, (const char *)cn.ptr, (int)rd.len,
             (const char *)rd.ptr, (int)as.len, (const char *)as.ptr,
             (unsigned long long)t.trace_id, (unsigned long long)t.parent_id, t.flags, label);
    tch_inbound_respond(in, 0, tch_slice_cstr(info), tch_inbound_arg3(in));
}

static void on_fail(tch_inbound *in, void *ud) {
    (void)ud;
    tch_inbound_respond_error(in, TCH_PCODE_BUSY, "alpha is busy: try later (code 42)");
}

static const char *const LABELS[] = {"alpha-1", "beta-1", "alpha-2"};

/* A router stand-in: says which service name the call carried. */
static void on_any(tch_inbound *in, void *ud) {
    (void)ud;
    char msg[300];
    tch_slice sn = tch_inbound_service(in);
    snprintf(msg, sizeof msg, "router saw %.*s", (int)sn.len, (const char *)sn.ptr);
    tch_inbound_respond(in, 0, TCH_SLICE_NULL, tch_slice_cstr(msg));
}

static void start_instance(fx *f, int i, const char *service) {
    tch_channel_new(f->base, service, NULL, &f->inst[i], NULL);
    assert_non_null(f->inst[i]);
    tch_error err;
    assert_int_equal(tch_channel_listen(f->inst[i], "127.0.0.1:0", &err), 0);
    snprintf(f->inst_hp[i], sizeof f->inst_hp[i], "%s", tch_channel_host_port(f->inst[i]));
    assert_int_equal(tch_channel_register(f->inst[i], service, "echo", on_echo,
                                          (void *)LABELS[i]), 0);
    assert_int_equal(tch_channel_register(f->inst[i], service, "fail", on_fail, NULL), 0);
}

static int setup(void **state) {
    fx *f = fx_new("relay-client", "/tmp/tch-mock-relay-XXXXXX");
    snprintf(f->rec, sizeof f->rec, "%s/rec/", f->dir);
    start_instance(f, 0, "alpha");
    start_instance(f, 1, "beta");
    *state = f;
    return 0;
}

static void stop_instance(fx *f, int i) {
    if (f->inst[i])
        tch_channel_free(f->inst[i]);
    f->inst[i] = NULL;
}

static int teardown(void **state) {
    fx *f = *state;
    if (f->mp.pid)
        mp_stop(&f->mp, f->base, SIGKILL, 5000);
    for (int i = 0; i < 3; i++)
        stop_instance(f, i);
    fx_free(f);
    return 0;
}

static void start_mock(fx *f, const char *first, ...) {
    char *argv[32];
    int n = 0, admin = 0;
    argv[n++] = TCH_MOCK_BIN;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && n < 31; a = va_arg(ap, const char *)) {
        admin |= !strcmp(a, "--admin-port");
        argv[n++] = (char *)a;
    }
    va_end(ap);
    argv[n] = NULL;
    assert_int_equal(mp_start(&f->mp, argv, admin, 2), 0);
}

static const tch_trace PARENT = {.span_id = 0x1111, .parent_id = 0, .trace_id = 0xabcdef12,
                                 .flags = 1};

static result call(fx *f, const char *service, const char *endpoint, const char *body) {
    tch_call_opts o = {.service = service, .endpoint = tch_slice_cstr(endpoint),
                       .arg3 = tch_slice_cstr(body), .timeout_ms = 2000,
                       .retry_limit = TCH_RETRY_LIMIT_NONE, .routing_delegate = f->rd,
                       .trace = &PARENT};
    return fx_call(f, o, 5000);
}

static size_t interactions_in(const char *path, const char *service) {
    tch_cassette *c;
    tch_error err;
    assert_int_equal(tch_cassette_open(path, NULL, &c, &err), 0);
    size_t n = tch_cassette_count(c);
    for (size_t i = 0; i < n; i++) {
        const tch_cassette_interaction *it = tch_cassette_get(c, i);
        assert_true(tch_slice_eq_cstr(tch_buf_slice(&it->request.service), service));
    }
    tch_cassette_free(c);
    return n;
}

/* What the instance saw: the hop keeps cn, as and the trace id; its span
 * is a child (a parent id that is the client's span, not ours); the TTL is
 * less than the caller's 2000 ms. */
static void check_relayed(const result *r) {
    assert_int_equal(r->status, 0);
    unsigned ttl = 0;
    assert_int_equal(sscanf(r->arg2, "ttl=%u", &ttl), 1);
    assert_true(ttl > 0 && ttl < 2000);
    assert_non_null(strstr(r->arg2, " cn=relay-client "));
    assert_non_null(strstr(r->arg2, " rd= ")); /* none sent: none added */
    assert_non_null(strstr(r->arg2, " as=raw "));
    assert_non_null(strstr(r->arg2, " trace=abcdef12 "));
    assert_null(strstr(r->arg2, " parent=0 "));
    assert_null(strstr(r->arg2, " parent=1111 ")); /* the client's own span is between */
    assert_non_null(strstr(r->arg2, " flags=1"));
}

/* Records alpha and beta into their own cassettes, then replays both from
 * one process with the instances gone; a miss names alpha's cassette. */
static void records_each_service_then_replays(void **state) {
    fx *f = *state;
    char up_a[128], up_b[128];
    snprintf(up_a, sizeof up_a, "alpha=%s", f->inst_hp[0]);
    snprintf(up_b, sizeof up_b, "beta=%s", f->inst_hp[1]);
    start_mock(f, "--mode", "once", "--record-to", f->rec, "--upstream", up_a, "--upstream", up_b,
               NULL);
    result r = call(f, "alpha", "echo", "to alpha");
    check_relayed(&r);
    assert_string_equal(r.arg3, "to alpha");
    r = call(f, "beta", "echo", "to beta");
    check_relayed(&r);
    assert_string_equal(r.arg3, "to beta");
    r = call(f, "alpha", "fail", "x"); /* recorded as the error frame it is */
    assert_int_equal(r.status, TCH_EREMOTE);
    assert_int_equal(r.error_code, TCH_PCODE_BUSY);
    assert_string_equal(r.message, "alpha is busy: try later (code 42)");
    r = call(f, "gamma", "echo", "nobody"); /* no instance: Declined, naming it */
    assert_int_equal(r.error_code, TCH_PCODE_DECLINED);
    assert_non_null(strstr(r.message, "\"gamma\""));
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 10000), 0);

    char pa[400], pb[400], pg[400];
    snprintf(pa, sizeof pa, "%salpha.yaml", f->rec);
    snprintf(pb, sizeof pb, "%sbeta.yaml", f->rec);
    snprintf(pg, sizeof pg, "%sgamma.yaml", f->rec);
    assert_int_equal(interactions_in(pa, "alpha"), 2);
    assert_int_equal(interactions_in(pb, "beta"), 1);
    struct stat st;
    assert_int_not_equal(stat(pg, &st), 0); /* nothing answered it: nothing recorded */

    stop_instance(f, 0);
    stop_instance(f, 1);
    start_mock(f, f->rec, NULL);
    r = call(f, "beta", "echo", "to beta");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.arg3, "to beta");
    r = call(f, "alpha", "echo", "to alpha");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.arg3, "to alpha");
    assert_non_null(strstr(r.arg2, "trace=abcdef12")); /* the recorded answer */
    r = call(f, "alpha", "fail", "x");
    assert_int_equal(r.error_code, TCH_PCODE_BUSY);
    assert_string_equal(r.message, "alpha is busy: try later (code 42)");
    r = call(f, "alpha", "echo", "something else");
    assert_int_equal(r.error_code, TCH_PCODE_BAD_REQUEST);
    assert_non_null(strstr(r.message, "alpha.yaml"));
}

/* Mode none with --relay proxies misses to a live instance, errors as sent;
 * without --relay a miss stays a miss. */
static void relays_in_mode_none_only_when_asked(void **state) {
    fx *f = *state;
    char up_a[128], empty[300];
    snprintf(up_a, sizeof up_a, "alpha=%s", f->inst_hp[0]);
    snprintf(empty, sizeof empty, "%s/empty.yaml", f->dir);
    FILE *fp = fopen(empty, "w");
    assert_non_null(fp);
    fputs("version: 1\ninteractions: []\n", fp);
    assert_int_equal(fclose(fp), 0);

    start_mock(f, "--upstream", up_a, empty, NULL);
    result r = call(f, "alpha", "echo", "hi");
    assert_int_equal(r.error_code, TCH_PCODE_BAD_REQUEST); /* a miss, not relayed */
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 10000), 0);

    start_mock(f, "--relay", "--upstream", up_a, empty, NULL);
    r = call(f, "alpha", "echo", "hi");
    check_relayed(&r);
    assert_string_equal(r.arg3, "hi");
    r = call(f, "alpha", "fail", "x");
    assert_int_equal(r.status, TCH_EREMOTE);
    assert_int_equal(r.error_code, TCH_PCODE_BUSY);
    assert_string_equal(r.message, "alpha is busy: try later (code 42)");
    r = call(f, "beta", "echo", "hi"); /* no instance of beta: the cassettes' miss */
    assert_int_equal(r.error_code, TCH_PCODE_BAD_REQUEST);
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 10000), 0);
}

/* GET /hyperbahn: the "relay" state of service's instance host_port. */
static const char *relay_state(fx *f, const char *service, const char *host_port) {
    static char state[256];
    json_t *j = NULL;
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_GET, "/hyperbahn", NULL, &j), 200);
    json_t *svc = json_object_get(json_object_get(j, "advertised"), service);
    const char *v = json_string_value(json_object_get(json_object_get(svc, host_port), "relay"));
    snprintf(state, sizeof state, "%s", v ? v : "(none)");
    json_decref(j);
    return state;
}

static void on_advertised(int status, const char *message, void *ud) {
    (void)message;
    *(int *)ud = status == 0 ? 1 : -1;
}

/* An instance that advertised is relayed to; once its connection fails it is
 * taken out, and the next call is no longer sent anywhere. */
static void advertised_instance_then_gone(void **state) {
    fx *f = *state;
    char empty[300];
    snprintf(empty, sizeof empty, "%s/empty.yaml", f->dir);
    FILE *fp = fopen(empty, "w");
    assert_non_null(fp);
    fputs("version: 1\ninteractions: []\n", fp);
    assert_int_equal(fclose(fp), 0);
    start_mock(f, "--relay", "--admin-port", "0", empty, NULL);

    const char *routers[] = {f->mp.hp};
    const char *services[] = {"beta"};
    tch_hyperbahn_options o = {.routers = routers, .nrouters = 1, .services = services,
                               .nservices = 1};
    tch_hyperbahn *hb;
    tch_error err;
    int advertised = 0;
    assert_int_equal(tch_hyperbahn_advertise(f->inst[1], &o, on_advertised, &advertised, &hb,
                                             &err), 0);
    assert_true(tch_test_run_until(f->base, &advertised, 5000));
    assert_int_equal(advertised, 1);
    result r = call(f, "beta", "echo", "via ad");
    check_relayed(&r);
    assert_string_equal(r.arg3, "via ad");
    assert_string_equal(relay_state(f, "beta", f->inst_hp[1]), "live");

    tch_hyperbahn_free(hb);
    stop_instance(f, 1);
    r = call(f, "beta", "echo", "gone"); /* refused: the instance is taken out */
    assert_int_equal(r.status, TCH_EREMOTE);
    assert_int_equal(r.error_code, TCH_PCODE_NETWORK);
    assert_non_null(strstr(relay_state(f, "beta", f->inst_hp[1]), "out: "));
    r = call(f, "beta", "echo", "gone");
    assert_int_equal(r.error_code, TCH_PCODE_BAD_REQUEST); /* no instance left: a miss */
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 10000), 0);
}

static void write_empty(fx *f, char *path, size_t n) {
    snprintf(path, n, "%s/empty.yaml", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("version: 1\ninteractions: []\n", fp);
    assert_int_equal(fclose(fp), 0);
}

typedef struct many {
    int done;
    int by[3];
    int errors;
} many;

static void on_many(const tch_response *res, void *ud) {
    many *m = ud;
    m->done++;
    if (res->status != 0) {
        m->errors++;
        return;
    }
    for (int i = 0; i < 3; i++) {
        char want[32];
        snprintf(want, sizeof want, "by=%s", LABELS[i]);
        tch_slice a2 = res->arg2;
        if (a2.len >= strlen(want) &&
            !memcmp(a2.ptr + a2.len - strlen(want), want, strlen(want)))
            m->by[i]++;
    }
}

/* Two instances of alpha share its calls (the library's least-pending choice);
 * with one of them stopped, calls are retried on the other and none fails. */
static void instances_share_calls_and_survive_one_gone(void **state) {
    fx *f = *state;
    start_instance(f, 2, "alpha");
    char up1[128], up2[128], empty[300];
    snprintf(up1, sizeof up1, "alpha=%s", f->inst_hp[0]);
    snprintf(up2, sizeof up2, "alpha=%s", f->inst_hp[2]);
    write_empty(f, empty, sizeof empty);
    start_mock(f, "--relay", "--upstream", up1, "--upstream", up2, empty, NULL);
    for (int round = 0; round < 2; round++) {
        many m = {0};
        for (int i = 0; i < 40; i++) {
            tch_call_opts o = {.service = "alpha", .endpoint = tch_slice_cstr("echo"),
                               .arg3 = tch_slice_cstr("x"), .host_port = f->mp.hp,
                               .timeout_ms = 3000, .retry_limit = TCH_RETRY_LIMIT_NONE};
            tch_error err;
            assert_int_equal(tch_channel_call(f->client, &o, on_many, &m, &err), 0);
        }
        assert_true(tch_test_run_until_count(f->base, &m.done, 40, 10000));
        assert_int_equal(m.errors, 0);
        if (round == 0) {
            assert_true(m.by[0] > 0 && m.by[2] > 0); /* both instances served */
            assert_int_equal(m.by[0] + m.by[2], 40);
            stop_instance(f, 2);
        } else {
            assert_int_equal(m.by[0], 40); /* the stopped one: retried on the other */
        }
    }
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 10000), 0);
}

/* A call naming a routing delegate (rd) goes to an instance of that service,
 * keeps its own service and rd, and records under its own service; an rd
 * with no instance is Declined naming it. */
static void routes_by_routing_delegate(void **state) {
    fx *f = *state;
    assert_int_equal(tch_channel_register(f->inst[0], "front", "echo", on_echo,
                                          (void *)LABELS[0]), 0);
    char up_a[128];
    snprintf(up_a, sizeof up_a, "alpha=%s", f->inst_hp[0]);
    start_mock(f, "--mode", "once", "--record-to", f->rec, "--upstream", up_a, NULL);
    f->rd = "alpha";
    result r = call(f, "front", "echo", "via rd");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.arg3, "via rd");
    assert_non_null(strstr(r.arg2, " rd=alpha "));
    assert_non_null(strstr(r.arg2, " by=alpha-1"));
    f->rd = "ghost";
    r = call(f, "front", "echo", "nobody");
    assert_int_equal(r.error_code, TCH_PCODE_DECLINED);
    assert_non_null(strstr(r.message, "\"ghost\" (the routing delegate of a call to front)"));
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 10000), 0);
    char path[400];
    snprintf(path, sizeof path, "%sfront.yaml", f->rec);
    assert_int_equal(interactions_in(path, "front"), 1);
}

/* --upstream-router: a service with no instance goes to the router with its
 * service name; one with an instance still goes to the instance. */
static void router_routes_by_service_name(void **state) {
    fx *f = *state;
    char up_b[128], empty[300];
    snprintf(up_b, sizeof up_b, "beta=%s", f->inst_hp[1]);
    tch_channel_set_fallback(f->inst[0], on_any, NULL); /* alpha's channel plays the router */
    write_empty(f, empty, sizeof empty);
    start_mock(f, "--relay", "--upstream-router", f->inst_hp[0], "--upstream", up_b, empty,
               NULL);
    result r = call(f, "delta", "anything", "x");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.arg3, "router saw delta");
    r = call(f, "beta", "echo", "to beta");
    check_relayed(&r);
    assert_non_null(strstr(r.arg2, "by=beta-1"));
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 10000), 0);
}

/* With --trace-file, the relay's hop is reported too: the mock's SERVER
 * span for the caller and its CLIENT span for the call to the instance, in
 * the caller's trace. */
static void relayed_hop_span_is_reported(void **state) {
    fx *f = *state;
    char up_a[128], empty[300], spans[300];
    snprintf(up_a, sizeof up_a, "alpha=%s", f->inst_hp[0]);
    snprintf(spans, sizeof spans, "%s/spans.jsonl", f->dir);
    write_empty(f, empty, sizeof empty);
    start_mock(f, "--relay", "--trace-file", spans, "--upstream", up_a, empty, NULL);
    result r = call(f, "alpha", "echo", "traced");
    check_relayed(&r);
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 10000), 0);
    FILE *in = fopen(spans, "r");
    assert_non_null(in);
    char line[4096];
    int server = 0, client = 0;
    while (fgets(line, sizeof line, in)) {
        json_error_t jerr;
        json_t *j = json_loads(line, 0, &jerr);
        assert_non_null(j);
        const char *kind = json_string_value(json_object_get(j, "kind"));
        assert_string_equal(json_string_value(json_object_get(j, "traceId")),
                            "00000000abcdef12");
        server += kind && !strcmp(kind, "SERVER");
        client += kind && !strcmp(kind, "CLIENT");
        json_decref(j);
    }
    fclose(in);
    assert_int_equal(server, 1);
    assert_int_equal(client, 1);
}

typedef struct ad_result {
    int done, status;
    char message[512];
} ad_result;

static void on_ad_result(int status, const char *message, void *ud) {
    ad_result *a = ud;
    a->done = 1, a->status = status;
    snprintf(a->message, sizeof a->message, "%s", message ? message : "");
}

static ad_result advertise(fx *f, int inst, const char **services, size_t n) {
    const char *routers[] = {f->mp.hp};
    /* a refused ad is said when the first wait ends, with the router's reason */
    tch_hyperbahn_options o = {.routers = routers, .nrouters = 1, .services = services,
                               .nservices = n, .first_timeout_ms = 1500};
    tch_hyperbahn *hb;
    tch_error err;
    ad_result a = {0};
    assert_int_equal(tch_hyperbahn_advertise(f->inst[inst], &o, on_ad_result, &a, &hb, &err),
                     0);
    assert_true(tch_test_run_until(f->base, &a.done, 5000));
    tch_hyperbahn_free(hb);
    return a;
}

/* Ads are capped (services, instances, services per advertising peer): an
 * ad over a cap gets BadRequest naming it, and adds nothing; within the
 * caps, ads are relayed to as before. */
static void ads_over_the_caps_are_refused(void **state) {
    fx *f = *state;
    char empty[300];
    write_empty(f, empty, sizeof empty);
    start_mock(f, "--relay", "--admin-port", "0", "--max-ads-per-peer", "2",
               "--max-advertised-services", "3", empty, NULL);
    const char *three[] = {"beta", "b2", "b3"};
    ad_result a = advertise(f, 1, three, 3);
    assert_int_not_equal(a.status, 0);
    assert_non_null(strstr(a.message, "--max-ads-per-peer 2"));
    assert_string_equal(relay_state(f, "beta", f->inst_hp[1]), "(none)");
    a = advertise(f, 1, three, 2);
    assert_int_equal(a.status, 0);
    const char *others[] = {"alpha", "a2"};
    a = advertise(f, 0, others, 2);
    assert_int_not_equal(a.status, 0);
    assert_non_null(strstr(a.message, "--max-advertised-services 3"));
    result r = call(f, "beta", "echo", "within the caps");
    check_relayed(&r);
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 10000), 0);
}

/* A port nobody listens on now (bound, read and closed). */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* Two mocks that are each other's router: a call relayed once carries our
 * hop mark, so the second mock declines it as a loop instead of sending it
 * back (which went on until the TTL ran out, thousands of hops). */
static void relay_loop_is_declined(void **state) {
    fx *f = *state;
    char empty[300], port[16], hp_a[64];
    write_empty(f, empty, sizeof empty);
    int pa = free_port();
    snprintf(port, sizeof port, "%d", pa);
    snprintf(hp_a, sizeof hp_a, "127.0.0.1:%d", pa);
    mock_proc b;
    char *argv_b[] = {TCH_MOCK_BIN, "--relay", "--upstream-router", hp_a, empty, NULL};
    assert_int_equal(mp_start(&b, argv_b, 0, 2), 0);
    start_mock(f, "--relay", "--port", port, "--upstream-router", b.hp, empty, NULL);
    result r = call(f, "alpha", "echo", "round and round");
    assert_int_equal(r.status, TCH_EREMOTE);
    assert_int_equal(r.error_code, TCH_PCODE_DECLINED);
    assert_non_null(strstr(r.message, "relay loop"));
    assert_non_null(strstr(r.message, "tch-mock-hop"));
    assert_int_equal(mp_stop(&b, f->base, SIGTERM, 10000), 0);
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 10000), 0);
}

static int busy_calls;

static void on_busy(tch_inbound *in, void *ud) {
    (void)ud;
    busy_calls++;
    tch_inbound_respond_error(in, TCH_PCODE_BUSY, "busy");
}

/* The caller's re is what the relay retries on: re "n" reaches the instance
 * once (the library's default retried a Busy answer 4 more times), relayed
 * and recorded through alike. */
static void caller_retry_flags_are_kept(void **state) {
    fx *f = *state;
    assert_int_equal(tch_channel_register(f->inst[0], "alpha", "busy", on_busy, NULL), 0);
    char up_a[128], empty[300];
    snprintf(up_a, sizeof up_a, "alpha=%s", f->inst_hp[0]);
    write_empty(f, empty, sizeof empty);
    for (int rec = 0; rec < 2; rec++) {
        if (rec)
            start_mock(f, "--mode", "once", "--record-to", f->rec, "--upstream", up_a, NULL);
        else
            start_mock(f, "--relay", "--upstream", up_a, empty, NULL);
        busy_calls = 0;
        tch_call_opts o = {.service = "alpha", .endpoint = tch_slice_cstr("busy"),
                           .timeout_ms = 2000, .retry_on = TCH_RETRY_NEVER};
        result r = fx_call(f, o, 5000);
        assert_int_equal(r.error_code, TCH_PCODE_BUSY);
        assert_int_equal(busy_calls, 1);
        assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 10000), 0);
    }
}

/* as, re, sk and rd go to the call's own fields, so a call with as many
 * transport headers as the library always lets a caller give (123 besides
 * as, cn, re, sk and rd) less cn and our hop mark is relayed. */
static void many_transport_headers_are_relayed(void **state) {
    fx *f = *state;
    char up_a[128], empty[300];
    snprintf(up_a, sizeof up_a, "alpha=%s", f->inst_hp[0]);
    write_empty(f, empty, sizeof empty);
    start_mock(f, "--relay", "--upstream", up_a, empty, NULL);
    enum { N = TCH_MAX_TRANSPORT_HEADERS - 2 };
    static char keys[N][16];
    tch_kv hs[N];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "h%d", i);
        hs[i] = (tch_kv){tch_slice_cstr(keys[i]), tch_slice_cstr("v")};
    }
    tch_call_opts o = {.service = "alpha", .endpoint = tch_slice_cstr("echo"),
                       .arg3 = tch_slice_cstr("many"), .timeout_ms = 2000, .headers = hs,
                       .nheaders = N, .shard_key = "shard-1", .retry_on = TCH_RETRY_NEVER};
    result r = fx_call(f, o, 5000);
    assert_string_equal(r.message, "");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.arg3, "many");
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 10000), 0);
}

/* A call with T transport headers of its own: as, cn and re given, and
 * T - 3 others; its answer. */
static result call_with_headers(fx *f, int total) {
    static char keys[128][16];
    static tch_kv hs[128];
    hs[0] = (tch_kv){tch_slice_cstr("as"), tch_slice_cstr("raw")};
    hs[1] = (tch_kv){tch_slice_cstr("cn"), tch_slice_cstr("many-client")};
    hs[2] = (tch_kv){tch_slice_cstr("re"), tch_slice_cstr("n")};
    for (int i = 3; i < total; i++) {
        snprintf(keys[i], sizeof keys[i], "h%d", i);
        hs[i] = (tch_kv){tch_slice_cstr(keys[i]), tch_slice_cstr("v")};
    }
    tch_call_opts o = {.service = "alpha", .endpoint = tch_slice_cstr("echo"),
                       .arg3 = tch_slice_cstr("many"), .timeout_ms = 2000, .headers = hs,
                       .nheaders = (size_t)total, .retry_on = TCH_RETRY_NEVER};
    return fx_call(f, o, 5000);
}

/* What a TChannel peer accepts is 128 transport headers (the Node peer's
 * limit; nh is one byte). The relay adds its hop mark, so a call with 127
 * (cn and re among them) is relayed with 128, and one with 128 gets a
 * BadRequest naming the rule (not a Declined, which callers retry). */
static void the_header_limit_is_the_peers(void **state) {
    fx *f = *state;
    char up_a[128], empty[300];
    snprintf(up_a, sizeof up_a, "alpha=%s", f->inst_hp[0]);
    write_empty(f, empty, sizeof empty);
    start_mock(f, "--relay", "--upstream", up_a, empty, NULL);
    for (int total = 122; total <= 127; total++) {
        result r = call_with_headers(f, total);
        if (r.status != 0)
            fail_msg("%d transport headers: status %d code %u: %s", total, r.status,
                     r.error_code, r.message);
        assert_string_equal(r.arg3, "many");
    }
    result r = call_with_headers(f, 128);
    assert_int_equal(r.status, TCH_EREMOTE);
    assert_int_equal(r.error_code, TCH_PCODE_BAD_REQUEST);
    assert_string_equal(r.message, "tchannel-mock: cannot relay to alpha: too many transport "
                                   "headers to relay: the call has 128, and relayed it would "
                                   "carry 129 (the relay adds its tch-mock-hop mark), more "
                                   "than the 128 a TChannel peer accepts (the Node peer refuses "
                                   "more): send at most 127");
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 10000), 0);
}

/* Recording through to an upstream applies the same rule, with the same
 * BadRequest (a Declined would be retried by the caller, to no end). */
static void recording_through_has_the_same_header_limit(void **state) {
    fx *f = *state;
    char empty[300];
    write_empty(f, empty, sizeof empty);
    start_mock(f, "--mode", "all", "--upstream", f->inst_hp[0], empty, NULL);
    result ok = call_with_headers(f, 127);
    if (ok.status != 0)
        fail_msg("127 transport headers: status %d: %s", ok.status, ok.message);
    result r = call_with_headers(f, 128);
    assert_int_equal(r.status, TCH_EREMOTE);
    assert_int_equal(r.error_code, TCH_PCODE_BAD_REQUEST);
    assert_non_null(strstr(r.message, "send at most 127"));
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 10000), 0);
}

/* --upstream SERVICE=HOST:PORT and --upstream-router are checked. */
static void bad_command_lines(void **state) {
    (void)state;
    const char *cases[][3] = {{"--upstream", "=127.0.0.1:1", "SERVICE=HOST:PORT"},
                              {"--upstream", "alpha=nope", "invalid host:port \"nope\""},
                              {"--upstream-router", "127.0.0.1:0", "port"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "'%s' %s '%s' x.yaml 2>&1", TCH_MOCK_BIN, cases[i][0],
                 cases[i][1]);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        char out[1024] = "";
        size_t n = fread(out, 1, sizeof out - 1, p);
        out[n] = 0;
        assert_int_equal(WEXITSTATUS(pclose(p)), 2);
        assert_non_null(strstr(out, cases[i][2]));
    }
}

/* An instance or router given as the mock's own listening address (any
 * local address with its port) is refused at start-up, naming it. */
static void own_address_is_refused(void **state) {
    (void)state;
    int p = free_port();
    char empty[] = "/tmp/tch-mock-self-XXXXXX.yaml";
    int fd = mkstemps(empty, 5);
    assert_true(fd >= 0);
    static const char text[] = "version: 1\ninteractions: []\n";
    assert_true(write(fd, text, sizeof text - 1) == (ssize_t)(sizeof text - 1));
    close(fd);
    const char *cases[][3] = {{"--relay --upstream-router", "127.0.0.1", "--upstream-router"},
                              {"--relay --upstream", "alpha=localhost", "--upstream alpha="},
                              {"--mode once --upstream", "0.0.0.0", "--upstream 0.0.0.0"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "'%s' --port %d %s '%s:%d' '%s' 2>&1 </dev/null",
                 TCH_MOCK_BIN, p, cases[i][0], cases[i][1], p, empty);
        FILE *pp = popen(cmd, "r");
        assert_non_null(pp);
        char out[1024] = "";
        size_t n = fread(out, 1, sizeof out - 1, pp);
        out[n] = 0;
        assert_int_not_equal(WEXITSTATUS(pclose(pp)), 0);
        assert_non_null(strstr(out, cases[i][2]));
        assert_non_null(strstr(out, "this mock's own listening address"));
    }
    unlink(empty);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(records_each_service_then_replays, setup, teardown),
        cmocka_unit_test_setup_teardown(relays_in_mode_none_only_when_asked, setup, teardown),
        cmocka_unit_test_setup_teardown(advertised_instance_then_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(instances_share_calls_and_survive_one_gone, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(router_routes_by_service_name, setup, teardown),
        cmocka_unit_test_setup_teardown(routes_by_routing_delegate, setup, teardown),
        cmocka_unit_test_setup_teardown(relay_loop_is_declined, setup, teardown),
        cmocka_unit_test_setup_teardown(ads_over_the_caps_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(relayed_hop_span_is_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(caller_retry_flags_are_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(the_header_limit_is_the_peers, setup, teardown),
        cmocka_unit_test_setup_teardown(recording_through_has_the_same_header_limit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(many_transport_headers_are_relayed, setup, teardown),
        cmocka_unit_test(bad_command_lines),
        cmocka_unit_test(own_address_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
