/* Cassette reading: tchannel-python files (py2 and py3 spellings), our
 * extensions, the example cassettes, and precise errors for bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <tchannel/cassette.h>

#define FIX TCH_SOURCE_DIR "/tests/fixtures/cassettes/"

static tch_cassette *open_fixture(const char *path, tch_cassette_mode mode) {
    tch_cassette_options o;
    tch_cassette *c = NULL;
    tch_error err = {0};
    tch_cassette_options_init(&o);
    o.mode = mode;
    o.no_env_override = 1;
    int rc = tch_cassette_open(path, &o, &c, &err);
    if (rc)
        fail_msg("open %s: %s", path, err.msg);
    return c;
}

static int open_err(const char *path, tch_error *err) {
    tch_cassette_options o;
    tch_cassette *c = NULL;
    tch_cassette_options_init(&o);
    o.no_env_override = 1;
    int rc = tch_cassette_open(path, &o, &c, err);
    tch_cassette_free(c);
    return rc;
}

static tch_slice S(const char *s) { return tch_slice_cstr(s); }

static tch_cassette_decision lookup(tch_cassette *c, const tch_cassette_call *call, int *rc) {
    tch_cassette_decision d;
    tch_error err = {0};
    *rc = tch_cassette_lookup(c, call, &d, &err);
    return d;
}

static void py2_fixture_loads_and_matches(void **state) {
    (void)state;
    tch_cassette *c = open_fixture(FIX "py2.yaml", TCH_CASSETTE_NONE);
    assert_int_equal(tch_cassette_count(c), 3);
    const tch_cassette_interaction *it = tch_cassette_get(c, 0);
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&it->request.service), "hello_service"));
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&it->request.endpoint), "hello"));
    assert_int_equal(it->request.scheme, TCH_CASSETTE_JSON);
    assert_int_equal(it->request.n_transport_headers, 2);
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&it->request.transport_headers[1].value), "client"));
    /* !!python/str "caf\xE9" is the UTF-8 of the text */
    it = tch_cassette_get(c, 1);
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&it->request.body), "caf\xc3\xa9"));
    assert_int_equal(it->request.n_known_peers, 1);
    /* the alias *id001 resolves to the same list */
    assert_int_equal(tch_cassette_get(c, 2)->request.n_known_peers, 1);

    /* a new trace id must still match the recorded json call */
    tch_cassette_call call = {.service = S("hello_service"), .endpoint = S("hello"),
                              .headers = S("{\"$tracing$uber-trace-id\":\"ffff:1:0:1\"}"),
                              .body = S("\"world\""), .scheme = TCH_CASSETTE_JSON};
    int rc;
    tch_cassette_decision d = lookup(c, &call, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(d.action, TCH_CASSETTE_ACT_REPLAY);
    assert_int_equal(d.index, 0);
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&d.interaction->response.body), "\"world\""));
    tch_cassette_decision_clear(&d);

    /* thrift headers with another trace id and the same user header */
    const uint8_t args[] = {0x0b, 0, 1, 0, 0, 0, 3, 'f', 'o', 'o', 0};
    const uint8_t hdr[] = {0, 2, 0, 4, 'u', 's', 'e', 'r', 0, 5, 'a', 'l', 'i', 'c', 'e',
                           0, 10, '$', 't', 'r', 'a', 'c', 'i', 'n', 'g', '$', 'x', 0, 1, 'z'};
    tch_cassette_call tc = {.service = S("keyvalue-server"), .endpoint = S("KeyValue::getValue"),
                            .headers = tch_slice_of(hdr, sizeof hdr),
                            .body = tch_slice_of(args, sizeof args), .scheme = TCH_CASSETTE_THRIFT};
    d = lookup(c, &tc, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(d.index, 2);
    const uint8_t res[] = {0x0b, 0, 0, 0, 0, 0, 3, 'b', 'a', 'r', 0};
    assert_true(tch_slice_eq(tch_buf_slice(&d.interaction->response.body), tch_slice_of(res, sizeof res)));
    tch_cassette_decision_clear(&d);
    tch_cassette_free(c);
}

static void py3_fixture_loads_binary(void **state) {
    (void)state;
    tch_cassette *c = open_fixture(FIX "py3.yaml", TCH_CASSETTE_NONE);
    assert_int_equal(tch_cassette_count(c), 2);
    const tch_cassette_interaction *it = tch_cassette_get(c, 0);
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&it->request.transport_headers[0].key), "as"));
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&it->request.transport_headers[0].value), "json"));
    it = tch_cassette_get(c, 1);
    uint8_t want[37];
    for (int i = 0; i < 37; i++)
        want[i] = (uint8_t)(i * 7);
    assert_int_equal(it->request.body.len, sizeof want);
    assert_memory_equal(it->request.body.ptr, want, sizeof want);
    assert_int_equal(it->request.headers.len, 0);

    /* json body matches by value: other key order and spacing */
    tch_cassette_call call = {.service = S("keyvalue-server"), .endpoint = S("json_echo"),
                              .headers = S("{ }"), .body = S("{\"value\":\"bar\",\"key\":\"foo\"}"),
                              .scheme = TCH_CASSETTE_JSON};
    int rc;
    tch_cassette_decision d = lookup(c, &call, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(d.action, TCH_CASSETTE_ACT_REPLAY);
    assert_int_equal(d.index, 0);
    tch_cassette_decision_clear(&d);
    tch_cassette_free(c);
}

static void extensions_load(void **state) {
    (void)state;
    tch_cassette *c = open_fixture(FIX "extensions.yaml", TCH_CASSETTE_NONE);
    assert_int_equal(tch_cassette_count(c), 3);
    const tch_cassette_interaction *it = tch_cassette_get(c, 0);
    assert_true(it->is_error);
    assert_int_equal(it->error.code, 0x03);
    assert_string_equal(it->error.message, "server is busy");
    it = tch_cassette_get(c, 1);
    assert_false(it->is_error);
    assert_true(it->has_delay);
    assert_int_equal(it->delay_ms, 250);
    assert_true(it->has_fault);
    assert_int_equal(it->fault_code, 0x01);
    it = tch_cassette_get(c, 2);
    /* json with only bodyDecoded: the decoded text is the body */
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&it->request.body), "{\"a\": [1, 2, 3]}\n"));
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&it->response.body), "{\"ok\": true}\n"));
    assert_int_equal(it->fault_code, 0x04);
    assert_string_equal(it->fault_message, "go away");
    tch_cassette_free(c);
}

static void example_cassettes_load(void **state) {
    (void)state;
    static const char *const files[] = {TCH_SOURCE_DIR "/cassettes/keyvalue.yaml",
                                        TCH_SOURCE_DIR "/cassettes/echo-raw.yaml"};
    for (size_t i = 0; i < 2; i++) {
        tch_cassette *c = open_fixture(files[i], TCH_CASSETTE_NONE);
        assert_true(tch_cassette_count(c) >= 2);
        tch_cassette_free(c);
    }
    tch_cassette *c = open_fixture(files[0], TCH_CASSETTE_NONE);
    /* getValue("missing") answers NotFoundError with code 1 */
    const uint8_t args[] = {0x0b, 0, 1, 0, 0, 0, 7, 'm', 'i', 's', 's', 'i', 'n', 'g', 0};
    tch_cassette_call call = {.service = S("keyvalue-server"), .endpoint = S("KeyValue::getValue"),
                              .headers = tch_slice_of("\0\0", 2),
                              .body = tch_slice_of(args, sizeof args), .scheme = TCH_CASSETTE_THRIFT};
    int rc;
    tch_cassette_decision d = lookup(c, &call, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(d.interaction->response.code, 1);
    const uint8_t nf[] = {0x0c, 0, 1, 0x0b, 0, 1, 0, 0, 0, 7, 'm', 'i', 's', 's', 'i', 'n', 'g', 0, 0};
    assert_true(tch_slice_eq(tch_buf_slice(&d.interaction->response.body), tch_slice_of(nf, sizeof nf)));
    tch_cassette_decision_clear(&d);
    tch_cassette_free(c);
}

static void empty_file_is_existing_empty_cassette(void **state) {
    (void)state;
    tch_cassette *c = open_fixture(FIX "empty.yaml", TCH_CASSETTE_ONCE);
    assert_int_equal(tch_cassette_count(c), 0);
    assert_true(tch_cassette_existed(c));
    assert_false(tch_cassette_can_record(c)); /* ONCE + existed: replay only */
    tch_cassette_free(c);
}

static void corrupt_yaml_names_line_and_column(void **state) {
    (void)state;
    tch_error err = {0};
    assert_int_equal(open_err(FIX "corrupt.yaml", &err), TCH_EPARSE);
    assert_non_null(strstr(err.msg, "corrupt.yaml:5:"));
    assert_non_null(strstr(err.msg, "malformed YAML"));
}

static void truncated_yaml_names_position(void **state) {
    (void)state;
    tch_error err = {0};
    assert_int_equal(open_err(FIX "truncated.yaml", &err), TCH_EPARSE);
    /* the stream ends inside the quoted scalar on line 6 */
    assert_non_null(strstr(err.msg, "truncated.yaml:6:50"));
}

static void bad_version_is_clear(void **state) {
    (void)state;
    tch_error err = {0};
    assert_int_equal(open_err(FIX "bad_version.yaml", &err), TCH_EPARSE);
    assert_non_null(strstr(err.msg, "bad_version.yaml:7:10"));
    assert_non_null(strstr(err.msg, "unsupported cassette version '2'"));
}

static void unknown_key_is_named(void **state) {
    (void)state;
    tch_error err = {0};
    assert_int_equal(open_err(FIX "unknown_key.yaml", &err), TCH_EPARSE);
    assert_non_null(strstr(err.msg, "unknown_key.yaml:6:5"));
    assert_non_null(strstr(err.msg, "unknown key 'sevriceName'"));
}

static void wrong_shape_says_what_was_expected(void **state) {
    (void)state;
    tch_error err = {0};
    assert_int_equal(open_err(FIX "wrong_shape.yaml", &err), TCH_EPARSE);
    assert_non_null(strstr(err.msg, "wrong_shape.yaml:2:3"));
    assert_non_null(strstr(err.msg, "interactions: expected a list"));
}

static void memory_loader_uses_name(void **state) {
    (void)state;
    const char *y = "version: 1\ninteractions:\n- request: {body: !!binary '@@@'}\n  response: {}\n";
    tch_cassette *c = NULL;
    tch_error err = {0};
    assert_int_equal(tch_cassette_open_memory("mem.yaml", y, strlen(y), NULL, &c, &err), TCH_EPARSE);
    assert_null(c);
    assert_non_null(strstr(err.msg, "mem.yaml:3:"));
    assert_non_null(strstr(err.msg, "base64"));
    const char *ok = "version: 1\ninteractions: []\n";
    assert_int_equal(tch_cassette_open_memory("ok.yaml", ok, strlen(ok), NULL, &c, &err), 0);
    assert_int_equal(tch_cassette_count(c), 0);
    tch_error serr = {0};
    tch_cassette_free(c);
    (void)serr;
}

/* `local: true` marks a timeout that was the caller's own deadline: read,
 * written back, and refused on another code, on a fault or as a non-boolean. */
static void local_timeouts_load_and_save(void **state) {
    (void)state;
    const char *y = "version: 1\ninteractions:\n"
                    "- request: {serviceName: s}\n  error: {code: timeout, message: late, local: true}\n"
                    "- request: {serviceName: s}\n  error: {code: timeout, local: no}\n";
    tch_cassette *c = NULL;
    tch_error err = {0};
    assert_int_equal(tch_cassette_open_memory("m", y, strlen(y), NULL, &c, &err), 0);
    assert_true(tch_cassette_get(c, 0)->error.local);
    assert_false(tch_cassette_get(c, 1)->error.local);
    tch_buf out = {0};
    assert_int_equal(tch_cassette_emit(c, &out, &err), 0);
    assert_int_equal(tch_buf_append(&out, "", 1), 0);
    const char *first = strstr((const char *)out.ptr, "local: true");
    assert_non_null(first);
    assert_null(strstr(first + 1, "local:")); /* only where it is set */
    tch_buf_free(&out);
    tch_cassette_free(c);
    static const struct { const char *yaml, *want; } bad[] = {
        {"  error: {code: busy, local: true}\n", "m:4:10: error: 'local: true' is for code timeout only"},
        {"  error: {code: timeout, local: maybe}\n", "m:4:33: error local: expected true or false"},
        {"  error: {code: timeout, local: 'true'}\n", "error local: expected true or false"},
        {"  response: {}\n  fault: {code: timeout, local: true}\n", "fault: unknown key 'local' (allowed: code, message)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char doc[256];
        snprintf(doc, sizeof doc, "version: 1\ninteractions:\n- request: {serviceName: s}\n%s",
                 bad[i].yaml);
        c = NULL;
        assert_int_equal(tch_cassette_open_memory("m", doc, strlen(doc), NULL, &c, &err), TCH_EPARSE);
        assert_null(c);
        if (!strstr(err.msg, bad[i].want))
            fail_msg("case %zu: %s", i, err.msg);
    }
}

/* Two recordings equal by value, different in bytes: each request gets the
 * byte-equal one first, as tchannel-python (which compares bytes) would;
 * the other only when that one was played. */
static void a_byte_equal_json_body_replays_first(void **state) {
    (void)state;
    const char *y = "version: 1\ninteractions:\n"
                    "- request: {serviceName: s, endpoint: e, argScheme: 1, body: '{\"a\":1}'}\n"
                    "  response: {body: compact}\n"
                    "- request: {serviceName: s, endpoint: e, argScheme: 1, body: '{\"a\": 1}'}\n"
                    "  response: {body: spaced}\n";
    tch_cassette *c = NULL;
    tch_error err = {0};
    assert_int_equal(tch_cassette_open_memory("m", y, strlen(y), NULL, &c, &err), 0);
    static const char *const asks[] = {"{\"a\": 1}", "{\"a\":1}"};
    static const size_t want[] = {1, 0};
    for (size_t i = 0; i < 2; i++) {
        tch_cassette_call call = {.service = S("s"), .endpoint = S("e"), .headers = S(""),
                                  .body = tch_slice_cstr(asks[i]), .scheme = TCH_CASSETTE_JSON};
        int rc;
        tch_cassette_decision d = lookup(c, &call, &rc);
        assert_int_equal(rc, 0);
        assert_int_equal(d.action, TCH_CASSETTE_ACT_REPLAY);
        assert_int_equal(d.index, want[i]);
        tch_cassette_decision_clear(&d);
    }
    tch_cassette_free(c);
}

static void missing_response_and_error_is_rejected(void **state) {
    (void)state;
    const char *y = "version: 1\ninteractions:\n- request: {}\n  response: {}\n  error: {code: busy}\n";
    tch_cassette *c = NULL;
    tch_error err = {0};
    assert_int_equal(tch_cassette_open_memory("m", y, strlen(y), NULL, &c, &err), TCH_EPARSE);
    assert_non_null(strstr(err.msg, "exactly one of 'response' or 'error'"));
    const char *bad = "version: 1\ninteractions:\n- request: {}\n  error: {code: sleepy}\n";
    assert_int_equal(tch_cassette_open_memory("m", bad, strlen(bad), NULL, &c, &err), TCH_EPARSE);
    assert_non_null(strstr(err.msg, "m:4:17"));
}

/* ---- loader edge cases ------------------------------------------------- */

static int load_mem(const char *y, size_t len, tch_cassette **c, tch_error *err) {
    tch_cassette_options o;
    tch_cassette_options_init(&o);
    o.mode = TCH_CASSETTE_NONE;
    o.no_env_override = 1;
    *c = NULL;
    return tch_cassette_open_memory("m.yaml", y, len, &o, c, err);
}

/* Loads y, which must load; otherwise fails with the loader's message. */
static tch_cassette *load_ok(const char *y) {
    tch_cassette *c = NULL;
    tch_error err = {0};
    if (load_mem(y, strlen(y), &c, &err))
        fail_msg("load: %s", err.msg);
    return c;
}

static void expect_error(const char *y, int code, const char *where, const char *what) {
    tch_cassette *c = NULL;
    tch_error err = {0};
    assert_int_equal(load_mem(y, strlen(y), &c, &err), code);
    assert_null(c);
    if (!strstr(err.msg, where) || !strstr(err.msg, what))
        fail_msg("got '%s', want '%s' and '%s'", err.msg, where, what);
}

/* libyaml's reader errors (bad UTF-8, control characters) come with a byte
 * offset only; the message still names the line and column. */
static void bad_utf8_names_line_and_column(void **state) {
    (void)state;
    expect_error("version: 1\ninteractions:\n- request: {body: caf\xe9}\n  response: {}\n",
                 TCH_EPARSE, "m.yaml:3:", "UTF-8");
    expect_error("version: 1\n# a \x01 control character\n", TCH_EPARSE, "m.yaml:2:5:",
                 "control");
}

/* A file is parsed as it is read, in pieces: a reader error far past the
 * first piece still names its line and column (the bytes up to it are read
 * again to count them), and a file that is not YAML fails the same way. */
static void reader_error_deep_in_a_file_names_line_and_column(void **state) {
    (void)state;
    char path[] = "/tmp/cassette_load_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs("version: 1\n", f);
    for (int i = 0; i < 3000; i++) /* about 150 KB of comments before the error */
        fprintf(f, "# line %04d of padding: the parser reads this in pieces\n", i + 2);
    fputs("# caf\xc3\xa9 \x01 control\n", f); /* line 3002, column 8: two bytes, one character */
    assert_int_equal(fclose(f), 0);
    tch_error err = {0};
    assert_int_equal(open_err(path, &err), TCH_EPARSE);
    char where[64];
    snprintf(where, sizeof where, "%s:3002:8:", path);
    if (!strstr(err.msg, where) || !strstr(err.msg, "control"))
        fail_msg("got '%s', want '%s' and 'control'", err.msg, where);
    unlink(path);
}

/* PyYAML reads !!python/bytes as base64, as !!binary. */
static void python_bytes_are_base64(void **state) {
    (void)state;
    const char *y = "version: 1\ninteractions:\n"
                    "- request: {serviceName: s, endpoint: e, body: !!python/bytes aGVsbG8=}\n"
                    "  response: {body: ok}\n";
    tch_cassette *c = load_ok(y);
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&tch_cassette_get(c, 0)->request.body), "hello"));
    tch_cassette_free(c);
}

/* A plain null is no value; a tagged one is what the tag says, as in PyYAML. */
static void tagged_null_is_text(void **state) {
    (void)state;
    const char *y = "version: 1\ninteractions:\n"
                    "- request: {serviceName: s, endpoint: e, body: !!str null, headers: null}\n"
                    "  response: {body: ! Null}\n";
    tch_cassette *c = load_ok(y);
    const tch_cassette_interaction *it = tch_cassette_get(c, 0);
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&it->request.body), "null"));
    assert_int_equal(it->request.headers.len, 0);
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&it->response.body), "Null"));
    tch_cassette_free(c);
}

/* Anchors and aliases are resolved (py2 cassettes share lists this way);
 * an aliased node reads as if written out again, errors name the anchored
 * node, and libyaml's composer rules apply. */
static void anchors_and_aliases_resolve(void **state) {
    (void)state;
    const char *y = "version: 1\n"
                    "interactions:\n"
                    "- &i\n"
                    "  request: &r {body: &b hello, knownPeers: &p [a, b],\n"
                    "              transportHeaders: [{key: &k as, value: *k}]}\n"
                    "  response: &resp {body: *b, code: 1}\n"
                    "- request: {serviceName: s, knownPeers: *p}\n"
                    "  response: *resp\n"
                    "- *i\n"
                    "- request: *r\n"
                    "  error: &e {code: busy, message: m}\n";
    tch_cassette *c = NULL;
    tch_error err = {0};
    assert_int_equal(load_mem(y, strlen(y), &c, &err), 0);
    assert_int_equal(tch_cassette_count(c), 4);
    const tch_cassette_interaction *it = tch_cassette_get(c, 0);
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&it->request.body), "hello"));
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&it->response.body), "hello"));
    assert_int_equal(it->request.n_known_peers, 2);
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&it->request.transport_headers[0].value), "as"));
    it = tch_cassette_get(c, 1);
    assert_int_equal(it->request.n_known_peers, 2);
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&it->request.known_peers[1]), "b"));
    assert_int_equal(it->response.code, 1);
    it = tch_cassette_get(c, 2); /* the whole first interaction again, same line */
    assert_int_equal(it->line, 3);
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&it->response.body), "hello"));
    it = tch_cassette_get(c, 3);
    assert_true(it->is_error);
    assert_int_equal(it->request.n_transport_headers, 1);
    tch_cassette_free(c);

    /* an error inside an aliased node names the anchored node */
    expect_error("version: 1\ninteractions:\n- request: &r {body: [x]}\n  response: {}\n",
                 TCH_EPARSE, "m.yaml:3:22:", "body: expected a string");
    expect_error("a: &r {body: [x]}\nversion: 1\ninteractions:\n- request: *r\n  response: {}\n",
                 TCH_EPARSE, "m.yaml:1:1:", "unknown key 'a'");
    expect_error("version: 1\ninteractions:\n- request: *nope\n  response: {}\n", TCH_EPARSE,
                 "m.yaml:3:12:", "malformed YAML: found undefined alias");
    expect_error("version: 1\ninteractions:\n- request: &a {}\n  response: &a {}\n", TCH_EPARSE,
                 "m.yaml:4:13:", "found duplicate anchor; first occurrence (which started at line 3)");
    /* a node that contains itself fails on its shape, as the tree walk did */
    expect_error("version: 1\ninteractions: &a [*a]\n", TCH_EPARSE, "m.yaml:2:15:",
                 "interaction: expected a mapping");
    expect_error("version: 1\ninteractions:\n- request: {}\n  response: &r {body: x, headers: *r}\n",
                 TCH_EPARSE, "m.yaml:4:13:", "response headers: expected a string");
}

/* Aliases may not multiply the input without bound ("billion laughs"). */
static void alias_expansion_is_bounded(void **state) {
    (void)state;
    tch_buf y = {0};
    const char *head = "version: 1\ninteractions:\n- request: {body: &s ";
    tch_buf_append(&y, head, strlen(head));
    for (int i = 0; i < 512; i++)
        tch_buf_append(&y, "abcdefgh", 8);
    const char *mid = "}\n  response: {}\n- &i\n  request: {knownPeers: [";
    tch_buf_append(&y, mid, strlen(mid));
    for (int i = 0; i < 4096; i++)
        tch_buf_append(&y, "*s, ", 4);
    tch_buf_append(&y, "]}\n  response: {}\n", 18);
    for (int i = 0; i < 4096; i++)
        tch_buf_append(&y, "- *i\n", 5);
    /* 4 KiB * 4096 * 4096 = 64 GiB if expanded: fails after ~64 MiB */
    tch_cassette *c = NULL;
    tch_error err = {0};
    assert_int_equal(load_mem((const char *)y.ptr, y.len, &c, &err), TCH_ETOOBIG);
    assert_null(c);
    assert_non_null(strstr(err.msg, "aliases expand to too much data"));
    /* the same file with few aliases loads (every read of a shared node
     * after its first counts, 64 bytes plus its text: these fit) */
    y.len = strlen(head) + 4096 + strlen(mid) + 4 * 4096 + 18 + 5 * 2;
    assert_int_equal(load_mem((const char *)y.ptr, y.len, &c, &err), 0);
    assert_int_equal(tch_cassette_count(c), 4);
    assert_int_equal(tch_cassette_get(c, 3)->request.n_known_peers, 4096);
    assert_int_equal(tch_cassette_get(c, 3)->request.known_peers[4095].len, 4096);
    tch_cassette_free(c);
    tch_buf_free(&y);
}

static void duplicate_keys_are_rejected(void **state) {
    (void)state;
    expect_error("version: 1\ninteractions:\n- request: {body: a, body: b}\n  response: {}\n",
                 TCH_EPARSE, "m.yaml:3:22:", "request: duplicate key 'body'");
    expect_error("version: 1\nversion: 1\n", TCH_EPARSE, "m.yaml:2:1:",
                 "cassette: duplicate key 'version'");
    expect_error("version: 1\ninteractions:\n- request: {}\n  response: {}\n  response: {}\n",
                 TCH_EPARSE, "m.yaml:5:3:", "interaction: duplicate key 'response'");
}

/* Nesting far beyond the schema is bounded (libyaml's scanner is quadratic
 * in flow nesting) and nothing recurses on it (this also runs under ASan). */
static void deeply_nested_junk_is_rejected(void **state) {
    (void)state;
    enum { DEPTH = 200000 };
    tch_buf y = {0};
    const char *head = "version: 1\ninteractions:\n- request: {}\n  response: {body: ";
    tch_buf_append(&y, head, strlen(head));
    for (int i = 0; i < DEPTH; i++)
        tch_buf_append(&y, "[", 1);
    for (int i = 0; i < DEPTH; i++)
        tch_buf_append(&y, "]", 1);
    tch_buf_append(&y, "}\n", 2);
    tch_cassette *c = NULL;
    tch_error err = {0};
    assert_int_equal(load_mem((const char *)y.ptr, y.len, &c, &err), TCH_EPARSE);
    assert_null(c);
    assert_non_null(strstr(err.msg, "m.yaml:4:1016: nesting deeper than 1000 levels"));
    /* unclosed */
    y.len = strlen(head) + DEPTH;
    assert_int_equal(load_mem((const char *)y.ptr, y.len, &c, &err), TCH_EPARSE);
    assert_non_null(strstr(err.msg, "nesting deeper than 1000 levels"));
    tch_buf_free(&y);
    /* a schema error already final is kept */
    const char *top = "version: 1\nx: ";
    tch_buf_append(&y, top, strlen(top));
    for (int i = 0; i < DEPTH; i++)
        tch_buf_append(&y, "[", 1);
    assert_int_equal(load_mem((const char *)y.ptr, y.len, &c, &err), TCH_EPARSE);
    assert_non_null(strstr(err.msg, "m.yaml:2:1: cassette: unknown key 'x'"));
    tch_buf_free(&y);
    /* within the bound, the schema error as before */
    expect_error("version: 1\ninteractions:\n- request: {}\n  response: {body: [[[[[[[[]]]]]]]]}\n",
                 TCH_EPARSE, "m.yaml:4:20:", "response body: expected a string");
}

static void huge_scalars_load(void **state) {
    (void)state;
    enum { N = 8 << 20 };
    tch_buf y = {0};
    const char *head = "version: 1\ninteractions:\n- request: {body: ";
    tch_buf_append(&y, head, strlen(head));
    for (size_t i = 0; i < N; i++)
        tch_buf_append(&y, "x", 1);
    const char *mid = "}\n  response: {body: !!binary ";
    tch_buf_append(&y, mid, strlen(mid));
    for (size_t i = 0; i < N / 4; i++)
        tch_buf_append(&y, "AAEC", 4);
    tch_buf_append(&y, "}\n", 2);
    tch_cassette *c = NULL;
    tch_error err = {0};
    assert_int_equal(load_mem((const char *)y.ptr, y.len, &c, &err), 0);
    const tch_cassette_interaction *it = tch_cassette_get(c, 0);
    assert_int_equal(it->request.body.len, N);
    assert_int_equal(it->request.body.ptr[N - 1], 'x');
    assert_int_equal(it->response.body.len, N / 4 * 3);
    assert_int_equal(it->response.body.ptr[N / 4 * 3 - 1], 2);
    tch_cassette_free(c);
    tch_buf_free(&y);
}

/* Which error is reported is a rule of the format (docs/cassettes.md):
 * document order, the first wins; a piece (a top-level key or value, an
 * interaction) is read whole before it is checked; content errors in
 * interactions written before the version come after the rest is checked;
 * a second document fails where it starts. */
static void errors_come_in_document_order(void **state) {
    (void)state;
    /* an interaction's content error comes before a YAML error after it */
    expect_error("version: 1\ninteractions:\n- request: {bogus: 1}\n  response: {}\nx: [\n",
                 TCH_EPARSE, "m.yaml:3:13:", "request: unknown key 'bogus'");
    /* ...and after a YAML error inside it */
    expect_error("version: 1\ninteractions:\n- request: {bogus: 1}\n  response: *zz\n",
                 TCH_EPARSE, "m.yaml:4:13:", "found undefined alias");
    expect_error("version: 1\ninteractions:\n- request: {bogus: 1}\n  response: {x: [}\n",
                 TCH_EPARSE, "m.yaml:4:", "malformed YAML");
    /* the version is checked where it is */
    expect_error("version: 3\ninteractions:\n- request: {}\n  response: {}\n- request: *zz\n",
                 TCH_EPARSE, "m.yaml:1:10:", "unsupported cassette version '3'");
    expect_error("version: 2\nx: 1\n", TCH_EPARSE, "m.yaml:1:10:",
                 "unsupported cassette version '2'");
    /* the exception: content errors in interactions written before the
     * version (as tchannel-python sorts them) come after the rest is checked */
    expect_error("interactions:\n- request: {bogus: 1}\n  response: {}\nversion: 2\n", TCH_EPARSE,
                 "m.yaml:4:10:", "unsupported cassette version '2'");
    expect_error("interactions:\n- request: {bogus: 1}\n  response: {}\n- 7\nversion: 2\n",
                 TCH_EPARSE, "m.yaml:5:10:", "unsupported cassette version '2'");
    expect_error("interactions: 7\n", TCH_EPARSE, "m.yaml:1:1:", "cassette: missing 'version'");
    expect_error("interactions: 7\nversoin: 1\n", TCH_EPARSE, "m.yaml:2:1:",
                 "cassette: unknown key 'versoin'");
    expect_error("interactions:\n- request: {bogus: 1}\n  response: {}\nversion: 1\nextra: 1\n",
                 TCH_EPARSE, "m.yaml:5:1:", "cassette: unknown key 'extra'");
    expect_error("interactions:\n- request: {bogus: 1}\n  response: {}\n- [\nversion: 1\n",
                 TCH_EPARSE, "m.yaml:", "malformed YAML");
    expect_error("interactions:\n- request: {bogus: 1}\n  response: {}\nversion: 1\n", TCH_EPARSE,
                 "m.yaml:2:13:", "request: unknown key 'bogus'");
    /* ...not when the version came first */
    expect_error("version: 1\ninteractions:\n- request: {bogus: 1}\n  response: {}\nextra: 1\n",
                 TCH_EPARSE, "m.yaml:3:13:", "request: unknown key 'bogus'");
    /* an interaction's keys in document order, then its checks as a whole */
    expect_error("version: 1\ninteractions:\n- request: {}\n  response: {code: 7}\n  delay: x\n",
                 TCH_EPARSE, "m.yaml:4:20:", "response code");
    expect_error("version: 1\ninteractions:\n- response: {code: 7}\n", TCH_EPARSE, "m.yaml:3:20:",
                 "response code");
    expect_error("version: 1\ninteractions:\n- response: {}\n  delay: x\n", TCH_EPARSE,
                 "m.yaml:4:10:", "delay (milliseconds)");
    expect_error("version: 1\ninteractions:\n- response: {}\n", TCH_EPARSE, "m.yaml:3:3:",
                 "interaction: missing 'request'");
    /* the decoded fallback uses the request's scheme even when it comes later */
    const char *y = "version: 1\ninteractions:\n- response: {bodyDecoded: '{}'}\n  request: {argScheme: 1}\n";
    tch_cassette *c = NULL;
    tch_error err = {0};
    assert_int_equal(load_mem(y, strlen(y), &c, &err), 0);
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&tch_cassette_get(c, 0)->response.body), "{}"));
    tch_cassette_free(c);
    expect_error("version: 1\ninteractions:\n- response: {bodyDecoded: '{}'}\n  request: {argScheme: 2}\n",
                 TCH_EPARSE, "m.yaml:3:27:", "bodyDecoded without body");
    /* a second document fails where it starts, whatever it holds */
    expect_error("version: 1\ninteractions: []\n---\nversion: 1\n", TCH_EPARSE, "m.yaml:4:1:",
                 "expected one YAML document");
    expect_error("version: 1\ninteractions: []\n--- [\n", TCH_EPARSE, "m.yaml:3:5:",
                 "expected one YAML document");
    expect_error("version: 1\ninteractions: &a []\n--- *a\n", TCH_EPARSE, "m.yaml:3:5:",
                 "expected one YAML document");
    /* a YAML error in the first document is still one */
    expect_error("version: 1\ninteractions: []\n]\n", TCH_EPARSE, "m.yaml:3:", "malformed YAML");
    /* empty forms */
    const char *empties[] = {"# only a comment\n", "~\n", "{}\n", "version: 1\n", "---\n...\n"};
    for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
        assert_int_equal(load_mem(empties[i], strlen(empties[i]), &c, &err), 0);
        assert_int_equal(tch_cassette_count(c), 0);
        tch_cassette_free(c);
    }
}

/* The classic "billion laughs" (ten aliases of ten aliases, nine times
 * over: 10^9 strings if expanded) in a stub rule, which reads any YAML
 * value. The tree stays as small as the file and reading stops at the
 * alias budget with a clear error. */
static void billion_laughs_fails_early(void **state) {
    (void)state;
    tch_buf y = {0};
    char part[64];
    const char *head = "version: 1\ninteractions:\n- request:\n    body:\n      equalToJson:\n"
                       "      - &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
    tch_buf_append(&y, head, strlen(head));
    for (int i = 1; i <= 8; i++) {
        int n = snprintf(part, sizeof part, "      - &a%d [", i);
        tch_buf_append(&y, part, (size_t)n);
        for (int k = 0; k < 10; k++) {
            n = snprintf(part, sizeof part, "%s*a%d", k ? ", " : "", i - 1);
            tch_buf_append(&y, part, (size_t)n);
        }
        tch_buf_append(&y, "]\n", 2);
    }
    const char *tail = "  response: {}\n";
    tch_buf_append(&y, tail, strlen(tail));
    tch_cassette *c = NULL;
    tch_error err = {0};
    assert_int_equal(load_mem((const char *)y.ptr, y.len, &c, &err), TCH_ETOOBIG);
    assert_null(c);
    assert_non_null(strstr(err.msg, "aliases expand to too much data"));
    /* the same with two levels loads, expanded */
    y.len = strlen(head);
    const char *two = "      - &a1 [*a0, *a0]\n  response: {}\n";
    tch_buf_append(&y, two, strlen(two));
    assert_int_equal(load_mem((const char *)y.ptr, y.len, &c, &err), 0);
    assert_int_equal(tch_cassette_count(c), 1);
    tch_cassette_free(c);
    tch_buf_free(&y);
}

/* A node that contains itself ends on its shape or on the rule depth. */
static void self_containing_nodes_end(void **state) {
    (void)state;
    expect_error("version: 1\ninteractions:\n- request: {body: &a {not: *a}}\n  response: {}\n",
                 TCH_EPARSE, "m.yaml:3:19:", "body: nested deeper than 64 levels");
    expect_error("version: 1\ninteractions:\n- &i\n  request: {}\n  response: {}\n  error: *i\n",
                 TCH_EPARSE, "m.yaml:4:3:", "error: unknown key 'request'");
}

/* A tag is seen even with an anchor in front and wide characters before it
 * on the line; an anchor alone does not make a plain null text. */
static void anchored_scalars_resolve_like_pyyaml(void **state) {
    (void)state;
    const char *y = "version: 1\ninteractions:\n"
                    "- request: {serviceName: \"\xc3\xa9\xc3\xa9\", body: &b !!str null, "
                    "headers: &h null}\n"
                    "  response: {body: *b, headers: *h, template: &t false}\n";
    tch_cassette *c = load_ok(y);
    const tch_cassette_interaction *it = tch_cassette_get(c, 0);
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&it->request.body), "null"));
    assert_int_equal(it->request.headers.len, 0);
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&it->response.body), "null"));
    assert_int_equal(it->response.headers.len, 0);
    tch_cassette_free(c);
    expect_error("version: 1\ninteractions:\n- request: {}\n  response: {template: !!str true}\n",
                 TCH_EPARSE, "m.yaml:4:24:", "response template: expected true or false");
    /* tags other than the string ones are named in full */
    expect_error("version: 1\ninteractions:\n- request: {body: !!float 1.5}\n  response: {}\n",
                 TCH_EPARSE, "m.yaml:3:19:", "body: unsupported tag tag:yaml.org,2002:float");
    expect_error("version: 1\ninteractions:\n- request: {body: !foo x}\n  response: {}\n",
                 TCH_EPARSE, "m.yaml:3:19:", "body: unsupported tag !foo (expected");
    expect_error("version: 1\ninteractions:\n- request: {body: &x !!bool true}\n  response: {body: *x}\n",
                 TCH_EPARSE, "m.yaml:3:19:", "body: unsupported tag tag:yaml.org,2002:bool");
}

/* py2 cassettes share a knownPeers list (&id001 / *id001) across
 * interactions: the anchored list outlives the interaction it was written
 * in, which is released once read. */
static void anchors_outlive_their_interaction(void **state) {
    (void)state;
    tch_buf y = {0};
    const char *head = "version: 1\ninteractions:\n"
                       "- request: {body: a, knownPeers: &id001 ['127.0.0.1:1', '127.0.0.1:2']}\n"
                       "  response: {body: &r reply}\n";
    tch_buf_append(&y, head, strlen(head));
    for (int i = 0; i < 500; i++) {
        char item[128];
        int n = snprintf(item, sizeof item,
                         "- request: {body: b%d, knownPeers: *id001}\n  response: {body: *r}\n", i);
        tch_buf_append(&y, item, (size_t)n);
    }
    tch_cassette *c = NULL;
    tch_error err = {0};
    assert_int_equal(load_mem((const char *)y.ptr, y.len, &c, &err), 0);
    assert_int_equal(tch_cassette_count(c), 501);
    const tch_cassette_interaction *it = tch_cassette_get(c, 500);
    assert_int_equal(it->request.n_known_peers, 2);
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&it->request.known_peers[1]), "127.0.0.1:2"));
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&it->response.body), "reply"));
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&tch_cassette_get(c, 0)->response.body), "reply"));
    tch_cassette_free(c);
    tch_buf_free(&y);
    /* an anchored root or interactions list is read whole, with the same result */
    const char *whole[] = {
        "&top\nversion: 1\ninteractions:\n- request: {body: x}\n  response: {}\n",
        "version: 1\ninteractions: &l\n- request: {body: x}\n  response: {}\n",
        "version: 1\nx: &l\n- request: {body: x}\n  response: {}\n",
    };
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(load_mem(whole[i], strlen(whole[i]), &c, &err), 0);
        assert_int_equal(tch_cassette_count(c), 1);
        assert_true(tch_slice_eq_cstr(tch_buf_slice(&tch_cassette_get(c, 0)->request.body), "x"));
        tch_cassette_free(c);
    }
    expect_error(whole[2], TCH_EPARSE, "m.yaml:2:1:", "cassette: unknown key 'x'");
    expect_error("&top\ninteractions: *top\nversion: 1\n", TCH_EPARSE, "m.yaml:1:1:",
                 "interactions: expected a list");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(py2_fixture_loads_and_matches),
        cmocka_unit_test(py3_fixture_loads_binary),
        cmocka_unit_test(extensions_load),
        cmocka_unit_test(example_cassettes_load),
        cmocka_unit_test(empty_file_is_existing_empty_cassette),
        cmocka_unit_test(corrupt_yaml_names_line_and_column),
        cmocka_unit_test(truncated_yaml_names_position),
        cmocka_unit_test(bad_version_is_clear),
        cmocka_unit_test(unknown_key_is_named),
        cmocka_unit_test(wrong_shape_says_what_was_expected),
        cmocka_unit_test(memory_loader_uses_name),
        cmocka_unit_test(missing_response_and_error_is_rejected),
        cmocka_unit_test(local_timeouts_load_and_save),
        cmocka_unit_test(a_byte_equal_json_body_replays_first),
        cmocka_unit_test(bad_utf8_names_line_and_column),
        cmocka_unit_test(python_bytes_are_base64),
        cmocka_unit_test(tagged_null_is_text),
        cmocka_unit_test(anchors_and_aliases_resolve),
        cmocka_unit_test(alias_expansion_is_bounded),
        cmocka_unit_test(duplicate_keys_are_rejected),
        cmocka_unit_test(deeply_nested_junk_is_rejected),
        cmocka_unit_test(huge_scalars_load),
        cmocka_unit_test(errors_come_in_document_order),
        cmocka_unit_test(reader_error_deep_in_a_file_names_line_and_column),
        cmocka_unit_test(billion_laughs_fails_early),
        cmocka_unit_test(self_containing_nodes_end),
        cmocka_unit_test(anchored_scalars_resolve_like_pyyaml),
        cmocka_unit_test(anchors_outlive_their_interaction),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
