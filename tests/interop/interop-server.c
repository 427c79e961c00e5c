/* interop-server: our TChannel server for the interop tests and the benchmarks.
 *
 *   interop-server [--host H] [--port P] [--service NAME] [--idl PATH] | --help
 *
 * Listens (default 127.0.0.1, an ephemeral port), prints `listening HOST:PORT`
 * as its first stdout line, then serves until SIGINT or SIGTERM and exits 0.
 * Bad command line: a usage message naming the bad argument, exit 2.
 *
 * Endpoints are a table per arg scheme (raw_endpoints, json_endpoints,
 * thrift_methods below), each registered by register_all().
 *   raw echo  answers arg2 and arg3 unchanged
 *   raw big   arg3 is a decimal N; answers N bytes, byte i = i % 251
 *   raw slow  arg3 is N ms; answers "late" after N ms (answered later, from a
 *             libevent timer: exercises handlers that keep the inbound)
 *   raw busy  answers with a Busy error frame
 *   json json_echo   code 0; response headers = the request's headers (an
 *                    object, {} when none), body = {"headers": <request
 *                    headers>, "body": <request body>}
 *   json json_error  code 1 (application error); no headers; body
 *                    {"message": "json_error: failed on purpose"}
 *   thrift KeyValue::setValue / KeyValue::getValue (IDL: --idl, default the
 *                    source tree's cassettes/keyvalue.thrift, compiled in as
 *                    TCH_KV_IDL) over an in-memory map; getValue of a missing
 *                    key answers the declared NotFoundError (result field
 *                    `notFound`, call-res code 1) with its key set. Both echo
 *                    the request's application headers (arg2) on the answer.
 */
#include <tchannel/channel.h>
#include <tchannel/common.h>
#include <tchannel/json.h>
#include <tchannel/thrift.h>
#include <tchannel/thrift_scheme.h>

#include <event2/event.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BIG_MAX ((uint64_t)64 * 1024 * 1024) /* the channel's default max_arg_size */
#define SLOW_MAX_MS 600000u
#define JSON_ERROR_MESSAGE "json_error: failed on purpose"

#ifndef TCH_KV_IDL
#define TCH_KV_IDL "cassettes/keyvalue.thrift"
#endif

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
    tch_thrift_idl *idl;
    struct kv_entry *kv_head; /* the KeyValue store */
};

/* One KeyValue entry (keys and values are bytes: Thrift strings). */
struct kv_entry {
    tch_buf key, value;
    struct kv_entry *next;
};

typedef struct endpoint {
    const char *name;
    tch_handler_cb fn;
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

/* ---- json endpoints -------------------------------------------------- */

static void on_json_echo(tch_inbound *in, const json_t *headers, const json_t *body, void *ud) {
    (void)ud;
    json_t *out = json_pack("{s:O,s:O}", "headers", (json_t *)headers, "body", (json_t *)body);
    if (!out) {
        (void)tch_inbound_respond_error(in, TCH_PCODE_UNEXPECTED, "json_echo: out of memory");
        return;
    }
    (void)tch_json_respond(in, 0, headers, out);
    json_decref(out);
}

static void on_json_error(tch_inbound *in, const json_t *headers, const json_t *body, void *ud) {
    (void)ud;
    (void)headers;
    (void)body;
    json_t *out = json_pack("{s:s}", "message", JSON_ERROR_MESSAGE);
    if (!out) {
        (void)tch_inbound_respond_error(in, TCH_PCODE_UNEXPECTED, "json_error: out of memory");
        return;
    }
    (void)tch_json_respond(in, 1, NULL, out);
    json_decref(out);
}

typedef struct json_endpoint {
    const char *name;
    tch_json_handler_cb fn;
} json_endpoint;

static const json_endpoint json_endpoints[] = {
    {"json_echo", on_json_echo},
    {"json_error", on_json_error},
};

/* ---- thrift endpoints (KeyValue) --------------------------------------- */

/* The request's application headers, to echo on the answer. *out is malloc'd
 * (free it); its slices point into the inbound, valid until it is answered. */
static tch_kv *request_headers(tch_thrift_inbound *call, size_t *n) {
    *n = tch_thrift_inbound_header_count(call);
    if (*n == 0)
        return NULL;
    tch_kv *h = calloc(*n, sizeof *h);
    if (!h) {
        *n = 0;
        return NULL;
    }
    for (size_t i = 0; i < *n; i++)
        h[i] = tch_thrift_inbound_header_at(call, i);
    return h;
}

static tch_slice arg_bytes(tch_thrift_inbound *call, const char *name, int *present) {
    const tch_thrift_value *v = tch_thrift_inbound_arg(call, name);
    *present = v != NULL;
    return v ? tch_thrift_value_bytes(v) : TCH_SLICE_NULL;
}

static struct kv_entry *kv_find(struct server *srv, tch_slice key) {
    for (struct kv_entry *e = srv->kv_head; e; e = e->next)
        if (tch_slice_eq(tch_buf_slice(&e->key), key))
            return e;
    return NULL;
}

static void on_set_value(tch_thrift_inbound *call, void *ud) {
    struct server *srv = ud;
    int has_key, has_value;
    tch_slice key = arg_bytes(call, "key", &has_key);
    tch_slice value = arg_bytes(call, "value", &has_value);
    if (!has_key || !has_value) {
        (void)tch_thrift_respond_error(call, TCH_PCODE_BAD_REQUEST,
                                       "setValue: key and value are required");
        return;
    }
    struct kv_entry *e = kv_find(srv, key);
    int fresh = e == NULL;
    if (fresh) {
        e = calloc(1, sizeof *e);
        if (!e || tch_buf_append_slice(&e->key, key) != 0) {
            if (e)
                tch_buf_free(&e->key);
            free(e);
            (void)tch_thrift_respond_error(call, TCH_PCODE_UNEXPECTED, "setValue: out of memory");
            return;
        }
    }
    tch_buf_reset(&e->value);
    if (tch_buf_append_slice(&e->value, value) != 0) {
        if (fresh) {
            tch_buf_free(&e->key);
            tch_buf_free(&e->value);
            free(e);
        }
        (void)tch_thrift_respond_error(call, TCH_PCODE_UNEXPECTED, "setValue: out of memory");
        return;
    }
    if (fresh) {
        e->next = srv->kv_head;
        srv->kv_head = e;
    }
    size_t nh;
    tch_kv *h = request_headers(call, &nh);
    (void)tch_thrift_respond(call, NULL, h, nh);
    free(h);
}

static void on_get_value(tch_thrift_inbound *call, void *ud) {
    struct server *srv = ud;
    int has_key;
    tch_slice key = arg_bytes(call, "key", &has_key);
    size_t nh;
    tch_kv *h = request_headers(call, &nh);
    struct kv_entry *e = has_key ? kv_find(srv, key) : NULL;
    tch_thrift_value *v;
    if (e) {
        v = tch_thrift_value_new_string(tch_buf_slice(&e->value));
    } else {
        /* NotFoundError { 1: string key } */
        v = tch_thrift_value_new_struct();
        if (v && has_key &&
            tch_thrift_value_struct_set_take(v, 1, tch_thrift_value_new_string(key)) != 0) {
            tch_thrift_value_free(v);
            v = NULL;
        }
    }
    if (!v)
        (void)tch_thrift_respond_error(call, TCH_PCODE_UNEXPECTED, "getValue: out of memory");
    else if (e)
        (void)tch_thrift_respond(call, v, h, nh);
    else
        (void)tch_thrift_respond_exception(call, "notFound", v, h, nh);
    tch_thrift_value_free(v);
    free(h);
}

static const struct {
    const char *method;
    tch_thrift_handler_cb fn;
} thrift_methods[] = {
    {"getValue", on_get_value},
    {"setValue", on_set_value},
};
#define THRIFT_SERVICE "KeyValue"

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

/* One block per arg scheme. */
static int register_all(struct server *srv) {
    int rc = register_table(srv, raw_endpoints, sizeof raw_endpoints / sizeof raw_endpoints[0]);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < sizeof json_endpoints / sizeof json_endpoints[0]; i++) {
        rc = tch_json_register(srv->ch, srv->service, json_endpoints[i].name, json_endpoints[i].fn,
                               srv);
        if (rc != 0) {
            fprintf(stderr, "interop-server: register json %s: %s\n", json_endpoints[i].name,
                    tch_strerror(rc));
            return rc;
        }
    }
    const tch_thrift_service *svc = tch_thrift_idl_find_service(srv->idl, THRIFT_SERVICE);
    if (!svc) {
        fprintf(stderr, "interop-server: the IDL has no service %s\n", THRIFT_SERVICE);
        return TCH_EINVAL;
    }
    for (size_t i = 0; i < sizeof thrift_methods / sizeof thrift_methods[0]; i++) {
        rc = tch_thrift_register(srv->ch, srv->service, svc, thrift_methods[i].method,
                                 thrift_methods[i].fn, srv);
        if (rc != 0) {
            fprintf(stderr, "interop-server: register thrift %s::%s: %s\n", THRIFT_SERVICE,
                    thrift_methods[i].method, tch_strerror(rc));
            return rc;
        }
    }
    return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    (void)sig;
    (void)what;
    event_base_loopbreak(arg);
}

static void on_closed(tch_channel *ch, void *ud) {
    (void)ch;
    event_base_loopbreak(ud);
}

static void print_usage(FILE *out) {
    fprintf(out,
            "usage: interop-server [--host H] [--port P] [--service NAME] [--idl PATH]\n"
            "  defaults: --host 127.0.0.1 --port 0 (ephemeral) --service keyvalue-server\n"
            "            --idl %s\n"
            "  -h, --help  print this text and exit\n",
            TCH_KV_IDL);
}

static int usage(const char *bad, const char *why) {
    fprintf(stderr, "interop-server: %s argument '%s'\n", why, bad);
    print_usage(stderr);
    return 2;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    const char *service = "keyvalue-server";
    const char *idl_path = TCH_KV_IDL;
    uint64_t port = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_usage(stdout);
            return 0;
        }
        int known = !strcmp(a, "--host") || !strcmp(a, "--port") || !strcmp(a, "--service") ||
                    !strcmp(a, "--idl");
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
        } else if (!strcmp(a, "--idl")) {
            if (!*v)
                return usage(v, "empty --idl");
            idl_path = v;
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
    tch_error lerr = {0};
    if (tch_thrift_load(idl_path, &srv.idl, &lerr) != 0) {
        fprintf(stderr, "interop-server: --idl %s: %s\n", idl_path, lerr.msg);
        return 1;
    }
    srv.base = event_base_new();
    if (!srv.base) {
        fprintf(stderr, "interop-server: event_base_new failed\n");
        return 1;
    }
    tch_error nerr;
    if (tch_channel_new(srv.base, service, NULL, &srv.ch, &nerr) != 0) {
        fprintf(stderr, "interop-server: %s\n", nerr.msg);
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

    /* Answer what is still waiting, let those answers reach their sockets
     * (a graceful close, bounded), then tear down. */
    while (srv.slow_head) {
        struct slow_call *sc = srv.slow_head;
        slow_unlink(sc);
        (void)tch_inbound_respond_error(sc->in, TCH_PCODE_DECLINED, "server shutting down");
        event_free(sc->timer);
        free(sc);
    }
    if (tch_channel_close(srv.ch, 1000, on_closed, srv.base) == 0)
        event_base_dispatch(srv.base);
    event_free(sigint);
    event_free(sigterm);
    tch_channel_free(srv.ch);
    event_base_free(srv.base);
    tch_thrift_idl_free(srv.idl);
    while (srv.kv_head) {
        struct kv_entry *e = srv.kv_head;
        srv.kv_head = e->next;
        tch_buf_free(&e->key);
        tch_buf_free(&e->value);
        free(e);
    }
    if (rc < 0) {
        fprintf(stderr, "interop-server: event loop failed\n");
        return 1;
    }
    return 0;
}
