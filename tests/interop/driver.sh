#!/usr/bin/env bash
# Runs one interop test; used by ctest (tests/interop/CMakeLists.txt), also by hand.
#
#   driver.sh node-client SERVER [client.js args...]
#       SERVER is an interop-server binary (ours) or the word `node` (node server.js).
#       Starts SERVER, reads its `listening HOST:PORT` line (20 s deadline), runs
#       `node client.js --peer HOST:PORT [args]`, stops SERVER; passes iff client.js passed
#       and SERVER exited 0 on SIGTERM.
#   driver.sh c-client BINARY [args...]
#       Runs our C client program (it spawns node server.js itself).
#
# Both first run node/install.sh (quick when already installed); an install failure is a
# test failure. Exit 77 (ctest SKIP) only when `node` itself is missing.
set -u
here=$(cd "$(dirname "$0")" && pwd)
nodedir="$here/node"

if ! command -v node >/dev/null 2>&1; then
    echo "SKIP: node not found in PATH; the interop tests need Node.js"
    exit 77
fi
if ! "$nodedir/install.sh"; then
    echo "FAIL: $nodedir/install.sh failed (npm install of the Node peer)"
    exit 1
fi

mode=${1:-}
shift || true
case "$mode" in
c-client)
    [ $# -ge 1 ] || { echo "usage: driver.sh c-client BINARY [args...]" >&2; exit 2; }
    exec "$@"
    ;;
node-client)
    [ $# -ge 1 ] || { echo "usage: driver.sh node-client SERVER [client.js args...]" >&2; exit 2; }
    server=$1
    shift
    ;;
*)
    echo "usage: driver.sh node-client SERVER [client.js args...] | c-client BINARY [args...]" >&2
    exit 2
    ;;
esac

tmp=$(mktemp -d)
fifo="$tmp/server-stdout"
mkfifo "$fifo"
if [ "$server" = node ]; then
    node "$nodedir/server.js" >"$fifo" &
else
    "$server" >"$fifo" &
fi
spid=$!
cleanup() {
    if kill -0 "$spid" 2>/dev/null; then
        kill -KILL "$spid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
exec 3<"$fifo"

line=
if ! IFS= read -r -t 20 line <&3; then
    echo "FAIL: server $server printed no line within 20 s (or exited)"
    exit 1
fi
case "$line" in
"listening "*) peer=${line#listening } ;;
*) echo "FAIL: unexpected first line from $server: $line"; exit 1 ;;
esac
echo "# server $server listening on $peer"

node "$nodedir/client.js" --peer "$peer" "$@"
crc=$?

# Stop the server; it must exit 0 on SIGTERM. A watchdog kills it if it hangs.
kill -TERM "$spid"
( exec 3<&-; sleep 5; kill -KILL "$spid" 2>/dev/null ) &
wpid=$!
wait "$spid"
src=$?
kill -KILL "$wpid" 2>/dev/null  # SIGKILL: a just-forked watchdog still carries our EXIT trap
wait "$wpid" 2>/dev/null

if [ "$src" -ne 0 ]; then
    echo "FAIL: server $server exited with status $src after SIGTERM (want 0)"
    exit 1
fi
exit "$crc"
