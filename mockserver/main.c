/* tchannel-mock: serves cassettes over TChannel (see docs/mockserver.md).
 *
 * This file parses the command line into a mock_config, builds the `mock`
 * context in order (cassettes, channel, upstream, admin API, watcher,
 * signals), prints `listening HOST:PORT` (and `admin HOST:PORT`), runs the
 * loop, and on SIGINT/SIGTERM shuts down so that every recording is on disk
 * before exit 0. Exit 2: bad command line; 1: cannot start (e.g. a corrupt
 * cassette, reported as file:line:column). */
#include "mock.h"

#include <event2/event.h>

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int mock_strv_push(mock_strv *sv, const char *s) {
    char **v = realloc(sv->v, (sv->n + 2) * sizeof *v);
    if (!v)
        return TCH_ENOMEM;
    sv->v = v;
    if (!(v[sv->n] = strdup(s)))
        return TCH_ENOMEM;
    v[++sv->n] = NULL;
    return 0;
}

void mock_strv_free(mock_strv *sv) {
    for (size_t i = 0; i < sv->n; i++)
        free(sv->v[i]);
    free(sv->v);
    sv->v = NULL, sv->n = 0;
}

/* ---- command line --------------------------------------------------------------- */

static const char USAGE[] =
    "usage: tchannel-mock [options] CASSETTE|DIR ...\n"
    "  --host HOST              listen address (default 127.0.0.1)\n"
    "  --port PORT              listen port (default 0: ephemeral)\n"
    "  --admin-port PORT        HTTP admin API (0: ephemeral; default: off)\n"
    "  --admin-host HOST        admin API address (default 127.0.0.1)\n"
    "  --mode MODE              once|new_episodes|none|all (default none)\n"
    "  --upstream HOST:PORT     real service for record-through (repeatable)\n"
    "  --record-to PATH         cassette that records (default: the first given)\n"
    "  --allow-repeats          replay the last match again once all were played\n"
    "  --match M1,M2,...        matchers (serviceName endpoint headers body argScheme\n"
    "                           transportHeaders; default the first five)\n"
    "  --no-watch               do not reload cassettes that change on disk\n"
    "  --watch-interval MS      poll period for changes (default 500)\n"
    "  --journal-size N         requests kept in the journal (default 10000)\n"
    "  --grace MS               on SIGTERM, wait this long for recordings (default 2000)\n"
    "  --advertise-to HOST:PORT advertise the cassettes' services to a Hyperbahn router\n"
    "                           (repeatable)\n"
    "  --advertise-service NAME service to advertise (repeatable; default: all served)\n"
    "  -v, --verbose            one log line per request\n"
    "  -h, --help               this text\n";

static int usage_error(const char *fmt, ...) TCH_PRINTF(1, 2);
static int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tchannel-mock: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n%s", USAGE);
    va_end(ap);
    return 2;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out) {
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-')
        return -1;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

static int push_list(mock_strv *sv, const char *csv) {
    char *copy = strdup(csv);
    int rc = copy ? 0 : TCH_ENOMEM;
    for (char *save = NULL, *t = copy ? strtok_r(copy, ",", &save) : NULL; t && !rc;
         t = strtok_r(NULL, ",", &save))
        rc = mock_strv_push(sv, t);
    free(copy);
    return rc;
}

/* Options that take a value; "--opt=value" works too. */
static const char *const VALUE_OPTS[] = {
    "--host", "--port", "--admin-port", "--admin-host", "--mode", "--upstream",
    "--record-to", "--match", "--watch-interval", "--journal-size", "--grace",
    "--advertise-to", "--advertise-service", NULL};

static int takes_value(const char *name) {
    for (size_t i = 0; VALUE_OPTS[i]; i++)
        if (!strcmp(VALUE_OPTS[i], name))
            return 1;
    return 0;
}

static int apply_option(mock_config *c, const char *name, const char *v) {
    unsigned long n;
    tch_error err;
    if (!strcmp(name, "--host"))
        c->host = v;
    else if (!strcmp(name, "--admin-host"))
        c->admin_host = v;
    else if (!strcmp(name, "--port") || !strcmp(name, "--admin-port")) {
        if (parse_uint(v, 65535, &n))
            return usage_error("%s: expected a port 0-65535, got \"%s\"", name, v);
        *(!strcmp(name, "--port") ? &c->port : &c->admin_port) = (int)n;
    } else if (!strcmp(name, "--mode")) {
        if (tch_cassette_mode_parse(v, &c->mode, &err))
            return usage_error("%s: %s", name, err.msg);
    } else if (!strcmp(name, "--upstream") || !strcmp(name, "--advertise-to")) {
        if (tch_host_port_check(v, &err))
            return usage_error("%s: %s", name, err.msg);
        mock_strv_push(!strcmp(name, "--upstream") ? &c->upstreams : &c->advertise_to, v);
    } else if (!strcmp(name, "--advertise-service"))
        mock_strv_push(&c->advertise_services, v);
    else if (!strcmp(name, "--record-to"))
        c->record_to = v;
    else if (!strcmp(name, "--match")) {
        static const char *const known[] = {"serviceName", "endpoint", "headers", "body",
                                            "argScheme", "transportHeaders"};
        size_t before = c->matchers.n;
        if (push_list(&c->matchers, v) != 0)
            return usage_error("out of memory reading %s", name);
        if (c->matchers.n == before)
            return usage_error("%s: name at least one matcher (serviceName endpoint headers "
                               "body argScheme transportHeaders)", name);
        for (size_t i = before; i < c->matchers.n; i++) {
            size_t k = 0;
            while (k < sizeof known / sizeof known[0] && strcmp(c->matchers.v[i], known[k]))
                k++;
            /* a request to the mock carries the mock's address, never the
             * recorded service's: hostPort could match nothing */
            if (!strcmp(c->matchers.v[i], "hostPort"))
                return usage_error("%s: hostPort cannot match here: callers reach the mock, not "
                                   "the host:port a cassette recorded (the in-process VCR "
                                   "matches it)", name);
            if (k == sizeof known / sizeof known[0]) {
                return usage_error("%s: unknown matcher \"%s\" (serviceName endpoint headers body "
                                   "argScheme transportHeaders)", name, c->matchers.v[i]);
            }
        }
    }
    else if (!strcmp(name, "--watch-interval")) {
        if (parse_uint(v, 3600000, &n) || n == 0)
            return usage_error("%s: expected milliseconds, 1 to 3600000, got \"%s\"", name, v);
        c->watch_ms = (uint32_t)n;
    } else if (!strcmp(name, "--journal-size")) {
        if (parse_uint(v, 10000000, &n) || n == 0)
            return usage_error("%s: expected a number of requests, 1 to 10000000, got \"%s\"", name, v);
        c->journal_size = n;
    } else if (!strcmp(name, "--grace")) {
        if (parse_uint(v, 600000, &n))
            return usage_error("%s: expected milliseconds, 0 to 600000, got \"%s\"", name, v);
        c->grace_ms = (uint32_t)n;
    }
    return 0;
}

/* Returns 0, 2 (usage error, already reported) or -1 (--help printed). */
static int parse_args(int argc, char **argv, mock_config *c, mock_strv *inputs) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !strcmp(a, "-")) {
            mock_strv_push(inputs, a);
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(USAGE, stdout);
            return -1;
        }
        if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            c->verbose = 1;
            continue;
        }
        if (!strcmp(a, "--allow-repeats")) {
            c->allow_repeats = 1;
            continue;
        }
        if (!strcmp(a, "--no-watch")) {
            c->watch = 0;
            continue;
        }
        char name[64];
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        snprintf(name, sizeof name, "%.*s", (int)(nlen < 63 ? nlen : 63), a);
        if (!takes_value(name))
            return usage_error("unknown option %s", a);
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v)
            return usage_error("%s needs a value", a);
        int rc = apply_option(c, name, v);
        if (rc)
            return rc;
    }
    if (inputs->n == 0 && !c->record_to)
        return usage_error("no cassette given (CASSETTE|DIR ..., or --record-to PATH)");
    if (c->mode != TCH_CASSETTE_NONE && c->upstreams.n == 0)
        return usage_error("--mode %s records and needs --upstream HOST:PORT",
                           tch_cassette_mode_name(c->mode));
    return 0;
}

static void config_defaults(mock_config *c) {
    memset(c, 0, sizeof *c);
    c->host = "127.0.0.1";
    c->admin_host = "127.0.0.1";
    c->admin_port = -1;
    c->mode = TCH_CASSETTE_NONE;
    c->watch = 1;
    c->watch_ms = 500;
    c->journal_size = 10000;
    c->grace_ms = 2000;
}

static void config_free(mock_config *c) {
    mock_strv_free(&c->upstreams);
    mock_strv_free(&c->advertise_to);
    mock_strv_free(&c->advertise_services);
    mock_strv_free(&c->matchers);
    mock_strv_free(&c->paths);
}

/* ---- start-up -------------------------------------------------------------------- */

/* Opens every cassette in order and marks the record target. A missing file
 * is an error unless it is the one that records (then it is created on the
 * first recording, as tch_cassette_open allows). */
static int load_cassettes(mock *m, tch_error *err) {
    mock_config *c = m->cfg;
    const char *target = c->record_to ? c->record_to : (c->paths.n ? c->paths.v[0] : NULL);
    int recording = c->mode != TCH_CASSETTE_NONE || c->upstreams.n;
    if (c->record_to && !mock_store_find(&m->store, c->record_to)) {
        int found = 0;
        for (size_t i = 0; i < c->paths.n; i++)
            found |= !strcmp(c->paths.v[i], c->record_to);
        if (!found && mock_strv_push(&c->paths, c->record_to))
            return tch_error_set(err, TCH_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < c->paths.n; i++) {
        const char *p = c->paths.v[i];
        int is_target = target && !strcmp(p, target);
        if (access(p, F_OK) != 0 && !(is_target && recording))
            return tch_error_set(err, TCH_ENOTFOUND, "%s: %s", p, strerror(errno));
        mock_cassette *mc;
        int rc = mock_store_add(m, p, &mc, err);
        if (rc == TCH_ESTATE) { /* the same file twice: a dir and a file in it, */
            mc->record_target |= is_target; /* or --record-to spelled otherwise */
            continue;
        }
        if (rc)
            return rc;
        mc->record_target = is_target;
    }
    return 0;
}

static int start_channel(mock *m, tch_error *err) {
    m->ch = tch_channel_new(m->base, "tchannel-mock", NULL);
    if (!m->ch)
        return tch_error_set(err, TCH_ENOMEM, "cannot create the channel");
    tch_channel_set_fallback(m->ch, mock_serve_handler, m);
    char hp[300];
    snprintf(hp, sizeof hp, "%s:%d", m->cfg->host, m->cfg->port);
    int rc = tch_channel_listen(m->ch, hp, err);
    return rc ? tch_error_wrap(err, "listen on %s", hp) : 0;
}

/* ---- shutdown ------------------------------------------------------------------------ */

/* Bounds how long answers already given may take to reach their sockets. */
#define MOCK_DRAIN_MS 1000

static void channel_closed(tch_channel *ch, void *ud) {
    (void)ch;
    mock *m = ud;
    event_base_loopbreak(m->base);
}

static void finish(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    mock *m = arg;
    if (m->finishing) /* aborting recordings below may ask for it again */
        return;
    m->finishing = 1;
    if (m->n_recordings)
        mock_log("shutdown: aborting %zu recordings still in flight", m->n_recordings);
    mock_record_shutdown(m); /* aborts what is left; callers get an error frame */
    mock_serve_flush_delayed(m);
    if (mock_store_save_all(m) == 0)
        mock_log("shutdown: cassettes saved");
    else
        m->lost_recordings = 1; /* each failure was logged; the exit status says so too */
    /* Everything is on disk; the graceful close writes the answers already
     * given to their sockets, then leaves the loop. */
    if (tch_channel_close(m->ch, MOCK_DRAIN_MS, channel_closed, m) != 0)
        event_base_loopbreak(m->base);
}

/* Stops taking calls, waits (bounded by --grace) for recordings in flight,
 * then finish() saves and leaves the loop. Safe to call repeatedly. */
void mock_begin_shutdown(mock *m) {
    if (!m->grace_timer)
        return;
    if (!m->shutting_down) {
        m->shutting_down = 1;
        if (m->n_recordings) {
            struct timeval tv = {m->cfg->grace_ms / 1000, (m->cfg->grace_ms % 1000) * 1000};
            evtimer_add(m->grace_timer, &tv);
            return;
        }
    }
    if (m->n_recordings == 0) /* from the loop, never inside a call callback */
        event_active(m->grace_timer, EV_TIMEOUT, 0);
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    (void)what;
    mock *m = arg;
    mock_log("%s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    if (m->shutting_down) /* a second signal: do not wait any longer */
        event_active(m->grace_timer, EV_TIMEOUT, 0);
    else
        mock_begin_shutdown(m);
}

static int start_signals(mock *m) {
    /* a client that vanishes must not kill us on write */
    signal(SIGPIPE, SIG_IGN);
    m->grace_timer = evtimer_new(m->base, finish, m);
    m->sig_int = evsignal_new(m->base, SIGINT, on_signal, m);
    m->sig_term = evsignal_new(m->base, SIGTERM, on_signal, m);
    if (!m->grace_timer || !m->sig_int || !m->sig_term || evsignal_add(m->sig_int, NULL) ||
        evsignal_add(m->sig_term, NULL))
        return TCH_ENOMEM;
    return 0;
}

static void mock_free_all(mock *m) {
    mock_hyperbahn_free(m);
    mock_admin_free(m);
    mock_record_shutdown(m);
    mock_serve_flush_delayed(m);
    if (m->ch)
        tch_channel_free(m->ch);
    mock_store_free(&m->store);
    mock_journal_free(&m->journal);
    struct event *evs[] = {m->watch_timer, m->sig_int, m->sig_term, m->grace_timer};
    for (size_t i = 0; i < sizeof evs / sizeof *evs; i++)
        if (evs[i])
            event_free(evs[i]);
}

static int start(mock *m, tch_error *err) {
    int rc = mock_journal_init(&m->journal, m->cfg->journal_size);
    if (rc)
        return tch_error_set(err, rc, "out of memory");
    if ((rc = load_cassettes(m, err)) || (rc = start_channel(m, err)) ||
        (rc = mock_record_init(m, err)) || (rc = mock_admin_start(m, err)))
        return rc;
    if ((rc = mock_watch_start(m)) || (rc = start_signals(m)))
        return tch_error_set(err, rc, "cannot start timers");
    printf("listening %s\n", tch_channel_host_port(m->ch));
    if (m->http)
        printf("admin %s\n", m->admin_host_port);
    fflush(stdout);
    /* after the listening line: advertising needs us listening, and a slow
     * router must not delay start-up */
    return mock_hyperbahn_init(m, err);
}

int main(int argc, char **argv) {
    mock_config cfg;
    config_defaults(&cfg);
    mock_strv inputs = {0};
    int rc = parse_args(argc, argv, &cfg, &inputs);
    if (rc) {
        mock_strv_free(&inputs);
        config_free(&cfg);
        return rc < 0 ? 0 : rc;
    }
    tch_error err = {0};
    for (size_t i = 0; i < inputs.n && !rc; i++)
        rc = mock_expand_path(inputs.v[i], &cfg.paths, &err);
    mock_strv_free(&inputs);
    mock m = {0};
    m.cfg = &cfg;
    m.mode = cfg.mode;
    m.started_ms = mock_now_ms();
    m.base = event_base_new();
    if (!rc && !m.base)
        rc = tch_error_set(&err, TCH_ENOMEM, "event_base_new failed");
    if (!rc)
        rc = start(&m, &err);
    if (rc)
        fprintf(stderr, "tchannel-mock: %s\n", err.msg);
    else
        event_base_dispatch(m.base);
    int lost = m.lost_recordings;
    if (lost)
        fprintf(stderr, "tchannel-mock: recordings could not be saved (see the log above)\n");
    mock_free_all(&m);
    if (m.base)
        event_base_free(m.base);
    config_free(&cfg);
    return rc || lost ? 1 : 0;
}
