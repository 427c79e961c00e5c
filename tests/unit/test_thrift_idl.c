/* IDL loader: every construct, resolution across includes, and errors that
 * name file:line:column. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <tchannel/thrift.h>

static int load_str(const char *text, tch_thrift_idl **idl, tch_error *err) {
    return tch_thrift_load_string("t.thrift", tch_slice_cstr(text), NULL, idl, err);
}

/* Asserts loading fails with TCH_EPARSE and a message containing want. */
static void expect_error(const char *text, const char *want) {
    tch_thrift_idl *idl = NULL;
    tch_error err = {0};
    int rc = load_str(text, &idl, &err);
    if (rc != TCH_EPARSE || !strstr(err.msg, want))
        print_error("rc %d msg \"%s\", wanted \"%s\"\n", rc, err.msg, want);
    assert_int_equal(rc, TCH_EPARSE);
    assert_non_null(strstr(err.msg, want));
    assert_null(idl);
}

static void keyvalue_cassette_idl(void **state) {
    (void)state;
    tch_thrift_idl *idl;
    tch_error err = {0};
    assert_int_equal(tch_thrift_load(TCH_SOURCE_DIR "/cassettes/keyvalue.thrift", &idl, &err), 0);
    const tch_thrift_service *kv = tch_thrift_idl_find_service(idl, "KeyValue");
    assert_non_null(kv);
    const tch_thrift_method *get = tch_thrift_service_find_method(kv, "getValue");
    assert_non_null(get);
    assert_int_equal(tch_thrift_type_kind(tch_thrift_method_return_type(get)), TCH_THRIFT_STRING);
    const tch_thrift_struct *args = tch_thrift_method_args(get);
    assert_string_equal(tch_thrift_struct_name(args), "KeyValue_getValue_args");
    assert_string_equal(tch_thrift_field_name(tch_thrift_struct_field_by_id(args, 1)), "key");
    const tch_thrift_struct *res = tch_thrift_method_result(get);
    assert_int_equal(tch_thrift_struct_field_count(res), 2);
    assert_string_equal(tch_thrift_field_name(tch_thrift_struct_field_at(res, 0)), "success");
    const tch_thrift_field *nf = tch_thrift_struct_field_by_name(res, "notFound");
    assert_int_equal(tch_thrift_field_id(nf), 1);
    assert_ptr_equal(tch_thrift_type_struct(tch_thrift_field_type(nf)), tch_thrift_idl_find_struct(idl, "NotFoundError"));
    const tch_thrift_method *set = tch_thrift_service_find_method(kv, "setValue");
    assert_null(tch_thrift_method_return_type(set));
    assert_int_equal(tch_thrift_struct_field_count(tch_thrift_method_result(set)), 0);
    assert_null(tch_thrift_service_find_method(kv, "nope"));
    tch_thrift_idl_free(idl);
}

static void rich_idl_every_construct(void **state) {
    (void)state;
    tch_thrift_idl *idl;
    tch_error err = {0};
    int rc = tch_thrift_load(TCH_SOURCE_DIR "/tests/thrift-ref/rich.thrift", &idl, &err);
    if (rc)
        print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    /* enums: implicit and explicit values, across includes */
    const tch_thrift_enum *st = tch_thrift_idl_find_enum(idl, "Status");
    int32_t v;
    assert_int_equal(tch_thrift_enum_value_of(st, "INACTIVE", &v), 0);
    assert_int_equal(v, 2);
    assert_int_equal(tch_thrift_enum_value_of(st, "PURGED", &v), 0);
    assert_int_equal(v, 11);
    const tch_thrift_enum *color = tch_thrift_idl_find_enum(idl, "rich_base.Color");
    assert_non_null(color);
    assert_string_equal(tch_thrift_enum_name_of(color, 6), "VIOLET");
    /* consts */
    const tch_thrift_type *ct;
    const tch_thrift_value *c = tch_thrift_idl_find_const(idl, "MAX_ITEMS", &ct);
    assert_int_equal(tch_thrift_value_int(c), 100);
    assert_int_equal(tch_thrift_value_int(tch_thrift_idl_find_const(idl, "ALIAS", NULL)), 100);
    assert_int_equal(tch_thrift_value_int(tch_thrift_idl_find_const(idl, "BIG", NULL)), INT64_MAX);
    assert_int_equal(tch_thrift_value_int(tch_thrift_idl_find_const(idl, "NEG", NULL)), -7);
    assert_int_equal(tch_thrift_value_bool(tch_thrift_idl_find_const(idl, "YES", NULL)), 1);
    assert_int_equal(tch_thrift_value_int(tch_thrift_idl_find_const(idl, "FAVORITE", &ct)), 1);
    assert_int_equal(tch_thrift_type_kind(ct), TCH_THRIFT_ENUM);
    assert_true(tch_thrift_value_double(tch_thrift_idl_find_const(idl, "TWO", NULL)) == 2.0);
    tch_slice g = tch_thrift_value_bytes(tch_thrift_idl_find_const(idl, "GREETING", NULL));
    assert_true(tch_slice_eq_cstr(g, "hello \"world\""));
    const tch_thrift_value *primes = tch_thrift_idl_find_const(idl, "PRIMES", NULL);
    assert_int_equal(tch_thrift_value_count(primes), 4);
    assert_int_equal(tch_thrift_value_int(tch_thrift_value_at(primes, 3)), 7);
    const tch_thrift_value *ages = tch_thrift_idl_find_const(idl, "AGES", NULL);
    assert_int_equal(tch_thrift_value_int(tch_thrift_value_map_value_at(ages, 1)), 42);
    /* structs: typedefs resolved, defaults, requiredness, kinds */
    const tch_thrift_struct *ev = tch_thrift_idl_find_struct(idl, "Everything");
    const tch_thrift_field *when = tch_thrift_struct_field_by_name(ev, "when");
    assert_int_equal(tch_thrift_type_kind(tch_thrift_field_type(when)), TCH_THRIFT_I64);
    assert_int_equal(tch_thrift_field_req(when), TCH_THRIFT_REQ_OPTIONAL);
    const tch_thrift_field *id = tch_thrift_struct_field_by_id(ev, 25);
    assert_int_equal(tch_thrift_field_req(id), TCH_THRIFT_REQ_REQUIRED);
    assert_true(tch_slice_eq_cstr(tch_thrift_value_bytes(tch_thrift_field_default(id)), "none"));
    const tch_thrift_field *origin = tch_thrift_struct_field_by_name(ev, "origin");
    assert_int_equal(tch_thrift_value_int(tch_thrift_value_struct_get(tch_thrift_field_default(origin), 2)), 2);
    const tch_thrift_type *deep = tch_thrift_field_type(tch_thrift_struct_field_by_name(ev, "deep"));
    assert_int_equal(tch_thrift_type_kind(deep), TCH_THRIFT_LIST);
    assert_int_equal(tch_thrift_type_kind(tch_thrift_type_elem(deep)), TCH_THRIFT_MAP);
    assert_int_equal(tch_thrift_type_kind(tch_thrift_type_value(tch_thrift_type_elem(deep))), TCH_THRIFT_SET);
    const tch_thrift_type *color_t = tch_thrift_field_type(tch_thrift_struct_field_by_name(ev, "color"));
    assert_ptr_equal(tch_thrift_type_enum(color_t), color);
    assert_int_equal(tch_thrift_struct_kind_of(tch_thrift_idl_find_struct(idl, "Shape")), TCH_THRIFT_STRUCT_UNION);
    assert_int_equal(tch_thrift_struct_kind_of(tch_thrift_idl_find_struct(idl, "Oops")), TCH_THRIFT_STRUCT_EXCEPTION);
    /* services: extends across an include, oneway, throws, param defaults */
    const tch_thrift_service *rich = tch_thrift_idl_find_service(idl, "Rich");
    assert_ptr_equal(tch_thrift_service_extends(rich), tch_thrift_idl_find_service(idl, "rich_base.BaseService"));
    const tch_thrift_method *ping = tch_thrift_service_find_method(rich, "ping");
    assert_non_null(ping);
    assert_string_equal(tch_thrift_service_name(tch_thrift_method_service(ping)), "BaseService");
    assert_true(tch_thrift_method_is_oneway(tch_thrift_service_find_method(rich, "fire")));
    const tch_thrift_method *nothing = tch_thrift_service_find_method(rich, "nothing");
    assert_int_equal(tch_thrift_struct_field_count(tch_thrift_method_result(nothing)), 2);
    const tch_thrift_method *echo = tch_thrift_service_find_method(rich, "echo");
    const tch_thrift_field *times = tch_thrift_struct_field_by_name(tch_thrift_method_args(echo), "times");
    assert_int_equal(tch_thrift_value_int(tch_thrift_field_default(times)), 1);
    tch_thrift_idl_free(idl);
}

static void comments_separators_annotations(void **state) {
    (void)state;
    const char *text = "# hash\n// slashes\n/* block\n comment */ namespace go foo.bar\n"
                       "cpp_include \"x.h\"\n"
                       "typedef i32 (a = \"b\") MyInt (c = \"d\");\n"
                       "enum E { A = -1, B, C = 0x10; D } (x = \"y\")\n"
                       "struct S { 1: MyInt a, 2: optional E e = E.B; 3: required list<MyInt> l (k = \"v\"),\n"
                       "  i16 implicit_id }\n"
                       "service Svc { oneway void f(1: S s), S g() throws (1: X x) (ann = \"1\"); }\n"
                       "exception X { 1: string m }\n";
    tch_thrift_idl *idl;
    tch_error err = {0};
    int rc = load_str(text, &idl, &err);
    if (rc)
        print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    const tch_thrift_enum *e = tch_thrift_idl_find_enum(idl, "E");
    assert_string_equal(tch_thrift_enum_name_of(e, 0), "B");
    assert_string_equal(tch_thrift_enum_name_of(e, 17), "D");
    const tch_thrift_struct *s = tch_thrift_idl_find_struct(idl, "S");
    assert_int_equal(tch_thrift_struct_field_count(s), 4);
    assert_int_equal(tch_thrift_field_id(tch_thrift_struct_field_at(s, 0)), -1); /* implicit ids are negative */
    assert_int_equal(tch_thrift_value_int(tch_thrift_field_default(tch_thrift_struct_field_by_id(s, 2))), 0);
    tch_thrift_idl_free(idl);
}

static void errors_name_line_and_column(void **state) {
    (void)state;
    expect_error("struct A {\n  1: i32 x\n  2 i32 y\n}", "t.thrift:3:5: expected ':', found 'i32'");
    expect_error("struct A { 1: Missing m }", "t.thrift:1:15: undefined type 'Missing'");
    expect_error("struct A {\n 1: i32 x", "t.thrift:2:10: expected field or '}', found end of file");
    expect_error("service S extends Nope {}", "t.thrift:1:19: undefined service 'Nope'");
    expect_error("/* never closed", "t.thrift:1:1: unterminated comment");
    expect_error("const i32 X = \"s\"", "t.thrift:1:15: const value does not match type i32");
    expect_error("const byte X = 300", "out of range");
    expect_error("const i32 X = Y", "undefined const or enum value 'Y'");
    expect_error("struct A { 1: i32 x, 1: i32 y }", "duplicate field id 1");
    expect_error("struct A {}\nstruct A {}", "t.thrift:2:8: 'A' is already defined");
    expect_error("typedef B A\ntypedef A B", "typedef cycle");
    expect_error("enum E { A = 1, B = 99999999999 }", "out of i32 range");
    expect_error("struct A { 1: i32 x } garbage", "expected definition, found 'garbage'");
    expect_error("service S { void f() throws (1: string s) }", "is not an exception");
    expect_error("struct A { 1: i32 x = }", "expected const value, found '}'");
    expect_error("service A extends B {} service B extends A {}", "extends itself");
    expect_error("struct A { 1: i32 @ }", "unexpected character '@'");
}

/* Struct values in the IDL are built as thriftrw builds them: missing
 * fields take their own defaults, so `= {}` and a const `{}` give B(id=5). */
static void struct_values_take_field_defaults(void **state) {
    (void)state;
    const char *text = "struct B { 1: optional i64 id = 5; 2: optional string s }\n"
                       "struct H { 1: optional B b = {} }\n"
                       "const B CB = {}\n";
    tch_thrift_idl *idl = NULL;
    tch_error err = {0};
    if (load_str(text, &idl, &err))
        fail_msg("load: %s", err.msg);
    const tch_thrift_value *cb = tch_thrift_idl_find_const(idl, "CB", NULL);
    assert_non_null(cb);
    assert_non_null(tch_thrift_value_struct_get(cb, 1));
    assert_int_equal(tch_thrift_value_int(tch_thrift_value_struct_get(cb, 1)), 5);
    assert_null(tch_thrift_value_struct_get(cb, 2)); /* optional, no default */
    const tch_thrift_field *f = tch_thrift_struct_field_by_name(tch_thrift_idl_find_struct(idl, "H"), "b");
    const tch_thrift_value *def = tch_thrift_field_default(f);
    assert_non_null(def);
    assert_int_equal(tch_thrift_value_int(tch_thrift_value_struct_get(def, 1)), 5);
    tch_thrift_idl_free(idl);
}

static void expect_string_const(const tch_thrift_idl *idl, const char *name, const char *want,
                                size_t len) {
    const tch_thrift_value *v = tch_thrift_idl_find_const(idl, name, NULL);
    assert_non_null(v);
    tch_slice s = tch_thrift_value_bytes(v);
    if (s.len != len || memcmp(s.ptr, want, len) != 0)
        fail_msg("%s: got %zu bytes \"%.*s\"", name, s.len, (int)s.len, (const char *)s.ptr);
}

/* String escapes read as thriftrw reads them (JavaScript's), numbers may
 * start with a dot, and a UTF-8 byte order mark opens a file. */
static void literals_read_as_thriftrw_reads_them(void **state) {
    (void)state;
    const char *text = "\xef\xbb\xbf// a BOM first\n"
                       "const string U = \"a\\u0041\\u00e9\\ud83d\\ude00\"\n"
                       "const string X = 'x\\x41\\xe9'\n"
                       "const string C = \"\\b\\f\\n\\r\\t\\v\\\\\\\"\\'\\q\"\n"
                       "const string Z = \"a\\0b\"\n"
                       "const string K = \"con\\\r\ntinued\"\n"
                       "const string L = \"\\udc00\"\n"
                       "const double H = .5\n"
                       "const double N = -.25e1\n";
    tch_thrift_idl *idl = NULL;
    tch_error err = {0};
    if (load_str(text, &idl, &err))
        fail_msg("load: %s", err.msg);
    expect_string_const(idl, "U", "aA\xc3\xa9\xf0\x9f\x98\x80", 8);
    expect_string_const(idl, "X", "xA\xc3\xa9", 4);
    expect_string_const(idl, "C", "\b\f\n\r\t\v\\\"'q", 10);
    expect_string_const(idl, "Z", "a\0b", 3);
    expect_string_const(idl, "K", "continued", 9); /* a line continuation with CRLF */
    expect_string_const(idl, "L", "\xef\xbf\xbd", 3); /* a lone surrogate: U+FFFD */
    assert_true(tch_thrift_value_double(tch_thrift_idl_find_const(idl, "H", NULL)) == 0.5);
    assert_true(tch_thrift_value_double(tch_thrift_idl_find_const(idl, "N", NULL)) == -2.5);
    tch_thrift_idl_free(idl);
    expect_error("const string S = \"a\\1\"", "t.thrift:1:18: invalid escape '\\1' in string literal (at byte 2)");
    expect_error("const string S = 'a\\u12'", "invalid escape '\\u12'");
    expect_error("const string S = 'a\\xZZ'", "invalid escape '\\xZZ'");
}

/* A value that breaks its struct's rules fails the load, at the value. */
static void invalid_struct_values_fail_the_load(void **state) {
    (void)state;
    expect_error("struct R { 1: required string s }\nconst R CR = {}\n",
                 "t.thrift:2:14: R: required field 's' missing");
    expect_error("struct R { 1: required string s }\nstruct H { 2: optional R r = {} }\n",
                 "t.thrift:2:30: R: required field 's' missing");
    expect_error("union U { 1: i32 a; 2: i32 b }\nconst U CU = {\"a\": 1, \"b\": 2}\n",
                 "t.thrift:2:14: union U: more than one field set");
}

/* As thriftrw: a service may not define a method it inherits again. */
static void inherited_methods_are_not_redefined(void **state) {
    (void)state;
    expect_error("service Baz { void bar() }\nservice Foo extends Baz { i32 bar() }\n",
                 "Foo.bar: already defined in base service Baz");
    expect_error("service A { void x() }\nservice B extends A { void y() }\n"
                 "service C extends B { void x() }\n",
                 "t.thrift:3:");
}

static void nesting_is_bounded(void **state) {
    (void)state;
    char text[2048] = "struct A { 1: ";
    for (int i = 0; i < 100; i++)
        strcat(text, "list<");
    strcat(text, "i32");
    for (int i = 0; i < 100; i++)
        strcat(text, ">");
    strcat(text, " x }");
    expect_error(text, "nested too deeply");
    char val[1024] = "const list<i32> X = ";
    for (int i = 0; i < 200; i++)
        strcat(val, "[");
    expect_error(val, "nested too deeply");
}

/* In-memory files for include tests. */
typedef struct mem_file {
    const char *path, *text;
} mem_file;

static int mem_read(const char *path, tch_buf *out, tch_error *err, void *ud) {
    for (const mem_file *f = ud; f->path; f++)
        if (strcmp(f->path, path) == 0)
            return tch_buf_append(out, f->text, strlen(f->text)) ? TCH_ENOMEM : 0;
    return tch_error_set(err, TCH_ENOTFOUND, "%s: no such file", path);
}

static int load_mem(const mem_file *files, tch_thrift_idl **idl, tch_error *err) {
    tch_thrift_reader r = {mem_read, (void *)files};
    return tch_thrift_load_string(files[0].path, tch_slice_cstr(files[0].text), &r, idl, err);
}

static void include_cycles_are_rejected_with_the_chain(void **state) {
    (void)state;
    mem_file files[] = {{"dir/a.thrift", "include \"b.thrift\"\nstruct A {}"},
                        {"dir/b.thrift", "include \"sub/../c.thrift\"\n"},
                        {"dir/c.thrift", "\n  include \"./a.thrift\""},
                        {NULL, NULL}};
    tch_thrift_idl *idl = NULL;
    tch_error err = {0};
    assert_int_equal(load_mem(files, &idl, &err), TCH_EPARSE);
    assert_string_equal(err.msg, "dir/c.thrift:2:11: include cycle: dir/a.thrift -> dir/b.thrift -> dir/c.thrift -> "
                                 "dir/a.thrift");
    assert_null(idl);
}

static void includes_resolve_types_services_and_diamonds(void **state) {
    (void)state;
    mem_file files[] = {
        {"main.thrift", "include \"lib/base.thrift\"\ninclude \"lib/other.thrift\"\n"
                        "service Main extends base.Base { base.Thing get(1: other.Id id) }"},
        {"lib/base.thrift", "include \"common.thrift\"\nstruct Thing { 1: common.Id id }\n"
                            "service Base { void ping() }"},
        {"lib/other.thrift", "include \"common.thrift\"\ntypedef common.Id Id"},
        {"lib/common.thrift", "typedef string Id"},
        {NULL, NULL}};
    tch_thrift_idl *idl;
    tch_error err = {0};
    int rc = load_mem(files, &idl, &err);
    if (rc)
        print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    const tch_thrift_service *m = tch_thrift_idl_find_service(idl, "Main");
    assert_non_null(tch_thrift_service_find_method(m, "ping"));
    const tch_thrift_method *get = tch_thrift_service_find_method(m, "get");
    assert_ptr_equal(tch_thrift_type_struct(tch_thrift_method_return_type(get)), tch_thrift_idl_find_struct(idl, "base.Thing"));
    const tch_thrift_field *f = tch_thrift_struct_field_by_id(tch_thrift_method_args(get), 1);
    assert_int_equal(tch_thrift_type_kind(tch_thrift_field_type(f)), TCH_THRIFT_STRING);
    assert_null(tch_thrift_idl_find_struct(idl, "nope.Thing"));
    tch_thrift_idl_free(idl);

    mem_file missing[] = {{"m.thrift", "include \"gone.thrift\""}, {NULL, NULL}};
    assert_int_equal(load_mem(missing, &idl, &err), TCH_ENOTFOUND);
    assert_non_null(strstr(err.msg, "m.thrift:1:9: cannot include 'gone.thrift'"));
}

static void missing_file_is_not_found(void **state) {
    (void)state;
    tch_thrift_idl *idl;
    tch_error err = {0};
    assert_int_equal(load_str("include \"x.thrift\"", &idl, &err), TCH_EINVAL);
    assert_non_null(strstr(err.msg, "t.thrift:1:9: cannot include 'x.thrift': no file reader given"));
    assert_int_equal(tch_thrift_load("/nonexistent/x.thrift", &idl, &err), TCH_ENOTFOUND);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keyvalue_cassette_idl),
        cmocka_unit_test(rich_idl_every_construct),
        cmocka_unit_test(comments_separators_annotations),
        cmocka_unit_test(errors_name_line_and_column),
        cmocka_unit_test(struct_values_take_field_defaults),
        cmocka_unit_test(invalid_struct_values_fail_the_load),
        cmocka_unit_test(literals_read_as_thriftrw_reads_them),
        cmocka_unit_test(inherited_methods_are_not_redefined),
        cmocka_unit_test(nesting_is_bounded),
        cmocka_unit_test(include_cycles_are_rejected_with_the_chain),
        cmocka_unit_test(includes_resolve_types_services_and_diamonds),
        cmocka_unit_test(missing_file_is_not_found),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
