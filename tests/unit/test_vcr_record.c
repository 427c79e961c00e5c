/* tchannel/vcr_adapt.h: how a call's outcome is recorded (the one function
 * the VCR and tchannel-mock share), and the request as recorded (the
 * implicit "as" header). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <tchannel/vcr_adapt.h>

typedef struct fixture {
    tch_cassette *c;
    tch_cassette_slot slot;
} fixture;

static int setup(void **state) {
    static fixture f;
    tch_cassette_options o;
    tch_cassette_options_init(&o);
    o.mode = TCH_CASSETTE_ALL;
    o.no_env_override = 1;
    tch_error err;
    if (tch_cassette_open_memory("rec", "", 0, &o, &f.c, &err) != 0)
        return -1;
    tch_call_opts req = {.service = "svc", .endpoint = tch_slice_cstr("ep"),
                         .arg2 = tch_slice_cstr("h"), .arg3 = tch_slice_cstr("b")};
    tch_kv kv[1];
    tch_cassette_call call;
    tch_vcr_call_of_request(&req, kv, sizeof kv / sizeof kv[0], &call);
    if (tch_cassette_record_begin(f.c, &call, &f.slot, &err) != 0)
        return -1;
    *state = &f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    tch_cassette_free(f->c);
    return 0;
}

static const tch_cassette_interaction *record(fixture *f, const tch_response *res, int want) {
    tch_error err = {0};
    assert_int_equal(tch_vcr_record_response(f->c, f->slot, res, &err), want);
    assert_int_equal(tch_cassette_is_pending(f->c, f->slot), 0);
    return tch_cassette_get(f->c, f->slot);
}

static void local_timeout_is_local(void **state) {
    tch_response res = {.status = TCH_ETIMEOUT, .error_code = TCH_PCODE_TIMEOUT,
                        .message = "deadline passed", .peer = ""};
    const tch_cassette_interaction *it = record(*state, &res, 1);
    assert_non_null(it);
    assert_true(it->is_error);
    assert_true(it->error.local);
    assert_int_equal(it->error.code, TCH_PCODE_TIMEOUT);
    assert_string_equal(it->error.message, "deadline passed");
}

static void remote_error_frame_is_not_local(void **state) {
    tch_response res = {.status = TCH_EREMOTE, .error_code = TCH_PCODE_BUSY,
                        .message = "busy", .peer = "127.0.0.1:1"};
    const tch_cassette_interaction *it = record(*state, &res, 1);
    assert_non_null(it);
    assert_true(it->is_error);
    assert_false(it->error.local);
    assert_int_equal(it->error.code, TCH_PCODE_BUSY);
    assert_string_equal(it->error.message, "busy");
}

/* A Timeout frame is the service's answer, not our deadline. */

static void remote_timeout_frame_is_not_local(void **state) {
    tch_response res = {.status = TCH_EREMOTE, .error_code = TCH_PCODE_TIMEOUT,
                        .message = NULL, .peer = ""};
    const tch_cassette_interaction *it = record(*state, &res, 1);
    assert_non_null(it);
    assert_true(it->is_error);
    assert_false(it->error.local);
    assert_int_equal(it->error.code, TCH_PCODE_TIMEOUT);
}

static void application_error_is_a_response(void **state) {
    tch_response res = {.status = 0, .code = 1, .arg2 = tch_slice_cstr("{}"),
                        .arg3 = tch_slice_cstr("\"no such key\""), .peer = ""};
    const tch_cassette_interaction *it = record(*state, &res, 1);
    assert_non_null(it);
    assert_false(it->is_error);
    assert_int_equal(it->response.code, 1);
    assert_int_equal(it->response.body.len, 13);
    assert_memory_equal(it->response.body.ptr, "\"no such key\"", 13);
}

static void ok_is_a_response(void **state) {
    tch_response res = {.status = 0, .code = 0, .arg2 = tch_slice_cstr("hd"),
                        .arg3 = tch_slice_cstr("pong"), .peer = ""};
    const tch_cassette_interaction *it = record(*state, &res, 1);
    assert_non_null(it);
    assert_false(it->is_error);
    assert_int_equal(it->response.code, 0);
    assert_int_equal(it->response.headers.len, 2);
    assert_memory_equal(it->response.headers.ptr, "hd", 2);
    assert_memory_equal(it->response.body.ptr, "pong", 4);
}

static void never_reached_records_nothing(void **state) {
    fixture *f = *state;
    tch_response res = {.status = TCH_ECLOSED, .message = "refused", .peer = ""};
    assert_null(record(f, &res, 0)); /* aborted: no interaction */
}

static void implicit_as_comes_first(void **state) {
    (void)state;
    tch_kv given[] = {{tch_slice_cstr("cn"), tch_slice_cstr("caller")}};
    tch_call_opts req = {.service = "svc", .endpoint = tch_slice_cstr("ep"),
                         .headers = given, .nheaders = 1, .arg_scheme = "json"};
    tch_kv kv[2];
    tch_cassette_call call;
    tch_vcr_call_of_request(&req, kv, sizeof kv / sizeof kv[0], &call);
    assert_int_equal(call.n_transport_headers, 2);
    assert_true(tch_slice_eq_cstr(call.transport_headers[0].key, "as"));
    assert_true(tch_slice_eq_cstr(call.transport_headers[0].value, "json"));
    assert_true(tch_slice_eq_cstr(call.transport_headers[1].key, "cn"));
    assert_int_equal(call.scheme, TCH_CASSETTE_JSON);
    /* an explicit "as" is kept where it is, and wins over arg_scheme */
    tch_kv own[] = {{tch_slice_cstr("cn"), tch_slice_cstr("c")},
                    {tch_slice_cstr("as"), tch_slice_cstr("thrift")}};
    req.headers = own;
    req.nheaders = 2;
    tch_kv kv3[3];
    tch_vcr_call_of_request(&req, kv3, sizeof kv3 / sizeof kv3[0], &call);
    assert_int_equal(call.n_transport_headers, 2);
    assert_true(tch_slice_eq_cstr(call.transport_headers[1].value, "thrift"));
    assert_int_equal(call.scheme, TCH_CASSETTE_THRIFT);
    /* no scheme at all: raw, as the channel sends it */
    tch_kv out[1];
    assert_int_equal(tch_vcr_transport_headers(NULL, 0, NULL, out), 1);
    assert_true(tch_slice_eq_cstr(out[0].value, "raw"));
}

/* A call may carry 128 transport headers (as, cn and re among them): all
 * are seen, and a small kv is never written past its cap. */
static void as_many_headers_as_a_call_may_carry(void **state) {
    (void)state;
    static char keys[TCH_PROTO_MAX_CALL_HEADERS][16];
    tch_kv given[TCH_PROTO_MAX_CALL_HEADERS];
    given[0] = (tch_kv){tch_slice_cstr("as"), tch_slice_cstr("raw")};
    given[1] = (tch_kv){tch_slice_cstr("cn"), tch_slice_cstr("c")};
    given[2] = (tch_kv){tch_slice_cstr("re"), tch_slice_cstr("n")};
    for (int i = 3; i < TCH_PROTO_MAX_CALL_HEADERS; i++) {
        snprintf(keys[i], sizeof keys[i], "h%d", i);
        given[i] = (tch_kv){tch_slice_cstr(keys[i]), tch_slice_cstr("v")};
    }
    tch_call_opts req = {.service = "svc", .endpoint = tch_slice_cstr("ep"),
                         .headers = given, .nheaders = TCH_PROTO_MAX_CALL_HEADERS};
    tch_kv kv[TCH_PROTO_MAX_CALL_HEADERS + 1];
    tch_cassette_call call;
    tch_vcr_call_of_request(&req, kv, sizeof kv / sizeof kv[0], &call);
    assert_int_equal(call.n_transport_headers, TCH_PROTO_MAX_CALL_HEADERS);
    tch_kv small[5 + 1];
    small[5] = (tch_kv){tch_slice_cstr("guard"), TCH_SLICE_NULL};
    tch_vcr_call_of_request(&req, small, 5, &call);
    assert_int_equal(call.n_transport_headers, 4);
    assert_true(tch_slice_eq_cstr(small[5].key, "guard"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(local_timeout_is_local, setup, teardown),
        cmocka_unit_test_setup_teardown(remote_error_frame_is_not_local, setup, teardown),
        cmocka_unit_test_setup_teardown(remote_timeout_frame_is_not_local, setup, teardown),
        cmocka_unit_test_setup_teardown(application_error_is_a_response, setup, teardown),
        cmocka_unit_test_setup_teardown(ok_is_a_response, setup, teardown),
        cmocka_unit_test_setup_teardown(never_reached_records_nothing, setup, teardown),
        cmocka_unit_test(implicit_as_comes_first),
        cmocka_unit_test(as_many_headers_as_a_call_may_carry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
