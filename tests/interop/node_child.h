/* Shared by the C interop programs (c_client_node_server, vcr_node): start
 * `node server.js` as a child, read its `listening HOST:PORT` line with a
 * deadline, stop it again. Every wait is bounded; nothing sleeps. */
#ifndef TCH_INTEROP_NODE_CHILD_H
#define TCH_INTEROP_NODE_CHILD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define NODE_STARTUP_DEADLINE_MS 30000
#define NODE_STOP_DEADLINE_MS 5000

typedef struct node_child {
    pid_t pid;  /* 0 when not running */
    int out_fd; /* read end of its stdout, -1 when closed */
} node_child;

uint64_t interop_now_ms(void); /* CLOCK_MONOTONIC */

/* Resolves prog through PATH (or checks it when it holds a '/'). 0 or -1. */
int interop_find_in_path(const char *prog, char *out, size_t outlen);

/* Spawns `node script [extra...]` (extra NULL-terminated, may be NULL) with
 * stdout on a pipe and reads `listening HOST:PORT` within
 * NODE_STARTUP_DEADLINE_MS into host_port. 0, or -1 with a message on
 * stderr (then call node_stop to reap the child). */
int node_start(const char *node, const char *script, const char *const *extra, node_child *nc,
               char *host_port, size_t hplen);

/* SIGTERM; waits (bounded) for its stdout to close, SIGKILL if it did not;
 * reaps it. Returns its wait status (as waitpid), or -1 if there was no
 * child. */
int node_stop(node_child *nc);

#endif
