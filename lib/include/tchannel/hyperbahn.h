/* Hyperbahn: advertise a channel's services to routers, as the Node client
 * does (a json call to service "hyperbahn", endpoint "ad", header cn = the
 * advertising service, body {"services":[{"serviceName":..,"cost":0}]}),
 * and route calls that give no host:port through the routers. */
#ifndef TCHANNEL_HYPERBAHN_H
#define TCHANNEL_HYPERBAHN_H

#include <tchannel/channel.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; the rest of the library is hidden */

typedef struct tch_hyperbahn tch_hyperbahn;

typedef struct tch_hyperbahn_options {
    /* Routers as "host:port", or a file holding a JSON list of them; giving
     * both, or neither, is TCH_EINVAL. A host may be a name or an [IPv6]
     * address (see channel.h); names are looked up when an ad is sent,
     * without blocking. */
    const char *const *routers;
    size_t nrouters;
    const char *router_file;
    const char *const *services; /* default: the channel's name */
    size_t nservices;
    uint32_t first_timeout_ms;   /* first advertise must succeed within; default 30000 */
    uint32_t interval_ms;        /* re-advertise period; default 60000, with jitter */
} tch_hyperbahn_options;

/* status 0 when the first advertise succeeded, else TCH_ETIMEOUT (within
 * first_timeout_ms no router accepted) or another error; message says why. */
typedef void (*tch_advertise_cb)(int status, const char *message, void *ud);

/* Starts listening if the channel is not yet, adds the routers as peers,
 * advertises, then re-advertises periodically (backing off after failures)
 * until tch_hyperbahn_free. cb runs once, for the first advertise.
 * Listening, it picks the local address that reaches the first router (so
 * the router can call back the host_port we announce); when that router is
 * given by name, the name is looked up here with getaddrinfo, which blocks:
 * call this before the loop runs, or listen first. Returns 0 (*out set),
 * TCH_EINVAL (both or neither of routers and router_file, a malformed
 * router, no cb), TCH_ENOTFOUND / TCH_EIO / TCH_ETOOBIG / TCH_EPARSE (the
 * router file is missing, unreadable, too big or not a JSON list of
 * strings), tch_channel_listen's errors, TCH_ENOMEM. */
int tch_hyperbahn_advertise(tch_channel *ch, const tch_hyperbahn_options *opts,
                            tch_advertise_cb cb, void *ud, tch_hyperbahn **out,
                            tch_error *err);
/* Stops re-advertising. Free before the channel. */
void tch_hyperbahn_free(tch_hyperbahn *hb);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
