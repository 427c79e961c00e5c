/* libFuzzer target: the IDL loader on arbitrary bytes (no includes: the
 * loader is given no reader). Any input must load or fail with an error,
 * never crash, leak or recurse without bound. */
#include <stddef.h>
#include <stdint.h>
#include <tchannel/thrift.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tch_thrift_idl *idl = NULL;
    tch_error err;
    if (tch_thrift_load_string("fuzz.thrift", tch_slice_of(data, size), NULL, &idl, &err) == 0) {
        /* exercise lookups on what loaded */
        const tch_thrift_service *s = tch_thrift_idl_find_service(idl, "S");
        if (s)
            (void)tch_thrift_service_find_method(s, "m");
        tch_thrift_idl_free(idl);
    }
    return 0;
}
