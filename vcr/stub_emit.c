/* Stubs written as YAML: a cassette file that holds stubs keeps their
 * rules and extras when it is saved again, and run-time stubs can be saved
 * as a cassette. The interaction's JSON form (stub_json.c) is written as
 * YAML events; {"base64": ...} (bytes that are not UTF-8) as !!binary. */
#include "cassette_internal.h"
#include "cassette_journal.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#define TAG_STR "tag:yaml.org,2002:str"
#define TAG_BINARY "tag:yaml.org,2002:binary"

static int put(yaml_emitter_t *e, yaml_event_t *ev, int ok) {
    if (!ok)
        return TCH_ENOMEM;
    return yaml_emitter_emit(e, ev) ? 0 : TCH_EINVAL;
}

static int scalar(yaml_emitter_t *e, const char *tag, const char *text, size_t len, int implicit,
                  yaml_scalar_style_t style) {
    yaml_event_t ev;
    return put(e, &ev,
               yaml_scalar_event_initialize(&ev, NULL, (yaml_char_t *)tag, (yaml_char_t *)text,
                                            (int)len, implicit, implicit, style));
}

/* Plain only when a YAML reader cannot take it for anything but a string. */
static bool plain_ok(const char *s, size_t n) {
    static const char *const words[] = {"yes", "no", "true", "false", "on", "off", "null", "y", "n"};
    if (!n || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.", s[i]))
            return false;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (n == strlen(words[i]) && strncasecmp(s, words[i], n) == 0)
            return false;
    return true;
}

static int emit_string(yaml_emitter_t *e, const char *s, size_t n) {
    return scalar(e, TAG_STR, s, n, 1,
                  plain_ok(s, n) ? YAML_PLAIN_SCALAR_STYLE : YAML_DOUBLE_QUOTED_SCALAR_STYLE);
}

/* Recursion follows the JSON form's nesting: an interaction's, and its
 * rules', which parsing bounded. */
static int emit_json(yaml_emitter_t *e, const json_t *v) {
    yaml_event_t ev;
    char num[64];
    int rc = 0;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const json_t *b64 = json_object_get(v, "base64");
        if (json_object_size(v) == 1 && json_is_string(b64))
            return scalar(e, TAG_BINARY, json_string_value(b64), json_string_length(b64), 0,
                          YAML_PLAIN_SCALAR_STYLE);
        if ((rc = put(e, &ev, yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
                                                                  YAML_ANY_MAPPING_STYLE))))
            return rc;
        const char *k;
        const json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            if ((rc = emit_string(e, k, strlen(k))) || (rc = emit_json(e, x)))
                return rc;
        }
        return put(e, &ev, yaml_mapping_end_event_initialize(&ev));
    }
    case JSON_ARRAY: {
        if ((rc = put(e, &ev, yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                                                   YAML_ANY_SEQUENCE_STYLE))))
            return rc;
        size_t i;
        const json_t *x;
        json_array_foreach(v, i, x) if ((rc = emit_json(e, x))) return rc;
        return put(e, &ev, yaml_sequence_end_event_initialize(&ev));
    }
    case JSON_STRING: return emit_string(e, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return scalar(e, NULL, num, strlen(num), 1, YAML_PLAIN_SCALAR_STYLE);
    case JSON_REAL:
        snprintf(num, sizeof num, "%.17g", json_real_value(v));
        if (!strpbrk(num, ".eEni")) /* a whole real stays a real */
            strncat(num, ".0", sizeof num - strlen(num) - 1);
        return scalar(e, NULL, num, strlen(num), 1, YAML_PLAIN_SCALAR_STYLE);
    case JSON_TRUE: return scalar(e, NULL, "true", 4, 1, YAML_PLAIN_SCALAR_STYLE);
    case JSON_FALSE: return scalar(e, NULL, "false", 5, 1, YAML_PLAIN_SCALAR_STYLE);
    case JSON_NULL: return scalar(e, NULL, "null", 4, 1, YAML_PLAIN_SCALAR_STYLE);
    }
    return TCH_EINVAL;
}

int tch__cas_stub_emit(struct yaml_emitter_s *e, const tch_cassette_interaction *it) {
    json_t *j = tch__cas_interaction_json(it);
    int rc = j ? emit_json(e, j) : TCH_ENOMEM;
    json_decref(j);
    return rc;
}

static bool runtime_only(const tch_cassette *c, const cas_entry *e) {
    (void)c;
    return e->runtime && e->state == ST_LOADED;
}

int tch_cassette_stubs_emit(const tch_cassette *c, tch_buf *out, tch_error *err) {
    return tch__cas_emit_some(c, runtime_only, 0, out, err);
}
