// literals
const string U = "a\u0041\ud83d\ude00\x41\0\b\q"
const string C = 'line\
continued'
const double H = .5
const double N = -.25e1
