/* Reading cassettes. libyaml's event parser (yaml_parser_parse) is the
 * only YAML parser; a small composer here builds compact nodes from its
 * events, and a walk over the nodes fills interactions. Accepts what
 * tchannel-python writes under py2 (plain, !!python/str, !!python/unicode)
 * and py3 (!!binary) plus our extensions; rejects unknown keys and wrong
 * shapes with file:line:column.
 *
 * Pieces: the document is composed and walked one piece at a time: each
 * key and each value of the top-level mapping, and within `interactions`
 * each interaction. A piece is composed whole, walked into the cassette,
 * and its nodes are released, so reading costs about the cassette itself
 * plus one interaction's nodes (1.2 times the file for 1 KiB bodies;
 * bench_cassette --load-mb). An anchored root or `interactions` value is
 * composed whole. Short texts (under 8 bytes: most keys) live in their
 * node, other tag texts go with their piece, and a composer stack grown
 * past STACK_KEEP by a large piece is given back.
 *
 * Which error is reported (the rule of the format, docs/cassettes.md):
 * errors come in document order and the first one wins; a piece is read
 * whole before it is checked, so a YAML error inside it (libyaml's, an
 * undefined alias, a repeated anchor, nesting past MAX_DEPTH) comes before
 * its content errors; checks of a mapping as a whole (a missing key,
 * `bodyDecoded` without the exact bytes...) come after its keys. One
 * exception: content errors in `interactions` written before `version` are
 * reported after the rest of the top-level mapping is read and checked
 * (read_top). A second document is an error at its first token.
 *
 * Anchors and aliases: py2 tchannel-python cassettes contain them (PyYAML
 * writes a knownPeers list shared by several requests as `&id001` /
 * `*id001`). As in libyaml's loader, an alias is the anchored node itself
 * (a REF node, no copy, no replay); an alias to an undefined anchor and a
 * repeated anchor name are YAML errors with libyaml's messages. An
 * anchored node and everything in it is kept until the document ends (a
 * later alias may name it) and is "shared": every visit of it after the
 * first costs NODE_COST plus its text from a budget of BUDGET_MIN plus BUDGET_RATIO
 * times the input, so a "billion laughs" file stays small and fails early.
 * A node that contains itself ends on its shape, on a stub rule's depth
 * (JSON_NODE_DEPTH) or on the budget.
 *
 * Nesting: nothing recurses on the input's nesting (the composer keeps its
 * own stack; the walk follows the schema), but depth is bounded at
 * MAX_DEPTH: libyaml's scanner costs O(depth) per token in flow
 * collections (200,000 nested `[` took minutes). */
#include "cassette_internal.h"

#include "array.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#define MAX_DELAY_MS 3600000
#define BUDGET_MIN ((size_t)64 << 20)
#define BUDGET_RATIO 16
#define NODE_COST 64 /* bytes: about what reading a node again may take */
#define MAX_DEPTH 1000 /* the schema needs 6 levels */
#define JSON_NODE_DEPTH 64
#define CHUNK_NODES 256
#define STACK_KEEP 4096 /* nodes: a larger composer stack is freed after its piece */

/* Scalar tags the schema tells apart; others keep their text (ld.tags). */
enum {
    TG_NONE, /* untagged: a string, or null/bool/int by its spelling */
    TG_BANG, /* `!`: a string, and tagged */
    TG_STR, TG_PYSTR, TG_PYUNICODE, TG_BINARY, TG_PYBYTES, TG_NULL, TG_INT, TG_BOOL, TG_OTHER,
};

static const char *const tag_names[] = {
    [TG_NONE] = "tag:yaml.org,2002:str",   [TG_BANG] = "tag:yaml.org,2002:str",
    [TG_STR] = "tag:yaml.org,2002:str",    [TG_PYSTR] = "tag:yaml.org,2002:python/str",
    [TG_PYUNICODE] = "tag:yaml.org,2002:python/unicode",
    [TG_BINARY] = "tag:yaml.org,2002:binary", [TG_PYBYTES] = "tag:yaml.org,2002:python/bytes",
    [TG_NULL] = "tag:yaml.org,2002:null",  [TG_INT] = "tag:yaml.org,2002:int",
    [TG_BOOL] = "tag:yaml.org,2002:bool",
};

enum { N_SCALAR, N_SEQ, N_MAP, N_REF };

/* A node (32 bytes on 64-bit systems). A collection's children are contiguous (a mapping's
 * are key, value, key, value...); an anchored node sits in its parent as a
 * REF, and so does every alias of it. */
typedef struct cnode {
    uint8_t kind;
    uint8_t style;  /* yaml_scalar_style_t */
    uint8_t tag;    /* TG_* (scalars) */
    uint8_t flags;  /* F_* */
    uint32_t tagx;  /* TG_OTHER: its text is ld.tags[tagx] (F_SHARED) or ld.ptags[tagx] */
    uint32_t line, col; /* 0-based */
    size_t n;       /* scalar: bytes; collection: children */
    union {
        char *text; /* NUL-terminated, libyaml's */
        char small[8]; /* F_INLINE: a text shorter than 8 bytes (most keys) */
        struct cnode *kids;
        struct cnode *ref;
    } u;
} cnode;

enum {
    F_SHARED = 1,  /* in an anchored node: visits after the first are charged */
    F_VISITED = 2, /* a shared node's first visit happened */
    F_INLINE = 4,  /* the text is in u.small */
};

static const char *text(const cnode *n) {
    return n->flags & F_INLINE ? n->u.small : n->u.text;
}

/* Nodes in chunks that never move (a REF points into them). */
typedef struct nchunk {
    struct nchunk *next;
    size_t used, cap;
    cnode v[];
} nchunk;

/* A collection open in the composer: its children are stack[base..]. */
typedef struct open_coll {
    size_t base, slot; /* slot: its own node on the stack (unanchored) */
    cnode *anchored;   /* or its node in the kept chunks */
    bool shared;
} open_coll;

/* A collection read child by child: from the parser (a piece at a time)
 * or from a composed node. */
typedef struct coll {
    cnode *tree; /* NULL: the parser */
    size_t i;
    bool stream, done;
} coll;

typedef struct ld {
    tch_cassette *c;
    tch_error *err;
    const char *data; /* a buffer's input, for positions of reader errors */
    size_t len;
    cas_stream *in; /* or a file's, read in pieces (data is NULL) */
    yaml_parser_t parser;
    yaml_event_t ev;
    bool have_ev;
    bool read_failed; /* the parser or the composer failed: no more reading */
    size_t depth;     /* open collections */
    nchunk *piece;     /* the current piece's nodes */
    nchunk *kept;      /* anchored nodes and their insides: until the end */
    cnode *stack;     /* nodes being composed */
    size_t nstack, capstack;
    open_coll *opens;
    size_t nopen, capopen;
    json_t *anchors; /* name -> index in anodes */
    cnode **anodes;
    size_t nanodes, capanodes;
    char **tags;   /* texts of TG_OTHER tags of shared nodes: until the end */
    size_t ntags, captags;
    char **ptags;  /* and of the current piece's nodes */
    size_t nptags, capptags;
    size_t budget; /* what visits of shared nodes may still cost */
} ld;

/* A content error at node `at`: "NAME:LINE:COL: " and the formatted text. */
static int fail_at(ld *l, const cnode *at, const char *fmt, ...) TCH_PRINTF(3, 4);
static int fail_at(ld *l, const cnode *at, const char *fmt, ...) {
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof what) /* a long key or value: show that the text was cut */
        memcpy(what + sizeof what - 4, "...", 4);
    tch_error_set(l->err, TCH_EPARSE, "%s:%zu:%zu: %s", l->c->name, (size_t)at->line + 1,
                  (size_t)at->col + 1, what);
    return TCH_EPARSE; /* a constant, so the compiler sees the failure paths */
}

static int nomem(ld *l) {
    tch_error_set(l->err, TCH_ENOMEM, "%s: out of memory", l->c->name);
    return TCH_ENOMEM;
}

/* Errors that are not about the content: always reported at once. */
static bool fatal(const ld *l, int rc) {
    return rc == TCH_ENOMEM || rc == TCH_EIO || (l->in && (l->in->too_big || l->in->io_error));
}

/* ---- memory kept by the cassette -------------------------------------- */

/* The one place the cassette gets a scalar's text: a copy of exactly its
 * size. (Handing libyaml's buffer over, shrunk in place, saves the copy
 * but not memory: the buffer grew by doubling, and the holes left behind
 * took the peak of a 200 MB load from 1.2 to 1.45 times the file.) */
static int take_text(const cnode *n, tch_buf *out) { /* out->alloc: the cassette's */
    if (n->n == 0)
        return tch__cas_buf_set(out, TCH_SLICE_NULL);
    if (!(out->ptr = tch__malloc(out->alloc, n->n)))
        return TCH_ENOMEM;
    memcpy(out->ptr, text(n), n->n);
    out->len = out->cap = n->n;
    return 0;
}

/* ---- positions and parser errors --------------------------------------- */

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

static int parser_error(ld *l) {
    const yaml_parser_t *p = &l->parser;
    const char *name = l->c->name;
    tch_error *err = l->err;
    if (p->error == YAML_MEMORY_ERROR)
        return tch_error_set(err, TCH_ENOMEM, "%s: out of memory while parsing", name);
    if (l->in && l->in->too_big)
        return tch_error_set(err, TCH_ETOOBIG, "cassette %s: larger than %zu MiB", name,
                             l->in->max >> 20);
    if (l->in && l->in->io_error)
        return tch_error_set(err, TCH_EIO, "cassette %s: read error", name);
    yaml_mark_t m = p->error == YAML_READER_ERROR ? mark_at(l, p->problem_offset)
                                                  : p->problem_mark;
    const char *problem = p->problem ? p->problem : "error";
    if (p->context)
        return tch_error_set(err, TCH_EPARSE,
                             "%s:%zu:%zu: malformed YAML: %s %s (which started at line %zu)", name,
                             m.line + 1, m.column + 1, problem, p->context,
                             p->context_mark.line + 1);
    return tch_error_set(err, TCH_EPARSE, "%s:%zu:%zu: malformed YAML: %s", name, m.line + 1,
                         m.column + 1, problem);
}

/* A reading error at the current event (libyaml's wording where it has one). */
static int fail_read(ld *l, int code, const char *fmt, ...) TCH_PRINTF(3, 4);
static int fail_read(ld *l, int code, const char *fmt, ...) {
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const yaml_mark_t *m = &l->ev.start_mark;
    l->read_failed = true;
    return tch_error_set(l->err, code, "%s:%zu:%zu: %s", l->c->name, m->line + 1, m->column + 1,
                         what);
}

/* The next event into l->ev. */
static int pull(ld *l) {
    if (l->have_ev) {
        yaml_event_delete(&l->ev);
        l->have_ev = false;
    }
    if (!yaml_parser_parse(&l->parser, &l->ev)) {
        l->read_failed = true;
        return parser_error(l);
    }
    l->have_ev = true;
    return 0;
}

/* A collection starts: MAX_DEPTH bounds the scanner's work. */
static int depth_in(ld *l) {
    if (++l->depth <= MAX_DEPTH)
        return 0;
    return fail_read(l, TCH_EPARSE, "nesting deeper than %d levels", MAX_DEPTH);
}

/* ---- node chunks ------------------------------------------------------- */

/* k contiguous zeroed nodes from the chunk list *list. */
static cnode *chunk_take(ld *l, nchunk **list, size_t k) {
    nchunk *c = *list;
    if (!c || c->cap - c->used < k) {
        size_t cap = k > CHUNK_NODES ? k : CHUNK_NODES;
        if (!(c = tch__malloc(l->c->alloc, sizeof *c + cap * sizeof(cnode)))) {
            nomem(l);
            return NULL;
        }
        c->used = 0;
        c->cap = cap;
        c->next = *list;
        *list = c;
    }
    cnode *n = &c->v[c->used];
    c->used += k;
    memset(n, 0, k * sizeof *n);
    return n;
}

static void node_free(cnode *n) {
    if (n->kind == N_SCALAR && !(n->flags & F_INLINE))
        free(n->u.text); /* libyaml's, taken from its event */
}

/* Frees the nodes of *list; keep: its newest chunk stays for reuse. */
static void chunks_clear(const tch_allocator *a, nchunk **list, bool keep) {
    nchunk *c = *list;
    while (c) {
        nchunk *next = c->next;
        for (size_t i = 0; i < c->used; i++)
            node_free(&c->v[i]);
        c->used = 0;
        if (keep && c == *list)
            c->next = NULL;
        else
            tch__free(a, c);
        c = next;
    }
    if (!keep)
        *list = NULL;
}

/* ---- anchors ------------------------------------------------------------ */

/* The node anchored as name, or NULL. */
static cnode *anchor_find(const ld *l, const char *name) {
    json_t *i = l->anchors ? json_object_get(l->anchors, name) : NULL;
    return i ? l->anodes[json_integer_value(i)] : NULL;
}

/* libyaml's composer: a name may be anchored once per document. */
static int anchor_add(ld *l, const char *name, cnode *node) {
    cnode *prev = anchor_find(l, name);
    if (prev)
        return fail_read(l, TCH_EPARSE,
                         "malformed YAML: second occurrence found duplicate anchor; first "
                         "occurrence (which started at line %zu)", (size_t)prev->line + 1);
    if (l->nanodes == l->capanodes) {
        cnode **v = tch__array_grow_with(l->c->alloc, l->anodes, &l->capanodes, sizeof *v, 8);
        if (!v)
            return nomem(l);
        l->anodes = v;
    }
    if ((!l->anchors && !(l->anchors = json_object())) ||
        json_object_set_new_nocheck(l->anchors, name, json_integer((json_int_t)l->nanodes)))
        return nomem(l);
    l->anodes[l->nanodes++] = node;
    return 0;
}

/* ---- the composer ------------------------------------------------------ */

static uint32_t u32(size_t v) { return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v; }

/* A scalar's tag as a TG_* kind; another tag's text is taken (ld.tags). */
static int tag_of(ld *l, yaml_char_t **tagp, cnode *n) {
    const char *tag = (const char *)*tagp;
    n->tag = !tag ? TG_NONE : strcmp(tag, "!") == 0 ? TG_BANG : TG_STR;
    while (n->tag >= TG_STR && n->tag < TG_OTHER && strcmp(tag, tag_names[n->tag]) != 0)
        n->tag++;
    if (n->tag != TG_OTHER)
        return 0;
    bool kept = n->flags & F_SHARED;
    char ***tags = kept ? &l->tags : &l->ptags;
    size_t *ntags = kept ? &l->ntags : &l->nptags, *cap = kept ? &l->captags : &l->capptags;
    if (*ntags == *cap) {
        char **v = tch__array_grow_with(l->c->alloc, *tags, cap, sizeof *v, 4);
        if (!v)
            return nomem(l);
        *tags = v;
    }
    n->tagx = u32(*ntags);
    (*tags)[(*ntags)++] = (char *)*tagp;
    *tagp = NULL;
    return 0;
}

static const char *tag_name(const ld *l, const cnode *n) {
    if (n->tag != TG_OTHER)
        return tag_names[n->tag];
    return n->flags & F_SHARED ? l->tags[n->tagx] : l->ptags[n->tagx];
}

/* A slot on the stack for a new node (zeroed). */
static cnode *stack_push(ld *l) {
    if (l->nstack == l->capstack) {
        cnode *s = tch__array_grow_with(l->c->alloc, l->stack, &l->capstack, sizeof *s, 64);
        if (!s) {
            nomem(l);
            return NULL;
        }
        l->stack = s;
    }
    cnode *n = &l->stack[l->nstack++];
    memset(n, 0, sizeof *n);
    return n;
}

/* The node of the current event: on the stack, or (anchored) kept, with a
 * REF to it on the stack. */
static int new_node(ld *l, const yaml_char_t *anchor, uint8_t kind, cnode **out) {
    bool shared = l->nopen && l->opens[l->nopen - 1].shared;
    cnode *slot = stack_push(l), *n = slot;
    if (!slot)
        return TCH_ENOMEM;
    if (anchor) {
        if (!(n = chunk_take(l, &l->kept, 1)))
            return TCH_ENOMEM;
        slot->kind = N_REF;
        slot->u.ref = n;
        shared = true;
        int rc = anchor_add(l, (const char *)anchor, n);
        if (rc)
            return rc;
    }
    n->kind = kind;
    n->flags = shared ? F_SHARED : 0;
    n->line = u32(l->ev.start_mark.line);
    n->col = u32(l->ev.start_mark.column);
    *out = n;
    return 0;
}

static int open_coll_push(ld *l, cnode *n) {
    if (l->nopen == l->capopen) {
        open_coll *o = tch__array_grow_with(l->c->alloc, l->opens, &l->capopen, sizeof *o, 16);
        if (!o)
            return nomem(l);
        l->opens = o;
    }
    bool anchored = l->stack[l->nstack - 1].kind == N_REF;
    l->opens[l->nopen++] = (open_coll){l->nstack, l->nstack - 1, anchored ? n : NULL,
                                       (n->flags & F_SHARED) != 0};
    return 0;
}

/* The collection on top ends: its children move into one block. */
static int close_coll(ld *l) {
    open_coll *o = &l->opens[--l->nopen];
    size_t k = l->nstack - o->base;
    cnode *kids = NULL;
    if (k && !(kids = chunk_take(l, o->shared ? &l->kept : &l->piece, k)))
        return TCH_ENOMEM;
    if (k)
        memcpy(kids, &l->stack[o->base], k * sizeof *kids);
    l->nstack = o->base;
    cnode *n = o->anchored ? o->anchored : &l->stack[o->slot];
    n->n = k;
    n->u.kids = kids;
    l->depth--;
    return 0;
}

/* Adds the current event to the node being composed. */
static int compose_event(ld *l) {
    yaml_event_t *e = &l->ev;
    cnode *n;
    int rc;
    switch (e->type) {
    case YAML_SCALAR_EVENT:
        if ((rc = new_node(l, e->data.scalar.anchor, N_SCALAR, &n)) ||
            (rc = tag_of(l, &e->data.scalar.tag, n)))
            return rc;
        n->style = (uint8_t)e->data.scalar.style;
        n->n = e->data.scalar.length;
        if (n->n < sizeof n->u.small) { /* copied; the event frees its own */
            memcpy(n->u.small, e->data.scalar.value, n->n + 1);
            n->flags |= F_INLINE;
        } else {
            n->u.text = (char *)e->data.scalar.value; /* taken: the event frees NULL */
            e->data.scalar.value = NULL;
        }
        return 0;
    case YAML_ALIAS_EVENT: {
        cnode *a = anchor_find(l, (const char *)e->data.alias.anchor);
        if (!a)
            return fail_read(l, TCH_EPARSE, "malformed YAML: found undefined alias");
        if (!(n = stack_push(l)))
            return TCH_ENOMEM;
        n->kind = N_REF;
        n->u.ref = a;
        return 0;
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        bool seq = e->type == YAML_SEQUENCE_START_EVENT;
        if ((rc = depth_in(l)) ||
            (rc = new_node(l, seq ? e->data.sequence_start.anchor : e->data.mapping_start.anchor,
                           seq ? N_SEQ : N_MAP, &n)))
            return rc;
        return open_coll_push(l, n);
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT: return close_coll(l);
    default: return fail_read(l, TCH_EPARSE, "malformed YAML: unexpected event");
    }
}

/* Composes the node whose first event is current; leaves its last event
 * current. The node is kept in the piece's chunks. */
static int compose(ld *l, cnode **out) {
    size_t base = l->nstack, open0 = l->nopen;
    int rc;
    for (;;) {
        if ((rc = compose_event(l))) {
            l->read_failed = true;
            return rc;
        }
        if (l->nopen == open0)
            break;
        if ((rc = pull(l)))
            return rc;
    }
    if (!(*out = chunk_take(l, &l->piece, 1)))
        return l->read_failed = true, TCH_ENOMEM;
    **out = l->stack[base];
    l->nstack = base;
    return 0;
}

/* ---- visiting nodes ------------------------------------------------------ */

/* The node n stands for (a REF: the anchored node). A visit of a shared
 * node is charged to the budget. */
static int visit(ld *l, cnode *n, cnode **out) {
    if (n->kind == N_REF)
        n = n->u.ref;
    if ((n->flags & (F_SHARED | F_VISITED)) == F_SHARED) {
        n->flags |= F_VISITED; /* its first visit is free: the file paid for it */
    } else if (n->flags & F_SHARED) {
        size_t cost = NODE_COST + (n->kind == N_SCALAR ? n->n : 0);
        if (cost > l->budget) {
            tch_error_set(l->err, TCH_ETOOBIG, "%s:%zu:%zu: aliases expand to too much data",
                          l->c->name, (size_t)n->line + 1, (size_t)n->col + 1);
            return TCH_ETOOBIG;
        }
        l->budget -= cost;
    }
    *out = n;
    return 0;
}

/* The next child of c: 1 at its end. From the parser, its first event is
 * current and *out is NULL (see child). */
static int child_begin(ld *l, coll *c, cnode **out) {
    *out = NULL;
    if (c->done)
        return 1;
    if (c->tree) {
        if (c->i == c->tree->n)
            return c->done = true, 1;
        return visit(l, &c->tree->u.kids[c->i++], out);
    }
    int rc = pull(l);
    if (rc)
        return rc;
    if (l->ev.type == YAML_SEQUENCE_END_EVENT || l->ev.type == YAML_MAPPING_END_EVENT) {
        l->depth--;
        return c->done = true, 1;
    }
    return 0;
}

/* The next child of c, composed whole: 1 at the end. */
static int child(ld *l, coll *c, cnode **out) {
    int rc = child_begin(l, c, out);
    if (!rc && !*out && !(rc = compose(l, out)))
        rc = visit(l, *out, out);
    return rc;
}

static void ptags_clear(ld *l) {
    for (size_t i = 0; i < l->nptags; i++)
        free(l->ptags[i]); /* libyaml's */
    l->nptags = 0;
}

/* A piece is done: its nodes and tag texts go (read from the parser only),
 * and a stack grown by a large piece is given back. */
static void piece_done(ld *l, const coll *c) {
    if (!c->stream)
        return;
    chunks_clear(l->c->alloc, &l->piece, true);
    ptags_clear(l);
    if (l->nstack == 0 && l->capstack > STACK_KEEP) {
        tch__free(l->c->alloc, l->stack);
        l->stack = NULL;
        l->capstack = 0;
    }
}

/* Composes and drops what is left of c (read from the parser). */
static int skip_rest(ld *l, coll *c) {
    cnode *n;
    int rc = 0;
    while (c->stream && !(rc = child(l, c, &n)))
        piece_done(l, c);
    return rc == 1 ? 0 : rc;
}

/* ---- scalars ------------------------------------------------------------ */

static bool is_string_tag(uint8_t tag) {
    return tag == TG_NONE || tag == TG_BANG || tag == TG_STR || tag == TG_PYSTR ||
           tag == TG_PYUNICODE;
}

static bool plain(const cnode *n) { return n->style == YAML_PLAIN_SCALAR_STYLE; }

/* A plain `~`/`null`/empty scalar or an explicit !!null: the field is unset. */
static bool is_null(const cnode *n) {
    if (n->kind != N_SCALAR)
        return false;
    if (n->tag == TG_NULL)
        return true;
    if (!plain(n) || n->tag != TG_NONE)
        return false;
    const char *v = text(n);
    return n->n == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

/* Every buffer the reader fills is the cassette's, on its allocator. */
static int read_bytes(ld *l, cnode *n, const char *what, tch_buf *out) {
    tch_buf_free(out);
    out->alloc = l->c->alloc;
    if (is_null(n))
        return tch__cas_buf_set(out, TCH_SLICE_NULL);
    if (n->kind != N_SCALAR)
        return fail_at(l, n, "%s: expected a string or !!binary scalar", what);
    /* PyYAML writes bytes as !!binary, and reads !!python/bytes as base64 too */
    if (n->tag == TG_BINARY || n->tag == TG_PYBYTES) {
        int rc = tch_base64_decode(text(n), n->n, out);
        if (rc == TCH_ENOMEM)
            return nomem(l);
        if (rc)
            return fail_at(l, n, "%s: invalid base64 in %s", what, tag_name(l, n));
        if (!out->ptr)
            return tch__cas_buf_set(out, TCH_SLICE_NULL);
        return 0;
    }
    /* plain scalars such as 123 resolve to !!int in Python; the bytes are
     * still the text, which is what tchannel-python would have sent */
    if (!is_string_tag(n->tag) && n->tag != TG_INT)
        return fail_at(l, n, "%s: unsupported tag %s (expected a string or !!binary)", what,
                       tag_name(l, n));
    return take_text(n, out) ? nomem(l) : 0;
}

static int read_long(ld *l, const cnode *n, const char *what, long min, long max, long *out) {
    if (n->kind != N_SCALAR)
        return fail_at(l, n, "%s: expected an integer", what);
    const char *v = text(n);
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < min || x > max)
        return fail_at(l, n, "%s: expected an integer from %ld to %ld", what, min, max);
    *out = x;
    return 0;
}

/* argScheme: the proxy.thrift number, or a name (lenient for hand-written files). */
static int read_scheme(ld *l, const cnode *n, tch_cassette_scheme *out) {
    static const char *const names[] = {"raw", "json", "thrift"};
    if (n->kind == N_SCALAR)
        for (int i = 0; i < 3; i++)
            if (strcasecmp(text(n), names[i]) == 0) {
                *out = (tch_cassette_scheme)i;
                return 0;
            }
    long v = 0;
    int rc = read_long(l, n, "argScheme (0 raw, 1 json, 2 thrift)", 0, 2, &v);
    *out = (tch_cassette_scheme)v;
    return rc;
}

static int read_errcode(ld *l, const cnode *n, const char *what, uint8_t *out) {
    if (n->kind == N_SCALAR) {
        const char *v = text(n);
        if (tch_cassette_errcode_parse(v, out) == 0)
            return 0;
        char *end;
        errno = 0;
        long x = strtol(v, &end, 10);
        if (!errno && end != v && !*end && x >= 1 && x <= 255 &&
            tch_cassette_errcode_name((uint8_t)x)) {
            *out = (uint8_t)x;
            return 0;
        }
    }
    return fail_at(l, n,
                   "%s: expected an error code name (timeout, cancelled, busy, declined, "
                   "unexpected, badRequest, networkError, unhealthy, fatal)",
                   what);
}

/* YAML 1.1's spellings of a boolean, as PyYAML reads them. */
static int read_bool(ld *l, const cnode *n, const char *what, bool *out) {
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
    if (n->kind == N_SCALAR && plain(n) && (n->tag == TG_NONE || n->tag == TG_BOOL))
        for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
            if (strcmp(text(n), yes[i]) == 0 || strcmp(text(n), no[i]) == 0) {
                *out = strcmp(text(n), yes[i]) == 0;
                return 0;
            }
    return fail_at(l, n, "%s: expected true or false", what);
}

static int read_cstr(ld *l, cnode *n, const char *what, char **out) {
    tch_buf b = {0};
    int rc = read_bytes(l, n, what, &b);
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

/* Called with the value node. */
typedef int (*field_fn)(ld *l, cnode *v, void *target, int which);

typedef struct key_spec {
    const char *name;
    int which;
} key_spec;

/* Which of keys k is (*idx); an unknown or repeated key is an error that
 * names it and lists what is allowed. */
static int key_of(ld *l, const cnode *k, const char *what, const key_spec *keys, size_t nkeys,
                  unsigned *seen, size_t *idx) {
    if (k->kind != N_SCALAR)
        return fail_at(l, k, "%s: expected a scalar key", what);
    size_t i = 0;
    while (i < nkeys && strcmp(keys[i].name, text(k)) != 0)
        i++;
    if (i == nkeys) {
        char allowed[256] = "";
        for (size_t j = 0; j < nkeys; j++) {
            strncat(allowed, j ? ", " : " (allowed: ", sizeof allowed - strlen(allowed) - 1);
            strncat(allowed, keys[j].name, sizeof allowed - strlen(allowed) - 1);
        }
        strncat(allowed, ")", sizeof allowed - strlen(allowed) - 1);
        return fail_at(l, k, "%s: unknown key '%.100s'%s", what, text(k), allowed);
    }
    if (*seen & (1u << i))
        return fail_at(l, k, "%s: duplicate key '%s'", what, keys[i].name);
    *seen |= 1u << i;
    *idx = i;
    return 0;
}

/* Walks a mapping in document order, dispatching known keys to fn. */
static int walk_mapping(ld *l, cnode *m, const char *what, const key_spec *keys, size_t nkeys,
                        field_fn fn, void *target, unsigned *seen) {
    *seen = 0;
    if (m->kind != N_MAP)
        return fail_at(l, m, "%s: expected a mapping", what);
    for (size_t p = 0; p < m->n; p += 2) {
        cnode *k, *v;
        size_t i = 0;
        int rc = visit(l, &m->u.kids[p], &k);
        if (rc || (rc = key_of(l, k, what, keys, nkeys, seen, &i)) ||
            (rc = visit(l, &m->u.kids[p + 1], &v)) || (rc = fn(l, v, target, keys[i].which)))
            return rc;
    }
    return 0;
}

/* Items of a sequence: fn is called with each item. */
typedef int (*item_fn)(ld *l, cnode *item, void *target, size_t index);

static int walk_sequence(ld *l, cnode *s, item_fn fn, void *target) {
    for (size_t i = 0; i < s->n; i++) {
        cnode *n;
        int rc = visit(l, &s->u.kids[i], &n);
        if (rc || (rc = fn(l, n, target, i)))
            return rc;
    }
    return 0;
}

/* Grows a zeroed array so that index i exists; the first time to want
 * elements, the length of the list it holds, so it is not doubled past it. */
static int grow(ld *l, void **arr, size_t *cap, size_t i, size_t want, size_t size) {
    if (i < *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : want > i ? want : 2; /* want: the list's length */
    if (n > SIZE_MAX / size)
        return nomem(l);
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
static json_t *scalar_json(const cnode *n) {
    if (is_null(n))
        return json_null();
    const char *v = text(n);
    if (plain(n) && (n->tag == TG_NONE || n->tag == TG_BOOL || n->tag == TG_INT)) {
        if (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "TRUE"))
            return json_true();
        if (!strcmp(v, "false") || !strcmp(v, "False") || !strcmp(v, "FALSE"))
            return json_false();
        char *end;
        errno = 0;
        long long i = strtoll(v, &end, 10);
        if (n->n && !*end && !errno)
            return json_integer(i);
        double d = strtod(v, &end);
        if (n->n && !*end && strpbrk(v, ".eE") && !strpbrk(v, "xXnN"))
            return json_real(d);
    }
    return json_stringn(v, n->n);
}

static int node_json(ld *l, const cnode *n, const char *what, int depth, json_t **out);

static int collection_json(ld *l, const cnode *n, const char *what, int depth, json_t *j) {
    cnode *k, *v;
    json_t *x;
    int rc = 0;
    if (n->kind == N_SEQ) {
        for (size_t i = 0; !rc && i < n->n; i++)
            if (!(rc = visit(l, &n->u.kids[i], &v)) &&
                !(rc = node_json(l, v, what, depth + 1, &x)) && json_array_append_new(j, x))
                rc = nomem(l);
        return rc;
    }
    for (size_t p = 0; !rc && p < n->n; p += 2) {
        if ((rc = visit(l, &n->u.kids[p], &k)))
            break;
        if (k->kind != N_SCALAR)
            return fail_at(l, k, "%s: expected a scalar key", what);
        if (!(rc = visit(l, &n->u.kids[p + 1], &v)) &&
            !(rc = node_json(l, v, what, depth + 1, &x)) && json_object_set_new(j, text(k), x))
            rc = nomem(l);
    }
    return rc;
}

/* Recursion is bounded by JSON_NODE_DEPTH (a node containing itself too). */
static int node_json(ld *l, const cnode *n, const char *what, int depth, json_t **out) {
    if (n->kind == N_SCALAR) {
        *out = scalar_json(n);
        return *out ? 0 : nomem(l);
    }
    if (depth == JSON_NODE_DEPTH)
        return fail_at(l, n, "%s: nested deeper than %d levels", what, JSON_NODE_DEPTH);
    json_t *j = n->kind == N_SEQ ? json_array() : json_object();
    if (!j)
        return nomem(l);
    int rc = collection_json(l, n, what, depth, j);
    if (rc) {
        json_decref(j);
        return rc;
    }
    *out = j;
    return 0;
}

static int read_json(ld *l, const cnode *n, const char *what, json_t **out) {
    return node_json(l, n, what, 0, out);
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
    const cnode *headers_at, *body_at;
} decoded;

typedef struct req_ctx {
    tch_cassette_request *r;
    decoded dec;
    size_t cap, want; /* a list being read: its array's room, its length */
    json_t *rules; /* fields given as a rule mapping (a stub), or NULL */
} req_ctx;

static int peer_item(ld *l, cnode *n, void *target, size_t i) {
    req_ctx *rc = target;
    tch_cassette_request *r = rc->r;
    int e = grow(l, (void **)&r->known_peers, &rc->cap, i, rc->want, sizeof *r->known_peers);
    if (e)
        return e;
    r->n_known_peers = i + 1;
    return read_bytes(l, n, "knownPeers item", &r->known_peers[i]);
}

static int read_peers(ld *l, cnode *n, req_ctx *rc) {
    if (is_null(n))
        return 0;
    if (n->kind != N_SEQ)
        return fail_at(l, n, "knownPeers: expected a list");
    rc->cap = 0;
    rc->want = n->n;
    return walk_sequence(l, n, peer_item, rc);
}

static int th_field(ld *l, cnode *n, void *target, int which) {
    tch_cassette_kv *kv = target;
    return read_bytes(l, n, which ? "transportHeaders value" : "transportHeaders key",
                      which ? &kv->value : &kv->key);
}

static int th_item(ld *l, cnode *n, void *target, size_t i) {
    static const key_spec keys[] = {{"key", 0}, {"value", 1}};
    req_ctx *rc = target;
    tch_cassette_request *r = rc->r;
    int e = grow(l, (void **)&r->transport_headers, &rc->cap, i, rc->want,
                 sizeof *r->transport_headers);
    if (e)
        return e;
    r->n_transport_headers = i + 1;
    unsigned seen;
    if ((e = walk_mapping(l, n, "transportHeaders item", keys, 2, th_field,
                          &r->transport_headers[i], &seen)))
        return e;
    if (seen != 3)
        return fail_at(l, n, "transportHeaders item: expected both key and value");
    return 0;
}

static int read_theaders(ld *l, cnode *n, req_ctx *rc) {
    if (is_null(n))
        return 0;
    if (n->kind != N_SEQ)
        return fail_at(l, n, "transportHeaders: expected a list of {key, value}");
    rc->cap = 0;
    rc->want = n->n;
    return walk_sequence(l, n, th_item, rc);
}

static int read_decoded(ld *l, cnode *n, decoded *d, bool headers) {
    if (headers) {
        d->have_headers = true;
        d->headers_at = n;
        return read_bytes(l, n, "headersDecoded", &d->headers);
    }
    d->have_body = true;
    d->body_at = n;
    return read_bytes(l, n, "bodyDecoded", &d->body);
}

/* `body: {contains: x}`: the field's rule, kept for the stub's rule set. */
static int read_rule_field(ld *l, cnode *n, req_ctx *rc, const char *field) {
    json_t *v = NULL;
    int e = read_json(l, n, field, &v);
    if (e)
        return e;
    if (!rc->rules && !(rc->rules = json_object())) {
        json_decref(v);
        return nomem(l);
    }
    return json_object_set_new(rc->rules, field, v) ? nomem(l) : 0;
}

static bool rule_shaped(cnode *n, int which) {
    return n->kind == N_MAP &&
           (which == RQ_SERVICE || which == RQ_ENDPOINT || which == RQ_HEADERS ||
            which == RQ_BODY || which == RQ_SCHEME || which == RQ_THEADERS);
}

static int req_field(ld *l, cnode *n, void *target, int which) {
    req_ctx *rc = target;
    tch_cassette_request *r = rc->r;
    if (rule_shaped(n, which)) {
        static const char *const names[] = {
            [RQ_SERVICE] = "serviceName", [RQ_ENDPOINT] = "endpoint", [RQ_HEADERS] = "headers",
            [RQ_BODY] = "body", [RQ_SCHEME] = "argScheme", [RQ_THEADERS] = "transportHeaders",
        };
        return read_rule_field(l, n, rc, names[which]);
    }
    switch (which) {
    case RQ_SERVICE: return read_bytes(l, n, "serviceName", &r->service);
    case RQ_ENDPOINT: return read_bytes(l, n, "endpoint", &r->endpoint);
    case RQ_HEADERS: return read_bytes(l, n, "headers", &r->headers);
    case RQ_BODY: return read_bytes(l, n, "body", &r->body);
    case RQ_SCHEME: return is_null(n) ? 0 : read_scheme(l, n, &r->scheme);
    case RQ_HOSTPORT: return read_bytes(l, n, "hostPort", &r->host_port);
    case RQ_PEERS: return read_peers(l, n, rc);
    case RQ_THEADERS: return read_theaders(l, n, rc);
    case RQ_HEADERS_DEC: return read_decoded(l, n, &rc->dec, true);
    case RQ_BODY_DEC: return read_decoded(l, n, &rc->dec, false);
    }
    return TCH_EINVAL;
}

/* The exact bytes win; a hand-written cassette may give only the decoded
 * JSON, which for the json scheme is the bytes themselves. */
static int use_decoded(ld *l, tch_cassette_scheme scheme, bool have_exact, tch_buf *exact,
                       tch_buf *dec, bool have_dec, const cnode *dec_at,
                       const char *what) {
    if (have_exact || !have_dec)
        return 0;
    if (scheme != TCH_CASSETTE_JSON)
        return fail_at(l, dec_at,
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
                        d->headers_at, "headers");
    if (!e)
        e = use_decoded(l, scheme, seen & body_bit, body, &d->body, d->have_body, d->body_at,
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
static int read_request(ld *l, cnode *n, tch_cassette_request *r, json_t **rules,
                        unsigned *plain) {
    req_ctx rc = {.r = r};
    unsigned seen;
    int e = walk_mapping(l, n, "request", req_keys, sizeof req_keys / sizeof req_keys[0],
                         req_field, &rc, &seen);
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

static int resp_field(ld *l, cnode *n, void *target, int which) {
    resp_ctx *rc = target;
    long code = 0;
    int e;
    switch (which) {
    case RS_CODE:
        e = read_long(l, n, "response code (0 ok, 1 application error)", 0, 1, &code);
        rc->r->code = (int)code;
        return e;
    case RS_HEADERS: return read_bytes(l, n, "response headers", &rc->r->headers);
    case RS_BODY: return read_bytes(l, n, "response body", &rc->r->body);
    case RS_HEADERS_DEC: return read_decoded(l, n, &rc->dec, true);
    case RS_BODY_DEC: return read_decoded(l, n, &rc->dec, false);
    case RS_TEMPLATE: return read_bool(l, n, "response template", &rc->template_response);
    }
    return TCH_EINVAL;
}

/* The walk only; the decoded fallback needs the request's scheme. */
static int read_response(ld *l, cnode *n, resp_ctx *rc) {
    static const key_spec keys[] = {{"code", RS_CODE},
                                    {"headers", RS_HEADERS},
                                    {"body", RS_BODY},
                                    {"headersDecoded", RS_HEADERS_DEC},
                                    {"bodyDecoded", RS_BODY_DEC},
                                    {"template", RS_TEMPLATE}};
    return walk_mapping(l, n, "response", keys, 6, resp_field, rc, &rc->seen);
}

typedef struct err_ctx {
    uint8_t *code;
    char **message;
    bool *local;
} err_ctx;

static int err_field(ld *l, cnode *n, void *target, int which) {
    err_ctx *ec = target;
    switch (which) {
    case 0: return read_errcode(l, n, "error code", ec->code);
    case 1: return read_cstr(l, n, "error message", ec->message);
    default: return read_bool(l, n, "error local", ec->local);
    }
}

/* `error: {code: busy, message: ...}`, and `local: true` for a timeout that
 * was the caller's own deadline; `fault` also takes a bare code name and no
 * `local` (local is NULL then). */
static int read_error_frame(ld *l, cnode *n, const char *what, uint8_t *code,
                            char **message, bool *local) {
    static const key_spec keys[] = {{"code", 0}, {"message", 1}, {"local", 2}};
    if (n->kind == N_SCALAR && !local)
        return read_errcode(l, n, what, code);
    err_ctx ec = {code, message, local};
    const cnode *m = n;
    unsigned seen;
    int rc = walk_mapping(l, n, what, keys, local ? 3 : 2, err_field, &ec, &seen);
    if (!rc && !(seen & 1u))
        return fail_at(l, m, "%s: missing 'code'", what);
    if (!rc && local && *local && *code != ERRCODE_TIMEOUT)
        return fail_at(l, m, "%s: 'local: true' is for code timeout only (the caller's own "
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
    json_t *rules;               /* the request's rule fields */
    unsigned plain;              /* the request's plain fields (req_keys bits) */
    const cnode *request_at;
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
static int read_fault(ld *l, cnode *n, tch_cassette_interaction *it) {
    static const char *const names[] = {"closeConnection", "noAnswer", "badChecksum"};
    if (n->kind == N_SCALAR)
        for (int i = 0; i < 3; i++)
            if (strcmp(text(n), names[i]) == 0) {
                tch_stub_info *st = stub_extras(l, it);
                if (!st)
                    return TCH_ENOMEM;
                st->fault = (tch_stub_fault)(TCH_STUB_FAULT_CLOSE + i);
                return 0;
            }
    it->has_fault = 1;
    return read_error_frame(l, n, "fault", &it->fault_code, &it->fault_message, NULL);
}

static int read_delay_dist(ld *l, cnode *n, tch_cassette_interaction *it) {
    json_t *j = NULL;
    int rc = read_json(l, n, "delayDistribution", &j);
    tch_stub_info *st = rc ? NULL : stub_extras(l, it);
    if (st) {
        tch_error e = {0};
        if (tch__cas_stub_delay_from_json(j, &st->delay, &e))
            rc = fail_at(l, n, "%s", e.msg);
    } else if (!rc) {
        rc = TCH_ENOMEM;
    }
    json_decref(j);
    return rc;
}

static int read_stub_str(ld *l, cnode *n, tch_cassette_interaction *it, const char *what,
                         int which) {
    tch_stub_info *st = stub_extras(l, it);
    if (!st)
        return TCH_ENOMEM;
    char **dst = which == IT_ID ? &st->id
                 : which == IT_SCENARIO ? &st->scenario
                 : which == IT_REQUIRED_STATE ? &st->required_state
                                              : &st->new_state;
    int rc = read_cstr(l, n, what, dst);
    if (!rc && !**dst)
        rc = fail_at(l, n, "%s: must not be empty", what);
    return rc;
}

static int it_field(ld *l, cnode *n, void *target, int which) {
    it_ctx *ic = target;
    tch_cassette_interaction *it = ic->it;
    tch_stub_info *st;
    long ms = 0;
    int rc;
    switch (which) {
    case IT_REQUEST:
        ic->request_at = n;
        return read_request(l, n, &it->request, &ic->rules, &ic->plain);
    case IT_RESPONSE: return read_response(l, n, &ic->resp);
    case IT_ERROR:
        it->is_error = 1;
        return read_error_frame(l, n, "error", &it->error.code, &it->error.message,
                                &it->error.local);
    case IT_DELAY:
        rc = read_long(l, n, "delay (milliseconds)", 0, MAX_DELAY_MS, &ms);
        it->has_delay = 1;
        it->delay_ms = (uint32_t)ms;
        return rc;
    case IT_FAULT: return read_fault(l, n, it);
    case IT_ID: return read_stub_str(l, n, it, "id", which);
    case IT_SCENARIO: return read_stub_str(l, n, it, "scenario", which);
    case IT_REQUIRED_STATE: return read_stub_str(l, n, it, "requiredState", which);
    case IT_NEW_STATE: return read_stub_str(l, n, it, "newState", which);
    case IT_PRIORITY:
        if (!(st = stub_extras(l, it)))
            return TCH_ENOMEM;
        rc = read_long(l, n, "priority", -1000000, 1000000, &ms);
        st->priority = (int)ms;
        st->has_priority = 1;
        return rc;
    case IT_REQUIRED:
        return (st = stub_extras(l, it)) ? read_bool(l, n, "required", &st->required)
                                         : TCH_ENOMEM;
    case IT_DELAY_DIST: return read_delay_dist(l, n, it);
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
        return fail_at(l, ic->request_at, "request %s", e.msg);
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

/* The keys in document order, then the checks of the whole interaction. */
static int read_interaction(ld *l, cnode *n, tch_cassette_interaction *it) {
    static const key_spec keys[] = {
        {"request", IT_REQUEST},      {"response", IT_RESPONSE},
        {"error", IT_ERROR},          {"delay", IT_DELAY},
        {"fault", IT_FAULT},          {"id", IT_ID},
        {"priority", IT_PRIORITY},    {"required", IT_REQUIRED},
        {"scenario", IT_SCENARIO},    {"requiredState", IT_REQUIRED_STATE},
        {"newState", IT_NEW_STATE},   {"delayDistribution", IT_DELAY_DIST}};
    it_ctx ic = {.it = it, .resp = {.r = &it->response}};
    unsigned seen;
    const cnode *m = n;
    it->line = m->line + 1;
    int rc = walk_mapping(l, n, "interaction", keys, sizeof keys / sizeof keys[0], it_field, &ic,
                          &seen);
    if (!rc && !(seen & 1u))
        rc = fail_at(l, m, "interaction: missing 'request'");
    if (!rc && !!(seen & 2u) == !!(seen & 4u))
        rc = fail_at(l, m, "interaction: expected exactly one of 'response' or 'error'");
    if (!rc && (seen & 2u))
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
        rc = fail_at(l, m, "%s", te.msg);
    json_decref(ic.rules);
    decoded_free(&ic.resp.dec);
    return rc;
}

static int interaction_item(ld *l, cnode *n) {
    cas_entry *e = NULL;
    if (tch__cas_append_entry(l->c, &e))
        return nomem(l);
    e->from_file = true;
    return read_interaction(l, n, &e->it);
}

/* `interactions`, the value after top's current key: a list read one
 * interaction at a time from the parser, or a composed node. *items is
 * left where reading stopped. */
static int read_interactions(ld *l, coll *top, coll *items) {
    cnode *v;
    *items = (coll){0};
    int rc = child_begin(l, top, &v);
    if (rc)
        return rc;
    if (!v && l->ev.type == YAML_SEQUENCE_START_EVENT && !l->ev.data.sequence_start.anchor) {
        items->stream = true;
        if ((rc = depth_in(l)))
            return rc;
    } else {
        if (!v && ((rc = compose(l, &v)) || (rc = visit(l, v, &v))))
            return rc;
        if (is_null(v))
            return 0;
        if (v->kind != N_SEQ)
            return fail_at(l, v, "interactions: expected a list");
        items->tree = v;
    }
    cnode *it;
    while (!(rc = child(l, items, &it)) && !(rc = interaction_item(l, it)))
        piece_done(l, items);
    return rc == 1 ? 0 : rc;
}

static int read_version(ld *l, const cnode *v) {
    if (v->kind == N_SCALAR && strcmp(text(v), "1") == 0)
        return 0;
    return fail_at(l, v, "unsupported cassette version '%.255s' (only version 1 is known)",
                   v->kind == N_SCALAR ? text(v) : "?");
}

/* The top-level mapping, from the parser (a key or value at a time) or
 * composed; root gives its position. A content error in `interactions`
 * written before `version` (tchannel-python sorts them so) is held and
 * reported after the rest of the mapping is read and checked: a missing or
 * unsupported version, for one, comes first. */
static int read_top(ld *l, coll *top, const cnode *root) {
    static const key_spec keys[] = {{"version", 0}, {"interactions", 1}};
    unsigned seen = 0;
    tch_error held = {0};
    int rc;
    for (;;) {
        cnode *k, *v;
        coll items = {0};
        size_t i;
        if ((rc = child(l, top, &k)) == 1)
            break;
        if (rc || (rc = key_of(l, k, "cassette", keys, 2, &seen, &i)))
            return rc;
        if (i == 0 && !(rc = child(l, top, &v)))
            rc = read_version(l, v);
        else if (i == 1)
            rc = read_interactions(l, top, &items);
        if (rc && i == 1 && !(seen & 1u) && !l->read_failed && !fatal(l, rc)) {
            held = *l->err;
            rc = skip_rest(l, &items);
        }
        if (rc)
            return rc;
        piece_done(l, top);
    }
    /* tchannel-python: a mapping without interactions is an empty cassette */
    if (seen && !(seen & 1u))
        return fail_at(l, root, "cassette: missing 'version' (expected version: 1)");
    if (held.code)
        *l->err = held;
    return held.code;
}

/* The document's root: an unanchored mapping is read from the parser,
 * anything else composed whole. */
static int read_root(ld *l) {
    cnode at = {.line = u32(l->ev.start_mark.line), .col = u32(l->ev.start_mark.column)};
    coll top = {.stream = true};
    if (l->ev.type == YAML_MAPPING_START_EVENT && !l->ev.data.mapping_start.anchor) {
        int rc = depth_in(l);
        return rc ? rc : read_top(l, &top, &at);
    }
    cnode *root;
    int rc = compose(l, &root);
    if (rc || (rc = visit(l, root, &root)))
        return rc;
    if (is_null(root)) /* a file of only comments or `~` is empty, like an empty file */
        return 0;
    if (root->kind != N_MAP)
        return fail_at(l, root, "cassette: expected a mapping");
    top = (coll){.tree = root};
    return read_top(l, &top, root);
}

/* One document (none: an empty cassette); a second is an error where it
 * starts, whatever it holds. */
static int load(ld *l) {
    int rc;
    if ((rc = pull(l)) || (rc = pull(l)) || l->ev.type == YAML_STREAM_END_EVENT)
        return rc; /* stream start, then document start or stream end */
    if ((rc = pull(l)) || (rc = read_root(l)) || (rc = pull(l)) || (rc = pull(l)))
        return rc; /* the root, document end, then stream end or a document */
    if (l->ev.type == YAML_STREAM_END_EVENT)
        return 0;
    if ((rc = pull(l)))
        return rc;
    return fail_read(l, TCH_EPARSE, "expected one YAML document");
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

static int ld_init(ld *l, tch_cassette *c, size_t len, tch_error *err) {
    memset(l, 0, sizeof *l);
    l->c = c;
    l->err = err;
    l->budget = BUDGET_MIN + (len > SIZE_MAX / BUDGET_RATIO / 2 ? SIZE_MAX / 2 : len * BUDGET_RATIO);
    if (!yaml_parser_initialize(&l->parser))
        return tch_error_set(err, TCH_ENOMEM, "%s: yaml parser", c->name);
    return 0;
}

static int load_with(ld *l) {
    int rc = load(l);
    if (l->have_ev)
        yaml_event_delete(&l->ev);
    yaml_parser_delete(&l->parser);
    for (size_t i = 0; i < l->nstack; i++) /* left by an error */
        node_free(&l->stack[i]);
    chunks_clear(l->c->alloc, &l->piece, false);
    chunks_clear(l->c->alloc, &l->kept, false);
    json_decref(l->anchors);
    for (size_t i = 0; i < l->ntags; i++)
        free(l->tags[i]); /* libyaml's */
    ptags_clear(l);
    tch__free(l->c->alloc, l->ptags);
    tch__free(l->c->alloc, l->stack);
    tch__free(l->c->alloc, l->opens);
    tch__free(l->c->alloc, l->anodes);
    tch__free(l->c->alloc, l->tags);
    return rc;
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
