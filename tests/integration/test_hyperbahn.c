/* Hyperbahn advertising against a fake router on 127.0.0.1 (a channel
 * serving json hyperbahn/ad that records what it got), and against a router
 * written with the Node peer's own json scheme (tests/tools/hyperbahn_router.js)
 * when node and the installed peer are available. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <tchannel/channel.h>
#include <tchannel/hyperbahn.h>
#include <tchannel/json.h>

#include <event2/event.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"
#include "ports.h"

#define MAX_ADS 16

/* ---- the fake router ---------------------------------------------------- */

typedef struct router {
    tch_channel *ch;
    const char *hp;
    int ads;                 /* ad calls received */
    uint64_t at_ms[MAX_ADS]; /* when each arrived */
    int fail_app;            /* answer this many ads with code 1 first */
    int fail_frame;          /* then this many with an Unexpected error frame */
    int hold;                /* keep the next ad unanswered (in held) */
    tch_inbound *held;
    char cn[64], as[16];
    json_t *body;            /* the last ad body */
    int routed;              /* calls the fallback saw */
    char routed_service[64];
} router;

typedef struct fixture {
    struct event_base *base;
    router r;
    tch_channel *client;
    tch_hyperbahn *hb;
    int done, status, calls;
    char message[1024];
    char tmpfile[64];
} fixture;

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void copy_header(tch_inbound *in, const char *key, char *out, size_t cap) {
    tch_slice v = {0};
    out[0] = '\0';
    if (tch_inbound_header(in, key, &v))
        snprintf(out, cap, "%.*s", (int)v.len, (const char *)v.ptr);
}

static void on_ad(tch_inbound *in, const json_t *headers, const json_t *body, void *ud) {
    router *r = ud;
    (void)headers;
    if (r->ads < MAX_ADS)
        r->at_ms[r->ads] = now_ms();
    r->ads++;
    copy_header(in, "cn", r->cn, sizeof r->cn);
    copy_header(in, "as", r->as, sizeof r->as);
    json_decref(r->body);
    r->body = json_deep_copy(body);
    if (r->hold) {
        r->hold = 0;
        r->held = in;
        return;
    }
    if (r->fail_app > 0) {
        r->fail_app--;
        json_t *e = json_pack("{s:s}", "message", "not now");
        tch_json_respond(in, 1, NULL, e);
        json_decref(e);
        return;
    }
    if (r->fail_frame > 0) {
        r->fail_frame--;
        tch_inbound_respond_error(in, TCH_PCODE_UNEXPECTED, "router trouble");
        return;
    }
    json_t *ok = json_pack("{s:i}", "connectionCount", 1);
    tch_json_respond(in, 0, NULL, ok);
    json_decref(ok);
}

/* A router forwards what it does not serve itself; here it only records. */
static void on_routed(tch_inbound *in, void *ud) {
    router *r = ud;
    r->routed++;
    tch_slice s = tch_inbound_service(in);
    snprintf(r->routed_service, sizeof r->routed_service, "%.*s", (int)s.len, (const char *)s.ptr);
    tch_inbound_respond(in, 0, tch_slice_cstr(""), tch_slice_cstr("routed"));
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->base = event_base_new();
    tch_channel_new(f->base, "hyperbahn", NULL, &f->r.ch, NULL);
    assert_int_equal(tch_channel_listen(f->r.ch, NULL, NULL), 0);
    f->r.hp = tch_channel_host_port(f->r.ch);
    assert_int_equal(tch_json_register(f->r.ch, "hyperbahn", "ad", on_ad, &f->r), 0);
    tch_channel_set_fallback(f->r.ch, on_routed, &f->r);
    tch_channel_new(f->base, "svc-a", NULL, &f->client, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    tch_hyperbahn_free(f->hb);
    if (f->r.held)
        tch_inbound_respond_error(f->r.held, TCH_PCODE_UNEXPECTED, "teardown");
    tch_channel_free(f->client);
    tch_channel_free(f->r.ch);
    json_decref(f->r.body);
    if (f->tmpfile[0])
        unlink(f->tmpfile);
    event_base_free(f->base);
    free(f);
    return 0;
}

static void on_advertised(int status, const char *message, void *ud) {
    fixture *f = ud;
    f->calls++;
    f->done = 1;
    f->status = status;
    snprintf(f->message, sizeof f->message, "%s", message ? message : "");
}

static int start(fixture *f, tch_hyperbahn_options *o, tch_error *err) {
    const char *routers[1] = {f->r.hp};
    if (!o->routers && !o->router_file) {
        o->routers = routers;
        o->nrouters = 1;
    }
    int rc = tch_hyperbahn_advertise(f->client, o, on_advertised, f, &f->hb, err);
    if (o->routers == routers)
        o->routers = NULL; /* do not leave a dangling pointer behind */
    return rc;
}

/* ---- tests ---------------------------------------------------------------- */

static void advertise_sends_what_node_sends(void **state) {
    fixture *f = *state;
    tch_hyperbahn_options o = {0};
    assert_false(tch_channel_is_listening(f->client));
    assert_int_equal(start(f, &o, NULL), 0);
    assert_true(tch_channel_is_listening(f->client)); /* the ad needs our host:port */
    assert_non_null(tch_channel_host_port(f->client));
    assert_true(tch_test_run_until(f->base, &f->done, 3000));
    assert_int_equal(f->status, 0);
    assert_int_equal(f->calls, 1);
    assert_int_equal(f->r.ads, 1);
    assert_string_equal(f->r.cn, "svc-a");
    assert_string_equal(f->r.as, "json");
    json_t *want = json_pack("{s:[{s:s,s:i}]}", "services", "serviceName", "svc-a", "cost", 0);
    assert_true(json_equal(f->r.body, want));
    json_decref(want);
}

static void advertises_every_service_given(void **state) {
    fixture *f = *state;
    const char *services[2] = {"kv", "kv-admin"};
    tch_hyperbahn_options o = {.services = services, .nservices = 2};
    assert_int_equal(start(f, &o, NULL), 0);
    assert_true(tch_test_run_until(f->base, &f->done, 3000));
    assert_int_equal(f->status, 0);
    json_t *want = json_pack("{s:[{s:s,s:i},{s:s,s:i}]}", "services", "serviceName", "kv",
                             "cost", 0, "serviceName", "kv-admin", "cost", 0);
    assert_true(json_equal(f->r.body, want));
    json_decref(want);
    assert_string_equal(f->r.cn, "svc-a"); /* the caller is the channel */
}

static void keeps_listening_where_it_already_listens(void **state) {
    fixture *f = *state;
    assert_int_equal(tch_channel_listen(f->client, "127.0.0.1:0", NULL), 0);
    char before[64];
    snprintf(before, sizeof before, "%s", tch_channel_host_port(f->client));
    tch_hyperbahn_options o = {0};
    assert_int_equal(start(f, &o, NULL), 0);
    assert_string_equal(tch_channel_host_port(f->client), before);
    assert_true(tch_test_run_until(f->base, &f->done, 3000));
    assert_int_equal(f->status, 0);
}

static void re_advertises_on_the_interval(void **state) {
    fixture *f = *state;
    tch_hyperbahn_options o = {.interval_ms = 50};
    assert_int_equal(start(f, &o, NULL), 0);
    assert_true(tch_test_run_until_count(f->base, &f->r.ads, 4, 3000));
    assert_int_equal(f->calls, 1); /* the callback is for the first ad only */
    for (int i = 1; i < 4; i++) {
        uint64_t gap = f->r.at_ms[i] - f->r.at_ms[i - 1];
        assert_true(gap >= 20);  /* interval/2 at least (Node's jitter), minus clock slack */
        assert_true(gap <= 500); /* 3*interval/2 at most, plus slack */
    }
}

static void backs_off_after_errors_then_succeeds(void **state) {
    fixture *f = *state;
    f->r.fail_app = 1;   /* ok: false */
    f->r.fail_frame = 1; /* an error frame */
    tch_hyperbahn_options o = {.interval_ms = 60000};
    assert_int_equal(start(f, &o, NULL), 0);
    assert_true(tch_test_run_until(f->base, &f->done, 5000));
    assert_int_equal(f->status, 0);
    assert_int_equal(f->r.ads, 3);
    /* Node's error retry times: 200 ms after the first failure, then 1000 ms */
    uint64_t gap1 = f->r.at_ms[1] - f->r.at_ms[0];
    uint64_t gap2 = f->r.at_ms[2] - f->r.at_ms[1];
    assert_true(gap1 >= 190 && gap1 < 900);
    assert_true(gap2 >= 980 && gap2 < 2500);
}

/* Two routers that both answer Busy: an ad's one retry goes to the other
 * router, as Node's does (it skips routers already tried). */
typedef struct busy_routers {
    int hits[2], total;
    uint64_t at_ms[2]; /* when the first two ads arrived */
} busy_routers;

typedef struct busy_router {
    busy_routers *all;
    int which;
} busy_router;

static void busy_ad(tch_inbound *in, void *ud) {
    busy_router *r = ud;
    r->all->hits[r->which]++;
    if (r->all->total < 2)
        r->all->at_ms[r->all->total] = now_ms();
    r->all->total++;
    tch_inbound_respond_error(in, TCH_PCODE_BUSY, "router busy");
}

static void the_retry_goes_to_the_other_router(void **state) {
    fixture *f = *state;
    busy_routers b;
    memset(&b, 0, sizeof b);
    busy_router ud[2] = {{&b, 0}, {&b, 1}};
    tch_channel *r[2];
    const char *hps[2];
    for (int i = 0; i < 2; i++) {
        tch_channel_new(f->base, "hyperbahn", NULL, &r[i], NULL);
        assert_int_equal(tch_channel_listen(r[i], NULL, NULL), 0);
        tch_channel_register(r[i], "hyperbahn", "ad", busy_ad, &ud[i]);
        hps[i] = tch_channel_host_port(r[i]);
    }
    tch_hyperbahn_options o = {.routers = hps, .nrouters = 2};
    assert_int_equal(start(f, &o, NULL), 0);
    /* the first ad and its retry, at once: the next round (also to the other
     * router) would come only 200 ms after the failure */
    assert_true(tch_test_run_until_count(f->base, &b.total, 2, 3000));
    assert_int_equal(b.hits[0], 1);
    assert_int_equal(b.hits[1], 1);
    assert_true(b.at_ms[1] - b.at_ms[0] < 190);
    tch_hyperbahn_free(f->hb);
    f->hb = NULL;
    for (int i = 0; i < 2; i++)
        tch_channel_free(r[i]);
}

static void dead_port(char *hp, size_t cap) {
    assert_int_equal(tch_test_dead_port(hp, cap), 0);
}

static void first_advertise_times_out_without_routers(void **state) {
    fixture *f = *state;
    char hp[64];
    dead_port(hp, sizeof hp);
    const char *routers[1] = {hp};
    tch_hyperbahn_options o = {.routers = routers, .nrouters = 1, .first_timeout_ms = 300};
    uint64_t t0 = now_ms();
    assert_int_equal(start(f, &o, NULL), 0);
    assert_true(tch_test_run_until(f->base, &f->done, 3000));
    uint64_t took = now_ms() - t0;
    assert_int_equal(f->status, TCH_ETIMEOUT);
    assert_true(took >= 290 && took < 1500);
    assert_non_null(strstr(f->message, "timed out after 300 ms"));
    assert_non_null(strstr(f->message, hp)); /* the last error names the router */
    assert_non_null(strstr(f->message, "svc-a"));
}

static void routers_and_router_file_together_is_einval(void **state) {
    fixture *f = *state;
    const char *routers[1] = {f->r.hp};
    tch_hyperbahn_options o = {.routers = routers, .nrouters = 1, .router_file = "/nonexistent"};
    tch_error err;
    assert_int_equal(tch_hyperbahn_advertise(f->client, &o, on_advertised, f, &f->hb, &err),
                     TCH_EINVAL);
    assert_null(f->hb);
    assert_non_null(strstr(err.msg, "not both"));
    tch_hyperbahn_options none = {0};
    assert_int_equal(tch_hyperbahn_advertise(f->client, &none, on_advertised, f, &f->hb, &err),
                     TCH_EINVAL);
    assert_non_null(strstr(err.msg, "no routers"));
    assert_false(tch_channel_is_listening(f->client)); /* nothing was started */
}

static void write_file(fixture *f, const char *text) {
    snprintf(f->tmpfile, sizeof f->tmpfile, "/tmp/tch-hb-routers-XXXXXX");
    int fd = mkstemp(f->tmpfile);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void router_file_is_read(void **state) {
    fixture *f = *state;
    char text[128];
    snprintf(text, sizeof text, "[\"%s\"]\n", f->r.hp);
    write_file(f, text);
    tch_hyperbahn_options o = {.router_file = f->tmpfile};
    assert_int_equal(start(f, &o, NULL), 0);
    assert_true(tch_test_run_until(f->base, &f->done, 3000));
    assert_int_equal(f->status, 0);
    assert_int_equal(f->r.ads, 1);
}

static void bad_router_files_are_named(void **state) {
    fixture *f = *state;
    tch_error err;
    tch_hyperbahn_options o = {.router_file = "/nonexistent/routers.json"};
    assert_int_equal(start(f, &o, &err), TCH_ENOTFOUND);
    assert_non_null(strstr(err.msg, "/nonexistent/routers.json"));

    write_file(f, "[\"127.0.0.1:1\",");
    o.router_file = f->tmpfile;
    assert_int_equal(start(f, &o, &err), TCH_EPARSE);
    assert_non_null(strstr(err.msg, f->tmpfile));
    assert_non_null(strstr(err.msg, "line 1"));
    unlink(f->tmpfile);

    write_file(f, "{\"routers\": []}");
    assert_int_equal(start(f, &o, &err), TCH_EPARSE);
    assert_non_null(strstr(err.msg, "JSON list"));
    unlink(f->tmpfile);

    write_file(f, "[\"127.0.0.1:1\", 7]");
    assert_int_equal(start(f, &o, &err), TCH_EPARSE);
    assert_non_null(strstr(err.msg, "entry 1"));
    unlink(f->tmpfile);

    write_file(f, "[\"no-port-here\"]");
    assert_int_equal(start(f, &o, &err), TCH_EINVAL);
    assert_non_null(strstr(err.msg, "entry 0"));
    unlink(f->tmpfile);

    write_file(f, "[]");
    assert_int_equal(start(f, &o, &err), TCH_EINVAL);
    assert_non_null(strstr(err.msg, "empty"));
    assert_null(f->hb);
}

static void on_call(const tch_response *res, void *ud) {
    int *status = ud;
    *status = res->status == 0 && res->code == 0 ? 1 : -1;
}

static void calls_without_host_port_go_through_the_router(void **state) {
    fixture *f = *state;
    tch_hyperbahn_options o = {0};
    assert_int_equal(start(f, &o, NULL), 0);
    assert_true(tch_test_run_until(f->base, &f->done, 3000));
    int got = 0;
    tch_call_opts c = {.service = "other-service", .endpoint = tch_slice_cstr("hello"),
                       .timeout_ms = 2000};
    assert_int_equal(tch_channel_call(f->client, &c, on_call, &got, NULL), 0);
    assert_true(tch_test_run_until(f->base, &got, 3000));
    assert_int_equal(got, 1);
    assert_int_equal(f->r.routed, 1);
    assert_string_equal(f->r.routed_service, "other-service");
}

/* Freed with an ad in flight: the late answer must not reach freed memory
 * (ASan checks) nor the callback. */
static void free_with_ad_in_flight_is_harmless(void **state) {
    fixture *f = *state;
    f->r.hold = 1;
    tch_hyperbahn_options o = {0};
    assert_int_equal(start(f, &o, NULL), 0);
    assert_true(tch_test_run_until(f->base, &f->r.ads, 3000));
    tch_hyperbahn_free(f->hb);
    f->hb = NULL;
    json_t *ok = json_pack("{s:i}", "connectionCount", 1);
    tch_json_respond(f->r.held, 0, NULL, ok);
    json_decref(ok);
    f->r.held = NULL;
    int never = 0;
    tch_test_run_until(f->base, &never, 200); /* let the answer arrive */
    assert_int_equal(f->calls, 0);
}

static void free_from_callback(int status, const char *message, void *ud) {
    fixture *f = ud;
    on_advertised(status, message, ud);
    tch_hyperbahn_free(f->hb);
    f->hb = NULL;
}

static void free_from_the_callback_is_allowed(void **state) {
    fixture *f = *state;
    char hp[64];
    dead_port(hp, sizeof hp);
    const char *routers[1] = {hp};
    tch_hyperbahn_options o = {.routers = routers, .nrouters = 1, .first_timeout_ms = 100};
    assert_int_equal(tch_hyperbahn_advertise(f->client, &o, free_from_callback, f, &f->hb, NULL), 0);
    assert_true(tch_test_run_until(f->base, &f->done, 3000));
    assert_int_equal(f->status, TCH_ETIMEOUT);
    int never = 0;
    tch_test_run_until(f->base, &never, 300); /* no timer may fire into freed memory */
    assert_int_equal(f->calls, 1);
}

/* ---- against a router written with the Node peer ---------------------------- */

typedef struct node_router {
    pid_t pid;
    int out, in; /* its stdout (ours to read), its stdin (closing it stops it) */
    char buf[8192];
    size_t len;
    int eof;
} node_router;

static int node_available(char *modules, size_t cap) {
    snprintf(modules, cap, "%s/tests/interop/node/node_modules", TCH_SOURCE_DIR);
    char probe[600];
    snprintf(probe, sizeof probe, "%s/tchannel/as/json.js", modules);
    return access(probe, R_OK) == 0 && system("node --version >/dev/null 2>&1") == 0;
}

static void node_router_start(node_router *nr, const char *modules) {
    int out[2], in[2];
    assert_int_equal(pipe(out), 0);
    assert_int_equal(pipe(in), 0);
    nr->pid = fork();
    assert_true(nr->pid >= 0);
    if (nr->pid == 0) {
        dup2(out[1], 1);
        dup2(in[0], 0);
        close(out[0]), close(out[1]), close(in[0]), close(in[1]);
        char script[600];
        snprintf(script, sizeof script, "%s/tests/tools/hyperbahn_router.js", TCH_SOURCE_DIR);
        execlp("node", "node", script, modules, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    close(in[0]);
    nr->out = out[0];
    nr->in = in[1];
    fcntl(nr->out, F_SETFL, fcntl(nr->out, F_GETFL) | O_NONBLOCK);
}

static void on_node_output(evutil_socket_t fd, short what, void *arg) {
    node_router *nr = arg;
    (void)what;
    ssize_t n = read(fd, nr->buf + nr->len, sizeof nr->buf - 1 - nr->len);
    if (n > 0)
        nr->len += (size_t)n;
    else if (n == 0)
        nr->eof = 1;
    nr->buf[nr->len] = '\0';
}

/* Runs the loop until the router printed a line starting with prefix (or the
 * bound); copies the rest of that line to out and consumes the buffer up to
 * it. Returns 1 when found. */
static int node_wait_line(struct event_base *base, node_router *nr, const char *prefix,
                          char *out, size_t cap, int ms) {
    struct event *ev = event_new(base, nr->out, EV_READ | EV_PERSIST, on_node_output, nr);
    event_add(ev, NULL);
    uint64_t until = now_ms() + (uint64_t)ms;
    int found = 0;
    while (!found && now_ms() < until) {
        char *line = nr->buf, *nl;
        while (!found && (nl = strchr(line, '\n')) != NULL) {
            if (strncmp(line, prefix, strlen(prefix)) == 0) {
                snprintf(out, cap, "%.*s", (int)(nl - line - (ptrdiff_t)strlen(prefix)),
                         line + strlen(prefix));
                found = 1;
            }
            line = nl + 1;
        }
        if (found || line != nr->buf) { /* drop the lines looked at */
            nr->len -= (size_t)(line - nr->buf);
            memmove(nr->buf, line, nr->len + 1);
        }
        if (!found && nr->eof)
            break;
        if (!found) {
            int tick = 0;
            tch_test_run_until(base, &tick, 20);
        }
    }
    event_free(ev);
    return found;
}

static void node_router_stop(node_router *nr) {
    close(nr->in);
    kill(nr->pid, SIGTERM);
    waitpid(nr->pid, NULL, 0);
    close(nr->out);
}

static void node_router_parses_our_ad(void **state) {
    fixture *f = *state;
    char modules[512];
    if (!node_available(modules, sizeof modules)) {
        print_message("node or the Node peer (tests/interop/node/install.sh) missing: skipped\n");
        skip();
    }
    node_router nr = {0};
    node_router_start(&nr, modules);
    char router_hp[64];
    int listening = node_wait_line(f->base, &nr, "listening ", router_hp, sizeof router_hp, 20000);
    if (!listening)
        node_router_stop(&nr);
    assert_true(listening);
    const char *routers[1] = {router_hp};
    tch_hyperbahn_options o = {.routers = routers, .nrouters = 1, .first_timeout_ms = 10000};
    assert_int_equal(start(f, &o, NULL), 0);
    int ok = tch_test_run_until(f->base, &f->done, 15000);
    char line[4096];
    int got = node_wait_line(f->base, &nr, "ad ", line, sizeof line, 5000);
    json_t *seen = got ? json_loads(line, 0, NULL) : NULL;
    node_router_stop(&nr);
    assert_true(ok);
    assert_int_equal(f->status, 0); /* Node's json scheme took it and answered ok */
    assert_non_null(seen);
    assert_true(json_is_true(json_object_get(seen, "valid")));
    assert_string_equal(json_string_value(json_object_get(seen, "cn")), "svc-a");
    assert_string_equal(json_string_value(json_object_get(seen, "as")), "json");
    json_t *want = json_pack("{s:[{s:s,s:i}]}", "services", "serviceName", "svc-a", "cost", 0);
    assert_true(json_equal(json_object_get(seen, "body"), want));
    /* the router learns our listening address from the init handshake */
    assert_string_equal(json_string_value(json_object_get(seen, "callerHostPort")),
                        tch_channel_host_port(f->client));
    json_decref(want);
    json_decref(seen);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(advertise_sends_what_node_sends, setup, teardown),
        cmocka_unit_test_setup_teardown(advertises_every_service_given, setup, teardown),
        cmocka_unit_test_setup_teardown(keeps_listening_where_it_already_listens, setup, teardown),
        cmocka_unit_test_setup_teardown(re_advertises_on_the_interval, setup, teardown),
        cmocka_unit_test_setup_teardown(backs_off_after_errors_then_succeeds, setup, teardown),
        cmocka_unit_test_setup_teardown(the_retry_goes_to_the_other_router, setup, teardown),
        cmocka_unit_test_setup_teardown(first_advertise_times_out_without_routers, setup, teardown),
        cmocka_unit_test_setup_teardown(routers_and_router_file_together_is_einval, setup, teardown),
        cmocka_unit_test_setup_teardown(router_file_is_read, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_router_files_are_named, setup, teardown),
        cmocka_unit_test_setup_teardown(calls_without_host_port_go_through_the_router, setup, teardown),
        cmocka_unit_test_setup_teardown(free_with_ad_in_flight_is_harmless, setup, teardown),
        cmocka_unit_test_setup_teardown(free_from_the_callback_is_allowed, setup, teardown),
        cmocka_unit_test_setup_teardown(node_router_parses_our_ad, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
