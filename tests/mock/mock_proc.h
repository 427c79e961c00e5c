/* Test helpers for tchannel-mock: start it as a child process, read its
 * `listening` / `admin` lines with a bound, talk to the admin API with
 * libevent's HTTP client on the test's own event loop, stop it. No sleeps:
 * every wait is on an event (a readable pipe, a reply, a child exit) with a
 * deadline. */
#ifndef TCH_TEST_MOCK_PROC_H
#define TCH_TEST_MOCK_PROC_H

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"

typedef struct mock_proc {
    pid_t pid;
    int out_fd, err_fd;
    char hp[256];    /* TChannel host:port */
    char admin[256]; /* admin host:port, "" when none */
    char admin_host[256];
    int admin_port;
} mock_proc;

static inline long mp_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Reads one line from fd within deadline (absolute ms). */
static inline int mp_read_line(int fd, char *buf, size_t n, long deadline) {
    size_t len = 0;
    while (len + 1 < n) {
        long left = deadline - mp_now_ms();
        if (left <= 0)
            return -1;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r <= 0)
            return -1;
        if (c == '\n')
            break;
        buf[len++] = c;
    }
    buf[len] = 0;
    return 0;
}

/* Starts argv[0] (NULL-terminated argv). stderr goes to a pipe the test may
 * read (mp_stderr) when capture_err is 1, to /dev/null when 2, else to ours. Returns 0 when the
 * `listening` line (and, with want_admin, the `admin` line) arrived within
 * 10 s. */
static inline int mp_start(mock_proc *mp, char *const argv[], int want_admin, int capture_err) {
    memset(mp, 0, sizeof *mp);
    int out[2], err[2] = {-1, -1};
    if (pipe(out) != 0 || (capture_err == 1 && pipe(err) != 0))
        return -1;
    /* close-on-exec: a mock started later must not hold this one's pipes
     * (dup2 onto 1 and 2 clears the flag for the child's own) */
    for (int i = 0; i < 2; i++) {
        fcntl(out[i], F_SETFD, FD_CLOEXEC);
        if (err[i] >= 0)
            fcntl(err[i], F_SETFD, FD_CLOEXEC);
    }
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(out[1], 1);
        if (capture_err == 1)
            dup2(err[1], 2), close(err[0]), close(err[1]);
        if (capture_err == 2) {
            int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
            dup2(null, 2);
            close(null);
        }
        close(out[0]);
        close(out[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(out[1]);
    if (capture_err == 1) {
        close(err[1]);
        fcntl(err[0], F_SETFL, O_NONBLOCK);
    }
    mp->pid = pid, mp->out_fd = out[0], mp->err_fd = capture_err == 1 ? err[0] : -1;
    long deadline = mp_now_ms() + 10000;
    char line[256];
    if (mp_read_line(mp->out_fd, line, sizeof line, deadline) ||
        strncmp(line, "listening ", 10) != 0)
        return -1;
    snprintf(mp->hp, sizeof mp->hp, "%s", line + 10);
    if (want_admin) {
        if (mp_read_line(mp->out_fd, line, sizeof line, deadline) || strncmp(line, "admin ", 6))
            return -1;
        snprintf(mp->admin, sizeof mp->admin, "%s", line + 6);
        char *colon = strrchr(mp->admin, ':');
        snprintf(mp->admin_host, sizeof mp->admin_host, "%.*s", (int)(colon - mp->admin),
                 mp->admin);
        mp->admin_port = atoi(colon + 1);
    }
    return 0;
}

/* Appends what the child wrote to stderr so far (non-blocking). */
static inline void mp_stderr(mock_proc *mp, char *buf, size_t n) {
    size_t len = strlen(buf);
    while (mp->err_fd >= 0 && len + 1 < n) {
        ssize_t r = read(mp->err_fd, buf + len, n - len - 1);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    buf[len] = 0;
}

static inline void mp_exited(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    *(int *)arg = 1;
}

/* Sends sig and waits (bounded, running base so in-process peers keep
 * serving) for the exit: a pidfd becomes readable when the child exits.
 * Returns the exit status, or -1 on the bound (the child is then killed). */
static inline int mp_stop(mock_proc *mp, struct event_base *base, int sig, int ms) {
    if (mp->pid <= 0)
        return -1;
    int pidfd = (int)syscall(SYS_pidfd_open, mp->pid, 0);
    kill(mp->pid, sig);
    int status = 0, exited = 0;
    if (pidfd >= 0 && base) {
        struct event *ev = event_new(base, pidfd, EV_READ, mp_exited, &exited);
        event_add(ev, NULL);
        tch_test_run_until(base, &exited, ms);
        event_free(ev);
    } else if (pidfd >= 0) {
        struct pollfd p = {pidfd, POLLIN, 0};
        exited = poll(&p, 1, ms) == 1;
    }
    if (pidfd >= 0)
        close(pidfd);
    if (!exited && pidfd >= 0)
        kill(mp->pid, SIGKILL);
    waitpid(mp->pid, &status, 0);
    close(mp->out_fd);
    if (mp->err_fd >= 0)
        close(mp->err_fd);
    mp->pid = 0;
    if (!exited && pidfd >= 0)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---- admin API client ----------------------------------------------------------- */

typedef struct mp_http {
    int done;
    int code;
    json_t *body;
} mp_http;

static inline void mp_http_done(struct evhttp_request *req, void *arg) {
    mp_http *h = arg;
    h->done = 1;
    if (!req)
        return;
    h->code = evhttp_request_get_response_code(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    h->body = json_loadb((const char *)evbuffer_pullup(in, -1), n, 0, NULL);
}

/* One request to the admin API; returns the HTTP code (body in *out, may be
 * NULL; caller decrefs), or -1 when no answer came within 5 s. */
static inline int mp_admin(mock_proc *mp, struct event_base *base, enum evhttp_cmd_type method,
                           const char *uri, const char *body, json_t **out) {
    struct evhttp_connection *conn =
        evhttp_connection_base_new(base, NULL, mp->admin_host, (uint16_t)mp->admin_port);
    mp_http h = {0};
    struct evhttp_request *req = evhttp_request_new(mp_http_done, &h);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Host", "localhost");
    if (body)
        evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
    evhttp_make_request(conn, req, method, uri);
    tch_test_run_until(base, &h.done, 5000);
    evhttp_connection_free(conn);
    if (out)
        *out = h.body;
    else
        json_decref(h.body);
    return h.done ? h.code : -1;
}

#endif
