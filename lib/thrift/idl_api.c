/* Read-only accessors and lookups over a loaded IDL. */
#include "thrift_internal.h"

#include <string.h>

/* Root file first, then the others in load order; "inc.Name" only from the
 * root's includes. */
static void *find_any(const tch_thrift_idl *idl, const ptrvec *(*list)(const idl_doc *), const char *name) {
    if (!idl || !name)
        return NULL;
    void *hit = tch__idl_lookup(idl->root, list, name);
    if (hit || strchr(name, '.'))
        return hit;
    for (size_t i = 1; i < idl->docs.n && !hit; i++)
        hit = tch__idl_lookup(idl->docs.items[i], list, name);
    return hit;
}

const tch_thrift_service *tch_thrift_idl_find_service(const tch_thrift_idl *idl, const char *name) {
    return find_any(idl, tch__idl_list_services, name);
}
const tch_thrift_struct *tch_thrift_idl_find_struct(const tch_thrift_idl *idl, const char *name) {
    return find_any(idl, tch__idl_list_structs, name);
}
const tch_thrift_enum *tch_thrift_idl_find_enum(const tch_thrift_idl *idl, const char *name) {
    return find_any(idl, tch__idl_list_enums, name);
}
const tch_thrift_value *tch_thrift_idl_find_const(const tch_thrift_idl *idl, const char *name,
                                                  const tch_thrift_type **type) {
    const idl_const *c = find_any(idl, tch__idl_list_consts, name);
    if (type)
        *type = c ? c->type : NULL;
    return c ? c->value : NULL;
}

const char *tch_thrift_service_name(const tch_thrift_service *s) { return s->name; }
const tch_thrift_service *tch_thrift_service_extends(const tch_thrift_service *s) { return s->extends; }
size_t tch_thrift_service_method_count(const tch_thrift_service *s) { return s->methods.n; }
const tch_thrift_method *tch_thrift_service_method_at(const tch_thrift_service *s, size_t i) {
    return i < s->methods.n ? s->methods.items[i] : NULL;
}

const tch_thrift_method *tch_thrift_service_find_method(const tch_thrift_service *s, const char *name) {
    /* extends chains are acyclic (checked at load) */
    for (; s && name; s = s->extends)
        for (size_t i = 0; i < s->methods.n; i++) {
            const tch_thrift_method *m = s->methods.items[i];
            if (strcmp(m->name, name) == 0)
                return m;
        }
    return NULL;
}

const char *tch_thrift_method_name(const tch_thrift_method *m) { return m->name; }
const tch_thrift_service *tch_thrift_method_service(const tch_thrift_method *m) { return m->service; }
bool tch_thrift_method_is_oneway(const tch_thrift_method *m) { return m->oneway; }
const tch_thrift_type *tch_thrift_method_return_type(const tch_thrift_method *m) { return m->ret; }
const tch_thrift_struct *tch_thrift_method_args(const tch_thrift_method *m) { return m->args; }
const tch_thrift_struct *tch_thrift_method_result(const tch_thrift_method *m) { return m->result; }

const char *tch_thrift_struct_name(const tch_thrift_struct *st) { return st->name; }
tch_thrift_struct_kind tch_thrift_struct_kind_of(const tch_thrift_struct *st) { return st->kind; }
size_t tch_thrift_struct_field_count(const tch_thrift_struct *st) { return st->fields.n; }
const tch_thrift_field *tch_thrift_struct_field_at(const tch_thrift_struct *st, size_t i) {
    return i < st->fields.n ? st->fields.items[i] : NULL;
}
const tch_thrift_field *tch_thrift_struct_field_by_id(const tch_thrift_struct *st, int16_t id) {
    for (size_t i = 0; i < st->fields.n; i++) {
        const tch_thrift_field *f = st->fields.items[i];
        if (f->id == id)
            return f;
    }
    return NULL;
}
const tch_thrift_field *tch_thrift_struct_field_by_name(const tch_thrift_struct *st, const char *name) {
    for (size_t i = 0; i < st->fields.n; i++) {
        const tch_thrift_field *f = st->fields.items[i];
        if (strcmp(f->name, name) == 0)
            return f;
    }
    return NULL;
}

int16_t tch_thrift_field_id(const tch_thrift_field *f) { return f->id; }
const char *tch_thrift_field_name(const tch_thrift_field *f) { return f->name; }
const tch_thrift_type *tch_thrift_field_type(const tch_thrift_field *f) { return f->type; }
tch_thrift_req tch_thrift_field_req(const tch_thrift_field *f) { return f->req; }
const tch_thrift_value *tch_thrift_field_default(const tch_thrift_field *f) { return f->def; }

tch_thrift_kind tch_thrift_type_kind(const tch_thrift_type *t) { return (tch_thrift_kind)t->kind; }
const tch_thrift_type *tch_thrift_type_elem(const tch_thrift_type *t) { return t->elem; }
const tch_thrift_type *tch_thrift_type_value(const tch_thrift_type *t) { return t->val; }
const tch_thrift_struct *tch_thrift_type_struct(const tch_thrift_type *t) { return t->st; }
const tch_thrift_enum *tch_thrift_type_enum(const tch_thrift_type *t) { return t->en; }

const char *tch_thrift_enum_name(const tch_thrift_enum *e) { return e->name; }
const char *tch_thrift_enum_name_of(const tch_thrift_enum *e, int32_t v) {
    for (size_t i = 0; i < e->items.n; i++) {
        const enum_item *it = e->items.items[i];
        if (it->value == v)
            return it->name;
    }
    return NULL;
}
int tch_thrift_enum_value_of(const tch_thrift_enum *e, const char *name, int32_t *v) {
    for (size_t i = 0; i < e->items.n; i++) {
        const enum_item *it = e->items.items[i];
        if (strcmp(it->name, name) == 0) {
            *v = it->value;
            return 0;
        }
    }
    return TCH_ENOTFOUND;
}

const char *tch_thrift_kind_name(int kind) {
    static const char *const names[] = {"?",      "bool",   "byte", "i16",    "i32",  "i64", "double",
                                        "string", "binary", "enum", "struct", "list", "set", "map"};
    return kind >= 0 && kind < (int)(sizeof names / sizeof names[0]) ? names[kind] : "?";
}
