// Included by rich.thrift: types used across an include, and a base service.
namespace py rich_base

enum Color {
  RED,          # 0 (implicit)
  GREEN,        # 1
  BLUE = 5,
  VIOLET        # 6
}

struct Base {
  1: string name,
  2: Color color = Color.RED
}

service BaseService {
  string ping()
}
