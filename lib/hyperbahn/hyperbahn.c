/* Hyperbahn advertising, as npm tchannel 4.0.1's hyperbahn-client.js does it.
 *
 * Owns: the router list (added to the channel as peers, so calls that give
 * no host:port go through the routers), the ad request body, two timers on
 * the channel's event_base (next advertise, first-advertise deadline) and at
 * most one advertise call in flight. Calls: the channel (listen, add_peer, tch_local_ip_towards)
 * and the json scheme (tch_json_call) only.
 *
 * What is matched from Node:
 *  - request: service "hyperbahn", endpoint "ad", as=json, cn = the caller
 *    (the channel's name), body {"services":[{"cost":0,"serviceName":S}]},
 *    500 ms per request, one retry, no parent span;
 *  - after a success the next ad goes out after interval + U[0, interval)
 *    - interval/2 (Node's getHealthyRetryTime: fuzz = interval);
 *  - after a failure (error frame, timeout, network error, or an
 *    application error "ok: false") the next ad goes out after
 *    200, 1000, 1000, 2000, 3000, 5000, 8000 then 10000 ms, indexed by the
 *    number of attempts since the last success (getErrorRetryTime).
 * Node picks the router through its "hyperbahn" sub-channel, whose peers are
 * exactly the routers. Our peers are channel-wide (the caller may have added
 * others), so each attempt names its router: attempts rotate through the
 * list from a random start.
 *
 * Node's hardFail mode destroys the client when the first advertisement
 * times out; its default mode keeps trying. We report the timeout to the
 * callback and keep trying in the background; tch_hyperbahn_free stops. */
#include <tchannel/hyperbahn.h>
#include <tchannel/json.h>

#include "alloc.h"

#include <event2/event.h>
#include <event2/event_struct.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HB_DEFAULT_FIRST_TIMEOUT_MS 30000u
#define HB_DEFAULT_INTERVAL_MS 60000u
#define HB_REQUEST_TIMEOUT_MS 500u /* Node's DEFAULT_TIMEOUT */
#define HB_ROUTER_FILE_MAX (1u << 20)

static const uint32_t error_retry_ms[] = {200, 1000, 1000, 2000, 3000, 5000, 8000, 10000};

typedef struct ad_call ad_call;

struct tch_hyperbahn {
    tch_channel *ch;
    char **routers;
    size_t nrouters;
    size_t next_router;
    json_t *body; /* the ad request body, built once */
    char *service_list; /* "a, b" for messages */
    uint32_t first_timeout_ms;
    uint32_t interval_ms;
    tch_advertise_cb cb;
    void *ud;
    int first_reported; /* cb has run */
    int attempts;       /* since the last success, as Node's attemptCounter */
    ad_call *inflight;
    struct event next_ad;
    struct event first_deadline;
    uint64_t rng; /* jitter and router choice: spread, not secrecy */
    char last_error[TCH_ERROR_MSG_MAX];
};

/* One advertise call. It outlives the hyperbahn when freed mid-call: the
 * call's callback then only frees this (hb is NULL). */
struct ad_call {
    const tch_allocator *alloc; /* the channel's (hb may be gone) */
    tch_hyperbahn *hb;
    char router[64];
    int is_retry; /* the one retry, sent to another router */
};

static void advertise_now(tch_hyperbahn *hb);
static int send_ad(tch_hyperbahn *hb, int is_retry);

/* ---- timers --------------------------------------------------------------- */

static void timer_in(struct event *ev, uint32_t ms) {
    struct timeval tv = {ms / 1000, (long)(ms % 1000) * 1000};
    evtimer_add(ev, &tv);
}

static uint64_t hb_random(tch_hyperbahn *hb) {
    uint64_t x = hb->rng ? hb->rng : 0x9E3779B97F4A7C15ull; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    hb->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Node: interval + floor(random * interval) - interval / 2. */
static uint32_t healthy_delay_ms(tch_hyperbahn *hb) {
    uint64_t fuzz = hb->interval_ms;
    uint64_t r = fuzz ? hb_random(hb) % fuzz : 0;
    uint64_t ms = hb->interval_ms + r - fuzz / 2;
    return ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

static uint32_t error_delay_ms(const tch_hyperbahn *hb) {
    size_t n = sizeof error_retry_ms / sizeof error_retry_ms[0];
    size_t i = hb->attempts > 0 ? (size_t)hb->attempts - 1 : 0;
    return error_retry_ms[i < n ? i : n - 1];
}

static void on_next_ad(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    advertise_now(arg);
}

/* The first advertise did not succeed in time: say so, keep trying. */
static void on_first_deadline(evutil_socket_t fd, short what, void *arg) {
    tch_hyperbahn *hb = arg;
    (void)fd, (void)what;
    if (hb->first_reported)
        return;
    hb->first_reported = 1;
    char msg[TCH_ERROR_MSG_MAX + 200];
    snprintf(msg, sizeof msg,
             "hyperbahn: advertising %s timed out after %u ms (%d attempts); last error: %s",
             hb->service_list, hb->first_timeout_ms, hb->attempts,
             hb->last_error[0] ? hb->last_error : "none (no answer yet)");
    hb->cb(TCH_ETIMEOUT, msg, hb->ud); /* last: cb may free hb */
}

/* ---- advertising ------------------------------------------------------------ */

static void advertise_failed(tch_hyperbahn *hb, const char *router, const char *why) {
    int n = snprintf(hb->last_error, sizeof hb->last_error, "router %s: %s", router, why);
    if (n >= (int)sizeof hb->last_error) /* a long reason: keep its start, show it was cut */
        memcpy(hb->last_error + sizeof hb->last_error - 4, "...", 4);
    timer_in(&hb->next_ad, error_delay_ms(hb));
}

static void advertise_succeeded(tch_hyperbahn *hb) {
    hb->attempts = 0;
    hb->last_error[0] = '\0';
    timer_in(&hb->next_ad, healthy_delay_ms(hb));
    if (hb->first_reported)
        return;
    hb->first_reported = 1;
    event_del(&hb->first_deadline);
    hb->cb(0, "", hb->ud); /* last: cb may free hb */
}

/* As Node's ad request (retry limit 1, routers as peers, tried ones
 * skipped): a retryable failure is tried once more on the next router,
 * when there is another one. */
static int retry_on_another_router(tch_hyperbahn *hb, const ad_call *ac,
                                   const tch_json_response *res) {
    /* what the channel retries by default (retry_on "c"): Busy and
     * Declined, and network errors */
    uint8_t code = res->error_code;
    int retryable = res->status != 0 && (tch_proto_code_retryability(code) == TCH_RETRYABLE ||
                                          code == TCH_PCODE_NETWORK);
    if (!retryable || ac->is_retry || hb->nrouters < 2)
        return 0;
    send_ad(hb, 1); /* a failure to start it is reported there */
    return 1;
}

static void on_ad_response(const tch_json_response *res, void *ud) {
    ad_call *ac = ud;
    tch_hyperbahn *hb = ac->hb;
    char router[64];
    snprintf(router, sizeof router, "%s", ac->router);
    if (!hb) { /* freed while the call was in flight */
        tch__free(ac->alloc, ac);
        return;
    }
    hb->inflight = NULL;
    int retried = retry_on_another_router(hb, ac, res);
    tch__free(ac->alloc, ac);
    if (retried)
        return;
    if (res->status != 0) {
        char why[TCH_ERROR_MSG_MAX];
        snprintf(why, sizeof why, "%s (%s)", res->message ? res->message : "",
                 tch_proto_code_name(res->error_code));
        advertise_failed(hb, router, why);
    } else if (res->code != 0) { /* Node: result.ok === false */
        char *body = res->body ? json_dumps(res->body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        char why[TCH_ERROR_MSG_MAX];
        snprintf(why, sizeof why, "application error: %.400s", body ? body : "");
        free(body);
        advertise_failed(hb, router, why);
    } else {
        advertise_succeeded(hb);
    }
}

static const char *pick_router(tch_hyperbahn *hb) {
    return hb->routers[hb->next_router++ % hb->nrouters];
}

static void advertise_now(tch_hyperbahn *hb) {
    if (hb->inflight) /* cannot happen with one timer; keep it one call */
        return;
    hb->attempts++;
    send_ad(hb, 0);
}

/* Sends one ad to the next router; a failure to start it is reported (and
 * the next ad scheduled) by advertise_failed. */
static int send_ad(tch_hyperbahn *hb, int is_retry) {
    const tch_allocator *a = tch_channel_allocator(hb->ch);
    ad_call *ac = tch__calloc(a, 1, sizeof *ac);
    const char *router = pick_router(hb);
    if (!ac) {
        advertise_failed(hb, router, "out of memory");
        return TCH_ENOMEM;
    }
    ac->alloc = a;
    ac->hb = hb;
    ac->is_retry = is_retry;
    snprintf(ac->router, sizeof ac->router, "%s", router);
    tch_trace no_parent = {0}; /* Node: hasNoParent, trace: false */
    tch_kv cn = {tch_slice_cstr("cn"), tch_slice_cstr(tch_channel_name(hb->ch))};
    tch_call_opts o = {
        .service = "hyperbahn",
        .endpoint = tch_slice_cstr("ad"),
        .host_port = ac->router,
        .timeout_ms = HB_REQUEST_TIMEOUT_MS,
        .headers = &cn,
        .nheaders = 1,
        .trace = &no_parent,
        .retry_limit = TCH_RETRY_LIMIT_NONE, /* the retry goes to another router: ours */
    };
    tch_error err;
    if (tch_json_call(hb->ch, &o, NULL, hb->body, on_ad_response, ac, &err) != 0) {
        tch__free(a, ac);
        advertise_failed(hb, router, err.msg);
        return err.code ? err.code : TCH_EIO;
    }
    hb->inflight = ac;
    return 0;
}

/* ---- setup -------------------------------------------------------------------- */

/* Checks and keeps one router; they become channel peers only once every
 * option was accepted (a rejected call leaves the channel as it was). */
static int add_router(tch_hyperbahn *hb, const char *hp, tch_error *err) {
    int rc = tch_host_port_check(hp, err); /* a name is looked up when called */
    if (rc)
        return rc;
    const tch_allocator *a = tch_channel_allocator(hb->ch);
    char **r = tch__realloc(a, hb->routers, (hb->nrouters + 1) * sizeof *r);
    if (!r)
        return tch_error_set(err, TCH_ENOMEM, "out of memory");
    hb->routers = r;
    if (!(r[hb->nrouters] = tch__strdup(a, hp)))
        return tch_error_set(err, TCH_ENOMEM, "out of memory");
    hb->nrouters++;
    return 0;
}

static int add_peers(tch_hyperbahn *hb, tch_error *err) {
    for (size_t i = 0; i < hb->nrouters; i++) {
        int rc = tch_channel_add_peer(hb->ch, hb->routers[i], err);
        if (rc)
            return rc;
    }
    return 0;
}

static int read_file(const char *path, tch_buf *out, tch_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return tch_error_set(err, errno == ENOENT ? TCH_ENOTFOUND : TCH_EIO,
                             "hyperbahn: router file %s: %s", path, strerror(errno));
    int rc = 0;
    char chunk[4096];
    size_t n;
    while (!rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (out->len + n > HB_ROUTER_FILE_MAX)
            rc = tch_error_set(err, TCH_ETOOBIG, "hyperbahn: router file %s: over %u bytes",
                               path, HB_ROUTER_FILE_MAX);
        else if (tch_buf_append(out, chunk, n))
            rc = tch_error_set(err, TCH_ENOMEM, "out of memory");
    }
    if (!rc && ferror(f))
        rc = tch_error_set(err, TCH_EIO, "hyperbahn: router file %s: read failed", path);
    fclose(f);
    return rc;
}

/* The router file is a JSON list of "host:port" strings (as Node's
 * hostPortFile). */
static int load_router_file(tch_hyperbahn *hb, const char *path, tch_error *err) {
    tch_buf text = {.alloc = tch_channel_allocator(hb->ch)};
    int rc = read_file(path, &text, err);
    json_t *list = NULL;
    if (!rc) {
        json_error_t je;
        list = json_loadb((const char *)text.ptr, text.len, 0, &je);
        if (!list)
            rc = tch_error_set(err, TCH_EPARSE,
                               "hyperbahn: router file %s: not valid JSON: %s at line %d column %d",
                               path, je.text, je.line, je.column);
    }
    tch_buf_free(&text);
    if (!rc && !json_is_array(list))
        rc = tch_error_set(err, TCH_EPARSE,
                           "hyperbahn: router file %s: expected a JSON list of \"host:port\" strings",
                           path);
    for (size_t i = 0; !rc && i < json_array_size(list); i++) {
        const char *hp = json_string_value(json_array_get(list, i));
        if (!hp)
            rc = tch_error_set(err, TCH_EPARSE,
                               "hyperbahn: router file %s: entry %zu is not a \"host:port\" string",
                               path, i);
        else if ((rc = add_router(hb, hp, err)) != 0)
            tch_error_wrap(err, "hyperbahn: router file %s, entry %zu", path, i);
    }
    if (!rc && hb->nrouters == 0)
        rc = tch_error_set(err, TCH_EINVAL, "hyperbahn: router file %s: the list is empty", path);
    json_decref(list);
    return rc;
}

static int set_routers(tch_hyperbahn *hb, const tch_hyperbahn_options *o, tch_error *err) {
    int have_list = o->routers && o->nrouters > 0;
    int have_file = o->router_file && *o->router_file;
    if (have_list && have_file)
        return tch_error_set(err, TCH_EINVAL,
                             "hyperbahn: give routers or router_file, not both");
    if (!have_list && !have_file)
        return tch_error_set(err, TCH_EINVAL,
                             "hyperbahn: no routers: give routers or router_file");
    if (have_file)
        return load_router_file(hb, o->router_file, err);
    for (size_t i = 0; i < o->nrouters; i++) {
        if (!o->routers[i])
            return tch_error_set(err, TCH_EINVAL, "hyperbahn: routers[%zu] is NULL", i);
        int rc = add_router(hb, o->routers[i], err);
        if (rc) {
            tch_error_wrap(err, "hyperbahn: routers[%zu]", i);
            return rc;
        }
    }
    return 0;
}

static int build_body(tch_hyperbahn *hb, const tch_hyperbahn_options *o, tch_error *err) {
    const char *self[1] = {tch_channel_name(hb->ch)};
    const char *const *names = o->services && o->nservices ? o->services : self;
    size_t n = o->services && o->nservices ? o->nservices : 1;
    json_t *list = json_array();
    const tch_allocator *a = tch_channel_allocator(hb->ch);
    tch_buf msg = {.alloc = a};
    int rc = list ? 0 : TCH_ENOMEM;
    for (size_t i = 0; !rc && i < n; i++) {
        if (!names[i] || !*names[i] || strlen(names[i]) > 255) {
            rc = tch_error_set(err, TCH_EINVAL, "hyperbahn: services[%zu] is empty or too long", i);
            break;
        }
        if (json_array_append_new(list, json_pack("{s:i,s:s}", "cost", 0, "serviceName", names[i])) ||
            (i && tch_buf_append(&msg, ", ", 2)) || tch_buf_append(&msg, names[i], strlen(names[i])))
            rc = TCH_ENOMEM;
    }
    if (!rc && (hb->body = json_pack("{s:o}", "services", list)) == NULL)
        rc = TCH_ENOMEM;
    else if (rc)
        json_decref(list);
    if (!rc && !(hb->service_list = tch_slice_strdup_with(a, tch_buf_slice(&msg))))
        rc = TCH_ENOMEM;
    tch_buf_free(&msg);
    if (rc == TCH_ENOMEM)
        tch_error_set(err, rc, "out of memory");
    return rc;
}

static int ensure_listening(tch_hyperbahn *hb, tch_error *err) {
    if (tch_channel_is_listening(hb->ch))
        return 0;
    /* The router connects back to the host:port we announce: listen on the
     * interface that reaches the first router, not on a loopback address it
     * cannot reach (when the router cannot be looked up, advertising fails
     * later and says why). */
    char ip[TCH_IP_TEXT_MAX], hp[TCH_IP_TEXT_MAX + 8];
    if (tch_local_ip_towards(hb->routers[0], ip, sizeof ip) != 0)
        snprintf(ip, sizeof ip, "127.0.0.1");
    snprintf(hp, sizeof hp, "%s:0", ip);
    int rc = tch_channel_listen(hb->ch, hp, err);
    if (rc)
        tch_error_wrap(err, "hyperbahn: listening on %s before advertising", hp);
    return rc;
}

static void hb_destroy(tch_hyperbahn *hb) {
    const tch_allocator *a = tch_channel_allocator(hb->ch); /* freed before the channel */
    for (size_t i = 0; i < hb->nrouters; i++)
        tch__free(a, hb->routers[i]);
    tch__free(a, hb->routers);
    json_decref(hb->body);
    tch__free(a, hb->service_list);
    tch__free(a, hb);
}

int tch_hyperbahn_advertise(tch_channel *ch, const tch_hyperbahn_options *opts,
                            tch_advertise_cb cb, void *ud, tch_hyperbahn **out,
                            tch_error *err) {
    if (!ch || !opts || !cb || !out)
        return tch_error_set(err, TCH_EINVAL,
                             "hyperbahn: channel, options, callback and out are required");
    *out = NULL;
    tch_hyperbahn *hb = tch__calloc(tch_channel_allocator(ch), 1, sizeof *hb);
    if (!hb)
        return tch_error_set(err, TCH_ENOMEM, "out of memory");
    hb->ch = ch;
    hb->cb = cb;
    hb->ud = ud;
    hb->first_timeout_ms = opts->first_timeout_ms ? opts->first_timeout_ms : HB_DEFAULT_FIRST_TIMEOUT_MS;
    hb->interval_ms = opts->interval_ms ? opts->interval_ms : HB_DEFAULT_INTERVAL_MS;
    tch_error e; /* always collected: the helpers wrap messages in place */
    int rc = set_routers(hb, opts, &e);
    if (!rc)
        rc = build_body(hb, opts, &e);
    if (!rc)
        rc = ensure_listening(hb, &e);
    if (!rc)
        rc = add_peers(hb, &e);
    if (rc) {
        hb_destroy(hb);
        if (err)
            *err = e;
        return rc;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    hb->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)hb;
    hb->next_router = (size_t)(hb_random(hb) % hb->nrouters);
    evtimer_assign(&hb->next_ad, tch_channel_base(ch), on_next_ad, hb);
    evtimer_assign(&hb->first_deadline, tch_channel_base(ch), on_first_deadline, hb);
    timer_in(&hb->first_deadline, hb->first_timeout_ms);
    advertise_now(hb); /* its outcome arrives from the loop, never from here */
    *out = hb;
    return 0;
}

void tch_hyperbahn_free(tch_hyperbahn *hb) {
    if (!hb)
        return;
    event_del(&hb->next_ad);
    event_del(&hb->first_deadline);
    if (hb->inflight) /* its callback will find hb gone */
        hb->inflight->hb = NULL;
    hb_destroy(hb);
}
