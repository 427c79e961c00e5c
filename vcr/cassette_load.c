/* Reading cassettes: libyaml's event API (yaml_parser_parse) and a small
 * recursive descent over the events that fills interactions directly, with
 * no node tree in between. Accepts what tchannel-python writes under py2
 * (plain, !!python/str, !!python/unicode) and py3 (!!binary) plus our
 * extensions; rejects unknown keys and wrong shapes with file:line:column.
 *
 * The results, errors included, are those of reading the whole document
 * into a node tree first (as this file did with yaml_parser_load) and then
 * walking it:
 *   - a YAML error anywhere in the first document wins over a schema error
 *     earlier in it: after a schema error the rest of the document is still
 *     parsed (drain) and a YAML error found there is reported instead;
 *   - a second document is parsed to its end before "expected one YAML
 *     document" is reported, so a YAML error inside it is reported instead;
 *   - the tree walk read `response` after the other keys of its interaction
 *     (it needs argScheme), and `interactions` after the other top-level
 *     keys and the version check (tchannel-python sorts `interactions`
 *     before `version`). Both are read when they come, into their final
 *     place, but their first error is kept aside and reported only where
 *     the tree walk would have reported it.
 *
 * Anchors and aliases are supported: py2 tchannel-python cassettes contain
 * them (PyYAML writes a knownPeers list shared by several requests as
 * `&id001` / `*id001`), and the tree loader resolved them. Every event
 * inside an anchored node is kept in a log; an alias replays that node's
 * events with their original marks, so an error inside an aliased node
 * names the anchored node, as before. libyaml's composer rules are kept:
 * an alias to an undefined anchor and a repeated anchor name in one
 * document are YAML errors, with libyaml's messages. Unlike the tree walk,
 * expansion is bounded: aliases may replay at most ALIAS_BUDGET_MIN plus
 * ALIAS_BUDGET_RATIO times the input size (one unit per event plus its
 * scalar bytes), so "billion laughs"-style inputs fail with an error instead
 * of exhausting memory. Real cassettes use a tiny fraction of that.
 *
 * Nesting depth: nothing here recurses on the input's nesting. The descent
 * follows the fixed cassette schema (at most six levels), and skipping and
 * draining count depth in a loop. Depth is still bounded, at MAX_DEPTH:
 * libyaml's scanner costs O(depth) per token in flow collections, so
 * 200,000 nested `[` took minutes (with the tree loader too). Deeper input
 * fails with "nesting deeper than 1000 levels" where it happens; if a
 * schema error was already final (the rest of the document was only being
 * parsed for YAML errors), that schema error is reported instead.
 *
 * Memory: a file is fed to the parser in pieces (tch__cas_load_stream),
 * never held whole, and each scalar is copied once, into a buffer of its
 * exact size, so a loaded cassette costs its text plus the entries (about
 * 1.2 times the file for 1 KiB bodies; bench_cassette --load-mb). */
#include "cassette_internal.h"

#include "array.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#define TAG_STR "tag:yaml.org,2002:str"
#define TAG_BINARY "tag:yaml.org,2002:binary"
#define TAG_NULL "tag:yaml.org,2002:null"
#define TAG_INT "tag:yaml.org,2002:int"
#define TAG_BOOL "tag:yaml.org,2002:bool"
#define MAX_DELAY_MS 3600000
#define ALIAS_BUDGET_MIN ((size_t)64 << 20)
#define ALIAS_BUDGET_RATIO 16
#define NO_ANCHOR ((size_t)-1)
#define MAX_DEPTH 1000 /* the schema needs 6 levels */

/* An event as the reader sees it: a parser event or a replayed one. */
typedef struct node {
    yaml_event_type_t type;
    yaml_mark_t mark;
    const char *tag; /* scalars: resolved (untagged and `!` read as !!str) */
    bool tagged;     /* a tag was written (`!!str null` is text, not null) */
    const char *value;
    size_t len;
    yaml_scalar_style_t style;
} node;

/* A parser event kept for replay (inside an anchored node). */
typedef struct xev {
    yaml_event_type_t type;
    yaml_mark_t mark;
    char *tag;   /* as parsed (NULL: untagged) */
    char *value; /* scalars, NUL-terminated */
    size_t len;
    yaml_scalar_style_t style;
    size_t target; /* aliases: anchor index */
} xev;

typedef struct anchor {
    char *name;
    yaml_mark_t mark;
    size_t start, end; /* its events: log[start, end) */
    size_t depth;      /* parser depth inside it (collections) */
    bool closed;
} anchor;

typedef struct frame {
    size_t pos, end;
    bool partial; /* an alias inside its own anchor: only the prefix exists */
    size_t depth; /* l->depth when the alias was met */
    yaml_mark_t mark;
} frame;

typedef struct ld {
    const char *data; /* a buffer's input, for positions of reader errors */
    size_t len;
    cas_stream *in;   /* or a file's, read in pieces (data is NULL) */
    tch_cassette *c;
    tch_error *err;     /* schema errors go here (may be a side buffer) */
    tch_error *err_out; /* the caller's: YAML errors, ENOMEM, limits */
    int hard;           /* 0, HARD_NODEFER (limits: drain, then report), HARD_FINAL */
    yaml_parser_t parser;
    yaml_event_t ev;
    bool have_ev;
    bool draining; /* register anchors only: no log, no replay */
    bool skipping; /* aliases are leaves: the node is being passed over */
    bool too_deep; /* MAX_DEPTH was exceeded while draining */
    node cur;
    size_t depth;  /* open collections among delivered events */
    size_t pdepth; /* open collections among parser events */
    anchor *anchors;
    size_t nanchors, capanchors;
    size_t *ahash; /* open addressing over anchors, NO_ANCHOR = free */
    size_t nahash; /* power of two */
    size_t *open;  /* anchors being recorded, innermost last */
    size_t nopen, capopen;
    xev *log;
    size_t nlog, caplog;
    frame *frames;
    size_t nframes, capframes;
    size_t budget;
} ld;

enum { HARD_NODEFER = 1, HARD_FINAL = 2 };

/* A schema error at m: "NAME:LINE:COL: " and the formatted text. */
static int fail_at(ld *l, const yaml_mark_t *m, const char *fmt, ...) TCH_PRINTF(3, 4);
static int fail_at(ld *l, const yaml_mark_t *m, const char *fmt, ...) {
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof what) /* a long key or value: show that the text was cut */
        memcpy(what + sizeof what - 4, "...", 4);
    return tch_error_set(l->err, TCH_EPARSE, "%s:%zu:%zu: %s", l->c->name, m->line + 1,
                         m->column + 1, what);
}

static int nomem(ld *l) {
    l->hard = HARD_FINAL;
    return tch_error_set(l->err_out, TCH_ENOMEM, "%s: out of memory", l->c->name);
}

/* libyaml's reader (bad UTF-8, control characters) gives only a byte
 * offset: count lines and characters up to it. */
static void mark_advance(yaml_mark_t *m, const char *data, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\n') {
            m->line++;
            m->column = 0;
        } else if (((unsigned char)data[i] & 0xC0) != 0x80) { /* not a UTF-8 continuation */
            m->column++;
        }
    }
}

static yaml_mark_t mark_at(const ld *l, size_t offset) {
    yaml_mark_t m = {0};
    if (l->data) {
        mark_advance(&m, l->data, offset < l->len ? offset : l->len);
        return m;
    }
    /* a file's bytes are not kept: read them again up to the offset (an
     * error is rare, the bytes to it were read once already) */
    char chunk[8192];
    size_t n;
    if (fseek(l->in->f, 0, SEEK_SET) != 0)
        return m;
    while (offset > 0 &&
           (n = fread(chunk, 1, offset < sizeof chunk ? offset : sizeof chunk, l->in->f)) > 0) {
        mark_advance(&m, chunk, n);
        offset -= n;
    }
    return m;
}

static int parser_error(const ld *l, const yaml_parser_t *p, tch_error *err) {
    const tch_cassette *c = l->c;
    if (p->error == YAML_MEMORY_ERROR)
        return tch_error_set(err, TCH_ENOMEM, "%s: out of memory while parsing", c->name);
    if (l->in && l->in->too_big)
        return tch_error_set(err, TCH_ETOOBIG, "cassette %s: larger than %zu MiB", c->name,
                             l->in->max >> 20);
    if (l->in && l->in->io_error)
        return tch_error_set(err, TCH_EIO, "cassette %s: read error", c->name);
    yaml_mark_t at = p->error == YAML_READER_ERROR ? mark_at(l, p->problem_offset)
                                                   : p->problem_mark;
    const yaml_mark_t *m = &at;
    if (p->context)
        return tch_error_set(err, TCH_EPARSE, "%s:%zu:%zu: malformed YAML: %s %s (which started at line %zu)",
                             c->name, m->line + 1, m->column + 1,
                             p->problem ? p->problem : "error", p->context,
                             p->context_mark.line + 1);
    return tch_error_set(err, TCH_EPARSE, "%s:%zu:%zu: malformed YAML: %s", c->name, m->line + 1,
                         m->column + 1, p->problem ? p->problem : "error");
}

/* ---- anchors ------------------------------------------------------------ */

static size_t anchor_find(const ld *l, const char *name) {
    if (!l->nahash)
        return NO_ANCHOR;
    size_t mask = l->nahash - 1;
    for (size_t i = tch__cas_hash(name, strlen(name), 0) & mask;; i = (i + 1) & mask) {
        size_t a = l->ahash[i];
        if (a == NO_ANCHOR || strcmp(l->anchors[a].name, name) == 0)
            return a;
    }
}

static int ahash_put(ld *l, size_t a) {
    size_t mask = l->nahash - 1;
    const char *name = l->anchors[a].name;
    size_t i = tch__cas_hash(name, strlen(name), 0) & mask;
    while (l->ahash[i] != NO_ANCHOR)
        i = (i + 1) & mask;
    l->ahash[i] = a;
    return 0;
}

/* libyaml's composer: a name may be anchored once per document. */
static int anchor_add(ld *l, const char *name, const yaml_mark_t *mark, size_t *out) {
    size_t prev = anchor_find(l, name);
    if (prev != NO_ANCHOR) {
        l->hard = HARD_FINAL;
        return tch_error_set(l->err_out, TCH_EPARSE,
                             "%s:%zu:%zu: malformed YAML: second occurrence found duplicate "
                             "anchor; first occurrence (which started at line %zu)",
                             l->c->name, mark->line + 1, mark->column + 1,
                             l->anchors[prev].mark.line + 1);
    }
    if (l->nanchors == l->capanchors) {
        anchor *a = tch__array_grow_with(l->c->alloc, l->anchors, &l->capanchors, sizeof *a, 8);
        if (!a)
            return nomem(l);
        l->anchors = a;
    }
    if ((l->nanchors + 1) * 2 > l->nahash) {
        size_t nh = l->nahash ? l->nahash * 2 : 16;
        size_t *h = tch__malloc(l->c->alloc, nh * sizeof *h);
        if (!h)
            return nomem(l);
        for (size_t i = 0; i < nh; i++)
            h[i] = NO_ANCHOR;
        tch__free(l->c->alloc, l->ahash);
        l->ahash = h;
        l->nahash = nh;
        for (size_t i = 0; i < l->nanchors; i++)
            ahash_put(l, i);
    }
    anchor *a = &l->anchors[l->nanchors];
    memset(a, 0, sizeof *a);
    if (!(a->name = tch__strdup(l->c->alloc, name)))
        return nomem(l);
    a->mark = *mark;
    a->start = a->end = l->nlog;
    *out = l->nanchors++;
    ahash_put(l, *out);
    return 0;
}

static void anchors_reset(ld *l) {
    for (size_t i = 0; i < l->nanchors; i++)
        tch__free(l->c->alloc, l->anchors[i].name);
    l->nanchors = 0;
    for (size_t i = 0; i < l->nahash; i++)
        l->ahash[i] = NO_ANCHOR;
    for (size_t i = 0; i < l->nlog; i++) {
        tch__free(l->c->alloc, l->log[i].tag);
        tch__free(l->c->alloc, l->log[i].value);
    }
    l->nlog = 0;
    l->nopen = 0;
    l->nframes = 0;
}

static int log_event(ld *l, const yaml_event_t *e, size_t target) {
    if (l->nlog == l->caplog) {
        xev *x = tch__array_grow_with(l->c->alloc, l->log, &l->caplog, sizeof *x, 64);
        if (!x)
            return nomem(l);
        l->log = x;
    }
    xev *x = &l->log[l->nlog];
    memset(x, 0, sizeof *x);
    x->type = e->type;
    x->mark = e->start_mark;
    x->target = target;
    const yaml_char_t *tag = e->type == YAML_SCALAR_EVENT           ? e->data.scalar.tag
                             : e->type == YAML_SEQUENCE_START_EVENT ? e->data.sequence_start.tag
                             : e->type == YAML_MAPPING_START_EVENT  ? e->data.mapping_start.tag
                                                                    : NULL;
    if (tag && !(x->tag = tch__strdup(l->c->alloc, (const char *)tag)))
        return nomem(l);
    if (e->type == YAML_SCALAR_EVENT) {
        x->len = e->data.scalar.length;
        x->style = e->data.scalar.style;
        if (!(x->value = tch__malloc(l->c->alloc, x->len + 1)))
            return nomem(l);
        memcpy(x->value, e->data.scalar.value, x->len);
        x->value[x->len] = '\0';
    }
    l->nlog++;
    return 0;
}

/* ---- the event stream ----------------------------------------------------- */

static void set_cur(ld *l, yaml_event_type_t type, const yaml_mark_t *mark, const char *tag,
                    const char *value, size_t len, yaml_scalar_style_t style) {
    node *n = &l->cur;
    n->type = type;
    n->mark = *mark;
    n->tag = tag;
    n->tagged = tag != NULL;
    if (type == YAML_SCALAR_EVENT && (!tag || strcmp(tag, "!") == 0))
        n->tag = TAG_STR; /* libyaml's loader gives untagged scalars !!str */
    n->value = value;
    n->len = len;
    n->style = style;
    if (type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT)
        l->depth++;
    else if (type == YAML_SEQUENCE_END_EVENT || type == YAML_MAPPING_END_EVENT)
        l->depth--;
}

/* Next parser event: anchors registered and recorded, aliases resolved to
 * an anchor index in *target. */
static int pull(ld *l, size_t *target) {
    if (l->have_ev) {
        yaml_event_delete(&l->ev);
        l->have_ev = false;
    }
    if (!yaml_parser_parse(&l->parser, &l->ev)) {
        l->hard = HARD_FINAL;
        return parser_error(l, &l->parser, l->err_out);
    }
    l->have_ev = true;
    const yaml_event_t *e = &l->ev;
    const yaml_char_t *name = NULL;
    *target = NO_ANCHOR;
    switch (e->type) {
    case YAML_SCALAR_EVENT: name = e->data.scalar.anchor; break;
    case YAML_SEQUENCE_START_EVENT: name = e->data.sequence_start.anchor; break;
    case YAML_MAPPING_START_EVENT: name = e->data.mapping_start.anchor; break;
    case YAML_ALIAS_EVENT:
        *target = anchor_find(l, (const char *)e->data.alias.anchor);
        if (*target == NO_ANCHOR) {
            l->hard = HARD_FINAL;
            return tch_error_set(l->err_out, TCH_EPARSE,
                                 "%s:%zu:%zu: malformed YAML: found undefined alias", l->c->name,
                                 e->start_mark.line + 1, e->start_mark.column + 1);
        }
        break;
    default: break;
    }
    bool start = e->type == YAML_SEQUENCE_START_EVENT || e->type == YAML_MAPPING_START_EVENT;
    bool end = e->type == YAML_SEQUENCE_END_EVENT || e->type == YAML_MAPPING_END_EVENT;
    size_t a = NO_ANCHOR;
    int rc;
    if (start && ++l->pdepth > MAX_DEPTH) {
        if (l->draining) { /* a schema error is known: keep it */
            l->too_deep = true;
            return TCH_EPARSE;
        }
        l->hard = HARD_NODEFER;
        return tch_error_set(l->err_out, TCH_EPARSE, "%s:%zu:%zu: nesting deeper than %d levels",
                             l->c->name, e->start_mark.line + 1, e->start_mark.column + 1,
                             MAX_DEPTH);
    }
    if (name && (rc = anchor_add(l, (const char *)name, &e->start_mark, &a)))
        return rc;
    if (l->draining) {
        if (end)
            l->pdepth--;
        return 0;
    }
    if (a != NO_ANCHOR) {
        if (l->nopen == l->capopen) {
            size_t *o = tch__array_grow_with(l->c->alloc, l->open, &l->capopen, sizeof *o, 8);
            if (!o)
                return nomem(l);
            l->open = o;
        }
        l->open[l->nopen++] = a;
        l->anchors[a].depth = l->pdepth;
    }
    if (l->nopen && (rc = log_event(l, e, *target)))
        return rc;
    /* close what this event completes: an anchored scalar, or collections */
    while (l->nopen) {
        size_t ti = l->open[l->nopen - 1];
        anchor *top = &l->anchors[ti];
        bool done = end ? top->depth == l->pdepth : (!start && ti == a);
        if (!done)
            break;
        top->end = l->nlog;
        top->closed = true;
        l->nopen--;
    }
    if (end)
        l->pdepth--;
    return 0;
}

/* `logged`: the alias itself is the last logged event (met in the parser
 * stream inside an open anchor); a prefix replay must stop before it. */
static int push_alias(ld *l, size_t target, const yaml_mark_t *mark, bool logged) {
    if (l->nframes == l->capframes) {
        frame *f = tch__array_grow_with(l->c->alloc, l->frames, &l->capframes, sizeof *f, 8);
        if (!f)
            return nomem(l);
        l->frames = f;
    }
    const anchor *a = &l->anchors[target];
    frame *f = &l->frames[l->nframes++];
    f->pos = a->start;
    f->end = a->closed ? a->end : l->nlog - (logged ? 1 : 0);
    f->partial = !a->closed;
    f->depth = l->depth;
    f->mark = *mark;
    return 0;
}

/* The next event of the document with aliases expanded. */
static int next(ld *l) {
    for (;;) {
        if (l->nframes) {
            frame *f = &l->frames[l->nframes - 1];
            if (f->pos == f->end) {
                if (f->partial && l->skipping) {
                    /* passing over a node that contains itself: treat the
                     * alias as complete */
                    l->depth = f->depth;
                    l->nframes--;
                    l->cur.type = YAML_NO_EVENT;
                    return 0;
                }
                if (f->partial) {
                    /* unreachable with this schema: a node that contains
                     * itself always has the wrong shape somewhere first */
                    l->hard = HARD_NODEFER;
                    yaml_mark_t m = f->mark;
                    tch_error *e = l->err;
                    l->err = l->err_out;
                    int rc = fail_at(l, &m, "alias inside the node it refers to");
                    l->err = e;
                    return rc;
                }
                l->nframes--;
                continue;
            }
            const xev *x = &l->log[f->pos++];
            if (x->type == YAML_ALIAS_EVENT && l->skipping) {
                set_cur(l, x->type, &x->mark, NULL, NULL, 0, YAML_ANY_SCALAR_STYLE);
                return 0;
            }
            if (x->type == YAML_ALIAS_EVENT) {
                int rc = push_alias(l, x->target, &x->mark, false);
                if (rc)
                    return rc;
                continue;
            }
            size_t cost = 1 + x->len;
            if (cost > l->budget) {
                l->hard = HARD_NODEFER;
                return tch_error_set(l->err_out, TCH_ETOOBIG,
                                     "%s:%zu:%zu: aliases expand to too much data", l->c->name,
                                     x->mark.line + 1, x->mark.column + 1);
            }
            l->budget -= cost;
            set_cur(l, x->type, &x->mark, x->tag, x->value, x->len, x->style);
            return 0;
        }
        size_t target;
        int rc = pull(l, &target);
        if (rc)
            return rc;
        const yaml_event_t *e = &l->ev;
        switch (e->type) {
        case YAML_ALIAS_EVENT:
            if (l->skipping) {
                set_cur(l, e->type, &e->start_mark, NULL, NULL, 0, YAML_ANY_SCALAR_STYLE);
                return 0;
            }
            if ((rc = push_alias(l, target, &e->start_mark, l->nopen > 0)))
                return rc;
            continue;
        case YAML_SCALAR_EVENT:
            set_cur(l, e->type, &e->start_mark, (const char *)e->data.scalar.tag,
                    (const char *)e->data.scalar.value, e->data.scalar.length,
                    e->data.scalar.style);
            return 0;
        case YAML_SEQUENCE_START_EVENT:
            set_cur(l, e->type, &e->start_mark, (const char *)e->data.sequence_start.tag, NULL, 0,
                    YAML_ANY_SCALAR_STYLE);
            return 0;
        case YAML_MAPPING_START_EVENT:
            set_cur(l, e->type, &e->start_mark, (const char *)e->data.mapping_start.tag, NULL, 0,
                    YAML_ANY_SCALAR_STYLE);
            return 0;
        default:
            set_cur(l, e->type, &e->start_mark, NULL, NULL, 0, YAML_ANY_SCALAR_STYLE);
            return 0;
        }
    }
}

/* Consumes the rest of the node whose first event was delivered at depth
 * d0 (l->depth before it), leaving its last event current. */
static int skip_to(ld *l, size_t d0) {
    bool was = l->skipping;
    int rc = 0;
    l->skipping = true;
    while (!rc && l->depth > d0)
        rc = next(l);
    l->skipping = was;
    return rc;
}

static size_t depth_before(const ld *l) {
    bool start = l->cur.type == YAML_SEQUENCE_START_EVENT || l->cur.type == YAML_MAPPING_START_EVENT;
    return l->depth - (start ? 1 : 0);
}

/* A node read now whose first schema error is reported later (where the
 * tree walk read it): the error goes to `side`; the node is skipped. */
typedef struct deferred {
    tch_error side;
    tch_error *saved;
    size_t d0;
    int rc;
} deferred;

static void defer_begin(ld *l, deferred *d) {
    d->saved = l->err;
    d->d0 = depth_before(l);
    d->side.code = 0;
    d->side.msg[0] = '\0';
    l->err = &d->side; /* each key is read once: a repeat fails before */
}

static int defer_end(ld *l, deferred *d, int rc) {
    l->err = d->saved;
    if (!rc)
        return 0;
    if (l->hard)
        return rc;
    d->rc = rc;
    return skip_to(l, d->d0);
}

static int defer_report(ld *l, deferred *d) {
    if (d->rc && l->err)
        *l->err = d->side;
    return d->rc;
}

/* ---- scalars ------------------------------------------------------------ */

/* Strings in any of the spellings Python's YAML dumpers produce. */
static bool is_string_tag(const char *tag) {
    static const char *const ok[] = {
        TAG_STR, "tag:yaml.org,2002:python/str", "tag:yaml.org,2002:python/unicode",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (strcmp(tag, ok[i]) == 0)
            return true;
    return false;
}

/* A plain `~`/`null`/empty scalar or an explicit !!null: the field is unset. */
static bool is_null(const node *n) {
    if (n->type != YAML_SCALAR_EVENT)
        return false;
    if (strcmp(n->tag, TAG_NULL) == 0)
        return true;
    if (n->style != YAML_PLAIN_SCALAR_STYLE || n->tagged)
        return false;
    const char *v = n->value;
    return n->len == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

/* A scalar's text held in exactly its size: a body the doubling of a
 * growable buffer sized would leave up to half of its block unused. */
static int buf_set_exact(tch_buf *out, const char *p, size_t len) {
    if (len == 0)
        return tch__cas_buf_set(out, TCH_SLICE_NULL);
    if (out->cap != len) {
        uint8_t *q = tch__realloc(out->alloc, out->ptr, len);
        if (!q)
            return TCH_ENOMEM;
        out->ptr = q;
        out->cap = len;
    }
    memcpy(out->ptr, p, len);
    out->len = len;
    return 0;
}

static int read_bytes(ld *l, const char *what, tch_buf *out) {
    const node *n = &l->cur;
    tch_buf_reset(out);
    if (is_null(n))
        return tch__cas_buf_set(out, TCH_SLICE_NULL);
    if (n->type != YAML_SCALAR_EVENT)
        return fail_at(l, &n->mark, "%s: expected a string or !!binary scalar", what);
    /* PyYAML writes bytes as !!binary, and reads !!python/bytes as base64 too */
    if (strcmp(n->tag, TAG_BINARY) == 0 || strcmp(n->tag, "tag:yaml.org,2002:python/bytes") == 0) {
        int rc = tch_base64_decode(n->value, n->len, out);
        if (rc == TCH_ENOMEM)
            return nomem(l);
        if (rc)
            return fail_at(l, &n->mark, "%s: invalid base64 in %s", what, n->tag);
        if (!out->ptr)
            return tch__cas_buf_set(out, TCH_SLICE_NULL);
        return 0;
    }
    /* plain scalars such as 123 resolve to !!int in Python; the bytes are
     * still the text, which is what tchannel-python would have sent */
    if (!is_string_tag(n->tag) && strcmp(n->tag, TAG_INT) != 0)
        return fail_at(l, &n->mark, "%s: unsupported tag %s (expected a string or !!binary)", what,
                       n->tag);
    if (buf_set_exact(out, n->value, n->len))
        return nomem(l);
    return 0;
}

static int read_long(ld *l, const char *what, long min, long max, long *out) {
    const node *n = &l->cur;
    if (n->type != YAML_SCALAR_EVENT)
        return fail_at(l, &n->mark, "%s: expected an integer", what);
    const char *v = n->value;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < min || x > max) {
        char range[64];
        snprintf(range, sizeof range, " from %ld to %ld", min, max);
        return fail_at(l, &n->mark, "%s: expected an integer%s", what, range);
    }
    *out = x;
    return 0;
}

/* argScheme: the proxy.thrift number, or a name (lenient for hand-written files). */
static int read_scheme(ld *l, tch_cassette_scheme *out) {
    static const char *const names[] = {"raw", "json", "thrift"};
    if (l->cur.type == YAML_SCALAR_EVENT)
        for (int i = 0; i < 3; i++)
            if (strcasecmp(l->cur.value, names[i]) == 0) {
                *out = (tch_cassette_scheme)i;
                return 0;
            }
    long v = 0;
    int rc = read_long(l, "argScheme (0 raw, 1 json, 2 thrift)", 0, 2, &v);
    *out = (tch_cassette_scheme)v;
    return rc;
}

static int read_errcode(ld *l, const char *what, uint8_t *out) {
    const node *n = &l->cur;
    if (n->type == YAML_SCALAR_EVENT && tch_cassette_errcode_parse(n->value, out) == 0)
        return 0;
    long v;
    if (n->type == YAML_SCALAR_EVENT) {
        /* read_long's own message is replaced by the one below */
        tch_error scratch, *saved = l->err;
        l->err = &scratch;
        int rc = read_long(l, what, 1, 255, &v);
        l->err = saved;
        if (rc == 0 && tch_cassette_errcode_name((uint8_t)v)) {
            *out = (uint8_t)v;
            return 0;
        }
    }
    return fail_at(l, &n->mark,
                   "%s: expected an error code name (timeout, cancelled, busy, declined, "
                   "unexpected, badRequest, networkError, unhealthy, fatal)",
                   what);
}

/* YAML 1.1's spellings of a boolean, as PyYAML reads them. */
static int read_bool(ld *l, const char *what, bool *out) {
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
    const node *n = &l->cur;
    if (n->type == YAML_SCALAR_EVENT && n->style == YAML_PLAIN_SCALAR_STYLE &&
        (!n->tagged || strcmp(n->tag, TAG_BOOL) == 0))
        for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
            if (strcmp(n->value, yes[i]) == 0 || strcmp(n->value, no[i]) == 0) {
                *out = strcmp(n->value, yes[i]) == 0;
                return 0;
            }
    return fail_at(l, &n->mark, "%s: expected true or false", what);
}

static int read_cstr(ld *l, const char *what, char **out) {
    tch_buf b = {0};
    int rc = read_bytes(l, what, &b);
    if (!rc) {
        tch__free(l->c->alloc, *out);
        *out = tch_slice_strdup_with(l->c->alloc, tch_buf_slice(&b));
        if (!*out)
            rc = nomem(l);
    }
    tch_buf_free(&b);
    return rc;
}

/* ---- mappings with a fixed key set ----------------------------------- */

/* Called with the value's first event current; leaves its last current. */
typedef int (*field_fn)(ld *l, void *target, int which);

typedef struct key_spec {
    const char *name;
    int which;
} key_spec;

/* Walks a mapping, dispatching known keys to fn; an unknown or repeated key
 * is an error that names it and lists what is allowed. */
static int walk_mapping(ld *l, const char *what, const key_spec *keys, size_t nkeys, field_fn fn,
                        void *target, unsigned *seen) {
    *seen = 0;
    if (l->cur.type != YAML_MAPPING_START_EVENT)
        return fail_at(l, &l->cur.mark, "%s: expected a mapping", what);
    for (;;) {
        int rc = next(l);
        if (rc)
            return rc;
        const node *k = &l->cur;
        if (k->type == YAML_MAPPING_END_EVENT)
            return 0;
        if (k->type != YAML_SCALAR_EVENT)
            return fail_at(l, &k->mark, "%s: expected a scalar key", what);
        size_t i = 0;
        while (i < nkeys && strcmp(keys[i].name, k->value) != 0)
            i++;
        if (i == nkeys) {
            char allowed[256] = "";
            for (size_t j = 0; j < nkeys; j++) {
                strncat(allowed, j ? ", " : " (allowed: ", sizeof allowed - strlen(allowed) - 1);
                strncat(allowed, keys[j].name, sizeof allowed - strlen(allowed) - 1);
            }
            strncat(allowed, ")", sizeof allowed - strlen(allowed) - 1);
            char who[200];
            snprintf(who, sizeof who, "%s: unknown key '%.100s'", what, k->value);
            return fail_at(l, &k->mark, "%s%s", who, allowed);
        }
        if (*seen & (1u << i))
            return fail_at(l, &k->mark, "%s: duplicate key '%s'", what, keys[i].name);
        *seen |= 1u << i;
        if ((rc = next(l)) || (rc = fn(l, target, keys[i].which)))
            return rc;
    }
}

/* Items of a sequence: fn is called with each item's first event current. */
typedef int (*item_fn)(ld *l, void *target, size_t index);

static int walk_sequence(ld *l, item_fn fn, void *target) {
    for (size_t i = 0;; i++) {
        int rc = next(l);
        if (rc)
            return rc;
        if (l->cur.type == YAML_SEQUENCE_END_EVENT)
            return 0;
        if ((rc = fn(l, target, i)))
            return rc;
    }
}

/* Grows a zeroed array so that index i exists. */
static int grow(ld *l, void **arr, size_t *cap, size_t i, size_t size) {
    if (i < *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : 2;
    void *p = tch__realloc(l->c->alloc, *arr, n * size);
    if (!p)
        return nomem(l);
    memset((char *)p + *cap * size, 0, (n - *cap) * size);
    *arr = p;
    *cap = n;
    return 0;
}

/* ---- any node as JSON (stub rules) ------------------------------------ */

/* A scalar as YAML 1.1 reads it: plain null, booleans, integers and reals
 * by their spelling, everything else (and anything quoted) a string. */
static json_t *scalar_json(const node *n) {
    if (is_null(n))
        return json_null();
    if (n->style == YAML_PLAIN_SCALAR_STYLE && (!n->tagged || strcmp(n->tag, TAG_BOOL) == 0 ||
                                                 strcmp(n->tag, TAG_INT) == 0)) {
        const char *v = n->value;
        if (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "TRUE"))
            return json_true();
        if (!strcmp(v, "false") || !strcmp(v, "False") || !strcmp(v, "FALSE"))
            return json_false();
        char *end;
        errno = 0;
        long long i = strtoll(v, &end, 10);
        if (n->len && !*end && !errno)
            return json_integer(i);
        double d = strtod(v, &end);
        if (n->len && !*end && strpbrk(v, ".eE") && !strpbrk(v, "xXnN"))
            return json_real(d);
    }
    return json_stringn(n->value, n->len);
}

#define JSON_NODE_DEPTH 64

/* The node whose first event is current, as JSON (no recursion: a stack
 * of open collections); leaves its last event current. */
static int read_json(ld *l, const char *what, json_t **out) {
    json_t *stack[JSON_NODE_DEPTH];
    char *keys[JSON_NODE_DEPTH];
    size_t sp = 0;
    json_t *root = NULL;
    int rc = 0;
    for (;;) {
        const node *n = &l->cur;
        json_t *v = NULL;
        bool open = false, closed = false;
        if (n->type == YAML_SCALAR_EVENT && sp && json_is_object(stack[sp - 1]) && !keys[sp - 1]) {
            if (!(keys[sp - 1] = tch__strdup(l->c->alloc, n->value))) {
                rc = nomem(l);
                break;
            }
            goto advance;
        }
        if (sp && json_is_object(stack[sp - 1]) && !keys[sp - 1] &&
            n->type != YAML_MAPPING_END_EVENT) {
            rc = fail_at(l, &n->mark, "%s: expected a scalar key", what);
            break;
        }
        switch (n->type) {
        case YAML_SCALAR_EVENT: v = scalar_json(n); break;
        case YAML_MAPPING_START_EVENT: v = json_object(), open = true; break;
        case YAML_SEQUENCE_START_EVENT: v = json_array(), open = true; break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT: closed = true; break;
        default: rc = fail_at(l, &n->mark, "%s: unexpected YAML node", what); break;
        }
        if (rc)
            break;
        if (closed) {
            sp--;
            if (sp == 0)
                break;
            goto advance;
        }
        if (!v) {
            rc = nomem(l);
            break;
        }
        if (!sp) {
            root = v;
        } else if (json_is_array(stack[sp - 1])) {
            json_array_append_new(stack[sp - 1], v);
        } else {
            json_object_set_new(stack[sp - 1], keys[sp - 1], v);
            tch__free(l->c->alloc, keys[sp - 1]);
            keys[sp - 1] = NULL;
        }
        if (open) {
            if (sp == JSON_NODE_DEPTH) {
                rc = fail_at(l, &n->mark, "%s: nested deeper than 64 levels", what);
                break;
            }
            keys[sp] = NULL;
            stack[sp++] = v;
        } else if (!sp) {
            break;
        }
    advance:
        if ((rc = next(l)))
            break;
    }
    for (size_t i = 0; i < sp; i++)
        tch__free(l->c->alloc, keys[i]);
    if (rc) {
        json_decref(root);
        return rc;
    }
    *out = root;
    return 0;
}

/* ---- request / response / error --------------------------------------- */

enum {
    RQ_SERVICE, RQ_ENDPOINT, RQ_HEADERS, RQ_BODY, RQ_SCHEME, RQ_HOSTPORT, RQ_PEERS, RQ_THEADERS,
    RQ_HEADERS_DEC, RQ_BODY_DEC,
};

/* `headersDecoded` / `bodyDecoded`, used only without the exact field. */
typedef struct decoded {
    tch_buf headers, body;
    bool have_headers, have_body;
    yaml_mark_t headers_mark, body_mark;
} decoded;

typedef struct req_ctx {
    tch_cassette_request *r;
    decoded dec;
    size_t cap;
    json_t *rules; /* fields given as a rule mapping (a stub), or NULL */
} req_ctx;

static int peer_item(ld *l, void *target, size_t i) {
    req_ctx *rc = target;
    tch_cassette_request *r = rc->r;
    int e = grow(l, (void **)&r->known_peers, &rc->cap, i, sizeof *r->known_peers);
    if (e)
        return e;
    r->n_known_peers = i + 1;
    return read_bytes(l, "knownPeers item", &r->known_peers[i]);
}

static int read_peers(ld *l, req_ctx *rc) {
    if (is_null(&l->cur))
        return 0;
    if (l->cur.type != YAML_SEQUENCE_START_EVENT)
        return fail_at(l, &l->cur.mark, "knownPeers: expected a list");
    rc->cap = 0;
    return walk_sequence(l, peer_item, rc);
}

static int th_field(ld *l, void *target, int which) {
    tch_cassette_kv *kv = target;
    return read_bytes(l, which ? "transportHeaders value" : "transportHeaders key",
                      which ? &kv->value : &kv->key);
}

static int th_item(ld *l, void *target, size_t i) {
    static const key_spec keys[] = {{"key", 0}, {"value", 1}};
    req_ctx *rc = target;
    tch_cassette_request *r = rc->r;
    int e = grow(l, (void **)&r->transport_headers, &rc->cap, i, sizeof *r->transport_headers);
    if (e)
        return e;
    r->n_transport_headers = i + 1;
    yaml_mark_t m = l->cur.mark;
    unsigned seen;
    if ((e = walk_mapping(l, "transportHeaders item", keys, 2, th_field, &r->transport_headers[i],
                          &seen)))
        return e;
    if (seen != 3)
        return fail_at(l, &m, "transportHeaders item: expected both key and value");
    return 0;
}

static int read_theaders(ld *l, req_ctx *rc) {
    if (is_null(&l->cur))
        return 0;
    if (l->cur.type != YAML_SEQUENCE_START_EVENT)
        return fail_at(l, &l->cur.mark, "transportHeaders: expected a list of {key, value}");
    rc->cap = 0;
    return walk_sequence(l, th_item, rc);
}

static int read_decoded(ld *l, decoded *d, bool headers) {
    if (headers) {
        d->have_headers = true;
        d->headers_mark = l->cur.mark;
        return read_bytes(l, "headersDecoded", &d->headers);
    }
    d->have_body = true;
    d->body_mark = l->cur.mark;
    return read_bytes(l, "bodyDecoded", &d->body);
}

/* `body: {contains: x}`: the field's rule, kept for the stub's rule set. */
static int read_rule_field(ld *l, req_ctx *rc, const char *field) {
    json_t *v = NULL;
    int e = read_json(l, field, &v);
    if (e)
        return e;
    if (!rc->rules && !(rc->rules = json_object())) {
        json_decref(v);
        return nomem(l);
    }
    return json_object_set_new(rc->rules, field, v) ? nomem(l) : 0;
}

static bool rule_shaped(const ld *l, int which) {
    return l->cur.type == YAML_MAPPING_START_EVENT &&
           (which == RQ_SERVICE || which == RQ_ENDPOINT || which == RQ_HEADERS ||
            which == RQ_BODY || which == RQ_SCHEME || which == RQ_THEADERS);
}

static int req_field(ld *l, void *target, int which) {
    req_ctx *rc = target;
    tch_cassette_request *r = rc->r;
    if (rule_shaped(l, which)) {
        static const char *const names[] = {
            [RQ_SERVICE] = "serviceName", [RQ_ENDPOINT] = "endpoint", [RQ_HEADERS] = "headers",
            [RQ_BODY] = "body", [RQ_SCHEME] = "argScheme", [RQ_THEADERS] = "transportHeaders",
        };
        return read_rule_field(l, rc, names[which]);
    }
    switch (which) {
    case RQ_SERVICE: return read_bytes(l, "serviceName", &r->service);
    case RQ_ENDPOINT: return read_bytes(l, "endpoint", &r->endpoint);
    case RQ_HEADERS: return read_bytes(l, "headers", &r->headers);
    case RQ_BODY: return read_bytes(l, "body", &r->body);
    case RQ_SCHEME: return is_null(&l->cur) ? 0 : read_scheme(l, &r->scheme);
    case RQ_HOSTPORT: return read_bytes(l, "hostPort", &r->host_port);
    case RQ_PEERS: return read_peers(l, rc);
    case RQ_THEADERS: return read_theaders(l, rc);
    case RQ_HEADERS_DEC: return read_decoded(l, &rc->dec, true);
    case RQ_BODY_DEC: return read_decoded(l, &rc->dec, false);
    }
    return TCH_EINVAL;
}

/* The exact bytes win; a hand-written cassette may give only the decoded
 * JSON, which for the json scheme is the bytes themselves. */
static int use_decoded(ld *l, tch_cassette_scheme scheme, bool have_exact, tch_buf *exact,
                       tch_buf *dec, bool have_dec, const yaml_mark_t *dec_mark,
                       const char *what) {
    if (have_exact || !have_dec)
        return 0;
    if (scheme != TCH_CASSETTE_JSON)
        return fail_at(l, dec_mark,
                       "%sDecoded without %s: only json bodies can be rebuilt from the decoded "
                       "form; add the exact bytes",
                       what, what);
    tch_buf_free(exact);
    *exact = *dec;
    memset(dec, 0, sizeof *dec);
    return 0;
}

static int apply_decoded(ld *l, tch_cassette_scheme scheme, unsigned seen, unsigned headers_bit,
                         unsigned body_bit, tch_buf *headers, tch_buf *body, decoded *d) {
    int e = use_decoded(l, scheme, seen & headers_bit, headers, &d->headers, d->have_headers,
                        &d->headers_mark, "headers");
    if (!e)
        e = use_decoded(l, scheme, seen & body_bit, body, &d->body, d->have_body, &d->body_mark,
                        "body");
    return e;
}

static void decoded_free(decoded *d) {
    tch_buf_free(&d->headers);
    tch_buf_free(&d->body);
}

static const key_spec req_keys[] = {
    {"serviceName", RQ_SERVICE}, {"endpoint", RQ_ENDPOINT},   {"headers", RQ_HEADERS},
    {"body", RQ_BODY},           {"argScheme", RQ_SCHEME},    {"hostPort", RQ_HOSTPORT},
    {"knownPeers", RQ_PEERS},    {"transportHeaders", RQ_THEADERS},
    {"headersDecoded", RQ_HEADERS_DEC}, {"bodyDecoded", RQ_BODY_DEC},
};

/* *rules gets the fields given as rules (NULL: none); *plain the req_keys
 * bits of the fields given as values. */
static int read_request(ld *l, tch_cassette_request *r, json_t **rules, unsigned *plain) {
    req_ctx rc = {.r = r};
    unsigned seen;
    int e = walk_mapping(l, "request", req_keys, sizeof req_keys / sizeof req_keys[0], req_field,
                         &rc, &seen);
    if (!e)
        e = apply_decoded(l, r->scheme, seen, 1u << 2, 1u << 3, &r->headers, &r->body, &rc.dec);
    decoded_free(&rc.dec);
    *plain = seen;
    for (size_t i = 0; rc.rules && i < sizeof req_keys / sizeof req_keys[0]; i++)
        if (json_object_get(rc.rules, req_keys[i].name))
            *plain &= ~(1u << i);
    *rules = rc.rules;
    return e;
}

enum { RS_CODE, RS_HEADERS, RS_BODY, RS_HEADERS_DEC, RS_BODY_DEC, RS_TEMPLATE };

typedef struct resp_ctx {
    tch_cassette_response *r;
    decoded dec;
    unsigned seen;
    bool template_response;
} resp_ctx;

static int resp_field(ld *l, void *target, int which) {
    resp_ctx *rc = target;
    long code = 0;
    int e;
    switch (which) {
    case RS_CODE:
        e = read_long(l, "response code (0 ok, 1 application error)", 0, 1, &code);
        rc->r->code = (int)code;
        return e;
    case RS_HEADERS: return read_bytes(l, "response headers", &rc->r->headers);
    case RS_BODY: return read_bytes(l, "response body", &rc->r->body);
    case RS_HEADERS_DEC: return read_decoded(l, &rc->dec, true);
    case RS_BODY_DEC: return read_decoded(l, &rc->dec, false);
    case RS_TEMPLATE: return read_bool(l, "response template", &rc->template_response);
    }
    return TCH_EINVAL;
}

/* The walk only; the decoded fallback needs the request's scheme, which
 * may come later in the interaction. */
static int read_response(ld *l, resp_ctx *rc) {
    static const key_spec keys[] = {{"code", RS_CODE},
                                    {"headers", RS_HEADERS},
                                    {"body", RS_BODY},
                                    {"headersDecoded", RS_HEADERS_DEC},
                                    {"bodyDecoded", RS_BODY_DEC},
                                    {"template", RS_TEMPLATE}};
    return walk_mapping(l, "response", keys, 6, resp_field, rc, &rc->seen);
}

typedef struct err_ctx {
    uint8_t *code;
    char **message;
    bool *local;
} err_ctx;

static int err_field(ld *l, void *target, int which) {
    err_ctx *ec = target;
    switch (which) {
    case 0: return read_errcode(l, "error code", ec->code);
    case 1: return read_cstr(l, "error message", ec->message);
    default: return read_bool(l, "error local", ec->local);
    }
}

/* `error: {code: busy, message: ...}`, and `local: true` for a timeout that
 * was the caller's own deadline; `fault` also takes a bare code name and no
 * `local` (local is NULL then). */
static int read_error_frame(ld *l, const char *what, uint8_t *code, char **message,
                            bool *local) {
    static const key_spec keys[] = {{"code", 0}, {"message", 1}, {"local", 2}};
    if (l->cur.type == YAML_SCALAR_EVENT && !local)
        return read_errcode(l, what, code);
    err_ctx ec = {code, message, local};
    yaml_mark_t m = l->cur.mark;
    unsigned seen;
    int rc = walk_mapping(l, what, keys, local ? 3 : 2, err_field, &ec, &seen);
    if (!rc && !(seen & 1u))
        return fail_at(l, &m, "%s: missing 'code'", what);
    if (!rc && local && *local && *code != ERRCODE_TIMEOUT)
        return fail_at(l, &m, "%s: 'local: true' is for code timeout only (the caller's own "
                              "deadline)", what);
    if (!rc && !*message && !(*message = tch__strdup(l->c->alloc, "")))
        return nomem(l);
    return rc;
}

/* ---- interactions ------------------------------------------------------ */

enum {
    IT_REQUEST, IT_RESPONSE, IT_ERROR, IT_DELAY, IT_FAULT, IT_ID, IT_PRIORITY, IT_REQUIRED,
    IT_SCENARIO, IT_REQUIRED_STATE, IT_NEW_STATE, IT_DELAY_DIST,
};

typedef struct it_ctx {
    tch_cassette_interaction *it;
    resp_ctx resp;
    deferred resp_err; /* the response's first error, reported after the walk */
    json_t *rules;     /* the request's rule fields */
    unsigned plain;    /* the request's plain fields (req_keys bits) */
    yaml_mark_t request_mark;
} it_ctx;

/* The interaction's stub extras, made on first use. */
static tch_stub_info *stub_extras(ld *l, tch_cassette_interaction *it) {
    if (!it->stub && (it->stub = tch__calloc(l->c->alloc, 1, sizeof *it->stub)))
        it->stub->priority = TCH_STUB_PRIORITY_DEFAULT;
    if (!it->stub)
        nomem(l);
    return it->stub;
}

/* `fault: closeConnection | noAnswer | badChecksum`, else an error frame */
static int read_fault(ld *l, tch_cassette_interaction *it) {
    static const char *const names[] = {"closeConnection", "noAnswer", "badChecksum"};
    if (l->cur.type == YAML_SCALAR_EVENT)
        for (int i = 0; i < 3; i++)
            if (strcmp(l->cur.value, names[i]) == 0) {
                tch_stub_info *st = stub_extras(l, it);
                if (!st)
                    return TCH_ENOMEM;
                st->fault = (tch_stub_fault)(TCH_STUB_FAULT_CLOSE + i);
                return 0;
            }
    it->has_fault = 1;
    return read_error_frame(l, "fault", &it->fault_code, &it->fault_message, NULL);
}

static int read_delay_dist(ld *l, tch_cassette_interaction *it) {
    yaml_mark_t m = l->cur.mark;
    json_t *j = NULL;
    int rc = read_json(l, "delayDistribution", &j);
    tch_stub_info *st = rc ? NULL : stub_extras(l, it);
    if (st) {
        tch_error e = {0};
        if (tch__cas_stub_delay_from_json(j, &st->delay, &e))
            rc = fail_at(l, &m, "%s", e.msg);
    } else if (!rc) {
        rc = TCH_ENOMEM;
    }
    json_decref(j);
    return rc;
}

static int read_stub_str(ld *l, tch_cassette_interaction *it, const char *what, int which) {
    tch_stub_info *st = stub_extras(l, it);
    if (!st)
        return TCH_ENOMEM;
    char **dst = which == IT_ID ? &st->id
                 : which == IT_SCENARIO ? &st->scenario
                 : which == IT_REQUIRED_STATE ? &st->required_state
                                              : &st->new_state;
    int rc = read_cstr(l, what, dst);
    if (!rc && !**dst)
        rc = fail_at(l, &l->cur.mark, "%s: must not be empty", what);
    return rc;
}

static int it_field(ld *l, void *target, int which) {
    it_ctx *ic = target;
    tch_cassette_interaction *it = ic->it;
    tch_stub_info *st;
    long ms = 0;
    int rc;
    switch (which) {
    case IT_REQUEST:
        ic->request_mark = l->cur.mark;
        return read_request(l, &it->request, &ic->rules, &ic->plain);
    case IT_RESPONSE:
        defer_begin(l, &ic->resp_err);
        return defer_end(l, &ic->resp_err, read_response(l, &ic->resp));
    case IT_ERROR:
        it->is_error = 1;
        return read_error_frame(l, "error", &it->error.code, &it->error.message,
                                &it->error.local);
    case IT_DELAY:
        rc = read_long(l, "delay (milliseconds)", 0, MAX_DELAY_MS, &ms);
        it->has_delay = 1;
        it->delay_ms = (uint32_t)ms;
        return rc;
    case IT_FAULT: return read_fault(l, it);
    case IT_ID: return read_stub_str(l, it, "id", which);
    case IT_SCENARIO: return read_stub_str(l, it, "scenario", which);
    case IT_REQUIRED_STATE: return read_stub_str(l, it, "requiredState", which);
    case IT_NEW_STATE: return read_stub_str(l, it, "newState", which);
    case IT_PRIORITY:
        if (!(st = stub_extras(l, it)))
            return TCH_ENOMEM;
        rc = read_long(l, "priority", -1000000, 1000000, &ms);
        st->priority = (int)ms;
        st->has_priority = 1;
        return rc;
    case IT_REQUIRED:
        return (st = stub_extras(l, it)) ? read_bool(l, "required", &st->required) : TCH_ENOMEM;
    case IT_DELAY_DIST: return read_delay_dist(l, it);
    }
    return TCH_EINVAL;
}

/* The request's rule fields and plain fields as the stub's rule set. */
static int stub_rules(ld *l, it_ctx *ic) {
    tch_cassette_interaction *it = ic->it;
    /* a stub written by hand: the fields it leaves out match anything */
    bool by_hand = it->stub && (it->stub->id || it->stub->scenario || it->stub->has_priority);
    if (!ic->rules && !by_hand)
        return 0;
    tch_stub_info *st = stub_extras(l, it);
    if (!st)
        return TCH_ENOMEM;
    tch_error e = {0};
    if (ic->rules && tch_stub_rules_from_json(ic->rules, &st->rules, &e))
        return fail_at(l, &ic->request_mark, "request %s", e.msg);
    static const struct {
        unsigned bit;
        int field;
    } plain[] = {{1u << RQ_SERVICE, SF_SERVICE}, {1u << RQ_ENDPOINT, SF_ENDPOINT},
                 {1u << RQ_HEADERS, SF_HEADERS}, {1u << RQ_BODY, SF_BODY},
                 {1u << RQ_SCHEME, SF_SCHEME},   {1u << RQ_THEADERS, SF_THEADERS}};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        if ((ic->plain & plain[i].bit) && tch__cas_rules_add_exact(&st->rules, plain[i].field,
                                                              &it->request))
            return nomem(l);
    return 0;
}

static int read_interaction(ld *l, tch_cassette_interaction *it) {
    static const key_spec keys[] = {
        {"request", IT_REQUEST},      {"response", IT_RESPONSE},
        {"error", IT_ERROR},          {"delay", IT_DELAY},
        {"fault", IT_FAULT},          {"id", IT_ID},
        {"priority", IT_PRIORITY},    {"required", IT_REQUIRED},
        {"scenario", IT_SCENARIO},    {"requiredState", IT_REQUIRED_STATE},
        {"newState", IT_NEW_STATE},   {"delayDistribution", IT_DELAY_DIST}};
    it_ctx ic = {.it = it, .resp = {.r = &it->response}};
    unsigned seen;
    yaml_mark_t m = l->cur.mark;
    it->line = m.line + 1;
    int rc = walk_mapping(l, "interaction", keys, sizeof keys / sizeof keys[0], it_field, &ic,
                          &seen);
    if (!rc && !(seen & 1u))
        rc = fail_at(l, &m, "interaction: missing 'request'");
    if (!rc && !!(seen & 2u) == !!(seen & 4u))
        rc = fail_at(l, &m, "interaction: expected exactly one of 'response' or 'error'");
    if (!rc && (seen & 2u) && !(rc = defer_report(l, &ic.resp_err)))
        rc = apply_decoded(l, it->request.scheme, ic.resp.seen, 1u << 1, 1u << 2,
                           &it->response.headers, &it->response.body, &ic.resp.dec);
    if (!rc && ic.resp.template_response) {
        tch_stub_info *st = stub_extras(l, it);
        if (!st)
            rc = TCH_ENOMEM;
        else
            st->template_response = 1;
    }
    if (!rc)
        rc = stub_rules(l, &ic);
    tch_error te = {0};
    if (!rc && it->stub && it->stub->template_response && tch__cas_template_check(it, &te))
        rc = fail_at(l, &m, "%s", te.msg);
    json_decref(ic.rules);
    decoded_free(&ic.resp.dec);
    return rc;
}

static int interaction_item(ld *l, void *target, size_t i) {
    (void)target;
    (void)i;
    cas_entry *e = NULL;
    if (tch__cas_append_entry(l->c, &e))
        return nomem(l);
    e->from_file = true;
    return read_interaction(l, &e->it);
}

static int read_interactions(ld *l) {
    if (is_null(&l->cur))
        return 0;
    if (l->cur.type != YAML_SEQUENCE_START_EVENT)
        return fail_at(l, &l->cur.mark, "interactions: expected a list");
    return walk_sequence(l, interaction_item, NULL);
}

typedef struct top_ctx {
    bool have_version, version_scalar, version_ok;
    yaml_mark_t version_mark;
    char version[256]; /* enough for the message */
    bool have_interactions;
    deferred inter_err; /* read when met, reported after the version check */
} top_ctx;

static int top_field(ld *l, void *target, int which) {
    top_ctx *t = target;
    if (which == 0) {
        t->have_version = true;
        t->version_mark = l->cur.mark;
        t->version_scalar = l->cur.type == YAML_SCALAR_EVENT;
        if (t->version_scalar) {
            t->version_ok = strcmp(l->cur.value, "1") == 0;
            snprintf(t->version, sizeof t->version, "%s", l->cur.value);
            return 0;
        }
        return skip_to(l, depth_before(l));
    }
    t->have_interactions = true;
    defer_begin(l, &t->inter_err);
    return defer_end(l, &t->inter_err, read_interactions(l));
}

static int read_top(ld *l) {
    static const key_spec keys[] = {{"version", 0}, {"interactions", 1}};
    top_ctx t = {0};
    unsigned seen;
    if (is_null(&l->cur)) /* a file of only comments or `~` is empty, like an empty file */
        return 0;
    yaml_mark_t root = l->cur.mark;
    int rc = walk_mapping(l, "cassette", keys, 2, top_field, &t, &seen);
    if (rc)
        return rc;
    /* tchannel-python: a mapping without interactions is an empty cassette */
    if (!t.have_interactions && !t.have_version)
        return 0;
    if (!t.have_version)
        return fail_at(l, &root, "cassette: missing 'version' (expected version: 1)");
    if (!t.version_scalar || !t.version_ok)
        return fail_at(l, &t.version_mark,
                       "unsupported cassette version '%s' (only version 1 is known)",
                       t.version_scalar ? t.version : "?");
    return defer_report(l, &t.inter_err);
}

/* After a schema error: parse the rest of the document (a YAML error there
 * is what the tree loader would have reported). */
static int drain_document(ld *l) {
    size_t target;
    l->draining = true;
    l->nframes = 0;
    while (!(l->have_ev && (l->ev.type == YAML_DOCUMENT_END_EVENT ||
                            l->ev.type == YAML_STREAM_END_EVENT))) {
        int rc = pull(l, &target);
        if (rc)
            return l->too_deep ? 0 : rc;
    }
    return 0;
}

static int load(ld *l) {
    int rc = next(l); /* stream start */
    if (!rc)
        rc = next(l);
    if (rc || l->cur.type == YAML_STREAM_END_EVENT)
        return rc;
    if ((rc = next(l))) /* the root's first event */
        return rc;
    rc = read_top(l);
    if (rc) {
        if (l->hard != HARD_FINAL && drain_document(l))
            rc = l->err_out->code; /* the YAML error wins */
        return rc;
    }
    if ((rc = next(l))) /* document end */
        return rc;
    /* a second document is not a cassette, whatever it holds; it is parsed
     * to its end first, with its own anchors */
    anchors_reset(l);
    l->draining = true;
    size_t target;
    if ((rc = pull(l, &target)) || l->ev.type == YAML_STREAM_END_EVENT)
        return rc;
    if ((rc = pull(l, &target)))
        return rc;
    yaml_mark_t m = l->ev.start_mark;
    if ((rc = drain_document(l)))
        return rc;
    return tch_error_set(l->err_out, TCH_EPARSE, "%s:%zu:%zu: expected one YAML document",
                         l->c->name, m.line + 1, m.column + 1);
}

/* libyaml's input from a file: every byte read is passed to the tap too. */
static int stream_read(void *ud, unsigned char *buf, size_t size, size_t *got) {
    cas_stream *in = ud;
    size_t n = fread(buf, 1, size, in->f);
    if (n < size && ferror(in->f)) {
        in->io_error = true;
        return 0;
    }
    if (n > in->max - in->got) {
        in->too_big = true;
        return 0;
    }
    in->got += n;
    if (in->tap && n)
        in->tap(in->tap_ud, buf, n);
    *got = n;
    return 1;
}

/* What a document may cost in aliases: proportional to its size. */
static size_t alias_budget(size_t len) {
    return ALIAS_BUDGET_MIN +
           (len > SIZE_MAX / ALIAS_BUDGET_RATIO / 2 ? SIZE_MAX / 2 : len * ALIAS_BUDGET_RATIO);
}

static int load_with(ld *l) {
    int rc = load(l);
    if (l->have_ev)
        yaml_event_delete(&l->ev);
    yaml_parser_delete(&l->parser);
    anchors_reset(l);
    tch__free(l->c->alloc, l->anchors);
    tch__free(l->c->alloc, l->ahash);
    tch__free(l->c->alloc, l->open);
    tch__free(l->c->alloc, l->log);
    tch__free(l->c->alloc, l->frames);
    return rc;
}

static int ld_init(ld *l, tch_cassette *c, size_t len, tch_error *err) {
    memset(l, 0, sizeof *l);
    l->c = c;
    l->err = l->err_out = err;
    l->budget = alias_budget(len);
    if (!yaml_parser_initialize(&l->parser))
        return tch_error_set(err, TCH_ENOMEM, "%s: yaml parser", c->name);
    return 0;
}

int tch__cas_load_buffer(tch_cassette *c, const char *data, size_t len, tch_error *err) {
    if (len == 0) /* tchannel-python: an existing empty file is an empty cassette */
        return 0;
    ld l;
    tch_error scratch = {0};
    int rc = ld_init(&l, c, len, err ? err : &scratch);
    if (rc)
        return rc;
    l.data = data;
    l.len = len;
    yaml_parser_set_input_string(&l.parser, (const unsigned char *)data, len);
    return load_with(&l);
}

int tch__cas_load_stream(tch_cassette *c, cas_stream *in, tch_error *err) {
    ld l;
    tch_error scratch = {0};
    int rc = 0;
    if (in->size > 0) { /* tchannel-python: an empty file is an empty cassette */
        if ((rc = ld_init(&l, c, in->size, err ? err : &scratch)))
            return rc;
        l.in = in;
        yaml_parser_set_input(&l.parser, stream_read, in);
        rc = load_with(&l);
    }
    /* the parser stops at the end of the stream; whatever follows (nothing,
     * unless the file grew) still counts for the file's identity */
    unsigned char chunk[8192];
    size_t got;
    while (!rc && stream_read(in, chunk, sizeof chunk, &got) && got > 0)
        ;
    if (!rc && in->too_big)
        rc = tch_error_set(err, TCH_ETOOBIG, "cassette %s: larger than %zu MiB", c->name,
                           in->max >> 20);
    if (!rc && in->io_error)
        rc = tch_error_set(err, TCH_EIO, "cassette %s: read error", c->name);
    return rc;
}
