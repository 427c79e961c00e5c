/* Stubs on a cassette: the pattern list (entries matched by rules, kept
 * apart from the exact hash so an exact hit never scans them), scenarios,
 * `required`, run-time stubs from JSON, and their JSON form. */
#include "cassette_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tch__cas_stub_info_free(const tch_allocator *a, tch_stub_info *s) {
    if (!s)
        return;
    tch__free(a, s->id);
    tch_stub_rules_free(s->rules); /* rules are the C library's (tchannel/stub.h) */
    tch__free(a, s->scenario);
    tch__free(a, s->required_state);
    tch__free(a, s->new_state);
    tch__free(a, s);
}

const tch_stub_info *tch_cassette_stub_of(const tch_cassette_interaction *it) {
    return it ? it->stub : NULL;
}

static int priority_of(const cas_entry *e) {
    return e->it.stub && e->it.stub->has_priority ? e->it.stub->priority
                                                   : TCH_STUB_PRIORITY_DEFAULT;
}

/* Explicit rules or a scenario: answers any number of times, as WireMock's
 * stubs do. A recording matched by rules only because of a redacted value
 * answers once, as any recording. */
static bool repeats(const cas_entry *e) {
    return e->it.stub && (e->it.stub->rules || e->it.stub->scenario);
}

bool tch__cas_is_pattern(const cas_entry *e) {
    const tch_stub_info *s = e->it.stub;
    return (s && (s->rules || s->scenario || s->has_priority)) || /* rules: id too (load) */
           tch__cas_request_has_redacted(&e->it.request);
}

static const tch_stub_rules *rules_of(const cas_entry *e) {
    return e->it.stub && e->it.stub->rules ? e->it.stub->rules : e->implicit;
}

/* The cassette's matchers as rules on the recorded request. */
static int implicit_rules(const tch_cassette *c, cas_entry *e) {
    static const int map[F_COUNT] = {
        [F_SERVICE] = SF_SERVICE, [F_ENDPOINT] = SF_ENDPOINT, [F_HEADERS] = SF_HEADERS,
        [F_BODY] = SF_BODY,       [F_SCHEME] = SF_SCHEME,     [F_HOSTPORT] = -1,
        [F_THEADERS] = SF_THEADERS,
    };
    tch_stub_rules *rs = NULL; /* all or none: a partial set would match too much */
    for (int f = 0; f < F_COUNT; f++)
        if ((c->matcher_mask & (1u << f)) && map[f] >= 0) {
            int rc = tch__cas_rules_add_exact(&rs, map[f], &e->it.request);
            if (rc) {
                tch_stub_rules_free(rs);
                return rc;
            }
        }
    e->implicit = rs;
    return 0;
}

/* ---- the pattern index: groups by service and endpoint ------------------------- */

static uint64_t group_key(tch_slice service, tch_slice endpoint) {
    return tch__cas_hash(endpoint.ptr, endpoint.len, tch__cas_hash(service.ptr, service.len, 0x5e41ce));
}

static uint64_t lead_key(uint64_t group, uint8_t first) {
    return tch__cas_hash(&first, 1, group ^ 0x1ead);
}

/* Whether pattern a comes before pattern b: priority, then file order. */
static bool comes_before(const cas_pref *a, const cas_pref *b) {
    return a->priority < b->priority || (a->priority == b->priority && a->idx < b->idx);
}

/* Room for `want` elements of `size` bytes in *items (capacity *cap),
 * doubling from `first`; *items and *cap are unchanged on failure. */
static int reserve(const tch_cassette *c, void **items, size_t *cap, size_t want, size_t size,
                   size_t first) {
    if (want <= *cap)
        return 0;
    size_t n = *cap ? *cap : first;
    while (n < want && n <= SIZE_MAX / 2)
        n *= 2;
    if (n < want || n > SIZE_MAX / size)
        return TCH_ENOMEM;
    void *v = tch__realloc(c->alloc, *items, n * size);
    if (!v)
        return TCH_ENOMEM;
    *items = v;
    *cap = n;
    return 0;
}

/* Room in l for `want` patterns. */
static int plist_reserve(const tch_cassette *c, cas_plist *l, size_t want) {
    return reserve(c, (void **)&l->v, &l->cap, want, sizeof *l->v, 4);
}

static int plist_insert(const tch_cassette *c, cas_plist *l, size_t idx) {
    int rc = plist_reserve(c, l, l->n + 1);
    if (rc)
        return rc;
    cas_pref p = {.idx = idx, .priority = priority_of(c->items[idx])};
    tch_slice lead = tch__cas_rules_body_lead(rules_of(c->items[idx]));
    p.nlead = (uint8_t)(lead.len < CAS_LEAD_MAX ? lead.len : CAS_LEAD_MAX);
    if (p.nlead)
        memcpy(p.lead, lead.ptr, p.nlead);
    size_t at = l->n;
    while (at > 0 && comes_before(&p, &l->v[at - 1]))
        at--;
    memmove(l->v + at + 1, l->v + at, (l->n - at) * sizeof *l->v);
    l->v[at] = p;
    l->n++;
    return 0;
}

static void plist_remove(cas_plist *l, size_t idx) {
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].idx == idx) {
            memmove(l->v + i, l->v + i + 1, (l->n - i - 1) * sizeof *l->v);
            l->n--;
            return;
        }
}

/* The group of key, or NULL; with take, the free slot it would be in,
 * taken for it (the table has room). */
static cas_plist *group_find(tch_cassette *c, uint64_t key, bool take) {
    for (size_t j = c->npgroups ? key & (c->npgroups - 1) : 0; c->npgroups;
         j = (j + 1) & (c->npgroups - 1)) {
        cas_plist *g = &c->pgroups[j];
        if (g->used && g->key == key)
            return g;
        if (!g->used) {
            if (!take)
                return NULL;
            g->used = true;
            g->key = key;
            c->npgroups_used++;
            return g;
        }
    }
    return NULL;
}

/* The group of key, or NULL; with create, a new one if none (NULL on
 * ENOMEM). An existing group never allocates. */
static cas_plist *group_of(tch_cassette *c, uint64_t key, bool create) {
    cas_plist *found = group_find(c, key, false);
    if (found || !create)
        return found;
    if ((c->npgroups_used + 1) * 2 > c->npgroups) { /* grow: half full at most */
        size_t n = c->npgroups ? c->npgroups * 2 : 16;
        cas_plist *t = tch__calloc(c->alloc, n, sizeof *t);
        if (!t)
            return NULL;
        for (size_t i = 0; i < c->npgroups; i++) {
            if (!c->pgroups[i].used)
                continue;
            size_t j = c->pgroups[i].key & (n - 1);
            while (t[j].used)
                j = (j + 1) & (n - 1);
            t[j] = c->pgroups[i];
        }
        tch__free(c->alloc, c->pgroups);
        c->pgroups = t;
        c->npgroups = n;
    }
    return group_find(c, key, true);
}

/* The list of pattern e: its group when its rules require one service and
 * one endpoint (made if new), else the wild list. NULL on ENOMEM. */
static cas_plist *list_for(tch_cassette *c, cas_entry *e) {
    tch_slice svc, ep;
    e->pgrouped = tch__cas_rules_exact_text(rules_of(e), SF_SERVICE, &svc) &&
                  tch__cas_rules_exact_text(rules_of(e), SF_ENDPOINT, &ep);
    if (!e->pgrouped)
        return &c->pwild;
    /* one group more per first byte of a required literal body start */
    tch_slice lead = tch__cas_rules_body_lead(rules_of(e));
    e->pkey = group_key(svc, ep);
    if ((e->plead = lead.len > 0))
        e->pkey = lead_key(e->pkey, lead.ptr[0]);
    return group_of(c, e->pkey, true);
}

/* Files pattern idx in its list. */
static int index_pattern(tch_cassette *c, size_t idx) {
    cas_entry *e = c->items[idx];
    cas_plist *l = list_for(c, e);
    if (!l)
        return TCH_ENOMEM;
    int rc = plist_insert(c, l, idx);
    if (!rc && priority_of(e) < TCH_STUB_PRIORITY_DEFAULT)
        c->npearly++;
    if (!rc && e->pgrouped && e->plead)
        c->npleads++;
    return rc;
}

static void unindex_pattern(tch_cassette *c, size_t idx) {
    cas_entry *e = c->items[idx];
    cas_plist *l = e->pgrouped ? group_of(c, e->pkey, false) : &c->pwild;
    if (!l)
        return;
    size_t n = l->n;
    plist_remove(l, idx);
    if (l->n < n && priority_of(e) < TCH_STUB_PRIORITY_DEFAULT)
        c->npearly--;
    if (l->n < n && e->pgrouped && e->plead)
        c->npleads--;
}

/* Room in the pattern order for `want` patterns. */
static int patterns_reserve(tch_cassette *c, size_t want) {
    return reserve(c, (void **)&c->patterns, &c->cappatterns, want, sizeof *c->patterns, 16);
}

int tch__cas_pattern_reserve(tch_cassette *c, size_t from, size_t k) {
    for (size_t i = from; i < c->n; i++) {
        cas_entry *e = c->items[i];
        if (e->state != ST_DONE || !tch__cas_is_pattern(e))
            continue;
        int rc = rules_of(e) ? 0 : implicit_rules(c, e);
        cas_plist *l = rc ? NULL : list_for(c, e);
        /* k is at least what any one list gains */
        if (rc || !l || plist_reserve(c, l, l->n + k))
            return TCH_ENOMEM;
    }
    return patterns_reserve(c, c->npatterns + k);
}

int tch__cas_pattern_add(tch_cassette *c, size_t idx) {
    cas_entry *e = c->items[idx];
    if (!rules_of(e)) {
        int rc = implicit_rules(c, e);
        if (rc)
            return rc;
    }
    int rc = index_pattern(c, idx);
    if (rc)
        return rc;
    if (patterns_reserve(c, c->npatterns + 1)) {
        unindex_pattern(c, idx);
        return TCH_ENOMEM;
    }
    /* sorted by priority, then index: the first that answers wins */
    int pr = priority_of(e);
    size_t at = c->npatterns;
    while (at > 0) {
        const cas_entry *o = c->items[c->patterns[at - 1]];
        if (priority_of(o) < pr || (priority_of(o) == pr && c->patterns[at - 1] < idx))
            break;
        at--;
    }
    memmove(c->patterns + at + 1, c->patterns + at, (c->npatterns - at) * sizeof *c->patterns);
    c->patterns[at] = idx;
    c->npatterns++;
    e->pattern = true;
    return 0;
}

void tch__cas_pattern_remove(tch_cassette *c, size_t idx) {
    if (c->items[idx]->pattern)
        unindex_pattern(c, idx);
    for (size_t i = 0; i < c->npatterns; i++)
        if (c->patterns[i] == idx) {
            memmove(c->patterns + i, c->patterns + i + 1,
                    (c->npatterns - i - 1) * sizeof *c->patterns);
            c->npatterns--;
            break;
        }
    c->items[idx]->pattern = false;
}

/* ---- scenarios ------------------------------------------------------------ */

static cas_scenario *scenario_get(tch_cassette *c, const char *name, bool create) {
    for (size_t i = 0; i < c->nscenarios; i++)
        if (strcmp(c->scenarios[i].name, name) == 0)
            return &c->scenarios[i];
    if (!create)
        return NULL;
    cas_scenario *s = tch__realloc(c->alloc, c->scenarios, (c->nscenarios + 1) * sizeof *s);
    if (!s)
        return NULL;
    c->scenarios = s;
    s = &c->scenarios[c->nscenarios];
    s->name = tch__strdup(c->alloc, name);
    s->state = tch__strdup(c->alloc, TCH_STUB_STATE_STARTED);
    if (!s->name || !s->state) {
        tch__free(c->alloc, s->name);
        tch__free(c->alloc, s->state);
        return NULL;
    }
    c->nscenarios++;
    return s;
}

static const char *scenario_state(const tch_cassette *c, const char *name) {
    for (size_t i = 0; i < c->nscenarios; i++)
        if (strcmp(c->scenarios[i].name, name) == 0)
            return c->scenarios[i].state;
    return TCH_STUB_STATE_STARTED;
}

static bool state_ok(const tch_cassette *c, const cas_entry *e) {
    const tch_stub_info *s = e->it.stub;
    return !s || !s->scenario || !s->required_state ||
           strcmp(scenario_state(c, s->scenario), s->required_state) == 0;
}

int tch__cas_pattern_played(tch_cassette *c, size_t idx) {
    const tch_stub_info *s = c->items[idx]->it.stub;
    if (!s || !s->scenario || !s->new_state)
        return 0;
    cas_scenario *sc = scenario_get(c, s->scenario, true);
    char *st = sc ? tch__strdup(c->alloc, s->new_state) : NULL;
    if (!st) /* a scenario made just now stays at Started: nothing moved */
        return TCH_ENOMEM;
    tch__free(c->alloc, sc->state);
    sc->state = st;
    return 0;
}

static bool names_scenario(const tch_cassette *c, const char *name) {
    for (size_t i = 0; i < c->n; i++) {
        const tch_stub_info *s = c->items[i]->it.stub;
        if (s && s->scenario && strcmp(s->scenario, name) == 0 &&
            c->items[i]->state != ST_ABORTED)
            return true;
    }
    return false;
}

int tch_cassette_scenario_set(tch_cassette *c, const char *name, const char *state,
                              tch_error *err) {
    if (!name || !state || !*state)
        return tch_error_set(err, TCH_EINVAL, "scenario: a name and a state are required");
    if (!names_scenario(c, name))
        return tch_error_set(err, TCH_ENOTFOUND, "scenario '%.100s': no stub names it", name);
    cas_scenario *sc = scenario_get(c, name, true);
    char *st = sc ? tch__strdup(c->alloc, state) : NULL;
    if (!st)
        return tch_error_set(err, TCH_ENOMEM, "scenario '%.100s': out of memory", name);
    tch__free(c->alloc, sc->state);
    sc->state = st;
    return 0;
}

void tch_cassette_scenarios_reset(tch_cassette *c) {
    for (size_t i = 0; i < c->nscenarios; i++) {
        tch__free(c->alloc, c->scenarios[i].name);
        tch__free(c->alloc, c->scenarios[i].state);
    }
    tch__free(c->alloc, c->scenarios);
    c->scenarios = NULL;
    c->nscenarios = 0;
}

static int add_unique(json_t *arr, const char *s) {
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) if (strcmp(json_string_value(v), s) == 0) return 0;
    return json_array_append_new(arr, json_string(s));
}

json_t *tch_cassette_scenarios(const tch_cassette *c) {
    json_t *by = json_object();
    for (size_t i = 0; by && i < c->n; i++) {
        const tch_stub_info *s = c->items[i]->it.stub;
        if (!s || !s->scenario || c->items[i]->state == ST_ABORTED)
            continue;
        json_t *one = json_object_get(by, s->scenario);
        if (!one) {
            one = json_pack("{s:s,s:s,s:[s]}", "name", s->scenario, "state",
                            scenario_state(c, s->scenario), "possibleStates",
                            TCH_STUB_STATE_STARTED);
            if (!one || json_object_set_new(by, s->scenario, one))
                goto fail;
        }
        json_t *ps = json_object_get(one, "possibleStates");
        if ((s->required_state && add_unique(ps, s->required_state)) ||
            (s->new_state && add_unique(ps, s->new_state)))
            goto fail;
    }
    json_t *out = json_array();
    const char *k;
    json_t *v;
    /* jansson keeps insertion order; sort the names */
    size_t n = json_object_size(by), i = 0;
    const char **names = tch__calloc(c->alloc, n, sizeof *names);
    if (!out || !names) {
        tch__free(c->alloc, names);
        json_decref(out);
        goto fail;
    }
    json_object_foreach(by, k, v) names[i++] = k;
    for (size_t a = 1; a < n; a++)
        for (size_t b = a; b > 0 && strcmp(names[b - 1], names[b]) > 0; b--) {
            const char *t = names[b];
            names[b] = names[b - 1];
            names[b - 1] = t;
        }
    for (i = 0; i < n; i++)
        json_array_append(out, json_object_get(by, names[i]));
    tch__free(c->alloc, names);
    json_decref(by);
    return out;
fail:
    json_decref(by);
    return NULL;
}

/* ---- lookup ------------------------------------------------------------------ */

static tch_stub_idl idl_of(const tch_cassette *c) {
    return (tch_stub_idl){c->opts.thrift, c->opts.thrift_idl};
}

/* The next pattern of the lists (NULL: none) in the pattern order, or NULL. */
#define NLISTS 3
static const cas_pref *next_of(const cas_plist *l[NLISTS], size_t at[NLISTS]) {
    const cas_pref *best = NULL;
    int from = 0;
    for (int i = 0; i < NLISTS; i++)
        if (l[i] && at[i] < l[i]->n && (!best || comes_before(&l[i]->v[at[i]], best)))
            best = &l[i]->v[at[i]], from = i;
    if (best)
        at[from]++;
    return best;
}

int tch__cas_pattern_find(tch_cassette *c, const tch_cassette_request *req, bool before_exact,
                     size_t *hit) {
    *hit = NO_ENTRY;
    if (!c->npatterns || (before_exact && !c->npearly))
        return 0;
    tch_stub_idl idl = idl_of(c);
    cas_view v;
    tch__cas_view_init(&v, req, &idl);
    /* only the call's groups (its service and endpoint; those and the first
     * byte of its body) and the wild list hold patterns that could match */
    uint64_t gk = group_key(tch_buf_slice(&req->service), tch_buf_slice(&req->endpoint));
    tch_slice body = TCH_SLICE_NULL; /* a thrift body is decoded for it: only when used */
    bool have_body = c->npleads > 0;
    if (have_body)
        body = tch__cas_view_body_text(&v);
    const cas_plist *lists[NLISTS] = {group_of(c, gk, false), NULL, &c->pwild};
    if (body.len)
        lists[1] = group_of(c, lead_key(gk, body.ptr[0]), false);
    int rc = 0;
    size_t repeat = NO_ENTRY, at[NLISTS] = {0};
    for (const cas_pref *p; (p = next_of(lists, at));) {
        bool early = p->priority < TCH_STUB_PRIORITY_DEFAULT;
        if (before_exact && !early)
            break;
        if (!before_exact && early)
            continue;
        if (p->nlead) { /* its body rule needs a literal start: check that first */
            if (!have_body)
                body = tch__cas_view_body_text(&v), have_body = true;
            if (body.len < p->nlead || body.ptr[0] != p->lead[0] ||
                memcmp(body.ptr, p->lead, p->nlead) != 0)
                continue;
        }
        size_t idx = p->idx;
        cas_entry *e = c->items[idx];
        if (e->state != ST_LOADED || !state_ok(c, e))
            continue;
        bool used = !repeats(e) && e->plays > 0;
        if (used && !c->opts.allow_playback_repeats)
            continue;
        c->pattern_evals++;
        rc = tch__cas_rules_pass(rules_of(e), &v);
        if (rc < 0)
            break;
        if (rc == 1 && !used) {
            *hit = idx;
            break;
        }
        if (rc == 1)
            repeat = idx;
    }
    if (*hit == NO_ENTRY)
        *hit = repeat;
    tch__cas_view_free(&v);
    return rc < 0 ? rc : 0;
}

static void clear_diffs(tch_cassette_near_miss *nm) {
    for (size_t i = 0; i < nm->n_diffs; i++) {
        free(nm->diffs[i].recorded);
        free(nm->diffs[i].requested);
        free(nm->diffs[i].decoded_as);
        free(nm->diffs[i].path);
    }
    nm->n_diffs = 0;
    free(nm->custom_rejected);
    nm->custom_rejected = NULL;
}

int tch__cas_pattern_near_miss(tch_cassette *c, const tch_cassette_request *req,
                          tch_cassette_near_miss *nm) {
    if (!c->npatterns)
        return 0;
    tch_stub_idl idl = idl_of(c);
    cas_view v;
    tch__cas_view_init(&v, req, &idl);
    size_t best = NO_ENTRY, bp = 0, bt = 0;
    char best_why[512] = "";
    int rc = 0;
    /* rules counted without text; only the nearest is explained */
    for (size_t i = 0; i < c->npatterns; i++) {
        size_t idx = c->patterns[i];
        cas_entry *e = c->items[idx];
        if (e->state != ST_LOADED)
            continue;
        size_t passed, total;
        rc = tch__cas_rules_eval(rules_of(e), &v, &passed, &total, NULL, 0);
        if (rc < 0)
            break;
        rc = 0;
        if (best == NO_ENTRY || total - passed < bt - bp) /* fewest rules failed */
            best = idx, bp = passed, bt = total;
    }
    if (!rc && best != NO_ENTRY) {
        const cas_entry *e = c->items[best];
        const tch_stub_info *s = e->it.stub;
        size_t passed, total;
        if (bp < bt)
            rc = tch__cas_rules_eval(rules_of(e), &v, &passed, &total, best_why, sizeof best_why);
        else if (!state_ok(c, e))
            snprintf(best_why, sizeof best_why,
                     "scenario %.100s: requires state %.100s, is in %.100s", s->scenario,
                     s->required_state, scenario_state(c, s->scenario));
        else
            snprintf(best_why, sizeof best_why, "already played");
        rc = rc < 0 ? rc : 0;
    }
    tch__cas_view_free(&v);
    if (rc || best == NO_ENTRY)
        return rc;
    /* the exact nearest stays when it agrees on a larger share of fields */
    if (nm->found && nm->total_fields - nm->matched_fields < bt - bp)
        return 0;
    clear_diffs(nm);
    const cas_entry *e = c->items[best];
    nm->found = 1;
    nm->index = best;
    nm->line = e->it.line;
    nm->matched_fields = bp;
    nm->total_fields = bt;
    nm->already_played = bp == bt && strcmp(best_why, "already played") == 0;
    nm->is_stub = 1;
    free(nm->stub_id);
    free(nm->rule_failed);
    nm->stub_id = e->it.stub && e->it.stub->id ? strdup(e->it.stub->id) : NULL;
    nm->rule_failed = strdup(best_why);
    return nm->rule_failed ? 0 : TCH_ENOMEM;
}

/* ---- required -------------------------------------------------------------------- */

int tch_cassette_required_unplayed(const tch_cassette *c, size_t **out, size_t *n) {
    *out = NULL;
    *n = 0;
    for (size_t i = 0; i < c->n; i++) {
        const cas_entry *e = c->items[i];
        if (!e->it.stub || !e->it.stub->required || e->plays > 0 || e->state == ST_ABORTED ||
            e->state == ST_PENDING)
            continue;
        size_t *p = realloc(*out, (*n + 1) * sizeof *p);
        if (!p) {
            free(*out);
            *out = NULL;
            *n = 0;
            return TCH_ENOMEM;
        }
        *out = p;
        p[(*n)++] = i;
    }
    return 0;
}

/* ---- delays ------------------------------------------------------------------------ */

static double uniform01(uint64_t *s) {
    /* xorshift64*: good enough to spread delays, and reproducible by seed */
    uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ULL;
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    *s = x;
    return (double)((x * 0x2545f4914f6cdd1dULL) >> 11) / 9007199254740992.0;
}

/* Natural log, square root and exp without libm (the library links none):
 * delays need a few digits, not last-bit accuracy. */
static double ln(double x) {
    int k = 0;
    while (x > 2.0)
        x /= 2.0, k++;
    while (x < 1.0)
        x *= 2.0, k--;
    double t = (x - 1.0) / (x + 1.0), t2 = t * t, term = t, sum = 0.0;
    for (int i = 1; i < 60; i += 2, term *= t2)
        sum += term / i;
    return 2.0 * sum + k * 0.6931471805599453;
}

static double root(double x) {
    double r = x > 1.0 ? x : 1.0;
    for (int i = 0; i < 60; i++)
        r = 0.5 * (r + x / r);
    return r;
}

static double ex(double y) {
    if (y > 30.0)
        y = 30.0;
    if (y < -30.0)
        y = -30.0;
    int k = (int)(y / 0.6931471805599453);
    double r = y - k * 0.6931471805599453, term = 1.0, sum = 1.0;
    for (int i = 1; i < 30; i++)
        sum += term *= r / i;
    for (; k > 0; k--)
        sum *= 2.0;
    for (; k < 0; k++)
        sum /= 2.0;
    return sum;
}

/* A standard normal draw (Marsaglia's polar method). */
static double normal(uint64_t *s) {
    for (;;) {
        double u = 2.0 * uniform01(s) - 1.0, v = 2.0 * uniform01(s) - 1.0, q = u * u + v * v;
        if (q > 0.0 && q < 1.0)
            return u * root(-2.0 * ln(q) / q);
    }
}

uint32_t tch_stub_delay_sample(const tch_stub_delay *d, uint64_t *state) {
    switch (d->kind) {
    case TCH_STUB_DELAY_NONE: return 0;
    case TCH_STUB_DELAY_UNIFORM: {
        uint32_t span = d->max_ms - d->min_ms;
        uint32_t off = (uint32_t)(uniform01(state) * ((double)span + 1.0));
        return d->min_ms + (off > span ? span : off);
    }
    case TCH_STUB_DELAY_LOGNORMAL: {
        double ms = d->median_ms * ex(d->sigma * normal(state));
        return ms > 3600000.0 ? 3600000u : ms < 0 ? 0 : (uint32_t)ms;
    }
    }
    return 0;
}

void tch__cas_stubs_free(tch_cassette *c) {
    json_decref(c->stub_ids);
    c->stub_ids = NULL;
    for (size_t i = 0; i < c->n; i++) {
        tch_stub_rules_free(c->items[i]->implicit);
        c->items[i]->implicit = NULL;
    }
    tch__free(c->alloc, c->patterns);
    c->patterns = NULL;
    c->npatterns = 0;
    for (size_t i = 0; i < c->npgroups; i++)
        tch__free(c->alloc, c->pgroups[i].v);
    tch__free(c->alloc, c->pgroups);
    c->pgroups = NULL;
    c->npgroups = c->npgroups_used = 0;
    tch__free(c->alloc, c->pwild.v);
    memset(&c->pwild, 0, sizeof c->pwild);
    c->npearly = c->npleads = 0;
    tch_cassette_scenarios_reset(c);
}
