#!/usr/bin/env bash
# mock.node_interop: the real Node client against tchannel-mock.
#   interop.sh MOCK_BINARY
# 1. replay raw/json/thrift from cassettes/keyvalue.yaml (and a miss);
# 2. record through the mock to the Node server (tests/interop/node/server.js);
# 3. stop the Node server and replay what was recorded; SIGTERM the mock (exit 0) and check
#    the cassette file.
# Exit 77 (skip) only when node is missing; an npm install failure fails.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
mock=${1:?usage: interop.sh MOCK_BINARY}
nodedir=$root/tests/interop/node

command -v node >/dev/null 2>&1 || { echo "SKIP: node not found"; exit 77; }
"$nodedir/install.sh" || { echo "FAIL: $nodedir/install.sh failed"; exit 1; }

tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
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

status=0
client() { node "$here/mock_client.js" "$@" || status=1; }

start mock "$mock" "$root/cassettes/keyvalue.yaml"
client --peer "$HP" --phase replay
stop "$PID"
[ "$RC" = 0 ] || { echo "FAIL: mock exited $RC on SIGTERM (want 0)"; status=1; }

start node-server node "$nodedir/server.js"
up_hp=$HP up_pid=$PID
start mock "$mock" --mode new_episodes --upstream "$up_hp" --record-to "$tmp/rec.yaml"
mock_hp=$HP mock_pid=$PID
client --peer "$mock_hp" --phase record
stop "$up_pid"
client --peer "$mock_hp" --phase replay-recorded
stop "$mock_pid"
[ "$RC" = 0 ] || { echo "FAIL: recording mock exited $RC on SIGTERM (want 0)"; status=1; }
if grep -q "from node" "$tmp/rec.yaml" 2>/dev/null; then
    echo "ok cassette written: $(grep -c 'serviceName' "$tmp/rec.yaml") interaction(s)"
else
    echo "FAIL: $tmp/rec.yaml does not hold the recorded call"
    status=1
fi
exit $status
