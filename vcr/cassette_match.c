/* Matching: normalizes the matched fields of a request (JSON by value,
 * $tracing$ header keys dropped), hashes them into a table of per-request
 * interaction chains so a lookup costs the same for 10 or 10,000 recorded
 * interactions, and explains misses (the nearest recorded interaction and
 * the fields that differ). */
#include "cassette_internal.h"

#include <ctype.h>
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

/* A json request's arg2/arg3 as a handler reads it. Empty arg2 is no
 * headers (Uber's tcurl sends it, our recorder writes {}) and so is "null"
 * (JSON.stringify of a Node caller's null head); empty arg3 reads as null,
 * as Node and tchannel-python read it. */
static char *json_as_read(tch_slice s, bool headers) {
    if (s.len == 0)
        return strdup(headers ? "{}" : "null");
    char *canon = json_canonical(s, headers);
    if (headers && canon && strcmp(canon, "null") == 0) {
        free(canon);
        return strdup("{}");
    }
    return canon;
}

/* Normalized headers (arg2) or body (arg3) of a json/thrift request. Raw
 * bytes when the scheme has no structure or the bytes do not parse. */
static int norm_structured(const tch_cassette_request *r, bool headers, tch_buf *own,
                           tch_slice *view) {
    tch_slice s = headers ? tch_buf_slice(&r->headers) : tch_buf_slice(&r->body);
    char *canon = NULL;
    if (r->scheme == TCH_CASSETTE_JSON)
        canon = json_as_read(s, headers);
    else if (r->scheme == TCH_CASSETTE_THRIFT && headers)
        canon = tch__cas_thrift_headers_json(s, true, true);
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
 * is accepted for symmetry with tch__cas_key. */
int tch__cas_normalize(const tch_allocator *a, const tch_cassette_request *r, unsigned mask,
                       cas_norm *n) {
    (void)mask;
    memset(n, 0, sizeof *n);
    for (int f = 0; f < F_COUNT; f++)
        n->own[f].alloc = a;
    for (int f = 0; f < F_COUNT; f++) {
        int rc = norm_field(r, f, n);
        if (rc) {
            tch__cas_norm_free(n);
            return rc;
        }
        n->h[f] = tch__cas_hash(n->view[f].ptr, n->view[f].len, (uint64_t)f);
    }
    return 0;
}

void tch__cas_norm_free(cas_norm *n) {
    for (int f = 0; f < F_COUNT; f++)
        tch_buf_free(&n->own[f]);
}

uint64_t tch__cas_key(const cas_norm *n, unsigned mask) {
    uint64_t k = 0x9e3779b97f4a7c15ULL;
    for (int f = 0; f < F_COUNT; f++)
        if (mask & (1u << f))
            k = tch__cas_hash(&n->h[f], sizeof n->h[f], k);
    return k;
}

/* ---- index ------------------------------------------------------------- */

/* Chains every indexed entry again, in file order so a chain stays sorted
 * by index. */
static void rechain(tch_cassette *c) {
    cas_bucket *b = c->buckets;
    for (size_t i = 0; i < c->nbuckets; i++)
        b[i].head = b[i].tail = b[i].cursor = b[i].repeat = NO_ENTRY;
    for (size_t i = 0; i < c->n; i++) {
        cas_entry *e = c->items[i];
        if (!e->indexed)
            continue;
        cas_bucket *bk = &b[e->key & (c->nbuckets - 1)];
        e->next = NO_ENTRY;
        if (bk->tail == NO_ENTRY)
            bk->head = bk->cursor = i;
        else
            c->items[bk->tail]->next = i;
        bk->tail = i;
    }
}

/* Rechains for `want` indexed entries; allocates only when the table is
 * too small for them (so, after tch__cas_index_reserve, never). */
static int rehash(tch_cassette *c, size_t want) {
    if (!c->buckets || c->nbuckets < want * 2) {
        size_t nb = 64;
        while (nb < want * 2)
            nb *= 2;
        cas_bucket *b = tch__malloc(c->alloc, nb * sizeof *b);
        if (!b)
            return TCH_ENOMEM;
        tch__free(c->alloc, c->buckets);
        c->buckets = b;
        c->nbuckets = nb;
    }
    rechain(c);
    return 0;
}

/* Sizes the table for `n` indexed entries so indexing a loaded cassette
 * does not rehash as it grows. */
int tch__cas_index_reserve(tch_cassette *c, size_t n) {
    if (n * 2 <= c->nbuckets)
        return 0;
    return rehash(c, n);
}

/* e's field hashes and key, computed once (tch__cas_index_prepare may have). */
static int key_entry(tch_cassette *c, cas_entry *e) {
    if (e->keyed)
        return 0;
    cas_norm n;
    int rc = tch__cas_normalize(c->alloc, &e->it.request, c->matcher_mask, &n);
    if (rc)
        return rc;
    memcpy(e->fh, n.h, sizeof e->fh);
    e->key = tch__cas_key(&n, c->matcher_mask);
    tch__cas_norm_free(&n);
    e->keyed = true;
    return 0;
}

int tch__cas_index_prepare(tch_cassette *c, size_t from) {
    size_t exact = 0, patterns = 0;
    for (size_t i = from; i < c->n; i++) {
        cas_entry *e = c->items[i];
        if (e->state != ST_DONE)
            continue;
        if (tch__cas_is_pattern(e)) {
            patterns++;
            continue;
        }
        exact++;
        int rc = key_entry(c, e);
        if (rc)
            return rc;
    }
    int rc = tch__cas_index_reserve(c, c->nindexed + exact);
    return rc || !patterns ? rc : tch__cas_pattern_reserve(c, from, patterns);
}

/* Makes entry idx replayable through the index. Entries become indexed in
 * increasing index order, so appending keeps chains in file order. */
int tch__cas_index_entry(tch_cassette *c, size_t idx) {
    cas_entry *e = c->items[idx];
    if (tch__cas_is_pattern(e)) /* matched by rules, from its own list */
        return tch__cas_pattern_add(c, idx);
    int rc = key_entry(c, e);
    if (rc)
        return rc;
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
    tch_cassette_scenarios_reset(c);
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
    int rc = tch__cas_normalize(c->alloc, &e->it.request, c->matcher_mask, &en);
    if (rc)
        return rc;
    *equal = true;
    for (int f = 0; f < F_COUNT && *equal; f++)
        if ((c->matcher_mask & (1u << f)) && !tch_slice_eq(in->view[f], en.view[f]))
            *equal = false;
    tch__cas_norm_free(&en);
    return 0;
}

static const char *custom_reject(const tch_cassette *c, const tch_cassette_request *req,
                                 const cas_entry *e) {
    for (size_t i = 0; i < c->ncustoms; i++)
        if (!c->customs[i].fn(req, &e->it.request, c->customs[i].ud))
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

/* ---- explaining a miss ------------------------------------------------- */

#define SHOW_MAX 60 /* characters of a value a message shows */
#define SHOW_LEAD 20 /* of them, before the first difference */

/* text[from..] cut to SHOW_MAX characters, "..." marking what was cut
 * (inside the quotes of a JSON string, so it still reads as one). */
static char *crop(const char *text, size_t from) {
    size_t len = strlen(text);
    bool str = len >= 2 && text[0] == '"' && text[len - 1] == '"';
    if (from > len)
        from = len;
    size_t n = len - from > SHOW_MAX ? SHOW_MAX : len - from;
    bool cut_end = from + n < len;
    const char *head = !from ? "" : str ? "\"..." : "...";
    const char *tail = !cut_end ? "" : str ? "...\"" : "...";
    char *out = malloc(n + 9);
    if (out)
        snprintf(out, n + 9, "%s%.*s%s", head, (int)n, text + from, tail);
    return out;
}

/* Both texts cropped to show where they first differ. Takes a and b. */
static int set_cropped(tch_cassette_field_diff *d, char *a, char *b) {
    int rc = TCH_ENOMEM;
    if (a && b) {
        size_t off = 0;
        while (a[off] && a[off] == b[off])
            off++;
        size_t from = (strlen(a) > SHOW_MAX || strlen(b) > SHOW_MAX) && off > SHOW_LEAD
                          ? off - SHOW_LEAD
                          : 0;
        d->recorded = crop(a, from);
        d->requested = crop(b, from);
        rc = d->recorded && d->requested ? 0 : TCH_ENOMEM;
    }
    free(a);
    free(b);
    return rc;
}

/* Integers beyond int64 ride through matching as "\u0000bigint:DIGITS"
 * strings (load_json): shown as the digits they were. In place. */
static void unmark_bigints(char *text) {
    static const char mark[] = "\"\\u0000bigint:";
    char *p;
    while ((p = strstr(text, mark))) {
        char *digits = p + sizeof mark - 1, *end = strchr(digits, '"');
        if (!end)
            return;
        memmove(p, digits, (size_t)(end - digits));
        memmove(p + (end - digits), end + 1, strlen(end + 1) + 1);
    }
}

static char *show_json(const json_t *v) {
    if (!v)
        return strdup("(absent)");
    char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY | JSON_ENSURE_ASCII);
    if (text)
        unmark_bigints(text);
    return text;
}

/* A key as a path step: key, or ["odd key"] when it is not a plain name. */
static int path_key(tch_buf *path, const char *k, size_t n) {
    bool plain = n > 0 && !isdigit((unsigned char)k[0]);
    for (size_t i = 0; plain && i < n; i++)
        plain = isalnum((unsigned char)k[i]) || k[i] == '_' || k[i] == '$' || k[i] == '-';
    if (plain)
        return (path->len && tch_buf_append(path, ".", 1)) || tch_buf_append(path, k, n)
                   ? TCH_ENOMEM
                   : 0;
    json_t *s = json_stringn(k, n);
    char *q = s ? json_dumps(s, JSON_ENCODE_ANY | JSON_ENSURE_ASCII) : NULL;
    json_decref(s);
    int rc = !q || tch_buf_append(path, "[", 1) || tch_buf_append(path, q, strlen(q)) ||
                     tch_buf_append(path, "]", 1)
                 ? TCH_ENOMEM
                 : 0;
    free(q);
    return rc;
}

typedef struct okey {
    const char *k;
    size_t n;
} okey;

static int cmp_okey(const void *pa, const void *pb) {
    const okey *a = pa, *b = pb;
    int c = memcmp(a->k, b->k, a->n < b->n ? a->n : b->n);
    return c ? c : (a->n > b->n) - (a->n < b->n);
}

/* The first key (in sorted order) whose values differ or that one side
 * lacks; false when there is none, or on ENOMEM. */
static bool object_first_diff(const json_t *a, const json_t *b, okey *out) {
    size_t n = json_object_size(a) + json_object_size(b), i = 0;
    okey *keys = malloc((n ? n : 1) * sizeof *keys);
    if (!keys)
        return false;
    const char *k;
    size_t kl;
    json_t *v;
    json_object_keylen_foreach((json_t *)a, k, kl, v) keys[i++] = (okey){k, kl};
    json_object_keylen_foreach((json_t *)b, k, kl, v) keys[i++] = (okey){k, kl};
    (void)v;
    qsort(keys, i, sizeof *keys, cmp_okey);
    bool found = false;
    for (size_t j = 0; j < i && !found; j++) {
        const json_t *va = json_object_getn(a, keys[j].k, keys[j].n);
        const json_t *vb = json_object_getn(b, keys[j].k, keys[j].n);
        if ((found = !va || !vb || !json_equal(va, vb)))
            *out = keys[j];
    }
    free(keys);
    return found;
}

/* Walks a and b (which differ) down to the first place they differ: the
 * path to it and the two values there (NULL: that side has none). */
static int json_first_diff(const json_t *a, const json_t *b, tch_buf *path, const json_t **ra,
                           const json_t **rb) {
    int rc = 0;
    while (!rc && a && b) {
        if (json_is_object(a) && json_is_object(b)) {
            okey key;
            if (!object_first_diff(a, b, &key))
                break;
            rc = path_key(path, key.k, key.n);
            a = json_object_getn(a, key.k, key.n);
            b = json_object_getn(b, key.k, key.n);
        } else if (json_is_array(a) && json_is_array(b)) {
            size_t na = json_array_size(a), nb = json_array_size(b), i = 0;
            while (i < na && i < nb && json_equal(json_array_get(a, i), json_array_get(b, i)))
                i++;
            if (i == na && i == nb)
                break;
            char step[32];
            snprintf(step, sizeof step, "[%zu]", i);
            rc = tch_buf_append(path, step, strlen(step)) ? TCH_ENOMEM : 0;
            a = json_array_get(a, i);
            b = json_array_get(b, i);
        } else {
            break;
        }
    }
    *ra = a;
    *rb = b;
    return rc;
}

/* A JSON diff of two values that differ, read as `decoded_as`. */
static int set_json_diff(tch_cassette_field_diff *d, const json_t *rec, const json_t *req,
                         const char *decoded_as) {
    tch_buf path = {0};
    const json_t *a, *b;
    int rc = json_first_diff(rec, req, &path, &a, &b);
    d->form = TCH_CASSETTE_DIFF_JSON;
    if (!rc && decoded_as && !(d->decoded_as = strdup(decoded_as)))
        rc = TCH_ENOMEM;
    if (!rc && path.len && !(d->path = tch_slice_strdup(tch_buf_slice(&path))))
        rc = TCH_ENOMEM;
    tch_buf_free(&path);
    return rc ? rc : set_cropped(d, show_json(a), show_json(b));
}

static json_t *load_canonical(tch_slice view) {
    return json_loadb((const char *)view.ptr + 1, view.len - 1, JSON_DECODE_ANY | JSON_ALLOW_NUL,
                      NULL);
}

/* The method a thrift request's arg1 names in the cassette's IDL, or NULL. */
static const tch_thrift_method *thrift_method(const tch_cassette *c,
                                              const tch_cassette_request *r) {
    if (r->scheme != TCH_CASSETTE_THRIFT)
        return NULL;
    const tch_thrift_method *m = tch_cassette_thrift_method(
        c->opts.thrift, tch_buf_slice(&r->service), tch_buf_slice(&r->endpoint));
    return m ? m : tch__cas_idl_method(c->opts.thrift_idl, tch_buf_slice(&r->endpoint));
}

static json_t *thrift_args(const tch_thrift_method *m, const tch_cassette_request *r) {
    json_t *j = NULL;
    if (!m || tch_thrift_method_args_to_json(m, tch_buf_slice(&r->body), &j, NULL) != 0)
        return NULL;
    return j;
}

/* Thrift bodies through the IDL: "KeyValue::getValue args" and the first
 * field that differs. *done 0 when either side does not decode. */
static int thrift_body_diff(const tch_cassette *c, const tch_cassette_request *rec,
                            const tch_cassette_request *req, tch_cassette_field_diff *d,
                            bool *done) {
    const tch_thrift_method *mq = thrift_method(c, req);
    json_t *a = thrift_args(thrift_method(c, rec), rec), *b = thrift_args(mq, req);
    int rc = 0;
    *done = a && b;
    if (*done) {
        char label[160];
        snprintf(label, sizeof label, "%s::%s args",
                 tch_thrift_service_name(tch_thrift_method_service(mq)),
                 tch_thrift_method_name(mq));
        rc = set_json_diff(d, a, b, label);
    } else if (mq && (a || b)) {
        d->note = a ? "requested does not decode with the IDL"
                    : "recorded does not decode with the IDL";
    }
    json_decref(a);
    json_decref(b);
    return rc;
}

static const char *scheme_name(int s) {
    switch (s) {
    case TCH_CASSETTE_RAW: return "raw";
    case TCH_CASSETTE_JSON: return "json";
    case TCH_CASSETTE_THRIFT: return "thrift";
    }
    return "unknown";
}

/* headers or body: as JSON when both sides read as JSON (json values,
 * thrift headers) or decode through the IDL (thrift bodies); else bytes. */
static int structured_diff(const tch_cassette *c, int f, const tch_cassette_request *rec,
                           const tch_cassette_request *req, tch_slice rv, tch_slice qv,
                           tch_cassette_field_diff *d, bool *done) {
    *done = false;
    if (f == F_BODY && req->scheme == TCH_CASSETTE_THRIFT) {
        int rc = thrift_body_diff(c, rec, req, d, done);
        if (rc || *done)
            return rc;
    }
    bool rj = rv.len && rv.ptr[0] == MARK_JSON, qj = qv.len && qv.ptr[0] == MARK_JSON;
    if (rj != qj && rec->scheme == req->scheme) /* else argScheme's diff says why */
        d->note = req->scheme == TCH_CASSETTE_THRIFT
                      ? (rj ? "requested is not thrift headers" : "recorded is not thrift headers")
                      : (rj ? "requested is not JSON" : "recorded is not JSON");
    if (!rj || !qj)
        return 0;
    json_t *a = load_canonical(rv), *b = load_canonical(qv);
    int rc = 0;
    if (a && b) {
        rc = set_json_diff(d, a, b, req->scheme == TCH_CASSETTE_THRIFT ? "thrift" : "json");
        *done = true;
    }
    json_decref(a);
    json_decref(b);
    return rc;
}

/* Transport headers in their order, as [{"as":"thrift"},{"cn":"x"}], so
 * a diff names the header; NULL when one is not UTF-8 text. */
static json_t *theaders_json(const tch_cassette_request *r) {
    json_t *list = json_array();
    for (size_t i = 0; list && i < r->n_transport_headers; i++) {
        const tch_cassette_kv *kv = &r->transport_headers[i];
        json_t *one = json_object();
        /* the _new calls take their value (NULL too) even when they fail */
        if (json_array_append_new(list, one) ||
            json_object_setn_new(one, kv->key.ptr ? (const char *)kv->key.ptr : "", kv->key.len,
                                 json_stringn(kv->value.ptr ? (const char *)kv->value.ptr : "",
                                              kv->value.len))) {
            json_decref(list);
            return NULL;
        }
    }
    return list;
}

static int theaders_diff(const tch_cassette_request *rec, const tch_cassette_request *req,
                         tch_cassette_field_diff *d, bool *done) {
    json_t *a = theaders_json(rec), *b = theaders_json(req);
    int rc = 0;
    *done = a && b;
    if (*done)
        rc = set_json_diff(d, a, b, NULL);
    json_decref(a);
    json_decref(b);
    return rc;
}

/* One differing field of the nearest interaction, in the most readable
 * form its bytes allow. */
static int add_diff(const tch_cassette *c, tch_cassette_near_miss *nm, int f,
                    const tch_cassette_request *rec, const tch_cassette_request *req,
                    tch_slice rv, tch_slice qv) {
    tch_cassette_field_diff *d = &nm->diffs[nm->n_diffs++];
    memset(d, 0, sizeof *d);
    d->field = tch__cas_field_names[f];
    if (f == F_SCHEME) {
        d->form = TCH_CASSETTE_DIFF_NAME;
        d->recorded = strdup(scheme_name(rec->scheme));
        d->requested = strdup(scheme_name(req->scheme));
        return d->recorded && d->requested ? 0 : TCH_ENOMEM;
    }
    if (f == F_HEADERS || f == F_BODY) {
        bool done;
        int rc = structured_diff(c, f, rec, req, rv, qv, d, &done);
        if (rc || done)
            return rc;
        /* previews show the content, not the marker byte */
        rv = tch_slice_of(rv.ptr + 1, rv.len ? rv.len - 1 : 0);
        qv = tch_slice_of(qv.ptr + 1, qv.len ? qv.len - 1 : 0);
    }
    if (f == F_THEADERS) {
        bool done;
        int rc = theaders_diff(rec, req, d, &done);
        if (rc || done)
            return rc;
    }
    size_t off = 0;
    while (off < rv.len && off < qv.len && rv.ptr[off] == qv.ptr[off])
        off++;
    size_t from = off > 16 ? off - 16 : 0;
    char a[160], b[160];
    if (f == F_THEADERS) {
        snprintf(a, sizeof a, "(%zu bytes)", rv.len);
        snprintf(b, sizeof b, "(%zu bytes)", qv.len);
    } else {
        tch__cas_preview(rv, from, 40, a, sizeof a);
        tch__cas_preview(qv, from, 40, b, sizeof b);
    }
    d->form = TCH_CASSETTE_DIFF_BYTES;
    d->offset = off;
    d->recorded = strdup(a);
    d->requested = strdup(b);
    return d->recorded && d->requested ? 0 : TCH_ENOMEM;
}

/* Nearest replayable interaction: most matching enabled fields, then the
 * earliest. A linear scan, but only on the error path. */
static int near_miss(tch_cassette *c, const tch_cassette_request *req, const cas_norm *in,
                     tch_cassette_near_miss *nm) {
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
    int rc = tch__cas_normalize(c->alloc, &e->it.request, c->matcher_mask, &en);
    if (rc)
        return rc;
    for (int f = 0; !rc && f < F_COUNT; f++)
        if ((c->matcher_mask & (1u << f)) && in->h[f] != e->fh[f])
            rc = add_diff(c, nm, f, &e->it.request, req, en.view[f], in->view[f]);
    tch__cas_norm_free(&en);
    return rc;
}

/* "svc::ep (thrift) args {"key":"bar"}" when the IDL reads the body, else
 * tch__cas_describe's byte preview. */
static void describe(const tch_cassette *c, const tch_cassette_request *r, char *out,
                     size_t outsz) {
    json_t *args = thrift_args(thrift_method(c, r), r);
    char *text = args ? show_json(args) : NULL;
    char *shown = text ? crop(text, 0) : NULL;
    json_decref(args);
    free(text);
    if (!shown) {
        tch__cas_describe(r, out, outsz);
        return;
    }
    char svc[64], ep[64];
    tch__cas_preview(tch_buf_slice(&r->service), 0, 40, svc, sizeof svc);
    tch__cas_preview(tch_buf_slice(&r->endpoint), 0, 40, ep, sizeof ep);
    snprintf(out, outsz, "%s::%s (thrift) args %s", svc, ep, shown);
    free(shown);
}

/* "; body json: n[1]: recorded 2 vs requested 3 (note)" */
static void put_diff(char *out, size_t outsz, const tch_cassette_field_diff *d, bool first) {
    const char *q = d->form == TCH_CASSETTE_DIFF_BYTES ? "\"" : "";
    snprintf(out, outsz, "%s %s%s%s: %s%srecorded %s%s%s vs requested %s%s%s%s%s%s",
             first ? "; differs:" : ";", d->field, d->decoded_as ? " " : "",
             d->decoded_as ? d->decoded_as : "", d->path ? d->path : "", d->path ? ": " : "", q,
             d->recorded, q, q, d->requested, q, d->note ? " (" : "", d->note ? d->note : "",
             d->note ? ")" : "");
}

static void miss_message(const tch_cassette *c, const tch_cassette_request *req,
                         const tch_cassette_near_miss *nm, tch_error *err) {
    char desc[200], near[TCH_ERROR_MSG_MAX] = "the cassette has no replayable interactions";
    describe(c, req, desc, sizeof desc);
    if (nm->found && nm->is_stub) {
        char line[40] = "";
        if (nm->line) /* run-time stubs have none */
            snprintf(line, sizeof line, " (line %zu)", nm->line);
        snprintf(near, sizeof near, "nearest stub%s%s%s passes %zu/%zu rules; %.300s",
                 nm->stub_id ? " " : "", nm->stub_id ? nm->stub_id : "", line,
                 nm->matched_fields, nm->total_fields, nm->rule_failed ? nm->rule_failed : "");
    } else if (nm->found) {
        char rdesc[200];
        describe(c, &c->items[nm->index]->it.request, rdesc, sizeof rdesc);
        int k = snprintf(near, sizeof near, "nearest #%zu (line %zu, %s) matches %zu/%zu fields",
                         nm->index, nm->line, rdesc, nm->matched_fields, nm->total_fields);
        size_t o = k > 0 && (size_t)k < sizeof near ? (size_t)k : sizeof near - 1;
        if (nm->already_played)
            snprintf(near + o, sizeof near - o, " but was already played");
        else if (nm->custom_rejected)
            snprintf(near + o, sizeof near - o, " but matcher %s refused it", nm->custom_rejected);
        for (size_t i = 0; i < nm->n_diffs && o < sizeof near - 1; i++) {
            o += strlen(near + o);
            put_diff(near + o, sizeof near - o, &nm->diffs[i], i == 0);
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
        int rc = near_miss(c, req, in, nm);
        if (!rc)
            rc = tch__cas_pattern_near_miss(c, req, nm);
        if (rc)
            return tch_error_set(err, rc, "cassette %s: near-miss", c->name);
    }
    miss_message(c, req, nm, err);
    return TCH_ENOTFOUND;
}

int tch__cas_lookup(tch_cassette *c, tch_cassette_request *req, tch_cassette_decision *out,
               tch_error *err) {
    if (c->mode == TCH_CASSETTE_ALL) { /* never replays */
        out->action = TCH_CASSETTE_ACT_RECORD;
        return 0;
    }
    cas_norm in;
    int rc = tch__cas_normalize(c->alloc, req, c->matcher_mask, &in);
    if (rc)
        return tch_error_set(err, rc, "cassette %s: normalizing request", c->name);
    uint64_t key = tch__cas_key(&in, c->matcher_mask);
    find_result fr = {NO_ENTRY, NO_ENTRY, NULL, NO_ENTRY};
    /* stubs that outrank exact interactions, then the hash (with playback
     * repeats, an exact interaction played before is still an exact hit),
     * then the other stubs: an exact hit never evaluates a pattern of
     * default priority */
    size_t early = NO_ENTRY, late = NO_ENTRY;
    rc = tch__cas_pattern_find(c, req, true, &early);
    if (!rc && early == NO_ENTRY)
        rc = find_in_bucket(c, req, &in, key, &fr);
    if (!rc && early == NO_ENTRY && fr.first_unplayed == NO_ENTRY && fr.last_played == NO_ENTRY)
        rc = tch__cas_pattern_find(c, req, false, &late);
    if (!rc) {
        size_t pick = early != NO_ENTRY               ? early
                      : fr.first_unplayed != NO_ENTRY ? fr.first_unplayed
                      : fr.last_played != NO_ENTRY    ? fr.last_played /* set with repeats only */
                                                      : late;
        if (pick != NO_ENTRY && c->items[pick]->pattern &&
            (rc = tch__cas_pattern_played(c, pick)) != 0) {
            /* its scenario could not move: not played, not answered */
            tch_error_set(err, rc, "cassette %s: out of memory moving a stub's scenario",
                          c->name);
        } else if (pick != NO_ENTRY) {
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
    tch__cas_norm_free(&in);
    return rc;
}

void tch_cassette_decision_clear(tch_cassette_decision *d) {
    if (!d)
        return;
    for (size_t i = 0; i < d->near_miss.n_diffs; i++) {
        free(d->near_miss.diffs[i].recorded);
        free(d->near_miss.diffs[i].requested);
        free(d->near_miss.diffs[i].decoded_as);
        free(d->near_miss.diffs[i].path);
    }
    free(d->near_miss.custom_rejected);
    free(d->near_miss.stub_id);
    free(d->near_miss.rule_failed);
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
        static const char *const forms[] = {"bytes", "json", "name"};
        json_t *jd = json_pack("{s:s,s:s,s:s,s:s,s:I}", "field", d->field, "form",
                               forms[d->form <= TCH_CASSETTE_DIFF_NAME ? d->form : 0], "recorded",
                               d->recorded, "requested", d->requested, "offset",
                               (json_int_t)d->offset);
        if (!jd || json_array_append_new(diffs, jd) ||
            (d->decoded_as && json_object_set_new(jd, "decodedAs", json_string(d->decoded_as))) ||
            (d->path && json_object_set_new(jd, "path", json_string(d->path))) ||
            (d->note && json_object_set_new(jd, "note", json_string(d->note))))
            goto fail;
    }
    if (nm->custom_rejected &&
        json_object_set_new(o, "customMatcher", json_string(nm->custom_rejected)))
        goto fail;
    if (nm->is_stub && (json_object_set_new(o, "stub", json_true()) ||
                        (nm->stub_id && json_object_set_new(o, "stubId", json_string(nm->stub_id))) ||
                        (nm->rule_failed &&
                         json_object_set_new(o, "ruleFailed", json_string(nm->rule_failed)))))
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
