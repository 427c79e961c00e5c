/* Hyperbahn, both sides.
 *  - As a router: answers `hyperbahn::ad` (json scheme; arg3
 *    {"services":[{"serviceName":..,"cost":0}]}) with {"connectionCount": 1}
 *    as Node's Hyperbahn does (the Node client only checks that the call
 *    succeeded, hyperbahn-client.js advertiseInternalCb), and `unad`; the
 *    advertised services show up in GET /hyperbahn.
 *  - As a service: --advertise-to advertises the cassettes' service names to
 *    real routers through lib's tch_hyperbahn_advertise. */
#include "mock.h"

#include <tchannel/hyperbahn.h>

#include <event2/event.h>

#include <stdlib.h>
#include <string.h>

/* Hyperbahn ejects an instance not re-advertised for 5 minutes; so do we
 * (relay.c takes it out of routing at the same age), swept every 10 s. */
#define AD_TTL_MS 300000u
#define AD_SWEEP_MS 10000u

/* An ad that would pass --max-advertised-services, --max-advertised-instances
 * or --max-ads-per-peer: why set, -1. Counts what the ad adds, not what it
 * refreshes. */
static int over_caps(mock *m, const json_t *services, const char *peer, char *why, size_t n) {
    size_t new_services = 0, new_instances = 0, mine = 0, instances = 0;
    const char *name;
    json_t *hosts, *s;
    json_object_foreach(m->advertised, name, hosts) {
        instances += json_object_size(hosts);
        mine += json_object_get(hosts, peer) != NULL;
    }
    size_t i;
    json_array_foreach(services, i, s) {
        const char *sn = json_string_value(json_object_get(s, "serviceName"));
        json_t *h = json_object_get(m->advertised, sn);
        int dup = 0; /* the same name twice in one ad counts once */
        for (size_t k = 0; k < i && !dup; k++)
            dup = !strcmp(sn, json_string_value(json_object_get(json_array_get(services, k),
                                                                "serviceName")));
        if (dup || (h && json_object_get(h, peer)))
            continue;
        new_services += !h;
        new_instances++;
    }
    const mock_config *c = m->cfg;
    if (json_object_size(m->advertised) + new_services > c->max_ad_services)
        snprintf(why, n, "hyperbahn: ad refused: it would make %zu services advertised, over "
                 "--max-advertised-services %zu", json_object_size(m->advertised) + new_services,
                 c->max_ad_services);
    else if (instances + new_instances > c->max_ad_instances)
        snprintf(why, n, "hyperbahn: ad refused: it would make %zu instances advertised, over "
                 "--max-advertised-instances %zu", instances + new_instances, c->max_ad_instances);
    else if (mine + new_instances > c->max_ads_per_peer)
        snprintf(why, n, "hyperbahn: ad refused: %s would advertise %zu services, over "
                 "--max-ads-per-peer %zu", peer, mine + new_instances, c->max_ads_per_peer);
    else
        return 0;
    return -1;
}

/* Validates the advertise body and applies fn to each service. */
static int each_service(const json_t *body, int add, mock *m, const char *peer,
                        char *why, size_t n) {
    json_t *services = json_object_get(body, "services");
    if (!json_is_array(services)) {
        snprintf(why, n, "hyperbahn: body must be {\"services\": [...]}");
        return -1;
    }
    size_t i;
    json_t *s;
    json_array_foreach(services, i, s) {
        const char *name = json_string_value(json_object_get(s, "serviceName"));
        if (!name || !*name) {
            snprintf(why, n, "hyperbahn: services[%zu].serviceName must be a non-empty string", i);
            return -1;
        }
    }
    /* relaying to ourselves would go round until the TTL ran out */
    if (add && mock_is_self(m, peer)) {
        snprintf(why, n, "hyperbahn: refused the ad from %s: that is this mock's own listening "
                 "address, and calls relayed there would loop", peer);
        return -1;
    }
    if (add && over_caps(m, services, peer, why, n))
        return -1;
    json_array_foreach(services, i, s) {
        const char *name = json_string_value(json_object_get(s, "serviceName"));
        json_t *hosts = json_object_get(m->advertised, name);
        if (!add) {
            mock_relay_advertised(m, name, peer, add);
            if (hosts)
                json_object_del(hosts, peer);
            if (hosts && json_object_size(hosts) == 0)
                json_object_del(m->advertised, name);
            continue;
        }
        if (!hosts) {
            hosts = json_object();
            json_object_set_new(m->advertised, name, hosts);
        }
        json_t *h = json_object_get(hosts, peer);
        json_int_t count = h ? json_integer_value(json_object_get(h, "count")) : 0;
        json_t *cost = json_object_get(s, "cost");
        json_object_set_new(hosts, peer,
                            json_pack("{s:O?, s:I, s:I}", "cost", cost, "count", count + 1,
                                      "lastMs", (json_int_t)mock_now_ms()));
        mock_relay_advertised(m, name, peer, add); /* after: it marks the entry "relay" */
    }
    return 0;
}

static void on_advertise(tch_inbound *in, int add, mock *m) {
    json_error_t jerr;
    tch_slice arg3 = tch_inbound_arg3(in);
    json_t *body = json_loadb((const char *)arg3.ptr, arg3.len, 0, &jerr);
    char why[256] = "";
    const char *peer = tch_inbound_peer(in);
    int rc = body ? each_service(body, add, m, *peer ? peer : "unknown", why, sizeof why) : -1;
    if (!body)
        snprintf(why, sizeof why, "hyperbahn: body is not JSON: %s", jerr.text);
    json_decref(body);
    mock_journal_add(&m->journal, tch_inbound_service(in), tch_inbound_endpoint(in), peer,
                     mock_scheme_of(in), rc ? MOCK_FAILED : MOCK_HYPERBAHN, NULL, -1,
                     rc ? why : NULL, NULL);
    if (rc) {
        mock_log("%s", why);
        tch_inbound_respond_error(in, TCH_PCODE_BAD_REQUEST, why);
        return;
    }
    if (m->cfg->verbose)
        mock_log("hyperbahn %s from %s", add ? "advertise" : "unadvertise", peer);
    tch_inbound_respond(in, 0, tch_slice_cstr("{}"), tch_slice_cstr("{\"connectionCount\":1}"));
}

static void on_ad(tch_inbound *in, void *ud) { on_advertise(in, 1, ud); }
static void on_unad(tch_inbound *in, void *ud) { on_advertise(in, 0, ud); }

static void on_advertised(int status, const char *message, void *ud) {
    mock *m = ud;
    char buf[600];
    snprintf(buf, sizeof buf, "%s%s%s", status == 0 ? "advertised" : "advertise failed",
             message && *message ? ": " : "", message ? message : "");
    free(m->hb_status);
    m->hb_status = strdup(buf);
    mock_log("hyperbahn: %s", buf);
}

/* The names to advertise: --advertise-service, else every service the
 * cassettes hold. */
static int services_to_advertise(mock *m, mock_strv *out) {
    if (m->cfg->advertise_services.n) {
        for (size_t i = 0; i < m->cfg->advertise_services.n; i++)
            if (mock_strv_push(out, m->cfg->advertise_services.v[i]))
                return TCH_ENOMEM;
        return 0;
    }
    for (size_t i = 0; i < m->store.n; i++) {
        tch_cassette *c = m->store.items[i]->c;
        for (size_t k = 0; k < tch_cassette_count(c); k++) {
            const tch_cassette_interaction *it = tch_cassette_get(c, k);
            char *name = it ? tch_slice_strdup(tch_buf_slice(&it->request.service)) : NULL;
            int seen = !name;
            for (size_t j = 0; name && j < out->n && !seen; j++)
                seen = strcmp(out->v[j], name) == 0;
            if (!seen && mock_strv_push(out, name)) {
                free(name);
                return TCH_ENOMEM;
            }
            free(name);
        }
    }
    return 0;
}

/* Ads not refreshed within AD_TTL_MS leave GET /hyperbahn and the relay, so
 * a flood of ads does not stay. */
static void sweep_ads(evutil_socket_t fd, short what, void *ud) {
    (void)fd, (void)what;
    mock *m = ud;
    uint64_t now = mock_now_ms();
    const char *name, *peer;
    json_t *hosts, *h;
    void *t1, *t2;
    json_object_foreach_safe(m->advertised, t1, name, hosts) {
        json_object_foreach_safe(hosts, t2, peer, h) {
            json_int_t last = json_integer_value(json_object_get(h, "lastMs"));
            if (now - (uint64_t)last >= AD_TTL_MS) {
                mock_relay_advertised(m, name, peer, 0);
                json_object_del(hosts, peer);
            }
        }
        if (json_object_size(hosts) == 0)
            json_object_del(m->advertised, name);
    }
}

int mock_hyperbahn_init(mock *m, tch_error *err) {
    m->advertised = json_object();
    if (!m->advertised)
        return tch_error_set(err, TCH_ENOMEM, "out of memory");
    struct timeval every = {AD_SWEEP_MS / 1000, 0};
    if (!(m->ad_sweep = event_new(m->base, -1, EV_PERSIST, sweep_ads, m)) ||
        event_add(m->ad_sweep, &every) != 0)
        return tch_error_set(err, TCH_ENOMEM, "cannot start the ad sweep timer");
    int rc = tch_channel_register(m->ch, "hyperbahn", "ad", on_ad, m);
    if (!rc)
        rc = tch_channel_register(m->ch, "hyperbahn", "unad", on_unad, m);
    if (rc)
        return tch_error_set(err, rc, "cannot register hyperbahn::ad");
    if (m->cfg->advertise_to.n == 0)
        return 0;
    mock_strv services = {0};
    if ((rc = services_to_advertise(m, &services)) != 0)
        return tch_error_set(err, rc, "out of memory");
    tch_hyperbahn_options o = {0};
    o.routers = (const char *const *)m->cfg->advertise_to.v;
    o.nrouters = m->cfg->advertise_to.n;
    o.services = (const char *const *)services.v;
    o.nservices = services.n;
    rc = tch_hyperbahn_advertise(m->ch, &o, on_advertised, m, &m->hb, err);
    m->hb_status = strdup("advertising");
    mock_strv_free(&services);
    return rc;
}

void mock_hyperbahn_free(mock *m) {
    if (m->ad_sweep)
        event_free(m->ad_sweep);
    m->ad_sweep = NULL;
    tch_hyperbahn_free(m->hb);
    m->hb = NULL;
    free(m->hb_status);
    m->hb_status = NULL;
    json_decref(m->advertised);
    m->advertised = NULL;
}
