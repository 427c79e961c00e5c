/* Names of the protocol's error codes (tchannel/protocol.h). */
#include <tchannel/common.h>
#include <tchannel/protocol.h>

#include <string.h>

const char *tch_proto_code_name(uint8_t code) {
    switch (code) {
    case TCH_PCODE_INVALID: return "invalid";
    case TCH_PCODE_TIMEOUT: return "timeout";
    case TCH_PCODE_CANCELLED: return "cancelled";
    case TCH_PCODE_BUSY: return "busy";
    case TCH_PCODE_DECLINED: return "declined";
    case TCH_PCODE_UNEXPECTED: return "unexpected";
    case TCH_PCODE_BAD_REQUEST: return "badRequest";
    case TCH_PCODE_NETWORK: return "networkError";
    case TCH_PCODE_UNHEALTHY: return "unhealthy";
    case TCH_PCODE_FATAL: return "fatal";
    default: return "unknown";
    }
}

int tch_proto_code_parse(const char *name, uint8_t *code) {
    static const uint8_t codes[] = {
        TCH_PCODE_INVALID, TCH_PCODE_TIMEOUT, TCH_PCODE_CANCELLED,
        TCH_PCODE_BUSY, TCH_PCODE_DECLINED, TCH_PCODE_UNEXPECTED,
        TCH_PCODE_BAD_REQUEST, TCH_PCODE_NETWORK, TCH_PCODE_UNHEALTHY,
        TCH_PCODE_FATAL};
    for (size_t i = 0; i < sizeof codes; i++) {
        if (name && strcmp(name, tch_proto_code_name(codes[i])) == 0) {
            *code = codes[i];
            return 0;
        }
    }
    return TCH_EINVAL;
}
