/* The thrift arg scheme (transport header as=thrift) for services loaded at
 * run time with tch_thrift_load: serve a service's methods and call them.
 *
 * arg1 is "Service::method", arg2 the application headers (nh:2 then
 * (k~2 v~2){nh}), arg3 the args struct; the answer's arg3 is the result
 * struct (field 0 the success value, declared exceptions at their ids) with
 * call-res code 1 when it holds an exception. */
#ifndef TCHANNEL_THRIFT_SCHEME_H
#define TCHANNEL_THRIFT_SCHEME_H

#include <tchannel/channel.h>
#include <tchannel/thrift.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; the rest of the library is hidden */

/* ---- serving ---------------------------------------------------------- */

/* One inbound Thrift call, owned by the channel until answered with one of
 * tch_thrift_respond* (exactly once, now or later). */
typedef struct tch_thrift_inbound tch_thrift_inbound;
typedef void (*tch_thrift_handler_cb)(tch_thrift_inbound *call, void *ud);

/* Serves `method` of svc (methods of services it extends included) under
 * the TChannel service `service` (NULL: the channel's name). The IDL must
 * outlive the channel's use of it. A request that does not decode gets
 * BadRequest naming the problem; fn never sees it. Returns 0, TCH_EINVAL
 * (no svc, method or fn; a oneway method), TCH_ENOTFOUND (svc has no such
 * method), TCH_ENOMEM. */
int tch_thrift_register(tch_channel *ch, const char *service,
                        const tch_thrift_service *svc, const char *method,
                        tch_thrift_handler_cb fn, void *ud);

const tch_thrift_method *tch_thrift_inbound_method(const tch_thrift_inbound *call);
/* The decoded args struct, and one arg by parameter name (NULL if unset). */
const tch_thrift_value *tch_thrift_inbound_args(const tch_thrift_inbound *call);
const tch_thrift_value *tch_thrift_inbound_arg(const tch_thrift_inbound *call,
                                               const char *name);
size_t tch_thrift_inbound_header_count(const tch_thrift_inbound *call);
tch_kv tch_thrift_inbound_header_at(const tch_thrift_inbound *call, size_t i);
/* The underlying call: caller name, ttl, trace, transport headers. */
tch_inbound *tch_thrift_inbound_raw(tch_thrift_inbound *call);

/* Answers with the success value (NULL for a void method). v is copied.
 * Returns as tch_inbound_respond, or TCH_EINVAL when v does not encode as
 * the method's result (the caller then gets an Unexpected error frame
 * naming the field). */
int tch_thrift_respond(tch_thrift_inbound *call, const tch_thrift_value *v,
                       const tch_kv *headers, size_t nheaders);
/* Answers with the declared exception whose result field is `name` (the
 * name in the throws clause), with value exc (a struct); code 1. Returns
 * as tch_thrift_respond; TCH_EINVAL also when the method declares no
 * exception `name`. */
int tch_thrift_respond_exception(tch_thrift_inbound *call, const char *name,
                                 const tch_thrift_value *exc,
                                 const tch_kv *headers, size_t nheaders);
/* Answers with a protocol error frame (tch_proto_code). Returns as
 * tch_inbound_respond_error. */
int tch_thrift_respond_error(tch_thrift_inbound *call, uint8_t code, const char *msg);

/* ---- calling ---------------------------------------------------------- */

typedef struct tch_thrift_response {
    int status;         /* as tch_response; TCH_EPROTO: the answer did not decode */
    uint8_t code;       /* 0 success, 1 declared exception */
    uint8_t error_code;
    const char *message;
    tch_thrift_outcome outcome;     /* when status is 0 */
    const tch_thrift_value *result; /* the whole result struct, or NULL */
    const tch_kv *headers;
    size_t nheaders;
} tch_thrift_response;

typedef void (*tch_thrift_cb)(const tch_thrift_response *res, void *ud);

/* Calls svc's method with args (a struct value of the method's args type).
 * opts gives service (TChannel), target, timeout, retries...; its endpoint,
 * arg2, arg3 and arg_scheme are replaced. Oneway methods are refused.
 * Returns 0, TCH_EINVAL (oneway, args not the args struct; err names the
 * field), TCH_ENOTFOUND (no such method), TCH_ETOOBIG (a header over 16
 * bits), TCH_ENOMEM, or tch_channel_call's errors. */
int tch_thrift_call(tch_channel *ch, const tch_call_opts *opts,
                    const tch_thrift_service *svc, const char *method,
                    const tch_thrift_value *args,
                    const tch_kv *headers, size_t nheaders,
                    tch_thrift_cb cb, void *ud, tch_error *err);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
