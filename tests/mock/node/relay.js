#!/usr/bin/env node
// tchannel-mock as the only Hyperbahn router of real Node services and clients (npm tchannel
// 4.0.1 and its HyperbahnClient).
//   node relay.js --role service --router-file PATH --service NAME
//       listens on 127.0.0.1, advertises NAME through HyperbahnClient (hostPortFile: PATH),
//       prints `listening HOST:PORT` once the ad succeeded, then serves until SIGTERM:
//         echo       (raw) arg2 "cn=<caller> rd=<rd> traced=<0|1>", arg3 unchanged
//         json_echo  (as=json) ok, body {got: <request body>}
//         busy       a Busy error frame "NAME is busy (on purpose)"
//       and echo again under service relay-front, which it does not advertise: calls to
//       relay-front reach it through routing delegate rd=NAME
//   node relay.js --role client --router-file PATH --service NAME --phase live|replay
//       calls NAME by service name through HyperbahnClient.getClientChannel (the router file's
//       routers as its only peers), checks each answer; live also checks what the service saw.
// Output: `ok <case>` / `FAIL <case>: <why>` lines, then `N passed, M failed`; exit 0 iff none
// failed.
'use strict';

var path = require('path');
var nodeDir = path.join(__dirname, '..', '..', 'interop', 'node');
var lib = require(path.join(nodeDir, 'lib.js'));
var args = lib.parseArgs(process.argv.slice(2),
    {role: '', 'router-file': '', service: 'relay-node-service', phase: 'live'},
    'usage: node relay.js --role service|client --router-file PATH [--service NAME] ' +
    '[--phase live|replay]');
var TChannel = lib.loadTChannel();
var HyperbahnClient = lib.tchannelFile('hyperbahn/index.js');
var TChannelJSON = lib.tchannelFile('as/json.js');
var nullLogger = lib.tchannelFile('null-logger.js');

function service() {
    var chan = new TChannel({logger: nullLogger});
    var sub = chan.makeSubChannel({serviceName: args.service});
    function echo(req, res, arg2, arg3) {
        var traced = req.tracing && req.tracing.traceflags ? 1 : 0;
        res.headers.as = 'raw';
        res.sendOk('cn=' + req.headers.cn + ' rd=' + (req.headers.rd || '') +
            ' traced=' + traced, arg3);
    }
    sub.register('echo', echo);
    chan.makeSubChannel({serviceName: 'relay-front'}).register('echo', echo);
    sub.register('busy', function busy(req, res) {
        res.sendError('Busy', args.service + ' is busy (on purpose)');
    });
    var asJSON = TChannelJSON({logger: nullLogger});
    asJSON.register(sub, 'json_echo', {}, function jsonEcho(ctx, req, head, body, cb) {
        cb(null, {ok: true, head: {}, body: {got: body}});
    });
    chan.listen(0, '127.0.0.1', function listening() {
        var hb = new HyperbahnClient({
            tchannel: chan, serviceName: args.service, callerName: args.service,
            hostPortFile: args['router-file'], reportTracing: false, logger: nullLogger
        });
        hb.once('advertised', function advertised() {
            process.stdout.write('listening ' + chan.hostPort + '\n');
        });
        hb.on('error', function onError(err) {
            process.stderr.write('advertise failed: ' + err.message + '\n');
            process.exit(1);
        });
        hb.advertise();
        process.on('SIGTERM', function stop() {
            hb.destroy();
            chan.close();
            process.exit(0);
        });
    });
}

function client() {
    var chan = new TChannel({logger: nullLogger});
    var hb = new HyperbahnClient({
        tchannel: chan, serviceName: 'relay-node-client', callerName: 'relay-node-client',
        hostPortFile: args['router-file'], reportTracing: false, logger: nullLogger
    });
    var sub = hb.getClientChannel({serviceName: args.service, timeout: 2000});
    var asJSON = TChannelJSON({logger: nullLogger});
    var passed = 0, failed = 0;
    function ok(name) { passed++; process.stdout.write('ok ' + name + '\n'); }
    function fail(name, why) { failed++; process.stdout.write('FAIL ' + name + ': ' + why + '\n'); }
    function req(extra) {
        var o = {serviceName: args.service, timeout: 2000, hasNoParent: true,
            retryFlags: {never: true, onConnectionError: false, onTimeout: false},
            headers: {as: 'raw'}};
        Object.keys(extra || {}).forEach(function k(h) { o[h] = extra[h]; });
        return sub.request(o);
    }
    var cases = [
        function rawEcho(next) {
            req().send('echo', '', 'hello relay', function done(err, res, arg2, arg3) {
                if (err) { fail('raw echo', err.type + ': ' + err.message); return next(); }
                var want = 'cn=relay-node-client rd= ';
                if (String(arg3) !== 'hello relay') {
                    fail('raw echo', 'arg3 ' + JSON.stringify(String(arg3)));
                } else if (String(arg2).indexOf(want) !== 0) {
                    fail('raw echo', 'the service saw ' + JSON.stringify(String(arg2)) +
                        ', want it to start with ' + JSON.stringify(want));
                } else {
                    ok('raw echo (' + args.phase + '): ' + String(arg2));
                }
                next();
            });
        },
        function jsonEcho(next) {
            asJSON.send(req({headers: {}}), 'json_echo', {}, {n: 7},
                function done(err, resp) {
                    if (err) { fail('json echo', err.type + ': ' + err.message); return next(); }
                    if (!resp.ok || !resp.body || !resp.body.got || resp.body.got.n !== 7) {
                        fail('json echo', JSON.stringify(resp.body));
                    } else {
                        ok('json echo (' + args.phase + ')');
                    }
                    next();
                });
        },
        function busy(next) {
            req().send('busy', '', '', function done(err) {
                var want = args.service + ' is busy (on purpose)';
                if (!err || err.type !== 'tchannel.busy' || err.message !== want) {
                    fail('error passed through', err ? err.type + ': ' + err.message : 'no error');
                } else {
                    ok('error passed through (' + args.phase + '): ' + err.type);
                }
                next();
            });
        },
        function routingDelegate(next) {
            var front = hb.getClientChannel({serviceName: 'relay-front', timeout: 2000});
            front.request({serviceName: 'relay-front', timeout: 2000, hasNoParent: true,
                retryFlags: {never: true, onConnectionError: false, onTimeout: false},
                headers: {as: 'raw', rd: args.service}}).send('echo', '', 'via rd',
                function done(err, res, arg2, arg3) {
                    var want = 'cn=relay-node-client rd=' + args.service + ' ';
                    if (err) {
                        fail('routing delegate', err.type + ': ' + err.message);
                    } else if (String(arg3) !== 'via rd' || String(arg2).indexOf(want) !== 0) {
                        fail('routing delegate', JSON.stringify(String(arg2)) + ' / ' +
                            JSON.stringify(String(arg3)));
                    } else {
                        ok('routing delegate: relay-front reached via rd=' + args.service +
                            ' (' + args.phase + ')');
                    }
                    next();
                });
        },
        function unknownService(next) {
            if (args.phase !== 'live') { return next(); }
            var other = hb.getClientChannel({serviceName: 'relay-nobody', timeout: 2000});
            other.request({serviceName: 'relay-nobody', timeout: 2000, hasNoParent: true,
                retryFlags: {never: true, onConnectionError: false, onTimeout: false},
                headers: {as: 'raw'}}).send('echo', '', 'x', function done(err) {
                if (!err || err.type !== 'tchannel.declined' ||
                    err.message.indexOf('relay-nobody') < 0) {
                    fail('no instance: Declined', err ? err.type + ': ' + err.message : 'ok');
                } else {
                    ok('no instance: Declined naming the service');
                }
                next();
            });
        }
    ];
    (function run(i) {
        if (i === cases.length) {
            process.stdout.write(passed + ' passed, ' + failed + ' failed\n');
            hb.destroy();
            chan.close();
            process.exit(failed ? 1 : 0);
        }
        cases[i](function next() { run(i + 1); });
    })(0);
}

if (args.role === 'service') {
    service();
} else if (args.role === 'client') {
    client();
} else {
    process.stderr.write('--role service|client\n');
    process.exit(2);
}
