#!/usr/bin/env bash
# The server's instructions per call under callgrind, which the machine's slow and
# fast spells do not move (unlike calls/s): the way to compare two builds exactly.
#
#   tests/bench/callgrind.sh BUILD_DIR [CONC SIZE SECONDS [TOP]]
#
# Starts BUILD_DIR/tests/interop/interop-server under callgrind, drives it with
# BUILD_DIR/tests/bench/bench_client at CONC callers of SIZE-byte args for SECONDS
# (no warm-up: every call counts), stops it with SIGTERM (it exits 0, so callgrind
# writes its counts) and prints
#   build=<dir> conc=<n> size=<bytes> calls=<n> server_Ir=<n> Ir_per_call=<n>
# then the TOP (default 12) functions by their own instructions, per call. Defaults:
# conc 64, size 65536, 5 s. Startup and the handshake are in the count; over thousands
# of calls they are noise. Needs valgrind.
set -u
[ $# -ge 1 ] || { echo "usage: tests/bench/callgrind.sh BUILD_DIR [CONC SIZE SECONDS [TOP]]" >&2; exit 2; }
build=$(cd "$1" && pwd) || exit 2
conc=${2:-64} size=${3:-65536} secs=${4:-5} top=${5:-12}
server=$build/tests/interop/interop-server
client=$build/tests/bench/bench_client
for f in "$server" "$client"; do
    [ -x "$f" ] || { echo "callgrind.sh: $f is missing; build first" >&2; exit 2; }
done
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind not found" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'kill -TERM $pid 2>/dev/null; rm -rf "$tmp"' EXIT
mkfifo "$tmp/out"
valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$server" >"$tmp/out" 2>"$tmp/vg.log" &
pid=$!
exec {fd}<"$tmp/out"
IFS= read -r -t 60 line <&"$fd" || { echo "callgrind.sh: the server did not start" >&2; exit 1; }
hp=${line#listening }
res=$("$client" --peer "$hp" --impl cg --conc "$conc" --size "$size" --duration "$secs" \
    --warmup 0 | grep '^impl=')
kill -TERM $pid
wait $pid
rate=$(echo "$res" | sed -n 's/.*calls\/s=\([0-9.]*\).*/\1/p')
calls=$(awk -v r="${rate:-0}" -v s="$secs" 'BEGIN { printf "%d", r * s }')
[ "$calls" -gt 0 ] || { echo "callgrind.sh: no calls ($res)" >&2; exit 1; }
ir=$(callgrind_annotate "$tmp/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
echo "build=$1 conc=$conc size=$size calls=$calls server_Ir=$ir Ir_per_call=$((ir / calls))"
callgrind_annotate --threshold=100 "$tmp/cg.out" 2>/dev/null |
    awk -v n="$top" -v calls="$calls" '
        n == 0 { exit }
        /file:function/ { on = 1; next }
        on && NF >= 2 && $1 ~ /^[0-9,]+$/ {
            ir = $1; gsub(",", "", ir)
            fn = $0; sub(/^ *[0-9,]+ +(\([^)]*\) +)?/, "", fn)
            printf "  %10.0f Ir/call  %s\n", ir / calls, fn
            if (++k == n) exit
        }'
