/* The protocol's own constants that users meet: the codes of error frames.
 * Owned by the wire layer (lib/wire), which every other layer stands on, so
 * the connection writes TCH_PCODE_BUSY rather than a bare 0x03. */
#ifndef TCHANNEL_PROTOCOL_H
#define TCHANNEL_PROTOCOL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; the rest of the library is hidden */

/* Transport headers a call may carry on the wire, in all: what the
 * protocol's spec and the Node peer allow (nh itself is one byte). */
#define TCH_PROTO_MAX_CALL_HEADERS 128

/* Error frame codes. */
enum tch_proto_code {
    TCH_PCODE_INVALID = 0x00,
    TCH_PCODE_TIMEOUT = 0x01,
    TCH_PCODE_CANCELLED = 0x02,
    TCH_PCODE_BUSY = 0x03,
    TCH_PCODE_DECLINED = 0x04,
    TCH_PCODE_UNEXPECTED = 0x05,
    TCH_PCODE_BAD_REQUEST = 0x06,
    TCH_PCODE_NETWORK = 0x07,
    TCH_PCODE_UNHEALTHY = 0x08,
    TCH_PCODE_FATAL = 0xff,
};
/* The name tchannel-go and Node use ("badRequest"), "unknown" for a code
 * the protocol does not define. Never NULL. */
const char *tch_proto_code_name(uint8_t code);
/* The code of a name tch_proto_code_name gives. Returns 0, or TCH_EINVAL
 * for a name it does not know; *code is untouched then. */
int tch_proto_code_parse(const char *name, uint8_t *code);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
