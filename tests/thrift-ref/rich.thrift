/* A rich IDL exercising every construct the loader supports. Used by the
 * byte-compatibility check against Apache Thrift's Python library and by the
 * unit tests. */
namespace py rich
namespace java com.example.rich
namespace * rich

include "rich_base.thrift"

typedef i64 Timestamp
typedef list<string> (note = "annotated type") Names
typedef rich_base.Color BaseColor
typedef Timestamp When  // typedef of a typedef

const i32 MAX_ITEMS = 100;
const string GREETING = 'hello "world"'
const list<i32> PRIMES = [2, 3, 5, 7,]
const map<string, i32> AGES = {"ann": 31, "bob": 42}
const double PI = 3.14159
const double TWO = 2
const i64 BIG = 0x7fffffffffffffff
const i16 NEG = -7
const bool YES = true
const rich_base.Color FAVORITE = rich_base.Color.GREEN
const set<string> EMPTY = []
const i32 ALIAS = MAX_ITEMS

enum Status {
  ACTIVE = 1,
  INACTIVE,       // 2
  DELETED = 10 (deprecated = "yes");
  PURGED          // 11
} (annotated = "enum")

struct Point {
  1: required i32 x
  2: required i32 y
} (python.hashable = "no")

union Shape {
  1: Point point,
  2: double radius,
  3: string label
}

exception Oops {
  1: string message
  2: i32 code = 42
}

struct Everything {
  1: bool flag
  2: byte b
  3: i8 b8
  4: i16 small
  5: i32 medium
  6: i64 big
  7: double ratio
  8: string text
  9: binary blob
  10: Status status = Status.ACTIVE
  11: list<i32> ints
  12: set<string> tags
  13: map<string, i64> counts
  14: map<i32, list<Point>> nested
  15: list<map<string, set<i16>>> deep
  16: Point origin = {"x": 1, "y": 2}
  17: Shape shape
  18: optional When when
  19: Names names = ["a", "b"]
  20: BaseColor color
  21: rich_base.Base base
  22: map<Status, string> by_status
  23: map<i64, double> by_num
  24: list<binary> blobs
  25: required string id = "none"
  26: optional list<Shape> shapes
  27: set<i32> ids
  28: map<string, map<string, list<double>>> grid (note = "nested maps")
}

struct Narrow {
  1: i32 a
  5: string s
}

// Same ids as Narrow plus extras: Narrow decoders must skip the extras.
struct Extended {
  1: i32 a
  2: list<map<i32, list<string>>> extra
  3: Point p
  4: set<double> ds
  5: string s
  6: map<string, Everything> all
  7: bool t
  8: byte by
  9: i16 sh
  10: i64 lo
  11: double d
  12: binary bin
}

// Field 1 has another wire type than in Narrow: skipped, as generated code does.
struct WrongType {
  1: string a
  5: string s
}

service Rich extends rich_base.BaseService {
  Everything echo(1: Everything e, 2: i32 times = 1) throws (1: Oops oops)
  oneway void fire(1: i32 x)
  void nothing() throws (1: Oops oops, 2: Oops other);
  map<string, Shape> shapes(1: list<Point> pts) (idempotent = "true")
}
