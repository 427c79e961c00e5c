#!/usr/bin/env node
// Interop client: runs raw, json and thrift cases with Uber's Node TChannel against a server
// (ours: build/tests/interop/interop-server, or ./server.js) and reports one line per case,
//   ok <case>            or            FAIL <case>: <why>
// then exactly `N passed, M failed`. Exit status 0 iff nothing failed (2 on bad usage).
//
// How Node picks the checksum type of an outgoing call: the per-request option
// `checksumType` (or a sub-channel's requestDefaults.checksumType); when neither is given it
// uses crc32c (type 3). A per-request checksumType of 0 is treated as "not given" (the code
// does `opts.checksumType || null`), so "none" only works through requestDefaults, where a
// number 0 counts as specified. Node allows one sub-channel per service name per channel, so
// we use one top-level channel (and so one connection) per checksum type, each with a
// sub-channel whose requestDefaults.checksumType is set; that works for all four.
// A Node server answers with the request's checksum type.
//
// json cases use Node's tchannel/as/json, thrift cases tchannel/as/thrift (thriftrw, strict:
// false) with the KeyValue IDL (--idl, default the source tree's cassettes/keyvalue.thrift),
// on the crc32 sub-channel; they expect the endpoints described in server.js (our
// interop-server serves the same).
//
// --stock-write-limit keeps Node's limit of 100 queued socket writes (see lib.js
// liftWriteLimit), under which Node cannot send the 16 MiB echo at all.
'use strict';

var lib = require('./lib.js');

var USAGE = 'usage: node client.js --peer HOST:PORT [--service NAME] [--only REGEX] [--list] ' +
    '[--idl PATH] [--stock-write-limit]';
var args = lib.parseArgs(process.argv.slice(2), {
    peer: '', service: 'keyvalue-server', only: '', list: false, idl: lib.DEFAULT_IDL,
    'stock-write-limit': false
}, USAGE);
if (!args.list && !lib.parseHostPort(args.peer)) {
    process.stderr.write('--peer HOST:PORT is required\n' + USAGE + '\n');
    process.exit(2);
}

var MiB = 1024 * 1024;
var SIZES = [0, 100, MiB, 16 * MiB];
var BIG_TIMEOUT_MS = 60000;

var TChannel = args.list ? null : lib.loadTChannel();
var errors = args.list ? null : lib.tchannelFile('errors.js');
if (!args.list && !args['stock-write-limit']) {
    lib.liftWriteLimit();
}
var channels = {};
var subs = {};

function sub(checksumName) {
    if (!subs[checksumName]) {
        channels[checksumName] = new TChannel({logger: lib.tchannelFile('null-logger.js')});
        subs[checksumName] = channels[checksumName].makeSubChannel({
            serviceName: args.service,
            peers: [args.peer],
            requestDefaults: {
                hasNoParent: true,
                checksumType: lib.CHECKSUMS[checksumName],
                // One attempt per call: Node would otherwise retry Busy on "another" peer.
                retryFlags: {never: true, onConnectionError: false, onTimeout: false},
                headers: {as: 'raw', cn: 'interop-node-client'}
            }
        });
    }
    return subs[checksumName];
}

// Sends one raw call; cb(err, res, arg2, arg3) exactly as Node reports it.
function call(checksumName, endpoint, arg2, arg3, timeoutMs, cb) {
    sub(checksumName).request({
        serviceName: args.service,
        timeout: timeoutMs
    }).send(endpoint, arg2, arg3, cb);
}

function describeErr(err) {
    var kind = err.isErrorFrame ? 'error frame ' + err.codeName : errors.classify(err);
    return (err.type || 'error') + ' (' + kind + '): ' + err.message;
}

function sizeName(n) {
    if (n >= MiB && n % MiB === 0) {
        return (n / MiB) + 'MiB';
    }
    return n + 'B';
}

function firstDiff(a, b) {
    var n = Math.min(a.length, b.length);
    for (var i = 0; i < n; i++) {
        if (a[i] !== b[i]) {
            return i;
        }
    }
    return n;
}

function compare(what, got, want) {
    got = Buffer.from(got || '');
    if (got.length !== want.length) {
        return what + ': got ' + got.length + ' bytes, want ' + want.length;
    }
    if (!got.equals(want)) {
        return what + ': content differs from byte ' + firstDiff(got, want);
    }
    return null;
}

var cases = [];

Object.keys(lib.CHECKSUMS).forEach(function eachChecksum(csum) {
    SIZES.forEach(function eachSize(size, si) {
        cases.push({
            name: 'echo ' + csum + ' ' + sizeName(size),
            run: function run(done) {
                var seed = lib.CHECKSUMS[csum] * 10 + si;
                var a2 = size > 0 ? lib.payload(Math.min(size, 64), seed + 100) : Buffer.alloc(0);
                var a3 = lib.payload(size, seed);
                call(csum, 'echo', a2, a3, BIG_TIMEOUT_MS, function onRes(err, res, r2, r3) {
                    if (err) {
                        return done(describeErr(err));
                    }
                    if (!res.ok) {
                        return done('application error response: ' + String(r3).slice(0, 200));
                    }
                    // Servers answer in the request's checksum type, so this
                    // also shows that the request went out in the type asked
                    // for, not quietly in Node's default.
                    var rtype = res.checksum && res.checksum.type;
                    if (rtype !== lib.CHECKSUMS[csum]) {
                        return done('response checksum type ' + rtype + ', want ' +
                            lib.CHECKSUMS[csum] + ' (' + csum + ')');
                    }
                    done(compare('arg2', r2, a2) || compare('arg3', r3, a3));
                });
            }
        });
    });
});

cases.push({
    name: 'big 16MiB',
    run: function run(done) {
        var n = 16 * MiB;
        call('crc32', 'big', '', String(n), BIG_TIMEOUT_MS, function onRes(err, res, r2, r3) {
            if (err) {
                return done(describeErr(err));
            }
            if (!res.ok) {
                return done('application error response: ' + String(r3).slice(0, 200));
            }
            done(compare('arg3', r3, lib.bigPayload(n)));
        });
    }
});

cases.push({
    name: 'timeout slow 500 with timeout 100',
    run: function run(done) {
        var start = Date.now();
        call('crc32', 'slow', '', '500', 100, function onRes(err, res, r2, r3) {
            var elapsed = Date.now() - start;
            if (!err) {
                return done('expected a timeout error, got a response after ' + elapsed +
                    ' ms: ' + String(r3).slice(0, 100));
            }
            var cls = errors.classify(err);
            if (cls !== 'Timeout') {
                return done('expected a Timeout error, got ' + describeErr(err));
            }
            if (elapsed > 450) {
                return done('timeout error arrived only after ' + elapsed + ' ms');
            }
            note('timeout error: ' + describeErr(err));
            done(null);
        });
    }
});

cases.push({
    name: 'unknown endpoint -> BadRequest',
    run: function run(done) {
        call('crc32', 'no-such-endpoint', '', 'x', 5000, function onRes(err, res, r2, r3) {
            if (!err) {
                return done('expected a BadRequest error frame, got a response (ok=' +
                    res.ok + ') ' + String(r3).slice(0, 100));
            }
            if (!err.isErrorFrame || err.codeName !== 'BadRequest') {
                return done('expected a BadRequest error frame, got ' + describeErr(err));
            }
            note('unknown endpoint: ' + describeErr(err));
            done(null);
        });
    }
});

cases.push({
    name: 'busy -> Busy',
    run: function run(done) {
        call('crc32', 'busy', '', '', 5000, function onRes(err, res, r2, r3) {
            if (!err) {
                return done('expected a Busy error frame, got a response (ok=' + res.ok + ') ' +
                    String(r3).slice(0, 100));
            }
            if (!err.isErrorFrame || err.codeName !== 'Busy') {
                return done('expected a Busy error frame, got ' + describeErr(err));
            }
            done(null);
        });
    }
});

// 64 calls in flight at once on the one connection Node keeps per peer: 48 echoes of
// different sizes (up to 192 KiB, so their fragments interleave) and 16 `slow 300` calls.
// Passes when every answer matches its own request and the whole batch takes well under
// the 16 x 300 ms it would take if the server answered one call at a time.
cases.push({
    name: 'concurrent64',
    run: function run(done) {
        var pending = 64;
        var failures = [];
        var start = Date.now();
        for (var i = 0; i < 64; i++) {
            one(i);
        }
        function one(i) {
            if (i % 4 === 3) {
                call('crc32', 'slow', '', '300', 10000, function onSlow(err, res, r2, r3) {
                    if (err) {
                        failures.push('call ' + i + ' (slow): ' + describeErr(err));
                    } else if (String(r3) !== 'late') {
                        failures.push('call ' + i + ' (slow): got ' + JSON.stringify(String(r3)));
                    }
                    finish();
                });
                return;
            }
            var a2 = Buffer.from('call-' + i);
            var a3 = lib.payload(i * 4096 + 7, 1000 + i);
            call('crc32', 'echo', a2, a3, 10000, function onEcho(err, res, r2, r3) {
                var why = err ? describeErr(err) :
                    (compare('arg2', r2, a2) || compare('arg3', r3, a3));
                if (why) {
                    failures.push('call ' + i + ' (echo): ' + why);
                }
                finish();
            });
        }
        function finish() {
            if (--pending > 0) {
                return;
            }
            var elapsed = Date.now() - start;
            if (failures.length) {
                return done(failures.length + ' of 64 calls failed; first: ' + failures[0]);
            }
            if (elapsed > 2400) {
                return done('64 calls took ' + elapsed + ' ms: calls were not served concurrently');
            }
            note('concurrent64: 64 calls in ' + elapsed + ' ms');
            done(null);
        }
    }
});

// ---- json (tchannel/as/json) and thrift (tchannel/as/thrift) ----

var assert = require('assert');
var asJSON = null;
var asThrift = null;

function jsonCall(endpoint, head, body, cb) {
    if (!asJSON) {
        var TChannelJSON = lib.tchannelFile('as/json.js');
        asJSON = new TChannelJSON({channel: sub('crc32'), logParseFailures: false});
    }
    asJSON.request({serviceName: args.service, timeout: 5000, hasNoParent: true})
        .send(endpoint, head, body, cb);
}

function thriftCall(method, head, body, cb) {
    if (!asThrift) {
        var TChannelAsThrift = lib.tchannelFile('as/thrift.js');
        asThrift = new TChannelAsThrift({
            source: require('fs').readFileSync(args.idl, 'utf8'),
            strict: false,
            channel: sub('crc32'),
            logParseFailures: false
        });
    }
    asThrift.request({serviceName: args.service, timeout: 5000, hasNoParent: true})
        .send('KeyValue::' + method, head, body, cb);
}

// null when deep-equal, else a description.
function same(what, got, want) {
    try {
        assert.deepStrictEqual(plain(got), want);
        return null;
    } catch (e) {
        return what + ': got ' + JSON.stringify(got) + ', want ' + JSON.stringify(want);
    }
}

// thriftrw hands back class instances (e.g. NotFoundError); compare their fields only.
function plain(v) {
    return v === undefined ? undefined : JSON.parse(JSON.stringify(v));
}

function describeResp(resp) {
    return 'ok=' + resp.ok + (resp.typeName ? ' typeName=' + resp.typeName : '') +
        ' head=' + JSON.stringify(resp.head) + ' body=' + JSON.stringify(resp.body);
}

[
    {name: 'json echo with headers', head: {user: 'ann', 'x-trace': 't-1'},
        body: {n: 1, list: [1, 2], s: 'h\u00e9llo', nested: {ok: true}}},
    {name: 'json echo without headers', head: undefined, body: 'just a string'}
].forEach(function eachJSON(c) {
    cases.push({
        name: c.name,
        run: function run(done) {
            jsonCall('json_echo', c.head, c.body, function onRes(err, resp) {
                if (err) {
                    return done(describeErr(err));
                }
                if (resp.ok !== true) {
                    return done('want ok, got ' + describeResp(resp));
                }
                var h = c.head || {};
                done(same('response head', resp.head, h) ||
                    same('response body', resp.body, {headers: h, body: c.body}));
            });
        }
    });
});

cases.push({
    name: 'json_error -> ok false with {message}',
    run: function run(done) {
        jsonCall('json_error', undefined, {please: 'fail'}, function onRes(err, resp) {
            if (err) {
                return done(describeErr(err));
            }
            if (resp.ok !== false) {
                return done('want ok=false (call-res code 1), got ' + describeResp(resp));
            }
            if (!resp.body || resp.body.message !== lib.JSON_ERROR_MESSAGE) {
                return done('want body.message ' + JSON.stringify(lib.JSON_ERROR_MESSAGE) +
                    ', got ' + describeResp(resp));
            }
            note('json_error as Node sees it: ok=false, head=' + JSON.stringify(resp.head) +
                ', body is ' + (resp.body && resp.body.constructor && resp.body.constructor.name) +
                ' type=' + JSON.stringify(resp.body.type) + ' message=' +
                JSON.stringify(resp.body.message));
            done(null);
        });
    }
});

// Runs thrift steps in order: [method, head, args, check(resp) -> why|null].
function thriftSteps(steps, done) {
    var i = 0;
    next();
    function next() {
        if (i >= steps.length) {
            return done(null);
        }
        var st = steps[i++];
        thriftCall(st[0], st[1], st[2], function onRes(err, resp) {
            if (err) {
                return done(st[0] + ': ' + describeErr(err));
            }
            var why = st[3](resp);
            if (why) {
                return done(st[0] + ' ' + JSON.stringify(st[2]) + ': ' + why);
            }
            next();
        });
    }
}

function wantOk(value) {
    return function check(resp) {
        if (resp.ok !== true) {
            return 'want ok, got ' + describeResp(resp);
        }
        return value === undefined ? null : same('value', resp.body, value);
    };
}

function wantNotFound(key) {
    return function check(resp) {
        if (resp.ok !== false || resp.typeName !== 'notFound') {
            return 'want ok=false typeName=notFound, got ' + describeResp(resp);
        }
        return same('NotFoundError', resp.body, {key: key});
    };
}

function withHead(head, check) {
    return function both(resp) {
        return check(resp) || same('response head', resp.head, head);
    };
}

cases.push({
    name: 'thrift setValue then getValue',
    run: function run(done) {
        var key = 'interop-node-key-1';
        thriftSteps([
            ['setValue', null, {key: key, value: 'value \u00e9 1'}, wantOk()],
            ['getValue', null, {key: key}, wantOk('value \u00e9 1')]
        ], done);
    }
});

cases.push({
    name: 'thrift setValue overwrites',
    run: function run(done) {
        var key = 'interop-node-key-2';
        thriftSteps([
            ['setValue', null, {key: key, value: 'first'}, wantOk()],
            ['setValue', null, {key: key, value: 'second'}, wantOk()],
            ['getValue', null, {key: key}, wantOk('second')]
        ], done);
    }
});

cases.push({
    name: 'thrift getValue missing -> NotFoundError notFound',
    run: function run(done) {
        var key = 'interop-node-no-such-key';
        thriftCall('getValue', null, {key: key}, function onRes(err, resp) {
            if (err) {
                return done(describeErr(err));
            }
            var why = wantNotFound(key)(resp);
            if (!why) {
                note('NotFoundError as Node sees it: ok=false typeName=' + resp.typeName +
                    ' body is ' + (resp.body && resp.body.constructor &&
                    resp.body.constructor.name) + ' ' + JSON.stringify(resp.body));
            }
            done(why);
        });
    }
});

cases.push({
    name: 'thrift Meta::health -> HealthStatus ok',
    run: function run(done) {
        // With Node's own meta.thrift: the answer must decode as Node expects.
        var TChannelAsThrift = lib.tchannelFile('as/thrift.js');
        var meta = new TChannelAsThrift({
            source: require('fs').readFileSync(require('path').join(__dirname, 'node_modules',
                'tchannel', 'as', 'meta.thrift'), 'utf8'),
            strict: false,
            channel: sub('crc32'),
            logParseFailures: false
        });
        meta.request({serviceName: args.service, timeout: 5000, hasNoParent: true})
            .send('Meta::health', null, {}, function onRes(err, resp) {
                if (err) {
                    return done(describeErr(err));
                }
                if (!resp.ok) {
                    return done('not ok: ' + JSON.stringify(resp.body));
                }
                done(same('health body', {ok: resp.body.ok}, {ok: true}));
            });
    }
});

cases.push({
    name: 'thrift headers round trip',
    run: function run(done) {
        var key = 'interop-node-key-3';
        var head = {user: 'ann', 'x-trace': 't-1', empty: '', utf8: '\u00e9t\u00e9'};
        thriftSteps([
            ['setValue', head, {key: key, value: 'v3'}, withHead(head, wantOk())],
            ['getValue', head, {key: key}, withHead(head, wantOk('v3'))],
            ['getValue', head, {key: 'interop-node-missing-3'},
                withHead(head, wantNotFound('interop-node-missing-3'))],
            ['getValue', null, {key: key}, function noHead(resp) {
                // No request headers: Node sends nh=0; the answer's head is {} (nh=0) or
                // null (empty arg2). Either means "none".
                return wantOk('v3')(resp) || same('response head', resp.head || {}, {});
            }]
        ], done);
    }
});

// Last: Node's graceful shutdown on the client side. drain() tells the server with an error
// frame about no call (Declined "draining: ..."); calls already running must still be
// answered (between two Node peers they are), not cut off with the connection.
cases.push({
    name: 'client drains while two calls run (last)',
    run: function run(done) {
        var chan = new TChannel({logger: lib.tchannelFile('null-logger.js')});
        var drainSub = chan.makeSubChannel({
            serviceName: args.service,
            peers: [args.peer],
            requestDefaults: {
                hasNoParent: true,
                retryFlags: {never: true, onConnectionError: false, onTimeout: false},
                headers: {as: 'raw', cn: 'interop-node-client'}
            }
        });
        function send(endpoint, arg3, cb) {
            drainSub.request({serviceName: args.service, timeout: 5000}).send(endpoint, '', arg3, cb);
        }
        // One answered call first: the connection is up, so both slow calls go out before the
        // drain notice, on the same connection.
        send('echo', 'x', function first(err) {
            if (err) {
                return finish('echo before the drain: ' + describeErr(err));
            }
            var left = 2;
            var problems = [];
            ['300', '500'].forEach(function each(ms) {
                send('slow', ms, function onSlow(err2, res, r2, r3) {
                    if (err2) {
                        problems.push('slow ' + ms + ': ' + describeErr(err2));
                    } else if (String(r3) !== 'late') {
                        problems.push('slow ' + ms + ': answered ' + JSON.stringify(String(r3)));
                    }
                    if (--left === 0) {
                        finish(problems.length ? problems.join('; ') : null);
                    }
                });
            });
            chan.drain('interop client drain', function drained() {});
        });
        function finish(why) {
            chan.close();
            done(why);
        }
    }
});

function note(msg) {
    process.stdout.write('# ' + msg + '\n');
}

var selected = cases.filter(function sel(c) {
    return !args.only || new RegExp(args.only).test(c.name);
});
if (args.list) {
    selected.forEach(function p(c) { process.stdout.write(c.name + '\n'); });
    process.exit(0);
}
if (selected.length === 0) {
    process.stderr.write('no case matches --only ' + JSON.stringify(args.only) + '\n');
    process.exit(2);
}

var passed = 0;
var failed = 0;
var index = 0;

function next() {
    if (index >= selected.length) {
        process.stdout.write(passed + ' passed, ' + failed + ' failed\n');
        Object.keys(channels).forEach(function close(k) { channels[k].close(); });
        process.exit(failed ? 1 : 0);
        return;
    }
    var c = selected[index++];
    var finished = false;
    // A case whose callback never fires fails instead of hanging the run.
    var guard = setTimeout(function hung() {
        report('no answer within ' + (BIG_TIMEOUT_MS + 5000) + ' ms');
    }, BIG_TIMEOUT_MS + 5000);
    var start = Date.now();
    try {
        c.run(report);
    } catch (e) {
        report('threw ' + (e && e.stack || e));
    }
    function report(why) {
        if (finished) {
            return;
        }
        finished = true;
        clearTimeout(guard);
        if (why) {
            failed++;
            process.stdout.write('FAIL ' + c.name + ': ' + why + '\n');
        } else {
            passed++;
            process.stdout.write('ok ' + c.name + ' (' + (Date.now() - start) + ' ms)\n');
        }
        setImmediate(next);
    }
}

next();
