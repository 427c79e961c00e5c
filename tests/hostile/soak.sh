#!/usr/bin/env bash
# The long soak, run on demand (not by scripts/test-all): tchannel-mock under
# steady load for MINUTES, its resident memory and open descriptors sampled
# every few seconds, with new connections (tcurl) and admin API calls mixed
# in. It reports the samples and fails when memory or descriptors keep
# growing once the journal (bounded by --journal-size) has filled.
#   tests/hostile/soak.sh [--minutes M] [--build DIR]     (default 5, build/)
# Load goes to 127.0.0.1 only and stops by itself at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
minutes=5
build=$root/build
while [ $# -gt 0 ]; do
    case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "soak.sh: unknown argument '$1'; try --help" >&2; exit 2 ;;
    esac
done
mock=$build/mockserver/tchannel-mock
client=$build/tests/bench/bench_client
tcurl=$build/tools/tcurl
for f in "$mock" "$client" "$tcurl"; do
    [ -x "$f" ] || { echo "soak.sh: $f is missing; build first" >&2; exit 2; }
done
seconds=$(python3 -c "print(max(20, int(float('$minutes') * 60)))")
interval=5

tmp=$(mktemp -d)
mock_pid=""
cleanup() {
    [ -n "$mock_pid" ] && kill -TERM "$mock_pid" 2>/dev/null && wait "$mock_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

mkfifo "$tmp/out"
"$mock" --admin-port 0 --journal-size 2000 --exit-on-stdin-eof \
    < <(sleep $((seconds + 60))) > "$tmp/out" 2> "$tmp/err" &
mock_pid=$!
exec 3< "$tmp/out"
read -r -t 10 line1 <&3 || { echo "soak.sh: the mock did not start:"; cat "$tmp/err"; exit 1; }
read -r -t 10 line2 <&3 || { echo "soak.sh: no admin line:"; cat "$tmp/err"; exit 1; }
peer=${line1#listening }
admin=${line2#admin }
curl -sf -XPOST "http://$admin/stubs" \
    -d '{"request": {"serviceName": "keyvalue-server", "endpoint": "echo"},
         "response": {"template": true, "body": "{{request.body}}"}}' > /dev/null

sample() { # RSS in KiB and open descriptors of the mock
    local rss fds
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$mock_pid/status")
    fds=$(find "/proc/$mock_pid/fd" -mindepth 1 -maxdepth 1 | wc -l)
    echo "$rss $fds"
}

"$client" --peer "$peer" --conc 32 --size 100 --duration "$seconds" --warmup 0 \
    > "$tmp/load" 2>&1 &
load_pid=$!
echo "soak: $seconds s against tchannel-mock at $peer (admin $admin), sampling every $interval s"
printf '%8s %10s %6s %8s\n' "t (s)" "RSS (KiB)" "fds" "tcurl"
samples=()
t=0
while kill -0 "$load_pid" 2>/dev/null && [ "$t" -lt "$seconds" ]; do
    # churn: a new connection per call, and the admin API under load
    ok=0
    for _ in 1 2 3 4 5; do
        "$tcurl" -p "$peer" keyvalue-server echo x > /dev/null 2>&1 && ok=$((ok + 1))
    done
    curl -sf "http://$admin/journal" > /dev/null
    read -r rss fds < <(sample)
    samples+=("$t $rss $fds")
    printf '%8d %10d %6d %6d/5\n' "$t" "$rss" "$fds" "$ok"
    sleep "$interval" # pacing the sampler, not waiting for an event
    t=$((t + interval))
done
wait "$load_pid" || true
echo "load: $(tail -n 3 "$tmp/load" | tr '\n' ' ')"

# Judge from the second third on: by then the journal has filled its bound.
python3 - "${samples[@]}" <<'PY'
import sys
rows = [tuple(map(int, s.split())) for s in sys.argv[1:]]
if len(rows) < 3:
    print("soak: too few samples to judge"); sys.exit(1)
tail = rows[len(rows) // 3:]
rss0, rss1 = tail[0][1], max(r[1] for r in tail)
fd0, fd1 = tail[0][2], max(r[2] for r in tail)
growth = (rss1 - rss0) / rss0
print("soak: RSS %d -> max %d KiB (%+.1f%%) after the first third; fds %d -> max %d"
      % (rss0, rss1, 100 * growth, fd0, fd1))
bad = []
if growth > 0.25:
    bad.append("memory grew by more than 25%")
if fd1 > fd0 + 40:
    bad.append("descriptors grew by more than 40")
print("soak: " + ("FAIL: " + "; ".join(bad) if bad else "ok: memory and descriptors flat"))
sys.exit(1 if bad else 0)
PY
