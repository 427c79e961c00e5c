/* Hostile peers against a channel, over real sockets on 127.0.0.1.
 *
 * A channel serves from its own thread with small limits; the test speaks
 * the protocol by hand from blocking sockets, so it can send what no
 * library would: garbage, bad inits, reused ids, forbidden headers, random
 * frames from a fixed seed, connections that idle, trickle (slowloris) or
 * never read, more calls and bigger arguments than the budgets allow, and
 * more connections than the cap. Every wait is on the event itself (an
 * answer, a close) with a bound; the whole run stays under a minute.
 *
 *   net_hostile [seed]                     the campaign (ctest: hostile)
 *   net_hostile --flood HOST:PORT N MIB    N requests of MIB MiB at once to
 *                                          a running server; prints how
 *                                          many were answered and how many
 *                                          got Busy (for measuring its RSS)
 *   net_hostile --against HOST:PORT IDLE_MS FRAME_MS MAX_CONNS
 *                                          checks a running server's idle
 *                                          and frame timeouts and its cap
 *   net_hostile --delayed HOST:PORT N      N calls to hostile::slow, never
 *                                          read; waits for the close
 */
#define _GNU_SOURCE
#include <tchannel/channel.h>

#include "wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* AddressSanitizer keeps freed memory in quarantine and pads every
 * allocation: peak RSS then says nothing about the budget. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_MEANINGFUL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RSS_MEANINGFUL 0
#endif
#endif
#ifndef RSS_MEANINGFUL
#define RSS_MEANINGFUL 1
#endif

static int failures;
#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            failures++;                                                      \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
        }                                                                    \
    } while (0)

/* The server's limits, small so that each acts within the test's time. */
enum { HANDSHAKE_MS = 1000, MAX_PENDING = 100 };
/* Variables: --against takes the running server's. */
static int idle_ms = 1500, frame_ms = 1000, max_conns = 32;
#define PARTIAL_BYTES ((size_t)24 << 20)
#define REQUEST_BYTES ((size_t)40 << 20)

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the server, on its own thread ------------------------------------- */

static struct {
    struct event_base *base;
    tch_channel *ch;
    pthread_t thread;
    char host[64];
    int port;
    pthread_mutex_t mu; /* guards log */
    char log[1 << 16];
    size_t loglen;
    tch_inbound *held[MAX_PENDING + 8];
    int nheld;
} S = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void on_log(const char *line, void *ud) {
    (void)ud;
    pthread_mutex_lock(&S.mu);
    size_t n = strlen(line);
    if (S.loglen + n + 2 < sizeof S.log) {
        memcpy(S.log + S.loglen, line, n);
        S.loglen += n;
        S.log[S.loglen++] = '\n';
        S.log[S.loglen] = '\0';
    }
    pthread_mutex_unlock(&S.mu);
}

/* Whether the in-process server logged needle (against another server,
 * whose log the caller checks: yes). */
static int log_has(const char *needle) {
    if (!S.ch)
        return 1;
    pthread_mutex_lock(&S.mu);
    int yes = strstr(S.log, needle) != NULL;
    pthread_mutex_unlock(&S.mu);
    return yes;
}

static void h_echo(tch_inbound *in, void *ud) {
    (void)ud;
    tch_inbound_respond(in, 0, tch_inbound_arg2(in), tch_inbound_arg3(in));
}

static void respond_number(tch_inbound *in, size_t n) {
    char buf[32];
    snprintf(buf, sizeof buf, "%zu", n);
    tch_inbound_respond(in, 0, TCH_SLICE_NULL, tch_slice_cstr(buf));
}

static void h_size(tch_inbound *in, void *ud) {
    (void)ud;
    respond_number(in, tch_inbound_arg3(in).len);
}

static void h_conns(tch_inbound *in, void *ud) {
    (void)ud;
    respond_number(in, tch_channel_connection_count(S.ch));
}

static void h_hold(tch_inbound *in, void *ud) {
    (void)ud;
    if (S.nheld == (int)(sizeof S.held / sizeof S.held[0]))
        tch_inbound_respond_error(in, TCH_PCODE_UNEXPECTED, "hold: full");
    else
        S.held[S.nheld++] = in;
}

static void h_release(tch_inbound *in, void *ud) {
    (void)ud;
    size_t n = (size_t)S.nheld;
    while (S.nheld > 0)
        tch_inbound_respond(S.held[--S.nheld], 0, TCH_SLICE_NULL, tch_slice_cstr("released"));
    respond_number(in, n);
}

/* Answers every held call with 1 MiB, as a handler that answers later
 * would; says how many were held and how many answers were taken. */
/* 64 KiB answers: a few fill the output a peer leaves unread. */
static void h_big(tch_inbound *in, void *ud) {
    (void)ud;
    static const uint8_t big[64 << 10];
    tch_inbound_respond(in, 0, TCH_SLICE_NULL, tch_slice_of(big, sizeof big));
}

static void h_release_big(tch_inbound *in, void *ud) {
    (void)ud;
    static uint8_t big[1 << 20];
    size_t n = (size_t)S.nheld, taken = 0;
    while (S.nheld > 0)
        taken += tch_inbound_respond(S.held[--S.nheld], 0, TCH_SLICE_NULL,
                                     tch_slice_of(big, sizeof big)) == 0;
    char buf[64];
    snprintf(buf, sizeof buf, "%zu %zu", n, taken);
    tch_inbound_respond(in, 0, TCH_SLICE_NULL, tch_slice_cstr(buf));
}

static void h_held(tch_inbound *in, void *ud) {
    (void)ud;
    respond_number(in, (size_t)S.nheld);
}

static void h_quit(tch_inbound *in, void *ud) {
    (void)ud;
    tch_inbound_respond(in, 0, TCH_SLICE_NULL, TCH_SLICE_NULL);
    event_base_loopbreak(S.base);
}

static void *serve(void *arg) {
    (void)arg;
    event_base_dispatch(S.base);
    return NULL;
}

static int server_start(void) {
    S.base = event_base_new();
    tch_channel_options o = {
        .default_timeout_ms = HANDSHAKE_MS,
        .idle_timeout_ms = idle_ms,
        .frame_timeout_ms = frame_ms,
        .max_connections = max_conns,
        .max_pending_calls = MAX_PENDING,
        .max_partial_bytes = PARTIAL_BYTES,
        .max_request_bytes = REQUEST_BYTES,
        .log = on_log,
    };
    tch_channel_new(S.base, "hostile", &o, &S.ch, NULL);
    tch_error err;
    if (!S.ch || tch_channel_listen(S.ch, "127.0.0.1:0", &err) != 0)
        return -1;
    static const struct {
        const char *name;
        tch_handler_cb fn;
    } eps[] = {{"echo", h_echo}, {"size", h_size}, {"conns", h_conns},
               {"hold", h_hold}, {"release", h_release}, {"quit", h_quit},
               {"releasebig", h_release_big}, {"big", h_big}, {"held", h_held}};
    for (size_t i = 0; i < sizeof eps / sizeof eps[0]; i++)
        tch_channel_register(S.ch, NULL, eps[i].name, eps[i].fn, NULL);
    const char *hp = tch_channel_host_port(S.ch);
    const char *colon = strrchr(hp, ':');
    snprintf(S.host, sizeof S.host, "%.*s", (int)(colon - hp), hp);
    S.port = atoi(colon + 1);
    return pthread_create(&S.thread, NULL, serve, NULL);
}

/* ---- a client that speaks the protocol by hand -------------------------- */

static int cl_open(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)S.port)};
    inet_pton(AF_INET, S.host, &sin.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* Waits for fd to be readable (or writable) until deadline: 1, or 0. */
static int wait_fd(int fd, short what, int64_t deadline) {
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = what};
        int n = poll(&p, 1, (int)left);
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return 0;
    }
}

/* 0 once all is sent; -1 when the peer is gone or takes nothing for ms. */
static int send_all_within(int fd, const void *data, size_t n, int ms) {
    const uint8_t *p = data;
    int64_t deadline = now_ms() + ms;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!wait_fd(fd, POLLOUT, deadline))
                return -1;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else {
            return -1;
        }
    }
    return 0;
}

static int send_all(int fd, const void *data, size_t n) {
    return send_all_within(fd, data, n, 5000);
}

/* 1: n bytes read; 0: the peer closed (or reset); -1: deadline. */
static int read_exact(int fd, uint8_t *buf, size_t n, int64_t deadline) {
    while (n > 0) {
        if (!wait_fd(fd, POLLIN, deadline))
            return -1;
        ssize_t r = recv(fd, buf, n, MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
            return 0;
        if (r > 0) {
            buf += r;
            n -= (size_t)r;
        }
    }
    return 1;
}

typedef struct rframe {
    uint8_t type;
    uint32_t id;
    size_t len;
    uint8_t payload[TCH_FRAME_MAX_SIZE];
} rframe;

/* Reads one frame: 1, 0 (closed) or -1 (no frame within ms). */
static int read_frame(int fd, rframe *f, int ms) {
    int64_t deadline = now_ms() + ms;
    uint8_t h[TCH_FRAME_HEADER_SIZE];
    int rc = read_exact(fd, h, sizeof h, deadline);
    if (rc != 1)
        return rc;
    size_t size = (size_t)h[0] << 8 | h[1];
    f->type = h[2];
    f->id = (uint32_t)h[4] << 24 | (uint32_t)h[5] << 16 | (uint32_t)h[6] << 8 | h[7];
    f->len = size >= sizeof h ? size - sizeof h : 0;
    return read_exact(fd, f->payload, f->len, deadline);
}

/* An error frame's code and text ("" for any other frame). */
static uint8_t error_of(const rframe *f, char *msg, size_t cap) {
    tch_error_frame e;
    msg[0] = '\0';
    if (f->type != TCH_FRAME_ERROR ||
        tch_error_frame_decode(tch_slice_of(f->payload, f->len), &e, NULL) != 0)
        return 0;
    snprintf(msg, cap, "%.*s", (int)e.message.len, (const char *)e.message.ptr);
    return e.code;
}

static int send_init(int fd, uint16_t version, int with_host_port) {
    tch_init m = {.version = version};
    if (with_host_port)
        m.headers[m.nheaders++] = (tch_kv){tch_slice_cstr("host_port"), tch_slice_cstr("0.0.0.0:0")};
    m.headers[m.nheaders++] = (tch_kv){tch_slice_cstr("process_name"), tch_slice_cstr("hostile")};
    uint8_t buf[256];
    size_t n;
    if (tch_init_encode(TCH_FRAME_INIT_REQ, 1, &m, buf, sizeof buf, &n, NULL) != 0)
        return -1;
    return send_all(fd, buf, n);
}

/* A connection past the handshake, or -1 (refused: cap, or a failure). */
static int cl_connect(void) {
    int fd = cl_open();
    if (fd < 0)
        return -1;
    static rframe f;
    if (send_init(fd, 2, 1) != 0 || read_frame(fd, &f, 5000) != 1 ||
        f.type != TCH_FRAME_INIT_RES) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads until the server closes fd: the ms it took, or -1 past ms. The
 * text of the last error frame it sent is left in why. */
static int wait_closed(int fd, int ms, char *why, size_t cap) {
    int64_t start = now_ms();
    static rframe f;
    if (why)
        why[0] = '\0';
    for (;;) {
        int rc = read_frame(fd, &f, (int)(start + ms - now_ms()));
        if (rc == 0)
            return (int)(now_ms() - start);
        if (rc < 0)
            return -1;
        char msg[512];
        if (error_of(&f, msg, sizeof msg) && why)
            snprintf(why, cap, "%s", msg);
    }
}

/* A single-frame call req (as=raw, cn=hostile, no checksum). */
static size_t call_req(uint8_t *out, uint32_t id, const char *endpoint, tch_slice arg3) {
    static tch_call_fields f;
    memset(&f, 0, sizeof f);
    f.ttl_ms = 10000;
    f.service = tch_slice_cstr("hostile");
    f.nheaders = 2;
    f.headers[0] = (tch_kv){tch_slice_cstr("as"), tch_slice_cstr("raw")};
    f.headers[1] = (tch_kv){tch_slice_cstr("cn"), tch_slice_cstr("hostile")};
    tch_slice args[3] = {tch_slice_cstr(endpoint), TCH_SLICE_NULL, arg3};
    tch_fragmenter fz;
    tch_fragmenter_init(&fz, TCH_FRAME_CALL_REQ, id, &f, args);
    size_t n = 0;
    return tch_fragmenter_next(&fz, out, &n, NULL) == 0 ? n : 0;
}

/* Sends a call and waits for the frame that answers id: its type, the
 * error code (for an error frame) and text or arg3 in msg. */
static int call(int fd, uint32_t id, const char *endpoint, const char *arg3, uint8_t *code,
                char *msg, size_t cap) {
    static uint8_t buf[TCH_FRAME_MAX_SIZE];
    size_t n = call_req(buf, id, endpoint, tch_slice_cstr(arg3));
    if (!n || send_all(fd, buf, n) != 0)
        return -1;
    static rframe f;
    for (;;) {
        if (read_frame(fd, &f, 5000) != 1)
            return -1;
        if (f.id != id)
            continue;
        *code = error_of(&f, msg, cap);
        tch_frame fr = {f.type, f.id, tch_slice_of(f.payload, f.len)};
        static tch_call_frame cf;
        if (f.type == TCH_FRAME_CALL_RES && tch_call_frame_decode(&fr, &cf, NULL) == 0 &&
            cf.nchunks == 3)
            snprintf(msg, cap, "%.*s", (int)cf.chunks[2].len, (const char *)cf.chunks[2].ptr);
        return f.type;
    }
}

/* ---- the cases ------------------------------------------------------------ */

static void garbage_and_bad_inits_are_refused(void) {
    static const struct {
        const char *what;
        int kind; /* 0: bytes, 1: init version 1, 2: init without host_port, 3: call first */
        const char *bytes, *needle;
    } cases[] = {
        {"http", 0, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", ""},
        {"frame size 3", 0, "\x00\x03\x01\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00", ""},
        {"init version 1", 1, NULL, "version 1"},
        {"init without host_port", 2, NULL, "host_port"},
        {"call before init", 3, NULL, "init req"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int fd = cl_open();
        CHECK(fd >= 0, "connect");
        if (cases[i].kind == 0) {
            send_all(fd, cases[i].bytes, strlen(cases[i].bytes) ? strlen(cases[i].bytes) : 16);
        } else if (cases[i].kind == 3) {
            uint8_t buf[512];
            size_t n = call_req(buf, 5, "echo", tch_slice_cstr("x"));
            send_all(fd, buf, n);
        } else {
            send_init(fd, cases[i].kind == 1 ? 1 : 2, cases[i].kind != 2);
        }
        char why[512];
        int ms = wait_closed(fd, 3000, why, sizeof why);
        CHECK(ms >= 0, "%s: still open after 3 s", cases[i].what);
        CHECK(strstr(why, cases[i].needle) != NULL, "%s: closed saying \"%s\"", cases[i].what, why);
        close(fd);
    }
}

/* Call req frames built by hand: what the library would never send. arg1
 * is endpoint, or arg1_len bytes of 'e' when endpoint is NULL. */
static size_t raw_req(uint8_t *out, uint32_t id, uint8_t flags, const char *const *keys,
                      size_t nh, const char *endpoint, size_t arg1_len, size_t arg3_len) {
    uint8_t *q = out + TCH_FRAME_HEADER_SIZE;
    *q++ = flags;
    memcpy(q, "\x00\x00\x27\x10", 4), q += 4; /* ttl 10 s */
    memset(q, 0, 25), q += 25;
    *q++ = 7, memcpy(q, "hostile", 7), q += 7;
    *q++ = (uint8_t)nh;
    for (size_t i = 0; i < nh; i++) {
        char k[24];
        snprintf(k, sizeof k, "k%zu", i);
        const char *key = keys && keys[i] ? keys[i] : k;
        *q++ = (uint8_t)strlen(key), memcpy(q, key, strlen(key)), q += strlen(key);
        *q++ = 3, memcpy(q, "raw", 3), q += 3;
    }
    *q++ = 0; /* no checksum */
    if (endpoint)
        arg1_len = strlen(endpoint);
    *q++ = (uint8_t)(arg1_len >> 8), *q++ = (uint8_t)arg1_len;
    if (endpoint)
        memcpy(q, endpoint, arg1_len);
    else
        memset(q, 'e', arg1_len);
    q += arg1_len;
    *q++ = 0, *q++ = 0;
    *q++ = (uint8_t)(arg3_len >> 8), *q++ = (uint8_t)arg3_len;
    memset(q, 'x', arg3_len), q += arg3_len;
    size_t n = (size_t)(q - out);
    tch_frame_header_write(out, TCH_FRAME_CALL_REQ, id, n - TCH_FRAME_HEADER_SIZE);
    return n;
}

/* A continue frame of a request: flags, no checksum, one chunk of len. */
static size_t raw_cont(uint8_t *out, uint32_t id, uint8_t flags, size_t len) {
    uint8_t *q = out + TCH_FRAME_HEADER_SIZE;
    *q++ = flags;
    *q++ = 0;
    *q++ = (uint8_t)(len >> 8), *q++ = (uint8_t)len;
    memset(q, 'y', len), q += len;
    size_t n = (size_t)(q - out);
    tch_frame_header_write(out, TCH_FRAME_CALL_REQ_CONT, id, n - TCH_FRAME_HEADER_SIZE);
    return n;
}

/* Waits for the error frame about id: its code, text in msg; 0xfe: none. */
static uint8_t expect_error(int fd, uint32_t id, char *msg, size_t cap) {
    static rframe f;
    for (;;) {
        if (read_frame(fd, &f, 5000) != 1)
            return 0xfe;
        if (f.id == id && f.type == TCH_FRAME_ERROR)
            return error_of(&f, msg, cap);
    }
}

static void protocol_is_applied_strictly(void) {
    int fd = cl_connect();
    CHECK(fd >= 0, "connect");
    static uint8_t buf[TCH_FRAME_MAX_SIZE];
    char msg[512];
    /* an id reused while its request is still arriving */
    size_t n = raw_req(buf, 7, TCH_CALL_FLAG_MORE, NULL, 0, "echo", 0, 1000);
    send_all(fd, buf, n);
    n = raw_req(buf, 7, 0, NULL, 0, "echo", 0, 10);
    send_all(fd, buf, n);
    uint8_t code = expect_error(fd, 7, msg, sizeof msg);
    CHECK(code == TCH_PCODE_BAD_REQUEST && strstr(msg, "call id 7 reused"), "reuse: %u %s", code, msg);
    static const char *const dup[] = {"as", "cn", "as"};
    static const struct {
        const char *const *keys;
        size_t nh, arg1;
        const char *needle;
    } cases[] = {
        {dup, 3, 4, "duplicate transport header key \"as\""},
        {NULL, 129, 4, "129 transport headers"},
        {NULL, 2, 0x4001, "longer than the protocol allows"},
    };
    for (uint32_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        n = raw_req(buf, 100 + i, 0, cases[i].keys, cases[i].nh, NULL, cases[i].arg1, 1);
        send_all(fd, buf, n);
        code = expect_error(fd, 100 + i, msg, sizeof msg);
        CHECK(code == TCH_PCODE_BAD_REQUEST && strstr(msg, cases[i].needle), "case %u: %u %s", i,
              code, msg);
    }
    /* and the connection still serves */
    code = 0xfe;
    int type = call(fd, 200, "echo", "still here", &code, msg, sizeof msg);
    CHECK(type == TCH_FRAME_CALL_RES && strcmp(msg, "still here") == 0, "after: %d %s", type, msg);
    close(fd);
}

/* xorshift64*: the same frames for the same seed. */
static uint64_t rng;
static uint64_t rnd(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1Dull;
}

/* A frame of random type, id (few, so that ids collide) and payload.
 * Mostly the types a connection lives through (call frames, cancel, claim,
 * ping), so that most frames reach the code past the handshake; one in 64
 * is something that ends the connection (random bytes, an init, an
 * unknown type, an error frame). */
static size_t random_frame(uint8_t *out) {
    static const uint8_t live[] = {0x03, 0x03, 0x03, 0x03, 0x04, 0x13, 0x13,
                                   0x13, 0x14, 0xc0, 0xc1, 0xd0, 0xd1};
    static const uint8_t fatal[] = {0x01, 0x02, 0x42, 0xff};
    uint64_t r = rnd();
    size_t len = r % 8 == 0 ? rnd() % 2000 : rnd() % 200;
    for (size_t i = 0; i < len + TCH_FRAME_HEADER_SIZE; i += 8) {
        uint64_t v = rnd();
        memcpy(out + i, &v, 8);
    }
    if (r % 64 == 0 && (r >> 6) % 5 == 0) { /* not a frame: a size under 16 */
        out[0] = 0;
        out[1] &= 0x0f;
        return len + TCH_FRAME_HEADER_SIZE;
    }
    uint8_t type = r % 64 == 0 ? fatal[(r >> 8) % sizeof fatal] : live[(r >> 8) % sizeof live];
    tch_frame_header_write(out, type, (uint32_t)(r >> 16) % 16, len);
    if (len && (type == 0x03 || type == 0x13) && r % 3 == 0)
        out[TCH_FRAME_HEADER_SIZE] &= 0x01; /* plausible flags */
    return len + TCH_FRAME_HEADER_SIZE;
}

/* Sends batches of 16 random frames, each followed by a ping: the ping's
 * answer says the server has taken the batch (its end says it closed). */
static void random_frames_do_no_harm(uint64_t seed) {
    rng = seed ? seed : 1;
    static uint8_t buf[17 * 2100];
    static rframe f;
    int64_t end = now_ms() + 20000;
    long sent = 0, conns = 0, batches = 0;
    while (sent < 100000 && now_ms() < end) {
        int fd = cl_connect();
        if (fd < 0) /* the cap, while closed ones are being reaped */
            continue;
        conns++;
        int alive = 1;
        while (alive && sent < 100000 && now_ms() < end) {
            size_t n = 0;
            for (int i = 0; i < 16; i++)
                n += random_frame(buf + n);
            uint32_t ping = 1000 + (uint32_t)(batches++ % 1000);
            n += tch_ping_encode(TCH_FRAME_PING_REQ, ping, buf + n);
            sent += 16;
            if (send_all_within(fd, buf, n, 2000) != 0)
                break;
            for (;;) { /* its answer, or the close */
                if (read_frame(fd, &f, 5000) != 1) {
                    alive = 0;
                    break;
                }
                if (f.type == TCH_FRAME_PING_RES && f.id == ping)
                    break;
            }
        }
        close(fd);
    }
    printf("random frames: %ld frames in %ld batches on %ld connections (seed %llu)\n", sent,
           batches, conns, (unsigned long long)seed);
    CHECK(sent >= 100000 || conns > 100, "only %ld frames sent", sent);
    int fd = cl_connect();
    CHECK(fd >= 0, "connect after the random frames");
    uint8_t code;
    char msg[256] = "";
    CHECK(fd >= 0 && call(fd, 1, "echo", "alive", &code, msg, sizeof msg) == TCH_FRAME_CALL_RES &&
              strcmp(msg, "alive") == 0,
          "the server does not answer after the random frames: %s", msg);
    if (fd >= 0)
        close(fd);
}

static size_t raw_req(uint8_t *out, uint32_t id, uint8_t flags, const char *const *keys,
                      size_t nh, const char *endpoint, size_t arg1_len, size_t arg3_len);

/* Idle: no call; silent: not even an init; stalled: a request begun (its
 * first frame says more follow) and never continued, which keeps its
 * connection busy for a frame timeout at most. */
static void idle_and_silent_connections_are_closed(void) {
    int idle = cl_connect(), silent = cl_open(), stalled = cl_connect();
    CHECK(idle >= 0 && silent >= 0 && stalled >= 0, "connect");
    static uint8_t buf[1024];
    send_all(stalled, buf, raw_req(buf, 3, TCH_CALL_FLAG_MORE, NULL, 0, "echo", 0, 100));
    char why[512];
    int ms = wait_closed(silent, HANDSHAKE_MS + 3000, why, sizeof why);
    CHECK(ms >= HANDSHAKE_MS - 100, "a connection that sent nothing closed after %d ms", ms);
    CHECK(strstr(why, "no init handshake within") != NULL, "silent: \"%s\"", why);
    ms = wait_closed(idle, idle_ms * 2 + 3000, NULL, 0);
    CHECK(ms >= 0, "an idle connection is still open after %d ms", idle_ms * 2 + 3000);
    ms = wait_closed(stalled, idle_ms * 2 + 3000, NULL, 0);
    CHECK(ms >= 0, "a stalled request keeps its connection open past %d ms", idle_ms * 2 + 3000);
    close(stalled);
    CHECK(log_has("(idle timeout)"), "no log line for the idle timeout:\n%s", S.log);
    CHECK(log_has("no init handshake"), "no log line for the handshake timeout");
    close(idle);
    close(silent);
}

/* Slowloris: frames begun and trickled a byte at a time, from 20
 * connections at once; each is closed by the frame timeout, trickle or
 * not. The trickle's pace is the poll on the socket's own close. */
static void slowloris_is_closed_after_the_frame_timeout(void) {
    enum { MAXN = 20 };
    const int N = max_conns < MAXN ? max_conns : MAXN; /* within the cap */
    int fds[MAXN], closed_ms[MAXN];
    int64_t start = now_ms();
    static const uint8_t header[] = {0x07, 0xd0, 0x03, 0x00, 0x00, 0x00, 0x00, 0x09};
    for (int i = 0; i < N; i++) {
        fds[i] = cl_connect();
        CHECK(fds[i] >= 0, "connect %d", i);
        send_all(fds[i], header, sizeof header); /* a 2000-byte frame begins */
        closed_ms[i] = -1;
    }
    char why[512] = "";
    int open = N;
    while (open > 0 && now_ms() - start < frame_ms + 4000) {
        struct pollfd p[MAXN];
        for (int i = 0; i < N; i++)
            p[i] = (struct pollfd){.fd = closed_ms[i] < 0 ? fds[i] : -1, .events = POLLIN};
        poll(p, N, 200);
        for (int i = 0; i < N; i++) {
            if (closed_ms[i] >= 0)
                continue;
            if (p[i].revents) {
                int ms = wait_closed(fds[i], 1000, why, sizeof why);
                if (ms >= 0) {
                    closed_ms[i] = (int)(now_ms() - start);
                    open--;
                }
            } else {
                send_all(fds[i], "z", 1); /* one more byte of the frame */
            }
        }
    }
    CHECK(open == 0, "%d slowloris connections still open after %d ms", open, frame_ms + 4000);
    for (int i = 0; i < N; i++) {
        CHECK(closed_ms[i] < 0 || closed_ms[i] >= frame_ms - 100, "closed early: %d ms", closed_ms[i]);
        close(fds[i]);
    }
    CHECK(strstr(why, "frame timeout") != NULL, "slowloris closed saying \"%s\"", why);
    CHECK(log_has("frame timeout"), "no log line for the frame timeout");
}

/* A client that sends calls and never reads the answers neither stalls
 * the server for others nor stays open: once nothing is in flight it is
 * closed at the idle timeout. */
static void a_client_that_does_not_read(void) {
    int lazy = cl_connect();
    CHECK(lazy >= 0, "connect");
    static uint8_t body[60000];
    static uint8_t buf[TCH_FRAME_MAX_SIZE];
    memset(body, 'b', sizeof body);
    int calls = 0;
    for (uint32_t id = 1; id <= 400; id++, calls++) { /* ~24 MB of answers */
        size_t n = call_req(buf, id, "echo", tch_slice_of(body, sizeof body));
        if (send_all_within(lazy, buf, n, 500) != 0)
            break; /* the server stopped reading it: backpressure */
    }
    int other = cl_connect();
    CHECK(other >= 0, "connect beside the client that does not read");
    uint8_t code;
    char msg[256];
    int64_t t0 = now_ms();
    CHECK(call(other, 1, "echo", "served", &code, msg, sizeof msg) == TCH_FRAME_CALL_RES,
          "another client is not served while one does not read");
    CHECK(now_ms() - t0 < 2000, "another client waited %lld ms", (long long)(now_ms() - t0));
    close(other);
    int ms = wait_closed(lazy, idle_ms * 2 + 8000, NULL, 0);
    CHECK(ms >= 0, "the client that does not read is still open (it sent %d calls)", calls);
    close(lazy);
}

/* A client that pipelines more small calls than the server's input buffer
 * holds (1 MiB), asking for 64 KiB answers, then reads them in spells with
 * pauses (its own pace, not a wait for anything): the server stops reading
 * whenever the answers back up and must always take up the frames already
 * read once they drain. It once resumed only when the input buffer had
 * room, and with it still full the connection stalled for good. */
enum { BURST_CALLS = 16000 };
static uint8_t burst_reqs[BURST_CALLS * 96];
static size_t burst_len;
static int burst_fd;
static void *burst_writer(void *arg) {
    (void)arg;
    send_all_within(burst_fd, burst_reqs, burst_len, 30000);
    return NULL;
}

static void a_client_that_reads_in_spells(void) {
    burst_fd = cl_connect();
    CHECK(burst_fd >= 0, "connect");
    burst_len = 0;
    for (uint32_t id = 1; id <= BURST_CALLS; id++)
        burst_len += call_req(burst_reqs + burst_len, id, "big", tch_slice_cstr("x"));
    pthread_t th;
    CHECK(pthread_create(&th, NULL, burst_writer, NULL) == 0, "writer thread");
    static rframe f;
    int answered = 0, errors = 0, rc, pauses = 0;
    size_t got = 0;
    while (answered < BURST_CALLS && (rc = read_frame(burst_fd, &f, 5000)) == 1) {
        got += f.len + 16;
        if (pauses < 6 && got >= ((size_t)8 << 20)) { /* a slow spell */
            got = 0;
            pauses++;
            usleep(200 * 1000);
        }
        if (f.type == TCH_FRAME_ERROR)
            answered++, errors++;
        else if ((f.type == TCH_FRAME_CALL_RES || f.type == TCH_FRAME_CALL_RES_CONT) &&
                 !(f.payload[0] & 1))
            answered++;
    }
    pthread_join(th, NULL);
    CHECK(answered == BURST_CALLS, "%d of %d pipelined calls answered (%d errors), then "
          "nothing for 5 s", answered, BURST_CALLS, errors);
    close(burst_fd);
}

/* Answers made later (by a handler that waits) to a client that never
 * reads are bounded too: waiting output counts in the memory budget, and
 * an answer that would pass it while the client leaves more than 64 KiB
 * unread closes that connection, with a log line; others are served. */
static void late_answers_to_a_client_that_does_not_read(void) {
    enum { HELD = 80 }; /* 80 answers of 1 MiB against a 40 MiB budget */
    int lazy = cl_connect(), ctl = cl_connect();
    CHECK(lazy >= 0 && ctl >= 0, "connect");
    static uint8_t buf[HELD * 128];
    size_t n = 0;
    for (uint32_t id = 1; id <= HELD; id++)
        n += call_req(buf + n, id, "hold", tch_slice_cstr("h"));
    send_all(lazy, buf, n);
    uint8_t code;
    char msg[256] = "";
    int64_t deadline = now_ms() + 30000;
    for (uint32_t id = 100; now_ms() < deadline; id++) /* each waits on an answer */
        if (call(ctl, id, "held", "", &code, msg, sizeof msg) == TCH_FRAME_CALL_RES &&
            atoi(msg) == HELD)
            break;
    CHECK(atoi(msg) == HELD, "%s of %d calls held", msg, HELD);
    CHECK(call(ctl, 1, "releasebig", "", &code, msg, sizeof msg) == TCH_FRAME_CALL_RES,
          "releasebig: %s", msg);
    unsigned held = 0, taken = HELD;
    sscanf(msg, "%u %u", &held, &taken);
    CHECK(held == HELD && taken < HELD / 2,
          "%u of %u late answers were queued for a client that reads nothing", taken, held);
    char why[256];
    CHECK(wait_closed(lazy, 5000, why, sizeof why) >= 0, "the client that does not read is open");
    CHECK(log_has("the peer is not reading its answers"), "no log line for the close");
    CHECK(call(ctl, 2, "echo", "after", &code, msg, sizeof msg) == TCH_FRAME_CALL_RES &&
              !strcmp(msg, "after"),
          "a call after the close: %s", msg);
    close(lazy);
    close(ctl);
}

/* More calls in flight than max_pending_calls: the extra ones get Busy,
 * the others are all answered once released. */
static void many_calls_in_flight(void) {
    int fd = cl_connect(), ctl = cl_connect();
    CHECK(fd >= 0 && ctl >= 0, "connect");
    static uint8_t buf[120 * 128];
    size_t n = 0;
    for (uint32_t id = 1; id <= MAX_PENDING + 20; id++)
        n += call_req(buf + n, id, "hold", tch_slice_cstr("h"));
    send_all(fd, buf, n);
    int busy = 0, answered = 0;
    static rframe f;
    char msg[256];
    while (busy < 20 && read_frame(fd, &f, 5000) == 1)
        busy += error_of(&f, msg, sizeof msg) == TCH_PCODE_BUSY && f.id > MAX_PENDING;
    CHECK(busy == 20, "%d of 20 calls over the limit got Busy", busy);
    uint8_t code;
    CHECK(call(ctl, 1, "release", "", &code, msg, sizeof msg) == TCH_FRAME_CALL_RES &&
              atoi(msg) == MAX_PENDING,
          "release: %s", msg);
    while (answered < MAX_PENDING && read_frame(fd, &f, 5000) == 1)
        answered += f.type == TCH_FRAME_CALL_RES;
    CHECK(answered == MAX_PENDING, "%d of %d held calls answered", answered, MAX_PENDING);
    close(fd);
    close(ctl);
}

static long status_kb(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0)
            kb = atol(line + n + 1);
    if (f)
        fclose(f);
    return kb;
}

/* Starts (frame 0) or continues request id of `mib` MiB of arg3 in frames
 * of 60000 bytes; returns 1 once its last frame is sent. */
static int send_big_to(int fd, uint32_t id, const char *endpoint, size_t total, size_t *sent) {
    static uint8_t buf[TCH_FRAME_MAX_SIZE];
    size_t chunk = total - *sent < 60000 ? total - *sent : 60000;
    int last = *sent + chunk == total;
    static const char *const as_cn[] = {"as", "cn"};
    size_t n = *sent == 0
                   ? raw_req(buf, id, TCH_CALL_FLAG_MORE, as_cn, 2, endpoint, 0, 0)
                   : raw_cont(buf, id, last ? 0 : TCH_CALL_FLAG_MORE, chunk);
    if (*sent == 0) { /* the first frame carries the fields, no arg3 yet */
        send_all(fd, buf, n);
        n = raw_cont(buf, id, last ? 0 : TCH_CALL_FLAG_MORE, chunk);
    }
    send_all(fd, buf, n);
    *sent += chunk;
    return *sent == total;
}

static int send_big_step(int fd, uint32_t id, size_t total, size_t *sent) {
    return send_big_to(fd, id, "size", total, sent);
}

/* A cancel frame for id (no tracing). */
static size_t cancel_frame(uint8_t *out, uint32_t id) {
    uint8_t *q = out + TCH_FRAME_HEADER_SIZE;
    memset(q, 0, 4 + 25), q += 4 + 25; /* ttl, tracing */
    *q++ = 0, *q++ = 3, memcpy(q, "bye", 3), q += 3;
    size_t n = (size_t)(q - out);
    tch_frame_header_write(out, TCH_FRAME_CANCEL, id, n - TCH_FRAME_HEADER_SIZE);
    return n;
}

/* A call its caller cancelled keeps its bytes in the budget for as long as
 * its handler holds them (the charge follows the memory), so cancelling
 * and sending again cannot get past the budget: two 16 MiB calls held and
 * cancelled leave no room for a third under 40 MiB until they are let go. */
static void cancelled_calls_keep_their_bytes_counted(void) {
    const size_t total = (size_t)16 << 20;
    int fd = cl_connect();
    for (uint32_t id = 1; id <= 2; id++)
        for (size_t sent = 0; !send_big_to(fd, id, "hold", total, &sent);)
            ;
    int ctl = cl_connect(); /* now: it would idle out while those are sent */
    CHECK(fd >= 0 && ctl >= 0, "connect");
    uint8_t code;
    char msg[256] = "";
    int64_t deadline = now_ms() + 30000; /* 32 MiB to take in: slow under sanitizers */
    for (uint32_t id = 100; now_ms() < deadline; id++) /* each waits on an answer */
        if (call(ctl, id, "held", "", &code, msg, sizeof msg) == TCH_FRAME_CALL_RES &&
            atoi(msg) == 2)
            break;
    CHECK(atoi(msg) == 2, "%s of 2 calls held", msg);
    static uint8_t buf[256];
    size_t n = cancel_frame(buf, 1);
    n += cancel_frame(buf + n, 2);
    n += (size_t)tch_ping_encode(TCH_FRAME_PING_REQ, 9, buf + n);
    send_all(fd, buf, n);
    static rframe f;
    while (read_frame(fd, &f, 5000) == 1 && f.type != TCH_FRAME_PING_RES)
        ; /* the pong: the cancels before it were taken */
    CHECK(f.type == TCH_FRAME_PING_RES, "no pong after the cancels");
    int other = cl_connect(); /* now: it would idle out while the others are sent */
    CHECK(other >= 0, "connect");
    for (size_t sent = 0; !send_big_step(other, 3, total, &sent);)
        ;
    CHECK(read_frame(other, &f, 5000) == 1 && error_of(&f, msg, sizeof msg) == TCH_PCODE_BUSY,
          "a third 16 MiB call while two cancelled ones are held: %s", msg);
    CHECK(call(ctl, 1, "release", "", &code, msg, sizeof msg) == TCH_FRAME_CALL_RES &&
              atoi(msg) == 2,
          "release: %s", msg);
    for (size_t sent = 0; !send_big_step(other, 4, total, &sent);)
        ;
    CHECK(read_frame(other, &f, 5000) == 1 && f.type == TCH_FRAME_CALL_RES,
          "once they are let go, the call is taken (%s)", error_of(&f, msg, sizeof msg) ? msg : "");
    close(fd);
    close(other);
    close(ctl);
}

/* Three 16 MiB requests at once against a 40 MiB budget: some get Busy
 * (and succeed when retried alone), and the process's peak memory grows
 * by less than the budget. */
static void large_arguments_hit_the_budget(void) {
    enum { N = 3 };
    const size_t total = (size_t)16 << 20;
    int fds[N];
    size_t sent[N] = {0};
    FILE *f = fopen("/proc/self/clear_refs", "w"); /* resets VmHWM */
    if (f) {
        fputs("5", f);
        fclose(f);
    }
    long base_kb = status_kb("VmRSS:");
    for (int i = 0; i < N; i++)
        fds[i] = cl_connect();
    for (int done = 0; done < N;) {
        done = 0;
        for (int i = 0; i < N; i++)
            done += sent[i] == total || send_big_step(fds[i], 1, total, &sent[i]);
    }
    int ok = 0, busy = 0;
    char msg[256];
    for (int i = 0; i < N; i++) {
        static rframe fr;
        if (read_frame(fds[i], &fr, 10000) != 1)
            continue;
        if (fr.type == TCH_FRAME_CALL_RES)
            ok++;
        else if (error_of(&fr, msg, sizeof msg) == TCH_PCODE_BUSY)
            busy++;
        if (getenv("NET_HOSTILE_VERBOSE"))
            printf("  request %d: frame 0x%02x %s\n", i, fr.type, msg);
    }
    long peak_kb = status_kb("VmHWM:");
    printf("budget: 3 x 16 MiB at once, budget 40 MiB: %d answered, %d Busy; "
           "peak RSS %ld kB over a base of %ld kB\n",
           ok, busy, peak_kb - base_kb, base_kb);
    CHECK(ok >= 1 && busy >= 1 && ok + busy == N, "%d answered, %d busy", ok, busy);
    CHECK(!RSS_MEANINGFUL || peak_kb < 0 ||
              (size_t)(peak_kb - base_kb) * 1024 < REQUEST_BYTES + ((size_t)12 << 20),
          "peak grew by %ld kB", peak_kb - base_kb);
    CHECK(log_has("would pass the budget"), "no log line for the budget");
    /* A caller told Busy may retry: alone, each request fits. On a new
     * connection: the others may have idled out meanwhile (sanitizers). */
    for (int i = 0; i < busy; i++) {
        int rfd = cl_connect();
        size_t s = 0;
        while (!send_big_step(rfd, 2 + (uint32_t)i, total, &s))
            ;
        static rframe fr;
        CHECK(read_frame(rfd, &fr, 10000) == 1 && fr.type == TCH_FRAME_CALL_RES,
              "a retried request is not answered");
        close(rfd);
    }
    for (int i = 0; i < N; i++)
        close(fds[i]);
}

/* Asks the server how many connections it has until it says want. */
static int wait_conns(int fd, size_t want) {
    int64_t end = now_ms() + 10000;
    uint8_t code;
    char msg[64];
    for (uint32_t id = 1; now_ms() < end; id++) {
        if (call(fd, id, "conns", "", &code, msg, sizeof msg) != TCH_FRAME_CALL_RES)
            return 0;
        if ((size_t)atol(msg) == want)
            return 1;
        wait_fd(fd, POLLIN, now_ms() + 20); /* nothing comes: a short pause */
    }
    return 0;
}

static void connections_are_capped(void) {
    int fds[1024];
    if (max_conns < 1 || max_conns > 1024)
        return;
    fds[0] = cl_connect();
    CHECK(fds[0] >= 0 && (!S.ch || wait_conns(fds[0], 1)), "the earlier connections are still open");
    for (int i = 1; i < max_conns; i++) {
        fds[i] = cl_connect();
        CHECK(fds[i] >= 0, "connection %d of %d refused", i + 1, max_conns);
    }
    int extra = cl_open();
    send_init(extra, 2, 1); /* as a real caller does: it is told all the same */
    char why[256];
    int ms = wait_closed(extra, 3000, why, sizeof why);
    CHECK(ms >= 0 && strstr(why, "too many connections"), "over the cap: %d ms, \"%s\"", ms, why);
    close(extra);
    CHECK(log_has("refused a connection: too many connections"), "no log line for the cap");
    close(fds[max_conns - 1]);
    int again = -1;
    for (int64_t end = now_ms() + 5000; again < 0 && now_ms() < end;)
        again = cl_connect(); /* refused until the server has seen the close */
    CHECK(again >= 0, "no connection taken after one closed");
    close(again);
    for (int i = 0; i < max_conns - 1; i++)
        close(fds[i]);
}

/* ---- flood: for measuring a running server's memory --------------------- */

static int flood(const char *host_port, int n, size_t mib) {
    const char *colon = strrchr(host_port, ':');
    if (!colon || n < 1 || n > 64 || mib < 1)
        return fprintf(stderr, "usage: net_hostile --flood HOST:PORT N MIB\n"), 2;
    snprintf(S.host, sizeof S.host, "%.*s", (int)(colon - host_port), host_port);
    S.port = atoi(colon + 1);
    int fds[64];
    size_t sent[64] = {0}, total = mib << 20;
    for (int i = 0; i < n; i++)
        if ((fds[i] = cl_connect()) < 0)
            return fprintf(stderr, "flood: cannot connect to %s\n", host_port), 1;
    for (int done = 0; done < n;) {
        done = 0;
        for (int i = 0; i < n; i++)
            done += sent[i] == total || send_big_step(fds[i], 1, total, &sent[i]);
    }
    int answered = 0, busy = 0, other = 0;
    for (int i = 0; i < n; i++) {
        static rframe fr;
        char msg[256];
        if (read_frame(fds[i], &fr, 60000) != 1)
            other++;
        else if (fr.type == TCH_FRAME_CALL_RES)
            answered++;
        else if (error_of(&fr, msg, sizeof msg) == TCH_PCODE_BUSY)
            busy++;
        else
            answered++; /* an error answer (no handler, say) after assembly */
        close(fds[i]);
    }
    printf("flood: %d requests of %zu MiB: %d answered, %d Busy, %d no answer\n", n, mib, answered,
           busy, other);
    return 0;
}

/* Delayed answers to a client that never reads: n calls to hostile::slow
 * (which a running tchannel-mock answers after a delay), then no read at
 * all, only a wait (bounded) for the server to close the connection. The
 * caller measures the server's memory meanwhile. */
static int delayed(const char *host_port, int n) {
    const char *colon = strrchr(host_port, ':');
    if (!colon || n < 1 || n > 60000)
        return fprintf(stderr, "usage: net_hostile --delayed HOST:PORT N\n"), 2;
    snprintf(S.host, sizeof S.host, "%.*s", (int)(colon - host_port), host_port);
    S.port = atoi(colon + 1);
    int fd = cl_connect();
    if (fd < 0)
        return fprintf(stderr, "delayed: cannot connect to %s\n", host_port), 1;
    static uint8_t buf[256 * 128];
    int sent = 0;
    while (sent < n) {
        size_t len = 0;
        for (int k = 0; k < 256 && sent < n; k++, sent++)
            len += call_req(buf + len, (uint32_t)sent + 1, "slow", tch_slice_cstr("x"));
        if (send_all(fd, buf, len) != 0)
            break;
    }
    /* POLLRDHUP alone: the answers waiting unread do not wake it, the
     * server's close does */
    int64_t t0 = now_ms();
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    int closed = 0;
    while (!closed && now_ms() - t0 < 30000)
        closed = poll(&p, 1, 1000) > 0;
    printf("delayed: %d calls sent; %s after %lld ms\n", sent,
           closed ? "the server closed the connection" : "still open",
           (long long)(now_ms() - t0));
    close(fd);
    return closed ? 0 : 1;
}

/* The limits of a running server given its settings: what the flags of
 * tchannel-mock must have set (its log lines are the caller's to check). */
static int against(const char *host_port, int idle, int frame, int conns) {
    const char *colon = strrchr(host_port, ':');
    if (!colon || idle < 100 || frame < 100 || conns < 1 || conns > 1024)
        return fprintf(stderr, "usage: net_hostile --against HOST:PORT IDLE_MS FRAME_MS "
                               "MAX_CONNS\n"), 2;
    snprintf(S.host, sizeof S.host, "%.*s", (int)(colon - host_port), host_port);
    S.port = atoi(colon + 1);
    idle_ms = idle, frame_ms = frame, max_conns = conns;
    int fd = cl_connect();
    CHECK(fd >= 0, "connect");
    int ms = wait_closed(fd, idle_ms * 2 + 3000, NULL, 0);
    CHECK(ms >= idle_ms - 100, "an idle connection closed after %d ms (idle timeout %d)", ms, idle_ms);
    close(fd);
    printf("idle connection closed after %d ms\n", ms);
    slowloris_is_closed_after_the_frame_timeout();
    connections_are_capped();
    printf("%d failure(s)\n", failures);
    return failures ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "--flood") == 0)
        return flood(argv[2], atoi(argv[3]), (size_t)atol(argv[4]));
    if (argc == 4 && strcmp(argv[1], "--delayed") == 0)
        return delayed(argv[2], atoi(argv[3]));
    if (argc == 6 && strcmp(argv[1], "--against") == 0)
        return against(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 20261206;
    if (server_start() != 0) {
        fprintf(stderr, "cannot start the server\n");
        return 1;
    }
    static const struct {
        const char *name;
        void (*fn)(void);
    } cases[] = {
        {"garbage and bad inits", garbage_and_bad_inits_are_refused},
        {"the protocol, strictly", protocol_is_applied_strictly},
        {"large arguments and the budget", large_arguments_hit_the_budget},
        {"cancelled calls keep their bytes counted", cancelled_calls_keep_their_bytes_counted},
        {"idle and silent connections", idle_and_silent_connections_are_closed},
        {"slowloris", slowloris_is_closed_after_the_frame_timeout},
        {"many calls in flight", many_calls_in_flight},
        {"a client that does not read", a_client_that_does_not_read},
        {"late answers to a client that does not read", late_answers_to_a_client_that_does_not_read},
        {"a client that reads in spells", a_client_that_reads_in_spells},
        {"the connection cap", connections_are_capped},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t t0 = now_ms();
        int before = failures;
        cases[i].fn();
        printf("%s %s (%lld ms)\n", failures == before ? "ok  " : "FAIL", cases[i].name,
               (long long)(now_ms() - t0));
        fflush(stdout);
    }
    int64_t t0 = now_ms();
    random_frames_do_no_harm(seed);
    printf("%s random frames (%lld ms)\n", failures ? "...." : "ok  ", (long long)(now_ms() - t0));
    int fd = cl_connect();
    uint8_t code;
    char msg[64];
    if (fd >= 0)
        call(fd, 1, "quit", "", &code, msg, sizeof msg);
    pthread_join(S.thread, NULL);
    if (fd >= 0)
        close(fd);
    tch_channel_free(S.ch);
    event_base_free(S.base);
    printf("%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
