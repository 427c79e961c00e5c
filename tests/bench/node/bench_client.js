#!/usr/bin/env node
// Closed-loop raw echo load from Uber's Node TChannel, measured like ../bench_client.c:
//   node bench_client.js --peer HOST:PORT [--impl LABEL] [--conc N] [--size BYTES]
//                        [--duration S] [--warmup S] [--checksum none|crc32|farmhash|crc32c]
// N callers share one channel (Node keeps one connection per peer); each sends the next
// `echo` as soon as its previous one answered. Throughput counts calls completed inside the
// measuring window; p50/p99 come from every call that started and ended inside it. A caller
// stops at its first error (errors should be 0; this avoids spinning on a dead peer). Prints
//   impl=<label> conc=<n> size=<bytes> calls/s=<float> p50_us=<int> p99_us=<int> errors=<n>
// Uses the peer installed by tests/interop/node/install.sh.
'use strict';

var path = require('path');
var lib = require(path.join(__dirname, '..', '..', 'interop', 'node', 'lib.js'));

var USAGE = 'usage: node bench_client.js --peer HOST:PORT [--impl LABEL] [--conc N] ' +
    '[--size BYTES] [--duration S] [--warmup S] [--checksum none|crc32|farmhash|crc32c]';
var args = lib.parseArgs(process.argv.slice(2), {
    peer: '', impl: 'node->?', conc: 1, size: 100, duration: 5, warmup: 1,
    checksum: 'crc32c', service: 'keyvalue-server'
}, USAGE);
if (!lib.parseHostPort(args.peer) || !(args.checksum in lib.CHECKSUMS) || args.conc < 1) {
    process.stderr.write(USAGE + '\n');
    process.exit(2);
}

var TChannel = lib.loadTChannel();
lib.liftWriteLimit();
var channel = new TChannel({logger: lib.tchannelFile('null-logger.js')});
var sub = channel.makeSubChannel({
    serviceName: args.service,
    peers: [args.peer],
    requestDefaults: {
        hasNoParent: true,
        checksumType: lib.CHECKSUMS[args.checksum],
        retryFlags: {never: true, onConnectionError: false, onTimeout: false},
        headers: {as: 'raw', cn: 'bench-node-client'}
    }
});

var payload = Buffer.alloc(args.size, 'a');
var empty = Buffer.alloc(0);
var t0 = process.hrtime.bigint();
var warmEnd = t0 + BigInt(Math.round(args.warmup * 1e9));
var end = warmEnd + BigInt(Math.round(args.duration * 1e9));
var lat = [];
var calls = 0;
var errors = 0;
var active = 0;

function one() {
    var start = process.hrtime.bigint();
    sub.request({serviceName: args.service, timeout: 10000})
        .send('echo', empty, payload, function onRes(err, res, arg2, arg3) {
            var now = process.hrtime.bigint();
            var failed = false;
            if (err || !res.ok || !arg3 || arg3.length !== args.size) {
                failed = true;
                if (errors++ < 5) {
                    process.stderr.write('bench_client.js: call failed: ' +
                        (err ? err.type + ': ' + err.message : 'ok=' + res.ok) + '\n');
                }
            } else if (now >= warmEnd && now <= end) {
                calls++;
                if (start >= warmEnd) {
                    lat.push(Number(now - start) / 1000);
                }
            }
            // A caller that saw an error stops: errors should be 0, and a refused
            // connection must not turn into a busy loop.
            if (now >= end || failed) {
                if (--active === 0) {
                    finish();
                }
                return;
            }
            one();
        });
}

function pct(sorted, p) {
    if (!sorted.length) {
        return 0;
    }
    var rank = Math.min(sorted.length, Math.max(1, Math.ceil(p / 100 * sorted.length)));
    return Math.floor(sorted[rank - 1]);
}

function finish() {
    lat.sort(function cmp(a, b) { return a - b; });
    process.stdout.write('impl=' + args.impl + ' conc=' + args.conc + ' size=' + args.size +
        ' calls/s=' + (calls / args.duration).toFixed(1) + ' p50_us=' + pct(lat, 50) +
        ' p99_us=' + pct(lat, 99) + ' errors=' + errors + '\n');
    channel.close();
    process.exit(lat.length ? 0 : 1);
}

setTimeout(function giveUp() {
    process.stderr.write('bench_client.js: ' + active + ' calls outstanding 10 s after the end\n');
    errors += active;
    finish();
}, (args.warmup + args.duration) * 1000 + 10000).unref();

for (var i = 0; i < args.conc; i++) {
    active++;
    one();
}
