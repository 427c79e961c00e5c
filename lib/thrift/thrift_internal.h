/* Definitions shared by the IDL loader, value model, codec and JSON code of
 * lib/thrift. Not installed. The loaded IDL lives in one arena: nothing in it
 * is freed on its own, tch_thrift_idl_free drops the arena (and the const /
 * default values, which are ordinary heap values). */
#ifndef TCH_THRIFT_INTERNAL_H
#define TCH_THRIFT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <tchannel/thrift.h>

/* ---- arena ---- */
typedef struct arena_chunk arena_chunk;
typedef struct arena {
    arena_chunk *head;
} arena;
void *tch__arena_alloc(arena *a, size_t n); /* zeroed; NULL on ENOMEM */
char *tch__arena_strndup(arena *a, const char *s, size_t n);
void tch__arena_free(arena *a);

/* A growable array of pointers whose storage comes from an arena. */
typedef struct ptrvec {
    void **items;
    size_t n, cap;
} ptrvec;
int tch__ptrvec_push(arena *a, ptrvec *v, void *item);

/* Adds "a.b: " in front of err's message while it fits; returns err->code. */
int tch__thrift_wrap(tch_error *err, const char *a, const char *b);

/* Kind used for a type reference not yet resolved (never seen by callers). */
#define TCH_THRIFT_KIND_REF 100

typedef struct idl_doc idl_doc;

struct tch_thrift_type {
    int kind; /* tch_thrift_kind or TCH_THRIFT_KIND_REF */
    tch_thrift_type *elem, *val;
    tch_thrift_struct *st;
    tch_thrift_enum *en;
    /* for references: the name as written, where, and in which file */
    const char *ref;
    idl_doc *doc;
    int line, col;
};

/* A const expression as written; turned into a tch_thrift_value against its
 * declared type when the IDL is resolved. */
typedef enum cexpr_kind { CEXPR_INT, CEXPR_DOUBLE, CEXPR_STRING, CEXPR_IDENT, CEXPR_LIST, CEXPR_MAP } cexpr_kind;
typedef struct cexpr {
    cexpr_kind kind;
    int64_t i;
    double d;
    const char *s; /* string bytes (len slen) or identifier */
    size_t slen;
    ptrvec items; /* list elements, or map key,value,key,value... */
    idl_doc *doc;
    int line, col;
} cexpr;

struct tch_thrift_field {
    int16_t id;
    const char *name;
    tch_thrift_type *type;
    tch_thrift_req req;
    cexpr *defexpr;
    tch_thrift_value *def;
    int line, col;
};

struct tch_thrift_struct {
    const char *name;
    tch_thrift_struct_kind kind;
    ptrvec fields; /* tch_thrift_field*, sorted by id once resolved */
    tch_thrift_type self;
    idl_doc *doc;
    int line, col;
};

typedef struct enum_item {
    const char *name;
    int32_t value;
} enum_item;

struct tch_thrift_enum {
    const char *name;
    ptrvec items; /* enum_item* */
    tch_thrift_type self;
};

typedef struct idl_typedef {
    const char *name;
    tch_thrift_type *type;
    int resolving;
} idl_typedef;

typedef struct idl_const {
    const char *name;
    tch_thrift_type *type;
    cexpr *expr;
    tch_thrift_value *value;
    int resolving;
    idl_doc *doc;
} idl_const;

struct tch_thrift_method {
    const char *name;
    int oneway;
    tch_thrift_type *ret; /* NULL: void */
    tch_thrift_struct *args, *result;
    ptrvec throws; /* tch_thrift_field* */
    tch_thrift_service *service;
    int line, col;
};

struct tch_thrift_service {
    const char *name;
    const char *extends_name;
    int ext_line, ext_col;
    tch_thrift_service *extends;
    ptrvec methods; /* tch_thrift_method* */
    idl_doc *doc;
};

typedef struct idl_include {
    const char *alias; /* file name without directory and .thrift */
    idl_doc *doc;
} idl_include;

struct idl_doc {
    const char *path;
    ptrvec includes; /* idl_include* */
    ptrvec typedefs, consts, enums, structs, services;
};

struct tch_thrift_idl {
    arena ar;
    idl_doc *root;
    ptrvec docs;   /* idl_doc*, root first */
    ptrvec values; /* tch_thrift_value* owned by the IDL (consts, defaults) */
};

/* Follows nothing: types are resolved in place, so kind is final. */
const char *tch_thrift_kind_name(int kind);

/* value internals */
struct tch_thrift_value {
    tch_thrift_kind kind;
    union {
        int64_t i;
        double d;
        struct {
            uint8_t *ptr;
            size_t len;
        } s;
        struct {
            tch_thrift_value **items; /* struct: fields; map: key,val pairs */
            int16_t *ids;             /* struct only */
            size_t n, cap;            /* n counts entries (pairs for maps) */
        } c;
    } u;
};

/* Parses one file's text into doc (loader internals, idl_parse.c). */
typedef struct idl_loader idl_loader;
int tch__idl_parse_doc(idl_loader *ld, idl_doc *doc, tch_slice text);
/* Loads an included file relative to from (idl_load.c). */
int tch__idl_load_include(idl_loader *ld, idl_doc *from, const char *inc_path, int line, int col, idl_doc **out);
arena *tch__idl_loader_arena(idl_loader *ld);
tch_error *tch__idl_loader_err(idl_loader *ld);
/* Registers a reference type for resolution after parsing. */
int tch__idl_loader_add_ref(idl_loader *ld, tch_thrift_type *t);

/* Name lookup in d ("Name" or "inc.Name"), over one kind of definition. */
void *tch__idl_lookup(const idl_doc *d, const ptrvec *(*list)(const idl_doc *), const char *name);
const ptrvec *tch__idl_list_typedefs(const idl_doc *d);
const ptrvec *tch__idl_list_structs(const idl_doc *d);
const ptrvec *tch__idl_list_enums(const idl_doc *d);
const ptrvec *tch__idl_list_services(const idl_doc *d);
const ptrvec *tch__idl_list_consts(const idl_doc *d);

/* Resolution (tch__idl_resolve.c) */
int tch__idl_resolve(tch_thrift_idl *idl, ptrvec *refs, tch_error *err);

#endif
