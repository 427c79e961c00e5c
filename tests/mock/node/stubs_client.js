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

var fs = require('fs');
var path = require('path');

var nodeDir = path.join(__dirname, '..', '..', 'interop', 'node');
var lib = require(path.join(nodeDir, 'lib.js'));
var args = lib.parseArgs(process.argv.slice(2), {peer: ''},
    'usage: node stubs_client.js --peer HOST:PORT');
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
        headers: {cn: 'stubs-client'}
    }
});
var asJSON = TChannelJSON({logger: lib.tchannelFile('null-logger.js')});
var asThrift = TChannelThrift({
    channel: sub,
    source: fs.readFileSync(path.join(__dirname, '..', '..', '..', 'cassettes', 'keyvalue.thrift'),
        'utf8'),
    strict: false
});

function req(timeout) {
    return sub.request({serviceName: 'keyvalue-server', timeout: timeout || 2000,
        headers: {cn: 'stubs-client'}});
}

function expectEq(got, want) {
    var g = JSON.stringify(got), w = JSON.stringify(want);
    return g === w ? null : 'got ' + g + ', want ' + w;
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
