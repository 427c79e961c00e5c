/* A user's program whose own global functions have names the library once
 * exported (arena_alloc, idl_lookup, cas_lookup ... before every internal
 * name took the tch__ prefix). Linked statically against the installed
 * archives, it must link (no "multiple definition") and call its own
 * functions, not the library's. The objects that held those names are
 * pulled into the link by taking the address of a public function in each. */
#include <tchannel/cassette.h>
#include <tchannel/hyperbahn.h>
#include <tchannel/json.h>
#include <tchannel/thrift.h>
#include <tchannel/trace.h>
#include <tchannel/vcr.h>

#include <stdio.h>
#include <string.h>

/* the user's own functions (prototypes: the program builds with -Wmissing-prototypes) */
int arena_alloc(void);
int arena_strndup(void);
int idl_lookup(void);
int idl_list_services(void);
int inbound_dispatch(void);
int cas_lookup(void);
int cas_view_json(void);
int channel_find_peer(void);
int chconn_for_peer(void);
int hooks_init(void);
int arena_alloc(void) { return 1; }
int arena_strndup(void) { return 2; }
int idl_lookup(void) { return 3; }
int idl_list_services(void) { return 4; }
int inbound_dispatch(void) { return 5; }
int cas_lookup(void) { return 6; }
int cas_view_json(void) { return 7; }
int channel_find_peer(void) { return 8; }
int chconn_for_peer(void) { return 9; }
int hooks_init(void) { return 10; }

typedef void (*any_fn)(void);
/* volatile: the compiler keeps every reference, so the linker pulls each object */
static volatile any_fn library[] = {
    (any_fn)tch_thrift_load_string, (any_fn)tch_thrift_idl_free, (any_fn)tch_cassette_open,
    (any_fn)tch_cassette_lookup,    (any_fn)tch_inbound_service, (any_fn)tch_channel_free,
    (any_fn)tch_channel_set_outbound_hook, (any_fn)tch_json_call, (any_fn)tch_json_dumps,
    (any_fn)tch_tracer_free,        (any_fn)tch_hyperbahn_free,  (any_fn)tch_vcr_use_cassette,
};

int main(void) {
    int (*const mine[])(void) = {arena_alloc,       arena_strndup,    idl_lookup, idl_list_services,
                                 inbound_dispatch, cas_lookup,       cas_view_json,
                                 channel_find_peer, chconn_for_peer, hooks_init};
    for (int i = 0; i < 10; i++)
        if (mine[i]() != i + 1) {
            printf("clash: function %d is not the program's own\n", i + 1);
            return 1;
        }
    /* and the library still works beside them */
    const char *idl = "service S { string echo(1: string s) }";
    tch_thrift_idl *parsed = NULL;
    tch_error err = {0};
    if (tch_thrift_load_string("s.thrift", tch_slice_cstr(idl), NULL, &parsed, &err) != 0) {
        printf("clash: the library's IDL loader failed: %s\n", err.msg);
        return 1;
    }
    tch_thrift_idl_free(parsed);
    printf("clash: ok (%zu library functions linked beside the program's own)\n",
           sizeof library / sizeof library[0]);
    return 0;
}
