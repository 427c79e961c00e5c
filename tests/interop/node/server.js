#!/usr/bin/env node
// A Node TChannel server (the reference peer) with the raw endpoints the interop tests and
// benchmarks use, on service keyvalue-server (or --service):
//   echo  answers arg2 and arg3 unchanged
//   big   arg3 is a decimal N; answers N bytes, byte i = i % 251
//   slow  arg3 is N ms; answers "late" after N ms
//   busy  answers with a Busy error frame
//   drain answers "draining", then drains the server (Node's graceful shutdown, which tells
//         every connection with an error frame about no call: Declined "draining: <arg3>")
// and, through Node's own arg-scheme handlers (tchannel/as/json, tchannel/as/thrift), the
// same json and thrift endpoints as our interop-server:
//   json_echo   (as=json) ok; response head = the request's head ({} when none),
//               body = {headers: <request head>, body: <request body>}
//   json_error  (as=json) not ok (call-res code 1), body {message: 'json_error: failed on purpose'}
//   KeyValue::setValue / KeyValue::getValue  (as=thrift, IDL --idl, default the source tree's
//               cassettes/keyvalue.thrift, strict: false) over an in-memory map; getValue of a
//               missing key answers {ok: false, typeName: 'notFound', body: {key: key}}. Both
//               echo the request's application headers (head) on the response.
// Prints `listening HOST:PORT` as its first stdout line, then serves until SIGINT/SIGTERM.
//
// --checksum: Node's own behaviour is to answer with the request's checksum type (its
// buildOutResponse copies req.checksum.type; there is no public option). With --checksum the
// handlers replace the response's Checksum object, so the response uses that type whatever
// the request used. Default: mirror the request, like stock Node. (raw endpoints only; the json
// and thrift handlers answer through Node's as/json and as/thrift, which always mirror.)
//
// --stock-write-limit keeps Node's limit of 100 queued socket writes (see lib.js
// liftWriteLimit); by default it is lifted so 16 MiB answers can be sent.
'use strict';

var lib = require('./lib.js');

var USAGE = 'usage: node server.js [--host H] [--port P] [--service NAME] ' +
    '[--checksum mirror|none|crc32|farmhash|crc32c] [--idl PATH] [--stock-write-limit]';
var args = lib.parseArgs(process.argv.slice(2), {
    host: '127.0.0.1', port: 0, service: 'keyvalue-server', checksum: 'mirror',
    idl: lib.DEFAULT_IDL, 'stock-write-limit': false
}, USAGE);
if (args.checksum !== 'mirror' && !(args.checksum in lib.CHECKSUMS)) {
    process.stderr.write('bad --checksum ' + JSON.stringify(args.checksum) + '\n' + USAGE + '\n');
    process.exit(2);
}

var TChannel = lib.loadTChannel();
if (!args['stock-write-limit']) {
    lib.liftWriteLimit();
}
var Checksum = lib.tchannelFile('v2/checksum.js');
var States = lib.tchannelFile('reqres_states.js');
var forcedChecksum = args.checksum === 'mirror' ? null : lib.CHECKSUMS[args.checksum];

var server = new TChannel({logger: quietLogger()});
var chan = server.makeSubChannel({serviceName: args.service});

function prepare(res) {
    res.headers.as = 'raw';
    if (forcedChecksum !== null) {
        res.checksum = new Checksum(forcedChecksum);
        res.checksumType = forcedChecksum;
    }
}

var handlers = {
    echo: function echo(req, res, arg2, arg3) {
        prepare(res);
        res.sendOk(arg2, arg3);
    },
    big: function big(req, res, arg2, arg3) {
        prepare(res);
        var s = String(arg3);
        if (!/^[0-9]+$/.test(s)) {
            res.sendError('BadRequest', 'big: arg3 must be a decimal byte count, got ' +
                JSON.stringify(s.slice(0, 40)));
            return;
        }
        res.sendOk('', lib.bigPayload(Number(s)));
    },
    slow: function slow(req, res, arg2, arg3) {
        prepare(res);
        var s = String(arg3);
        if (!/^[0-9]+$/.test(s)) {
            res.sendError('BadRequest', 'slow: arg3 must be a decimal number of ms');
            return;
        }
        setTimeout(function answer() {
            // The caller may have timed out meanwhile; Node then refuses to send.
            if (res.state === States.Initial) {
                res.sendOk('', 'late');
            }
        }, Number(s));
    },
    busy: function busy(req, res) {
        prepare(res);
        res.sendError('Busy', 'keyvalue-server is busy (on purpose)');
    },
    drain: function drain(req, res, arg2, arg3) {
        prepare(res);
        res.sendOk('', 'draining');
        if (!server.draining) {
            server.drain(String(arg3) || 'interop drain', function drained() {});
        }
    }
};
Object.keys(handlers).forEach(function reg(name) {
    chan.register(name, handlers[name]);
});

// ---- json (tchannel/as/json) ----
var TChannelJSON = lib.tchannelFile('as/json.js');
var asJSON = new TChannelJSON({logParseFailures: false});
asJSON.register(chan, 'json_echo', null, function jsonEcho(ctx, req, head, body, cb) {
    var h = head || {};
    cb(null, {ok: true, head: h, body: {headers: h, body: body}});
});
asJSON.register(chan, 'json_error', null, function jsonError(ctx, req, head, body, cb) {
    cb(null, {ok: false, body: {message: lib.JSON_ERROR_MESSAGE}});
});

// ---- thrift (tchannel/as/thrift) ----
var TChannelAsThrift = lib.tchannelFile('as/thrift.js');
var asThrift = new TChannelAsThrift({
    source: require('fs').readFileSync(args.idl, 'utf8'),
    strict: false,
    channel: chan,
    logParseFailures: false,
    // Node answers Meta::health only when asked to; ours does by default.
    isHealthy: function isHealthy() {
        return {ok: true};
    },
    loadMetaAsync: false
});
asThrift.registerHealthSync(); // before listening, not after a file read
var store = new Map();
asThrift.register(chan, 'KeyValue::setValue', store, function setValue(kv, req, head, body, cb) {
    kv.set(body.key, body.value);
    cb(null, {ok: true, head: head, body: null});
});
asThrift.register(chan, 'KeyValue::getValue', store, function getValue(kv, req, head, body, cb) {
    if (kv.has(body.key)) {
        return cb(null, {ok: true, head: head, body: kv.get(body.key)});
    }
    cb(null, {ok: false, typeName: 'notFound', head: head, body: {key: body.key}});
});

server.listen(args.port, args.host, function onListen() {
    process.stdout.write('listening ' + server.hostPort + '\n');
});

function stop() {
    server.close();
    process.exit(0);
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);

// Node TChannel logs expected events (timeouts, errors we cause on purpose) at warn/info;
// keep stderr for real problems.
function quietLogger() {
    var noop = function noop() {};
    var write = function write(level) {
        return function log(msg, info) {
            if (process.env.TCH_INTEROP_VERBOSE) {
                process.stderr.write('[node ' + level + '] ' + msg + ' ' +
                    safeJson(info) + '\n');
            }
        };
    };
    return {
        trace: noop, debug: noop,
        info: write('info'), warn: write('warn'), error: write('error'),
        fatal: write('fatal'),
        child: function child() { return this; }
    };
}

function safeJson(x) {
    try {
        return JSON.stringify(x);
    } catch (e) {
        return '';
    }
}
