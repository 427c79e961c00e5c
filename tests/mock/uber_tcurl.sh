#!/usr/bin/env bash
# mock.uber_tcurl_*: Uber's tcurl (npm tcurl 4.23.1, installed into tests/interop/tcurl by
# tests/interop/node/install.sh) drives tchannel-mock serving the bundled cassettes/ folder.
#
#   uber_tcurl.sh CASE MOCK_BINARY
#
# CASE: raw | json | json_no_headers | thrift | miss | health. Each case starts its own mock
# (with --allow-repeats, so the cases do not depend on each other's order), runs Uber's tcurl
# and checks its exit status, stdout and stderr. One line per check, `ok <what>` or
# `FAIL <what>: <why>`; exit 0 iff nothing failed. Exit 77 (skip) only when node is missing;
# an npm install failure fails.
#
# Uber's tcurl prints one JSON line per answer ({"ok":true,"head":...,"body":...}), a banner
# on stderr first, and exits 0 (ok), 126 (an answer with ok false), or the error frame's code
# (6 for BadRequest, the mock's answer to a call no cassette replays). Its Thrift reader is
# strict by default; cassettes/keyvalue.thrift marks no field required or optional, so the
# Thrift cases pass --no-strict.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
case_name=${1:?usage: uber_tcurl.sh CASE MOCK_BINARY}
mock=${2:?usage: uber_tcurl.sh CASE MOCK_BINARY}
tcurl=$root/tests/interop/tcurl/node_modules/.bin/tcurl
idl=$root/cassettes/keyvalue.thrift
S=keyvalue-server

command -v node >/dev/null 2>&1 || { echo "SKIP: node not found"; exit 77; }
"$root/tests/interop/node/install.sh" || { echo "FAIL: tests/interop/node/install.sh failed"; exit 1; }
[ -x "$tcurl" ] || { echo "FAIL: $tcurl is missing after install.sh"; exit 1; }

tmp=$(mktemp -d)
mock_pid=
cleanup() {
    [ -n "$mock_pid" ] && kill -KILL "$mock_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

# Starts the mock on the cassettes folder; waits (20 s bound) for `listening HOST:PORT`.
mkfifo "$tmp/mock.out"
"$mock" --allow-repeats "$root/cassettes" >"$tmp/mock.out" 2>"$tmp/mock.err" &
mock_pid=$!
disown "$mock_pid" # cleanup kills it; no "Killed" notice from the shell
exec {fd}<"$tmp/mock.out"
if ! IFS= read -r -t 20 -u "$fd" line || [ "${line#listening }" = "$line" ]; then
    echo "FAIL: tchannel-mock did not print 'listening HOST:PORT' (got: ${line:-nothing})"
    sed 's/^/#   mock stderr: /' "$tmp/mock.err"
    exit 1
fi
HP=${line#listening }
echo "# tchannel-mock on $HP"

failed=0 passed=0
# t WHAT WANT_EXIT -- TCURL_ARGS... : runs Uber's tcurl against the mock; stdout in $tmp/out,
# stderr in $tmp/err. Later checks (out_has, err_has) look at them.
t() {
    local what=$1 want_rc=$2
    shift 3
    timeout 60 "$tcurl" -p "$HP" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    local rc=$?
    check "$what: exit $want_rc" "$([ "$rc" -eq "$want_rc" ] || echo "exit $rc")"
}
check() { # check WHAT WHY (empty WHY: passed)
    if [ -z "$2" ]; then
        echo "ok $1"; passed=$((passed + 1))
    else
        echo "FAIL $1: $2"; failed=$((failed + 1))
        sed 's/^/#   stdout: /' "$tmp/out"
        grep -v '^YAB IS THE NEW TCURL\|^$' "$tmp/err" | sed 's/^/#   stderr: /'
    fi
}
out_has() { check "$1" "$(grep -qF -- "$2" "$tmp/out" || echo "stdout lacks [$2]")"; }
out_is() { check "$1" "$([ "$(cat "$tmp/out")" = "$2" ] || echo "stdout is not [$2]")"; }
err_has() { check "$1" "$(grep -qiF -- "$2" "$tmp/err" || echo "stderr lacks [$2]")"; }

case "$case_name" in
raw)
    t "raw echo" 0 -- -r $S echo hello
    out_is "raw echo prints the recorded body" "hello"
    t "raw echo, two lines" 0 -- --raw $S echo "line one
line two
"
    out_is "raw echo prints both lines" "line one
line two"
    ;;
json)
    t "json with --headers" 0 -- -j --headers '{}' $S json_echo '{"key":"foo","value":"bar"}'
    out_has "json answer is ok" '"ok":true'
    out_has "json answer is the recorded body" '"body":{"key":"foo","value":"bar"}'
    t "json, keys in another order" 0 -- -j --headers '{}' $S json_echo '{"value":"bar","key":"foo"}'
    out_has "json matched by value" '"body":{"key":"foo","value":"bar"}'
    ;;
json_no_headers)
    # Uber's tcurl sends an empty arg2 here; the cassette recorded "{}". Both mean no headers.
    t "json without --headers" 0 -- -j $S json_echo '{"key":"foo","value":"bar"}'
    out_has "json without headers is the recorded answer" '"body":{"key":"foo","value":"bar"}'
    ;;
thrift)
    t "thrift getValue" 0 -- --no-strict -t "$idl" $S KeyValue::getValue '{"key":"foo"}'
    out_has "thrift answer is ok" '"ok":true'
    out_has "thrift answer is the recorded value" '"body":"bar"'
    t "thrift recorded exception" 126 -- --no-strict -t "$idl" $S KeyValue::getValue '{"key":"missing"}'
    out_has "thrift exception is not ok" '"ok":false'
    out_has "thrift exception is the recorded one" '"typeName":"notFound"'
    t "thrift setValue" 0 -- --no-strict -t "$idl" $S KeyValue::setValue '{"key":"foo","value":"baz"}'
    ;;
miss)
    t "raw miss" 6 -- -r $S echo "never recorded"
    err_has "raw miss: the mock's answer names the request" "never recorded"
    err_has "raw miss: and the nearest recorded one" "nearest"
    out_has "raw miss: a BadRequest" '"name":"TchannelBadRequestError"'
    t "thrift miss" 6 -- --no-strict -t "$idl" $S KeyValue::getValue '{"key":"nope"}'
    err_has "thrift miss: the mock's answer names the request" "nope"
    err_has "thrift miss: and the nearest recorded one" "nearest"
    ;;
health)
    t "--health" 0 -- $S --health
    out_is "--health prints OK" "OK"
    ;;
*)
    echo "usage: uber_tcurl.sh raw|json|json_no_headers|thrift|miss|health MOCK_BINARY" >&2
    exit 2
    ;;
esac
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
