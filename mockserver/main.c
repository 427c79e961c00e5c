/* tchannel-mock: serves cassettes over TChannel (see docs/mockserver.md).
 *
 * This file parses the command line into a mock_config, builds the `mock`
 * context in order (cassettes, channel, upstream, admin API, watcher,
 * signals), prints `listening HOST:PORT` (and `admin HOST:PORT`), runs the
 * loop, and on SIGINT/SIGTERM (or the end of stdin, with --exit-on-stdin-eof)
 * shuts down so that every recording is on disk before exit 0. Exit 2: bad command line; 1: cannot start (e.g. a corrupt
 * cassette, reported as file:line:column). */
#include "mock.h"

#include <event2/event.h>

#include <tchannel/redact.h>
#include <tchannel/version.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* One row per option: getopt_long's table and the --help text both come
 * from it. To add an option: a row here (in the order --help shows), a
 * branch in apply_option, and a line in docs/mockserver.md and the man page. */
typedef struct opt_row {
    const char *name; /* long name, without "--" */
    int short_name;   /* 0: none */
    const char *arg;  /* metavariable; NULL for a flag */
    const char *help; /* '\n' starts an indented line */
} opt_row;

static const opt_row OPTIONS[] = {
    {"host", 0, "HOST", "listen address: a name, IPv4 or IPv6 (default 127.0.0.1)"},
    {"port", 0, "PORT", "listen port (default 0: ephemeral)"},
    {"mode", 0, "MODE", "once|new_episodes|none|all (default none)"},
    {"upstream", 0, "[SERVICE=]HOST:PORT", "real service for record-through; with SERVICE=,\n"
                                           "an instance of that service to relay to\n"
                                           "(repeatable)"},
    {"upstream-router", 0, "HOST:PORT", "a Hyperbahn router that relayed calls of services\n"
                                        "with no instance go to (repeatable)"},
    {"relay", 0, NULL, "in mode none, relay a miss to a live instance of its service"},
    {"record-to", 0, "PATH", "cassette that records (default: the first given); a folder\n"
                             "(or PATH/) records each service into PATH/SERVICE.yaml"},
    {"allow-repeats", 0, NULL, "replay the last match again once all were played"},
    {"match", 0, "M1,M2,...", "matchers (serviceName endpoint headers body argScheme\n"
                              "transportHeaders; default the first five)"},
    {"thrift", 0, "FILE|DIR", "Thrift IDL (a file, or a folder of SERVICE.thrift files, as\n"
                              "tcurl -t) to show a thrift miss's differing fields"},
    {"no-watch", 0, NULL, "do not reload cassettes that change on disk"},
    {"watch-interval", 0, "MS", "poll period for changes (default 500)"},
    {"journal-size", 0, "N", "requests kept in the journal (default 10000)"},
    {"max-stubs", 0, "N", "run-time stubs (POST /stubs) kept at once; one more is\n"
                          "refused with 409 (default 10000)"},
    {"max-advertised-services", 0, "N", "services advertised to us at once (default 1024)"},
    {"max-advertised-instances", 0, "N", "service instances advertised to us at once\n"
                                         "(default 4096)"},
    {"max-ads-per-peer", 0, "N", "services one host:port may advertise (default 256)"},
    {"journal-bytes", 0, "N", "bytes the journal may hold, suffix K, M or G allowed\n"
                              "(default 64M); the oldest entries make room"},
    {"verify-on-exit", 0, NULL, "at shutdown, exit 3 when a required interaction was never\n"
                                "called or a request went unmatched (as GET /verify)"},
    {"redact-header", 0, "NAME", "record application header NAME as <redacted> (repeatable)"},
    {"redact-transport-header", 0, "NAME", "record transport header NAME as <redacted>\n"
                                           "(repeatable)"},
    {"redact-json-path", 0, "PATH", "record the values at JSONPath PATH ($.a.b, $.a[0], $.a[*])\n"
                                    "in json bodies as <redacted> (repeatable)"},
    {"redact-thrift-field", 0, "NAME", "record thrift fields NAME (at any depth, through\n"
                                       "--thrift) as <redacted> (repeatable)"},
    {"grace", 0, "MS", "on SIGTERM, wait this long for recordings (default 2000)"},
    {"record-failure", 0, "HOW", "a caller whose recording could not be saved gets an error\n"
                                 "saying so (error, the default) or the upstream's answer\n"
                                 "(answer)"},
    {"advertise-to", 0, "HOST:PORT", "advertise the cassettes' services to a Hyperbahn router\n"
                                     "(repeatable)"},
    {"advertise-service", 0, "NAME", "service to advertise (repeatable; default: all served)"},
    {"admin-port", 0, "PORT", "HTTP admin API (0: ephemeral; default: off)"},
    {"admin-host", 0, "HOST", "admin API address (default 127.0.0.1)"},
    {"admin-socket", 0, "PATH", "serve the admin API on a Unix socket (mode 0600) instead"},
    {"admin-token-file", 0, "FILE", "admin API clients must send Authorization: Bearer TOKEN,\n"
                                    "TOKEN being the file's first line"},
    {"cassette-root", 0, "DIR", "a folder the admin API may load from and record into, besides\n"
                                "the cassettes' own folders (repeatable)"},
    {"admin-timeout", 0, "MS", "an admin request must arrive whole within this (default 10000)"},
    {"admin-max-connections", 0, "N", "admin connections open at once; more are closed\n"
                                      "(default 64)"},
    {"idle-timeout", 0, "MS", "close a TChannel connection idle this long (0: never;\n"
                              "default 300000)"},
    {"frame-timeout", 0, "MS", "a frame begun must be whole within this, or the connection\n"
                               "is closed (0: no bound; default 10000)"},
    {"max-connections", 0, "N", "TChannel connections open at once; more are refused\n"
                                "(0: no limit; default 1024)"},
    {"memory-budget", 0, "MIB", "bytes held for callers, all connections together:\n"
                                "requests arriving or being served (until answered)\n"
                                "and answers queued for writing (delayed ones too);\n"
                                "past it: Busy. The copies kept of delayed answers\n"
                                "are held to it apart (default 256)"},
    {"connection-budget", 0, "MIB", "bytes of requests still arriving on one connection\n"
                                    "(not answers); past it: Busy (default 128)"},
    {"trace-to", 0, "URL", "post our server spans of traced requests to a Zipkin\n"
                           "collector (http://HOST:PORT[/PATH], default path\n"
                           "/api/v2/spans)"},
    {"trace-file", 0, "PATH", "append those spans to PATH, one Zipkin v2 JSON per line"},
    {"exit-on-stdin-eof", 0, NULL, "shut down as on SIGTERM when stdin is closed"},
    {"verbose", 'v', NULL, "one log line per request"},
    {"help", 'h', NULL, "print this text and exit"},
    {"version", 0, NULL, "print the version and exit"},
};
#define N_OPTIONS (sizeof OPTIONS / sizeof OPTIONS[0])
#define OPT_ID_BASE 256 /* getopt_long's value for OPTIONS[i] is this + i */

static void print_usage(FILE *out) {
    fputs("usage: tchannel-mock [options] CASSETTE|DIR ...\n", out);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const opt_row *o = &OPTIONS[i];
        char head[64];
        snprintf(head, sizeof head, "%s%c%s--%s%s%s", o->short_name ? "-" : "",
                 o->short_name ? o->short_name : ' ', o->short_name ? ", " : " ", o->name,
                 o->arg ? " " : "", o->arg ? o->arg : "");
        fprintf(out, "  %-26s ", o->short_name ? head : head + 2);
        for (const char *h = o->help; *h; h++) {
            fputc(*h, out);
            if (*h == '\n')
                fprintf(out, "  %-26s ", "");
        }
        fputc('\n', out);
    }
}

/* One line naming the problem; the usage text is one --help away. */
static int usage_error(const char *fmt, ...) TCH_PRINTF(1, 2);
static int usage_error(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "tchannel-mock: %s; try 'tchannel-mock --help'\n", msg);
    return 2;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out) {
    char *end;
    errno = 0;
    /* strtoul alone would take leading blanks and a sign */
    if (!s || *s < '0' || *s > '9')
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

/* The syntax of HOST:PORT or [IPV6]:PORT; whether HOST resolves is the
 * library's business when it connects. NULL when fine, else why not. */
static const char *host_port_problem(const char *v) {
    const char *colon;
    if (v[0] == '[') {
        const char *close = strchr(v, ']');
        if (!close || close == v + 1)
            return "an IPv6 address goes in brackets: [ADDR]:PORT";
        if (close[1] != ':')
            return "expected :PORT after the ']'";
        colon = close + 1;
    } else {
        colon = strrchr(v, ':');
        if (!colon)
            return "expected HOST:PORT";
        if (colon == v)
            return "the host is empty";
        if (memchr(v, ':', (size_t)(colon - v)))
            return "an IPv6 address goes in brackets: [ADDR]:PORT";
    }
    unsigned long port;
    if (parse_uint(colon + 1, 65535, &port) || port == 0)
        return "the port must be a number 1-65535";
    return NULL;
}

static int check_matchers(mock_config *c, const char *name, size_t before) {
    static const char *const known[] = {"serviceName", "endpoint", "headers", "body",
                                        "argScheme", "transportHeaders"};
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
        if (k == sizeof known / sizeof known[0])
            return usage_error("%s: unknown matcher \"%s\" (serviceName endpoint headers body "
                               "argScheme transportHeaders)", name, c->matchers.v[i]);
    }
    return 0;
}

/* A number option: 0, or the usage error already reported. */
static int number(const char *name, const char *v, unsigned long min, unsigned long max,
                  const char *what, unsigned long *out) {
    if (parse_uint(v, max, out) || *out < min)
        return usage_error("%s: expected %s, %lu to %lu, got \"%s\"", name, what, min, max, v);
    return 0;
}

static int redact_option(mock_config *c, const char *name, const char *v) {
    static const struct {
        const char *flag;
        tch_redact_kind kind;
    } kinds[] = {{"--redact-header", TCH_REDACT_HEADER},
                 {"--redact-transport-header", TCH_REDACT_TRANSPORT_HEADER},
                 {"--redact-json-path", TCH_REDACT_JSON_PATH},
                 {"--redact-thrift-field", TCH_REDACT_THRIFT_FIELD}};
    tch_error err;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (!strcmp(name, kinds[i].flag))
            return tch_cassette_redaction_add(c->redaction, kinds[i].kind, v, &err)
                       ? usage_error("%s: %s", name, err.msg)
                       : 0;
    return usage_error("unknown option %s", name);
}

/* A byte count with an optional K, M or G (powers of 1024). */
static int journal_bytes(mock_config *c, const char *name, const char *v) {
    char *end;
    errno = 0;
    unsigned long long n = *v && *v != '-' ? strtoull(v, &end, 10) : 0;
    int shift = !*v || *v == '-' ? -1 : !*end ? 0 : !strcmp(end, "K") || !strcmp(end, "k") ? 10
                : !strcmp(end, "M") || !strcmp(end, "m") ? 20
                : !strcmp(end, "G") || !strcmp(end, "g") ? 30 : -1;
    if (shift < 0 || errno || n == 0 || n > (1ull << 40) >> shift || (n << shift) < 4096)
        return usage_error("%s: expected a byte count from 4096 to 1T (suffix K, M or G "
                           "allowed), got \"%s\"", name, v);
    c->journal_bytes = (size_t)(n << shift);
    return 0;
}

/* name is "--long-name"; v is NULL for a flag. Returns 0, 2 (usage error
 * reported) or -1 (--help or --version printed). */
static int apply_option(mock_config *c, const char *name, const char *v) {
    unsigned long n;
    tch_error err;
    int rc = 0;
    if (!strcmp(name, "--help")) {
        print_usage(stdout);
        return -1;
    } else if (!strcmp(name, "--version")) {
        printf("tchannel-mock %s\n", TCH_VERSION_STRING);
        return -1;
    } else if (!strcmp(name, "--verbose")) {
        c->verbose = 1;
    } else if (!strcmp(name, "--allow-repeats")) {
        c->allow_repeats = 1;
    } else if (!strcmp(name, "--no-watch")) {
        c->watch = 0;
    } else if (!strcmp(name, "--relay")) {
        c->relay = 1;
    } else if (!strcmp(name, "--upstream") && strchr(v, '=')) {
        const char *eq = strchr(v, '='), *why = host_port_problem(eq + 1);
        if (eq == v || (size_t)(eq - v) > 255)
            return usage_error("%s: expected SERVICE=HOST:PORT, got \"%s\"", name, v);
        if (why)
            return usage_error("%s: invalid host:port \"%s\": %s", name, eq + 1, why);
        rc = mock_strv_push(&c->service_upstreams, v);
    } else if (!strcmp(name, "--upstream-router")) {
        const char *why = host_port_problem(v);
        if (why)
            return usage_error("%s: invalid host:port \"%s\": %s", name, v, why);
        rc = mock_strv_push(&c->upstream_routers, v);
    } else if (!strcmp(name, "--exit-on-stdin-eof")) {
        c->exit_on_stdin_eof = 1;
    } else if (!strcmp(name, "--verify-on-exit")) {
        c->verify_on_exit = 1;
    } else if (!strncmp(name, "--redact-", 9)) {
        return redact_option(c, name, v);
    } else if (!strcmp(name, "--journal-bytes")) {
        return journal_bytes(c, name, v);
    } else if (!strcmp(name, "--host") || !strcmp(name, "--admin-host")) {
        if (!*v || strpbrk(v, " \t/"))
            return usage_error("%s: expected a host name or address, got \"%s\"", name, v);
        *(!strcmp(name, "--host") ? &c->host : &c->admin_host) = v;
    } else if (!strcmp(name, "--port") || !strcmp(name, "--admin-port")) {
        if (parse_uint(v, 65535, &n))
            return usage_error("%s: expected a port 0-65535, got \"%s\"", name, v);
        *(!strcmp(name, "--port") ? &c->port : &c->admin_port) = (int)n;
    } else if (!strcmp(name, "--mode")) {
        if (tch_cassette_mode_parse(v, &c->mode, &err))
            return usage_error("%s: %s", name, err.msg);
    } else if (!strcmp(name, "--upstream") || !strcmp(name, "--advertise-to")) {
        const char *why = host_port_problem(v);
        if (why)
            return usage_error("%s: invalid host:port \"%s\": %s", name, v, why);
        rc = mock_strv_push(!strcmp(name, "--upstream") ? &c->upstreams : &c->advertise_to, v);
    } else if (!strcmp(name, "--advertise-service")) {
        rc = mock_strv_push(&c->advertise_services, v);
    } else if (!strcmp(name, "--cassette-root")) {
        rc = mock_strv_push(&c->cassette_roots, v);
    } else if (!strcmp(name, "--record-to")) {
        c->record_to = v;
    } else if (!strcmp(name, "--thrift")) {
        if (!*v)
            return usage_error("%s: expected an IDL file or folder", name);
        c->thrift_path = v;
    } else if (!strcmp(name, "--admin-socket")) {
        if (!*v)
            return usage_error("%s: expected a path", name);
        c->admin_socket = v;
    } else if (!strcmp(name, "--trace-to")) {
        if (strncmp(v, "http://", 7) != 0 || !v[7])
            return usage_error("%s: expected an http:// URL, got \"%s\"", name, v);
        c->trace_to = v;
    } else if (!strcmp(name, "--trace-file")) {
        if (!*v)
            return usage_error("%s: expected a path", name);
        c->trace_file = v;
    } else if (!strcmp(name, "--admin-token-file")) {
        c->admin_token_file = v;
    } else if (!strcmp(name, "--match")) {
        size_t before = c->matchers.n;
        if (push_list(&c->matchers, v) != 0)
            return usage_error("out of memory reading %s", name);
        return check_matchers(c, name, before);
    } else if (!strcmp(name, "--watch-interval")) {
        if (number(name, v, 1, 3600000, "milliseconds", &n))
            return 2;
        c->watch_ms = (uint32_t)n;
    } else if (!strcmp(name, "--journal-size")) {
        if (number(name, v, 1, 10000000, "a number of requests", &n))
            return 2;
        c->journal_size = n;
    } else if (!strcmp(name, "--max-stubs")) {
        if (number(name, v, 1, 10000000, "a number of stubs", &n))
            return 2;
        c->max_stubs = n;
    } else if (!strcmp(name, "--max-advertised-services") ||
               !strcmp(name, "--max-advertised-instances") || !strcmp(name, "--max-ads-per-peer")) {
        if (number(name, v, 1, 1000000, "a number of ads", &n))
            return 2;
        *(!strcmp(name, "--max-advertised-services")    ? &c->max_ad_services
          : !strcmp(name, "--max-advertised-instances") ? &c->max_ad_instances
                                                        : &c->max_ads_per_peer) = n;
    } else if (!strcmp(name, "--grace")) {
        if (number(name, v, 0, 600000, "milliseconds", &n))
            return 2;
        c->grace_ms = (uint32_t)n;
    } else if (!strcmp(name, "--record-failure")) {
        if (strcmp(v, "error") && strcmp(v, "answer"))
            return usage_error("%s: expected error or answer, got \"%s\"", name, v);
        c->record_failure_answer = !strcmp(v, "answer");
    } else if (!strcmp(name, "--admin-timeout")) {
        if (number(name, v, 1, 3600000, "milliseconds", &n))
            return 2;
        c->admin_timeout_ms = (uint32_t)n;
    } else if (!strcmp(name, "--idle-timeout") || !strcmp(name, "--frame-timeout")) {
        if (number(name, v, 0, 86400000, "milliseconds (0: never)", &n))
            return 2;
        *(!strcmp(name, "--idle-timeout") ? &c->limits.idle_timeout_ms
                                          : &c->limits.frame_timeout_ms) =
            n ? (uint32_t)n : TCH_IDLE_NEVER;
    } else if (!strcmp(name, "--max-connections")) {
        if (number(name, v, 0, 1000000, "a number of connections (0: no limit)", &n))
            return 2;
        c->limits.max_connections = n ? n : TCH_NO_LIMIT;
    } else if (!strcmp(name, "--memory-budget") || !strcmp(name, "--connection-budget")) {
        if (number(name, v, 1, 1u << 20, "MiB", &n))
            return 2;
        *(!strcmp(name, "--memory-budget") ? &c->limits.max_request_bytes
                                           : &c->limits.max_partial_bytes) = (size_t)n << 20;
    } else if (!strcmp(name, "--admin-max-connections")) {
        if (number(name, v, 1, 100000, "a number of connections", &n))
            return 2;
        c->admin_max_conns = n;
    }
    return rc ? usage_error("out of memory reading %s", name) : 0;
}

/* What getopt_long refused, as one line: argv[optind - 1] is the word. */
static int option_error(int ch, int argc, char **argv) {
    const char *word = optind - 1 < argc ? argv[optind - 1] : "?";
    if (ch == ':')
        return usage_error("%s needs a value", word);
    if (optopt && optopt < OPT_ID_BASE)
        return usage_error("unknown option -%c", optopt);
    if (!strncmp(word, "--", 2) && !strchr(word, '=')) {
        /* an unambiguous prefix would have been taken: say which it may be */
        for (size_t i = 0; i < N_OPTIONS; i++)
            if (!strncmp(OPTIONS[i].name, word + 2, strlen(word + 2)))
                return usage_error("ambiguous option %s", word);
    }
    if (optopt >= OPT_ID_BASE && strchr(word, '='))
        return usage_error("%.*s takes no value", (int)(strchr(word, '=') - word), word);
    return usage_error("unknown option %s", word);
}

/* Returns 0, 2 (usage error, already reported) or -1 (--help or --version
 * printed). */
static int parse_args(int argc, char **argv, mock_config *c) {
    struct option longs[N_OPTIONS + 1];
    char shorts[2 * N_OPTIONS + 2] = ":";
    size_t ns = 1;
    for (size_t i = 0; i < N_OPTIONS; i++) {
        longs[i] = (struct option){OPTIONS[i].name, OPTIONS[i].arg ? required_argument : no_argument,
                                   NULL, OPT_ID_BASE + (int)i};
        if (OPTIONS[i].short_name) {
            shorts[ns++] = (char)OPTIONS[i].short_name;
            if (OPTIONS[i].arg)
                shorts[ns++] = ':';
        }
    }
    shorts[ns] = 0;
    longs[N_OPTIONS] = (struct option){0};
    opterr = 0; /* our own one-line messages */
    for (;;) {
        optopt = 0;
        int ch = getopt_long(argc, argv, shorts, longs, NULL);
        if (ch == -1)
            break;
        size_t i = 0;
        if (ch >= OPT_ID_BASE && ch < OPT_ID_BASE + (int)N_OPTIONS)
            i = (size_t)(ch - OPT_ID_BASE);
        else
            while (i < N_OPTIONS && OPTIONS[i].short_name != ch)
                i++;
        if (ch == '?' || ch == ':' || i == N_OPTIONS)
            return option_error(ch, argc, argv);
        char name[64];
        snprintf(name, sizeof name, "--%s", OPTIONS[i].name);
        int rc = apply_option(c, name, optarg);
        if (rc)
            return rc;
    }
    for (int i = optind; i < argc; i++)
        if (mock_strv_push(&c->inputs, argv[i]))
            return usage_error("out of memory");
    /* With an admin API, stubs added at run time are enough: no file needed. */
    if (c->inputs.n == 0 && !c->record_to && c->admin_port < 0 && !c->admin_socket)
        return usage_error("no cassette given (CASSETTE|DIR ..., --record-to PATH, or an "
                           "admin API to add stubs to: --admin-port/--admin-socket)");
    if (c->mode != TCH_CASSETTE_NONE && c->upstreams.n == 0 && c->service_upstreams.n == 0 &&
        c->upstream_routers.n == 0 && !c->relay)
        return usage_error("--mode %s records and needs --upstream [SERVICE=]HOST:PORT, "
                           "--upstream-router, or --relay (instances advertise to us)",
                           tch_cassette_mode_name(c->mode));
    if (tch_cassette_redaction_count(c->redaction, TCH_REDACT_THRIFT_FIELD) && !c->thrift_path)
        return usage_error("--redact-thrift-field needs --thrift FILE|DIR: thrift bodies are "
                           "read through the IDL");
    if (c->admin_socket && c->admin_port >= 0)
        return usage_error("--admin-socket and --admin-port: give one of them");
    if ((c->admin_token_file || c->cassette_roots.n) && !c->admin_socket && c->admin_port < 0)
        return usage_error("%s applies to the admin API: give --admin-port or --admin-socket",
                           c->admin_token_file ? "--admin-token-file" : "--cassette-root");
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
    c->max_stubs = 10000;
    c->max_ad_services = 1024;
    c->max_ad_instances = 4096;
    c->max_ads_per_peer = 256;
    c->journal_bytes = (size_t)64 << 20;
    c->grace_ms = 2000;
    c->admin_timeout_ms = 10000;
    c->admin_max_conns = 64;
}

static void config_free(mock_config *c) {
    mock_strv_free(&c->upstreams);
    mock_strv_free(&c->service_upstreams);
    mock_strv_free(&c->upstream_routers);
    mock_strv_free(&c->advertise_to);
    mock_strv_free(&c->advertise_services);
    mock_strv_free(&c->matchers);
    mock_strv_free(&c->paths);
    mock_strv_free(&c->inputs);
    mock_strv_free(&c->cassette_roots);
    tch_cassette_thrift_free(c->thrift);
    tch_cassette_redaction_free(c->redaction);
}

/* ---- start-up -------------------------------------------------------------------- */

/* Opens every cassette in order and marks the record target. A missing file
 * is an error unless it is the one that records (then it is created on the
 * first recording, as tch_cassette_open allows). */
static int load_cassettes(mock *m, tch_error *err) {
    mock_config *c = m->cfg;
    const char *target = c->record_to ? c->record_to : (c->paths.n ? c->paths.v[0] : NULL);
    int recording = c->mode != TCH_CASSETTE_NONE || c->upstreams.n;
    if (c->record_dir)
        target = NULL; /* relay.c picks each service's own cassette */
    if (c->record_to && !c->record_dir && !mock_store_find(&m->store, c->record_to)) {
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
        /* an empty cassette is valid, but serving nothing is seldom meant */
        if (access(p, F_OK) == 0 && tch_cassette_count(mc->c) == 0 &&
            !(is_target && tch_cassette_can_record(mc->c)))
            mock_log("warning: %s is empty (no interactions): nothing to serve from it", p);
    }
    return 0;
}

/* The cassettes on the command line, folders expanded; an empty folder is
 * not an error, but is said. */
static int expand_inputs(mock_config *c, tch_error *err) {
    struct stat st;
    size_t rl = c->record_to ? strlen(c->record_to) : 0;
    if (rl && (c->record_to[rl - 1] == '/' ||
               (stat(c->record_to, &st) == 0 && S_ISDIR(st.st_mode)))) {
        c->record_dir = c->record_to; /* its cassettes serve too */
        if (stat(c->record_to, &st) == 0 && mock_expand_path(c->record_to, &c->paths, err))
            return err->code;
    }
    for (size_t i = 0; i < c->inputs.n; i++) {
        size_t before = c->paths.n;
        int rc = mock_expand_path(c->inputs.v[i], &c->paths, err);
        if (rc)
            return rc;
        if (c->paths.n == before)
            mock_log("warning: folder %s holds no *.yaml or *.yml cassette: nothing to serve "
                     "from it", c->inputs.v[i]);
    }
    return 0;
}

/* The channel's limits say when they act (idle, frame timeout, the
 * connection cap, a budget), always: a refused caller is worth a line. */
static void log_limit(const char *line, void *ud) {
    static const char self[] = "tchannel-mock: "; /* the channel's name; mock_log says it */
    (void)ud;
    mock_log("%s", strncmp(line, self, sizeof self - 1) ? line : line + sizeof self - 1);
}

static int start_channel(mock *m, tch_error *err) {
    tch_channel_options o = m->cfg->limits;
    o.log = log_limit;
    int rc = tch_channel_new(m->base, "tchannel-mock", &o, &m->ch, err);
    if (rc)
        return rc;
    tch_channel_set_fallback(m->ch, mock_serve_handler, m);
    char hp[300];
    /* an IPv6 address needs its brackets to take a port */
    int bare_v6 = strchr(m->cfg->host, ':') && m->cfg->host[0] != '[';
    snprintf(hp, sizeof hp, bare_v6 ? "[%s]:%d" : "%s:%d", m->cfg->host, m->cfg->port);
    rc = tch_channel_listen(m->ch, hp, err);
    /* the library's message names the address already; say it once */
    return rc && !strstr(err->msg, hp) ? tch_error_wrap(err, "listen on %s", hp) : rc;
}

/* ---- shutdown ------------------------------------------------------------------------ */

/* Bounds how long answers already given may take to reach their sockets. */
#define MOCK_DRAIN_MS 1000

static void channel_closed(tch_channel *ch, void *ud) {
    (void)ch;
    mock *m = ud;
    event_base_loopbreak(m->base);
}

/* Saves what was recorded and says which files were written: a run that
 * recorded nothing writes nothing, and says nothing about saving. */
static void save_at_exit(mock *m) {
    size_t n = m->store.n;
    unsigned char *unsaved = calloc(n ? n : 1, 1);
    for (size_t i = 0; unsaved && i < n; i++)
        unsaved[i] = (unsigned char)tch_cassette_dirty(m->store.items[i]->c);
    if (mock_store_save_all(m) != 0)
        m->lost_recordings = 1; /* each failure was logged; the exit status says so too */
    for (size_t i = 0; unsaved && i < n; i++) {
        mock_cassette *mc = m->store.items[i];
        if (unsaved[i] && !tch_cassette_dirty(mc->c))
            mock_log("shutdown: saved %s (%zu interactions)", mc->path, tch_cassette_count(mc->c));
    }
    free(unsaved);
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
    save_at_exit(m);
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

/* --exit-on-stdin-eof: the parent holds our stdin open; when it dies or
 * closes the pipe, we shut down as on SIGTERM (recordings saved). Whatever
 * it writes is read and dropped. */
static void on_stdin(evutil_socket_t fd, short what, void *arg) {
    (void)what;
    mock *m = arg;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0 || (n < 0 && (errno == EINTR || errno == EAGAIN)))
        return;
    event_del(m->stdin_ev);
    mock_log("stdin closed: shutting down");
    if (m->shutting_down)
        event_active(m->grace_timer, EV_TIMEOUT, 0);
    else
        mock_begin_shutdown(m);
}

static void on_stdin_file(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    on_stdin(STDIN_FILENO, what, arg);
    mock *m = arg;
    if (!m->shutting_down) /* more to read: again on the next turn */
        event_active(m->stdin_ev, EV_TIMEOUT, 0);
}

static int start_stdin_watch(mock *m) {
    if (!m->cfg->exit_on_stdin_eof)
        return 0;
    struct stat st;
    /* a file or /dev/null cannot be polled (epoll refuses it) and never
     * blocks: read it to its end from the loop, once the mock is up */
    int plain = fstat(STDIN_FILENO, &st) == 0 &&
                (S_ISREG(st.st_mode) || (S_ISCHR(st.st_mode) && !isatty(STDIN_FILENO)));
    if (plain) {
        if (!(m->stdin_ev = event_new(m->base, -1, EV_PERSIST, on_stdin_file, m)))
            return TCH_ENOMEM;
        event_active(m->stdin_ev, EV_TIMEOUT, 0);
        return 0;
    }
    m->stdin_ev = event_new(m->base, STDIN_FILENO, EV_READ | EV_PERSIST, on_stdin, m);
    return m->stdin_ev && event_add(m->stdin_ev, NULL) == 0 ? 0 : TCH_EIO;
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
    mock_relay_free(m);
    mock_upstream_gate_free(m);
    mock_serve_flush_delayed(m);
    mock_trace_finish(m); /* the last spans out, before the channel goes */
    if (m->ch)
        tch_channel_free(m->ch);
    mock_store_free(&m->store);
    mock_journal_free(&m->journal);
    struct event *evs[] = {m->watch_timer, m->sig_int, m->sig_term, m->grace_timer, m->stdin_ev};
    for (size_t i = 0; i < sizeof evs / sizeof *evs; i++)
        if (evs[i])
            event_free(evs[i]);
}

static int start(mock *m, tch_error *err) {
    int rc = mock_journal_init(&m->journal, m->cfg->journal_size, m->cfg->journal_bytes);
    if (rc)
        return tch_error_set(err, rc, "out of memory");
    m->journal.thrift = m->cfg->thrift;
    m->journal.owner = m;
    tch_cassette_redaction_set_idl(m->cfg->redaction, m->cfg->thrift, NULL);
    if ((rc = load_cassettes(m, err)) || (rc = start_channel(m, err)) ||
        (rc = mock_journal_watch(&m->journal, m->ch, err)) || (rc = mock_trace_start(m, err)) ||
        (rc = mock_record_init(m, err)) || (rc = mock_relay_init(m, err)) ||
        (rc = mock_upstream_gate_start(m, err)) ||
        (rc = mock_admin_start(m, err)))
        return rc;
    if ((rc = mock_watch_start(m)) || (rc = start_signals(m)) || (rc = start_stdin_watch(m)))
        return tch_error_set(err, rc, "cannot start timers");
    printf("listening %s\n", tch_channel_host_port(m->ch));
    if (m->http)
        printf("admin %s\n", m->admin_host_port);
    fflush(stdout);
    /* after the listening line: advertising needs us listening, and a slow
     * router must not delay start-up */
    return mock_hyperbahn_init(m, err);
}

/* --verify-on-exit: GET /verify's check, said on stderr when it fails. */
static int verified_at_exit(mock *m) {
    json_t *r = mock_verify_report(m);
    int ok = json_is_true(json_object_get(r, "ok"));
    if (!ok) {
        json_t *nc = json_object_get(r, "notCalled");
        size_t i;
        json_t *it;
        fprintf(stderr, "tchannel-mock: verify failed: %zu required interaction%s never called, "
                "%" JSON_INTEGER_FORMAT " request%s unmatched\n", json_array_size(nc),
                json_array_size(nc) == 1 ? "" : "s",
                json_integer_value(json_object_get(r, "unmatched")),
                json_integer_value(json_object_get(r, "unmatched")) == 1 ? "" : "s");
        json_array_foreach(nc, i, it)
            fprintf(stderr, "tchannel-mock:   not called: %s\n",
                    json_string_value(json_object_get(it, "describe")));
    }
    json_decref(r);
    return ok;
}

int main(int argc, char **argv) {
    mock_config cfg;
    config_defaults(&cfg);
    int rc = tch_cassette_redaction_new(&cfg.redaction, NULL) ? usage_error("out of memory")
                                                        : parse_args(argc, argv, &cfg);
    if (rc) {
        config_free(&cfg);
        return rc < 0 ? 0 : rc;
    }
    tch_error err = {0};
    rc = expand_inputs(&cfg, &err);
    if (!rc && cfg.thrift_path &&
        (rc = tch_cassette_thrift_load(cfg.thrift_path, &cfg.thrift, &err)))
        tch_error_wrap(&err, "--thrift"); /* the message names the file */
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
    int unverified = !rc && cfg.verify_on_exit && !verified_at_exit(&m);
    int lost = m.lost_recordings;
    if (lost)
        fprintf(stderr, "tchannel-mock: recordings could not be saved (see the log above)\n");
    mock_free_all(&m);
    if (m.base)
        event_base_free(m.base);
    config_free(&cfg);
    return rc || lost ? 1 : unverified ? 3 : 0;
}
