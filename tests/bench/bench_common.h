/* Shared by the C bench programs (bench_client.c, pingpong.c): clock,
 * latency recording and the one result line every bench case prints:
 *
 *   impl=<client>-><server> conc=<n> size=<bytes> calls/s=<float> p50_us=<int> p99_us=<int> errors=<n>
 *
 * Latencies are all recorded (one uint32 of microseconds per measured call),
 * sorted at the end; percentiles are nearest-rank. Header-only: the bench
 * programs are single files and must not grow a library of their own.
 */
#ifndef TCH_BENCH_COMMON_H
#define TCH_BENCH_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline uint64_t bench_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

typedef struct bench_lat {
    uint32_t *us;
    size_t len, cap;
} bench_lat;

static inline int bench_lat_add(bench_lat *l, uint64_t ns) {
    if (l->len == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1u << 16;
        uint32_t *p = realloc(l->us, cap * sizeof *p);
        if (!p)
            return -1;
        l->us = p;
        l->cap = cap;
    }
    uint64_t us = ns / 1000u;
    l->us[l->len++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    return 0;
}

static inline int bench_cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of the sorted samples (0 when there are none). */
static inline uint32_t bench_pct(const bench_lat *l, double p) {
    if (l->len == 0)
        return 0;
    size_t rank = (size_t)(p / 100.0 * (double)l->len + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > l->len)
        rank = l->len;
    return l->us[rank - 1];
}

/* calls: completed inside the measuring window (throughput); l: latencies of
 * the calls that both started and ended inside it. */
static inline void bench_report(const char *impl, unsigned conc, size_t size, unsigned long calls,
                                bench_lat *l, double seconds, unsigned long errors) {
    qsort(l->us, l->len, sizeof *l->us, bench_cmp_u32);
    printf("impl=%s conc=%u size=%zu calls/s=%.1f p50_us=%u p99_us=%u errors=%lu\n", impl, conc,
           size, seconds > 0 ? (double)calls / seconds : 0.0, bench_pct(l, 50), bench_pct(l, 99),
           errors);
    fflush(stdout);
}

/* Parses a positive decimal (or 0 when allow_zero) into *out; 0 or -1. */
static inline int bench_parse_u64(const char *s, uint64_t max, int allow_zero, uint64_t *out) {
    uint64_t v = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > max)
            return -1;
    }
    if (!allow_zero && v == 0)
        return -1;
    *out = v;
    return 0;
}

/* Parses seconds as a decimal with an optional fraction ("5", "0.3"). */
static inline int bench_parse_seconds(const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || v < 0 || v > 3600)
        return -1;
    *out = v;
    return 0;
}

#endif
