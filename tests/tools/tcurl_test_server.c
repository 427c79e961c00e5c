/* tcurl-test-server: the json and thrift endpoints the tcurl tests call, until
 * interop-server grows them (its raw endpoints are used directly).
 *
 *   tcurl-test-server --idl keyvalue.thrift [--service NAME]
 *
 * Listens on 127.0.0.1 (an ephemeral port), prints `listening HOST:PORT`, serves
 * until SIGTERM/SIGINT. Service keyvalue-server by default:
 *   json  json_echo   answers {"headers": <request headers>, "body": <request body>}
 *   json  json_error  answers code 1, {"message": "it went wrong"}
 *   json  transport_headers  answers the call's transport headers as an object
 *   thrift KeyValue::setValue / getValue over an in-memory map; getValue of an
 *         unknown key throws NotFoundError{key} (result field notFound)
 * The raw cases use interop-server (echo, slow). */
#include <tchannel/channel.h>
#include <tchannel/json.h>
#include <tchannel/thrift.h>
#include <tchannel/thrift_scheme.h>

#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_KEYS 64

typedef struct server {
    struct event_base *base;
    tch_channel *ch;
    char *keys[MAX_KEYS], *values[MAX_KEYS];
    size_t nkeys;
} server;

static void json_echo(tch_inbound *in, const json_t *headers, const json_t *body, void *ud) {
    (void)ud;
    json_t *out = json_pack("{s:O,s:O}", "headers", (json_t *)headers, "body", (json_t *)body);
    tch_json_respond(in, 0, NULL, out);
    json_decref(out);
}

static void json_error(tch_inbound *in, const json_t *headers, const json_t *body, void *ud) {
    (void)ud, (void)headers, (void)body;
    json_t *out = json_pack("{s:s}", "message", "it went wrong");
    tch_json_respond(in, 1, NULL, out);
    json_decref(out);
}

/* Every transport header of the call, so tests can see --caller, --shard-key... */
static void transport_headers(tch_inbound *in, const json_t *headers, const json_t *body, void *ud) {
    (void)ud, (void)headers, (void)body;
    json_t *out = json_object();
    for (size_t i = 0; i < tch_inbound_header_count(in); i++) {
        tch_kv h = tch_inbound_header_at(in, i);
        char *k = tch_slice_strdup(h.key);
        json_object_set_new(out, k, json_stringn((const char *)h.value.ptr, h.value.len));
        free(k);
    }
    tch_json_respond(in, 0, NULL, out);
    json_decref(out);
}

static char *arg_string(tch_thrift_inbound *call, const char *name) {
    const tch_thrift_value *v = tch_thrift_inbound_arg(call, name);
    return tch_slice_strdup(v ? tch_thrift_value_bytes(v) : tch_slice_cstr(""));
}

static void set_value(tch_thrift_inbound *call, void *ud) {
    server *s = ud;
    char *k = arg_string(call, "key"), *v = arg_string(call, "value");
    for (size_t i = 0; i < s->nkeys; i++) {
        if (strcmp(s->keys[i], k) == 0) {
            free(s->values[i]);
            s->values[i] = v;
            free(k);
            tch_thrift_respond(call, NULL, NULL, 0);
            return;
        }
    }
    if (s->nkeys == MAX_KEYS) {
        free(k), free(v);
        tch_thrift_respond_error(call, TCH_PCODE_BUSY, "store full");
        return;
    }
    s->keys[s->nkeys] = k;
    s->values[s->nkeys++] = v;
    tch_thrift_respond(call, NULL, NULL, 0);
}

static void get_value(tch_thrift_inbound *call, void *ud) {
    server *s = ud;
    char *k = arg_string(call, "key");
    for (size_t i = 0; i < s->nkeys; i++) {
        if (strcmp(s->keys[i], k) == 0) {
            tch_thrift_value *v = tch_thrift_value_new_string(tch_slice_cstr(s->values[i]));
            tch_thrift_respond(call, v, NULL, 0);
            tch_thrift_value_free(v);
            free(k);
            return;
        }
    }
    tch_thrift_value *exc = tch_thrift_value_new_struct();
    tch_thrift_value_struct_set_take(exc, 1, tch_thrift_value_new_string(tch_slice_cstr(k)));
    tch_thrift_respond_exception(call, "notFound", exc, NULL, 0);
    tch_thrift_value_free(exc);
    free(k);
}

/* Meta::health for the service "draining", registered as a raw handler so
 * it wins over the channel's built-in answer: HealthStatus{ok: false,
 * message: "draining"} in thrift binary. */
static void draining_health(tch_inbound *in, void *ud) {
    (void)ud;
    static const uint8_t no_headers[] = {0x00, 0x00};
    static const uint8_t result[] = {0x0c, 0x00, 0x00,                   /* success */
                                     0x02, 0x00, 0x01, 0x00,             /* ok: false */
                                     0x0b, 0x00, 0x02, 0x00, 0x00, 0x00, 0x08, /* message */
                                     'd', 'r', 'a', 'i', 'n', 'i', 'n', 'g',
                                     0x00, 0x00};
    tch_inbound_respond(in, 0, tch_slice_of(no_headers, sizeof no_headers),
                        tch_slice_of(result, sizeof result));
}

/* KeyValue::getValue for the service "newer": not ok, with an exception
 * (field 9) the caller's IDL does not declare. */
static void undeclared_exception(tch_inbound *in, void *ud) {
    (void)ud;
    static const uint8_t result[] = {0x0c, 0, 9, 0x0b, 0, 1, 0, 0, 0, 1, 'x', 0, 0};
    tch_inbound_respond(in, 1, tch_slice_of("\0\0", 2), tch_slice_of(result, sizeof result));
}

static void on_signal(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    event_base_loopbreak(arg);
}

static int usage(const char *why) {
    fprintf(stderr, "tcurl-test-server: %s\nusage: tcurl-test-server --idl FILE [--service NAME]\n", why);
    return 2;
}

int main(int argc, char **argv) {
    const char *idl_path = NULL, *service = "keyvalue-server";
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            return usage(argv[i]);
        if (!strcmp(argv[i], "--idl"))
            idl_path = argv[++i];
        else if (!strcmp(argv[i], "--service"))
            service = argv[++i];
        else
            return usage(argv[i]);
    }
    if (!idl_path)
        return usage("--idl is required");
    signal(SIGPIPE, SIG_IGN);
    tch_error err;
    tch_thrift_idl *idl;
    if (tch_thrift_load(idl_path, &idl, &err) != 0) {
        fprintf(stderr, "tcurl-test-server: %s\n", err.msg);
        return 1;
    }
    const tch_thrift_service *kv = tch_thrift_idl_find_service(idl, "KeyValue");
    server s = {0};
    s.base = event_base_new();
    tch_channel_new(s.base, service, NULL, &s.ch, NULL);
    if (!kv || tch_json_register(s.ch, NULL, "json_echo", json_echo, &s) ||
        tch_json_register(s.ch, NULL, "json_error", json_error, &s) ||
        tch_json_register(s.ch, NULL, "transport_headers", transport_headers, &s) ||
        tch_thrift_register(s.ch, NULL, kv, "setValue", set_value, &s) ||
        tch_thrift_register(s.ch, NULL, kv, "getValue", get_value, &s) ||
        tch_channel_register(s.ch, "draining", "Meta::health", draining_health, NULL) ||
        tch_channel_register(s.ch, "newer", "KeyValue::getValue", undeclared_exception, NULL) ||
        tch_channel_listen(s.ch, "127.0.0.1:0", &err)) {
        fprintf(stderr, "tcurl-test-server: setup failed\n");
        return 1;
    }
    struct event *sigterm = evsignal_new(s.base, SIGTERM, on_signal, s.base);
    struct event *sigint = evsignal_new(s.base, SIGINT, on_signal, s.base);
    evsignal_add(sigterm, NULL);
    evsignal_add(sigint, NULL);
    printf("listening %s\n", tch_channel_host_port(s.ch));
    fflush(stdout);
    event_base_dispatch(s.base);
    event_free(sigterm);
    event_free(sigint);
    tch_channel_free(s.ch);
    for (size_t i = 0; i < s.nkeys; i++)
        free(s.keys[i]), free(s.values[i]);
    tch_thrift_idl_free(idl);
    event_base_free(s.base);
    return 0;
}
