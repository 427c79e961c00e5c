/* The JSONPath subset stubs match with: `$` followed by steps `.name`,
 * `['name']` / `["name"]` and `[N]`. No wildcards, filters or slices: a
 * path names one place, so a rule on it has one value to judge. */
#include "cassette_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STEPS 64

void tch__cas_jpath_free(cas_jpath *p) {
    for (size_t i = 0; i < p->n; i++)
        free(p->steps[i].key);
    free(p->steps);
    free(p->text);
    memset(p, 0, sizeof *p);
}

static int bad(const char *text, size_t at, const char *what, tch_error *err) {
    return tch_error_set(err, TCH_EINVAL, "cannot parse JSONPath '%.80s' at offset %zu: %s", text,
                         at, what);
}

static int push(cas_jpath *p, char *key, size_t index) {
    cas_jstep *s = realloc(p->steps, (p->n + 1) * sizeof *s);
    if (!s) {
        free(key);
        return TCH_ENOMEM;
    }
    p->steps = s;
    p->steps[p->n++] = (cas_jstep){key, index};
    return 0;
}

/* ['name'] or ["name"]: i at the quote; a backslash escapes the next byte. */
static int quoted(const char *t, size_t *i, char **out) {
    char q = t[*i];
    size_t n = strlen(t);
    char *k = malloc(n + 1);
    if (!k)
        return TCH_ENOMEM;
    size_t o = 0, j = *i + 1;
    for (; j < n && t[j] != q; j++) {
        if (t[j] == '\\' && j + 1 < n)
            j++;
        k[o++] = t[j];
    }
    if (j >= n || t[j + 1] != ']') {
        free(k);
        return TCH_EINVAL;
    }
    k[o] = 0;
    *i = j + 2;
    *out = k;
    return 0;
}

static int step(const char *t, size_t *i, cas_jpath *p, tch_error *err) {
    if (t[*i] == '.') {
        size_t s = ++*i;
        while (t[*i] && t[*i] != '.' && t[*i] != '[')
            ++*i;
        if (*i == s)
            return bad(t, s, "a name after '.'", err);
        char *k = strndup(t + s, *i - s);
        return !k || push(p, k, 0) ? tch_error_set(err, TCH_ENOMEM, "JSONPath") : 0;
    }
    if (t[*i] != '[')
        return bad(t, *i, "expected '.name', '[N]' or '[\"name\"]'", err);
    size_t s = ++*i;
    if (t[*i] == '\'' || t[*i] == '"') {
        char *k = NULL;
        int rc = quoted(t, i, &k);
        if (rc == TCH_EINVAL)
            return bad(t, s, "an unterminated quoted name", err);
        return rc || push(p, k, 0) ? tch_error_set(err, TCH_ENOMEM, "JSONPath") : 0;
    }
    size_t idx = 0;
    while (isdigit((unsigned char)t[*i])) {
        if (idx > 100000000)
            return bad(t, s, "an index too large", err);
        idx = idx * 10 + (size_t)(t[(*i)++] - '0');
    }
    if (*i == s || t[*i] != ']')
        return bad(t, s, "an index (digits) and ']'", err);
    ++*i;
    return push(p, NULL, idx) ? tch_error_set(err, TCH_ENOMEM, "JSONPath") : 0;
}

int tch__cas_jpath_parse(const char *text, cas_jpath *out, tch_error *err) {
    memset(out, 0, sizeof *out);
    if (!text || text[0] != '$')
        return bad(text ? text : "", 0, "a path starts with '$'", err);
    size_t i = 1;
    int rc = 0;
    while (!rc && text[i]) {
        if (out->n >= MAX_STEPS)
            rc = bad(text, i, "more than 64 steps", err);
        else
            rc = step(text, &i, out, err);
    }
    if (!rc && !(out->text = strdup(text)))
        rc = tch_error_set(err, TCH_ENOMEM, "JSONPath");
    if (rc)
        tch__cas_jpath_free(out);
    return rc;
}

const json_t *tch__cas_jpath_eval(const cas_jpath *p, const json_t *root) {
    const json_t *v = root;
    for (size_t i = 0; v && i < p->n; i++)
        v = p->steps[i].key ? json_object_get(v, p->steps[i].key)
                            : json_array_get(v, p->steps[i].index);
    return v;
}
