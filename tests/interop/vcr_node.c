/* vcr_node: the in-process VCR against the real Node server ("record against
 * the real Node server, stop it, replay offline").
 *
 *   vcr_node [--node PATH] [--server-js PATH] [--idl PATH] [--keep]
 *
 * 1. Spawns `node tests/interop/node/server.js --idl IDL` (as
 *    c_client_node_server does) and puts a VCR (mode ONCE, the cassette in a
 *    new temp dir, so it records; the IDL passed so Thrift bodies are also
 *    written decoded) on a C client channel.
 * 2. Records against Node: raw echo, json_echo (with headers), Thrift
 *    KeyValue::setValue, getValue of that key (found) and of a missing key
 *    (the declared NotFoundError), all with application headers.
 * 3. Ejects (saves) and checks the file: serviceName, bodyDecoded, notFound.
 * 4. Stops the Node server, waits for it to exit, and checks that a direct
 *    call (no VCR) now fails with a network error.
 * 5. Uses the cassette again (ONCE; the file exists, so replay only) on a new
 *    channel and makes the same calls: each answer must be identical to the
 *    recorded one; every interaction played.
 * 6. A request not on the cassette (raw and Thrift) fails with TCH_ENOTFOUND
 *    and a message naming the nearest recorded interaction.
 *
 * Output: `ok <case>` / `FAIL <case>: <why>` lines, `#` notes, then exactly
 * `N passed, M failed`. Exit 0 iff nothing failed, 77 when node is missing.
 * The temp dir is removed at the end unless --keep (then its path is printed).
 * Every wait runs the event loop bounded by a timer; nothing sleeps.
 */
#include <tchannel/channel.h>
#include <tchannel/common.h>
#include <tchannel/json.h>
#include <tchannel/thrift.h>
#include <tchannel/thrift_scheme.h>
#include <tchannel/vcr.h>

#include <event2/event.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "node_child.h"

#ifndef TCH_NODE_SERVER_JS
#define TCH_NODE_SERVER_JS "tests/interop/node/server.js"
#endif
#ifndef TCH_KV_IDL
#define TCH_KV_IDL "cassettes/keyvalue.thrift"
#endif

#define SERVICE "keyvalue-server"
#define CALL_TIMEOUT_MS 3000u
#define WAIT_MS 6000u
#define KEY "vcr-key"
#define VALUE "vcr-value \xc3\xa9"
#define MISSING "vcr-missing-key"

/* What a call came back with, flattened to text so a replay can be compared
 * with the recording byte for byte. */
typedef struct outcome {
    int done;
    int status;
    uint8_t code, error_code;
    char message[2048];
    char text[2048];
} outcome;

typedef struct ctx {
    struct event_base *base;
    const char *peer;
    tch_thrift_idl *idl;
    const tch_thrift_service *kv;
    int passed, failed;
    int deadline_hit;
} ctx;

static void report(ctx *c, const char *name, const char *why) {
    if (!why) {
        c->passed++;
        printf("ok %s\n", name);
    } else {
        c->failed++;
        printf("FAIL %s: %s\n", name, why);
    }
    fflush(stdout);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    ((ctx *)arg)->deadline_hit = 1;
}

/* Runs the loop until *done or ms passed; 0 when done. */
static int wait_done(ctx *c, const int *done, uint32_t ms) {
    struct event *t = evtimer_new(c->base, on_deadline, c);
    if (!t)
        return -1;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    c->deadline_hit = 0;
    evtimer_add(t, &tv);
    while (!*done && !c->deadline_hit)
        if (event_base_loop(c->base, EVLOOP_ONCE) < 0)
            break;
    event_free(t);
    return *done ? 0 : -1;
}

/* Appends printable text for bytes (\xNN for the rest). */
static void append_bytes(char *out, size_t n, tch_slice s) {
    size_t o = strlen(out);
    for (size_t i = 0; i < s.len && o + 5 < n; i++) {
        uint8_t b = s.ptr[i];
        if (b >= 0x20 && b < 0x7f && b != '\\')
            out[o++] = (char)b;
        else
            o += (size_t)snprintf(out + o, n - o, "\\x%02x", b);
    }
    out[o] = '\0';
}

static void append_str(char *out, size_t n, const char *s) {
    size_t o = strlen(out);
    snprintf(out + o, n - o, "%s", s);
}

static void set_common(outcome *oc, int status, uint8_t code, uint8_t error_code,
                       const char *message) {
    oc->done = 1;
    oc->status = status;
    oc->code = code;
    oc->error_code = error_code;
    snprintf(oc->message, sizeof oc->message, "%s", message ? message : "");
    snprintf(oc->text, sizeof oc->text, "status=%d code=%u", status, code);
    if (status != 0) {
        append_str(oc->text, sizeof oc->text, " error=");
        append_str(oc->text, sizeof oc->text, tch_proto_code_name(error_code));
    }
}

/* ---- the calls ------------------------------------------------------------- */

static void on_raw(const tch_response *res, void *ud) {
    outcome *oc = ud;
    set_common(oc, res->status, res->code, res->error_code, res->message);
    if (res->status != 0)
        return;
    append_str(oc->text, sizeof oc->text, " arg2=");
    append_bytes(oc->text, sizeof oc->text, res->arg2);
    append_str(oc->text, sizeof oc->text, " arg3=");
    append_bytes(oc->text, sizeof oc->text, res->arg3);
}

static int raw_echo(ctx *c, tch_channel *ch, const char *body, int retry_never, outcome *oc) {
    memset(oc, 0, sizeof *oc);
    tch_call_opts o = {0};
    o.service = SERVICE;
    o.endpoint = tch_slice_cstr("echo");
    o.arg2 = tch_slice_cstr("vcr-arg2");
    o.arg3 = tch_slice_cstr(body);
    o.host_port = c->peer;
    o.timeout_ms = CALL_TIMEOUT_MS;
    if (retry_never)
        o.retry_on = TCH_RETRY_NEVER;
    tch_error err = {0};
    if (tch_channel_call(ch, &o, on_raw, oc, &err) != 0) {
        snprintf(oc->message, sizeof oc->message, "tch_channel_call: %s", err.msg);
        return -1;
    }
    return wait_done(c, &oc->done, WAIT_MS);
}

static void on_json(const tch_json_response *res, void *ud) {
    outcome *oc = ud;
    set_common(oc, res->status, res->code, res->error_code, res->message);
    if (res->status != 0)
        return;
    char *h = res->headers ? json_dumps(res->headers, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    char *b = res->body ? json_dumps(res->body, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY)
                        : NULL;
    append_str(oc->text, sizeof oc->text, " headers=");
    append_str(oc->text, sizeof oc->text, h ? h : "(none)");
    append_str(oc->text, sizeof oc->text, " body=");
    append_str(oc->text, sizeof oc->text, b ? b : "(none)");
    free(h);
    free(b);
}

static int json_echo(ctx *c, tch_channel *ch, outcome *oc) {
    memset(oc, 0, sizeof *oc);
    json_t *h = json_pack("{s:s,s:s}", "user", "ann", "x-trace", "vcr-1");
    json_t *b = json_pack("{s:i,s:[i,i],s:s}", "n", 1, "list", 1, 2, "s", "h\xc3\xa9llo");
    tch_call_opts o = {0};
    o.service = SERVICE;
    o.endpoint = tch_slice_cstr("json_echo");
    o.host_port = c->peer;
    o.timeout_ms = CALL_TIMEOUT_MS;
    tch_error err = {0};
    int rc = h && b ? tch_json_call(ch, &o, h, b, on_json, oc, &err) : TCH_ENOMEM;
    json_decref(h);
    json_decref(b);
    if (rc != 0) {
        snprintf(oc->message, sizeof oc->message, "tch_json_call: %s (%s)", tch_strerror(rc),
                 err.msg);
        return -1;
    }
    return wait_done(c, &oc->done, WAIT_MS);
}

static void on_thrift(const tch_thrift_response *res, void *ud) {
    outcome *oc = ud;
    set_common(oc, res->status, res->code, res->error_code, res->message);
    if (res->status != 0)
        return;
    append_str(oc->text, sizeof oc->text, " field=");
    append_str(oc->text, sizeof oc->text,
               res->outcome.field ? tch_thrift_field_name(res->outcome.field) : "(void)");
    if (res->outcome.field && res->outcome.value) {
        json_t *j = NULL;
        if (tch_thrift_to_json(tch_thrift_field_type(res->outcome.field), res->outcome.value, &j,
                               NULL) == 0) {
            char *t = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
            append_str(oc->text, sizeof oc->text, " value=");
            append_str(oc->text, sizeof oc->text, t ? t : "?");
            free(t);
            json_decref(j);
        } else {
            append_str(oc->text, sizeof oc->text, " value=(no json)");
        }
    }
    append_str(oc->text, sizeof oc->text, " headers=");
    for (size_t i = 0; i < res->nheaders; i++) {
        append_bytes(oc->text, sizeof oc->text, res->headers[i].key);
        append_str(oc->text, sizeof oc->text, "=");
        append_bytes(oc->text, sizeof oc->text, res->headers[i].value);
        append_str(oc->text, sizeof oc->text, ";");
    }
}

static int thrift_call(ctx *c, tch_channel *ch, const char *method, const char *key,
                       const char *value, outcome *oc) {
    memset(oc, 0, sizeof *oc);
    const tch_kv h[] = {{tch_slice_cstr("user"), tch_slice_cstr("ann")},
                                   {tch_slice_cstr("x-trace"), tch_slice_cstr("vcr-2")}};
    tch_thrift_value *args = tch_thrift_value_new_struct();
    if (!args ||
        tch_thrift_value_struct_set_take(args, 1,
                                         tch_thrift_value_new_string(tch_slice_cstr(key))) != 0 ||
        (value && tch_thrift_value_struct_set_take(
                      args, 2, tch_thrift_value_new_string(tch_slice_cstr(value))) != 0)) {
        tch_thrift_value_free(args);
        snprintf(oc->message, sizeof oc->message, "out of memory");
        return -1;
    }
    tch_call_opts o = {0};
    o.service = SERVICE;
    o.host_port = c->peer;
    o.timeout_ms = CALL_TIMEOUT_MS;
    tch_error err = {0};
    int rc = tch_thrift_call(ch, &o, c->kv, method, args, h, 2, on_thrift, oc, &err);
    tch_thrift_value_free(args);
    if (rc != 0) {
        snprintf(oc->message, sizeof oc->message, "tch_thrift_call: %s (%s)", tch_strerror(rc),
                 err.msg);
        return -1;
    }
    return wait_done(c, &oc->done, WAIT_MS);
}

/* ---- the script -------------------------------------------------------------- */

enum { C_RAW, C_JSON, C_SET, C_GET, C_MISSING, NCALLS };
static const char *const call_names[NCALLS] = {
    "raw echo", "json_echo", "thrift setValue", "thrift getValue found",
    "thrift getValue missing -> NotFoundError",
};
/* What the recorded answers must contain (checked when recording). */
static const char *const want_in_text[NCALLS] = {
    "status=0 code=0 arg2=vcr-arg2 arg3=hello from the vcr test",
    "status=0 code=0 headers={\"user\":\"ann\",\"x-trace\":\"vcr-1\"} "
    "body={\"body\":{\"list\":[1,2],\"n\":1,\"s\":\"h\xc3\xa9llo\"},"
    "\"headers\":{\"user\":\"ann\",\"x-trace\":\"vcr-1\"}}",
    "status=0 code=0 field=(void)",
    "status=0 code=0 field=success value=\"" VALUE "\"",
    "status=0 code=1 field=notFound value={\"key\":\"" MISSING "\"}",
};

static int make_call(ctx *c, tch_channel *ch, int which, outcome *oc) {
    switch (which) {
    case C_RAW:
        return raw_echo(c, ch, "hello from the vcr test", 0, oc);
    case C_JSON:
        return json_echo(c, ch, oc);
    case C_SET:
        return thrift_call(c, ch, "setValue", KEY, VALUE, oc);
    case C_GET:
        return thrift_call(c, ch, "getValue", KEY, NULL, oc);
    default:
        return thrift_call(c, ch, "getValue", MISSING, NULL, oc);
    }
}

static char *slurp(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, fp);
        n += r;
        if (n < cap)
            break;
        char *nb = realloc(buf, cap * 2 + 1);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    fclose(fp);
    if (buf) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

static tch_vcr *use_cassette(ctx *c, tch_channel *ch, const char *path, char *why, size_t whylen) {
    tch_vcr_options o;
    tch_vcr_options_init(&o);
    o.cassette.mode = TCH_CASSETTE_ONCE;
    o.cassette.no_env_override = 1;
    o.idl = c->idl;
    tch_vcr *v = NULL;
    tch_error err = {0};
    if (tch_vcr_use_cassette(ch, path, &o, &v, &err) != 0) {
        snprintf(why, whylen, "tch_vcr_use_cassette %s: %s", path, err.msg);
        return NULL;
    }
    return v;
}

static int usage(const char *bad) {
    fprintf(stderr,
            "vcr_node: bad argument '%s'\n"
            "usage: vcr_node [--node PATH] [--server-js PATH] [--idl PATH] [--keep]\n",
            bad);
    return 2;
}

int main(int argc, char **argv) {
    const char *node_arg = "node";
    const char *script = TCH_NODE_SERVER_JS;
    const char *idl_path = TCH_KV_IDL;
    int keep = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--keep")) {
            keep = 1;
            continue;
        }
        if (i + 1 >= argc)
            return usage(argv[i]);
        if (!strcmp(argv[i], "--node"))
            node_arg = argv[++i];
        else if (!strcmp(argv[i], "--server-js"))
            script = argv[++i];
        else if (!strcmp(argv[i], "--idl"))
            idl_path = argv[++i];
        else
            return usage(argv[i]);
    }
    char node[4096];
    if (interop_find_in_path(node_arg, node, sizeof node) != 0) {
        printf("SKIP: `%s` not found (PATH); the interop tests need Node.js\n", node_arg);
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);

    ctx c = {0};
    tch_error lerr = {0};
    if (tch_thrift_load(idl_path, &c.idl, &lerr) != 0 ||
        !(c.kv = tch_thrift_idl_find_service(c.idl, "KeyValue"))) {
        printf("FAIL load IDL %s: %s\n0 passed, 1 failed\n", idl_path,
               c.idl ? "no service KeyValue" : lerr.msg);
        tch_thrift_idl_free(c.idl);
        return 1;
    }
    char dir[] = "/tmp/tch-vcr-node-XXXXXX";
    if (!mkdtemp(dir)) {
        printf("FAIL mkdtemp: cannot create a temp dir\n0 passed, 1 failed\n");
        tch_thrift_idl_free(c.idl);
        return 1;
    }
    char path[256];
    snprintf(path, sizeof path, "%s/node.yaml", dir);

    node_child nc = {0, -1};
    char peer[256];
    const char *extra[] = {"--idl", idl_path, NULL};
    if (node_start(node, script, extra, &nc, peer, sizeof peer) != 0) {
        node_stop(&nc);
        rmdir(dir);
        tch_thrift_idl_free(c.idl);
        printf("FAIL start node server.js\n0 passed, 1 failed\n");
        return 1;
    }
    printf("# node server.js listening on %s; cassette %s\n", peer, path);
    c.peer = peer;
    c.base = event_base_new();
    tch_channel *rec;
    tch_channel_new(c.base, "vcr-node-client", NULL, &rec, NULL);
    tch_channel *direct;
    tch_channel_new(c.base, "vcr-node-direct", NULL, &direct, NULL);
    tch_channel *play;
    tch_channel_new(c.base, "vcr-node-client", NULL, &play, NULL);
    if (!c.base || !rec || !direct || !play) {
        fprintf(stderr, "out of memory setting up\n");
        node_stop(&nc);
        return 1;
    }

    char why[10000];
    outcome recorded[NCALLS], replayed[NCALLS], oc;
    memset(recorded, 0, sizeof recorded);
    char name[128];

    /* 1-2: record against Node. */
    why[0] = '\0';
    tch_vcr *v = use_cassette(&c, rec, path, why, sizeof why);
    report(&c, "use_cassette ONCE, no file yet -> records", v ? NULL : why);
    int recorded_ok = v != NULL;
    if (v && tch_cassette_existed(tch_vcr_cassette(v))) {
        report(&c, "cassette is new", "tch_cassette_existed says the file was there");
        recorded_ok = 0;
    }
    for (int i = 0; v && i < NCALLS; i++) {
        snprintf(name, sizeof name, "record %s", call_names[i]);
        const char *fail = NULL;
        if (make_call(&c, rec, i, &recorded[i]) != 0) {
            snprintf(why, sizeof why, "no answer within %u ms: %s", WAIT_MS, recorded[i].message);
            fail = why;
        } else if (!strstr(recorded[i].text, want_in_text[i])) {
            snprintf(why, sizeof why, "got [%s] (message \"%s\"), want [%s...]", recorded[i].text,
                     recorded[i].message, want_in_text[i]);
            fail = why;
        }
        if (fail)
            recorded_ok = 0;
        report(&c, name, fail);
        printf("#   %s\n", recorded[i].text);
    }

    /* 3: eject saves; the file shows the decoded Thrift bodies. */
    if (v) {
        tch_error err = {0};
        int rc = tch_vcr_eject(v, &err);
        v = NULL;
        size_t len = 0;
        char *text = rc == 0 ? slurp(path, &len) : NULL;
        const char *fail = NULL;
        static const char service_line[] = "serviceName: " SERVICE;
        static const char *const want[] = {service_line, "bodyDecoded", "notFound",
                                           "json_echo", "KeyValue::getValue",
                                           "KeyValue::setValue"};
        if (rc != 0) {
            snprintf(why, sizeof why, "tch_vcr_eject: %s (%s)", tch_strerror(rc), err.msg);
            fail = why;
        } else if (!text) {
            snprintf(why, sizeof why, "no cassette file at %s after eject", path);
            fail = why;
        }
        for (size_t i = 0; !fail && i < sizeof want / sizeof want[0]; i++) {
            if (!strstr(text, want[i])) {
                snprintf(why, sizeof why, "the cassette does not contain \"%s\"", want[i]);
                fail = why;
            }
        }
        if (fail)
            recorded_ok = 0;
        else
            printf("# cassette: %zu bytes\n", len);
        report(&c, "eject saves the cassette (serviceName, bodyDecoded, notFound)", fail);
        free(text);
    }

    /* 4: the Node server goes away. */
    {
        int st = node_stop(&nc);
        const char *fail = NULL;
        if (st == -1 || !(WIFEXITED(st) || WIFSIGNALED(st))) {
            snprintf(why, sizeof why, "node did not exit (wait status %d)", st);
            fail = why;
        } else {
            printf("# node server.js exited (%s %d)\n", WIFEXITED(st) ? "status" : "signal",
                   WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        }
        report(&c, "stop the Node server and wait for it to exit", fail);
        fail = NULL;
        if (raw_echo(&c, direct, "anyone there?", 1, &oc) != 0) {
            snprintf(why, sizeof why, "no answer within %u ms", WAIT_MS);
            fail = why;
        } else if (oc.status == 0 || oc.error_code != TCH_PCODE_NETWORK) {
            snprintf(why, sizeof why, "want a network error with the server gone, got [%s] %s",
                     oc.text, oc.message);
            fail = why;
        } else {
            printf("# direct call: %s: %s\n", tch_strerror(oc.status), oc.message);
        }
        report(&c, "server gone: a direct call (no VCR) fails with a network error", fail);
    }

    /* 5: replay offline. */
    if (recorded_ok) {
        v = use_cassette(&c, play, path, why, sizeof why);
        const char *fail = v ? NULL : why;
        if (v && !tch_cassette_existed(tch_vcr_cassette(v))) {
            snprintf(why, sizeof why, "tch_cassette_existed is 0 for the saved file");
            fail = why;
        }
        report(&c, "use_cassette ONCE again, file exists -> replays", fail);
    } else {
        report(&c, "replay", "skipped: the recording failed");
    }
    for (int i = 0; v && i < NCALLS; i++) {
        snprintf(name, sizeof name, "replay %s offline: identical", call_names[i]);
        const char *fail = NULL;
        if (make_call(&c, play, i, &replayed[i]) != 0) {
            snprintf(why, sizeof why, "no answer within %u ms: %s", WAIT_MS, replayed[i].message);
            fail = why;
        } else if (strcmp(replayed[i].text, recorded[i].text) != 0 ||
                   strcmp(replayed[i].message, recorded[i].message) != 0) {
            snprintf(why, sizeof why, "replayed [%s] \"%s\", recorded [%s] \"%s\"",
                     replayed[i].text, replayed[i].message, recorded[i].text,
                     recorded[i].message);
            fail = why;
        }
        report(&c, name, fail);
    }
    if (v)
        report(&c, "replay: every recorded interaction played",
               tch_cassette_all_played(tch_vcr_cassette(v)) ? NULL : "some were not played");

    /* 6: what is not on the cassette fails, naming the nearest interaction. */
    for (int k = 0; v && k < 2; k++) {
        const char *fail = NULL;
        int rc = k == 0 ? raw_echo(&c, play, "goodbye from the vcr test", 0, &oc)
                        : thrift_call(&c, play, "getValue", "vcr-other-key", NULL, &oc);
        if (rc != 0) {
            snprintf(why, sizeof why, "no answer within %u ms: %s", WAIT_MS, oc.message);
            fail = why;
        } else if (oc.status != TCH_ENOTFOUND) {
            snprintf(why, sizeof why, "want status TCH_ENOTFOUND, got [%s] %s", oc.text,
                     oc.message);
            fail = why;
        } else if (!strstr(oc.message, "nearest #") || !strstr(oc.message, path)) {
            snprintf(why, sizeof why, "the message does not name the cassette and the nearest "
                     "interaction: %s", oc.message);
            fail = why;
        } else {
            printf("# %s\n", oc.message);
        }
        report(&c,
               k == 0 ? "replay: unrecorded raw request -> TCH_ENOTFOUND naming the nearest"
                      : "replay: unrecorded thrift request -> TCH_ENOTFOUND naming the nearest",
               fail);
    }
    if (v) {
        tch_error err = {0};
        int rc = tch_vcr_eject(v, &err);
        snprintf(why, sizeof why, "tch_vcr_eject: %s (%s)", tch_strerror(rc), err.msg);
        report(&c, "eject after replay", rc == 0 ? NULL : why);
    }

    tch_channel_free(rec);
    tch_channel_free(direct);
    tch_channel_free(play);
    event_base_free(c.base);
    tch_thrift_idl_free(c.idl);
    if (keep) {
        printf("# kept %s\n", path);
    } else {
        unlink(path);
        rmdir(dir);
    }
    printf("%d passed, %d failed\n", c.passed, c.failed);
    return c.failed ? 1 : 0;
}
