/* Connection state machine (see conn.h). Owns: framing of the input,
 * the output queue, handshake state, id counters, partial reassemblies,
 * frames held until the handshake is done, TTLs and the frame timeout.
 * Calls only the wire codec; every allocation of its buffers goes through
 * out_block_new and in_room. */
#include "conn.h"

#include "alloc.h"
#include "intmap.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum conn_state { WAIT_INIT_REQ, WAIT_INIT_RES, READY, FAILED };

/* Calls made before the handshake wait in `held`; past this much more are
 * refused rather than queued without bound. */
#define MAX_HELD ((size_t)64 << 20)
/* Output is queued in blocks of this size (a bigger one for a bigger
 * write); one spare block is kept, so steady traffic allocates nothing. */
#define OUT_BLOCK ((size_t)128 << 10)
/* Backpressure: a peer that sends requests but does not read the answers
 * is read no further once this much output waits. */
#define OUT_HIGH ((size_t)8 << 20)
/* Output waiting is counted in the shared memory budget. While that is
 * spent, a peer with more than this many bytes of answers unread is read
 * no further, and one more answer to it fails the connection. */
#define OUT_SPENT_MARK ((size_t)64 << 10)
/* Input taken and not yet processed: reading stops at this much. */
#define IN_MAX ((size_t)1 << 20)
/* tch_conn_process stops once this much output waits, so the owner writes
 * the first answers while later ones are still being made. */
#define OUT_FLUSH ((size_t)64 << 10)

typedef struct out_block {
    struct out_block *next;
    size_t off, len, cap; /* data[off..len) waits to be written */
    uint8_t data[];
} out_block;

struct tch_conn {
    tch_conn_config cfg;
    char *host_port;
    char *process_name;
    tch_conn_events ev;
    void *ud;
    enum conn_state state;
    uint32_t next_id;
    tch_buf held;  /* frames sent before the handshake completed */
    uint8_t *in;   /* input: in[in_off..in_off+in_len) not yet processed */
    size_t in_off, in_len, in_cap;
    out_block *out_head, *out_tail, *out_spare;
    size_t out_len;     /* bytes waiting in the blocks */
    size_t out_charged; /* of them, counted in cfg.shared */
    uint64_t now;       /* the owner's now_ms, as last given */
    uint64_t frame_begun_ms; /* a frame still not whole began; 0: none */
    int took;                /* frames were taken since the input last settled */
    tch_intmap req_parts; /* id -> part*: requests still arriving */
    tch_intmap res_parts; /* id -> part*: responses still arriving */
    size_t partial_bytes; /* bytes held in req_parts (as charged) */
    uint64_t next_deadline; /* <= every req_parts deadline; 0: none */
    uint64_t part_frame_ms; /* when a frame of a request in req_parts last came */
    char *remote_host_port;
    char *remote_process;
    uint8_t scratch[TCH_FRAME_MAX_SIZE];
};

tch_conn *tch_conn_new(const tch_conn_config *cfg,
                       const tch_conn_events *ev, void *ud) {
    tch_conn *c = tch__calloc(cfg->alloc, 1, sizeof *c);
    if (!c)
        return NULL;
    c->cfg = *cfg;
    c->held.alloc = cfg->alloc;
    c->req_parts.alloc = c->res_parts.alloc = cfg->alloc;
    c->host_port = tch__strdup(cfg->alloc, cfg->host_port ? cfg->host_port : "0.0.0.0:0");
    c->process_name = tch__strdup(cfg->alloc, cfg->process_name ? cfg->process_name : "tchannel-c");
    if (!c->host_port || !c->process_name) {
        tch_conn_free(c);
        return NULL;
    }
    c->cfg.host_port = c->host_port;
    c->cfg.process_name = c->process_name;
    if (!c->cfg.max_partial_requests)
        c->cfg.max_partial_requests = 1024;
    if (!c->cfg.max_partial_bytes)
        c->cfg.max_partial_bytes = (size_t)256 << 20;
    c->ev = *ev;
    c->ud = ud;
    c->state = cfg->outbound ? WAIT_INIT_RES : WAIT_INIT_REQ;
    c->next_id = 1;
    return c;
}

/* A message whose frames are still arriving. */
typedef struct part {
    tch_reasm r;
    uint64_t deadline_ms; /* requests: first frame + TTL; 0 for none */
    size_t charged;       /* requests: bytes counted in both budgets */
} part;

/* Besides its buffers, each request is charged a fixed amount for what
 * holds it: its part (or message) struct, its map slot, the inbound the
 * channel makes of it and the allocator's headers. Without this, many
 * small requests held several times the budget. */
#define REQ_OVERHEAD ((size_t)512)
_Static_assert(sizeof(part) + 6 * 16 + 2 * sizeof(tch_intmap_slot) <= REQ_OVERHEAD,
               "a request's overhead is charged whole");

/* What a request holding msg is charged. */
static size_t req_charge(const tch_call_msg *m) {
    return tch_call_msg_bytes(m) + REQ_OVERHEAD;
}

/* Brings a request's charge in line with what it now holds. */
static void recharge(tch_conn *c, part *p) {
    size_t now = req_charge(&p->r.msg);
    c->partial_bytes = c->partial_bytes - p->charged + now;
    if (c->cfg.shared)
        c->cfg.shared->used = c->cfg.shared->used - p->charged + now;
    p->charged = now;
}

/* Frees a part; a request's charge is given back. */
static void part_free(tch_conn *c, part *p) {
    c->partial_bytes -= p->charged;
    if (c->cfg.shared)
        c->cfg.shared->used -= p->charged;
    tch_reasm_free(&p->r);
    tch__free(c->cfg.alloc, p);
}

static void free_parts(tch_conn *c, tch_intmap *m) {
    part *p;
    while ((p = tch_intmap_pop_any(m, NULL)))
        part_free(c, p);
    tch_intmap_free(m);
}

void tch_conn_free(tch_conn *c) {
    if (!c)
        return;
    free_parts(c, &c->req_parts);
    free_parts(c, &c->res_parts);
    tch_buf_free(&c->held);
    tch__free(c->cfg.alloc, c->in);
    tch_conn_out_drop(c);
    tch__free(c->cfg.alloc, c->out_spare);
    tch__free(c->cfg.alloc, c->host_port);
    tch__free(c->cfg.alloc, c->process_name);
    tch__free(c->cfg.alloc, c->remote_host_port);
    tch__free(c->cfg.alloc, c->remote_process);
    tch__free(c->cfg.alloc, c);
}

int tch_conn_is_ready(const tch_conn *c) { return c->state == READY; }
int tch_conn_has_failed(const tch_conn *c) { return c->state == FAILED; }
size_t tch_conn_partial_requests(const tch_conn *c) { return c->req_parts.len; }
uint64_t tch_conn_partial_active_ms(const tch_conn *c) { return c->part_frame_ms; }

const char *tch_conn_remote_host_port(const tch_conn *c) {
    return c->remote_host_port ? c->remote_host_port : "";
}

const char *tch_conn_remote_process(const tch_conn *c) {
    return c->remote_process ? c->remote_process : "";
}

uint32_t tch_conn_next_id(tch_conn *c) {
    uint32_t id = c->next_id++;
    if (c->next_id == TCH_ID_NONE)
        c->next_id = 1;
    return id;
}

/* ---- output ----------------------------------------------------------- */

static int fail(tch_conn *c, int status, const char *fmt, ...) TCH_PRINTF(3, 4);

/* The output's count in the shared budget, brought up to date. */
static void charge_output(tch_conn *c) {
    if (c->cfg.shared)
        c->cfg.shared->used = c->cfg.shared->used - c->out_charged + c->out_len;
    c->out_charged = c->out_len;
}

static int budget_spent(const tch_conn *c) {
    const tch_mem_budget *b = c->cfg.shared;
    return b && b->used > b->limit;
}

/* The peer is not taking its answers. A connection we dialled stops only
 * at OUT_HIGH, so that answers to our calls are still read when the budget
 * is spent by others. */
static int backlogged(const tch_conn *c) {
    return c->out_len > OUT_HIGH ||
           (!c->cfg.outbound && c->out_len > OUT_SPENT_MARK && budget_spent(c));
}

static out_block *out_block_new(tch_conn *c, size_t need) {
    out_block *b = c->out_spare;
    if (b && b->cap >= need) {
        c->out_spare = NULL;
    } else {
        size_t cap = need > OUT_BLOCK ? need : OUT_BLOCK;
        b = tch__malloc(c->cfg.alloc, sizeof *b + cap);
        if (!b)
            return NULL;
        b->cap = cap;
    }
    b->next = NULL;
    b->off = b->len = 0;
    return b;
}

/* Room for len bytes at the end of the output, contiguous (NULL: out of
 * memory). Followed by out_commit before anything else is queued. */
static uint8_t *out_reserve(tch_conn *c, size_t len) {
    out_block *t = c->out_tail;
    if (t && t->cap - t->len >= len)
        return t->data + t->len;
    out_block *b = out_block_new(c, len);
    if (!b)
        return NULL;
    if (t)
        t->next = b;
    else
        c->out_head = b;
    c->out_tail = b;
    return b->data;
}

static void out_commit(tch_conn *c, size_t used) {
    if (!used)
        return;
    int was_empty = c->out_len == 0;
    c->out_tail->len += used;
    c->out_len += used;
    charge_output(c);
    if (was_empty && c->ev.output)
        c->ev.output(c->ud);
}

static int out_append(tch_conn *c, const uint8_t *data, size_t len) {
    uint8_t *room = out_reserve(c, len);
    if (!room)
        return TCH_ENOMEM;
    memcpy(room, data, len);
    out_commit(c, len);
    return 0;
}

int tch_conn_out(const tch_conn *c, struct iovec *iov, int n) {
    int i = 0;
    for (const out_block *b = c->out_head; b && i < n; b = b->next) {
        if (b->len == b->off)
            continue;
        iov[i].iov_base = (void *)(b->data + b->off);
        iov[i].iov_len = b->len - b->off;
        i++;
    }
    return i;
}

/* Unlinks the head block: kept as the spare when it is the usual size. */
static void out_pop(tch_conn *c) {
    out_block *b = c->out_head;
    c->out_head = b->next;
    if (!c->out_head)
        c->out_tail = NULL;
    if (!c->out_spare && b->cap == OUT_BLOCK)
        c->out_spare = b;
    else
        tch__free(c->cfg.alloc, b);
}

void tch_conn_out_done(tch_conn *c, size_t n) {
    c->out_len -= n;
    while (n > 0 && c->out_head) {
        out_block *b = c->out_head;
        size_t k = b->len - b->off < n ? b->len - b->off : n;
        b->off += k;
        n -= k;
        if (b->off == b->len && (b != c->out_tail || b->off == b->cap))
            out_pop(c);
    }
    if (c->out_len == 0 && c->out_tail) /* reuse the tail from its start */
        c->out_tail->off = c->out_tail->len = 0;
    charge_output(c);
}

size_t tch_conn_out_pending(const tch_conn *c) { return c->out_len; }

void tch_conn_out_drop(tch_conn *c) {
    while (c->out_head)
        out_pop(c);
    c->out_len = 0;
    charge_output(c);
}

static void emit(tch_conn *c, const uint8_t *data, size_t len) {
    if (c->state == FAILED)
        return;
    int rc = c->state == READY ? out_append(c, data, len) : tch_buf_append(&c->held, data, len);
    if (rc != 0)
        fail(c, TCH_ENOMEM, "out of memory queuing frames");
}


static int fail(tch_conn *c, int status, const char *fmt, ...) {
    if (c->state == FAILED)
        return status;
    char why[TCH_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    c->state = FAILED;
    c->frame_begun_ms = 0;
    if (c->ev.failed)
        c->ev.failed(c->ud, status, why);
    return status;
}

/* A violation that ends the connection: tell the peer, then fail. */
static int fail_fatal_status(tch_conn *c, int status, uint32_t id, const char *why) {
    if (c->state != FAILED) {
        tch_error_frame e = {.code = 0xff, .message = tch_slice_cstr(why)};
        size_t len;
        if (tch_error_frame_encode(id, &e, c->scratch, sizeof c->scratch, &len,
                                   NULL) == 0)
            out_append(c, c->scratch, len); /* bypasses `held` on purpose */
    }
    return fail(c, status, "%s", why);
}

static int fail_fatal(tch_conn *c, uint32_t id, const char *why) {
    return fail_fatal_status(c, TCH_EPROTO, id, why);
}

int tch_conn_abort(tch_conn *c, const char *why) {
    return fail_fatal(c, TCH_ID_NONE, why);
}

int tch_conn_send_error(tch_conn *c, uint32_t id, uint8_t code,
                        const tch_trace *tracing, const char *msg) {
    tch_error_frame e = {.code = code, .message = tch_slice_cstr(msg)};
    if (tracing)
        e.tracing = *tracing;
    if (e.message.len > 0xFFFF - 64)
        e.message.len = 0xFFFF - 64; /* messages are truncated, never refused */
    size_t len;
    int rc = tch_error_frame_encode(id, &e, c->scratch, sizeof c->scratch,
                                    &len, NULL);
    if (rc == 0)
        emit(c, c->scratch, len);
    return rc;
}

int tch_conn_send_cancel(tch_conn *c, uint32_t id, const tch_trace *t,
                         const char *why) {
    tch_cancel m = {.why = tch_slice_cstr(why)};
    if (t)
        m.tracing = *t;
    size_t len;
    int rc = tch_cancel_encode(TCH_FRAME_CANCEL, id, &m, c->scratch,
                               sizeof c->scratch, &len, NULL);
    if (rc == 0)
        emit(c, c->scratch, len);
    return rc;
}

int tch_conn_send_ping(tch_conn *c, uint32_t id) {
    size_t len = tch_ping_encode(TCH_FRAME_PING_REQ, id, c->scratch);
    emit(c, c->scratch, len);
    return 0;
}

/* At most the bytes a call's frames take: its args, and per frame (one per
 * 64 KiB, and one more) a header, the fields and the chunk lengths. */
static size_t answer_bound(const tch_call_fields *f, const tch_slice args[3]) {
    size_t data = args[0].len + args[1].len + args[2].len;
    size_t fields = 64 + f->service.len;
    for (size_t i = 0; i < f->nheaders; i++)
        fields += 2 + f->headers[i].key.len + f->headers[i].value.len;
    size_t frames = data / (TCH_FRAME_MAX_SIZE / 2) + 2;
    return data + frames * (TCH_FRAME_HEADER_SIZE + 16) + fields;
}

/* An answer to a peer that has more than OUT_SPENT_MARK of answers unread
 * while the shared budget cannot pay for this one fails the connection:
 * waiting would hold the memory for as long as the peer likes. What waits
 * is dropped; the limit is reported. */
static int refuse_answer(tch_conn *c, const tch_call_fields *f, const tch_slice args[3],
                         tch_error *err) {
    const tch_mem_budget *b = c->cfg.shared;
    size_t len = answer_bound(f, args);
    if (!b || c->out_len <= OUT_SPENT_MARK || b->used + len <= b->limit)
        return 0;
    char why[TCH_ERROR_MSG_MAX];
    snprintf(why, sizeof why,
             "closed: the peer is not reading its answers: %zu bytes of them wait to be "
             "written, and one more of up to %zu bytes would pass the memory budget of "
             "%zu bytes (%zu in use)",
             c->out_len, len, b->limit, b->used);
    if (c->ev.limit)
        c->ev.limit(c->ud, why);
    tch_conn_out_drop(c);
    fail(c, TCH_ETOOBIG, "%s", why);
    tch_error_set(err, TCH_ETOOBIG, "%s", why);
    return 1;
}

/* Inverts the checksum of the call frame in frame[0..len). The wire
 * decoder finds it, so the layout is not repeated here: it is the 4 bytes
 * before the first chunk's length. A fault's path only, hence the malloc
 * (a decoded frame holds room for 255 headers). */
static int spoil_checksum(tch_conn *c, uint8_t *frame, size_t len, tch_error *err) {
    tch_call_frame *cf = tch__malloc(c->cfg.alloc, sizeof *cf);
    if (!cf)
        return tch_error_set(err, TCH_ENOMEM, "out of memory spoiling a checksum");
    tch_frame fr;
    size_t used;
    int rc = tch_frame_parse(tch_slice_of(frame, len), &fr, &used, err);
    if (rc == 0)
        rc = tch_call_frame_decode(&fr, cf, err);
    if (rc == 0 && (cf->nchunks == 0 || tch_checksum_size(cf->f.csum_type) != 4))
        rc = tch_error_set(err, TCH_EINVAL, "%s: no checksum to spoil",
                           tch_frame_type_name(fr.type));
    if (rc == 0) {
        size_t at = (size_t)(cf->chunks[0].ptr - frame) - 2 - 4;
        for (size_t i = 0; i < 4; i++)
            frame[at + i] ^= 0xff;
    }
    tch__free(c->cfg.alloc, cf);
    return rc;
}

int tch_conn_send_call(tch_conn *c, uint8_t type, uint32_t id,
                       const tch_call_fields *f, const tch_slice args[3],
                       tch_error *err) {
    return tch_conn_send_call_with(c, type, id, f, args, 0, err);
}

int tch_conn_send_call_with(tch_conn *c, uint8_t type, uint32_t id,
                            const tch_call_fields *f, const tch_slice args[3],
                            unsigned flags, tch_error *err) {
    if ((flags & TCH_CONN_SEND_BAD_CHECKSUM) && tch_checksum_size(f->csum_type) <= 0)
        return tch_error_set(err, TCH_EINVAL, "%s: checksum type 0x%02x has no checksum to spoil",
                             tch_frame_type_name(type), f->csum_type);
    if (c->state == FAILED)
        return tch_error_set(err, TCH_ECLOSED, "connection failed");
    if (c->state != READY && c->held.len > MAX_HELD) /* a peer slow to shake hands */
        return tch_error_set(err, TCH_ETOOBIG,
                             "%zu bytes already wait for the connection's handshake", c->held.len);
    if (type == TCH_FRAME_CALL_RES && c->state == READY && refuse_answer(c, f, args, err))
        return TCH_ETOOBIG;
    tch_fragmenter fz;
    tch_fragmenter_init(&fz, type, id, f, args);
    for (;;) {
        /* In place in the output: a 64 KiB frame is copied once (with its
         * checksum) rather than twice. */
        uint8_t *room = c->state == READY ? out_reserve(c, tch_fragmenter_bound(&fz)) : NULL;
        size_t len = 0;
        int rc = tch_fragmenter_next(&fz, room ? room : c->scratch, &len, err);
        if (rc >= 0 && (flags & TCH_CONN_SEND_BAD_CHECKSUM)) {
            flags &= ~(unsigned)TCH_CONN_SEND_BAD_CHECKSUM; /* the first frame is enough */
            int spoiled = spoil_checksum(c, room ? room : c->scratch, len, err);
            rc = spoiled < 0 ? spoiled : rc;
        }
        if (room)
            out_commit(c, rc < 0 ? 0 : len);
        if (rc < 0)
            return rc;
        if (!room)
            emit(c, c->scratch, len);
        if (rc == 0)
            return 0;
    }
}

/* ---- handshake -------------------------------------------------------- */

static int send_init(tch_conn *c, uint8_t type, uint32_t id) {
    tch_init m = {.version = TCH_PROTOCOL_VERSION, .nheaders = 5};
    m.headers[0] = (tch_kv){tch_slice_cstr("host_port"),
                            tch_slice_cstr(c->cfg.host_port)};
    m.headers[1] = (tch_kv){tch_slice_cstr("process_name"),
                            tch_slice_cstr(c->cfg.process_name)};
    m.headers[2] = (tch_kv){tch_slice_cstr("tchannel_language"),
                            tch_slice_cstr("c")};
    m.headers[3] = (tch_kv){tch_slice_cstr("tchannel_language_version"),
                            tch_slice_cstr("C11")};
    m.headers[4] = (tch_kv){tch_slice_cstr("tchannel_version"),
                            tch_slice_cstr("0.1.0")};
    size_t len;
    tch_error err;
    int rc = tch_init_encode(type, id, &m, c->scratch, sizeof c->scratch, &len,
                             &err);
    if (rc)
        return fail(c, rc, "init: %s", err.msg);
    if (out_append(c, c->scratch, len) != 0) /* init goes out before held frames */
        return fail(c, TCH_ENOMEM, "out of memory queuing init");
    return 0;
}

int tch_conn_start(tch_conn *c) {
    if (!c->cfg.outbound || c->state != WAIT_INIT_RES)
        return TCH_ESTATE;
    return send_init(c, TCH_FRAME_INIT_REQ, tch_conn_next_id(c));
}

static void become_ready(tch_conn *c) {
    c->state = READY;
    if (c->held.len) {
        tch_buf held = c->held;
        c->held = (tch_buf){.alloc = c->cfg.alloc};
        int rc = out_append(c, held.ptr, held.len);
        tch_buf_free(&held);
        if (rc != 0) {
            fail(c, TCH_ENOMEM, "out of memory queuing the frames held for the handshake");
            return;
        }
    }
    if (c->ev.ready)
        c->ev.ready(c->ud);
}

/* Checks an init req/res and records the peer's identity. */
static int accept_init(tch_conn *c, const tch_frame *fr) {
    tch_init m;
    tch_error err;
    char why[TCH_ERROR_MSG_MAX];
    if (tch_init_decode(fr->payload, &m, &err) != 0) {
        snprintf(why, sizeof why, "%s", err.msg);
        return fail_fatal(c, fr->id, why);
    }
    if (m.version != TCH_PROTOCOL_VERSION) {
        snprintf(why, sizeof why, "%s: unsupported protocol version %u (want %d)",
                 tch_frame_type_name(fr->type), m.version, TCH_PROTOCOL_VERSION);
        return fail_fatal(c, fr->id, why);
    }
    tch_slice hp, proc;
    if (!tch_init_get(&m, "host_port", &hp) ||
        !tch_init_get(&m, "process_name", &proc)) {
        snprintf(why, sizeof why, "%s: missing required header %s",
                 tch_frame_type_name(fr->type),
                 tch_init_get(&m, "host_port", &hp) ? "process_name"
                                                    : "host_port");
        return fail_fatal(c, fr->id, why);
    }
    tch__free(c->cfg.alloc, c->remote_host_port);
    tch__free(c->cfg.alloc, c->remote_process);
    c->remote_host_port = tch_slice_strdup_with(c->cfg.alloc, hp);
    c->remote_process = tch_slice_strdup_with(c->cfg.alloc, proc);
    if (!c->remote_host_port || !c->remote_process)
        return fail(c, TCH_ENOMEM, "out of memory");
    return 0;
}

static int on_handshake_frame(tch_conn *c, const tch_frame *fr) {
    uint8_t want = c->state == WAIT_INIT_REQ ? TCH_FRAME_INIT_REQ
                                             : TCH_FRAME_INIT_RES;
    if (fr->type == TCH_FRAME_ERROR) {
        tch_error_frame e;
        if (tch_error_frame_decode(fr->payload, &e, NULL) == 0)
            return fail(c, TCH_EREMOTE, "peer rejected the handshake: %.*s",
                        (int)e.message.len, (const char *)e.message.ptr);
        return fail(c, TCH_EPROTO, "peer sent a malformed error frame");
    }
    if (fr->type != want) {
        char why[128];
        snprintf(why, sizeof why, "expected %s as the first frame, got %s (0x%02x)",
                 tch_frame_type_name(want), tch_frame_type_name(fr->type),
                 fr->type);
        /* About the connection, not a message: what looks like an id may
         * be the bytes of some other protocol. */
        return fail_fatal(c, TCH_ID_NONE, why);
    }
    int rc = accept_init(c, fr);
    if (rc)
        return rc;
    if (want == TCH_FRAME_INIT_REQ && (rc = send_init(c, TCH_FRAME_INIT_RES, fr->id)))
        return rc;
    become_ready(c);
    return 0;
}

/* ---- calls ------------------------------------------------------------ */

static tch_call_msg *take_msg(tch_reasm *r) {
    tch_call_msg *m = tch__malloc(r->msg.alloc, sizeof *m);
    if (!m)
        return NULL;
    *m = r->msg;
    memset(&r->msg, 0, sizeof r->msg);
    return m;
}

/* A message that could not be reassembled: tell whoever waits for it. */
static void message_failed(tch_conn *c, int is_req, uint32_t id, int rc,
                           const tch_error *err) {
    if (is_req) {
        uint8_t code = 0x06; /* bad request: checksum, limit, bad fields */
        tch_conn_send_error(c, id, code, NULL, err->msg);
    } else if (c->ev.res_failed) {
        c->ev.res_failed(c->ud, id, rc, err->msg);
    }
}

/* charge: bytes of a request already counted in the shared budget, which
 * the delivered message then carries. */
static void deliver(tch_conn *c, int is_req, tch_reasm *r, size_t charge) {
    if (is_req && c->cfg.shared) {
        r->msg.budget = c->cfg.shared;
        r->msg.charged = charge;
    }
    tch_call_msg *m = take_msg(r);
    if (!m) {
        tch_error err;
        tch_error_set(&err, TCH_ENOMEM, "out of memory");
        message_failed(c, is_req, r->msg.id, TCH_ENOMEM, &err);
        return;
    }
    if (is_req)
        c->ev.call_req(c->ud, m);
    else
        c->ev.call_res(c->ud, m);
}

/* Removes and frees a partial message, keeping the byte counts right. */
static void drop_part(tch_conn *c, int is_req, uint32_t id) {
    part *p = tch_intmap_remove(is_req ? &c->req_parts : &c->res_parts, id);
    if (p)
        part_free(c, p);
}

/* The most bytes a frame of `payload` bytes can add to a request, so that
 * budgets are checked before memory is taken rather than after. A
 * continue frame spends at least 4 bytes on flags, checksum type and a
 * chunk's length; the rest is data. The reassembler grows an open arg to
 * an eighth more than it needs (reasm.c's reserve_arg; an arg that a chunk
 * closes before it has a buffer gets its exact size). The data goes to
 * the arg being filled, whose buffer may have room already, and the rest
 * to fresh ones: the worse of all of it to either is the bound. */
static size_t growth_bound(const tch_reasm *r, size_t payload) {
    const tch_buf *b = &r->msg.args[r->arg];
    size_t data = payload > 4 ? payload - 4 : 0;
    size_t all_here = b->len + data, none_here = b->len;
    all_here += all_here / 8;
    none_here += none_here / 8;
    size_t here = all_here > b->cap ? all_here - b->cap : 0;
    size_t fresh = (none_here > b->cap ? none_here - b->cap : 0) + data + data / 8;
    return (here > fresh ? here : fresh) + 3 * 64;
}

/* A first frame holds its field bytes and its chunks once each (an open
 * arg an eighth more), the headers array (a header takes at least 2 bytes
 * of the frame) and the request's overhead. */
static size_t first_bound(size_t payload) {
    size_t nh = payload / 2 < TCH_CALL_MAX_HEADERS ? payload / 2 : TCH_CALL_MAX_HEADERS;
    return payload + payload / 8 + nh * sizeof(tch_kv) + 3 * 64 + REQ_OVERHEAD;
}

/* Refuses request id with Busy and tells the owner why. */
static void refuse_busy(tch_conn *c, uint32_t id, const char *why) {
    tch_conn_send_error(c, id, TCH_PCODE_BUSY, NULL, why);
    if (c->ev.limit)
        c->ev.limit(c->ud, why);
}

/* Refuses a request that alone needs more than a budget: it could never
 * be taken, so retrying is no use (BadRequest, not Busy). */
static void refuse_too_big(tch_conn *c, uint32_t id, size_t need, size_t limit,
                           const char *scope) {
    char why[256];
    snprintf(why, sizeof why,
             "request id %u refused: a request of at least %zu bytes is larger than "
             "this server's budget of %zu bytes for %s; it cannot be taken",
             id, need, limit, scope);
    tch_conn_send_error(c, id, TCH_PCODE_BAD_REQUEST, NULL, why);
    if (c->ev.limit)
        c->ev.limit(c->ud, why);
}

/* Whether a request that holds `own` bytes (already counted) and may take
 * `more` would pass either budget (the connection's only while it is
 * still arriving). If so it is refused: with Busy when what others hold is
 * in the way (retry later), with BadRequest when it alone is too big. */
static int over_budget(tch_conn *c, uint32_t id, size_t own, size_t more, int arriving) {
    const tch_mem_budget *sh = c->cfg.shared;
    size_t need = own + more, others, limit;
    const char *scope;
    if (arriving && c->partial_bytes - own + need > c->cfg.max_partial_bytes) {
        others = c->partial_bytes - own;
        limit = c->cfg.max_partial_bytes;
        scope = "requests still arriving on one connection";
    } else if (sh && sh->used - own + need > sh->limit) {
        others = sh->used - own;
        limit = sh->limit;
        scope = "requests arriving or being served and answers waiting to be written";
    } else {
        return 0;
    }
    if (need > limit || others == 0) {
        refuse_too_big(c, id, need, limit, scope);
        return 1;
    }
    char why[320];
    snprintf(why, sizeof why,
             "request id %u refused: it would hold %zu bytes, and %s hold %zu bytes "
             "besides: that would pass the budget of %zu bytes; retry later",
             id, need, scope, others, limit);
    refuse_busy(c, id, why);
    return 1;
}

static int over_partial_limits(tch_conn *c, uint32_t id, size_t payload, int more) {
    if (more && c->req_parts.len >= c->cfg.max_partial_requests) {
        char why[160];
        snprintf(why, sizeof why,
                 "request id %u refused: %zu requests are already arriving on this "
                 "connection (the limit); retry later",
                 id, c->req_parts.len);
        refuse_busy(c, id, why);
        return 1;
    }
    /* A single-frame request is only held once delivered: the connection's
     * budget (requests still arriving) does not count it. */
    return over_budget(c, id, 0, first_bound(payload), more);
}

/* arg1 past the protocol's 16 KiB: the Node and Go peers refuse it, so a
 * server here must too, or a caller's bug would pass every test. */
static int arg1_too_long(const tch_reasm *r, tch_error *err) {
    size_t n = r->msg.args[0].len;
    if (n <= TCH_ARG1_MAX_SIZE)
        return 0;
    tch_error_set(err, TCH_ETOOBIG,
                  "%s id %u: arg1 of at least %zu bytes is longer than the protocol "
                  "allows (%d bytes)",
                  tch_frame_type_name(r->msg.type), r->msg.id, n, TCH_ARG1_MAX_SIZE);
    return 1;
}

/* A peer that starts a second message under an id whose first message is
 * still arriving: neither can be told apart from the other any more. Both
 * are refused, with one error, as for an id reused while being answered. */
static void refuse_reused_id(tch_conn *c, int is_req, uint32_t id) {
    char why[160];
    snprintf(why, sizeof why,
             "call id %u reused while the frames of the %s that has it are still arriving",
             id, is_req ? "request" : "response");
    drop_part(c, is_req, id);
    if (is_req)
        tch_conn_send_error(c, id, TCH_PCODE_BAD_REQUEST, NULL, why);
    else if (c->ev.res_failed)
        c->ev.res_failed(c->ud, id, TCH_EPROTO, why);
}

static int on_call_first(tch_conn *c, const tch_frame *fr, int is_req) {
    tch_intmap *parts = is_req ? &c->req_parts : &c->res_parts;
    if (tch_intmap_get(parts, fr->id)) {
        refuse_reused_id(c, is_req, fr->id);
        return 0;
    }
    if (!is_req && c->ev.expects_response && !c->ev.expects_response(c->ud, fr->id))
        return 0; /* late (the call timed out) or never asked for */
    int more = fr->payload.len && (fr->payload.ptr[0] & TCH_CALL_FLAG_MORE);
    if (is_req && over_partial_limits(c, fr->id, fr->payload.len, more))
        return 0;
    tch_reasm r;
    tch_error err;
    memset(&r, 0, sizeof r);
    int rc = tch__reasm_start_with(&r, fr, c->cfg.max_arg_size, c->cfg.alloc, &err);
    if (rc >= 0 && arg1_too_long(&r, &err))
        rc = TCH_ETOOBIG;
    if (rc < 0) {
        tch_reasm_free(&r);
        message_failed(c, is_req, fr->id, rc, &err);
        return 0;
    }
    if (rc == 1) {
        size_t charge = 0;
        if (is_req && c->cfg.shared) {
            charge = req_charge(&r.msg);
            c->cfg.shared->used += charge;
        }
        deliver(c, is_req, &r, charge);
        tch_reasm_free(&r);
        return 0;
    }
    part *held = tch__calloc(c->cfg.alloc, 1, sizeof *held);
    if (!held || tch_intmap_put(parts, fr->id, held) != 0) {
        tch__free(c->cfg.alloc, held);
        tch_reasm_free(&r);
        return fail(c, TCH_ENOMEM, "out of memory");
    }
    held->r = r;
    if (is_req) {
        recharge(c, held);
        c->part_frame_ms = c->now;
        if (r.msg.ttl_ms > 0) {
            held->deadline_ms = c->part_frame_ms + r.msg.ttl_ms;
            if (c->req_parts.len == 1 || !c->next_deadline ||
                held->deadline_ms < c->next_deadline)
                c->next_deadline = held->deadline_ms;
        }
    }
    return 0;
}

/* Answers a request whose TTL ran out before (complete = 0) or as (1) its
 * last frame arrived. */
static void send_late_timeout(tch_conn *c, uint32_t id, const tch_call_msg *m,
                              int complete) {
    char why[256];
    snprintf(why, sizeof why,
             "request to service \"%.*s\" timed out: its ttl of %u ms ran out %s",
             (int)(m->service.len > 64 ? 64 : m->service.len),
             m->service.ptr ? (const char *)m->service.ptr : "", m->ttl_ms,
             complete ? "by the time its last frame arrived"
                      : "before its last frame arrived");
    tch_conn_send_error(c, id, TCH_PCODE_TIMEOUT, &m->tracing, why);
}

/* A request that took a while to arrive keeps only what is left of its TTL
 * (counted from its first frame); 0 when nothing is. */
static uint32_t ttl_left(tch_conn *c, const part *p) {
    uint64_t now = c->now;
    return p->deadline_ms > now ? (uint32_t)(p->deadline_ms - now) : 0;
}

static int on_call_cont(tch_conn *c, const tch_frame *fr, int is_req) {
    tch_intmap *parts = is_req ? &c->req_parts : &c->res_parts;
    part *p = tch_intmap_get(parts, fr->id);
    if (!p)
        return 0; /* e.g. the message was already failed, expired or cancelled */
    tch_reasm *r = &p->r;
    if (is_req) {
        /* Checked before the frame is taken: a request that would pass a
         * budget is dropped rather than grown. */
        if (over_budget(c, fr->id, p->charged, growth_bound(r, fr->payload.len), 1)) {
            drop_part(c, 1, fr->id);
            return 0;
        }
    }
    if (is_req)
        c->part_frame_ms = c->now;
    tch_error err;
    int rc = tch_reasm_continue(r, fr, &err);
    if (rc >= 0 && arg1_too_long(r, &err))
        rc = TCH_ETOOBIG;
    if (is_req)
        recharge(c, p);
    if (rc == 0)
        return 0;
    tch_intmap_remove(parts, fr->id);
    int timed = rc == 1 && is_req && p->deadline_ms; /* only requests have TTLs */
    uint32_t left = timed ? ttl_left(c, p) : 0;
    if (timed && left == 0) {
        send_late_timeout(c, fr->id, &r->msg, 1); /* before the expiry timer ran */
    } else if (rc == 1) {
        if (timed)
            r->msg.ttl_ms = left;
        /* The charge moves from the part to the message. */
        size_t charge = p->charged;
        c->partial_bytes -= charge;
        p->charged = 0;
        deliver(c, is_req, r, charge);
    } else {
        message_failed(c, is_req, fr->id, rc, &err);
    }
    part_free(c, p);
    return 0;
}

void tch_conn_forget_request(tch_conn *c, uint32_t id) { drop_part(c, 1, id); }

/* The frame timeout's deadline; 0: none. */
static uint64_t frame_deadline(const tch_conn *c) {
    return c->frame_begun_ms && c->cfg.frame_timeout_ms
               ? c->frame_begun_ms + c->cfg.frame_timeout_ms
               : 0;
}

uint64_t tch_conn_next_deadline(const tch_conn *c) {
    uint64_t ttl = c->req_parts.len ? c->next_deadline : 0, fr = frame_deadline(c);
    return !ttl || (fr && fr < ttl) ? fr : ttl;
}

/* The id of one request past its deadline, and the earliest deadline of
 * the others (0: none). */
static int find_expired(const tch_conn *c, uint64_t now_ms, uint32_t *id,
                        uint64_t *next) {
    *next = 0;
    for (size_t i = 0; i < c->req_parts.cap; i++) {
        const part *p = c->req_parts.slots[i].value;
        if (!p || !p->deadline_ms)
            continue;
        if (p->deadline_ms <= now_ms) {
            *id = c->req_parts.slots[i].key;
            return 1;
        }
        if (!*next || p->deadline_ms < *next)
            *next = p->deadline_ms;
    }
    return 0;
}

static void expire_requests(tch_conn *c, uint64_t now_ms) {
    uint32_t id;
    uint64_t next;
    /* One at a time: removal shifts the map's slots. Rare and bounded by
     * max_partial_requests. */
    while (find_expired(c, now_ms, &id, &next)) {
        part *p = tch_intmap_remove(&c->req_parts, id);
        send_late_timeout(c, id, &p->r.msg, 0);
        part_free(c, p);
    }
    c->next_deadline = next;
}

uint64_t tch_conn_tick(tch_conn *c, uint64_t now_ms) {
    c->now = now_ms;
    if (c->state == FAILED)
        return 0;
    expire_requests(c, now_ms); /* queues Timeout error frames */
    uint64_t due = frame_deadline(c);
    if (due && due <= now_ms) {
        char why[128];
        snprintf(why, sizeof why,
                 "a frame begun %u ms ago is still not whole (%zu bytes of it arrived): frame timeout",
                 c->cfg.frame_timeout_ms, c->in_len);
        if (c->ev.limit)
            c->ev.limit(c->ud, why);
        fail_fatal_status(c, TCH_ETIMEOUT, TCH_ID_NONE, why);
        return 0;
    }
    return tch_conn_next_deadline(c);
}
void tch_conn_forget_response(tch_conn *c, uint32_t id) { drop_part(c, 0, id); }

static int on_error(tch_conn *c, const tch_frame *fr) {
    tch_error_frame e;
    tch_error err;
    if (tch_error_frame_decode(fr->payload, &e, &err) != 0)
        return fail_fatal(c, TCH_ID_NONE, err.msg);
    drop_part(c, 0, fr->id);
    if (c->ev.error_frame)
        c->ev.error_frame(c->ud, fr->id, &e);
    /* Only a protocol error ends the connection. An error frame about no
     * message (id 0xffffffff) with another code is a notice: the Node peer
     * announces draining with one (Declined, "draining: ...") and keeps
     * answering the calls already running. */
    if (e.code == 0xff)
        return fail(c, TCH_EREMOTE, "peer sent a fatal error: %.*s",
                    (int)e.message.len, (const char *)e.message.ptr);
    return 0;
}

static int on_ready_frame(tch_conn *c, const tch_frame *fr) {
    switch (fr->type) {
    case TCH_FRAME_CALL_REQ: return on_call_first(c, fr, 1);
    case TCH_FRAME_CALL_RES: return on_call_first(c, fr, 0);
    case TCH_FRAME_CALL_REQ_CONT: return on_call_cont(c, fr, 1);
    case TCH_FRAME_CALL_RES_CONT: return on_call_cont(c, fr, 0);
    case TCH_FRAME_PING_REQ: {
        size_t len = tch_ping_encode(TCH_FRAME_PING_RES, fr->id, c->scratch);
        emit(c, c->scratch, len);
        return 0;
    }
    case TCH_FRAME_PING_RES:
        if (c->ev.ping_res)
            c->ev.ping_res(c->ud, fr->id);
        return 0;
    case TCH_FRAME_CLAIM:
        return 0;
    case TCH_FRAME_CANCEL:
        tch_conn_forget_request(c, fr->id);
        if (c->ev.cancel)
            c->ev.cancel(c->ud, fr->id);
        return 0;
    case TCH_FRAME_ERROR: return on_error(c, fr);
    default: {
        char why[96];
        snprintf(why, sizeof why, "unexpected frame type %s (0x%02x) after the handshake",
                 tch_frame_type_name(fr->type), fr->type);
        return fail_fatal(c, fr->id, why);
    }
    }
}

/* During the handshake only init (or an error) may come: a frame whose
 * header says otherwise is refused before its payload arrives, so a peer
 * that speaks something else fails at once. */
static int check_handshake_header(tch_conn *c, const tch_frame_header *h) {
    uint8_t want = c->state == WAIT_INIT_REQ ? TCH_FRAME_INIT_REQ : TCH_FRAME_INIT_RES;
    if (h->type == want || h->type == TCH_FRAME_ERROR)
        return 0;
    tch_frame fr = {.type = h->type, .id = h->id};
    return on_handshake_frame(c, &fr);
}

static int feed_frame(tch_conn *c, const tch_frame *fr) {
    switch (c->state) {
    case FAILED: return TCH_ECLOSED;
    case READY: return on_ready_frame(c, fr);
    default: return on_handshake_frame(c, fr);
    }
}

uint8_t *tch_conn_in_room(tch_conn *c, size_t want, size_t *cap) {
    if (c->in_cap - c->in_off - c->in_len < want && c->in_off) {
        memmove(c->in, c->in + c->in_off, c->in_len); /* at most a frame */
        c->in_off = 0;
    }
    if (c->in_cap - c->in_len < want) {
        uint8_t *p = tch__realloc(c->cfg.alloc, c->in, c->in_len + want);
        if (!p)
            return NULL;
        c->in = p;
        c->in_cap = c->in_len + want;
    }
    *cap = c->in_cap - c->in_off - c->in_len;
    return c->in + c->in_off + c->in_len;
}

void tch_conn_received(tch_conn *c, size_t n, uint64_t now_ms) {
    c->in_len += n;
    c->now = now_ms;
}

size_t tch_conn_in_pending(const tch_conn *c) { return c->in_len; }

int tch_conn_wants_read(const tch_conn *c) {
    return c->state != FAILED && !backlogged(c) && c->in_len < IN_MAX;
}

/* Input fully processed. The buffer is kept for the next read: freeing it
 * here cost 17 page faults a call at 64 KiB (glibc gives the top of the
 * heap back and the next read faults it in again); tch_conn_trim returns
 * it once the connection is quiet. */
static void in_settle(tch_conn *c) {
    if (c->in_len == 0)
        c->in_off = 0;
    /* The frame clock runs while a frame is incomplete and reading goes on;
     * a new frame (one was taken) starts it afresh. */
    if (c->in_len == 0 || c->state == FAILED || backlogged(c))
        c->frame_begun_ms = 0;
    else if (c->took || !c->frame_begun_ms)
        c->frame_begun_ms = c->now ? c->now : 1;
    c->took = 0;
}

int tch_conn_process(tch_conn *c, unsigned max_frames, uint64_t now_ms) {
    c->now = now_ms;
    unsigned took = 0;
    while (c->state != FAILED && c->in_len > 0 && !backlogged(c)) {
        tch_slice in = tch_slice_of(c->in + c->in_off, c->in_len);
        tch_frame_header h;
        tch_error err;
        int rc = tch_frame_header_decode(in, &h, &err);
        if (rc == TCH_EPROTO)
            return fail_fatal(c, TCH_ID_NONE, err.msg);
        if (rc == 0 && c->state != READY && (rc = check_handshake_header(c, &h)) != 0)
            return rc;
        if (rc == TCH_EAGAIN || in.len < h.size)
            break;
        tch_frame fr = {.type = h.type, .id = h.id,
                        .payload = tch_slice_of(in.ptr + TCH_FRAME_HEADER_SIZE,
                                                h.size - TCH_FRAME_HEADER_SIZE)};
        rc = feed_frame(c, &fr);
        c->in_off += h.size;
        c->in_len -= h.size;
        took++;
        c->took = 1;
        if (rc)
            return rc;
        if (c->in_len && (took >= max_frames || c->out_len >= OUT_FLUSH))
            return 1; /* the owner writes, then comes back */
    }
    in_settle(c);
    return c->state == FAILED ? TCH_ECLOSED : 0;
}

void tch_conn_trim(tch_conn *c) {
    if (c->in_len == 0) {
        tch__free(c->cfg.alloc, c->in);
        c->in = NULL;
        c->in_off = c->in_cap = 0;
    }
    tch__free(c->cfg.alloc, c->out_spare);
    c->out_spare = NULL;
    if (c->out_len == 0) { /* the emptied tail kept for reuse goes too */
        while (c->out_head) {
            out_block *b = c->out_head;
            c->out_head = b->next;
            tch__free(c->cfg.alloc, b);
        }
        c->out_tail = NULL;
    }
}

int tch_conn_feed(tch_conn *c, const uint8_t *data, size_t len, uint64_t now_ms) {
    size_t cap;
    uint8_t *room = tch_conn_in_room(c, len, &cap);
    if (!room)
        return fail(c, TCH_ENOMEM, "out of memory");
    memcpy(room, data, len);
    tch_conn_received(c, len, now_ms);
    int rc;
    while ((rc = tch_conn_process(c, UINT_MAX, now_ms)) == 1)
        ;
    return rc;
}
