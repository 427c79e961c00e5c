/* Test helper: a call's outcome copied out of the callback, so a test can
 * run the loop until `done` and then look at it. */
#ifndef TCH_TEST_RESULT_H
#define TCH_TEST_RESULT_H

#include <stdio.h>
#include <tchannel/channel.h>

typedef struct result {
    int done; /* callbacks seen: exactly one is expected */
    int status;
    uint8_t code;
    uint8_t error_code;
    char message[1024];
    tch_buf arg2, arg3;
} result;

static inline void on_result(const tch_response *res, void *ud) {
    result *r = ud;
    r->done++;
    r->status = res->status;
    r->code = res->code;
    r->error_code = res->error_code;
    snprintf(r->message, sizeof r->message, "%s", res->message ? res->message : "");
    tch_buf_append_slice(&r->arg2, res->arg2);
    tch_buf_append_slice(&r->arg3, res->arg3);
}

static inline void result_free(result *r) {
    tch_buf_free(&r->arg2);
    tch_buf_free(&r->arg3);
}

#endif
