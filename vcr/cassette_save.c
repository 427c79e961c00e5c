/* Writing cassettes with libyaml's emitter (never hand-built YAML), and the
 * atomic save: temp file in the same directory, fsync, rename, fsync dir.
 *
 * Byte rule (docs/cassettes.md): `headers`/`body` always hold the exact
 * bytes, as tchannel-python expects: a YAML string when the bytes are
 * printable UTF-8 (literal block when multi-line), else !!binary. Beside
 * them, `headersDecoded`/`bodyDecoded` carry a pretty JSON rendering when it
 * adds something: long single-line JSON, thrift headers, or a thrift body
 * the registered renderer decoded. *Decoded is informational on load. */
#include "cassette_internal.h"
#include "cassette_journal.h"

#include <tchannel/json_text.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define TAG_STR "tag:yaml.org,2002:str"
#define TAG_BINARY "tag:yaml.org,2002:binary"
#define TAG_INT "tag:yaml.org,2002:int"
#define TAG_BOOL "tag:yaml.org,2002:bool"
#define TAG_PYTHON_STR "tag:yaml.org,2002:python/str"
#define READABLE_LINE 80 /* single-line JSON longer than this also gets a pretty form */

typedef struct em {
    yaml_emitter_t e;
    const tch_cassette *c;
    cas_emit_filter keep; /* which entries the document holds */
    size_t from;          /* the first entry it may hold */
} em;

static int write_handler(void *data, unsigned char *buffer, size_t size) {
    return tch_buf_append(data, buffer, size) == 0;
}

static int ev(em *m, yaml_event_t *event, int ok) {
    if (!ok)
        return TCH_ENOMEM;
    return yaml_emitter_emit(&m->e, event) ? 0 : TCH_EINVAL;
}

static int scalar(em *m, const char *tag, const void *text, size_t len, int implicit,
                  yaml_scalar_style_t style) {
    yaml_event_t event;
    int ok = yaml_scalar_event_initialize(&event, NULL, (yaml_char_t *)tag, (yaml_char_t *)text,
                                          (int)len, implicit, implicit, style);
    return ev(m, &event, ok);
}

static int key(em *m, const char *k) {
    return scalar(m, TAG_STR, k, strlen(k), 1, YAML_PLAIN_SCALAR_STYLE);
}

static int map_start(em *m) {
    yaml_event_t event;
    return ev(m, &event,
              yaml_mapping_start_event_initialize(&event, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE));
}

static int map_end(em *m) {
    yaml_event_t event;
    return ev(m, &event, yaml_mapping_end_event_initialize(&event));
}

static int seq_start(em *m) {
    yaml_event_t event;
    return ev(m, &event, yaml_sequence_start_event_initialize(&event, NULL, NULL, 1,
                                                              YAML_BLOCK_SEQUENCE_STYLE));
}

static int seq_end(em *m) {
    yaml_event_t event;
    return ev(m, &event, yaml_sequence_end_event_initialize(&event));
}

static int int_value(em *m, long v) {
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld", v);
    return scalar(m, TAG_INT, buf, (size_t)n, 1, YAML_PLAIN_SCALAR_STYLE);
}

/* Python's YAML reads some plain words as non-strings (numbers, yes/no,
 * null, dates); quote anything that does not start with a letter or is
 * one of those words, so tchannel-python reads a string back. */
static bool plain_is_safe(tch_slice s) {
    static const char *const words[] = {"yes", "no", "true", "false", "on", "off", "null", "y",
                                        "n"};
    if (s.len == 0)
        return false;
    uint8_t c0 = s.ptr[0];
    if (!((c0 >= 'a' && c0 <= 'z') || (c0 >= 'A' && c0 <= 'Z')))
        return false;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (s.len == strlen(words[i]) && strncasecmp((const char *)s.ptr, words[i], s.len) == 0)
            return false;
    return true;
}

static bool is_ascii(tch_slice s) {
    for (size_t i = 0; i < s.len; i++)
        if (s.ptr[i] >= 0x80)
            return false;
    return true;
}

/* Exact bytes: string when printable, !!binary otherwise. Text beyond ASCII
 * is tagged !!python/str, as tchannel-python (Python 2) writes it: its YAML
 * reads that as the UTF-8 bytes, where a plain string would be unicode and
 * never equal the bytes of a request. */
static int bytes_value(em *m, tch_slice s) {
    if (tch__cas_is_text(s)) {
        yaml_scalar_style_t style = s.len && memchr(s.ptr, '\n', s.len) ? YAML_LITERAL_SCALAR_STYLE
                                    : plain_is_safe(s)        ? YAML_ANY_SCALAR_STYLE
                                                              : YAML_SINGLE_QUOTED_SCALAR_STYLE;
        const char *text = s.len ? (const char *)s.ptr : "";
        if (!is_ascii(s))
            return scalar(m, TAG_PYTHON_STR, text, s.len, 0, style);
        return scalar(m, TAG_STR, text, s.len, 1, style);
    }
    tch_buf b64 = {.alloc = m->c->alloc};
    int rc = tch_base64_encode(s, 76, &b64);
    if (!rc)
        rc = scalar(m, TAG_BINARY, b64.ptr ? (const char *)b64.ptr : "", b64.len, 0,
                    b64.len > 76 ? YAML_LITERAL_SCALAR_STYLE : YAML_PLAIN_SCALAR_STYLE);
    tch_buf_free(&b64);
    return rc;
}

static int kv_bytes(em *m, const char *k, const tch_buf *b) {
    int rc = key(m, k);
    return rc ? rc : bytes_value(m, tch_buf_slice(b));
}

/* Pretty (2-space) JSON of text, or NULL when it is not JSON. */
static char *json_pretty(const char *text, size_t len) {
    json_error_t jerr;
    json_t *v = json_loadb(text, len, JSON_DECODE_ANY, &jerr);
    if (!v)
        return NULL;
    char *out = tch_json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);
    json_decref(v);
    return out;
}

/* The decoded rendering to write beside the exact bytes, or NULL. */
static char *decoded_for(const em *m, const tch_cassette_request *rq, tch_cassette_part part,
                         int code, tch_slice exact) {
    bool headers = part == TCH_CASSETTE_REQUEST_HEADERS || part == TCH_CASSETTE_RESPONSE_HEADERS;
    char *json = NULL;
    if (exact.len == 0)
        return NULL;
    if (rq->scheme == TCH_CASSETTE_JSON) {
        /* already readable as written: multi-line, or short */
        if (!tch__cas_is_text(exact) || memchr(exact.ptr, '\n', exact.len) || exact.len <= READABLE_LINE)
            return NULL;
        return json_pretty((const char *)exact.ptr, exact.len);
    }
    if (rq->scheme != TCH_CASSETTE_THRIFT)
        return NULL;
    if (headers) /* nh:2 = 0 renders as {}: nothing worth a line */
        json = exact.len > 2 ? tch__cas_thrift_headers_json(exact, false, false) : NULL;
    else if (m->c->opts.render)
        json = m->c->opts.render(tch_buf_slice(&rq->service), tch_buf_slice(&rq->endpoint),
                                 rq->scheme, part, code, exact, m->c->opts.render_ud);
    if (!json)
        return NULL;
    char *pretty = json_pretty(json, strlen(json));
    free(json);
    return pretty;
}

static int kv_decoded(em *m, const char *k, char *text) {
    if (!text)
        return 0;
    size_t len = strlen(text);
    int rc = key(m, k);
    if (!rc)
        rc = scalar(m, TAG_STR, text, len, 1,
                    strchr(text, '\n') ? YAML_LITERAL_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE);
    free(text);
    return rc;
}

static int emit_peers(em *m, const tch_cassette_request *r) {
    int rc = key(m, "knownPeers");
    if (!rc)
        rc = seq_start(m);
    for (size_t i = 0; !rc && i < r->n_known_peers; i++)
        rc = bytes_value(m, tch_buf_slice(&r->known_peers[i]));
    return rc ? rc : seq_end(m);
}

static int emit_theaders(em *m, const tch_cassette_request *r) {
    int rc = key(m, "transportHeaders");
    if (!rc)
        rc = seq_start(m);
    for (size_t i = 0; !rc && i < r->n_transport_headers; i++) {
        rc = map_start(m);
        if (!rc)
            rc = kv_bytes(m, "key", &r->transport_headers[i].key);
        if (!rc)
            rc = kv_bytes(m, "value", &r->transport_headers[i].value);
        if (!rc)
            rc = map_end(m);
    }
    return rc ? rc : seq_end(m);
}

/* Keys in PyYAML's sorted order, so our files diff cleanly against
 * tchannel-python's; *Decoded sorts right after its exact field. */
static int emit_request(em *m, const tch_cassette_request *r) {
    int rc = key(m, "request");
    if (!rc)
        rc = map_start(m);
    if (!rc && !(rc = key(m, "argScheme")))
        rc = int_value(m, r->scheme);
    if (!rc)
        rc = kv_bytes(m, "body", &r->body);
    if (!rc)
        rc = kv_decoded(m, "bodyDecoded",
                        decoded_for(m, r, TCH_CASSETTE_REQUEST_BODY, 0, tch_buf_slice(&r->body)));
    if (!rc)
        rc = kv_bytes(m, "endpoint", &r->endpoint);
    if (!rc)
        rc = kv_bytes(m, "headers", &r->headers);
    if (!rc)
        rc = kv_decoded(m, "headersDecoded", decoded_for(m, r, TCH_CASSETTE_REQUEST_HEADERS, 0,
                                                         tch_buf_slice(&r->headers)));
    if (!rc)
        rc = kv_bytes(m, "hostPort", &r->host_port);
    if (!rc)
        rc = emit_peers(m, r);
    if (!rc)
        rc = kv_bytes(m, "serviceName", &r->service);
    if (!rc)
        rc = emit_theaders(m, r);
    return rc ? rc : map_end(m);
}

static int emit_response(em *m, const tch_cassette_request *rq, const tch_cassette_response *r) {
    int rc = key(m, "response");
    if (!rc)
        rc = map_start(m);
    if (!rc)
        rc = kv_bytes(m, "body", &r->body);
    if (!rc)
        rc = kv_decoded(m, "bodyDecoded", decoded_for(m, rq, TCH_CASSETTE_RESPONSE_BODY, r->code,
                                                      tch_buf_slice(&r->body)));
    if (!rc && !(rc = key(m, "code")))
        rc = int_value(m, r->code);
    if (!rc)
        rc = kv_bytes(m, "headers", &r->headers);
    if (!rc)
        rc = kv_decoded(m, "headersDecoded", decoded_for(m, rq, TCH_CASSETTE_RESPONSE_HEADERS,
                                                         r->code, tch_buf_slice(&r->headers)));
    return rc ? rc : map_end(m);
}

static int emit_error_frame(em *m, const char *k, uint8_t code, const char *message,
                            int local) {
    const char *name = tch_cassette_errcode_name(code);
    int rc = key(m, k);
    if (!rc && !message && name) /* fault without message: `fault: busy` */
        return scalar(m, TAG_STR, name, strlen(name), 1, YAML_PLAIN_SCALAR_STYLE);
    if (!rc)
        rc = map_start(m);
    if (!rc && !(rc = key(m, "code")))
        rc = name ? scalar(m, TAG_STR, name, strlen(name), 1, YAML_PLAIN_SCALAR_STYLE)
                  : int_value(m, code);
    if (!rc && !(rc = key(m, "message")))
        rc = bytes_value(m, tch_slice_cstr(message ? message : ""));
    if (!rc && local && !(rc = key(m, "local")))
        rc = scalar(m, TAG_BOOL, "true", 4, 1, YAML_PLAIN_SCALAR_STYLE);
    return rc ? rc : map_end(m);
}

static int emit_interaction(em *m, const tch_cassette_interaction *it) {
    if (it->stub) /* rules and extras as they were written (stub_emit.c) */
        return tch__cas_stub_emit(&m->e, it);
    int rc = map_start(m);
    if (!rc)
        rc = emit_request(m, &it->request);
    if (!rc)
        rc = it->is_error ? emit_error_frame(m, "error", it->error.code, it->error.message,
                                             it->error.local)
                          : emit_response(m, &it->request, &it->response);
    if (!rc && it->has_delay && !(rc = key(m, "delay")))
        rc = int_value(m, (long)it->delay_ms);
    if (!rc && it->has_fault)
        rc = emit_error_frame(m, "fault", it->fault_code, it->fault_message, 0);
    return rc ? rc : map_end(m);
}

/* What the file keeps: every finished interaction in slot order, except
 * that mode ALL forgets what the file held (tchannel-python save_unplayed). */
bool tch__cas_keep_saved(const tch_cassette *c, const cas_entry *e) {
    if (e->state == ST_PENDING || e->state == ST_ABORTED || e->runtime) /* run-time stubs stay */
        return false;
    return !(c->mode == TCH_CASSETTE_ALL && e->from_file);
}

bool tch__cas_keep_finished(const tch_cassette *c, const cas_entry *e) {
    (void)c;
    return e->state != ST_PENDING && e->state != ST_ABORTED && !e->runtime;
}

bool tch__cas_keep_unsaved(const tch_cassette *c, const cas_entry *e) {
    (void)c;
    return e->state == ST_DONE;
}

static int emit_document(em *m) {
    yaml_event_t event;
    int rc = ev(m, &event, yaml_stream_start_event_initialize(&event, YAML_UTF8_ENCODING));
    if (!rc)
        rc = ev(m, &event, yaml_document_start_event_initialize(&event, NULL, NULL, NULL, 1));
    if (!rc)
        rc = map_start(m);
    if (!rc && !(rc = key(m, "interactions")))
        rc = seq_start(m);
    for (size_t i = m->from; !rc && i < m->c->n; i++)
        if (m->keep(m->c, m->c->items[i]))
            rc = emit_interaction(m, &m->c->items[i]->it);
    if (!rc)
        rc = seq_end(m);
    if (!rc && !(rc = key(m, "version")))
        rc = int_value(m, 1);
    if (!rc)
        rc = map_end(m);
    if (!rc)
        rc = ev(m, &event, yaml_document_end_event_initialize(&event, 1));
    if (!rc)
        rc = ev(m, &event, yaml_stream_end_event_initialize(&event));
    return rc;
}

int tch_cassette_emit(const tch_cassette *c, tch_buf *out, tch_error *err) {
    return tch__cas_emit_some(c, tch__cas_keep_saved, 0, out, err);
}

int tch__cas_emit_some(const tch_cassette *c, cas_emit_filter keep, size_t from, tch_buf *out,
                  tch_error *err) {
    em m = {.c = c, .keep = keep, .from = from};
    if (!yaml_emitter_initialize(&m.e))
        return tch_error_set(err, TCH_ENOMEM, "cassette %s: yaml emitter", c->name);
    yaml_emitter_set_output(&m.e, write_handler, out);
    yaml_emitter_set_unicode(&m.e, 1);
    yaml_emitter_set_width(&m.e, -1); /* never fold exact bytes across lines */
    int rc = emit_document(&m);
    if (!rc && !yaml_emitter_flush(&m.e))
        rc = TCH_ENOMEM;
    /* a writer error is write_handler's: out's memory ran out */
    if (rc && (m.e.error == YAML_WRITER_ERROR || m.e.error == YAML_MEMORY_ERROR))
        rc = TCH_ENOMEM;
    if (rc)
        tch_error_set(err, rc, "cassette %s: writing YAML: %s", c->name,
                      rc == TCH_ENOMEM || !m.e.problem ? tch_strerror(rc) : m.e.problem);
    yaml_emitter_delete(&m.e);
    return rc;
}

/* ---- atomic save ------------------------------------------------------- */

/* mkdir -p of the cassette's directory (tchannel-python creates it too). */
int tch__cas_make_dirs(const tch_allocator *a, const char *dir, tch_error *err) {
    char *p = tch__strdup(a, dir);
    if (!p)
        return tch_error_set(err, TCH_ENOMEM, "cassette dir %s", dir);
    for (char *s = p + 1;; s++) {
        char saved_ch = *s;
        if (saved_ch != '/' && saved_ch != '\0')
            continue;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            int e = errno;
            tch_error_set(err, TCH_EIO, "creating directory %s: %s", p, strerror(e));
            tch__free(a, p);
            return TCH_EIO;
        }
        *s = saved_ch;
        if (saved_ch == '\0')
            break;
    }
    tch__free(a, p);
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

void tch__cas_fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) { /* best effort: some filesystems refuse fsync on a directory */
        (void)fsync(fd);
        close(fd);
    }
}

/* Writes data to path by way of a temporary file beside it, named
 * .NAME.tmp.PID.XXXXXX so that a later start can tell a temp file of a
 * process that died mid-save (cas_remove_stale_temps); messages name
 * `shown` (what the user asked for). */
static int write_atomic_at(const tch_allocator *a, const char *path, const char *shown,
                           tch_slice data, tch_error *err) {
    char *pcopy = tch__strdup(a, path), *bcopy = tch__strdup(a, path);
    char *tmp = NULL;
    int rc = TCH_ENOMEM, fd = -1;
    if (!pcopy || !bcopy)
        goto out;
    const char *dir = dirname(pcopy), *base = basename(bcopy);
    size_t tlen = strlen(dir) + strlen(base) + 48;
    if (!(tmp = tch__malloc(a, tlen)))
        goto out;
    snprintf(tmp, tlen, "%s/.%s" CAS_TEMP_INFIX "%ld.XXXXXX", dir, base, (long)getpid());
    if ((rc = tch__cas_make_dirs(a, dir, err)))
        goto out;
    rc = TCH_EIO;
    if ((fd = mkstemp(tmp)) < 0) {
        tch_error_set(err, rc, "cassette %s: creating temp file: %s", shown, strerror(errno));
        goto out;
    }
    struct stat st;
    mode_t mode = stat(path, &st) == 0 ? (st.st_mode & 07777) : 0644;
    if (fchmod(fd, mode) != 0 || write_all(fd, data.ptr, data.len) != 0 || fsync(fd) != 0) {
        tch_error_set(err, rc, "cassette %s: writing %s: %s", shown, tmp, strerror(errno));
        goto out_unlink;
    }
    if (close(fd) != 0) {
        fd = -1;
        tch_error_set(err, rc, "cassette %s: closing %s: %s", shown, tmp, strerror(errno));
        goto out_unlink;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        tch_error_set(err, rc, "cassette %s: renaming %s: %s", shown, tmp, strerror(errno));
        goto out_unlink;
    }
    tch__cas_fsync_dir(dir);
    rc = 0;
    goto out;
out_unlink:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
out:
    if (rc == TCH_ENOMEM)
        tch_error_set(err, rc, "cassette %s: out of memory", shown);
    tch__free(a, tmp);
    tch__free(a, pcopy);
    tch__free(a, bcopy);
    return rc;
}

/* Through a symlink, writes (and renames) beside its target, as Python's
 * open(path, "wb") writes through it: the link stays a link. */
int tch__cas_write_atomic(const tch_allocator *a, const char *path, tch_slice data,
                          tch_error *err) {
    char *real = realpath(path, NULL); /* NULL: no file yet, or a dangling link */
    int rc = write_atomic_at(a, real ? real : path, path, data, err);
    free(real); /* realpath's: the C library's */
    return rc;
}

/* The file now holds every finished recording: as in tchannel-python, what
 * was recorded can be replayed once saved. */
int tch__cas_prepare_saved(tch_cassette *c, size_t from, tch_error *err) {
    return tch__cas_index_prepare(c, from)
               ? tch_error_set(err, TCH_ENOMEM, "cassette %s: out of memory (indexing)", c->name)
               : 0;
}

void tch__cas_mark_saved(tch_cassette *c, size_t from) {
    c->dirty = false;
    if (c->mode == TCH_CASSETTE_ALL)
        c->only_this_run = true;
    for (size_t i = from; i < c->n; i++) {
        cas_entry *e = c->items[i];
        if (e->state == ST_DONE) {
            e->state = ST_LOADED;
            /* allocates nothing after tch__cas_prepare_saved, so cannot fail */
            (void)tch__cas_index_entry(c, i);
        }
    }
}

int tch_cassette_save(tch_cassette *c, tch_error *err) {
    if (!c->dirty)
        return 0; /* nothing new: never touch the file */
    if (!c->path)
        return tch_error_set(err, TCH_EINVAL, "cassette %s: loaded from memory, no path to save",
                             c->name);
    tch_buf out = {.alloc = c->alloc};
    int rc = tch__cas_prepare_saved(c, 0, err);
    if (!rc)
        rc = tch_cassette_emit(c, &out, err);
    if (!rc) /* folds a journal left beside the file, whose records c holds */
        rc = tch__cas_journal_replace_file(c, NULL, tch_buf_slice(&out), err);
    tch_buf_free(&out);
    if (!rc)
        tch__cas_mark_saved(c, 0);
    return rc;
}
