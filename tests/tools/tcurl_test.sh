#!/usr/bin/env bash
# Runs build/tools/tcurl against real servers and checks stdout, stderr and exit codes.
#
#   tcurl_test.sh CASE TCURL INTEROP_SERVER TEST_SERVER IDL
#
# CASE: raw | json | thrift | errors | load | usage. Raw calls go to interop-server (echo, slow,
# busy); json and thrift calls to tcurl-test-server (json_echo, json_error,
# transport_headers, KeyValue::getValue/setValue over IDL). Servers print
# `listening HOST:PORT` first; we wait for it with a 20 s bound. One line per check,
# `ok <what>` or `FAIL <what>: <why>`; exit 0 iff nothing failed. Uber's flags against the
# Node server are tcurl_node.sh's.
set -u
case_name=$1 tcurl=$2 interop=$3 testsrv=$4 idl=$5

. "$(dirname "$0")/tcurl_lib.sh"

S=keyvalue-server
case "$case_name" in
raw)
    start raw "$interop"
    t "raw echo" 0 "hello" -- -p "$HP_raw" $S echo hello
    t "raw is the default and --raw is accepted" 0 "hello" -- --raw -p "$HP_raw" $S echo hello
    t "options after positionals" 0 "hi there" -- $S echo "hi there" -p "$HP_raw" --timeout=2000
    POSIXLY_CORRECT=1 t "options after positionals, POSIXLY_CORRECT set" 0 "hi" -- $S echo hi -p "$HP_raw"
    t "-- ends the options" 0 "-5" -- -p "$HP_raw" $S echo -- -5
    t "--arg2 goes to arg2, stdout is arg3" 0 "body" -- -p "$HP_raw" --arg2 head $S echo body
    printf 'from a file\n' >"$tmp/arg3"
    t "--arg3 @FILE" 0 "from a file" -- -p "$HP_raw" --arg3 "@$tmp/arg3" $S echo
    T_STDIN=$tmp/arg3 t "--arg3 @- reads standard input" 0 "from a file" -- -p "$HP_raw" --arg3 @- $S echo
    T_STDIN=$tmp/arg3 t "BODY @- reads standard input" 0 "from a file" -- -p "$HP_raw" $S echo @-
    t "empty body" 0 "" -- -p "$HP_raw" $S echo
    printf '["%s"]' "$HP_raw" >"$tmp/hosts.json"
    t "--hostlist" 0 "hello" -- --hostlist "$tmp/hosts.json" $S echo hello
    t "-P" 0 "hello" -- -P "$tmp/hosts.json" $S echo hello
    t "-p localhost:PORT" 0 "hello" -- -p "localhost:${HP_raw##*:}" $S echo hello
    printf '["localhost:%s"]' "${HP_raw##*:}" >"$tmp/names.json"
    t "a peer list with a host name" 0 "hello" -- -P "$tmp/names.json" $S echo hello
    start v6 "$interop" --host ::1
    t "-p [::1]:PORT" 0 "hello" -- -p "$HP_v6" $S echo hello
    printf '["%s"]' "$HP_v6" >"$tmp/v6.json"
    t "a peer list with [::1]:PORT" 0 "hello" -- -P "$tmp/v6.json" $S echo hello
    t "--routers" 0 "hello" -- --routers "$HP_raw" $S echo hello
    t "a dead peer and a live one: retried on the live one" 0 "hello" -- \
        -p "$(dead_port)" -p "$HP_raw" $S echo hello
    # interop-server's own options: --host and --service are used as given,
    # and --port too: a second server asking for a taken port is refused.
    start named "$interop" --host 127.0.0.2 --service other-svc # not the default host
    case "$HP_named" in 127.0.0.2:*) pass "interop-server --host" ;;
    *) flunk "interop-server --host" "listening on $HP_named" ;; esac
    t "interop-server --service: serves that service" 0 "hi" -- -p "$HP_named" other-svc echo hi
    t "interop-server --service: and not the default" 3 - "no handler for service" -- \
        -p "$HP_named" $S echo hi
    timeout 10 "$interop" --host 127.0.0.2 --port "${HP_named##*:}" >"$tmp/clash.out" 2>"$tmp/clash.err"
    rc=$?
    if [ "$rc" = 0 ] || [ "$rc" = 124 ]; then # 124: it ran (elsewhere) until timeout stopped it
        echo "FAIL interop-server --port: a taken port was accepted (exit $rc)"; failed=$((failed + 1))
    elif grep -qF "$HP_named" "$tmp/clash.err"; then
        echo "ok interop-server --port: a taken port is refused naming it"; passed=$((passed + 1))
    else
        echo "FAIL interop-server --port: the error does not name $HP_named"
        sed 's/^/#   stderr: /' "$tmp/clash.err"; failed=$((failed + 1))
    fi
    ;;
json)
    start kv "$testsrv" --idl "$idl"
    want='{
  "headers": {
    "user": "alice"
  },
  "body": {
    "a": 1,
    "list": [
      1,
      2
    ]
  }
}'
    t "json echo, pretty" 0 "$want" -- -p "$HP_kv" -j $S json_echo '{"a":1,"list":[1,2]}' \
        --headers '{"user":"alice"}'
    want='{
  "headers": {},
  "body": {}
}'
    t "json without BODY sends {}" 0 "$want" -- -p "$HP_kv" --json $S json_echo
    t "json application error: exit 1, body printed" 1 '{
  "message": "it went wrong"
}' -- -p "$HP_kv" -j $S json_error '{}'
    t "transport headers, caller, shard key, retry flags" 0 - -- -p "$HP_kv" -j $S \
        transport_headers --caller me --shard-key s1 --transport-header x-a=1 --retry-on n
    contains "cn is --caller" '"cn": "me"'
    contains "as is json" '"as": "json"'
    contains "sk is --shard-key" '"sk": "s1"'
    contains "re is --retry-on" '"re": "n"'
    contains "--transport-header" '"x-a": "1"'
    t "Uber's spellings: --cn, --sk, --rd" 0 - -- -p "$HP_kv" -j $S transport_headers \
        --cn them --sk s2 --rd other-svc
    contains "cn is --cn" '"cn": "them"'
    contains "sk is --sk" '"sk": "s2"'
    contains "rd is --rd" '"rd": "other-svc"'
    t "bad BODY json names BODY, line and column" 2 "" "BODY is not valid JSON" "line 1 column" -- \
        -p "$HP_kv" -j $S json_echo '{"a": tru}'
    t "bad --headers json" 2 "" "--headers is not valid JSON" -- -p "$HP_kv" -j --headers '{x' $S json_echo 1
    t "--headers must be an object" 2 "" "--headers must be a JSON object" -- \
        -p "$HP_kv" -j --headers '[1]' $S json_echo 1
    t "bad -2 json names --arg2" 2 "" "--arg2 is not valid JSON" -- -p "$HP_kv" -j -2 '{x' $S json_echo 1
    ;;
thrift)
    start kv "$testsrv" --idl "$idl"
    t "thrift setValue" 0 '{
  "ok": true,
  "body": null
}' -- -p "$HP_kv" -t "$idl" $S KeyValue::setValue '{"key":"foo","value":"bar"}'
    t "thrift getValue" 0 '{
  "ok": true,
  "body": "bar"
}' -- -p "$HP_kv" --thrift "$idl" $S KeyValue::getValue '{"key":"foo"}'
    t "thrift exception: exit 1, typeName and body" 1 '{
  "ok": false,
  "typeName": "notFound",
  "body": {
    "key": "missing"
  }
}' -- -p "$HP_kv" -t "$idl" $S KeyValue::getValue '{"key":"missing"}'
    t "thrift with application headers" 0 - -- -p "$HP_kv" -t "$idl" --headers '{"user":"alice"}' \
        $S KeyValue::getValue '{"key":"foo"}'
    t "--headers values must be strings for thrift" 2 "" '"user" must be a string' -- \
        -p "$HP_kv" -t "$idl" --headers '{"user":1}' $S KeyValue::getValue '{"key":"foo"}'
    t "unknown method" 2 "" "has no method nope" -- -p "$HP_kv" -t "$idl" $S KeyValue::nope '{}'
    t "unknown service" 2 "" "no service Nope" -- -p "$HP_kv" -t "$idl" $S Nope::getValue '{}'
    t "ENDPOINT must be Service::method" 2 "" "Service::method" -- -p "$HP_kv" -t "$idl" $S getValue '{}'
    t "args that do not fit the method name BODY" 2 "" "BODY" "nokey" -- \
        -p "$HP_kv" -t "$idl" $S KeyValue::getValue '{"nokey":"x"}'
    printf 'service KeyValue {\n  string getValue(1: string key\n}\n' >"$tmp/broken.thrift"
    t "a broken IDL names file, line and column" 2 "" "$tmp/broken.thrift:3:" -- \
        -p "$HP_kv" -t "$tmp/broken.thrift" $S KeyValue::getValue '{}'
    t "a missing IDL file" 2 "" "/nonexistent/kv.thrift" -- \
        -p "$HP_kv" -t /nonexistent/kv.thrift $S KeyValue::getValue '{}'
    mkdir "$tmp/idl"
    cp "$idl" "$tmp/idl/$S.thrift"
    t "-t FOLDER finds SERVICE.thrift in it" 0 '{
  "ok": true,
  "body": "bar"
}' -- -p "$HP_kv" -t "$tmp/idl" $S KeyValue::getValue '{"key":"foo"}'
    t "-t FOLDER without SERVICE.thrift" 2 "" "--thrift $tmp/idl: a folder, without other.thrift" -- \
        -p "$HP_kv" -t "$tmp/idl" other KeyValue::getValue '{"key":"foo"}'
    t "--no-strict is accepted" 0 - -- -p "$HP_kv" -t "$idl" --no-strict $S KeyValue::getValue '{"key":"foo"}'
    # A service named through an include goes out as the server knows it: KeyValue::getValue.
    cp "$idl" "$tmp/keyvalue.thrift"
    printf 'include "keyvalue.thrift"\n' >"$tmp/outer.thrift"
    t "an include-qualified service" 0 '{
  "ok": true,
  "body": "bar"
}' -- -p "$HP_kv" -t "$tmp/outer.thrift" $S keyvalue.KeyValue::getValue '{"key":"foo"}'
    t "an exception the IDL does not declare: exit 1, typeName unknown" 1 '{
  "ok": false,
  "typeName": "unknown",
  "body": null
}' "no exception this IDL declares" -- -p "$HP_kv" -t "$idl" newer KeyValue::getValue '{"key":"a"}'
    t "--health: the channel's own Meta::health" 0 "OK" -- -p "$HP_kv" --health $S
    t "--health: a registered Meta::health that is not ok" 1 "NOT OK: draining" -- \
        -p "$HP_kv" --health draining
    ;;
errors)
    start raw "$interop"
    t "timeout: exit 3 with code name and message" 3 "" "timeout:" "timed out" -- \
        -p "$HP_raw" --timeout 100 $S slow 500
    t "busy: exit 3" 3 "" "busy:" -- -p "$HP_raw" --retry-limit 0 $S busy x
    t "unknown endpoint: bad request" 3 "" "badRequest:" -- -p "$HP_raw" $S no-such-endpoint x
    t "nobody listening: network error" 3 "" "networkError:" -- -p "$(dead_port)" $S echo x
    ;;
load)
    start raw "$interop"
    t "load: --rate 3 --requests 7" 0 - -- -p "$HP_raw" --rate 3 --requests 7 --delay 0 $S echo x
    [ "$(field calls)" = 7 ] && pass "load: 7 calls" || flunk "load: 7 calls" "calls: $(field calls)"
    [ "$(field errors)" = 0 ] && pass "load: no errors" || flunk "load: no errors" "errors: $(field errors)"
    for f in "calls/s" p50 p99 time; do
        [ -n "$(field "$f")" ] && pass "load: summary has $f" || flunk "load: summary has $f" "missing"
    done
    t "load: every call busy: exit 3, counted by code" 3 - -- -p "$HP_raw" --rate 2 --requests 4 \
        --delay 0 --retry-limit 0 $S busy x
    [ "$(field errors)" = "4 (busy: 4)" ] && pass "load: 4 busy" || flunk "load: 4 busy" "errors: $(field errors)"
    t "load: timeouts" 3 - -- -p "$HP_raw" --rate 2 --requests 2 --timeout 50 $S slow 500
    [ "$(field errors)" = "2 (timeout: 2)" ] && pass "load: 2 timeouts" || flunk "load: 2 timeouts" "errors: $(field errors)"
    t "load: --time bounds the run" 0 - -- -p "$HP_raw" --rate 1 --time 300 --delay 20 $S echo x
    n=$(field calls)
    [ "${n:-0}" -ge 2 ] && pass "load: --time 300 made several calls ($n)" || flunk "load: --time" "calls: $n"
    ;;
usage)
    u "no arguments" "SERVICE is required" --
    t "--help" 0 - -- --help
    contains "--help prints usage" "usage: tcurl"
    u "no peer" "no peer" -- svc echo
    u "no endpoint" "ENDPOINT is required" -- -p 127.0.0.1:1 svc
    u "unknown option named" "unknown option --frob" -- -p 127.0.0.1:1 --frob svc echo
    u "unknown --name=value named" "unknown option --frob" -- -p 127.0.0.1:1 --frob=1 svc echo
    u "unknown short option named" "unknown option -x" -- -p 127.0.0.1:1 -jx svc echo
    u "an ambiguous abbreviation names the candidates" "ambiguous option --hea: " -- \
        -p 127.0.0.1:1 --hea svc echo
    u "a flag given a value" "--health: takes no value" -- -p 127.0.0.1:1 --health=1 svc
    u "missing option value" "--timeout: missing value" -- svc echo -p 127.0.0.1:1 --timeout
    u "missing short option value" "-p: missing value" -- svc echo -p
    u "an option where a value belongs" "-p: missing value (next comes the option --health)" -- \
        -p --health svc
    u "bad --timeout" "--timeout: expected a whole number from 1 to" -- -p 127.0.0.1:1 --timeout abc svc echo
    u "--timeout 0" "--timeout: expected a whole number from 1 to" -- -p 127.0.0.1:1 --timeout 0 svc echo
    u "bad --retry-on" "--retry-on" -- -p 127.0.0.1:1 --retry-on x svc echo
    u "bad --retry-limit" "--retry-limit" -- -p 127.0.0.1:1 --retry-limit -1 svc echo
    u "two schemes" "only one of" -- -p 127.0.0.1:1 --json -t "$idl" svc echo
    u "--health takes SERVICE only" "--health: takes SERVICE only" -- -p 127.0.0.1:1 --health svc echo
    u "--health with a scheme" "--health: it is a thrift call" -- -p 127.0.0.1:1 --health --json svc
    u "--headers with raw" "--headers: needs --json or --thrift" -- -p 127.0.0.1:1 --headers '{}' svc echo
    u "-H with headers says -H is the peer list now" "-H takes a peer-list FILE" -- \
        -p 127.0.0.1:1 -j -H '{"user":"alice"}' svc echo
    u "--headers and -2" "--headers is given too" -- -p 127.0.0.1:1 -j --headers '{}' -2 '{}' svc echo
    u "BODY and --arg3" "--arg3" -- -p 127.0.0.1:1 --arg3 x svc echo y
    u "extra positional" "unexpected argument" -- -p 127.0.0.1:1 svc echo a b
    u "bad --peer" "--peer nohost" -- -p nohost svc echo
    u "bad --transport-header" "KEY=VALUE" -- -p 127.0.0.1:1 --transport-header novalue svc echo
    u "--http is not supported" "--http: the http arg scheme is not supported" -- \
        -p 127.0.0.1:1 --http GET svc echo
    u "--requests without --rate" "--requests: needs --rate" -- -p 127.0.0.1:1 --requests 5 svc echo
    u "--rate 0" "--rate: expected a whole number from 1 to" -- -p 127.0.0.1:1 --rate 0 svc echo
    u "--health with load options" "--health: not with the load options" -- \
        -p 127.0.0.1:1 --health --rate 2 svc
    t "missing --peerlist file" 2 "" "/nonexistent/hosts.json" -- --hostlist /nonexistent/hosts.json svc echo
    printf '["127.0.0.1:1", 5]' >"$tmp/hosts.json"
    t "bad --peerlist entry" 2 "" "entry 1" -- -P "$tmp/hosts.json" svc echo
    t "missing --arg3 file" 2 "" "/nonexistent/body" -- -p 127.0.0.1:1 --arg3 @/nonexistent/body svc echo
    u "@- twice" "more than once" -- -p 127.0.0.1:1 --arg2 @- --arg3 @- svc echo
    ;;
*)
    echo "usage: tcurl_test.sh raw|json|thrift|errors|load|usage TCURL INTEROP_SERVER TEST_SERVER IDL" >&2
    exit 2
    ;;
esac
finish
