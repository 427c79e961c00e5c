/* tchannel-mock internals: one `mock` context owns everything (no globals).
 *
 *   main.c      command line -> mock_config; start-up, run, shutdown order
 *   store.c     the loaded cassettes (open, reload, unload, mode change)
 *   serve.c     the channel's fallback handler: lookup, replay, delay, fault, miss
 *   record.c    record-through: forward to the upstream, record, save
 *   watch.c     poll cassette files (mtime + size) and reload on change
 *   journal.c   bounded ring of received requests
 *   admin.c     HTTP admin API (evhttp + jansson)
 *   hyperbahn.c answer Hyperbahn advertise calls; advertise ourselves
 *   relay.c     relay calls by service name to advertised or given instances
 *   log.c       stderr lines
 *   text.c      any bytes as a JSON string (for paths, messages, names)
 *
 * Everything runs on one event_base; nothing here is thread-safe. */
#ifndef TCH_MOCK_H
#define TCH_MOCK_H

#include <tchannel/cassette.h>
#include <tchannel/channel.h>
#include <tchannel/trace.h>

#include "intmap.h"

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

struct event;
struct event_base;
struct evhttp;

/* ---- configuration (main.c) --------------------------------------------- */

typedef struct mock_strv {
    char **v;
    size_t n;
} mock_strv;

int mock_strv_push(mock_strv *sv, const char *s);
void mock_strv_free(mock_strv *sv);

typedef struct mock_config {
    const char *host;       /* default 127.0.0.1 */
    int port;               /* 0: ephemeral */
    const char *admin_host; /* default 127.0.0.1 */
    int admin_port;         /* -1: no admin API */
    tch_cassette_mode mode;
    int allow_repeats;
    int watch;               /* poll files for changes */
    uint32_t watch_ms;
    int verbose;
    size_t journal_size;
    size_t max_stubs;        /* --max-stubs: run-time stubs kept at once */
    size_t max_ad_services;  /* --max-advertised-services: services advertised at once */
    size_t max_ad_instances; /* --max-advertised-instances: (service, host:port) ads at once */
    size_t max_ads_per_peer; /* --max-ads-per-peer: services one host:port may advertise */
    size_t journal_bytes;   /* --journal-bytes: the journal's byte budget */
    int verify_on_exit;     /* --verify-on-exit: exit 3 when GET /verify would fail */
    struct tch_cassette_redaction *redaction; /* --redact-*: what recordings must not keep */
    uint32_t grace_ms; /* how long SIGTERM waits for in-flight recordings */
    int record_failure_answer; /* --record-failure=answer: a caller whose recording could
                                  not be saved still gets the upstream's answer */
    const char *record_to;
    const char *record_dir; /* --record-to DIR/: each service records into DIR/<service>.yaml */
    mock_strv upstreams;
    mock_strv service_upstreams; /* --upstream SERVICE=HOST:PORT, as given (relay.c) */
    mock_strv upstream_routers;  /* --upstream-router HOST:PORT (relay.c) */
    int relay;                   /* --relay: in mode none, misses go to a live instance */
    mock_strv advertise_to;
    mock_strv advertise_services;
    mock_strv matchers; /* empty: the cassette library's default five */
    const char *trace_to;        /* --trace-to: Zipkin URL for our server spans, or NULL */
    const char *trace_file;      /* --trace-file: JSON-lines file for them, or NULL */
    const char *thrift_path;     /* --thrift: IDL file or folder, or NULL */
    tch_cassette_thrift *thrift; /* loaded from it: explains thrift misses field by field */
    mock_strv paths;    /* cassette files after directory expansion */
    mock_strv inputs;   /* the cassettes and folders as given (their folders are roots) */
    mock_strv cassette_roots;      /* --cassette-root: more folders the admin API may use */
    const char *admin_token_file;  /* NULL: no authentication */
    const char *admin_socket;      /* a Unix socket path instead of a TCP port */
    uint32_t admin_timeout_ms;     /* a request must arrive whole within this */
    size_t admin_max_conns;        /* concurrent admin connections; more are closed */
    int exit_on_stdin_eof;         /* shut down as on SIGTERM when stdin ends */
    /* The channel's connection and memory limits (zero: the library's
     * defaults); its log hook is set by main.c */
    tch_channel_options limits;
} mock_config;

/* ---- loaded cassettes (store.c) ------------------------------------------ */

/* What a file looked like: any change of content, mode or inode shows. */
typedef struct mock_file_sig {
    int exists;
    int64_t mtime_ns, ctime_ns;
    off_t size;
    ino_t ino;
} mock_file_sig;

typedef struct mock_cassette {
    char *path;
    tch_cassette *c;
    int record_target;
    mock_file_sig known;  /* the file as we last read or wrote it: c holds it */
    mock_file_sig failed; /* the file as a load failed on it (reported once) */
    int moved_aside; /* the last save went to PATH.conflict.yaml (the file was edited) */
    char *load_error;     /* last failed (re)load, NULL when the last one worked */
    uint64_t loaded_at_ms;
    unsigned reloads;
    size_t pending;       /* recordings in flight into c: c must not be swapped */
    tch_cassette_journal *journal; /* PATH.journal: recordings committed, not folded yet */
} mock_cassette;

typedef struct mock_store {
    mock_cassette **items;
    size_t n, cap;
} mock_store;

/* ---- journal (journal.c) ------------------------------------------------- */

typedef enum mock_outcome {
    MOCK_REPLAYED = 0,
    MOCK_RECORDED,     /* forwarded upstream and recorded */
    MOCK_UNMATCHED,    /* miss: BadRequest */
    MOCK_FAILED,       /* could not be served (e.g. upstream down, no memory) */
    MOCK_HYPERBAHN,    /* Hyperbahn's work: an advertise answered, a call relayed */
} mock_outcome;

typedef struct mock_journal_entry {
    uint64_t seq;
    uint64_t time_ms; /* wall clock */
    char *service, *endpoint; /* truncated copies */
    char *peer;      /* the caller's socket address, NULL when not known */
    char *announced; /* the host:port it announced in init (0.0.0.0:0: it does not listen) */
    int scheme;
    mock_outcome outcome;
    char *cassette; /* path, or NULL */
    long index;     /* interaction index, -1 when none */
    char *message;  /* miss or failure message, or NULL */
    json_t *near_miss;
    tch_trace trace; /* the request's tracing ids, when has_trace */
    int has_trace;
    uint8_t *req;                /* the request's transport headers, arg2 and arg3 in one
                                    allocation (journal.c reads it), or NULL */
    size_t arg2_len, arg3_len, n_theaders;
    size_t bytes;                /* counted against the byte budget */
    int cut;                     /* arg2/arg3 left out: larger than the whole budget */
    char *stub_id;               /* the id of the stub that answered, or NULL */
} mock_journal_entry;

typedef struct mock_journal {
    mock_journal_entry *ring;
    size_t cap, start, n;
    uint64_t next_seq;      /* seq numbers go on across clears */
    uint64_t total, dropped; /* since the last clear: added, and pushed out of the ring */
    tch_channel *ch;         /* the serving channel: requests' trace ids (journal.c) */
    uint64_t await_seq;      /* an entry added outside a handler takes the ids of the
                                answer sent next; 0: none waits */
    size_t bytes, max_bytes; /* held, and the budget (--journal-bytes) */
    uint64_t unmatched;      /* misses since the last clear, dropped ones too */
    const tch_cassette_thrift *thrift; /* decodes thrift bodies (--thrift), or NULL */
    const struct mock *owner;          /* its cassettes and stubs: names the stub that answered */
} mock_journal;

int mock_journal_init(mock_journal *j, size_t cap, size_t max_bytes);
void mock_journal_free(mock_journal *j);
void mock_journal_clear(mock_journal *j);
/* Gives each entry the trace ids of its request (an event hook on ch). */
int mock_journal_watch(mock_journal *j, tch_channel *ch, tch_error *err);
/* Takes ownership of near_miss (may be NULL). Strings are copied. */
void mock_journal_add(mock_journal *j, tch_slice service, tch_slice endpoint, const char *peer,
                      int scheme, mock_outcome outcome, const char *cassette, long index,
                      const char *message, json_t *near_miss);
/* The same for a request answered outside its handler (a recording). */
void mock_journal_add_from(mock_journal *j, tch_inbound *in, mock_outcome outcome,
                           const char *cassette, long index, const char *message);
/* Which entries a journal query wants: exact service and endpoint (NULL:
 * any), one outcome (-1: any), and only the newest `limit` (0: all). */
typedef struct mock_journal_query {
    const char *service, *endpoint;
    int outcome;
    size_t limit;
} mock_journal_query;

/* The entries q selects, oldest first; *matching counts every entry that
 * passed the filters, before the limit. */
json_t *mock_journal_to_json(const mock_journal *j, const mock_journal_query *q, size_t *matching);
/* Entries whose request passes rules (tchannel/stub.h): a JSON array of them,
 * or only *count when entries is NULL. A rule that fails to run is err. */
struct tch_stub_rules;
int mock_journal_find(const mock_journal *j, const struct tch_stub_rules *rules, size_t *count,
                      json_t *entries, tch_error *err);
const char *mock_outcome_name(mock_outcome o);
int mock_outcome_parse(const char *name, mock_outcome *out); /* 0, or TCH_EINVAL */

/* ---- the server context ---------------------------------------------------- */

typedef struct mock_delayed mock_delayed;
typedef struct mock_held mock_held;
typedef struct mock_recording mock_recording;
typedef struct tch_hyperbahn tch_hyperbahn;

typedef struct mock {
    struct event_base *base;
    mock_config *cfg;
    tch_channel *ch;       /* serves the cassettes */
    struct mock_trace *trace; /* span reporting (trace.c), or NULL */
    tch_channel *upstream; /* client channel for record-through, or NULL */
    tch_tracer *upstream_tracer; /* its CLIENT spans, with --trace-*; NULL without */
    struct event *ad_sweep; /* hyperbahn.c: drops lapsed ads */
    mock_store store;
    tch_cassette_mode mode;
    mock_journal journal;
    struct evhttp *http;
    char admin_host_port[300];  /* HOST:PORT, or unix:PATH */
    struct mock_admin *admin;   /* confinement, token, connection tracking (admin.c) */
    struct event *stdin_ev;     /* --exit-on-stdin-eof */
    /* record-through: the upstreams that refused a connection recently
     * (serve.c); while all are down, calls are answered without trying */
    uint64_t *upstream_down_until_ms;
    char upstream_down_why[256];
    struct event *watch_timer;
    struct event *sig_int, *sig_term, *grace_timer;
    mock_delayed *delayed;     /* answers waiting for their `delay` */
    tch_intmap held;           /* their bytes, one copy per answer (serve.c) */
    size_t held_bytes;         /* what those copies take: within --memory-budget */
    mock_recording *recordings; /* calls forwarded upstream, not answered yet */
    size_t n_recordings;
    struct event *commit_ev; /* commits the recordings waiting for disk, then answers */
    int shutting_down;
    int finishing;     /* finish() ran: saving and closing */
    int lost_recordings; /* a save failed at shutdown: exit 1 */
    json_t *advertised; /* serviceName -> {hostPort, cost, count, lastMs} */
    tch_cassette *stubs; /* run-time stubs (stubs.c), asked before the cassettes; NULL until
                            the first is added */
    size_t n_stubs;      /* live ones in it (--max-stubs caps them) */
    uint64_t delay_rng;  /* draws stubs' random delays (serve.c) */
    struct mock_relay *relay; /* relay.c: instances by service, their channels */
    tch_hyperbahn *hb;
    char *hb_status; /* result of our own first advertise */
    uint64_t started_ms;
    uint64_t calls, misses;
} mock;

/* ---- text.c -------------------------------------------------------------- */
/* A JSON string of bytes that need not be UTF-8: each byte that is not part
 * of a valid sequence becomes U+FFFD. NULL only on ENOMEM. */
json_t *mock_json_text(const char *s, size_t len);

/* ---- log.c --------------------------------------------------------------- */
void mock_log(const char *fmt, ...) TCH_PRINTF(1, 2);
uint64_t mock_now_ms(void); /* wall clock, for humans */
const char *mock_scheme_name(int scheme);

/* ---- store.c --------------------------------------------------------------- */
void mock_store_free(mock_store *s);
/* Opens path with the mock's options; appends it. Errors name file:line:column.
 * TCH_ESTATE when the file is loaded already (under any spelling of its
 * path): *out is then the loaded one. */
int mock_store_add(mock *m, const char *path, mock_cassette **out, tch_error *err);
mock_cassette *mock_store_find(mock_store *s, const char *path);
/* Unloads (saving anything recorded first). TCH_ESTATE while recordings are in flight. */
int mock_store_remove(mock *m, const char *path, tch_error *err);
/* Re-reads one cassette from disk; on failure keeps serving the old version and
 * sets load_error. TCH_ESTATE (deferred) while recordings are in flight. */
int mock_store_reload(mock *m, mock_cassette *mc, tch_error *err);
/* Re-opens every cassette under mode (play counts restart). */
int mock_store_set_mode(mock *m, tch_cassette_mode mode, tch_error *err);
/* Saves mc and remembers the file's new mtime/size (so the watcher does not
 * reload our own write). */
int mock_store_save(mock *m, mock_cassette *mc, tch_error *err);
int mock_store_save_all(mock *m);
mock_cassette *mock_store_target(mock_store *s);
/* Expands a path: a directory gives its *.yaml / *.yml files (sorted). */
int mock_expand_path(const char *path, mock_strv *out, tch_error *err);
/* The cassette's file against what we last read or wrote: the same (or
 * still absent), changed (by someone else), or gone since. */
typedef enum { MOCK_FILE_SAME, MOCK_FILE_CHANGED, MOCK_FILE_GONE } mock_file_state;
mock_file_state mock_file_check(const mock_cassette *mc);
/* Whether the file changed since we last read or wrote it and is not the
 * version a load already failed on: what the watcher reloads. */
int mock_file_worth_reloading(const mock_cassette *mc);
json_t *mock_cassette_to_json(const mock *m, const mock_cassette *mc);

/* ---- serve.c -------------------------------------------------------------- */
void mock_serve_handler(tch_inbound *in, void *ud);
/* Watches record-through calls (the upstream channel's outbound hook): an
 * upstream that cannot be reached is left alone for a while, and a call made
 * meanwhile is answered at once with Unexpected ("upstream ... is down"),
 * which callers do not retry blindly. */
int mock_upstream_gate_start(mock *m, tch_error *err);
void mock_upstream_gate_free(mock *m);
/* Answers every delayed call now (shutdown). */
void mock_serve_flush_delayed(mock *m);
int mock_scheme_of(const tch_inbound *in);

/* ---- record.c ------------------------------------------------------------- */
int mock_record_init(mock *m, tch_error *err);
/* Forwards the call upstream and records the answer into the target. The
 * inbound is answered later. */
void mock_record_call(mock *m, tch_inbound *in, mock_cassette *target,
                      const tch_cassette_call *call);
/* Aborts in-flight recordings (their clients get an error frame). */
void mock_record_shutdown(mock *m);

/* ---- watch.c ---------------------------------------------------------------- */
int mock_watch_start(mock *m);
/* Reloads every cassette whose file changed (force: all of them). Returns how
 * many reloaded. */
size_t mock_watch_check(mock *m, int force);

/* ---- admin.c ---------------------------------------------------------------- */
int mock_admin_start(mock *m, tch_error *err);

/* ---- verify.c: journal queries, verification, redactions over HTTP --------------- */
struct evhttp_request;
struct evkeyvalq;
/* 1 when path is one of verify.c's routes (answered, 405 included), else 0. */
int mock_verify_route(mock *m, struct evhttp_request *req, const char *path, int method,
                      struct evkeyvalq *query);
/* What GET /verify answers: {"ok", "notCalled": [..], "unmatched": N}. */
json_t *mock_verify_report(mock *m);
void mock_admin_free(mock *m);

/* ---- stubs.c: run-time stubs and scenarios over HTTP ------------------------------ */
struct evhttp_request;
/* 1 when path is one of stubs.c's routes (answered, 405 included), else 0. */
int mock_stubs_route(mock *m, struct evhttp_request *req, const char *path, int method);
void mock_stubs_free(mock *m);
/* admin.c: 0 when the admin API may write path; else the request was
 * answered (403 outside the roots, 404 for a missing folder). */
int mock_admin_check_write(mock *m, struct evhttp_request *req, const char *path);
/* admin.c: the real path of p, or for a file not there yet its folder's
 * real path joined with its name (a link is followed, as the cassette saver
 * writes through it). NULL with errno when neither can be had (no folder, a
 * dangling link: ENOENT). Free it. */
char *mock_real_target(const char *p);
/* Admin API answers, shared by admin.c, stubs.c and verify.c: body as
 * indented JSON (the reference is taken), or {"error": TEXT}. */
void mock_admin_reply(struct evhttp_request *req, int code, json_t *body);
void mock_admin_reply_error(struct evhttp_request *req, int code, const char *fmt, ...)
    TCH_PRINTF(3, 4);

/* ---- trace.c: our server spans (--trace-to, --trace-file) ------------------------- */
int mock_trace_start(mock *m, tch_error *err);
/* After the loop: the last spans are posted (a bounded wait) and the file closed. */
void mock_trace_finish(mock *m);
/* The CLIENT spans of a channel we call onward with (relay, record-through)
 * go to the same reporters: a tracer to free before ch, or NULL when not
 * tracing (or, logged, out of memory). */
tch_tracer *mock_trace_attach(mock *m, tch_channel *ch);

/* ---- hyperbahn.c ------------------------------------------------------------ */
int mock_hyperbahn_init(mock *m, tch_error *err);
void mock_hyperbahn_free(mock *m);

/* ---- relay.c: calls relayed by service name to an instance -------------------- */
int mock_relay_init(mock *m, tch_error *err);
/* Fails the relayed calls in flight (their callers get an error frame). */
void mock_relay_shutdown(mock *m);
void mock_relay_free(mock *m);
/* A call no cassette answered: 1 when relay.c took it (relayed, recorded into
 * the service's cassette, or declined for want of an instance), else 0. */
int mock_relay_take(mock *m, tch_inbound *in, const tch_cassette_call *call);
/* Where a recording of call goes: an instance of its service (or of its
 * routing delegate, rd), else a router. 1 and *via / *host_port set, or 0
 * (the caller keeps its --upstream). */
int mock_relay_route(mock *m, const tch_cassette_call *call, tch_channel **via,
                     const char **host_port);
/* The transport header every call we forward carries: a call that comes back
 * with it has gone round a loop (an instance or router that is this mock).
 * 16 bytes at most: the Node peer refuses a longer header key. */
#define MOCK_HOP_HEADER "tch-mock-hop"
/* A forwarded call carries at most this many transport headers in all: what
 * a TChannel peer accepts (nh is one byte; the Node peer refuses more than
 * 128, and so does our own channel). */
#define MOCK_FORWARD_MAX_HEADERS 128
/* A forwarded call's transport headers: as, re, sk and rd go to their
 * tch_call_opts fields (the library writes them), the others as they came,
 * plus our hop mark. The caller's re is passed on and is exactly what we
 * retry on (re "n": one try; "c": a connection error, busy or declined
 * tries another instance), within the caller's TTL. */
typedef struct mock_forward {
    tch_kv hs[MOCK_FORWARD_MAX_HEADERS];
    char as[256], sk[256], rd[256];
} mock_forward;
/* Fills o->headers, nheaders, arg_scheme, retry_on, shard_key and
 * routing_delegate from call (scheme: the "as" to send when the call had
 * none). 0; TCH_EINVAL with err naming a relay loop (the call carries our
 * hop mark: answer Declined); TCH_ETOOBIG when the forwarded call would
 * carry more than MOCK_FORWARD_MAX_HEADERS (the caller had 128, or 127
 * without cn: answer BadRequest, err names the rule). */
int mock_forward_headers(const tch_cassette_call *call, const char *scheme, tch_call_opts *o,
                         mock_forward *fw, tch_error *err);
/* host_port is where this mock listens: its port on a local, loopback or
 * unspecified address. Calls sent there would come back to us. */
int mock_is_self(mock *m, const char *host_port);
/* hyperbahn.c: host_port advertised (add) or unadvertised service. */
void mock_relay_advertised(mock *m, const char *service, const char *host_port, int add);

/* ---- main.c: orderly exit ---------------------------------------------------- */
void mock_begin_shutdown(mock *m);

#endif
