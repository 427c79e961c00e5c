/* Recordings under faults (label `hostile`), against the real tchannel-mock
 * recording through to the C echo server over 127.0.0.1:
 *
 *   record_hostile kill9     kill -9 the mock, over and over, while a client
 *                            records through it as fast as it can; after each
 *                            restart every call the client saw answered is in
 *                            the cassette, the cassette parses, the journal was
 *                            folded and no temp file is left.
 *   record_hostile diskfull  a tmpfs too small for the recordings (needs root
 *                            and mount; exit 77 otherwise): callers whose
 *                            recording could not be saved get an error saying
 *                            so, and no answered recording is lost, neither
 *                            while the disk is full nor once it has room.
 *   record_hostile shared    two mocks on one cassette: a second writer leaves
 *                            the first one's journal alone and refuses to
 *                            record; a reader that recorded nothing exits
 *                            without touching a dead writer's journal; no
 *                            answered recording is lost.
 *   record_hostile journaldir PATH.journal a directory: callers are refused,
 *                            and the shutdown log claims nothing was kept.
 *   record_hostile answer    --record-failure=answer, with a file where the
 *                            cassette's folder should be: callers get the
 *                            upstream's answers, and the exit status (1) says
 *                            the recordings were lost.
 *
 * Every wait is on an event with a bound; a seeded generator picks when to
 * kill, so a failing run can be repeated (RECORD_HOSTILE_SEED). */
#include <tchannel/cassette.h>
#include <tchannel/channel.h>

#include "mock_proc.h"

#include <dirent.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CONC 32
#define MAX_CALLS 200000
#define BODY_PAD 48

typedef struct client {
    struct event_base *base;
    tch_channel *ch;
    const char *hp;
    int round;
    int next; /* id of the next call */
    int inflight, answered, refused, failed;
    int stop;              /* start no new calls */
    size_t body_size;      /* bytes of padding after the id */
    unsigned char *acked;  /* by id: the caller saw its answer */
    unsigned char *found;  /* by id: in the cassette */
    char refusal[512];     /* the first "not saved" message seen */
} client;

typedef struct call {
    client *cl;
    int id;
    char body[8192];
} call;

static unsigned long long seed_state;
static unsigned rnd(unsigned n) {
    seed_state = seed_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (unsigned)((seed_state >> 33) % n);
}

static int start_call(client *cl);

static void on_answer(const tch_response *res, void *ud) {
    call *c = ud;
    client *cl = c->cl;
    cl->inflight--;
    size_t blen = strlen(c->body);
    if (res->status == 0 && res->arg3.len == blen && memcmp(res->arg3.ptr, c->body, blen) == 0) {
        cl->acked[c->id] = 1;
        cl->answered++;
    } else if (res->status == TCH_EREMOTE && res->message &&
               strstr(res->message, "recording could not be saved")) {
        if (!cl->refused++)
            snprintf(cl->refusal, sizeof cl->refusal, "%s", res->message);
    } else {
        cl->failed++;
    }
    free(c);
    if (!cl->stop)
        start_call(cl);
}

static int start_call(client *cl) {
    if (cl->next >= MAX_CALLS)
        return -1;
    call *c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    c->cl = cl;
    c->id = cl->next++;
    int n = snprintf(c->body, sizeof c->body, "k%d-%d-", cl->round, c->id);
    size_t pad = cl->body_size < sizeof c->body - (size_t)n - 1 ? cl->body_size
                                                                : sizeof c->body - (size_t)n - 1;
    memset(c->body + n, 'a' + c->id % 26, pad);
    c->body[(size_t)n + pad] = '\0';
    tch_call_opts o = {.service = "keyvalue-server", .endpoint = tch_slice_cstr("echo"),
                       .arg3 = tch_slice_cstr(c->body), .host_port = cl->hp, .timeout_ms = 5000};
    tch_error err;
    cl->inflight++;
    if (tch_channel_call(cl->ch, &o, on_answer, c, &err) != 0) {
        cl->inflight--;
        cl->failed++;
        free(c);
        return -1;
    }
    return 0;
}

/* Starts CONC callers against hp (a fresh channel: the old mock is gone). */
static void start_load(client *cl, const char *hp) {
    if (cl->ch)
        tch_channel_free(cl->ch);
    tch_channel_new(cl->base, "record-hostile", NULL, &cl->ch, NULL);
    cl->hp = hp;
    cl->stop = 0;
    for (int i = 0; i < CONC; i++)
        start_call(cl);
}

/* Stops starting calls and waits (bounded) for every one in flight. */
static int drain(client *cl) {
    cl->stop = 1;
    long end = mp_now_ms() + 10000;
    while (cl->inflight > 0 && mp_now_ms() < end)
        event_base_loop(cl->base, EVLOOP_ONCE);
    return cl->inflight == 0 ? 0 : -1;
}

static int ids_of(const char *body, size_t len, int *round, int *id) {
    char text[64];
    size_t n = len < sizeof text - 1 ? len : sizeof text - 1;
    memcpy(text, body, n);
    text[n] = '\0';
    return sscanf(text, "k%d-%d-", round, id) == 2 ? 0 : -1;
}

static size_t temp_files(const char *dir, const char *name) {
    char prefix[256];
    snprintf(prefix, sizeof prefix, ".%s.tmp.", name);
    size_t n = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    if (d)
        closedir(d);
    return n;
}

/* The cassette parses and holds every call the client saw answered (the
 * journal included when with_journal; otherwise there must be none). */
static int check_cassette(client *cl, const char *dir, const char *path, int with_journal,
                          const char *when) {
    char jpath[600];
    struct stat st;
    snprintf(jpath, sizeof jpath, "%s.journal", path);
    if (!with_journal && stat(jpath, &st) == 0) {
        printf("FAIL %s: %s is still there after the restart\n", when, jpath);
        return -1;
    }
    size_t temps = temp_files(dir, "rec.yaml");
    if (temps) {
        printf("FAIL %s: %zu temp files of interrupted saves left beside the cassette\n", when,
               temps);
        return -1;
    }
    tch_cassette_options o;
    tch_cassette_options_init(&o);
    o.mode = TCH_CASSETTE_NONE;
    o.no_env_override = 1;
    tch_cassette *c = NULL;
    tch_error err = {0};
    if (tch_cassette_open(path, &o, &c, &err) != 0) {
        printf("FAIL %s: the cassette does not parse: %s\n", when, err.msg);
        return -1;
    }
    memset(cl->found, 0, MAX_CALLS);
    for (size_t i = 0; i < tch_cassette_count(c); i++) {
        const tch_cassette_interaction *it = tch_cassette_get(c, i);
        int round, id;
        if (it && ids_of((const char *)it->request.body.ptr, it->request.body.len, &round, &id) == 0 &&
            id >= 0 && id < MAX_CALLS)
            cl->found[id] = 1;
    }
    size_t n = tch_cassette_count(c), missing = 0, acked = 0;
    int first = -1;
    tch_cassette_free(c);
    for (int id = 0; id < cl->next; id++) {
        acked += cl->acked[id];
        if (cl->acked[id] && !cl->found[id] && missing++ == 0)
            first = id;
    }
    if (missing) {
        printf("FAIL %s: %zu of %zu answered recordings missing (first: call %d); the cassette "
               "holds %zu\n", when, missing, acked, first, n);
        return -1;
    }
    printf("ok %s: %zu answered recordings all in the cassette (%zu interactions)\n", when, acked,
           n);
    return 0;
}

static int start_mock_with(mock_proc *mp, const char *upstream, const char *path,
                           const char *failure) {
    char *argv[] = {TCH_MOCK_BIN, "--mode", "new_episodes", "--upstream", (char *)upstream,
                    "--no-watch", "--record-failure", (char *)failure, (char *)path, NULL};
    if (mp_start(mp, argv, 0, 2) != 0) {
        printf("FAIL: tchannel-mock did not start on %s\n", path);
        return -1;
    }
    return 0;
}

static int start_mock(mock_proc *mp, const char *upstream, const char *path) {
    return start_mock_with(mp, upstream, path, "error");
}

static int start_echo(mock_proc *echo) {
    char *argv[] = {TCH_INTEROP_SERVER, "--idl", TCH_SOURCE_DIR "/cassettes/keyvalue.thrift",
                    NULL};
    if (mp_start(echo, argv, 0, 2) != 0) {
        printf("FAIL: the echo server did not start\n");
        return -1;
    }
    return 0;
}

static void rm_dir(const char *dir) {
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        char p[600];
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name), unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

/* ---- kill -9 while recording -------------------------------------------------------- */

static int kill9(client *cl, const char *upstream) {
    enum { ROUNDS = 10 };
    char dir[] = "/tmp/record_kill9_XXXXXX", path[600];
    if (!mkdtemp(dir))
        return 1;
    snprintf(path, sizeof path, "%s/rec.yaml", dir);
    int rc = 0;
    for (int round = 0; round < ROUNDS && !rc; round++) {
        mock_proc mp;
        if (start_mock(&mp, upstream, path) != 0) {
            rc = 1;
            break;
        }
        /* it folded what the last one left before it said `listening` */
        if (round > 0) {
            char when[64];
            snprintf(when, sizeof when, "restart %d", round);
            if (check_cassette(cl, dir, path, 0, when) != 0) {
                rc = 1;
                mp_stop(&mp, NULL, SIGKILL, 5000);
                break;
            }
        }
        cl->round = round;
        int before = cl->answered;
        start_load(cl, mp.hp);
        int want = before + 200 + (int)rnd(1800);
        if (!tch_test_run_until_count(cl->base, &cl->answered, want, 15000)) {
            printf("FAIL round %d: only %d of %d calls answered within 15 s\n", round,
                   cl->answered - before, want - before);
            rc = 1;
        }
        if (round % 3 == 2) /* SIGTERM first: the kill may land in the exit's fold */
            kill(mp.pid, SIGTERM);
        mp_stop(&mp, NULL, SIGKILL, 5000);
        if (drain(cl) != 0) {
            printf("FAIL round %d: calls still in flight 10 s after the kill\n", round);
            rc = 1;
        }
        printf("round %d: %d answered so far, %d failed (killed in flight)\n", round, cl->answered,
               cl->failed);
        fflush(stdout);
    }
    mock_proc mp;
    if (!rc && start_mock(&mp, upstream, path) == 0) {
        rc = check_cassette(cl, dir, path, 0, "final restart") != 0;
        int st = mp_stop(&mp, NULL, SIGTERM, 5000);
        if (st != 0) {
            printf("FAIL: the last mock exited %d after SIGTERM\n", st);
            rc = 1;
        }
        rc |= check_cassette(cl, dir, path, 0, "after SIGTERM") != 0;
    } else {
        rc = 1;
    }
    if (cl->refused) {
        printf("FAIL: %d calls were refused as not saved on a disk with room: %s\n", cl->refused,
               cl->refusal);
        rc = 1;
    }
    rm_dir(dir);
    return rc;
}

/* ---- two processes on one cassette -------------------------------------------------- */

static int start_mock_mode(mock_proc *mp, const char *mode, const char *upstream,
                           const char *path, int capture_err) {
    char *argv[] = {TCH_MOCK_BIN, "--mode", (char *)mode, "--upstream", (char *)upstream,
                    "--no-watch", (char *)path, NULL};
    if (mp_start(mp, argv, 0, capture_err) != 0) {
        printf("FAIL: tchannel-mock --mode %s did not start on %s\n", mode, path);
        return -1;
    }
    return 0;
}

/* Sends sig and reads the child's stderr to its end (the child exited),
 * bounded; then reaps it. Returns the exit status, -1 on the bound. */
static int stop_reading_err(mock_proc *mp, int sig, char *buf, size_t n) {
    size_t len = strlen(buf);
    long end = mp_now_ms() + 10000;
    kill(mp->pid, sig);
    while (mp->err_fd >= 0 && len + 1 < n && mp_now_ms() < end) {
        struct pollfd p = {mp->err_fd, POLLIN, 0};
        if (poll(&p, 1, (int)(end - mp_now_ms())) <= 0)
            continue;
        ssize_t r = read(mp->err_fd, buf + len, n - len - 1);
        if (r < 0 && errno == EAGAIN)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
        buf[len] = '\0';
    }
    return mp_stop(mp, NULL, SIGKILL, 5000);
}

static int expect_in(const char *what, const char *text, const char *want) {
    if (strstr(text, want))
        return 0;
    printf("FAIL: %s does not say \"%s\":\n%s\n", what, want, text);
    return -1;
}

/* Runs calls against hp until `count` reaches want (bounded), then drains. */
static int load_until(client *cl, const char *hp, int *count, int want, const char *what) {
    start_load(cl, hp);
    int ok = tch_test_run_until_count(cl->base, count, want, 15000);
    if (drain(cl) != 0 || !ok) {
        printf("FAIL %s: %d answered, %d refused, %d failed\n", what, cl->answered, cl->refused,
               cl->failed);
        return -1;
    }
    return 0;
}

/* A records; B, a second writer, starts meanwhile: B leaves A's journal
 * alone (it used to fold and remove it, and A's later recordings went to
 * the removed file) and refuses to record, saying why. A is killed -9:
 * every call A answered is in the cassette once a third mock starts. Then
 * a mock in mode none, started before a writer that is killed -9, exits
 * without writing its stale copy over the file or removing the journal. */
static int shared(client *cl, const char *upstream) {
    char dir[] = "/tmp/record_shared_XXXXXX", path[600], errs[65536] = "";
    if (!mkdtemp(dir))
        return 1;
    snprintf(path, sizeof path, "%s/rec.yaml", dir);
    mock_proc a, b, c;
    int rc = start_mock_mode(&a, "new_episodes", upstream, path, 2) != 0;
    rc = rc || load_until(cl, a.hp, &cl->answered, 100, "A records") != 0;
    rc = rc || start_mock_mode(&b, "new_episodes", upstream, path, 1) != 0;
    if (!rc) {
        mp_stderr(&b, errs, sizeof errs);
        rc |= expect_in("B's start", errs, "rec.yaml.journal: another process is recording into "
                        "this cassette") != 0;
        cl->round = 1;
        rc |= load_until(cl, b.hp, &cl->refused, 20, "B refuses to record") != 0;
        rc |= expect_in("the answer to B's caller", cl->refusal, "another process is recording "
                        "into this cassette") != 0;
        rc |= expect_in("the answer to B's caller", cl->refusal, path) != 0;
        cl->round = 2;
        int want = cl->answered + 100;
        rc |= load_until(cl, a.hp, &cl->answered, want, "A records after B started") != 0;
        mp_stop(&a, NULL, SIGKILL, 5000);
        stop_reading_err(&b, SIGTERM, errs, sizeof errs);
        rc |= check_cassette(cl, dir, path, 1, "A killed -9, B stopped") != 0;
    }
    if (!rc && start_mock_mode(&c, "new_episodes", upstream, path, 2) == 0) {
        rc |= check_cassette(cl, dir, path, 0, "a third mock started") != 0;
        rc |= mp_stop(&c, NULL, SIGTERM, 5000) != 0;
    }
    /* a reader started first, a writer killed -9, the reader stops */
    if (!rc && start_mock_mode(&b, "none", upstream, path, 2) == 0 &&
        start_mock_mode(&a, "new_episodes", upstream, path, 2) == 0) {
        cl->round = 3;
        int want = cl->answered + 100;
        rc |= load_until(cl, a.hp, &cl->answered, want, "A records beside a reader") != 0;
        mp_stop(&a, NULL, SIGKILL, 5000);
        int st = mp_stop(&b, NULL, SIGTERM, 5000);
        if (st != 0) {
            printf("FAIL: the reader exited %d\n", st);
            rc = 1;
        }
        rc |= check_cassette(cl, dir, path, 1, "writer killed -9, reader stopped") != 0;
    } else {
        rc = 1;
    }
    printf("shared: %d answered by the writer, %d refused by the second writer\n", cl->answered,
           cl->refused);
    cl->refused = 0; /* counted, and expected, here */
    rm_dir(dir);
    return rc;
}

/* PATH.journal made a directory after the start: every caller is told its
 * recording was not saved, and the shutdown log does not claim that any
 * recording waits in the journal. */
static int journal_dir(client *cl, const char *upstream) {
    char dir[] = "/tmp/record_jdir_XXXXXX", path[600], jpath[640], errs[65536] = "";
    if (!mkdtemp(dir))
        return 1;
    snprintf(path, sizeof path, "%s/rec.yaml", dir);
    snprintf(jpath, sizeof jpath, "%s.journal", path);
    mock_proc mp;
    int rc = start_mock_mode(&mp, "new_episodes", upstream, path, 1) != 0;
    if (!rc && mkdir(jpath, 0755) != 0)
        rc = 1;
    if (!rc) {
        cl->body_size = 8; /* a short log line per refused call: the pipe holds them */
        rc |= load_until(cl, mp.hp, &cl->refused, 20, "the journal is a directory") != 0;
        if (cl->answered) {
            printf("FAIL: %d callers were told their call succeeded\n", cl->answered);
            rc = 1;
        }
        int st = stop_reading_err(&mp, SIGTERM, errs, sizeof errs);
        printf("journal a directory: %d refused, exit %d\n", cl->refused, st);
        const char *last = strstr(errs, "SIGTERM");
        if (!last || strstr(last, "stay in") || strstr(last, "folded at the next start")) {
            printf("FAIL: the shutdown log claims recordings were kept:\n%s\n",
                   last ? last : errs);
            rc = 1;
        }
    }
    rmdir(jpath);
    cl->refused = 0;
    rm_dir(dir);
    return rc;
}

/* ---- a full disk -------------------------------------------------------------------- */

static int run_cmd(const char *cmd) {
    int st = system(cmd);
    return st == 0 ? 0 : -1;
}

static int diskfull(client *cl, const char *upstream) {
    if (geteuid() != 0) {
        printf("SKIP diskfull: mounting a small tmpfs needs root\n");
        return 77;
    }
    char dir[] = "/tmp/record_diskfull_XXXXXX", path[600], cmd[700];
    if (!mkdtemp(dir))
        return 1;
    snprintf(cmd, sizeof cmd, "mount -t tmpfs -o size=512k tmpfs %s 2>/dev/null", dir);
    if (run_cmd(cmd) != 0) {
        printf("SKIP diskfull: cannot mount a tmpfs here (%s)\n", cmd);
        rmdir(dir);
        return 77;
    }
    snprintf(path, sizeof path, "%s/rec.yaml", dir);
    int rc = 0;
    mock_proc mp;
    cl->body_size = 2048;
    if (start_mock(&mp, upstream, path) != 0) {
        rc = 1;
        goto out;
    }
    start_load(cl, mp.hp);
    if (!tch_test_run_until_count(cl->base, &cl->refused, 50, 20000)) {
        printf("FAIL: the disk never filled: %d answered, %d refused, %d failed\n", cl->answered,
               cl->refused, cl->failed);
        rc = 1;
    }
    if (drain(cl) != 0)
        rc = 1;
    printf("full disk: %d answered, %d refused as not saved, %d failed otherwise\n",
           cl->answered, cl->refused, cl->failed);
    if (cl->refused)
        printf("a refused caller read: %s\n", cl->refusal);
    if (cl->failed) {
        printf("FAIL: %d calls failed for another reason than the full disk\n", cl->failed);
        rc = 1;
    }
    if (cl->answered == 0) {
        printf("FAIL: nothing was recorded before the disk filled\n");
        rc = 1;
    }
    rc |= check_cassette(cl, dir, path, 1, "disk full, mock running") != 0;
    int st = mp_stop(&mp, NULL, SIGTERM, 10000);
    if (st != 0) { /* every answered recording is in the journal: nothing was lost */
        printf("FAIL: the mock exited %d on a full disk with nothing lost\n", st);
        rc = 1;
    }
    rc |= check_cassette(cl, dir, path, 1, "disk full, mock stopped") != 0;
    snprintf(cmd, sizeof cmd, "mount -o remount,size=16m %s", dir);
    if (run_cmd(cmd) != 0) {
        printf("FAIL: %s\n", cmd);
        rc = 1;
        goto out;
    }
    if (start_mock(&mp, upstream, path) != 0) {
        rc = 1;
        goto out;
    }
    rc |= check_cassette(cl, dir, path, 0, "room again, restarted") != 0;
    if ((st = mp_stop(&mp, NULL, SIGTERM, 10000)) != 0) {
        printf("FAIL: the mock exited %d\n", st);
        rc = 1;
    }
out:
    snprintf(cmd, sizeof cmd, "umount %s", dir);
    run_cmd(cmd);
    rm_dir(dir);
    return rc;
}

/* ---- --record-failure=answer ---------------------------------------------------------- */

static int answer_anyway(client *cl, const char *upstream) {
    char dir[] = "/tmp/record_answer_XXXXXX", sub[600], path[640];
    if (!mkdtemp(dir))
        return 1;
    snprintf(sub, sizeof sub, "%s/sub", dir);
    snprintf(path, sizeof path, "%s/rec.yaml", sub);
    mock_proc mp;
    int rc = start_mock_with(&mp, upstream, path, "answer") != 0;
    FILE *blocker = rc ? NULL : fopen(sub, "w"); /* the folder can never be made now */
    if (blocker)
        fclose(blocker);
    if (!rc) {
        start_load(cl, mp.hp);
        rc = !tch_test_run_until_count(cl->base, &cl->answered, 100, 15000);
        rc |= drain(cl) != 0;
        printf("answer: %d answered, %d refused, %d failed\n", cl->answered, cl->refused,
               cl->failed);
        if (cl->refused || cl->failed) {
            printf("FAIL: with --record-failure=answer every caller gets the upstream's answer\n");
            rc = 1;
        }
        int st = mp_stop(&mp, NULL, SIGTERM, 10000);
        if (st != 1) {
            printf("FAIL: exit status %d after recordings were lost (expected 1)\n", st);
            rc = 1;
        }
    }
    unlink(sub);
    rm_dir(dir);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 2 || (strcmp(argv[1], "kill9") && strcmp(argv[1], "diskfull") &&
                      strcmp(argv[1], "answer") && strcmp(argv[1], "shared") &&
                      strcmp(argv[1], "journaldir"))) {
        fprintf(stderr, "usage: record_hostile kill9|diskfull|answer|shared|journaldir\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    const char *seed = getenv("RECORD_HOSTILE_SEED");
    seed_state = seed ? strtoull(seed, NULL, 10) : (unsigned long long)time(NULL);
    printf("seed %llu (RECORD_HOSTILE_SEED to repeat)\n", seed_state);
    client cl = {0};
    cl.base = event_base_new();
    cl.acked = calloc(MAX_CALLS, 1);
    cl.found = calloc(MAX_CALLS, 1);
    cl.body_size = BODY_PAD;
    mock_proc echo;
    if (!cl.base || !cl.acked || !cl.found || start_echo(&echo) != 0)
        return 1;
    int rc = !strcmp(argv[1], "kill9")      ? kill9(&cl, echo.hp)
             : !strcmp(argv[1], "diskfull") ? diskfull(&cl, echo.hp)
             : !strcmp(argv[1], "shared")   ? shared(&cl, echo.hp)
             : !strcmp(argv[1], "journaldir") ? journal_dir(&cl, echo.hp)
                                            : answer_anyway(&cl, echo.hp);
    if (cl.ch)
        tch_channel_free(cl.ch);
    mp_stop(&echo, NULL, SIGTERM, 5000);
    event_base_free(cl.base);
    free(cl.acked);
    free(cl.found);
    printf("%s\n", rc == 0 ? "PASS" : rc == 77 ? "SKIP" : "FAIL");
    return rc;
}
