# Shared by the tcurl test scripts (sourced, not run). Expects $tcurl (the binary under test).
# Output: one line per check, `ok <what>` or `FAIL <what>: <why>`; `finish` prints the
# counts and returns non-zero when a check failed.

tmp=$(mktemp -d)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT

# start NAME CMD...: runs CMD, sets HP_<NAME> from its `listening HOST:PORT` line (20 s bound).
start() {
    local name=$1 fifo="$tmp/$1.out" line
    shift
    mkfifo "$fifo"
    "$@" >"$fifo" &
    pids+=($!)
    exec {fd}<"$fifo"
    if ! IFS= read -r -t 20 -u "$fd" line; then
        echo "FAIL start $name: no line within 20 s"; exit 1
    fi
    case "$line" in
    "listening "*) printf -v "HP_$name" '%s' "${line#listening }" ;;
    *) echo "FAIL start $name: unexpected first line: $line"; exit 1 ;;
    esac
}

# A port nothing listens on, probed with bash's /dev/tcp.
dead_port() {
    local p
    for p in 1 9 19 47 79; do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "127.0.0.1:$p"; return; fi
    done
    echo "127.0.0.1:1"
}

failed=0 passed=0
pass() { echo "ok $1"; passed=$((passed + 1)); }
flunk() { # flunk WHAT WHY: also shows what the last run printed
    echo "FAIL $1: $2"
    failed=$((failed + 1))
    sed 's/^/#   stdout: /' "$tmp/out" 2>/dev/null
    sed 's/^/#   stderr: /' "$tmp/err" 2>/dev/null
}

# t NAME WANT_EXIT [WANT_STDOUT|-] [STDERR_SUBSTRING...] -- TCURL_ARGS...
# (stdin is the file T_STDIN names, /dev/null by default)
t() {
    local what=$1 want_rc=$2 want_out=$3
    shift 3
    local errs=()
    while [ "$1" != "--" ]; do errs+=("$1"); shift; done
    shift
    timeout 60 "$tcurl" "$@" <"${T_STDIN:-/dev/null}" >"$tmp/out" 2>"$tmp/err"
    local rc=$? out why=
    out=$(cat "$tmp/out")
    [ "$rc" -eq "$want_rc" ] || why="exit $rc, want $want_rc"
    if [ -z "$why" ] && [ "$want_out" != "-" ] && [ "$out" != "$want_out" ]; then
        why="stdout [$out], want [$want_out]"
    fi
    local e
    for e in "${errs[@]}"; do
        if [ -z "$why" ] && ! grep -qF -- "$e" "$tmp/err"; then why="stderr lacks [$e]"; fi
    done
    if [ -n "$why" ]; then flunk "$what" "$why"; else pass "$what"; fi
}

# u NAME STDERR_SUBSTRING -- TCURL_ARGS...: a usage error: exit 2, nothing on stdout, and
# one line on stderr naming the problem and ending "; try 'tcurl --help'".
u() {
    local what=$1 want=$2
    shift 3
    t "$what" 2 "" "$want" -- "$@"
    local lines
    lines=$(wc -l <"$tmp/err")
    if [ "$lines" -ne 1 ]; then
        flunk "$what: one line" "stderr has $lines lines"
    elif ! grep -q "^tcurl: .*; try 'tcurl --help'\$" "$tmp/err"; then
        flunk "$what: one line" "stderr does not end with \"; try 'tcurl --help'\""
    fi
}

# contains NAME SUBSTRING: the last stdout holds SUBSTRING
contains() {
    if grep -qF -- "$2" "$tmp/out"; then pass "$1"; else flunk "$1" "stdout lacks [$2]"; fi
}

# field NAME: the value of "NAME: VALUE" in the last stdout (the load summary)
field() {
    awk -v k="$1: " 'index($0, k) == 1 { print substr($0, length(k) + 1) }' "$tmp/out"
}

finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
