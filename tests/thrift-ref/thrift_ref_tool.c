/* Driven by check.py to compare our codec with Apache Thrift's Python one.
 * Usage: thrift_ref_tool IDL < cases. Each input line is
 *   Struct<TAB>json<TAB>hex
 * and each output line is
 *   ok<TAB>hex(encode(from_json(json)))<TAB>to_json(decode(hex))<TAB>hex(encode(decode(hex)))
 * or "error<TAB>message" (the script decides what was expected). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tchannel/thrift.h>

static void put_hex(FILE *f, tch_slice s) {
    for (size_t i = 0; i < s.len; i++)
        fprintf(f, "%02x", s.ptr[i]);
}

static int from_hex(const char *h, tch_buf *out) {
    size_t n = strlen(h);
    if (n % 2)
        return -1;
    for (size_t i = 0; i < n; i += 2) {
        unsigned v;
        if (sscanf(h + i, "%2x", &v) != 1)
            return -1;
        uint8_t b = (uint8_t)v;
        if (tch_buf_append(out, &b, 1))
            return -1;
    }
    return 0;
}

/* "Struct", or "Service:method:args" / "Service:method:result". */
static const tch_thrift_struct *lookup(const tch_thrift_idl *idl, char *name) {
    char *c1 = strchr(name, ':');
    if (!c1)
        return tch_thrift_idl_find_struct(idl, name);
    char *c2 = strchr(c1 + 1, ':');
    if (!c2)
        return NULL;
    *c1 = *c2 = '\0';
    const tch_thrift_service *svc = tch_thrift_idl_find_service(idl, name);
    const tch_thrift_method *m = svc ? tch_thrift_service_find_method(svc, c1 + 1) : NULL;
    if (!m)
        return NULL;
    return strcmp(c2 + 1, "args") == 0 ? tch_thrift_method_args(m) : tch_thrift_method_result(m);
}

/* Runs one case; returns 0 and prints the ok line, or fills err. */
static int run_case(const tch_thrift_idl *idl, char *line, tch_error *err) {
    char *name = strtok(line, "\t"), *json = strtok(NULL, "\t"), *hex = strtok(NULL, "\t\r\n");
    if (!name || !json || !hex)
        return tch_error_set(err, TCH_EINVAL, "malformed case line");
    const tch_thrift_struct *st = lookup(idl, name);
    if (!st)
        return tch_error_set(err, TCH_ENOTFOUND, "no struct %s", name);
    json_error_t jerr;
    json_t *j = json_loads(json, 0, &jerr);
    tch_thrift_value *v = NULL, *d = NULL;
    json_t *dj = NULL;
    tch_buf enc = {0}, in = {0}, re = {0};
    int rc = j ? 0 : tch_error_set(err, TCH_EPARSE, "bad json: %s", jerr.text);
    if (!rc && from_hex(hex, &in))
        rc = tch_error_set(err, TCH_EINVAL, "bad hex");
    if (!rc && !(rc = tch_thrift_struct_from_json(st, j, &v, err)) && !(rc = tch_thrift_encode(st, v, &enc, err)) &&
        !(rc = tch_thrift_decode(st, tch_buf_slice(&in), &d, err)) && !(rc = tch_thrift_struct_to_json(st, d, &dj, err)))
        rc = tch_thrift_encode(st, d, &re, err);
    if (!rc) {
        char *djs = json_dumps(dj, JSON_COMPACT | JSON_ENCODE_ANY);
        printf("ok\t");
        put_hex(stdout, tch_buf_slice(&enc));
        printf("\t%s\t", djs ? djs : "null");
        put_hex(stdout, tch_buf_slice(&re));
        printf("\n");
        free(djs);
    }
    json_decref(j);
    json_decref(dj);
    tch_thrift_value_free(v);
    tch_thrift_value_free(d);
    tch_buf_free(&enc);
    tch_buf_free(&in);
    tch_buf_free(&re);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s IDL < cases\n", argv[0]);
        return 2;
    }
    tch_error err = {0};
    tch_thrift_idl *idl;
    if (tch_thrift_load(argv[1], &idl, &err)) {
        fprintf(stderr, "load: %s\n", err.msg);
        return 1;
    }
    static char line[1 << 20];
    while (fgets(line, sizeof line, stdin)) {
        if (run_case(idl, line, &err))
            printf("error\t%s\n", err.msg);
        fflush(stdout);
    }
    tch_thrift_idl_free(idl);
    return 0;
}
