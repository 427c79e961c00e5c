#!/usr/bin/env bash
# mock.node_stubs: stubs added over tchannel-mock's admin API with curl, called by the
# real Node client (stubs_client.js).
#   stubs.sh MOCK_BINARY
# Exit 77 (skip) only when node or curl is missing.
set -u
needs=curl
. "$(dirname "$0")/common.sh"
mkdir "$tmp/cassettes"

# The mock on an empty folder: `listening HOST:PORT`, then `admin HOST:PORT` (20 s bound).
mkfifo "$tmp/out"
"$mock" --admin-port 0 --thrift "$root/cassettes/keyvalue.thrift" "$tmp/cassettes" >"$tmp/out" &
pid=$!
exec {fd}<"$tmp/out"
IFS= read -r -t 20 line1 <&"$fd" && IFS= read -r -t 20 line2 <&"$fd" || {
    echo "FAIL: tchannel-mock did not start"; exit 1; }
hp=${line1#listening } admin=${line2#admin }
echo "# mock on $hp, admin on $admin"

status=0
stub() { # stub JSON: POST /stubs, want 201
    local code
    code=$(curl -s -o "$tmp/resp" -w '%{http_code}' -X POST --data-binary "$1" \
        -H 'Content-Type: application/json' "http://$admin/stubs")
    if [ "$code" = 201 ]; then echo "ok stub added: $(tr -d '\n ' <"$tmp/resp" | cut -c1-60)"
    else echo "FAIL: POST /stubs -> $code $(cat "$tmp/resp")"; status=1; fi
}

stub '{"id": "greet", "request": {"endpoint": "greet",
        "body": {"matchesJsonPath": {"expression": "$.id", "equalTo": 7}}},
       "response": {"template": true, "headers": "{}",
        "body": "{\"hello\": \"{{request.body.name}}\", \"id\": {{request.body.id}}, \"by\": \"{{request.headers.user}}\"}"}}'
stub '{"id": "kv", "request": {"endpoint": "KeyValue::getValue",
        "body": {"matchesJsonPath": {"expression": "$.key", "matches": "^fo+$"}}},
       "response": {"template": true, "body": "{\"success\": \"stubbed {{request.body.key}}\"}"}}'
stub '{"request": {"endpoint": "hang"}, "fault": "noAnswer", "response": {"body": "{}"}}'
stub '{"id": "spoil", "request": {"endpoint": "spoil"}, "fault": "badChecksum",
       "response": {"headers": "{}", "body": "{\"spoiled\": true}"}}'
stub '{"id": "drop", "request": {"endpoint": "drop"}, "fault": "closeConnection",
       "response": {"body": "{}"}}'

node "$here/stubs_client.js" --peer "$hp" || status=1

# YAML too, and bad input is a 400 naming the field while the mock keeps serving
code=$(curl -s -o "$tmp/resp" -w '%{http_code}' -X POST -H 'Content-Type: application/yaml' \
    --data-binary $'request:\n  body: {matches: "("}\nresponse: {body: x}\n' "http://$admin/stubs")
if [ "$code" = 400 ] && grep -q 'body.matches: bad regular expression' "$tmp/resp"; then
    echo "ok a bad regular expression is a 400 naming the field"
else
    echo "FAIL: bad regex -> $code $(cat "$tmp/resp")"; status=1
fi
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$admin/stubs/greet")
[ "$code" = 200 ] && echo "ok GET /stubs/greet" || { echo "FAIL: GET /stubs/greet -> $code"; status=1; }

stop "$pid"; rc=$RC; pid=
[ "$rc" = 0 ] || { echo "FAIL: mock exited $rc on SIGTERM (want 0)"; status=1; }
exit $status
