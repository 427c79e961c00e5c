/* The local address that reaches a peer: for a service that announces
 * itself (Hyperbahn advertise), so it can listen where the peer can call
 * it back without reaching below the channel's API. */
#include "channel_internal.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* host_port's first address: a name is looked up with getaddrinfo, which
 * blocks (a setup call), IPv4 first as the channel listens. */
static int peer_address(const char *host_port, struct sockaddr_storage *ss, socklen_t *sslen) {
    tch_addr a;
    if (tch_addr_parse(host_port, &a, NULL) != 0)
        return TCH_EINVAL;
    if (a.sslen) {
        *ss = a.ss;
        *sslen = (socklen_t)a.sslen;
        return 0;
    }
    char port[8];
    snprintf(port, sizeof port, "%u", a.port);
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICSERV}, *res;
    if (getaddrinfo(a.host, port, &hints, &res) != 0)
        return TCH_ENOTFOUND;
    const struct addrinfo *pick = res;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next)
        if (ai->ai_family == AF_INET) {
            pick = ai;
            break;
        }
    int rc = pick->ai_addrlen <= sizeof *ss ? 0 : TCH_EINVAL;
    if (rc == 0) {
        memcpy(ss, pick->ai_addr, pick->ai_addrlen);
        *sslen = pick->ai_addrlen;
    }
    freeaddrinfo(res);
    return rc;
}

/* A connected UDP socket's local address: connecting sends no packet. */
int tch_local_ip_towards(const char *host_port, char *ip, size_t cap) {
    struct sockaddr_storage ss, local;
    socklen_t sslen, llen = sizeof local;
    int rc = peer_address(host_port, &ss, &sslen);
    if (rc)
        return rc;
    int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return TCH_EIO;
    rc = TCH_EIO;
    if (connect(fd, (struct sockaddr *)&ss, sslen) == 0 &&
        getsockname(fd, (struct sockaddr *)&local, &llen) == 0) {
        char buf[INET6_ADDRSTRLEN];
        const void *addr = local.ss_family == AF_INET6
                               ? (const void *)&((struct sockaddr_in6 *)&local)->sin6_addr
                               : (const void *)&((struct sockaddr_in *)&local)->sin_addr;
        if (inet_ntop(local.ss_family, addr, buf, sizeof buf)) {
            int n = snprintf(ip, cap, local.ss_family == AF_INET6 ? "[%s]" : "%s", buf);
            rc = n >= 0 && (size_t)n < cap ? 0 : TCH_EINVAL;
        }
    }
    close(fd);
    return rc;
}
