const map<string,list<i32>> M = {"a": [1, 0x10, -3], "b": []}
enum E { A = 1, B }
union U { 1: E e (x="y"), 2: set<double> d }
