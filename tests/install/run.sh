#!/usr/bin/env bash
# install.consumer: installs BUILD_DIR into a scratch prefix, checks that the
# man pages (every docs/man/*.1), the license and the changelog are there,
# then builds the getting-started programs (docs/examples), the VCR example
# and a VCR program against that prefix alone, once through
# find_package(tchannel) and once through pkg-config, and runs them: the
# guide's server and client must talk, the VCR example must record and
# replay, and the VCR must load a bundled cassette. Then the symbols: every
# installed archive exports only tch_ names, and a program defining names
# the library once exported (clash.c) links against it and runs; and the
# cassette library alone (tchannel-cassette.pc) needs no channel or libevent.
# Usage: run.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd) src=$(cd "$2" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
examples=$src/docs/examples
idl=$src/cassettes/keyvalue.thrift
cassette=$src/cassettes/echo-raw.yaml
want_info="$(grep -c '^- request:' "$cassette") interactions, mode once"
failed=0
check() { # name, then the command; its output is shown either way
  local name=$1; shift
  if "$@"; then echo "ok: $name"; else echo "FAILED: $name"; failed=$((failed + 1)); fi
}
info_is() { # binary
  local got; got=$("$1" "$cassette")
  [ "$got" = "$want_info" ] || { echo "cassette_info printed '$got', expected '$want_info'"; return 1; }
}

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
[ -f "$tmp/prefix/include/tchannel/channel.h" ] || { echo "no headers installed"; exit 1; }

# The man pages and the release's documents, installed byte for byte.
installed_as() { # source file, installed path
  cmp -s "$1" "$2" || { echo "$2: missing, or not $1"; return 1; }
}
pages=0
for page in "$src"/docs/man/*.1; do
  [ -f "$page" ] || continue
  check "man page ${page##*/} installed" installed_as "$page" "$tmp/prefix/share/man/man1/${page##*/}"
  pages=$((pages + 1))
done
for doc in LICENSE CHANGELOG.md; do
  check "$doc installed" installed_as "$src/$doc" "$tmp/prefix/share/doc/tchannel-vcr/$doc"
done

# 1. CMake: find_package(tchannel) with only the prefix to go on.
cmake -S "$src/tests/install/consumer" -B "$tmp/cmake-build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$tmp/prefix" -DEXAMPLES="$examples" >"$tmp/configure.log" 2>&1 ||
  { cat "$tmp/configure.log"; exit 1; }
cmake --build "$tmp/cmake-build" >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; exit 1; }
b=$tmp/cmake-build
check "find_package: getting-started server and client" \
  bash "$examples/run.sh" "$b/keyvalue_server" "$b/keyvalue_client" "$idl"
check "find_package: tchannel::tch_vcr loads a cassette" info_is "$b/cassette_info"
check "find_package: the VCR example records and replays" env -u TCHANNEL_VCR_RECORD_MODE "$b/vcr_example"

# 2. pkg-config, as the README shows it: `pkg-config --cflags --libs tchannel`.
pc=$(find "$tmp/prefix" -name tchannel.pc -path '*/pkgconfig/*' | head -n 1) # lib or lib64
[ -n "$pc" ] || { echo "no tchannel.pc installed"; exit 1; }
export PKG_CONFIG_PATH=${pc%/*}
flags=$(pkg-config --cflags --libs tchannel)
p=$tmp/pc-build
mkdir -p "$p"
for prog in keyvalue_server keyvalue_client; do
  cc -std=c11 -o "$p/$prog" "$examples/$prog.c" $flags
done
cc -std=c11 -o "$p/cassette_info" "$src/tests/install/consumer/cassette_info.c" $flags
cc -std=c11 -o "$p/vcr_example" "$examples/vcr_example.c" $flags
check "pkg-config: getting-started server and client" \
  bash "$examples/run.sh" "$p/keyvalue_server" "$p/keyvalue_client" "$idl"
check "pkg-config: the VCR loads a cassette" info_is "$p/cassette_info"
check "pkg-config: the VCR example records and replays" env -u TCHANNEL_VCR_RECORD_MODE "$p/vcr_example"

# 3. Symbols: only tch_ names are global in the installed archives.
only_tch_names() {
  local a bad=0 out
  for a in "$tmp/prefix"/lib*/libtch_*.a; do
    out=$(nm -g --defined-only "$a" | awk 'NF == 3 && $3 !~ /^tch_/ {print $3}' | sort -u)
    if [ -n "$out" ]; then
      echo "${a##*/} exports names without the tch_ prefix:"; echo "$out" | sed 's/^/  /'
      bad=1
    fi
  done
  [ "$bad" = 0 ]
}
check "installed archives export only tch_ names" only_tch_names
check "a program with clashing names links and runs" bash -c \
  "cc -std=c11 -Wall -Werror -o '$p/clash' '$src/tests/install/clash.c' $flags && '$p/clash'"

# 4. The cassette library alone, through its own pkg-config file.
cflags=$(pkg-config --cflags --libs tchannel-cassette)
no_channel() { ! grep -qE 'tch_channel|tch_net|event' <<<"$cflags" || { echo "tchannel-cassette.pc: $cflags"; return 1; }; }
check "pkg-config tchannel-cassette names no channel or libevent" no_channel
cc -std=c11 -o "$p/cassette_only" "$src/tests/install/consumer/cassette_info.c" $cflags
check "pkg-config tchannel-cassette: loads a cassette" info_is "$p/cassette_only"

total=$((6 + pages + 2 + 4))
echo "install consumer: $((total - failed)) passed, $failed failed"
[ "$failed" = 0 ]
