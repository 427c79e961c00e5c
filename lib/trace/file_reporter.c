/* A span reporter that appends Zipkin v2 JSON, one span per line, to a
 * file: for tests, and for shipping spans with a log collector. */
#include <tchannel/trace.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct tch_file_reporter {
    FILE *f;
    char *path;
    uint64_t written, failed;
    char first_error[160]; /* the first write that failed, for close */
};

/* Spans are written on the event loop, so the file must be one whose
 * writes cannot wait on a reader: a FIFO or a device is refused, and the
 * open itself does not wait (O_NONBLOCK) for a FIFO's reader. */
static int not_regular(const char *path, tch_error *err) {
    return tch_error_set(err, TCH_EINVAL, "span file %s: not a regular file (a FIFO, socket or "
                         "device could block the event loop)", path);
}

static int open_regular(tch_file_reporter *r, const char *path, tch_error *err) {
    struct stat st;
    /* a FIFO without a reader fails the open (ENXIO): say what it is */
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return not_regular(path, err);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NONBLOCK | O_CLOEXEC, 0666);
    if (fd < 0)
        return tch_error_set(err, TCH_EIO, "span file %s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return tch_error_set(err, TCH_EIO, "span file %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) { /* it was swapped since the stat */
        close(fd);
        return not_regular(path, err);
    }
    if (!(r->f = fdopen(fd, "a"))) {
        int e = errno;
        close(fd);
        return tch_error_set(err, TCH_EIO, "span file %s: %s", path, strerror(e));
    }
    return 0;
}

int tch_file_reporter_open(const char *path, tch_file_reporter **out, tch_error *err) {
    if (!out)
        return tch_error_set(err, TCH_EINVAL, "span file: out is NULL");
    *out = NULL;
    if (!path || !*path)
        return tch_error_set(err, TCH_EINVAL, "span file: a path is required");
    tch_file_reporter *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r);
        return tch_error_set(err, TCH_ENOMEM, "span file: out of memory");
    }
    int rc = open_regular(r, path, err);
    if (rc != 0) {
        free(r->path);
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

static void note_failure(tch_file_reporter *r, const char *why) {
    if (r->failed++ == 0)
        snprintf(r->first_error, sizeof r->first_error, "%s", why);
}

static void report(const tch_span *span, void *ud) {
    tch_file_reporter *r = ud;
    char *line = tch_span_to_json(span);
    if (!line) {
        note_failure(r, "out of memory");
        return;
    }
    /* one whole line per span, out before returning: a reader tailing the
     * file never sees half a span, and a crash loses none written */
    if (fputs(line, r->f) < 0 || fputc('\n', r->f) == EOF || fflush(r->f) != 0)
        note_failure(r, strerror(errno));
    else
        r->written++;
    free(line);
}

tch_span_reporter tch_file_reporter_iface(tch_file_reporter *r) {
    return (tch_span_reporter){report, r};
}

uint64_t tch_file_reporter_written(const tch_file_reporter *r) { return r->written; }
uint64_t tch_file_reporter_failed(const tch_file_reporter *r) { return r->failed; }

int tch_file_reporter_close(tch_file_reporter *r, tch_error *err) {
    if (!r)
        return 0;
    int rc = 0;
    if (fclose(r->f) != 0)
        note_failure(r, strerror(errno));
    if (r->failed)
        rc = tch_error_set(err, TCH_EIO, "span file %s: %llu span(s) not written: %s",
                           r->path, (unsigned long long)r->failed, r->first_error);
    free(r->path);
    free(r);
    return rc;
}
