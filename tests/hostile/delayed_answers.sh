#!/bin/bash
# Delayed answers to a caller that never reads: with --allow-repeats and a
# 60 KB answer delayed 1 s, N calls wait at once. The waiting calls share
# the answer's bytes, and the answers once made count in --memory-budget
# (16 MiB here), so the mock's peak resident memory stays near the budget
# however many calls wait (before: a copy per call, 111 MB and more), and
# the caller is closed with a log line. Prints the peak.
# Usage: delayed_answers.sh MOCK NET_HOSTILE [N] [MAX_PEAK_KB]
set -u
mock=$1 probe=$2 n=${3:-2000} max_kb=${4:-65536}
work=$(mktemp -d)
trap 'kill $mock_pid 2>/dev/null; wait $mock_pid 2>/dev/null; rm -rf "$work"' EXIT
body=$(head -c 61440 /dev/zero | tr '\0' 'a')
cat > "$work/slow.yaml" <<YAML
version: 1
interactions:
- request: {serviceName: hostile, endpoint: slow, argScheme: 0, headers: '', body: x}
  response: {code: 0, headers: '', body: $body}
  delay: 1000
YAML
coproc MOCK { exec "$mock" --allow-repeats --memory-budget 16 "$work/slow.yaml" 2> "$work/log"; }
mock_pid=$MOCK_PID
if ! read -r -t 10 -u "${MOCK[0]}" word hp || [ "$word" != listening ]; then
    echo "FAIL: tchannel-mock did not say where it listens"; cat "$work/log"; exit 1
fi
start_kb=$(awk '/^VmRSS/ {print $2}' /proc/$mock_pid/status)
"$probe" --delayed "$hp" "$n"
probe_rc=$?
peak_kb=$(awk '/^VmHWM/ {print $2}' /proc/$mock_pid/status)
echo "tchannel-mock resident memory: ${start_kb} kB at start, peak ${peak_kb} kB ($n calls waiting on a 60 KB answer)"
fail=0
[ $probe_rc = 0 ] || { echo "FAIL: the caller that does not read was not closed"; fail=1; }
grep -qF "the peer is not reading its answers" "$work/log" ||
    { echo "FAIL: no log line for the close"; fail=1; }
if [ "${TCH_RSS_MEANINGFUL:-1}" = 1 ] && [ "$peak_kb" -gt "$max_kb" ]; then
    echo "FAIL: peak ${peak_kb} kB, more than ${max_kb} kB"; fail=1
fi
[ $fail = 0 ] || tail -5 "$work/log"
exit $fail
