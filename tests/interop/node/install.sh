#!/bin/sh
# Installs the Node programs the interop tests run:
#   tests/interop/node/node_modules    Uber's Node TChannel (npm tchannel 4.0.1), the reference peer
#   tests/interop/tcurl/node_modules   Uber's tcurl (npm tcurl 4.23.1), the reference command line
# Idempotent: a folder is skipped (in well under a second) when its node_modules was installed
# from its current package.json and its modules load. Exit 0 on success, non-zero when npm or
# the check fails.
#
# Why the package.json files look the way they do:
# - tchannel lists `metrics` as a dependency, but only tchannel's own tests and benchmarks load
#   it, and the package registry we install from does not have it; an npm override points it at
#   the empty package in metrics-placeholder/ (both folders use that one).
# - npm 11 runs no install scripts unless a package is named in allowScripts; farmhash and
#   sse4_crc32 must build their native code (checksum types 2 and 3).
# - tcurl's own tchannel pins native modules that do not build with Node 20; overrides pin
#   versions that do.
# - Every version is pinned in overrides instead of a lock file, and no lock file is committed
#   (.gitignore): one would name the registry host it was made against.
set -eu
here=$(cd "$(dirname "$0")" && pwd)

# check DIR: the modules the tests need load from DIR.
check() {
    (cd "$1" && node -e '
        require("tchannel");
        require("farmhash"); require("sse4_crc32");
        if (process.argv[1] === "tcurl") require.resolve("tcurl/index.js");
    ' "$(basename "$1")") 2>/dev/null
}

# install DIR: npm install in DIR unless its stamp says it is current.
install() {
    dir=$1
    stamp=$dir/node_modules/.tchannel-vcr-install-stamp
    want=$(cat "$dir/package.json" "$here/metrics-placeholder/package.json" | cksum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && check "$dir"; then
        return 0
    fi
    echo "install.sh: npm install in $dir" >&2
    (cd "$dir" && npm install --no-audit --no-fund >&2)
    if ! check "$dir"; then
        echo "install.sh: in $dir, tchannel, tcurl or the native checksum modules (farmhash, sse4_crc32) fail to load" >&2
        exit 1
    fi
    echo "$want" > "$stamp"
}

install "$here"
install "$(cd "$here/../tcurl" && pwd)"
