/* The in-process VCR: the channel's outbound hook on one side, the cassette
 * library on the other. Each attempt of a call is looked up: replayed from
 * the cassette, forwarded and recorded, or failed when the mode forbids.
 * A recording is committed to the cassette's journal before its caller
 * hears the answer, so an answer the cassette could not keep reaches the
 * caller as an error, never as a success whose recording is gone.
 *
 * Two cassettes on one file: `cassette` answers lookups and holds only
 * what the file held, so this run's recordings are never replayed in the
 * same run (tchannel-python's rule); `store`, opened at the first
 * recording, takes the recordings, commits each to its journal (where it
 * becomes replayable to the store, which nobody asks) and writes the file
 * at eject. */
#include <tchannel/vcr.h>
#include <tchannel/vcr_adapt.h>

#include <tchannel/stub.h>

#include "alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A recording waiting for its answer. */
typedef struct pending {
    const tch_allocator *alloc; /* the channel's, which outlives it */
    struct tch_vcr *vcr; /* NULL once ejected: the answer is dropped */
    tch_cassette_slot slot;
    struct pending *prev, *next;
} pending;

/* On its channel's allocator (tch_channel_allocator), as are its
 * cassettes: the VCR is ejected before its channel is freed. */
struct tch_vcr {
    tch_channel *ch;
    tch_cassette *cassette;
    const tch_thrift_idl *idl;
    pending *pending;
    size_t npending;
    const tch_cassette_redaction *redaction; /* declarative, after user_redact */
    tch_cassette_redact_cb user_redact;
    void *user_redact_ud;
    tch_error record_err; /* the first recording that failed (code 0: none) */
    tch_cassette *store;           /* this run's recordings; NULL until the first */
    tch_cassette_journal *journal; /* the store's */
};

void tch_vcr_options_init(tch_vcr_options *o) {
    memset(o, 0, sizeof *o);
    tch_cassette_options_init(&o->cassette);
}

tch_cassette *tch_vcr_cassette(tch_vcr *v) { return v->cassette; }
size_t tch_vcr_pending(const tch_vcr *v) { return v->npending; }

/* ---- the channel's calls and answers as the cassette sees them ------------ */

static int has_as(const tch_kv *headers, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (tch_slice_eq_cstr(headers[i].key, "as"))
            return 1;
    return 0;
}

size_t tch_vcr_transport_headers(const tch_kv *headers, size_t nheaders,
                                 const char *default_as, tch_kv *kv) {
    size_t n = 0;
    if (!has_as(headers, nheaders))
        kv[n++] = (tch_kv){tch_slice_cstr("as"), tch_slice_cstr(default_as ? default_as : "raw")};
    for (size_t i = 0; i < nheaders; i++)
        kv[n++] = headers[i];
    return n;
}

/* The scheme the recorded "as" header names (kv as from tch_vcr_transport_headers). */
static tch_cassette_scheme scheme_of(const tch_kv *kv, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (tch_slice_eq_cstr(kv[i].key, "as"))
            return tch_cassette_scheme_of_as(kv[i].value);
    return tch_cassette_scheme_of_as(TCH_SLICE_NULL);
}

void tch_vcr_call_of_request(const tch_call_opts *req, tch_kv *kv, size_t cap,
                             tch_cassette_call *call) {
    memset(call, 0, sizeof *call);
    call->service = tch_slice_cstr(req->service);
    call->endpoint = req->endpoint;
    call->headers = req->arg2;
    call->body = req->arg3;
    call->host_port = tch_slice_cstr(req->host_port);
    size_t nh = cap && req->nheaders > cap - 1 ? cap - 1 : req->nheaders;
    call->n_transport_headers = cap ? tch_vcr_transport_headers(req->headers, nh,
                                                                req->arg_scheme, kv)
                                    : 0;
    call->transport_headers = kv;
    call->scheme = scheme_of(kv, call->n_transport_headers);
}

void tch_vcr_call_of_inbound(const tch_inbound *in, tch_kv *kv, size_t cap,
                             tch_cassette_call *call) {
    size_t n = cap ? cap - 1 : 0, have = tch_inbound_header_count(in);
    if (have < n)
        n = have;
    /* The call's headers at the end of kv; the shared reading then copies
     * them forward, after an implicit "as" (kv[0] is never read). */
    for (size_t i = 0; i < n; i++)
        kv[cap - n + i] = tch_inbound_header_at(in, i);
    memset(call, 0, sizeof *call);
    call->service = tch_inbound_service(in);
    call->endpoint = tch_inbound_endpoint(in);
    call->headers = tch_inbound_arg2(in);
    call->body = tch_inbound_arg3(in);
    call->host_port = tch_slice_cstr(tch_inbound_peer(in));
    if (cap == 0)
        return;
    call->n_transport_headers = tch_vcr_transport_headers(kv + cap - n, n, NULL, kv);
    call->transport_headers = kv;
    call->scheme = scheme_of(kv, call->n_transport_headers);
}

int tch_vcr_record_response(tch_cassette *c, tch_cassette_slot slot, const tch_response *res,
                            tch_error *err) {
    const char *msg = res->message ? res->message : "";
    int rc;
    if (res->status == 0) {
        tch_cassette_reply reply = {res->code, res->arg2, res->arg3};
        rc = tch_cassette_record_finish(c, slot, &reply, err);
    } else if (res->status == TCH_EREMOTE) {
        rc = tch_cassette_record_finish_error(c, slot, res->error_code, msg, err);
    } else if (res->status == TCH_ETIMEOUT) {
        rc = tch_cassette_record_finish_timeout(c, slot, msg, err);
    } else { /* the call never reached the service: nothing to keep, nothing lost */
        tch_cassette_record_abort(c, slot, NULL);
        return 0;
    }
    if (rc) /* no slot left pending */
        tch_cassette_record_abort(c, slot, NULL);
    return rc ? rc : 1;
}

/* ---- replaying ----------------------------------------------------------- */

static void replay(tch_outbound *call, const tch_cassette_interaction *it) {
    tch_response res = {.message = "", .peer = ""};
    if (it->is_error) { /* a local timeout ends the call as our own deadline did */
        res.status = it->error.local ? TCH_ETIMEOUT : TCH_EREMOTE;
        res.error_code = it->error.code;
        res.message = it->error.message ? it->error.message : "";
    } else {
        res.code = (uint8_t)it->response.code;
        res.arg2 = tch_buf_slice(&it->response.headers);
        res.arg3 = tch_buf_slice(&it->response.body);
    }
    tch_outbound_answer(call, &res);
}

static void fail_call(tch_outbound *call, int status, const char *why) {
    tch_response res = {.status = status, .error_code = TCH_PCODE_UNEXPECTED,
                        .message = why, .peer = ""};
    tch_outbound_answer(call, &res);
}

/* A stub whose response is a template (tchannel/stub.h): filled from this
 * call; a value the call lacks fails it, naming the stub and the value. */
static void replay_template(tch_vcr *v, tch_outbound *call, const tch_cassette_call *cc,
                            size_t index) {
    const tch_allocator *a = tch_channel_allocator(v->ch);
    tch_buf arg2 = {.alloc = a}, arg3 = {.alloc = a};
    tch_error err;
    int code = 0;
    if (tch_cassette_render_response(v->cassette, index, cc, &code, &arg2, &arg3, &err)) {
        fail_call(call, err.code, err.msg);
    } else {
        tch_response res = {.code = (uint8_t)code, .message = "", .peer = "",
                            .arg2 = tch_buf_slice(&arg2), .arg3 = tch_buf_slice(&arg3)};
        tch_outbound_answer(call, &res);
    }
    tch_buf_free(&arg2);
    tch_buf_free(&arg3);
}

/* ---- recording ------------------------------------------------------------ */

static void pending_unlink(tch_vcr *v, pending *p) {
    if (p->prev)
        p->prev->next = p->next;
    else
        v->pending = p->next;
    if (p->next)
        p->next->prev = p->prev;
    v->npending--;
}

/* What the service answered, for the message of a call whose recording
 * was lost (the answer itself is not passed on). */
static void describe_answer(const tch_response *res, char *out, size_t size) {
    if (res->status == 0)
        snprintf(out, size, "code %u, arg3 %zu bytes", res->code, res->arg3.len);
    else if (res->status == TCH_EREMOTE)
        snprintf(out, size, "error frame %s \"%.100s\"",
                 tch_cassette_errcode_name(res->error_code)
                     ? tch_cassette_errcode_name(res->error_code) : "?",
                 res->message ? res->message : "");
    else
        snprintf(out, size, "no answer: the call timed out");
}

/* Finishes the recording and commits it before the caller hears res: 0
 * lets res stand; otherwise the recording is given up and the caller gets
 * the error in why (eject reports the first such one too). */
static int on_recorded(const tch_response *res, tch_error *why, void *ud) {
    pending *p = ud;
    tch_vcr *v = p->vcr;
    tch_cassette_slot slot = p->slot;
    if (v)
        pending_unlink(v, p);
    tch__free(p->alloc, p);
    if (!v) /* ejected meanwhile: the recording was left out */
        return 0;
    tch_error err = {0};
    int rc = tch_vcr_record_response(v->store, slot, res, &err);
    if (rc == 1 && tch_cassette_journal_commit(v->journal, &err) != 0) {
        tch_cassette_record_drop(v->store, slot, NULL); /* never written: its caller is told */
        rc = err.code ? err.code : TCH_EIO;
    }
    if (rc >= 0)
        return 0;
    if (v->record_err.code == 0)
        v->record_err = err;
    char answer[200];
    describe_answer(res, answer, sizeof answer);
    fprintf(stderr, "tchannel-vcr: %s: recording lost, the call fails: %s; the service had "
            "answered %s\n", tch_cassette_name(v->cassette), err.msg, answer);
    return tch_error_set(why, rc, "%s (the service had answered %s; not passed on, since the "
                         "cassette does not hold it)", err.msg, answer);
}

/* The store and its journal, at the first recording: the file read again
 * as one run with the lookup cassette (tch_cassette_reload_as); opening
 * the journal folds what a run that did not finish left in it. */
static int open_store(tch_vcr *v, tch_error *err) {
    if (v->store)
        return 0;
    tch_cassette *s;
    char *note = NULL;
    int rc = tch_cassette_reload_as(v->cassette, tch_cassette_get_mode(v->cassette), &s, err);
    if (rc)
        return rc;
    if ((rc = tch_cassette_journal_open(s, &v->journal, &note, err)) != 0)
        tch_cassette_free(s);
    else
        v->store = s;
    if (note)
        fprintf(stderr, "tchannel-vcr: %s\n", note);
    tch__free(tch_channel_allocator(v->ch), note); /* the cassette's allocator */
    return rc;
}

static void record(tch_vcr *v, tch_outbound *call, const tch_cassette_call *cc) {
    tch_error err;
    const tch_allocator *a = tch_channel_allocator(v->ch);
    pending *p = tch__calloc(a, 1, sizeof *p);
    if (!p) {
        fail_call(call, TCH_ENOMEM, "vcr: out of memory");
        return;
    }
    p->alloc = a;
    if (open_store(v, &err) != 0 || tch_cassette_record_begin(v->store, cc, &p->slot, &err) != 0) {
        tch__free(a, p);
        fail_call(call, err.code, err.msg);
        return;
    }
    p->vcr = v;
    p->next = v->pending;
    if (v->pending)
        v->pending->prev = p;
    v->pending = p;
    v->npending++;
    tch_outbound_forward_checked(call, on_recorded, p);
}

/* ---- the hook ---------------------------------------------------------------- */

static void vcr_hook(tch_outbound *call, void *ud) {
    tch_vcr *v = ud;
    const tch_call_opts *req = tch_outbound_request(call);
    tch_kv kv[TCH_PROTO_MAX_CALL_HEADERS + 1]; /* the most a call may carry, and "as" */
    tch_cassette_call cc;
    tch_vcr_call_of_request(req, kv, sizeof kv / sizeof kv[0], &cc);
    tch_cassette_decision d;
    tch_error err;
    int rc = tch_cassette_lookup(v->cassette, &cc, &d, &err);
    const tch_stub_info *stub = rc == 0 ? tch_cassette_stub_of(d.interaction) : NULL;
    if (rc == 0 && d.action == TCH_CASSETTE_ACT_REPLAY && stub && stub->template_response &&
        !d.interaction->is_error)
        replay_template(v, call, &cc, d.index);
    else if (rc == 0 && d.action == TCH_CASSETTE_ACT_REPLAY)
        replay(call, d.interaction);
    else if (rc == 0 && d.action == TCH_CASSETTE_ACT_RECORD)
        record(v, call, &cc);
    else
        fail_call(call, rc ? rc : TCH_ENOTFOUND, err.msg);
    tch_cassette_decision_clear(&d);
}

/* ---- Thrift bodies rendered for reviewers ------------------------------------- */

static char *render_thrift(tch_slice service, tch_slice endpoint, tch_cassette_scheme scheme,
                           tch_cassette_part part, int response_code, tch_slice bytes,
                           void *ud) {
    const tch_vcr *v = ud;
    const tch_thrift_idl *idl = v->idl;
    const tch_allocator *a = tch_channel_allocator(v->ch);
    (void)service, (void)response_code;
    if (scheme != TCH_CASSETTE_THRIFT || part == TCH_CASSETTE_REQUEST_HEADERS ||
        part == TCH_CASSETTE_RESPONSE_HEADERS)
        return NULL; /* the cassette library renders thrift headers itself */
    tch_slice svc_name, method_name;
    if (tch_thrift_arg1_split(endpoint, &svc_name, &method_name, NULL) != 0)
        return NULL;
    char *svc_s = tch_slice_strdup_with(a, svc_name), *m_s = tch_slice_strdup_with(a, method_name);
    const tch_thrift_service *svc = svc_s ? tch_thrift_idl_find_service(idl, svc_s) : NULL;
    const tch_thrift_method *m = svc && m_s ? tch_thrift_service_find_method(svc, m_s) : NULL;
    tch__free(a, svc_s);
    tch__free(a, m_s);
    if (!m)
        return NULL;
    json_t *j = NULL;
    int rc = part == TCH_CASSETTE_REQUEST_BODY
                 ? tch_thrift_method_args_to_json(m, bytes, &j, NULL)
                 : tch_thrift_method_result_to_json(m, bytes, &j, NULL);
    if (rc)
        return NULL;
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS); /* free()d, as render's are */
    json_decref(j);
    return text;
}

/* ---- redaction ------------------------------------------------------------------ */

/* The caller's callback first, then the declarative redaction, whose error
 * says which field could not be redacted (the cassette only passes a code). */
static int vcr_redact(tch_cassette_redact_phase phase, tch_cassette_request *req,
                      tch_cassette_response *resp, void *ud) {
    tch_vcr *v = ud;
    int rc = v->user_redact ? v->user_redact(phase, req, resp, v->user_redact_ud) : 0;
    if (rc || phase != TCH_CASSETTE_REDACT_RECORD)
        return rc;
    tch_error err;
    rc = tch_cassette_redaction_request(v->redaction, req, &err);
    if (!rc && resp)
        rc = tch_cassette_redaction_response(v->redaction, req, resp, &err);
    if (rc && v->record_err.code == 0)
        v->record_err = err;
    return rc;
}

/* ---- lifecycle ------------------------------------------------------------------ */

int tch_vcr_use_cassette(tch_channel *ch, const char *path,
                         const tch_vcr_options *opts, tch_vcr **out,
                         tch_error *err) {
    if (!ch || !path || !out)
        return tch_error_set(err, TCH_EINVAL, "tch_vcr_use_cassette: channel, path and out "
                                              "are required");
    *out = NULL;
    tch_vcr_options o;
    if (opts)
        o = *opts;
    else
        tch_vcr_options_init(&o);
    const tch_allocator *a = tch_channel_allocator(ch);
    tch_vcr *v = tch__calloc(a, 1, sizeof *v);
    if (!v)
        return tch_error_set(err, TCH_ENOMEM, "out of memory");
    v->ch = ch;
    o.cassette.allocator = a; /* the cassettes allocate as the channel does */
    v->idl = o.idl;
    if (o.redaction) {
        v->redaction = o.redaction;
        v->user_redact = o.cassette.redact;
        v->user_redact_ud = o.cassette.redact_ud;
        o.cassette.redact = vcr_redact;
        o.cassette.redact_ud = v;
    }
    if (o.idl && !o.cassette.render) {
        o.cassette.render = render_thrift;
        o.cassette.render_ud = v;
    }
    if (o.idl && !o.cassette.thrift_idl) /* misses then show decoded fields */
        o.cassette.thrift_idl = o.idl;
    int rc = tch_cassette_open(path, &o.cassette, &v->cassette, err);
    if (rc) {
        tch__free(a, v);
        return rc;
    }
    tch_channel_set_outbound_hook(ch, vcr_hook, v);
    *out = v;
    return 0;
}

int tch_vcr_eject(tch_vcr *v, tch_error *err) {
    if (!v)
        return 0;
    tch_channel_set_outbound_hook(v->ch, NULL, NULL);
    tch_error first = {0}, e;
    int rc = 0;
    for (pending *p = v->pending; p; p = p->next) {
        p->vcr = NULL; /* its answer, if it ever comes, is dropped */
        if (tch_cassette_record_abort(v->store, p->slot, &e) != 0 && !rc)
            rc = e.code, first = e;
    }
    v->pending = NULL;
    v->npending = 0;
    if (v->store && tch_cassette_journal_fold(v->journal, &e) != 0) {
        /* Keep v, and with it what was recorded: the caller may fix the
         * cause and eject again, or give up with tch_vcr_discard. Its own
         * code, so the caller knows v is still theirs. */
        if (err) {
            *err = e;
            err->code = TCH_ENOTSAVED;
        }
        return TCH_ENOTSAVED;
    }
    if (!rc && v->record_err.code)
        rc = v->record_err.code, first = v->record_err;
    if (tch_cassette_finish(v->cassette, &e) != 0 && !rc) /* it never records: the strict check */
        rc = e.code, first = e;
    tch_vcr_discard(v);
    if (rc && err)
        *err = first;
    return rc;
}

void tch_vcr_discard(tch_vcr *v) {
    if (!v)
        return;
    tch_channel_set_outbound_hook(v->ch, NULL, NULL);
    for (pending *p = v->pending; p; p = p->next)
        p->vcr = NULL;
    if (v->journal) /* what it committed goes too (an eject folded it first) */
        tch_cassette_journal_discard(v->journal);
    tch_cassette_journal_free(v->journal);
    tch_cassette_free(v->store);
    tch_cassette_free(v->cassette);
    tch__free(tch_channel_allocator(v->ch), v);
}
