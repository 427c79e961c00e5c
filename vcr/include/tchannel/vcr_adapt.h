/* The channel's calls and answers as the cassette library sees them: one
 * reading, shared by the in-process VCR (outgoing calls) and tchannel-mock
 * (incoming calls it serves or records through), so a call is matched and
 * recorded the same way by both. Target tch_vcr. */
#ifndef TCHANNEL_VCR_ADAPT_H
#define TCHANNEL_VCR_ADAPT_H

#include <tchannel/cassette.h>
#include <tchannel/channel.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

/* The transport headers as recorded and matched: the call's own, with
 * "as" first when the call did not give one (value default_as, NULL:
 * "raw"): the channel sends it anyway, and tchannel-python's cassettes
 * always hold it, so they match under the transportHeaders matcher.
 * kv must hold nheaders + 1 entries; returns the count written. */
size_t tch_vcr_transport_headers(const tch_kv *headers, size_t nheaders,
                                 const char *default_as, tch_kv *kv);

/* An outgoing call (the outbound hook's request): views of req; kv holds
 * cap entries (headers beyond cap - 1 are left out: cap
 * TCH_PROTO_MAX_CALL_HEADERS + 1 holds every call the channel sends). The
 * scheme is the "as" header's, else req->arg_scheme's. */
void tch_vcr_call_of_request(const tch_call_opts *req, tch_kv *kv, size_t cap,
                             tch_cassette_call *call);

/* An incoming call: views of in, host_port the caller's address; kv holds
 * cap entries (headers beyond cap - 1 are left out). */
void tch_vcr_call_of_inbound(const tch_inbound *in, tch_kv *kv, size_t cap,
                             tch_cassette_call *call);

/* Writes how a call's attempt ended into its recording slot: an answer
 * (code 0 or 1) as a response; an error frame (TCH_EREMOTE) as `error`;
 * the caller's own deadline (TCH_ETIMEOUT, no frame came) as a timeout
 * with `local: true`. res's arg2/arg3 are recorded as given (pass a copy
 * with redacted args to record those). Returns 1 when recorded; 0 when
 * there was nothing to record (the call never reached the service, e.g.
 * TCH_ECLOSED) and the slot was aborted; or a negative
 * TCH_E* code, the slot aborted. */
int tch_vcr_record_response(tch_cassette *c, tch_cassette_slot slot, const tch_response *res,
                            tch_error *err);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
