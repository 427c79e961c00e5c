/* One-off interop check, run by hand: writes the frames our fragmenter
 * produces for a set of calls (every checksum type, args ending at and
 * around frame boundaries) to stdout as a stream of frames, for
 * node_verify.js to check with the Node peer's own parser and checksum
 * verification. Build and run from the repo root:
 *   cc -std=c11 -I lib/include -I lib/wire tests/wire-ref/dump_frames.c \
 *      lib/wire/\*.c lib/common/common.c -lz -o /tmp/dump_frames
 *   /tmp/dump_frames | NODE_PATH=/tmp/nodepeer/node_modules \
 *      node tests/wire-ref/node_verify.js */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

static uint8_t out[TCH_FRAME_MAX_SIZE];

static void dump(uint8_t csum, uint32_t id, size_t a1, size_t a2, size_t a3) {
    static tch_call_fields f;
    memset(&f, 0, sizeof f);
    f.ttl_ms = 1000;
    f.service = tch_slice_cstr("svc");
    f.nheaders = 1;
    f.headers[0].key = tch_slice_cstr("as");
    f.headers[0].value = tch_slice_cstr("raw");
    f.csum_type = csum;
    size_t lens[3] = {a1, a2, a3};
    uint8_t *bufs[3];
    tch_slice args[3];
    for (int k = 0; k < 3; k++) {
        bufs[k] = malloc(lens[k] + 1);
        for (size_t i = 0; i < lens[k]; i++)
            bufs[k][i] = (uint8_t)(i * 31 + 7 * (size_t)k + 1);
        args[k] = tch_slice_of(bufs[k], lens[k]);
    }
    tch_fragmenter fz;
    tch_fragmenter_init(&fz, TCH_FRAME_CALL_REQ, id, &f, args);
    int more = 1;
    while (more == 1) {
        size_t n;
        tch_error err;
        more = tch_fragmenter_next(&fz, out, &n, &err);
        if (more < 0) {
            fprintf(stderr, "%s\n", err.msg);
            exit(1);
        }
        fwrite(out, 1, n, stdout);
    }
    for (int k = 0; k < 3; k++)
        free(bufs[k]);
}

int main(void) {
    /* first-frame fields: 1+4+25+1+3+1+(2+2+3)+1 = 43, + csum */
    uint32_t id = 1;
    for (uint8_t csum = 0; csum < 4; csum++) {
        size_t room = TCH_FRAME_MAX_PAYLOAD - 43 - (csum ? 4 : 0);
        dump(csum, id++, 0, 0, 0);
        dump(csum, id++, 5, 10, 20);
        for (size_t d = 0; d <= 6; d++) {
            dump(csum, id++, room - 2 - 3 + d, 7, 9);      /* arg1 at the edge */
            dump(csum, id++, 1, room - 6 - 3 + d, 9);      /* arg2 at the edge */
            dump(csum, id++, 1, 2, room - 8 - 3 + d);      /* arg3 at the edge */
        }
        dump(csum, id++, 100, 300000, 1000);
    }
    return 0;
}
