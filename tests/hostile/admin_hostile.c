/* Hostile use of tchannel-mock's admin API: loading or recording outside the
 * cassette roots (.., symbolic links, /etc, /root, a record target
 * elsewhere), no or a wrong bearer token, a body sent one byte at a time,
 * more connections than the cap, and the Unix socket's permissions. Requests
 * are written by hand on raw sockets, so a test controls every byte and
 * every header. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "mock_proc.h"

#define SRC TCH_SOURCE_DIR
#define ECHO_YAML SRC "/cassettes/echo-raw.yaml"
#define SECRET "TOP-SECRET-FIRST-LINE"

typedef struct fx {
    char dir[256], root[300], outside[300];
    mock_proc mp;
} fx;

static void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
}

static int setup(void **state) {
    fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/tch-admin-hostile-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->root, sizeof f->root, "%s/root", f->dir);
    snprintf(f->outside, sizeof f->outside, "%s/outside", f->dir);
    assert_int_equal(mkdir(f->root, 0700), 0);
    assert_int_equal(mkdir(f->outside, 0700), 0);
    char p[400], q[400];
    /* not a cassette: a load would quote its first line in the error */
    snprintf(p, sizeof p, "%s/secret.yaml", f->outside);
    write_text(p, SECRET "\n");
    snprintf(p, sizeof p, "%s/echo.yaml", f->root);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", ECHO_YAML, p);
    assert_int_equal(system(cmd), 0);
    /* links inside the root that lead out of it */
    snprintf(p, sizeof p, "%s/secret.yaml", f->outside);
    snprintf(q, sizeof q, "%s/link.yaml", f->root);
    assert_int_equal(symlink(p, q), 0);
    snprintf(q, sizeof q, "%s/away", f->root);
    assert_int_equal(symlink(f->outside, q), 0);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    if (f->mp.pid)
        mp_stop(&f->mp, NULL, SIGKILL, 5000);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Starts the mock on the root's cassette with an admin port and more args. */
static void start(fx *f, const char *first, ...) {
    char *argv[32], cassette[400];
    int n = 0;
    argv[n++] = TCH_MOCK_BIN;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && n < 28; a = va_arg(ap, const char *))
        argv[n++] = (char *)a;
    va_end(ap);
    int unix_socket = 0;
    for (int i = 1; i < n; i++)
        unix_socket |= !strcmp(argv[i], "--admin-socket");
    if (!unix_socket) {
        argv[n++] = "--admin-port";
        argv[n++] = "0";
    }
    snprintf(cassette, sizeof cassette, "%s/echo.yaml", f->root);
    argv[n++] = cassette;
    argv[n] = NULL;
    assert_int_equal(mp_start(&f->mp, argv, 1, 1), 0);
}

/* ---- raw HTTP ---------------------------------------------------------------------------- */

static struct sockaddr_un unix_addr(const char *path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    assert_true(n < sizeof sa.sun_path);
    memcpy(sa.sun_path, path, n + 1);
    return sa;
}

static int connect_admin(const fx *f) {
    if (!strncmp(f->mp.admin, "unix:", 5)) {
        struct sockaddr_un sa = unix_addr(f->mp.admin + 5);
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof sa), 0);
        return s;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->mp.admin_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int s = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof sa), 0);
    return s;
}

/* Reads until the peer closes (bounded by ms). Returns 1 when it closed. */
static int read_to_close(int s, char *buf, size_t n, int ms) {
    size_t len = 0;
    long deadline = mp_now_ms() + ms;
    buf[0] = 0;
    while (mp_now_ms() < deadline) {
        struct pollfd p = {s, POLLIN, 0};
        if (poll(&p, 1, (int)(deadline - mp_now_ms())) <= 0)
            continue;
        char tmp[4096];
        ssize_t r = read(s, tmp, sizeof tmp);
        if (r <= 0)
            return 1;
        size_t take = (size_t)r < n - len - 1 ? (size_t)r : n - len - 1;
        memcpy(buf + len, tmp, take);
        len += take;
        buf[len] = 0;
    }
    return 0;
}

/* One request (Connection: close); the status code, the whole answer in out. */
static int http(const fx *f, const char *method, const char *path, const char *auth,
                const char *body, char *out, size_t n) {
    int s = connect_admin(f);
    char req[16384];
    int len = snprintf(req, sizeof req,
                       "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s%s%s"
                       "Content-Length: %zu\r\n\r\n%s",
                       method, path, auth ? "Authorization: " : "", auth ? auth : "",
                       auth ? "\r\n" : "", body ? strlen(body) : 0, body ? body : "");
    assert_true(len > 0 && (size_t)len < sizeof req);
    assert_int_equal(write(s, req, (size_t)len), len);
    int closed = read_to_close(s, out, n, 5000);
    close(s);
    assert_true(closed);
    int code = 0;
    sscanf(out, "HTTP/1.%*d %d", &code);
    return code;
}

static int post_path(const fx *f, const char *path, int record_target, char *out, size_t n) {
    char body[600];
    int len = snprintf(body, sizeof body, "{\"path\": \"%s\"%s}", path,
                       record_target ? ", \"recordTarget\": true" : "");
    assert_true(len > 0 && (size_t)len < sizeof body); /* a cut path would test another path */
    return http(f, "POST", "/cassettes", NULL, body, out, n);
}

/* ---- confinement ------------------------------------------------------------------------ */

static void expect_403(const fx *f, const char *path, int record_target) {
    char out[8192];
    int code = post_path(f, path, record_target, out, sizeof out);
    if (code != 403 || !strstr(out, "outside the folders the admin API may use"))
        fail_msg("POST /cassettes %s%s: %d %s", path, record_target ? " (recordTarget)" : "",
                 code, out);
    if (strstr(out, SECRET) || strstr(out, "root:x:0:0"))
        fail_msg("the answer quotes the file: %s", out);
}

static void loads_and_records_only_inside_the_roots(void **state) {
    fx *f = *state;
    start(f, NULL);
    char p[600];
    snprintf(p, sizeof p, "%s/secret.yaml", f->outside);
    expect_403(f, p, 0);
    snprintf(p, sizeof p, "%s/../outside/secret.yaml", f->root); /* .. */
    expect_403(f, p, 0);
    snprintf(p, sizeof p, "%s/link.yaml", f->root); /* a file link out of the root */
    expect_403(f, p, 0);
    snprintf(p, sizeof p, "%s/away", f->root); /* a folder link out of the root */
    expect_403(f, p, 0);
    snprintf(p, sizeof p, "%s/away/secret.yaml", f->root);
    expect_403(f, p, 0);
    expect_403(f, "/etc/passwd", 0);
    expect_403(f, "/etc/shadow", 0);
    expect_403(f, "/etc", 0);
    expect_403(f, "/root", 0);
    /* a record target elsewhere: refused, and nothing is created there */
    snprintf(p, sizeof p, "%s/new.yaml", f->outside);
    expect_403(f, p, 1);
    assert_int_equal(access(p, F_OK), -1);
    snprintf(p, sizeof p, "%s/newdir/new.yaml", f->outside);
    expect_403(f, p, 1);
    snprintf(p, sizeof p, "%s/newdir", f->outside);
    assert_int_equal(access(p, F_OK), -1);
    snprintf(p, sizeof p, "%s/away/new.yaml", f->root);
    expect_403(f, p, 1);
    expect_403(f, "/root/new.yaml", 1);
    /* the root's own folder itself, with its escaping link among its files */
    char out[8192];
    assert_int_equal(post_path(f, f->root, 0, out, sizeof out), 403);
    assert_non_null(strstr(out, "link.yaml: outside the folders"));
    /* inside, in a folder that is not there: not created either, and said so */
    snprintf(p, sizeof p, "%s/nodir/new.yaml", f->root);
    assert_int_equal(post_path(f, p, 1, out, sizeof out), 404);
    assert_non_null(strstr(out, "nodir/new.yaml: its folder does not exist"));
    snprintf(p, sizeof p, "%s/nodir", f->root);
    assert_int_equal(access(p, F_OK), -1);
    snprintf(p, sizeof p, "%s/nodir/../../outside/nodir/new.yaml", f->root);
    expect_403(f, p, 1);
    /* inside: a new cassette to record into is fine */
    snprintf(p, sizeof p, "%s/new.yaml", f->root);
    assert_int_equal(post_path(f, p, 1, out, sizeof out), 201);
}

/* --cassette-root opens a folder; what is in it may then be quoted. */
static void a_cassette_root_is_a_root(void **state) {
    fx *f = *state;
    start(f, "--cassette-root", f->outside, NULL);
    char p[600], out[8192];
    snprintf(p, sizeof p, "%s/secret.yaml", f->outside);
    assert_int_equal(post_path(f, p, 0, out, sizeof out), 400);
    assert_non_null(strstr(out, "secret.yaml:1:"));
    snprintf(p, sizeof p, "%s/link.yaml", f->root); /* now it leads into a root */
    assert_int_equal(post_path(f, p, 0, out, sizeof out), 400);
    expect_403(f, "/etc/passwd", 0);
}

/* A folder reached through a link out of the roots: whether it exists
 * must not show (403 either way, never 404). */
static void a_missing_folder_outside_is_not_told_apart(void **state) {
    fx *f = *state;
    char p[600], out[8192];
    snprintf(p, sizeof p, "%s/exists", f->outside);
    assert_int_equal(mkdir(p, 0700), 0);
    start(f, NULL);
    snprintf(p, sizeof p, "%s/away/exists/x.yaml", f->root);
    expect_403(f, p, 1);
    snprintf(p, sizeof p, "%s/away/missing/x.yaml", f->root);
    expect_403(f, p, 1);
    snprintf(p, sizeof p, "%s/away/missing/deeper/x.yaml", f->root);
    expect_403(f, p, 1);
    char body[700];
    snprintf(body, sizeof body, "{\"path\": \"%s/away/missing/x.yaml\"}", f->root);
    assert_int_equal(http(f, "POST", "/stubs/save", NULL, body, out, sizeof out), 403);
    /* inside, the missing folder is still said */
    snprintf(p, sizeof p, "%s/nodir/deeper/new.yaml", f->root);
    assert_int_equal(post_path(f, p, 1, out, sizeof out), 404);
}

static void write_stubs_save(const fx *f, const char *path, const char *extra, int want,
                             const char *says) {
    char body[900], out[8192];
    snprintf(body, sizeof body, "{\"path\": \"%s\"%s}", path, extra ? extra : "");
    int code = http(f, "POST", "/stubs/save", NULL, body, out, sizeof out);
    if (code != want || (says && !strstr(out, says)))
        fail_msg("POST /stubs/save %s%s: %d %s", path, extra ? extra : "", code, out);
}

static long file_size(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

/* A link planted where the old saver put its temp file (PATH.tmp.PID) is
 * never followed: the file outside keeps its bytes. */
static void stubs_save_follows_no_planted_link(void **state) {
    fx *f = *state;
    start(f, NULL);
    char victim[400], link[500], target[400];
    snprintf(victim, sizeof victim, "%s/victim.conf", f->outside);
    write_text(victim, "precious\n");
    snprintf(target, sizeof target, "%s/new.yaml", f->root);
    snprintf(link, sizeof link, "%s.tmp.%ld", target, (long)f->mp.pid);
    assert_int_equal(symlink(victim, link), 0);
    write_stubs_save(f, target, NULL, 200, "\"saved\": 0");
    assert_int_equal(file_size(victim), 9);
    struct stat st;
    assert_int_equal(lstat(target, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(lstat(link, &st), 0); /* left alone: not ours */
    assert_true(S_ISLNK(st.st_mode));
    /* no temp file stays behind */
    char cmd[600], out[64] = "";
    snprintf(cmd, sizeof cmd, "ls -A '%s' | grep -c '^\\.new.yaml.tmp' || true", f->root);
    FILE *fp = popen(cmd, "r");
    assert_non_null(fp);
    assert_non_null(fgets(out, sizeof out, fp));
    pclose(fp);
    assert_string_equal(out, "0\n");
}

/* /stubs/save never replaces a loaded cassette or its journal, and an
 * existing file only when asked. */
static void stubs_save_keeps_loaded_and_existing_files(void **state) {
    fx *f = *state;
    start(f, NULL);
    char p[500], q[500];
    snprintf(p, sizeof p, "%s/echo.yaml", f->root);
    long before = file_size(p);
    assert_true(before > 100);
    write_stubs_save(f, p, NULL, 409, "is the loaded cassette");
    write_stubs_save(f, p, ", \"overwrite\": true", 409, "is the loaded cassette");
    snprintf(q, sizeof q, "%s/./echo.yaml", f->root); /* another spelling */
    write_stubs_save(f, q, ", \"overwrite\": true", 409, "is the loaded cassette");
    snprintf(q, sizeof q, "%s/echo.yaml.journal", f->root);
    write_stubs_save(f, q, ", \"overwrite\": true", 409, "is the loaded cassette");
    assert_int_equal(access(q, F_OK), -1);
    snprintf(q, sizeof q, "%s/alias.yaml", f->root); /* a link to it */
    assert_int_equal(symlink(p, q), 0);
    write_stubs_save(f, q, ", \"overwrite\": true", 409, "is the loaded cassette");
    assert_int_equal(file_size(p), before);
    snprintf(q, sizeof q, "%s/other.yaml", f->root);
    write_text(q, "keep me\n");
    write_stubs_save(f, q, NULL, 409, "exists; give");
    assert_int_equal(file_size(q), 8);
    write_stubs_save(f, q, ", \"overwrite\": \"yes\"", 400, "overwrite: expected true or false");
    write_stubs_save(f, q, ", \"overwrite\": true", 200, "\"saved\": 0");
    assert_int_equal(file_size(q), 28); /* version: 1, interactions: [] */
    write_stubs_save(f, f->root, ", \"overwrite\": true", 400, "is a folder");
}

/* A token of any length is read whole: its first 4095 bytes are not it. */
static void a_long_token_is_read_whole(void **state) {
    fx *f = *state;
    char tok[400], out[8192];
    static char token[5001], auth[5100];
    memset(token, 'k', 5000);
    token[4999] = 'z';
    snprintf(tok, sizeof tok, "%s/token", f->dir);
    FILE *fp = fopen(tok, "w");
    assert_non_null(fp);
    fprintf(fp, "%s\n", token);
    assert_int_equal(fclose(fp), 0);
    start(f, "--admin-token-file", tok, NULL);
    snprintf(auth, sizeof auth, "Bearer %.4095s", token);
    assert_int_equal(http(f, "GET", "/health", auth, NULL, out, sizeof out), 401);
    snprintf(auth, sizeof auth, "Bearer %s", token);
    assert_int_equal(http(f, "GET", "/health", auth, NULL, out, sizeof out), 200);
}

/* A cassette loaded through a link inside the root, the link then pointed
 * out of the root: a reload (and a reset) neither reads, quotes nor serves
 * what it now leads to; the last good version keeps serving. */
static void a_link_swapped_after_load_is_not_followed(void **state) {
    fx *f = *state;
    char p[600], q[600], body[700], out[16384], cmd[1400];
    snprintf(p, sizeof p, "%s/private.yaml", f->outside);
    write_text(p, "version: 1\ninteractions:\n"
                  "- request: {serviceName: private-svc, endpoint: secret-endpoint, body: q}\n"
                  "  response: {body: PRIVATE-BODY}\n");
    snprintf(p, sizeof p, "%s/a.yaml", f->root);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", ECHO_YAML, p);
    assert_int_equal(system(cmd), 0);
    snprintf(q, sizeof q, "%s/swap.yaml", f->root);
    assert_int_equal(symlink("a.yaml", q), 0);
    start(f, "--no-watch", NULL);
    assert_int_equal(post_path(f, q, 0, out, sizeof out), 201);
    const char *leads[] = {"../outside/secret.yaml", "../outside/private.yaml"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd, "ln -sfn '%s' '%s'", leads[i], q);
        assert_int_equal(system(cmd), 0);
        const char *ep[] = {"/reload", "/reset"};
        for (size_t k = 0; k < 2; k++) {
            int code = http(f, "POST", ep[k], NULL, NULL, out, sizeof out);
            if (code != 409 || !strstr(out, "swap.yaml: 403: now outside the folders") ||
                strstr(out, SECRET) || strstr(out, "private-svc"))
                fail_msg("POST %s with swap.yaml -> %s: %d %s", ep[k], leads[i], code, out);
        }
        assert_int_equal(http(f, "GET", "/cassettes", NULL, NULL, out, sizeof out), 200);
        if (strstr(out, SECRET) || strstr(out, "private-svc") || !strstr(out, "403: now outside"))
            fail_msg("GET /cassettes: %s", out);
    }
    /* the cassettes given on the command line reload as before */
    snprintf(body, sizeof body, "%s/echo.yaml", f->root);
    assert_non_null(strstr(out, body));
    assert_null(strstr(out, "echo.yaml: 403"));
    /* back inside: reloads again */
    snprintf(cmd, sizeof cmd, "ln -sfn a.yaml '%s'", q);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(http(f, "POST", "/reload", NULL, NULL, out, sizeof out), 200);
}

/* ---- authentication -------------------------------------------------------------------------- */

static void a_token_is_required_when_configured(void **state) {
    fx *f = *state;
    char tok[400], out[8192];
    snprintf(tok, sizeof tok, "%s/token", f->dir);
    write_text(tok, "  s3cret-token \nsecond line ignored\n");
    start(f, "--admin-token-file", tok, NULL);
    assert_int_equal(http(f, "GET", "/health", NULL, NULL, out, sizeof out), 401);
    assert_non_null(strstr(out, "needs Authorization: Bearer TOKEN"));
    assert_non_null(strstr(out, "WWW-Authenticate: Bearer"));
    assert_int_equal(http(f, "GET", "/health", "Bearer wrong", NULL, out, sizeof out), 401);
    assert_non_null(strstr(out, "wrong token"));
    assert_int_equal(http(f, "GET", "/health", "Bearer s3cret-toke", NULL, out, sizeof out), 401);
    assert_int_equal(http(f, "GET", "/health", "Bearer s3cret-token2", NULL, out, sizeof out),
                     401);
    assert_int_equal(http(f, "GET", "/health", "Basic s3cret-token", NULL, out, sizeof out), 401);
    assert_int_equal(http(f, "POST", "/cassettes", NULL, "{\"path\": \"/etc/passwd\"}", out,
                          sizeof out), 401);
    assert_int_equal(http(f, "GET", "/health", "Bearer s3cret-token", NULL, out, sizeof out), 200);
    assert_int_equal(http(f, "GET", "/health", "bearer s3cret-token", NULL, out, sizeof out), 200);
}

static int run_status(char *const argv[], char *err, size_t n) {
    int e[2];
    assert_int_equal(pipe(e), 0);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1), dup2(e[1], 2);
        close(e[0]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(e[1]);
    size_t len = 0;
    long deadline = mp_now_ms() + 10000;
    while (len + 1 < n && mp_now_ms() < deadline) {
        struct pollfd p = {e[0], POLLIN, 0};
        if (poll(&p, 1, (int)(deadline - mp_now_ms())) <= 0)
            continue;
        ssize_t r = read(e[0], err + len, n - len - 1);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    err[len] = 0;
    close(e[0]);
    if (mp_now_ms() >= deadline)
        kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void a_bad_token_file_refuses_to_start(void **state) {
    fx *f = *state;
    char tok[400], err[4096], cassette[400];
    snprintf(tok, sizeof tok, "%s/empty-token", f->dir);
    write_text(tok, "   \n");
    snprintf(cassette, sizeof cassette, "%s/echo.yaml", f->root);
    char *a1[] = {TCH_MOCK_BIN, "--admin-port", "0", "--admin-token-file", tok, cassette, NULL};
    assert_int_equal(run_status(a1, err, sizeof err), 1);
    assert_non_null(strstr(err, "the first line is empty"));
    char *a2[] = {TCH_MOCK_BIN, "--admin-port", "0", "--admin-token-file", "/nonexistent/token",
                  cassette, NULL};
    assert_int_equal(run_status(a2, err, sizeof err), 1);
    assert_non_null(strstr(err, "--admin-token-file /nonexistent/token: No such file"));
    char *a3[] = {TCH_MOCK_BIN, "--admin-port", "0", "--cassette-root", "/nonexistent/dir",
                  cassette, NULL};
    assert_int_equal(run_status(a3, err, sizeof err), 1);
    assert_non_null(strstr(err, "--cassette-root /nonexistent/dir: No such file"));
}

/* ---- limits --------------------------------------------------------------------------------- */

/* A body sent a byte every 200 ms is cut off at --admin-timeout, and the log
 * says so. The 200 ms poll paces the bytes and watches for the close. */
static void a_slow_body_is_closed_at_the_timeout(void **state) {
    fx *f = *state;
    start(f, "--admin-timeout", "1000", NULL);
    int s = connect_admin(f);
    const char *head = "POST /cassettes HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{";
    long t0 = mp_now_ms();
    assert_int_equal(write(s, head, strlen(head)), (ssize_t)strlen(head));
    int closed = 0;
    while (!closed && mp_now_ms() - t0 < 5000) {
        struct pollfd p = {s, POLLIN, 0};
        if (poll(&p, 1, 200) == 1) {
            char buf[512];
            closed = read(s, buf, sizeof buf) <= 0;
        } else if (send(s, " ", 1, MSG_NOSIGNAL) != 1) {
            closed = 1;
        }
    }
    long took = mp_now_ms() - t0;
    close(s);
    assert_true(closed);
    if (took < 900 || took > 2500)
        fail_msg("closed after %ld ms, expected about 1000", took);
    char err[4096] = "";
    long deadline = mp_now_ms() + 5000;
    while (!strstr(err, "no whole request within 1000 ms") && mp_now_ms() < deadline) {
        struct pollfd p = {f->mp.err_fd, POLLIN, 0};
        poll(&p, 1, 100);
        mp_stderr(&f->mp, err, sizeof err);
    }
    assert_non_null(strstr(err, "no whole request within 1000 ms (--admin-timeout)"));
    char out[4096];
    assert_int_equal(http(f, "GET", "/health", NULL, NULL, out, sizeof out), 200);
}

static void connections_past_the_cap_are_closed(void **state) {
    fx *f = *state;
    start(f, "--admin-max-connections", "2", NULL);
    int a = connect_admin(f), b = connect_admin(f);
    /* a and b are counted once the mock has seen them: a request on each
     * shows it has */
    const char *req = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    char buf[4096];
    for (int i = 0; i < 2; i++) {
        int s = i ? b : a;
        assert_int_equal(write(s, req, strlen(req)), (ssize_t)strlen(req));
        struct pollfd p = {s, POLLIN, 0};
        assert_int_equal(poll(&p, 1, 5000), 1);
        assert_true(read(s, buf, sizeof buf) > 0); /* answered; kept alive */
    }
    int c = connect_admin(f);
    assert_true(read_to_close(c, buf, sizeof buf, 5000)); /* closed at once, unanswered */
    assert_string_equal(buf, "");
    close(c);
    char err[4096] = "";
    long deadline = mp_now_ms() + 5000;
    while (!strstr(err, "closed 1 new connection") && mp_now_ms() < deadline) {
        struct pollfd p = {f->mp.err_fd, POLLIN, 0};
        poll(&p, 1, 100);
        mp_stderr(&f->mp, err, sizeof err);
    }
    assert_non_null(strstr(err, "admin: 2 connections open, the most --admin-max-connections "
                                "allows: closed 1 new connection"));
    /* one leaves: a new one is served again (once the mock has seen it go) */
    close(a);
    int code = 0;
    deadline = mp_now_ms() + 5000;
    while (code != 200 && mp_now_ms() < deadline) {
        int s = connect_admin(f);
        const char *r2 = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        assert_int_equal(write(s, r2, strlen(r2)), (ssize_t)strlen(r2));
        read_to_close(s, buf, sizeof buf, 5000);
        close(s);
        sscanf(buf, "HTTP/1.%*d %d", &code);
    }
    assert_int_equal(code, 200);
    close(b);
}

/* ---- the Unix socket ------------------------------------------------------------------------- */

static void the_unix_socket_is_ours_only(void **state) {
    fx *f = *state;
    char sock[400], want[420];
    snprintf(sock, sizeof sock, "%s/admin.sock", f->dir);
    start(f, "--admin-socket", sock, NULL);
    snprintf(want, sizeof want, "unix:%s", sock);
    assert_string_equal(f->mp.admin, want);
    struct stat st;
    assert_int_equal(lstat(sock, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    char out[8192];
    assert_int_equal(http(f, "GET", "/health", NULL, NULL, out, sizeof out), 200);
    assert_non_null(strstr(out, "\"status\": \"ok\""));
    assert_int_equal(mp_stop(&f->mp, NULL, SIGTERM, 5000), 0);
    assert_int_equal(access(sock, F_OK), -1); /* removed at exit */
    /* a socket file left by a run that died is replaced */
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = unix_addr(sock);
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
    close(s); /* bound, never listening: nobody answers on it */
    start(f, "--admin-socket", sock, NULL);
    assert_int_equal(http(f, "GET", "/health", NULL, NULL, out, sizeof out), 200);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(loads_and_records_only_inside_the_roots, setup, teardown),
        cmocka_unit_test_setup_teardown(a_cassette_root_is_a_root, setup, teardown),
        cmocka_unit_test_setup_teardown(a_token_is_required_when_configured, setup, teardown),
        cmocka_unit_test_setup_teardown(a_bad_token_file_refuses_to_start, setup, teardown),
        cmocka_unit_test_setup_teardown(a_slow_body_is_closed_at_the_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(connections_past_the_cap_are_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(the_unix_socket_is_ours_only, setup, teardown),
        cmocka_unit_test_setup_teardown(a_missing_folder_outside_is_not_told_apart, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(stubs_save_follows_no_planted_link, setup, teardown),
        cmocka_unit_test_setup_teardown(stubs_save_keeps_loaded_and_existing_files, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_long_token_is_read_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(a_link_swapped_after_load_is_not_followed, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
