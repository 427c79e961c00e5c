#include "scheme.h"

#include <stdio.h>

void tch__scheme_bad_request(tch_inbound *in, const char *what) {
    char msg[TCH_ERROR_MSG_MAX + 300];
    tch_slice s = tch_inbound_service(in), e = tch_inbound_endpoint(in);
    snprintf(msg, sizeof msg, "%.*s::%.*s: %s", (int)(s.len > 100 ? 100 : s.len),
             (const char *)s.ptr, (int)(e.len > 100 ? 100 : e.len),
             (const char *)e.ptr, what);
    tch_inbound_respond_error(in, TCH_PCODE_BAD_REQUEST, msg);
}

int tch__scheme_check_as(tch_inbound *in, const char *want) {
    tch_slice as;
    if (!tch_inbound_header(in, "as", &as) || tch_slice_eq_cstr(as, want))
        return 0;
    char what[160];
    snprintf(what, sizeof what, "expected arg scheme \"%s\" but the call says as=%.*s",
             want, (int)(as.len > 40 ? 40 : as.len), (const char *)as.ptr);
    tch__scheme_bad_request(in, what);
    return TCH_EPROTO;
}
