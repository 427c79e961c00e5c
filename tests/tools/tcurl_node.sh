#!/usr/bin/env bash
# interop.tcurl_node_*: our tcurl, called with Uber's tcurl flags, against the Node server
# (tests/interop/node/server.js, npm tchannel 4.0.1: raw echo/slow/busy, json json_echo/
# json_error, thrift KeyValue::getValue/setValue of cassettes/keyvalue.thrift, Meta::health).
#
#   tcurl_node.sh CASE TCURL IDL VERSION
#
# CASE: peers | schemes | request | load | cli. VERSION is the CMake project version that
# --version must print. One line per check, `ok <what>` or `FAIL <what>: <why>`; exit 0 iff
# nothing failed. Exit 77 (skip) only when node is missing; an npm install failure fails.
set -u
case_name=${1:?usage: tcurl_node.sh CASE TCURL IDL VERSION} tcurl=$2 idl=$3 version=$4
here=$(cd "$(dirname "$0")" && pwd)
nodedir=$here/../interop/node

command -v node >/dev/null 2>&1 || { echo "SKIP: node not found"; exit 77; }
"$nodedir/install.sh" || { echo "FAIL: tests/interop/node/install.sh failed"; exit 1; }

. "$here/tcurl_lib.sh"

S=keyvalue-server
node_server() { start node node "$nodedir/server.js" --idl "$idl"; }

case "$case_name" in
peers)
    node_server
    port=${HP_node##*:}
    t "-p HOST:PORT" 0 "hello" -- -p "$HP_node" $S echo hello
    t "--peer HOST:PORT" 0 "hello" -- --peer "$HP_node" $S echo hello
    t "--peer=HOST:PORT" 0 "hello" -- --peer="$HP_node" $S echo hello
    t "-p localhost:PORT" 0 "hello" -- -p "localhost:$port" $S echo hello
    t "-p twice, one dead: the live one answers" 0 "hello" -- -p "$(dead_port)" -p "$HP_node" $S echo hello
    printf '["%s"]\n' "$HP_node" >"$tmp/peers.json"
    t "-P FILE" 0 "hello" -- -P "$tmp/peers.json" $S echo hello
    t "--peerlist FILE" 0 "hello" -- --peerlist "$tmp/peers.json" $S echo hello
    t "-H FILE (the older spelling)" 0 "hello" -- -H "$tmp/peers.json" $S echo hello
    t "--hostlist FILE (the older spelling)" 0 "hello" -- --hostlist "$tmp/peers.json" $S echo hello
    printf '["localhost:%s"]\n' "$port" >"$tmp/names.json"
    t "-P FILE with a host name" 0 "hello" -- -P "$tmp/names.json" $S echo hello
    ;;
schemes)
    node_server
    t "-r" 0 "hello" -- -p "$HP_node" -r $S echo hello
    t "--raw" 0 "hello" -- -p "$HP_node" --raw $S echo hello
    t "-j with --headers" 0 '{
  "headers": {
    "user": "alice"
  },
  "body": {
    "key": "foo"
  }
}' -- -p "$HP_node" -j --headers '{"user":"alice"}' $S json_echo '{"key":"foo"}'
    t "--json without headers or BODY" 0 '{
  "headers": {},
  "body": {}
}' -- -p "$HP_node" --json $S json_echo
    t "-j application error: exit 1" 1 - -- -p "$HP_node" -j $S json_error '{}'
    t "-t FILE setValue" 0 '{
  "ok": true,
  "body": null
}' -- -p "$HP_node" -t "$idl" $S KeyValue::setValue '{"key":"foo","value":"bar"}'
    t "--thrift FILE getValue" 0 '{
  "ok": true,
  "body": "bar"
}' -- -p "$HP_node" --thrift "$idl" $S KeyValue::getValue '{"key":"foo"}'
    mkdir "$tmp/idl"
    cp "$idl" "$tmp/idl/$S.thrift"
    t "-t FOLDER (SERVICE.thrift in it), --no-strict" 0 '{
  "ok": true,
  "body": "bar"
}' -- -p "$HP_node" -t "$tmp/idl" --no-strict $S KeyValue::getValue '{"key":"foo"}'
    t "thrift exception: exit 1" 1 '{
  "ok": false,
  "typeName": "notFound",
  "body": {
    "key": "nope"
  }
}' -- -p "$HP_node" -t "$idl" $S KeyValue::getValue '{"key":"nope"}'
    t "--health" 0 "OK" -- -p "$HP_node" --health $S
    t "--health, SERVICE after the flag" 0 "OK" -- --health -p "$HP_node" $S
    ;;
request)
    node_server
    want='{
  "headers": {
    "user": "bob"
  },
  "body": {
    "key": "foo"
  }
}'
    t "-2 is the headers with --json" 0 "$want" -- -p "$HP_node" -j -2 '{"user":"bob"}' $S json_echo '{"key":"foo"}'
    t "--arg2 too" 0 "$want" -- -p "$HP_node" -j --arg2 '{"user":"bob"}' $S json_echo '{"key":"foo"}'
    t "--head too" 0 "$want" -- -p "$HP_node" -j --head '{"user":"bob"}' $S json_echo '{"key":"foo"}'
    t "-3 is the body" 0 "$want" -- -p "$HP_node" -j -2 '{"user":"bob"}' -3 '{"key":"foo"}' $S json_echo
    t "--arg3 too" 0 "$want" -- -p "$HP_node" -j -2 '{"user":"bob"}' --arg3 '{"key":"foo"}' $S json_echo
    t "--body too" 0 "$want" -- -p "$HP_node" -j -2 '{"user":"bob"}' --body '{"key":"foo"}' $S json_echo
    t "-2 and -3 with --raw: arg2 and arg3 bytes" 0 "the body" -- -p "$HP_node" -r -2 head -3 "the body" $S echo
    t "a positional body after the options" 0 "last" -- $S echo -p "$HP_node" last
    t "thrift with --headers" 1 - -- -p "$HP_node" -t "$idl" --headers '{"user":"bob"}' \
        $S KeyValue::getValue '{"key":"x"}'
    contains "thrift with --headers: the server's answer" '"typeName": "notFound"'
    t "--sk and --shard-key" 0 "hi" -- -p "$HP_node" --sk user-1 $S echo hi
    t "--shard-key" 0 "hi" -- -p "$HP_node" --shard-key user-1 $S echo hi
    t "--timeout: a slow answer is a timeout, exit 3" 3 "" "timeout:" -- -p "$HP_node" --timeout 100 $S slow 2000
    t "--timeout long enough" 0 "late" -- -p "$HP_node" --timeout 3000 $S slow 50
    ;;
load)
    node_server
    t "--rate 4 --requests 10" 0 - -- -p "$HP_node" --rate 4 --requests 10 --delay 1 $S echo x
    [ "$(field calls)" = 10 ] && pass "10 calls" || flunk "10 calls" "calls: $(field calls)"
    [ "$(field errors)" = 0 ] && pass "no errors" || flunk "no errors" "errors: $(field errors)"
    for f in time "calls/s" p50 p99; do
        if [ -n "$(field "$f")" ]; then pass "summary has $f: $(field "$f")"; else flunk "summary has $f" "missing"; fi
    done
    t "--rate with json" 0 - -- -p "$HP_node" -j --rate 3 --requests 3 $S json_echo '{"a":1}'
    [ "$(field calls)" = 3 ] && pass "json: 3 calls" || flunk "json: 3 calls" "calls: $(field calls)"
    t "every call busy: exit 3, errors by code" 3 - -- -p "$HP_node" --rate 3 --requests 6 \
        --delay 1 --retry-limit 0 $S busy x
    [ "$(field errors)" = "6 (busy: 6)" ] && pass "6 busy" || flunk "6 busy" "errors: $(field errors)"
    t "application errors: exit 1" 1 - -- -p "$HP_node" -j --rate 2 --requests 2 $S json_error '{}'
    [ "$(field errors)" = "2 (application error: 2)" ] && pass "2 application errors" \
        || flunk "2 application errors" "errors: $(field errors)"
    t "--time bounds the run, --delay spaces the rounds" 0 - -- -p "$HP_node" --rate 1 --time 400 \
        --delay 50 $S echo x
    n=$(field calls)
    # at most one round per 50 ms in 400 ms, and more than one round
    if [ "${n:-0}" -ge 2 ] && [ "$n" -le 9 ]; then pass "--time 400 --delay 50: $n calls"
    else flunk "--time 400 --delay 50" "calls: ${n:-none}, want 2 to 9"; fi
    ;;
cli)
    t "-h" 0 - -- -h
    contains "-h prints usage" "usage: tcurl"
    t "--help" 0 - -- --help
    for flag in "-p, --peer" "-P, --peerlist" "-r, --raw" "-j, --json" "-t, --thrift" "--headers" \
        "-2, --arg2, --head" "-3, --arg3, --body" "--timeout" "--sk, --shard-key" "--health" \
        "--requests" "--rate" "--delay" "--time" "-v, --version" "-h, --help"; do
        contains "--help lists $flag" "$flag"
    done
    t "-v" 0 "tcurl (tchannel-vcr) $version" -- -v
    t "--version" 0 "tcurl (tchannel-vcr) $version" -- --version
    u "unknown option" "unknown option --frob" -- -p 127.0.0.1:1 --frob svc ep
    u "missing value" "--peerlist: missing value" -- svc ep --peerlist
    u "-H with headers" "-H takes a peer-list FILE" -- -p 127.0.0.1:1 -j -H '{}' svc ep
    u "--delay without --rate" "--delay: needs --rate" -- -p 127.0.0.1:1 --delay 5 svc ep
    u "--time without --rate" "--time: needs --rate" -- -p 127.0.0.1:1 --time 5 svc ep
    u "bad --rate" "--rate: expected a whole number" -- -p 127.0.0.1:1 --rate many svc ep
    u "no peer" "no peer" -- svc ep
    ;;
*)
    echo "usage: tcurl_node.sh peers|schemes|request|load|cli TCURL IDL VERSION" >&2
    exit 2
    ;;
esac
finish
