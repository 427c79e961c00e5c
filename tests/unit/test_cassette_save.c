/* Writing: exact bytes survive save+load for raw binary, printable text,
 * JSON and thrift; the decoded forms are written; saves are atomic, leave
 * no temp files, happen only when something new was recorded, and keep what
 * the file already held. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <tchannel/cassette.h>

static tch_slice S(const char *s) { return tch_slice_cstr(s); }

static char *tmp_dir(void) {
    char *d = strdup("/tmp/cassette_save_XXXXXX");
    assert_non_null(d);
    assert_non_null(mkdtemp(d));
    return d;
}

static char *join(const char *dir, const char *name) {
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    assert_non_null(p);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

static size_t count_entries(const char *dir) {
    DIR *d = opendir(dir);
    size_t n = 0;
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

static void rm_tree(char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        for (struct dirent *e; (e = readdir(d));) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char *p = join(dir, e->d_name);
            struct stat st;
            if (stat(p, &st) == 0 && S_ISDIR(st.st_mode))
                rm_tree(strdup(p));
            else
                unlink(p);
            free(p);
        }
        closedir(d);
    }
    rmdir(dir);
    free(dir);
}

static tch_cassette *open_opts(const char *path, tch_cassette_mode mode, tch_cassette_render_cb r) {
    tch_cassette_options o;
    tch_cassette *c = NULL;
    tch_error err = {0};
    tch_cassette_options_init(&o);
    o.mode = mode;
    o.no_env_override = 1;
    o.render = r;
    if (tch_cassette_open(path, &o, &c, &err))
        fail_msg("open %s: %s", path, err.msg);
    return c;
}

typedef struct sample {
    const char *name;
    tch_cassette_scheme scheme;
    tch_slice headers, body;
} sample;

static void record_sample(tch_cassette *c, const sample *s) {
    tch_kv th[] = {{S("as"), S("raw")}, {S("weird"), tch_slice_of("\x00\xff", 2)}};
    tch_slice peers[] = {S("127.0.0.1:1"), S("yes")};
    tch_cassette_call call = {.service = S("keyvalue-server"), .endpoint = S(s->name),
                              .headers = s->headers, .body = s->body, .scheme = s->scheme,
                              .host_port = S("127.0.0.1:1"), .known_peers = peers,
                              .n_known_peers = 2, .transport_headers = th,
                              .n_transport_headers = 2};
    tch_cassette_slot slot;
    tch_error err = {0};
    assert_int_equal(tch_cassette_record_begin(c, &call, &slot, &err), 0);
    tch_cassette_reply r = {1, s->headers, s->body}; /* echo back, as an application error */
    assert_int_equal(tch_cassette_record_finish(c, slot, &r, &err), 0);
}

static char *render_thrift(tch_slice svc, tch_slice ep, tch_cassette_scheme scheme,
                           tch_cassette_part part, int code, tch_slice bytes, void *ud) {
    (void)ud, (void)svc, (void)ep, (void)code, (void)bytes;
    if (scheme != TCH_CASSETTE_THRIFT || part != TCH_CASSETTE_REQUEST_BODY)
        return NULL;
    return strdup("{\"key\":\"foo\"}");
}

static void save_then_load_keeps_bytes_exact(void **state) {
    (void)state;
    uint8_t all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    const uint8_t thrift_args[] = {0x0b, 0, 1, 0, 0, 0, 3, 'f', 'o', 'o', 0};
    const uint8_t thrift_hdr[] = {0, 1, 0, 1, 'k', 0, 1, 'v'};
    const char *long_json = "{\"items\":[{\"key\":\"a\",\"value\":\"1\"},{\"key\":\"b\",\"value\":"
                            "\"2\"}],\"comment\":\"long enough to be written decoded too\","
                            "\"ratio\":0.1}";
    const sample samples[] = {
        {"binary", TCH_CASSETTE_RAW, S(""), tch_slice_of(all, sizeof all)},
        {"text", TCH_CASSETTE_RAW, S("h: 1"), S("  leading spaces, 'quotes' and \"double\"\t")},
        {"unicode", TCH_CASSETTE_RAW, S(""), S("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80")},
        {"multiline", TCH_CASSETTE_RAW, S(""), S("line one\n  line two  \n\n\n")},
        {"no-final-newline", TCH_CASSETTE_RAW, S(""), S("a\nb")},
        {"crlf", TCH_CASSETTE_RAW, S(""), S("a\r\nb\r\n")},
        {"looks-like-int", TCH_CASSETTE_RAW, S("123"), S("yes")},
        {"null-ish", TCH_CASSETTE_RAW, S("~"), S("null")},
        {"json-compact", TCH_CASSETTE_JSON, S("{\"a\":1}"), S(long_json)},
        {"json-pretty", TCH_CASSETTE_JSON, S("{}"), S("{\n  \"a\": [\n    1\n  ]\n}")},
        {"json-odd", TCH_CASSETTE_JSON, S("{ \"$tracing$x\" : \"y\" }"), S("[1.50, 2e3]")},
        {"thrift", TCH_CASSETTE_THRIFT, tch_slice_of(thrift_hdr, sizeof thrift_hdr),
         tch_slice_of(thrift_args, sizeof thrift_args)},
        {"empty", TCH_CASSETTE_RAW, S(""), S("")},
    };
    const size_t n = sizeof samples / sizeof samples[0];
    char *dir = tmp_dir();
    char *path = join(dir, "sub/dir/roundtrip.yaml"); /* directories are created */
    tch_cassette *c = open_opts(path, TCH_CASSETTE_ONCE, render_thrift);
    for (size_t i = 0; i < n; i++)
        record_sample(c, &samples[i]);
    tch_buf text = {0};
    tch_error err = {0};
    assert_int_equal(tch_cassette_emit(c, &text, &err), 0);
    assert_int_equal(tch_buf_append(&text, "", 1), 0);
    const char *y = (const char *)text.ptr;
    assert_non_null(strstr(y, "body: !!binary"));
    assert_non_null(strstr(y, "bodyDecoded: |-\n      {\n        \"items\": ["));
    assert_non_null(strstr(y, "\"ratio\": 0.1\n")); /* as written, not 0.10000000000000001 */
    assert_non_null(strstr(y, "headersDecoded: |-\n      {\n        \"k\": \"v\"\n      }"));
    assert_non_null(strstr(y, "body: \"line one\\n  line two  \\n\\n\\n\"")); /* trailing spaces: quoted */
    assert_non_null(strstr(y, "body: |-\n      a\n      b\n")); /* literal block, no final newline */
    assert_non_null(strstr(y, "bodyDecoded: |-\n      {\n        \"key\": \"foo\"\n      }"));
    assert_non_null(strstr(y, "body: 'yes'")); /* quoted so Python reads a string */
    /* beyond ASCII: tagged as Python 2 writes it, so it reads the UTF-8 bytes back */
    assert_non_null(strstr(y, "body: !!python/str \"caf\xc3\xa9 \xe2\x82\xac \\U0001F600\"\n"));
    tch_buf_free(&text);
    assert_int_equal(tch_cassette_save(c, &err), 0);
    tch_cassette_free(c);

    c = open_opts(path, TCH_CASSETTE_NONE, NULL);
    assert_int_equal(tch_cassette_count(c), n);
    for (size_t i = 0; i < n; i++) {
        const tch_cassette_interaction *it = tch_cassette_get(c, i);
        assert_non_null(it);
        if (!tch_slice_eq(tch_buf_slice(&it->request.body), samples[i].body) ||
            !tch_slice_eq(tch_buf_slice(&it->response.body), samples[i].body) ||
            !tch_slice_eq(tch_buf_slice(&it->request.headers), samples[i].headers))
            fail_msg("sample %s did not round-trip", samples[i].name);
        assert_int_equal(it->request.scheme, samples[i].scheme);
        assert_int_equal(it->response.code, 1);
        assert_true(tch_slice_eq(tch_buf_slice(&it->request.transport_headers[1].value),
                                 tch_slice_of("\x00\xff", 2)));
        assert_true(tch_slice_eq_cstr(tch_buf_slice(&it->request.known_peers[1]), "yes"));
    }
    tch_cassette_free(c);
    free(path);
    rm_tree(dir);
}

static void atomic_save_leaves_no_temp_files(void **state) {
    (void)state;
    char *dir = tmp_dir();
    char *path = join(dir, "a.yaml");
    tch_cassette *c = open_opts(path, TCH_CASSETTE_ONCE, NULL);
    const sample s = {"echo", TCH_CASSETTE_RAW, S(""), S("x")};
    record_sample(c, &s);
    tch_error err = {0};
    assert_int_equal(tch_cassette_save(c, &err), 0);
    record_sample(c, &s);
    assert_int_equal(tch_cassette_save(c, &err), 0);
    assert_int_equal(count_entries(dir), 1);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    tch_cassette_free(c);
    /* a directory in the way: the save fails cleanly, nothing left behind */
    char *blocked = join(dir, "blocked.yaml");
    c = open_opts(blocked, TCH_CASSETTE_ONCE, NULL);
    assert_int_equal(mkdir(blocked, 0755), 0);
    record_sample(c, &s);
    assert_int_equal(tch_cassette_save(c, &err), TCH_EIO);
    assert_non_null(strstr(err.msg, "renaming"));
    assert_int_equal(count_entries(dir), 2);
    assert_true(tch_cassette_dirty(c)); /* still unsaved */
    tch_cassette_free(c);
    free(blocked);
    free(path);
    rm_tree(dir);
}

/* A cassette reached through a symlink is written to the link's target,
 * as Python's open(path, "wb") does; the link stays a link. */
static void save_writes_through_a_symlink(void **state) {
    (void)state;
    char *dir = tmp_dir();
    char *shared = join(dir, "shared");
    assert_int_equal(mkdir(shared, 0755), 0);
    char *real = join(shared, "real.yaml"), *link = join(dir, "link.yaml");
    tch_cassette *c = open_opts(real, TCH_CASSETTE_ONCE, NULL);
    const sample a = {"first", TCH_CASSETTE_RAW, S(""), S("a")};
    record_sample(c, &a);
    tch_error err = {0};
    assert_int_equal(tch_cassette_save(c, &err), 0);
    tch_cassette_free(c);
    assert_int_equal(symlink(real, link), 0);
    c = open_opts(link, TCH_CASSETTE_NEW_EPISODES, NULL);
    const sample b = {"second", TCH_CASSETTE_RAW, S(""), S("b")};
    record_sample(c, &b);
    assert_int_equal(tch_cassette_save(c, &err), 0);
    tch_cassette_free(c);
    struct stat st;
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    c = open_opts(real, TCH_CASSETTE_NONE, NULL);
    assert_int_equal(tch_cassette_count(c), 2); /* the target holds both */
    tch_cassette_free(c);
    assert_int_equal(count_entries(shared), 1); /* no temp file left beside it */
    unlink(link);
    unlink(real);
    rmdir(shared);
    free(real);
    free(link);
    free(shared);
    rm_tree(dir);
}

static void nothing_written_when_nothing_new(void **state) {
    (void)state;
    char *dir = tmp_dir();
    char *path = join(dir, "n.yaml");
    tch_cassette *c = open_opts(path, TCH_CASSETTE_ONCE, NULL);
    tch_error err = {0};
    assert_int_equal(tch_cassette_save(c, &err), 0);
    assert_int_equal(access(path, F_OK), -1); /* a fresh cassette with no calls: no file */
    const sample s = {"echo", TCH_CASSETTE_RAW, S(""), S("x")};
    record_sample(c, &s);
    assert_int_equal(tch_cassette_save(c, &err), 0);
    tch_cassette_free(c);

    struct stat before, after;
    assert_int_equal(stat(path, &before), 0);
    c = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    tch_cassette_call call = {.service = S("keyvalue-server"), .endpoint = S("echo"), .body = S("x"),
                              .scheme = TCH_CASSETTE_RAW};
    tch_cassette_decision d;
    assert_int_equal(tch_cassette_lookup(c, &call, &d, &err), 0);
    assert_int_equal(d.action, TCH_CASSETTE_ACT_REPLAY);
    tch_cassette_decision_clear(&d);
    /* an aborted recording is nothing new either */
    tch_cassette_slot slot;
    assert_int_equal(tch_cassette_record_begin(c, &call, &slot, &err), 0);
    assert_int_equal(tch_cassette_record_abort(c, slot, &err), 0);
    assert_false(tch_cassette_dirty(c));
    assert_int_equal(tch_cassette_save(c, &err), 0);
    tch_cassette_free(c);
    assert_int_equal(stat(path, &after), 0);
    assert_int_equal(before.st_ino, after.st_ino); /* a rewrite would be a new inode */
    free(path);
    rm_tree(dir);
}

static void resave_keeps_python_cassette(void **state) {
    (void)state;
    char *dir = tmp_dir();
    char *path = join(dir, "py2.yaml");
    FILE *in = fopen(TCH_SOURCE_DIR "/tests/fixtures/cassettes/py2.yaml", "rb");
    FILE *out = fopen(path, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[4096];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, in)) > 0)
        assert_int_equal(fwrite(buf, 1, k, out), k);
    fclose(in);
    fclose(out);
    tch_cassette *orig = open_opts(path, TCH_CASSETTE_NONE, NULL);
    tch_cassette *c = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    const sample s = {"new", TCH_CASSETTE_RAW, S(""), S("n")};
    record_sample(c, &s);
    tch_error err = {0};
    assert_int_equal(tch_cassette_save(c, &err), 0);
    tch_cassette_free(c);
    c = open_opts(path, TCH_CASSETTE_NONE, NULL);
    assert_int_equal(tch_cassette_count(c), 4);
    for (size_t i = 0; i < 3; i++) {
        const tch_cassette_interaction *a = tch_cassette_get(orig, i), *b = tch_cassette_get(c, i);
        assert_true(tch_slice_eq(tch_buf_slice(&a->request.body), tch_buf_slice(&b->request.body)));
        assert_true(tch_slice_eq(tch_buf_slice(&a->request.headers), tch_buf_slice(&b->request.headers)));
        assert_true(tch_slice_eq(tch_buf_slice(&a->response.body), tch_buf_slice(&b->response.body)));
        assert_int_equal(a->request.scheme, b->request.scheme);
    }
    tch_cassette_free(c);
    tch_cassette_free(orig);
    free(path);
    rm_tree(dir);
}

static void decoded_is_ignored_when_exact_bytes_exist(void **state) {
    (void)state;
    const char *y = "version: 1\ninteractions:\n- request: {argScheme: 1, body: '{\"a\":1}', "
                    "bodyDecoded: '{\"a\": 2}'}\n  response: {body: x}\n";
    tch_cassette *c = NULL;
    tch_error err = {0};
    assert_int_equal(tch_cassette_open_memory("d", y, strlen(y), NULL, &c, &err), 0);
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&tch_cassette_get(c, 0)->request.body), "{\"a\":1}"));
    assert_int_equal(tch_cassette_save(c, &err), 0); /* nothing new: fine even without a path */
    tch_cassette_free(c);
    const char *t = "version: 1\ninteractions:\n- request: {argScheme: 2, bodyDecoded: '{}'}\n"
                    "  response: {body: x}\n";
    assert_int_equal(tch_cassette_open_memory("d", t, strlen(t), NULL, &c, &err), TCH_EPARSE);
    assert_non_null(strstr(err.msg, "bodyDecoded without body"));
}


/* ---- the journal ------------------------------------------------------------ */

static void record_body(tch_cassette *c, const char *body) {
    const sample s = {"echo", TCH_CASSETTE_RAW, S(""), S(body)};
    record_sample(c, &s);
}

static tch_cassette_journal *journal_of(tch_cassette *c, char **note) {
    tch_cassette_journal *j = NULL;
    tch_error err = {0};
    if (tch_cassette_journal_open(c, &j, note, &err))
        fail_msg("journal open: %s", err.msg);
    return j;
}

static void commit(tch_cassette_journal *j) {
    tch_error err = {0};
    if (tch_cassette_journal_commit(j, &err))
        fail_msg("commit: %s", err.msg);
}

static off_t size_of(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* What a reader opening the cassette now sees: bodies in order, joined by ','. */
static void assert_bodies(const char *path, const char *want) {
    tch_cassette *c = open_opts(path, TCH_CASSETTE_NONE, NULL);
    char got[512] = "";
    for (size_t i = 0; i < tch_cassette_count(c); i++) {
        const tch_cassette_interaction *it = tch_cassette_get(c, i);
        assert_non_null(it);
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%.*s", i ? "," : "",
                 (int)it->request.body.len, (const char *)it->request.body.ptr);
    }
    tch_cassette_free(c);
    assert_string_equal(got, want);
}

/* Commits append to PATH.journal only (the file is not rewritten), cost the
 * same however many recordings came before, and every reader sees them. */
static void journal_commits_append_and_readers_see_them(void **state) {
    (void)state;
    char *dir = tmp_dir();
    char *path = join(dir, "j.yaml"), *jpath = join(dir, "j.yaml.journal");
    tch_cassette *c = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    tch_cassette_journal *j = journal_of(c, NULL);
    record_body(c, "one");
    record_body(c, "two");
    commit(j);
    assert_false(tch_cassette_dirty(c));
    assert_int_equal(tch_cassette_journal_pending(j), 2);
    assert_int_equal(access(path, F_OK), -1); /* no file yet: the journal holds them */
    assert_bodies(path, "one,two");
    off_t before = size_of(jpath);
    record_body(c, "six");
    commit(j);
    off_t grew = size_of(jpath) - before;
    for (int i = 0; i < 50; i++)
        record_body(c, "pad"), commit(j);
    before = size_of(jpath);
    record_body(c, "six");
    commit(j);
    assert_int_equal(size_of(jpath) - before, grew); /* the same cost, 50 recordings later */
    /* committed counts as saved: replayable now, as after tch_cassette_save */
    tch_cassette_call call = {.service = S("keyvalue-server"), .endpoint = S("echo"),
                              .body = S("one"), .scheme = TCH_CASSETTE_RAW};
    tch_cassette_decision d;
    tch_error err = {0};
    assert_int_equal(tch_cassette_lookup(c, &call, &d, &err), 0);
    assert_int_equal(d.action, TCH_CASSETTE_ACT_REPLAY);
    tch_cassette_decision_clear(&d);
    tch_cassette_journal_free(j);
    tch_cassette_free(c);
    free(path);
    free(jpath);
    rm_tree(dir);
}

/* A fold writes an ordinary cassette (what tchannel-python reads) and
 * removes the journal; nothing is read twice. */
static void fold_writes_the_file_and_removes_the_journal(void **state) {
    (void)state;
    char *dir = tmp_dir();
    char *path = join(dir, "f.yaml"), *jpath = join(dir, "f.yaml.journal");
    tch_cassette *c = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    tch_cassette_journal *j = journal_of(c, NULL);
    tch_error err = {0};
    assert_int_equal(tch_cassette_journal_fold(j, &err), 0); /* nothing to fold: no file */
    assert_int_equal(access(path, F_OK), -1);
    record_body(c, "a");
    commit(j);
    record_body(c, "b"); /* not committed: the fold saves it too */
    assert_int_equal(tch_cassette_journal_fold(j, &err), 0);
    assert_int_equal(access(jpath, F_OK), -1);
    assert_int_equal(tch_cassette_journal_pending(j), 0);
    assert_int_equal(count_entries(dir), 1);
    assert_bodies(path, "a,b");
    /* the file alone is the cassette */
    FILE *fp = fopen(path, "rb");
    char text[4096];
    size_t n = fread(text, 1, sizeof text, fp);
    fclose(fp);
    tch_cassette *mem = NULL;
    assert_int_equal(tch_cassette_open_memory("folded", text, n, NULL, &mem, &err), 0);
    assert_int_equal(tch_cassette_count(mem), 2);
    tch_cassette_free(mem);
    record_body(c, "c");
    commit(j); /* a new journal, on top of the folded file */
    assert_bodies(path, "a,b,c");
    tch_cassette_journal_free(j);
    tch_cassette_free(c);
    free(path);
    free(jpath);
    rm_tree(dir);
}

/* kill -9 at any point: the next writer folds what the journal holds; a
 * torn last record (the crash came while writing it) is dropped, and said. */
static void a_torn_last_record_is_dropped_and_said(void **state) {
    (void)state;
    char *dir = tmp_dir();
    char *path = join(dir, "t.yaml"), *jpath = join(dir, "t.yaml.journal");
    tch_cassette *c = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    tch_cassette_journal *j = journal_of(c, NULL);
    record_body(c, "kept");
    commit(j);
    off_t whole = size_of(jpath);
    record_body(c, "torn");
    commit(j);
    tch_cassette_journal_free(j); /* the crash: no fold */
    tch_cassette_free(c);
    for (off_t cut = size_of(jpath) - 1; cut > whole; cut -= 7) {
        assert_int_equal(truncate(jpath, cut), 0);
        assert_bodies(path, "kept");
    }
    /* a flipped byte fails the record's hash the same way */
    assert_int_equal(truncate(jpath, whole), 0);
    c = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    char *note = NULL;
    j = journal_of(c, &note);
    assert_non_null(note);
    if (!strstr(note, "1 record of recordings left by a run that did not finish") ||
        strstr(note, "torn"))
        fail_msg("note: %s", note);
    free(note);
    tch_cassette_journal_free(j);
    tch_cassette_free(c);
    assert_int_equal(access(jpath, F_OK), -1);
    assert_bodies(path, "kept");

    /* again, with a torn tail, from a cassette that had a file */
    c = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    j = journal_of(c, NULL);
    record_body(c, "second");
    commit(j);
    record_body(c, "lost");
    commit(j);
    tch_cassette_journal_free(j);
    tch_cassette_free(c);
    FILE *fp = fopen(jpath, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, -3, SEEK_END), 0);
    fputc('#', fp); /* inside the last record's payload */
    fclose(fp);
    c = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    j = journal_of(c, &note);
    if (!note || !strstr(note, "torn last record"))
        fail_msg("note: %s", note ? note : "(none)");
    free(note);
    tch_cassette_journal_free(j);
    tch_cassette_free(c);
    assert_bodies(path, "kept,second");
    assert_int_equal(count_entries(dir), 1);
    free(path);
    free(jpath);
    rm_tree(dir);
}

/* A crash after the fold's rename, before the journal was removed: the F
 * record says the file holds it already; it is not added twice. */
static void a_fold_interrupted_after_its_rename_is_not_applied_twice(void **state) {
    (void)state;
    char *dir = tmp_dir();
    char *path = join(dir, "r.yaml"), *jpath = join(dir, "r.yaml.journal");
    char *keep = join(dir, "keep");
    tch_cassette *c = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    tch_cassette_journal *j = journal_of(c, NULL);
    record_body(c, "x");
    record_body(c, "y");
    commit(j);
    assert_int_equal(link(jpath, keep), 0); /* sees the F record the fold appends */
    tch_error err = {0};
    assert_int_equal(tch_cassette_journal_fold(j, &err), 0);
    tch_cassette_journal_free(j);
    tch_cassette_free(c);
    assert_int_equal(rename(keep, jpath), 0); /* as if the unlink never happened */
    assert_bodies(path, "x,y");
    c = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    char *note = NULL;
    j = journal_of(c, &note);
    if (!note || !strstr(note, "already folded"))
        fail_msg("note: %s", note ? note : "(none)");
    free(note);
    tch_cassette_journal_free(j);
    tch_cassette_free(c);
    assert_int_equal(access(jpath, F_OK), -1);
    assert_bodies(path, "x,y");
    free(keep);
    free(path);
    free(jpath);
    rm_tree(dir);
}

/* A write that fails half-way (here: the file size limit) is cut back, so
 * the next commit's record follows the last whole one: nothing behind a
 * broken record is lost on the next read. */
static void a_failed_commit_is_cut_back_and_reported(void **state) {
    (void)state;
    char *dir = tmp_dir();
    char *path = join(dir, "e.yaml"), *jpath = join(dir, "e.yaml.journal");
    tch_cassette *c = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    tch_cassette_journal *j = journal_of(c, NULL);
    record_body(c, "before");
    commit(j);
    off_t good = size_of(jpath);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = (rlim_t)good + 20; /* room for part of the next record only */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    record_body(c, "failed-to-save");
    tch_error err = {0};
    int rc = tch_cassette_journal_commit(j, &err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    assert_int_equal(rc, TCH_EIO);
    if (!strstr(err.msg, "e.yaml.journal: writing") || !strstr(err.msg, "recording not saved"))
        fail_msg("error: %s", err.msg);
    assert_int_equal(size_of(jpath), good); /* cut back */
    assert_true(tch_cassette_dirty(c));
    size_t last = tch_cassette_count(c) - 1;
    assert_int_equal(tch_cassette_record_drop(c, last, &err), 0); /* its caller got an error */
    assert_false(tch_cassette_dirty(c));
    assert_int_equal(tch_cassette_record_drop(c, last, &err), TCH_ESTATE);
    record_body(c, "after");
    commit(j);
    tch_cassette_journal_free(j); /* crash */
    tch_cassette_free(c);
    assert_bodies(path, "before,after");
    free(path);
    free(jpath);
    rm_tree(dir);
}

/* Mode ALL: the journal's recordings are the whole cassette (the file's
 * old interactions go), before and after a crash. */
static void a_journal_in_mode_all_replaces_the_file(void **state) {
    (void)state;
    char *dir = tmp_dir();
    char *path = join(dir, "all.yaml");
    tch_cassette *c = open_opts(path, TCH_CASSETTE_ONCE, NULL);
    record_body(c, "old1");
    record_body(c, "old2");
    tch_error err = {0};
    assert_int_equal(tch_cassette_save(c, &err), 0);
    tch_cassette_free(c);
    c = open_opts(path, TCH_CASSETTE_ALL, NULL);
    tch_cassette_journal *j = journal_of(c, NULL);
    record_body(c, "new");
    commit(j);
    assert_bodies(path, "new");
    record_body(c, "newer");
    commit(j);
    tch_cassette_journal_free(j); /* crash */
    tch_cassette_free(c);
    c = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    j = journal_of(c, NULL);
    tch_cassette_journal_free(j);
    tch_cassette_free(c);
    assert_bodies(path, "new,newer");
    free(path);
    rm_tree(dir);
}

static void touch(const char *dir, const char *name) {
    char *p = join(dir, name);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    fclose(fp);
    free(p);
}

static int exists_in(const char *dir, const char *name) {
    char *p = join(dir, name);
    int ok = access(p, F_OK) == 0;
    free(p);
    return ok;
}

/* Temp files of saves killed half-way are removed at open: only ours (this
 * cassette's exact pattern), only of processes that are gone. */
static void stale_temp_files_are_removed_at_open(void **state) {
    (void)state;
    char *dir = tmp_dir();
    char *path = join(dir, "s.yaml");
    pid_t child = fork();
    if (child == 0)
        _exit(0);
    assert_true(child > 0);
    assert_int_equal(waitpid(child, NULL, 0), child); /* a pid that is gone */
    char dead[64], alive[64], other[64], odd[64];
    snprintf(dead, sizeof dead, ".s.yaml.tmp.%ld.Ab12Zz", (long)child);
    snprintf(alive, sizeof alive, ".s.yaml.tmp.%ld.Ab12Zz", (long)getppid());
    snprintf(other, sizeof other, ".t.yaml.tmp.%ld.Ab12Zz", (long)child);
    snprintf(odd, sizeof odd, ".s.yaml.tmp.%ld.Ab12Zz.bak", (long)child);
    touch(dir, dead);
    touch(dir, alive);
    touch(dir, other);
    touch(dir, odd);
    touch(dir, ".s.yaml.tmp.Ab12Zz"); /* older naming: only when an hour old */
    tch_cassette *c = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    char *note = NULL;
    tch_cassette_journal *j = journal_of(c, &note);
    if (!note || !strstr(note, "removed 1 temp file of interrupted saves"))
        fail_msg("note: %s", note ? note : "(none)");
    free(note);
    assert_false(exists_in(dir, dead));
    assert_true(exists_in(dir, alive));
    assert_true(exists_in(dir, other));
    assert_true(exists_in(dir, odd));
    assert_true(exists_in(dir, ".s.yaml.tmp.Ab12Zz"));
    tch_cassette_journal_free(j);
    tch_cassette_free(c);
    free(path);
    rm_tree(dir);
}

/* A journal that is not one is an error naming it, not an empty cassette. */
static void a_foreign_journal_is_refused(void **state) {
    (void)state;
    char *dir = tmp_dir();
    char *path = join(dir, "x.yaml"), *jpath = join(dir, "x.yaml.journal");
    FILE *fp = fopen(jpath, "w");
    fputs("hello\n", fp);
    fclose(fp);
    tch_cassette_options o;
    tch_cassette_options_init(&o);
    tch_cassette *c = NULL;
    tch_error err = {0};
    assert_int_equal(tch_cassette_open(path, &o, &c, &err), TCH_EPARSE);
    if (!strstr(err.msg, "x.yaml.journal: byte 0: not a tchannel-vcr journal"))
        fail_msg("error: %s", err.msg);
    free(path);
    free(jpath);
    rm_tree(dir);
}

/* ---- who owns the journal ----------------------------------------------------
 * flock locks of two open files conflict inside one process too, so a second
 * cassette object here stands for a second process (tests/hostile/record_*
 * runs two real tchannel-mock processes). */

static tch_cassette_journal *journal_noted(tch_cassette *c, const char *want) {
    char *note = NULL;
    tch_cassette_journal *j = journal_of(c, &note);
    if (!note || !strstr(note, want))
        fail_msg("note: %s (wanted: %s)", note ? note : "(none)", want);
    free(note);
    return j;
}

static void assert_error(int rc, int want, const tch_error *err, const char *a, const char *b) {
    assert_int_equal(rc, want);
    if (!strstr(err->msg, a) || (b && !strstr(err->msg, b)))
        fail_msg("error: %s (wanted: %s ... %s)", err->msg, a, b ? b : "");
}

static void fold_on_open(const char *path) {
    tch_cassette *c = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    tch_cassette_journal *j = journal_of(c, NULL);
    tch_cassette_journal_free(j);
    tch_cassette_free(c);
}

/* Opening a cassette whose journal a live writer holds leaves the journal to
 * it: not folded, not removed, so the writer's later commits still reach
 * every reader (it used to be folded and unlinked under the writer). */
static void a_live_writers_journal_is_left_to_it(void **state) {
    (void)state;
    char *dir = tmp_dir();
    char *path = join(dir, "l.yaml"), *jpath = join(dir, "l.yaml.journal");
    tch_cassette *w = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    tch_cassette_journal *jw = journal_of(w, NULL);
    record_body(w, "a");
    commit(jw);
    tch_cassette *r = open_opts(path, TCH_CASSETTE_NONE, NULL);
    assert_int_equal(tch_cassette_count(r), 1); /* readers see the journal */
    tch_cassette_journal *jr = journal_noted(r, "another process is recording into this cassette");
    assert_int_equal(access(jpath, F_OK), 0);
    record_body(w, "b");
    commit(jw);
    assert_bodies(path, "a,b");
    tch_error err = {0};
    assert_int_equal(tch_cassette_journal_fold(jr, &err), 0); /* recorded nothing: touches nothing */
    assert_int_equal(access(jpath, F_OK), 0);
    assert_int_equal(access(path, F_OK), -1);
    tch_cassette_journal_free(jr);
    tch_cassette_free(r);
    tch_cassette_journal_free(jw); /* the writer crashes */
    tch_cassette_free(w);
    assert_bodies(path, "a,b");
    fold_on_open(path);
    assert_int_equal(access(jpath, F_OK), -1);
    assert_bodies(path, "a,b");
    free(path);
    free(jpath);
    rm_tree(dir);
}

/* A process that recorded nothing, opened before a writer started, never
 * writes its stale copy over the file nor removes the writer's journal,
 * even once that writer is dead. */
static void a_fold_with_nothing_recorded_leaves_another_journal_alone(void **state) {
    (void)state;
    char *dir = tmp_dir();
    char *path = join(dir, "n.yaml"), *jpath = join(dir, "n.yaml.journal");
    tch_cassette *r = open_opts(path, TCH_CASSETTE_NONE, NULL);
    tch_cassette_journal *jr = journal_of(r, NULL);
    tch_cassette *w = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    tch_cassette_journal *jw = journal_of(w, NULL);
    record_body(w, "rec1");
    record_body(w, "rec2");
    commit(jw);
    tch_cassette_journal_free(jw); /* kill -9 */
    tch_cassette_free(w);
    tch_error err = {0};
    assert_int_equal(tch_cassette_journal_fold(jr, &err), 0);
    assert_int_equal(access(jpath, F_OK), 0);
    tch_cassette_journal_free(jr);
    tch_cassette_free(r);
    assert_bodies(path, "rec1,rec2");
    free(path);
    free(jpath);
    rm_tree(dir);
}

/* The writer dies between a reader's open and its journal_open, after
 * committing more: the reader's copy lacks those, so its recovery refuses
 * (folding its copy would drop them) and the next open folds them all. */
static void recovery_refuses_a_journal_that_grew_after_open(void **state) {
    (void)state;
    char *dir = tmp_dir();
    char *path = join(dir, "g.yaml"), *jpath = join(dir, "g.yaml.journal");
    tch_cassette *w = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    tch_cassette_journal *jw = journal_of(w, NULL);
    record_body(w, "a");
    commit(jw);
    tch_cassette *r = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL); /* reads "a" */
    record_body(w, "b");
    commit(jw);
    tch_cassette_journal_free(jw); /* dies */
    tch_cassette_free(w);
    tch_cassette_journal *jr = NULL;
    tch_error err = {0};
    assert_error(tch_cassette_journal_open(r, &jr, NULL, &err), TCH_ESTATE, &err,
                 "g.yaml.journal holds 2 recordings, of which this cassette read 1", NULL);
    assert_null(jr);
    tch_cassette_free(r);
    assert_int_equal(access(jpath, F_OK), 0);
    assert_bodies(path, "a,b");
    fold_on_open(path);
    assert_int_equal(access(jpath, F_OK), -1);
    assert_bodies(path, "a,b");
    free(path);
    free(jpath);
    rm_tree(dir);
}

/* Two writers: the second is refused, by name, when it commits or saves,
 * and the first goes on recording. A plain tch_cassette_save (an in-process
 * VCR) obeys the same lock, and never folds a journal it did not read. */
static void a_second_writer_is_refused(void **state) {
    (void)state;
    char *dir = tmp_dir();
    char *path = join(dir, "w.yaml"), *jpath = join(dir, "w.yaml.journal");
    tch_cassette *vcr = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL); /* before any journal */
    tch_cassette *w = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    tch_cassette_journal *jw = journal_of(w, NULL);
    record_body(w, "first");
    commit(jw);
    tch_cassette *s = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    tch_cassette_journal *js = journal_noted(s, "w.yaml.journal: another process is recording");
    record_body(s, "second");
    tch_error err = {0};
    assert_error(tch_cassette_journal_commit(js, &err), TCH_ESTATE, &err, path,
                 "another process is recording into this cassette");
    assert_true(tch_cassette_dirty(s)); /* not saved: its caller is told */
    assert_error(tch_cassette_journal_fold(js, &err), TCH_ESTATE, &err, path,
                 "another process is recording into this cassette");
    assert_error(tch_cassette_save(s, &err), TCH_ESTATE, &err, path,
                 "another process is recording into this cassette");
    record_body(vcr, "vcr");
    assert_error(tch_cassette_save(vcr, &err), TCH_ESTATE, &err, path,
                 "another process is recording into this cassette");
    record_body(w, "first2");
    commit(jw);
    assert_bodies(path, "first,first2");
    tch_cassette_journal_free(jw); /* the writer dies; its journal is left */
    tch_cassette_free(w);
    /* the VCR read neither: saving its copy would drop them */
    assert_error(tch_cassette_save(vcr, &err), TCH_ESTATE, &err, "w.yaml.journal",
                 "did not read");
    assert_error(tch_cassette_journal_commit(js, &err), TCH_ESTATE, &err, "w.yaml.journal",
                 "did not read");
    assert_int_equal(access(path, F_OK), -1);
    assert_bodies(path, "first,first2");
    tch_cassette_journal_free(js);
    tch_cassette_free(s);
    tch_cassette_free(vcr);
    fold_on_open(path);
    assert_bodies(path, "first,first2");
    assert_int_equal(access(jpath, F_OK), -1);
    /* a VCR that read the leftover journal folds it with its save */
    tch_cassette *w2 = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    tch_cassette_journal *jw2 = journal_of(w2, NULL);
    record_body(w2, "third");
    commit(jw2);
    tch_cassette_journal_free(jw2);
    tch_cassette_free(w2);
    vcr = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    record_body(vcr, "vcr");
    assert_int_equal(tch_cassette_save(vcr, &err), 0);
    tch_cassette_free(vcr);
    assert_int_equal(access(jpath, F_OK), -1);
    assert_bodies(path, "first,first2,third,vcr");
    free(path);
    free(jpath);
    rm_tree(dir);
}

/* A commit whose journal someone removed meanwhile is not saved (nobody
 * would read it), and says why; the recordings are not lost: the next
 * commit and the fold write them. */
static void a_commit_to_a_removed_journal_fails(void **state) {
    (void)state;
    char *dir = tmp_dir();
    char *path = join(dir, "u.yaml"), *jpath = join(dir, "u.yaml.journal");
    tch_cassette *w = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    tch_cassette_journal *jw = journal_of(w, NULL);
    record_body(w, "a");
    commit(jw);
    assert_int_equal(unlink(jpath), 0);
    record_body(w, "b");
    tch_error err = {0};
    assert_error(tch_cassette_journal_commit(jw, &err), TCH_EIO, &err, "u.yaml.journal was removed",
                 "recording not saved");
    assert_true(tch_cassette_dirty(w));
    record_body(w, "c");
    commit(jw); /* a new journal */
    assert_bodies(path, "b,c");
    assert_int_equal(tch_cassette_journal_fold(jw, &err), 0);
    assert_bodies(path, "a,b,c");
    tch_cassette_journal_free(jw);
    tch_cassette_free(w);
    free(path);
    free(jpath);
    rm_tree(dir);
}

/* A big file with an odd size: read (and hashed for the journal) in many
 * pieces that end off the hash's 8-byte steps. */
static void write_big_cassette(const char *path, int n) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("interactions:\n", f);
    for (int i = 0; i < n; i++) {
        char body[701];
        memset(body, 'a' + i % 26, sizeof body - 1);
        body[sizeof body - 1] = '\0';
        fprintf(f, "- request: {serviceName: keyvalue-server, endpoint: echo, argScheme: raw, "
                   "body: b%d-%s}\n  response: {body: r%d}\n", i, body + i % 7, i);
    }
    fputs("version: 1\n# end\n", f);
    assert_int_equal(fclose(f), 0);
}

/* The journal names the file it adds to by a hash of its content; a
 * reader hashes the file as it parses it, in pieces, and must get the
 * writer's hash (else the recordings would be taken for a conflict and
 * left out). */
static void a_journal_applies_to_a_big_file_read_in_pieces(void **state) {
    (void)state;
    char *dir = tmp_dir();
    char *path = join(dir, "big.yaml");
    write_big_cassette(path, 400);
    assert_true(size_of(path) > 200000 && size_of(path) % 8 != 0);
    tch_cassette *c = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    assert_int_equal(tch_cassette_count(c), 400);
    tch_cassette_journal *j = journal_of(c, NULL);
    record_body(c, "late");
    commit(j);
    tch_cassette *r = open_opts(path, TCH_CASSETTE_NONE, NULL);
    assert_int_equal(tch_cassette_count(r), 401);
    const tch_cassette_interaction *it = tch_cassette_get(r, 400);
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&it->request.body), "late"));
    tch_cassette_free(r);
    /* the file changed under the journal: its recordings are not stacked on it */
    write_big_cassette(path, 399);
    r = open_opts(path, TCH_CASSETTE_NONE, NULL);
    assert_int_equal(tch_cassette_count(r), 399);
    tch_cassette_free(r);
    tch_cassette_journal_free(j);
    tch_cassette_free(c);
    free(path);
    rm_tree(dir);
}

static void replace_file_with(const char *dir, const char *path, const char *body) {
    char *other = join(dir, "other.yaml");
    tch_cassette *c = open_opts(other, TCH_CASSETTE_NEW_EPISODES, NULL);
    record_body(c, body);
    tch_error err = {0};
    assert_int_equal(tch_cassette_save(c, &err), 0);
    tch_cassette_free(c);
    assert_int_equal(rename(other, path), 0);
    free(other);
}

/* The B record names the content a journal adds to. When the file was
 * replaced under the journal, its recordings are not stacked on the new
 * file: readers see the file, and the next open moves them to
 * PATH.journal-conflict.yaml and says so. A fold on a changed file refuses
 * to write over it and keeps the journal. */
static void a_journal_on_a_replaced_file_is_moved_aside(void **state) {
    (void)state;
    char *dir = tmp_dir();
    char *path = join(dir, "c.yaml"), *jpath = join(dir, "c.yaml.journal");
    char *aside = join(dir, "c.yaml.journal-conflict.yaml");
    char *aside2 = join(dir, "c.yaml.journal-conflict-2.yaml");
    tch_cassette *w = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    record_body(w, "old");
    tch_error err = {0};
    assert_int_equal(tch_cassette_save(w, &err), 0);
    tch_cassette_journal *jw = journal_of(w, NULL);
    record_body(w, "a");
    record_body(w, "b");
    commit(jw);
    tch_cassette_journal_free(jw); /* crash */
    tch_cassette_free(w);
    replace_file_with(dir, path, "user");
    assert_bodies(path, "user");
    tch_cassette *c = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    tch_cassette_journal *j = journal_noted(c, "c.yaml.journal-conflict.yaml");
    tch_cassette_journal_free(j);
    tch_cassette_free(c);
    assert_int_equal(access(jpath, F_OK), -1);
    assert_bodies(path, "user");
    assert_bodies(aside, "a,b"); /* the journal's recordings */

    /* a live writer whose file is replaced: its fold does not write over it */
    w = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    jw = journal_of(w, NULL);
    record_body(w, "x");
    commit(jw);
    replace_file_with(dir, path, "edit");
    assert_error(tch_cassette_journal_fold(jw, &err), TCH_ESTATE, &err, path,
                 "changed on disk since this cassette read it");
    assert_int_equal(access(jpath, F_OK), 0);
    record_body(w, "y"); /* the same journal goes on: it adds to what it named */
    commit(jw);
    tch_cassette_journal_free(jw);
    tch_cassette_free(w);
    assert_bodies(path, "edit");
    c = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    j = journal_noted(c, "c.yaml.journal-conflict-2.yaml");
    tch_cassette_journal_free(j);
    tch_cassette_free(c);
    assert_bodies(aside2, "x,y");
    assert_bodies(aside, "a,b");
    /* a writer that starts a journal on a file changed since it read it:
     * the journal names what the writer read, so it is not stacked on the
     * edit either, and the next open moves it aside */
    char *aside3 = join(dir, "c.yaml.journal-conflict-3.yaml");
    w = open_opts(path, TCH_CASSETTE_NEW_EPISODES, NULL);
    jw = journal_of(w, NULL);
    replace_file_with(dir, path, "edit2");
    record_body(w, "z");
    commit(jw);
    assert_bodies(path, "edit2");
    assert_error(tch_cassette_journal_fold(jw, &err), TCH_ESTATE, &err, path,
                 "changed on disk since this cassette read it");
    tch_cassette_journal_free(jw);
    tch_cassette_free(w);
    fold_on_open(path);
    assert_int_equal(access(jpath, F_OK), -1);
    assert_bodies(path, "edit2");
    assert_bodies(aside3, "z");
    free(aside3);
    free(aside);
    free(aside2);
    free(path);
    free(jpath);
    rm_tree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(save_then_load_keeps_bytes_exact),
        cmocka_unit_test(atomic_save_leaves_no_temp_files),
        cmocka_unit_test(save_writes_through_a_symlink),
        cmocka_unit_test(nothing_written_when_nothing_new),
        cmocka_unit_test(resave_keeps_python_cassette),
        cmocka_unit_test(decoded_is_ignored_when_exact_bytes_exist),
        cmocka_unit_test(journal_commits_append_and_readers_see_them),
        cmocka_unit_test(fold_writes_the_file_and_removes_the_journal),
        cmocka_unit_test(a_torn_last_record_is_dropped_and_said),
        cmocka_unit_test(a_fold_interrupted_after_its_rename_is_not_applied_twice),
        cmocka_unit_test(a_failed_commit_is_cut_back_and_reported),
        cmocka_unit_test(a_journal_in_mode_all_replaces_the_file),
        cmocka_unit_test(stale_temp_files_are_removed_at_open),
        cmocka_unit_test(a_foreign_journal_is_refused),
        cmocka_unit_test(a_live_writers_journal_is_left_to_it),
        cmocka_unit_test(a_fold_with_nothing_recorded_leaves_another_journal_alone),
        cmocka_unit_test(recovery_refuses_a_journal_that_grew_after_open),
        cmocka_unit_test(a_second_writer_is_refused),
        cmocka_unit_test(a_commit_to_a_removed_journal_fails),
        cmocka_unit_test(a_journal_on_a_replaced_file_is_moved_aside),
        cmocka_unit_test(a_journal_applies_to_a_big_file_read_in_pieces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
