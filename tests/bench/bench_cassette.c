/* Cassette benchmark: writes a cassette of N interactions (a mix of raw,
 * json and thrift calls), times loading it, then looks up (and so marks
 * played) every recorded request. Run for 1,000 and 10,000 interactions to
 * show the per-lookup cost does not grow with the cassette.
 * Usage: bench_cassette [dir]   (default /tmp; BENCH_KEEP=1 keeps the files)
 *        bench_cassette --load-mb N [dir]
 *            writes a cassette of about N MB (1 KiB bodies) and reports the
 *            memory its loading takes, as a multiple of the file's size (a
 *            child process loads it, so nothing else counts).
 * Load times are given as wall clock and as CPU time (load_cpu_ms): on a
 * shared machine the second is the one to compare. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <tchannel/cassette.h>

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* CPU time (user + system) of this process, in ns: on a shared machine
 * it moves far less than the wall clock does. */
static double cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* The i-th request: same shape every time so the lookup pass can rebuild it. */
static void make_call(size_t i, char *body, size_t bodysz, tch_cassette_call *call,
                      tch_kv *th) {
    static const char *const eps[] = {"echo", "json_echo", "KeyValue::getValue"};
    tch_cassette_scheme scheme = (tch_cassette_scheme)(i % 3);
    if (scheme == TCH_CASSETTE_JSON)
        snprintf(body, bodysz, "{\"key\":\"k%zu\",\"value\":\"v%zu\",\"n\":%zu}", i, i, i);
    else
        snprintf(body, bodysz, "payload-%zu-abcdefghijklmnopqrstuvwxyz", i);
    th[0].key = tch_slice_cstr("as");
    th[0].value = tch_slice_cstr(scheme == TCH_CASSETTE_JSON ? "json" : scheme ? "thrift" : "raw");
    memset(call, 0, sizeof *call);
    call->service = tch_slice_cstr("keyvalue-server");
    call->endpoint = tch_slice_cstr(eps[scheme]);
    call->headers = scheme == TCH_CASSETTE_JSON ? tch_slice_cstr("{\"$tracing$id\":\"1\"}")
                    : scheme == TCH_CASSETTE_THRIFT ? tch_slice_of("\0\0", 2)
                                                    : tch_slice_cstr("");
    call->body = tch_slice_cstr(body);
    call->scheme = scheme;
    call->host_port = tch_slice_cstr("127.0.0.1:4040");
    call->transport_headers = th;
    call->n_transport_headers = 1;
}

static int generate(const char *path, size_t n) {
    tch_cassette_options o;
    tch_cassette *c;
    tch_error err;
    tch_cassette_options_init(&o);
    o.mode = TCH_CASSETTE_ALL;
    o.no_env_override = 1;
    if (tch_cassette_open(path, &o, &c, &err))
        return fprintf(stderr, "%s\n", err.msg), -1;
    for (size_t i = 0; i < n; i++) {
        char body[128];
        tch_cassette_call call;
        tch_kv th[1];
        tch_cassette_slot slot;
        make_call(i, body, sizeof body, &call, th);
        tch_cassette_reply r = {0, call.headers, call.body};
        if (tch_cassette_record_begin(c, &call, &slot, &err) ||
            tch_cassette_record_finish(c, slot, &r, &err))
            return fprintf(stderr, "%s\n", err.msg), -1;
    }
    int rc = tch_cassette_save(c, &err);
    if (rc)
        fprintf(stderr, "%s\n", err.msg);
    tch_cassette_free(c);
    return rc;
}

static int run(const char *dir, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/bench_cassette_%zu.yaml", dir, n);
    unlink(path);
    if (generate(path, n))
        return -1;
    tch_cassette_options o;
    tch_cassette *c;
    tch_error err;
    tch_cassette_options_init(&o);
    o.mode = TCH_CASSETTE_NONE;
    o.no_env_override = 1;
    double t0 = now_ns(), c0 = cpu_ns();
    if (tch_cassette_open(path, &o, &c, &err))
        return fprintf(stderr, "%s\n", err.msg), -1;
    double load_ms = (now_ns() - t0) / 1e6, load_cpu_ms = (cpu_ns() - c0) / 1e6;
    /* look up in file order: each request finds its own interaction */
    t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
        char body[128];
        tch_cassette_call call;
        tch_kv th[1];
        tch_cassette_decision d;
        make_call(i, body, sizeof body, &call, th);
        if (tch_cassette_lookup(c, &call, &d, &err) || d.index != i)
            return fprintf(stderr, "lookup %zu: %s\n", i, err.msg), -1;
        tch_cassette_decision_clear(&d);
    }
    double lookup_ns = (now_ns() - t0) / (double)n;
    if (!tch_cassette_all_played(c))
        return fprintf(stderr, "not all played\n"), -1;
    tch_cassette_free(c);
    if (!getenv("BENCH_KEEP"))
        unlink(path);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("cassette_load_ms=%.1f load_cpu_ms=%.1f lookup_ns=%.0f interactions=%zu "
           "maxrss_kb=%ld\n", load_ms, load_cpu_ms, lookup_ns, n, ru.ru_maxrss);
    return 0;
}

/* VmHWM (peak RSS) of this process, in kB. */
static long peak_rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

/* A cassette of about mb MB, written directly (the library would hold it
 * all in memory to write it). */
static int write_big(const char *path, size_t mb) {
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    char body[1025];
    fputs("interactions:\n", f);
    size_t bytes = 0;
    for (size_t i = 0; bytes < mb << 20; i++) {
        for (size_t k = 0; k < 1024; k++)
            body[k] = (char)('a' + (i + k) % 26);
        body[1024] = '\0';
        int n = fprintf(f, "- request:\n    argScheme: 0\n    body: b%zu-%s\n    endpoint: echo\n"
                           "    headers: ''\n    serviceName: keyvalue-server\n  response:\n"
                           "    body: r%zu-%s\n    code: 0\n    headers: ''\n", i, body, i, body);
        if (n < 0)
            break;
        bytes += (size_t)n;
    }
    fputs("version: 1\n", f);
    int failed = ferror(f);
    return fclose(f) == 0 && !failed ? 0 : -1;
}

static int load_ratio(const char *dir, size_t mb) {
    char path[512];
    snprintf(path, sizeof path, "%s/bench_cassette_%zumb.yaml", dir, mb);
    if (write_big(path, mb))
        return fprintf(stderr, "writing %s failed\n", path), -1;
    struct stat st;
    stat(path, &st);
    pid_t pid = fork();
    if (pid == 0) { /* the child loads: its peak is the load's */
        tch_cassette_options o;
        tch_cassette *c;
        tch_error err;
        tch_cassette_options_init(&o);
        o.mode = TCH_CASSETTE_NONE;
        o.no_env_override = 1;
        long before = peak_rss_kb();
        double t0 = now_ns(), c0 = cpu_ns();
        if (tch_cassette_open(path, &o, &c, &err))
            _exit((fprintf(stderr, "%s\n", err.msg), 1));
        double ms = (now_ns() - t0) / 1e6, cpu_ms = (cpu_ns() - c0) / 1e6;
        long after = peak_rss_kb();
        printf("cassette_file_mb=%.1f interactions=%zu load_ms=%.0f load_cpu_ms=%.0f "
               "load_peak_mb=%.1f ratio=%.2f (target < 1.5)\n", (double)st.st_size / 1048576.0,
               tch_cassette_count(c), ms, cpu_ms, (double)(after - before) / 1024.0,
               (double)(after - before) * 1024.0 / (double)st.st_size);
        fflush(stdout);
        _exit(0); /* freeing 200 MB would only add time */
    }
    int status = 1;
    waitpid(pid, &status, 0);
    if (!getenv("BENCH_KEEP"))
        unlink(path);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc > 2 && !strcmp(argv[1], "--load-mb")) {
        long mb = atol(argv[2]);
        if (mb <= 0 || mb > 1000)
            return fprintf(stderr, "--load-mb: 1 to 1000\n"), 2;
        return load_ratio(argc > 3 ? argv[3] : "/tmp", (size_t)mb) ? 1 : 0;
    }
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    if (run(dir, 1000) || run(dir, 10000))
        return 1;
    return 0;
}
