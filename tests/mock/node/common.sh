# What the node/*.sh tests of tchannel-mock share; each sources it after `set -u` with its
# own arguments (MOCK_BINARY first). Sets here (this folder), root (the source tree), mock,
# nodedir (the Node peer's folder, whose install.sh it runs) and tmp (removed on exit, with
# every process in pids and pid killed). Exits 77 (skip) when node, or a command named in
# needs, is missing; an npm install failure fails.
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
mock=${1:?usage: $(basename "$0") MOCK_BINARY}
nodedir=$root/tests/interop/node

for tool in node ${needs:-}; do
    command -v "$tool" >/dev/null 2>&1 || { echo "SKIP: $tool not found"; exit 77; }
done
"$nodedir/install.sh" || { echo "FAIL: $nodedir/install.sh failed"; exit 1; }

tmp=$(mktemp -d)
pids=()
pid=
cleanup() {
    for p in "${pids[@]}" $pid; do kill -KILL "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT

# start NAME CMD... : starts CMD, waits (20 s bound) for `listening HOST:PORT`, sets HP and PID.
start() {
    local name=$1 fifo="$tmp/$1.$RANDOM.out" line
    shift
    mkfifo "$fifo"
    "$@" >"$fifo" &
    PID=$!
    pids+=("$PID")
    exec {fd}<"$fifo"
    if ! IFS= read -r -t 20 line <&"$fd" || [ "${line#listening }" = "$line" ]; then
        echo "FAIL: $name did not print 'listening HOST:PORT' (got: ${line:-nothing})"
        exit 1
    fi
    HP=${line#listening }
    echo "# $name on $HP"
}

# stop PID : SIGTERM, wait (a watchdog kills it after 10 s); sets RC to the exit status.
stop() {
    local pid=$1
    kill -TERM "$pid"
    ( sleep 10; kill -KILL "$pid" 2>/dev/null ) >/dev/null 2>&1 &   # watchdog only
    local w=$!
    wait "$pid"; RC=$?
    # SIGKILL: a forked watchdog that has not yet run anything still carries
    # our EXIT trap, and a catchable signal would make it delete $tmp.
    kill -KILL "$w" 2>/dev/null; wait "$w" 2>/dev/null
}
