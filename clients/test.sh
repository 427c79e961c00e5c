#!/usr/bin/env bash
# Runs the Node, Go and Python client suites against a real tchannel-mock.
#   clients/test.sh [TCHANNEL_MOCK [TCURL]]
# Without arguments the binaries come from build/ (build/mockserver/tchannel-mock,
# build/tools/tcurl). Each suite runs in its own runner (node --test, go test,
# pytest); the summary of each is printed at the end. Exit 0 iff all passed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
mock=${1:-$root/build/mockserver/tchannel-mock}
tcurl=${2:-$root/build/tools/tcurl}

die() { echo "clients/test.sh: $*" >&2; exit 2; }
[ -x "$mock" ] || die "no tchannel-mock at $mock (build it, or pass its path)"
[ -x "$tcurl" ] || die "no tcurl at $tcurl (build it, or pass its path as the second argument)"
mock=$(cd "$(dirname "$mock")" && pwd)/$(basename "$mock")
tcurl=$(cd "$(dirname "$tcurl")" && pwd)/$(basename "$tcurl")
export TCHANNEL_MOCK_BIN=$mock TCURL_BIN=$tcurl
# nothing the suites run may leave caches in the source tree
export PYTHONDONTWRITEBYTECODE=1

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
declare -A status summary
bound=600 # seconds per suite

run_node() {
    command -v node >/dev/null || { echo "node not found"; return 1; }
    local peer=$root/tests/interop/node
    if [ ! -d "$peer/node_modules/tchannel" ]; then
        "$peer/install.sh" || { echo "$peer/install.sh failed"; return 1; }
    fi
    (cd "$here/node" && timeout "$bound" node --test test/)
}

run_go() {
    command -v go >/dev/null || { echo "go not found (scripts/install-deps installs golang-go)"; return 1; }
    # a HOME we cannot write: keep Go's caches beside the binary's build
    if [ -z "${HOME:-}" ] || [ ! -w "${HOME:-/nonexistent}" ]; then
        local cache
        cache=$(dirname "$(dirname "$mock")")/go
        export GOCACHE=$cache/cache GOPATH=$cache/path
    fi
    # the module has no dependencies: nothing to fetch
    (cd "$here/go" && GOPROXY=off timeout "$bound" go test -count=1 -v ./...)
}

run_python() {
    local py
    for py in python3 /usr/bin/python3; do
        if "$py" -c 'import pytest' 2>/dev/null; then
            (cd "$here/python" && timeout "$bound" "$py" -m pytest -p no:cacheprovider -v)
            return
        fi
    done
    echo "pytest not found for python3 (scripts/install-deps installs python3-pytest)"
    return 1
}

for suite in node go python; do
    echo "=== $suite"
    "run_$suite" 2>&1 | tee "$logs/$suite.log"
    status[$suite]=${PIPESTATUS[0]}
done

summary[node]=$(grep -E '^# (tests|pass|fail|skipped) ' "$logs/node.log" | tr '\n' ' ')
summary[go]=$(grep -E '^(ok|FAIL|---)[[:space:]]' "$logs/go.log" | grep -vE '^--- (PASS|SKIP)' | tr '\n' ' ')
summary[python]=$(grep -E '^=+ .*(passed|failed|error).* =+$' "$logs/python.log" | tail -1)

echo "=== summary"
failed=0
for suite in node go python; do
    s=${status[$suite]}
    if [ "$s" -eq 0 ]; then verdict=ok; else verdict="FAIL (exit $s)"; failed=1; fi
    printf '%-7s %s: %s\n' "$suite" "$verdict" "${summary[$suite]:-no summary (see above)}"
done
exit $failed
