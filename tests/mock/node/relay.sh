#!/usr/bin/env bash
# mock.node_relay: tchannel-mock as the only Hyperbahn router of real Node peers (npm tchannel
# 4.0.1, HyperbahnClient with a hostPortFile naming the mock).
#   relay.sh MOCK_BINARY
# 1. record: a Node service advertises itself to the mock; a Node client calls it by service
#    name through the mock (raw, json, an error frame, a call to relay-front routed by its
#    routing delegate rd=<service>, a service nobody offers); the mock records into
#    DIR/<service>.yaml (--record-to DIR/): the service's calls, and relay-front's.
# 2. replay: the Node service is gone; a new mock serves DIR/ and the same client calls pass.
# Exit 77 (skip) only when node is missing.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
mock=${1:?usage: relay.sh MOCK_BINARY}
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
    kill -KILL "$w" 2>/dev/null; wait "$w" 2>/dev/null
}

status=0
svc=relay-node-service
routers=$tmp/hyperbahn-hosts.json
client() { node "$here/relay.js" --role client --router-file "$routers" --service "$svc" "$@" || status=1; }

start mock "$mock" --mode once --relay --record-to "$tmp/rec/"
mock_pid=$PID
printf '["%s"]\n' "$HP" > "$routers"
start node-service node "$here/relay.js" --role service --router-file "$routers" --service "$svc"
svc_pid=$PID
client --phase live
stop "$svc_pid"
stop "$mock_pid"
[ "$RC" = 0 ] || { echo "FAIL: recording mock exited $RC on SIGTERM (want 0)"; status=1; }
cassette=$tmp/rec/$svc.yaml
n=$(grep -c 'serviceName' "$cassette" 2>/dev/null)
if [ "${n:-0}" = 3 ] && ! grep -qv "serviceName: $svc" <(grep serviceName "$cassette"); then
    echo "ok $svc recorded into its own cassette: $n interactions"
else
    echo "FAIL: $cassette should hold the 3 calls to $svc (has ${n:-no file})"
    status=1
fi
if [ "$(grep -c 'serviceName: relay-front' "$tmp/rec/relay-front.yaml" 2>/dev/null)" = 1 ]; then
    echo "ok the rd call recorded under its own service: relay-front.yaml"
else
    echo "FAIL: $tmp/rec/relay-front.yaml should hold the call routed by rd"
    status=1
fi
if ls "$tmp/rec" | grep -qv "^\($svc\|relay-front\).yaml"; then
    echo "FAIL: more than $svc.yaml and relay-front.yaml in the record folder: $(ls "$tmp/rec" | tr '\n' ' ')"
    status=1
fi

start mock "$mock" "$tmp/rec/"
mock_pid=$PID
printf '["%s"]\n' "$HP" > "$routers"
client --phase replay
stop "$mock_pid"
[ "$RC" = 0 ] || { echo "FAIL: replaying mock exited $RC on SIGTERM (want 0)"; status=1; }
exit $status
