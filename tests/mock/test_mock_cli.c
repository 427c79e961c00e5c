/* tchannel-mock's command line and what it says: --help and --version,
 * one-line usage errors, a port in use, empty cassettes and folders, the
 * shutdown and -v lines, an upstream that is down, host names, and
 * --exit-on-stdin-eof. Each check shows the text a user sees. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <tchannel/cassette.h>
#include <tchannel/channel.h>
#include <tchannel/version.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#define MOCK_FX_CLIENT "cli-test"
#define MOCK_FX_DIR "/tmp/tch-mock-cli-XXXXXX"
#include "mock_fixture.h"
#include "ports.h"

#define SRC TCH_SOURCE_DIR
#define ECHO_YAML SRC "/cassettes/echo-raw.yaml"

/* ---- running the mock to its end ---------------------------------------------------- */

typedef struct run {
    int status; /* exit status, -1 when killed at the bound */
    char out[8192], err[8192];
} run;

/* Drains fd into buf (non-blocking). Returns 1 at EOF. */
static int drain(int fd, char *buf, size_t n, size_t *len) {
    for (;;) {
        if (*len + 1 >= n) { /* full: read and drop the rest */
            char sink[512];
            ssize_t r = read(fd, sink, sizeof sink);
            if (r > 0)
                continue;
            return r == 0;
        }
        ssize_t r = read(fd, buf + *len, n - *len - 1);
        if (r > 0) {
            *len += (size_t)r;
            buf[*len] = 0;
            continue;
        }
        return r == 0;
    }
}

/* Runs argv to its exit (bounded by 10 s), with stdin from /dev/null. */
static void run_to_end(char *const argv[], run *r) {
    memset(r, 0, sizeof *r);
    int out[2], err[2];
    assert_int_equal(pipe(out), 0);
    assert_int_equal(pipe(err), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);
        dup2(null, 0), dup2(out[1], 1), dup2(err[1], 2);
        close(out[0]), close(err[0]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(out[1]), close(err[1]);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    fcntl(err[0], F_SETFL, O_NONBLOCK);
    size_t ol = 0, el = 0;
    int oe = 0, ee = 0;
    long deadline = mp_now_ms() + 10000;
    while (!(oe && ee) && mp_now_ms() < deadline) {
        struct pollfd p[2] = {{oe ? -1 : out[0], POLLIN, 0}, {ee ? -1 : err[0], POLLIN, 0}};
        poll(p, 2, (int)(deadline - mp_now_ms()));
        if (!oe)
            oe = drain(out[0], r->out, sizeof r->out, &ol);
        if (!ee)
            ee = drain(err[0], r->err, sizeof r->err, &el);
    }
    if (!(oe && ee))
        kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    close(out[0]), close(err[0]);
    r->status = oe && ee && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static size_t count_of(const char *hay, const char *needle) {
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* ---- fixture ---------------------------------------------------------------------------- */

static void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
}

/* Appends what the running mock writes to stderr to buf (a string) until
 * `want` shows up in it (bounded: 5 s). */
static int stderr_until(fx *f, char *buf, size_t n, const char *want) {
    long deadline = mp_now_ms() + 5000;
    while (!strstr(buf, want) && mp_now_ms() < deadline) {
        struct pollfd p = {f->mp.err_fd, POLLIN, 0};
        poll(&p, 1, 100);
        mp_stderr(&f->mp, buf, n);
    }
    return strstr(buf, want) != NULL;
}

/* A raw echo call with the library's default retries (as a user's client). */
static result echo(fx *f, const char *body) {
    tch_call_opts o = {.service = "keyvalue-server", .endpoint = tch_slice_cstr("echo"),
                       .arg3 = tch_slice_cstr(body), .timeout_ms = 3000};
    return fx_call(f, o, 5000);
}

static void start(fx *f, char **argv) {
    int admin = 0;
    for (char **a = argv; *a; a++)
        admin |= !strcmp(*a, "--admin-port");
    assert_int_equal(mp_start(&f->mp, argv, admin, 1), 0);
}

/* ---- --help, --version, usage errors ---------------------------------------------------- */

static void help_and_version_go_to_stdout(void **state) {
    (void)state;
    run r;
    char *help[] = {TCH_MOCK_BIN, "--help", NULL};
    run_to_end(help, &r);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: tchannel-mock [options] CASSETTE|DIR ..."));
    assert_non_null(strstr(r.out, "--admin-token-file FILE"));
    assert_non_null(strstr(r.out, "--exit-on-stdin-eof"));
    assert_string_equal(r.err, "");
    char *h[] = {TCH_MOCK_BIN, "-h", NULL};
    run_to_end(h, &r);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage:"));
    char *version[] = {TCH_MOCK_BIN, "--version", NULL};
    run_to_end(version, &r);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "tchannel-mock " TCH_VERSION_STRING "\n");
    /* the test programs answer --help too */
    char *server[] = {TCH_INTEROP_SERVER, "--help", NULL};
    run_to_end(server, &r);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: interop-server"));
    assert_string_equal(r.err, "");
}

/* Every option --help lists is in the man page and in docs/mockserver.md. */
static void man_page_and_docs_list_every_option(void **state) {
    (void)state;
    run r;
    char *help[] = {TCH_MOCK_BIN, "--help", NULL};
    run_to_end(help, &r);
    assert_int_equal(r.status, 0);
    static char man[65536], md[262144];
    const char *files[] = {SRC "/docs/man/tchannel-mock.1", SRC "/docs/mockserver.md"};
    char *texts[] = {man, md};
    size_t sizes[] = {sizeof man, sizeof md};
    for (int i = 0; i < 2; i++) {
        FILE *fp = fopen(files[i], "r");
        assert_non_null(fp);
        size_t n = fread(texts[i], 1, sizes[i] - 1, fp);
        texts[i][n] = 0;
        fclose(fp);
    }
    size_t seen = 0;
    for (const char *p = r.out; (p = strstr(p, "--")); p += 2) {
        if (p > r.out && p[-1] != ' ')
            continue;
        char name[64];
        size_t n = strspn(p + 2, "abcdefghijklmnopqrstuvwxyz-");
        if (n == 0 || n >= 40)
            continue;
        char man_form[128], md_form[128];
        snprintf(name, sizeof name, "%.*s", (int)n, p + 2);
        /* troff: the leading dashes as \\-\\- (the page writes the rest plain) */
        snprintf(man_form, sizeof man_form, "\\-\\-%s", name);
        snprintf(md_form, sizeof md_form, "`--%s", name);
        if (!strstr(man, man_form))
            fail_msg("--%s is not in docs/man/tchannel-mock.1", name);
        if (!strstr(md, md_form))
            fail_msg("--%s is not in docs/mockserver.md", name);
        seen++;
    }
    assert_true(seen >= 30);
}

/* One line naming the problem and pointing to --help; exit 2; nothing on stdout. */
static void expect_usage_error(char **argv, const char *text) {
    run r;
    run_to_end(argv, &r);
    assert_int_equal(r.status, 2);
    assert_string_equal(r.out, "");
    char want[600];
    snprintf(want, sizeof want, "tchannel-mock: %s; try 'tchannel-mock --help'\n", text);
    if (strcmp(r.err, want) != 0)
        fail_msg("stderr was \"%s\", wanted \"%s\"", r.err, want);
}

static void usage_errors_are_one_line(void **state) {
    (void)state;
    char *a1[] = {TCH_MOCK_BIN, "--bogus", ECHO_YAML, NULL};
    expect_usage_error(a1, "unknown option --bogus");
    char *a2[] = {TCH_MOCK_BIN, ECHO_YAML, "--port", NULL};
    expect_usage_error(a2, "--port needs a value");
    char *a3[] = {TCH_MOCK_BIN, "-x", ECHO_YAML, NULL};
    expect_usage_error(a3, "unknown option -x");
    char *a4[] = {TCH_MOCK_BIN, "--admin", "1", ECHO_YAML, NULL};
    expect_usage_error(a4, "ambiguous option --admin");
    char *a5[] = {TCH_MOCK_BIN, "--verbose=yes", ECHO_YAML, NULL};
    expect_usage_error(a5, "--verbose takes no value");
    char *a6[] = {TCH_MOCK_BIN, "--upstream", "::1:4040", ECHO_YAML, NULL};
    expect_usage_error(a6, "--upstream: invalid host:port \"::1:4040\": an IPv6 address goes in "
                           "brackets: [ADDR]:PORT");
    char *a7[] = {TCH_MOCK_BIN, "--advertise-to", "router", ECHO_YAML, NULL};
    expect_usage_error(a7, "--advertise-to: invalid host:port \"router\": expected HOST:PORT");
    char *a8[] = {TCH_MOCK_BIN, "--admin-timeout", "0", ECHO_YAML, NULL};
    expect_usage_error(a8, "--admin-timeout: expected milliseconds, 1 to 3600000, got \"0\"");
    char *a9[] = {TCH_MOCK_BIN, "--admin-token-file", "/nonexistent", ECHO_YAML, NULL};
    expect_usage_error(a9, "--admin-token-file applies to the admin API: give --admin-port or "
                           "--admin-socket");
    char *a10[] = {TCH_MOCK_BIN, NULL};
    expect_usage_error(a10, "no cassette given (CASSETTE|DIR ..., --record-to PATH, or an admin "
                            "API to add stubs to: --admin-port/--admin-socket)");
    /* a number starts with a digit: no blank, no sign */
    char *a11[] = {TCH_MOCK_BIN, "--port", " 1", ECHO_YAML, NULL};
    expect_usage_error(a11, "--port: expected a port 0-65535, got \" 1\"");
    char *a12[] = {TCH_MOCK_BIN, "--admin-port", "+5", ECHO_YAML, NULL};
    expect_usage_error(a12, "--admin-port: expected a port 0-65535, got \"+5\"");
    char *a13[] = {TCH_MOCK_BIN, "--upstream", "localhost:+5", ECHO_YAML, NULL};
    expect_usage_error(a13, "--upstream: invalid host:port \"localhost:+5\": the port must be "
                            "a number 1-65535");
    /* host names and bracketed IPv6 pass the syntax check */
    char *ok[] = {TCH_MOCK_BIN, "--upstream", "localhost:1", "--advertise-to", "[::1]:2",
                  "--version", NULL};
    run r;
    run_to_end(ok, &r);
    assert_int_equal(r.status, 0);
}

/* ---- start-up messages -------------------------------------------------------------------- */

static void a_port_in_use_is_said_once(void **state) {
    (void)state;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(s, 1), 0);
    socklen_t len = sizeof sa;
    getsockname(s, (struct sockaddr *)&sa, &len);
    char port[16], addr[64];
    snprintf(port, sizeof port, "%d", ntohs(sa.sin_port));
    snprintf(addr, sizeof addr, "127.0.0.1:%s", port);
    char *argv[] = {TCH_MOCK_BIN, "--port", port, ECHO_YAML, NULL};
    run r;
    run_to_end(argv, &r);
    close(s);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "Address already in use"));
    if (count_of(r.err, addr) != 1)
        fail_msg("the address should be named once: %s", r.err);
}

static void empty_cassettes_and_folders_are_warned_about(void **state) {
    fx *f = *state;
    char empty_dir[300], empty_file[300];
    snprintf(empty_dir, sizeof empty_dir, "%s/none", f->dir);
    snprintf(empty_file, sizeof empty_file, "%s/empty.yaml", f->dir);
    assert_int_equal(mkdir(empty_dir, 0700), 0);
    write_text(empty_file, "");
    char *argv[] = {TCH_MOCK_BIN, empty_dir, empty_file, ECHO_YAML, NULL};
    start(f, argv);
    char err[4096] = "";
    char want[600];
    snprintf(want, sizeof want, "tchannel-mock: warning: folder %s holds no *.yaml or *.yml "
             "cassette: nothing to serve from it\n", empty_dir);
    assert_true(stderr_until(f, err, sizeof err, want));
    snprintf(want, sizeof want, "tchannel-mock: warning: %s is empty (no interactions): nothing "
             "to serve from it\n", empty_file);
    assert_true(stderr_until(f, err, sizeof err, want));
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0);
    /* an empty file is a cassette with no interactions; a file with content
     * and no version is refused, naming the file and line */
    char nov[300];
    snprintf(nov, sizeof nov, "%s/noversion.yaml", f->dir);
    write_text(nov, "interactions: []\n");
    char *argv2[] = {TCH_MOCK_BIN, nov, NULL};
    run r;
    run_to_end(argv2, &r);
    assert_int_equal(r.status, 1);
    snprintf(want, sizeof want, "%s:1:1: cassette: missing 'version' (expected version: 1)", nov);
    assert_non_null(strstr(r.err, want));
}

/* ---- shutdown and -v -------------------------------------------------------------------- */

static void shutdown_in_mode_none_claims_no_save(void **state) {
    fx *f = *state;
    char *argv[] = {TCH_MOCK_BIN, ECHO_YAML, NULL};
    start(f, argv);
    assert_string_equal(echo(f, "hello").arg3, "hello");
    int err_fd = f->mp.err_fd;
    f->mp.err_fd = -1; /* mp_stop must not close it: we read it to its end */
    assert_int_equal(mp_stop(&f->mp, f->base, SIGTERM, 5000), 0);
    char err[4096] = "";
    size_t len = 0;
    drain(err_fd, err, sizeof err, &len);
    close(err_fd);
    assert_non_null(strstr(err, "SIGTERM: shutting down"));
    if (strstr(err, "saved"))
        fail_msg("nothing was written, yet: %s", err);
}

static void up_echo(tch_inbound *in, void *ud) {
    (void)ud;
    tch_inbound_respond(in, 0, tch_inbound_arg2(in), tch_inbound_arg3(in));
}

static tch_channel *start_upstream(fx *f) {
    tch_channel *srv;
    tch_channel_new(f->base, "keyvalue-server", NULL, &srv, NULL);
    tch_error err;
    assert_int_equal(tch_channel_listen(srv, NULL, &err), 0);
    tch_channel_register(srv, NULL, "echo", up_echo, NULL);
    return srv;
}

/* -v names the cassette a call records into, without a made-up index. */
static void verbose_recording_names_no_index(void **state) {
    fx *f = *state;
    tch_channel *srv = start_upstream(f);
    char path[300];
    snprintf(path, sizeof path, "%s/rec.yaml", f->dir);
    char *argv[] = {TCH_MOCK_BIN, "-v", "--mode", "once", "--upstream",
                    (char *)tch_channel_host_port(srv), path, NULL};
    start(f, argv);
    assert_string_equal(echo(f, "one").arg3, "one");
    char err[8192] = "", want[400];
    snprintf(want, sizeof want, "keyvalue-server::echo (raw) forwarded, recording into %s\n", path);
    assert_true(stderr_until(f, err, sizeof err, want));
    assert_null(strstr(err, "#-1"));
    tch_channel_free(srv);
}

/* ---- record-through with the upstream down ------------------------------------------------- */

static void journal_total(fx *f, json_int_t want) {
    json_t *j = NULL;
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_GET, "/journal", NULL, &j), 200);
    json_int_t total = json_integer_value(json_object_get(j, "total"));
    json_decref(j);
    if (total != want)
        fail_msg("the mock received %lld calls, expected %lld", (long long)total, (long long)want);
}

static void an_upstream_that_is_down_is_said_and_not_retried(void **state) {
    fx *f = *state;
    char dead[64], path[300];
    assert_int_equal(tch_test_dead_port(dead, sizeof dead), 0);
    snprintf(path, sizeof path, "%s/rec.yaml", f->dir);
    char *argv[] = {TCH_MOCK_BIN, "--admin-port", "0", "--mode", "once", "--upstream", dead,
                    path, NULL};
    start(f, argv);
    /* the client retries what may be retried (its defaults): the answer must
     * not invite it, so the mock sees the call once */
    result r = echo(f, "x");
    assert_int_equal(r.status, TCH_EREMOTE);
    assert_int_equal(r.error_code, TCH_PCODE_UNEXPECTED);
    char want[200];
    snprintf(want, sizeof want, "upstream %s is down (", dead);
    if (!strstr(r.message, want))
        fail_msg("answer: %s", r.message);
    journal_total(f, 1);
    /* at once again, without knocking on the upstream */
    r = echo(f, "y");
    assert_int_equal(r.error_code, TCH_PCODE_UNEXPECTED);
    assert_non_null(strstr(r.message, "not forwarded"));
    journal_total(f, 2);
    char err[8192] = "";
    snprintf(want, sizeof want, "tchannel-mock: upstream %s is down: ", dead);
    assert_true(stderr_until(f, err, sizeof err, want));
    assert_int_equal(count_of(err, want), 1); /* said when it went down, not per call */
}

/* ---- host names --------------------------------------------------------------------------- */

static void host_names_for_listen_and_upstream(void **state) {
    fx *f = *state;
    tch_channel *srv = start_upstream(f);
    char up[64], path[300];
    snprintf(up, sizeof up, "localhost:%s", strrchr(tch_channel_host_port(srv), ':') + 1);
    snprintf(path, sizeof path, "%s/rec.yaml", f->dir);
    char *argv[] = {TCH_MOCK_BIN, "--host", "localhost", "--mode", "once", "--upstream", up,
                    path, NULL};
    start(f, argv);
    assert_string_equal(echo(f, "by name").arg3, "by name");
    tch_channel_free(srv);
}

/* Loopback is judged by the address bound: ::ffff:127.0.0.1 is loopback,
 * so no warning about a token. The warning comes before the admin line
 * mp_start waits for, so what stderr holds then is all there is. */
static void a_mapped_loopback_admin_host_is_not_warned_about(void **state) {
    fx *f = *state;
    char *argv[] = {TCH_MOCK_BIN, "--admin-port", "0", "--admin-host", "::ffff:127.0.0.1",
                    ECHO_YAML, NULL};
    start(f, argv);
    char err[8192] = "";
    mp_stderr(&f->mp, err, sizeof err);
    if (strstr(err, "warning"))
        fail_msg("stderr: %s", err);
    assert_non_null(strstr(f->mp.admin, "127.0.0.1"));
}

/* ---- --exit-on-stdin-eof -------------------------------------------------------------------- */

/* A stub server needs no file: with an admin API the mock starts empty, and a
 * stub added over HTTP answers the next call. */
static void no_cassette_with_an_admin_api_serves_runtime_stubs(void **state) {
    fx *f = *state;
    char *argv[] = {TCH_MOCK_BIN, "--admin-port", "0", NULL};
    start(f, argv);
    assert_int_equal(mp_admin(&f->mp, f->base, EVHTTP_REQ_POST, "/stubs",
                              "{\"request\": {\"serviceName\": \"keyvalue-server\", "
                              "\"endpoint\": \"echo\"}, \"response\": {\"body\": \"stubbed\"}}",
                              NULL),
                     201);
    result r = echo(f, "anything");
    assert_int_equal(r.status, 0);
    assert_memory_equal(r.arg3, "stubbed", 7);
}

static void stdin_eof_shuts_down_and_saves(void **state) {
    fx *f = *state;
    tch_channel *srv = start_upstream(f);
    char path[300];
    snprintf(path, sizeof path, "%s/rec.yaml", f->dir);
    int in[2], out[2];
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(out), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0), dup2(out[1], 1);
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 2);
        execl(TCH_MOCK_BIN, TCH_MOCK_BIN, "--exit-on-stdin-eof", "--mode", "once", "--upstream",
              tch_channel_host_port(srv), path, (char *)NULL);
        _exit(127);
    }
    close(in[0]), close(out[1]);
    memset(&f->mp, 0, sizeof f->mp);
    f->mp.pid = pid, f->mp.out_fd = out[0], f->mp.err_fd = -1;
    char line[256];
    assert_int_equal(mp_read_line(out[0], line, sizeof line, mp_now_ms() + 10000), 0);
    assert_int_equal(strncmp(line, "listening ", 10), 0);
    snprintf(f->mp.hp, sizeof f->mp.hp, "%s", line + 10);
    assert_int_equal(write(in[1], "ignored\n", 8), 8); /* what the parent writes is dropped */
    assert_string_equal(echo(f, "kept").arg3, "kept");
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    assert_true(pidfd >= 0);
    close(in[1]); /* the parent "dies" */
    struct pollfd p = {pidfd, POLLIN, 0};
    assert_int_equal(poll(&p, 1, 5000), 1); /* exits within the bound */
    close(pidfd);
    int status;
    waitpid(pid, &status, 0);
    close(out[0]);
    f->mp.pid = 0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    tch_cassette *c;
    tch_error err;
    assert_int_equal(tch_cassette_open(path, NULL, &c, &err), 0); /* the recording is on disk */
    assert_int_equal(tch_cassette_count(c), 1);
    tch_cassette_free(c);
    tch_channel_free(srv);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(help_and_version_go_to_stdout),
        cmocka_unit_test(usage_errors_are_one_line),
        cmocka_unit_test(man_page_and_docs_list_every_option),
        cmocka_unit_test(a_port_in_use_is_said_once),
        cmocka_unit_test_setup_teardown(empty_cassettes_and_folders_are_warned_about, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(shutdown_in_mode_none_claims_no_save, setup, teardown),
        cmocka_unit_test_setup_teardown(verbose_recording_names_no_index, setup, teardown),
        cmocka_unit_test_setup_teardown(an_upstream_that_is_down_is_said_and_not_retried, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(stdin_eof_shuts_down_and_saves, setup, teardown),
        cmocka_unit_test_setup_teardown(no_cassette_with_an_admin_api_serves_runtime_stubs, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(host_names_for_listen_and_upstream, setup, teardown),
        cmocka_unit_test_setup_teardown(a_mapped_loopback_admin_host_is_not_warned_about, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
