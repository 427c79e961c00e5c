#!/usr/bin/env node
// A stand-in Hyperbahn router built on the Node peer (npm tchannel 4.0.1) and its json
// scheme (as/json.js), for tests/integration/test_hyperbahn.c: it checks that Node parses
// our advertise call the way a Node router would.
//
// Serves service "hyperbahn", endpoint "ad" (as=json). Each ad it receives is validated as
// Hyperbahn's own ad handler expects (body.services: a non-empty array of objects with a
// string serviceName and a numeric cost) and reported on stdout as one line:
//   ad {"cn":..,"as":..,"callerHostPort":..,"head":..,"body":..,"valid":true|false}
// then answered {ok: true, body: {connectionCount: 1}} (or ok: false with the problem).
// Prints `listening HOST:PORT` first. Exits on SIGTERM/SIGINT or when stdin closes.
//
// usage: node hyperbahn_router.js NODE_MODULES_DIR
'use strict';

var path = require('path');

var modules = process.argv[2];
if (!modules) {
    process.stderr.write('usage: node hyperbahn_router.js NODE_MODULES_DIR\n');
    process.exit(2);
}
var TChannel = require(path.join(modules, 'tchannel'));
var TChannelJSON = require(path.join(modules, 'tchannel', 'as', 'json.js'));

var noop = function noop() {};
var logger = {
    trace: noop, debug: noop, info: noop, warn: noop, error: noop, fatal: noop,
    child: function child() { return this; }
};

var server = new TChannel({logger: logger});
var hyperbahn = server.makeSubChannel({serviceName: 'hyperbahn'});
var json = new TChannelJSON({logger: logger});

function problemWith(body) {
    if (!body || !Array.isArray(body.services) || body.services.length === 0) {
        return 'body.services must be a non-empty array';
    }
    for (var i = 0; i < body.services.length; i++) {
        var s = body.services[i];
        if (!s || typeof s.serviceName !== 'string' || s.serviceName === '') {
            return 'services[' + i + '].serviceName must be a non-empty string';
        }
        if (typeof s.cost !== 'number') {
            return 'services[' + i + '].cost must be a number';
        }
    }
    return null;
}

json.register(hyperbahn, 'ad', {}, function ad(ctx, req, head, body, cb) {
    var problem = problemWith(body);
    process.stdout.write('ad ' + JSON.stringify({
        cn: req.headers.cn, as: req.headers.as,
        callerHostPort: req.connection && req.connection.remoteName,
        head: head, body: body, valid: problem === null, problem: problem
    }) + '\n');
    if (problem) {
        cb(null, {ok: false, head: null, body: {message: problem}});
        return;
    }
    cb(null, {ok: true, head: null, body: {connectionCount: 1}});
});

server.listen(0, '127.0.0.1', function onListen() {
    process.stdout.write('listening ' + server.hostPort + '\n');
});

function stop() {
    server.close();
    process.exit(0);
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
