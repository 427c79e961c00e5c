#!/usr/bin/env bash
# Runs build/tools/tcurl against real servers and checks stdout, stderr and exit codes.
#
#   tcurl_test.sh CASE TCURL INTEROP_SERVER TEST_SERVER IDL
#
# CASE: raw | json | thrift | errors | usage. Raw calls go to interop-server (echo, slow,
# busy); json and thrift calls to tcurl-test-server (json_echo, json_error,
# transport_headers, KeyValue::getValue/setValue over IDL). Servers print
# `listening HOST:PORT` first; we wait for it with a 20 s bound. One line per check,
# `ok <what>` or `FAIL <what>: <why>`; exit 0 iff nothing failed.
set -u
case_name=$1 tcurl=$2 interop=$3 testsrv=$4 idl=$5

tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT

# start NAME CMD...: runs CMD, sets HP_<NAME> from its `listening` line.
start() {
    local name=$1 fifo="$tmp/$1.out" line
    shift
    mkfifo "$fifo"
    "$@" >"$fifo" &
    pids+=($!)
    exec {fd}<"$fifo"
    if ! IFS= read -r -t 20 -u "$fd" line; then
        echo "FAIL start $name: no line within 20 s"; exit 1
    fi
    case "$line" in
    "listening "*) printf -v "HP_$name" '%s' "${line#listening }" ;;
    *) echo "FAIL start $name: unexpected first line: $line"; exit 1 ;;
    esac
}

# A port nothing listens on (bound then released by Python's or bash's view: use /dev/tcp probe).
dead_port() {
    local p
    for p in 1 9 19 47 79; do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "127.0.0.1:$p"; return; fi
    done
    echo "127.0.0.1:1"
}

failed=0 passed=0
# t NAME WANT_EXIT [WANT_STDOUT|-] [STDERR_SUBSTRING...] -- TCURL_ARGS...
# (stdin is the file T_STDIN names, /dev/null by default)
t() {
    local what=$1 want_rc=$2 want_out=$3
    shift 3
    local errs=()
    while [ "$1" != "--" ]; do errs+=("$1"); shift; done
    shift
    "$tcurl" "$@" <"${T_STDIN:-/dev/null}" >"$tmp/out" 2>"$tmp/err"
    local rc=$? out why=
    out=$(cat "$tmp/out")
    [ "$rc" -eq "$want_rc" ] || why="exit $rc, want $want_rc"
    if [ -z "$why" ] && [ "$want_out" != "-" ] && [ "$out" != "$want_out" ]; then
        why="stdout [$out], want [$want_out]"
    fi
    local e
    for e in "${errs[@]}"; do
        if [ -z "$why" ] && ! grep -qF -- "$e" "$tmp/err"; then why="stderr lacks [$e]"; fi
    done
    if [ -n "$why" ]; then
        echo "FAIL $what: $why"
        sed 's/^/#   stderr: /' "$tmp/err"
        failed=$((failed + 1))
    else
        echo "ok $what"
        passed=$((passed + 1))
    fi
}
# contains NAME SUBSTRING: the last stdout holds SUBSTRING
contains() {
    if grep -qF -- "$2" "$tmp/out"; then echo "ok $1"; passed=$((passed + 1));
    else echo "FAIL $1: stdout lacks [$2]"; sed 's/^/#   stdout: /' "$tmp/out"; failed=$((failed + 1)); fi
}

S=keyvalue-server
case "$case_name" in
raw)
    start raw "$interop"
    t "raw echo" 0 "hello" -- -p "$HP_raw" $S echo hello
    t "raw is the default and --raw is accepted" 0 "hello" -- --raw -p "$HP_raw" $S echo hello
    t "options after positionals" 0 "hi there" -- $S echo "hi there" -p "$HP_raw" --timeout=2000
    t "--arg2 goes to arg2, stdout is arg3" 0 "body" -- -p "$HP_raw" --arg2 head $S echo body
    printf 'from a file\n' >"$tmp/arg3"
    t "--arg3 @FILE" 0 "from a file" -- -p "$HP_raw" --arg3 "@$tmp/arg3" $S echo
    T_STDIN=$tmp/arg3 t "--arg3 @- reads standard input" 0 "from a file" -- -p "$HP_raw" --arg3 @- $S echo
    T_STDIN=$tmp/arg3 t "BODY @- reads standard input" 0 "from a file" -- -p "$HP_raw" $S echo @-
    t "empty body" 0 "" -- -p "$HP_raw" $S echo
    printf '["%s"]' "$HP_raw" >"$tmp/hosts.json"
    t "--hostlist" 0 "hello" -- --hostlist "$tmp/hosts.json" $S echo hello
    t "--routers" 0 "hello" -- --routers "$HP_raw" $S echo hello
    t "a dead peer and a live one: retried on the live one" 0 "hello" -- \
        -p "$(dead_port)" -p "$HP_raw" $S echo hello
    # interop-server's own options: --host and --service are used as given,
    # and --port too: a second server asking for a taken port is refused.
    start named "$interop" --host 127.0.0.2 --service other-svc # not the default host
    case "$HP_named" in 127.0.0.2:*) echo "ok interop-server --host";  passed=$((passed + 1)) ;;
    *) echo "FAIL interop-server --host: listening on $HP_named"; failed=$((failed + 1)) ;; esac
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
        -H '{"user":"alice"}'
    want='{
  "headers": {},
  "body": null
}'
    t "json without BODY sends null" 0 "$want" -- -p "$HP_kv" --json $S json_echo
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
    t "bad BODY json names BODY, line and column" 2 "" "BODY is not valid JSON" "line 1 column" -- \
        -p "$HP_kv" -j $S json_echo '{"a": tru}'
    t "bad --headers json" 2 "" "--headers is not valid JSON" -- -p "$HP_kv" -j -H '{x' $S json_echo 1
    t "--headers must be an object" 2 "" "--headers must be a JSON object" -- \
        -p "$HP_kv" -j -H '[1]' $S json_echo 1
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
    t "thrift with application headers" 0 - -- -p "$HP_kv" -t "$idl" -H '{"user":"alice"}' \
        $S KeyValue::getValue '{"key":"foo"}'
    t "--headers values must be strings for thrift" 2 "" '"user" must be a string' -- \
        -p "$HP_kv" -t "$idl" -H '{"user":1}' $S KeyValue::getValue '{"key":"foo"}'
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
usage)
    t "no arguments" 2 "" "SERVICE is required" --
    t "--help" 0 - --  --help
    contains "--help prints usage" "usage: tcurl"
    t "no peer" 2 "" "no peer" -- svc echo
    t "no endpoint" 2 "" "ENDPOINT is required" -- -p 127.0.0.1:1 svc
    t "unknown option named" 2 "" "unknown option --frob" -- -p 127.0.0.1:1 --frob svc echo
    t "unknown --name=value named" 2 "" "unknown option --frob" -- -p 127.0.0.1:1 --frob=1 svc echo
    t "a flag given a value" 2 "" "--health: takes no value" -- -p 127.0.0.1:1 --health=1 svc
    t "missing option value" 2 "" "--timeout: missing value" -- svc echo -p 127.0.0.1:1 --timeout
    t "an option where a value belongs" 2 "" "-p: missing value (next comes the option --health" -- \
        -p --health svc
    t "bad --timeout" 2 "" "--timeout" "abc" -- -p 127.0.0.1:1 --timeout abc svc echo
    t "bad --retry-on" 2 "" "--retry-on" -- -p 127.0.0.1:1 --retry-on x svc echo
    t "bad --retry-limit" 2 "" "--retry-limit" -- -p 127.0.0.1:1 --retry-limit -1 svc echo
    t "two schemes" 2 "" "only one of" -- -p 127.0.0.1:1 --json -t "$idl" svc echo
    t "--health takes SERVICE only" 2 "" "--health: takes SERVICE only" -- -p 127.0.0.1:1 --health svc echo
    t "--health with a scheme" 2 "" "--health: it is a thrift call" -- -p 127.0.0.1:1 --health --json svc
    t "--headers with raw" 2 "" "--headers: needs --json or --thrift" -- -p 127.0.0.1:1 -H '{}' svc echo
    t "BODY and --arg3" 2 "" "--arg3" -- -p 127.0.0.1:1 --arg3 x svc echo y
    t "extra positional" 2 "" "unexpected argument" -- -p 127.0.0.1:1 svc echo a b
    t "bad --peer" 2 "" "--peer nohost" -- -p nohost svc echo
    t "bad --transport-header" 2 "" "KEY=VALUE" -- -p 127.0.0.1:1 --transport-header novalue svc echo
    t "missing --hostlist file" 2 "" "/nonexistent/hosts.json" -- --hostlist /nonexistent/hosts.json svc echo
    printf '["127.0.0.1:1", 5]' >"$tmp/hosts.json"
    t "bad --hostlist entry" 2 "" "entry 1" -- --hostlist "$tmp/hosts.json" svc echo
    t "missing --arg3 file" 2 "" "/nonexistent/body" -- -p 127.0.0.1:1 --arg3 @/nonexistent/body svc echo
    t "@- twice" 2 "" "more than once" -- -p 127.0.0.1:1 --arg2 @- --arg3 @- svc echo
    ;;
*)
    echo "usage: tcurl_test.sh raw|json|thrift|errors|usage TCURL INTEROP_SERVER TEST_SERVER IDL" >&2
    exit 2
    ;;
esac
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
