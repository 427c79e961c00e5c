/* Fragmenter and reassembler: byte identity with the Node peer's
 * fragmentation (wire_vectors_node.h), round trips from 0 bytes to 64 MiB
 * for every checksum type, checksum mismatch detection, limits and
 * protocol violations. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "wire.h"
#include "wire_vectors_node.h"

#define MiB (1024u * 1024u)

static uint8_t frame_buf[TCH_FRAME_MAX_SIZE];

/* The call the Node vectors were written with. */
static void node_fields(tch_call_fields *f, uint8_t type, uint8_t csum) {
    memset(f, 0, sizeof *f);
    f->ttl_ms = type == TCH_FRAME_CALL_REQ ? 1000 : 0;
    f->tracing = (tch_trace){0x0102030405060708ull, 0x1112131415161718ull,
                               0x2122232425262728ull, 1};
    if (type == TCH_FRAME_CALL_REQ)
        f->service = tch_slice_cstr("svc");
    f->nheaders = 2;
    f->headers[0] = (tch_kv){tch_slice_cstr("as"), tch_slice_cstr("raw")};
    f->headers[1] = (tch_kv){tch_slice_cstr("cn"), tch_slice_cstr("wire-test")};
    f->csum_type = csum;
}

/* arg k byte i = (i * 31 + 7 * k + 1) & 0xff, as the Node generator. */
static uint8_t *make_arg(size_t n, int k) {
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 31 + 7 * (size_t)k + 1);
    return p;
}

static tch_frame parse_ok(const uint8_t *bytes, size_t len) {
    tch_frame f;
    size_t used;
    tch_error err;
    if (tch_frame_parse(tch_slice_of(bytes, len), &f, &used, &err))
        fail_msg("parse: %s", err.msg);
    assert_int_equal(used, len);
    return f;
}

/* Feeds one frame to the reassembler, starting it on the first frame. */
static int feed(tch_reasm *r, int first, const uint8_t *bytes, size_t len,
                size_t max_arg, tch_error *err) {
    tch_frame f = parse_ok(bytes, len);
    return first ? tch_reasm_start(r, &f, max_arg, err)
                 : tch_reasm_continue(r, &f, err);
}

static void check_frame_against_node(const wv_frag *v, size_t i,
                                     const uint8_t *out, size_t n) {
    const wv_frag_frame *w = &v->frames[i];
    if (n != w->size || out[2] != w->type || out[16] != w->flags ||
        (uint32_t)crc32(0, out, (uInt)n) != w->crc ||
        memcmp(out, w->head, n < 64 ? n : 64) != 0)
        fail_msg("%s: frame %zu differs from Node (size %zu vs %zu, flags "
                 "%u vs %u)",
                 v->name, i, n, w->size, out[16], w->flags);
}

static void check_msg_args(const tch_call_msg *m, uint8_t *const args[3],
                           const size_t lens[3]) {
    for (int k = 0; k < 3; k++) {
        assert_int_equal(m->args[k].len, lens[k]);
        if (lens[k])
            assert_memory_equal(m->args[k].ptr, args[k], lens[k]);
    }
}

/* Our fragmenter reproduces Node's frames byte for byte (size, crc32 of
 * the whole frame, first 64 bytes), and the reassembler takes them back. */
static void fragments_like_node(void **state) {
    (void)state;
    for (size_t vi = 0; vi < WV_NFRAGS; vi++) {
        const wv_frag *v = &wv_frags[vi];
        tch_call_fields f;
        node_fields(&f, v->type, v->csum_type);
        uint8_t *args[3];
        tch_slice s[3];
        for (int k = 0; k < 3; k++) {
            args[k] = make_arg(v->arg_lens[k], k);
            s[k] = tch_slice_of(args[k], v->arg_lens[k]);
        }
        tch_fragmenter fz;
        tch_fragmenter_init(&fz, v->type, 77, &f, s);
        tch_reasm r;
        tch_error err;
        int more = 1, done = 0;
        size_t i;
        for (i = 0; more; i++) {
            size_t n;
            more = tch_fragmenter_next(&fz, frame_buf, &n, &err);
            assert_true(more >= 0);
            assert_true(i < v->nframes);
            check_frame_against_node(v, i, frame_buf, n);
            done = feed(&r, i == 0, frame_buf, n, 0, &err);
            if (done < 0)
                fail_msg("%s: %s", v->name, err.msg);
        }
        assert_int_equal(i, v->nframes);
        assert_int_equal(done, 1);
        check_msg_args(&r.msg, args, v->arg_lens);
        assert_int_equal(r.msg.csum_type, v->csum_type);
        assert_int_equal(r.msg.nheaders, 2);
        tch_call_msg_free(&r.msg);
        for (int k = 0; k < 3; k++)
            free(args[k]);
    }
}

/* Node's streaming sender: first frame [echo, hd] MORE, cont [rs, body1]
 * MORE, cont [body2] MORE, cont [""] last. Accepted for every csum type. */
static void reassembles_node_streaming_frames(void **state) {
    (void)state;
    const wv_stream *streams[4] = {&wv_stream0, &wv_stream1, &wv_stream2,
                                   &wv_stream3};
    for (int t = 0; t < 4; t++) {
        tch_reasm r;
        tch_error err;
        int rc = 0;
        for (int i = 0; i < 4; i++) {
            rc = feed(&r, i == 0, streams[t]->frames[i], streams[t]->lens[i], 0,
                      &err);
            if (rc < 0)
                fail_msg("csum %d frame %d: %s", t, i, err.msg);
            assert_int_equal(rc, i == 3);
        }
        const tch_call_msg *m = &r.msg;
        assert_int_equal(m->type, TCH_FRAME_CALL_REQ);
        assert_int_equal(m->id, 50);
        assert_int_equal(m->flags, 0); /* MORE is stripped */
        assert_true(tch_slice_eq_cstr(m->service, "svc"));
        assert_true(tch_slice_eq_cstr(m->headers[1].value, "wire-test"));
        assert_true(tch_slice_eq_cstr(tch_buf_slice(&m->args[0]), "echo"));
        assert_true(tch_slice_eq_cstr(tch_buf_slice(&m->args[1]), "hdrs"));
        assert_true(tch_slice_eq_cstr(tch_buf_slice(&m->args[2]),
                                      "body1body2"));
        tch_call_msg_free(&r.msg);
    }
}

/* Fragments and reassembles in lockstep; returns the number of frames. */
static size_t round_trip(uint8_t type, uint8_t csum, const size_t lens[3]) {
    tch_call_fields f;
    node_fields(&f, type, csum);
    uint8_t *args[3];
    tch_slice s[3];
    for (int k = 0; k < 3; k++) {
        args[k] = make_arg(lens[k], k);
        s[k] = tch_slice_of(args[k], lens[k]);
    }
    tch_fragmenter fz;
    tch_fragmenter_init(&fz, type, 9, &f, s);
    tch_reasm r;
    tch_error err;
    size_t frames = 0;
    int more = 1, done = 0;
    while (more) {
        size_t n, bound = tch_fragmenter_bound(&fz);
        more = tch_fragmenter_next(&fz, frame_buf, &n, &err);
        if (more < 0)
            fail_msg("fragment: %s", err.msg);
        assert_true(n <= TCH_FRAME_MAX_SIZE);
        /* the room a caller reserves: enough, and not much more than a
         * last frame needs (a chunk length per arg at most) */
        if (n > bound)
            fail_msg("frame %zu of %zu/%zu/%zu: %zu bytes, bound %zu", frames, lens[0],
                     lens[1], lens[2], n, bound);
        if (!more)
            assert_true(bound - n <= 8);
        assert_int_equal(!!(frame_buf[16] & TCH_CALL_FLAG_MORE), more);
        done = feed(&r, frames == 0, frame_buf, n, 0, &err);
        if (done < 0)
            fail_msg("reasm %zu/%zu/%zu csum %u: %s", lens[0], lens[1],
                     lens[2], csum, err.msg);
        assert_int_equal(done, !more);
        frames++;
    }
    check_msg_args(&r.msg, args, lens);
    tch_call_msg_free(&r.msg);
    for (int k = 0; k < 3; k++)
        free(args[k]);
    return frames;
}

/* Every arg position ending at, just before and just after a frame
 * boundary, for both frame types and every checksum type. */
static void round_trip_boundaries(void **state) {
    (void)state;
    for (uint8_t csum = 0; csum < 4; csum++) {
        for (uint8_t type = TCH_FRAME_CALL_REQ; type <= TCH_FRAME_CALL_RES;
             type++) {
            size_t room = TCH_FRAME_MAX_PAYLOAD - (type == 3 ? 56 : 49) -
                          (csum ? 4 : 0); /* arg bytes of frame 1 */
            size_t zero[3] = {0, 0, 0}, one[3] = {1, 1, 1};
            assert_int_equal(round_trip(type, csum, zero), 1);
            assert_int_equal(round_trip(type, csum, one), 1);
            for (size_t d = 0; d <= 8; d++) {
                size_t a = room - 2 - 4 + d; /* arg1 ends 4..-4 from the end */
                size_t l1[3] = {a, 3, 3}, l2[3] = {0, a - 2, 3};
                size_t l3[3] = {0, 0, a - 4}, l4[3] = {a, 0, 0};
                round_trip(type, csum, l1);
                round_trip(type, csum, l2);
                round_trip(type, csum, l3);
                round_trip(type, csum, l4);
                /* the same around the end of the first continue frame */
                size_t l5[3] = {room - 2 + 65511 - 4 + d, 5, 5};
                assert_true(round_trip(type, csum, l5) >= 2);
            }
        }
    }
}

static void round_trip_large(void **state) {
    (void)state;
    size_t a[3] = {16, 100, 1 * MiB};
    size_t b[3] = {16, 16 * MiB, 0};
    size_t c[3] = {16, 100, 64 * MiB + 7};
    assert_int_equal(round_trip(TCH_FRAME_CALL_REQ, TCH_CSUM_FARMHASH, a), 17);
    round_trip(TCH_FRAME_CALL_RES, TCH_CSUM_CRC32, b);
    round_trip(TCH_FRAME_CALL_REQ, TCH_CSUM_NONE, a);
    round_trip(TCH_FRAME_CALL_REQ, TCH_CSUM_CRC32C, c);
}

/* When an arg ends with fewer than 2 bytes left (no room for the next
 * chunk's length), the next continue frame starts with a 0-length chunk
 * that closes it. (Node 4.0.1 drops the later args here.) */
static void arg_at_boundary_closed_by_empty_chunk(void **state) {
    (void)state;
    tch_call_fields f;
    node_fields(&f, TCH_FRAME_CALL_REQ, TCH_CSUM_CRC32);
    size_t room = TCH_FRAME_MAX_PAYLOAD - 56 - 4;
    for (size_t left = 0; left < 2; left++) {
        uint8_t *a1 = make_arg(room - 2 - left, 0);
        tch_slice s[3] = {tch_slice_of(a1, room - 2 - left),
                          tch_slice_cstr("h2"), tch_slice_cstr("b3")};
        tch_fragmenter fz;
        tch_fragmenter_init(&fz, TCH_FRAME_CALL_REQ, 1, &f, s);
        size_t n;
        assert_int_equal(tch_fragmenter_next(&fz, frame_buf, &n, NULL), 1);
        assert_int_equal(n, TCH_FRAME_MAX_SIZE - left);
        assert_int_equal(tch_fragmenter_next(&fz, frame_buf, &n, NULL), 0);
        /* cont: flags 0, csum type 1, csum:4, then chunks 0, "h2", "b3" */
        const uint8_t body[] = {0, 0, 0, 2, 'h', '2', 0, 2, 'b', '3'};
        assert_int_equal(n, 16 + 6 + sizeof body);
        assert_int_equal(frame_buf[2], TCH_FRAME_CALL_REQ_CONT);
        assert_int_equal(frame_buf[16], 0);
        assert_memory_equal(frame_buf + 22, body, sizeof body);
        free(a1);
    }
}

/* Builds the frames of one call into a malloc'd array (for tampering). */
typedef struct frames {
    uint8_t *buf[8];
    size_t len[8];
    size_t n;
} frames;

static frames build(uint8_t csum, const size_t lens[3], uint8_t **args) {
    static tch_call_fields f;
    node_fields(&f, TCH_FRAME_CALL_REQ, csum);
    tch_slice s[3];
    for (int k = 0; k < 3; k++) {
        args[k] = make_arg(lens[k], k);
        s[k] = tch_slice_of(args[k], lens[k]);
    }
    tch_fragmenter fz;
    tch_fragmenter_init(&fz, TCH_FRAME_CALL_REQ, 5, &f, s);
    frames fs = {.n = 0};
    int more = 1;
    while (more) {
        assert_true(fs.n < 8);
        fs.buf[fs.n] = malloc(TCH_FRAME_MAX_SIZE);
        assert_non_null(fs.buf[fs.n]);
        more = tch_fragmenter_next(&fz, fs.buf[fs.n], &fs.len[fs.n], NULL);
        assert_true(more >= 0);
        fs.n++;
    }
    return fs;
}

static void free_all(frames *fs, uint8_t **args) {
    for (size_t i = 0; i < fs->n; i++)
        free(fs->buf[i]);
    for (int k = 0; k < 3; k++)
        free(args[k]);
}

/* Feeds all frames; returns the first non-zero result. */
static int feed_all(const frames *fs, tch_reasm *r, size_t max_arg,
                    tch_error *err) {
    int rc = 0;
    for (size_t i = 0; i < fs->n && rc == 0; i++)
        rc = feed(r, i == 0, fs->buf[i], fs->len[i], max_arg, err);
    return rc;
}

static void detects_checksum_mismatch(void **state) {
    (void)state;
    const size_t lens[3] = {10, 100000, 20}; /* 2 frames */
    for (uint8_t csum = 1; csum < 4; csum++) {
        for (size_t victim = 0; victim < 2; victim++) {
            uint8_t *args[3];
            frames fs = build(csum, lens, args);
            assert_int_equal(fs.n, 2);
            /* flip a byte of the last chunk of the victim frame */
            fs.buf[victim][fs.len[victim] - 1] ^= 0x40;
            tch_reasm r;
            tch_error err;
            assert_int_equal(feed_all(&fs, &r, 0, &err), TCH_ECHECKSUM);
            char want[32];
            snprintf(want, sizeof want, "frame index %zu of id 5", victim);
            assert_non_null(strstr(err.msg, want));
            tch_reasm_free(&r);
            free_all(&fs, args);
        }
    }
}

/* A corrupt frame is reported as corrupt even when it also breaks a limit,
 * for every checksum type alike. */
static void checksum_mismatch_wins_over_limits(void **state) {
    (void)state;
    const size_t lens[3] = {10, 100, 20};
    for (uint8_t csum = 1; csum < 4; csum++) {
        uint8_t *args[3];
        frames fs = build(csum, lens, args);
        fs.buf[0][fs.len[0] - 1] ^= 0x40;
        tch_reasm r;
        tch_error err;
        assert_int_equal(feed_all(&fs, &r, 50, &err), TCH_ECHECKSUM);
        tch_reasm_free(&r);
        fs.buf[0][fs.len[0] - 1] ^= 0x40; /* intact: now the limit speaks */
        assert_int_equal(feed_all(&fs, &r, 50, &err), TCH_ETOOBIG);
        tch_reasm_free(&r);
        free_all(&fs, args);
    }
}

/* farmhash covers only the last chunk of each frame (Node's semantics), so
 * a flipped byte in an earlier chunk of the same frame is not detected. */
static void farmhash_covers_last_chunk_only(void **state) {
    (void)state;
    const size_t lens[3] = {10, 10, 10};
    uint8_t *args[3];
    frames fs = build(TCH_CSUM_FARMHASH, lens, args);
    tch_reasm r;
    tch_error err;
    fs.buf[0][fs.len[0] - 24 - 1] ^= 1; /* last byte of arg1 */
    assert_int_equal(feed_all(&fs, &r, 0, &err), 1);
    assert_int_not_equal(r.msg.args[0].ptr[9], args[0][9]);
    tch_call_msg_free(&r.msg);
    fs.buf[0][fs.len[0] - 1] ^= 1; /* last byte of arg3 */
    assert_int_equal(feed_all(&fs, &r, 0, &err), TCH_ECHECKSUM);
    tch_reasm_free(&r);
    free_all(&fs, args);
}

static void enforces_max_arg(void **state) {
    (void)state;
    const size_t lens[3] = {10, 150000, 100};
    uint8_t *args[3];
    frames fs = build(TCH_CSUM_CRC32C, lens, args);
    tch_reasm r;
    tch_error err;
    assert_int_equal(feed_all(&fs, &r, 149999, &err), TCH_ETOOBIG);
    assert_non_null(strstr(err.msg, "arg2"));
    assert_non_null(strstr(err.msg, "limit of 149999 bytes"));
    tch_reasm_free(&r);
    assert_int_equal(feed_all(&fs, &r, 150000, &err), 1);
    tch_call_msg_free(&r.msg);
    assert_int_equal(feed_all(&fs, &r, 99, &err), TCH_ETOOBIG);
    assert_non_null(strstr(err.msg, "arg2"));
    tch_reasm_free(&r);
    free_all(&fs, args);

    const size_t small[3] = {1, 2, 100};
    fs = build(TCH_CSUM_NONE, small, args);
    assert_int_equal(feed_all(&fs, &r, 99, &err), TCH_ETOOBIG);
    assert_non_null(strstr(err.msg, "arg3 of at least 100 bytes"));
    tch_reasm_free(&r);
    free_all(&fs, args);
}

/* A continue frame for a message that is already complete, a 4th arg, a
 * checksum type change, a wrong id or type, and a message ending early. */
static void rejects_protocol_violations(void **state) {
    (void)state;
    const size_t lens[3] = {10, 70000, 20};
    uint8_t *args[3];
    frames fs = build(TCH_CSUM_CRC32, lens, args);
    tch_reasm r;
    tch_error err;
    assert_int_equal(feed_all(&fs, &r, 0, &err), 1);
    assert_int_equal(feed(&r, 0, fs.buf[1], fs.len[1], 0, &err), TCH_EPROTO);
    assert_non_null(strstr(err.msg, "after the message was complete"));
    tch_call_msg_free(&r.msg);

    /* checksum type change: rewrite the cont's csum type to crc32c */
    assert_int_equal(feed(&r, 1, fs.buf[0], fs.len[0], 0, &err), 0);
    fs.buf[1][17] = TCH_CSUM_CRC32C;
    assert_int_equal(feed(&r, 0, fs.buf[1], fs.len[1], 0, &err), TCH_EPROTO);
    assert_non_null(strstr(err.msg, "checksum type changed from crc32 to "
                                    "crc32c"));
    fs.buf[1][17] = TCH_CSUM_CRC32;
    /* wrong id, then wrong type */
    fs.buf[1][7] = 6;
    assert_int_equal(feed(&r, 0, fs.buf[1], fs.len[1], 0, &err), TCH_EPROTO);
    assert_non_null(strstr(err.msg, "id 6 does not match message id 5"));
    fs.buf[1][7] = 5;
    fs.buf[1][2] = TCH_FRAME_CALL_RES_CONT;
    assert_int_equal(feed(&r, 0, fs.buf[1], fs.len[1], 0, &err), TCH_EPROTO);
    fs.buf[1][2] = TCH_FRAME_CALL_REQ_CONT;
    /* a continue frame cannot start a message */
    tch_reasm r2;
    assert_int_equal(feed(&r2, 1, fs.buf[1], fs.len[1], 0, &err), TCH_EPROTO);
    tch_reasm_free(&r2);
    /* the real continue still completes the message */
    assert_int_equal(feed(&r, 0, fs.buf[1], fs.len[1], 0, &err), 1);
    check_msg_args(&r.msg, args, lens);
    tch_call_msg_free(&r.msg);
    free_all(&fs, args);
}

/* Hand-built: first frame [a, bb] MORE, then a cont with ["", c, d]: the
 * empty chunk continues arg2, c is arg3 and d would be a 4th arg. */
static void rejects_fourth_arg_and_short_message(void **state) {
    (void)state;
    uint8_t first[] = {0, 0, 0x03, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0,
                       0x01, 0, 0, 0, 100, /* flags MORE, ttl */
                       0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                       0, 0, 0, 0, 0, 0, 0, 0, 0, /* tracing */
                       1, 's', 0, 0, /* service, nh, csum none */
                       0, 1, 'a', 0, 2, 'b', 'b'};
    uint8_t c4[] = {0, 0, 0x13, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0,
                    0x00, 0, /* flags, csum none */
                    0, 0, 0, 1, 'c', 0, 1, 'd'};
    first[1] = sizeof first;
    c4[1] = sizeof c4;
    tch_reasm r;
    tch_error err;
    assert_int_equal(feed(&r, 1, first, sizeof first, 0, &err), 0);
    assert_int_equal(feed(&r, 0, c4, sizeof c4, 0, &err), TCH_EPROTO);
    assert_non_null(strstr(err.msg, "more than 3 args"));
    tch_reasm_free(&r);
    /* The same first frame without MORE ends the message after arg2. */
    first[16] = 0;
    assert_int_equal(feed(&r, 1, first, sizeof first, 0, &err), TCH_EPROTO);
    assert_non_null(strstr(err.msg, "before arg3"));
    tch_reasm_free(&r);
    /* With MORE, a last cont carrying ["", c] completes it. */
    first[16] = 1;
    c4[1] = sizeof c4 - 3;
    assert_int_equal(feed(&r, 1, first, sizeof first, 0, &err), 0);
    assert_int_equal(feed(&r, 0, c4, sizeof c4 - 3, 0, &err), 1);
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&r.msg.args[1]), "bb"));
    assert_true(tch_slice_eq_cstr(tch_buf_slice(&r.msg.args[2]), "c"));
    tch_call_msg_free(&r.msg);
}

static void streaming_flag_is_kept(void **state) {
    (void)state;
    tch_call_fields f;
    node_fields(&f, TCH_FRAME_CALL_REQ, TCH_CSUM_NONE);
    f.flags = TCH_CALL_FLAG_STREAMING | TCH_CALL_FLAG_MORE;
    tch_slice s[3] = {tch_slice_cstr("a"), tch_slice_cstr("b"),
                      tch_slice_cstr("c")};
    tch_fragmenter fz;
    tch_fragmenter_init(&fz, TCH_FRAME_CALL_REQ, 1, &f, s);
    size_t n;
    assert_int_equal(tch_fragmenter_next(&fz, frame_buf, &n, NULL), 0);
    assert_int_equal(frame_buf[16], TCH_CALL_FLAG_STREAMING);
    tch_reasm r;
    assert_int_equal(feed(&r, 1, frame_buf, n, 0, NULL), 1);
    assert_int_equal(r.msg.flags, TCH_CALL_FLAG_STREAMING);
    tch_call_msg_free(&r.msg);
    tch_error err;
    assert_int_equal(tch_fragmenter_next(&fz, frame_buf, &n, &err),
                     TCH_ESTATE);
}

static void fragmenter_rejects_bad_fields(void **state) {
    (void)state;
    static tch_call_fields f;
    static uint8_t big[300];
    tch_slice none[3] = {TCH_SLICE_NULL, TCH_SLICE_NULL, TCH_SLICE_NULL};
    tch_fragmenter fz;
    size_t n;
    tch_error err;
    node_fields(&f, TCH_FRAME_CALL_REQ, 9);
    tch_fragmenter_init(&fz, TCH_FRAME_CALL_REQ, 1, &f, none);
    assert_int_equal(tch_fragmenter_next(&fz, frame_buf, &n, &err), TCH_EINVAL);
    assert_non_null(strstr(err.msg, "unknown checksum type"));
    node_fields(&f, TCH_FRAME_CALL_REQ, 0);
    f.service = tch_slice_of(big, 256);
    tch_fragmenter_init(&fz, TCH_FRAME_CALL_REQ, 1, &f, none);
    assert_int_equal(tch_fragmenter_next(&fz, frame_buf, &n, &err), TCH_EINVAL);
    /* 255 headers of 255-byte keys and values: ~130 KB of fields */
    node_fields(&f, TCH_FRAME_CALL_RES, 0);
    f.nheaders = 255;
    for (size_t i = 0; i < 255; i++)
        f.headers[i] = (tch_kv){tch_slice_of(big, 255), tch_slice_of(big, 255)};
    tch_fragmenter_init(&fz, TCH_FRAME_CALL_RES, 1, &f, none);
    assert_int_equal(tch_fragmenter_next(&fz, frame_buf, &n, &err),
                     TCH_ETOOBIG);
    assert_non_null(strstr(err.msg, "do not fit in the first frame"));
    /* Fields that leave exactly 2 bytes (arg1's length) in frame 1:
     * 29 + 127 * 512 + (2 + 255 + 207) = 65517 = 65519 - 2. */
    f.nheaders = 128;
    f.headers[127].value = tch_slice_of(big, 207);
    tch_fragmenter_init(&fz, TCH_FRAME_CALL_RES, 1, &f, none);
    assert_int_equal(tch_fragmenter_next(&fz, frame_buf, &n, &err), 1);
    assert_int_equal(n, TCH_FRAME_MAX_SIZE);
    assert_int_equal(tch_fragmenter_next(&fz, frame_buf, &n, &err), 0);
    assert_int_equal(n, 16 + 2 + 3 * 2); /* cont: "", "", "" */
    f.headers[127].value = tch_slice_of(big, 208);
    tch_fragmenter_init(&fz, TCH_FRAME_CALL_RES, 1, &f, none);
    assert_int_equal(tch_fragmenter_next(&fz, frame_buf, &n, &err),
                     TCH_ETOOBIG);
    tch_fragmenter_init(&fz, TCH_FRAME_CALL_REQ_CONT, 1, &f, none);
    assert_int_equal(tch_fragmenter_next(&fz, frame_buf, &n, &err), TCH_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fragments_like_node),
        cmocka_unit_test(reassembles_node_streaming_frames),
        cmocka_unit_test(round_trip_boundaries),
        cmocka_unit_test(round_trip_large),
        cmocka_unit_test(arg_at_boundary_closed_by_empty_chunk),
        cmocka_unit_test(detects_checksum_mismatch),
        cmocka_unit_test(checksum_mismatch_wins_over_limits),
        cmocka_unit_test(farmhash_covers_last_chunk_only),
        cmocka_unit_test(enforces_max_arg),
        cmocka_unit_test(rejects_protocol_violations),
        cmocka_unit_test(rejects_fourth_arg_and_short_message),
        cmocka_unit_test(streaming_flag_is_kept),
        cmocka_unit_test(fragmenter_rejects_bad_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
