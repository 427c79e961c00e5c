/* A YAML document as JSON, for stubs posted as YAML: scalars as YAML 1.1
 * reads them (plain true/false/null/numbers; anything quoted a string). */
#include "cassette_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define MAX_NODES_DEPTH 64

static json_t *scalar(const yaml_node_t *n) {
    const char *v = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        if (!len || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
            !strcmp(v, "NULL"))
            return json_null();
        if (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "TRUE"))
            return json_true();
        if (!strcmp(v, "false") || !strcmp(v, "False") || !strcmp(v, "FALSE"))
            return json_false();
        char *end;
        errno = 0;
        long long i = strtoll(v, &end, 10);
        if (!*end && !errno)
            return json_integer(i);
        double d = strtod(v, &end);
        if (!*end && strpbrk(v, ".eE") && !strpbrk(v, "xXnN"))
            return json_real(d);
    }
    return json_stringn(v, len);
}

/* Aliases may repeat a node many times over: the nodes converted are
 * counted against a budget so a small text cannot expand without end. */
static json_t *node_json(yaml_document_t *doc, yaml_node_t *n, int depth, size_t *budget,
                         tch_error *err) {
    if (!n)
        return json_null();
    if (!*budget) {
        tch_error_set(err, TCH_ETOOBIG, "YAML: aliases expand to too many nodes");
        return NULL;
    }
    --*budget;
    if (depth > MAX_NODES_DEPTH) {
        tch_error_set(err, TCH_EPARSE, "YAML line %zu: nested deeper than %d levels",
                      n->start_mark.line + 1, MAX_NODES_DEPTH);
        return NULL;
    }
    if (n->type == YAML_SCALAR_NODE) {
        json_t *v = scalar(n);
        if (!v)
            tch_error_set(err, TCH_EPARSE, "YAML line %zu: a string that is not UTF-8",
                          n->start_mark.line + 1);
        return v;
    }
    if (n->type == YAML_SEQUENCE_NODE) {
        json_t *a = json_array();
        for (yaml_node_item_t *i = n->data.sequence.items.start;
             a && i < n->data.sequence.items.top; i++) {
            json_t *v = node_json(doc, yaml_document_get_node(doc, *i), depth + 1, budget, err);
            if (!v || json_array_append_new(a, v)) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    json_t *o = json_object();
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; o && p < n->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        if (!k || k->type != YAML_SCALAR_NODE) {
            tch_error_set(err, TCH_EPARSE, "YAML line %zu: a key must be a scalar",
                          n->start_mark.line + 1);
            json_decref(o);
            return NULL;
        }
        json_t *v = node_json(doc, yaml_document_get_node(doc, p->value), depth + 1, budget,
                              err);
        if (!v || json_object_setn_new(o, (const char *)k->data.scalar.value,
                                       k->data.scalar.length, v)) {
            if (v && !err->code)
                tch_error_set(err, TCH_EPARSE, "YAML line %zu: a key that is not UTF-8",
                              k->start_mark.line + 1);
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

int tch_stub_yaml_to_json(const char *data, size_t len, json_t **out, tch_error *err) {
    *out = NULL;
    yaml_parser_t p;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&p))
        return tch_error_set(err, TCH_ENOMEM, "YAML: out of memory");
    yaml_parser_set_input_string(&p, (const unsigned char *)data, len);
    int rc = 0;
    if (!yaml_parser_load(&p, &doc)) {
        rc = tch_error_set(err, TCH_EPARSE, "YAML line %zu column %zu: %s",
                           p.problem_mark.line + 1, p.problem_mark.column + 1,
                           p.problem ? p.problem : "parse error");
        yaml_parser_delete(&p);
        return rc;
    }
    tch_error e = {0};
    size_t budget = 100000 + len;
    json_t *j = node_json(&doc, yaml_document_get_root_node(&doc), 0, &budget, &e);
    if (!j)
        rc = e.code ? (tch_error_set(err, e.code, "%s", e.msg), e.code)
                    : tch_error_set(err, TCH_ENOMEM, "YAML: out of memory");
    yaml_document_delete(&doc);
    yaml_parser_delete(&p);
    *out = j;
    return rc;
}
