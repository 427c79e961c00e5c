/* Run-time stubs: an interaction read from a JSON object with a cassette
 * interaction's fields, added to, replaced in and removed from a cassette,
 * and written back as JSON. */
#include "cassette_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DELAY_MS 3600000

static int check_keys(const json_t *obj, const char *where, const char *const *allowed,
                      tch_error *err) {
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        (void)v;
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = strcmp(k, allowed[i]) == 0;
        if (!ok)
            return tch_error_set(err, TCH_EINVAL, "%s: unknown field '%.64s'", where, k);
    }
    return 0;
}

/* A string's bytes; any other JSON value (a body written as an object) as
 * its compact text; null as nothing. */
static int bytes_of(const json_t *v, tch_buf *out, const char *where, tch_error *err) {
    tch_buf_reset(out);
    if (!v || json_is_null(v))
        return tch__cas_buf_set(out, TCH_SLICE_NULL);
    if (json_is_string(v))
        return tch__cas_buf_set(out, tch_slice_of(json_string_value(v), json_string_length(v)))
                   ? tch_error_set(err, TCH_ENOMEM, "%s: out of memory", where)
                   : 0;
    char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    int rc = !t || tch__cas_buf_set(out, tch_slice_cstr(t));
    free(t);
    return rc ? tch_error_set(err, TCH_ENOMEM, "%s: out of memory", where) : 0;
}

static int scheme_of(const json_t *v, tch_cassette_scheme *out) {
    static const char *const names[] = {"raw", "json", "thrift"};
    if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 2) {
        *out = (tch_cassette_scheme)json_integer_value(v);
        return 0;
    }
    for (int i = 0; i < 3 && json_is_string(v); i++)
        if (strcmp(json_string_value(v), names[i]) == 0) {
            *out = (tch_cassette_scheme)i;
            return 0;
        }
    return TCH_EINVAL;
}

/* The request's plain fields as bytes (for messages and the JSON form). */
static int request_of(const json_t *rq, tch_cassette_request *r, tch_error *err) {
    const json_t *v;
    int rc = 0;
    if (json_is_string(v = json_object_get(rq, "serviceName")))
        rc = bytes_of(v, &r->service, "request.serviceName", err);
    if (!rc && json_is_string(v = json_object_get(rq, "endpoint")))
        rc = bytes_of(v, &r->endpoint, "request.endpoint", err);
    if (!rc && (v = json_object_get(rq, "argScheme")) && !json_is_object(v))
        scheme_of(v, &r->scheme); /* the rules already refused a bad one */
    if (!rc && json_is_string(v = json_object_get(rq, "headers")))
        rc = bytes_of(v, &r->headers, "request.headers", err);
    if (!rc && json_is_string(v = json_object_get(rq, "body")))
        rc = bytes_of(v, &r->body, "request.body", err);
    return rc;
}

int tch__cas_stub_delay_from_json(const json_t *j, tch_stub_delay *out, tch_error *err) {
    const char *type = json_string_value(json_object_get(j, "type"));
    memset(out, 0, sizeof *out);
    if (!json_is_object(j) || !type)
        return tch_error_set(err, TCH_EINVAL,
                             "delayDistribution: expected {type: uniform, min: MS, max: MS} or "
                             "{type: lognormal, median: MS, sigma: S}");
    if (strcmp(type, "uniform") == 0) {
        const json_t *lo = json_object_get(j, "min"), *hi = json_object_get(j, "max");
        if (!json_is_integer(lo) || !json_is_integer(hi) || json_integer_value(lo) < 0 ||
            json_integer_value(hi) < json_integer_value(lo) ||
            json_integer_value(hi) > MAX_DELAY_MS)
            return tch_error_set(err, TCH_EINVAL,
                                 "delayDistribution: uniform needs integers 0 <= min <= max <= "
                                 "3600000 (milliseconds)");
        out->kind = TCH_STUB_DELAY_UNIFORM;
        out->min_ms = (uint32_t)json_integer_value(lo);
        out->max_ms = (uint32_t)json_integer_value(hi);
        return 0;
    }
    if (strcmp(type, "lognormal") == 0) {
        const json_t *md = json_object_get(j, "median"), *sg = json_object_get(j, "sigma");
        if (!json_is_number(md) || !json_is_number(sg) || json_number_value(md) < 0 ||
            json_number_value(md) > MAX_DELAY_MS || json_number_value(sg) < 0 ||
            json_number_value(sg) > 10)
            return tch_error_set(err, TCH_EINVAL,
                                 "delayDistribution: lognormal needs median (0..3600000 ms) and "
                                 "sigma (0..10)");
        out->kind = TCH_STUB_DELAY_LOGNORMAL;
        out->median_ms = json_number_value(md);
        out->sigma = json_number_value(sg);
        return 0;
    }
    return tch_error_set(err, TCH_EINVAL,
                         "delayDistribution.type: '%.40s' (expected uniform or lognormal)", type);
}

static int opt_str(const tch_allocator *a, const json_t *obj, const char *key, char **out, tch_error *err) {
    const json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    if (!json_is_string(v) || !json_string_length(v))
        return tch_error_set(err, TCH_EINVAL, "%s: expected a non-empty string", key);
    return (*out = tch__strdup(a, json_string_value(v))) ? 0 : tch_error_set(err, TCH_ENOMEM, "%s", key);
}

static int read_errframe(const tch_allocator *a, const json_t *v, const char *what, uint8_t *code, char **message,
                         tch_error *err) {
    const json_t *c = json_is_object(v) ? json_object_get(v, "code") : v;
    const json_t *m = json_is_object(v) ? json_object_get(v, "message") : NULL;
    if (json_is_object(v) && check_keys(v, what, (const char *const[]){"code", "message", NULL},
                                        err))
        return err->code;
    if (json_is_string(c) && tch_cassette_errcode_parse(json_string_value(c), code) == 0) {
    } else if (json_is_integer(c) && json_integer_value(c) > 0 && json_integer_value(c) < 256 &&
               tch_cassette_errcode_name((uint8_t)json_integer_value(c))) {
        *code = (uint8_t)json_integer_value(c);
    } else {
        return tch_error_set(err, TCH_EINVAL,
                             "%s.code: expected an error code name (timeout, cancelled, busy, "
                             "declined, unexpected, badRequest, networkError, unhealthy, fatal)",
                             what);
    }
    if (m && !json_is_string(m))
        return tch_error_set(err, TCH_EINVAL, "%s.message: expected a string", what);
    *message = tch__strdup(a, m ? json_string_value(m) : "");
    return *message ? 0 : tch_error_set(err, TCH_ENOMEM, "%s", what);
}

static int read_response(const json_t *v, tch_cassette_interaction *it, tch_error *err) {
    static const char *const keys[] = {"code", "headers", "body", "template", NULL};
    if (!json_is_object(v))
        return tch_error_set(err, TCH_EINVAL, "response: expected an object");
    if (check_keys(v, "response", keys, err))
        return err->code;
    const json_t *code = json_object_get(v, "code"), *t = json_object_get(v, "template");
    if (code && (!json_is_integer(code) || json_integer_value(code) < 0 ||
                 json_integer_value(code) > 1))
        return tch_error_set(err, TCH_EINVAL, "response.code: expected 0 (ok) or 1 (application "
                                              "error)");
    if (t && !json_is_boolean(t))
        return tch_error_set(err, TCH_EINVAL, "response.template: expected true or false");
    it->response.code = code ? (int)json_integer_value(code) : 0;
    it->stub->template_response = json_is_true(t);
    int rc = bytes_of(json_object_get(v, "headers"), &it->response.headers, "response.headers",
                      err);
    return rc ? rc : bytes_of(json_object_get(v, "body"), &it->response.body, "response.body", err);
}

static int read_fault(const tch_allocator *a, const json_t *v, tch_cassette_interaction *it,
                      tch_error *err) {
    static const char *const names[] = {"closeConnection", "noAnswer", "badChecksum"};
    for (int i = 0; i < 3 && json_is_string(v); i++)
        if (strcmp(json_string_value(v), names[i]) == 0) {
            it->stub->fault = (tch_stub_fault)(TCH_STUB_FAULT_CLOSE + i);
            return 0;
        }
    it->has_fault = 1;
    return read_errframe(a, v, "fault", &it->fault_code, &it->fault_message, err);
}

static int read_extras(const tch_allocator *a, const json_t *j, tch_cassette_interaction *it,
                       tch_error *err) {
    tch_stub_info *st = it->stub;
    const json_t *v;
    int rc = opt_str(a, j, "id", &st->id, err);
    if (!rc)
        rc = opt_str(a, j, "scenario", &st->scenario, err);
    if (!rc)
        rc = opt_str(a, j, "requiredState", &st->required_state, err);
    if (!rc)
        rc = opt_str(a, j, "newState", &st->new_state, err);
    if (rc)
        return rc;
    if ((v = json_object_get(j, "priority"))) {
        if (!json_is_integer(v) || json_integer_value(v) < -1000000 ||
            json_integer_value(v) > 1000000)
            return tch_error_set(err, TCH_EINVAL, "priority: expected an integer (lower wins)");
        st->priority = (int)json_integer_value(v);
        st->has_priority = 1;
    }
    if ((v = json_object_get(j, "required"))) {
        if (!json_is_boolean(v))
            return tch_error_set(err, TCH_EINVAL, "required: expected true or false");
        st->required = json_is_true(v);
    }
    if ((v = json_object_get(j, "delay"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > MAX_DELAY_MS)
            return tch_error_set(err, TCH_EINVAL, "delay: expected milliseconds (0..3600000)");
        it->has_delay = 1;
        it->delay_ms = (uint32_t)json_integer_value(v);
    }
    if ((v = json_object_get(j, "delayDistribution")) &&
        (rc = tch__cas_stub_delay_from_json(v, &st->delay, err)))
        return rc;
    if ((v = json_object_get(j, "fault")) && (rc = read_fault(a, v, it, err)))
        return rc;
    return 0;
}

/* it is zeroed; on failure it is left for tch__cas_interaction_free. */
static int interaction_from_json(const tch_allocator *a, const json_t *j,
                                 tch_cassette_interaction *it, tch_error *err) {
    static const char *const keys[] = {
        "id",       "request",       "response", "error",    "delay",
        "fault",    "priority",      "required", "scenario", "requiredState",
        "newState", "delayDistribution", "plays", NULL};
    if (!json_is_object(j))
        return tch_error_set(err, TCH_EINVAL, "stub: expected a JSON object");
    if (check_keys(j, "stub", keys, err))
        return err->code;
    tch__cas_interaction_bufs_on(a, it);
    if (!(it->stub = tch__calloc(a, 1, sizeof *it->stub)))
        return tch_error_set(err, TCH_ENOMEM, "stub: out of memory");
    it->stub->priority = TCH_STUB_PRIORITY_DEFAULT;
    const json_t *rq = json_object_get(j, "request");
    if (!json_is_object(rq))
        return tch_error_set(err, TCH_EINVAL, "request: expected an object");
    int rc = tch_stub_rules_from_json(rq, &it->stub->rules, err);
    if (rc)
        return tch_error_wrap(err, "request"), rc;
    if ((rc = request_of(rq, &it->request, err)))
        return rc;
    const json_t *resp = json_object_get(j, "response"), *e = json_object_get(j, "error");
    if (!resp == !e)
        return tch_error_set(err, TCH_EINVAL, "stub: expected exactly one of 'response' or "
                                              "'error'");
    if (resp)
        rc = read_response(resp, it, err);
    else {
        it->is_error = 1;
        rc = read_errframe(a, e, "error", &it->error.code, &it->error.message, err);
    }
    if (!rc)
        rc = read_extras(a, j, it, err);
    if (!rc && it->stub->template_response)
        rc = tch__cas_template_check(it, err);
    return rc;
}

/* ---- on a cassette ------------------------------------------------------------ */

static int live_id(const cas_entry *e) {
    return e->state != ST_ABORTED && e->state != ST_PENDING && e->it.stub && e->it.stub->id;
}

int tch_cassette_stub_find(const tch_cassette *c, const char *id, size_t *index) {
    if (id && c->stub_ids) {
        json_t *at = json_object_get(c->stub_ids, id);
        if (!at)
            return TCH_ENOTFOUND;
        *index = (size_t)json_integer_value(at);
        return 0;
    }
    for (size_t i = 0; id && i < c->n; i++) {
        const cas_entry *e = c->items[i];
        if (live_id(e) && strcmp(e->it.stub->id, id) == 0) {
            *index = i;
            return 0;
        }
    }
    return TCH_ENOTFOUND;
}

/* Makes c->stub_ids from the entries (the first of two with one id wins,
 * as the scan finds it). Out of memory leaves it NULL: ids are scanned. */
static void index_ids(tch_cassette *c) {
    json_t *ix = c->stub_ids ? NULL : json_object();
    for (size_t i = c->n; ix && i-- > 0;)
        if (live_id(c->items[i]) &&
            json_object_set_new(ix, c->items[i]->it.stub->id, json_integer((json_int_t)i))) {
            json_decref(ix);
            ix = NULL;
        }
    if (ix)
        c->stub_ids = ix;
}

static int insert(tch_cassette *c, tch_cassette_interaction *it, const char **id,
                  tch_error *err) {
    size_t at;
    index_ids(c);
    if (it->stub->id && tch_cassette_stub_find(c, it->stub->id, &at) == 0)
        return tch_error_set(err, TCH_ESTATE, "id: '%.100s' is in use", it->stub->id);
    while (!it->stub->id) {
        char gen[32];
        snprintf(gen, sizeof gen, "stub-%lu", ++c->next_stub_id);
        if (tch_cassette_stub_find(c, gen, &at) == 0)
            continue;
        if (!(it->stub->id = tch__strdup(c->alloc, gen)))
            return tch_error_set(err, TCH_ENOMEM, "stub: out of memory");
    }
    cas_entry *e = NULL;
    if (tch__cas_append_entry(c, &e))
        return tch_error_set(err, TCH_ENOMEM, "stub: out of memory");
    e->it = *it;
    memset(it, 0, sizeof *it);
    e->state = ST_LOADED;
    e->runtime = true;
    int rc = tch__cas_pattern_add(c, c->n - 1);
    if (rc) {
        e->state = ST_ABORTED;
        return tch_error_set(err, rc, "stub: out of memory");
    }
    if (c->stub_ids && json_object_set_new(c->stub_ids, e->it.stub->id,
                                           json_integer((json_int_t)(c->n - 1)))) {
        json_decref(c->stub_ids); /* out of memory: back to the scan */
        c->stub_ids = NULL;
    }
    if (id)
        *id = e->it.stub->id;
    return 0;
}

int tch_cassette_stub_add(tch_cassette *c, const json_t *interaction, const char **id,
                          tch_error *err) {
    tch_cassette_interaction it;
    memset(&it, 0, sizeof it);
    int rc = interaction_from_json(c->alloc, interaction, &it, err);
    if (!rc)
        rc = insert(c, &it, id, err);
    tch__cas_interaction_free(c->alloc, &it);
    return rc;
}

static void drop(tch_cassette *c, size_t idx) {
    cas_entry *e = c->items[idx];
    if (c->stub_ids && e->it.stub && e->it.stub->id)
        json_object_del(c->stub_ids, e->it.stub->id);
    if (e->pattern)
        tch__cas_pattern_remove(c, idx);
    e->state = ST_ABORTED; /* never matched, listed or written again */
    if (!e->runtime)
        return;
    /* nothing reads a dropped run-time stub again: its bodies and rules go
     * now, so add-and-delete churn does not keep them */
    tch_stub_rules_free(e->implicit);
    e->implicit = NULL;
    tch__cas_interaction_free(c->alloc, &e->it);
    /* dropped stubs at the end leave the array. Only in a cassette that
     * never records: there no pending slot or journal counts on an index
     * past the end (run-time stubs are patterns, never in the hash). */
    while (c->mode == TCH_CASSETTE_NONE && c->n > 0 && c->items[c->n - 1]->runtime &&
           c->items[c->n - 1]->state == ST_ABORTED)
        tch__free(c->alloc, c->items[--c->n]);
}

int tch_cassette_stub_remove(tch_cassette *c, const char *id, tch_error *err) {
    size_t idx;
    if (tch_cassette_stub_find(c, id, &idx))
        return tch_error_set(err, TCH_ENOTFOUND, "no stub with id '%.100s'", id ? id : "");
    drop(c, idx);
    return 0;
}

int tch_cassette_stub_replace(tch_cassette *c, const char *id, const json_t *interaction,
                              tch_error *err) {
    size_t idx;
    if (tch_cassette_stub_find(c, id, &idx))
        return tch_error_set(err, TCH_ENOTFOUND, "no stub with id '%.100s'", id ? id : "");
    tch_cassette_interaction it;
    memset(&it, 0, sizeof it);
    int rc = interaction_from_json(c->alloc, interaction, &it, err);
    if (!rc && it.stub->id && strcmp(it.stub->id, id) != 0)
        rc = tch_error_set(err, TCH_EINVAL, "id: '%.100s' differs from the stub replaced", it.stub->id);
    if (!rc && !it.stub->id && !(it.stub->id = tch__strdup(c->alloc, id)))
        rc = tch_error_set(err, TCH_ENOMEM, "stub: out of memory");
    if (!rc) {
        drop(c, idx);
        rc = insert(c, &it, NULL, err);
    }
    tch__cas_interaction_free(c->alloc, &it);
    return rc;
}

void tch_cassette_stub_clear(tch_cassette *c) {
    for (size_t i = 0; i < c->n; i++)
        if (c->items[i]->runtime && c->items[i]->state != ST_ABORTED)
            drop(c, i);
}

/* ---- JSON form ---------------------------------------------------------------- */

static json_t *bytes_json(tch_slice s) {
    json_t *v = json_stringn((const char *)(s.ptr ? s.ptr : (const uint8_t *)""), s.len);
    if (v)
        return v;
    tch_buf b = {0}; /* not UTF-8: {"base64": ...} */
    if (tch_base64_encode(s, 0, &b))
        return NULL;
    v = json_pack("{s:s%}", "base64", b.ptr ? (const char *)b.ptr : "", b.len);
    tch_buf_free(&b);
    return v;
}

static int set(json_t *o, const char *k, json_t *v) { return json_object_set_new(o, k, v); }

static json_t *request_json(const tch_cassette_interaction *it) {
    static const char *const schemes[] = {"raw", "json", "thrift"};
    const tch_cassette_request *r = &it->request;
    const tch_stub_rules *rs = it->stub ? it->stub->rules : NULL;
    json_t *o = json_object();
    for (int f = 0; o && f < SF_COUNT; f++) {
        const json_t *src = tch__cas_rules_src(rs, f);
        if (src) {
            if (set(o, tch__cas_stub_field_names[f], json_deep_copy(src)))
                goto fail;
            continue;
        }
        if (rs && !tch__cas_rules_has(rs, f))
            continue; /* a stub's field left out: anything */
        int rc = 0;
        switch (f) {
        case SF_SERVICE: rc = set(o, "serviceName", bytes_json(tch_buf_slice(&r->service))); break;
        case SF_ENDPOINT: rc = set(o, "endpoint", bytes_json(tch_buf_slice(&r->endpoint))); break;
        case SF_SCHEME:
            rc = set(o, "argScheme", json_string(schemes[(unsigned)r->scheme < 3 ? r->scheme : 0]));
            break;
        case SF_HEADERS:
            if (r->headers.len)
                rc = set(o, "headers", bytes_json(tch_buf_slice(&r->headers)));
            break;
        case SF_BODY: rc = set(o, "body", bytes_json(tch_buf_slice(&r->body))); break;
        case SF_THEADERS:
            if (r->n_transport_headers) {
                json_t *l = json_array();
                for (size_t i = 0; l && i < r->n_transport_headers; i++)
                    json_array_append_new(
                        l, json_pack("{s:o,s:o}", "key",
                                     bytes_json(tch_buf_slice(&r->transport_headers[i].key)),
                                     "value",
                                     bytes_json(tch_buf_slice(&r->transport_headers[i].value))));
                rc = set(o, "transportHeaders", l);
            }
            break;
        }
        if (rc)
            goto fail;
    }
    return o;
fail:
    json_decref(o);
    return NULL;
}

static json_t *errframe_json(uint8_t code, const char *message) {
    const char *name = tch_cassette_errcode_name(code);
    return json_pack("{s:o,s:s}", "code", name ? json_string(name) : json_integer(code),
                     "message", message ? message : "");
}

json_t *tch__cas_interaction_json(const tch_cassette_interaction *it) {
    const tch_stub_info *st = it->stub;
    json_t *o = json_object();
    if (!o || set(o, "request", request_json(it)))
        goto fail;
    if (it->is_error) {
        if (set(o, "error", errframe_json(it->error.code, it->error.message)))
            goto fail;
    } else {
        json_t *r = json_pack("{s:i,s:o,s:o}", "code", it->response.code, "headers",
                              bytes_json(tch_buf_slice(&it->response.headers)), "body",
                              bytes_json(tch_buf_slice(&it->response.body)));
        if (!r || set(o, "response", r) ||
            (st && st->template_response && set(r, "template", json_true())))
            goto fail;
    }
    if (it->has_delay && set(o, "delay", json_integer(it->delay_ms)))
        goto fail;
    if (it->has_fault && set(o, "fault", errframe_json(it->fault_code, it->fault_message)))
        goto fail;
    if (st) {
        static const char *const faults[] = {NULL, "closeConnection", "noAnswer", "badChecksum"};
        if ((st->id && set(o, "id", json_string(st->id))) ||
            (st->has_priority && set(o, "priority", json_integer(st->priority))) ||
            (st->required && set(o, "required", json_true())) ||
            (st->scenario && set(o, "scenario", json_string(st->scenario))) ||
            (st->required_state && set(o, "requiredState", json_string(st->required_state))) ||
            (st->new_state && set(o, "newState", json_string(st->new_state))) ||
            (st->fault && set(o, "fault", json_string(faults[st->fault]))))
            goto fail;
        if (st->delay.kind == TCH_STUB_DELAY_UNIFORM &&
            set(o, "delayDistribution", json_pack("{s:s,s:I,s:I}", "type", "uniform", "min",
                                                  (json_int_t)st->delay.min_ms, "max",
                                                  (json_int_t)st->delay.max_ms)))
            goto fail;
        if (st->delay.kind == TCH_STUB_DELAY_LOGNORMAL &&
            set(o, "delayDistribution", json_pack("{s:s,s:f,s:f}", "type", "lognormal", "median",
                                                  st->delay.median_ms, "sigma", st->delay.sigma)))
            goto fail;
    }
    return o;
fail:
    json_decref(o);
    return NULL;
}

json_t *tch_cassette_interaction_to_json(const tch_cassette *c, size_t index) {
    if (index >= c->n)
        return NULL;
    const cas_entry *e = c->items[index];
    if (e->state == ST_PENDING || e->state == ST_ABORTED)
        return NULL;
    json_t *o = tch__cas_interaction_json(&e->it);
    if (o && set(o, "plays", json_integer(e->plays))) {
        json_decref(o);
        return NULL;
    }
    return o;
}
