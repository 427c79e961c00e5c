/* The IDL the Thrift fuzz targets decode into: every type, nested
 * containers, a union, an enum, a recursive struct and an IDL default. */
#ifndef TCH_FUZZ_RICH_IDL_H
#define TCH_FUZZ_RICH_IDL_H

static const char RICH_IDL[] =
    "enum E { A, B = 5 }\n"
    "struct P { 1: required i32 x, 2: optional i64 y }\n"
    "union U { 1: P p, 2: double d, 3: binary b }\n"
    "struct R {\n"
    "  1: bool t, 2: byte b, 3: i16 s, 4: i32 i, 5: i64 l, 6: double d, 7: string str, 8: binary bin,\n"
    "  9: E e, 10: list<P> ps, 11: set<string> ss, 12: map<i32, list<map<string, U>>> deep,\n"
    "  13: map<E, set<i16>> es, 14: R next, 15: U u, 16: list<list<binary>> ll, 17: i32 dflt = 7\n"
    "}\n";

#endif
