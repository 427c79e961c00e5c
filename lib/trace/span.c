/* Spans from call events, their Zipkin v2 JSON, and the tracer: the event
 * hook that hands a channel's spans to a reporter. */
#include <tchannel/trace.h>

#include "alloc.h"
#include "utf8.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool tch_span_from_event(const tch_call_event *ev, tch_span *out) {
    /* Zipkin has no span with a zero trace or span id: a caller that sent
     * all-zero ids gets no span rather than a "0000000000000000" one */
    if (!(ev->trace.flags & 0x01) || ev->trace.trace_id == 0 || ev->trace.span_id == 0 ||
        (ev->kind != TCH_EVENT_RECEIVE_RESPONSE && ev->kind != TCH_EVENT_SEND_RESPONSE))
        return 0;
    int client = ev->kind == TCH_EVENT_RECEIVE_RESPONSE;
    *out = (tch_span){
        .trace_id = ev->trace.trace_id,
        .id = ev->trace.span_id,
        .parent_id = ev->trace.parent_id,
        .kind = client ? TCH_SPAN_CLIENT : TCH_SPAN_SERVER,
        .shared = !client,
        .name = ev->endpoint,
        .local_service = client ? ev->caller : ev->service,
        .remote_service = client ? ev->service : ev->caller,
        .peer = ev->peer ? ev->peer : "",
        .scheme = ev->scheme,
        .timestamp_us = ev->start_us,
        .duration_us = ev->end_us > ev->start_us ? ev->end_us - ev->start_us : 0,
        .outcome = ev->outcome,
        .error_code = ev->error_code,
        .message = ev->message ? ev->message : "",
    };
    return 1;
}

/* Names come off the wire: a byte that is not UTF-8 becomes U+FFFD rather
 * than failing the span. */
static json_t *slice_text(tch_slice s) {
    const char *p = s.len ? (const char *)s.ptr : "";
    json_t *j = json_stringn(p, s.len);
    if (j)
        return j;
    char *clean = malloc(s.len * 3 + 1);
    if (!clean)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < s.len;) {
        uint32_t cp;
        size_t l = tch_utf8_decode((const uint8_t *)p + i, s.len - i, &cp);
        if (l == 0) {
            memcpy(clean + n, "\xef\xbf\xbd", 3);
            n += 3;
            i++;
        } else {
            memcpy(clean + n, p + i, l);
            n += l;
            i += l;
        }
    }
    j = json_stringn(clean, n);
    free(clean);
    return j;
}

static void hex_id(char out[17], uint64_t id) {
    snprintf(out, 17, "%016" PRIx64, id);
}

/* remoteEndpoint: the service, and the peer's address when it is one. */
static json_t *remote_endpoint(const tch_span *s) {
    json_t *o = json_object();
    if (!o)
        return NULL;
    if (s->remote_service.len)
        json_object_set_new(o, "serviceName", slice_text(s->remote_service));
    const char *colon = strrchr(s->peer, ':');
    if (!colon || !strcmp(s->peer, "0.0.0.0:0")) /* a caller that does not listen */
        return o;
    char host[64];
    size_t hl = (size_t)(colon - s->peer);
    const char *h = s->peer;
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') { /* [v6]:port */
        h++;
        hl -= 2;
    }
    if (hl >= sizeof host)
        return o;
    memcpy(host, h, hl);
    host[hl] = 0;
    unsigned char bin[16];
    if (inet_pton(AF_INET, host, bin) == 1)
        json_object_set_new(o, "ipv4", json_string(host));
    else if (inet_pton(AF_INET6, host, bin) == 1)
        json_object_set_new(o, "ipv6", json_string(host));
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (*end == 0 && end != colon + 1 && port <= 65535)
        json_object_set_new(o, "port", json_integer((json_int_t)port));
    return o;
}

static const char *status_name(const tch_span *s) {
    switch (s->outcome) {
    case TCH_OUTCOME_OK: return "ok";
    case TCH_OUTCOME_APP_ERROR: return "app_error";
    default: return tch_proto_code_name(s->error_code);
    }
}

static json_t *tags(const tch_span *s) {
    json_t *t = json_object();
    if (!t)
        return NULL;
    json_object_set_new(t, "as", slice_text(s->scheme));
    json_object_set_new(t, "cn", slice_text(s->kind == TCH_SPAN_CLIENT ? s->local_service
                                                                       : s->remote_service));
    json_object_set_new(t, "peer", json_string(s->peer));
    json_object_set_new(t, "tchannel.status", json_string(status_name(s)));
    if (s->outcome == TCH_OUTCOME_ERROR)
        json_object_set_new(t, "error", slice_text(tch_slice_cstr(
                                            *s->message ? s->message : status_name(s))));
    return t;
}

char *tch_span_to_json(const tch_span *s) {
    char trace[17], id[17], parent[17];
    hex_id(trace, s->trace_id);
    hex_id(id, s->id);
    hex_id(parent, s->parent_id);
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "traceId", json_string(trace));
    json_object_set_new(o, "id", json_string(id));
    if (s->parent_id)
        json_object_set_new(o, "parentId", json_string(parent));
    json_object_set_new(o, "kind", json_string(s->kind == TCH_SPAN_CLIENT ? "CLIENT" : "SERVER"));
    json_object_set_new(o, "name", slice_text(s->name));
    json_object_set_new(o, "timestamp", json_integer((json_int_t)s->timestamp_us));
    json_object_set_new(o, "duration",
                        json_integer((json_int_t)(s->duration_us ? s->duration_us : 1)));
    if (s->shared)
        json_object_set_new(o, "shared", json_true());
    json_t *local = json_object();
    if (local)
        json_object_set_new(local, "serviceName", slice_text(s->local_service));
    json_object_set_new(o, "localEndpoint", local);
    json_object_set_new(o, "remoteEndpoint", remote_endpoint(s));
    json_object_set_new(o, "tags", tags(s));
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return text;
}

/* ---- the tracer ------------------------------------------------------------- */

struct tch_tracer {
    tch_channel *ch;
    uint32_t hook;
    tch_span_reporter rep;
    uint64_t spans;
};

static void on_event(const tch_call_event *ev, void *ud) {
    tch_tracer *t = ud;
    tch_span s;
    if (!tch_span_from_event(ev, &s))
        return;
    t->spans++;
    t->rep.report(&s, t->rep.ud);
}

int tch_tracer_new(tch_channel *ch, tch_span_reporter rep, tch_tracer **out, tch_error *err) {
    if (!out)
        return tch_error_set(err, TCH_EINVAL, "tracer: out is NULL");
    *out = NULL;
    if (!ch || !rep.report)
        return tch_error_set(err, TCH_EINVAL, "tracer: %s is required",
                             ch ? "a report function" : "a channel");
    const tch_allocator *a = tch_channel_allocator(ch);
    tch_tracer *t = tch__calloc(a, 1, sizeof *t);
    if (!t || tch_channel_add_hook(ch, on_event, t, &t->hook) != 0) {
        tch__free(a, t);
        return tch_error_set(err, TCH_ENOMEM, "tracer: out of memory");
    }
    t->ch = ch;
    t->rep = rep;
    *out = t;
    return 0;
}

void tch_tracer_free(tch_tracer *t) {
    if (!t)
        return;
    tch_channel_remove_hook(t->ch, t->hook);
    tch__free(tch_channel_allocator(t->ch), t);
}

uint64_t tch_tracer_spans(const tch_tracer *t) { return t->spans; }
