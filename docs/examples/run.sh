#!/usr/bin/env bash
# Runs the getting-started server and client and checks the client's output
# against what docs/getting-started.md shows.
set -euo pipefail
server=$1 client=$2 idl=$3
coproc SRV { exec "$server" "$idl"; }
pid=$SRV_PID
trap 'kill "$pid" 2>/dev/null || true' EXIT
# Wait on the server's first line itself, bounded at 10 s.
read -r -t 10 word hp <&"${SRV[0]}" || { echo "server did not start"; exit 1; }
[ "$word" = listening ] || { echo "unexpected first line: $word $hp"; exit 1; }
got=$("$client" "$idl" "$hp")
echo "$got"
expected='setValue(foo, bar) -> {"success":null}
getValue(foo) -> {"success":"bar"}
getValue(nope) -> {"notFound":{"key":"nope"}}'
if [ "$got" = "$expected" ]; then
  echo "getting started: 1 passed, 0 failed"
else
  diff <(echo "$expected") <(echo "$got") || true
  echo "getting started: 0 passed, 1 failed"
  exit 1
fi
