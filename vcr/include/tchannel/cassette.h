/* Cassettes: recorded TChannel calls in YAML, with tchannel-python's
 * `tchannel.testing.vcr` format and record-mode semantics.
 *
 * Pure data: no sockets, no event loop. The in-process VCR (channel outbound
 * hook) and tchannel-mock both drive a cassette the same way:
 *
 *     tch_cassette_lookup(c, &call, &d, &err)
 *       REPLAY -> answer with d.interaction (already marked played)
 *       RECORD -> slot = tch_cassette_record_begin(...); make the real call;
 *                 tch_cassette_record_finish(...) / _finish_error / _abort
 *       error  -> TCH_ENOTFOUND, err->msg explains, d.near_miss is structured
 *     tch_cassette_finish(c, &err)   (save if anything new; strict check)
 *
 * Ownership: a tch_cassette owns every interaction; pointers returned by
 * tch_cassette_get/lookup stay valid until tch_cassette_free. Input views
 * (tch_cassette_call, tch_cassette_reply) are borrowed for the duration of
 * the call only. Not thread-safe: one cassette, one thread (the loop's). */
#ifndef TCHANNEL_CASSETTE_H
#define TCHANNEL_CASSETTE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <tchannel/common.h>
#include <tchannel/thrift.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; the rest of the library is hidden */

/* ---- data model -------------------------------------------------------- */

/* Numbering is the cassette's (proxy.thrift ArgScheme). */
typedef enum tch_cassette_scheme {
    TCH_CASSETTE_RAW = 0,
    TCH_CASSETTE_JSON = 1,
    TCH_CASSETTE_THRIFT = 2,
} tch_cassette_scheme;

/* The scheme a call's "as" transport header names (raw for anything the
 * cassette format has no number for, and for an empty value). */
tch_cassette_scheme tch_cassette_scheme_of_as(tch_slice as);

/* Record modes, exactly tchannel-python's RecordMode. */
typedef enum tch_cassette_mode {
    TCH_CASSETTE_ONCE = 0,     /* file missing: record all; present (even empty): replay only */
    TCH_CASSETTE_NEW_EPISODES, /* replay what matches, record (append) the rest */
    TCH_CASSETTE_NONE,         /* replay only */
    TCH_CASSETTE_ALL,          /* never replay; the file is rewritten with this run's calls */
} tch_cassette_mode;

typedef struct tch_cassette_kv {
    tch_buf key;
    tch_buf value;
} tch_cassette_kv;

/* A recorded request; every buffer owned by the interaction. */
typedef struct tch_cassette_request {
    tch_buf service;  /* serviceName */
    tch_buf endpoint; /* arg1 */
    tch_buf headers;  /* arg2, exact bytes */
    tch_buf body;     /* arg3, exact bytes */
    tch_cassette_scheme scheme; /* argScheme */
    tch_buf host_port;          /* hostPort (never matched by default) */
    tch_buf *known_peers;       /* knownPeers (never matched) */
    size_t n_known_peers;
    tch_cassette_kv *transport_headers; /* transportHeaders, in order */
    size_t n_transport_headers;
} tch_cassette_request;

typedef struct tch_cassette_response {
    int code;        /* 0 ok, 1 application error */
    tch_buf headers; /* arg2 */
    tch_buf body;    /* arg3 */
} tch_cassette_response;

/* Our extension: the call was answered by a protocol error frame, or (local)
 * its caller's own deadline passed first. */
typedef struct tch_cassette_error_frame {
    uint8_t code;  /* wire code: 0x01 timeout ... 0xff fatal */
    char *message; /* owned, NUL-terminated */
    bool local;    /* `local: true` (code timeout only): no frame came; the VCR
                      replays it as TCH_ETIMEOUT, which is never retried */
} tch_cassette_error_frame;

typedef struct tch_cassette_interaction {
    tch_cassette_request request;
    bool is_error;                  /* `error` holds the answer, `response` is empty */
    tch_cassette_response response;
    tch_cassette_error_frame error;
    /* mock-server extensions (ignored by the in-process VCR) */
    bool has_delay;
    uint32_t delay_ms;              /* `delay`: wait before answering */
    bool has_fault;
    uint8_t fault_code;             /* `fault`: answer with this error frame instead */
    char *fault_message;            /* owned; may be NULL */
    size_t line;                    /* 1-based source line; 0 when recorded this run */
    struct tch_stub_info *stub;     /* stub extras (tchannel/stub.h), owned; NULL: exact */
} tch_cassette_interaction;

/* Error frame codes by cassette name: timeout cancelled busy declined
 * unexpected badRequest networkError unhealthy fatal. */
const char *tch_cassette_errcode_name(uint8_t code); /* NULL if unknown */
int tch_cassette_errcode_parse(const char *name, uint8_t *code); /* 0 or TCH_EINVAL */

/* ---- borrowed input views ---------------------------------------------- */

/* An outgoing call as the channel sees it. Everything is borrowed. */
typedef struct tch_cassette_call {
    tch_slice service;
    tch_slice endpoint;
    tch_slice headers; /* arg2 */
    tch_slice body;    /* arg3 */
    tch_cassette_scheme scheme;
    tch_slice host_port;
    const tch_slice *known_peers;
    size_t n_known_peers;
    const tch_kv *transport_headers;
    size_t n_transport_headers;
} tch_cassette_call;

typedef struct tch_cassette_reply {
    int code; /* 0 ok, 1 application error */
    tch_slice headers;
    tch_slice body;
} tch_cassette_reply;

/* ---- hooks ------------------------------------------------------------- */

/* Custom matcher: true when `incoming` may be answered by `recorded`.
 * Runs only on candidates the built-in matchers already accepted. */
typedef bool (*tch_cassette_match_cb)(const tch_cassette_request *incoming,
                                      const tch_cassette_request *recorded, void *ud);

typedef enum tch_cassette_redact_phase {
    TCH_CASSETTE_REDACT_MATCH = 0, /* an incoming request, before matching (resp NULL) */
    TCH_CASSETTE_REDACT_RECORD = 1 /* a new interaction, before it is stored/written;
                                      resp NULL when the answer is an error frame */
} tch_cassette_redact_phase;
/* May rewrite any buffer in place (tch_buf_reset + tch_buf_append). Returns
 * 0 or a negative TCH_E*: in the MATCH phase the call then fails with that
 * code; in the RECORD phase the interaction is not recorded (the call has
 * its answer already) and tch_vcr_eject returns the error. */
typedef int (*tch_cassette_redact_cb)(tch_cassette_redact_phase phase, tch_cassette_request *req,
                                      tch_cassette_response *resp, void *ud);

typedef enum tch_cassette_part {
    TCH_CASSETTE_REQUEST_HEADERS,
    TCH_CASSETTE_REQUEST_BODY,
    TCH_CASSETTE_RESPONSE_HEADERS,
    TCH_CASSETTE_RESPONSE_BODY,
} tch_cassette_part;
/* Thrift renderer used when saving: return a malloc'd JSON text rendering of
 * `bytes` (written as `bodyDecoded`/`headersDecoded`, ignored on load), or
 * NULL to write only the exact bytes. `response_code` is meaningful for
 * response parts. */
typedef char *(*tch_cassette_render_cb)(tch_slice service, tch_slice endpoint,
                                        tch_cassette_scheme scheme, tch_cassette_part part,
                                        int response_code, tch_slice bytes, void *ud);

/* ---- Thrift IDL for explaining misses ---------------------------------- */

/* IDL loaded from one .thrift file, or from a folder of them. In a folder,
 * as with Uber's tcurl -t, NAME.thrift describes the TChannel service NAME;
 * a request to a service without its own file is looked up (by the Service
 * of "Service::method") in every file, in name order. A lone file serves
 * every service. Owns its IDL. */
typedef struct tch_cassette_thrift tch_cassette_thrift;

/* Loads path (a file with its includes, or every *.thrift file in a folder).
 * Errors name path:line:column. Returns 0, TCH_ENOTFOUND (no such path, or
 * a folder without .thrift files), TCH_EIO, TCH_EPARSE (tch_thrift_load's
 * errors), TCH_EINVAL, TCH_ENOMEM. */
int tch_cassette_thrift_load(const char *path, tch_cassette_thrift **out, tch_error *err);
void tch_cassette_thrift_free(tch_cassette_thrift *t);
/* The method "Service::method" names for TChannel service `service`, or
 * NULL. Borrowed from t. */
const tch_thrift_method *tch_cassette_thrift_method(const tch_cassette_thrift *t, tch_slice service,
                                                   tch_slice endpoint);

/* ---- opening ----------------------------------------------------------- */

typedef struct tch_cassette tch_cassette;

#define TCH_CASSETTE_ENV_MODE "TCHANNEL_VCR_RECORD_MODE"

typedef struct tch_cassette_options {
    tch_cassette_mode mode;     /* default ONCE */
    bool no_env_override;        /* ignore TCHANNEL_VCR_RECORD_MODE */
    bool allow_playback_repeats; /* after every match was played, replay the last again */
    bool strict;                 /* tch_cassette_finish fails if interactions are unused */
    /* Built-in matchers by name (serviceName endpoint headers body argScheme
     * hostPort transportHeaders); NULL = the default five. */
    const char *const *matchers;
    size_t n_matchers;
    tch_cassette_redact_cb redact;
    void *redact_ud;
    tch_cassette_render_cb render;
    void *render_ud;
    /* IDL that decodes thrift bodies when a miss is explained, so the message
     * names the fields that differ instead of showing bytes. Borrowed: each
     * must outlive the cassette and its reloads. Either, both or neither;
     * `thrift` is asked first. Matching itself never depends on them. */
    const tch_cassette_thrift *thrift;
    const tch_thrift_idl *thrift_idl;
    /* Where the cassette gets its memory (tchannel/common.h): NULL, the C
     * library. The struct is copied; its user_data must outlive the
     * cassette (and a journal of it). The cassette keeps on it its
     * interactions, their buffers (which carry it as tch_buf.alloc), the
     * index, stubs (but their rules), scenarios, and the journal; a lookup's
     * normalized fields are on it too. Strings it hands out say how to
     * free them. Not covered: stub rules (tch_stub_rules, on the C library
     * and jansson), also those the cassette builds itself for a recording
     * matched by rules (one holding TCH_STUB_REDACTED); a lookup's
     * scratch for a json or thrift request's canonical JSON (jansson's
     * values and json_dumps text, C library copies, freed before it
     * returns); jansson's json_t values and texts; libyaml's parser and
     * emitter; the Thrift decoder's values; a decision's near-miss texts
     * and a render callback's strings (free()d). An allocator missing a
     * callback is TCH_EINVAL. The VCR sets it to its channel's. */
    const tch_allocator *allocator;
} tch_cassette_options;

void tch_cassette_options_init(tch_cassette_options *o);

/* Parses once/new_episodes/none/all, case-insensitive. Returns 0 or
 * TCH_EINVAL naming the modes. */
int tch_cassette_mode_parse(const char *s, tch_cassette_mode *out, tch_error *err);
const char *tch_cassette_mode_name(tch_cassette_mode m);

/* Loads `path` (missing file = new, empty cassette that may record under
 * ONCE; an existing empty file = existing empty cassette). Errors name
 * file:line:column. opts may be NULL (defaults). Returns 0, TCH_EINVAL (a
 * NULL argument, an unknown matcher or TCHANNEL_VCR_RECORD_MODE value, a
 * path that is not a regular file),
 * TCH_EPARSE (bad YAML or cassette fields), TCH_ETOOBIG, TCH_EIO (the file
 * or its journal cannot be read), TCH_ENOMEM. */
int tch_cassette_open(const char *path, const tch_cassette_options *opts, tch_cassette **out,
                      tch_error *err);
/* Loads from memory; `name` is used in messages. The cassette counts as
 * existing; it has no path, so tch_cassette_save fails (use _emit).
 * Returns as tch_cassette_open. */
int tch_cassette_open_memory(const char *name, const void *data, size_t len,
                             const tch_cassette_options *opts, tch_cassette **out,
                             tch_error *err);
/* Re-reads old's path into a new object with old's options and custom
 * matchers; old is untouched (swap on success, keep old on failure).
 * Returns as tch_cassette_open. */
int tch_cassette_reload(const tch_cassette *old, tch_cassette **out, tch_error *err);
/* The same in another record mode, as one run: a cassette that did not
 * exist when the run began keeps recording in mode ONCE, and what a run in
 * mode ALL wrote stays its own. */
int tch_cassette_reload_as(const tch_cassette *old, tch_cassette_mode mode, tch_cassette **out,
                           tch_error *err);
void tch_cassette_free(tch_cassette *c);

/* Adds a custom matcher (name is for messages). Returns 0, TCH_EINVAL (no
 * fn), TCH_ENOMEM. */
int tch_cassette_add_matcher(tch_cassette *c, const char *name, tch_cassette_match_cb fn,
                             void *ud, tch_error *err);

/* ---- state ------------------------------------------------------------- */

tch_cassette_mode tch_cassette_get_mode(const tch_cassette *c); /* after env override */
const char *tch_cassette_name(const tch_cassette *c);           /* path or memory name */
bool tch_cassette_existed(const tch_cassette *c);
bool tch_cassette_can_record(const tch_cassette *c);
size_t tch_cassette_count(const tch_cassette *c); /* interactions incl. pending slots */
/* NULL for an out-of-range index or a slot not finished yet. */
const tch_cassette_interaction *tch_cassette_get(const tch_cassette *c, size_t index);
/* true for a recording slot still waiting for its answer; false otherwise
 * (an interaction, an aborted slot that will never be written, or out of
 * range). */
bool tch_cassette_is_pending(const tch_cassette *c, size_t index);
unsigned tch_cassette_play_count_of(const tch_cassette *c, size_t index);
size_t tch_cassette_play_count(const tch_cassette *c); /* total replays */
bool tch_cassette_all_played(const tch_cassette *c);   /* every replayable one played */
bool tch_cassette_dirty(const tch_cassette *c);          /* recorded, not saved yet */
/* TCH_ESTATE listing unused interactions ("#3 svc::ep (raw) \"hi\"") or 0. */
int tch_cassette_check_unused(const tch_cassette *c, tch_error *err);
/* Sets every play count back to zero, so the cassette answers as if just
 * opened (vcrpy's Cassette.rewind). Touches nothing else: no disk access,
 * what this run recorded stays as it was, pending slots stay pending. */
void tch_cassette_rewind(tch_cassette *c);

/* ---- lookup ------------------------------------------------------------ */

typedef enum tch_cassette_action {
    TCH_CASSETTE_ACT_REPLAY = 0,
    TCH_CASSETTE_ACT_RECORD,
    TCH_CASSETTE_ACT_ERROR,
} tch_cassette_action;

#define TCH_CASSETTE_MAX_FIELDS 8

/* How a diff's recorded/requested texts read. */
typedef enum tch_cassette_diff_form {
    TCH_CASSETTE_DIFF_BYTES = 0, /* escaped preview around the first differing byte
                                    (messages quote it) */
    TCH_CASSETTE_DIFF_JSON,      /* JSON text of the values at `path` ("(absent)" for a
                                    key or element one side lacks) */
    TCH_CASSETTE_DIFF_NAME,      /* a plain name, e.g. argScheme's "raw", "json", "thrift" */
} tch_cassette_diff_form;

typedef struct tch_cassette_field_diff {
    const char *field; /* static matcher name, e.g. "body" */
    char *recorded;    /* the recorded side, as `form` says (owned) */
    char *requested;   /* same for the incoming request (owned) */
    size_t offset;     /* BYTES: first differing byte (of the normalized form); else 0 */
    tch_cassette_diff_form form;
    char *decoded_as;  /* JSON form: what read the bytes: "json", "thrift" (headers), or
                          "Service::method args" (a body through the IDL); else NULL (owned) */
    char *path;        /* JSON form: first place that differs (key, items[2].name,
                          ["a.b"]); NULL when the whole values differ (owned) */
    const char *note;  /* static remark or NULL, e.g. "requested is not JSON" */
} tch_cassette_field_diff;

/* Why a request found no recorded interaction. */
typedef struct tch_cassette_near_miss {
    bool found;             /* false: the cassette holds nothing to compare with */
    size_t index;           /* nearest interaction (0-based) */
    size_t line;            /* its source line, 0 if recorded this run */
    size_t matched_fields;  /* how many of total_fields agree */
    size_t total_fields;
    bool already_played;    /* every field matched: it was used up */
    tch_cassette_field_diff diffs[TCH_CASSETTE_MAX_FIELDS];
    size_t n_diffs;
    char *custom_rejected;  /* name of the custom matcher that refused, or NULL (owned) */
    /* the nearest is a stub (tchannel/stub.h): its id (NULL if it has none)
     * and the first rule it failed, "body $.user.id: expected 42, got 41" */
    bool is_stub;
    char *stub_id;          /* owned */
    char *rule_failed;      /* owned */
} tch_cassette_near_miss;

typedef struct tch_cassette_decision {
    tch_cassette_action action;
    size_t index;                              /* REPLAY */
    const tch_cassette_interaction *interaction; /* REPLAY: borrowed */
    tch_cassette_near_miss near_miss;          /* ERROR */
} tch_cassette_decision;

/* Decides what to do with an outgoing call. REPLAY marks the interaction
 * played (and moves its stub's scenario). Returns 0 for REPLAY/RECORD;
 * TCH_ENOTFOUND with action ERROR, err naming mode, cassette, request and
 * nearest interaction; other negative codes, with action ERROR, for
 * failures (TCH_EINVAL for a NULL argument, TCH_ENOMEM, a redactor's
 * error): nothing was played then and no scenario moved. Always release
 * with tch_cassette_decision_clear. */
int tch_cassette_lookup(tch_cassette *c, const tch_cassette_call *call, tch_cassette_decision *out,
                        tch_error *err);
void tch_cassette_decision_clear(tch_cassette_decision *d);
/* {"index":..,"line":..,"matched":..,"total":..,"alreadyPlayed":..,
 *  "diffs":[{"field":..,"form":"bytes"|"json"|"name","recorded":..,"requested":..,
 *            "offset":.., "decodedAs":.., "path":.., "note":..}]}
 * (the last three only when set); NULL on ENOMEM. */
json_t *tch_cassette_near_miss_to_json(const tch_cassette_near_miss *nm);

/* ---- recording --------------------------------------------------------- */

typedef size_t tch_cassette_slot;

/* Reserves the next place in the cassette (saved order = issue order).
 * The record functions return 0, TCH_ESTATE (begin: the mode may not
 * record; the others: a slot that is not pending), TCH_EINVAL (a response
 * code other than 0 or 1), TCH_ENOMEM, or the redactor's error (finish:
 * the interaction is then not kept). */
int tch_cassette_record_begin(tch_cassette *c, const tch_cassette_call *call,
                              tch_cassette_slot *slot, tch_error *err);
int tch_cassette_record_finish(tch_cassette *c, tch_cassette_slot slot,
                               const tch_cassette_reply *reply, tch_error *err);
int tch_cassette_record_finish_error(tch_cassette *c, tch_cassette_slot slot, uint8_t code,
                                     const char *message, tch_error *err);
/* The caller's own deadline passed before any answer: a timeout, `local`. */
int tch_cassette_record_finish_timeout(tch_cassette *c, tch_cassette_slot slot,
                                       const char *message, tch_error *err);
/* The call never finished: the slot is dropped from the file. */
int tch_cassette_record_abort(tch_cassette *c, tch_cassette_slot slot, tch_error *err);

/* ---- writing ----------------------------------------------------------- */

/* Writes the YAML document to out (appends). Returns 0, TCH_ENOMEM. */
int tch_cassette_emit(const tch_cassette *c, tch_buf *out, tch_error *err);
/* Atomic save (temp file in the same directory, fsync, rename, fsync dir)
 * if anything new was recorded; otherwise writes nothing and returns 0.
 * On 0 the recordings are replayable; on failure the file does not hold
 * them and they stay unsaved (save again, or drop them). Returns 0,
 * TCH_EINVAL (a cassette without a path), TCH_EIO (naming the file and
 * why), TCH_ENOMEM. */
int tch_cassette_save(tch_cassette *c, tch_error *err);
/* Save, then (strict) tch_cassette_check_unused: their codes. */
int tch_cassette_finish(tch_cassette *c, tch_error *err);

/* ---- the journal: a save whose cost does not grow with the cassette ---- */

/* tch_cassette_save rewrites the whole file. A writer that must make each
 * recording durable before answering (tchannel-mock) uses a journal
 * instead: each commit appends the recordings finished since the last one
 * to PATH.journal as one checksummed record and fdatasyncs it: one write
 * and one sync per batch, whatever the cassette's size. A fold writes the
 * whole cassette to PATH (atomic rename, as tch_cassette_save) and removes
 * the journal; until then PATH and PATH.journal together are the cassette.
 * tch_cassette_open reads both (a torn last record, left by a crash in the
 * middle of a write, is dropped), so every reader sees every committed
 * recording; tch_cassette_save folds a journal it finds beside the file.
 * The file alone is a tchannel-python cassette once folded. */
typedef struct tch_cassette_journal tch_cassette_journal;

/* Makes j the journal of c (a cassette opened from a path; j borrows c,
 * which must outlive it). Recovers first: a journal left by a run that did
 * not finish is folded into the file now, and temp files of saves that
 * were interrupted (only ours, of processes that are gone) are removed.
 * *note (if note is not NULL) gets a sentence saying what recovery did, or
 * NULL when there was nothing to do; it is the cassette's allocator's:
 * free it with tch_free_with(opts.allocator, note) (free() without one).
 * The journal keeps a copy of the allocator, so it may be freed after c. Returns 0, TCH_EINVAL (a
 * cassette without a path), TCH_EIO, TCH_EPARSE (a journal record that
 * is not a torn tail), TCH_ESTATE, TCH_ENOMEM. */
int tch_cassette_journal_open(tch_cassette *c, tch_cassette_journal **out, char **note,
                              tch_error *err);
/* Appends every recording finished since the last commit and syncs it. On
 * 0 they are durable and, as after tch_cassette_save, replayable. On
 * failure the journal is cut back to its last whole record and the
 * recordings stay unsaved (tch_cassette_dirty): commit again, fold, or drop
 * them with tch_cassette_record_drop. Returns 0, TCH_EIO, TCH_ETOOBIG,
 * TCH_ESTATE, TCH_ENOMEM. */
int tch_cassette_journal_commit(tch_cassette_journal *j, tch_error *err);
/* Writes the whole cassette to its file (atomic) and removes the journal.
 * Does nothing when there is neither a journal nor an unsaved recording.
 * Returns as tch_cassette_save. */
int tch_cassette_journal_fold(tch_cassette_journal *j, tch_error *err);
/* Removes the journal without folding it, for a caller that saved the
 * cassette elsewhere (tchannel-mock's PATH.conflict.yaml). */
void tch_cassette_journal_discard(tch_cassette_journal *j);
/* Recordings committed to the journal and not folded yet, and the
 * journal's size in bytes (a writer folds when it has grown enough). */
size_t tch_cassette_journal_pending(const tch_cassette_journal *j);
size_t tch_cassette_journal_bytes(const tch_cassette_journal *j);
/* Frees j; the journal file stays for the next open to fold. */
void tch_cassette_journal_free(tch_cassette_journal *j);
/* A finished recording that could not be saved is given up: it is never
 * written (its caller was told so). TCH_ESTATE unless the slot is finished
 * and unsaved. Returns 0 or TCH_ESTATE. */
int tch_cassette_record_drop(tch_cassette *c, tch_cassette_slot slot, tch_error *err);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
