#!/usr/bin/env node
// Node TChannel with tracing on, for the trace interop test (trace_node.c): each span Node
// reports through its traceReporter option is printed on stdout as one line
//   span {"traceid":"<16 hex>","spanid":"<16 hex>","parentid":"<16 hex>","name":...,
//         "serviceName":...,"flags":N,"annotations":["sr","ss"],"host":"IP:PORT"}
// (ids as Node keeps them: two 32-bit halves, high first, joined as 16 lowercase hex).
//
//   node trace_peer.js --mode server [--service NAME]
//       serves raw `echo` on NAME (default keyvalue-server).
//   node trace_peer.js --mode client --peer HOST:PORT [--service NAME]
//       makes one traced raw call `echo` (trace: true, no parent) to HOST:PORT, prints
//       `done ok` or `done error <message>`, then exits.
// Both listen on 127.0.0.1 (a client that listens announces a real address in its init)
// and print `listening HOST:PORT` first.
'use strict';

var lib = require('./lib.js');

var USAGE = 'usage: node trace_peer.js --mode server|client [--peer HOST:PORT] [--service NAME]';
var args = lib.parseArgs(process.argv.slice(2), {
    mode: '', peer: '', service: 'keyvalue-server'
}, USAGE);
if (args.mode !== 'server' && args.mode !== 'client') {
    process.stderr.write('bad --mode ' + JSON.stringify(args.mode) + '\n' + USAGE + '\n');
    process.exit(2);
}
if (args.mode === 'client' && !args.peer) {
    process.stderr.write('--mode client needs --peer\n' + USAGE + '\n');
    process.exit(2);
}

var TChannel = lib.loadTChannel();

function hexId(id) {
    if (!id) {
        return '0000000000000000';
    }
    if (Buffer.isBuffer(id)) {
        return id.toString('hex');
    }
    return ('00000000' + (id[0] >>> 0).toString(16)).slice(-8) +
        ('00000000' + (id[1] >>> 0).toString(16)).slice(-8);
}

// Node's reporter: called with each span whose traced flag is set (trace/agent.js).
function report(span) {
    var ep = span.endpoint || {};
    process.stdout.write('span ' + JSON.stringify({
        traceid: hexId(span.traceid),
        spanid: hexId(span.id),
        parentid: hexId(span.parentid),
        name: span.name,
        serviceName: ep.serviceName,
        host: ep.ipv4 + ':' + ep.port,
        flags: span.flags,
        annotations: span.annotations.map(function v(a) { return a.value; })
    }) + '\n');
}

var channel = new TChannel({
    logger: lib.tchannelFile('null-logger.js'),
    trace: true,
    traceReporter: report,
    // Node traces a root request only with this probability (default 0.01)
    traceSample: 1
});

function serve() {
    var chan = channel.makeSubChannel({serviceName: args.service});
    chan.register('echo', function echo(req, res, arg2, arg3) {
        res.headers.as = 'raw';
        res.sendOk(arg2, arg3);
    });
}

function callOnce() {
    var sub = channel.makeSubChannel({
        serviceName: args.service,
        peers: [args.peer],
        requestDefaults: {
            hasNoParent: true,
            retryFlags: {never: true, onConnectionError: false, onTimeout: false},
            headers: {as: 'raw', cn: 'trace-node-client'}
        }
    });
    sub.request({serviceName: args.service, timeout: 5000, trace: true})
        .send('echo', 'head', 'body', function done(err) {
            process.stdout.write(err ? 'done error ' + err.message + '\n' : 'done ok\n');
            channel.close(function closed() {
                process.exit(err ? 1 : 0);
            });
        });
}

if (args.mode === 'server') {
    serve();
}
channel.listen(0, '127.0.0.1', function listening() {
    process.stdout.write('listening ' + channel.hostPort + '\n');
    if (args.mode === 'client') {
        callOnce();
    }
});

function stop() {
    channel.close(function closed() {
        process.exit(0);
    });
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
