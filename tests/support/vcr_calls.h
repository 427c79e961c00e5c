/* Test helper: the scenario both allocation tests run (robust.test_alloc_fail
 * wraps malloc, robust.test_alloc_hook gives the client channels an
 * allocator). A server with raw, JSON and Thrift (KeyValue.getValue)
 * handlers; a client channel with the VCR on a cassette making one call of
 * each; the steps counted, so a test can say which one failed and whether a
 * step that succeeded did its work. */
#ifndef TCH_TEST_VCR_CALLS_H
#define TCH_TEST_VCR_CALLS_H

#include <tchannel/channel.h>
#include <tchannel/json.h>
#include <tchannel/thrift_scheme.h>
#include <tchannel/vcr.h>

#define TCH_TEST_BODY "hello"
#define TCH_TEST_ECHOED "echo:" TCH_TEST_BODY
#define TCH_TEST_JSON_BODY "{\"k\":\"v\"}"
#define TCH_TEST_KV_IDL TCH_SOURCE_DIR "/cassettes/keyvalue.thrift"

typedef struct tch_test_outcome {
    int steps;     /* steps reached */
    int failed_at; /* the step that returned an error (0: none) */
    int code;      /* its code */
    int recorded;  /* the record half succeeded */
    int saved;     /* eject succeeded */
    int replayed;  /* the replay half succeeded */
    char body[3][64]; /* what the replayed calls answered */
    char why[600]; /* a broken promise: empty when all is well */
} tch_test_outcome;

/* One call's answer. */
typedef struct tch_test_result {
    int done, status;
    char body[64];
} tch_test_result;

/* Notes a broken promise (the first one wins). */
void tch_test_broken(tch_test_outcome *o, const char *what, int detail);
/* Notes that the current step failed with code; returns code. A code that
 * is not an error is itself a broken promise. */
int tch_test_step_failed(tch_test_outcome *o, int code);

/* The server's handlers: "echo" (raw: "echo:" + arg3), "json_echo" (the
 * body back) and KeyValue.getValue ("v:" + key). */
void tch_test_echo(tch_inbound *in, void *ud);
void tch_test_json_echo(tch_inbound *in, const json_t *h, const json_t *b, void *ud);
void tch_test_get_value(tch_thrift_inbound *call, void *ud);

/* A client channel on alloc (NULL: the C library) named "client", with the
 * VCR on path in mode (and the IDL), and its raw, JSON and Thrift calls to
 * hp, one step each. Returns 0, or the failed step's code (counted in o).
 * *vcr is left installed either way (NULL when installing it failed): the
 * caller ejects or discards it. */
int tch_test_calls_through_vcr(struct event_base *base, const tch_allocator *alloc,
                               const char *hp, const tch_thrift_idl *idl, const char *path,
                               tch_cassette_mode mode, tch_test_outcome *o, tch_channel **ch,
                               tch_vcr **vcr, tch_test_result r[3]);

/* 1 when the cassette at path holds the three calls' answers (read on the
 * C library). */
int tch_test_cassette_holds_calls(const char *path);
/* Removes the cassette at path, its journal and its lock. */
void tch_test_remove_cassette(const char *path);

#endif
