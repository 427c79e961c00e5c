/* The loaded cassettes, in command-line order (lookups ask them in this
 * order). Each cassette is a tch_cassette from the cassette library; this
 * file only decides when to open, swap, save and drop them. A reload builds
 * a new object and swaps it in only when it parsed, so a broken edit keeps
 * the last good version serving. */
#include "mock.h"

#include "array.h"

#include <dirent.h>
#include <libgen.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static mock_file_sig file_sig(const char *path) {
    struct stat st;
    mock_file_sig s = {0};
    if (stat(path, &st) != 0)
        return s;
    s.exists = 1;
    s.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    s.ctime_ns = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
    s.size = st.st_size;
    s.ino = st.st_ino;
    return s;
}

static int sig_equal(const mock_file_sig *a, const mock_file_sig *b) {
    return a->exists == b->exists && a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns &&
           a->size == b->size && a->ino == b->ino;
}

/* The file is what c holds now (read or written); no failed load pending. */
static void remember_file(mock_cassette *mc) {
    mc->known = file_sig(mc->path);
    memset(&mc->failed, 0, sizeof mc->failed);
}

static mock_file_state state_of(const mock_cassette *mc, const mock_file_sig *now) {
    if (!now->exists)
        return mc->known.exists ? MOCK_FILE_GONE : MOCK_FILE_SAME;
    return sig_equal(now, &mc->known) ? MOCK_FILE_SAME : MOCK_FILE_CHANGED;
}

mock_file_state mock_file_check(const mock_cassette *mc) {
    mock_file_sig now = file_sig(mc->path);
    return state_of(mc, &now);
}

int mock_file_worth_reloading(const mock_cassette *mc) {
    mock_file_sig now = file_sig(mc->path); /* one stat a tick */
    return state_of(mc, &now) == MOCK_FILE_CHANGED && !sig_equal(&now, &mc->failed);
}

static void set_load_error(mock_cassette *mc, const char *msg) {
    free(mc->load_error);
    mc->load_error = msg ? strdup(msg) : NULL;
}

static void cassette_free(mock_cassette *mc) {
    if (!mc)
        return;
    tch_cassette_journal_free(mc->journal);
    tch_cassette_free(mc->c);
    free(mc->path);
    free(mc->load_error);
    free(mc);
}

void mock_store_free(mock_store *s) {
    for (size_t i = 0; i < s->n; i++)
        cassette_free(s->items[i]);
    free(s->items);
    memset(s, 0, sizeof *s);
}

static int open_with_mode(const mock *m, const char *path, tch_cassette_mode mode,
                          tch_cassette **out, tch_error *err) {
    tch_cassette_options o;
    tch_cassette_options_init(&o);
    o.mode = mode;
    o.no_env_override = 1; /* the command line decides, not the environment */
    o.allow_playback_repeats = m->cfg->allow_repeats;
    o.matchers = (const char *const *)m->cfg->matchers.v;
    o.n_matchers = m->cfg->matchers.n;
    o.thrift = m->cfg->thrift; /* borrowed: freed after every cassette */
    return tch_cassette_open(path, &o, out, err);
}

/* Gives mc->c (just opened) its journal. Opening one folds what a run
 * that did not finish left in PATH.journal and removes stale temp files;
 * the log says so. */
static int attach_journal(mock_cassette *mc, tch_error *err) {
    char *note = NULL;
    tch_cassette_journal *j = NULL;
    /* the old object's, folded already: freed first, so that its lock, if
     * it still holds one, is not taken for another writer's */
    tch_cassette_journal_free(mc->journal);
    mc->journal = NULL;
    int rc = tch_cassette_journal_open(mc->c, &j, &note, err);
    if (note)
        mock_log("%s", note);
    free(note);
    if (rc)
        return rc;
    mc->journal = j;
    return 0;
}

/* Recordings not in the file yet: in memory only, or in the journal. */
static int unsaved(const mock_cassette *mc) {
    return tch_cassette_dirty(mc->c) || (mc->journal && tch_cassette_journal_pending(mc->journal));
}

mock_cassette *mock_store_find(mock_store *s, const char *path) {
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->items[i]->path, path) == 0)
            return s->items[i];
    return NULL;
}

mock_cassette *mock_store_target(mock_store *s) {
    for (size_t i = 0; i < s->n; i++)
        if (s->items[i]->record_target)
            return s->items[i];
    return NULL;
}

/* A name for a file that may not exist yet (a record target): its folder's
 * real path and its own name; NULL when the folder is not there either. */
static char *canonical_name(const char *path) {
    char *copy = strdup(path), *dir_copy = strdup(path);
    char *dir = dir_copy ? realpath(dirname(dir_copy), NULL) : NULL;
    char *out = NULL;
    if (copy && dir) {
        const char *base = basename(copy);
        size_t n = strlen(dir) + strlen(base) + 2;
        if ((out = malloc(n)))
            snprintf(out, n, "%s/%s", dir, base);
    }
    free(copy);
    free(dir_copy);
    free(dir);
    return out;
}

static int same_name(const char *a, const char *b) {
    char *ca = canonical_name(a), *cb = canonical_name(b);
    int same = ca && cb && strcmp(ca, cb) == 0;
    free(ca);
    free(cb);
    return same;
}

/* The cassette already loaded from this file, however it was spelled
 * (./a.yaml, a/../a.yaml, a symlink; by name for a target not on disk yet):
 * one file loaded twice would play each interaction twice. */
static mock_cassette *find_same_file(mock_store *s, const char *path) {
    struct stat a, b;
    int a_ok = stat(path, &a) == 0;
    for (size_t i = 0; i < s->n; i++) {
        const char *p = s->items[i]->path;
        int b_ok = stat(p, &b) == 0;
        if (strcmp(p, path) == 0 || (a_ok && b_ok && a.st_dev == b.st_dev && a.st_ino == b.st_ino) ||
            (!a_ok && !b_ok && same_name(p, path))) /* neither exists yet */
            return s->items[i];
    }
    return NULL;
}

int mock_store_add(mock *m, const char *path, mock_cassette **out, tch_error *err) {
    mock_store *s = &m->store;
    mock_cassette *same = find_same_file(s, path);
    if (same && out)
        *out = same;
    if (same && strcmp(same->path, path) == 0)
        return tch_error_set(err, TCH_ESTATE, "%s: already loaded", path);
    if (same)
        return tch_error_set(err, TCH_ESTATE, "%s: already loaded, as %s", path, same->path);
    if (s->n == s->cap) {
        mock_cassette **items = tch_array_grow(s->items, &s->cap, sizeof *items, 8);
        if (!items)
            return tch_error_set(err, TCH_ENOMEM, "out of memory");
        s->items = items;
    }
    mock_cassette *mc = calloc(1, sizeof *mc);
    if (!mc || !(mc->path = strdup(path))) {
        free(mc);
        return tch_error_set(err, TCH_ENOMEM, "out of memory");
    }
    int rc = open_with_mode(m, path, m->mode, &mc->c, err);
    if (!rc)
        rc = attach_journal(mc, err);
    if (rc) {
        cassette_free(mc);
        return rc;
    }
    remember_file(mc);
    mc->loaded_at_ms = mock_now_ms();
    s->items[s->n++] = mc;
    if (out)
        *out = mc;
    return 0;
}

/* The cassette with this run's recordings goes beside the edited file, as
 * PATH.conflict.yaml: the user's edit is not overwritten and nothing
 * recorded is lost (merge by hand, or delete one of the two). */
static int save_beside(mock_cassette *mc, tch_error *err) {
    size_t n = strlen(mc->path) + sizeof ".conflict.yaml";
    char *conflict = malloc(n);
    tch_buf out = {0};
    int rc = conflict ? tch_cassette_emit(mc->c, &out, err)
                      : tch_error_set(err, TCH_ENOMEM, "out of memory");
    if (conflict)
        snprintf(conflict, n, "%s.conflict.yaml", mc->path);
    FILE *fp = rc ? NULL : fopen(conflict, "wb");
    /* synced: the journal, the recordings' other copy, goes next */
    if (!rc && (!fp || fwrite(out.ptr, 1, out.len, fp) != out.len || fflush(fp) != 0 ||
                fsync(fileno(fp)) != 0))
        rc = tch_error_set(err, TCH_EIO, "%s: %s", conflict, strerror(errno));
    if (fp && fclose(fp) != 0 && !rc)
        rc = tch_error_set(err, TCH_EIO, "%s: %s", conflict, strerror(errno));
    if (!rc) {
        mc->moved_aside = 1;
        rc = tch_error_set(err, TCH_ESTATE, "%s changed on disk while recordings waited to be "
                           "saved: not overwritten; this run's cassette is in %s", mc->path, conflict);
    }
    free(conflict);
    tch_buf_free(&out);
    return rc;
}

/* ---- confinement on reload ------------------------------------------------------------
 *
 * The admin API checks a path against the cassette roots when it loads it;
 * a link swapped afterwards must not make a reload read (and quote) a file
 * outside them, nor a save write there. The roots follow the admin API's
 * rule (admin.c): the folder of each cassette given, each folder given,
 * --record-to's, and each --cassette-root. Cassettes given on the command
 * line are the user's own choice and are not checked. */

/* path is dir's file NAME (no folder in between), as mock_expand_path and
 * --record-to DIR/ spell them. */
static int file_of_folder(const char *dir, const char *path) {
    size_t n = strlen(dir);
    if (n == 0 || strncmp(path, dir, n) != 0)
        return 0;
    const char *rest = path + n;
    if (dir[n - 1] != '/' && *rest++ != '/')
        return 0;
    return *rest && !strchr(rest, '/');
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int from_command_line(const mock_config *c, const char *path) {
    for (size_t i = 0; i < c->inputs.n; i++)
        if (!strcmp(path, c->inputs.v[i]) ||
            (is_dir(c->inputs.v[i]) && file_of_folder(c->inputs.v[i], path)))
            return 1;
    if (c->record_to && !strcmp(path, c->record_to))
        return 1;
    return c->record_dir && file_of_folder(c->record_dir, path);
}

/* Whether real lies in root (a folder, or a file whose folder is the root). */
static int in_root(const char *root, int folder, const char *real) {
    char *copy = folder ? NULL : strdup(root);
    char *r = realpath(folder ? root : dirname(copy), NULL);
    size_t n = r ? strlen(r) : 0;
    int ok = r && (!strcmp(r, "/") || (!strncmp(real, r, n) && (real[n] == '/' || !real[n])));
    free(r);
    free(copy);
    return ok;
}

static int in_roots(const mock_config *c, const char *real) {
    int ok = 0;
    for (size_t i = 0; i < c->inputs.n && !ok; i++)
        ok = in_root(c->inputs.v[i], is_dir(c->inputs.v[i]), real);
    if (!ok && c->record_to)
        ok = in_root(c->record_to, is_dir(c->record_to), real);
    for (size_t i = 0; i < c->cassette_roots.n && !ok; i++)
        ok = in_root(c->cassette_roots.v[i], 1, real);
    return ok;
}

/* 0 when mc may be read and written now; else TCH_EINVAL naming the rule
 * (nothing of the file is read), noted as its load error. A file not there yet
 * is judged by its folder; a link to nothing cannot be judged: refused. */
static int confined(const mock *m, mock_cassette *mc, tch_error *err) {
    if (!m->admin || from_command_line(m->cfg, mc->path))
        return 0;
    char *real = realpath(mc->path, NULL);
    struct stat st;
    if (!real && errno == ENOENT && lstat(mc->path, &st) != 0)
        real = canonical_name(mc->path);
    int ok = real && in_roots(m->cfg, real);
    free(real);
    if (ok)
        return 0;
    tch_error_set(err, TCH_EINVAL, "%s: 403: now outside the folders the admin API may use (the "
                  "folders of the cassettes given on the command line, and --cassette-root DIR) "
                  "once symbolic links and '..' are resolved; not read or written, the last good "
                  "version keeps serving", mc->path);
    set_load_error(mc, err->msg);
    mc->failed = file_sig(mc->path); /* the watcher says it once */
    return err->code;
}

/* Folds the journal: the whole cassette to its file, the journal removed. */
int mock_store_save(mock *m, mock_cassette *mc, tch_error *err) {
    mc->moved_aside = 0; /* says what this save did */
    if (confined(m, mc, err)) /* neither the file nor PATH.conflict.yaml through a swapped link */
        return err->code;
    /* someone edited or replaced the file while recordings waited */
    if (unsaved(mc) && mock_file_check(mc) == MOCK_FILE_CHANGED) {
        int rc = save_beside(mc, err);
        if (mc->moved_aside && mc->journal) /* its recordings are in the conflict file */
            tch_cassette_journal_discard(mc->journal);
        return rc;
    }
    int rc = mc->journal ? tch_cassette_journal_fold(mc->journal, err)
                         : tch_cassette_save(mc->c, err);
    if (rc == 0)
        remember_file(mc);
    return rc;
}

int mock_store_save_all(mock *m) {
    int failed = 0;
    for (size_t i = 0; i < m->store.n; i++) {
        tch_error err;
        mock_cassette *mc = m->store.items[i];
        if (mock_store_save(m, mc, &err) == 0)
            continue;
        if (mc->moved_aside) { /* saved, beside the edited file */
            mock_log("%s", err.msg);
            continue;
        }
        if (!tch_cassette_dirty(mc->c)) { /* nothing unsaved in memory: nothing lost now */
            size_t kept = mc->journal ? tch_cassette_journal_pending(mc->journal) : 0;
            if (kept) /* say where they are only when some are there */
                mock_log("%s: could not fold the journal into the file (%s); the %zu recordings "
                         "committed to %s.journal stay there and are folded at the next start",
                         mc->path, err.msg, kept, mc->path);
            else
                mock_log("%s: could not save (%s); no recording of this run waits to be saved",
                         mc->path, err.msg);
            continue;
        }
        mock_log("save %s failed: %s", mc->path, err.msg);
        failed = 1;
    }
    return failed ? TCH_EIO : 0;
}

int mock_store_remove(mock *m, const char *path, tch_error *err) {
    mock_store *s = &m->store;
    for (size_t i = 0; i < s->n; i++) {
        mock_cassette *mc = s->items[i];
        if (strcmp(mc->path, path) != 0)
            continue;
        if (mc->pending)
            return tch_error_set(err, TCH_ESTATE, "%s: %zu recordings in flight; try again",
                                 path, mc->pending);
        int rc = mock_store_save(m, mc, err); /* never lose a recording */
        if (rc && !mc->moved_aside)
            return rc;
        if (rc) /* saved, beside the edited file */
            mock_log("%s", err->msg);
        memmove(&s->items[i], &s->items[i + 1], (s->n - i - 1) * sizeof *s->items);
        s->n--;
        cassette_free(mc);
        return 0;
    }
    return tch_error_set(err, TCH_ENOTFOUND, "%s: not loaded", path);
}

/* fresh replaces mc->c (a reload, or a mode change: is_reload 0). */
static void swap_in(mock_cassette *mc, tch_cassette *fresh, int is_reload) {
    tch_cassette_free(mc->c);
    mc->c = fresh;
    tch_error err;
    if (attach_journal(mc, &err) != 0) { /* commits fall back to whole-file saves */
        mock_log("%s: %s", mc->path, err.msg);
        tch_cassette_journal_free(mc->journal);
        mc->journal = NULL;
    }
    remember_file(mc);
    mc->loaded_at_ms = mock_now_ms();
    mc->reloads += (unsigned)is_reload;
    set_load_error(mc, NULL);
}

/* A file we read or wrote that has since gone: re-reading it would give an
 * empty cassette, so the last version keeps serving (an editor may be
 * replacing it; the watcher picks it up when it is back). */
static int gone(const mock_cassette *mc, tch_error *err) {
    if (mock_file_check(mc) == MOCK_FILE_GONE)
        return tch_error_set(err, TCH_ENOTFOUND, "%s: the file is gone; still serving the last "
                             "version read", mc->path);
    return 0;
}

int mock_store_reload(mock *m, mock_cassette *mc, tch_error *err) {
    if (mc->pending)
        return tch_error_set(err, TCH_ESTATE, "%s: reload deferred, %zu recordings in flight",
                             mc->path, mc->pending);
    if (confined(m, mc, err))
        return err->code;
    /* Recordings are committed to the journal as they finish: fold them into
     * the file first (re-reading the file alone would drop them); when that
     * fails, keep the old object. */
    int rc = 0;
    if (unsaved(mc) && (rc = mock_store_save(m, mc, err)) != 0) {
        if (!mc->moved_aside)
            return tch_error_wrap(err, "%s: reload refused, unsaved recordings", mc->path);
        /* the recordings are safe beside it: load the user's edit */
        mock_log("%s", err->msg);
        mc->moved_aside = 0;
    }
    rc = gone(mc, err);
    if (rc)
        return rc;
    tch_cassette *fresh = NULL;
    rc = tch_cassette_reload(mc->c, &fresh, err);
    if (rc) {
        /* keep serving the last good version; note the file as it failed, so
         * the watcher reports it once, not every tick. Not as known: a save
         * must still see that the file is someone else's now. */
        set_load_error(mc, err->msg);
        mc->failed = file_sig(mc->path);
        return rc;
    }
    swap_in(mc, fresh, 1);
    return 0;
}

int mock_store_set_mode(mock *m, tch_cassette_mode mode, tch_error *err) {
    mock_store *s = &m->store;
    for (size_t i = 0; i < s->n; i++)
        if (s->items[i]->pending)
            return tch_error_set(err, TCH_ESTATE, "%s: %zu recordings in flight; try again",
                                 s->items[i]->path, s->items[i]->pending);
    /* open everything first, so a failure changes nothing */
    tch_cassette **fresh = calloc(s->n ? s->n : 1, sizeof *fresh);
    if (!fresh)
        return tch_error_set(err, TCH_ENOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < s->n && !rc; i++) {
        rc = mock_store_save(m, s->items[i], err);
        if (rc && s->items[i]->moved_aside) { /* saved, beside the edited file */
            mock_log("%s", err->msg);
            rc = 0;
        }
        if (!rc)
            rc = gone(s->items[i], err);
        if (!rc) /* the same run, in the new mode */
            rc = tch_cassette_reload_as(s->items[i]->c, mode, &fresh[i], err);
    }
    for (size_t i = 0; i < s->n; i++) {
        if (rc) {
            tch_cassette_free(fresh[i]);
            continue;
        }
        swap_in(s->items[i], fresh[i], 0);
    }
    free(fresh);
    if (!rc)
        m->mode = mode;
    return rc;
}

static int has_yaml_suffix(const char *name) {
    size_t n = strlen(name);
    if (name[0] == '.') /* hidden files, and our own atomic-save temp files */
        return 0;
    return (n > 5 && strcmp(name + n - 5, ".yaml") == 0) ||
           (n > 4 && strcmp(name + n - 4, ".yml") == 0);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int mock_expand_path(const char *path, mock_strv *out, tch_error *err) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return mock_strv_push(out, path) ? tch_error_set(err, TCH_ENOMEM, "out of memory") : 0;
    DIR *d = opendir(path);
    if (!d)
        return tch_error_set(err, TCH_EIO, "%s: %s", path, strerror(errno));
    mock_strv found = {0};
    int rc = 0;
    size_t plen = strlen(path);
    int slash = plen > 0 && path[plen - 1] == '/';
    for (struct dirent *de; !rc && (de = readdir(d));) {
        if (!has_yaml_suffix(de->d_name))
            continue;
        size_t n = plen + strlen(de->d_name) + 2;
        char *full = malloc(n);
        if (!full) {
            rc = TCH_ENOMEM;
            break;
        }
        snprintf(full, n, "%s%s%s", path, slash ? "" : "/", de->d_name);
        rc = mock_strv_push(&found, full);
        free(full);
    }
    closedir(d);
    if (!rc && found.n)
        qsort(found.v, found.n, sizeof *found.v, cmp_str);
    for (size_t i = 0; !rc && i < found.n; i++)
        rc = mock_strv_push(out, found.v[i]);
    mock_strv_free(&found);
    return rc ? tch_error_set(err, rc, "out of memory") : 0;
}

static json_t *interaction_to_json(const mock_cassette *mc, size_t i) {
    const tch_cassette_interaction *it = tch_cassette_get(mc->c, i);
    json_t *o = json_object();
    json_object_set_new(o, "index", json_integer((json_int_t)i));
    if (!it) { /* a slot: waiting for its answer, or aborted (never written) */
        json_object_set_new(o, tch_cassette_is_pending(mc->c, i) ? "pending" : "aborted",
                            json_true());
        return o;
    }
    json_object_set_new(o, "line", json_integer((json_int_t)it->line));
    json_object_set_new(o, "service", mock_json_text((const char *)it->request.service.ptr,
                                                     it->request.service.len));
    json_object_set_new(o, "endpoint", mock_json_text((const char *)it->request.endpoint.ptr,
                                                      it->request.endpoint.len));
    json_object_set_new(o, "scheme", json_string(mock_scheme_name(it->request.scheme)));
    json_object_set_new(o, "plays", json_integer(tch_cassette_play_count_of(mc->c, i)));
    if (it->is_error)
        json_object_set_new(o, "error", json_string(tch_cassette_errcode_name(it->error.code)
                                                        ? tch_cassette_errcode_name(it->error.code)
                                                        : "unknown"));
    if (it->has_delay)
        json_object_set_new(o, "delayMs", json_integer(it->delay_ms));
    if (it->has_fault)
        json_object_set_new(o, "fault", json_string(tch_cassette_errcode_name(it->fault_code)
                                                        ? tch_cassette_errcode_name(it->fault_code)
                                                        : "unknown"));
    return o;
}

json_t *mock_cassette_to_json(const mock *m, const mock_cassette *mc) {
    (void)m;
    json_t *o = json_object(), *list = json_array();
    size_t n = tch_cassette_count(mc->c);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, interaction_to_json(mc, i));
    json_object_set_new(o, "path", mock_json_text(mc->path, strlen(mc->path)));
    json_object_set_new(o, "mode", json_string(tch_cassette_mode_name(tch_cassette_get_mode(mc->c))));
    json_object_set_new(o, "recordTarget", json_boolean(mc->record_target));
    json_object_set_new(o, "canRecord", json_boolean(tch_cassette_can_record(mc->c)));
    json_object_set_new(o, "loadedAtMs", json_integer((json_int_t)mc->loaded_at_ms));
    json_object_set_new(o, "reloads", json_integer(mc->reloads));
    json_object_set_new(o, "plays", json_integer((json_int_t)tch_cassette_play_count(mc->c)));
    json_object_set_new(o, "pendingRecordings", json_integer((json_int_t)mc->pending));
    json_object_set_new(o, "loadError", mc->load_error ? mock_json_text(mc->load_error, strlen(mc->load_error))
                                                       : json_null());
    json_object_set_new(o, "interactions", list);
    return o;
}
