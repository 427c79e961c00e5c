/* The journal: the last `cap` requests the mock received, in a ring, so
 * memory stays bounded however long the server runs. Strings are truncated
 * copies (a hostile client cannot make an entry large). */
#include "mock.h"

#include <tchannel/hooks.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOCK_JOURNAL_STR_MAX 256
#define MOCK_JOURNAL_MSG_MAX 2048

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

int mock_journal_init(mock_journal *j, size_t cap) {
    memset(j, 0, sizeof *j);
    j->cap = cap ? cap : 1;
    j->ring = calloc(j->cap, sizeof *j->ring);
    return j->ring ? 0 : TCH_ENOMEM;
}

static void entry_clear(mock_journal_entry *e) {
    free(e->service);
    free(e->endpoint);
    free(e->peer);
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

void mock_journal_add(mock_journal *j, tch_slice service, tch_slice endpoint, const char *peer,
                      int scheme, mock_outcome outcome, const char *cassette, long index,
                      const char *message, json_t *near_miss) {
    mock_journal_entry *e;
    if (j->n == j->cap) { /* full: the oldest entry makes room */
        e = &j->ring[j->start];
        entry_clear(e);
        j->start = (j->start + 1) % j->cap;
        j->dropped++;
    } else {
        e = &j->ring[(j->start + j->n) % j->cap];
        j->n++;
    }
    e->seq = j->next_seq++;
    j->total++;
    e->time_ms = mock_now_ms();
    e->service = dup_slice(service, MOCK_JOURNAL_STR_MAX);
    e->endpoint = dup_slice(endpoint, MOCK_JOURNAL_STR_MAX);
    e->peer = dup_str(peer, MOCK_JOURNAL_STR_MAX);
    e->scheme = scheme;
    e->outcome = outcome;
    e->cassette = dup_str(cassette, 4096);
    e->index = index;
    e->message = dup_str(message, MOCK_JOURNAL_MSG_MAX);
    e->near_miss = near_miss;
    /* Inside a handler the request is the channel's current call; an entry
     * added later (a recording answered) takes the ids of the answer that
     * follows it at once (on_answer). */
    tch_inbound *in = j->ch ? tch_channel_current(j->ch) : NULL;
    if (in) {
        e->trace = tch_inbound_trace(in);
        e->has_trace = 1;
    } else if (j->ch) {
        j->await_seq = e->seq + 1; /* 0 means none */
    }
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

static json_t *entry_to_json(const mock_journal_entry *e) {
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "seq", json_integer((json_int_t)e->seq));
    json_object_set_new(o, "timeMs", json_integer((json_int_t)e->time_ms));
    json_object_set_new(o, "service", text(e->service));
    json_object_set_new(o, "endpoint", text(e->endpoint));
    json_object_set_new(o, "scheme", json_string(mock_scheme_name(e->scheme)));
    json_object_set_new(o, "peer", text(e->peer));
    json_object_set_new(o, "outcome", json_string(mock_outcome_name(e->outcome)));
    json_object_set_new(o, "matched", json_boolean(e->outcome == MOCK_REPLAYED));
    if (e->cassette)
        json_object_set_new(o, "cassette", text(e->cassette));
    if (e->index >= 0)
        json_object_set_new(o, "index", json_integer(e->index));
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
            json_array_append_new(arr, entry_to_json(e));
    }
    return arr;
}
