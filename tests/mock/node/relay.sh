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
. "$(dirname "$0")/common.sh"

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
