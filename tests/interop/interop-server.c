/* interop-server: our TChannel server for the interop tests and the benchmarks.
 *
 *   interop-server [--host H] [--port P] [--service NAME]
 *
 * Listens (default 127.0.0.1, an ephemeral port), prints `listening HOST:PORT`
 * as its first stdout line, then serves until SIGINT or SIGTERM and exits 0.
 * Bad command line: a usage message naming the bad argument, exit 2.
 *
 * Endpoints are a table per arg scheme (raw_endpoints below); json and thrift
 * endpoints will get their own tables and a line each in register_all().
 *   raw echo  answers arg2 and arg3 unchanged
 *   raw big   arg3 is a decimal N; answers N bytes, byte i = i % 251
 *   raw slow  arg3 is N ms; answers "late" after N ms (answered later, from a
 *             libevent timer: exercises handlers that keep the inbound)
 *   raw busy  answers with a Busy error frame
 */
#include <tchannel/channel.h>
#include <tchannel/common.h>

#include <event2/event.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BIG_MAX ((uint64_t)64 * 1024 * 1024) /* the channel's default max_arg_size */
#define SLOW_MAX_MS 600000u

struct server;

/* A `slow` call waiting for its timer. Kept on a list so shutdown can answer
 * the ones still pending (every inbound must be answered exactly once). */
struct slow_call {
    struct server *srv;
    tch_inbound *in;
    struct event *timer;
    struct slow_call *prev, *next;
};

struct server {
    struct event_base *base;
    tch_channel *ch;
    const char *service;
    struct slow_call *slow_head;
};

typedef struct endpoint {
    const char *name;
    tch_handler_fn fn;
} endpoint;

/* Parses a decimal slice (no sign, no spaces) into *out; 0 or -1. */
static int parse_decimal(tch_slice s, uint64_t max, uint64_t *out) {
    uint64_t v = 0;
    if (s.len == 0 || s.len > 20)
        return -1;
    for (size_t i = 0; i < s.len; i++) {
        if (s.ptr[i] < '0' || s.ptr[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s.ptr[i] - '0');
        if (v > max)
            return -1;
    }
    *out = v;
    return 0;
}

/* ---- raw endpoints --------------------------------------------------- */

static void on_echo(tch_inbound *in, void *ud) {
    (void)ud;
    (void)tch_inbound_respond(in, 0, tch_inbound_arg2(in), tch_inbound_arg3(in));
}

static void on_big(tch_inbound *in, void *ud) {
    (void)ud;
    uint64_t n;
    if (parse_decimal(tch_inbound_arg3(in), BIG_MAX, &n) != 0) {
        (void)tch_inbound_respond_error(in, TCH_PCODE_BAD_REQUEST,
                                        "big: arg3 must be a decimal byte count <= 67108864");
        return;
    }
    uint8_t *buf = malloc(n ? (size_t)n : 1);
    if (!buf) {
        (void)tch_inbound_respond_error(in, TCH_PCODE_UNEXPECTED, "big: out of memory");
        return;
    }
    for (size_t i = 0; i < (size_t)n; i++)
        buf[i] = (uint8_t)(i % 251);
    (void)tch_inbound_respond(in, 0, TCH_SLICE_NULL, tch_slice_of(buf, (size_t)n));
    free(buf);
}

static void slow_unlink(struct slow_call *sc) {
    if (sc->prev)
        sc->prev->next = sc->next;
    else
        sc->srv->slow_head = sc->next;
    if (sc->next)
        sc->next->prev = sc->prev;
}

static void slow_fire(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    struct slow_call *sc = arg;
    slow_unlink(sc);
    /* TCH_ECLOSED when the caller gave up meanwhile: the answer is dropped. */
    (void)tch_inbound_respond(sc->in, 0, TCH_SLICE_NULL, tch_slice_cstr("late"));
    event_free(sc->timer);
    free(sc);
}

static void on_slow(tch_inbound *in, void *ud) {
    struct server *srv = ud;
    uint64_t ms;
    if (parse_decimal(tch_inbound_arg3(in), SLOW_MAX_MS, &ms) != 0) {
        (void)tch_inbound_respond_error(in, TCH_PCODE_BAD_REQUEST,
                                        "slow: arg3 must be a decimal number of ms <= 600000");
        return;
    }
    struct slow_call *sc = calloc(1, sizeof *sc);
    if (sc)
        sc->timer = evtimer_new(srv->base, slow_fire, sc);
    if (!sc || !sc->timer) {
        free(sc);
        (void)tch_inbound_respond_error(in, TCH_PCODE_UNEXPECTED, "slow: out of memory");
        return;
    }
    sc->srv = srv;
    sc->in = in;
    sc->next = srv->slow_head;
    if (sc->next)
        sc->next->prev = sc;
    srv->slow_head = sc;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(sc->timer, &tv);
}

static void on_busy(tch_inbound *in, void *ud) {
    (void)ud;
    (void)tch_inbound_respond_error(in, TCH_PCODE_BUSY, "keyvalue-server is busy (on purpose)");
}

static const endpoint raw_endpoints[] = {
    {"echo", on_echo},
    {"big", on_big},
    {"slow", on_slow},
    {"busy", on_busy},
};

/* ---- setup --------------------------------------------------------------- */

static int register_table(struct server *srv, const endpoint *eps, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int rc = tch_channel_register(srv->ch, srv->service, eps[i].name, eps[i].fn, srv);
        if (rc != 0) {
            fprintf(stderr, "interop-server: register %s: %s\n", eps[i].name, tch_strerror(rc));
            return rc;
        }
    }
    return 0;
}

/* One line per arg scheme; json and thrift tables go here. */
static int register_all(struct server *srv) {
    return register_table(srv, raw_endpoints, sizeof raw_endpoints / sizeof raw_endpoints[0]);
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    (void)sig;
    (void)what;
    event_base_loopbreak(arg);
}

static int usage(const char *bad, const char *why) {
    fprintf(stderr,
            "interop-server: %s argument '%s'\n"
            "usage: interop-server [--host H] [--port P] [--service NAME]\n"
            "  defaults: --host 127.0.0.1 --port 0 (ephemeral) --service keyvalue-server\n",
            why, bad);
    return 2;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    const char *service = "keyvalue-server";
    uint64_t port = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int known = !strcmp(a, "--host") || !strcmp(a, "--port") || !strcmp(a, "--service");
        if (!known)
            return usage(a, "unknown");
        if (i + 1 >= argc)
            return usage(a, "missing value for");
        const char *v = argv[++i];
        if (!strcmp(a, "--host")) {
            if (!*v)
                return usage(v, "empty --host");
            host = v;
        } else if (!strcmp(a, "--port")) {
            if (parse_decimal(tch_slice_cstr(v), 65535, &port) != 0)
                return usage(v, "bad --port");
        } else {
            if (!*v)
                return usage(v, "empty --service");
            service = v;
        }
    }

    /* Writes to a caller that went away must not kill us. */
    signal(SIGPIPE, SIG_IGN);

    struct server srv = {0};
    srv.service = service;
    srv.base = event_base_new();
    if (!srv.base) {
        fprintf(stderr, "interop-server: event_base_new failed\n");
        return 1;
    }
    srv.ch = tch_channel_new(srv.base, service, NULL);
    if (!srv.ch) {
        fprintf(stderr, "interop-server: tch_channel_new(%s) failed\n", service);
        return 1;
    }
    if (register_all(&srv) != 0)
        return 1;

    char host_port[512];
    int n = strchr(host, ':') ? snprintf(host_port, sizeof host_port, "[%s]:%u", host, (unsigned)port)
                              : snprintf(host_port, sizeof host_port, "%s:%u", host, (unsigned)port);
    if (n < 0 || (size_t)n >= sizeof host_port)
        return usage(host, "too long");
    tch_error err = {0};
    if (tch_channel_listen(srv.ch, host_port, &err) != 0) {
        fprintf(stderr, "interop-server: listen %s: %s\n", host_port, err.msg);
        return 1;
    }

    struct event *sigint = evsignal_new(srv.base, SIGINT, on_signal, srv.base);
    struct event *sigterm = evsignal_new(srv.base, SIGTERM, on_signal, srv.base);
    if (!sigint || !sigterm || evsignal_add(sigint, NULL) || evsignal_add(sigterm, NULL)) {
        fprintf(stderr, "interop-server: cannot install signal handlers\n");
        return 1;
    }

    printf("listening %s\n", tch_channel_host_port(srv.ch));
    fflush(stdout);

    int rc = event_base_dispatch(srv.base);

    /* Answer what is still waiting, then tear down. */
    while (srv.slow_head) {
        struct slow_call *sc = srv.slow_head;
        slow_unlink(sc);
        (void)tch_inbound_respond_error(sc->in, TCH_PCODE_DECLINED, "server shutting down");
        event_free(sc->timer);
        free(sc);
    }
    event_free(sigint);
    event_free(sigterm);
    tch_channel_free(srv.ch);
    event_base_free(srv.base);
    if (rc < 0) {
        fprintf(stderr, "interop-server: event loop failed\n");
        return 1;
    }
    return 0;
}
