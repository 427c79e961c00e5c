/* Load: 64 clients (one channel, so one connection, each) run closed-loop
 * calls against tchannel-mock — replays, misses and delayed answers — while
 * raw sockets send garbage frames. Every good call must be answered
 * correctly, the mock must still serve afterwards, and its RSS must stay
 * under a bound (journal ring, no per-request leaks). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <tchannel/channel.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "mock_proc.h"

#define CLIENTS 64
#define CALLS_PER_CLIENT 60
#define GARBAGE_SOCKETS 16
/* ASan's shadow memory and free quarantine make the sanitizer build's RSS
 * several times larger; the bound is about leaks, so it scales with it. */
#if defined(__has_feature) /* clang says ASan this way, gcc with __SANITIZE_ADDRESS__ */
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(UNDER_ASAN)
#define RSS_LIMIT_KB (256 * 1024)
#define RSS_GROWTH_KB (32 * 1024)
#else
#define RSS_LIMIT_KB (64 * 1024)
#define RSS_GROWTH_KB (4 * 1024)
#endif

typedef struct client client;
typedef struct load {
    struct event_base *base;
    const char *hp;
    int finished; /* clients done */
    int ok, bad;
    char first_bad[512];
} load;

struct client {
    load *l;
    tch_channel *ch;
    int n;
    int expect_miss;
};

static void next_call(client *c);

static void on_answer(const tch_response *res, void *ud) {
    client *c = ud;
    load *l = c->l;
    int good = c->expect_miss ? (res->status == TCH_EREMOTE &&
                                 res->error_code == TCH_PCODE_BAD_REQUEST)
                              : (res->status == 0 && res->arg3.len == 5 &&
                                 !memcmp(res->arg3.ptr, "hello", 5));
    if (good)
        l->ok++;
    else if (l->bad++ == 0)
        snprintf(l->first_bad, sizeof l->first_bad, "status %d code %u: %s", res->status,
                 res->error_code, res->message ? res->message : "");
    if (++c->n == CALLS_PER_CLIENT)
        l->finished++;
    else
        next_call(c);
}

static void next_call(client *c) {
    /* every 7th call misses (journal, near-miss path); the rest replay */
    c->expect_miss = c->n % 7 == 3;
    tch_call_opts o = {.service = "keyvalue-server", .endpoint = tch_slice_cstr("echo"),
                       .arg3 = tch_slice_cstr(c->expect_miss ? "nope" : "hello"),
                       .host_port = c->l->hp, .timeout_ms = 10000};
    tch_error err;
    if (tch_channel_call(c->ch, &o, on_answer, c, &err) != 0) {
        c->l->bad++;
        c->l->finished++;
    }
}

/* Garbage: a valid-looking frame header with nonsense, random bytes, and a
 * frame claiming a huge size, each on its own connection. */
static void send_garbage(const char *hp, int kind) {
    char host[64];
    snprintf(host, sizeof host, "%s", hp);
    char *colon = strrchr(host, ':');
    *colon = 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    inet_pton(AF_INET, host, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return;
    }
    uint8_t buf[512];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 37 + (size_t)kind * 11);
    if (kind % 3 == 0) { /* size 0xffff, type call req before init */
        const uint8_t h[] = {0xff, 0xff, 0x03, 0x00, 0, 0, 0, 1};
        memcpy(buf, h, sizeof h);
    } else if (kind % 3 == 1) { /* size smaller than the header */
        const uint8_t h[] = {0x00, 0x04, 0x01, 0x00, 0, 0, 0, 1};
        memcpy(buf, h, sizeof h);
    }
    ssize_t w = write(fd, buf, sizeof buf);
    (void)w;
    close(fd);
}

static long rss_kb(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *fp = fopen(path, "r");
    long kb = -1;
    while (fp && fgets(line, sizeof line, fp))
        if (!strncmp(line, "VmRSS:", 6))
            kb = atol(line + 6);
    if (fp)
        fclose(fp);
    return kb;
}

/* The server process, in the test's state so that teardown kills it when
 * an assertion ends the test early (no server outlives a failed run). */
static int setup(void **state) {
    mock_proc *mp = calloc(1, sizeof *mp);
    *state = mp;
    return mp ? 0 : -1;
}

static int teardown(void **state) {
    mock_proc *mp = *state;
    if (mp->pid > 0)
        mp_stop(mp, NULL, SIGKILL, 5000);
    free(mp);
    return 0;
}

static void sixty_four_clients_with_garbage(void **state) {
    mock_proc *mp = *state;
    char *argv[] = {TCH_MOCK_BIN, "--allow-repeats", "--journal-size", "500",
                    TCH_SOURCE_DIR "/cassettes/echo-raw.yaml", NULL};
    assert_int_equal(mp_start(mp, argv, 0, 2), 0); /* misses log a line each */
    long rss_start = rss_kb(mp->pid);
    load l = {.base = event_base_new(), .hp = mp->hp};
    static client cs[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        cs[i] = (client){.l = &l};
        assert_int_equal(tch_channel_new(l.base, "load-client", NULL, &cs[i].ch, NULL), 0);
        next_call(&cs[i]);
    }
    for (int g = 0; g < GARBAGE_SOCKETS; g++) /* mixed in while calls are in flight */
        send_garbage(mp->hp, g);
    assert_true(tch_test_run_until_count(l.base, &l.finished, CLIENTS, 60000));
    for (int g = 0; g < GARBAGE_SOCKETS; g++)
        send_garbage(mp->hp, g + 100);
    if (l.bad)
        fprintf(stderr, "first bad answer: %s\n", l.first_bad);
    assert_int_equal(l.bad, 0);
    assert_int_equal(l.ok, CLIENTS * CALLS_PER_CLIENT);
    /* a second round: still serving, and memory does not grow with requests */
    long rss_mid = rss_kb(mp->pid);
    l.finished = 0, l.ok = 0;
    for (int i = 0; i < CLIENTS; i++) {
        cs[i].n = 0;
        next_call(&cs[i]);
    }
    assert_true(tch_test_run_until_count(l.base, &l.finished, CLIENTS, 60000));
    assert_int_equal(l.bad, 0);
    long rss_end = rss_kb(mp->pid);
    fprintf(stderr, "# RSS kB: start %ld, after %d calls %ld, after %d calls %ld\n", rss_start,
            CLIENTS * CALLS_PER_CLIENT, rss_mid, 2 * CLIENTS * CALLS_PER_CLIENT, rss_end);
    assert_true(rss_end > 0 && rss_end < RSS_LIMIT_KB);
    assert_true(rss_end < rss_mid + RSS_GROWTH_KB); /* a second round adds (almost) nothing */
    for (int i = 0; i < CLIENTS; i++)
        tch_channel_free(cs[i].ch);
    assert_int_equal(mp_stop(mp, l.base, SIGTERM, 10000), 0);
    event_base_free(l.base);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(sixty_four_clients_with_garbage, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
