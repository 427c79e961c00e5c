/* Thrift IDL the cassette library decodes bodies with to explain a miss:
 * one file, or a folder of NAME.thrift files (NAME the TChannel service,
 * as Uber's tcurl reads a -t folder). Loaded once, up front: a miss on the
 * event loop never touches the file system. */
#include "cassette_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define THRIFT_SUFFIX ".thrift"

typedef struct thrift_file {
    char *service; /* NAME of NAME.thrift in a folder; NULL for a lone file */
    tch_thrift_idl *idl;
} thrift_file;

struct tch_cassette_thrift {
    thrift_file *files; /* folder entries in name order */
    size_t n;
};

void tch_cassette_thrift_free(tch_cassette_thrift *t) {
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->files[i].service);
        tch_thrift_idl_free(t->files[i].idl);
    }
    free(t->files);
    free(t);
}

static int add_file(tch_cassette_thrift *t, const char *path, const char *service,
                    tch_error *err) {
    thrift_file *f = realloc(t->files, (t->n + 1) * sizeof *f);
    if (!f)
        return tch_error_set(err, TCH_ENOMEM, "thrift IDL %s: out of memory", path);
    t->files = f;
    f = &t->files[t->n];
    f->service = NULL;
    f->idl = NULL;
    if (service && !(f->service = strdup(service)))
        return tch_error_set(err, TCH_ENOMEM, "thrift IDL %s: out of memory", path);
    int rc = tch_thrift_load(path, &f->idl, err);
    if (rc) {
        free(f->service);
        return rc;
    }
    t->n++;
    return 0;
}

static int has_thrift_suffix(const char *name) {
    size_t n = strlen(name), k = sizeof THRIFT_SUFFIX - 1;
    return n > k && strcmp(name + n - k, THRIFT_SUFFIX) == 0;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names of the folder's *.thrift regular files, sorted. */
static int list_folder(const char *dir, char ***names, size_t *n, tch_error *err) {
    DIR *d = opendir(dir);
    if (!d)
        return tch_error_set(err, TCH_EIO, "thrift IDL folder %s: %s", dir, strerror(errno));
    char **v = NULL;
    size_t cnt = 0;
    int rc = 0;
    for (struct dirent *de; !rc && (de = readdir(d));) {
        if (!has_thrift_suffix(de->d_name))
            continue;
        char **nv = realloc(v, (cnt + 1) * sizeof *nv);
        if (!nv || !(nv[cnt] = strdup(de->d_name))) {
            v = nv ? nv : v;
            rc = tch_error_set(err, TCH_ENOMEM, "thrift IDL folder %s: out of memory", dir);
            break;
        }
        v = nv;
        cnt++;
    }
    closedir(d);
    if (cnt)
        qsort(v, cnt, sizeof *v, cmp_name);
    *names = v;
    *n = cnt;
    return rc;
}

static int load_folder(tch_cassette_thrift *t, const char *dir, tch_error *err) {
    char **names = NULL;
    size_t n = 0;
    int rc = list_folder(dir, &names, &n, err);
    size_t dlen = strlen(dir);
    const char *sep = dlen && dir[dlen - 1] == '/' ? "" : "/";
    for (size_t i = 0; !rc && i < n; i++) {
        char *full = malloc(dlen + strlen(names[i]) + 2);
        if (!full) {
            rc = tch_error_set(err, TCH_ENOMEM, "thrift IDL folder %s: out of memory", dir);
            break;
        }
        snprintf(full, dlen + strlen(names[i]) + 2, "%s%s%s", dir, sep, names[i]);
        struct stat st;
        if (stat(full, &st) == 0 && S_ISREG(st.st_mode)) {
            names[i][strlen(names[i]) - (sizeof THRIFT_SUFFIX - 1)] = '\0';
            rc = add_file(t, full, names[i], err);
        }
        free(full);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (!rc && t->n == 0)
        rc = tch_error_set(err, TCH_ENOTFOUND, "thrift IDL folder %s: no .thrift files in it",
                           dir);
    return rc;
}

int tch_cassette_thrift_load(const char *path, tch_cassette_thrift **out, tch_error *err) {
    if (!path || !*path || !out)
        return tch_error_set(err, TCH_EINVAL,
                             "tch_cassette_thrift_load: path and out are required");
    *out = NULL;
    tch_cassette_thrift *t = calloc(1, sizeof *t);
    if (!t)
        return tch_error_set(err, TCH_ENOMEM, "thrift IDL %s: out of memory", path);
    struct stat st;
    int rc;
    if (stat(path, &st) != 0)
        rc = tch_error_set(err, errno == ENOENT ? TCH_ENOTFOUND : TCH_EIO, "thrift IDL %s: %s",
                           path, strerror(errno));
    else if (S_ISDIR(st.st_mode))
        rc = load_folder(t, path, err);
    else
        rc = add_file(t, path, NULL, err);
    if (rc) {
        tch_cassette_thrift_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* The method arg1 names in one IDL, or NULL. */
const tch_thrift_method *tch__cas_idl_method(const tch_thrift_idl *idl, tch_slice endpoint) {
    tch_slice svc, meth;
    if (!idl || tch_thrift_arg1_split(endpoint, &svc, &meth, NULL) != 0)
        return NULL;
    char *s = tch_slice_strdup(svc), *m = tch_slice_strdup(meth);
    const tch_thrift_service *service = s && m ? tch_thrift_idl_find_service(idl, s) : NULL;
    const tch_thrift_method *method = service ? tch_thrift_service_find_method(service, m) : NULL;
    free(s);
    free(m);
    return method;
}

const tch_thrift_method *tch_cassette_thrift_method(const tch_cassette_thrift *t, tch_slice service,
                                                   tch_slice endpoint) {
    if (!t)
        return NULL;
    for (size_t i = 0; i < t->n; i++) /* the service's own file first */
        if (t->files[i].service && tch_slice_eq_cstr(service, t->files[i].service))
            return tch__cas_idl_method(t->files[i].idl, endpoint);
    for (size_t i = 0; i < t->n; i++) {
        const tch_thrift_method *m = tch__cas_idl_method(t->files[i].idl, endpoint);
        if (m)
            return m;
    }
    return NULL;
}
