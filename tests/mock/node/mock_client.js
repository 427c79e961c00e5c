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

var common = require('./common.js');
var c = common.connect({cn: 'keyvalue-client', defaults: {peer: '', phase: 'replay'},
    usage: 'usage: node mock_client.js --peer HOST:PORT --phase replay|record|replay-recorded'});
var args = c.args, client = c.client, asJSON = c.asJSON, asThrift = c.asThrift, req = c.req;
var expectEq = common.expectEq;

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
common.runCases(list, client);
