/* tcurl: make a TChannel call from the command line, with the flags of
 * Uber's tcurl (npm tcurl) where they overlap.
 *
 *   tcurl [options] SERVICE ENDPOINT [BODY]
 *
 * One path for every arg scheme: the scheme only decides how arg1/arg2/arg3
 * are built from the command line (encode_*) and how the answer is printed
 * (print_*); the call itself is one blocking raw call (tchannel/sync.h) with
 * the "as" header set. The command line is tcurl_cli.c's, the load mode
 * tcurl_load.c's. docs/tcurl.md documents options and exit codes. */
#include "tcurl.h"

#include <tchannel/json.h>

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define INPUT_FILE_MAX (64u << 20)

/* ---- inputs ------------------------------------------------------------------- */

/* Reads a file, or standard input when path is NULL. */
static int read_file(const char *what, const char *path, tch_buf *out) {
    int from_stdin = path == NULL;
    FILE *f = from_stdin ? stdin : fopen(path, "rb");
    if (from_stdin)
        path = "standard input";
    if (!f)
        return tcurl_fail(EXIT_USAGE, "%s: cannot open %s: %s", what, path, strerror(errno));
    char chunk[65536];
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (out->len + n > INPUT_FILE_MAX)
            rc = tcurl_fail(EXIT_USAGE, "%s: %s is over %u bytes", what, path, INPUT_FILE_MAX);
        else if (tch_buf_append(out, chunk, n))
            rc = tcurl_fail(EXIT_INTERNAL, "out of memory");
    }
    if (!rc && ferror(f))
        rc = tcurl_fail(EXIT_USAGE, "%s: reading %s: %s", what, path, strerror(errno));
    if (!from_stdin)
        fclose(f);
    return rc;
}

static int append_cstr(tch_buf *b, const char *s) {
    return tch_buf_append(b, s, strlen(s)) ? tcurl_fail(EXIT_INTERNAL, "out of memory") : 0;
}

/* TEXT, or the contents of FILE for "@FILE" ("@-": standard input). */
static int read_text_or_file(const char *what, const char *spec, tch_buf *out) {
    if (spec && spec[0] == '@')
        return read_file(what, strcmp(spec, "@-") ? spec + 1 : NULL, out);
    if (spec && tch_buf_append(out, spec, strlen(spec)))
        return tcurl_fail(EXIT_INTERNAL, "out of memory");
    return 0;
}

/* The body text: BODY, or --arg3 (which may name a file). */
static int body_text(const tcurl_cli *c, tch_buf *out, const char **what) {
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
        return tcurl_fail(EXIT_USAGE, "%s", err.msg);
    return 0;
}

/* Which option gave the application headers of --json and --thrift. */
static const char *headers_option(const tcurl_cli *c) {
    return c->arg2 ? "--arg2" : "--headers";
}

/* The application headers of --json and --thrift: --headers, or -2 (which
 * may name a file), as a JSON object; *out stays NULL when none are given. */
static int parse_headers_json(const tcurl_cli *c, json_t **out) {
    const char *what = headers_option(c);
    tch_buf text = {0};
    int rc = c->arg2 ? read_text_or_file(what, c->arg2, &text)
                     : append_cstr(&text, c->headers ? c->headers : "");
    if (!rc)
        rc = parse_json(what, tch_buf_slice(&text), NULL, out);
    tch_buf_free(&text);
    if (!rc && *out && !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return tcurl_fail(EXIT_USAGE, "%s must be a JSON object, like {\"key\":\"value\"}", what);
    }
    return rc;
}

/* -P FILE: a JSON list of "HOST:PORT" strings, each given to the channel
 * as written (host names and [IPv6] included). */
static int load_peerlist(tch_channel *ch, const char *path) {
    tch_buf text = {0};
    int rc = read_file("--peerlist", path, &text);
    json_t *list = NULL;
    if (!rc)
        rc = parse_json("--peerlist file", tch_buf_slice(&text), NULL, &list);
    tch_buf_free(&text);
    if (!rc && !json_is_array(list))
        rc = tcurl_fail(EXIT_USAGE, "--peerlist %s: expected a JSON list of \"HOST:PORT\" strings",
                        path);
    for (size_t i = 0; !rc && i < json_array_size(list); i++) {
        const char *hp = json_string_value(json_array_get(list, i));
        tch_error err;
        if (!hp)
            rc = tcurl_fail(EXIT_USAGE, "--peerlist %s: entry %zu is not a \"HOST:PORT\" string",
                            path, i);
        else if (tch_channel_add_peer(ch, hp, &err) != 0)
            rc = tcurl_fail(EXIT_USAGE, "--peerlist %s: entry %zu: %s", path, i, err.msg);
    }
    if (!rc && json_array_size(list) == 0)
        rc = tcurl_fail(EXIT_USAGE, "--peerlist %s: the list is empty", path);
    json_decref(list);
    return rc;
}

static int add_peers(tch_channel *ch, const tcurl_cli *c) {
    tch_error err;
    for (size_t i = 0; i < c->npeers; i++)
        if (tch_channel_add_peer(ch, c->peers[i], &err) != 0)
            return tcurl_usage_error("--peer %s: %s", c->peers[i], err.msg);
    for (size_t i = 0; i < c->nrouters; i++)
        if (tch_channel_add_peer(ch, c->routers[i], &err) != 0)
            return tcurl_usage_error("--routers %s: %s", c->routers[i], err.msg);
    return c->peerlist ? load_peerlist(ch, c->peerlist) : 0;
}

/* ---- encoding, per scheme ----------------------------------------------------------- */

static int encode_raw(const tcurl_cli *c, tcurl_request *r) {
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
    return tch_json_encode(v, out, &err) ? tcurl_fail(EXIT_INTERNAL, "%s", err.msg) : 0;
}

static int encode_json(const tcurl_cli *c, tcurl_request *r) {
    tch_buf text = {0};
    json_t *headers = NULL, *body = NULL;
    const char *what;
    int rc = append_cstr(&r->arg1, c->endpoint);
    if (!rc)
        rc = parse_headers_json(c, &headers);
    if (!rc)
        rc = body_text(c, &text, &what);
    json_t *empty = json_object();
    if (!rc) /* no BODY: {}, as Uber's tcurl sends */
        rc = empty ? parse_json(what, tch_buf_slice(&text), empty, &body)
                   : tcurl_fail(EXIT_INTERNAL, "out of memory");
    json_decref(empty);
    if (!rc) /* "{}" rather than empty: the Node peer cannot parse an empty arg2 */
        rc = headers ? encode_json_value(headers, &r->arg2) : append_cstr(&r->arg2, "{}");
    if (!rc)
        rc = encode_json_value(body, &r->arg3);
    tch_buf_free(&text);
    json_decref(headers);
    json_decref(body);
    return rc;
}

/* Headers for Thrift: a JSON object of string values -> the nh:2 (k~2 v~2) form. */
static int encode_thrift_headers(const tcurl_cli *c, tch_buf *out) {
    json_t *h = NULL;
    int rc = parse_headers_json(c, &h);
    size_t n = h ? json_object_size(h) : 0;
    tch_kv *hs = n ? calloc(n, sizeof *hs) : NULL;
    if (!rc && n && !hs)
        rc = tcurl_fail(EXIT_INTERNAL, "out of memory");
    size_t i = 0;
    const char *key;
    json_t *v;
    if (!rc && h) {
        json_object_foreach(h, key, v) {
            if (!json_is_string(v)) {
                rc = tcurl_fail(EXIT_USAGE, "%s: value of \"%s\" must be a string for --thrift",
                                headers_option(c), key);
                break;
            }
            hs[i++] = (tch_kv){tch_slice_cstr(key),
                                          tch_slice_of(json_string_value(v), json_string_length(v))};
        }
    }
    tch_error err;
    if (!rc && tch_thrift_headers_encode(hs, i, out, &err) != 0)
        rc = tcurl_fail(EXIT_USAGE, "%s: %s", headers_option(c), err.msg);
    free(hs);
    json_decref(h);
    return rc;
}

/* -t names an IDL file, or a folder holding SERVICE.thrift (as Uber's tcurl
 * finds it). *path is the file to load, malloc'd. */
static int thrift_file(const tcurl_cli *c, char **path) {
    struct stat st;
    *path = NULL;
    if (stat(c->thrift_path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        *path = strdup(c->thrift_path); /* the loader says what is wrong with it */
        return *path ? 0 : tcurl_fail(EXIT_INTERNAL, "out of memory");
    }
    size_t n = strlen(c->thrift_path) + strlen(c->service) + sizeof "/.thrift";
    if (!(*path = malloc(n)))
        return tcurl_fail(EXIT_INTERNAL, "out of memory");
    snprintf(*path, n, "%s/%s.thrift", c->thrift_path, c->service);
    if (stat(*path, &st) == 0 && S_ISREG(st.st_mode))
        return 0;
    free(*path);
    *path = NULL;
    return tcurl_fail(EXIT_USAGE, "--thrift %s: a folder, without %s.thrift (the file for service %s)",
                      c->thrift_path, c->service, c->service);
}

/* Loads the IDL: the built-in part of meta.thrift for --health, else -t. */
static int load_idl(const tcurl_cli *c, tcurl_request *r, char **idl_path) {
    /* The part of TChannel's meta.thrift that --health needs. */
    static const char meta_idl[] = "struct HealthStatus {\n"
                                   "    1: required bool ok\n"
                                   "    2: optional string message\n"
                                   "}\n"
                                   "service Meta {\n"
                                   "    HealthStatus health()\n"
                                   "}\n";
    tch_error err;
    int rc = c->health ? ((*idl_path = strdup(c->thrift_path)) ? 0 : TCH_ENOMEM)
                       : thrift_file(c, idl_path);
    if (rc)
        return rc == TCH_ENOMEM ? tcurl_fail(EXIT_INTERNAL, "out of memory") : rc;
    rc = c->health ? tch_thrift_load_string("meta.thrift", tch_slice_cstr(meta_idl), NULL, &r->idl, &err)
                   : tch_thrift_load(*idl_path, &r->idl, &err);
    return rc ? tcurl_fail(EXIT_USAGE, "--thrift: %s", err.msg) : 0;
}

static int find_method(const tcurl_cli *c, tcurl_request *r) {
    tch_error err;
    tch_slice svc, meth;
    if (tch_thrift_arg1_split(tch_slice_cstr(c->endpoint), &svc, &meth, &err) != 0)
        return tcurl_usage_error("ENDPOINT \"%s\": with --thrift it must be Service::method", c->endpoint);
    char *idl_path = NULL;
    int rc = load_idl(c, r, &idl_path);
    if (rc) {
        free(idl_path);
        return rc;
    }
    char *sname = tch_slice_strdup(svc), *mname = tch_slice_strdup(meth);
    const tch_thrift_service *s = sname ? tch_thrift_idl_find_service(r->idl, sname) : NULL;
    if (!sname || !mname)
        rc = tcurl_fail(EXIT_INTERNAL, "out of memory");
    else if (!s)
        rc = tcurl_fail(EXIT_USAGE, "--thrift %s: no service %s", idl_path, sname);
    else if (!(r->method = tch_thrift_service_find_method(s, mname)))
        rc = tcurl_fail(EXIT_USAGE, "--thrift %s: service %s has no method %s", idl_path, sname,
                        mname);
    else if (tch_thrift_method_check_supported(r->method, &err) != 0)
        rc = tcurl_fail(EXIT_USAGE, "--thrift %s: %s", idl_path, err.msg);
    /* the service's own name: "inc.Service" finds it, "Service::m" is what is served */
    else if (tch_thrift_arg1_join(tch_thrift_service_name(s), mname, &r->arg1, &err) != 0)
        rc = tcurl_fail(EXIT_USAGE, "ENDPOINT: %s", err.msg);
    free(sname);
    free(mname);
    free(idl_path);
    return rc;
}

static int encode_thrift(const tcurl_cli *c, tcurl_request *r) {
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
        rc = tcurl_fail(EXIT_USAGE, "%s: %s", what, err.msg);
    tch_buf_free(&text);
    json_decref(args);
    json_decref(empty);
    return rc;
}

/* ---- printing, per scheme ------------------------------------------------------------- */

static int print_json(const json_t *v) {
    char *s = tch_json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);
    if (!s)
        return tcurl_fail(EXIT_INTERNAL, "cannot print the answer as JSON");
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
        return tcurl_fail(EXIT_DECODE, "%s", err.msg);
    int rc = print_json(body);
    json_decref(body);
    return rc ? rc : res->code ? EXIT_APP_ERROR : EXIT_OK;
}

/* Node's tcurl/thrift shape: {"ok":true,"body":v} or
 * {"ok":false,"typeName":"<exception field>","body":{...}}. */
/* Not ok, with an exception this IDL does not declare (a newer server's):
 * the decoder skipped its field, so the result struct is empty. */
static int undeclared_exception(const tcurl_request *r, const tch_sync_response *res) {
    tch_thrift_value *v = NULL;
    if (res->code == 0 ||
        tch_thrift_decode(tch_thrift_method_result(r->method), tch_buf_slice(&res->arg3), &v, NULL))
        return 0;
    int empty = tch_thrift_value_struct_count(v) == 0;
    tch_thrift_value_free(v);
    return empty;
}

static int print_thrift_answer(const tcurl_request *r, const tch_sync_response *res) {
    json_t *result = NULL;
    tch_error err;
    if (undeclared_exception(r, res)) {
        fprintf(stderr, "tcurl: warning: call res code %u with no exception this IDL declares\n",
                res->code);
        json_t *out = json_pack("{s:b,s:s,s:n}", "ok", 0, "typeName", "unknown", "body");
        int rc = out ? print_json(out) : tcurl_fail(EXIT_INTERNAL, "out of memory");
        json_decref(out);
        return rc ? rc : EXIT_APP_ERROR;
    }
    if (tch_thrift_method_result_to_json(r->method, tch_buf_slice(&res->arg3), &result, &err))
        return tcurl_fail(EXIT_DECODE, "answer arg3 is not a %s result: %s",
                    tch_thrift_method_name(r->method), err.msg);
    const char *field = json_object_size(result) == 1 ? json_object_iter_key(json_object_iter(result)) : NULL;
    if (!field) {
        json_decref(result);
        return tcurl_fail(EXIT_DECODE, "answer arg3: a result with %zu values, expected 1",
                    json_object_size(result));
    }
    int ok = strcmp(field, "success") == 0;
    json_t *out = ok ? json_pack("{s:b,s:O}", "ok", 1, "body", json_object_get(result, field))
                     : json_pack("{s:b,s:s,s:O}", "ok", 0, "typeName", field, "body",
                                 json_object_get(result, field));
    int rc = out ? print_json(out) : tcurl_fail(EXIT_INTERNAL, "out of memory");
    json_decref(out);
    json_decref(result);
    if (!rc && ok != (res->code == 0)) /* say so, but print what came */
        fprintf(stderr, "tcurl: warning: call res code %u with a %s result\n", res->code,
                ok ? "success" : "exception");
    return rc ? rc : ok ? EXIT_OK : EXIT_APP_ERROR;
}

/* tcurl --health: "OK", or "NOT OK" with the service's message. */
static int print_health(const tcurl_request *r, const tch_sync_response *res) {
    json_t *result = NULL;
    tch_error err;
    if (tch_thrift_method_result_to_json(r->method, tch_buf_slice(&res->arg3), &result, &err))
        return tcurl_fail(EXIT_DECODE, "answer arg3 is not a Meta::health result: %s", err.msg);
    json_t *status = json_object_get(result, "success");
    json_t *ok = json_object_get(status, "ok"), *msg = json_object_get(status, "message");
    int rc = EXIT_OK;
    if (!json_is_boolean(ok))
        rc = tcurl_fail(EXIT_DECODE, "answer arg3: Meta::health gave no HealthStatus");
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
    return tcurl_fail(EXIT_CALL, "%s: %s (%s)", tch_proto_code_name(res->error_code),
                res->message && *res->message ? res->message : "no message",
                tch_strerror(res->status));
}

/* ---- the call ------------------------------------------------------------------------------ */

static int encode(const tcurl_cli *c, tcurl_request *r) {
    switch (c->scheme) {
    case SCHEME_JSON: return encode_json(c, r);
    case SCHEME_THRIFT: return encode_thrift(c, r);
    default: return encode_raw(c, r);
    }
}

tch_call_opts tcurl_call_opts(const tcurl_cli *c, const tcurl_request *r) {
    static const char *const as[] = {"raw", "json", "thrift"};
    return (tch_call_opts){
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
        .routing_delegate = c->routing_delegate,
        .borrow_args = 1, /* r outlives every call */
    };
}

static int call_and_print(const tcurl_cli *c, tch_sync_client *client, const tcurl_request *r) {
    tch_call_opts o = tcurl_call_opts(c, r);
    tch_sync_response res;
    tch_error err;
    if (tch_sync_call(client, &o, &res, &err) != 0)
        return tcurl_fail(err.code == TCH_ENOMEM ? EXIT_INTERNAL : EXIT_USAGE, "%s", err.msg);
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
    tcurl_cli c;
    int rc = tcurl_parse_cli(argc, argv, &c);
    if (rc)
        return rc < 0 ? EXIT_OK : rc; /* -1: --help or --version printed */
    tcurl_request r = {0};
    rc = encode(&c, &r);
    tch_sync_client *client = NULL;
    if (!rc) {
        tch_channel_options copts = {0}; /* defaults */
        tch_error err;
        rc = tch_sync_client_new(c.caller, &copts, &client, &err)
                 ? tcurl_fail(EXIT_INTERNAL, "%s", err.msg)
                 : add_peers(tch_sync_client_channel(client), &c);
    }
    if (!rc)
        rc = c.load ? tcurl_load_run(&c, client, &r) : call_and_print(&c, client, &r);
    fflush(stdout);
    tch_sync_client_free(client);
    tch_buf_free(&r.arg1);
    tch_buf_free(&r.arg2);
    tch_buf_free(&r.arg3);
    tch_thrift_idl_free(r.idl);
    return rc;
}
