/* Frame header and per-type payload codecs: hand-written bytes, frames the
 * Node peer wrote (wire_vectors_node.h), and truncated, oversized and
 * garbage inputs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "wire.h"
#include "wire_vectors_node.h"

#define SL(a) tch_slice_of((a), sizeof(a))

static const tch_trace node_tracing = {0x0102030405060708ull,
                                         0x1112131415161718ull,
                                         0x2122232425262728ull, 1};

static tch_frame parse_ok(const uint8_t *bytes, size_t len) {
    tch_frame f;
    size_t used = 0;
    tch_error err = {0};
    int rc = tch_frame_parse(tch_slice_of(bytes, len), &f, &used, &err);
    if (rc)
        fail_msg("parse: %s", err.msg);
    assert_int_equal(used, len);
    return f;
}

static void assert_tracing(const tch_trace *t) {
    assert_true(t->span_id == node_tracing.span_id);
    assert_true(t->parent_id == node_tracing.parent_id);
    assert_true(t->trace_id == node_tracing.trace_id);
    assert_int_equal(t->flags, 1);
}

/* ---- frame header ------------------------------------------------------ */

static void parse_needs_more_input(void **state) {
    (void)state;
    tch_frame f;
    size_t used = 99;
    tch_error err;
    assert_int_equal(tch_frame_parse(tch_slice_of(wv_ping_req, 1), &f, &used,
                                     &err),
                     TCH_EAGAIN);
    assert_int_equal(tch_frame_parse(tch_slice_of(wv_ping_req, 15), &f, &used,
                                     &err),
                     TCH_EAGAIN);
    assert_int_equal(used, 99);
}

static void parse_rejects_frame_shorter_than_header(void **state) {
    (void)state;
    const uint8_t bytes[] = {0x00, 0x08, 0x03, 0x00, 0, 0, 0, 1};
    tch_frame f;
    size_t used;
    tch_error err;
    assert_int_equal(tch_frame_parse(SL(bytes), &f, &used, &err), TCH_EPROTO);
    assert_non_null(strstr(err.msg, "size 8"));
}

static void parse_two_frames_back_to_back(void **state) {
    (void)state;
    uint8_t buf[64];
    memcpy(buf, wv_ping_req, 16);
    memcpy(buf + 16, wv_claim, sizeof wv_claim);
    tch_frame f;
    size_t used;
    assert_int_equal(tch_frame_parse(tch_slice_of(buf, 16 + sizeof wv_claim),
                                     &f, &used, NULL),
                     0);
    assert_int_equal(used, 16);
    assert_int_equal(f.type, TCH_FRAME_PING_REQ);
    assert_int_equal(f.id, 9);
    assert_int_equal(f.payload.len, 0);
    assert_int_equal(tch_frame_parse(tch_slice_of(buf + 16, sizeof wv_claim),
                                     &f, &used, NULL),
                     0);
    assert_int_equal(f.type, TCH_FRAME_CLAIM);
    assert_int_equal(f.payload.len, sizeof wv_claim - 16);
}

static void header_write_bytes(void **state) {
    (void)state;
    uint8_t out[16];
    const uint8_t want[16] = {0x01, 0x10, 0x03, 0, 0xde, 0xad, 0xbe, 0xef,
                              0,    0,    0,    0, 0,    0,    0,    0};
    memset(out, 0xaa, sizeof out);
    tch_frame_header_write(out, TCH_FRAME_CALL_REQ, 0xdeadbeef, 0x100);
    assert_memory_equal(out, want, 16);
}

static void ping_encode_matches_node(void **state) {
    (void)state;
    uint8_t out[16];
    assert_int_equal(tch_ping_encode(TCH_FRAME_PING_REQ, 9, out), 16);
    assert_memory_equal(out, wv_ping_req, 16);
    tch_ping_encode(TCH_FRAME_PING_RES, 9, out);
    assert_memory_equal(out, wv_ping_res, 16);
}

static void type_names(void **state) {
    (void)state;
    assert_string_equal(tch_frame_type_name(TCH_FRAME_CALL_REQ), "call req");
    assert_string_equal(tch_frame_type_name(TCH_FRAME_ERROR), "error");
    assert_string_equal(tch_frame_type_name(0x42), "unknown");
}

/* ---- init ------------------------------------------------------------- */

static void init_round_trip(const uint8_t *bytes, size_t len, uint8_t type,
                            const char *host_port) {
    tch_frame f = parse_ok(bytes, len);
    assert_int_equal(f.type, type);
    tch_init m;
    tch_error err;
    assert_int_equal(tch_init_decode(f.payload, &m, &err), 0);
    assert_int_equal(m.version, 2);
    assert_int_equal(m.nheaders, 5);
    tch_slice v;
    assert_int_equal(tch_init_get(&m, "host_port", &v), 1);
    assert_true(tch_slice_eq_cstr(v, host_port));
    assert_int_equal(tch_init_get(&m, "tchannel_language", &v), 1);
    assert_true(tch_slice_eq_cstr(v, "node"));
    assert_int_equal(tch_init_get(&m, "nope", &v), 0);
    uint8_t out[512];
    size_t n;
    assert_int_equal(tch_init_encode(type, f.id, &m, out, sizeof out, &n, &err),
                     0);
    assert_int_equal(n, len);
    assert_memory_equal(out, bytes, len);
}

static void init_req_res_match_node(void **state) {
    (void)state;
    init_round_trip(wv_init_req, sizeof wv_init_req, TCH_FRAME_INIT_REQ,
                    "0.0.0.0:0");
    init_round_trip(wv_init_res, sizeof wv_init_res, TCH_FRAME_INIT_RES,
                    "127.0.0.1:4040");
}

/* Every strict prefix of an init payload is malformed. */
static void init_truncated_fails(void **state) {
    (void)state;
    tch_frame f = parse_ok(wv_init_req, sizeof wv_init_req);
    for (size_t n = 0; n < f.payload.len; n++) {
        tch_init m;
        tch_error err = {0};
        int rc = tch_init_decode(tch_slice_of(f.payload.ptr, n), &m, &err);
        assert_int_equal(rc, TCH_EPROTO);
        assert_non_null(strstr(err.msg, "init: "));
    }
}

static void init_rejects_bad_lengths(void **state) {
    (void)state;
    /* version 2, 1 header, key length 0x0100 with 3 bytes left */
    const uint8_t p[] = {0, 2, 0, 1, 0x01, 0x00, 'a', 'b', 'c'};
    tch_init m;
    tch_error err;
    assert_int_equal(tch_init_decode(SL(p), &m, &err), TCH_EPROTO);
    assert_string_equal(err.msg, "init: header key length 256 exceeds "
                                 "remaining 3 bytes at offset 6");
    const uint8_t many[] = {0, 2, 0, 33};
    assert_int_equal(tch_init_decode(SL(many), &m, &err), TCH_ETOOBIG);
    const uint8_t trailing[] = {0, 2, 0, 0, 9};
    assert_int_equal(tch_init_decode(SL(trailing), &m, &err), TCH_EPROTO);
    assert_non_null(strstr(err.msg, "trailing"));
}

static void init_encode_checks_capacity(void **state) {
    (void)state;
    tch_init m = {.version = 2, .nheaders = 1};
    m.headers[0].key = tch_slice_cstr("host_port");
    m.headers[0].value = tch_slice_cstr("1.2.3.4:5");
    uint8_t out[64];
    size_t n;
    tch_error err;
    assert_int_equal(tch_init_encode(TCH_FRAME_INIT_REQ, 1, &m, out, 30, &n,
                                     &err),
                     TCH_EINVAL);
    assert_int_equal(tch_init_encode(TCH_FRAME_CALL_REQ, 1, &m, out, 64, &n,
                                     &err),
                     TCH_EINVAL);
    assert_int_equal(tch_init_encode(TCH_FRAME_INIT_REQ, 1, &m, out, 64, &n,
                                     &err),
                     0);
    assert_int_equal(n, 16 + 4 + 2 + 9 + 2 + 9);
}

/* ---- cancel, claim, error ---------------------------------------------- */

static void cancel_claim_match_node(void **state) {
    (void)state;
    tch_frame f = parse_ok(wv_cancel, sizeof wv_cancel);
    tch_cancel c;
    tch_error err;
    assert_int_equal(tch_cancel_decode(f.type, f.payload, &c, &err), 0);
    assert_int_equal(c.ttl_ms, 1500);
    assert_tracing(&c.tracing);
    assert_true(tch_slice_eq_cstr(c.why, "user gave up"));
    uint8_t out[128];
    size_t n;
    assert_int_equal(tch_cancel_encode(TCH_FRAME_CANCEL, 7, &c, out, sizeof out,
                                       &n, &err),
                     0);
    assert_int_equal(n, sizeof wv_cancel);
    assert_memory_equal(out, wv_cancel, n);

    f = parse_ok(wv_claim, sizeof wv_claim);
    assert_int_equal(tch_cancel_decode(f.type, f.payload, &c, &err), 0);
    assert_int_equal(c.ttl_ms, 2500);
    assert_int_equal(c.why.len, 0);
    assert_int_equal(tch_cancel_encode(TCH_FRAME_CLAIM, 8, &c, out, sizeof out,
                                       &n, &err),
                     0);
    assert_int_equal(n, sizeof wv_claim);
    assert_memory_equal(out, wv_claim, n);
}

static void cancel_rejects_truncation_and_trailing(void **state) {
    (void)state;
    tch_frame f = parse_ok(wv_cancel, sizeof wv_cancel);
    tch_cancel c;
    tch_error err;
    for (size_t n = 0; n < f.payload.len; n++)
        assert_int_equal(tch_cancel_decode(TCH_FRAME_CANCEL,
                                           tch_slice_of(f.payload.ptr, n), &c,
                                           &err),
                         TCH_EPROTO);
    /* A claim payload read as a cancel lacks why. */
    f = parse_ok(wv_claim, sizeof wv_claim);
    assert_int_equal(tch_cancel_decode(TCH_FRAME_CANCEL, f.payload, &c, &err),
                     TCH_EPROTO);
    assert_non_null(strstr(err.msg, "cancel: truncated why"));
    /* A cancel payload read as a claim has trailing bytes. */
    f = parse_ok(wv_cancel, sizeof wv_cancel);
    assert_int_equal(tch_cancel_decode(TCH_FRAME_CLAIM, f.payload, &c, &err),
                     TCH_EPROTO);
    assert_int_equal(tch_cancel_decode(TCH_FRAME_ERROR, f.payload, &c, &err),
                     TCH_EINVAL);
}

static void error_frames_match_node(void **state) {
    (void)state;
    tch_frame f = parse_ok(wv_error, sizeof wv_error);
    tch_error_frame e;
    tch_error err;
    assert_int_equal(f.type, TCH_FRAME_ERROR);
    assert_int_equal(tch_error_frame_decode(f.payload, &e, &err), 0);
    assert_int_equal(e.code, 0x06);
    assert_tracing(&e.tracing);
    assert_true(tch_slice_eq_cstr(e.message, "no such endpoint"));
    uint8_t out[128];
    size_t n;
    assert_int_equal(tch_error_frame_encode(10, &e, out, sizeof out, &n, &err),
                     0);
    assert_int_equal(n, sizeof wv_error);
    assert_memory_equal(out, wv_error, n);

    f = parse_ok(wv_error_noid, sizeof wv_error_noid);
    assert_int_equal(f.id, TCH_ID_NONE);
    assert_int_equal(tch_error_frame_decode(f.payload, &e, &err), 0);
    assert_int_equal(e.code, 0xff);
    assert_int_equal(tch_error_frame_encode(TCH_ID_NONE, &e, out, sizeof out,
                                            &n, &err),
                     0);
    assert_memory_equal(out, wv_error_noid, sizeof wv_error_noid);
}

static void error_encode_rejects_oversized_message(void **state) {
    (void)state;
    static uint8_t big[70000];
    static uint8_t out[TCH_FRAME_MAX_SIZE];
    tch_error_frame e = {.code = 5};
    size_t n;
    tch_error err;
    e.message = tch_slice_of(big, TCH_FRAME_MAX_PAYLOAD - 28 + 1);
    assert_int_equal(tch_error_frame_encode(1, &e, out, sizeof out, &n, &err),
                     TCH_ETOOBIG);
    e.message = tch_slice_of(big, TCH_FRAME_MAX_PAYLOAD - 28);
    assert_int_equal(tch_error_frame_encode(1, &e, out, sizeof out, &n, &err),
                     0);
    assert_int_equal(n, TCH_FRAME_MAX_SIZE);
    e.message = tch_slice_of(big, sizeof big);
    assert_int_equal(tch_error_frame_encode(1, &e, out, sizeof out, &n, &err),
                     TCH_EINVAL);
    const uint8_t p[] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                         0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 'a'};
    assert_int_equal(tch_error_frame_decode(SL(p), &e, &err), TCH_EPROTO);
    assert_string_equal(err.msg, "error: message length 5 exceeds remaining 1 "
                                 "bytes at offset 28");
}

/* ---- call frames -------------------------------------------------------- */

static const uint8_t *const call_vectors[4] = {
    wv_call_req_csum0, wv_call_req_csum1, wv_call_req_csum2, wv_call_req_csum3};
static const size_t call_vector_lens[4] = {
    sizeof wv_call_req_csum0, sizeof wv_call_req_csum1,
    sizeof wv_call_req_csum2, sizeof wv_call_req_csum3};

static void call_req_decodes_node_frames(void **state) {
    (void)state;
    static const char *const args[3] = {"echo", "hdr", "hello world"};
    for (uint8_t t = 0; t < 4; t++) {
        tch_frame f = parse_ok(call_vectors[t], call_vector_lens[t]);
        tch_call_frame cf;
        tch_error err;
        assert_int_equal(tch_call_frame_decode(&f, &cf, &err), 0);
        assert_int_equal(f.id, 42);
        assert_int_equal(cf.f.flags, 0);
        assert_int_equal(cf.f.ttl_ms, 1000);
        assert_tracing(&cf.f.tracing);
        assert_true(tch_slice_eq_cstr(cf.f.service, "svc"));
        assert_int_equal(cf.f.nheaders, 2);
        assert_true(tch_slice_eq_cstr(cf.f.headers[0].key, "as"));
        assert_true(tch_slice_eq_cstr(cf.f.headers[1].value, "wire-test"));
        assert_int_equal(cf.f.csum_type, t);
        assert_int_equal(cf.nchunks, 3);
        for (int i = 0; i < 3; i++)
            assert_true(tch_slice_eq_cstr(cf.chunks[i], args[i]));
        uint32_t want = 0;
        if (t == TCH_CSUM_CRC32 || t == TCH_CSUM_CRC32C) {
            for (int i = 0; i < 3; i++)
                want = (t == 1 ? tch_crc32 : tch_crc32c)(
                    want, cf.chunks[i].ptr, cf.chunks[i].len);
        } else if (t == TCH_CSUM_FARMHASH) {
            want = tch_farmhash32((const uint8_t *)"hello world", 11);
        }
        assert_int_equal(cf.csum, want);
    }
}

/* Encoding the same call with the fragmenter gives Node's exact bytes. */
static void call_req_encodes_like_node(void **state) {
    (void)state;
    static uint8_t out[TCH_FRAME_MAX_SIZE];
    for (uint8_t t = 0; t < 4; t++) {
        tch_frame f = parse_ok(call_vectors[t], call_vector_lens[t]);
        tch_call_frame cf;
        assert_int_equal(tch_call_frame_decode(&f, &cf, NULL), 0);
        tch_fragmenter fz;
        tch_fragmenter_init(&fz, TCH_FRAME_CALL_REQ, 42, &cf.f, cf.chunks);
        size_t n;
        tch_error err;
        assert_int_equal(tch_fragmenter_next(&fz, out, &n, &err), 0);
        assert_int_equal(n, call_vector_lens[t]);
        assert_memory_equal(out, call_vectors[t], n);
    }
}

static void call_res_decodes_node_frame(void **state) {
    (void)state;
    tch_frame f = parse_ok(wv_call_res_crc32c, sizeof wv_call_res_crc32c);
    tch_call_frame cf;
    assert_int_equal(tch_call_frame_decode(&f, &cf, NULL), 0);
    assert_int_equal(f.type, TCH_FRAME_CALL_RES);
    assert_int_equal(cf.f.code, TCH_CALL_RES_APP_ERROR);
    assert_int_equal(cf.f.nheaders, 1);
    assert_int_equal(cf.f.service.len, 0);
    assert_int_equal(cf.nchunks, 3);
    assert_int_equal(cf.chunks[0].len, 0);
    assert_true(tch_slice_eq_cstr(cf.chunks[2], "{\"err\":1}"));
    assert_int_equal(cf.csum, tch_crc32c(tch_crc32c(0, (const uint8_t *)"{}", 2),
                                         (const uint8_t *)"{\"err\":1}", 9));
}

/* Hand-written call req: header, flags, ttl, tracing, then a service length
 * (40) larger than what is left (12). */
static void call_req_service_length_error_names_field(void **state) {
    (void)state;
    uint8_t b[16 + 43] = {0, 16 + 43, 0x03, 0, 0, 0, 0, 5};
    b[16 + 30] = 40; /* service length at payload offset 30 */
    tch_frame f = parse_ok(b, sizeof b);
    tch_call_frame cf;
    tch_error err;
    assert_int_equal(tch_call_frame_decode(&f, &cf, &err), TCH_EPROTO);
    assert_string_equal(err.msg, "call req: service length 40 exceeds "
                                 "remaining 12 bytes at offset 31");
}

static void call_frames_reject_malformed(void **state) {
    (void)state;
    tch_call_frame cf;
    tch_error err;
    /* cont: flags, csum type 7 */
    const uint8_t bad_csum[] = {0, 18, 0x13, 0, 0, 0, 0, 1, 0, 0, 0, 0,
                                0, 0, 0, 0, 0x00, 0x07};
    tch_frame f = parse_ok(bad_csum, sizeof bad_csum);
    assert_int_equal(tch_call_frame_decode(&f, &cf, &err), TCH_EPROTO);
    assert_string_equal(err.msg, "call req cont: unknown checksum type 0x07 at "
                                 "offset 1");
    /* cont with four chunks */
    const uint8_t four[] = {0, 26, 0x14, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0,
                            0, 0,  0,    0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    f = parse_ok(four, sizeof four);
    assert_int_equal(tch_call_frame_decode(&f, &cf, &err), TCH_EPROTO);
    assert_non_null(strstr(err.msg, "more than 3 arg chunks"));
    /* cont with a 1-byte chunk length */
    const uint8_t half[] = {0, 19, 0x13, 0, 0, 0, 0, 1, 0, 0,
                            0, 0,  0,    0, 0, 0, 0, 0, 0};
    f = parse_ok(half, sizeof half);
    assert_int_equal(tch_call_frame_decode(&f, &cf, &err), TCH_EPROTO);
    assert_non_null(strstr(err.msg, "truncated chunk 1"));
    /* cont with crc32 but only 2 bytes of checksum */
    const uint8_t short_csum[] = {0, 20, 0x13, 0, 0, 0, 0, 1, 0, 0,
                                  0, 0,  0,    0, 0, 0, 0, 1, 0xab, 0xcd};
    f = parse_ok(short_csum, sizeof short_csum);
    assert_int_equal(tch_call_frame_decode(&f, &cf, &err), TCH_EPROTO);
    assert_non_null(strstr(err.msg, "truncated checksum"));
    /* not a call frame */
    f = parse_ok(wv_ping_req, 16);
    assert_int_equal(tch_call_frame_decode(&f, &cf, &err), TCH_EINVAL);
}

/* Cutting a Node call frame anywhere inside its fields must fail cleanly;
 * cutting inside the args must fail or yield fewer bytes. */
static void call_req_truncated_everywhere(void **state) {
    (void)state;
    const uint8_t *v = wv_call_req_csum1;
    size_t len = sizeof wv_call_req_csum1;
    uint8_t buf[256];
    for (size_t n = 16; n < len; n++) {
        memcpy(buf, v, n);
        buf[0] = (uint8_t)(n >> 8);
        buf[1] = (uint8_t)n;
        tch_frame f = parse_ok(buf, n);
        tch_call_frame cf;
        tch_error err = {0};
        int rc = tch_call_frame_decode(&f, &cf, &err);
        if (n < len - 3 * 2 - 4 - 3 - 11) /* before arg1's length */
            assert_int_equal(rc, TCH_EPROTO);
        if (rc)
            assert_non_null(strstr(err.msg, "call req: "));
    }
}

/* Deterministic garbage through every decoder: must not crash or read out
 * of bounds (run under ASan in CI). */
static void garbage_does_not_crash(void **state) {
    (void)state;
    uint8_t buf[300];
    uint32_t s = 12345;
    int ok = 0;
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = 16 + (size_t)(iter % 280);
        for (size_t i = 0; i < n; i++) {
            s = s * 1103515245u + 12345u;
            buf[i] = (uint8_t)(s >> 16);
        }
        buf[0] = (uint8_t)(n >> 8);
        buf[1] = (uint8_t)n;
        static const uint8_t types[] = {0x01, 0x02, 0x03, 0x04, 0x13,
                                        0x14, 0xc0, 0xc1, 0xff};
        buf[2] = types[iter % sizeof types];
        tch_frame f = parse_ok(buf, n);
        tch_init im;
        tch_cancel c;
        tch_error_frame e;
        tch_call_frame cf;
        ok += tch_init_decode(f.payload, &im, NULL) == 0;
        ok += tch_cancel_decode(TCH_FRAME_CANCEL, f.payload, &c, NULL) == 0;
        ok += tch_error_frame_decode(f.payload, &e, NULL) == 0;
        ok += tch_call_frame_decode(&f, &cf, NULL) == 0;
    }
    assert_true(ok < 20000 * 4);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_needs_more_input),
        cmocka_unit_test(parse_rejects_frame_shorter_than_header),
        cmocka_unit_test(parse_two_frames_back_to_back),
        cmocka_unit_test(header_write_bytes),
        cmocka_unit_test(ping_encode_matches_node),
        cmocka_unit_test(type_names),
        cmocka_unit_test(init_req_res_match_node),
        cmocka_unit_test(init_truncated_fails),
        cmocka_unit_test(init_rejects_bad_lengths),
        cmocka_unit_test(init_encode_checks_capacity),
        cmocka_unit_test(cancel_claim_match_node),
        cmocka_unit_test(cancel_rejects_truncation_and_trailing),
        cmocka_unit_test(error_frames_match_node),
        cmocka_unit_test(error_encode_rejects_oversized_message),
        cmocka_unit_test(call_req_decodes_node_frames),
        cmocka_unit_test(call_req_encodes_like_node),
        cmocka_unit_test(call_res_decodes_node_frame),
        cmocka_unit_test(call_req_service_length_error_names_field),
        cmocka_unit_test(call_frames_reject_malformed),
        cmocka_unit_test(call_req_truncated_everywhere),
        cmocka_unit_test(garbage_does_not_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
