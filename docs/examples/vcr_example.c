/* The VCR end to end, as a test would use it: record a call against a live
 * server into a cassette, stop the server, then replay the call from the
 * cassette alone. docs/vcr.md walks through it.
 *
 * Usage: vcr_example [FOLDER]
 * The cassette is FOLDER/greeter.yaml (FOLDER must exist and hold no
 * greeter.yaml yet) and is kept, so you can read it; without FOLDER it goes
 * to a new temporary folder, removed at the end. Exits 0 when the replayed
 * answer is the recorded one, the server is really gone, and a request the
 * cassette does not hold is refused. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* mkdtemp, strdup */
#endif
#include <tchannel/json.h>
#include <tchannel/vcr.h>

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the service: json greet {"name": N} -> {"greeting": "hello, N"} ---- */

static void greet(tch_inbound *in, const json_t *headers, const json_t *body, void *ud) {
    (void)headers, (void)ud;
    const char *name = json_string_value(json_object_get(body, "name"));
    char text[128];
    snprintf(text, sizeof text, "hello, %s", name ? name : "stranger");
    json_t *answer = json_pack("{s:s}", "greeting", text);
    tch_json_respond(in, 0, NULL, answer);
    json_decref(answer);
}

/* ---- one call, waited for ---------------------------------------------- */

typedef struct outcome {
    int done;
    int status;    /* 0: an answer came back (see tch_response) */
    char *body;    /* the answer as JSON text, or NULL */
    char *message; /* what went wrong, when status is not 0 */
} outcome;

static void on_answer(const tch_json_response *res, void *ud) {
    outcome *o = ud;
    o->done = 1;
    o->status = res->status;
    o->body = res->body ? tch_json_dumps(res->body, JSON_COMPACT) : NULL;
    o->message = strdup(res->message ? res->message : "");
}

static void outcome_free(outcome *o) {
    free(o->body);
    free(o->message);
}

/* Calls greet with {"name": name} at host_port and runs the loop until the
 * answer, a failure or the call's timeout: the callback always runs. */
static int call_greet(struct event_base *base, tch_channel *ch, const char *host_port,
                      const char *name, outcome *o) {
    *o = (outcome){0};
    tch_call_opts opts = {.service = "greeter", .endpoint = tch_slice_cstr("greet"),
                          .host_port = host_port, .timeout_ms = 2000,
                          .retry_limit = TCH_RETRY_LIMIT_NONE};
    json_t *body = json_pack("{s:s}", "name", name);
    tch_error err;
    int rc = tch_json_call(ch, &opts, NULL, body, on_answer, o, &err);
    json_decref(body);
    if (rc) {
        fprintf(stderr, "call: %s\n", err.msg);
        return rc;
    }
    while (!o->done)
        event_base_loop(base, EVLOOP_ONCE);
    return 0;
}

/* ---- the three steps ------------------------------------------------------ */

/* Step 1: no cassette yet, so mode ONCE (the default) records every call. */
static int record(struct event_base *base, tch_channel *client, const char *cassette,
                  const char *server, char **recorded) {
    tch_vcr *vcr;
    tch_error err;
    if (tch_vcr_use_cassette(client, cassette, NULL, &vcr, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    outcome o;
    int rc = call_greet(base, client, server, "Ada", &o);
    if (!rc && o.status != 0) {
        fprintf(stderr, "record: the call failed: %s\n", o.message);
        rc = 1;
    }
    if (!rc) {
        printf("recorded: greet {\"name\":\"Ada\"} -> %s\n", o.body);
        *recorded = o.body;
        o.body = NULL;
    }
    outcome_free(&o);
    if (tch_vcr_eject(vcr, &err)) { /* writes the cassette */
        fprintf(stderr, "%s\n", err.msg);
        tch_vcr_discard(vcr);
        return 1;
    }
    return rc;
}

/* Step 2: with the server stopped, a call that is not replayed fails. */
static int server_is_gone(struct event_base *base, tch_channel *client, const char *server) {
    outcome o;
    int rc = call_greet(base, client, server, "Ada", &o);
    int gone = !rc && o.status != 0;
    if (gone)
        printf("server stopped: without the VCR the call fails: %s\n", o.message);
    else
        fprintf(stderr, "the server at %s still answers\n", server);
    outcome_free(&o);
    return gone ? 0 : 1;
}

/* Step 3: mode NONE replays and never records; a request the cassette does
 * not hold fails with TCH_ENOTFOUND, saying which recorded one was nearest. */
static int replay(struct event_base *base, tch_channel *client, const char *cassette,
                  const char *server, const char *recorded) {
    tch_vcr_options opts;
    tch_vcr_options_init(&opts);
    opts.cassette.mode = TCH_CASSETTE_NONE;
    tch_vcr *vcr;
    tch_error err;
    if (tch_vcr_use_cassette(client, cassette, &opts, &vcr, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    outcome same = {0}, other = {0};
    int rc = call_greet(base, client, server, "Ada", &same);
    if (!rc)
        rc = call_greet(base, client, server, "Bob", &other);
    if (!rc) {
        printf("replayed: greet {\"name\":\"Ada\"} -> %s\n", same.body ? same.body : same.message);
        printf("not in the cassette: greet {\"name\":\"Bob\"} -> %s\n", other.message);
        if (same.status != 0 || !same.body || strcmp(same.body, recorded) != 0 ||
            other.status != TCH_ENOTFOUND) {
            fprintf(stderr, "replay did not give back what was recorded\n");
            rc = 1;
        }
    }
    outcome_free(&same);
    outcome_free(&other);
    if (tch_vcr_eject(vcr, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        tch_vcr_discard(vcr);
        return 1;
    }
    return rc;
}

/* Starts the greeter service on an ephemeral port of 127.0.0.1. */
static tch_channel *start_server(struct event_base *base, char *host_port, size_t size) {
    tch_error err;
    tch_channel *server;
    tch_channel_new(base, "greeter", NULL, &server, NULL);
    if (!server)
        return NULL;
    if (tch_json_register(server, NULL, "greet", greet, NULL)) {
        fprintf(stderr, "server: cannot register greet\n");
        tch_channel_free(server);
        return NULL;
    }
    if (tch_channel_listen(server, NULL, &err)) {
        fprintf(stderr, "server: %s\n", err.msg);
        tch_channel_free(server);
        return NULL;
    }
    snprintf(host_port, size, "%s", tch_channel_host_port(server));
    return server;
}

int main(int argc, char **argv) {
    if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
        fprintf(stderr, "usage: %s [FOLDER]\n", argv[0]);
        return 2;
    }
    char tmp[1024];
    const char *tmpdir = getenv("TMPDIR");
    snprintf(tmp, sizeof tmp, "%s/vcr_example.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    const char *folder = argc == 2 ? argv[1] : mkdtemp(tmp);
    if (!folder) {
        perror("mkdtemp");
        return 1;
    }
    char cassette[4096];
    snprintf(cassette, sizeof cassette, "%s/greeter.yaml", folder);

    struct event_base *base = event_base_new();
    char server_hp[64];
    tch_channel *server = start_server(base, server_hp, sizeof server_hp);
    tch_channel *client;
    tch_channel_new(base, "vcr-example", NULL, &client, NULL);
    char *recorded = NULL;
    int rc = server && client ? 0 : 1;
    if (!rc)
        rc = record(base, client, cassette, server_hp, &recorded);
    tch_channel_free(server); /* the service is gone from here on */
    if (!rc)
        rc = server_is_gone(base, client, server_hp);
    if (!rc)
        rc = replay(base, client, cassette, server_hp, recorded);
    if (!rc)
        printf("cassette: %s\n", argc == 2 ? cassette : "(in a temporary folder, removed)");

    free(recorded);
    tch_channel_free(client);
    event_base_free(base);
    if (argc < 2) {
        unlink(cassette);
        rmdir(folder);
    }
    return rc;
}
