/* Internal layout of a cassette shared by the cassette_*.c files: entries,
 * the match index, and helpers. Nothing here is public API. */
#ifndef TCH_CASSETTE_INTERNAL_H
#define TCH_CASSETTE_INTERNAL_H

#include <tchannel/cassette.h>
#include <tchannel/stub.h>

#include "alloc.h"

#include <stdbool.h>
#include <stdio.h>

/* Built-in matchable fields, in tchannel-python's matcher names. */
enum cas_field {
    F_SERVICE = 0,
    F_ENDPOINT,
    F_HEADERS,
    F_BODY,
    F_SCHEME,
    F_HOSTPORT,
    F_THEADERS,
    F_COUNT
};
#define DEFAULT_MATCHER_MASK                                                                      \
    ((1u << F_SERVICE) | (1u << F_ENDPOINT) | (1u << F_HEADERS) | (1u << F_BODY) |                \
     (1u << F_SCHEME))

extern const char *const tch__cas_field_names[F_COUNT];

/* Headers with this prefix carry tracing; matching ignores them. */
#define TRACING_PREFIX "$tracing$"
#define ERRCODE_TIMEOUT 0x01 /* the wire code the cassette names `timeout` */

typedef enum entry_state {
    ST_LOADED = 0, /* replayable: from the file, or recorded and then saved */
    ST_PENDING,    /* record_begin'd, answer not yet known */
    ST_DONE,       /* recorded this run; replayable only after a save (as tchannel-python) */
    ST_ABORTED,    /* record_abort'ed: never written */
} entry_state;

#define NO_ENTRY ((size_t)-1)

typedef struct cas_entry {
    tch_cassette_interaction it;
    entry_state state;
    bool from_file;   /* loaded at open: dropped from the file in mode ALL */
    bool indexed;
    bool keyed;       /* fh and key are computed */
    unsigned plays;
    uint64_t fh[F_COUNT]; /* hash of each field's normalized form */
    uint64_t key;         /* combined hash of the enabled matchers' fields */
    size_t next;          /* next entry in the same bucket, file order */
    bool pattern;         /* matched by rules from the pattern list, never hashed */
    bool runtime;         /* added by tch_cassette_stub_add */
    tch_stub_rules *implicit; /* pattern without stub rules: its request, exactly */
    bool pgrouped;            /* pattern in the group of pkey, else in the wild list */
    bool plead;               /* pkey also has the first byte its body must start with */
    uint64_t pkey;            /* hash of the service and endpoint its rules require */
} cas_entry;

/* A pattern in an index list, with what a lookup checks before touching
 * its rules: kept together so passing over many patterns stays in cache. */
#define CAS_LEAD_MAX 11
typedef struct cas_pref {
    size_t idx;
    int priority;
    uint8_t nlead;              /* the body text must start with lead[0..nlead) */
    uint8_t lead[CAS_LEAD_MAX];
} cas_pref;

/* Patterns in the pattern order (priority, then index). */
typedef struct cas_plist {
    uint64_t key;
    cas_pref *v;
    size_t n, cap;
    bool used; /* a slot of the group table that holds a key */
} cas_plist;

typedef struct cas_scenario {
    char *name;
    char *state;
} cas_scenario;

typedef struct cas_custom {
    char *name;
    tch_cassette_match_cb fn;
    void *ud;
} cas_custom;

typedef struct cas_bucket {
    size_t head, tail;
    size_t cursor; /* first entry that may still be unplayed: keeps repeated
                      identical requests O(1) instead of re-walking played ones */
    size_t repeat; /* the entry that last answered a playback repeat: a later
                      repeat of the same request scans on from there */
} cas_bucket;

struct tch_cassette {
    /* Where everything the cassette keeps comes from: NULL (the C library)
     * or &alloc_copy (opts.allocator, copied; opts.allocator points here). */
    const tch_allocator *alloc;
    tch_allocator alloc_copy;
    char *path; /* NULL for memory cassettes */
    char *name; /* for messages */
    tch_cassette_options opts; /* matchers pointer cleared; see matcher_mask */
    unsigned matcher_mask;
    tch_cassette_mode mode;
    bool existed;
    bool dirty;
    bool only_this_run; /* saved in mode ALL this run: the file holds only this run's calls */
    cas_entry **items;
    size_t n, cap;
    cas_bucket *buckets;
    size_t nbuckets; /* power of two */
    size_t nindexed;
    cas_custom *customs;
    size_t ncustoms;
    size_t total_plays;
    /* stubs: pattern entries by (priority, index); exact lookups never scan them */
    size_t *patterns;
    size_t npatterns, cappatterns;
    size_t pattern_evals; /* rule sets evaluated by lookups (tests check hits cost none) */
    /* Patterns whose rules require one service and one endpoint (most do)
     * are grouped by the two (and, when their body regex has a literal
     * start, its first byte) in an open-addressed table; a lookup merges
     * its call's two groups with the wild list (the rest), so it evaluates
     * only patterns that could match. */
    cas_plist *pgroups;
    size_t npgroups, npgroups_used; /* slots (a power of two), keys */
    cas_plist pwild;
    size_t npearly, npleads; /* patterns outranking exact hits; grouped by body lead too */
    cas_scenario *scenarios;
    size_t nscenarios;
    unsigned long next_stub_id;
    /* stub id -> index of its live entry (a JSON object of integers), made
     * by the first run-time insert and kept by insert and drop; NULL: ids
     * are found by a scan */
    struct json_t *stub_ids;
    uint64_t counter; /* {{counter}} */
};

/* A request's matchable fields in normalized form (JSON by value, $tracing$
 * keys dropped, ...). view[f] borrows from the request or from own[f]. */
typedef struct cas_norm {
    tch_buf own[F_COUNT];
    tch_slice view[F_COUNT];
    uint64_t h[F_COUNT];
} cas_norm;

/* util */
uint64_t tch__cas_hash(const void *p, size_t n, uint64_t seed);
bool tch__cas_is_text(tch_slice s);
int tch__cas_buf_set(tch_buf *b, tch_slice s);
/* A request's copy on a (NULL: the C library): its buffers carry a, its
 * arrays are a's. Freed with tch__cas_request_free and the same a. */
int tch__cas_request_from_call(const tch_allocator *a, const tch_cassette_call *call,
                               tch_cassette_request *out);
void tch__cas_request_free(const tch_allocator *a, tch_cassette_request *r);
/* Frees what it holds: buffers with their own allocator, the rest (arrays,
 * messages, stub extras) with a, the cassette's. */
void tch__cas_interaction_free(const tch_allocator *a, tch_cassette_interaction *it);
/* Sets a on the buffers of an interaction that hold nothing yet. */
void tch__cas_interaction_bufs_on(const tch_allocator *a, tch_cassette_interaction *it);
void tch__cas_preview(tch_slice s, size_t from, size_t max, char *out, size_t outsz);
void tch__cas_describe(const tch_cassette_request *r, char *out, size_t outsz);
/* Thrift arg2 headers (nh:2 (k~2 v~2){nh}) as a compact JSON object with
 * sorted keys, optionally without $tracing$ keys; NULL if not that shape. */
char *tch__cas_thrift_headers_json(tch_slice s, bool drop_tracing, bool sorted);

/* thrift: the method arg1 ("Service::method") names in idl, or NULL */
const tch_thrift_method *tch__cas_idl_method(const tch_thrift_idl *idl, tch_slice endpoint);

/* match */
/* n's own buffers on a (the cassette's). */
int tch__cas_normalize(const tch_allocator *a, const tch_cassette_request *r, unsigned mask,
                       cas_norm *n);
void tch__cas_norm_free(cas_norm *n);
uint64_t tch__cas_key(const cas_norm *n, unsigned mask);
int tch__cas_index_entry(tch_cassette *c, size_t idx);
int tch__cas_index_reserve(tch_cassette *c, size_t n);
/* Allocates now all that indexing the unsaved recordings (ST_DONE) from
 * index `from` on will need, so that tch__cas_mark_saved cannot fail once
 * they are written: a save calls it before it writes. 0 or TCH_ENOMEM. */
int tch__cas_index_prepare(tch_cassette *c, size_t from);
int tch__cas_lookup(tch_cassette *c, tch_cassette_request *req, tch_cassette_decision *out,
               tch_error *err);

/* load */
int tch__cas_load_buffer(tch_cassette *c, const char *data, size_t len, tch_error *err);

/* A file read in pieces as it is parsed, so that it is never held whole;
 * tap sees every byte read (the journal's identity of the file). */
typedef void (*cas_tap_fn)(void *ud, const void *p, size_t n);
typedef struct cas_stream {
    FILE *f;
    size_t size; /* when opened: sizes the alias budget; 0 reads as empty */
    size_t max;  /* more than this is TCH_ETOOBIG */
    cas_tap_fn tap;
    void *tap_ud;
    size_t got; /* out: bytes read (the whole file, unless an error) */
    bool too_big, io_error;
} cas_stream;
/* Parses f from its start and then reads it to its end. */
int tch__cas_load_stream(tch_cassette *c, cas_stream *in, tch_error *err);

/* entries */
int tch__cas_append_entry(tch_cassette *c, cas_entry **out);

/* ---- stubs (stub_rules.c, jsonpath.c, stub.c) ---- */

/* Fields a stub's rules may name, in the order they are checked. */
enum { SF_SERVICE = 0, SF_ENDPOINT, SF_SCHEME, SF_HEADERS, SF_BODY, SF_THEADERS, SF_COUNT };
extern const char *const tch__cas_stub_field_names[SF_COUNT];
int tch__cas_stub_field_of(const char *name); /* -1 if none */

/* A parsed JSONPath subset: $ then .name, ['name'] or [N] steps. */
typedef struct cas_jstep {
    char *key; /* NULL: an index step */
    size_t index;
} cas_jstep;
typedef struct cas_jpath {
    cas_jstep *steps;
    size_t n;
    char *text; /* as written, for messages */
} cas_jpath;
int tch__cas_jpath_parse(const char *text, cas_jpath *out, tch_error *err);
const json_t *tch__cas_jpath_eval(const cas_jpath *p, const json_t *root); /* NULL: absent */
void tch__cas_jpath_free(cas_jpath *p);

/* A request with its JSON views decoded once, on first use. */
typedef struct cas_view {
    const tch_cassette_request *r;
    tch_stub_idl idl;
    json_t *json[2]; /* headers, body */
    bool done[2];
    char *text[2];   /* thrift: the JSON text string rules read */
} cas_view;
void tch__cas_view_init(cas_view *v, const tch_cassette_request *r, const tch_stub_idl *idl);
void tch__cas_view_free(cas_view *v);
/* headers (0) or body (1) as JSON, or NULL when they do not read as JSON */
const json_t *tch__cas_view_json(cas_view *v, int which);
/* 1 all rules pass, 0 not (why: the first that failed), or a negative code. */
int tch__cas_rules_eval(const tch_stub_rules *rs, cas_view *v, size_t *passed, size_t *total,
                   char *why, size_t whysz);
/* The same answer without counting or explaining: stops at the first rule
 * that fails and formats nothing. What lookups use. */
int tch__cas_rules_pass(const tch_stub_rules *rs, cas_view *v);
/* Whether field f's rule passes only for one exact text (*text borrows it). */
bool tch__cas_rules_exact_text(const tch_stub_rules *rs, int f, tch_slice *text);
/* The literal text a body must start with to pass its `matches` rule
 * (empty when there is none), and the body text that rule reads. */
tch_slice tch__cas_rules_body_lead(const tch_stub_rules *rs);
tch_slice tch__cas_view_body_text(cas_view *v);
int tch__cas_rules_add_exact(tch_stub_rules **rs, int f, const tch_cassette_request *r);
bool tch__cas_rules_has(const tch_stub_rules *rs, int f);
const json_t *tch__cas_rules_src(const tch_stub_rules *rs, int f);
bool tch__cas_request_has_redacted(const tch_cassette_request *r);
void tch__cas_stub_info_free(const tch_allocator *a, tch_stub_info *s);
bool tch__cas_is_pattern(const cas_entry *e);
int tch__cas_pattern_add(tch_cassette *c, size_t idx);
/* Room for k more patterns, among them the unsaved ones from index `from`
 * (their implicit rules built, their lists and groups made), so that
 * tch__cas_pattern_add of each allocates nothing. */
int tch__cas_pattern_reserve(tch_cassette *c, size_t from, size_t k);
void tch__cas_pattern_remove(tch_cassette *c, size_t idx);
/* Lookup in the pattern list: priorities below `below` only when `below`
 * is TCH_STUB_PRIORITY_DEFAULT, the rest otherwise. *hit is NO_ENTRY when
 * none answers. */
int tch__cas_pattern_find(tch_cassette *c, const tch_cassette_request *req, bool before_exact,
                     size_t *hit);
/* The nearest pattern for a miss, when it is nearer than nm's. */
int tch__cas_pattern_near_miss(tch_cassette *c, const tch_cassette_request *req,
                          tch_cassette_near_miss *nm);
/* The scenario step of pattern idx, which a lookup answers with: 0, or
 * TCH_ENOMEM with nothing moved. */
int tch__cas_pattern_played(tch_cassette *c, size_t idx);
void tch__cas_stubs_free(tch_cassette *c);
/* An interaction as tch_cassette_interaction_to_json writes it, without plays. */
json_t *tch__cas_interaction_json(const tch_cassette_interaction *it);
/* A stub as one YAML mapping, on an emitter inside a sequence: its rules and
 * extras as written, bytes that are not UTF-8 as !!binary. */
struct yaml_emitter_s;
int tch__cas_stub_emit(struct yaml_emitter_s *e, const tch_cassette_interaction *it);
/* delayDistribution: {type: uniform, min, max} | {type: lognormal, median, sigma} */
int tch__cas_stub_delay_from_json(const json_t *j, tch_stub_delay *out, tch_error *err);
/* Every {{...}} in a templated response names something a request has:
 * TCH_EINVAL naming the stub and the expression otherwise. */
int tch__cas_template_check(const tch_cassette_interaction *it, tch_error *err);

#endif
