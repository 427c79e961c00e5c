/* c_client_node_server: our C client against Uber's Node TChannel server.
 *
 *   c_client_node_server [--node PATH] [--server-js PATH] [--only SUBSTRING]
 *                        [--server-checksum none|crc32|farmhash|crc32c]
 *
 * --server-checksum makes server.js answer with that checksum type whatever
 * the request used (Node itself mirrors the request's type), to check that our
 * client accepts a response whose checksum type differs from the request's.
 * Spawns `node tests/interop/node/server.js` (path compiled in as
 * TCH_NODE_SERVER_JS), reads its `listening HOST:PORT` line with a deadline,
 * runs the cases below over tch_channel (one channel per checksum type), then
 * stops node. Prints `ok <case>` / `FAIL <case>: <why>` per case and finally
 * exactly `N passed, M failed`. Exit 0 iff nothing failed; 77 (ctest SKIP)
 * when `node` is not installed; 1 on failure or when node cannot be started.
 * The node_modules install is the driver's job (driver.sh runs install.sh).
 *
 * Every wait runs the event loop until the awaited callback fired, bounded by
 * a timer; nothing sleeps.
 */
#include <tchannel/channel.h>
#include <tchannel/common.h>

#include <event2/event.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef TCH_NODE_SERVER_JS
#define TCH_NODE_SERVER_JS "tests/interop/node/server.js"
#endif

extern char **environ;

#define MIB (1024u * 1024u)
#define BIG_TIMEOUT_MS 60000u
#define STARTUP_DEADLINE_MS 30000
#define SERVICE "keyvalue-server"

static const struct {
    const char *name;
    uint8_t type;
} checksums[] = {{"none", 0}, {"crc32", 1}, {"farmhash", 2}, {"crc32c", 3}};
#define NCHECKSUMS (sizeof checksums / sizeof checksums[0])

/* ---- small utilities ------------------------------------------------------ */

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Deterministic bytes, different per seed (same generator idea as lib.js). */
static uint8_t *make_payload(size_t n, uint32_t seed) {
    uint8_t *b = malloc(n ? n : 1);
    if (!b)
        return NULL;
    uint32_t x = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        b[i] = (uint8_t)(x >> 24);
    }
    return b;
}

static int find_in_path(const char *prog, char *out, size_t outlen) {
    if (strchr(prog, '/')) {
        snprintf(out, outlen, "%s", prog);
        return access(out, X_OK) == 0 ? 0 : -1;
    }
    const char *path = getenv("PATH");
    if (!path)
        return -1;
    while (*path) {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        if (len > 0 && (size_t)snprintf(out, outlen, "%.*s/%s", (int)len, path, prog) < outlen &&
            access(out, X_OK) == 0)
            return 0;
        path += len;
        if (*path == ':')
            path++;
    }
    return -1;
}

/* ---- the node child ------------------------------------------------------- */

typedef struct node_child {
    pid_t pid;
    int out_fd; /* read end of its stdout */
} node_child;

/* Spawns node server.js and reads `listening HOST:PORT` within the deadline. */
static int node_start(const char *node, const char *script, const char *checksum, node_child *nc,
                      char *host_port, size_t hplen) {
    int fds[2];
    if (pipe(fds) != 0) {
        fprintf(stderr, "pipe: %s\n", strerror(errno));
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    char *argv[] = {(char *)node, (char *)script, NULL, NULL, NULL};
    if (checksum) {
        argv[2] = "--checksum";
        argv[3] = (char *)checksum;
    }
    int rc = posix_spawn(&nc->pid, node, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        fprintf(stderr, "spawn %s %s: %s\n", node, script, strerror(rc));
        return -1;
    }
    nc->out_fd = fds[0];

    char line[512];
    size_t len = 0;
    uint64_t deadline = now_ms() + STARTUP_DEADLINE_MS;
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline) {
            fprintf(stderr, "node server.js printed no `listening` line within %d ms\n",
                    STARTUP_DEADLINE_MS);
            return -1;
        }
        struct pollfd p = {nc->out_fd, POLLIN, 0};
        int pr = poll(&p, 1, (int)(deadline - now));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        ssize_t r = read(nc->out_fd, line + len, sizeof line - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            fprintf(stderr, "node server.js exited before printing `listening HOST:PORT`\n");
            return -1;
        }
        len += (size_t)r;
        line[len] = '\0';
        char *nl = strchr(line, '\n');
        if (nl) {
            *nl = '\0';
            if (strncmp(line, "listening ", 10) != 0 || (size_t)snprintf(host_port, hplen, "%s",
                                                                            line + 10) >= hplen) {
                fprintf(stderr, "unexpected first line from node server.js: %s\n", line);
                return -1;
            }
            return 0;
        }
        if (len == sizeof line - 1) {
            fprintf(stderr, "node server.js first line too long\n");
            return -1;
        }
    }
}

/* SIGTERM, wait (bounded) for its stdout to close, SIGKILL if it did not. */
static void node_stop(node_child *nc) {
    if (nc->pid <= 0)
        return;
    kill(nc->pid, SIGTERM);
    uint64_t deadline = now_ms() + 5000;
    char buf[256];
    while (nc->out_fd >= 0) {
        uint64_t now = now_ms();
        if (now >= deadline) {
            fprintf(stderr, "node did not exit within 5 s of SIGTERM; killing it\n");
            kill(nc->pid, SIGKILL);
            break;
        }
        struct pollfd p = {nc->out_fd, POLLIN, 0};
        if (poll(&p, 1, (int)(deadline - now)) > 0 && read(nc->out_fd, buf, sizeof buf) <= 0)
            break;
    }
    if (nc->out_fd >= 0)
        close(nc->out_fd);
    int status;
    waitpid(nc->pid, &status, 0);
    nc->pid = 0;
}

/* ---- calls ---------------------------------------------------------------- */

/* The outcome of one call, copied out of the callback (the response is only
 * valid during it). Owned by the run; freed after the channels are gone, so a
 * callback that arrives after we stopped waiting still has somewhere to write. */
typedef struct result {
    int done;
    int status;
    uint8_t code;
    uint8_t error_code;
    char message[256];
    tch_buf arg2, arg3;
    int copy_failed;
    uint64_t started_ms, finished_ms;
    struct result *next_all;
} result;

typedef struct run {
    struct event_base *base;
    tch_channel *ch[NCHECKSUMS];
    const char *peer;
    const char *only;
    int passed, failed;
    result *all;
    int deadline_hit;
} run;

static result *result_new(run *r) {
    result *res = calloc(1, sizeof *res);
    if (!res) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    res->next_all = r->all;
    r->all = res;
    res->started_ms = now_ms();
    return res;
}

static void on_response(const tch_response *resp, void *ud) {
    result *res = ud;
    res->done = 1;
    res->finished_ms = now_ms();
    res->status = resp->status;
    res->code = resp->code;
    res->error_code = resp->error_code;
    snprintf(res->message, sizeof res->message, "%s", resp->message ? resp->message : "");
    if (resp->status == 0) {
        if (tch_buf_append_slice(&res->arg2, resp->arg2) != 0 ||
            tch_buf_append_slice(&res->arg3, resp->arg3) != 0)
            res->copy_failed = 1;
    }
}

static int start_call(run *r, size_t csum, const char *endpoint, tch_slice a2, tch_slice a3,
                      uint32_t timeout_ms, result *res, char *why, size_t whylen) {
    tch_call_opts o = {0};
    o.service = SERVICE;
    o.endpoint = tch_slice_cstr(endpoint);
    o.arg2 = a2;
    o.arg3 = a3;
    o.host_port = r->peer;
    o.timeout_ms = timeout_ms;
    tch_error err = {0};
    int rc = tch_channel_call(r->ch[csum], &o, on_response, res, &err);
    if (rc != 0)
        snprintf(why, whylen, "tch_channel_call: %s (%s)", tch_strerror(rc), err.msg);
    return rc;
}

static void on_deadline(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    ((run *)arg)->deadline_hit = 1;
}

/* Runs the loop until *count results are done or ms passed. 0 or -1. */
static int wait_all(run *r, result **res, size_t n, uint32_t ms) {
    struct event *t = evtimer_new(r->base, on_deadline, r);
    if (!t) {
        fprintf(stderr, "evtimer_new failed\n");
        exit(1);
    }
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    r->deadline_hit = 0;
    evtimer_add(t, &tv);
    for (;;) {
        size_t done = 0;
        for (size_t i = 0; i < n; i++)
            done += res[i]->done ? 1 : 0;
        if (done == n || r->deadline_hit)
            break;
        if (event_base_loop(r->base, EVLOOP_ONCE) < 0) {
            fprintf(stderr, "event_base_loop failed\n");
            break;
        }
    }
    event_free(t);
    for (size_t i = 0; i < n; i++)
        if (!res[i]->done)
            return -1;
    return 0;
}

static void describe(const result *res, char *why, size_t whylen) {
    snprintf(why, whylen, "status %s (%d), error_code %s (0x%02x), code %u: %s",
             tch_strerror(res->status), res->status, tch_proto_code_name(res->error_code),
             res->error_code, res->code, res->message);
}

static int compare(const char *what, const tch_buf *got, const uint8_t *want, size_t wantlen,
                   char *why, size_t whylen) {
    if (got->len != wantlen) {
        snprintf(why, whylen, "%s: got %zu bytes, want %zu", what, got->len, wantlen);
        return -1;
    }
    for (size_t i = 0; i < wantlen; i++) {
        if (got->ptr[i] != want[i]) {
            snprintf(why, whylen, "%s: content differs from byte %zu", what, i);
            return -1;
        }
    }
    return 0;
}

/* Checks a finished call that should have succeeded with code 0. */
static int expect_ok(const result *res, char *why, size_t whylen) {
    if (res->status != 0) {
        describe(res, why, whylen);
        return -1;
    }
    if (res->copy_failed) {
        snprintf(why, whylen, "out of memory copying the response");
        return -1;
    }
    if (res->code != 0) {
        snprintf(why, whylen, "application error response (code %u): %.*s", res->code,
                 (int)(res->arg3.len > 200 ? 200 : res->arg3.len), (const char *)res->arg3.ptr);
        return -1;
    }
    return 0;
}

/* ---- cases ---------------------------------------------------------------- */

typedef int (*case_fn)(run *r, const void *arg, char *why, size_t whylen);

static void run_case(run *r, const char *name, case_fn fn, const void *arg) {
    if (r->only && !strstr(name, r->only))
        return;
    char why[600] = "";
    uint64_t t0 = now_ms();
    if (fn(r, arg, why, sizeof why) == 0) {
        r->passed++;
        printf("ok %s (%llu ms)\n", name, (unsigned long long)(now_ms() - t0));
    } else {
        r->failed++;
        printf("FAIL %s: %s\n", name, why[0] ? why : "(no reason given)");
    }
    fflush(stdout);
}

typedef struct echo_arg {
    size_t csum;
    size_t size;
    uint32_t seed;
} echo_arg;

static int case_echo(run *r, const void *argp, char *why, size_t whylen) {
    const echo_arg *a = argp;
    size_t n2 = a->size > 0 ? (a->size < 64 ? a->size : 64) : 0;
    uint8_t *a2 = make_payload(n2, a->seed + 100);
    uint8_t *a3 = make_payload(a->size, a->seed);
    int rc = -1;
    if (!a2 || !a3) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    result *res = result_new(r);
    if (start_call(r, a->csum, "echo", tch_slice_of(a2, n2), tch_slice_of(a3, a->size),
                   BIG_TIMEOUT_MS, res, why, whylen) != 0)
        goto out;
    if (wait_all(r, &res, 1, BIG_TIMEOUT_MS + 5000) != 0) {
        snprintf(why, whylen, "no callback within %u ms", BIG_TIMEOUT_MS + 5000);
        goto out;
    }
    if (expect_ok(res, why, whylen) != 0 || compare("arg2", &res->arg2, a2, n2, why, whylen) != 0 ||
        compare("arg3", &res->arg3, a3, a->size, why, whylen) != 0)
        goto out;
    rc = 0;
out:
    free(a2);
    free(a3);
    return rc;
}

static int case_big(run *r, const void *argp, char *why, size_t whylen) {
    (void)argp;
    const size_t n = 16 * MIB;
    result *res = result_new(r);
    if (start_call(r, 1, "big", TCH_SLICE_NULL, tch_slice_cstr("16777216"), BIG_TIMEOUT_MS, res,
                   why, whylen) != 0)
        return -1;
    if (wait_all(r, &res, 1, BIG_TIMEOUT_MS + 5000) != 0) {
        snprintf(why, whylen, "no callback within %u ms", BIG_TIMEOUT_MS + 5000);
        return -1;
    }
    if (expect_ok(res, why, whylen) != 0)
        return -1;
    if (res->arg3.len != n) {
        snprintf(why, whylen, "arg3: got %zu bytes, want %zu", res->arg3.len, n);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (res->arg3.ptr[i] != (uint8_t)(i % 251)) {
            snprintf(why, whylen, "arg3: byte %zu is %u, want %u", i, res->arg3.ptr[i],
                     (unsigned)(i % 251));
            return -1;
        }
    }
    return 0;
}

static int case_timeout(run *r, const void *argp, char *why, size_t whylen) {
    (void)argp;
    result *res = result_new(r);
    if (start_call(r, 1, "slow", TCH_SLICE_NULL, tch_slice_cstr("500"), 100, res, why, whylen) != 0)
        return -1;
    if (wait_all(r, &res, 1, 2000) != 0) {
        snprintf(why, whylen, "no callback within 2000 ms");
        return -1;
    }
    uint64_t elapsed = res->finished_ms - res->started_ms;
    if (res->status != TCH_ETIMEOUT || res->error_code != TCH_PCODE_TIMEOUT) {
        char d[400];
        describe(res, d, sizeof d);
        snprintf(why, whylen, "want TCH_ETIMEOUT/timeout, got %s", d);
        return -1;
    }
    if (elapsed > 450) {
        snprintf(why, whylen, "timeout reported only after %llu ms", (unsigned long long)elapsed);
        return -1;
    }
    printf("# timeout after %llu ms: %s\n", (unsigned long long)elapsed, res->message);
    return 0;
}

typedef struct error_arg {
    const char *endpoint;
    uint8_t want_code;
} error_arg;

static int case_error(run *r, const void *argp, char *why, size_t whylen) {
    const error_arg *a = argp;
    result *res = result_new(r);
    if (start_call(r, 1, a->endpoint, TCH_SLICE_NULL, tch_slice_cstr("x"), 5000, res, why,
                   whylen) != 0)
        return -1;
    if (wait_all(r, &res, 1, 7000) != 0) {
        snprintf(why, whylen, "no callback within 7000 ms");
        return -1;
    }
    if (res->status != TCH_EREMOTE || res->error_code != a->want_code) {
        char d[400];
        describe(res, d, sizeof d);
        snprintf(why, whylen, "want TCH_EREMOTE/%s, got %s", tch_proto_code_name(a->want_code), d);
        return -1;
    }
    printf("# %s: error frame %s: %s\n", a->endpoint, tch_proto_code_name(res->error_code),
           res->message);
    return 0;
}

/* 64 calls in flight at once on one connection: 48 echoes of different sizes
 * (fragments interleave) and 16 `slow 300`; all must match and the batch must
 * take far less than 16 x 300 ms. */
static int case_concurrent(run *r, const void *argp, char *why, size_t whylen) {
    (void)argp;
    enum { N = 64 };
    result *res[N];
    uint8_t *payloads[N] = {0};
    char names[N][16];
    int rc = -1;
    uint64_t t0 = now_ms();
    for (int i = 0; i < N; i++) {
        res[i] = result_new(r);
        snprintf(names[i], sizeof names[i], "call-%d", i);
        int started;
        if (i % 4 == 3) {
            started = start_call(r, 1, "slow", TCH_SLICE_NULL, tch_slice_cstr("300"), 10000, res[i],
                                 why, whylen);
        } else {
            size_t n = (size_t)i * 4096 + 7;
            payloads[i] = make_payload(n, 1000u + (uint32_t)i);
            if (!payloads[i]) {
                snprintf(why, whylen, "out of memory");
                goto out;
            }
            started = start_call(r, 1, "echo", tch_slice_cstr(names[i]), tch_slice_of(payloads[i], n),
                                 10000, res[i], why, whylen);
        }
        if (started != 0)
            goto out;
    }
    if (wait_all(r, res, N, 15000) != 0) {
        snprintf(why, whylen, "not all 64 callbacks within 15000 ms");
        goto out;
    }
    int bad = 0;
    char first[500] = "";
    for (int i = 0; i < N; i++) {
        char w[450] = "";
        int ok;
        if (i % 4 == 3)
            ok = expect_ok(res[i], w, sizeof w) == 0 &&
                 compare("arg3", &res[i]->arg3, (const uint8_t *)"late", 4, w, sizeof w) == 0;
        else
            ok = expect_ok(res[i], w, sizeof w) == 0 &&
                 compare("arg2", &res[i]->arg2, (const uint8_t *)names[i], strlen(names[i]), w,
                         sizeof w) == 0 &&
                 compare("arg3", &res[i]->arg3, payloads[i], (size_t)i * 4096 + 7, w, sizeof w) == 0;
        if (!ok && bad++ == 0)
            snprintf(first, sizeof first, "call %d: %s", i, w);
    }
    uint64_t elapsed = now_ms() - t0;
    if (bad) {
        snprintf(why, whylen, "%d of 64 calls failed; first: %s", bad, first);
        goto out;
    }
    if (elapsed > 2400) {
        snprintf(why, whylen, "64 calls took %llu ms: not served concurrently",
                 (unsigned long long)elapsed);
        goto out;
    }
    printf("# concurrent64: 64 calls in %llu ms\n", (unsigned long long)elapsed);
    rc = 0;
out:
    for (int i = 0; i < N; i++)
        free(payloads[i]);
    return rc;
}

/* ---- main ----------------------------------------------------------------- */

static int usage(const char *bad) {
    fprintf(stderr,
            "c_client_node_server: bad argument '%s'\n"
            "usage: c_client_node_server [--node PATH] [--server-js PATH] [--only SUBSTRING]\n"
            "                            [--server-checksum none|crc32|farmhash|crc32c]\n",
            bad);
    return 2;
}

int main(int argc, char **argv) {
    const char *node_arg = "node";
    const char *script = TCH_NODE_SERVER_JS;
    const char *only = NULL;
    const char *server_checksum = NULL;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            return usage(argv[i]);
        if (!strcmp(argv[i], "--node"))
            node_arg = argv[++i];
        else if (!strcmp(argv[i], "--server-js"))
            script = argv[++i];
        else if (!strcmp(argv[i], "--only"))
            only = argv[++i];
        else if (!strcmp(argv[i], "--server-checksum"))
            server_checksum = argv[++i];
        else
            return usage(argv[i]);
    }

    char node[4096];
    if (find_in_path(node_arg, node, sizeof node) != 0) {
        printf("SKIP: `%s` not found (PATH); the interop tests need Node.js\n", node_arg);
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);

    node_child nc = {0, -1};
    char peer[256];
    if (node_start(node, script, server_checksum, &nc, peer, sizeof peer) != 0) {
        node_stop(&nc);
        printf("0 passed, 1 failed\n");
        return 1;
    }
    printf("# node server.js listening on %s\n", peer);

    run r = {0};
    r.peer = peer;
    r.only = only;
    r.base = event_base_new();
    if (!r.base) {
        fprintf(stderr, "event_base_new failed\n");
        node_stop(&nc);
        return 1;
    }
    for (size_t c = 0; c < NCHECKSUMS; c++) {
        tch_channel_options o = {0};
        o.checksum_type = checksums[c].type;
        o.default_timeout_ms = 5000;
        r.ch[c] = tch_channel_new(r.base, "interop-c-client", &o);
        if (!r.ch[c]) {
            fprintf(stderr, "tch_channel_new failed (checksum %s)\n", checksums[c].name);
            node_stop(&nc);
            return 1;
        }
    }

    static const size_t sizes[] = {0, 100, MIB, 16 * MIB};
    static const char *size_names[] = {"0B", "100B", "1MiB", "16MiB"};
    echo_arg echo_args[NCHECKSUMS][4];
    for (size_t c = 0; c < NCHECKSUMS; c++) {
        for (size_t s = 0; s < 4; s++) {
            char name[64];
            snprintf(name, sizeof name, "echo %s %s", checksums[c].name, size_names[s]);
            echo_args[c][s] = (echo_arg){c, sizes[s], (uint32_t)(c * 10 + s)};
            run_case(&r, name, case_echo, &echo_args[c][s]);
        }
    }
    run_case(&r, "big 16MiB", case_big, NULL);
    run_case(&r, "timeout slow 500 with timeout 100", case_timeout, NULL);
    static const error_arg unknown = {"no-such-endpoint", TCH_PCODE_BAD_REQUEST};
    static const error_arg busy = {"busy", TCH_PCODE_BUSY};
    run_case(&r, "unknown endpoint -> BadRequest", case_error, &unknown);
    run_case(&r, "busy -> Busy", case_error, &busy);
    run_case(&r, "concurrent64", case_concurrent, NULL);

    for (size_t c = 0; c < NCHECKSUMS; c++)
        tch_channel_free(r.ch[c]);
    while (r.all) {
        result *next = r.all->next_all;
        tch_buf_free(&r.all->arg2);
        tch_buf_free(&r.all->arg3);
        free(r.all);
        r.all = next;
    }
    event_base_free(r.base);
    node_stop(&nc);

    if (r.passed + r.failed == 0) {
        fprintf(stderr, "no case matches --only %s\n", only ? only : "");
        return 2;
    }
    printf("%d passed, %d failed\n", r.passed, r.failed);
    return r.failed ? 1 : 0;
}
