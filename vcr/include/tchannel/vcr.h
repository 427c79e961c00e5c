/* The in-process VCR: plugs a cassette into a channel's outbound hook, so
 * every call made through the channel (any scheme, from handlers too, and
 * from the blocking client) is replayed from or recorded into the cassette.
 *
 *     tch_vcr *vcr;
 *     tch_vcr_use_cassette(ch, "tests/cassettes/kv.yaml", NULL, &vcr, &err);
 *     ... make calls ...
 *     tch_vcr_eject(vcr, &err);   saves if anything new; strict check
 *
 * A call that may neither replay nor record fails with status TCH_ENOTFOUND
 * and a message naming the mode, the cassette, the request and the nearest
 * recorded interaction with the fields that differ.
 *
 * A recorded call's answer reaches its caller only once the recording is
 * durable (appended to PATH.journal and synced). A recording that cannot
 * be kept (a redactor's error, a disk that refuses it) fails the call
 * instead: its status is the error's (TCH_EIO, say), error_code
 * TCH_PCODE_UNEXPECTED, and the message names the cassette, why, and what
 * the service had answered. Recordings of this run are not replayed in the
 * same run (tchannel-python's rule). */
#ifndef TCHANNEL_VCR_H
#define TCHANNEL_VCR_H

#include <tchannel/cassette.h>
#include <tchannel/channel.h>
#include <tchannel/redact.h>
#include <tchannel/thrift.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; the rest of the library is hidden */

typedef struct tch_vcr tch_vcr;

typedef struct tch_vcr_options {
    tch_cassette_options cassette; /* mode, matchers, repeats, strict, redact */
    /* Optional: with the IDL, recorded Thrift bodies are also written
     * decoded (bodyDecoded) so a reviewer sees fields and values. It must
     * outlive the VCR. */
    const tch_thrift_idl *idl;
    /* Optional, borrowed (must outlive the VCR): what each recording must
     * not keep (tchannel/redact.h). It runs after cassette.redact, if both
     * are given. Thrift fields are read with the redaction's own IDL
     * (tch_cassette_redaction_set_idl). A redaction that fails drops that recording, fails
     * the call (see above) and tch_vcr_eject returns its error. */
    const tch_cassette_redaction *redaction;
} tch_vcr_options;

void tch_vcr_options_init(tch_vcr_options *o);

/* Opens the cassette at path and installs the VCR on ch (replacing any
 * outbound hook). opts may be NULL. *out gets the VCR. The VCR and its
 * cassettes allocate with the channel's allocator
 * (tch_channel_allocator; opts->cassette.allocator is ignored). Returns 0,
 * tch_cassette_open's errors (TCH_EINVAL, TCH_EPARSE, TCH_EIO...: err
 * names file:line:column), TCH_ENOMEM. */
int tch_vcr_use_cassette(tch_channel *ch, const char *path,
                         const tch_vcr_options *opts, tch_vcr **out,
                         tch_error *err);
/* The cassette in use (play counts, all_played, add_matcher...). */
tch_cassette *tch_vcr_cassette(tch_vcr *v);
/* Calls recorded but still waiting for their answer. */
size_t tch_vcr_pending(const tch_vcr *v);

/* Removes the hook, writes the cassette file if anything new was recorded
 * (folding the journal into it; calls still in flight are left out), runs
 * the strict check, and frees v. Returns the first error: a recording that
 * was lost (its call failed with that error too) or the strict check's.
 * If writing the file fails, it returns TCH_ENOTSAVED and v is NOT freed
 * (every other return frees v); err names the file and the cause. Nothing
 * recorded is lost (the journal holds it meanwhile, and a later open reads
 * it): fix the cause (a full disk, a folder gone) and eject again, or drop
 * the recordings with tch_vcr_discard. Returns 0, TCH_ENOTSAVED, the lost
 * recording's code (a redactor's, TCH_EIO), TCH_ESTATE (strict:
 * interactions went unused), TCH_ENOMEM. */
int tch_vcr_eject(tch_vcr *v, tch_error *err);
/* Removes the hook and frees v without saving anything: this run's
 * recordings are dropped, the journal that held them removed. */
void tch_vcr_discard(tch_vcr *v);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
