/* libFuzzer target: the connection state machine after a good handshake,
 * fed arbitrary bytes in arbitrary pieces (the first input byte picks the
 * piece size, the second how far the clock moves between pieces). Whatever
 * arrives, the conn must not crash, leak or hang; it may answer with
 * frames, which are written at once, and it may fail. */
#include <stdint.h>
#include <stdlib.h>

#include "conn.h"

static tch_conn *the_conn; /* the output event's conn: one at a time */

static void sink(void *ud) {
    (void)ud;
    struct iovec iov[8];
    int n;
    while ((n = tch_conn_out(the_conn, iov, 8)) > 0) {
        size_t total = 0;
        for (int i = 0; i < n; i++)
            total += iov[i].iov_len;
        tch_conn_out_done(the_conn, total);
    }
}
static void drop_msg(void *ud, tch_call_msg *m) {
    (void)ud;
    tch_call_msg_free(m);
    free(m);
}

static const tch_conn_events evs = {.output = sink, .call_req = drop_msg, .call_res = drop_msg};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tch_conn_config cfg = {.outbound = 0, .host_port = "127.0.0.1:1", .process_name = "fuzz",
                           .max_arg_size = 1 << 20, .frame_timeout_ms = 50};
    tch_conn *c = tch_conn_new(&cfg, &evs, NULL);
    if (!c)
        return 0;
    the_conn = c;
    /* a valid init req, so the fuzz input reaches the post-handshake code */
    tch_init m = {.version = 2, .nheaders = 2};
    m.headers[0] = (tch_kv){tch_slice_cstr("host_port"), tch_slice_cstr("0.0.0.0:0")};
    m.headers[1] = (tch_kv){tch_slice_cstr("process_name"), tch_slice_cstr("peer")};
    uint8_t init[256];
    size_t n;
    if (tch_init_encode(TCH_FRAME_INIT_REQ, 1, &m, init, sizeof init, &n, NULL) == 0)
        tch_conn_feed(c, init, n, 1);
    size_t piece = size ? (size_t)data[0] % 97 + 1 : 1;
    uint64_t step = size > 1 ? data[1] % 16 : 0, now = 1;
    for (size_t off = size > 1 ? 2 : size; off < size && !tch_conn_has_failed(c); off += piece) {
        size_t len = size - off < piece ? size - off : piece;
        tch_conn_feed(c, data + off, len, now);
        now += step;
        tch_conn_tick(c, now);
    }
    tch_conn_free(c);
    return 0;
}
