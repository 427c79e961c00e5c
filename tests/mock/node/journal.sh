#!/usr/bin/env bash
# mock.node_journal: the real Node client calls tchannel-mock (cassettes/keyvalue.yaml,
# --thrift), then checks over HTTP what the journal says: counts and finds with stub rules,
# the unmatched request, and GET /verify (node/journal_client.js). Then --verify-on-exit
# makes the mock exit 3 for that miss.
#   journal.sh MOCK_BINARY
# Exit 77 (skip) only when node is missing; an npm install failure fails.
set -u
. "$(dirname "$0")/common.sh"

mkfifo "$tmp/out"
"$mock" --admin-port 0 --thrift "$root/cassettes/keyvalue.thrift" --verify-on-exit \
    "$root/cassettes/keyvalue.yaml" >"$tmp/out" 2>"$tmp/err" &
pid=$!
exec {fd}<"$tmp/out"
IFS= read -r -t 20 line1 <&"$fd"; IFS= read -r -t 20 line2 <&"$fd"
hp=${line1#listening }; admin=${line2#admin }
if [ "$hp" = "${line1:-}" ] || [ "$admin" = "${line2:-}" ]; then
    echo "FAIL: tchannel-mock did not print its listening and admin lines (got: $line1 / $line2)"
    exit 1
fi
echo "# tchannel-mock on $hp, admin $admin"

status=0
node "$here/journal_client.js" --peer "$hp" --admin "$admin" || status=1

stop "$pid"; rc=$RC; pid=
if [ "$rc" = 3 ] && grep -q "verify failed: .* 1 request unmatched" "$tmp/err"; then
    echo "ok --verify-on-exit: exit 3 naming the unmatched request"
else
    echo "FAIL: --verify-on-exit: exit $rc (want 3); stderr: $(tail -3 "$tmp/err")"
    status=1
fi
exit $status
