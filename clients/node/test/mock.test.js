'use strict';
// node --test for the tchannel-mock Node client, against the real binary
// ($TCHANNEL_MOCK_BIN, else PATH) and Uber's Node TChannel client (npm
// tchannel, from tests/interop/node/node_modules) making real calls.

var test = require('node:test');
var assert = require('node:assert');
var childProcess = require('child_process');
var fs = require('fs');
var os = require('os');
var path = require('path');

var tchmock = require('..');

var ROOT = path.join(__dirname, '..', '..', '..');
var CASSETTES = path.join(ROOT, 'cassettes');
var KEYVALUE = path.join(CASSETTES, 'keyvalue.yaml');
var ECHO = path.join(CASSETTES, 'echo-raw.yaml');
var PEER_MODULES = path.join(ROOT, 'tests', 'interop', 'node', 'node_modules');
var TChannel = require(path.join(PEER_MODULES, 'tchannel'));
var TChannelJSON = require(path.join(PEER_MODULES, 'tchannel', 'as', 'json'));
var TChannelThrift = require(path.join(PEER_MODULES, 'tchannel', 'as', 'thrift'));
var nullLogger = require(path.join(PEER_MODULES, 'tchannel', 'null-logger'));

var BIN = tchmock.findBinary().path;
var features = require('../lib/binary').features(BIN);

function tmpdir(t) {
    var dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tchmock-node-'));
    t.after(function rm() { fs.rmSync(dir, {recursive: true, force: true}); });
    return dir;
}

// A Node TChannel client for hostPort, closed when the test ends.
function client(t, hostPort) {
    var ch = new TChannel({logger: nullLogger});
    t.after(function close() { ch.close(); });
    var sub = ch.makeSubChannel({
        serviceName: 'keyvalue-server',
        peers: [hostPort],
        requestDefaults: {
            hasNoParent: true, timeout: 2000,
            retryFlags: {never: true, onConnectionError: false, onTimeout: false},
            headers: {cn: 'keyvalue-client'}
        }
    });
    return {
        raw: function raw(body, endpoint) {
            return new Promise(function call(resolve, reject) {
                sub.request({serviceName: 'keyvalue-server', headers: {as: 'raw'}})
                    .send(endpoint || 'echo', '', body, function done(err, res, arg2, arg3) {
                        if (err) {
                            return reject(err);
                        }
                        resolve(String(arg3));
                    });
            });
        },
        thrift: function thrift(method, body) {
            var kv = TChannelThrift({channel: sub, strict: false,
                source: fs.readFileSync(path.join(CASSETTES, 'keyvalue.thrift'), 'utf8')});
            return new Promise(function call(resolve, reject) {
                kv.request({serviceName: 'keyvalue-server', hasNoParent: true, timeout: 2000,
                    headers: {cn: 'keyvalue-client'}})
                    .send('KeyValue::' + method, {}, body, function done(err, res) {
                        if (err) {
                            return reject(err);
                        }
                        resolve(res);
                    });
            });
        },
        json: function json(endpoint, body) {
            return new Promise(function call(resolve, reject) {
                TChannelJSON({logger: nullLogger}).send(
                    sub.request({serviceName: 'keyvalue-server'}), endpoint, {}, body,
                    function done(err, resp) {
                        if (err) {
                            return reject(err);
                        }
                        resolve(resp.body);
                    });
            });
        }
    };
}

// A mock stopped (and its exit checked) when the test ends.
async function started(t, options) {
    var m = await tchmock.startMock(options);
    t.after(function stop() { return m.stop(); });
    return m;
}

// Waits, with a bound, for a process that is not our child to be gone
// (a zombie counts as gone: its parent is no longer there to reap it).
async function waitGone(pid, ms) {
    var deadline = Date.now() + ms;
    for (;;) {
        var stat = null;
        try {
            stat = fs.readFileSync('/proc/' + pid + '/stat', 'utf8');
        } catch (err) {
            return true;
        }
        if (/^\d+ \(.*\) Z/.test(stat)) {
            return true;
        }
        if (Date.now() > deadline) {
            return false;
        }
        await new Promise(function tick(r) { setTimeout(r, 20); });
    }
}

test('serves raw, json and thrift replays to the Node client; admin counts them', async function t(tt) {
    var m = await started(tt, {cassettes: [KEYVALUE]});
    assert.match(m.hostPort, /^127\.0\.0\.1:\d+$/);
    assert.match(m.adminUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.strictEqual(m.binary, BIN);
    // once started, stdout is drained but no longer collected
    assert.strictEqual(m.child.stdout.listenerCount('data'), 0);
    var c = client(tt, m.hostPort);
    assert.strictEqual(await c.raw('hello'), 'hello');
    assert.deepStrictEqual(await c.json('json_echo', {key: 'foo', value: 'bar'}),
        {key: 'foo', value: 'bar'});
    var res = await c.thrift('getValue', {key: 'foo'});
    assert.deepStrictEqual([res.ok, res.body], [true, 'bar']);
    assert.strictEqual(await m.admin.count({endpoint: 'echo', outcome: 'replayed'}), 1);
    assert.strictEqual(await m.admin.count({service: 'keyvalue-server'}), 3);
    var j = await m.admin.journal({limit: 1});
    assert.strictEqual(j.matching, 3);
    assert.strictEqual(j.entries.length, 1);
    assert.strictEqual(j.entries[0].endpoint, 'KeyValue::getValue');
    var h = await m.admin.health();
    assert.strictEqual(h.listening, m.hostPort);
    assert.strictEqual(h.calls, 3);
    await m.verify(); // no unmatched request
    await assert.rejects(m.verify({allPlayed: true}), function check(err) {
        assert.ok(err instanceof tchmock.VerifyError);
        assert.ok(err.problems.some(function p(s) { return /KeyValue::getValue/.test(s); }),
            err.message);
        return true;
    });
});

test('an unmatched request fails verify() with the mock\'s message', async function t(tt) {
    var m = await started(tt, {cassettes: [ECHO]});
    var c = client(tt, m.hostPort);
    await assert.rejects(c.raw('hello?'), {codeName: 'BadRequest', message: /nearest #0/});
    var un = await m.admin.unmatched();
    assert.strictEqual(un.length, 1);
    assert.strictEqual(un[0].outcome, 'unmatched');
    await assert.rejects(m.verify(), function check(err) {
        assert.ok(err instanceof tchmock.VerifyError);
        assert.match(err.message, /1 request\(s\) matched no interaction or stub/);
        assert.match(err.message, /keyvalue-server::echo: .*differs: body/);
        return true;
    });
    await m.admin.reset(); // clears the journal and counters
    await m.verify();
});

test('admin API: cassettes, mode, rewind, reload, hyperbahn; errors carry status and message',
    async function t(tt) {
        var dir = tmpdir(tt);
        // the admin API may load from dir (a mock with --cassette-root limits it)
        var m = await started(tt, {cassettes: [ECHO],
            cassetteRoots: features.cassetteRoot ? [dir] : undefined});
        var c = client(tt, m.hostPort);
        assert.strictEqual(await m.admin.mode(), 'none');
        await assert.rejects(m.admin.setMode('once'), function check(err) {
            assert.ok(err instanceof tchmock.AdminError);
            assert.strictEqual(err.status, 400);
            // the wording may change; what to give it (--upstream) is named
            assert.match(err.mockMessage, /--upstream/);
            return true;
        });
        await assert.rejects(m.admin.setMode('sometimes'), TypeError);
        await assert.rejects(m.admin.journal({outcome: 'lost'}), TypeError);
        await assert.rejects(m.admin.unloadCassette(KEYVALUE), function check(err) {
            return err.status === 404 && err.method === 'DELETE';
        });
        await assert.rejects(m.admin.loadCassette(path.join(dir, 'none.yaml')),
            function check(err) { return err.status === 404 && /no such file/.test(err.message); });
        var loaded = await m.admin.loadCassette(KEYVALUE);
        assert.strictEqual(loaded.length, 1);
        assert.strictEqual(loaded[0].path, KEYVALUE);
        await assert.rejects(m.admin.loadCassette(KEYVALUE), function check(err) {
            return err.status === 409;
        });
        var fresh = await m.admin.loadCassette(path.join(dir, 'new.yaml'), {recordTarget: true});
        assert.strictEqual(fresh[0].recordTarget, true);
        var list = await m.admin.cassettes();
        assert.deepStrictEqual(list.cassettes.map(function p(x) { return x.path; }),
            [ECHO, KEYVALUE, path.join(dir, 'new.yaml')]);
        assert.deepStrictEqual(await m.admin.unloadCassette(KEYVALUE), {unloaded: KEYVALUE});

        assert.strictEqual(await c.raw('hello'), 'hello');
        await assert.rejects(c.raw('hello'), {message: /already played/}); // once each
        assert.deepStrictEqual(await m.admin.rewind(), {rewound: 2});
        assert.strictEqual(await c.raw('hello'), 'hello');
        var r = await m.admin.reload();
        assert.ok(r.reloaded.every(function ok(x) { return x.ok; }));
        var hb = await m.admin.hyperbahn();
        assert.ok(Array.isArray(hb.advertiseTo));

        // a broken edit: reload answers 409; the error names the file
        var broken = path.join(dir, 'broken.yaml');
        fs.writeFileSync(broken, 'version: 1\ninteractions: []\n');
        await m.admin.loadCassette(broken);
        fs.writeFileSync(broken, 'interactions: [\n');
        await assert.rejects(m.admin.reload(), function check(err) {
            assert.strictEqual(err.status, 409);
            assert.ok(err.mockMessage.indexOf(broken) === 0, err.mockMessage);
            return true;
        });
    });

test('records through to an upstream, then replays what it saved', async function t(tt) {
    var dir = tmpdir(tt);
    var rec = path.join(dir, 'rec.yaml');
    var upstream = await started(tt, {cassettes: [ECHO]});
    var m = await tchmock.startMock({mode: 'new_episodes', upstream: upstream.hostPort,
        recordTo: rec});
    var c = client(tt, m.hostPort);
    assert.strictEqual((await m.admin.health()).recording, true);
    assert.strictEqual(await c.raw('hello'), 'hello');
    assert.strictEqual(await m.admin.count({outcome: 'recorded'}), 1);
    await m.stop();
    assert.match(fs.readFileSync(rec, 'utf8'), /body: hello/);

    var replay = await started(tt, {cassettes: [rec]});
    assert.strictEqual(await client(tt, replay.hostPort).raw('hello'), 'hello');
    await replay.verify({allPlayed: true});
});

test('withMock stops the mock even when the body throws', async function t() {
    var pid = null;
    await assert.rejects(tchmock.withMock({cassettes: [ECHO]}, async function body(m) {
        pid = m.pid;
        throw new Error('test body failed');
    }), /test body failed/);
    assert.ok(await waitGone(pid, 5000), 'mock ' + pid + ' still running');
    var seen = await tchmock.withMock({cassettes: [ECHO], verify: true}, function body(m) {
        return m.admin.mode();
    });
    assert.strictEqual(seen, 'none');
});

test('a mock that cannot start: the error holds its stderr', async function t(tt) {
    var dir = tmpdir(tt);
    var bad = path.join(dir, 'bad.yaml');
    fs.writeFileSync(bad, 'interactions:\n  - request: [\n');
    await assert.rejects(tchmock.startMock({cassettes: [bad]}), function check(err) {
        assert.ok(err instanceof tchmock.MockError);
        assert.match(err.message, /exited during start-up \(status 1\)/);
        assert.ok(err.stderr.indexOf(bad + ':') >= 0, err.stderr);
        return true;
    });
    await assert.rejects(tchmock.startMock({cassettes: [ECHO], args: ['--bogus']}),
        /unknown option --bogus/);
});

test('bounded start and stop, with a stand-in that never answers', async function t(tt) {
    var dir = tmpdir(tt);
    var silent = path.join(dir, 'silent-mock');
    fs.writeFileSync(silent, '#!/bin/sh\n[ "$1" = --help ] && exit 0\n' +
        'echo "starting, but never listening" >&2\nexec sleep 30\n', {mode: 0o755});
    var t0 = Date.now();
    await assert.rejects(tchmock.startMock({bin: silent, startTimeoutMs: 300}),
        function check(err) {
            assert.match(err.message, /within 300 ms/);
            assert.match(err.stderr, /never listening/);
            return true;
        });
    assert.ok(Date.now() - t0 < 5000);

    var deaf = path.join(dir, 'deaf-mock');
    fs.writeFileSync(deaf, '#!/bin/sh\n[ "$1" = --help ] && exit 0\ntrap "" TERM\n' +
        'echo "listening 127.0.0.1:1"\necho "admin 127.0.0.1:2"\nexec sleep 30\n',
    {mode: 0o755});
    var m = await tchmock.startMock({bin: deaf, stopTimeoutMs: 300});
    await assert.rejects(m.stop(), /did not exit within 300 ms of SIGTERM and was killed/);
    assert.strictEqual(m.exited.signal, 'SIGKILL');
});

test('findBinary: option, then TCHANNEL_MOCK_BIN, then PATH; says what it tried',
    function t() {
        assert.deepStrictEqual(tchmock.findBinary(BIN, {}), {path: BIN, source: 'option'});
        assert.deepStrictEqual(tchmock.findBinary(undefined, {TCHANNEL_MOCK_BIN: BIN}),
            {path: BIN, source: 'TCHANNEL_MOCK_BIN'});
        assert.deepStrictEqual(tchmock.findBinary(undefined, {PATH: path.dirname(BIN)}),
            {path: BIN, source: 'PATH'});
        assert.throws(function none() {
            tchmock.findBinary('/nonexistent/tchannel-mock',
                {TCHANNEL_MOCK_BIN: '/also/missing', PATH: '/nowhere'});
        }, function check(err) {
            assert.match(err.message, /option bin: \/nonexistent\/tchannel-mock/);
            assert.match(err.message, /TCHANNEL_MOCK_BIN=\/also\/missing/);
            assert.match(err.message, /PATH: no tchannel-mock in \/nowhere/);
            return true;
        });
    });

test('the mock does not outlive a test process that is killed',
    {skip: features.exitOnStdinEof || require('../lib/binary').pdeathsigWrapper() ? false :
        'this tchannel-mock has no --exit-on-stdin-eof, and setpriv --pdeathsig is missing'},
    async function t() {
        var script = 'require(' + JSON.stringify(path.join(__dirname, '..')) + ')' +
            '.startMock({bin: ' + JSON.stringify(BIN) + ', cassettes: [' +
            JSON.stringify(ECHO) + ']}).then(function (m) { console.log(m.pid); ' +
            'setInterval(function () {}, 1000); });';
        var parent = childProcess.spawn(process.execPath, ['-e', script],
            {stdio: ['ignore', 'pipe', 'inherit']});
        var pid = await new Promise(function read(resolve, reject) {
            var out = '';
            parent.stdout.on('data', function d(b) {
                out += b;
                if (/\n/.test(out)) {
                    resolve(Number(out.trim()));
                }
            });
            parent.on('exit', function e(code) { reject(new Error('parent exited ' + code)); });
        });
        assert.ok(pid > 0);
        parent.kill('SIGKILL');
        assert.ok(await waitGone(pid, 10000), 'mock ' + pid + ' outlived its killed parent');
    });

test('admin token: requests carry it; without it the mock refuses',
    {skip: features.adminTokenFile ? false : 'this tchannel-mock has no --admin-token-file'},
    async function t(tt) {
        var m = await started(tt, {cassettes: [ECHO], adminToken: 's3cret'});
        assert.strictEqual((await m.admin.health()).status, 'ok');
        var anon = new tchmock.AdminClient(m.adminUrl);
        await assert.rejects(anon.health(), function check(err) {
            return err.status === 401 && /Bearer/.test(err.mockMessage);
        });
        var wrong = new tchmock.AdminClient(m.adminUrl, {token: 'guess'});
        await assert.rejects(wrong.health(), {status: 401});
    });

test('run-time stubs, scenarios and saving them, called by the Node client', async function t(tt) {
    var dir = tmpdir(tt);
    var m = await started(tt, {cassettes: [ECHO], cassetteRoots: [dir]});
    var a = m.admin;
    var c = client(tt, m.hostPort);
    var ping = await a.addStub({id: 'ping', request: {serviceName: 'keyvalue-server',
        endpoint: 'ping', body: {matches: '^ping-[0-9]+$'}}, response: {body: 'pong'}});
    assert.deepStrictEqual([ping.id, ping.plays, ping.request.endpoint], ['ping', 0, 'ping']);
    var named = await a.addStub({request: {serviceName: 'keyvalue-server', endpoint: 'x'},
        response: {body: 'x'}});
    assert.ok(named.id && named.id !== 'ping', 'the mock names a stub given no id');
    assert.strictEqual(await c.raw('ping-42', 'ping'), 'pong');
    assert.strictEqual(await c.raw('ping-43', 'ping'), 'pong');
    assert.strictEqual((await a.stub('ping')).plays, 2);
    assert.deepStrictEqual((await a.stubs()).map(function id(s) { return s.id; }),
        ['ping', named.id]);
    var changed = await a.replaceStub('ping', {id: 'ping', request: {
        serviceName: 'keyvalue-server', endpoint: 'ping'}, response: {body: 'PONG'}});
    assert.strictEqual(changed.response.body, 'PONG');
    assert.strictEqual(await c.raw('anything', 'ping'), 'PONG');
    await assert.rejects(a.stub('nope'), {status: 404, mockMessage: /nope/});
    await assert.rejects(a.addStub({request: {endpoint: {matches: '('}}, response: {body: 'x'}}),
        {status: 400, mockMessage: /endpoint\.matches/});
    await assert.rejects(a.stub(''), TypeError);

    // scenarios: a stub answers only in its state, and moves it
    var cart = {serviceName: 'keyvalue-server', endpoint: 'cart'};
    await a.addStub({id: 'empty', scenario: 'cart', requiredState: 'Started', newState: 'full',
        request: cart, response: {body: 'empty'}});
    await a.addStub({id: 'full', scenario: 'cart', requiredState: 'full', request: cart,
        response: {body: 'one item'}});
    assert.strictEqual(await c.raw('', 'cart'), 'empty');
    var scs = await a.scenarios();
    assert.deepStrictEqual([scs.length, scs[0].name, scs[0].state], [1, 'cart', 'full']);
    assert.ok(scs[0].possibleStates.indexOf('Started') >= 0);
    assert.strictEqual(await c.raw('', 'cart'), 'one item');
    assert.strictEqual(await a.setScenarioState('cart', 'Started'), 'Started');
    assert.strictEqual(await c.raw('', 'cart'), 'empty');
    await a.resetScenarios();
    assert.strictEqual((await a.scenarios())[0].state, 'Started');
    await assert.rejects(a.setScenarioState('cart', 'ful'), {status: 400, mockMessage: /'full'/});
    await assert.rejects(a.setScenarioState('no such', 'Started'), {status: 404});

    // saved as a cassette another mock serves
    var out = path.join(dir, 'stubs.yaml');
    assert.strictEqual(await a.saveStubs(out), 4);
    await assert.rejects(a.saveStubs(out), {status: 409, mockMessage: /overwrite/});
    assert.strictEqual(await a.saveStubs(out, {overwrite: true}), 4);
    assert.strictEqual(await a.deleteStub(named.id), named.id);
    assert.strictEqual(await a.deleteStubs(), 3);
    assert.deepStrictEqual(await a.stubs(), []);
    var other = await started(tt, {cassettes: [out]});
    assert.strictEqual(await client(tt, other.hostPort).raw('x', 'ping'), 'PONG');
});

test('journal rules and verify: required stubs never called, unmatched requests',
    async function t(tt) {
        var m = await started(tt, {cassettes: [KEYVALUE],
            args: ['--thrift', path.join(CASSETTES, 'keyvalue.thrift')]});
        var a = m.admin;
        var c = client(tt, m.hostPort);
        await a.addStub({id: 'must', required: true, request: {serviceName: 'keyvalue-server',
            endpoint: 'must'}, response: {body: 'done'}});
        var res = await c.thrift('setValue', {key: 'foo', value: 'baz'});
        assert.strictEqual(res.ok, true);
        await assert.rejects(c.raw('', 'nothing-here'), {codeName: 'BadRequest'});
        var rules = {endpoint: 'KeyValue::setValue',
            body: {matchesJsonPath: {expression: '$.value', equalTo: 'baz'}}};
        assert.strictEqual(await a.countRequests(rules), 1);
        var found = await a.findRequests(rules);
        assert.deepStrictEqual(found[0].bodyDecoded, {key: 'foo', value: 'baz'});
        assert.strictEqual(await a.countRequests(), 2);
        await assert.rejects(a.countRequests({body: {matchesJsonPath: '$.a['}}),
            {status: 400, mockMessage: /body\.matchesJsonPath/});
        var u = await a.unmatchedReport();
        assert.deepStrictEqual([u.count, u.unmatchedSinceClear, u.entries[0].endpoint],
            [1, 1, 'nothing-here']);

        var report = await a.verify(); // a 409 is a report, not an error
        assert.strictEqual(report.ok, false);
        assert.strictEqual(report.unmatched, 1);
        assert.deepStrictEqual(report.notCalled.map(function id(n) { return n.id; }), ['must']);
        await assert.rejects(m.verify(), function check(err) {
            assert.ok(err instanceof tchmock.VerifyError);
            assert.match(err.problems[0], /^required, never called: .*\[must\]/);
            assert.match(err.message, /nothing-here/);
            return true;
        });
        await assert.rejects(m.verify({unmatched: false}), function check(err) {
            return err.problems.length === 1 && !/nothing-here/.test(err.message);
        });
        await m.verify({unmatched: false, required: false});

        assert.strictEqual(await a.clearJournal(), 2);
        assert.strictEqual(await c.raw('', 'must'), 'done');
        assert.strictEqual((await a.verify()).ok, true);
        await m.verify();
    });

test('redactions: read, replace, a bad path refused and the set kept', async function t(tt) {
    var m = await started(tt, {cassettes: [ECHO]});
    assert.deepStrictEqual(await m.admin.redactions(),
        {headers: [], transportHeaders: [], jsonPaths: [], thriftFields: []});
    var r = await m.admin.setRedactions({headers: ['x-token'], jsonPaths: ['$.password']});
    assert.deepStrictEqual([r.headers, r.jsonPaths], [['x-token'], ['$.password']]);
    await assert.rejects(m.admin.setRedactions({jsonPaths: ['password']}),
        {status: 400, mockMessage: /jsonPaths\[0\]/});
    assert.deepStrictEqual((await m.admin.redactions()).jsonPaths, ['$.password']);
    assert.deepStrictEqual((await m.admin.setRedactions({})).headers, []);
});
