/* Blocking client: runs a private event loop until the call completes. */
#include <tchannel/sync.h>

#include "alloc.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

struct tch_sync_client {
    struct event_base *base;
    tch_channel *ch;
    const tch_allocator *alloc; /* NULL or &alloc_copy */
    tch_allocator alloc_copy;
};

int tch_sync_client_new(const char *name, const tch_channel_options *opts,
                        tch_sync_client **out, tch_error *err) {
    if (!out)
        return tch_error_set(err, TCH_EINVAL, "tch_sync_client_new: out is NULL");
    *out = NULL;
    const tch_allocator *alloc = opts ? opts->allocator : NULL;
    if (alloc && (!alloc->malloc_cb || !alloc->realloc_cb || !alloc->free_cb))
        return tch_error_set(err, TCH_EINVAL, "tch_sync_client_new: the allocator lacks "
                             "malloc_cb, realloc_cb or free_cb");
    tch_sync_client *c = tch__calloc(alloc, 1, sizeof *c);
    if (!c)
        return tch_error_set(err, TCH_ENOMEM, "tch_sync_client_new: out of memory");
    c->alloc = tch__alloc_keep(&c->alloc_copy, alloc); /* needed after the channel */
    c->base = event_base_new();
    int rc = c->base ? tch_channel_new(c->base, name, opts, &c->ch, err)
                     : tch_error_set(err, TCH_ENOMEM, "tch_sync_client_new: no event_base");
    if (rc) {
        tch_sync_client_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void tch_sync_client_free(tch_sync_client *c) {
    if (!c)
        return;
    tch_channel_free(c->ch);
    if (c->base)
        event_base_free(c->base);
    tch__free_self(c->alloc, c);
}

tch_channel *tch_sync_client_channel(tch_sync_client *c) { return c->ch; }

/* Heap-allocated: if the loop fails while the call is out, the callback
 * still has somewhere to land (and frees it). */
typedef struct waiter {
    const tch_allocator *alloc; /* the client's */
    tch_sync_response res;
    int done;
    int abandoned;
} waiter;

/* The message of a response whose copy ran out of memory: never freed. */
static const char out_of_memory[] = "out of memory";

static int copy_response(tch_sync_response *out, const tch_response *res,
                         const tch_allocator *alloc) {
    memset(out, 0, sizeof *out);
    out->alloc = alloc;
    out->arg2.alloc = out->arg3.alloc = out->header_store.alloc = alloc;
    out->status = res->status;
    out->code = res->code;
    out->error_code = res->error_code;
    out->message = tch_slice_strdup_with(alloc, tch_slice_cstr(res->message ? res->message : ""));
    if (!out->message || tch_buf_append_slice(&out->arg2, res->arg2) ||
        tch_buf_append_slice(&out->arg3, res->arg3))
        return TCH_ENOMEM;
    size_t total = 0;
    for (size_t i = 0; i < res->nheaders; i++)
        total += res->headers[i].key.len + res->headers[i].value.len;
    if (res->nheaders) {
        out->headers = tch__calloc(alloc, res->nheaders, sizeof *out->headers);
        if (!out->headers || tch_buf_reserve(&out->header_store, total + 1))
            return TCH_ENOMEM;
        for (size_t i = 0; i < res->nheaders; i++) {
            tch_slice *parts[2] = {&out->headers[i].key, &out->headers[i].value};
            const tch_slice src[2] = {res->headers[i].key, res->headers[i].value};
            for (int k = 0; k < 2; k++) {
                parts[k]->ptr = out->header_store.ptr + out->header_store.len;
                parts[k]->len = src[k].len;
                tch_buf_append_slice(&out->header_store, src[k]);
            }
        }
        out->nheaders = res->nheaders;
    }
    return 0;
}

static void on_done(const tch_response *res, void *ud) {
    waiter *w = ud;
    if (w->abandoned) {
        tch__free(w->alloc, w);
        return;
    }
    if (copy_response(&w->res, res, w->alloc) != 0) {
        tch_sync_response_free(&w->res);
        w->res.alloc = w->alloc;
        w->res.status = TCH_ENOMEM;
        w->res.error_code = TCH_PCODE_UNEXPECTED;
        w->res.message = (char *)out_of_memory; /* as promised: a string */
    }
    w->done = 1;
}

int tch_sync_call(tch_sync_client *c, const tch_call_opts *opts,
                  tch_sync_response *out, tch_error *err) {
    memset(out, 0, sizeof *out);
    waiter *w = tch__calloc(c->alloc, 1, sizeof *w);
    if (!w)
        return tch_error_set(err, TCH_ENOMEM, "out of memory");
    w->alloc = c->alloc;
    /* The loop ran only inside earlier calls: first take in what happened
     * since (a peer that closed an idle connection), so this call does not
     * go out on a connection that is already gone. */
    if (event_base_loop(c->base, EVLOOP_NONBLOCK) < 0) {
        tch__free(c->alloc, w);
        return tch_error_set(err, TCH_EIO, "event loop failed");
    }
    int rc = tch_channel_call(c->ch, opts, on_done, w, err);
    if (rc) {
        tch__free(c->alloc, w);
        return rc;
    }
    /* The call's own deadline guarantees the callback; the loop only runs
     * until then. */
    while (!w->done) {
        if (event_base_loop(c->base, EVLOOP_ONCE) < 0) {
            w->abandoned = 1; /* on_done frees it, if it ever runs */
            return tch_error_set(err, TCH_EIO, "event loop failed");
        }
    }
    *out = w->res; /* hands over the copies */
    tch__free(c->alloc, w);
    return 0;
}

void tch_sync_response_free(tch_sync_response *r) {
    if (r->message != out_of_memory)
        tch__free(r->alloc, r->message);
    tch_buf_free(&r->arg2);
    tch_buf_free(&r->arg3);
    tch__free(r->alloc, r->headers);
    tch_buf_free(&r->header_store);
    memset(r, 0, sizeof *r);
}
