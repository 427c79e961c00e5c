/* The cassette object: options and record modes (tchannel-python's
 * RecordMode), opening from a file or memory, the lookup entry point,
 * recording slots, and play accounting. YAML lives in cassette_load.c and
 * cassette_save.c, matching in cassette_match.c. */
#include "cassette_internal.h"
#include "cassette_journal.h"

#include "array.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_CASSETTE_BYTES ((size_t)1 << 30) /* a file bigger than 1 GiB is a mistake */

void tch_cassette_options_init(tch_cassette_options *o) {
    memset(o, 0, sizeof *o);
    o->mode = TCH_CASSETTE_ONCE;
}

static const char *const mode_names[] = {"once", "new_episodes", "none", "all"};

const char *tch_cassette_mode_name(tch_cassette_mode m) {
    return (unsigned)m < 4 ? mode_names[m] : "?";
}

int tch_cassette_mode_parse(const char *s, tch_cassette_mode *out, tch_error *err) {
    for (int i = 0; i < 4; i++)
        if (s && strcasecmp(s, mode_names[i]) == 0) {
            *out = (tch_cassette_mode)i;
            return 0;
        }
    return tch_error_set(err, TCH_EINVAL,
                         "invalid record mode '%.64s': expected once, new_episodes, none or all",
                         s ? s : "(null)");
}

static int matcher_mask(const tch_cassette_options *o, unsigned *mask, tch_error *err) {
    if (!o->matchers) {
        *mask = DEFAULT_MATCHER_MASK;
        return 0;
    }
    *mask = 0;
    for (size_t i = 0; i < o->n_matchers; i++) {
        int f = 0;
        while (f < F_COUNT && strcmp(o->matchers[i], tch__cas_field_names[f]) != 0)
            f++;
        if (f == F_COUNT)
            return tch_error_set(err, TCH_EINVAL,
                                 "'%.64s' is not a known matcher (serviceName, endpoint, headers, "
                                 "body, argScheme, hostPort, transportHeaders)",
                                 o->matchers[i]);
        *mask |= 1u << f;
    }
    return 0;
}

static int cassette_new(const char *path, const char *name, const tch_cassette_options *opts,
                        tch_cassette **out, tch_error *err) {
    tch_cassette_options defaults;
    if (!opts) {
        tch_cassette_options_init(&defaults);
        opts = &defaults;
    }
    const tch_allocator *a = opts->allocator;
    if (a && (!a->malloc_cb || !a->realloc_cb || !a->free_cb))
        return tch_error_set(err, TCH_EINVAL, "cassette %s: the allocator lacks malloc_cb, "
                             "realloc_cb or free_cb", name);
    tch_cassette *c = tch__calloc(a, 1, sizeof *c);
    if (!c)
        return tch_error_set(err, TCH_ENOMEM, "cassette %s", name);
    c->opts = *opts;
    c->alloc = tch__alloc_keep(&c->alloc_copy, a); /* the caller's may go */
    c->opts.allocator = c->alloc;
    c->opts.matchers = NULL; /* the caller's array is not ours to keep */
    c->opts.n_matchers = 0;
    c->mode = opts->mode;
    int rc = matcher_mask(opts, &c->matcher_mask, err);
    if (!rc && (unsigned)c->mode > TCH_CASSETTE_ALL)
        rc = tch_error_set(err, TCH_EINVAL, "cassette %s: invalid mode %d", name, (int)c->mode);
    if (!rc && !opts->no_env_override) {
        const char *env = getenv(TCH_CASSETTE_ENV_MODE);
        if (env && (rc = tch_cassette_mode_parse(env, &c->mode, err)))
            tch_error_wrap(err, "%s", TCH_CASSETTE_ENV_MODE);
    }
    if (!rc && ((path && !(c->path = tch__strdup(c->alloc, path))) ||
                !(c->name = tch__strdup(c->alloc, name))))
        rc = tch_error_set(err, TCH_ENOMEM, "cassette %s", name);
    if (rc) {
        tch_cassette_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

static void buf_fit(tch_buf *b) {
    if (b->ptr && b->cap > b->len) {
        uint8_t *p = tch__realloc(b->alloc, b->ptr, b->len ? b->len : 1);
        if (p) /* a failed shrink keeps the larger buffer */
            b->ptr = p, b->cap = b->len ? b->len : 1;
    }
}

/* A loaded interaction's buffers trimmed to their bytes: they grew by
 * doubling while being read, which would hold up to twice each body. The
 * space given back is what the next interaction is read into. */
static void entry_fit(cas_entry *e) {
    tch_cassette_request *r = &e->it.request;
    tch_buf *bufs[] = {&r->service, &r->endpoint, &r->headers, &r->body, &r->host_port,
                       &e->it.response.headers, &e->it.response.body};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        buf_fit(bufs[i]);
    for (size_t i = 0; i < r->n_known_peers; i++)
        buf_fit(&r->known_peers[i]);
    for (size_t i = 0; i < r->n_transport_headers; i++) {
        buf_fit(&r->transport_headers[i].key);
        buf_fit(&r->transport_headers[i].value);
    }
}

int tch__cas_append_entry(tch_cassette *c, cas_entry **out) {
    /* while a file is read (nothing indexed yet, nobody holds its bytes) */
    if (c->n > 0 && c->nindexed == 0 && c->items[c->n - 1]->from_file)
        entry_fit(c->items[c->n - 1]);
    if (c->n == c->cap) {
        cas_entry **items = tch__array_grow_with(c->alloc, c->items, &c->cap, sizeof *items, 16);
        if (!items)
            return TCH_ENOMEM;
        c->items = items;
    }
    cas_entry *e = tch__calloc(c->alloc, 1, sizeof *e);
    if (!e)
        return TCH_ENOMEM;
    tch__cas_interaction_bufs_on(c->alloc, &e->it);
    e->next = NO_ENTRY;
    c->items[c->n++] = e;
    *out = e;
    return 0;
}

static int index_all(tch_cassette *c, tch_error *err) {
    if (tch__cas_index_reserve(c, c->n))
        return tch_error_set(err, TCH_ENOMEM, "cassette %s: indexing", c->name);
    for (size_t i = 0; i < c->n; i++) {
        int rc = tch__cas_index_entry(c, i);
        if (rc)
            return tch_error_set(err, rc, "cassette %s: indexing", c->name);
    }
    return 0;
}

static int load_into(tch_cassette *c, const char *data, size_t len, tch_error *err) {
    int rc = tch__cas_load_buffer(c, data, len, err);
    return rc ? rc : index_all(c, err);
}

/* Opens path for reading only if it is a regular file: a FIFO or a device
 * would block the caller's event loop or stream forever. */
static FILE *open_regular(const char *path, tch_error *err, int *rc) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0) {
        *rc = errno == ENOENT ? TCH_ENOTFOUND
                              : tch_error_set(err, TCH_EIO, "cassette %s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        *rc = tch_error_set(err, TCH_EINVAL, "cassette %s: not a regular file", path);
        return NULL;
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        *rc = tch_error_set(err, TCH_ENOMEM, "cassette %s: out of memory", path);
    }
    return f;
}

/* What a file was when read: a writer's fold replaces it (a new inode). */
typedef struct file_id {
    bool exists;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} file_id;

static file_id id_of(const struct stat *st) {
    return (file_id){true, st->st_dev, st->st_ino, st->st_size, st->st_mtim};
}

static bool same_id(const file_id *a, const file_id *b) {
    return a->exists == b->exists &&
           (!a->exists || (a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
                           a->mtime.tv_sec == b->mtime.tv_sec &&
                           a->mtime.tv_nsec == b->mtime.tv_nsec));
}

static file_id id_of_path(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? id_of(&st) : (file_id){0};
}

/* The file parsed as it is read (never held whole), hashed on the way for
 * the journal. *id: the file when opened; *whole (on success): every byte
 * it had then was read and no more (an in-place write changes the size). */
static int read_file(tch_cassette *c, file_id *id, uint64_t *hash, bool *whole,
                     tch_error *err) {
    int rc = 0;
    FILE *f = open_regular(c->path, err, &rc);
    struct stat st;
    *id = (file_id){0};
    if (!f)
        return rc;
    if (fstat(fileno(f), &st) != 0) {
        fclose(f);
        return tch_error_set(err, TCH_EIO, "cassette %s: %s", c->path, strerror(errno));
    }
    *id = id_of(&st);
    cas_hasher hs;
    tch__cas_hash_init(&hs, (uint64_t)st.st_size);
    cas_stream in = {.f = f, .size = (size_t)st.st_size, .max = MAX_CASSETTE_BYTES,
                     .tap = tch__cas_hash_update, .tap_ud = &hs};
    if (in.size > in.max)
        rc = tch_error_set(err, TCH_ETOOBIG, "cassette %s: larger than 1 GiB", c->path);
    else
        rc = tch__cas_load_stream(c, &in, err);
    fclose(f);
    *hash = tch__cas_hash_final(&hs);
    *whole = rc != 0 || in.got == in.size; /* an error stops the read early */
    return rc;
}

/* One read of the file and its journal. *moved: a writer replaced the file
 * meanwhile (a fold), so the journal read may not be the one that went
 * with it. */
static int open_once(const char *path, const tch_cassette_options *opts, tch_cassette **out,
                     bool *moved, tch_error *err) {
    tch_cassette *c = NULL;
    file_id before;
    uint64_t hash = 0;
    bool whole = true;
    int rc = cassette_new(path, path, opts, &c, err);
    if (rc)
        return rc;
    rc = read_file(c, &before, &hash, &whole, err);
    bool exists = rc != TCH_ENOTFOUND; /* a new cassette: ONCE may record */
    if (!exists)
        rc = 0;
    c->existed = exists;
    if (!rc) /* recordings committed to PATH.journal are part of the cassette */
        rc = tch__cas_journal_merge(c, hash, exists, err);
    if (!rc && c->n > 0)
        entry_fit(c->items[c->n - 1]);
    if (!rc)
        rc = index_all(c, err);
    file_id after = id_of_path(path);
    *moved = !whole || !same_id(&before, &after);
    if (rc) {
        tch_cassette_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

int tch_cassette_open(const char *path, const tch_cassette_options *opts, tch_cassette **out,
                      tch_error *err) {
    if (!path || !out)
        return tch_error_set(err, TCH_EINVAL, "tch_cassette_open: path and out are required");
    *out = NULL;
    for (int attempt = 1;; attempt++) {
        bool moved = false;
        tch_cassette *c = NULL;
        int rc = open_once(path, opts, &c, &moved, err);
        if (!moved || attempt == 3) { /* a file rewritten that often is read as it was */
            if (!rc)
                *out = c;
            return rc;
        }
        tch_cassette_free(c); /* read again: file and journal of one moment */
    }
}

int tch_cassette_open_memory(const char *name, const void *data, size_t len,
                             const tch_cassette_options *opts, tch_cassette **out,
                             tch_error *err) {
    tch_cassette *c = NULL;
    if (!out || (!data && len))
        return tch_error_set(err, TCH_EINVAL, "tch_cassette_open_memory: bad arguments");
    int rc = cassette_new(NULL, name ? name : "<memory>", opts, &c, err);
    if (rc)
        return rc;
    c->existed = true;
    rc = load_into(c, data, len, err);
    if (rc) {
        tch_cassette_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

int tch_cassette_reload(const tch_cassette *old, tch_cassette **out, tch_error *err) {
    return tch_cassette_reload_as(old, old->mode, out, err); /* the mode it settled on */
}

int tch_cassette_reload_as(const tch_cassette *old, tch_cassette_mode mode, tch_cassette **out,
                           tch_error *err) {
    if (!old->path)
        return tch_error_set(err, TCH_EINVAL, "cassette %s: loaded from memory, cannot reload",
                             old->name);
    tch_cassette_options o = old->opts;
    const char *names[F_COUNT];
    size_t n = 0;
    for (int f = 0; f < F_COUNT; f++)
        if (old->matcher_mask & (1u << f))
            names[n++] = tch__cas_field_names[f];
    o.matchers = names;
    o.n_matchers = n;
    o.mode = mode;
    o.no_env_override = 1;
    tch_cassette *c = NULL;
    int rc = tch_cassette_open(old->path, &o, &c, err);
    if (rc)
        return rc;
    /* A run in mode ONCE that began without the file goes on recording
     * after a reload, though the file now exists (it holds this run's calls). */
    if (!old->existed) {
        c->existed = false;
        for (size_t i = 0; i < c->n; i++)
            c->items[i]->from_file = false; /* not there when the run began */
    }
    /* Once a save in mode ALL wrote it, the file holds this run's calls
     * (later saves in other modes only add to them): reloading it, in any
     * mode, must not turn them into old ones that ALL drops. */
    c->only_this_run = old->only_this_run;
    if (mode == TCH_CASSETTE_ALL && c->only_this_run)
        for (size_t i = 0; i < c->n; i++)
            c->items[i]->from_file = false;
    for (size_t i = 0; !rc && i < old->ncustoms; i++)
        rc = tch_cassette_add_matcher(c, old->customs[i].name, old->customs[i].fn,
                                      old->customs[i].ud, err);
    if (rc) {
        tch_cassette_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void tch_cassette_free(tch_cassette *c) {
    if (!c)
        return;
    tch__cas_stubs_free(c);
    for (size_t i = 0; i < c->n; i++) {
        tch__cas_interaction_free(c->alloc, &c->items[i]->it);
        tch__free(c->alloc, c->items[i]);
    }
    for (size_t i = 0; i < c->ncustoms; i++)
        tch__free(c->alloc, c->customs[i].name);
    tch__free(c->alloc, c->customs);
    tch__free(c->alloc, c->items);
    tch__free(c->alloc, c->buckets);
    tch__free(c->alloc, c->path);
    tch__free(c->alloc, c->name);
    tch__free_self(c->alloc, c);
}

int tch_cassette_add_matcher(tch_cassette *c, const char *name, tch_cassette_match_cb fn,
                             void *ud, tch_error *err) {
    if (!fn)
        return tch_error_set(err, TCH_EINVAL, "cassette %s: matcher callback is NULL", c->name);
    cas_custom *m = tch__realloc(c->alloc, c->customs, (c->ncustoms + 1) * sizeof *m);
    if (!m)
        return tch_error_set(err, TCH_ENOMEM, "cassette %s: matcher", c->name);
    c->customs = m;
    char *nm = tch__strdup(c->alloc, name ? name : "custom");
    if (!nm)
        return tch_error_set(err, TCH_ENOMEM, "cassette %s: matcher", c->name);
    c->customs[c->ncustoms++] = (cas_custom){nm, fn, ud};
    return 0;
}

/* ---- state ------------------------------------------------------------- */

tch_cassette_mode tch_cassette_get_mode(const tch_cassette *c) { return c->mode; }
const char *tch_cassette_name(const tch_cassette *c) { return c->name; }
bool tch_cassette_existed(const tch_cassette *c) { return c->existed; }
size_t tch_cassette_count(const tch_cassette *c) { return c->n; }
size_t tch_cassette_play_count(const tch_cassette *c) { return c->total_plays; }
bool tch_cassette_dirty(const tch_cassette *c) { return c->dirty; }

/* RecordMode.can_record: ONCE only when the file did not exist. */
bool tch_cassette_can_record(const tch_cassette *c) {
    switch (c->mode) {
    case TCH_CASSETTE_ONCE: return !c->existed;
    case TCH_CASSETTE_NEW_EPISODES:
    case TCH_CASSETTE_ALL: return 1;
    case TCH_CASSETTE_NONE: return 0;
    }
    return 0;
}

const tch_cassette_interaction *tch_cassette_get(const tch_cassette *c, size_t index) {
    if (index >= c->n)
        return NULL;
    const cas_entry *e = c->items[index];
    return e->state == ST_PENDING || e->state == ST_ABORTED ? NULL : &e->it;
}

bool tch_cassette_is_pending(const tch_cassette *c, size_t index) {
    return index < c->n && c->items[index]->state == ST_PENDING;
}

unsigned tch_cassette_play_count_of(const tch_cassette *c, size_t index) {
    return index < c->n ? c->items[index]->plays : 0;
}

/* Only what the file held counts: what this run recorded (replayable once
 * saved) was never there to be played. */
static bool unused(const tch_cassette *c, const cas_entry *e) {
    return c->mode != TCH_CASSETTE_ALL && e->state == ST_LOADED && e->from_file && e->plays == 0;
}

bool tch_cassette_all_played(const tch_cassette *c) {
    for (size_t i = 0; i < c->n; i++)
        if (unused(c, c->items[i]))
            return 0;
    return 1;
}

int tch_cassette_check_unused(const tch_cassette *c, tch_error *err) {
    char list[360] = "";
    size_t count = 0, o = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (!unused(c, c->items[i]))
            continue;
        if (count++ < 3 && o < sizeof list) {
            char desc[200];
            tch__cas_describe(&c->items[i]->it.request, desc, sizeof desc);
            int k = snprintf(list + o, sizeof list - o, "%s#%zu (line %zu) %s", count > 1 ? "; " : "",
                             i, c->items[i]->it.line, desc);
            o += k > 0 ? (size_t)k : 0;
        }
    }
    if (count == 0)
        return 0;
    return tch_error_set(err, TCH_ESTATE, "cassette %s: %zu interaction%s left unused: %s%s",
                         c->name, count, count == 1 ? "" : "s", list, count > 3 ? "; ..." : "");
}

int tch_cassette_finish(tch_cassette *c, tch_error *err) {
    int rc = tch_cassette_save(c, err);
    if (!rc && c->opts.strict)
        rc = tch_cassette_check_unused(c, err);
    return rc;
}

/* ---- lookup and recording --------------------------------------------- */

static int redact(tch_cassette *c, tch_cassette_redact_phase phase, tch_cassette_request *req,
                  tch_cassette_response *resp, tch_error *err) {
    if (!c->opts.redact)
        return 0;
    int rc = c->opts.redact(phase, req, resp, c->opts.redact_ud);
    return rc ? tch_error_set(err, rc, "cassette %s: redaction hook failed (%s)", c->name,
                              tch_strerror(rc))
              : 0;
}

int tch_cassette_lookup(tch_cassette *c, const tch_cassette_call *call, tch_cassette_decision *out,
                        tch_error *err) {
    tch_cassette_request req;
    memset(out, 0, sizeof *out);
    out->action = TCH_CASSETTE_ACT_ERROR; /* until decided: 0 would read as REPLAY */
    if (!c || !call)
        return tch_error_set(err, TCH_EINVAL, "tch_cassette_lookup: NULL argument");
    if (tch__cas_request_from_call(c->alloc, call, &req))
        return tch_error_set(err, TCH_ENOMEM, "cassette %s: copying request", c->name);
    int rc = redact(c, TCH_CASSETTE_REDACT_MATCH, &req, NULL, err);
    if (!rc)
        rc = tch__cas_lookup(c, &req, out, err);
    if (rc && out->action != TCH_CASSETTE_ACT_ERROR)
        out->action = TCH_CASSETTE_ACT_ERROR;
    tch__cas_request_free(c->alloc, &req);
    return rc;
}

int tch_cassette_record_begin(tch_cassette *c, const tch_cassette_call *call,
                              tch_cassette_slot *slot, tch_error *err) {
    if (!tch_cassette_can_record(c))
        return tch_error_set(err, TCH_ESTATE,
                             "cassette %s: record mode %s%s prevents recording new interactions",
                             c->name, tch_cassette_mode_name(c->mode),
                             c->mode == TCH_CASSETTE_ONCE ? " (the file existed)" : "");
    cas_entry *e = NULL;
    if (tch__cas_append_entry(c, &e))
        return tch_error_set(err, TCH_ENOMEM, "cassette %s: recording", c->name);
    if (tch__cas_request_from_call(c->alloc, call, &e->it.request)) {
        e->state = ST_ABORTED;
        return tch_error_set(err, TCH_ENOMEM, "cassette %s: recording", c->name);
    }
    e->state = ST_PENDING;
    *slot = c->n - 1;
    return 0;
}

static int pending_slot(tch_cassette *c, tch_cassette_slot slot, cas_entry **out,
                        tch_error *err) {
    if (slot >= c->n || c->items[slot]->state != ST_PENDING)
        return tch_error_set(err, TCH_ESTATE, "cassette %s: slot %zu is not pending", c->name,
                             slot);
    *out = c->items[slot];
    return 0;
}

int tch_cassette_record_finish(tch_cassette *c, tch_cassette_slot slot,
                               const tch_cassette_reply *reply, tch_error *err) {
    cas_entry *e = NULL;
    int rc = pending_slot(c, slot, &e, err);
    if (rc)
        return rc;
    if (reply->code != 0 && reply->code != 1)
        return tch_error_set(err, TCH_EINVAL, "cassette %s: response code %d (expected 0 or 1)",
                             c->name, reply->code);
    tch_cassette_response *r = &e->it.response;
    r->code = reply->code;
    if (tch__cas_buf_set(&r->headers, reply->headers) || tch__cas_buf_set(&r->body, reply->body))
        return tch_error_set(err, TCH_ENOMEM, "cassette %s: recording", c->name);
    if ((rc = redact(c, TCH_CASSETTE_REDACT_RECORD, &e->it.request, r, err)))
        return rc;
    e->state = ST_DONE;
    c->dirty = true;
    return 0;
}

static int finish_error(tch_cassette *c, tch_cassette_slot slot, uint8_t code,
                        const char *message, int local, tch_error *err) {
    cas_entry *e = NULL;
    int rc = pending_slot(c, slot, &e, err);
    if (rc)
        return rc;
    if (!tch_cassette_errcode_name(code))
        return tch_error_set(err, TCH_EINVAL, "cassette %s: unknown error frame code 0x%02x",
                             c->name, code);
    tch__free(c->alloc, e->it.error.message);
    if (!(e->it.error.message = tch__strdup(c->alloc, message ? message : "")))
        return tch_error_set(err, TCH_ENOMEM, "cassette %s: recording", c->name);
    e->it.is_error = 1;
    e->it.error.code = code;
    e->it.error.local = local;
    if ((rc = redact(c, TCH_CASSETTE_REDACT_RECORD, &e->it.request, NULL, err)))
        return rc;
    e->state = ST_DONE;
    c->dirty = true;
    return 0;
}

int tch_cassette_record_finish_error(tch_cassette *c, tch_cassette_slot slot, uint8_t code,
                                     const char *message, tch_error *err) {
    return finish_error(c, slot, code, message, 0, err);
}

int tch_cassette_record_finish_timeout(tch_cassette *c, tch_cassette_slot slot,
                                       const char *message, tch_error *err) {
    return finish_error(c, slot, ERRCODE_TIMEOUT, message, 1, err);
}

int tch_cassette_record_drop(tch_cassette *c, tch_cassette_slot slot, tch_error *err) {
    if (slot >= c->n || c->items[slot]->state != ST_DONE)
        return tch_error_set(err, TCH_ESTATE, "cassette %s: slot %zu is not an unsaved recording",
                             c->name, slot);
    c->items[slot]->state = ST_ABORTED;
    c->dirty = false;
    for (size_t i = 0; i < c->n && !c->dirty; i++)
        c->dirty = c->items[i]->state == ST_DONE;
    return 0;
}

int tch_cassette_record_abort(tch_cassette *c, tch_cassette_slot slot, tch_error *err) {
    cas_entry *e = NULL;
    int rc = pending_slot(c, slot, &e, err);
    if (rc)
        return rc;
    e->state = ST_ABORTED;
    return 0;
}
