/* See node_child.h. */
#include "node_child.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

uint64_t interop_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int interop_find_in_path(const char *prog, char *out, size_t outlen) {
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

int node_start(const char *node, const char *script, const char *const *extra, node_child *nc,
               char *host_port, size_t hplen) {
    nc->pid = 0;
    nc->out_fd = -1;
    char *argv[16];
    size_t argc = 0;
    argv[argc++] = (char *)node;
    argv[argc++] = (char *)script;
    for (size_t i = 0; extra && extra[i]; i++) {
        if (argc + 1 >= sizeof argv / sizeof argv[0]) {
            fprintf(stderr, "node_start: too many arguments\n");
            return -1;
        }
        argv[argc++] = (char *)extra[i];
    }
    argv[argc] = NULL;

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
    int rc = posix_spawn(&nc->pid, node, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        nc->pid = 0;
        close(fds[0]);
        fprintf(stderr, "spawn %s %s: %s\n", node, script, strerror(rc));
        return -1;
    }
    nc->out_fd = fds[0];

    char line[512];
    size_t len = 0;
    uint64_t deadline = interop_now_ms() + NODE_STARTUP_DEADLINE_MS;
    for (;;) {
        uint64_t now = interop_now_ms();
        if (now >= deadline) {
            fprintf(stderr, "node %s printed no `listening` line within %d ms\n", script,
                    NODE_STARTUP_DEADLINE_MS);
            return -1;
        }
        struct pollfd p = {nc->out_fd, POLLIN, 0};
        int pr = poll(&p, 1, (int)(deadline - now));
        if (pr <= 0)
            continue; /* EINTR or the deadline: the loop re-checks */
        ssize_t r = read(nc->out_fd, line + len, sizeof line - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            fprintf(stderr, "node %s exited before printing `listening HOST:PORT`\n", script);
            return -1;
        }
        len += (size_t)r;
        line[len] = '\0';
        char *nl = strchr(line, '\n');
        if (nl) {
            *nl = '\0';
            if (strncmp(line, "listening ", 10) != 0 ||
                (size_t)snprintf(host_port, hplen, "%s", line + 10) >= hplen) {
                fprintf(stderr, "unexpected first line from node %s: %s\n", script, line);
                return -1;
            }
            return 0;
        }
        if (len == sizeof line - 1) {
            fprintf(stderr, "node %s: first line too long\n", script);
            return -1;
        }
    }
}

int node_stop(node_child *nc) {
    if (nc->pid <= 0) {
        if (nc->out_fd >= 0)
            close(nc->out_fd);
        nc->out_fd = -1;
        return -1;
    }
    kill(nc->pid, SIGTERM);
    uint64_t deadline = interop_now_ms() + NODE_STOP_DEADLINE_MS;
    char buf[256];
    while (nc->out_fd >= 0) {
        uint64_t now = interop_now_ms();
        if (now >= deadline) {
            fprintf(stderr, "node did not exit within %d ms of SIGTERM; killing it\n",
                    NODE_STOP_DEADLINE_MS);
            kill(nc->pid, SIGKILL);
            break;
        }
        struct pollfd p = {nc->out_fd, POLLIN, 0};
        if (poll(&p, 1, (int)(deadline - now)) > 0 && read(nc->out_fd, buf, sizeof buf) <= 0)
            break;
    }
    if (nc->out_fd >= 0)
        close(nc->out_fd);
    nc->out_fd = -1;
    int status = 0;
    while (waitpid(nc->pid, &status, 0) < 0 && errno == EINTR)
        ;
    nc->pid = 0;
    return status;
}
