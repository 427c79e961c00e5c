/* c_client_node_server: our C client against Uber's Node TChannel server.
 *
 *   c_client_node_server [--node PATH] [--server-js PATH] [--only SUBSTRING]
 *                        [--server-checksum none|crc32|farmhash|crc32c] [--idl PATH]
 *
 * --server-checksum makes server.js answer with that checksum type whatever
 * the request used (Node itself mirrors the request's type), to check that our
 * client accepts a response whose checksum type differs from the request's.
 * Spawns `node tests/interop/node/server.js` (path compiled in as
 * TCH_NODE_SERVER_JS), reads its `listening HOST:PORT` line with a deadline,
 * runs the cases below over tch_channel (one channel per checksum type), then
 * stops node. Prints `ok <case>` / `FAIL <case>: <why>` per case and finally
 * exactly `N passed, M failed`. Exit 0 iff nothing failed; 77 (ctest SKIP)
 * when `node` is not installed; 1 on failure or when node cannot be started.
 * The node_modules install is the driver's job (driver.sh runs install.sh).
 *
 * Besides the raw cases: the json endpoints (tch_json_call: json_echo with
 * and without headers, json_error) and KeyValue over Thrift (tch_thrift_call
 * with the IDL --idl, default the source tree's cassettes/keyvalue.thrift:
 * set/get, overwrite, NotFoundError, application headers round trip), and
 * retries with peers [a dead port, the Node server] chosen by the channel,
 * and a call to the server by host name (localhost:PORT).
 *
 * Every wait runs the event loop until the awaited callback fired, bounded by
 * a timer; nothing sleeps.
 */
#include <tchannel/channel.h>
#include <tchannel/common.h>
#include <tchannel/json.h>
#include <tchannel/thrift.h>
#include <tchannel/thrift_scheme.h>

#include <event2/event.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "node_child.h"

#ifndef TCH_NODE_SERVER_JS
#define TCH_NODE_SERVER_JS "tests/interop/node/server.js"
#endif
#ifndef TCH_KV_IDL
#define TCH_KV_IDL "cassettes/keyvalue.thrift"
#endif

#define MIB (1024u * 1024u)
#define BIG_TIMEOUT_MS 60000u
#define SERVICE "keyvalue-server"
#define JSON_ERROR_MESSAGE "json_error: failed on purpose" /* what both servers send */
#define RETRY_CALLS 10

static const struct {
    const char *name;
    uint8_t type;
} checksums[] = {{"none", TCH_CHECKSUM_NONE}, {"crc32", 1}, {"farmhash", 2}, {"crc32c", 3}};
#define NCHECKSUMS (sizeof checksums / sizeof checksums[0])

/* ---- small utilities ------------------------------------------------------ */

/* Deterministic bytes, different per seed (same generator idea as lib.js). */
static uint8_t *make_payload(size_t n, uint32_t seed) {
    uint8_t *b = malloc(n ? n : 1);
    if (!b)
        return NULL;
    uint32_t x = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        b[i] = (uint8_t)(x >> 24);
    }
    return b;
}

/* ---- calls ---------------------------------------------------------------- */

/* The outcome of one call, copied out of the callback (the response is only
 * valid during it). Owned by the run; freed after the channels are gone, so a
 * callback that arrives after we stopped waiting still has somewhere to write. */
typedef struct result {
    int done;
    int status;
    uint8_t code;
    uint8_t error_code;
    char message[256];
    tch_buf arg2, arg3;
    int copy_failed;
    uint64_t started_ms, finished_ms;
    char peer[128];
    /* json calls */
    json_t *jheaders, *jbody;
    /* thrift calls */
    char tfield[64];           /* result field of the outcome ("success", "notFound") */
    tch_thrift_value *tvalue;  /* copy of the outcome's value; NULL for void */
    tch_buf theaders;          /* response application headers, re-encoded */
    struct result *next_all;
} result;

typedef struct run {
    struct event_base *base;
    tch_channel *ch[NCHECKSUMS];
    const char *peer;
    const char *only;
    int passed, failed;
    result *all;
    int deadline_hit;
    tch_thrift_idl *idl;
    const tch_thrift_service *kv;
    tch_channel *retry_ch[3]; /* freed with the others, after every callback ran */
} run;

static result *result_new(run *r) {
    result *res = calloc(1, sizeof *res);
    if (!res) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    res->next_all = r->all;
    r->all = res;
    res->started_ms = interop_now_ms();
    return res;
}

/* What every scheme's callback records the same way. */
static void note_outcome(result *res, int status, uint8_t code, uint8_t error_code,
                         const char *message) {
    res->done = 1;
    res->finished_ms = interop_now_ms();
    res->status = status;
    res->code = code;
    res->error_code = error_code;
    snprintf(res->message, sizeof res->message, "%s", message ? message : "");
}

static void on_response(const tch_response *resp, void *ud) {
    result *res = ud;
    note_outcome(res, resp->status, resp->code, resp->error_code, resp->message);
    snprintf(res->peer, sizeof res->peer, "%s", resp->peer ? resp->peer : "");
    if (resp->status == 0) {
        if (tch_buf_append_slice(&res->arg2, resp->arg2) != 0 ||
            tch_buf_append_slice(&res->arg3, resp->arg3) != 0)
            res->copy_failed = 1;
    }
}

static int start_call(run *r, size_t csum, const char *endpoint, tch_slice a2, tch_slice a3,
                      uint32_t timeout_ms, result *res, char *why, size_t whylen) {
    tch_call_opts o = {0};
    o.service = SERVICE;
    o.endpoint = tch_slice_cstr(endpoint);
    o.arg2 = a2;
    o.arg3 = a3;
    o.host_port = r->peer;
    o.timeout_ms = timeout_ms;
    tch_error err = {0};
    int rc = tch_channel_call(r->ch[csum], &o, on_response, res, &err);
    if (rc != 0)
        snprintf(why, whylen, "tch_channel_call: %s (%s)", tch_strerror(rc), err.msg);
    return rc;
}

static void on_json_response(const tch_json_response *resp, void *ud) {
    result *res = ud;
    note_outcome(res, resp->status, resp->code, resp->error_code, resp->message);
    if (resp->headers && !(res->jheaders = json_deep_copy(resp->headers)))
        res->copy_failed = 1;
    if (resp->body && !(res->jbody = json_deep_copy(resp->body)))
        res->copy_failed = 1;
}

static void on_thrift_response(const tch_thrift_response *resp, void *ud) {
    result *res = ud;
    note_outcome(res, resp->status, resp->code, resp->error_code, resp->message);
    if (resp->status != 0)
        return;
    snprintf(res->tfield, sizeof res->tfield, "%s",
             resp->outcome.field ? tch_thrift_field_name(resp->outcome.field) : "(void)");
    if (resp->outcome.value && !(res->tvalue = tch_thrift_value_copy(resp->outcome.value)))
        res->copy_failed = 1;
    if (tch_thrift_headers_encode(resp->headers, resp->nheaders, &res->theaders, NULL) != 0)
        res->copy_failed = 1;
}

static int start_json(run *r, const char *endpoint, const json_t *headers, const json_t *body,
                      result *res, char *why, size_t whylen) {
    tch_call_opts o = {0};
    o.service = SERVICE;
    o.endpoint = tch_slice_cstr(endpoint);
    o.host_port = r->peer;
    o.timeout_ms = 5000;
    tch_error err = {0};
    int rc = tch_json_call(r->ch[1], &o, headers, body, on_json_response, res, &err);
    if (rc != 0)
        snprintf(why, whylen, "tch_json_call: %s (%s)", tch_strerror(rc), err.msg);
    return rc;
}

/* KeyValue::method with string args key (id 1) and value (id 2, if not NULL). */
static int start_thrift(run *r, const char *method, const char *key, const char *value,
                        const tch_kv *h, size_t nh, result *res, char *why,
                        size_t whylen) {
    tch_thrift_value *args = tch_thrift_value_new_struct();
    if (!args || tch_thrift_value_struct_set_take(
                     args, 1, tch_thrift_value_new_string(tch_slice_cstr(key))) != 0 ||
        (value && tch_thrift_value_struct_set_take(
                      args, 2, tch_thrift_value_new_string(tch_slice_cstr(value))) != 0)) {
        tch_thrift_value_free(args);
        snprintf(why, whylen, "out of memory building the args");
        return -1;
    }
    tch_call_opts o = {0};
    o.service = SERVICE;
    o.host_port = r->peer;
    o.timeout_ms = 5000;
    tch_error err = {0};
    int rc = tch_thrift_call(r->ch[1], &o, r->kv, method, args, h, nh, on_thrift_response, res,
                             &err);
    tch_thrift_value_free(args);
    if (rc != 0)
        snprintf(why, whylen, "tch_thrift_call %s: %s (%s)", method, tch_strerror(rc), err.msg);
    return rc;
}

static void on_deadline(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    ((run *)arg)->deadline_hit = 1;
}

/* Runs the loop until *count results are done or ms passed. 0 or -1. */
static int wait_all(run *r, result **res, size_t n, uint32_t ms) {
    struct event *t = evtimer_new(r->base, on_deadline, r);
    if (!t) {
        fprintf(stderr, "evtimer_new failed\n");
        exit(1);
    }
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    r->deadline_hit = 0;
    evtimer_add(t, &tv);
    for (;;) {
        size_t done = 0;
        for (size_t i = 0; i < n; i++)
            done += res[i]->done ? 1 : 0;
        if (done == n || r->deadline_hit)
            break;
        if (event_base_loop(r->base, EVLOOP_ONCE) < 0) {
            fprintf(stderr, "event_base_loop failed\n");
            break;
        }
    }
    event_free(t);
    for (size_t i = 0; i < n; i++)
        if (!res[i]->done)
            return -1;
    return 0;
}

/* Ping: the Node peer's library answers a ping req itself. */
static void on_ping(int status, uint64_t rtt_us, void *ud) {
    result *res = ud;
    res->status = status;
    res->code = 0;
    res->finished_ms = res->started_ms + rtt_us / 1000;
    res->done = 1;
}

static int case_ping(run *r, const void *argp, char *why, size_t whylen) {
    (void)argp;
    result *res = result_new(r);
    tch_error err;
    if (tch_channel_ping(r->ch[0], r->peer, 2000, on_ping, res, &err) != 0) {
        snprintf(why, whylen, "tch_channel_ping: %s", err.msg);
        return -1;
    }
    if (wait_all(r, &res, 1, 3000) != 0) {
        snprintf(why, whylen, "no ping answer within 3000 ms");
        return -1;
    }
    if (res->status != 0) {
        snprintf(why, whylen, "ping failed: %s", tch_strerror(res->status));
        return -1;
    }
    return 0;
}

static void describe(const result *res, char *why, size_t whylen) {
    snprintf(why, whylen, "status %s (%d), error_code %s (0x%02x), code %u: %s",
             tch_strerror(res->status), res->status, tch_proto_code_name(res->error_code),
             res->error_code, res->code, res->message);
}

static int compare(const char *what, const tch_buf *got, const uint8_t *want, size_t wantlen,
                   char *why, size_t whylen) {
    if (got->len != wantlen) {
        snprintf(why, whylen, "%s: got %zu bytes, want %zu", what, got->len, wantlen);
        return -1;
    }
    for (size_t i = 0; i < wantlen; i++) {
        if (got->ptr[i] != want[i]) {
            snprintf(why, whylen, "%s: content differs from byte %zu", what, i);
            return -1;
        }
    }
    return 0;
}

/* Checks a finished call that should have succeeded with code 0. */
static int expect_ok(const result *res, char *why, size_t whylen) {
    if (res->status != 0) {
        describe(res, why, whylen);
        return -1;
    }
    if (res->copy_failed) {
        snprintf(why, whylen, "out of memory copying the response");
        return -1;
    }
    if (res->code != 0) {
        snprintf(why, whylen, "application error response (code %u): %.*s", res->code,
                 (int)(res->arg3.len > 200 ? 200 : res->arg3.len), (const char *)res->arg3.ptr);
        return -1;
    }
    return 0;
}

/* ---- cases ---------------------------------------------------------------- */

typedef int (*case_fn)(run *r, const void *arg, char *why, size_t whylen);

static void run_case(run *r, const char *name, case_fn fn, const void *arg) {
    if (r->only && !strstr(name, r->only))
        return;
    char why[600] = "";
    uint64_t t0 = interop_now_ms();
    if (fn(r, arg, why, sizeof why) == 0) {
        r->passed++;
        printf("ok %s (%llu ms)\n", name, (unsigned long long)(interop_now_ms() - t0));
    } else {
        r->failed++;
        printf("FAIL %s: %s\n", name, why[0] ? why : "(no reason given)");
    }
    fflush(stdout);
}

/* Run last: the Node server drains (its graceful shutdown) while two calls
 * run on our connection. Node tells the connection with an error frame
 * about no call (Declined "draining: ..."): the running calls must still be
 * answered, and a new call is declined at once by us, never sent. */
static int case_drain(run *r, const void *argp, char *why, size_t whylen) {
    (void)argp;
    result *slow[2] = {result_new(r), result_new(r)};
    result *drain = result_new(r), *ping = result_new(r), *after = result_new(r);
    tch_error err;
    if (start_call(r, 1, "slow", TCH_SLICE_NULL, tch_slice_cstr("300"), 5000, slow[0], why, whylen) ||
        start_call(r, 1, "slow", TCH_SLICE_NULL, tch_slice_cstr("500"), 5000, slow[1], why, whylen) ||
        start_call(r, 1, "drain", TCH_SLICE_NULL, tch_slice_cstr("interop drain"), 5000, drain, why,
                   whylen))
        return -1;
    if (wait_all(r, &drain, 1, 5000) != 0) {
        snprintf(why, whylen, "no answer to drain");
        return -1;
    }
    if (expect_ok(drain, why, whylen) != 0)
        return -1;
    /* Node wrote the notice after that answer; its answer to a ping comes after both. */
    if (tch_channel_ping(r->ch[1], r->peer, 2000, on_ping, ping, &err) != 0 ||
        wait_all(r, &ping, 1, 3000) != 0 || ping->status != 0) {
        snprintf(why, whylen, "ping after the drain failed");
        return -1;
    }
    if (start_call(r, 1, "echo", TCH_SLICE_NULL, tch_slice_cstr("x"), 5000, after, why, whylen))
        return -1;
    if (wait_all(r, &after, 1, 3000) != 0) {
        snprintf(why, whylen, "no answer to the call after the drain");
        return -1;
    }
    if (after->status != TCH_EREMOTE || after->error_code != TCH_PCODE_DECLINED ||
        !strstr(after->message, "is draining: interop drain")) {
        describe(after, why, whylen);
        return -1;
    }
    if (wait_all(r, slow, 2, 5000) != 0) {
        snprintf(why, whylen, "the calls running at the drain were not answered");
        return -1;
    }
    for (int i = 0; i < 2; i++)
        if (expect_ok(slow[i], why, whylen) != 0 ||
            compare("slow arg3", &slow[i]->arg3, (const uint8_t *)"late", 4, why, whylen) != 0)
            return -1;
    return 0;
}

typedef struct echo_arg {
    size_t csum;
    size_t size;
    uint32_t seed;
} echo_arg;

static int case_echo(run *r, const void *argp, char *why, size_t whylen) {
    const echo_arg *a = argp;
    size_t n2 = a->size > 0 ? (a->size < 64 ? a->size : 64) : 0;
    uint8_t *a2 = make_payload(n2, a->seed + 100);
    uint8_t *a3 = make_payload(a->size, a->seed);
    int rc = -1;
    if (!a2 || !a3) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    result *res = result_new(r);
    if (start_call(r, a->csum, "echo", tch_slice_of(a2, n2), tch_slice_of(a3, a->size),
                   BIG_TIMEOUT_MS, res, why, whylen) != 0)
        goto out;
    if (wait_all(r, &res, 1, BIG_TIMEOUT_MS + 5000) != 0) {
        snprintf(why, whylen, "no callback within %u ms", BIG_TIMEOUT_MS + 5000);
        goto out;
    }
    if (expect_ok(res, why, whylen) != 0 || compare("arg2", &res->arg2, a2, n2, why, whylen) != 0 ||
        compare("arg3", &res->arg3, a3, a->size, why, whylen) != 0)
        goto out;
    rc = 0;
out:
    free(a2);
    free(a3);
    return rc;
}

static int case_big(run *r, const void *argp, char *why, size_t whylen) {
    (void)argp;
    const size_t n = 16 * MIB;
    result *res = result_new(r);
    if (start_call(r, 1, "big", TCH_SLICE_NULL, tch_slice_cstr("16777216"), BIG_TIMEOUT_MS, res,
                   why, whylen) != 0)
        return -1;
    if (wait_all(r, &res, 1, BIG_TIMEOUT_MS + 5000) != 0) {
        snprintf(why, whylen, "no callback within %u ms", BIG_TIMEOUT_MS + 5000);
        return -1;
    }
    if (expect_ok(res, why, whylen) != 0)
        return -1;
    if (res->arg3.len != n) {
        snprintf(why, whylen, "arg3: got %zu bytes, want %zu", res->arg3.len, n);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (res->arg3.ptr[i] != (uint8_t)(i % 251)) {
            snprintf(why, whylen, "arg3: byte %zu is %u, want %u", i, res->arg3.ptr[i],
                     (unsigned)(i % 251));
            return -1;
        }
    }
    return 0;
}

static int case_timeout(run *r, const void *argp, char *why, size_t whylen) {
    (void)argp;
    result *res = result_new(r);
    if (start_call(r, 1, "slow", TCH_SLICE_NULL, tch_slice_cstr("500"), 100, res, why, whylen) != 0)
        return -1;
    if (wait_all(r, &res, 1, 2000) != 0) {
        snprintf(why, whylen, "no callback within 2000 ms");
        return -1;
    }
    uint64_t elapsed = res->finished_ms - res->started_ms;
    /* Our deadline, or the Node server's TTL a millisecond sooner (it then
     * answers with a Timeout error frame): both are a timeout. */
    if ((res->status != TCH_ETIMEOUT && res->status != TCH_EREMOTE) ||
        res->error_code != TCH_PCODE_TIMEOUT) {
        char d[400];
        describe(res, d, sizeof d);
        snprintf(why, whylen, "want a timeout (ours or the server's), got %s", d);
        return -1;
    }
    if (elapsed > 450) {
        snprintf(why, whylen, "timeout reported only after %llu ms", (unsigned long long)elapsed);
        return -1;
    }
    printf("# timeout after %llu ms: %s\n", (unsigned long long)elapsed, res->message);
    return 0;
}

typedef struct error_arg {
    const char *endpoint;
    uint8_t want_code;
} error_arg;

static int case_error(run *r, const void *argp, char *why, size_t whylen) {
    const error_arg *a = argp;
    result *res = result_new(r);
    if (start_call(r, 1, a->endpoint, TCH_SLICE_NULL, tch_slice_cstr("x"), 5000, res, why,
                   whylen) != 0)
        return -1;
    if (wait_all(r, &res, 1, 7000) != 0) {
        snprintf(why, whylen, "no callback within 7000 ms");
        return -1;
    }
    if (res->status != TCH_EREMOTE || res->error_code != a->want_code) {
        char d[400];
        describe(res, d, sizeof d);
        snprintf(why, whylen, "want TCH_EREMOTE/%s, got %s", tch_proto_code_name(a->want_code), d);
        return -1;
    }
    printf("# %s: error frame %s: %s\n", a->endpoint, tch_proto_code_name(res->error_code),
           res->message);
    return 0;
}

/* 64 calls in flight at once on one connection: 48 echoes of different sizes
 * (fragments interleave) and 16 `slow 300`; all must match and the batch must
 * take far less than 16 x 300 ms. */
static int case_concurrent(run *r, const void *argp, char *why, size_t whylen) {
    (void)argp;
    enum { N = 64 };
    result *res[N];
    uint8_t *payloads[N] = {0};
    char names[N][16];
    int rc = -1;
    uint64_t t0 = interop_now_ms();
    for (int i = 0; i < N; i++) {
        res[i] = result_new(r);
        snprintf(names[i], sizeof names[i], "call-%d", i);
        int started;
        if (i % 4 == 3) {
            started = start_call(r, 1, "slow", TCH_SLICE_NULL, tch_slice_cstr("300"), 10000, res[i],
                                 why, whylen);
        } else {
            size_t n = (size_t)i * 4096 + 7;
            payloads[i] = make_payload(n, 1000u + (uint32_t)i);
            if (!payloads[i]) {
                snprintf(why, whylen, "out of memory");
                goto out;
            }
            started = start_call(r, 1, "echo", tch_slice_cstr(names[i]), tch_slice_of(payloads[i], n),
                                 10000, res[i], why, whylen);
        }
        if (started != 0)
            goto out;
    }
    if (wait_all(r, res, N, 15000) != 0) {
        snprintf(why, whylen, "not all 64 callbacks within 15000 ms");
        goto out;
    }
    int bad = 0;
    char first[500] = "";
    for (int i = 0; i < N; i++) {
        char w[450] = "";
        int ok;
        if (i % 4 == 3)
            ok = expect_ok(res[i], w, sizeof w) == 0 &&
                 compare("arg3", &res[i]->arg3, (const uint8_t *)"late", 4, w, sizeof w) == 0;
        else
            ok = expect_ok(res[i], w, sizeof w) == 0 &&
                 compare("arg2", &res[i]->arg2, (const uint8_t *)names[i], strlen(names[i]), w,
                         sizeof w) == 0 &&
                 compare("arg3", &res[i]->arg3, payloads[i], (size_t)i * 4096 + 7, w, sizeof w) == 0;
        if (!ok && bad++ == 0)
            snprintf(first, sizeof first, "call %d: %s", i, w);
    }
    uint64_t elapsed = interop_now_ms() - t0;
    if (bad) {
        snprintf(why, whylen, "%d of 64 calls failed; first: %s", bad, first);
        goto out;
    }
    if (elapsed > 2400) {
        snprintf(why, whylen, "64 calls took %llu ms: not served concurrently",
                 (unsigned long long)elapsed);
        goto out;
    }
    printf("# concurrent64: 64 calls in %llu ms\n", (unsigned long long)elapsed);
    rc = 0;
out:
    for (int i = 0; i < N; i++)
        free(payloads[i]);
    return rc;
}

/* ---- json cases --------------------------------------------------------- */

/* Waits for one call; describes a missing callback or a transport failure. */
static int wait_one(run *r, result *res, char *why, size_t whylen) {
    if (wait_all(r, &res, 1, 7000) != 0) {
        snprintf(why, whylen, "no callback within 7000 ms");
        return -1;
    }
    if (res->status != 0) {
        describe(res, why, whylen);
        return -1;
    }
    if (res->copy_failed) {
        snprintf(why, whylen, "out of memory copying the response");
        return -1;
    }
    return 0;
}

static void dump(const json_t *v, char *out, size_t n) {
    char *t = v ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
    snprintf(out, n, "%s", t ? t : "(null)");
    free(t);
}

/* The Node server listens on 127.0.0.1; we call it by the name localhost
 * (looked up without blocking), and the answer names the peer as called. */
static int case_by_name(run *r, const void *argp, char *why, size_t whylen) {
    (void)argp;
    const char *colon = strrchr(r->peer, ':');
    char named[64];
    snprintf(named, sizeof named, "localhost%s", colon ? colon : ":0");
    const char *numeric = r->peer;
    r->peer = named;
    result *res = result_new(r);
    int rc = start_call(r, 1, "echo", tch_slice_cstr("h"), tch_slice_cstr("by name"), 5000, res,
                        why, whylen);
    r->peer = numeric;
    if (rc != 0 || wait_one(r, res, why, whylen) != 0 ||
        compare("arg3", &res->arg3, (const uint8_t *)"by name", 7, why, whylen) != 0)
        return -1;
    if (strcmp(res->peer, named) != 0) {
        snprintf(why, whylen, "answer from \"%s\", want \"%s\"", res->peer, named);
        return -1;
    }
    return 0;
}

static int json_expect(const char *what, const json_t *got, const json_t *want, char *why,
                       size_t whylen) {
    if (got && json_equal(got, want))
        return 0;
    char g[200], w[200];
    dump(got, g, sizeof g);
    dump(want, w, sizeof w);
    snprintf(why, whylen, "%s: got %s, want %s", what, g, w);
    return -1;
}

typedef struct json_echo_arg {
    int with_headers;
} json_echo_arg;

static int case_json_echo(run *r, const void *argp, char *why, size_t whylen) {
    const json_echo_arg *a = argp;
    json_t *h = a->with_headers ? json_pack("{s:s,s:s}", "user", "ann", "x-trace", "t-1")
                                : NULL;
    json_t *b = a->with_headers
                    ? json_pack("{s:i,s:[i,i],s:s,s:{s:b}}", "n", 1, "list", 1, 2, "s",
                                "h\xc3\xa9llo", "nested", "ok", 1)
                    : json_string("just a string");
    json_t *want_h = h ? json_incref(h) : json_object();
    json_t *want_b = json_pack("{s:O,s:O}", "headers", want_h, "body", b);
    int rc = -1;
    result *res = result_new(r);
    if (!b || !want_h || !want_b || (a->with_headers && !h)) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    if (start_json(r, "json_echo", h, b, res, why, whylen) != 0 ||
        wait_one(r, res, why, whylen) != 0)
        goto out;
    if (res->code != 0) {
        char d[200];
        dump(res->jbody, d, sizeof d);
        snprintf(why, whylen, "code %u, want 0; body %s", res->code, d);
        goto out;
    }
    if (json_expect("response headers", res->jheaders, want_h, why, whylen) != 0 ||
        json_expect("response body", res->jbody, want_b, why, whylen) != 0)
        goto out;
    rc = 0;
out:
    json_decref(h);
    json_decref(b);
    json_decref(want_h);
    json_decref(want_b);
    return rc;
}

static int case_json_error(run *r, const void *argp, char *why, size_t whylen) {
    (void)argp;
    json_t *b = json_pack("{s:s}", "please", "fail");
    json_t *want = json_pack("{s:s}", "message", JSON_ERROR_MESSAGE);
    int rc = -1;
    result *res = result_new(r);
    if (!b || !want) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    if (start_json(r, "json_error", NULL, b, res, why, whylen) != 0 ||
        wait_one(r, res, why, whylen) != 0)
        goto out;
    if (res->code != 1) {
        snprintf(why, whylen, "call-res code %u, want 1 (application error)", res->code);
        goto out;
    }
    if (json_expect("error body", res->jbody, want, why, whylen) != 0)
        goto out;
    char d[200];
    dump(res->jheaders, d, sizeof d);
    printf("# json_error: code 1, headers %s\n", d);
    rc = 0;
out:
    json_decref(b);
    json_decref(want);
    return rc;
}

/* ---- thrift cases ------------------------------------------------------- */

/* A thrift call to completion. */
static result *thrift_do(run *r, const char *method, const char *key, const char *value,
                         const tch_kv *h, size_t nh, char *why, size_t whylen) {
    result *res = result_new(r);
    if (start_thrift(r, method, key, value, h, nh, res, why, whylen) != 0 ||
        wait_one(r, res, why, whylen) != 0)
        return NULL;
    return res;
}

static int expect_success(const char *what, const result *res, const char *want_value, char *why,
                          size_t whylen) {
    if (res->code != 0 || strcmp(res->tfield, want_value ? "success" : "(void)") != 0) {
        snprintf(why, whylen, "%s: code %u, outcome field %s; want code 0, %s", what, res->code,
                 res->tfield, want_value ? "success" : "void");
        return -1;
    }
    if (!want_value)
        return 0;
    tch_slice got = res->tvalue ? tch_thrift_value_bytes(res->tvalue) : TCH_SLICE_NULL;
    if (!tch_slice_eq_cstr(got, want_value)) {
        snprintf(why, whylen, "%s: value \"%.*s\", want \"%s\"", what, (int)got.len,
                 (const char *)got.ptr, want_value);
        return -1;
    }
    return 0;
}

static int expect_not_found(const result *res, const char *key, char *why, size_t whylen) {
    if (res->code != 1 || strcmp(res->tfield, "notFound") != 0) {
        snprintf(why, whylen, "code %u, outcome field %s; want code 1, notFound", res->code,
                 res->tfield);
        return -1;
    }
    const tch_thrift_value *k = res->tvalue ? tch_thrift_value_struct_get(res->tvalue, 1) : NULL;
    tch_slice got = k ? tch_thrift_value_bytes(k) : TCH_SLICE_NULL;
    if (!k || !tch_slice_eq_cstr(got, key)) {
        snprintf(why, whylen, "NotFoundError.key \"%.*s\"%s, want \"%s\"", (int)got.len,
                 (const char *)got.ptr, k ? "" : " (unset)", key);
        return -1;
    }
    return 0;
}

static int case_thrift_set_get(run *r, const void *argp, char *why, size_t whylen) {
    (void)argp;
    const char *key = "interop-c-key-1", *value = "value \xc3\xa9 1";
    result *res = thrift_do(r, "setValue", key, value, NULL, 0, why, whylen);
    if (!res || expect_success("setValue", res, NULL, why, whylen) != 0)
        return -1;
    res = thrift_do(r, "getValue", key, NULL, NULL, 0, why, whylen);
    if (!res || expect_success("getValue", res, value, why, whylen) != 0)
        return -1;
    return 0;
}

static int case_thrift_overwrite(run *r, const void *argp, char *why, size_t whylen) {
    (void)argp;
    const char *key = "interop-c-key-2";
    result *res = thrift_do(r, "setValue", key, "first", NULL, 0, why, whylen);
    if (!res || expect_success("setValue first", res, NULL, why, whylen) != 0)
        return -1;
    res = thrift_do(r, "setValue", key, "second", NULL, 0, why, whylen);
    if (!res || expect_success("setValue second", res, NULL, why, whylen) != 0)
        return -1;
    res = thrift_do(r, "getValue", key, NULL, NULL, 0, why, whylen);
    if (!res || expect_success("getValue", res, "second", why, whylen) != 0)
        return -1;
    return 0;
}

static int case_thrift_not_found(run *r, const void *argp, char *why, size_t whylen) {
    (void)argp;
    const char *key = "interop-c-no-such-key";
    result *res = thrift_do(r, "getValue", key, NULL, NULL, 0, why, whylen);
    if (!res || expect_not_found(res, key, why, whylen) != 0)
        return -1;
    return 0;
}

/* Same headers back, compared by key (Node keeps them in an object). */
static int expect_headers(const char *what, const result *res, const tch_kv *want,
                          size_t nwant, char *why, size_t whylen) {
    tch_kv *got = NULL;
    size_t n = 0;
    tch_error err = {0};
    if (tch_thrift_headers_decode(tch_buf_slice(&res->theaders), &got, &n, &err) != 0) {
        snprintf(why, whylen, "%s: response headers do not decode: %s", what, err.msg);
        return -1;
    }
    int rc = 0;
    if (n != nwant) {
        snprintf(why, whylen, "%s: %zu response headers, want %zu", what, n, nwant);
        rc = -1;
    }
    for (size_t i = 0; rc == 0 && i < nwant; i++) {
        size_t j = 0;
        while (j < n && !tch_slice_eq(got[j].key, want[i].key))
            j++;
        if (j == n || !tch_slice_eq(got[j].value, want[i].value)) {
            snprintf(why, whylen, "%s: header \"%.*s\" %s", what, (int)want[i].key.len,
                     (const char *)want[i].key.ptr, j == n ? "missing" : "has another value");
            rc = -1;
        }
    }
    free(got);
    return rc;
}

static int case_thrift_headers(run *r, const void *argp, char *why, size_t whylen) {
    (void)argp;
    const tch_kv h[] = {
        {tch_slice_cstr("user"), tch_slice_cstr("ann")},
        {tch_slice_cstr("x-trace"), tch_slice_cstr("t-1")},
        {tch_slice_cstr("empty"), tch_slice_cstr("")},
        {tch_slice_cstr("utf8"), tch_slice_cstr("\xc3\xa9t\xc3\xa9")},
    };
    const size_t nh = sizeof h / sizeof h[0];
    const char *key = "interop-c-key-3";
    result *res = thrift_do(r, "setValue", key, "v3", h, nh, why, whylen);
    if (!res || expect_success("setValue", res, NULL, why, whylen) != 0 ||
        expect_headers("setValue", res, h, nh, why, whylen) != 0)
        return -1;
    res = thrift_do(r, "getValue", key, NULL, h, nh, why, whylen);
    if (!res || expect_success("getValue", res, "v3", why, whylen) != 0 ||
        expect_headers("getValue", res, h, nh, why, whylen) != 0)
        return -1;
    res = thrift_do(r, "getValue", "interop-c-missing-3", NULL, h, nh, why, whylen);
    if (!res || expect_not_found(res, "interop-c-missing-3", why, whylen) != 0 ||
        expect_headers("getValue notFound", res, h, nh, why, whylen) != 0)
        return -1;
    res = thrift_do(r, "getValue", key, NULL, NULL, 0, why, whylen);
    if (!res || expect_headers("getValue without headers", res, NULL, 0, why, whylen) != 0)
        return -1;
    return 0;
}

/* ---- retries across peers ----------------------------------------------- */

/* A loopback port nobody listens on (bound, then closed). */
static int dead_port(char *hp, size_t n) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0)
        return -1;
    struct sockaddr_in sin = {0};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sin;
    int rc = bind(s, (struct sockaddr *)&sin, sizeof sin) == 0 &&
                     getsockname(s, (struct sockaddr *)&sin, &len) == 0
                 ? 0
                 : -1;
    close(s);
    if (rc == 0)
        snprintf(hp, n, "127.0.0.1:%d", ntohs(sin.sin_port));
    return rc;
}

static tch_channel *peer_channel(run *r, size_t slot, const char *const *peers, size_t npeers,
                                 char *why, size_t whylen) {
    tch_channel *ch;
    tch_error nerr;
    if (tch_channel_new(r->base, "interop-c-retry", NULL, &ch, &nerr) != 0) {
        snprintf(why, whylen, "%s", nerr.msg);
        return NULL;
    }
    r->retry_ch[slot] = ch;
    for (size_t i = 0; i < npeers; i++) {
        tch_error err = {0};
        if (tch_channel_add_peer(ch, peers[i], &err) != 0) {
            snprintf(why, whylen, "tch_channel_add_peer %s: %s", peers[i], err.msg);
            return NULL;
        }
    }
    return ch;
}

static int case_retry_two_peers(run *r, const void *argp, char *why, size_t whylen) {
    (void)argp;
    char dead[64];
    if (dead_port(dead, sizeof dead) != 0) {
        snprintf(why, whylen, "cannot find a free port");
        return -1;
    }
    const char *peers[] = {dead, r->peer};
    tch_channel *ch = peer_channel(r, 0, peers, 2, why, whylen);
    if (!ch)
        return -1;
    /* Not a pass condition (peer choice is the channel's business), but says
     * whether the dead peer is in play: the same calls on a fresh channel with
     * the same peers, without retries. */
    tch_channel *probe = peer_channel(r, 2, peers, 2, why, whylen);
    if (!probe)
        return -1;
    int refused = 0;
    for (int i = 0; i < RETRY_CALLS; i++) {
        tch_call_opts o = {0};
        o.service = SERVICE;
        o.endpoint = tch_slice_cstr("echo");
        o.arg3 = tch_slice_cstr("no-retry");
        o.timeout_ms = 5000;
        o.retry_on = TCH_RETRY_NEVER;
        result *res = result_new(r);
        if (tch_channel_call(probe, &o, on_response, res, NULL) != 0 ||
            wait_all(r, &res, 1, 7000) != 0)
            break;
        refused += res->status != 0;
    }
    printf("# same peers with retry_on never: %d of %d calls failed (went to the dead peer)\n",
           refused, RETRY_CALLS);
    uint64_t worst = 0;
    for (int i = 0; i < RETRY_CALLS; i++) {
        char body[32];
        snprintf(body, sizeof body, "retry-%d", i);
        tch_call_opts o = {0};
        o.service = SERVICE;
        o.endpoint = tch_slice_cstr("echo");
        o.arg3 = tch_slice_cstr(body);
        o.timeout_ms = 5000; /* no host_port: the channel picks among its peers */
        result *res = result_new(r);
        tch_error err = {0};
        if (tch_channel_call(ch, &o, on_response, res, &err) != 0) {
            snprintf(why, whylen, "call %d: tch_channel_call: %s", i, err.msg);
            return -1;
        }
        if (wait_all(r, &res, 1, 7000) != 0) {
            snprintf(why, whylen, "call %d: no callback within 7000 ms", i);
            return -1;
        }
        char w[450];
        if (expect_ok(res, w, sizeof w) != 0 ||
            compare("arg3", &res->arg3, (const uint8_t *)body, strlen(body), w, sizeof w) != 0) {
            snprintf(why, whylen, "call %d of %d (peers %s, %s): %s", i + 1, RETRY_CALLS, dead,
                     r->peer, w);
            return -1;
        }
        if (strcmp(res->peer, r->peer) != 0) {
            snprintf(why, whylen, "call %d answered by \"%s\", want the Node server %s", i + 1,
                     res->peer, r->peer);
            return -1;
        }
        if (res->finished_ms - res->started_ms > worst)
            worst = res->finished_ms - res->started_ms;
    }
    printf("# retry: %d/%d calls answered by %s (dead peer %s); slowest %llu ms\n", RETRY_CALLS,
           RETRY_CALLS, r->peer, dead, (unsigned long long)worst);
    return 0;
}

static int case_retry_never_dead(run *r, const void *argp, char *why, size_t whylen) {
    (void)argp;
    char dead[64];
    if (dead_port(dead, sizeof dead) != 0) {
        snprintf(why, whylen, "cannot find a free port");
        return -1;
    }
    const char *peers[] = {dead};
    tch_channel *ch = peer_channel(r, 1, peers, 1, why, whylen);
    if (!ch)
        return -1;
    tch_call_opts o = {0};
    o.service = SERVICE;
    o.endpoint = tch_slice_cstr("echo");
    o.arg3 = tch_slice_cstr("never");
    o.timeout_ms = 5000;
    o.retry_on = TCH_RETRY_NEVER;
    result *res = result_new(r);
    tch_error err = {0};
    if (tch_channel_call(ch, &o, on_response, res, &err) != 0) {
        snprintf(why, whylen, "tch_channel_call: %s", err.msg);
        return -1;
    }
    if (wait_all(r, &res, 1, 7000) != 0) {
        snprintf(why, whylen, "no callback within 7000 ms");
        return -1;
    }
    if (res->status == 0 || res->error_code != TCH_PCODE_NETWORK) {
        char d[400];
        describe(res, d, sizeof d);
        snprintf(why, whylen, "want a network error, got %s", d);
        return -1;
    }
    printf("# retry never, dead peer %s: status %s, error_code %s: %s\n", dead,
           tch_strerror(res->status), tch_proto_code_name(res->error_code), res->message);
    return 0;
}

/* ---- main ----------------------------------------------------------------- */

static int usage(const char *bad) {
    fprintf(stderr,
            "c_client_node_server: bad argument '%s'\n"
            "usage: c_client_node_server [--node PATH] [--server-js PATH] [--only SUBSTRING]\n"
            "                            [--server-checksum none|crc32|farmhash|crc32c] [--idl PATH]\n",
            bad);
    return 2;
}

int main(int argc, char **argv) {
    const char *node_arg = "node";
    const char *script = TCH_NODE_SERVER_JS;
    const char *only = NULL;
    const char *server_checksum = NULL;
    const char *idl_path = TCH_KV_IDL;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            return usage(argv[i]);
        if (!strcmp(argv[i], "--node"))
            node_arg = argv[++i];
        else if (!strcmp(argv[i], "--server-js"))
            script = argv[++i];
        else if (!strcmp(argv[i], "--only"))
            only = argv[++i];
        else if (!strcmp(argv[i], "--server-checksum"))
            server_checksum = argv[++i];
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

    tch_thrift_idl *idl = NULL;
    tch_error lerr = {0};
    if (tch_thrift_load(idl_path, &idl, &lerr) != 0) {
        printf("FAIL load IDL: %s\n0 passed, 1 failed\n", lerr.msg);
        return 1;
    }

    node_child nc = {0, -1};
    char peer[256];
    const char *extra[] = {"--idl", idl_path, NULL, NULL, NULL};
    if (server_checksum) {
        extra[2] = "--checksum";
        extra[3] = server_checksum;
    }
    if (node_start(node, script, extra, &nc, peer, sizeof peer) != 0) {
        node_stop(&nc);
        printf("0 passed, 1 failed\n");
        return 1;
    }
    printf("# node server.js listening on %s\n", peer);

    run r = {0};
    r.peer = peer;
    r.only = only;
    r.idl = idl;
    r.kv = tch_thrift_idl_find_service(idl, "KeyValue");
    if (!r.kv) {
        printf("FAIL load IDL: %s has no service KeyValue\n0 passed, 1 failed\n", idl_path);
        node_stop(&nc);
        return 1;
    }
    r.base = event_base_new();
    if (!r.base) {
        fprintf(stderr, "event_base_new failed\n");
        node_stop(&nc);
        return 1;
    }
    for (size_t c = 0; c < NCHECKSUMS; c++) {
        tch_channel_options o = {0};
        o.checksum_type = checksums[c].type;
        o.default_timeout_ms = 5000;
        tch_error err;
        if (tch_channel_new(r.base, "interop-c-client", &o, &r.ch[c], &err) != 0) {
            fprintf(stderr, "%s (checksum %s)\n", err.msg, checksums[c].name);
            node_stop(&nc);
            return 1;
        }
    }

    static const size_t sizes[] = {0, 100, MIB, 16 * MIB};
    static const char *size_names[] = {"0B", "100B", "1MiB", "16MiB"};
    echo_arg echo_args[NCHECKSUMS][4];
    for (size_t c = 0; c < NCHECKSUMS; c++) {
        for (size_t s = 0; s < 4; s++) {
            char name[64];
            snprintf(name, sizeof name, "echo %s %s", checksums[c].name, size_names[s]);
            echo_args[c][s] = (echo_arg){c, sizes[s], (uint32_t)(c * 10 + s)};
            run_case(&r, name, case_echo, &echo_args[c][s]);
        }
    }
    run_case(&r, "big 16MiB", case_big, NULL);
    run_case(&r, "timeout slow 500 with timeout 100", case_timeout, NULL);
    static const error_arg unknown = {"no-such-endpoint", TCH_PCODE_BAD_REQUEST};
    static const error_arg busy = {"busy", TCH_PCODE_BUSY};
    run_case(&r, "unknown endpoint -> BadRequest", case_error, &unknown);
    run_case(&r, "busy -> Busy", case_error, &busy);
    run_case(&r, "concurrent64", case_concurrent, NULL);
    run_case(&r, "ping answered by the Node peer", case_ping, NULL);
    run_case(&r, "echo to localhost:PORT (a host name)", case_by_name, NULL);

    static const json_echo_arg with_h = {1}, without_h = {0};
    run_case(&r, "json echo with headers", case_json_echo, &with_h);
    run_case(&r, "json echo without headers", case_json_echo, &without_h);
    run_case(&r, "json_error -> code 1 with {message}", case_json_error, NULL);
    run_case(&r, "thrift setValue then getValue", case_thrift_set_get, NULL);
    run_case(&r, "thrift setValue overwrites", case_thrift_overwrite, NULL);
    run_case(&r, "thrift getValue missing -> NotFoundError notFound", case_thrift_not_found, NULL);
    run_case(&r, "thrift headers round trip", case_thrift_headers, NULL);
    run_case(&r, "retry peers [dead, node] x10 without host_port", case_retry_two_peers, NULL);
    run_case(&r, "retry never, only the dead peer -> network error", case_retry_never_dead, NULL);
    run_case(&r, "drain: running calls answered, new ones declined (last)", case_drain, NULL);

    for (size_t c = 0; c < NCHECKSUMS; c++)
        tch_channel_free(r.ch[c]);
    for (size_t c = 0; c < 3; c++)
        if (r.retry_ch[c])
            tch_channel_free(r.retry_ch[c]);
    while (r.all) {
        result *next = r.all->next_all;
        tch_buf_free(&r.all->arg2);
        tch_buf_free(&r.all->arg3);
        tch_buf_free(&r.all->theaders);
        json_decref(r.all->jheaders);
        json_decref(r.all->jbody);
        tch_thrift_value_free(r.all->tvalue);
        free(r.all);
        r.all = next;
    }
    event_base_free(r.base);
    node_stop(&nc);
    tch_thrift_idl_free(idl);

    if (r.passed + r.failed == 0) {
        fprintf(stderr, "no case matches --only %s\n", only ? only : "");
        return 2;
    }
    printf("%d passed, %d failed\n", r.passed, r.failed);
    return r.failed ? 1 : 0;
}
