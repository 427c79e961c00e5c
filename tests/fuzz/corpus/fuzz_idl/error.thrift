struct A {
  1: i32 x
  2 i32 y
}