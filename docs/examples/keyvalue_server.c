/* Getting started, part 1: a KeyValue server over TChannel's thrift scheme,
 * with the IDL loaded at run time (no code generation).
 * Usage: keyvalue_server IDL [HOST:PORT] -- prints "listening HOST:PORT". */
#include <tchannel/channel.h>
#include <tchannel/thrift_scheme.h>

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_KEYS 128

typedef struct store {
    char *keys[MAX_KEYS];
    char *values[MAX_KEYS];
    size_t n;
} store;

static const char *lookup(const store *s, const char *key) {
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->keys[i], key) == 0)
            return s->values[i];
    return NULL;
}

static char *arg_string(tch_thrift_inbound *call, const char *name) {
    const tch_thrift_value *v = tch_thrift_inbound_arg(call, name);
    return tch_slice_strdup(v ? tch_thrift_value_bytes(v) : TCH_SLICE_NULL);
}

/* string getValue(1: string key) throws (1: NotFoundError notFound) */
static void get_value(tch_thrift_inbound *call, void *ud) {
    store *s = ud;
    char *key = arg_string(call, "key");
    const char *value = lookup(s, key);
    if (value) {
        tch_thrift_value *v = tch_thrift_value_new_string(tch_slice_cstr(value));
        tch_thrift_respond(call, v, NULL, 0);
        tch_thrift_value_free(v);
    } else {
        tch_thrift_value *err = tch_thrift_value_new_struct();
        tch_thrift_value_struct_set_take(err, 1, tch_thrift_value_new_string(tch_slice_cstr(key)));
        tch_thrift_respond_exception(call, "notFound", err, NULL, 0);
        tch_thrift_value_free(err);
    }
    free(key);
}

/* void setValue(1: string key, 2: string value) */
static void set_value(tch_thrift_inbound *call, void *ud) {
    store *s = ud;
    char *key = arg_string(call, "key"), *value = arg_string(call, "value");
    if (s->n == MAX_KEYS && !lookup(s, key)) {
        tch_thrift_respond_error(call, TCH_PCODE_BUSY, "store is full");
        free(key);
        free(value);
        return;
    }
    size_t i = 0;
    while (i < s->n && strcmp(s->keys[i], key) != 0)
        i++;
    if (i == s->n) {
        s->keys[s->n++] = key;
    } else {
        free(key);
        free(s->values[i]);
    }
    s->values[i] = value;
    tch_thrift_respond(call, NULL, NULL, 0);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s IDL [HOST:PORT]\n", argv[0]);
        return 2;
    }
    tch_error err;
    tch_thrift_idl *idl;
    if (tch_thrift_load(argv[1], &idl, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const tch_thrift_service *kv = tch_thrift_idl_find_service(idl, "KeyValue");
    struct event_base *base = event_base_new();
    tch_channel *ch;
    if (tch_channel_new(base, "keyvalue-server", NULL, &ch, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    store s = {0};
    tch_thrift_register(ch, NULL, kv, "getValue", get_value, &s);
    tch_thrift_register(ch, NULL, kv, "setValue", set_value, &s);
    if (tch_channel_listen(ch, argc > 2 ? argv[2] : NULL, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    printf("listening %s\n", tch_channel_host_port(ch));
    fflush(stdout);
    event_base_dispatch(base); /* serves until killed */
    tch_channel_free(ch);
    event_base_free(base);
    tch_thrift_idl_free(idl);
    return 0;
}
