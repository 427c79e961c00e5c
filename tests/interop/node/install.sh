#!/bin/sh
# Installs the Node TChannel peer (npm tchannel 4.0.1) into tests/interop/node/node_modules.
# Idempotent: does nothing (in well under a second) when node_modules was installed from the
# current package.json and the native checksum modules load. Exit 0 on success, non-zero when
# npm or the check fails. See /work/shared/peers/node-tchannel.md for why package.json looks the
# way it does (metrics placeholder, allowScripts, versions pinned via overrides, no lock file).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
stamp=node_modules/.tchannel-vcr-install-stamp
want=$(cksum package.json metrics-placeholder/package.json | cksum | cut -d' ' -f1)

check() {
    node -e '
        require("tchannel");
        require("farmhash"); require("sse4_crc32");
    ' 2>/dev/null
}

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && check; then
    exit 0
fi
echo "install.sh: npm install in $here" >&2
# The lock file npm writes is ignored by git (.gitignore); versions are pinned in package.json.
npm install --no-audit --no-fund >&2
if ! check; then
    echo "install.sh: tchannel or its native checksum modules (farmhash, sse4_crc32) fail to load" >&2
    exit 1
fi
echo "$want" > "$stamp"
