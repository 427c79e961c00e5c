/* tcurl: make one TChannel call from the command line, in the spirit of
 * Node's tcurl (npm tcurl, uber/tcurl).
 *
 *   tcurl [options] SERVICE ENDPOINT [BODY]
 *
 * One path for every arg scheme: the scheme only decides how arg1/arg2/arg3
 * are built from the command line (encode_*) and how the answer is printed
 * (print_*); the call itself is one blocking raw call (tchannel/sync.h) with
 * the "as" header set. docs/tcurl.md documents options and exit codes. */
#include <tchannel/channel.h>
#include <tchannel/json.h>
#include <tchannel/sync.h>
#include <tchannel/thrift.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Exit codes (docs/tcurl.md). */
enum {
    EXIT_OK = 0,
    EXIT_APP_ERROR = 1, /* call answered with code 1 / a Thrift exception */
    EXIT_USAGE = 2,     /* bad command line or bad input (JSON, IDL, files) */
    EXIT_CALL = 3,      /* the call failed: error frame, timeout, network */
    EXIT_DECODE = 4,    /* an answer came but does not decode as the scheme says */
    EXIT_INTERNAL = 5,  /* out of memory and the like */
};

#define MAX_LIST 64
#define INPUT_FILE_MAX (64u << 20)

enum scheme { SCHEME_RAW, SCHEME_JSON, SCHEME_THRIFT };

typedef struct cli {
    const char *service, *endpoint, *body;
    const char *peers[MAX_LIST];
    size_t npeers;
    const char *routers[MAX_LIST];
    size_t nrouters;
    const char *hostlist;
    enum scheme scheme;
    int scheme_given;
    const char *idl_path;
    const char *headers;   /* -H: JSON object (json, thrift) */
    const char *arg2, *arg3; /* raw text, or @path */
    tch_header th[16];     /* --transport-header; slices into argv */
    size_t nth;
    uint32_t timeout_ms;
    const char *shard_key;
    int retry_on;
    int retry_limit;
    const char *caller;
    int health; /* --health: Meta::health over thrift, prints OK or NOT OK */
} cli;

/* What goes on the wire, and what is needed to read the answer. */
typedef struct request {
    tch_buf arg1, arg2, arg3;
    tch_thrift_idl *idl;
    const tch_thrift_method *method;
} request;

/* ---- messages ------------------------------------------------------------- */

static void help(FILE *to) {
    fputs("usage: tcurl [options] SERVICE ENDPOINT [BODY]\n"
          "       tcurl [options] --health SERVICE\n"
          "\n"
          "Target (at least one):\n"
          "  -p, --peer HOST:PORT         a peer to call (repeatable)\n"
          "  --hostlist FILE              a JSON list of \"HOST:PORT\" peers\n"
          "  --routers HOST:PORT[,...]    Hyperbahn routers to route the call through\n"
          "Arg scheme (default --raw):\n"
          "  --raw                        BODY is arg3 as bytes; the answer's arg3 is printed as is\n"
          "  -j, --json                   BODY and --headers are JSON; the answer is printed pretty\n"
          "  -t, --thrift IDL.thrift      ENDPOINT is Service::method, BODY the args as JSON;\n"
          "                               prints {\"ok\":true,\"body\":...} or\n"
          "                               {\"ok\":false,\"typeName\":\"<exception field>\",\"body\":{...}}\n"
          "  --health                     call Meta::health (thrift) and print OK or\n"
          "                               NOT OK[: message] (exit 0 or 1)\n"
          "Request:\n"
          "  -H, --headers JSON           application headers (a JSON object; --json, --thrift)\n"
          "  --arg2 TEXT|@FILE            arg2 as bytes (--raw); @- reads standard input\n"
          "  --arg3 TEXT|@FILE            arg3 as bytes or JSON text, instead of BODY; @- reads standard input\n"
          "  --transport-header KEY=VALUE extra transport header (repeatable)\n"
          "  --timeout MS                 whole-call timeout, retries included (default 1000)\n"
          "  --shard-key KEY              the sk transport header\n"
          "  --retry-limit N              retries after the first try (default 4; 0: none)\n"
          "  --retry-on c|t|ct|n          retry on connection errors, timeouts, both, never\n"
          "  --caller NAME                caller name, the cn header (default tcurl)\n"
          "  -h, --help                   this text\n"
          "\n"
          "Exit: 0 ok, 1 application error, 2 usage or input error, 3 call failed\n"
          "(error frame, timeout, network), 4 answer does not decode, 5 internal.\n",
          to);
}

/* "tcurl: <message>\n" on stderr. */
static void say(const char *fmt, va_list ap) {
    fputs("tcurl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

static int usage_error(const char *fmt, ...) TCH_PRINTF(1, 2);
static int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    say(fmt, ap);
    va_end(ap);
    fputs("(tcurl --help for usage)\n", stderr);
    return EXIT_USAGE;
}

static int fail(int code, const char *fmt, ...) TCH_PRINTF(2, 3);
static int fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    say(fmt, ap);
    va_end(ap);
    return code;
}

/* ---- command line ------------------------------------------------------------ */

static int parse_uint(const char *opt, const char *v, unsigned long max, unsigned long *out) {
    char *end;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (!*v || *end || *v == '-' || errno || n > max)
        return usage_error("%s: expected a whole number up to %lu, got \"%s\"", opt, max, v);
    *out = n;
    return 0;
}

static int parse_retry_on(const char *v, int *out) {
    static const struct { const char *name; int value; } names[] = {
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
    return usage_error("--retry-on: expected c, t, ct or n, got \"%s\"", v);
}

static int push(const char **list, size_t *n, const char *opt, const char *v) {
    if (*n == MAX_LIST)
        return usage_error("%s: at most %d", opt, MAX_LIST);
    list[(*n)++] = v;
    return 0;
}

/* --routers takes one HOST:PORT or a comma-separated list; the commas are
 * cut in place (argv strings are ours to change). */
static int push_routers(cli *c, char *v) {
    for (char *tok = strtok(v, ","); tok; tok = strtok(NULL, ",")) {
        int rc = push(c->routers, &c->nrouters, "--routers", tok);
        if (rc)
            return rc;
    }
    return c->nrouters ? 0 : usage_error("--routers: expected HOST:PORT[,HOST:PORT...]");
}

static int push_transport_header(cli *c, const char *v) {
    const char *eq = strchr(v, '=');
    if (!eq || eq == v)
        return usage_error("--transport-header: expected KEY=VALUE, got \"%s\"", v);
    if (c->nth == sizeof c->th / sizeof c->th[0])
        return usage_error("--transport-header: at most %zu", sizeof c->th / sizeof c->th[0]);
    if ((size_t)(eq - v) > 255 || strlen(eq + 1) > 255)
        return usage_error("--transport-header %s: keys and values are at most 255 bytes", v);
    c->th[c->nth++] = (tch_header){tch_slice_of(v, (size_t)(eq - v)), tch_slice_cstr(eq + 1)};
    return 0;
}

static int set_scheme(cli *c, enum scheme s, const char *opt) {
    if (c->scheme_given && c->scheme != s)
        return usage_error("%s: only one of --raw, --json, --thrift", opt);
    c->scheme = s;
    c->scheme_given = 1;
    return 0;
}

/* Options that take a value. */
static const char *const valued[] = {
    "-p", "--peer", "--hostlist", "--routers", "-t", "--thrift", "-H", "--headers",
    "--arg2", "--arg3", "--transport-header", "--timeout", "--shard-key",
    "--retry-limit", "--retry-on", "--caller",
};

static int takes_value(const char *name) {
    for (size_t i = 0; i < sizeof valued / sizeof valued[0]; i++)
        if (strcmp(name, valued[i]) == 0)
            return 1;
    return 0;
}

static const char *const flags[] = {"--raw", "-j", "--json", "--health", "-h", "--help"};

static int is_option_name(const char *a) {
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (strcmp(a, flags[i]) == 0)
            return 1;
    return takes_value(a);
}

static int apply_option(cli *c, const char *name, char *v) {
    unsigned long n;
    int rc = 0;
    if (!strcmp(name, "-p") || !strcmp(name, "--peer"))
        rc = push(c->peers, &c->npeers, name, v);
    else if (!strcmp(name, "--hostlist"))
        c->hostlist = v;
    else if (!strcmp(name, "--routers"))
        rc = push_routers(c, v);
    else if (!strcmp(name, "-t") || !strcmp(name, "--thrift")) {
        rc = set_scheme(c, SCHEME_THRIFT, name);
        c->idl_path = v;
    } else if (!strcmp(name, "-H") || !strcmp(name, "--headers"))
        c->headers = v;
    else if (!strcmp(name, "--arg2"))
        c->arg2 = v;
    else if (!strcmp(name, "--arg3"))
        c->arg3 = v;
    else if (!strcmp(name, "--transport-header"))
        rc = push_transport_header(c, v);
    else if (!strcmp(name, "--timeout")) {
        if ((rc = parse_uint(name, v, UINT32_MAX, &n)) == 0 && n == 0)
            rc = usage_error("--timeout: must be more than 0 ms");
        c->timeout_ms = (uint32_t)n;
    } else if (!strcmp(name, "--shard-key"))
        c->shard_key = v;
    else if (!strcmp(name, "--retry-limit")) {
        if ((rc = parse_uint(name, v, 100, &n)) == 0) /* 0 on the command line: no retries */
            c->retry_limit = n == 0 ? TCH_RETRY_LIMIT_NONE : (int)n;
    } else if (!strcmp(name, "--retry-on"))
        rc = parse_retry_on(v, &c->retry_on);
    else if (!strcmp(name, "--caller")) {
        if (!*v || strlen(v) > 255)
            rc = usage_error("--caller: expected a name of 1 to 255 bytes");
        c->caller = v;
    }
    return rc;
}

static int apply_flag(cli *c, const char *a) {
    if (!strcmp(a, "--health")) {
        c->health = 1;
        return 0;
    }
    if (!strcmp(a, "--raw"))
        return set_scheme(c, SCHEME_RAW, a);
    if (!strcmp(a, "-j") || !strcmp(a, "--json"))
        return set_scheme(c, SCHEME_JSON, a);
    return usage_error("unknown option %s", a);
}

static int take_positional(cli *c, const char *a) {
    if (!c->service)
        c->service = a;
    else if (!c->endpoint)
        c->endpoint = a;
    else if (!c->body)
        c->body = a;
    else
        return usage_error("unexpected argument \"%s\" (BODY already given)", a);
    return 0;
}

/* --health is a thrift call of Meta::health with no arguments. */
static int check_health(cli *c) {
    if (c->scheme_given)
        return usage_error("--health: it is a thrift call of its own; drop --raw, --json or --thrift");
    if (c->endpoint)
        return usage_error("--health: takes SERVICE only, not \"%s\"", c->endpoint);
    if (c->headers || c->arg2 || c->arg3)
        return usage_error("--health: takes no --headers, --arg2 or --arg3");
    c->scheme = SCHEME_THRIFT;
    c->endpoint = "Meta::health";
    c->idl_path = "(meta.thrift, built in)"; /* for messages only */
    return 0;
}

static int check_cli(cli *c) {
    if (!c->service || !*c->service)
        return usage_error("SERVICE is required");
    if (strlen(c->service) > 255)
        return usage_error("SERVICE is longer than 255 bytes");
    int rc = c->health ? check_health(c) : 0;
    if (rc)
        return rc;
    if (!c->endpoint || !*c->endpoint)
        return usage_error("ENDPOINT is required");
    if (!c->npeers && !c->hostlist && !c->nrouters)
        return usage_error("no peer: give -p HOST:PORT, --hostlist FILE or --routers HOST:PORT");
    if (c->body && c->arg3)
        return usage_error("--arg3: BODY is given too; use one");
    int stdin_readers = 0;
    const char *specs[] = {c->arg2, c->arg3, c->body};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
        stdin_readers += specs[i] && !strcmp(specs[i], "@-");
    if (stdin_readers > 1)
        return usage_error("@- (standard input) is given more than once; only one argument can read it");
    if (c->headers && c->scheme == SCHEME_RAW)
        return usage_error("--headers: needs --json or --thrift (use --arg2 with --raw)");
    if (c->arg2 && c->scheme != SCHEME_RAW)
        return usage_error("--arg2: only with --raw (use --headers with --json, --thrift)");
    return 0;
}

/* Options may come before, between or after the positionals; "--" ends
 * them. Returns 0, or the exit code to leave with. */
static int parse_cli(int argc, char **argv, cli *c) {
    *c = (cli){.timeout_ms = 1000, .caller = "tcurl"};
    int options_done = 0;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (options_done || a[0] != '-' || a[1] == '\0') {
            int rc = take_positional(c, a);
            if (rc)
                return rc;
            continue;
        }
        if (!strcmp(a, "--")) {
            options_done = 1;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help(stdout);
            exit(EXIT_OK);
        }
        char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
        if (eq)
            *eq = '\0'; /* --name=value */
        int rc;
        if (takes_value(a)) {
            char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (v && !eq && is_option_name(v)) /* "-p --health": the value was left out */
                rc = usage_error("%s: missing value (next comes the option %s)", a, v);
            else
                rc = v ? apply_option(c, a, v) : usage_error("%s: missing value", a);
        } else {
            /* an unknown --name=value is unknown first (apply_flag says so) */
            rc = eq && is_option_name(a) ? usage_error("%s: takes no value", a) : apply_flag(c, a);
        }
        if (rc)
            return rc;
    }
    return check_cli(c);
}

/* ---- inputs ------------------------------------------------------------------- */

/* Reads a file, or standard input when path is NULL. */
static int read_file(const char *what, const char *path, tch_buf *out) {
    int from_stdin = path == NULL;
    FILE *f = from_stdin ? stdin : fopen(path, "rb");
    if (from_stdin)
        path = "standard input";
    if (!f)
        return fail(EXIT_USAGE, "%s: cannot open %s: %s", what, path, strerror(errno));
    char chunk[65536];
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (out->len + n > INPUT_FILE_MAX)
            rc = fail(EXIT_USAGE, "%s: %s is over %u bytes", what, path, INPUT_FILE_MAX);
        else if (tch_buf_append(out, chunk, n))
            rc = fail(EXIT_INTERNAL, "out of memory");
    }
    if (!rc && ferror(f))
        rc = fail(EXIT_USAGE, "%s: reading %s: %s", what, path, strerror(errno));
    if (!from_stdin)
        fclose(f);
    return rc;
}

/* TEXT, or the contents of FILE for "@FILE" ("@-": standard input). */
static int read_text_or_file(const char *what, const char *spec, tch_buf *out) {
    if (spec && spec[0] == '@')
        return read_file(what, strcmp(spec, "@-") ? spec + 1 : NULL, out);
    if (spec && tch_buf_append(out, spec, strlen(spec)))
        return fail(EXIT_INTERNAL, "out of memory");
    return 0;
}

/* The body text: BODY, or --arg3 (which may name a file). */
static int body_text(const cli *c, tch_buf *out, const char **what) {
    *what = c->arg3 ? "--arg3" : "BODY";
    return read_text_or_file(*what, c->arg3 ? c->arg3 : c->body, out);
}

/* JSON text from the command line; empty text gives dflt (may be NULL: then
 * *out stays NULL). Errors name the argument, line and column. */
static int parse_json(const char *what, tch_slice text, json_t *dflt, json_t **out) {
    tch_error err;
    *out = NULL;
    if (text.len == 0) {
        *out = dflt ? json_incref(dflt) : NULL;
        return 0;
    }
    if (tch_json_decode(text, what, NULL, out, &err) != 0)
        return fail(EXIT_USAGE, "%s", err.msg);
    return 0;
}

static int parse_headers_json(const cli *c, json_t **out) {
    int rc = parse_json("--headers", tch_slice_cstr(c->headers ? c->headers : ""), NULL, out);
    if (!rc && *out && !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return fail(EXIT_USAGE, "--headers must be a JSON object, like {\"key\":\"value\"}");
    }
    return rc;
}

static int load_hostlist(tch_channel *ch, const char *path) {
    tch_buf text = {0};
    int rc = read_file("--hostlist", path, &text);
    json_t *list = NULL;
    if (!rc)
        rc = parse_json("--hostlist file", tch_buf_slice(&text), NULL, &list);
    tch_buf_free(&text);
    if (!rc && !json_is_array(list))
        rc = fail(EXIT_USAGE, "--hostlist %s: expected a JSON list of \"HOST:PORT\" strings", path);
    for (size_t i = 0; !rc && i < json_array_size(list); i++) {
        const char *hp = json_string_value(json_array_get(list, i));
        tch_error err;
        if (!hp)
            rc = fail(EXIT_USAGE, "--hostlist %s: entry %zu is not a \"HOST:PORT\" string", path, i);
        else if (tch_channel_add_peer(ch, hp, &err) != 0)
            rc = fail(EXIT_USAGE, "--hostlist %s: entry %zu: %s", path, i, err.msg);
    }
    if (!rc && json_array_size(list) == 0)
        rc = fail(EXIT_USAGE, "--hostlist %s: the list is empty", path);
    json_decref(list);
    return rc;
}

static int add_peers(tch_channel *ch, const cli *c) {
    tch_error err;
    for (size_t i = 0; i < c->npeers; i++)
        if (tch_channel_add_peer(ch, c->peers[i], &err) != 0)
            return usage_error("--peer %s: %s", c->peers[i], err.msg);
    for (size_t i = 0; i < c->nrouters; i++)
        if (tch_channel_add_peer(ch, c->routers[i], &err) != 0)
            return usage_error("--routers %s: %s", c->routers[i], err.msg);
    return c->hostlist ? load_hostlist(ch, c->hostlist) : 0;
}

/* ---- encoding, per scheme ----------------------------------------------------------- */

static int append_cstr(tch_buf *b, const char *s) {
    return tch_buf_append(b, s, strlen(s)) ? fail(EXIT_INTERNAL, "out of memory") : 0;
}

static int encode_raw(const cli *c, request *r) {
    const char *what;
    int rc = append_cstr(&r->arg1, c->endpoint);
    if (!rc)
        rc = read_text_or_file("--arg2", c->arg2, &r->arg2);
    if (!rc)
        rc = body_text(c, &r->arg3, &what);
    return rc;
}

static int encode_json_value(const json_t *v, tch_buf *out) {
    tch_error err;
    return tch_json_encode(v, out, &err) ? fail(EXIT_INTERNAL, "%s", err.msg) : 0;
}

static int encode_json(const cli *c, request *r) {
    tch_buf text = {0};
    json_t *headers = NULL, *body = NULL;
    const char *what;
    int rc = append_cstr(&r->arg1, c->endpoint);
    if (!rc)
        rc = parse_headers_json(c, &headers);
    if (!rc)
        rc = body_text(c, &text, &what);
    if (!rc) /* no BODY: a null body */
        rc = parse_json(what, tch_buf_slice(&text), json_null(), &body);
    if (!rc) /* "{}" rather than empty: the Node peer cannot parse an empty arg2 */
        rc = headers ? encode_json_value(headers, &r->arg2) : append_cstr(&r->arg2, "{}");
    if (!rc)
        rc = encode_json_value(body, &r->arg3);
    tch_buf_free(&text);
    json_decref(headers);
    json_decref(body);
    return rc;
}

/* -H for Thrift: a JSON object of string values -> the nh:2 (k~2 v~2) form. */
static int encode_thrift_headers(const cli *c, tch_buf *out) {
    json_t *h = NULL;
    int rc = parse_headers_json(c, &h);
    size_t n = h ? json_object_size(h) : 0;
    tch_thrift_header *hs = n ? calloc(n, sizeof *hs) : NULL;
    if (!rc && n && !hs)
        rc = fail(EXIT_INTERNAL, "out of memory");
    size_t i = 0;
    const char *key;
    json_t *v;
    if (!rc && h) {
        json_object_foreach(h, key, v) {
            if (!json_is_string(v)) {
                rc = fail(EXIT_USAGE, "--headers: value of \"%s\" must be a string for --thrift", key);
                break;
            }
            hs[i++] = (tch_thrift_header){tch_slice_cstr(key),
                                          tch_slice_of(json_string_value(v), json_string_length(v))};
        }
    }
    tch_error err;
    if (!rc && tch_thrift_headers_encode(hs, i, out, &err) != 0)
        rc = fail(EXIT_USAGE, "--headers: %s", err.msg);
    free(hs);
    json_decref(h);
    return rc;
}

static int find_method(const cli *c, request *r) {
    tch_error err;
    tch_slice svc, meth;
    if (tch_thrift_arg1_split(tch_slice_cstr(c->endpoint), &svc, &meth, &err) != 0)
        return usage_error("ENDPOINT \"%s\": with --thrift it must be Service::method", c->endpoint);
    /* The part of TChannel's meta.thrift that --health needs. */
    static const char meta_idl[] = "struct HealthStatus {\n"
                                   "    1: required bool ok\n"
                                   "    2: optional string message\n"
                                   "}\n"
                                   "service Meta {\n"
                                   "    HealthStatus health()\n"
                                   "}\n";
    int loaded = c->health ? tch_thrift_load_string("meta.thrift", tch_slice_cstr(meta_idl), NULL,
                                                    &r->idl, &err)
                           : tch_thrift_load(c->idl_path, &r->idl, &err);
    if (loaded != 0)
        return fail(EXIT_USAGE, "--thrift: %s", err.msg);
    char *sname = tch_slice_strdup(svc), *mname = tch_slice_strdup(meth);
    int rc = 0;
    const tch_thrift_service *s = sname ? tch_thrift_idl_find_service(r->idl, sname) : NULL;
    if (!sname || !mname)
        rc = fail(EXIT_INTERNAL, "out of memory");
    else if (!s)
        rc = fail(EXIT_USAGE, "--thrift %s: no service %s", c->idl_path, sname);
    else if (!(r->method = tch_thrift_service_find_method(s, mname)))
        rc = fail(EXIT_USAGE, "--thrift %s: service %s has no method %s", c->idl_path, sname, mname);
    else if (tch_thrift_method_check_supported(r->method, &err) != 0)
        rc = fail(EXIT_USAGE, "--thrift %s: %s", c->idl_path, err.msg);
    /* the service's own name: "inc.Service" finds it, "Service::m" is what is served */
    else if (tch_thrift_arg1_join(tch_thrift_service_name(s), mname, &r->arg1, &err) != 0)
        rc = fail(EXIT_USAGE, "ENDPOINT: %s", err.msg);
    free(sname);
    free(mname);
    return rc;
}

static int encode_thrift(const cli *c, request *r) {
    tch_buf text = {0};
    json_t *args = NULL, *empty = json_object();
    const char *what;
    tch_error err;
    int rc = find_method(c, r);
    if (!rc)
        rc = encode_thrift_headers(c, &r->arg2);
    if (!rc)
        rc = body_text(c, &text, &what);
    if (!rc) /* no BODY: no arguments */
        rc = parse_json(what, tch_buf_slice(&text), empty, &args);
    if (!rc && tch_thrift_method_args_from_json(r->method, args, &r->arg3, &err) != 0)
        rc = fail(EXIT_USAGE, "%s: %s", what, err.msg);
    tch_buf_free(&text);
    json_decref(args);
    json_decref(empty);
    return rc;
}

/* ---- printing, per scheme ------------------------------------------------------------- */

static int print_json(const json_t *v) {
    char *s = tch_json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);
    if (!s)
        return fail(EXIT_INTERNAL, "cannot print the answer as JSON");
    puts(s);
    free(s);
    return 0;
}

static int print_raw(const tch_sync_response *res) {
    if (res->arg3.len) /* an empty buffer has no storage */
        fwrite(res->arg3.ptr, 1, res->arg3.len, stdout);
    return res->code ? EXIT_APP_ERROR : EXIT_OK;
}

static int print_json_answer(const tch_sync_response *res) {
    json_t *body = NULL;
    tch_error err;
    if (tch_json_decode(tch_buf_slice(&res->arg3), "answer arg3 (body)", json_null(), &body, &err))
        return fail(EXIT_DECODE, "%s", err.msg);
    int rc = print_json(body);
    json_decref(body);
    return rc ? rc : res->code ? EXIT_APP_ERROR : EXIT_OK;
}

/* Node's tcurl/thrift shape: {"ok":true,"body":v} or
 * {"ok":false,"typeName":"<exception field>","body":{...}}. */
/* Not ok, with an exception this IDL does not declare (a newer server's):
 * the decoder skipped its field, so the result struct is empty. */
static int undeclared_exception(const request *r, const tch_sync_response *res) {
    tch_thrift_value *v = NULL;
    if (res->code == 0 ||
        tch_thrift_decode(tch_thrift_method_result(r->method), tch_buf_slice(&res->arg3), &v, NULL))
        return 0;
    int empty = tch_thrift_value_struct_count(v) == 0;
    tch_thrift_value_free(v);
    return empty;
}

static int print_thrift_answer(const request *r, const tch_sync_response *res) {
    json_t *result = NULL;
    tch_error err;
    if (undeclared_exception(r, res)) {
        fprintf(stderr, "tcurl: warning: call res code %u with no exception this IDL declares\n",
                res->code);
        json_t *out = json_pack("{s:b,s:s,s:n}", "ok", 0, "typeName", "unknown", "body");
        int rc = out ? print_json(out) : fail(EXIT_INTERNAL, "out of memory");
        json_decref(out);
        return rc ? rc : EXIT_APP_ERROR;
    }
    if (tch_thrift_method_result_to_json(r->method, tch_buf_slice(&res->arg3), &result, &err))
        return fail(EXIT_DECODE, "answer arg3 is not a %s result: %s",
                    tch_thrift_method_name(r->method), err.msg);
    const char *field = json_object_size(result) == 1 ? json_object_iter_key(json_object_iter(result)) : NULL;
    if (!field) {
        json_decref(result);
        return fail(EXIT_DECODE, "answer arg3: a result with %zu values, expected 1",
                    json_object_size(result));
    }
    int ok = strcmp(field, "success") == 0;
    json_t *out = ok ? json_pack("{s:b,s:O}", "ok", 1, "body", json_object_get(result, field))
                     : json_pack("{s:b,s:s,s:O}", "ok", 0, "typeName", field, "body",
                                 json_object_get(result, field));
    int rc = out ? print_json(out) : fail(EXIT_INTERNAL, "out of memory");
    json_decref(out);
    json_decref(result);
    if (!rc && ok != (res->code == 0)) /* say so, but print what came */
        fprintf(stderr, "tcurl: warning: call res code %u with a %s result\n", res->code,
                ok ? "success" : "exception");
    return rc ? rc : ok ? EXIT_OK : EXIT_APP_ERROR;
}

/* tcurl --health: "OK", or "NOT OK" with the service's message. */
static int print_health(const request *r, const tch_sync_response *res) {
    json_t *result = NULL;
    tch_error err;
    if (tch_thrift_method_result_to_json(r->method, tch_buf_slice(&res->arg3), &result, &err))
        return fail(EXIT_DECODE, "answer arg3 is not a Meta::health result: %s", err.msg);
    json_t *status = json_object_get(result, "success");
    json_t *ok = json_object_get(status, "ok"), *msg = json_object_get(status, "message");
    int rc = EXIT_OK;
    if (!json_is_boolean(ok))
        rc = fail(EXIT_DECODE, "answer arg3: Meta::health gave no HealthStatus");
    else if (json_is_true(ok) && res->code == 0)
        puts("OK");
    else {
        printf("NOT OK%s%s\n", json_is_string(msg) ? ": " : "", json_is_string(msg) ? json_string_value(msg) : "");
        rc = EXIT_APP_ERROR;
    }
    json_decref(result);
    return rc;
}

static int report_failure(const tch_sync_response *res) {
    return fail(EXIT_CALL, "%s: %s (%s)", tch_proto_code_name(res->error_code),
                res->message && *res->message ? res->message : "no message",
                tch_strerror(res->status));
}

/* ---- the call ------------------------------------------------------------------------------ */

static int encode(const cli *c, request *r) {
    switch (c->scheme) {
    case SCHEME_JSON: return encode_json(c, r);
    case SCHEME_THRIFT: return encode_thrift(c, r);
    default: return encode_raw(c, r);
    }
}

static int call_and_print(const cli *c, tch_sync_client *client, const request *r) {
    static const char *const as[] = {"raw", "json", "thrift"};
    tch_call_opts o = {
        .service = c->service,
        .endpoint = tch_buf_slice(&r->arg1),
        .arg2 = tch_buf_slice(&r->arg2),
        .arg3 = tch_buf_slice(&r->arg3),
        .timeout_ms = c->timeout_ms,
        .headers = c->th,
        .nheaders = c->nth,
        .arg_scheme = as[c->scheme],
        .retry_on = c->retry_on,
        .retry_limit = c->retry_limit,
        .shard_key = c->shard_key,
    };
    tch_sync_response res;
    tch_error err;
    if (tch_sync_call(client, &o, &res, &err) != 0)
        return fail(err.code == TCH_ENOMEM ? EXIT_INTERNAL : EXIT_USAGE, "%s", err.msg);
    int rc;
    if (res.status != 0)
        rc = report_failure(&res);
    else if (c->scheme == SCHEME_JSON)
        rc = print_json_answer(&res);
    else if (c->health)
        rc = print_health(r, &res);
    else if (c->scheme == SCHEME_THRIFT)
        rc = print_thrift_answer(r, &res);
    else
        rc = print_raw(&res);
    tch_sync_response_free(&res);
    return rc;
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN); /* a peer that goes away is an error, not a kill */
    cli c;
    int rc = parse_cli(argc, argv, &c);
    if (rc)
        return rc;
    request r = {0};
    rc = encode(&c, &r);
    tch_sync_client *client = NULL;
    if (!rc) {
        tch_channel_options copts = {0}; /* defaults */
        client = tch_sync_client_new(c.caller, &copts);
        rc = client ? add_peers(tch_sync_client_channel(client), &c)
                    : fail(EXIT_INTERNAL, "cannot create a channel named %s", c.caller);
    }
    if (!rc)
        rc = call_and_print(&c, client, &r);
    fflush(stdout);
    tch_sync_client_free(client);
    tch_buf_free(&r.arg1);
    tch_buf_free(&r.arg2);
    tch_buf_free(&r.arg3);
    tch_thrift_idl_free(r.idl);
    return rc;
}
