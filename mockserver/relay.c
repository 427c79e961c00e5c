/* Relaying by service name, as a Hyperbahn router does. A call that no
 * cassette answers goes to an instance of its service:
 *  - one that advertised itself to us (hyperbahn::ad, hyperbahn.c), or
 *  - one given as --upstream SERVICE=HOST:PORT, else
 *  - a real router (--upstream-router), which routes by the call's service.
 * Each service has its own client channel whose peers are its live
 * instances, so the library's peer choice applies (least pending calls,
 * failing peers backed off, retries to another instance on a connection
 * error). An advertised instance whose connection fails is taken out until it
 * advertises again; an ad not refreshed within MOCK_AD_TTL_MS lapses.
 *
 * In a recording mode the call is recorded through record.c (into
 * DIR/<service>.yaml with --record-to DIR/), so the journal, group commit
 * and failed-save rules hold; in mode none it is relayed only with --relay.
 *
 * A call that names a routing delegate (rd) is routed by that service's
 * name instead, as Hyperbahn does; it is recorded under its own service.
 * A relayed call keeps its service, endpoint, arg2, arg3 and every transport
 * header (as, cn, rd, re, sk...); our hop is a child span of the caller's
 * (same trace id, the caller's span as parent, the traced flag kept); its TTL
 * is what the caller has left less our time, rounded up to 1 ms. The
 * instance's answer, error frames included, goes back as it came. */
#include "mock.h"

#include <tchannel/hooks.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Hyperbahn clients re-advertise about every minute (Node: 30-90 s;
 * tchannel-python: 60 s, jitter 5 s), and Hyperbahn ejects an instance that
 * has not re-advertised for 5 minutes (tchannel-python's advertise docs):
 * the same here. */
#define MOCK_AD_TTL_MS 300000u

typedef struct relay_instance {
    char host_port[64];
    int from_ad;         /* 0: --upstream SERVICE=HOST:PORT, kept for good */
    uint64_t expires_ms; /* ads: lapses then unless advertised again */
    int dead;            /* its connection failed: out until it advertises again */
} relay_instance;

typedef struct relay_service {
    mock *m;
    char *name;
    tch_channel *ch; /* peers: exactly the live instances */
    tch_tracer *tracer; /* our hop's CLIENT spans; NULL when not tracing */
    relay_instance *inst;
    size_t n, cap;
    struct relay_service *next;  /* all services, for shutdown */
    struct relay_service *hnext; /* the same hash bucket */
} relay_service;

typedef struct relay_call relay_call;

struct mock_relay {
    mock *m;
    relay_service *services;
    relay_service **buckets; /* services by name: an ad flood must not make lookups slow */
    size_t nbuckets, nservices;
    tch_channel *router; /* peers: the --upstream-router hosts; NULL without */
    tch_tracer *router_tracer;
    relay_call *calls;   /* relayed (not recorded) calls in flight */
    int closed;          /* shut down: no channel is made again */
};

struct relay_call {
    mock *m;
    tch_inbound *in;
    relay_call *prev, *next;
};

/* ---- instances ------------------------------------------------------------------ */

static void log_line(const char *line, void *ud) {
    (void)ud;
    mock_log("relay: %s", line);
}

/* A channel to call instances or routers with; its calls' CLIENT spans are
 * reported with our SERVER spans (*tracer, freed before the channel). */
static tch_channel *client_channel(mock *m, tch_tracer **tracer) {
    tch_channel_options o = {0};
    o.process_name = "tchannel-mock";
    o.log = log_line;
    tch_channel *ch;
    tch_channel_new(m->base, "tchannel-mock", &o, &ch, NULL);
    *tracer = mock_trace_attach(m, ch);
    return ch;
}

static void free_channel(tch_channel **ch, tch_tracer **tracer) {
    tch_tracer_free(*tracer);
    *tracer = NULL;
    if (*ch) {
        tch_channel *c = *ch;
        *ch = NULL; /* callbacks run by the free see it gone */
        tch_channel_free(c);
    }
}

/* GET /hyperbahn shows whether an advertised instance is relayed to. */
static void show_state(mock *m, const char *service, const char *host_port, const char *state) {
    json_t *h = json_object_get(json_object_get(m->advertised, service), host_port);
    if (h)
        json_object_set_new(h, "relay", json_string(state));
}

/* Sees each attempt: a connection that failed takes an advertised instance
 * out (Hyperbahn drops a peer whose connection is gone). The peer list
 * itself changes at the next routing, never inside the library's call. */
static void watch_attempts(const tch_call_event *ev, void *ud) {
    relay_service *s = ud;
    if (ev->kind != TCH_EVENT_RECEIVE_RESPONSE || !ev->outgoing || ev->status == 0 ||
        ev->status == TCH_EREMOTE || ev->error_code != TCH_PCODE_NETWORK)
        return;
    for (size_t i = 0; i < s->n; i++)
        if (s->inst[i].from_ad && !s->inst[i].dead && !strcmp(s->inst[i].host_port, ev->peer)) {
            s->inst[i].dead = 1;
            show_state(s->m, s->name, ev->peer, "out: its connection failed");
            mock_log("relay: %s instance %s taken out until it advertises again: %s", s->name,
                     ev->peer, ev->message && *ev->message ? ev->message : "no connection");
        }
}

static size_t name_hash(const char *name, size_t len) {
    uint64_t h = 14695981039346656037ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)name[i]) * 1099511628211ull;
    return (size_t)h;
}

static relay_service *find_service(struct mock_relay *r, const char *name, size_t len) {
    if (!r->nbuckets)
        return NULL;
    for (relay_service *s = r->buckets[name_hash(name, len) % r->nbuckets]; s; s = s->hnext)
        if (strlen(s->name) == len && !memcmp(s->name, name, len))
            return s;
    return NULL;
}

/* Adds s to the index, doubling the buckets when they are all used. */
static int index_service(struct mock_relay *r, relay_service *s) {
    if (r->nservices >= r->nbuckets) {
        size_t nb = r->nbuckets ? 2 * r->nbuckets : 64;
        relay_service **b = calloc(nb, sizeof *b);
        if (!b)
            return TCH_ENOMEM;
        for (relay_service *x = r->services; x; x = x->next) {
            size_t i = name_hash(x->name, strlen(x->name)) % nb;
            x->hnext = b[i], b[i] = x;
        }
        free(r->buckets);
        r->buckets = b, r->nbuckets = nb;
    }
    size_t i = name_hash(s->name, strlen(s->name)) % r->nbuckets;
    s->hnext = r->buckets[i], r->buckets[i] = s;
    r->nservices++;
    return 0;
}

static relay_service *service_for(struct mock_relay *r, const char *name, tch_error *err) {
    relay_service *s = find_service(r, name, strlen(name));
    if (s)
        return s;
    s = calloc(1, sizeof *s);
    if (!s || !(s->name = strdup(name)) || index_service(r, s) != 0) {
        if (s)
            free(s->name);
        free(s);
        tch_error_set(err, TCH_ENOMEM, "out of memory");
        return NULL;
    }
    s->m = r->m;
    s->next = r->services; /* after the index: a rehash walks this list */
    r->services = s;
    return s;
}

/* A service's channel is made when a call is first routed to it, so an ad
 * costs an entry, not a channel, until it is used. Its peers: the live
 * instances. */
static int ensure_channel(relay_service *s, tch_error *err) {
    if (s->ch)
        return 0;
    if (s->m->relay->closed)
        return tch_error_set(err, TCH_ECLOSED, "shutting down");
    if (!(s->ch = client_channel(s->m, &s->tracer)) ||
        tch_channel_add_hook(s->ch, watch_attempts, s, NULL) != 0) {
        free_channel(&s->ch, &s->tracer);
        return tch_error_set(err, TCH_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < s->n; i++)
        if (tch_channel_add_peer(s->ch, s->inst[i].host_port, err) != 0) {
            free_channel(&s->ch, &s->tracer);
            return err->code;
        }
    return 0;
}

static int add_instance(relay_service *s, const char *host_port, int from_ad, tch_error *err) {
    relay_instance *in = NULL;
    if (s->m->relay->closed)
        return tch_error_set(err, TCH_ECLOSED, "shutting down");
    for (size_t i = 0; i < s->n && !in; i++)
        if (!strcmp(s->inst[i].host_port, host_port))
            in = &s->inst[i];
    if (!in) {
        if (strlen(host_port) >= sizeof in->host_port)
            return tch_error_set(err, TCH_EINVAL, "host:port \"%s\" is too long", host_port);
        if (s->n == s->cap) {
            size_t cap = s->cap ? 2 * s->cap : 4;
            relay_instance *v = realloc(s->inst, cap * sizeof *v);
            if (!v)
                return tch_error_set(err, TCH_ENOMEM, "out of memory");
            s->inst = v, s->cap = cap;
        }
        in = &s->inst[s->n++];
        memset(in, 0, sizeof *in);
        snprintf(in->host_port, sizeof in->host_port, "%s", host_port);
    }
    in->from_ad |= from_ad;
    in->dead = 0;
    if (in->from_ad)
        in->expires_ms = mock_now_ms() + MOCK_AD_TTL_MS;
    return s->ch ? tch_channel_add_peer(s->ch, host_port, err) : 0;
}

static void drop_instance(relay_service *s, size_t i) {
    if (s->ch)
        tch_channel_remove_peer(s->ch, s->inst[i].host_port);
    s->inst[i] = s->inst[--s->n];
}

/* Takes out the dead and lapsed instances; returns how many are left. */
static size_t live_instances(relay_service *s) {
    uint64_t now = mock_now_ms();
    for (size_t i = 0; i < s->n;) {
        relay_instance *in = &s->inst[i];
        if (in->from_ad && (in->dead || in->expires_ms <= now)) {
            if (!in->dead) {
                mock_log("relay: %s instance %s lapsed: no ad for %u s", s->name, in->host_port,
                         MOCK_AD_TTL_MS / 1000);
                show_state(s->m, s->name, in->host_port, "lapsed: no ad for 5 minutes");
            }
            drop_instance(s, i);
        } else {
            i++;
        }
    }
    return s->n;
}

void mock_relay_advertised(mock *m, const char *service, const char *host_port, int add) {
    struct mock_relay *r = m->relay;
    /* a caller that does not listen cannot be called back */
    if (!r || m->shutting_down || !host_port || !*host_port || !strcmp(host_port, "0.0.0.0:0"))
        return;
    tch_error err = {0};
    if (add) {
        relay_service *s = service_for(r, service, &err);
        if (!s || add_instance(s, host_port, 1, &err) != 0)
            mock_log("relay: cannot add %s instance %s: %s", service, host_port, err.msg);
        else
            show_state(m, service, host_port, "live");
        return;
    }
    relay_service *s = find_service(r, service, strlen(service));
    for (size_t i = 0; s && i < s->n; i++)
        if (!strcmp(s->inst[i].host_port, host_port) && s->inst[i].from_ad) {
            drop_instance(s, i);
            return;
        }
}

/* ---- routing ------------------------------------------------------------------------- */

/* What a router routes by: the routing delegate (rd) when the call names
 * one, else its service. The call keeps both: rd's service forwards it. */
static tch_slice route_name(const tch_cassette_call *call) {
    for (size_t i = 0; i < call->n_transport_headers; i++) {
        const tch_kv *h = &call->transport_headers[i];
        if (tch_slice_eq_cstr(h->key, "rd") && h->value.len)
            return h->value;
    }
    return call->service;
}

static int route(mock *m, const tch_cassette_call *call, tch_channel **via) {
    struct mock_relay *r = m->relay;
    if (!r)
        return 0;
    tch_slice name = route_name(call);
    relay_service *s = find_service(r, (const char *)name.ptr, name.len);
    tch_error err = {0};
    if (s && live_instances(s) > 0) {
        if (ensure_channel(s, &err) == 0) {
            *via = s->ch;
            return 1;
        }
        mock_log("relay: cannot call %s's instances: %s", s->name, err.msg);
    }
    if (r->router) {
        *via = r->router;
        return 1;
    }
    return 0;
}

int mock_relay_route(mock *m, const tch_cassette_call *call, tch_channel **via,
                     const char **host_port) {
    if (!route(m, call, via))
        return 0;
    *host_port = NULL; /* the channel's peers: its instances, or the routers */
    return 1;
}

/* ---- this mock's own address -------------------------------------------------------------- */

static int port_of(const char *host_port, char *host, size_t n) {
    const char *colon = host_port ? strrchr(host_port, ':') : NULL;
    if (!colon || colon == host_port)
        return -1;
    size_t hl = (size_t)(colon - host_port);
    if (host_port[0] == '[' && hl >= 2 && host_port[hl - 1] == ']')
        host_port++, hl -= 2;
    if (hl >= n)
        return -1;
    memcpy(host, host_port, hl);
    host[hl] = '\0';
    char *end;
    long p = strtol(colon + 1, &end, 10);
    return *end || p <= 0 || p > 65535 ? -1 : (int)p;
}

/* host is one of this machine's addresses: loopback, unspecified, or an
 * interface's. */
static int host_is_local(const char *host) {
    unsigned char a[16];
    int v6 = 0;
    if (!strcmp(host, "localhost"))
        return 1;
    if (inet_pton(AF_INET, host, a) != 1) {
        if (inet_pton(AF_INET6, host, a) != 1)
            return 0;
        v6 = 1;
    }
    if (!v6 && (a[0] == 127 || !memcmp(a, "\0\0\0\0", 4)))
        return 1;
    if (v6 && (!memcmp(a, &in6addr_loopback, 16) || !memcmp(a, &in6addr_any, 16)))
        return 1;
    struct ifaddrs *ifs, *i;
    int local = 0;
    if (getifaddrs(&ifs) != 0)
        return 0;
    for (i = ifs; i && !local; i = i->ifa_next) {
        if (!i->ifa_addr)
            continue;
        if (!v6 && i->ifa_addr->sa_family == AF_INET)
            local = !memcmp(&((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr, a, 4);
        else if (v6 && i->ifa_addr->sa_family == AF_INET6)
            local = !memcmp(&((struct sockaddr_in6 *)(void *)i->ifa_addr)->sin6_addr, a, 16);
    }
    freeifaddrs(ifs);
    return local;
}

int mock_is_self(mock *m, const char *host_port) {
    char host[256], mine[256];
    const char *ours = m->ch ? tch_channel_host_port(m->ch) : NULL;
    int port = port_of(host_port, host, sizeof host);
    int our_port = port_of(ours, mine, sizeof mine);
    if (port < 0 || port != our_port)
        return 0;
    return !strcmp(host, mine) || host_is_local(host);
}

/* ---- forwarding a call's transport headers --------------------------------------------- */

static int retry_on_of(tch_slice re, tch_retry_on *out) {
    static const struct { const char *v; tch_retry_on on; } map[] = {
        {"n", TCH_RETRY_NEVER}, {"c", TCH_RETRY_CONNECTION}, {"t", TCH_RETRY_TIMEOUT},
        {"ct", TCH_RETRY_CONNECTION_TIMEOUT}, {"tc", TCH_RETRY_CONNECTION_TIMEOUT},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (tch_slice_eq_cstr(re, map[i].v)) {
            *out = map[i].on;
            return 1;
        }
    return 0;
}

static const char *copy_value(char *dst, size_t n, tch_slice v) {
    snprintf(dst, n, "%.*s", (int)(v.len < n ? v.len : n - 1), (const char *)v.ptr);
    return dst;
}

int mock_forward_headers(const tch_cassette_call *call, const char *scheme, tch_call_opts *o,
                         mock_forward *fw, tch_error *err) {
    size_t n = 0;
    int has_cn = 0, has_re = 0;
    o->arg_scheme = scheme;
    o->retry_on = TCH_RETRY_DEFAULT; /* "c", the protocol's default, when re is absent */
    for (size_t i = 0; i < call->n_transport_headers; i++) {
        tch_slice k = call->transport_headers[i].key, v = call->transport_headers[i].value;
        if (tch_slice_eq_cstr(k, MOCK_HOP_HEADER))
            return tch_error_set(err, TCH_EINVAL, "relay loop: the call to %.*s was already "
                                 "forwarded by a tchannel-mock (it carries %s); an instance or "
                                 "router given or advertised is this mock itself",
                                 (int)(call->service.len > 100 ? 100 : call->service.len),
                                 (const char *)call->service.ptr, MOCK_HOP_HEADER);
        if (tch_slice_eq_cstr(k, "as")) {
            o->arg_scheme = copy_value(fw->as, sizeof fw->as, v);
        } else if (tch_slice_eq_cstr(k, "sk")) {
            o->shard_key = copy_value(fw->sk, sizeof fw->sk, v);
        } else if (tch_slice_eq_cstr(k, "rd")) {
            o->routing_delegate = v.len ? copy_value(fw->rd, sizeof fw->rd, v) : NULL;
        } else if (tch_slice_eq_cstr(k, "re") && retry_on_of(v, &o->retry_on)) {
            continue;
        } else if (n < MOCK_FORWARD_MAX_HEADERS - 1) { /* past it, refused below */
            has_cn |= tch_slice_eq_cstr(k, "cn");
            has_re |= tch_slice_eq_cstr(k, "re"); /* one retry_on_of did not take */
            fw->hs[n++] = (tch_kv){k, v};
        } else {
            n++;
        }
    }
    /* on the wire: these, our mark, and what the library adds: as, re
     * (always written), cn when the caller gave none, sk and rd */
    size_t total = n + 1 + 1 + !has_re + !has_cn + (o->shard_key != NULL) +
                   (o->routing_delegate != NULL);
    if (total > MOCK_FORWARD_MAX_HEADERS)
        return tch_error_set(err, TCH_ETOOBIG, "too many transport headers to relay: the call "
                             "has %zu, and relayed it would carry %zu (the relay adds its %s "
                             "mark%s), more than the %d a TChannel peer accepts (the Node peer "
                             "refuses more): send at most %zu",
                             call->n_transport_headers, total, MOCK_HOP_HEADER,
                             has_cn ? "" : ", and a cn header as the call has none",
                             MOCK_FORWARD_MAX_HEADERS,
                             call->n_transport_headers - (total - MOCK_FORWARD_MAX_HEADERS));
    fw->hs[n++] = (tch_kv){tch_slice_cstr(MOCK_HOP_HEADER), tch_slice_cstr("1")};
    o->headers = fw->hs;
    o->nheaders = n;
    return 0;
}

/* ---- relaying without recording (--relay in mode none) -------------------------------- */

static void call_unlink(struct mock_relay *r, relay_call *c) {
    if (c->prev)
        c->prev->next = c->next;
    else
        r->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

static void on_answer(const tch_response *res, void *ud) {
    relay_call *c = ud;
    mock *m = c->m;
    if (res->status == 0)
        tch_inbound_respond_with(c->in, res->code, res->arg2, res->arg3, res->headers,
                                 res->nheaders);
    else
        tch_inbound_respond_error(c->in, res->error_code ? res->error_code : TCH_PCODE_UNEXPECTED,
                                  res->message ? res->message : "relay failed");
    call_unlink(m->relay, c);
}

/* Our messages to callers say who speaks; the log says it already. */
static void log_msg(const char *msg) {
    static const char self[] = "tchannel-mock: ";
    mock_log("%s", strncmp(msg, self, sizeof self - 1) ? msg : msg + sizeof self - 1);
}

static void journal(mock *m, tch_inbound *in, const tch_cassette_call *call, mock_outcome o,
                    const char *msg) {
    mock_journal_add(&m->journal, call->service, call->endpoint, tch_inbound_peer(in),
                     call->scheme, o, NULL, -1, msg, NULL);
}

/* The caller's TTL less our time, which is under a millisecond: 1 ms. */
static uint32_t ttl_left(tch_inbound *in) {
    uint32_t ttl = tch_inbound_ttl_ms(in);
    return ttl > 1 ? ttl - 1 : 0;
}

static void relay_now(mock *m, tch_inbound *in, const tch_cassette_call *call, tch_channel *via) {
    char service[256], msg[TCH_ERROR_MSG_MAX + 320];
    snprintf(service, sizeof service, "%.*s", (int)call->service.len,
             (const char *)call->service.ptr);
    uint32_t ttl = ttl_left(in);
    if (ttl == 0) {
        snprintf(msg, sizeof msg, "tchannel-mock: the call to %s had no time left to relay",
                 service);
        journal(m, in, call, MOCK_FAILED, msg);
        tch_inbound_respond_error(in, TCH_PCODE_TIMEOUT, msg);
        return;
    }
    tch_trace parent = tch_inbound_trace(in);
    tch_call_opts o = {0};
    o.service = service;
    o.endpoint = call->endpoint;
    o.arg2 = call->headers;
    o.arg3 = call->body;
    o.timeout_ms = ttl;
    o.trace = &parent;
    o.borrow_args = 1; /* the inbound's args live until we answer it */
    mock_forward fw; /* the library copies the headers at the call */
    tch_error err = {0};
    relay_call *c = NULL;
    int refused = mock_forward_headers(call, mock_scheme_name(call->scheme), &o, &fw, &err);
    if (refused) {
        /* answered below: BadRequest for headers that cannot fit (the
         * caller must change the call), Declined for a loop */
    } else if (!(c = calloc(1, sizeof *c))) {
        tch_error_set(&err, TCH_ENOMEM, "tchannel-mock: out of memory");
    } else {
        c->m = m, c->in = in;
        c->next = m->relay->calls;
        if (c->next)
            c->next->prev = c;
        m->relay->calls = c;
        if (tch_channel_call(via, &o, on_answer, c, &err) == 0) {
            if (m->cfg->verbose)
                mock_log("%s::%.*s (%s) relayed%s", service, (int)call->endpoint.len,
                         (const char *)call->endpoint.ptr, mock_scheme_name(call->scheme),
                         via == m->relay->router ? " to the router" : "");
            journal(m, in, call, MOCK_HYPERBAHN, "relayed");
            return;
        }
        call_unlink(m->relay, c);
    }
    snprintf(msg, sizeof msg, "tchannel-mock: cannot relay to %s: %s", service, err.msg);
    journal(m, in, call, MOCK_FAILED, msg);
    tch_inbound_respond_error(in, refused == TCH_ETOOBIG ? TCH_PCODE_BAD_REQUEST
                                                         : TCH_PCODE_DECLINED, msg);
}

/* ---- recording by service --------------------------------------------------------------- */

/* A service name that is safe as a file name in the record folder. */
static int file_name_ok(tch_slice s) {
    if (s.len == 0 || s.len > 200 || s.ptr[0] == '.')
        return 0;
    for (size_t i = 0; i < s.len; i++) {
        char c = (char)s.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

/* The cassette that records call: DIR/<service>.yaml with --record-to DIR/
 * (loaded now if it is new and create is set), else the record target. NULL
 * and *why set when there is none. */
static mock_cassette *record_target(mock *m, const tch_cassette_call *call, int create,
                                    char *why, size_t n) {
    const char *dir = m->cfg->record_dir;
    if (!dir)
        return mock_store_target(&m->store);
    if (!file_name_ok(call->service)) {
        snprintf(why, n, "tchannel-mock: cannot record service \"%.*s\" into %s: its name is "
                 "not a file name (letters, digits, '.', '-', '_'; not starting with '.')",
                 (int)(call->service.len > 200 ? 200 : call->service.len),
                 (const char *)call->service.ptr, dir);
        return NULL;
    }
    size_t dl = strlen(dir);
    char path[4096];
    snprintf(path, sizeof path, "%s%s%.*s.yaml", dir, dl && dir[dl - 1] == '/' ? "" : "/",
             (int)call->service.len, (const char *)call->service.ptr);
    mock_cassette *mc = mock_store_find(&m->store, path);
    if (mc || !create)
        return mc;
    tch_error err = {0};
    int rc = mock_store_add(m, path, &mc, &err);
    if (rc && rc != TCH_ESTATE) {
        /* the library's message names the file */
        snprintf(why, n, "tchannel-mock: cannot record service %.*s: %s",
                 (int)call->service.len, (const char *)call->service.ptr, err.msg);
        return NULL;
    }
    mock_log("recording service %.*s into %s", (int)call->service.len,
             (const char *)call->service.ptr, path);
    return mc;
}

/* ---- the entry point -------------------------------------------------------------------- */

static void decline(mock *m, tch_inbound *in, const tch_cassette_call *call) {
    char msg[768], via_rd[300] = "";
    tch_slice name = route_name(call);
    int n = (int)(name.len > 100 ? 100 : name.len);
    if (name.ptr != call->service.ptr)
        snprintf(via_rd, sizeof via_rd, " (the routing delegate of a call to %.*s)",
                 (int)(call->service.len > 100 ? 100 : call->service.len),
                 (const char *)call->service.ptr);
    snprintf(msg, sizeof msg, "tchannel-mock: no instance of service \"%.*s\"%s to relay to: "
             "none advertised, no --upstream %.*s=HOST:PORT, no --upstream-router", n,
             (const char *)name.ptr, via_rd, n, (const char *)name.ptr);
    m->misses++;
    log_msg(msg);
    journal(m, in, call, MOCK_FAILED, msg);
    tch_inbound_respond_error(in, TCH_PCODE_DECLINED, msg);
}

int mock_relay_take(mock *m, tch_inbound *in, const tch_cassette_call *call) {
    if (!m->relay)
        return 0;
    tch_channel *via = NULL;
    int routed = route(m, call, &via);
    if (m->mode != TCH_CASSETTE_NONE) {
        char why[TCH_ERROR_MSG_MAX + 128] = "";
        /* with nowhere to send the call, no cassette is made for it */
        mock_cassette *t = record_target(m, call, routed || m->upstream, why, sizeof why);
        if (!t && *why) {
            log_msg(why);
            journal(m, in, call, MOCK_FAILED, why);
            tch_inbound_respond_error(in, TCH_PCODE_BAD_REQUEST, why);
            return 1;
        }
        tch_cassette_decision d;
        tch_error err = {0};
        int records = t && tch_cassette_lookup(t->c, call, &d, &err) == 0 &&
                      d.action == TCH_CASSETTE_ACT_RECORD;
        if (t)
            tch_cassette_decision_clear(&d);
        if ((records || !t) && !routed && !m->upstream) {
            decline(m, in, call);
            return 1;
        }
        if (records) {
            mock_record_call(m, in, t, call);
            return 1;
        }
    }
    /* replay mode proxies a miss only when asked; a recording mode relays
     * only what it records */
    if (m->mode != TCH_CASSETTE_NONE || !m->cfg->relay || !routed)
        return 0; /* the cassettes' miss says more than "no instance" */
    relay_now(m, in, call, via);
    return 1;
}

/* ---- start and stop ----------------------------------------------------------------------- */

/* SERVICE=HOST:PORT, checked by main.c */
static int add_given(struct mock_relay *r, const char *spec, tch_error *err) {
    const char *eq = strchr(spec, '=');
    if (mock_is_self(r->m, eq + 1))
        return tch_error_set(err, TCH_EINVAL, "--upstream %s: that is this mock's own listening "
                             "address; calls relayed there would loop", spec);
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)(eq - spec), spec);
    relay_service *s = service_for(r, name, err);
    if (!s || add_instance(s, eq + 1, 0, err) != 0)
        return tch_error_wrap(err, "--upstream %s", spec);
    return 0;
}

int mock_relay_init(mock *m, tch_error *err) {
    mock_config *c = m->cfg;
    struct mock_relay *r = calloc(1, sizeof *r);
    if (!r)
        return tch_error_set(err, TCH_ENOMEM, "out of memory");
    r->m = m;
    m->relay = r;
    for (size_t i = 0; i < c->service_upstreams.n; i++)
        if (add_given(r, c->service_upstreams.v[i], err) != 0)
            return err->code;
    if (c->upstream_routers.n && !(r->router = client_channel(m, &r->router_tracer)))
        return tch_error_set(err, TCH_ENOMEM, "cannot create the router channel");
    for (size_t i = 0; i < c->upstream_routers.n; i++)
        if (mock_is_self(m, c->upstream_routers.v[i]))
            return tch_error_set(err, TCH_EINVAL, "--upstream-router %s: that is this mock's own "
                                 "listening address; calls relayed there would loop",
                                 c->upstream_routers.v[i]);
        else if (tch_channel_add_peer(r->router, c->upstream_routers.v[i], err) != 0)
            return tch_error_wrap(err, "--upstream-router %s", c->upstream_routers.v[i]);
    if (c->record_dir && mkdir(c->record_dir, 0777) != 0 && errno != EEXIST)
        return tch_error_set(err, TCH_EIO, "--record-to %s: cannot create the folder: %s",
                             c->record_dir, strerror(errno));
    return 0;
}

/* Freeing a channel fails its calls in flight (TCH_ECLOSED): relayed callers
 * get an error frame, recordings are aborted by record.c's callback. */
void mock_relay_shutdown(mock *m) {
    struct mock_relay *r = m->relay;
    if (!r)
        return;
    r->closed = 1;
    for (relay_service *s = r->services; s; s = s->next)
        free_channel(&s->ch, &s->tracer);
    free_channel(&r->router, &r->router_tracer);
}

void mock_relay_free(mock *m) {
    struct mock_relay *r = m->relay;
    if (!r)
        return;
    mock_relay_shutdown(m);
    while (r->services) {
        relay_service *s = r->services;
        r->services = s->next;
        free(s->inst);
        free(s->name);
        free(s);
    }
    free(r->buckets);
    while (r->calls) /* cannot happen once the channels are freed; no leak if it does */
        call_unlink(r, r->calls);
    free(r);
    m->relay = NULL;
}
