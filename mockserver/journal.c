/* The journal: the last requests the mock received, whole (transport
 * headers, arg2, arg3), in a ring bounded by a count (--journal-size) and
 * a byte budget (--journal-bytes), so memory stays bounded however long the
 * server runs: the oldest entries make room, and `dropped` counts them. */
#include "mock.h"

#include <tchannel/hooks.h>
#include <tchannel/stub.h>
#include <tchannel/vcr_adapt.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* arg1 is at most 16 KiB on the wire; service and peer far less */
#define MOCK_JOURNAL_STR_MAX 16384
#define MOCK_JOURNAL_MSG_MAX 2048
#define MAX_VIEW_HEADERS 256 /* the protocol allows 255 transport headers */

const char *mock_outcome_name(mock_outcome o) {
    switch (o) {
    case MOCK_REPLAYED:
        return "replayed";
    case MOCK_RECORDED:
        return "recorded";
    case MOCK_UNMATCHED:
        return "unmatched";
    case MOCK_HYPERBAHN:
        return "hyperbahn";
    default:
        return "failed";
    }
}

int mock_outcome_parse(const char *name, mock_outcome *out) {
    for (int o = MOCK_REPLAYED; o <= MOCK_HYPERBAHN; o++)
        if (strcmp(name, mock_outcome_name((mock_outcome)o)) == 0) {
            *out = (mock_outcome)o;
            return 0;
        }
    return TCH_EINVAL;
}

int mock_journal_init(mock_journal *j, size_t cap, size_t max_bytes) {
    memset(j, 0, sizeof *j);
    j->cap = cap ? cap : 1;
    j->max_bytes = max_bytes ? max_bytes : SIZE_MAX;
    j->ring = calloc(j->cap, sizeof *j->ring);
    return j->ring ? 0 : TCH_ENOMEM;
}

static void entry_clear(mock_journal_entry *e) {
    free(e->req);
    free(e->stub_id);
    free(e->service);
    free(e->endpoint);
    free(e->peer);
    free(e->announced);
    free(e->cassette);
    free(e->message);
    json_decref(e->near_miss);
    memset(e, 0, sizeof *e);
}

void mock_journal_clear(mock_journal *j) {
    for (size_t i = 0; i < j->n; i++)
        entry_clear(&j->ring[(j->start + i) % j->cap]);
    j->start = j->n = 0;
    j->total = j->dropped = 0;
    j->bytes = 0;
    j->unmatched = 0;
}

void mock_journal_free(mock_journal *j) {
    if (!j->ring)
        return;
    mock_journal_clear(j);
    free(j->ring);
    j->ring = NULL;
}

static char *dup_slice(tch_slice s, size_t max) {
    if (s.len > max)
        s.len = max;
    return tch_slice_strdup(s);
}

static char *dup_str(const char *s, size_t max) {
    return s ? dup_slice(tch_slice_cstr(s), max) : NULL;
}

static size_t str_bytes(const char *s) { return s ? strlen(s) : 0; }

/* An entry's request is one allocation (one malloc and one free per call,
 * on the serving path): the key and value lengths of each transport header
 * (uint32_t pairs), then arg2, arg3, and each header's key and value. */
static size_t lens_size(size_t nh) { return nh * 2 * sizeof(uint32_t); }

static tch_slice req_arg2(const mock_journal_entry *e) {
    return e->req ? tch_slice_of(e->req + lens_size(e->n_theaders), e->arg2_len) : TCH_SLICE_NULL;
}

static tch_slice req_arg3(const mock_journal_entry *e) {
    return e->req ? tch_slice_of(e->req + lens_size(e->n_theaders) + e->arg2_len, e->arg3_len)
                  : TCH_SLICE_NULL;
}

/* Views of up to max transport headers; returns how many. */
static size_t req_headers(const mock_journal_entry *e, tch_kv *kv, size_t max) {
    const uint8_t *at = e->req ? e->req + lens_size(e->n_theaders) + e->arg2_len + e->arg3_len
                               : NULL;
    size_t n = !e->req ? 0 : e->n_theaders < max ? e->n_theaders : max;
    for (size_t i = 0; i < n; i++) {
        uint32_t kl, vl;
        memcpy(&kl, e->req + (2 * i) * sizeof kl, sizeof kl);
        memcpy(&vl, e->req + (2 * i + 1) * sizeof vl, sizeof vl);
        kv[i] = (tch_kv){tch_slice_of(at, kl), tch_slice_of(at + kl, vl)};
        at += kl + vl;
    }
    return n;
}

/* What in carries beyond its names, whole: arg2, arg3, transport headers. */
static size_t request_bytes(const tch_inbound *in) {
    size_t nh = tch_inbound_header_count(in);
    size_t n = lens_size(nh) + tch_inbound_arg2(in).len + tch_inbound_arg3(in).len;
    for (size_t i = 0; i < nh; i++) {
        tch_kv h = tch_inbound_header_at(in, i);
        n += h.key.len + h.value.len;
    }
    return n;
}

static int copy_request(mock_journal_entry *e, const tch_inbound *in, size_t bytes) {
    size_t nh = tch_inbound_header_count(in);
    tch_slice a2 = tch_inbound_arg2(in), a3 = tch_inbound_arg3(in);
    if (!(e->req = malloc(bytes ? bytes : 1)))
        return TCH_ENOMEM;
    uint8_t *at = e->req + lens_size(nh);
    if (a2.len)
        memcpy(at, a2.ptr, a2.len);
    if (a3.len)
        memcpy(at + a2.len, a3.ptr, a3.len);
    at += a2.len + a3.len;
    for (size_t i = 0; i < nh; i++) {
        tch_kv h = tch_inbound_header_at(in, i);
        uint32_t kl = (uint32_t)h.key.len, vl = (uint32_t)h.value.len;
        memcpy(e->req + (2 * i) * sizeof kl, &kl, sizeof kl);
        memcpy(e->req + (2 * i + 1) * sizeof vl, &vl, sizeof vl);
        if (kl)
            memcpy(at, h.key.ptr, kl);
        if (vl)
            memcpy(at + kl, h.value.ptr, vl);
        at += kl + vl;
    }
    e->arg2_len = a2.len, e->arg3_len = a3.len, e->n_theaders = nh;
    return 0;
}

static void drop_oldest(mock_journal *j) {
    mock_journal_entry *e = &j->ring[j->start];
    j->bytes -= e->bytes;
    entry_clear(e);
    j->start = (j->start + 1) % j->cap;
    j->n--;
    j->dropped++;
}

/* The id of the stub at cassette #index, if that interaction is one: run-time
 * stubs are "(run-time stubs)", others a loaded cassette's path. */
static char *stub_id_of(const mock_journal *j, const char *cassette, long index) {
    const mock *m = j->owner;
    if (!m || !cassette || index < 0)
        return NULL;
    const tch_cassette *c = NULL;
    if (!strcmp(cassette, "(run-time stubs)"))
        c = m->stubs;
    for (size_t i = 0; !c && i < m->store.n; i++)
        if (!strcmp(m->store.items[i]->path, cassette))
            c = m->store.items[i]->c;
    const tch_cassette_interaction *it = c ? tch_cassette_get(c, (size_t)index) : NULL;
    const tch_stub_info *stub = it ? tch_cassette_stub_of(it) : NULL;
    return stub && stub->id ? strdup(stub->id) : NULL;
}

/* in: the request, when known (its bytes are kept, and the address of
 * its socket). announced: the host:port its caller gave in init. */
static mock_journal_entry *push(mock_journal *j, tch_slice service, tch_slice endpoint,
                                const char *announced, int scheme, mock_outcome outcome,
                                const char *cassette, long index, const char *message,
                                json_t *near_miss, const tch_inbound *in) {
    const char *peer = in ? tch_inbound_remote_addr(in) : NULL;
    size_t fixed = sizeof(mock_journal_entry) + service.len + endpoint.len + str_bytes(peer) +
                   str_bytes(announced) + str_bytes(cassette) + str_bytes(message);
    size_t body = in ? request_bytes(in) : 0;
    int cut = fixed + body > j->max_bytes; /* alone over the budget: its bytes are left out */
    size_t need = fixed + (cut ? 0 : body);
    while (j->n && (j->n == j->cap || j->bytes + need > j->max_bytes))
        drop_oldest(j);
    mock_journal_entry *e = &j->ring[(j->start + j->n) % j->cap];
    j->n++;
    e->seq = j->next_seq++;
    j->total++;
    j->unmatched += outcome == MOCK_UNMATCHED;
    e->time_ms = mock_now_ms();
    e->service = dup_slice(service, MOCK_JOURNAL_STR_MAX);
    e->endpoint = dup_slice(endpoint, MOCK_JOURNAL_STR_MAX);
    e->peer = peer && *peer ? dup_str(peer, MOCK_JOURNAL_STR_MAX) : NULL;
    e->announced = dup_str(announced, MOCK_JOURNAL_STR_MAX);
    e->scheme = scheme;
    e->outcome = outcome;
    e->cassette = dup_str(cassette, 4096);
    e->index = index;
    e->message = dup_str(message, MOCK_JOURNAL_MSG_MAX);
    e->near_miss = near_miss;
    e->stub_id = outcome == MOCK_REPLAYED ? stub_id_of(j, cassette, index) : NULL;
    e->cut = cut && in;
    if (in && !cut && copy_request(e, in, body) != 0)
        e->cut = 1; /* out of memory: the names are still worth keeping */
    e->bytes = need;
    j->bytes += need;
    return e;
}

void mock_journal_add(mock_journal *j, tch_slice service, tch_slice endpoint, const char *peer,
                      int scheme, mock_outcome outcome, const char *cassette, long index,
                      const char *message, json_t *near_miss) {
    /* Inside a handler the request is the channel's current call; an entry
     * added later (a recording answered) takes the ids of the answer that
     * follows it at once (on_answer). */
    tch_inbound *in = j->ch ? tch_channel_current(j->ch) : NULL;
    mock_journal_entry *e = push(j, service, endpoint, peer, scheme, outcome, cassette, index,
                                 message, near_miss, in);
    if (in) {
        e->trace = tch_inbound_trace(in);
        e->has_trace = 1;
    } else if (j->ch) {
        j->await_seq = e->seq + 1; /* 0 means none */
    }
}

void mock_journal_add_from(mock_journal *j, tch_inbound *in, mock_outcome outcome,
                           const char *cassette, long index, const char *message) {
    mock_journal_entry *e =
        push(j, tch_inbound_service(in), tch_inbound_endpoint(in), tch_inbound_peer(in),
             mock_scheme_of(in), outcome, cassette, index, message, NULL, in);
    e->trace = tch_inbound_trace(in);
    e->has_trace = 1;
}

static mock_journal_entry *newest(mock_journal *j) {
    return j->n ? &j->ring[(j->start + j->n - 1) % j->cap] : NULL;
}

/* The entry is this answer's request (names cut to the journal's length
 * compare by their start). */
static int same_call(const mock_journal_entry *e, const tch_call_event *ev) {
    tch_slice s = ev->service, p = ev->endpoint;
    s.len = s.len > MOCK_JOURNAL_STR_MAX ? MOCK_JOURNAL_STR_MAX : s.len;
    p.len = p.len > MOCK_JOURNAL_STR_MAX ? MOCK_JOURNAL_STR_MAX : p.len;
    return e->service && e->endpoint && tch_slice_eq_cstr(s, e->service) &&
           tch_slice_eq_cstr(p, e->endpoint);
}

static void on_answer(const tch_call_event *ev, void *ud) {
    mock_journal *j = ud;
    if (ev->kind != TCH_EVENT_SEND_RESPONSE || !j->await_seq)
        return;
    mock_journal_entry *e = newest(j);
    if (e && e->seq + 1 == j->await_seq && !e->has_trace && same_call(e, ev)) {
        e->trace = ev->trace;
        e->has_trace = 1;
    }
    j->await_seq = 0;
}

int mock_journal_watch(mock_journal *j, tch_channel *ch, tch_error *err) {
    j->ch = ch;
    int rc = tch_channel_add_hook(ch, on_answer, j, NULL);
    return rc ? tch_error_set(err, rc, "journal: cannot watch the channel: out of memory") : 0;
}

static json_t *hex_id(uint64_t id) {
    char s[17];
    snprintf(s, sizeof s, "%016" PRIx64, id);
    return json_string(s);
}

static json_t *text(const char *s) {
    return mock_json_text(s ? s : "", s ? strlen(s) : 0);
}

/* ---- the request as JSON ---------------------------------------------------------- */

/* Bytes as text; bytes that are not UTF-8, or hold a NUL (which many JSON
 * readers refuse), as text with U+FFFD for those bytes and exactly as
 * base64 under key64. */
static void set_bytes(json_t *o, const char *key, const char *key64, tch_slice s) {
    const char *p = s.ptr ? (const char *)s.ptr : "";
    json_t *exact = memchr(p, 0, s.len) ? NULL : json_stringn(p, s.len); /* NULL: not UTF-8 */
    if (exact) {
        json_object_set_new(o, key, exact);
        return;
    }
    char *shown = malloc(s.len + 1);
    if (shown) { /* a NUL would end the text: U+FFFD as for any byte that is not text */
        for (size_t i = 0; i < s.len; i++)
            shown[i] = p[i] ? p[i] : (char)0xff;
        json_object_set_new(o, key, mock_json_text(shown, s.len));
    }
    free(shown);
    tch_buf b64 = {0};
    if (tch_base64_encode(s, 0, &b64) == 0)
        json_object_set_new(o, key64, json_stringn(b64.ptr ? (const char *)b64.ptr : "", b64.len));
    tch_buf_free(&b64);
}

static json_t *thrift_headers_json(tch_slice arg2) {
    tch_kv *hs = NULL;
    size_t n = 0;
    if (tch_thrift_headers_decode(arg2, &hs, &n, NULL) != 0)
        return NULL;
    json_t *o = json_object();
    for (size_t i = 0; o && i < n; i++) {
        char *k = tch_slice_strdup(hs[i].key);
        if (k)
            json_object_set_new(o, k, mock_json_text((const char *)hs[i].value.ptr, hs[i].value.len));
        free(k);
    }
    free(hs);
    return o;
}

static json_t *thrift_body_json(const mock_journal *j, const mock_journal_entry *e) {
    const tch_thrift_method *m =
        j->thrift ? tch_cassette_thrift_method(j->thrift, tch_slice_cstr(e->service),
                                               tch_slice_cstr(e->endpoint))
                  : NULL;
    json_t *out = NULL;
    if (m && tch_thrift_method_args_to_json(m, req_arg3(e), &out, NULL) != 0)
        out = NULL;
    return out;
}

/* arg2 and arg3 raw, and read as JSON where the scheme (and for a thrift
 * body, the IDL) allows; the transport headers as an object. */
static void request_to_json(const mock_journal *j, const mock_journal_entry *e, json_t *o) {
    json_t *th = json_object();
    tch_kv kv[MAX_VIEW_HEADERS];
    size_t nh = req_headers(e, kv, MAX_VIEW_HEADERS);
    for (size_t i = 0; th && i < nh; i++) {
        char *k = tch_slice_strdup(kv[i].key);
        if (k)
            json_object_set_new(th, k, mock_json_text((const char *)kv[i].value.ptr, kv[i].value.len));
        free(k);
    }
    json_object_set_new(o, "transportHeaders", th);
    if (e->cut) {
        json_object_set_new(o, "omitted", json_string("arg2 and arg3: larger than the whole "
                                                      "--journal-bytes budget"));
        return;
    }
    tch_slice a2 = req_arg2(e), a3 = req_arg3(e);
    set_bytes(o, "headers", "headersBase64", a2);
    set_bytes(o, "body", "bodyBase64", a3);
    json_object_set_new(o, "bodyBytes", json_integer((json_int_t)a3.len));
    json_t *hd = NULL, *bd = NULL;
    if (e->scheme == TCH_CASSETTE_JSON) {
        hd = a2.len ? json_loadb((const char *)a2.ptr, a2.len, 0, NULL) : json_object();
        bd = json_loadb(a3.ptr ? (const char *)a3.ptr : "", a3.len, JSON_DECODE_ANY, NULL);
    } else if (e->scheme == TCH_CASSETTE_THRIFT) {
        hd = thrift_headers_json(a2);
        bd = thrift_body_json(j, e);
    }
    if (hd)
        json_object_set_new(o, "headersDecoded", hd);
    if (bd)
        json_object_set_new(o, "bodyDecoded", bd);
}

static json_t *entry_to_json(const mock_journal *j, const mock_journal_entry *e) {
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "seq", json_integer((json_int_t)e->seq));
    json_object_set_new(o, "timeMs", json_integer((json_int_t)e->time_ms));
    json_object_set_new(o, "service", text(e->service));
    json_object_set_new(o, "endpoint", text(e->endpoint));
    json_object_set_new(o, "scheme", json_string(mock_scheme_name(e->scheme)));
    json_object_set_new(o, "peer", e->peer ? text(e->peer) : json_null());
    json_object_set_new(o, "announcedHostPort", text(e->announced));
    json_object_set_new(o, "outcome", json_string(mock_outcome_name(e->outcome)));
    json_object_set_new(o, "matched", json_boolean(e->outcome == MOCK_REPLAYED));
    if (e->cassette)
        json_object_set_new(o, "cassette", text(e->cassette));
    if (e->index >= 0)
        json_object_set_new(o, "index", json_integer(e->index));
    if (e->stub_id)
        json_object_set_new(o, "stubId", text(e->stub_id));
    if (e->message)
        json_object_set_new(o, "message", text(e->message));
    if (e->near_miss)
        json_object_set(o, "nearMiss", e->near_miss);
    if (e->has_trace) { /* as Zipkin writes them: 16 lowercase hex digits */
        json_object_set_new(o, "traceId", hex_id(e->trace.trace_id));
        json_object_set_new(o, "spanId", hex_id(e->trace.span_id));
        json_object_set_new(o, "parentId", hex_id(e->trace.parent_id));
        json_object_set_new(o, "traced", json_boolean(e->trace.flags & 0x01));
    }
    request_to_json(j, e, o);
    return o;
}

static int selected(const mock_journal_entry *e, const mock_journal_query *q) {
    return (!q->service || (e->service && strcmp(e->service, q->service) == 0)) &&
           (!q->endpoint || (e->endpoint && strcmp(e->endpoint, q->endpoint) == 0)) &&
           (q->outcome < 0 || (int)e->outcome == q->outcome);
}

/* Names that are not UTF-8 (or were cut inside a character) show U+FFFD
 * for their bad bytes. */
json_t *mock_journal_to_json(const mock_journal *j, const mock_journal_query *q, size_t *matching) {
    size_t n = 0;
    for (size_t i = 0; i < j->n; i++)
        n += (size_t)selected(&j->ring[(j->start + i) % j->cap], q);
    *matching = n;
    size_t skip = q->limit && n > q->limit ? n - q->limit : 0;
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < j->n; i++) {
        const mock_journal_entry *e = &j->ring[(j->start + i) % j->cap];
        if (!selected(e, q))
            continue;
        if (skip > 0)
            skip--;
        else
            json_array_append_new(arr, entry_to_json(j, e));
    }
    return arr;
}

/* ---- queries with stub rules ---------------------------------------------------------- */

int mock_journal_find(const mock_journal *j, const tch_stub_rules *rules, size_t *count,
                      json_t *entries, tch_error *err) {
    tch_kv raw[MAX_VIEW_HEADERS], kv[MAX_VIEW_HEADERS + 1];
    tch_stub_idl idl = {j->thrift, NULL};
    *count = 0;
    for (size_t i = 0; i < j->n; i++) {
        const mock_journal_entry *e = &j->ring[(j->start + i) % j->cap];
        if (e->outcome == MOCK_HYPERBAHN)
            continue;
        /* the headers as serving saw them: an implicit "as" first when the
         * caller gave none (tch_vcr_call_of_inbound) */
        size_t nh = tch_vcr_transport_headers(raw, req_headers(e, raw, MAX_VIEW_HEADERS), NULL,
                                              kv);
        tch_cassette_call call = {
            .service = tch_slice_cstr(e->service ? e->service : ""),
            .endpoint = tch_slice_cstr(e->endpoint ? e->endpoint : ""),
            .headers = req_arg2(e),
            .body = req_arg3(e),
            .scheme = (tch_cassette_scheme)e->scheme,
            .host_port = tch_slice_cstr(e->announced ? e->announced : ""), /* as served */
            .transport_headers = kv,
            .n_transport_headers = nh,
        };
        int rc = tch_stub_rules_match(rules, &call, &idl, NULL, 0, err);
        if (rc < 0)
            return tch_error_wrap(err, "journal entry %" PRIu64, e->seq);
        if (rc == 0)
            continue;
        (*count)++;
        if (entries && json_array_append_new(entries, entry_to_json(j, e)))
            return tch_error_set(err, TCH_ENOMEM, "out of memory");
    }
    return 0;
}
