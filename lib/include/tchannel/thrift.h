/* Run-time Thrift: load .thrift IDL files (no code generation), hold values in
 * a dynamic model, encode/decode them with the strict TBinaryProtocol (no
 * message envelope, as TChannel's Thrift scheme carries structs in arg3),
 * convert them to and from JSON, and the TChannel Thrift conventions (arg1
 * "Service::method", arg2 application headers, result structs).
 *
 * Everything here is pure: no sockets, no global state. The only function
 * that touches the file system is tch_thrift_load() (through the default
 * reader); tch_thrift_load_string() reads includes only through a reader the
 * caller passes.
 *
 * Errors follow tchannel/common.h: int return 0 or negative TCH_E*, details in
 * the caller's tch_error (may be NULL). IDL errors read
 * "path:line:column: expected X, found Y".
 *
 * JSON mapping (tch_thrift_to_json / tch_thrift_from_json):
 *   struct, union, exception -> object keyed by field NAME, fields in id order,
 *                               unset fields omitted; on input an unknown key
 *                               or a missing required field (without default)
 *                               is an error, null means "unset", and unset
 *                               fields with an IDL default get that default
 *                               (as generated constructors do).
 *   bool -> true/false; byte/i16/i32/i64 -> JSON integer (range checked on
 *   input); double -> JSON real (integers accepted on input; NaN/Inf cannot be
 *   written).
 *   string -> JSON string (must be valid UTF-8).
 *   binary -> base64 string (RFC 4648, standard alphabet, padded): what yab
 *             (the TChannel/YARPC command-line client) and Apache Thrift's JSON
 *             protocols do. Input: a base64 string, or an array of byte values.
 *   enum   -> the value's name; an integer with no name in the enum is written
 *             as a JSON integer. Input: a name or an integer.
 *   list, set -> array, in order (sets keep wire/insertion order, no dedup).
 *   map with string or enum keys -> object (keys the string / enum name);
 *   map with any other key type -> array of {"key": k, "value": v} objects,
 *             so ints, structs and containers as keys round-trip exactly.
 *             A map whose keys repeat (the wire allows it) cannot be an
 *             object: writing one is an error, as are two spellings of one
 *             enum key ("RED" and "1") on input.
 *
 * Decoding follows generated Apache Thrift code: unknown field ids are
 * skipped, a known id arriving with a different wire type is skipped too;
 * missing required fields are an error naming struct and field. Trailing bytes
 * after the struct's STOP are an error. Nesting is bounded by
 * TCH_THRIFT_MAX_DEPTH and every length is checked against the bytes left
 * before anything is allocated. Decoding does not fill IDL defaults (the value
 * says what was on the wire).
 *
 * Unions: more than one field set is an error both ways, as in thriftrw-go
 * and Apache Thrift's generated code. An empty union (just STOP) is accepted
 * both ways, as the Node peer does; thriftrw-go and Apache Thrift refuse it,
 * so a value meant for them should set exactly one field. (The Node peer's
 * thriftrw 3.12 counts no fields at all: it writes an empty union as 00 and
 * reads two fields without complaint.)
 */
#ifndef TCHANNEL_THRIFT_H
#define TCHANNEL_THRIFT_H

#include <stdint.h>
#include <tchannel/common.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; the rest of the library is hidden */

#define TCH_THRIFT_MAX_DEPTH 64

/* ---- Loaded IDL (opaque; every pointer below is borrowed and valid until
 * tch_thrift_idl_free of the IDL it came from) ---- */
typedef struct tch_thrift_idl tch_thrift_idl;
typedef struct tch_thrift_service tch_thrift_service;
typedef struct tch_thrift_method tch_thrift_method;
typedef struct tch_thrift_struct tch_thrift_struct;
typedef struct tch_thrift_field tch_thrift_field;
typedef struct tch_thrift_type tch_thrift_type;
typedef struct tch_thrift_enum tch_thrift_enum;
typedef struct tch_thrift_value tch_thrift_value;

/* Reads a whole file for the loader. Returns 0 and fills out (caller frees
 * it with tch_buf_free), or a negative TCH_E* with err set. */
typedef int (*tch_thrift_read_cb)(const char *path, tch_buf *out, tch_error *err, void *ud);
typedef struct tch_thrift_reader {
    tch_thrift_read_cb read;
    void *ud;
} tch_thrift_reader;

/* Loads path and everything it includes (relative to the including file).
 * On success *out owns the IDL; free it with tch_thrift_idl_free. Returns
 * 0, TCH_EINVAL (a NULL argument), TCH_ENOTFOUND / TCH_EIO / TCH_ETOOBIG
 * (a file missing, unreadable, too big), TCH_EPARSE (bad IDL:
 * path:line:column), TCH_ENOMEM. */
int tch_thrift_load(const char *path, tch_thrift_idl **out, tch_error *err);
/* Same, from text in memory; name is used in error messages and as the base
 * for includes, which are read through reader (NULL: includes are an error).
 * Returns as tch_thrift_load, the reader's codes for includes. */
int tch_thrift_load_string(const char *name, tch_slice text, const tch_thrift_reader *reader,
                           tch_thrift_idl **out, tch_error *err);
void tch_thrift_idl_free(tch_thrift_idl *idl);

/* Lookups by name: "Name" searches the root file first, then included files in
 * load order; "inc.Name" searches the file the root includes as inc. NULL when
 * absent. */
const tch_thrift_service *tch_thrift_idl_find_service(const tch_thrift_idl *idl, const char *name);
/* struct, union or exception */
const tch_thrift_struct *tch_thrift_idl_find_struct(const tch_thrift_idl *idl, const char *name);
const tch_thrift_enum *tch_thrift_idl_find_enum(const tch_thrift_idl *idl, const char *name);
/* A const's value and type (NULL when absent). */
const tch_thrift_value *tch_thrift_idl_find_const(const tch_thrift_idl *idl, const char *name,
                                                  const tch_thrift_type **type);

/* ---- Services and methods ---- */
const char *tch_thrift_service_name(const tch_thrift_service *s);
const tch_thrift_service *tch_thrift_service_extends(const tch_thrift_service *s); /* or NULL */
size_t tch_thrift_service_method_count(const tch_thrift_service *s); /* own methods only */
const tch_thrift_method *tch_thrift_service_method_at(const tch_thrift_service *s, size_t i);
/* Searches s, then what it extends (across includes). */
const tch_thrift_method *tch_thrift_service_find_method(const tch_thrift_service *s, const char *name);

const char *tch_thrift_method_name(const tch_thrift_method *m);
const tch_thrift_service *tch_thrift_method_service(const tch_thrift_method *m); /* declaring one */
bool tch_thrift_method_is_oneway(const tch_thrift_method *m);
const tch_thrift_type *tch_thrift_method_return_type(const tch_thrift_method *m); /* NULL: void */
/* "<Service>_<method>_args": the parameters at their ids. */
const tch_thrift_struct *tch_thrift_method_args(const tch_thrift_method *m);
/* "<Service>_<method>_result": field 0 "success" (absent for void), then the
 * declared exceptions at their ids; all optional. */
const tch_thrift_struct *tch_thrift_method_result(const tch_thrift_method *m);

/* ---- Structs, fields, types, enums ---- */
typedef enum tch_thrift_struct_kind {
    TCH_THRIFT_STRUCT_PLAIN = 1,
    TCH_THRIFT_STRUCT_UNION,
    TCH_THRIFT_STRUCT_EXCEPTION,
} tch_thrift_struct_kind;

typedef enum tch_thrift_req {
    TCH_THRIFT_REQ_DEFAULT = 0, /* neither keyword: written when set, not required on read */
    TCH_THRIFT_REQ_REQUIRED,
    TCH_THRIFT_REQ_OPTIONAL,
} tch_thrift_req;

const char *tch_thrift_struct_name(const tch_thrift_struct *st);
tch_thrift_struct_kind tch_thrift_struct_kind_of(const tch_thrift_struct *st);
size_t tch_thrift_struct_field_count(const tch_thrift_struct *st);
const tch_thrift_field *tch_thrift_struct_field_at(const tch_thrift_struct *st, size_t i); /* id order */
const tch_thrift_field *tch_thrift_struct_field_by_id(const tch_thrift_struct *st, int16_t id);
const tch_thrift_field *tch_thrift_struct_field_by_name(const tch_thrift_struct *st, const char *name);

int16_t tch_thrift_field_id(const tch_thrift_field *f);
const char *tch_thrift_field_name(const tch_thrift_field *f);
const tch_thrift_type *tch_thrift_field_type(const tch_thrift_field *f);
tch_thrift_req tch_thrift_field_req(const tch_thrift_field *f);
const tch_thrift_value *tch_thrift_field_default(const tch_thrift_field *f); /* or NULL */

/* Type kinds. Typedefs are resolved away: a field typed by a typedef reports
 * the kind of what the typedef names. */
typedef enum tch_thrift_kind {
    TCH_THRIFT_BOOL = 1,
    TCH_THRIFT_BYTE, /* byte and i8 */
    TCH_THRIFT_I16,
    TCH_THRIFT_I32,
    TCH_THRIFT_I64,
    TCH_THRIFT_DOUBLE,
    TCH_THRIFT_STRING,
    TCH_THRIFT_BINARY,
    TCH_THRIFT_ENUM,   /* values are I32 values */
    TCH_THRIFT_STRUCT, /* struct, union or exception */
    TCH_THRIFT_LIST,
    TCH_THRIFT_SET,
    TCH_THRIFT_MAP,
} tch_thrift_kind;

tch_thrift_kind tch_thrift_type_kind(const tch_thrift_type *t);
const tch_thrift_type *tch_thrift_type_elem(const tch_thrift_type *t);  /* list/set element, map key */
const tch_thrift_type *tch_thrift_type_value(const tch_thrift_type *t); /* map value */
const tch_thrift_struct *tch_thrift_type_struct(const tch_thrift_type *t);
const tch_thrift_enum *tch_thrift_type_enum(const tch_thrift_type *t);

const char *tch_thrift_enum_name(const tch_thrift_enum *e);
/* Name of value v, or NULL. */
const char *tch_thrift_enum_name_of(const tch_thrift_enum *e, int32_t v);
/* 0 and *v, or TCH_ENOTFOUND. */
int tch_thrift_enum_value_of(const tch_thrift_enum *e, const char *name, int32_t *v);

/* ---- Dynamic values ----
 * A value is a tree the caller owns from a _new_ call until tch_thrift_value_free
 * (which frees the whole tree). Functions ending in _take take ownership of
 * their value argument, also when they fail. Accessors return borrowed
 * pointers valid while the parent lives and is not changed.
 * string and binary both use TCH_THRIFT_STRING values (bytes, not
 * NUL-terminated); enum fields use TCH_THRIFT_I32 values. Struct values hold
 * fields by id; union, exception, args and result structs are struct values. */
tch_thrift_value *tch_thrift_value_new_bool(bool b);
tch_thrift_value *tch_thrift_value_new_byte(int8_t v);
tch_thrift_value *tch_thrift_value_new_i16(int16_t v);
tch_thrift_value *tch_thrift_value_new_i32(int32_t v);
tch_thrift_value *tch_thrift_value_new_i64(int64_t v);
tch_thrift_value *tch_thrift_value_new_double(double v);
tch_thrift_value *tch_thrift_value_new_string(tch_slice bytes); /* copies */
tch_thrift_value *tch_thrift_value_new_struct(void);
tch_thrift_value *tch_thrift_value_new_list(void);
tch_thrift_value *tch_thrift_value_new_set(void);
tch_thrift_value *tch_thrift_value_new_map(void);
tch_thrift_value *tch_thrift_value_copy(const tch_thrift_value *v); /* deep; NULL on ENOMEM */
void tch_thrift_value_free(tch_thrift_value *v);                   /* NULL is fine */

/* Kind of a value: one of BOOL BYTE I16 I32 I64 DOUBLE STRING STRUCT LIST SET MAP. */
tch_thrift_kind tch_thrift_value_kind(const tch_thrift_value *v);
bool tch_thrift_value_bool(const tch_thrift_value *v);
int64_t tch_thrift_value_int(const tch_thrift_value *v); /* any integer kind or bool */
double tch_thrift_value_double(const tch_thrift_value *v);
tch_slice tch_thrift_value_bytes(const tch_thrift_value *v); /* STRING; borrowed */
/* Deep equality (doubles compared bitwise so NaN equals itself). */
bool tch_thrift_value_equal(const tch_thrift_value *a, const tch_thrift_value *b);

/* Struct fields: set replaces an existing value with the same id.
 * The _take functions return 0, TCH_EINVAL (the container is not of that
 * kind, a NULL value), TCH_ENOMEM. */
int tch_thrift_value_struct_set_take(tch_thrift_value *st, int16_t id, tch_thrift_value *field);
const tch_thrift_value *tch_thrift_value_struct_get(const tch_thrift_value *st, int16_t id);
/* Field ids in the order they were set (or decoded). */
size_t tch_thrift_value_struct_count(const tch_thrift_value *st);
const tch_thrift_value *tch_thrift_value_struct_at(const tch_thrift_value *st, size_t i, int16_t *id);

/* Lists and sets (sets keep insertion order and are not deduplicated). */
int tch_thrift_value_append_take(tch_thrift_value *list_or_set, tch_thrift_value *elem);
size_t tch_thrift_value_count(const tch_thrift_value *v); /* list/set elements, map entries */
const tch_thrift_value *tch_thrift_value_at(const tch_thrift_value *list_or_set, size_t i);

/* Maps keep insertion order; put does not look for an existing key. */
int tch_thrift_value_map_put_take(tch_thrift_value *map, tch_thrift_value *key, tch_thrift_value *val);
const tch_thrift_value *tch_thrift_value_map_key_at(const tch_thrift_value *map, size_t i);
const tch_thrift_value *tch_thrift_value_map_value_at(const tch_thrift_value *map, size_t i);

/* ---- Binary protocol (strict TBinaryProtocol, struct only, no envelope) ---- */
/* Appends the encoding of struct value v (of type st) to out. Fields go out in
 * id order; a field id not in st, a missing required field, or a value of the
 * wrong kind is TCH_EINVAL with the struct and field named. Returns 0,
 * TCH_EINVAL, TCH_ENOMEM. */
int tch_thrift_encode(const tch_thrift_struct *st, const tch_thrift_value *v, tch_buf *out, tch_error *err);
/* Decodes exactly in (one struct of type st); *out is a new struct value.
 * Returns 0, TCH_EPROTO (malformed bytes, a missing required field,
 * trailing bytes, too deep; err says where), TCH_EINVAL, TCH_ENOMEM. */
int tch_thrift_decode(const tch_thrift_struct *st, tch_slice in, tch_thrift_value **out, tch_error *err);

/* ---- JSON (mapping described at the top of this file) ---- */
typedef struct json_t json_t;
/* *out is a new reference (json_decref it). These four return 0,
 * TCH_EINVAL (a value that does not fit the type; err names the field and
 * the path), TCH_ENOMEM. */
int tch_thrift_to_json(const tch_thrift_type *t, const tch_thrift_value *v, json_t **out, tch_error *err);
int tch_thrift_struct_to_json(const tch_thrift_struct *st, const tch_thrift_value *v, json_t **out,
                              tch_error *err);
/* *out is a new value the caller frees. */
int tch_thrift_from_json(const tch_thrift_type *t, const json_t *j, tch_thrift_value **out, tch_error *err);
int tch_thrift_struct_from_json(const tch_thrift_struct *st, const json_t *j, tch_thrift_value **out,
                                tch_error *err);

/* Method conveniences for clients, the VCR and the mock server (oneway
 * methods are TCH_EINVAL "not supported": TChannel Thrift has no oneway).
 * args: JSON object keyed by parameter name <-> encoded args struct.
 * result: {"success": v} (v is null for void) or {"<exceptionField>": {...}}
 * <-> encoded result struct. Return 0, TCH_EINVAL (oneway; JSON that does
 * not fit), TCH_EPROTO (bytes that do not decode), TCH_ENOMEM. */
int tch_thrift_method_args_from_json(const tch_thrift_method *m, const json_t *args, tch_buf *out,
                                     tch_error *err);
int tch_thrift_method_args_to_json(const tch_thrift_method *m, tch_slice bytes, json_t **out, tch_error *err);
int tch_thrift_method_result_from_json(const tch_thrift_method *m, const json_t *result, tch_buf *out,
                                       tch_error *err);
int tch_thrift_method_result_to_json(const tch_thrift_method *m, tch_slice bytes, json_t **out,
                                     tch_error *err);

/* ---- TChannel Thrift conventions ---- */
/* 0 for a method that can be called; TCH_EINVAL naming it for oneway. */
int tch_thrift_method_check_supported(const tch_thrift_method *m, tch_error *err);

/* arg1 is "Service::method". split gives borrowed views into arg1:
 * TCH_EPROTO when there is no "::". join: TCH_EINVAL for an empty name or
 * a service holding "::", TCH_ENOMEM. Both return 0 on success. */
int tch_thrift_arg1_split(tch_slice arg1, tch_slice *service, tch_slice *method, tch_error *err);
int tch_thrift_arg1_join(const char *service, const char *method, tch_buf *out, tch_error *err);

/* arg2 application headers: nh:2 then (k~2 v~2){nh}, big-endian. An empty
 * arg2 means no headers. */
/* *headers is a malloc'd array (free() it) of views into arg2, valid while
 * arg2's bytes are; NULL when *count is 0. Duplicate keys are kept.
 * Returns 0, TCH_EPROTO (malformed arg2), TCH_ENOMEM. */
int tch_thrift_headers_decode(tch_slice arg2, tch_kv **headers, size_t *count, tch_error *err);
/* Appends nh and the pairs (nh = 0 for count 0). Keys, values and count must
 * fit in 16 bits (TCH_ETOOBIG); an empty key or one given twice is
 * TCH_EINVAL, naming it (the Node peer refuses the whole arg2). Returns 0,
 * TCH_ETOOBIG, TCH_EINVAL, TCH_ENOMEM. */
int tch_thrift_headers_encode(const tch_kv *headers, size_t count, tch_buf *out, tch_error *err);

/* What a decoded result struct holds. */
typedef enum tch_thrift_outcome_kind {
    TCH_THRIFT_OUTCOME_SUCCESS = 1,   /* value is field 0 (NULL for void) */
    TCH_THRIFT_OUTCOME_EXCEPTION,     /* field is the declared exception, value its struct */
} tch_thrift_outcome_kind;
typedef struct tch_thrift_outcome {
    tch_thrift_outcome_kind kind;
    const tch_thrift_field *field;  /* result-struct field (success or exception) or NULL for void */
    const tch_thrift_value *value;  /* borrowed from the result value */
} tch_thrift_outcome;
/* Returns 0, TCH_EPROTO when a non-void method's result holds no value, or
 * more than one, TCH_EINVAL (not a struct value). */
int tch_thrift_result_classify(const tch_thrift_method *m, const tch_thrift_value *result,
                               tch_thrift_outcome *out, tch_error *err);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
