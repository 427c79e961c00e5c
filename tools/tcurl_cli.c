/* tcurl's command line: one getopt_long table with the flags of Uber's tcurl
 * (npm tcurl 4.x) and tchannel-python's tcurl.py where they overlap, plus
 * our own. Parsing only reads and checks; nothing here touches the network
 * or the file system. */
#include "tcurl.h"

#include <tchannel/version.h>

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Long-only options. */
enum {
    OPT_HEADERS = 256,
    OPT_NO_STRICT,
    OPT_TIMEOUT,
    OPT_SHARD_KEY,
    OPT_HEALTH,
    OPT_REQUESTS,
    OPT_RATE,
    OPT_DELAY,
    OPT_TIME,
    OPT_ROUTERS,
    OPT_TRANSPORT_HEADER,
    OPT_RETRY_LIMIT,
    OPT_RETRY_ON,
    OPT_CALLER,
    OPT_ROUTING_DELEGATE,
    OPT_HTTP,
};

/* '-': positionals come back in order as option 1, wherever they are and
 * whatever POSIXLY_CORRECT says; ':': a missing value returns ':', not '?'. */
static const char short_options[] = "-:p:P:H:rjJt:2:3:hv";

static const struct option long_options[] = {
    {"peer", required_argument, NULL, 'p'},
    {"peerlist", required_argument, NULL, 'P'},
    {"hostlist", required_argument, NULL, 'H'},
    {"routers", required_argument, NULL, OPT_ROUTERS},
    {"raw", no_argument, NULL, 'r'},
    {"json", no_argument, NULL, 'j'},
    {"thrift", required_argument, NULL, 't'},
    {"no-strict", no_argument, NULL, OPT_NO_STRICT},
    {"http", required_argument, NULL, OPT_HTTP},
    {"health", no_argument, NULL, OPT_HEALTH},
    {"headers", required_argument, NULL, OPT_HEADERS},
    {"arg2", required_argument, NULL, '2'},
    {"head", required_argument, NULL, '2'},
    {"arg3", required_argument, NULL, '3'},
    {"body", required_argument, NULL, '3'},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"sk", required_argument, NULL, OPT_SHARD_KEY},
    {"shard-key", required_argument, NULL, OPT_SHARD_KEY},
    {"shardKey", required_argument, NULL, OPT_SHARD_KEY},
    {"rd", required_argument, NULL, OPT_ROUTING_DELEGATE},
    {"routing-delegate", required_argument, NULL, OPT_ROUTING_DELEGATE},
    {"cn", required_argument, NULL, OPT_CALLER},
    {"caller", required_argument, NULL, OPT_CALLER},
    {"transport-header", required_argument, NULL, OPT_TRANSPORT_HEADER},
    {"retry-limit", required_argument, NULL, OPT_RETRY_LIMIT},
    {"retry-on", required_argument, NULL, OPT_RETRY_ON},
    {"requests", required_argument, NULL, OPT_REQUESTS},
    {"rate", required_argument, NULL, OPT_RATE},
    {"delay", required_argument, NULL, OPT_DELAY},
    {"time", required_argument, NULL, OPT_TIME},
    {"version", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void help(void) {
    fputs("usage: tcurl [options] SERVICE ENDPOINT [BODY]\n"
          "       tcurl [options] --health SERVICE\n"
          "Makes one TChannel call and prints the answer, or many calls (--rate) and a summary.\n"
          "\n"
          "Where the call goes (at least one):\n"
          "  -p, --peer HOST:PORT          a peer (repeatable); HOST is a name or an IP, [::1] for IPv6\n"
          "  -P, --peerlist FILE           a file with a JSON list of \"HOST:PORT\" peers (-H, --hostlist)\n"
          "  --routers HOST:PORT[,...]     Hyperbahn routers to route the call through\n"
          "Arg scheme (default --raw):\n"
          "  -r, --raw                     BODY is arg3 as bytes; the answer's arg3 is printed as is\n"
          "  -j, --json                    BODY and headers are JSON; the answer is printed pretty (-J)\n"
          "  -t, --thrift IDL              an IDL file, or a folder holding SERVICE.thrift; ENDPOINT\n"
          "                                is Service::method, BODY the arguments as JSON; prints\n"
          "                                {\"ok\":true,\"body\":...} or {\"ok\":false,\"typeName\":...,\"body\":...}\n"
          "  --no-strict                   accepted: fields without required/optional are always read\n"
          "  --health                      call Meta::health and print OK or NOT OK[: message]\n"
          "The request:\n"
          "  BODY, -3, --arg3, --body TEXT|@FILE\n"
          "                                arg3 (@FILE: a file's contents, @-: standard input);\n"
          "                                default: empty (raw), {} (json, thrift)\n"
          "  --headers JSON                application headers, a JSON object (json, thrift)\n"
          "  -2, --arg2, --head TEXT|@FILE arg2 bytes (raw); the headers as JSON (json, thrift)\n"
          "  --timeout MS                  the whole call's deadline, retries included (default 1000)\n"
          "  --sk, --shard-key KEY         the sk transport header\n"
          "  --rd, --routing-delegate SVC  the rd transport header\n"
          "  --cn, --caller NAME           the caller name, cn (default tcurl)\n"
          "  --transport-header KEY=VALUE  another transport header (repeatable)\n"
          "  --retry-limit N               retries after the first try (default 4; 0: none)\n"
          "  --retry-on c|t|ct|n           retry on connection errors, timeouts, both, never\n"
          "Load (--rate turns it on; a summary instead of the answers):\n"
          "  --rate N                      calls sent at once in each round\n"
          "  --delay MS                    pause after each round (default 100)\n"
          "  --requests N                  stop after N calls\n"
          "  --time MS                     stop starting rounds after MS (default 30000 without --requests)\n"
          "Other:\n"
          "  -v, --version                 print the version\n"
          "  -h, --help                    this text\n"
          "\n"
          "Exit: 0 ok, 1 application error, 2 usage or input error, 3 call failed\n"
          "(error frame, timeout, network), 4 answer does not decode, 5 internal.\n",
          stdout);
}

/* ---- messages --------------------------------------------------------------- */

static void say(const char *fmt, va_list ap, const char *tail) TCH_PRINTF(1, 0);
static void say(const char *fmt, va_list ap, const char *tail) {
    fputs("tcurl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(tail, stderr);
}

int tcurl_fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    say(fmt, ap, "\n");
    va_end(ap);
    return code;
}

int tcurl_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    say(fmt, ap, "; try 'tcurl --help'\n");
    va_end(ap);
    return EXIT_USAGE;
}

/* ---- values ------------------------------------------------------------------ */

static int parse_uint(const char *opt, const char *v, unsigned long long min,
                      unsigned long long max, unsigned long long *out) {
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (!*v || *end || *v == '-' || *v == '+' || errno || n < min || n > max)
        return tcurl_usage_error("%s: expected a whole number from %llu to %llu, got \"%s\"", opt,
                                 min, max, v);
    *out = n;
    return 0;
}

static int parse_retry_on(const char *v, int *out) {
    static const struct {
        const char *name;
        int value;
    } names[] = {
        {"c", TCH_RETRY_CONNECTION}, {"t", TCH_RETRY_TIMEOUT},
        {"ct", TCH_RETRY_CONNECTION_TIMEOUT}, {"tc", TCH_RETRY_CONNECTION_TIMEOUT},
        {"n", TCH_RETRY_NEVER},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(v, names[i].name) == 0) {
            *out = names[i].value;
            return 0;
        }
    }
    return tcurl_usage_error("--retry-on: expected c, t, ct or n, got \"%s\"", v);
}

static int push(const char **list, size_t *n, const char *opt, const char *v) {
    if (*n == TCURL_MAX_LIST)
        return tcurl_usage_error("%s: at most %d", opt, TCURL_MAX_LIST);
    list[(*n)++] = v;
    return 0;
}

/* --routers takes one HOST:PORT or a comma-separated list; the commas are
 * cut in place (argv strings are ours to change). */
static int push_routers(tcurl_cli *c, char *v) {
    char *save = NULL;
    for (char *tok = strtok_r(v, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int rc = push(c->routers, &c->nrouters, "--routers", tok);
        if (rc)
            return rc;
    }
    return c->nrouters ? 0 : tcurl_usage_error("--routers: expected HOST:PORT[,HOST:PORT...]");
}

static int push_transport_header(tcurl_cli *c, const char *v) {
    const char *eq = strchr(v, '=');
    if (!eq || eq == v)
        return tcurl_usage_error("--transport-header: expected KEY=VALUE, got \"%s\"", v);
    if (c->nth == TCURL_MAX_TRANSPORT_HEADERS)
        return tcurl_usage_error("--transport-header: at most %d", TCURL_MAX_TRANSPORT_HEADERS);
    if ((size_t)(eq - v) > 255 || strlen(eq + 1) > 255)
        return tcurl_usage_error("--transport-header %s: keys and values are at most 255 bytes", v);
    c->th[c->nth++] = (tch_kv){tch_slice_of(v, (size_t)(eq - v)), tch_slice_cstr(eq + 1)};
    return 0;
}

static int set_scheme(tcurl_cli *c, enum tcurl_scheme s, const char *opt) {
    if (c->scheme_given && c->scheme != s)
        return tcurl_usage_error("%s: only one of --raw, --json, --thrift", opt);
    c->scheme = s;
    c->scheme_given = 1;
    return 0;
}

/* -P, --peerlist, and the older -H, --hostlist. -H meant --headers in our
 * first tcurl; a JSON object there is that habit, so say what changed. */
static int set_peerlist(tcurl_cli *c, const char *opt, const char *v) {
    if (v[0] == '{')
        return tcurl_usage_error("%s takes a peer-list FILE (as in Uber's tcurl), not headers: use "
                                 "--headers", opt);
    if (c->peerlist)
        return tcurl_usage_error("%s: a peer list is given twice", opt);
    c->peerlist = v;
    return 0;
}

static int set_once(const char **slot, const char *opt, const char *v) {
    if (*slot)
        return tcurl_usage_error("%s: given twice", opt);
    *slot = v;
    return 0;
}

/* ---- the option table, applied ------------------------------------------------ */

/* The option as typed, for messages: "--peer" when getopt matched a long
 * option (longindex), else "-p". */
static const char *opt_name(int opt, int longindex, char *buf, size_t n) {
    if (longindex >= 0)
        snprintf(buf, n, "--%s", long_options[longindex].name);
    else
        snprintf(buf, n, "-%c", opt > 0 && opt < 256 ? opt : '?');
    return buf;
}

/* getopt said ':': the last argument wants a value. */
static int missing_value(char **argv) {
    const char *a = argv[optind - 1];
    if (strncmp(a, "--", 2) == 0)
        return tcurl_usage_error("%.*s: missing value", (int)strcspn(a, "="), a);
    return tcurl_usage_error("-%c: missing value", optopt);
}

static int apply_number(int opt, const char *name, const char *v, tcurl_cli *c) {
    unsigned long long n = 0;
    int rc;
    switch (opt) {
    case OPT_TIMEOUT:
        if ((rc = parse_uint(name, v, 1, UINT32_MAX, &n)) == 0)
            c->timeout_ms = (uint32_t)n;
        return rc;
    case OPT_RETRY_LIMIT:
        if ((rc = parse_uint(name, v, 0, 100, &n)) == 0) /* 0 on the command line: no retries */
            c->retry_limit = n == 0 ? TCH_RETRY_LIMIT_NONE : (int)n;
        return rc;
    case OPT_RATE:
        if ((rc = parse_uint(name, v, 1, 100000, &n)) == 0)
            c->rate = (uint32_t)n;
        c->load = 1;
        return rc;
    case OPT_DELAY:
        if ((rc = parse_uint(name, v, 0, UINT32_MAX, &n)) == 0)
            c->delay_ms = (uint32_t)n;
        return rc;
    case OPT_REQUESTS:
        if ((rc = parse_uint(name, v, 1, UINT64_MAX / 2, &n)) == 0)
            c->requests = n;
        return rc;
    default: /* OPT_TIME; in ns it must fit in 64 bits */
        if ((rc = parse_uint(name, v, 1, UINT64_MAX / 2000000, &n)) == 0)
            c->time_ms = n;
        return rc;
    }
}

static int apply_option(int opt, const char *name, char *v, tcurl_cli *c) {
    switch (opt) {
    case 'p': return push(c->peers, &c->npeers, name, v);
    case 'P':
    case 'H': return set_peerlist(c, name, v);
    case OPT_ROUTERS: return push_routers(c, v);
    case 'r': return set_scheme(c, SCHEME_RAW, name);
    case 'j':
    case 'J': return set_scheme(c, SCHEME_JSON, name);
    case 't':
        c->thrift_path = v;
        return set_scheme(c, SCHEME_THRIFT, name);
    case OPT_NO_STRICT: return 0; /* our IDL reader is never strict */
    case OPT_HTTP:
        return tcurl_usage_error("%s: the http arg scheme is not supported; use --raw, --json or "
                                 "--thrift", name);
    case OPT_HEALTH: c->health = 1; return 0;
    case OPT_HEADERS: return set_once(&c->headers, name, v);
    case '2': return set_once(&c->arg2, name, v);
    case '3': return set_once(&c->arg3, name, v);
    case OPT_SHARD_KEY: c->shard_key = v; return 0;
    case OPT_ROUTING_DELEGATE: c->routing_delegate = v; return 0;
    case OPT_CALLER:
        if (!*v || strlen(v) > 255)
            return tcurl_usage_error("%s: expected a name of 1 to 255 bytes", name);
        c->caller = v;
        return 0;
    case OPT_TRANSPORT_HEADER: return push_transport_header(c, v);
    case OPT_RETRY_ON: return parse_retry_on(v, &c->retry_on);
    default: return apply_number(opt, name, v, c);
    }
}

/* Is a (a whole argument) one of our options, "-p" or "--peer[=...]"? */
static int is_option(const char *a) {
    if (a[0] != '-' || a[1] == '\0')
        return 0;
    if (a[1] != '-')
        return a[2] == '\0' && a[1] != ':' && strchr(short_options, a[1]) != NULL;
    size_t len = strcspn(a + 2, "=");
    for (const struct option *o = long_options; o->name; o++)
        if (strlen(o->name) == len && strncmp(o->name, a + 2, len) == 0)
            return 1;
    return 0;
}

/* getopt takes unique abbreviations of long options; an abbreviation of
 * several gets '?' too. Says so, naming them, and returns 1. */
static int ambiguous(const char *prefix, size_t len) {
    char names[256] = "";
    size_t n = 0, used = 0;
    for (const struct option *o = long_options; o->name; o++) {
        if (len && strncmp(o->name, prefix, len) == 0 && used < sizeof names) {
            used += (size_t)snprintf(names + used, sizeof names - used, "%s--%s", n ? ", " : "",
                                     o->name);
            n++;
        }
    }
    if (n < 2)
        return 0;
    tcurl_usage_error("ambiguous option --%.*s: %s", (int)len, prefix, names);
    return 1;
}

/* getopt said '?': an unknown option, or a flag given "=value". */
static int bad_option(char **argv) {
    const char *a = optind > 0 ? argv[optind - 1] : "";
    if (strncmp(a, "--", 2) == 0 && (optopt == 0 || strchr(a, '='))) {
        int len = (int)strcspn(a, "=");
        if (a[len] == '=' && is_option(a))
            return tcurl_usage_error("%.*s: takes no value", len, a);
        if (ambiguous(a + 2, (size_t)len - 2))
            return EXIT_USAGE;
        return tcurl_usage_error("unknown option %.*s", len, a);
    }
    if (optopt > 0 && optopt < 256)
        return tcurl_usage_error("unknown option -%c", optopt);
    return tcurl_usage_error("unknown option %s", a);
}

/* SERVICE ENDPOINT [BODY], in the order given; checked once every option is
 * known (--health may come last). A fourth is kept to be named in the error. */
typedef struct positionals {
    const char *v[4];
    size_t n;
} positionals;

static void push_positional(positionals *p, const char *a) {
    if (p->n < sizeof p->v / sizeof p->v[0])
        p->v[p->n++] = a;
}

static int take_positionals(tcurl_cli *c, const positionals *p) {
    const char **slots[] = {&c->service, &c->endpoint, &c->body};
    for (size_t i = 0; i < p->n; i++) {
        if (i == 1 && c->health) /* --health SERVICE: no ENDPOINT */
            return tcurl_usage_error("--health: takes SERVICE only, not \"%s\"", p->v[i]);
        if (i == sizeof slots / sizeof slots[0])
            return tcurl_usage_error("unexpected argument \"%s\" (BODY already given)", p->v[i]);
        *slots[i] = p->v[i];
    }
    return 0;
}

/* ---- checks across options ------------------------------------------------------ */

/* --health is a thrift call of Meta::health with no arguments. */
static int check_health(tcurl_cli *c) {
    if (c->scheme_given)
        return tcurl_usage_error("--health: it is a thrift call of its own; drop --raw, --json or "
                                 "--thrift");
    if (c->headers || c->arg2 || c->arg3 || c->body)
        return tcurl_usage_error("--health: takes no --headers, --arg2, --arg3 or BODY");
    if (c->load)
        return tcurl_usage_error("--health: not with the load options (--rate)");
    c->scheme = SCHEME_THRIFT;
    c->endpoint = "Meta::health";
    c->thrift_path = "(meta.thrift, built in)"; /* for messages only */
    return 0;
}

/* --requests, --delay and --time shape a load run, which --rate starts. */
static int check_load(tcurl_cli *c, int requests_given, int delay_given, int time_given) {
    if (!c->load) {
        const char *alone = requests_given ? "--requests" : delay_given ? "--delay"
                          : time_given     ? "--time" : NULL;
        return alone ? tcurl_usage_error("%s: needs --rate N (the calls sent at once in each round)",
                                         alone)
                     : 0;
    }
    if (!delay_given)
        c->delay_ms = 100;
    if (!time_given && !c->requests) /* as Uber's tcurl: 30 s unless a count is given */
        c->time_ms = 30000;
    return 0;
}

static int check_request(const tcurl_cli *c) {
    if (c->body && c->arg3)
        return tcurl_usage_error("--arg3: BODY is given too; use one");
    int stdin_readers = 0;
    const char *specs[] = {c->arg2, c->arg3, c->body};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
        stdin_readers += specs[i] && !strcmp(specs[i], "@-");
    if (stdin_readers > 1)
        return tcurl_usage_error("@- (standard input) is given more than once; only one argument "
                                 "can read it");
    if (c->headers && c->scheme == SCHEME_RAW)
        return tcurl_usage_error("--headers: needs --json or --thrift (use --arg2 with --raw)");
    if (c->headers && c->arg2)
        return tcurl_usage_error("--arg2: --headers is given too; use one");
    return 0;
}

static int check_cli(tcurl_cli *c) {
    if (!c->service || !*c->service)
        return tcurl_usage_error("SERVICE is required");
    if (strlen(c->service) > 255)
        return tcurl_usage_error("SERVICE is longer than 255 bytes");
    int rc = c->health ? check_health(c) : 0;
    if (rc)
        return rc;
    if (!c->endpoint || !*c->endpoint)
        return tcurl_usage_error("ENDPOINT is required (or --health)");
    if (!c->npeers && !c->peerlist && !c->nrouters)
        return tcurl_usage_error("no peer: give -p HOST:PORT, -P FILE or --routers HOST:PORT");
    return check_request(c);
}

int tcurl_parse_cli(int argc, char **argv, tcurl_cli *c) {
    *c = (tcurl_cli){.timeout_ms = 1000, .caller = "tcurl"};
    int seen_requests = 0, seen_delay = 0, seen_time = 0;
    int opt, longindex = -1, rc = 0;
    positionals pos = {.n = 0};
    char name[64];
    opterr = 0; /* our messages, not getopt's */
    optind = 1;
    while (!rc && (opt = getopt_long(argc, argv, short_options, long_options, &longindex)) != -1) {
        if (opt == 1) {
            push_positional(&pos, optarg);
            continue;
        }
        if (opt == '?')
            return bad_option(argv);
        if (opt == ':')
            return missing_value(argv);
        if (opt == 'h') {
            help();
            return -1;
        }
        if (opt == 'v') {
            printf("tcurl (tchannel-vcr) %s\n", TCH_VERSION_STRING);
            return -1;
        }
        opt_name(opt, longindex, name, sizeof name);
        longindex = -1;
        /* a separate value that is itself an option: "-p --health" left the value out */
        if (optarg && optarg == argv[optind - 1] && is_option(optarg))
            return tcurl_usage_error("%s: missing value (next comes the option %s)", name, optarg);
        seen_requests |= opt == OPT_REQUESTS;
        seen_delay |= opt == OPT_DELAY;
        seen_time |= opt == OPT_TIME;
        rc = apply_option(opt, name, optarg, c);
    }
    for (int i = optind; !rc && i < argc; i++) /* after "--" */
        push_positional(&pos, argv[i]);
    if (!rc)
        rc = take_positionals(c, &pos);
    if (!rc)
        rc = check_load(c, seen_requests, seen_delay, seen_time);
    return rc ? rc : check_cli(c);
}
