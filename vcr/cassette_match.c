/* Matching: normalizes the matched fields of a request (JSON by value,
 * $tracing$ header keys dropped), hashes them into a table of per-request
 * interaction chains so a lookup costs the same for 10 or 10,000 recorded
 * interactions, and explains misses (the nearest recorded interaction and
 * the fields that differ). */
#include "cassette_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Normalized forms start with a marker byte so a value that parsed as JSON
 * never equals one compared as raw bytes (tchannel-python falls back to
 * bytes only when parsing fails on either side, which gives the same
 * answer). */
enum { MARK_RAW = 'R', MARK_JSON = 'J' };

static int set_marked(tch_buf *own, char mark, const char *text, size_t len) {
    if (tch_buf_append(own, &mark, 1) || tch_buf_append(own, text, len))
        return TCH_ENOMEM;
    return 0;
}

static void drop_tracing_keys(json_t *obj) {
    const char *key;
    json_t *val;
    void *tmp;
    json_object_foreach_safe(obj, tmp, key, val) {
        (void)val;
        if (strncmp(key, TRACING_PREFIX, sizeof TRACING_PREFIX - 1) == 0)
            json_object_del(obj, key);
    }
}

/* Each integer beyond int64 costs one more parse, so only this many, in a
 * body up to this size, are compared by value; beyond, the bytes are. */
#define MAX_BIG_INTS 64
#define MAX_BIG_INT_BODY (1u << 20)

/* jansson keeps integers as int64 and refuses longer ones, where Python
 * (tchannel-python's matching) reads them exactly. So each integer literal
 * jansson refuses is rewritten as a string with a NUL-led marker, which
 * compares the digits exactly, and parsing resumes. */
static json_t *load_json(tch_slice s) {
    const int flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;
    json_error_t jerr;
    json_t *v = json_loadb((const char *)s.ptr, s.len, flags, &jerr);
    if (v || json_error_code(&jerr) != json_error_numeric_overflow || s.len > MAX_BIG_INT_BODY)
        return v;
    tch_buf text = {0};
    if (tch_buf_append(&text, s.ptr, s.len))
        return NULL;
    for (int n = 0; !v && n < MAX_BIG_INTS; n++) {
        size_t end = (size_t)jerr.position, start = end;
        while (start > 0 && text.ptr[start - 1] >= '0' && text.ptr[start - 1] <= '9')
            start--;
        if (start > 0 && text.ptr[start - 1] == '-')
            start--;
        /* a real out of range (1e999) ends in digits too: not ours to fix */
        if (end > text.len || start == end ||
            (start > 0 && memchr(".eE+", text.ptr[start - 1], 4)) ||
            (end < text.len && memchr(".eE", text.ptr[end], 3)))
            break;
        tch_buf fixed = {0};
        static const char mark[] = "\"\\u0000bigint:";
        if (tch_buf_append(&fixed, text.ptr, start) || tch_buf_append(&fixed, mark, sizeof mark - 1) ||
            tch_buf_append(&fixed, text.ptr + start, end - start) || tch_buf_append(&fixed, "\"", 1) ||
            tch_buf_append(&fixed, text.ptr + end, text.len - end)) {
            tch_buf_free(&fixed);
            break;
        }
        tch_buf_free(&text);
        text = fixed;
        v = json_loadb((const char *)text.ptr, text.len, flags, &jerr);
        if (!v && json_error_code(&jerr) != json_error_numeric_overflow)
            break;
    }
    tch_buf_free(&text);
    return v;
}

/* The integer a whole real stands for (Python compares 1.0 == 1), or NULL. */
static json_t *whole_real(const json_t *v) {
    if (!json_is_real(v))
        return NULL;
    double r = json_real_value(v);
    if (!(r >= -9223372036854775808.0 && r < 9223372036854775808.0) || r != (double)(json_int_t)r)
        return NULL;
    return json_integer((json_int_t)r);
}

/* v with every whole real in it, v itself included, as an integer. Takes
 * v's reference and returns one. jansson bounds nesting when it parses,
 * so the recursion is bounded too. */
static json_t *whole_reals_as_ints(json_t *v) {
    json_t *n = whole_real(v);
    if (n) {
        json_decref(v);
        return n;
    }
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            json_array_set_new(v, i, whole_reals_as_ints(json_incref(json_array_get(v, i))));
    } else if (json_is_object(v)) {
        const char *key;
        size_t klen;
        json_t *e;
        void *tmp;
        json_object_keylen_foreach_safe(v, tmp, key, klen, e)
            json_object_setn_new(v, key, klen, whole_reals_as_ints(json_incref(e)));
    }
    return v;
}

/* JSON text -> compact, sorted-keys JSON; returns NULL if not JSON. */
static char *json_canonical(tch_slice s, bool headers) {
    json_t *v = load_json(s);
    if (!v)
        return NULL;
    v = whole_reals_as_ints(v);
    if (headers && json_is_object(v))
        drop_tracing_keys(v);
    char *out = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    json_decref(v);
    return out;
}

/* Normalized headers (arg2) or body (arg3) of a json/thrift request. Raw
 * bytes when the scheme has no structure or the bytes do not parse. */
static int norm_structured(const tch_cassette_request *r, bool headers, tch_buf *own,
                           tch_slice *view) {
    tch_slice s = headers ? tch_buf_slice(&r->headers) : tch_buf_slice(&r->body);
    char *canon = NULL;
    if (r->scheme == TCH_CASSETTE_JSON)
        canon = json_canonical(s, headers);
    else if (r->scheme == TCH_CASSETTE_THRIFT && headers)
        canon = cas_thrift_headers_json(s, true, true);
    int rc = canon ? set_marked(own, MARK_JSON, canon, strlen(canon))
                   : set_marked(own, MARK_RAW, (const char *)s.ptr, s.len);
    free(canon);
    *view = tch_buf_slice(own);
    return rc;
}

static int norm_transport_headers(const tch_cassette_request *r, tch_buf *own, tch_slice *view) {
    /* order matters, as in tchannel-python's list comparison */
    for (size_t i = 0; i < r->n_transport_headers; i++) {
        const tch_cassette_kv *kv = &r->transport_headers[i];
        uint64_t lens[2] = {kv->key.len, kv->value.len};
        if (tch_buf_append(own, lens, sizeof lens) || tch_buf_append_slice(own, tch_buf_slice(&kv->key)) ||
            tch_buf_append_slice(own, tch_buf_slice(&kv->value)))
            return TCH_ENOMEM;
    }
    *view = tch_buf_slice(own);
    return 0;
}

static int norm_field(const tch_cassette_request *r, int f, cas_norm *n) {
    switch (f) {
    case F_SERVICE: n->view[f] = tch_buf_slice(&r->service); return 0;
    case F_ENDPOINT: n->view[f] = tch_buf_slice(&r->endpoint); return 0;
    case F_HOSTPORT: n->view[f] = tch_buf_slice(&r->host_port); return 0;
    case F_SCHEME: {
        uint8_t b = (uint8_t)r->scheme;
        if (tch_buf_append(&n->own[f], &b, 1))
            return TCH_ENOMEM;
        n->view[f] = tch_buf_slice(&n->own[f]);
        return 0;
    }
    case F_HEADERS: return norm_structured(r, true, &n->own[f], &n->view[f]);
    case F_BODY: return norm_structured(r, false, &n->own[f], &n->view[f]);
    case F_THEADERS: return norm_transport_headers(r, &n->own[f], &n->view[f]);
    }
    return TCH_EINVAL;
}

/* Normalizes every field (near-miss scoring compares all of them); `mask`
 * is accepted for symmetry with cas_key. */
int cas_normalize(const tch_cassette_request *r, unsigned mask, cas_norm *n) {
    (void)mask;
    memset(n, 0, sizeof *n);
    for (int f = 0; f < F_COUNT; f++) {
        int rc = norm_field(r, f, n);
        if (rc) {
            cas_norm_free(n);
            return rc;
        }
        n->h[f] = cas_hash(n->view[f].ptr, n->view[f].len, (uint64_t)f);
    }
    return 0;
}

void cas_norm_free(cas_norm *n) {
    for (int f = 0; f < F_COUNT; f++)
        tch_buf_free(&n->own[f]);
}

uint64_t cas_key(const cas_norm *n, unsigned mask) {
    uint64_t k = 0x9e3779b97f4a7c15ULL;
    for (int f = 0; f < F_COUNT; f++)
        if (mask & (1u << f))
            k = cas_hash(&n->h[f], sizeof n->h[f], k);
    return k;
}

/* ---- index ------------------------------------------------------------- */

static int rehash(tch_cassette *c, size_t want) {
    size_t nb = 64;
    while (nb < want * 2)
        nb *= 2;
    cas_bucket *b = malloc(nb * sizeof *b);
    if (!b)
        return TCH_ENOMEM;
    for (size_t i = 0; i < nb; i++)
        b[i].head = b[i].tail = b[i].cursor = b[i].repeat = NO_ENTRY;
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = nb;
    /* re-chain in file order so a chain stays sorted by index */
    for (size_t i = 0; i < c->n; i++) {
        cas_entry *e = c->items[i];
        if (!e->indexed)
            continue;
        cas_bucket *bk = &b[e->key & (nb - 1)];
        e->next = NO_ENTRY;
        if (bk->tail == NO_ENTRY)
            bk->head = bk->cursor = i;
        else
            c->items[bk->tail]->next = i;
        bk->tail = i;
    }
    return 0;
}

/* Sizes the table for `n` indexed entries so indexing a loaded cassette
 * does not rehash as it grows. */
int cas_index_reserve(tch_cassette *c, size_t n) {
    if (n * 2 <= c->nbuckets)
        return 0;
    return rehash(c, n);
}

/* Makes entry idx replayable through the index. Entries become indexed in
 * increasing index order, so appending keeps chains in file order. */
int cas_index_entry(tch_cassette *c, size_t idx) {
    cas_entry *e = c->items[idx];
    cas_norm n;
    int rc = cas_normalize(&e->it.request, c->matcher_mask, &n);
    if (rc)
        return rc;
    memcpy(e->fh, n.h, sizeof e->fh);
    e->key = cas_key(&n, c->matcher_mask);
    cas_norm_free(&n);
    e->indexed = true;
    e->next = NO_ENTRY;
    c->nindexed++;
    if (c->nindexed * 2 > c->nbuckets)
        return rehash(c, c->nindexed);
    cas_bucket *bk = &c->buckets[e->key & (c->nbuckets - 1)];
    if (bk->tail != NO_ENTRY && bk->tail > idx) /* a slot finished late: keep file order */
        return rehash(c, c->nindexed);
    if (bk->tail == NO_ENTRY) {
        bk->head = bk->cursor = idx;
    } else {
        c->items[bk->tail]->next = idx;
        if (bk->cursor == NO_ENTRY)
            bk->cursor = idx;
    }
    bk->tail = idx;
    return 0;
}

void tch_cassette_rewind(tch_cassette *c) {
    for (size_t i = 0; i < c->n; i++)
        c->items[i]->plays = 0;
    c->total_plays = 0;
    for (size_t b = 0; b < c->nbuckets; b++) { /* every entry is unplayed again */
        c->buckets[b].cursor = c->buckets[b].head;
        c->buckets[b].repeat = NO_ENTRY;
    }
}

/* ---- lookup ------------------------------------------------------------ */

/* All enabled built-in fields equal (hash first, then the normalized bytes). */
static int builtin_equal(const tch_cassette *c, const cas_norm *in, const cas_entry *e,
                         bool *equal) {
    for (int f = 0; f < F_COUNT; f++)
        if ((c->matcher_mask & (1u << f)) && in->h[f] != e->fh[f]) {
            *equal = false;
            return 0;
        }
    cas_norm en;
    int rc = cas_normalize(&e->it.request, c->matcher_mask, &en);
    if (rc)
        return rc;
    *equal = true;
    for (int f = 0; f < F_COUNT && *equal; f++)
        if ((c->matcher_mask & (1u << f)) && !tch_slice_eq(in->view[f], en.view[f]))
            *equal = false;
    cas_norm_free(&en);
    return 0;
}

static const char *custom_reject(const tch_cassette *c, const tch_cassette_request *req,
                                 const cas_entry *e) {
    for (size_t i = 0; i < c->ncustoms; i++)
        if (!c->customs[i].fn(c->customs[i].ud, req, &e->it.request))
            return c->customs[i].name;
    return NULL;
}

typedef struct find_result {
    size_t first_unplayed;
    size_t last_played;
    const char *rejected_by; /* a custom matcher refused an otherwise equal entry */
    size_t rejected_idx;
} find_result;

/* Whether entry i answers the request: *ok 1 when it does; a custom
 * matcher's refusal is noted in fr (the first one, for the near miss). */
static int entry_answers(tch_cassette *c, const tch_cassette_request *req, const cas_norm *in,
                         uint64_t key, size_t i, find_result *fr, bool *ok) {
    cas_entry *e = c->items[i];
    *ok = false;
    if (e->key != key || e->state != ST_LOADED)
        return 0;
    bool eq;
    int rc = builtin_equal(c, in, e, &eq);
    if (rc || !eq)
        return rc;
    const char *rej = custom_reject(c, req, e);
    if (rej) {
        if (!fr->rejected_by)
            fr->rejected_by = rej, fr->rejected_idx = i;
        return 0;
    }
    *ok = true;
    return 0;
}

/* With playback repeats, the last played entry that answers the request.
 * Entries before one that answered a repeat before cannot be later, so the
 * scan starts there: repeating one request stays O(1). */
static int find_repeat(tch_cassette *c, cas_bucket *bk, const tch_cassette_request *req,
                       const cas_norm *in, uint64_t key, find_result *fr) {
    bool ok = false;
    size_t from = bk->head;
    if (bk->repeat != NO_ENTRY) {
        int rc = entry_answers(c, req, in, key, bk->repeat, fr, &ok);
        if (rc)
            return rc;
        if (ok)
            from = bk->repeat;
    }
    for (size_t i = from; i != NO_ENTRY; i = c->items[i]->next) {
        if (c->items[i]->plays == 0)
            continue;
        int rc = entry_answers(c, req, in, key, i, fr, &ok);
        if (rc)
            return rc;
        if (ok)
            fr->last_played = i;
    }
    if (fr->last_played != NO_ENTRY)
        bk->repeat = fr->last_played;
    return 0;
}

/* tchannel-python compares bodies as bytes: of the entries equal by value,
 * the one with the same bytes is the one it would replay. */
static bool same_body_bytes(const tch_cassette *c, const tch_cassette_request *req,
                            const cas_entry *e) {
    return !(c->matcher_mask & (1u << F_BODY)) ||
           tch_slice_eq(tch_buf_slice(&req->body), tch_buf_slice(&e->it.request.body));
}

static int find_in_bucket(tch_cassette *c, const tch_cassette_request *req, const cas_norm *in,
                          uint64_t key, find_result *fr) {
    fr->first_unplayed = fr->last_played = fr->rejected_idx = NO_ENTRY;
    fr->rejected_by = NULL;
    if (c->nbuckets == 0) /* nothing indexed yet */
        return 0;
    cas_bucket *bk = &c->buckets[key & (c->nbuckets - 1)];
    while (bk->cursor != NO_ENTRY && c->items[bk->cursor]->plays > 0)
        bk->cursor = c->items[bk->cursor]->next;
    /* everything before the cursor was played: the first unplayed match
     * (file order) is at or after it; a later one with the same body bytes
     * is preferred (bodies equal only by value differ in bytes) */
    for (size_t i = bk->cursor; i != NO_ENTRY; i = c->items[i]->next) {
        if (c->items[i]->plays > 0)
            continue;
        bool ok;
        int rc = entry_answers(c, req, in, key, i, fr, &ok);
        if (rc)
            return rc;
        if (ok && fr->first_unplayed == NO_ENTRY)
            fr->first_unplayed = i;
        if (ok && same_body_bytes(c, req, c->items[i])) {
            fr->first_unplayed = i;
            return 0;
        }
    }
    if (fr->first_unplayed != NO_ENTRY)
        return 0;
    return c->opts.allow_playback_repeats ? find_repeat(c, bk, req, in, key, fr) : 0;
}

static size_t count_matching(const tch_cassette *c, const cas_norm *in, const cas_entry *e,
                             size_t *total) {
    size_t m = 0;
    *total = 0;
    for (int f = 0; f < F_COUNT; f++)
        if (c->matcher_mask & (1u << f)) {
            ++*total;
            m += in->h[f] == e->fh[f];
        }
    return m;
}

static int add_diff(tch_cassette_near_miss *nm, int f, tch_slice rec, tch_slice req) {
    /* skip the marker byte of structured forms: previews show the content */
    if (f == F_HEADERS || f == F_BODY) {
        rec = tch_slice_of(rec.ptr + 1, rec.len ? rec.len - 1 : 0);
        req = tch_slice_of(req.ptr + 1, req.len ? req.len - 1 : 0);
    }
    size_t off = 0;
    while (off < rec.len && off < req.len && rec.ptr[off] == req.ptr[off])
        off++;
    size_t from = off > 16 ? off - 16 : 0;
    char a[160], b[160];
    if (f == F_SCHEME) {
        snprintf(a, sizeof a, "%d", rec.len ? rec.ptr[0] : -1);
        snprintf(b, sizeof b, "%d", req.len ? req.ptr[0] : -1);
    } else if (f == F_THEADERS) {
        snprintf(a, sizeof a, "(%zu bytes)", rec.len);
        snprintf(b, sizeof b, "(%zu bytes)", req.len);
    } else {
        cas_preview(rec, from, 40, a, sizeof a);
        cas_preview(req, from, 40, b, sizeof b);
    }
    tch_cassette_field_diff *d = &nm->diffs[nm->n_diffs];
    d->field = cas_field_names[f];
    d->offset = off;
    d->recorded = strdup(a);
    d->requested = strdup(b);
    nm->n_diffs++;
    return d->recorded && d->requested ? 0 : TCH_ENOMEM;
}

/* Nearest replayable interaction: most matching enabled fields, then the
 * earliest. A linear scan, but only on the error path. */
static int near_miss(tch_cassette *c, const cas_norm *in, tch_cassette_near_miss *nm) {
    size_t best = NO_ENTRY, best_m = 0, total = 0;
    for (size_t i = 0; i < c->n; i++) {
        cas_entry *e = c->items[i];
        if (e->state != ST_LOADED || !e->indexed)
            continue;
        size_t m = count_matching(c, in, e, &total);
        if (best == NO_ENTRY || m > best_m)
            best = i, best_m = m;
    }
    if (best == NO_ENTRY)
        return 0;
    cas_entry *e = c->items[best];
    nm->found = 1;
    nm->index = best;
    nm->line = e->it.line;
    nm->matched_fields = best_m;
    nm->total_fields = total;
    nm->already_played = best_m == total && e->plays > 0;
    if (best_m == total)
        return 0;
    cas_norm en;
    int rc = cas_normalize(&e->it.request, c->matcher_mask, &en);
    if (rc)
        return rc;
    for (int f = 0; !rc && f < F_COUNT; f++)
        if ((c->matcher_mask & (1u << f)) && in->h[f] != e->fh[f])
            rc = add_diff(nm, f, en.view[f], in->view[f]);
    cas_norm_free(&en);
    return rc;
}

static void miss_message(const tch_cassette *c, const tch_cassette_request *req,
                         const tch_cassette_near_miss *nm, tch_error *err) {
    char desc[200], near[300] = "the cassette has no replayable interactions";
    cas_describe(req, desc, sizeof desc);
    if (nm->found) {
        char rdesc[200];
        cas_describe(&c->items[nm->index]->it.request, rdesc, sizeof rdesc);
        int k = snprintf(near, sizeof near, "nearest #%zu (line %zu, %s) matches %zu/%zu fields",
                         nm->index, nm->line, rdesc, nm->matched_fields, nm->total_fields);
        size_t o = k > 0 && (size_t)k < sizeof near ? (size_t)k : sizeof near - 1;
        if (nm->already_played)
            snprintf(near + o, sizeof near - o, " but was already played");
        else if (nm->custom_rejected)
            snprintf(near + o, sizeof near - o, " but matcher %s refused it", nm->custom_rejected);
        for (size_t i = 0; i < nm->n_diffs && o < sizeof near - 1; i++) {
            const tch_cassette_field_diff *d = &nm->diffs[i];
            o += strlen(near + o);
            snprintf(near + o, sizeof near - o, "%s %s: recorded \"%s\" vs requested \"%s\"",
                     i ? ";" : "; differs:", d->field, d->recorded, d->requested);
        }
    }
    tch_error_set(err, TCH_ENOTFOUND,
                  "cassette %s (mode %s): no recorded interaction for %s and the mode forbids "
                  "recording; %s",
                  c->name, tch_cassette_mode_name(c->mode), desc, near);
}

static int decide_miss(tch_cassette *c, const tch_cassette_request *req, const cas_norm *in,
                       const find_result *fr, tch_cassette_decision *out, tch_error *err) {
    if (tch_cassette_can_record(c)) {
        out->action = TCH_CASSETTE_ACT_RECORD;
        return 0;
    }
    out->action = TCH_CASSETTE_ACT_ERROR;
    tch_cassette_near_miss *nm = &out->near_miss;
    if (fr->rejected_by) {
        cas_entry *e = c->items[fr->rejected_idx];
        nm->found = 1;
        nm->index = fr->rejected_idx;
        nm->line = e->it.line;
        size_t total = 0;
        for (int f = 0; f < F_COUNT; f++)
            total += (c->matcher_mask >> f) & 1u;
        nm->matched_fields = nm->total_fields = total;
        nm->custom_rejected = strdup(fr->rejected_by);
        if (!nm->custom_rejected)
            return tch_error_set(err, TCH_ENOMEM, "cassette %s: near-miss", c->name);
    } else {
        int rc = near_miss(c, in, nm);
        if (rc)
            return tch_error_set(err, rc, "cassette %s: near-miss", c->name);
    }
    miss_message(c, req, nm, err);
    return TCH_ENOTFOUND;
}

int cas_lookup(tch_cassette *c, tch_cassette_request *req, tch_cassette_decision *out,
               tch_error *err) {
    if (c->mode == TCH_CASSETTE_ALL) { /* never replays */
        out->action = TCH_CASSETTE_ACT_RECORD;
        return 0;
    }
    cas_norm in;
    int rc = cas_normalize(req, c->matcher_mask, &in);
    if (rc)
        return tch_error_set(err, rc, "cassette %s: normalizing request", c->name);
    uint64_t key = cas_key(&in, c->matcher_mask);
    find_result fr;
    rc = find_in_bucket(c, req, &in, key, &fr);
    if (!rc) {
        size_t pick = fr.first_unplayed != NO_ENTRY  ? fr.first_unplayed
                      : c->opts.allow_playback_repeats ? fr.last_played
                                                       : NO_ENTRY;
        if (pick != NO_ENTRY) {
            c->items[pick]->plays++;
            c->total_plays++;
            out->action = TCH_CASSETTE_ACT_REPLAY;
            out->index = pick;
            out->interaction = &c->items[pick]->it;
        } else {
            rc = decide_miss(c, req, &in, &fr, out, err);
        }
    } else {
        tch_error_set(err, rc, "cassette %s: matching request", c->name);
    }
    cas_norm_free(&in);
    return rc;
}

void tch_cassette_decision_clear(tch_cassette_decision *d) {
    if (!d)
        return;
    for (size_t i = 0; i < d->near_miss.n_diffs; i++) {
        free(d->near_miss.diffs[i].recorded);
        free(d->near_miss.diffs[i].requested);
    }
    free(d->near_miss.custom_rejected);
    memset(d, 0, sizeof *d);
}

json_t *tch_cassette_near_miss_to_json(const tch_cassette_near_miss *nm) {
    json_t *diffs = json_array();
    json_t *o = json_pack("{s:b,s:I,s:I,s:I,s:I,s:b}", "found", nm->found, "index",
                          (json_int_t)nm->index, "line", (json_int_t)nm->line, "matched",
                          (json_int_t)nm->matched_fields, "total", (json_int_t)nm->total_fields,
                          "alreadyPlayed", nm->already_played);
    if (!diffs || !o)
        goto fail;
    for (size_t i = 0; i < nm->n_diffs; i++) {
        const tch_cassette_field_diff *d = &nm->diffs[i];
        json_t *jd = json_pack("{s:s,s:s,s:s,s:I}", "field", d->field, "recorded", d->recorded,
                               "requested", d->requested, "offset", (json_int_t)d->offset);
        if (!jd || json_array_append_new(diffs, jd))
            goto fail;
    }
    if (nm->custom_rejected &&
        json_object_set_new(o, "customMatcher", json_string(nm->custom_rejected)))
        goto fail;
    if (json_object_set_new(o, "diffs", diffs))
        goto fail_o;
    return o;
fail:
    json_decref(diffs);
fail_o:
    json_decref(o);
    return NULL;
}
