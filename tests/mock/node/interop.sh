#!/usr/bin/env bash
# mock.node_interop: the real Node client against tchannel-mock.
#   interop.sh MOCK_BINARY
# 1. replay raw/json/thrift from cassettes/keyvalue.yaml (and a miss);
# 2. record through the mock to the Node server (tests/interop/node/server.js);
# 3. stop the Node server and replay what was recorded; SIGTERM the mock (exit 0) and check
#    the cassette file.
# Exit 77 (skip) only when node is missing; an npm install failure fails.
set -u
. "$(dirname "$0")/common.sh"

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
