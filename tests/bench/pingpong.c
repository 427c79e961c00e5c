/* pingpong: the plain-socket floor for the benchmarks. No TChannel, no
 * libevent: a TCP echo server and a closed-loop client over loopback, measured
 * exactly like bench_client (see bench_common.h for the output line).
 *
 *   pingpong server [--host H] [--port P]
 *       prints `listening HOST:PORT`, echoes every byte back on every
 *       connection, until SIGINT/SIGTERM (exit 0).
 *   pingpong client --peer HOST:PORT [--impl LABEL] [--conc N] [--size BYTES]
 *                   [--duration S] [--warmup S]
 *       opens N connections; on each, one message of BYTES bytes is in flight
 *       at a time: send it, read BYTES back, record the round trip, send again.
 *       conc=N is therefore N connections, not N messages pipelined on one:
 *       a pipelined byte stream would measure batching, not round trips, and
 *       TChannel's multiplexing is closer to N independent request/response
 *       exchanges than to one stream.
 *
 * Both sides use poll(2) over blocking sockets with TCP_NODELAY: the least a
 * request/response exchange over loopback can cost on this machine.
 */
#include "bench_common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_CONNS 1024

static volatile sig_atomic_t stop_flag;

static void on_stop(int sig) {
    (void)sig;
    stop_flag = 1;
}

static void nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int parse_host_port(const char *hp, struct sockaddr_in *sa) {
    const char *colon = strrchr(hp, ':');
    char host[64];
    uint64_t port;
    if (!colon || (size_t)(colon - hp) >= sizeof host)
        return -1;
    memcpy(host, hp, (size_t)(colon - hp));
    host[colon - hp] = '\0';
    if (bench_parse_u64(colon + 1, 65535, 1, &port))
        return -1;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

static int usage(const char *bad) {
    fprintf(stderr,
            "pingpong: bad argument '%s'\n"
            "usage: pingpong server [--host H] [--port P]\n"
            "       pingpong client --peer HOST:PORT [--impl LABEL] [--conc N] [--size BYTES]\n"
            "                       [--duration S] [--warmup S]\n",
            bad);
    return 2;
}

/* ---- server ---------------------------------------------------------------- */

static int run_server(int argc, char **argv) {
    const char *host = "127.0.0.1";
    uint64_t port = 0;
    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc)
            return usage(argv[i]);
        if (!strcmp(argv[i], "--host"))
            host = argv[++i];
        else if (!strcmp(argv[i], "--port")) {
            if (bench_parse_u64(argv[++i], 65535, 1, &port))
                return usage(argv[i]);
        } else
            return usage(argv[i]);
    }
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return usage(host);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 1024) != 0) {
        fprintf(stderr, "pingpong server: bind/listen %s:%u: %s\n", host, (unsigned)port,
                strerror(errno));
        return 1;
    }
    socklen_t slen = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &slen);
    printf("listening %s:%u\n", host, (unsigned)ntohs(sa.sin_port));
    fflush(stdout);

    struct sigaction act = {0};
    act.sa_handler = on_stop; /* no SA_RESTART: poll returns EINTR */
    sigaction(SIGINT, &act, NULL);
    sigaction(SIGTERM, &act, NULL);

    static struct pollfd pfd[MAX_CONNS + 1];
    static uint8_t buf[1 << 16];
    size_t n = 1;
    pfd[0] = (struct pollfd){lfd, POLLIN, 0};
    while (!stop_flag) {
        int pr = poll(pfd, (nfds_t)n, -1);
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "pingpong server: poll: %s\n", strerror(errno));
            return 1;
        }
        if ((pfd[0].revents & POLLIN) && n < MAX_CONNS + 1) {
            int fd = accept(lfd, NULL, NULL);
            if (fd >= 0) {
                nodelay(fd);
                pfd[n++] = (struct pollfd){fd, POLLIN, 0};
            }
        }
        for (size_t i = 1; i < n; i++) {
            if (!pfd[i].revents)
                continue;
            ssize_t r = read(pfd[i].fd, buf, sizeof buf);
            size_t off = 0;
            while (r > 0 && off < (size_t)r) {
                ssize_t w = write(pfd[i].fd, buf + off, (size_t)r - off);
                if (w <= 0) {
                    r = -1;
                    break;
                }
                off += (size_t)w;
            }
            if (r <= 0) {
                close(pfd[i].fd);
                pfd[i--] = pfd[--n];
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        close(pfd[i].fd);
    return 0;
}

/* ---- client ---------------------------------------------------------------- */

typedef struct conn {
    uint64_t start_ns;
    size_t got;
} conn;

static int send_all(int fd, const uint8_t *p, size_t len) {
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int run_client(int argc, char **argv) {
    const char *peer = NULL, *impl = "socket->socket";
    uint64_t conc = 1, size = 100;
    double duration = 5, warmup = 1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            return usage(a);
        const char *v = argv[++i];
        if (!strcmp(a, "--peer"))
            peer = v;
        else if (!strcmp(a, "--impl"))
            impl = v;
        else if (!strcmp(a, "--conc")) {
            if (bench_parse_u64(v, MAX_CONNS, 0, &conc))
                return usage(v);
        } else if (!strcmp(a, "--size")) {
            if (bench_parse_u64(v, 1u << 24, 0, &size))
                return usage(v);
        } else if (!strcmp(a, "--duration")) {
            if (bench_parse_seconds(v, &duration) || duration <= 0)
                return usage(v);
        } else if (!strcmp(a, "--warmup")) {
            if (bench_parse_seconds(v, &warmup))
                return usage(v);
        } else
            return usage(a);
    }
    struct sockaddr_in sa;
    if (!peer || parse_host_port(peer, &sa) != 0)
        return usage(peer ? peer : "--peer (missing)");
    signal(SIGPIPE, SIG_IGN);

    static struct pollfd pfd[MAX_CONNS];
    static conn conns[MAX_CONNS];
    uint8_t *msg = malloc((size_t)size), *rbuf = malloc((size_t)size);
    if (!msg || !rbuf) {
        fprintf(stderr, "pingpong client: out of memory\n");
        return 1;
    }
    memset(msg, 'p', (size_t)size);
    for (uint64_t i = 0; i < conc; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
            fprintf(stderr, "pingpong client: connect %s: %s\n", peer, strerror(errno));
            return 1;
        }
        nodelay(fd);
        pfd[i] = (struct pollfd){fd, POLLIN, 0};
    }

    bench_lat lat = {0};
    unsigned long errors = 0, calls = 0;
    uint64_t t0 = bench_now_ns();
    uint64_t warm_end = t0 + (uint64_t)(warmup * 1e9);
    uint64_t end = warm_end + (uint64_t)(duration * 1e9);
    size_t active = (size_t)conc;
    for (size_t i = 0; i < conc; i++) {
        conns[i].start_ns = bench_now_ns();
        if (send_all(pfd[i].fd, msg, (size_t)size) != 0) {
            fprintf(stderr, "pingpong client: write: %s\n", strerror(errno));
            return 1;
        }
    }
    while (active > 0) {
        int pr = poll(pfd, (nfds_t)conc, 10000);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0) {
            fprintf(stderr, "pingpong client: no answer within 10 s\n");
            errors += active;
            break;
        }
        for (size_t i = 0; i < conc; i++) {
            if (!pfd[i].revents || pfd[i].fd < 0)
                continue;
            ssize_t r = read(pfd[i].fd, rbuf, (size_t)size - conns[i].got);
            if (r <= 0) {
                errors++;
                close(pfd[i].fd);
                pfd[i].fd = -1;
                active--;
                continue;
            }
            conns[i].got += (size_t)r;
            if (conns[i].got < size)
                continue;
            uint64_t now = bench_now_ns();
            if (now >= warm_end && now <= end) {
                calls++;
                if (conns[i].start_ns >= warm_end && bench_lat_add(&lat, now - conns[i].start_ns)) {
                    fprintf(stderr, "pingpong client: out of memory\n");
                    return 1;
                }
            }
            if (now >= end) {
                close(pfd[i].fd);
                pfd[i].fd = -1; /* poll ignores negative fds */
                active--;
                continue;
            }
            conns[i].got = 0;
            conns[i].start_ns = now;
            if (send_all(pfd[i].fd, msg, (size_t)size) != 0) {
                errors++;
                close(pfd[i].fd);
                pfd[i].fd = -1;
                active--;
            }
        }
    }
    bench_report(impl, (unsigned)conc, (size_t)size, calls, &lat, duration, errors);
    free(lat.us);
    free(msg);
    free(rbuf);
    return lat.len ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "server"))
        return run_server(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "client"))
        return run_client(argc, argv);
    return usage(argc >= 2 ? argv[1] : "(none)");
}
