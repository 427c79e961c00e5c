/* A span reporter that posts Zipkin v2 JSON arrays over HTTP (libevent's
 * evhttp client). Spans wait in a bounded queue as JSON text; a batch is
 * posted when it is full or when the oldest span has waited the flush
 * interval, one POST at a time. A full queue drops and counts: reporting
 * never blocks a call and never grows without bound. */
#include <tchannel/trace.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ZIPKIN_DEFAULT_PATH "/api/v2/spans"

struct tch_zipkin_reporter {
    struct event_base *base;
    tch_zipkin_options opts;
    char *url, *host, *path;
    int port;
    struct evdns_base *dns; /* only for a host name */
    struct evhttp_connection *conn;
    char **queue;           /* ring of span JSON texts */
    size_t head, n;
    size_t in_flight;       /* spans in the POST being answered; 0: none */
    struct evhttp_request *req;
    struct event *flush_timer;  /* armed while spans wait for a batch */
    struct event *close_timer;
    struct event *close_done;   /* runs close_cb from the loop */
    int closing;
    tch_zipkin_closed_cb close_cb;
    void *close_ud;
    tch_zipkin_stats stats;
    char last_error[256];
};

static void post_batch(tch_zipkin_reporter *z);

/* ---- the url -------------------------------------------------------------- */

static int parse_url(tch_zipkin_reporter *z, const char *url, tch_error *err) {
    struct evhttp_uri *u = evhttp_uri_parse(url);
    if (!u)
        return tch_error_set(err, TCH_EINVAL, "zipkin url \"%s\": not a URL", url);
    int rc = 0;
    const char *scheme = evhttp_uri_get_scheme(u), *host = evhttp_uri_get_host(u);
    const char *path = evhttp_uri_get_path(u), *query = evhttp_uri_get_query(u);
    if (!scheme || strcmp(scheme, "http") != 0)
        rc = tch_error_set(err, TCH_EINVAL, "zipkin url \"%s\": only http:// is supported%s",
                           url, scheme && !strcmp(scheme, "https") ? " (no TLS)" : "");
    else if (!host || !*host)
        rc = tch_error_set(err, TCH_EINVAL, "zipkin url \"%s\": no host", url);
    if (rc) {
        evhttp_uri_free(u);
        return rc;
    }
    z->port = evhttp_uri_get_port(u) < 0 ? 80 : evhttp_uri_get_port(u);
    size_t hl = strlen(host);
    if (hl > 2 && host[0] == '[' && host[hl - 1] == ']') /* [v6] */
        z->host = strndup(host + 1, hl - 2);
    else
        z->host = strdup(host);
    const char *p = path && *path ? path : ZIPKIN_DEFAULT_PATH;
    size_t plen = strlen(p) + (query ? strlen(query) + 1 : 0) + 1;
    z->path = malloc(plen);
    if (z->path)
        snprintf(z->path, plen, "%s%s%s", p, query ? "?" : "", query ? query : "");
    evhttp_uri_free(u);
    if (!z->host || !z->path)
        return tch_error_set(err, TCH_ENOMEM, "zipkin: out of memory");
    return 0;
}

static int is_address(const char *host) {
    unsigned char bin[16];
    return inet_pton(AF_INET, host, bin) == 1 || inet_pton(AF_INET6, host, bin) == 1;
}

/* ---- the queue ------------------------------------------------------------ */

static char *queue_pop(tch_zipkin_reporter *z) {
    char *s = z->queue[z->head];
    z->queue[z->head] = NULL;
    z->head = (z->head + 1) % z->opts.max_queue;
    z->n--;
    return s;
}

static void arm_flush(tch_zipkin_reporter *z) {
    if (evtimer_pending(z->flush_timer, NULL))
        return;
    uint32_t ms = z->opts.flush_interval_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(z->flush_timer, &tv);
}

/* Posts when a batch is due; otherwise makes sure a waiting span is posted
 * within the flush interval. */
static void pump(tch_zipkin_reporter *z) {
    if (z->in_flight || z->n == 0)
        return;
    if (z->closing || z->n >= z->opts.batch_size) {
        post_batch(z);
        return;
    }
    arm_flush(z);
}

static void on_flush(evutil_socket_t fd, short what, void *arg) {
    tch_zipkin_reporter *z = arg;
    (void)fd, (void)what;
    if (!z->in_flight && z->n)
        post_batch(z);
}

static void report(const tch_span *span, void *ud) {
    tch_zipkin_reporter *z = ud;
    z->stats.reported++;
    if (z->n == z->opts.max_queue || z->closing > 1) {
        z->stats.dropped++;
        return;
    }
    char *text = tch_span_to_json(span);
    if (!text) {
        z->stats.dropped++;
        return;
    }
    z->queue[(z->head + z->n) % z->opts.max_queue] = text;
    z->n++;
    pump(z);
}

tch_span_reporter tch_zipkin_reporter_iface(tch_zipkin_reporter *z) {
    return (tch_span_reporter){report, z};
}

/* ---- posting ---------------------------------------------------------------- */

static void finish_close(tch_zipkin_reporter *z);

static void post_done(struct evhttp_request *req, void *arg) {
    tch_zipkin_reporter *z = arg;
    int code = req ? evhttp_request_get_response_code(req) : 0;
    size_t n = z->in_flight;
    z->in_flight = 0;
    z->req = NULL;
    if (code >= 200 && code < 300) {
        z->stats.sent += n;
    } else {
        z->stats.failed += n;
        if (code)
            snprintf(z->last_error, sizeof z->last_error, "POST %s: HTTP %d %s", z->url,
                     code, evhttp_request_get_response_code_line(req)
                               ? evhttp_request_get_response_code_line(req) : "");
        else
            snprintf(z->last_error, sizeof z->last_error,
                     "POST %s: no answer (connection refused, closed or timed out)", z->url);
    }
    pump(z);
    if (z->closing && !z->in_flight && z->n == 0)
        finish_close(z);
}

static int make_conn(tch_zipkin_reporter *z) {
    if (z->conn)
        return 0;
    z->conn = evhttp_connection_base_new(z->base, z->dns, z->host, (unsigned short)z->port);
    if (!z->conn)
        return -1;
    uint32_t ms = z->opts.post_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evhttp_connection_set_timeout_tv(z->conn, &tv);
    evhttp_connection_set_retries(z->conn, 0);
    return 0;
}

static void post_batch(tch_zipkin_reporter *z) {
    evtimer_del(z->flush_timer);
    struct evhttp_request *req = NULL;
    if (make_conn(z) != 0 || !(req = evhttp_request_new(post_done, z))) {
        snprintf(z->last_error, sizeof z->last_error, "POST %s: out of memory", z->url);
        if (!z->closing) /* try again later: the spans stay queued */
            arm_flush(z);
        return;
    }
    struct evbuffer *body = evhttp_request_get_output_buffer(req);
    size_t n = z->n < z->opts.batch_size ? z->n : z->opts.batch_size;
    evbuffer_add(body, "[", 1);
    for (size_t i = 0; i < n; i++) {
        char *s = queue_pop(z);
        if (i)
            evbuffer_add(body, ",", 1);
        evbuffer_add(body, s, strlen(s));
        free(s);
    }
    evbuffer_add(body, "]", 1);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char host[300];
    snprintf(host, sizeof host, strchr(z->host, ':') ? "[%s]:%d" : "%s:%d", z->host, z->port);
    evhttp_add_header(h, "Host", host);
    evhttp_add_header(h, "Content-Type", "application/json");
    z->in_flight = n;
    z->req = req;
    z->stats.posts++;
    if (evhttp_make_request(z->conn, req, EVHTTP_REQ_POST, z->path) != 0) {
        /* libevent freed req: the batch is lost, counted */
        z->req = NULL;
        z->in_flight = 0;
        z->stats.failed += n;
        snprintf(z->last_error, sizeof z->last_error, "POST %s: could not start the request",
                 z->url);
    }
}

/* ---- life ------------------------------------------------------------------- */

int tch_zipkin_reporter_new(struct event_base *base, const char *url,
                            const tch_zipkin_options *opts, tch_zipkin_reporter **out,
                            tch_error *err) {
    if (!out)
        return tch_error_set(err, TCH_EINVAL, "zipkin: out is NULL");
    *out = NULL;
    if (!base || !url)
        return tch_error_set(err, TCH_EINVAL, "zipkin: %s is required",
                             base ? "a url" : "an event base");
    tch_zipkin_reporter *z = calloc(1, sizeof *z);
    if (!z)
        return tch_error_set(err, TCH_ENOMEM, "zipkin: out of memory");
    z->base = base;
    z->opts = (tch_zipkin_options){100, 1000, 10000, 5000};
    if (opts) {
        if (opts->batch_size)
            z->opts.batch_size = opts->batch_size;
        if (opts->flush_interval_ms)
            z->opts.flush_interval_ms = opts->flush_interval_ms;
        if (opts->max_queue)
            z->opts.max_queue = opts->max_queue;
        if (opts->post_timeout_ms)
            z->opts.post_timeout_ms = opts->post_timeout_ms;
    }
    if (!(z->url = strdup(url))) {
        tch_zipkin_reporter_free(z);
        return tch_error_set(err, TCH_ENOMEM, "zipkin: out of memory");
    }
    int rc = parse_url(z, url, err);
    if (rc != 0) {
        tch_zipkin_reporter_free(z);
        return rc;
    }
    if (!is_address(z->host))
        z->dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    z->queue = calloc(z->opts.max_queue, sizeof *z->queue);
    z->flush_timer = evtimer_new(base, on_flush, z);
    if (!z->queue || !z->flush_timer || (!is_address(z->host) && !z->dns)) {
        rc = tch_error_set(err, TCH_ENOMEM, "zipkin: out of memory (or no resolver for %s)",
                           z->host);
        tch_zipkin_reporter_free(z);
        return rc;
    }
    *out = z;
    return 0;
}

void tch_zipkin_reporter_stats(const tch_zipkin_reporter *z, tch_zipkin_stats *out) {
    *out = z->stats;
    out->queued = z->n;
}

const char *tch_zipkin_reporter_last_error(const tch_zipkin_reporter *z) {
    return z->last_error;
}

static void on_close_done(evutil_socket_t fd, short what, void *arg) {
    tch_zipkin_reporter *z = arg;
    (void)fd, (void)what;
    if (z->close_cb)
        z->close_cb(z, z->close_ud);
}

/* Closing is over (all answered, or out of time): the rest is dropped and
 * the caller hears from the loop. */
static void finish_close(tch_zipkin_reporter *z) {
    if (!z->closing || evtimer_pending(z->close_done, NULL))
        return;
    z->closing = 2; /* over: later spans are counted dropped, nothing posted */
    if (z->close_timer)
        evtimer_del(z->close_timer);
    evtimer_del(z->flush_timer);
    z->stats.dropped += z->n + z->in_flight;
    while (z->n)
        free(queue_pop(z));
    z->in_flight = 0;
    if (z->req) { /* abandoned: the connection goes, its request with it */
        z->req = NULL;
        evhttp_connection_free(z->conn);
        z->conn = NULL;
    }
    struct timeval now = {0, 0};
    evtimer_add(z->close_done, &now);
}

static void on_close_timeout(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    finish_close(arg);
}

int tch_zipkin_reporter_close(tch_zipkin_reporter *z, uint32_t timeout_ms,
                              tch_zipkin_closed_cb cb, void *ud) {
    if (z->closing)
        return TCH_ESTATE;
    z->close_done = evtimer_new(z->base, on_close_done, z);
    z->close_timer = evtimer_new(z->base, on_close_timeout, z);
    if (!z->close_done || !z->close_timer)
        return TCH_ENOMEM;
    z->closing = 1;
    z->close_cb = cb;
    z->close_ud = ud;
    uint32_t ms = timeout_ms ? timeout_ms : z->opts.post_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(z->close_timer, &tv);
    pump(z);
    if (!z->in_flight && z->n == 0)
        finish_close(z);
    return 0;
}

void tch_zipkin_reporter_free(tch_zipkin_reporter *z) {
    if (!z)
        return;
    if (z->conn) /* frees a request in flight without calling post_done */
        evhttp_connection_free(z->conn);
    while (z->queue && z->n)
        free(queue_pop(z));
    free(z->queue);
    if (z->flush_timer)
        event_free(z->flush_timer);
    if (z->close_timer)
        event_free(z->close_timer);
    if (z->close_done)
        event_free(z->close_done);
    if (z->dns)
        evdns_base_free(z->dns, 0);
    free(z->url);
    free(z->host);
    free(z->path);
    free(z);
}
