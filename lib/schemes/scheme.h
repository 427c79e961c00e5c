/* What the json and thrift schemes share: a per-endpoint handler context,
 * the "as" header check, and BadRequest answers. */
#ifndef TCH_SCHEME_H
#define TCH_SCHEME_H

#include <tchannel/channel.h>

/* Returns 0 when the call's "as" header is absent or equals want; else
 * answers the call with BadRequest (freeing it) and returns TCH_EPROTO. */
int tch__scheme_check_as(tch_inbound *in, const char *want);
/* Answers with BadRequest "<service>::<endpoint>: <what>" and frees in. */
void tch__scheme_bad_request(tch_inbound *in, const char *what);

#endif
