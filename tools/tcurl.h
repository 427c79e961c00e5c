/* tcurl's parts: the command line (tcurl_cli.c), one call and its printed
 * answer (tcurl.c), and the load mode (tcurl_load.c). docs/tcurl.md is the
 * user's side of all three. */
#ifndef TCURL_H
#define TCURL_H

#include <tchannel/channel.h>
#include <tchannel/sync.h>
#include <tchannel/thrift.h>

#include <stdint.h>
#include <stdio.h>

/* Exit codes (docs/tcurl.md). */
enum {
    EXIT_OK = 0,
    EXIT_APP_ERROR = 1, /* call answered with code 1 / a Thrift exception */
    EXIT_USAGE = 2,     /* bad command line or bad input (JSON, IDL, files) */
    EXIT_CALL = 3,      /* the call failed: error frame, timeout, network */
    EXIT_DECODE = 4,    /* an answer came but does not decode as the scheme says */
    EXIT_INTERNAL = 5,  /* out of memory and the like */
};

#define TCURL_MAX_LIST 64
#define TCURL_MAX_TRANSPORT_HEADERS 16

enum tcurl_scheme { SCHEME_RAW, SCHEME_JSON, SCHEME_THRIFT };

/* The command line, checked. Strings point into argv. */
typedef struct tcurl_cli {
    const char *service, *endpoint, *body;
    const char *peers[TCURL_MAX_LIST];
    size_t npeers;
    const char *routers[TCURL_MAX_LIST];
    size_t nrouters;
    const char *peerlist;
    enum tcurl_scheme scheme;
    int scheme_given;
    const char *thrift_path; /* -t as given: a file or a folder */
    const char *headers;     /* --headers: JSON object (json, thrift) */
    const char *arg2;        /* -2: raw bytes, or the headers for json/thrift; TEXT or @FILE */
    const char *arg3;        /* -3: instead of BODY; TEXT or @FILE */
    tch_kv th[TCURL_MAX_TRANSPORT_HEADERS]; /* --transport-header; slices into argv */
    size_t nth;
    uint32_t timeout_ms;
    const char *shard_key;
    const char *routing_delegate;
    int retry_on;
    int retry_limit;
    const char *caller;
    int health; /* --health: Meta::health over thrift, prints OK or NOT OK */
    /* Load mode (--rate): rounds of `rate` calls at once, `delay_ms` apart,
     * until `requests` calls were made or `time_ms` passed (0: no bound). */
    int load;
    uint32_t rate, delay_ms;
    uint64_t requests, time_ms;
} tcurl_cli;

/* What goes on the wire, and what is needed to read the answer. */
typedef struct tcurl_request {
    tch_buf arg1, arg2, arg3;
    tch_thrift_idl *idl;
    const tch_thrift_method *method;
} tcurl_request;

/* Parses and checks argv. Returns 0, or the exit code to leave with (the
 * message is printed); --help and --version print and return -1 (exit 0). */
int tcurl_parse_cli(int argc, char **argv, tcurl_cli *c);

/* "tcurl: <message>\n" on stderr; returns code. */
int tcurl_fail(int code, const char *fmt, ...) TCH_PRINTF(2, 3);
/* One line: "tcurl: <message>; try 'tcurl --help'"; returns EXIT_USAGE. */
int tcurl_usage_error(const char *fmt, ...) TCH_PRINTF(1, 2);

/* The call options for one call of r (slices into r and c). */
tch_call_opts tcurl_call_opts(const tcurl_cli *c, const tcurl_request *r);

/* Runs the load mode on the client's channel and prints the summary.
 * Returns the exit code. */
int tcurl_load_run(const tcurl_cli *c, tch_sync_client *client, const tcurl_request *r);

#endif
