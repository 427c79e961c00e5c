/* Resolution of a parsed IDL, once every file is loaded: type references
 * (typedef chains followed and copied in place, so callers never see a
 * typedef), const values and field defaults typed against their declared
 * types, service extends, and the synthesized args/result structs of every
 * method. Also the name lookups shared with idl_api.c. */
#include "thrift_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>

typedef struct resolver {
    tch_thrift_idl *idl;
    tch_error *err;
} resolver;

static int nomem(resolver *r) { return tch_error_set(r->err, TCH_ENOMEM, "thrift resolve: out of memory"); }

static int fail_at(resolver *r, const idl_doc *d, int line, int col, const char *fmt, ...)
    TCH_PRINTF(5, 6);
static int fail_at(resolver *r, const idl_doc *d, int line, int col, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return tch_error_set(r->err, TCH_EPARSE, "%s:%d:%d: %s", d->path, line, col, msg);
}

/* ---------------------------------------------------------------- lookups */

static void *find_named(const ptrvec *v, const char *name, size_t len) {
    for (size_t i = 0; i < v->n; i++) {
        const char *const *nm = v->items[i]; /* definitions start with their name */
        if (strlen(*nm) == len && memcmp(*nm, name, len) == 0)
            return v->items[i];
    }
    return NULL;
}

static idl_doc *find_include(const idl_doc *d, const char *alias, size_t len) {
    for (size_t i = 0; i < d->includes.n; i++) {
        idl_include *inc = d->includes.items[i];
        if (strlen(inc->alias) == len && memcmp(inc->alias, alias, len) == 0)
            return inc->doc;
    }
    return NULL;
}

/* Splits "inc.Name" into the included doc and "Name"; plain names stay in d.
 * Returns NULL when the prefix names no include. */
static const idl_doc *scope_of(const idl_doc *d, const char *name, const char **rest) {
    const char *dot = strchr(name, '.');
    *rest = name;
    if (!dot)
        return d;
    const idl_doc *inc = find_include(d, name, (size_t)(dot - name));
    if (inc)
        *rest = dot + 1;
    return inc;
}

void *tch__idl_lookup(const idl_doc *d, const ptrvec *(*list)(const idl_doc *), const char *name) {
    const char *rest;
    const idl_doc *sd = scope_of(d, name, &rest);
    if (!sd || strchr(rest, '.'))
        return NULL;
    return find_named(list(sd), rest, strlen(rest));
}

const ptrvec *tch__idl_list_typedefs(const idl_doc *d) { return &d->typedefs; }
const ptrvec *tch__idl_list_structs(const idl_doc *d) { return &d->structs; }
const ptrvec *tch__idl_list_enums(const idl_doc *d) { return &d->enums; }
const ptrvec *tch__idl_list_services(const idl_doc *d) { return &d->services; }
const ptrvec *tch__idl_list_consts(const idl_doc *d) { return &d->consts; }

/* ------------------------------------------------------------------ types */

static int resolve_type(resolver *r, tch_thrift_type *t, int depth);

static int resolve_typedef(resolver *r, idl_typedef *td, tch_thrift_type *use, int depth) {
    if (td->resolving)
        return fail_at(r, use->doc, use->line, use->col, "typedef cycle through '%s'", td->name);
    td->resolving = 1;
    int rc = resolve_type(r, td->type, depth + 1);
    td->resolving = 0;
    return rc;
}

/* Replaces a reference node by a copy of what it names. */
static int resolve_type(resolver *r, tch_thrift_type *t, int depth) {
    if (t->kind != TCH_THRIFT_KIND_REF)
        return 0;
    if (depth > TCH_THRIFT_MAX_DEPTH)
        return fail_at(r, t->doc, t->line, t->col, "typedef chain too long at '%s'", t->ref);
    idl_typedef *td = tch__idl_lookup(t->doc, tch__idl_list_typedefs, t->ref);
    tch_thrift_struct *st = td ? NULL : tch__idl_lookup(t->doc, tch__idl_list_structs, t->ref);
    tch_thrift_enum *en = td || st ? NULL : tch__idl_lookup(t->doc, tch__idl_list_enums, t->ref);
    tch_thrift_type target;
    if (td) {
        int rc = resolve_typedef(r, td, t, depth);
        if (rc)
            return rc;
        target = *td->type;
    } else if (st) {
        target = st->self;
    } else if (en) {
        target = en->self;
    } else {
        return fail_at(r, t->doc, t->line, t->col, "undefined type '%s'", t->ref);
    }
    *t = target;
    return 0;
}

/* ----------------------------------------------------------------- consts */

static int cexpr_value(resolver *r, const tch_thrift_type *t, const cexpr *e, int depth, tch_thrift_value **out);

static int mismatch(resolver *r, const cexpr *e, const tch_thrift_type *t) {
    return fail_at(r, e->doc, e->line, e->col, "const value does not match type %s", tch_thrift_kind_name(t->kind));
}

/* An identifier in a const value: another const (its expression is typed
 * again against the target type) or an enum value "Enum.NAME" /
 * "inc.Enum.NAME" (or a bare NAME of the target enum). */
static int ident_value(resolver *r, const tch_thrift_type *t, const cexpr *e, int depth, tch_thrift_value **out) {
    idl_const *c = tch__idl_lookup(e->doc, tch__idl_list_consts, e->s);
    if (c) {
        if (c->resolving)
            return fail_at(r, e->doc, e->line, e->col, "const '%s' refers to itself", e->s);
        c->resolving = 1;
        int rc = cexpr_value(r, t, c->expr, depth + 1, out);
        c->resolving = 0;
        return rc;
    }
    const char *dot = strrchr(e->s, '.');
    const tch_thrift_enum *en = NULL;
    const char *item = e->s;
    if (dot) {
        char *prefix = tch__arena_strndup(&r->idl->ar, e->s, (size_t)(dot - e->s));
        if (!prefix)
            return nomem(r);
        en = tch__idl_lookup(e->doc, tch__idl_list_enums, prefix);
        item = dot + 1;
    } else if (t->kind == TCH_THRIFT_ENUM) {
        en = t->en;
    }
    int32_t v;
    if (!en || tch_thrift_enum_value_of(en, item, &v) != 0)
        return fail_at(r, e->doc, e->line, e->col, "undefined const or enum value '%s'", e->s);
    if (t->kind == TCH_THRIFT_ENUM && t->en != en)
        return fail_at(r, e->doc, e->line, e->col, "'%s' is a value of another enum", e->s);
    cexpr num = *e;
    num.kind = CEXPR_INT;
    num.i = v;
    return cexpr_value(r, t, &num, depth + 1, out);
}

static int int_value(resolver *r, const tch_thrift_type *t, const cexpr *e, tch_thrift_value **out) {
    static const int64_t lo[] = {0, -128, INT16_MIN, INT32_MIN, INT64_MIN};
    static const int64_t hi[] = {1, 127, INT16_MAX, INT32_MAX, INT64_MAX};
    int k = t->kind == TCH_THRIFT_BOOL ? 0 : t->kind == TCH_THRIFT_BYTE ? 1 : t->kind == TCH_THRIFT_I16 ? 2
          : t->kind == TCH_THRIFT_I64 ? 4 : 3;
    if (e->kind != CEXPR_INT)
        return mismatch(r, e, t);
    if (e->i < lo[k] || e->i > hi[k])
        return fail_at(r, e->doc, e->line, e->col, "const value out of range for %s", tch_thrift_kind_name(t->kind));
    switch (t->kind) {
    case TCH_THRIFT_BOOL: *out = tch_thrift_value_new_bool(e->i != 0); break;
    case TCH_THRIFT_BYTE: *out = tch_thrift_value_new_byte((int8_t)e->i); break;
    case TCH_THRIFT_I16: *out = tch_thrift_value_new_i16((int16_t)e->i); break;
    case TCH_THRIFT_I64: *out = tch_thrift_value_new_i64(e->i); break;
    default: *out = tch_thrift_value_new_i32((int32_t)e->i); break; /* i32, enum */
    }
    return *out ? 0 : nomem(r);
}

static int list_value(resolver *r, const tch_thrift_type *t, const cexpr *e, int depth, tch_thrift_value **out) {
    if (e->kind != CEXPR_LIST)
        return mismatch(r, e, t);
    tch_thrift_value *v = t->kind == TCH_THRIFT_LIST ? tch_thrift_value_new_list() : tch_thrift_value_new_set();
    if (!v)
        return nomem(r);
    for (size_t i = 0; i < e->items.n; i++) {
        tch_thrift_value *item;
        int rc = cexpr_value(r, t->elem, e->items.items[i], depth + 1, &item);
        if (!rc && tch_thrift_value_append_take(v, item))
            rc = nomem(r);
        if (rc) {
            tch_thrift_value_free(v);
            return rc;
        }
    }
    *out = v;
    return 0;
}

static int map_value(resolver *r, const tch_thrift_type *t, const cexpr *e, int depth, tch_thrift_value **out) {
    if (e->kind != CEXPR_MAP)
        return mismatch(r, e, t);
    tch_thrift_value *v = tch_thrift_value_new_map();
    if (!v)
        return nomem(r);
    for (size_t i = 0; i + 1 < e->items.n; i += 2) {
        tch_thrift_value *k = NULL, *val = NULL;
        int rc = cexpr_value(r, t->elem, e->items.items[i], depth + 1, &k);
        if (!rc)
            rc = cexpr_value(r, t->val, e->items.items[i + 1], depth + 1, &val);
        else
            k = NULL;
        if (rc) {
            tch_thrift_value_free(k);
            tch_thrift_value_free(v);
            return rc;
        }
        if (tch_thrift_value_map_put_take(v, k, val)) {
            tch_thrift_value_free(v);
            return nomem(r);
        }
    }
    *out = v;
    return 0;
}

/* A struct value in the IDL is built as thriftrw builds it, through the
 * struct's constructor: a missing field takes its own default, a missing
 * required field is an error, and a union holds at most one field. Errors
 * point at the value, so a bad constant fails the load, not every encode. */
static int struct_const_finish(resolver *r, const tch_thrift_struct *st, const cexpr *e, int depth,
                               tch_thrift_value *v) {
    char what[200];
    for (size_t i = 0; i < st->fields.n; i++) {
        const tch_thrift_field *f = st->fields.items[i];
        if (tch_thrift_value_struct_get(v, f->id))
            continue;
        if (f->defexpr && st->kind != TCH_THRIFT_STRUCT_UNION) {
            tch_thrift_value *fv;
            int rc = cexpr_value(r, f->type, f->defexpr, depth + 1, &fv);
            if (!rc && tch_thrift_value_struct_set_take(v, f->id, fv))
                rc = nomem(r);
            if (rc)
                return rc;
        } else if (f->req == TCH_THRIFT_REQ_REQUIRED) {
            snprintf(what, sizeof what, "%s: required field '%s' missing", st->name, f->name);
            return fail_at(r, e->doc, e->line, e->col, "%s", what);
        }
    }
    if (st->kind == TCH_THRIFT_STRUCT_UNION && tch_thrift_value_struct_count(v) > 1)
        return fail_at(r, e->doc, e->line, e->col, "union %s: more than one field set", st->name);
    return 0;
}

/* A struct const is written as a map from field name strings to values. */
static int struct_value(resolver *r, const tch_thrift_type *t, const cexpr *e, int depth, tch_thrift_value **out) {
    if (e->kind != CEXPR_MAP)
        return mismatch(r, e, t);
    tch_thrift_value *v = tch_thrift_value_new_struct();
    if (!v)
        return nomem(r);
    for (size_t i = 0; i + 1 < e->items.n; i += 2) {
        const cexpr *k = e->items.items[i];
        const tch_thrift_field *f = NULL;
        if (k->kind == CEXPR_STRING) {
            char *name = tch__arena_strndup(&r->idl->ar, k->s, k->slen);
            if (!name) {
                tch_thrift_value_free(v);
                return nomem(r);
            }
            f = tch_thrift_struct_field_by_name(t->st, name);
        }
        if (!f) {
            tch_thrift_value_free(v);
            return fail_at(r, k->doc, k->line, k->col, "not a field name of struct %s", t->st->name);
        }
        tch_thrift_value *fv;
        int rc = cexpr_value(r, f->type, e->items.items[i + 1], depth + 1, &fv);
        if (!rc && tch_thrift_value_struct_set_take(v, f->id, fv))
            rc = nomem(r);
        if (rc) {
            tch_thrift_value_free(v);
            return rc;
        }
    }
    int rc = struct_const_finish(r, t->st, e, depth, v);
    if (rc) {
        tch_thrift_value_free(v);
        return rc;
    }
    *out = v;
    return 0;
}

static int cexpr_value(resolver *r, const tch_thrift_type *t, const cexpr *e, int depth, tch_thrift_value **out) {
    if (depth > TCH_THRIFT_MAX_DEPTH)
        return fail_at(r, e->doc, e->line, e->col, "const value nested too deeply");
    if (e->kind == CEXPR_IDENT)
        return ident_value(r, t, e, depth, out);
    switch (t->kind) {
    case TCH_THRIFT_DOUBLE:
        if (e->kind != CEXPR_INT && e->kind != CEXPR_DOUBLE)
            return mismatch(r, e, t);
        *out = tch_thrift_value_new_double(e->kind == CEXPR_INT ? (double)e->i : e->d);
        return *out ? 0 : nomem(r);
    case TCH_THRIFT_STRING:
    case TCH_THRIFT_BINARY:
        if (e->kind != CEXPR_STRING)
            return mismatch(r, e, t);
        *out = tch_thrift_value_new_string(tch_slice_of(e->s, e->slen));
        return *out ? 0 : nomem(r);
    case TCH_THRIFT_LIST:
    case TCH_THRIFT_SET:
        return list_value(r, t, e, depth, out);
    case TCH_THRIFT_MAP:
        return map_value(r, t, e, depth, out);
    case TCH_THRIFT_STRUCT:
        return struct_value(r, t, e, depth, out);
    default:
        return int_value(r, t, e, out);
    }
}

static int keep_value(resolver *r, tch_thrift_value *v) {
    if (tch__ptrvec_push(&r->idl->ar, &r->idl->values, v)) {
        tch_thrift_value_free(v);
        return nomem(r);
    }
    return 0;
}

static int resolve_consts(resolver *r, idl_doc *d) {
    for (size_t i = 0; i < d->consts.n; i++) {
        idl_const *c = d->consts.items[i];
        c->resolving = 1;
        int rc = cexpr_value(r, c->type, c->expr, 0, &c->value);
        c->resolving = 0;
        if (rc || (rc = keep_value(r, c->value)))
            return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------- structs */

static void sort_fields(ptrvec *fields) {
    for (size_t i = 1; i < fields->n; i++) { /* insertion sort: few fields */
        void *f = fields->items[i];
        size_t j = i;
        while (j > 0 && ((tch_thrift_field *)fields->items[j - 1])->id > ((tch_thrift_field *)f)->id) {
            fields->items[j] = fields->items[j - 1];
            j--;
        }
        fields->items[j] = f;
    }
}

static int resolve_defaults(resolver *r, tch_thrift_struct *st) {
    sort_fields(&st->fields);
    for (size_t i = 0; i < st->fields.n; i++) {
        tch_thrift_field *f = st->fields.items[i];
        if (!f->defexpr)
            continue;
        int rc = cexpr_value(r, f->type, f->defexpr, 0, &f->def);
        if (rc || (rc = keep_value(r, f->def)))
            return rc;
    }
    return 0;
}

/* --------------------------------------------------------------- services */

static char *joined_name(resolver *r, const char *a, const char *b, const char *c) {
    size_t n = strlen(a) + strlen(b) + strlen(c) + 3;
    char *s = tch__arena_alloc(&r->idl->ar, n);
    if (s)
        snprintf(s, n, "%s_%s_%s", a, b, c);
    return s;
}

static void init_struct(tch_thrift_struct *st, idl_doc *d) {
    st->kind = TCH_THRIFT_STRUCT_PLAIN;
    st->doc = d;
    st->self.kind = TCH_THRIFT_STRUCT;
    st->self.st = st;
    st->self.doc = d;
}

/* result: 0 "success" unless void, then the declared exceptions (optional). */
static int build_result(resolver *r, tch_thrift_service *svc, tch_thrift_method *m) {
    tch_thrift_struct *res = tch__arena_alloc(&r->idl->ar, sizeof *res);
    if (!res || !(res->name = joined_name(r, svc->name, m->name, "result")))
        return nomem(r);
    init_struct(res, svc->doc);
    m->result = res;
    if (m->ret) {
        tch_thrift_field *f = tch__arena_alloc(&r->idl->ar, sizeof *f);
        if (!f || tch__ptrvec_push(&r->idl->ar, &res->fields, f))
            return nomem(r);
        f->id = 0;
        f->name = "success";
        f->type = m->ret;
        f->req = TCH_THRIFT_REQ_OPTIONAL;
    }
    for (size_t i = 0; i < m->throws.n; i++) {
        tch_thrift_field *f = m->throws.items[i];
        if (f->type->kind != TCH_THRIFT_STRUCT || f->type->st->kind != TCH_THRIFT_STRUCT_EXCEPTION)
            return fail_at(r, svc->doc, f->line, f->col, "throws field '%s' is not an exception", f->name);
        if (f->id == 0 && m->ret)
            return fail_at(r, svc->doc, f->line, f->col, "throws field '%s' uses id 0, the success field", f->name);
        f->req = TCH_THRIFT_REQ_OPTIONAL;
        if (tch__ptrvec_push(&r->idl->ar, &res->fields, f))
            return nomem(r);
    }
    sort_fields(&res->fields);
    return 0;
}

static int resolve_service(resolver *r, tch_thrift_service *svc) {
    if (svc->extends_name) {
        svc->extends = tch__idl_lookup(svc->doc, tch__idl_list_services, svc->extends_name);
        if (!svc->extends)
            return fail_at(r, svc->doc, svc->ext_line, svc->ext_col, "undefined service '%s'", svc->extends_name);
    }
    for (size_t i = 0; i < svc->methods.n; i++) {
        tch_thrift_method *m = svc->methods.items[i];
        if (!(m->args->name = joined_name(r, svc->name, m->name, "args")))
            return nomem(r);
        init_struct(m->args, svc->doc);
        int rc = resolve_defaults(r, m->args);
        if (rc || (rc = build_result(r, svc, m)))
            return rc;
    }
    return 0;
}

/* An extends chain longer than the number of services must loop. */
static int check_extends_cycles(resolver *r) {
    size_t total = 0;
    for (size_t i = 0; i < r->idl->docs.n; i++)
        total += ((idl_doc *)r->idl->docs.items[i])->services.n;
    for (size_t i = 0; i < r->idl->docs.n; i++) {
        idl_doc *d = r->idl->docs.items[i];
        for (size_t j = 0; j < d->services.n; j++) {
            tch_thrift_service *s = d->services.items[j];
            size_t steps = 0;
            for (const tch_thrift_service *e = s->extends; e; e = e->extends)
                if (++steps > total)
                    return fail_at(r, d, s->ext_line, s->ext_col, "service '%s' extends itself", s->name);
        }
    }
    return 0;
}

static const tch_thrift_method *own_method(const tch_thrift_service *s, const char *name) {
    for (size_t i = 0; i < s->methods.n; i++) {
        const tch_thrift_method *m = s->methods.items[i];
        if (strcmp(m->name, name) == 0)
            return m;
    }
    return NULL;
}

/* As thriftrw: a service may not define again a method it inherits. Runs
 * once the extends chains are known to end. */
static int check_inherited_methods(resolver *r) {
    for (size_t i = 0; i < r->idl->docs.n; i++) {
        idl_doc *d = r->idl->docs.items[i];
        for (size_t j = 0; j < d->services.n; j++) {
            const tch_thrift_service *s = d->services.items[j];
            for (size_t k = 0; k < s->methods.n; k++) {
                const tch_thrift_method *m = s->methods.items[k];
                for (const tch_thrift_service *b = s->extends; b; b = b->extends) {
                    if (!own_method(b, m->name))
                        continue;
                    char what[200];
                    snprintf(what, sizeof what, "%s.%s: already defined in base service %s",
                             s->name, m->name, b->name);
                    return fail_at(r, d, m->line, m->col, "%s", what);
                }
            }
        }
    }
    return 0;
}

int tch__idl_resolve(tch_thrift_idl *idl, ptrvec *refs, tch_error *err) {
    resolver r = {idl, err};
    int rc = 0;
    for (size_t i = 0; !rc && i < refs->n; i++)
        rc = resolve_type(&r, refs->items[i], 0);
    /* structs first (sorted, defaults typed), then consts, then services */
    for (size_t i = 0; !rc && i < idl->docs.n; i++) {
        idl_doc *d = idl->docs.items[i];
        for (size_t j = 0; !rc && j < d->structs.n; j++)
            rc = resolve_defaults(&r, d->structs.items[j]);
    }
    for (size_t i = 0; !rc && i < idl->docs.n; i++)
        rc = resolve_consts(&r, idl->docs.items[i]);
    for (size_t i = 0; !rc && i < idl->docs.n; i++) {
        idl_doc *d = idl->docs.items[i];
        for (size_t j = 0; !rc && j < d->services.n; j++)
            rc = resolve_service(&r, d->services.items[j]);
    }
    if (!rc)
        rc = check_extends_cycles(&r);
    return rc ? rc : check_inherited_methods(&r);
}
