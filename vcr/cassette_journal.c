/* The journal beside a cassette: PATH.journal, append-only, so that making
 * a recording durable costs one write and one fdatasync however large the
 * cassette is (docs/cassettes.md, "The journal").
 *
 * Layout: the line "tchannel-vcr journal 1", then records, each
 *
 *     TYPE LEN HASH\n PAYLOAD \n
 *
 * TYPE is one letter, LEN the payload's length in decimal, HASH 16 hex
 * digits of the payload's hash. The first record is B (base): which file
 * content the journal adds to (`base=HASH` or `base=absent`) and whether
 * the recordings replace what that file held (`replace=1`: a run in mode
 * ALL). R records hold recordings: each a whole cassette document. F
 * (folded) records the hash of a cassette about to replace the file: if
 * the file has that content, the journal is already in it (a crash came
 * between the rename and the journal's removal) and must not be applied
 * twice. A record that is incomplete or fails its hash ends the journal:
 * a crash tore it, and nothing after it was ever synced. */
#include "cassette_journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAGIC "tchannel-vcr journal 1\n"
#define MAX_HEADER 64                      /* "R 18446744073709551615 0123456789abcdef\n" */
#define MAX_JOURNAL ((size_t)1 << 31)       /* a journal is folded long before this */
#define STALE_TEMP_AGE_S 3600               /* no save takes an hour */

struct tch_cassette_journal {
    tch_cassette *c;
    /* the cassette's allocator, copied: a journal may be freed after it */
    const tch_allocator *alloc; /* NULL or &alloc_copy */
    tch_allocator alloc_copy;
    char *path; /* PATH.journal */
    int fd;     /* -1 until the first commit creates the file; while open, it
                   holds the file's exclusive lock: nobody else writes,
                   folds or removes the journal meanwhile */
    size_t good;    /* bytes up to the end of the last synced record */
    size_t records; /* recordings committed and not folded */
    size_t settled; /* entries before this one are neither pending nor unsaved: a
                       commit looks at the rest only, so its cost does not grow
                       with the cassette */
    bool dir_synced; /* the journal's name is durable in its folder */
    bool base_exists;   /* the file content c holds (besides its recordings): */
    uint64_t base;      /* its hash; a journal or fold starts only on it */
};

/* ---- hashing and framing ------------------------------------------------ */

/* 64-bit hash, eight bytes at a step (a 200 MB file hashes in a blink),
 * fed in pieces so that a file is hashed without holding it whole. */
void tch__cas_hash_init(cas_hasher *hs, uint64_t total_len) {
    hs->h = 0x9e3779b97f4a7c15ULL ^ total_len;
    hs->ncarry = 0;
}

static void hash_word(cas_hasher *hs, const uint8_t *w8) {
    uint64_t w;
    memcpy(&w, w8, 8);
    hs->h = (hs->h ^ w) * 0xff51afd7ed558ccdULL;
    hs->h ^= hs->h >> 29;
}

void tch__cas_hash_update(void *ud, const void *p, size_t n) {
    cas_hasher *hs = ud;
    const uint8_t *b = p;
    while (n > 0 && hs->ncarry > 0) { /* finish a word a previous piece began */
        hs->carry[hs->ncarry++] = *b++, n--;
        if (hs->ncarry == 8)
            hash_word(hs, hs->carry), hs->ncarry = 0;
    }
    for (; n >= 8; b += 8, n -= 8)
        hash_word(hs, b);
    memcpy(hs->carry, b, n);
    hs->ncarry = n;
}

uint64_t tch__cas_hash_final(const cas_hasher *hs) {
    uint64_t h = hs->h;
    for (size_t i = 0; i < hs->ncarry; i++)
        h = (h ^ hs->carry[i]) * 0x100000001b3ULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static uint64_t content_hash(const void *p, size_t n) {
    cas_hasher hs;
    tch__cas_hash_init(&hs, n);
    tch__cas_hash_update(&hs, p, n);
    return tch__cas_hash_final(&hs);
}

/* The hash of a file's content, read in pieces; TCH_ENOTFOUND when there
 * is no file. */
static int hash_file(const char *path, uint64_t *out, tch_error *err) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return errno == ENOENT ? TCH_ENOTFOUND
                               : tch_error_set(err, TCH_EIO, "%s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return tch_error_set(err, TCH_EINVAL, "%s: not a regular file", path);
    }
    cas_hasher hs;
    uint8_t buf[65536];
    size_t total = 0;
    int rc = 0;
    tch__cas_hash_init(&hs, (uint64_t)st.st_size);
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = tch_error_set(err, TCH_EIO, "%s: %s", path, strerror(errno));
        if (n <= 0)
            break;
        tch__cas_hash_update(&hs, buf, (size_t)n);
        total += (size_t)n;
    }
    close(fd);
    if (!rc && total != (size_t)st.st_size)
        rc = tch_error_set(err, TCH_EIO, "%s: changed while being read", path);
    *out = tch__cas_hash_final(&hs);
    return rc;
}

static int frame(tch_buf *out, char type, tch_slice payload) {
    char head[MAX_HEADER];
    int n = snprintf(head, sizeof head, "%c %zu %016" PRIx64 "\n", type, payload.len,
                     content_hash(payload.ptr, payload.len));
    if (tch_buf_append(out, head, (size_t)n) || tch_buf_append_slice(out, payload) ||
        tch_buf_append(out, "\n", 1))
        return TCH_ENOMEM;
    return 0;
}

typedef struct jrec {
    char type;
    size_t off; /* of the record */
    tch_slice payload;
} jrec;

/* One whole record at off, or 0 when there is none (end, or torn). */
static int next_record(const char *data, size_t len, size_t off, jrec *r, size_t *end) {
    size_t max = len - off < MAX_HEADER ? len - off : MAX_HEADER;
    const char *nl = memchr(data + off, '\n', max);
    if (!nl)
        return 0;
    char head[MAX_HEADER + 1];
    memcpy(head, data + off, (size_t)(nl - (data + off)));
    head[nl - (data + off)] = '\0';
    char type;
    size_t plen;
    uint64_t hash;
    char extra;
    if (sscanf(head, "%c %zu %16" SCNx64 "%c", &type, &plen, &hash, &extra) != 3)
        return 0;
    size_t start = (size_t)(nl - data) + 1;
    if (plen > len - start || len - start - plen < 1 || data[start + plen] != '\n')
        return 0;
    if (content_hash(data + start, plen) != hash)
        return 0;
    r->type = type;
    r->off = off;
    r->payload = tch_slice_of(data + start, plen);
    *end = start + plen + 1;
    return 1;
}

/* ---- reading a journal -------------------------------------------------- */

typedef struct jscan {
    bool have_base, base_absent, replace, folded;
    uint64_t base, folded_hash; /* folded_hash: the last F record's */
    size_t records;             /* R records */
    size_t good, torn;          /* end of the last whole record; bytes after it */
} jscan;

static int bad_journal(const char *path, size_t off, const char *what, tch_error *err) {
    return tch_error_set(err, TCH_EPARSE, "%s: byte %zu: %s", path, off, what);
}

static int read_base(const char *path, const jrec *r, jscan *js, tch_error *err) {
    char text[80];
    int replace = 0;
    uint64_t base = 0;
    if (r->type != 'B' || r->payload.len >= sizeof text)
        return bad_journal(path, r->off, "expected the base record first", err);
    memcpy(text, r->payload.ptr, r->payload.len);
    text[r->payload.len] = '\0';
    if (sscanf(text, "base=absent replace=%d", &replace) == 1)
        js->base_absent = true;
    else if (sscanf(text, "base=%16" SCNx64 " replace=%d", &base, &replace) != 2)
        return bad_journal(path, r->off, "unreadable base record", err);
    js->have_base = true;
    js->base = base;
    js->replace = replace != 0;
    return 0;
}

static bool read_folded(const jrec *r, uint64_t *hash) {
    char text[32];
    if (r->payload.len != 23)
        return false;
    memcpy(text, r->payload.ptr, r->payload.len);
    text[r->payload.len] = '\0';
    return sscanf(text, "folded=%16" SCNx64, hash) == 1;
}

/* Walks the records, calling fn on each R (fn may be NULL). A journal cut
 * short inside its first line (a crash while creating it) is empty. */
static int scan(const char *path, const char *data, size_t len, jscan *js,
                int (*fn)(void *ud, const jrec *r), void *ud, tch_error *err) {
    size_t mlen = strlen(MAGIC);
    memset(js, 0, sizeof *js);
    if (len < mlen && memcmp(data, MAGIC, len) == 0) {
        js->torn = len;
        return 0;
    }
    if (len < mlen || memcmp(data, MAGIC, mlen) != 0)
        return bad_journal(path, 0, "not a tchannel-vcr journal", err);
    size_t off = mlen, end = 0;
    jrec r;
    for (; off < len && next_record(data, len, off, &r, &end); off = end) {
        int rc = 0;
        if (!js->have_base)
            rc = read_base(path, &r, js, err);
        else if (r.type == 'R') {
            js->records++;
            rc = fn ? fn(ud, &r) : 0;
        } else if (r.type == 'F' && read_folded(&r, &js->folded_hash))
            js->folded = true;
        else
            rc = bad_journal(path, r.off, "unknown record", err);
        if (rc)
            return rc;
    }
    js->good = off;
    js->torn = len - off;
    return 0;
}

static char *journal_path(const tch_allocator *a, const char *path) {
    size_t n = strlen(path) + sizeof CAS_JOURNAL_SUFFIX;
    char *p = tch__malloc(a, n);
    if (p)
        snprintf(p, n, "%s%s", path, CAS_JOURNAL_SUFFIX);
    return p;
}

/* The whole of a regular file; TCH_ENOTFOUND when there is none. */
static int slurp(const char *path, size_t max, tch_buf *out, tch_error *err) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return errno == ENOENT ? TCH_ENOTFOUND
                               : tch_error_set(err, TCH_EIO, "%s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return tch_error_set(err, TCH_EINVAL, "%s: not a regular file", path);
    }
    if ((size_t)st.st_size > max) {
        close(fd);
        return tch_error_set(err, TCH_ETOOBIG, "%s: larger than %zu bytes", path, max);
    }
    int rc = tch_buf_reserve(out, (size_t)st.st_size + 1) ? TCH_ENOMEM : 0;
    while (!rc) {
        if (out->cap - out->len < 65536 && tch_buf_reserve(out, 65536)) {
            rc = TCH_ENOMEM;
            break;
        }
        ssize_t n = read(fd, out->ptr + out->len, out->cap - out->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = tch_error_set(err, TCH_EIO, "%s: %s", path, strerror(errno));
        if (n <= 0)
            break;
        out->len += (size_t)n;
        if (out->len > max)
            rc = tch_error_set(err, TCH_ETOOBIG, "%s: larger than %zu bytes", path, max);
    }
    close(fd);
    if (rc == TCH_ENOMEM)
        tch_error_set(err, rc, "%s: out of memory", path);
    return rc;
}

/* What a journal is to the file beside it now. */
typedef enum jstate {
    J_EMPTY,    /* no recordings: nothing to add */
    J_FOLDED,   /* an F record says the file already holds them */
    J_APPLIES,  /* the file is the content the B record names: they add to it */
    J_CONFLICT, /* the file changed under the journal: they add to nothing we know */
} jstate;

static jstate journal_state(const jscan *js, uint64_t file_hash, bool exists) {
    if (!js->have_base || js->records == 0)
        return J_EMPTY;
    if (js->folded && exists && file_hash == js->folded_hash)
        return J_FOLDED;
    bool same_base = js->base_absent ? !exists : exists && file_hash == js->base;
    return same_base ? J_APPLIES : J_CONFLICT;
}

/* ---- merging a journal on open ------------------------------------------- */

typedef struct merge_ctx {
    tch_cassette *c;
    const char *path;
    tch_error *err;
} merge_ctx;

static int merge_record(void *ud, const jrec *r) {
    merge_ctx *m = ud;
    size_t first = m->c->n;
    int rc = tch__cas_load_buffer(m->c, (const char *)r->payload.ptr, r->payload.len, m->err);
    if (rc)
        return tch_error_wrap(m->err, "%s: the record at byte %zu", m->path, r->off), rc;
    for (size_t i = first; i < m->c->n; i++)
        m->c->items[i]->it.line = 0; /* a line of the journal record means nothing */
    return 0;
}

static void drop_all(tch_cassette *c) {
    for (size_t i = 0; i < c->n; i++) {
        tch__cas_interaction_free(c->alloc, &c->items[i]->it);
        tch__free(c->alloc, c->items[i]);
    }
    c->n = 0;
}

int tch__cas_journal_merge(tch_cassette *c, uint64_t file_hash, bool exists, tch_error *err) {
    char *jpath = journal_path(c->alloc, c->path);
    tch_buf j = {.alloc = c->alloc};
    jscan js;
    if (!jpath)
        return tch_error_set(err, TCH_ENOMEM, "cassette %s: out of memory", c->name);
    int rc = slurp(jpath, MAX_JOURNAL, &j, err);
    if (rc == TCH_ENOTFOUND)
        rc = 0;
    else if (!rc)
        rc = scan(jpath, (const char *)j.ptr, j.len, &js, NULL, NULL, err);
    /* a journal whose file was replaced meanwhile is not applied: readers see
     * the file; tch_cassette_journal_open moves its recordings aside */
    if (!rc && j.ptr &&
        journal_state(&js, exists ? file_hash : 0, exists) == J_APPLIES) {
        if (js.replace) /* a run in mode ALL: its recordings are the whole cassette */
            drop_all(c);
        merge_ctx m = {c, jpath, err};
        rc = scan(jpath, (const char *)j.ptr, j.len, &js, merge_record, &m, err);
        c->existed = true; /* the run that wrote it had made the cassette */
    }
    tch_buf_free(&j);
    tch__free(c->alloc, jpath);
    return rc;
}

/* ---- who writes the journal ---------------------------------------------- */

/* A writer holds an exclusive lock (flock: one per open file description,
 * so two objects of one process exclude each other too) on PATH.journal
 * from the moment it creates the file until it has folded or removed it.
 * Whoever finds the journal locked leaves it alone: its writer is alive
 * and is the only one that may fold it. */

static int busy(const tch_cassette *c, const char *jpath, tch_error *err) {
    return tch_error_set(err, TCH_ESTATE, "%s: another process is recording into this cassette "
                         "(it holds the lock on %s)", c->path, jpath);
}

/* Opens PATH.journal (creating it when create) and takes its lock: 0 and
 * *out; TCH_ENOTFOUND when there is none and !create; TCH_ESTATE when
 * another writer holds it. */
static int lock_journal(const tch_cassette *c, const char *jpath, bool create, int *out,
                        tch_error *err) {
    for (int attempt = 0; attempt < 8; attempt++) {
        int fd = open(jpath, O_RDWR | O_NONBLOCK | O_CLOEXEC | (create ? O_CREAT : 0), 0644);
        struct stat st, now;
        if (fd < 0)
            return errno == ENOENT && !create
                       ? TCH_ENOTFOUND
                       : tch_error_set(err, TCH_EIO, "%s: %s", jpath, strerror(errno));
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            close(fd);
            return tch_error_set(err, TCH_EINVAL, "%s: not a regular file", jpath);
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            close(fd);
            return e == EWOULDBLOCK ? busy(c, jpath, err)
                                    : tch_error_set(err, TCH_EIO, "%s: locking: %s", jpath,
                                                    strerror(e));
        }
        /* its writer may have removed (folded) it between our open and lock */
        if (fstat(fd, &st) == 0 && st.st_nlink > 0 && stat(jpath, &now) == 0 &&
            now.st_dev == st.st_dev && now.st_ino == st.st_ino) {
            *out = fd;
            return 0;
        }
        close(fd);
        if (!create && access(jpath, F_OK) != 0)
            return TCH_ENOTFOUND;
    }
    return tch_error_set(err, TCH_EIO, "%s: removed and created again while being locked", jpath);
}

/* A journal read under its lock, and what it is to the file now. */
typedef struct jfound {
    tch_buf bytes;
    jscan js;
    jstate state;
    bool file_exists;
    uint64_t file_hash;
} jfound;

static int read_locked(const tch_cassette *c, const char *jpath, jfound *f, tch_error *err) {
    memset(f, 0, sizeof *f);
    f->bytes.alloc = c->alloc;
    int rc = slurp(jpath, MAX_JOURNAL, &f->bytes, err);
    if (!rc)
        rc = scan(jpath, (const char *)f->bytes.ptr, f->bytes.len, &f->js, NULL, NULL, err);
    int frc = rc ? rc : hash_file(c->path, &f->file_hash, err);
    if (frc && frc != TCH_ENOTFOUND)
        rc = frc;
    f->file_exists = frc == 0;
    if (!rc)
        f->state = journal_state(&f->js, f->file_hash, f->file_exists);
    return rc;
}

/* ---- writing ------------------------------------------------------------- */

static int pwrite_all(int fd, const uint8_t *p, size_t n, size_t off) {
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
        off += (size_t)w;
    }
    return 0;
}

/* Copies on the stack: a failed allocation must not skip the sync that
 * makes a new journal's name durable. */
static void fsync_dir_of(const char *path) {
    char copy[PATH_MAX];
    if (snprintf(copy, sizeof copy, "%s", path) < (int)sizeof copy)
        tch__cas_fsync_dir(dirname(copy));
}

static void remove_journal(const char *jpath) {
    if (unlink(jpath) == 0)
        fsync_dir_of(jpath);
}

/* Writes buf at off and syncs it; on failure cuts the file back to off (a
 * later record then overwrites what is left) and sets err. */
static int append_synced(int fd, const char *jpath, const tch_buf *buf, size_t off,
                         tch_error *err) {
    if (pwrite_all(fd, buf->ptr, buf->len, off) == 0 && fdatasync(fd) == 0)
        return 0;
    int e = errno;
    if (ftruncate(fd, (off_t)off) != 0) { /* nothing more to do: the torn tail is dropped on read */
    }
    return tch_error_set(err, TCH_EIO, "%s: writing: %s", jpath, strerror(e));
}

/* Whether the file still is the content c read (or last wrote): a journal
 * or a fold on top of anything else would drop what changed it. */
static int check_base(const tch_cassette_journal *j, tch_error *err) {
    uint64_t hash = 0;
    int rc = hash_file(j->c->path, &hash, err);
    if (rc && rc != TCH_ENOTFOUND)
        return rc;
    bool exists = rc == 0;
    if (exists == j->base_exists && (!exists || hash == j->base))
        return 0;
    return tch_error_set(err, TCH_ESTATE, "%s changed on disk since this cassette read it "
                         "(another process saved it, or it was edited): not written over; reload "
                         "the cassette", j->c->path);
}

/* Takes PATH.journal for j: created and locked. Its B record names the
 * content c holds, even when the file changed since: then readers do not
 * stack its recordings on the new content, and the fold or the next open
 * moves them aside (acknowledged recordings are never dropped). */
static int create_journal(tch_cassette_journal *j, tch_error *err) {
    tch_cassette *c = j->c;
    char *dir = tch__strdup(c->alloc, c->path);
    int rc = dir ? tch__cas_make_dirs(c->alloc, dirname(dir), err)
                 : tch_error_set(err, TCH_ENOMEM, "cassette %s: out of memory", c->name);
    tch__free(c->alloc, dir);
    int fd = -1;
    if (!rc)
        rc = lock_journal(c, j->path, true, &fd, err);
    if (rc)
        return rc;
    jfound f;
    rc = read_locked(c, j->path, &f, err);
    tch_buf_free(&f.bytes);
    bool ours = !rc && (f.state == J_EMPTY || f.state == J_FOLDED); /* nothing to keep in it */
    if (!rc && !ours) /* its writer died after c was opened */
        rc = tch_error_set(err, TCH_ESTATE, "%s holds recordings of another run that this "
                           "cassette did not read: left for the next open to fold", j->path);
    if (rc) {
        if (ours)
            remove_journal(j->path);
        close(fd);
        return rc;
    }
    tch_buf head = {.alloc = c->alloc};
    char base[80];
    bool replace = c->mode == TCH_CASSETTE_ALL && !c->only_this_run;
    if (j->base_exists)
        snprintf(base, sizeof base, "base=%016" PRIx64 " replace=%d", j->base, replace);
    else
        snprintf(base, sizeof base, "base=absent replace=%d", replace);
    if (tch_buf_append(&head, MAGIC, strlen(MAGIC)) || frame(&head, 'B', tch_slice_cstr(base)))
        rc = tch_error_set(err, TCH_ENOMEM, "cassette %s: out of memory", c->name);
    if (!rc && (ftruncate(fd, 0) != 0 || pwrite_all(fd, head.ptr, head.len, 0) != 0))
        rc = tch_error_set(err, TCH_EIO, "%s: writing: %s", j->path, strerror(errno));
    if (rc) {
        remove_journal(j->path);
        close(fd);
    } else {
        j->fd = fd;
        j->good = head.len; /* synced with the first record */
        j->dir_synced = false;
    }
    tch_buf_free(&head);
    return rc;
}

/* Moves j->settled past entries that can no longer need a commit. */
static void settle(tch_cassette_journal *j) {
    tch_cassette *c = j->c;
    while (j->settled < c->n && (c->items[j->settled]->state == ST_LOADED ||
                                 c->items[j->settled]->state == ST_ABORTED))
        j->settled++;
}

/* Our journal is useless once its name is gone (someone removed it): what
 * was appended to it is not where any reader looks. */
static int check_linked(tch_cassette_journal *j, tch_error *err) {
    struct stat st;
    if (fstat(j->fd, &st) == 0 && st.st_nlink > 0)
        return 0;
    close(j->fd);
    j->fd = -1;
    j->good = 0;
    return tch_error_set(err, TCH_EIO, "%s was removed by someone else while this process "
                         "wrote it", j->path);
}

int tch_cassette_journal_commit(tch_cassette_journal *j, tch_error *err) {
    tch_cassette *c = j->c;
    size_t n = 0;
    settle(j);
    for (size_t i = j->settled; i < c->n; i++)
        n += tch__cas_keep_unsaved(c, c->items[i]);
    if (n == 0)
        return 0;
    tch_buf doc = {.alloc = c->alloc}, rec = {.alloc = c->alloc};
    /* first: once the record is durable, nothing may fail */
    int rc = tch__cas_prepare_saved(c, j->settled, err);
    if (!rc)
        rc = tch__cas_emit_some(c, tch__cas_keep_unsaved, j->settled, &doc, err);
    if (!rc && frame(&rec, 'R', tch_buf_slice(&doc)))
        rc = tch_error_set(err, TCH_ENOMEM, "cassette %s: out of memory", c->name);
    tch_buf_free(&doc);
    if (!rc && j->fd < 0)
        rc = create_journal(j, err);
    if (!rc)
        rc = append_synced(j->fd, j->path, &rec, j->good, err);
    if (!rc)
        rc = check_linked(j, err);
    if (!rc && !j->dir_synced) { /* a new journal: its name must survive a crash too */
        fsync_dir_of(j->path);
        j->dir_synced = true;
    }
    if (!rc) {
        j->good += rec.len;
        j->records += n;
    }
    tch_buf_free(&rec);
    if (rc)
        return tch_error_wrap(err, "cassette %s: recording not saved", c->name), rc;
    tch__cas_mark_saved(c, j->settled);
    return 0;
}

/* Entries c read at open or has saved since: what the file and journal
 * hold, if nobody else wrote them. */
static bool keep_loaded(const tch_cassette *c, const cas_entry *e) {
    (void)c;
    return e->state == ST_LOADED && !e->runtime;
}

/* Whether file + journal, read again now, are what c read: then c's view
 * may replace them. */
static int view_is_current(tch_cassette *c, const char *jpath, tch_error *err) {
    tch_cassette *fresh = NULL;
    tch_buf mine = {.alloc = c->alloc}, disk = {.alloc = c->alloc};
    int rc = tch_cassette_reload_as(c, TCH_CASSETTE_NONE, &fresh, err);
    if (!rc)
        rc = tch__cas_emit_some(fresh, tch__cas_keep_finished, 0, &disk, err);
    if (!rc)
        rc = tch__cas_emit_some(c, keep_loaded, 0, &mine, err);
    if (!rc && (mine.len != disk.len || memcmp(mine.ptr, disk.ptr, mine.len) != 0))
        rc = tch_error_set(err, TCH_ESTATE, "%s holds recordings this cassette did not read "
                           "(another process wrote them after it was opened): not written "
                           "over; open the cassette again", jpath);
    tch_cassette_free(fresh);
    tch_buf_free(&mine);
    tch_buf_free(&disk);
    return rc;
}

/* ---- recordings moved aside ------------------------------------------------ */

/* The recordings of a journal's R records, as a cassette of their own. */
static int journal_cassette(const tch_cassette *c, const char *jpath, const jfound *f,
                            tch_cassette **out, tch_error *err) {
    tch_cassette_options o = c->opts;
    o.matchers = NULL;
    o.n_matchers = 0;
    o.mode = TCH_CASSETTE_NONE;
    o.no_env_override = 1;
    jscan js;
    int rc = tch_cassette_open_memory(jpath, "", 0, &o, out, err);
    merge_ctx m = {rc ? NULL : *out, jpath, err};
    if (!rc)
        rc = scan(jpath, (const char *)f->bytes.ptr, f->bytes.len, &js, merge_record, &m, err);
    if (rc && !*out)
        return rc;
    if (rc) {
        tch_cassette_free(*out);
        *out = NULL;
    }
    return rc;
}

/* At open, before anything is recorded: whether the journal holds what c
 * merged from it (tch_cassette_open marks those entries line 0), and not
 * more, written by its writer after c read it and before it died. Counts
 * parse the journal only, not the whole cassette again. */
static int journal_is_what_c_read(tch_cassette *c, const char *jpath, const jfound *f,
                                  tch_error *err) {
    tch_cassette *m = NULL;
    int rc = journal_cassette(c, jpath, f, &m, err);
    size_t merged = 0;
    for (size_t i = 0; !rc && i < c->n; i++)
        merged += c->items[i]->it.line == 0 && keep_loaded(c, c->items[i]);
    if (!rc && merged != tch_cassette_count(m))
        rc = tch_error_set(err, TCH_ESTATE, "%s holds %zu recordings, of which this cassette read "
                           "%zu (its writer went on after it was opened): open it again",
                           jpath, tch_cassette_count(m), merged);
    tch_cassette_free(m);
    return rc;
}

/* Creates a file that did not exist: PATH.journal-conflict.yaml, or
 * PATH.journal-conflict-N.yaml when that is taken (an earlier conflict).
 * Not PATH.conflict.yaml: tchannel-mock rewrites that one with its run. */
static int write_new_file(const tch_allocator *a, const char *path, tch_slice data, char **where,
                          tch_error *err) {
    size_t n = strlen(path) + 32;
    char *name = tch__malloc(a, n);
    int fd = -1;
    for (int i = 1; name && fd < 0 && i <= 100; i++) {
        if (i == 1)
            snprintf(name, n, "%s.journal-conflict.yaml", path);
        else
            snprintf(name, n, "%s.journal-conflict-%d.yaml", path, i);
        fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (!name)
        return tch_error_set(err, TCH_ENOMEM, "%s: out of memory", path);
    int rc = fd < 0 ? tch_error_set(err, TCH_EIO, "%s: %s", name, strerror(errno))
                    : pwrite_all(fd, data.ptr, data.len, 0) != 0 || fsync(fd) != 0
                          ? tch_error_set(err, TCH_EIO, "%s: writing: %s", name, strerror(errno))
                          : 0;
    if (fd >= 0 && close(fd) != 0 && !rc)
        rc = tch_error_set(err, TCH_EIO, "%s: closing: %s", name, strerror(errno));
    if (rc && fd >= 0)
        unlink(name);
    if (!rc)
        fsync_dir_of(name);
    if (!rc)
        *where = name;
    else
        tch__free(a, name);
    return rc;
}

/* A journal started on content the file no longer holds (it was replaced
 * or edited): its recordings were acknowledged, so they go to a cassette
 * of their own beside the file, where the user sees them. */
static int move_aside(const tch_cassette *c, const char *jpath, const jfound *f, char **where,
                      tch_error *err) {
    tch_cassette *m = NULL;
    tch_buf out = {.alloc = c->alloc};
    int rc = journal_cassette(c, jpath, f, &m, err);
    if (!rc)
        rc = tch__cas_emit_some(m, tch__cas_keep_finished, 0, &out, err);
    if (!rc)
        rc = write_new_file(c->alloc, c->path, tch_buf_slice(&out), where, err);
    tch_cassette_free(m);
    tch_buf_free(&out);
    return rc;
}

static char *aside_note(const tch_allocator *a, const char *jpath, const jfound *f,
                        const char *where) {
    size_t n = strlen(jpath) + strlen(where) + 200;
    char *note = tch__malloc(a, n);
    if (note)
        snprintf(note, n, "%s: the cassette changed after this journal was started, so its %zu "
                 "record%s of recordings were not added to it: they are in %s", jpath,
                 f->js.records, f->js.records == 1 ? "" : "s", where);
    return note;
}

/* ---- folding ----------------------------------------------------------------- */

/* With the journal's lock held (fd; its whole records end at good): marks
 * it folded into data, writes data to the file, removes the journal. */
static int fold_locked(tch_cassette *c, int fd, const char *jpath, size_t good, tch_slice data,
                       size_t *appended, tch_error *err) {
    int rc = 0;
    if (good > 0) { /* the F record: the file will be this content */
        char text[32];
        tch_buf rec = {.alloc = c->alloc};
        snprintf(text, sizeof text, "folded=%016" PRIx64, content_hash(data.ptr, data.len));
        rc = frame(&rec, 'F', tch_slice_cstr(text))
                 ? tch_error_set(err, TCH_ENOMEM, "cassette %s: out of memory", c->name)
                 : append_synced(fd, jpath, &rec, good, err);
        if (!rc && appended)
            *appended = rec.len;
        tch_buf_free(&rec);
    }
    if (!rc)
        rc = tch__cas_write_atomic(c->alloc, c->path, data, err);
    if (!rc) /* the file holds everything: the journal goes, while still locked */
        remove_journal(jpath);
    return rc;
}

/* A journal beside the file that j did not write (base: NULL for a plain
 * tch_cassette_save, which replaces whatever the file holds). Folded only
 * when c read it whole; left alone while its writer holds it. *note: what
 * was done with recordings moved aside. */
static int replace_unowned(tch_cassette *c, const tch_cassette_journal *base, tch_slice data,
                           char **note, tch_error *err) {
    char *jpath = journal_path(c->alloc, c->path), *where = NULL;
    int fd = -1;
    jfound f = {0};
    if (!jpath)
        return tch_error_set(err, TCH_ENOMEM, "cassette %s: out of memory", c->name);
    int rc = lock_journal(c, jpath, false, &fd, err);
    if (rc == TCH_ENOTFOUND)
        rc = 0;
    if (!rc && fd >= 0)
        rc = read_locked(c, jpath, &f, err);
    if (!rc && fd >= 0 && f.state == J_APPLIES)
        rc = view_is_current(c, jpath, err);
    if (!rc && fd >= 0 && f.state == J_CONFLICT)
        rc = move_aside(c, jpath, &f, &where, err);
    if (!rc && base)
        rc = check_base(base, err);
    if (!rc && fd >= 0)
        rc = fold_locked(c, fd, jpath, f.js.have_base ? f.js.good : 0, data, NULL, err);
    else if (!rc)
        rc = tch__cas_write_atomic(c->alloc, c->path, data, err);
    if (where && note)
        *note = aside_note(c->alloc, jpath, &f, where);
    if (fd >= 0)
        close(fd);
    tch_buf_free(&f.bytes);
    tch__free(c->alloc, where);
    tch__free(c->alloc, jpath);
    return rc;
}

int tch__cas_journal_replace_file(tch_cassette *c, tch_cassette_journal *j, tch_slice data,
                             tch_error *err) {
    if (!j || j->fd < 0)
        return replace_unowned(c, j, data, NULL, err);
    size_t appended = 0;
    int rc = check_base(j, err);
    if (!rc)
        rc = fold_locked(c, j->fd, j->path, j->good, data, &appended, err);
    j->good += appended;
    if (rc)
        return rc;
    close(j->fd); /* the lock goes with it */
    j->fd = -1;
    j->good = j->records = 0;
    return 0;
}

int tch_cassette_journal_fold(tch_cassette_journal *j, tch_error *err) {
    tch_cassette *c = j->c;
    if (!c->dirty && j->fd < 0 && j->records == 0)
        return 0; /* nothing of ours: a journal there is another writer's */
    tch_buf out = {.alloc = c->alloc};
    int rc = tch__cas_prepare_saved(c, 0, err);
    if (!rc)
        rc = tch_cassette_emit(c, &out, err);
    if (!rc)
        rc = tch__cas_journal_replace_file(c, j, tch_buf_slice(&out), err);
    if (!rc) { /* the file is c's content now */
        j->base_exists = true;
        j->base = content_hash(out.ptr, out.len);
        j->records = 0;
        tch__cas_mark_saved(c, 0);
    }
    tch_buf_free(&out);
    return rc;
}

void tch_cassette_journal_discard(tch_cassette_journal *j) {
    if (j->fd >= 0) /* only a journal we hold: another writer's is its own */
        remove_journal(j->path), close(j->fd);
    j->fd = -1;
    j->good = j->records = 0;
}

size_t tch_cassette_journal_pending(const tch_cassette_journal *j) { return j->records; }
size_t tch_cassette_journal_bytes(const tch_cassette_journal *j) { return j->good; }

void tch_cassette_journal_free(tch_cassette_journal *j) {
    if (!j)
        return;
    if (j->fd >= 0)
        close(j->fd);
    tch__free(j->alloc, j->path);
    tch__free_self(j->alloc, j);
}

/* ---- recovery at open ------------------------------------------------------ */

/* `.NAME.tmp.PID.XXXXXX` of a process that is gone, or (the older name
 * without a PID, or a PID of another namespace) one untouched for an hour. */
static bool stale_temp(const char *dir, const char *name, const char *prefix) {
    size_t plen = strlen(prefix);
    if (strncmp(name, prefix, plen) != 0)
        return false;
    const char *rest = name + plen, *dot = strchr(rest, '.');
    char *end = NULL;
    long pid = dot ? strtol(rest, &end, 10) : 0;
    const char *suffix = dot && end == dot && pid > 0 ? dot + 1 : rest;
    if (strlen(suffix) != 6)
        return false;
    for (const char *s = suffix; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
            return false;
    if (suffix != rest && pid != (long)getpid() && kill((pid_t)pid, 0) != 0 && errno == ESRCH)
        return true;
    char full[4096];
    struct stat st;
    snprintf(full, sizeof full, "%s/%s", dir, name);
    return lstat(full, &st) == 0 && S_ISREG(st.st_mode) &&
           time(NULL) - st.st_mtime > STALE_TEMP_AGE_S;
}

/* Removes temp files that saves of this cassette left when their process
 * was killed; returns how many. */
static size_t remove_stale_temps(const tch_allocator *a, const char *path) {
    char *real = realpath(path, NULL); /* saves write beside a symlink's target */
    char *dcopy = tch__strdup(a, real ? real : path), *bcopy = tch__strdup(a, real ? real : path);
    size_t removed = 0;
    DIR *d = dcopy && bcopy ? opendir(dirname(dcopy)) : NULL;
    if (d) {
        char prefix[1024];
        snprintf(prefix, sizeof prefix, ".%s" CAS_TEMP_INFIX, basename(bcopy));
        for (struct dirent *e; (e = readdir(d));) {
            char full[4096];
            if (!stale_temp(dcopy, e->d_name, prefix))
                continue;
            snprintf(full, sizeof full, "%s/%s", dcopy, e->d_name);
            removed += unlink(full) == 0;
        }
        closedir(d);
    }
    free(real); /* realpath's: the C library's */
    tch__free(a, dcopy);
    tch__free(a, bcopy);
    return removed;
}

static char *recovery_note(const tch_allocator *a, const char *jpath, const jfound *f,
                           size_t temps) {
    char text[1024] = "";
    size_t o = 0;
    if (f) {
        const jscan *js = &f->js;
        o += (size_t)snprintf(text, sizeof text, "%s: ", jpath);
        if (f->state == J_APPLIES)
            o += (size_t)snprintf(text + o, sizeof text - o,
                                  "%zu record%s of recordings left by a run that did not finish "
                                  "folded into the cassette",
                                  js->records, js->records == 1 ? "" : "s");
        else
            o += (size_t)snprintf(text + o, sizeof text - o,
                                  f->state == J_FOLDED ? "already folded into the cassette; removed"
                                                       : "held no recordings; removed");
        if (js->torn && o < sizeof text)
            o += (size_t)snprintf(text + o, sizeof text - o,
                                  "; a torn last record (%zu bytes, from a crash while writing "
                                  "it; never acknowledged) dropped",
                                  js->torn);
    }
    if (temps && o < sizeof text)
        snprintf(text + o, sizeof text - o, "%sremoved %zu temp file%s of interrupted saves",
                 o ? "; " : "", temps, temps == 1 ? "" : "s");
    return text[0] ? tch__strdup(a, text) : NULL;
}

/* A journal found at open, not locked by a live writer: c merged it
 * already (tch_cassette_open), so the file is written with everything c
 * holds (whatever the mode: this is the file as it was when the run
 * began), once a second read under the lock shows the journal as c read it. */
static int recover(tch_cassette_journal *j, char **note, tch_error *err) {
    tch_cassette *c = j->c;
    tch_buf out = {.alloc = c->alloc};
    jfound f = {0};
    int fd = -1;
    int rc = lock_journal(c, j->path, false, &fd, err);
    if (rc == TCH_ENOTFOUND)
        return 0;
    if (rc == TCH_ESTATE) { /* its writer is alive: its journal, its fold */
        size_t n = strlen(j->path) + 200;
        if (note && (*note = tch__malloc(c->alloc, n)))
            snprintf(*note, n, "%s: another process is recording into this cassette (it holds "
                     "the journal's lock): left to it, not folded; this one cannot record into "
                     "it meanwhile", j->path);
        return 0;
    }
    if (!rc)
        rc = read_locked(c, j->path, &f, err);
    if (!rc && f.state == J_APPLIES && !(rc = journal_is_what_c_read(c, j->path, &f, err)) &&
        !(rc = tch__cas_emit_some(c, tch__cas_keep_finished, 0, &out, err)))
        rc = fold_locked(c, fd, j->path, f.js.have_base ? f.js.good : 0, tch_buf_slice(&out),
                         NULL, err);
    char *where = NULL;
    if (!rc && f.state == J_CONFLICT && !(rc = move_aside(c, j->path, &f, &where, err)) && note)
        *note = aside_note(c->alloc, j->path, &f, where); /* its recordings aside, then it goes */
    tch__free(c->alloc, where);
    if (!rc && f.state != J_APPLIES)
        remove_journal(j->path);
    if (!rc && note && !*note)
        *note = recovery_note(c->alloc, j->path, &f, 0);
    if (fd >= 0)
        close(fd);
    tch_buf_free(&f.bytes);
    tch_buf_free(&out);
    if (rc)
        tch_error_wrap(err, "cassette %s: recovering its journal", c->name);
    return rc;
}

int tch_cassette_journal_open(tch_cassette *c, tch_cassette_journal **out, char **note,
                              tch_error *err) {
    if (note)
        *note = NULL;
    if (!c || !out || !c->path)
        return tch_error_set(err, TCH_EINVAL, "tch_cassette_journal_open: a cassette opened "
                             "from a path is required");
    tch_cassette_journal *j = tch__calloc(c->alloc, 1, sizeof *j);
    if (!j || !(j->path = journal_path(c->alloc, c->path))) {
        tch__free(c->alloc, j);
        return tch_error_set(err, TCH_ENOMEM, "cassette %s: out of memory", c->name);
    }
    j->c = c;
    j->alloc = tch__alloc_keep(&j->alloc_copy, c->alloc);
    j->fd = -1;
    char *jnote = NULL;
    int rc = recover(j, &jnote, err);
    /* the content c holds besides its recordings: the file as it is now
     * (c read it a moment ago, or recovery just wrote it) */
    int hrc = rc ? 0 : hash_file(c->path, &j->base, err);
    j->base_exists = hrc == 0;
    if (!rc && hrc && hrc != TCH_ENOTFOUND)
        rc = hrc;
    if (rc) {
        tch__free(c->alloc, jnote);
        tch_cassette_journal_free(j);
        return rc;
    }
    size_t temps = remove_stale_temps(c->alloc, c->path);
    if (note && (jnote || temps)) {
        if (temps) { /* one sentence for both */
            const tch_allocator *a = c->alloc;
            char *both = recovery_note(a, j->path, NULL, temps), *joined = NULL;
            if (jnote && both && (joined = tch__malloc(a, strlen(jnote) + strlen(both) + 3)))
                sprintf(joined, "%s; %s", jnote, both);
            *note = joined ? joined : jnote ? tch__strdup(a, jnote) : both ? tch__strdup(a, both) : NULL;
            tch__free(a, both);
        } else {
            *note = jnote, jnote = NULL;
        }
    }
    tch__free(c->alloc, jnote);
    *out = j;
    return 0;
}
