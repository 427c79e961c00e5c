/* Small pure helpers for the cassette library: hashing, text detection,
 * base64, error-code names, request copies and short previews. */
#include "cassette_internal.h"
#include "utf8.h"

#include <tchannel/thrift.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *const tch__cas_field_names[F_COUNT] = {
    "serviceName", "endpoint", "headers", "body", "argScheme", "hostPort", "transportHeaders",
};

static const struct {
    uint8_t code;
    const char *name;
} errcodes[] = {
    {0x01, "timeout"},    {0x02, "cancelled"},    {0x03, "busy"},
    {0x04, "declined"},   {0x05, "unexpected"},   {0x06, "badRequest"},
    {0x07, "networkError"}, {0x08, "unhealthy"}, {0xff, "fatal"},
};

tch_cassette_scheme tch_cassette_scheme_of_as(tch_slice as) {
    if (tch_slice_eq_cstr(as, "json"))
        return TCH_CASSETTE_JSON;
    if (tch_slice_eq_cstr(as, "thrift"))
        return TCH_CASSETTE_THRIFT;
    return TCH_CASSETTE_RAW;
}

const char *tch_cassette_errcode_name(uint8_t code) {
    for (size_t i = 0; i < sizeof errcodes / sizeof errcodes[0]; i++)
        if (errcodes[i].code == code)
            return errcodes[i].name;
    return NULL;
}

int tch_cassette_errcode_parse(const char *name, uint8_t *code) {
    for (size_t i = 0; i < sizeof errcodes / sizeof errcodes[0]; i++)
        if (strcasecmp(errcodes[i].name, name) == 0) {
            *code = errcodes[i].code;
            return 0;
        }
    return TCH_EINVAL;
}

/* FNV-1a with a murmur finaliser: fast on short fields, well mixed buckets. */
uint64_t tch__cas_hash(const void *p, size_t n, uint64_t seed) {
    const uint8_t *b = p;
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

/* Text we can write as a YAML string and read back byte for byte: valid
 * UTF-8, no control characters but tab and newline (YAML normalises \r and
 * the Unicode line breaks NEL/LS/PS, and drops a BOM). */
bool tch__cas_is_text(tch_slice s) {
    size_t i = 0;
    while (i < s.len) {
        uint32_t cp;
        size_t l = tch_utf8_decode(s.ptr + i, s.len - i, &cp);
        if (l == 0)
            return false;
        if ((cp < 0x20 && cp != '\t' && cp != '\n') || cp == 0x7f || (cp >= 0x80 && cp < 0xa0) ||
            cp == 0x2028 || cp == 0x2029 || cp == 0xfeff)
            return false;
        i += l;
    }
    return true;
}

int tch__cas_buf_set(tch_buf *b, tch_slice s) {
    tch_buf_reset(b);
    /* an empty value leaves ptr NULL: callers test len, never ptr */
    return tch_buf_append(b, s.ptr ? s.ptr : (const uint8_t *)"", s.len) ? TCH_ENOMEM : 0;
}

static void request_bufs_on(const tch_allocator *a, tch_cassette_request *r) {
    r->service.alloc = r->endpoint.alloc = r->headers.alloc = r->body.alloc = a;
    r->host_port.alloc = a;
}

void tch__cas_interaction_bufs_on(const tch_allocator *a, tch_cassette_interaction *it) {
    request_bufs_on(a, &it->request);
    it->response.headers.alloc = it->response.body.alloc = a;
}

int tch__cas_request_from_call(const tch_allocator *a, const tch_cassette_call *call,
                               tch_cassette_request *out) {
    memset(out, 0, sizeof *out);
    request_bufs_on(a, out);
    out->scheme = call->scheme;
    if (tch__cas_buf_set(&out->service, call->service) || tch__cas_buf_set(&out->endpoint, call->endpoint) ||
        tch__cas_buf_set(&out->headers, call->headers) || tch__cas_buf_set(&out->body, call->body) ||
        tch__cas_buf_set(&out->host_port, call->host_port))
        goto nomem;
    if (call->n_known_peers) {
        out->known_peers = tch__calloc(a, call->n_known_peers, sizeof *out->known_peers);
        if (!out->known_peers)
            goto nomem;
        out->n_known_peers = call->n_known_peers;
        for (size_t i = 0; i < call->n_known_peers; i++) {
            out->known_peers[i].alloc = a;
            if (tch__cas_buf_set(&out->known_peers[i], call->known_peers[i]))
                goto nomem;
        }
    }
    if (call->n_transport_headers) {
        out->transport_headers =
            tch__calloc(a, call->n_transport_headers, sizeof *out->transport_headers);
        if (!out->transport_headers)
            goto nomem;
        out->n_transport_headers = call->n_transport_headers;
        for (size_t i = 0; i < call->n_transport_headers; i++) {
            tch_cassette_kv *kv = &out->transport_headers[i];
            kv->key.alloc = kv->value.alloc = a;
            if (tch__cas_buf_set(&kv->key, call->transport_headers[i].key) ||
                tch__cas_buf_set(&kv->value, call->transport_headers[i].value))
                goto nomem;
        }
    }
    return 0;
nomem:
    tch__cas_request_free(a, out);
    return TCH_ENOMEM;
}

void tch__cas_request_free(const tch_allocator *a, tch_cassette_request *r) {
    tch_buf_free(&r->service);
    tch_buf_free(&r->endpoint);
    tch_buf_free(&r->headers);
    tch_buf_free(&r->body);
    tch_buf_free(&r->host_port);
    for (size_t i = 0; i < r->n_known_peers; i++)
        tch_buf_free(&r->known_peers[i]);
    tch__free(a, r->known_peers);
    for (size_t i = 0; i < r->n_transport_headers; i++) {
        tch_buf_free(&r->transport_headers[i].key);
        tch_buf_free(&r->transport_headers[i].value);
    }
    tch__free(a, r->transport_headers);
    memset(r, 0, sizeof *r);
}

void tch__cas_interaction_free(const tch_allocator *a, tch_cassette_interaction *it) {
    tch__cas_request_free(a, &it->request);
    tch_buf_free(&it->response.headers);
    tch_buf_free(&it->response.body);
    tch__free(a, it->error.message);
    tch__free(a, it->fault_message);
    tch__cas_stub_info_free(a, it->stub);
    memset(it, 0, sizeof *it);
}

/* Escaped, bounded preview of s starting at `from`: "...abc\x00def..." */
void tch__cas_preview(tch_slice s, size_t from, size_t max, char *out, size_t outsz) {
    size_t o = 0;
    if (outsz == 0)
        return;
    out[0] = '\0'; /* an empty value writes nothing below */
#define PUT(str)                                                                                  \
    do {                                                                                          \
        int k_ = snprintf(out + o, outsz - o, "%s", str);                                         \
        if (k_ < 0 || (size_t)k_ >= outsz - o) {                                                  \
            out[outsz - 1] = '\0';                                                                \
            return;                                                                               \
        }                                                                                         \
        o += (size_t)k_;                                                                          \
    } while (0)
    if (from > s.len)
        from = s.len;
    if (from > 0)
        PUT("...");
    size_t end = s.len - from > max ? from + max : s.len;
    for (size_t i = from; i < end; i++) {
        char tmp[8];
        uint8_t ch = s.ptr[i];
        if (ch == '"' || ch == '\\')
            snprintf(tmp, sizeof tmp, "\\%c", ch);
        else if (ch == '\n')
            snprintf(tmp, sizeof tmp, "\\n");
        else if (ch >= 0x20 && ch < 0x7f)
            snprintf(tmp, sizeof tmp, "%c", ch);
        else
            snprintf(tmp, sizeof tmp, "\\x%02x", ch);
        PUT(tmp);
    }
    if (end < s.len)
        PUT("...");
#undef PUT
}

static const char *scheme_name(tch_cassette_scheme s) {
    switch (s) {
    case TCH_CASSETTE_RAW: return "raw";
    case TCH_CASSETTE_JSON: return "json";
    case TCH_CASSETTE_THRIFT: return "thrift";
    }
    return "?";
}

/* "svc::endpoint (json) body \"{...}\"" */
void tch__cas_describe(const tch_cassette_request *r, char *out, size_t outsz) {
    char svc[64], ep[64], body[80];
    tch__cas_preview(tch_buf_slice(&r->service), 0, 40, svc, sizeof svc);
    tch__cas_preview(tch_buf_slice(&r->endpoint), 0, 40, ep, sizeof ep);
    tch__cas_preview(tch_buf_slice(&r->body), 0, 32, body, sizeof body);
    snprintf(out, outsz, "%s::%s (%s) body \"%s\"", svc, ep, scheme_name(r->scheme), body);
}

char *tch__cas_thrift_headers_json(tch_slice s, bool drop_tracing, bool sorted) {
    tch_kv *h;
    size_t nh;
    if (tch_thrift_headers_decode(s, &h, &nh, NULL) != 0)
        return NULL;
    json_t *obj = json_object();
    if (!obj)
        goto bad;
    for (size_t i = 0; i < nh; i++) {
        tch_slice k = h[i].key, v = h[i].value;
        if (drop_tracing && k.len >= sizeof TRACING_PREFIX - 1 &&
            memcmp(k.ptr, TRACING_PREFIX, sizeof TRACING_PREFIX - 1) == 0)
            continue;
        /* keys with NUL or invalid UTF-8 cannot be a JSON key: not renderable */
        char *ks = tch_slice_strdup(k);
        if (!ks || strlen(ks) != k.len) {
            free(ks);
            goto bad;
        }
        /* json_object_set_new consumes the value even when it fails */
        int rc = json_object_set_new(obj, ks, json_stringn((const char *)v.ptr, v.len));
        free(ks);
        if (rc)
            goto bad;
    }
    free(h);
    char *out = json_dumps(obj, JSON_COMPACT | (sorted ? JSON_SORT_KEYS : 0));
    json_decref(obj);
    return out;
bad:
    free(h);
    json_decref(obj);
    return NULL;
}
