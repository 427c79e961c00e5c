/* Getting started, part 2: a blocking client that sets a key, reads it
 * back, and reads a key that is not there (a declared exception).
 * Usage: keyvalue_client IDL HOST:PORT */
#include <tchannel/sync.h>
#include <tchannel/thrift.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The blocking API speaks raw args; the thrift helpers encode and decode. */
static int call(tch_sync_client *c, const char *hp, const tch_thrift_method *m,
                const char *json_args, json_t **result) {
    tch_error err;
    json_t *args = json_loads(json_args, 0, NULL);
    tch_buf arg3 = {0}, arg1 = {0};
    int rc = tch_thrift_method_args_from_json(m, args, &arg3, &err);
    json_decref(args);
    if (rc == 0)
        rc = tch_thrift_arg1_join("KeyValue", tch_thrift_method_name(m), &arg1, &err);
    if (rc) {
        fprintf(stderr, "%s\n", err.msg);
        return rc;
    }
    tch_call_opts o = {.service = "keyvalue-server", .endpoint = tch_buf_slice(&arg1),
                       .arg2 = tch_slice_of("\0\0", 2), /* no application headers */
                       .arg3 = tch_buf_slice(&arg3), .host_port = hp,
                       .arg_scheme = "thrift", .timeout_ms = 2000};
    tch_sync_response res;
    rc = tch_sync_call(c, &o, &res, &err);
    if (rc == 0 && res.status != 0) {
        fprintf(stderr, "call failed: %s\n", res.message);
        rc = res.status;
    } else if (rc == 0) {
        rc = tch_thrift_method_result_to_json(m, tch_buf_slice(&res.arg3), result, &err);
        if (rc)
            fprintf(stderr, "%s\n", err.msg);
    }
    tch_sync_response_free(&res); /* tch_sync_call always initialises it */
    tch_buf_free(&arg1);
    tch_buf_free(&arg3);
    return rc;
}

static void show(const char *what, json_t *result) {
    char *text = json_dumps(result, JSON_COMPACT | JSON_SORT_KEYS);
    printf("%s -> %s\n", what, text);
    free(text);
    json_decref(result);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s IDL HOST:PORT\n", argv[0]);
        return 2;
    }
    tch_error err;
    tch_thrift_idl *idl;
    if (tch_thrift_load(argv[1], &idl, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const tch_thrift_service *kv = tch_thrift_idl_find_service(idl, "KeyValue");
    tch_sync_client *c;
    if (tch_sync_client_new("keyvalue-client", NULL, &c, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        tch_thrift_idl_free(idl);
        return 1;
    }
    json_t *r;
    int rc = call(c, argv[2], tch_thrift_service_find_method(kv, "setValue"),
                  "{\"key\": \"foo\", \"value\": \"bar\"}", &r);
    if (rc == 0) {
        show("setValue(foo, bar)", r);
        rc = call(c, argv[2], tch_thrift_service_find_method(kv, "getValue"), "{\"key\": \"foo\"}", &r);
    }
    if (rc == 0) {
        show("getValue(foo)", r);
        rc = call(c, argv[2], tch_thrift_service_find_method(kv, "getValue"), "{\"key\": \"nope\"}", &r);
    }
    if (rc == 0)
        show("getValue(nope)", r);
    tch_sync_client_free(c);
    tch_thrift_idl_free(idl);
    return rc == 0 ? 0 : 1;
}
