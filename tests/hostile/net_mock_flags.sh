#!/bin/bash
# tchannel-mock's connection limits, set by its flags: an idle connection,
# a slowloris frame and one connection over --max-connections are each
# closed, and each leaves a log line. Usage: net_mock_flags.sh MOCK NET_HOSTILE
set -u
mock=$1 probe=$2
work=$(mktemp -d)
trap 'kill $mock_pid 2>/dev/null; wait $mock_pid 2>/dev/null; rm -rf "$work"' EXIT
printf 'version: 1\ninteractions: []\n' > "$work/empty.yaml"
coproc MOCK { exec "$mock" --idle-timeout 800 --frame-timeout 600 --max-connections 3 \
    "$work/empty.yaml" 2> "$work/log"; }
mock_pid=$MOCK_PID
if ! read -r -t 10 -u "${MOCK[0]}" word hp || [ "$word" != listening ]; then
    echo "FAIL: tchannel-mock did not say where it listens"; cat "$work/log"; exit 1
fi
"$probe" --against "$hp" 800 600 3 || { cat "$work/log"; exit 1; }
fail=0
for line in "idle for 800 ms (idle timeout)" "frame timeout" \
            "refused a connection: too many connections: 3 are open"; do
    grep -qF "$line" "$work/log" || { echo "FAIL: no log line with: $line"; fail=1; }
done
[ $fail = 0 ] || cat "$work/log"
exit $fail
