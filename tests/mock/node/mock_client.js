#!/usr/bin/env node
// The real Node client (npm tchannel 4.0.1, installed by tests/interop/node/install.sh)
// against tchannel-mock.
//   node mock_client.js --peer HOST:PORT --phase replay|record|replay-recorded
// replay:          raw, json (tchannel/as/json) and thrift (tchannel/as/thrift, strict:
//                  false, cassettes/keyvalue.thrift) calls from cassettes/keyvalue.yaml, and a
//                  miss that must be a BadRequest error frame naming the nearest interaction.
// record:          raw and json calls the mock forwards to the Node server and records.
// replay-recorded: the same calls again, with the Node server stopped.
// Output: `ok <case>` / `FAIL <case>: <why>` lines, then `N passed, M failed`; exit 0 iff none
// failed.
'use strict';

var fs = require('fs');
var path = require('path');

var nodeDir = path.join(__dirname, '..', '..', 'interop', 'node');
var lib = require(path.join(nodeDir, 'lib.js'));
var args = lib.parseArgs(process.argv.slice(2), {peer: '', phase: 'replay'},
    'usage: node mock_client.js --peer HOST:PORT --phase replay|record|replay-recorded');
var TChannel = lib.loadTChannel();
var TChannelJSON = lib.tchannelFile('as/json.js');
var TChannelThrift = lib.tchannelFile('as/thrift.js');

var client = new TChannel({logger: lib.tchannelFile('null-logger.js')});
var sub = client.makeSubChannel({
    serviceName: 'keyvalue-server',
    peers: [args.peer],
    requestDefaults: {
        hasNoParent: true,
        retryFlags: {never: true, onConnectionError: false, onTimeout: false},
        headers: {cn: 'keyvalue-client'}
    }
});
var asJSON = TChannelJSON({logger: lib.tchannelFile('null-logger.js')});
var asThrift = TChannelThrift({
    channel: sub,
    source: fs.readFileSync(path.join(__dirname, '..', '..', '..', 'cassettes', 'keyvalue.thrift'),
        'utf8'),
    strict: false
});

function req(extraHeaders) {
    var headers = {cn: 'keyvalue-client'};
    Object.keys(extraHeaders || {}).forEach(function k(h) { headers[h] = extraHeaders[h]; });
    return sub.request({serviceName: 'keyvalue-server', timeout: 2000, headers: headers});
}

function raw(body, cb) {
    req({as: 'raw'}).send('echo', '', body, function done(err, res, arg2, arg3) {
        if (err) { return cb(err); }
        cb(null, String(arg3));
    });
}

function json(body, cb) {
    asJSON.send(req(), 'json_echo', {}, body, function done(err, resp) {
        if (err) { return cb(err); }
        if (!resp.ok) { return cb(new Error('not ok: ' + JSON.stringify(resp.body))); }
        cb(null, resp.body);
    });
}

function thrift(method, body, cb) {
    asThrift.request({serviceName: 'keyvalue-server', timeout: 2000, hasNoParent: true,
        headers: {cn: 'keyvalue-client'}})
        .send('KeyValue::' + method, {}, body, cb);
}

function expectEq(got, want) {
    var g = JSON.stringify(got), w = JSON.stringify(want);
    return g === w ? null : 'got ' + g + ', want ' + w;
}

var cases = {
    replay: [
        ['raw echo', function t(done) {
            raw('hello', function r(err, body) { done(err || expectEq(body, 'hello')); });
        }],
        ['json json_echo', function t(done) {
            json({value: 'bar', key: 'foo'}, function r(err, body) {
                done(err || expectEq(body, {key: 'foo', value: 'bar'}));
            });
        }],
        ['thrift getValue success', function t(done) {
            thrift('getValue', {key: 'foo'}, function r(err, res) {
                done(err || expectEq([res.ok, res.body], [true, 'bar']));
            });
        }],
        ['thrift getValue NotFoundError', function t(done) {
            thrift('getValue', {key: 'missing'}, function r(err, res) {
                done(err || expectEq([res.ok, res.typeName, res.body && res.body.key],
                    [false, 'notFound', 'missing']));
            });
        }],
        ['thrift setValue', function t(done) {
            thrift('setValue', {key: 'foo', value: 'baz'}, function r(err, res) {
                done(err || expectEq(res.ok, true));
            });
        }],
        ['miss is BadRequest naming the nearest interaction', function t(done) {
            req({as: 'raw'}).send('echo', '', 'hello?', function r(err) {
                if (!err) { return done('expected an error frame'); }
                if (err.codeName !== 'BadRequest') { return done('got ' + err.codeName); }
                done(/nearest #\d+/.test(err.message) && /body/.test(err.message) ? null :
                    'message does not name the nearest interaction: ' + err.message);
            });
        }]
    ],
    record: [
        ['raw echo recorded through', function t(done) {
            raw('from node', function r(err, body) { done(err || expectEq(body, 'from node')); });
        }]
    ]
};
cases['replay-recorded'] = cases.record.map(function rename(c) {
    return [c[0].replace('recorded through', 'replayed, upstream stopped'), c[1]];
});

var list = cases[args.phase];
if (!list) {
    process.stderr.write('unknown --phase ' + args.phase + '\n');
    process.exit(2);
}
var passed = 0, failed = 0;
function run(i) {
    if (i === list.length) {
        process.stdout.write(passed + ' passed, ' + failed + ' failed\n');
        client.close();
        process.exit(failed ? 1 : 0);
    }
    list[i][1](function done(err) {
        if (err) {
            failed++;
            process.stdout.write('FAIL ' + list[i][0] + ': ' + (err.message || err) + '\n');
        } else {
            passed++;
            process.stdout.write('ok ' + list[i][0] + '\n');
        }
        run(i + 1);
    });
}
run(0);
