/* trace_node: spans of traced calls between our channel and Uber's Node
 * TChannel agree on the trace id and on parent/child ids.
 *
 *   trace_node [--node PATH] [--peer-js PATH]
 *
 * Node reports spans through its traceReporter option (TChannel({trace:
 * true, traceReporter: fn})); node/trace_peer.js prints each as a `span
 * {...}` line. Node's server span takes the ids of the request as they are
 * (its id is the caller's span id, its parent the caller's parent), and so
 * does ours: a client span and the server span of the same call share one
 * span id. The cases:
 *   c_client_node_server  our traced call to a Node server: Node's server
 *                         span has our client span's trace id, span id and
 *                         parent id, the traced flag, name "echo"
 *   node_client_c_server  a Node client's traced call to our server: our
 *                         server span has Node's client span's ids, and
 *                         names Node's address as the peer
 * Prints `ok <case>` / `FAIL <case>: <why>` per case, then `N passed, M
 * failed`. Exit 0 iff nothing failed, 77 when `node` is not installed. Every
 * wait is bounded and waits on the event itself. */
#include <tchannel/channel.h>
#include <tchannel/trace.h>

#include <event2/event.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node_child.h"

#ifndef TCH_TRACE_PEER_JS
#define TCH_TRACE_PEER_JS "tests/interop/node/trace_peer.js"
#endif
#define SERVICE "keyvalue-server"
#define WAIT_MS 15000

static int passed, failed;

static void verdict(const char *name, const char *why) {
    if (why) {
        printf("FAIL %s: %s\n", name, why);
        failed++;
    } else {
        printf("ok %s\n", name);
        passed++;
    }
    fflush(stdout);
}

/* ---- our spans, kept by a reporter -------------------------------------- */

typedef struct kept {
    tch_span s;
    char peer[64];
} kept;

typedef struct keeper {
    kept v[8];
    int n;
} keeper;

static void keep(const tch_span *span, void *ud) {
    keeper *k = ud;
    if (k->n == 8)
        return;
    kept *e = &k->v[k->n++];
    e->s = *span;
    snprintf(e->peer, sizeof e->peer, "%s", span->peer);
    e->s.peer = e->peer;
    e->s.name = e->s.local_service = e->s.remote_service = e->s.scheme = TCH_SLICE_NULL;
    e->s.message = "";
}

/* ---- Node's spans, read off its stdout ---------------------------------------- */

typedef struct node_span {
    char traceid[17], spanid[17], parentid[17], name[64], host[64];
    int flags;
} node_span;

/* The string value of "key" in a one-line JSON object we printed ourselves
 * (no escapes in ids, names or addresses). */
static int field(const char *line, const char *key, char *out, size_t cap) {
    char pat[32];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *p = strstr(line, pat);
    if (!p)
        return -1;
    p += strlen(pat);
    const char *q = strchr(p, '"');
    if (!q || (size_t)(q - p) >= cap)
        return -1;
    memcpy(out, p, (size_t)(q - p));
    out[q - p] = 0;
    return 0;
}

static int parse_span(const char *line, node_span *s) {
    memset(s, 0, sizeof *s);
    const char *f = strstr(line, "\"flags\":");
    if (strncmp(line, "span ", 5) != 0 || field(line, "traceid", s->traceid, sizeof s->traceid) ||
        field(line, "spanid", s->spanid, sizeof s->spanid) ||
        field(line, "parentid", s->parentid, sizeof s->parentid) ||
        field(line, "name", s->name, sizeof s->name) || field(line, "host", s->host, sizeof s->host) ||
        !f)
        return -1;
    s->flags = atoi(f + 8);
    return 0;
}

/* Lines from node's stdout, read as they come (on the loop or by poll). */
typedef struct lines {
    int fd;
    char buf[8192];
    size_t len;
    int eof;
    node_span spans[8];
    int nspans;
    char done[256]; /* the client's `done ...` line */
} lines;

static void take_lines(lines *l) {
    char *nl;
    while ((nl = memchr(l->buf, '\n', l->len))) {
        *nl = 0;
        if (!strncmp(l->buf, "span ", 5) && l->nspans < 8 &&
            parse_span(l->buf, &l->spans[l->nspans]) == 0)
            l->nspans++;
        else if (!strncmp(l->buf, "done ", 5))
            snprintf(l->done, sizeof l->done, "%.200s", l->buf);
        size_t used = (size_t)(nl - l->buf) + 1;
        memmove(l->buf, nl + 1, l->len - used);
        l->len -= used;
    }
}

static void read_some(lines *l) {
    ssize_t r = read(l->fd, l->buf + l->len, sizeof l->buf - 1 - l->len);
    if (r < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (r <= 0) {
        l->eof = 1;
        return;
    }
    l->len += (size_t)r;
    take_lines(l);
}

static void on_readable(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    read_some(arg);
}

static void bound_fired(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    *(int *)arg = 1;
}

/* Runs the loop until *until(ud) or WAIT_MS pass; 1 when it got there. */
static int run_until(struct event_base *base, int (*until)(void *), void *ud) {
    int expired = 0;
    struct event *t = evtimer_new(base, bound_fired, &expired);
    struct timeval tv = {WAIT_MS / 1000, 0};
    evtimer_add(t, &tv);
    while (!until(ud) && !expired)
        if (event_base_loop(base, EVLOOP_ONCE) != 0)
            break;
    event_free(t);
    return until(ud);
}

static void hex(char out[17], uint64_t v) { snprintf(out, 17, "%016" PRIx64, v); }

/* ---- case 1: our client, Node's server ----------------------------------------- */

typedef struct call_state {
    int done, status;
    char message[256];
} call_state;

static void on_response(const tch_response *res, void *ud) {
    call_state *c = ud;
    c->done = 1;
    c->status = res->status;
    snprintf(c->message, sizeof c->message, "%s", res->message ? res->message : "");
}

static int call_done(void *ud) { return ((call_state *)ud)->done; }

static const char *check_ids(const node_span *n, const tch_span *ours, char *why, size_t cap) {
    char t[17], s[17], p[17];
    hex(t, ours->trace_id);
    hex(s, ours->id);
    hex(p, ours->parent_id);
    if (strcmp(n->traceid, t) || strcmp(n->spanid, s) || strcmp(n->parentid, p)) {
        snprintf(why, cap, "ids differ: node trace %s span %s parent %s, ours trace %s span %s parent %s",
                 n->traceid, n->spanid, n->parentid, t, s, p);
        return why;
    }
    if (!(n->flags & 1)) {
        snprintf(why, cap, "node's span has flags %d, not traced", n->flags);
        return why;
    }
    if (strcmp(n->name, "echo")) {
        snprintf(why, cap, "node's span is named \"%s\", not echo", n->name);
        return why;
    }
    return NULL;
}

/* Waits (poll, bounded) for node to print the span with this trace id. */
static const node_span *await_node_span(lines *l, const char *traceid) {
    uint64_t deadline = interop_now_ms() + WAIT_MS;
    for (;;) {
        for (int i = 0; i < l->nspans; i++)
            if (!strcmp(l->spans[i].traceid, traceid))
                return &l->spans[i];
        uint64_t now = interop_now_ms();
        if (l->eof || now >= deadline)
            return NULL;
        struct pollfd p = {l->fd, POLLIN, 0};
        if (poll(&p, 1, (int)(deadline - now)) > 0)
            read_some(l);
    }
}

static void c_client_node_server(struct event_base *base, const char *node, const char *js) {
    const char *name = "c_client_node_server";
    static const char *const extra[] = {"--mode", "server", NULL};
    node_child nc = {0};
    char hp[128], why[512];
    if (node_start(node, js, extra, &nc, hp, sizeof hp) != 0) {
        node_stop(&nc);
        verdict(name, "node trace_peer.js --mode server did not start");
        return;
    }
    tch_channel_options co = {.trace = 1};
    tch_channel *ch;
    tch_channel_new(base, "trace-c-client", &co, &ch, NULL);
    keeper k = {0};
    tch_error err;
    tch_tracer *tr;
    tch_tracer_new(ch, (tch_span_reporter){keep, &k}, &tr, &err);
    tch_call_opts o = {.service = SERVICE, .endpoint = tch_slice_cstr("echo"),
                       .arg2 = tch_slice_cstr("head"), .arg3 = tch_slice_cstr("body"),
                       .host_port = hp, .timeout_ms = 5000, .retry_on = TCH_RETRY_NEVER};
    call_state c = {0};
    const char *fail = NULL;
    lines l = {.fd = nc.out_fd};
    if (tch_channel_call(ch, &o, on_response, &c, &err) != 0) {
        snprintf(why, sizeof why, "call: %.400s", err.msg);
        fail = why;
    } else if (!run_until(base, call_done, &c)) {
        fail = "no answer from node";
    } else if (c.status != 0) {
        snprintf(why, sizeof why, "call failed: %s", c.message);
        fail = why;
    } else if (k.n != 1 || k.v[0].s.kind != TCH_SPAN_CLIENT) {
        snprintf(why, sizeof why, "%d spans of ours, not one client span", k.n);
        fail = why;
    } else {
        char t[17];
        hex(t, k.v[0].s.trace_id);
        const node_span *ns = await_node_span(&l, t);
        if (!ns)
            snprintf(why, sizeof why, "node reported no span with trace id %s", t);
        fail = ns ? check_ids(ns, &k.v[0].s, why, sizeof why) : why;
        if (!fail && k.v[0].s.parent_id != 0)
            fail = "our call had no parent, yet its span has one";
    }
    verdict(name, fail);
    tch_tracer_free(tr);
    tch_channel_free(ch);
    node_stop(&nc);
}

/* ---- case 2: Node's client, our server -------------------------------------------- */

static void echo(tch_inbound *in, void *ud) {
    (void)ud;
    tch_inbound_respond(in, 0, tch_inbound_arg2(in), tch_inbound_arg3(in));
}

typedef struct both {
    lines *l;
    keeper *k;
} both;

static int client_finished(void *ud) {
    both *b = ud;
    return b->l->eof || (b->l->done[0] && b->l->nspans > 0 && b->k->n > 0);
}

static void node_client_c_server(struct event_base *base, const char *node, const char *js) {
    const char *name = "node_client_c_server";
    char why[512];
    const char *fail = NULL;
    tch_channel *ch;
    tch_channel_new(base, SERVICE, NULL, &ch, NULL);
    tch_error err;
    if (tch_channel_listen(ch, "127.0.0.1:0", &err) != 0) {
        verdict(name, err.msg);
        tch_channel_free(ch);
        return;
    }
    tch_channel_register(ch, NULL, "echo", echo, NULL);
    keeper k = {0};
    tch_tracer *tr;
    tch_tracer_new(ch, (tch_span_reporter){keep, &k}, &tr, &err);
    char ours[64], node_hp[128];
    snprintf(ours, sizeof ours, "%s", tch_channel_host_port(ch));
    const char *extra[] = {"--mode", "client", "--peer", ours, NULL};
    node_child nc = {0};
    if (node_start(node, js, extra, &nc, node_hp, sizeof node_hp) != 0) {
        node_stop(&nc);
        verdict(name, "node trace_peer.js --mode client did not start");
        tch_tracer_free(tr);
        tch_channel_free(ch);
        return;
    }
    lines l = {.fd = nc.out_fd};
    struct event *rd = event_new(base, nc.out_fd, EV_READ | EV_PERSIST, on_readable, &l);
    event_add(rd, NULL);
    both b = {&l, &k};
    run_until(base, client_finished, &b);
    event_free(rd);
    if (strcmp(l.done, "done ok") != 0) {
        snprintf(why, sizeof why, "node's call did not succeed: %.300s",
                 l.done[0] ? l.done : "(no done line)");
        fail = why;
    } else if (k.n != 1 || k.v[0].s.kind != TCH_SPAN_SERVER) {
        snprintf(why, sizeof why, "%d spans of ours, not one server span", k.n);
        fail = why;
    } else if (l.nspans != 1) {
        snprintf(why, sizeof why, "node reported %d spans, not its one client span", l.nspans);
        fail = why;
    } else {
        fail = check_ids(&l.spans[0], &k.v[0].s, why, sizeof why);
        if (!fail && strcmp(k.v[0].peer, node_hp) != 0) {
            snprintf(why, sizeof why, "our server span's peer is %s, node listens on %s",
                     k.v[0].peer, node_hp);
            fail = why;
        }
        if (!fail && !k.v[0].s.shared)
            fail = "our server span is not marked shared";
    }
    verdict(name, fail);
    node_stop(&nc);
    tch_tracer_free(tr);
    tch_channel_free(ch);
}

int main(int argc, char **argv) {
    const char *node_arg = "node", *js = TCH_TRACE_PEER_JS;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--node") && i + 1 < argc)
            node_arg = argv[++i];
        else if (!strcmp(argv[i], "--peer-js") && i + 1 < argc)
            js = argv[++i];
        else {
            fprintf(stderr, "usage: trace_node [--node PATH] [--peer-js PATH]\n");
            return 2;
        }
    }
    char node[4096];
    if (interop_find_in_path(node_arg, node, sizeof node) != 0) {
        printf("SKIP: node not found\n");
        return 77;
    }
    struct event_base *base = event_base_new();
    c_client_node_server(base, node, js);
    node_client_c_server(base, node, js);
    event_base_free(base);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
