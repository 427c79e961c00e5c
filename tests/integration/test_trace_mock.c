/* tchannel-mock and tracing, over 127.0.0.1: its journal shows each
 * request's trace id, span id and parent id (GET /journal), and with
 * --trace-to / --trace-file it reports a SERVER span for each traced request,
 * posted to a Zipkin receiver inside this test and written to a file. Runs
 * the tchannel-mock of this build as a child. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <tchannel/channel.h>
#include <tchannel/trace.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../mock/mock_proc.h"
#include "loop.h"
#include "result.h"

#define MOCK_BIN TCH_BINARY_DIR "/mockserver/tchannel-mock"
#define CASSETTE TCH_SOURCE_DIR "/cassettes/echo-raw.yaml"

typedef struct receiver {
    struct evhttp *http;
    char url[128];
    json_t *all;
    int spans;
} receiver;

static void on_post(struct evhttp_request *req, void *arg) {
    receiver *rx = arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    json_t *body = json_loadb((const char *)evbuffer_pullup(in, -1), evbuffer_get_length(in),
                              0, NULL);
    if (json_is_array(body)) {
        rx->spans += (int)json_array_size(body);
        json_array_extend(rx->all, body);
    }
    json_decref(body);
    evhttp_send_reply(req, 202, "Accepted", NULL);
}

static void receiver_start(receiver *rx, struct event_base *base) {
    memset(rx, 0, sizeof *rx);
    rx->all = json_array();
    rx->http = evhttp_new(base);
    evhttp_set_gencb(rx->http, on_post, rx);
    struct evhttp_bound_socket *s = evhttp_bind_socket_with_handle(rx->http, "127.0.0.1", 0);
    assert_non_null(s);
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&a, &len);
    snprintf(rx->url, sizeof rx->url, "http://127.0.0.1:%d/api/v2/spans", ntohs(a.sin_port));
}

/* Our client spans, kept for their ids. */
typedef struct kept {
    tch_span v[8];
    int n;
} kept;

static void keep(const tch_span *s, void *ud) {
    kept *k = ud;
    if (k->n < 8)
        k->v[k->n++] = *s;
}

static void hex(char out[17], uint64_t v) { snprintf(out, 17, "%016" PRIx64, v); }

static const char *str(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

static void call_echo(struct event_base *base, tch_channel *ch, const char *hp,
                      const tch_trace *parent, int traced) {
    tch_call_opts o = {.service = "keyvalue-server", .endpoint = tch_slice_cstr("echo"),
                       .arg3 = tch_slice_cstr("hello"), .host_port = hp,
                       .headers = (tch_kv[]){{tch_slice_cstr("cn"),
                                                  tch_slice_cstr("keyvalue-client")}},
                       .nheaders = 1, .trace = parent, .traced = traced,
                       .retry_on = TCH_RETRY_NEVER};
    result r = {0};
    tch_error err;
    assert_int_equal(tch_channel_call(ch, &o, on_result, &r, &err), 0);
    assert_true(tch_test_run_until(base, &r.done, 5000));
    assert_int_equal(r.status, 0);
    result_free(&r);
}

static void test_journal_ids_and_server_spans(void **state) {
    (void)state;
    if (access(MOCK_BIN, X_OK) != 0)
        fail_msg("%s is not built (cmake --build the whole tree)", MOCK_BIN);
    struct event_base *base = event_base_new();
    receiver rx;
    receiver_start(&rx, base);
    char path[] = "/tmp/tch-mock-spans-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    char *argv[] = {MOCK_BIN, "--admin-port", "0", "--allow-repeats", "--trace-to", rx.url,
                    "--trace-file", path, CASSETTE, NULL};
    mock_proc mp;
    assert_int_equal(mp_start(&mp, argv, 1, 2), 0);

    tch_channel *ch;
    tch_channel_new(base, "keyvalue-client", NULL, &ch, NULL);
    kept k = {0};
    tch_error err;
    tch_tracer *tr;
    tch_tracer_new(ch, (tch_span_reporter){keep, &k}, &tr, &err);
    tch_trace parent = {.span_id = 0x1111222233334444ull, .trace_id = 0xaaaabbbbccccddddull,
                        .flags = 1};
    call_echo(base, ch, mp.hp, &parent, 0);  /* traced through its parent */
    call_echo(base, ch, mp.hp, NULL, 0);     /* not traced: no span */
    assert_int_equal(k.n, 1);

    json_t *j = NULL;
    assert_int_equal(mp_admin(&mp, base, EVHTTP_REQ_GET, "/journal", NULL, &j), 200);
    json_t *entries = json_object_get(j, "entries");
    assert_int_equal(json_array_size(entries), 2);
    json_t *e0 = json_array_get(entries, 0), *e1 = json_array_get(entries, 1);
    char t[17], s[17];
    hex(t, k.v[0].trace_id);
    hex(s, k.v[0].id);
    assert_string_equal(str(e0, "traceId"), "aaaabbbbccccdddd");
    assert_string_equal(str(e0, "traceId"), t);
    assert_string_equal(str(e0, "spanId"), s);
    assert_string_equal(str(e0, "parentId"), "1111222233334444");
    assert_true(json_is_true(json_object_get(e0, "traced")));
    assert_true(json_is_false(json_object_get(e1, "traced")));
    assert_int_equal(strlen(str(e1, "spanId")), 16);
    assert_string_equal(str(e1, "parentId"), "0000000000000000");
    json_decref(j);

    /* SIGTERM: the span still queued is posted before the mock exits */
    assert_int_equal(mp_stop(&mp, base, SIGTERM, 10000), 0);
    assert_true(tch_test_run_until_count(base, &rx.spans, 1, 5000));
    assert_int_equal(rx.spans, 1);
    json_t *span = json_array_get(rx.all, 0);
    assert_string_equal(str(span, "kind"), "SERVER");
    assert_string_equal(str(span, "traceId"), t);
    assert_string_equal(str(span, "id"), s);
    assert_string_equal(str(span, "parentId"), "1111222233334444");
    assert_string_equal(str(span, "name"), "echo");
    assert_true(json_is_true(json_object_get(span, "shared")));
    assert_string_equal(str(json_object_get(span, "localEndpoint"), "serviceName"),
                        "keyvalue-server");
    assert_string_equal(str(json_object_get(span, "remoteEndpoint"), "serviceName"),
                        "keyvalue-client");
    assert_string_equal(str(json_object_get(span, "tags"), "tchannel.status"), "ok");

    FILE *in = fopen(path, "r");
    char line[4096];
    assert_non_null(fgets(line, sizeof line, in));
    json_t *from_file = json_loads(line, 0, NULL);
    assert_true(json_equal(from_file, span));
    assert_null(fgets(line, sizeof line, in)); /* one span: one line */
    fclose(in);
    json_decref(from_file);
    unlink(path);

    tch_tracer_free(tr);
    tch_channel_free(ch);
    evhttp_free(rx.http);
    json_decref(rx.all);
    event_base_free(base);
}

static void test_bad_trace_flags(void **state) {
    (void)state;
    const char *cases[][3] = {
        {"--trace-to", "ftp://127.0.0.1/", "expected an http:// URL"},
        {"--trace-to", "http://", "expected an http:// URL"},
        {"--trace-file", "", "expected a path"},
    };
    /* the exit status and the one line saying why */
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "'%s' %s '%s' '%s' 2>&1", MOCK_BIN, cases[i][0], cases[i][1],
                 CASSETTE);
        FILE *p = popen(cmd, "r");
        char out[2048] = "";
        size_t n = fread(out, 1, sizeof out - 1, p);
        out[n] = 0;
        int st = pclose(p);
        assert_int_equal(WEXITSTATUS(st), 2);
        assert_non_null(strstr(out, cases[i][0]));
        assert_non_null(strstr(out, cases[i][2]));
    }
    /* a file that cannot be opened: named, exit 1 */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' --trace-file /nonexistent-dir/spans '%s' 2>&1", MOCK_BIN,
             CASSETTE);
    FILE *p = popen(cmd, "r");
    char out[2048] = "";
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    assert_int_equal(WEXITSTATUS(pclose(p)), 1);
    assert_non_null(strstr(out, "--trace-file"));
    assert_non_null(strstr(out, "/nonexistent-dir/spans"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_journal_ids_and_server_spans),
        cmocka_unit_test(test_bad_trace_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
