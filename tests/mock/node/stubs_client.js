#!/usr/bin/env node
// The real Node client (npm tchannel) against run-time stubs that stubs.sh added to
// tchannel-mock over its admin API.
//   node stubs_client.js --peer HOST:PORT
// Cases: a templated json answer built from the request; a thrift stub matched on the
// decoded body and answered with a templated result encoded through the IDL; a miss that
// names the stub and the rule that failed; a noAnswer fault that makes the call time out; a
// badChecksum fault that Node's checksum check refuses; a closeConnection fault that ends the
// call with its connection (and a call after it, on a new connection, is answered).
// Output: `ok <case>` / `FAIL <case>: <why>` lines, then `N passed, M failed`.
'use strict';

var common = require('./common.js');
var c = common.connect({cn: 'stubs-client', defaults: {peer: ''},
    usage: 'usage: node stubs_client.js --peer HOST:PORT'});
var client = c.client, asJSON = c.asJSON, asThrift = c.asThrift;
var expectEq = common.expectEq;

function req(timeout) {
    return c.req(null, timeout);
}

var list = [
    ['json template fills from the request', function t(done) {
        asJSON.send(req(), 'greet', {user: 'ada'}, {name: 'Ada', id: 7}, function r(err, res) {
            if (err) { return done(err); }
            done(expectEq([res.ok, res.body], [true, {hello: 'Ada', id: 7, by: 'ada'}]));
        });
    }],
    ['thrift stub matched on the decoded body, answer encoded with the IDL', function t(done) {
        asThrift.request({serviceName: 'keyvalue-server', timeout: 2000, hasNoParent: true,
            headers: {cn: 'stubs-client'}})
            .send('KeyValue::getValue', {}, {key: 'fooo'}, function r(err, res) {
                done(err || expectEq([res.ok, res.body], [true, 'stubbed fooo']));
            });
    }],
    ['a miss names the stub and the rule', function t(done) {
        asJSON.send(req(), 'greet', {}, {name: 'Bob', id: 8}, function r(err) {
            if (!err) { return done('expected an error frame'); }
            if (err.codeName !== 'BadRequest') { return done('got ' + err.codeName); }
            done(/nearest stub greet/.test(err.message) &&
                /body \$\.id: expected 7, got 8/.test(err.message) ? null :
                'message does not name the rule: ' + err.message);
        });
    }],
    ['noAnswer: the caller times out', function t(done) {
        var t0 = Date.now();
        asJSON.send(req(300), 'hang', {}, {}, function r(err) {
            if (!err) { return done('expected a timeout'); }
            done(/timeout/i.test(err.type + ' ' + err.message) && Date.now() - t0 >= 250 ? null :
                'got ' + err.type + ': ' + err.message);
        });
    }],
    ['badChecksum: Node refuses the answer', function t(done) {
        asJSON.send(req(), 'spoil', {}, {}, function r(err, res) {
            if (!err) { return done('expected a checksum error, got ' + JSON.stringify(res.body)); }
            done(err.type === 'tchannel.checksum' ? null :
                'got ' + err.type + ': ' + err.message);
        });
    }],
    ['closeConnection: the call ends with its connection', function t(done) {
        var t0 = Date.now();
        asJSON.send(req(), 'drop', {}, {}, function r(err, res) {
            if (!err) { return done('expected the connection closed, got ' + JSON.stringify(res.body)); }
            if (Date.now() - t0 >= 1500) { return done('took ' + (Date.now() - t0) + ' ms'); }
            done(err.type === 'tchannel.connection.reset' ? null :
                'got ' + err.type + ': ' + err.message);
        });
    }],
    ['after closeConnection a new connection is answered', function t(done) {
        asJSON.send(req(), 'greet', {user: 'bo'}, {name: 'Bo', id: 7}, function r(err, res) {
            done(err || expectEq([res.ok, res.body], [true, {hello: 'Bo', id: 7, by: 'bo'}]));
        });
    }]
];

common.runCases(list, client);
