/* Test helper: a loopback address nothing listens on, for calls that must
 * be refused. The port is bound, read back, then closed; another socket
 * could take it in between, but ports are drawn from tens of thousands. */
#ifndef TCH_TEST_PORTS_H
#define TCH_TEST_PORTS_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

/* Writes "127.0.0.1:PORT" to hp. Returns 0, or -1 if no socket could be had. */
static inline int tch_test_dead_port(char *hp, size_t n) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
             getsockname(fd, (struct sockaddr *)&a, &len) == 0;
    if (fd >= 0)
        close(fd);
    if (!ok)
        return -1;
    snprintf(hp, n, "127.0.0.1:%u", ntohs(a.sin_port));
    return 0;
}

#endif
