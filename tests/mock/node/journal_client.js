#!/usr/bin/env node
// The real Node client (npm tchannel 4.0.1) makes calls to tchannel-mock, then asks the
// mock's admin API over HTTP what it saw.
//   node journal_client.js --peer HOST:PORT --admin HOST:PORT
// Calls: raw echo "hello" twice (played once each, then a miss), thrift KeyValue::setValue
// {key: foo, value: baz}, json json_echo {key: foo, value: bar} with transport header
// x-tenant: node. Then POST /journal/count and /journal/find with stub rules, GET
// /journal/unmatched and GET /verify must agree with those calls.
// Output: `ok <case>` / `FAIL <case>: <why>` lines; exit 0 iff none failed.
'use strict';

var http = require('http');

var common = require('./common.js');
var lib = common.lib;
var c = common.connect({cn: 'journal-client', defaults: {peer: '', admin: ''},
    usage: 'usage: node journal_client.js --peer HOST:PORT --admin HOST:PORT'});
var args = c.args, client = c.client, asJSON = c.asJSON, asThrift = c.asThrift, req = c.req;

// POST (or GET without body) to the admin API; cb(err, status, json).
function admin(method, uri, body, cb) {
    var hp = lib.parseHostPort(args.admin);
    var data = body === null ? '' : JSON.stringify(body);
    var r = http.request({host: hp.host, port: hp.port, method: method, path: uri,
        headers: {'Content-Length': Buffer.byteLength(data)}}, function res(resp) {
        var chunks = [];
        resp.on('data', function d(c) { chunks.push(c); });
        resp.on('end', function e() {
            var text = Buffer.concat(chunks).toString('utf8');
            try { cb(null, resp.statusCode, JSON.parse(text)); } catch (err) { cb(err); }
        });
    });
    r.on('error', cb);
    r.setTimeout(5000, function t() { r.destroy(new Error('admin API timed out')); });
    r.end(data);
}

var failed = 0;
function report(name, err) {
    if (err) { failed++; console.log('FAIL ' + name + ': ' + (err.message || err)); }
    else { console.log('ok ' + name); }
}

function expect(cond, why) { return cond ? null : new Error(why); }

var calls = [
    function c1(done) {
        req({as: 'raw'}).send('echo', '', 'hello', function r(err) { done('raw echo', err); });
    },
    function c2(done) { // played once already: a miss, journaled as unmatched
        req({as: 'raw'}).send('echo', '', 'hello', function r(err) {
            done('raw echo again is a miss', expect(err && err.type === 'tchannel.bad-request',
                'want BadRequest, got ' + (err ? err.type : 'an answer')));
        });
    },
    function c3(done) {
        asThrift.request({serviceName: 'keyvalue-server', hasNoParent: true, timeout: 2000,
            headers: {cn: 'journal-client'}})
            .send('KeyValue::setValue', {}, {key: 'foo', value: 'baz'}, function r(err, res) {
                done('thrift setValue', err || expect(res.ok, 'not ok'));
            });
    },
    function c4(done) {
        asJSON.send(req({'x-tenant': 'node'}), 'json_echo', {}, {value: 'bar', key: 'foo'},
            function r(err, resp) { done('json json_echo', err || expect(resp.ok, 'not ok')); });
    }
];

var checks = [
    ['count every call', 'POST', '/journal/count', {}, function v(s, j) {
        return expect(s === 200 && j.count === 4, 'want 200 {"count": 4}, got ' + s + ' ' +
            JSON.stringify(j));
    }],
    ['count raw echo', 'POST', '/journal/count', {endpoint: 'echo', argScheme: 'raw'},
        function v(s, j) { return expect(j.count === 2, 'want 2, got ' + JSON.stringify(j)); }],
    ['find setValue by its decoded body', 'POST', '/journal/find',
        {endpoint: 'KeyValue::setValue',
         body: {matchesJsonPath: {expression: '$.value', equalTo: 'baz'}}},
        function v(s, j) {
            return expect(j.count === 1 && j.entries[0].bodyDecoded.key === 'foo' &&
                j.entries[0].transportHeaders.cn === 'journal-client',
                'want the setValue entry, got ' + JSON.stringify(j));
        }],
    ['count by transport header', 'POST', '/journal/count',
        {transportHeaders: {'x-tenant': {equalTo: 'node'}}},
        function v(s, j) { return expect(j.count === 1, 'want 1, got ' + JSON.stringify(j)); }],
    ['unmatched', 'GET', '/journal/unmatched', null, function v(s, j) {
        return expect(j.count === 1 && j.entries[0].body === 'hello',
            'want the second echo, got ' + JSON.stringify(j));
    }],
    ['verify fails on the miss', 'GET', '/verify', null, function v(s, j) {
        return expect(s === 409 && j.ok === false && j.unmatched === 1,
            'want 409 ok false unmatched 1, got ' + s + ' ' + JSON.stringify(j));
    }]
];

function runCalls(i) {
    if (i === calls.length) { return runChecks(0); }
    calls[i](function after(name, err) { report(name, err); runCalls(i + 1); });
}

function runChecks(i) {
    if (i === checks.length) {
        client.close();
        console.log((calls.length + checks.length - failed) + ' passed, ' + failed + ' failed');
        process.exit(failed ? 1 : 0);
    }
    var c = checks[i];
    admin(c[1], c[2], c[3], function got(err, status, j) {
        report(c[0], err || c[4](status, j));
        runChecks(i + 1);
    });
}

runCalls(0);
