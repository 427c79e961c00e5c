/* Loading a set of .thrift files: the entry points, include handling (paths
 * relative to the including file, each file loaded once, cycles rejected with
 * the chain named) and the default file reader. This is the only file of
 * lib/thrift that touches the file system, and only through the reader. */
#include "thrift_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INCLUDE_DEPTH 32
#define MAX_IDL_FILE_SIZE (16u << 20)

struct idl_loader {
    tch_thrift_idl *idl;
    const tch_thrift_reader *reader;
    const char *chain[MAX_INCLUDE_DEPTH + 1]; /* files being parsed, outermost first */
    size_t depth;
    ptrvec refs; /* every type reference, resolved after parsing */
    tch_error *err;
};

arena *tch__idl_loader_arena(idl_loader *ld) { return &ld->idl->ar; }
tch_error *tch__idl_loader_err(idl_loader *ld) { return ld->err; }
int tch__idl_loader_add_ref(idl_loader *ld, tch_thrift_type *t) { return tch__ptrvec_push(&ld->idl->ar, &ld->refs, t); }

static int read_file(const char *path, tch_buf *out, tch_error *err, void *ud) {
    (void)ud;
    FILE *f = fopen(path, "rb");
    if (!f)
        return tch_error_set(err, errno == ENOENT ? TCH_ENOTFOUND : TCH_EIO, "%s: %s", path, strerror(errno));
    int rc = 0;
    uint8_t chunk[4096];
    size_t n;
    while (!rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (out->len + n > MAX_IDL_FILE_SIZE)
            rc = tch_error_set(err, TCH_ETOOBIG, "%s: larger than %u bytes", path, MAX_IDL_FILE_SIZE);
        else if (tch_buf_append(out, chunk, n))
            rc = tch_error_set(err, TCH_ENOMEM, "%s: out of memory", path);
    }
    if (!rc && ferror(f))
        rc = tch_error_set(err, TCH_EIO, "%s: read error", path);
    fclose(f);
    if (rc)
        tch_buf_free(out);
    return rc;
}

static int last_is_dotdot(const char *out, size_t base, size_t o) {
    size_t k = o;
    while (k > base && out[k - 1] != '/')
        k--;
    return o - k == 2 && out[k] == '.' && out[k + 1] == '.';
}

/* Lexical normalisation ("a/./b/../c" -> "a/c") so one file reached by two
 * spellings is loaded once and cycles are seen. Symlinks are not followed. */
static char *normalize_path(arena *ar, const char *dir, size_t dirlen, const char *rel) {
    size_t n = dirlen + 1 + strlen(rel);
    char *joined = tch__arena_alloc(ar, n + 1);
    char *out = tch__arena_alloc(ar, n + 1);
    if (!joined || !out)
        return NULL;
    if (rel[0] == '/' || dirlen == 0)
        snprintf(joined, n + 1, "%s", rel);
    else
        snprintf(joined, n + 1, "%.*s/%s", (int)dirlen, dir, rel);
    size_t o = 0;
    int absolute = joined[0] == '/';
    if (absolute)
        out[o++] = '/';
    size_t base = o; /* out[base..] are components we may pop */
    for (char *s = joined; *s;) {
        char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == 0 || (len == 1 && s[0] == '.')) {
            /* skip */
        } else if (len == 2 && s[0] == '.' && s[1] == '.' && o > base && !last_is_dotdot(out, base, o)) {
            size_t k = o; /* pop the last component and the '/' before it */
            while (k > base && out[k - 1] != '/')
                k--;
            o = k > base ? k - 1 : base;
        } else {
            if (o > base)
                out[o++] = '/';
            memcpy(out + o, s, len);
            o += len;
        }
        s += len;
        if (*s == '/')
            s++;
    }
    out[o] = '\0';
    return out;
}

static idl_doc *find_doc(const tch_thrift_idl *idl, const char *path) {
    for (size_t i = 0; i < idl->docs.n; i++) {
        idl_doc *d = idl->docs.items[i];
        if (strcmp(d->path, path) == 0)
            return d;
    }
    return NULL;
}

static int parse_into(idl_loader *ld, idl_doc *doc, tch_slice text) {
    if (ld->depth >= MAX_INCLUDE_DEPTH)
        return tch_error_set(ld->err, TCH_EPARSE, "%s: includes nested more than %d deep", doc->path,
                             MAX_INCLUDE_DEPTH);
    ld->chain[ld->depth++] = doc->path;
    int rc = tch__idl_parse_doc(ld, doc, text);
    ld->depth--;
    return rc;
}

static int cycle_error(idl_loader *ld, idl_doc *from, const char *path, int line, int col) {
    char chain[TCH_ERROR_MSG_MAX] = "";
    size_t used = 0, start = 0;
    while (start < ld->depth && strcmp(ld->chain[start], path) != 0)
        start++;
    for (size_t i = start; i < ld->depth && used < sizeof chain; i++) {
        int n = snprintf(chain + used, sizeof chain - used, "%s -> ", ld->chain[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    return tch_error_set(ld->err, TCH_EPARSE, "%s:%d:%d: include cycle: %s%s", from->path, line, col, chain,
                         path);
}

int tch__idl_load_include(idl_loader *ld, idl_doc *from, const char *inc_path, int line, int col, idl_doc **out) {
    arena *ar = &ld->idl->ar;
    const char *slash = strrchr(from->path, '/');
    size_t dirlen = slash ? (size_t)(slash - from->path) : 0;
    if (slash == from->path)
        dirlen = 1; /* a file in "/" */
    char *path = normalize_path(ar, from->path, dirlen, inc_path);
    if (!path)
        return tch_error_set(ld->err, TCH_ENOMEM, "%s: out of memory", from->path);
    for (size_t i = 0; i < ld->depth; i++)
        if (strcmp(ld->chain[i], path) == 0)
            return cycle_error(ld, from, path, line, col);
    if ((*out = find_doc(ld->idl, path)))
        return 0; /* already loaded through another include */
    if (!ld->reader)
        return tch_error_set(ld->err, TCH_EINVAL, "%s:%d:%d: cannot include '%s': no file reader given",
                             from->path, line, col, inc_path);
    tch_buf text = {0};
    int rc = ld->reader->read(path, &text, ld->err, ld->reader->ud);
    if (rc) {
        if (ld->err)
            tch_error_wrap(ld->err, "%s:%d:%d: cannot include '%s'", from->path, line, col, inc_path);
        return rc;
    }
    idl_doc *doc = tch__arena_alloc(ar, sizeof *doc);
    if (!doc || tch__ptrvec_push(ar, &ld->idl->docs, doc)) {
        tch_buf_free(&text);
        return tch_error_set(ld->err, TCH_ENOMEM, "%s: out of memory", path);
    }
    doc->path = path;
    rc = parse_into(ld, doc, tch_buf_slice(&text));
    tch_buf_free(&text);
    if (!rc)
        *out = doc;
    return rc;
}

void tch_thrift_idl_free(tch_thrift_idl *idl) {
    if (!idl)
        return;
    for (size_t i = 0; i < idl->values.n; i++)
        tch_thrift_value_free(idl->values.items[i]);
    tch__arena_free(&idl->ar);
    free(idl);
}

int tch_thrift_load_string(const char *name, tch_slice text, const tch_thrift_reader *reader,
                           tch_thrift_idl **out, tch_error *err) {
    if (!name || !out || (!text.ptr && text.len))
        return tch_error_set(err, TCH_EINVAL, "thrift load: missing argument");
    *out = NULL;
    tch_thrift_idl *idl = calloc(1, sizeof *idl);
    if (!idl)
        return tch_error_set(err, TCH_ENOMEM, "%s: out of memory", name);
    idl_loader ld = {.idl = idl, .reader = reader, .err = err};
    int rc = TCH_ENOMEM;
    idl_doc *root = tch__arena_alloc(&idl->ar, sizeof *root);
    if (root && (root->path = tch__arena_strndup(&idl->ar, name, strlen(name))) &&
        !tch__ptrvec_push(&idl->ar, &idl->docs, root)) {
        idl->root = root;
        rc = parse_into(&ld, root, text);
        if (!rc)
            rc = tch__idl_resolve(idl, &ld.refs, err);
    } else {
        tch_error_set(err, rc, "%s: out of memory", name);
    }
    if (rc) {
        tch_thrift_idl_free(idl);
        return rc;
    }
    *out = idl;
    return 0;
}

int tch_thrift_load(const char *path, tch_thrift_idl **out, tch_error *err) {
    if (!path || !out)
        return tch_error_set(err, TCH_EINVAL, "thrift load: missing argument");
    tch_buf text = {0};
    int rc = read_file(path, &text, err, NULL);
    if (rc)
        return rc;
    static const tch_thrift_reader file_reader = {read_file, NULL}; /* immutable */
    rc = tch_thrift_load_string(path, tch_buf_slice(&text), &file_reader, out, err);
    tch_buf_free(&text);
    return rc;
}
