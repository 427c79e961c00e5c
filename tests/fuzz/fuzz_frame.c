/* libFuzzer target for the wire codec: splits the input into frames,
 * decodes each by type, checks that decode -> encode reproduces the bytes
 * for the small frames, and feeds call frames into a reassembler. Every
 * complete message is fragmented again and reassembled, and must come back
 * unchanged. Any mismatch aborts (a finding); malformed input must only
 * produce error returns. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

#define MAX_ARG (1u << 20)

static uint8_t out[TCH_FRAME_MAX_SIZE];

static void check(int cond) {
    if (!cond)
        abort();
}

/* A decoded small frame, encoded again, must give back its payload. */
static void check_reencode(const tch_frame *f, size_t len) {
    check(len == TCH_FRAME_HEADER_SIZE + f->payload.len);
    check(memcmp(out + TCH_FRAME_HEADER_SIZE, f->payload.ptr,
                 f->payload.len) == 0);
}

static void fuzz_small(const tch_frame *f) {
    size_t len = 0;
    switch (f->type) {
    case TCH_FRAME_INIT_REQ:
    case TCH_FRAME_INIT_RES: {
        tch_init m;
        if (tch_init_decode(f->payload, &m, NULL) == 0) {
            check(tch_init_encode(f->type, f->id, &m, out, sizeof out, &len,
                                  NULL) == 0);
            check_reencode(f, len);
        }
        break;
    }
    case TCH_FRAME_CANCEL:
    case TCH_FRAME_CLAIM: {
        tch_cancel c;
        if (tch_cancel_decode(f->type, f->payload, &c, NULL) == 0) {
            check(tch_cancel_encode(f->type, f->id, &c, out, sizeof out, &len,
                                    NULL) == 0);
            check_reencode(f, len);
        }
        break;
    }
    case TCH_FRAME_ERROR: {
        tch_error_frame e;
        if (tch_error_frame_decode(f->payload, &e, NULL) == 0) {
            check(tch_error_frame_encode(f->id, &e, out, sizeof out, &len,
                                         NULL) == 0);
            check_reencode(f, len);
        }
        break;
    }
    default:
        break;
    }
}

/* Fragments a complete message again and reassembles it: same args. */
static void check_round_trip(const tch_call_msg *m) {
    static tch_call_fields f; /* large; keep it off the stack */
    memset(&f, 0, sizeof f);
    f.flags = m->flags;
    f.ttl_ms = m->ttl_ms;
    f.code = m->code;
    f.tracing = m->tracing;
    f.service = m->service;
    f.nheaders = m->nheaders;
    if (m->nheaders) /* headers is NULL when there are none */
        memcpy(f.headers, m->headers, m->nheaders * sizeof *m->headers);
    f.csum_type = m->csum_type;
    tch_slice args[3];
    for (int i = 0; i < 3; i++)
        args[i] = tch_buf_slice(&m->args[i]);
    tch_fragmenter fz;
    tch_fragmenter_init(&fz, m->type, m->id, &f, args);
    tch_reasm r;
    int more = 1, rc = 0, first = 1;
    while (more == 1) {
        size_t len;
        more = tch_fragmenter_next(&fz, out, &len, NULL);
        /* A peer may fill frame 1 with fields alone (no arg1 length); we
         * refuse to encode that, which is not a finding. */
        if (first && more == TCH_ETOOBIG)
            return;
        check(more >= 0);
        tch_frame fr;
        size_t used;
        check(tch_frame_parse(tch_slice_of(out, len), &fr, &used, NULL) == 0);
        rc = first ? tch_reasm_start(&r, &fr, MAX_ARG, NULL)
                   : tch_reasm_continue(&r, &fr, NULL);
        first = 0;
        check(rc == !more);
    }
    for (int i = 0; i < 3; i++)
        check(tch_slice_eq(tch_buf_slice(&r.msg.args[i]), args[i]));
    check(tch_slice_eq(r.msg.service, m->service));
    check(r.msg.nheaders == m->nheaders);
    tch_call_msg_free(&r.msg);
}

/* Feeds one call frame; *active says whether r holds a message. */
static void fuzz_call(const tch_frame *f, tch_reasm *r, int *active) {
    tch_call_frame cf;
    (void)tch_call_frame_decode(f, &cf, NULL);
    int rc;
    if (f->type == TCH_FRAME_CALL_REQ || f->type == TCH_FRAME_CALL_RES) {
        if (*active)
            tch_reasm_free(r);
        rc = tch_reasm_start(r, f, MAX_ARG, NULL);
    } else if (*active) {
        rc = tch_reasm_continue(r, f, NULL);
    } else {
        return;
    }
    *active = rc == 0;
    if (rc == 1) {
        check(r->msg.args[0].len <= MAX_ARG && r->msg.args[2].len <= MAX_ARG);
        check_round_trip(&r->msg);
        tch_call_msg_free(&r->msg);
    } else if (rc < 0) {
        tch_reasm_free(r);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tch_slice in = tch_slice_of(data, size);
    tch_reasm r;
    int active = 0;
    while (in.len > 0) {
        tch_frame f;
        size_t used;
        if (tch_frame_parse(in, &f, &used, NULL) != 0)
            break;
        in.ptr += used;
        in.len -= used;
        switch (f.type) {
        case TCH_FRAME_CALL_REQ:
        case TCH_FRAME_CALL_RES:
        case TCH_FRAME_CALL_REQ_CONT:
        case TCH_FRAME_CALL_RES_CONT:
            fuzz_call(&f, &r, &active);
            break;
        default:
            fuzz_small(&f);
        }
    }
    if (active)
        tch_reasm_free(&r);
    return 0;
}
