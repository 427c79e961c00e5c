// What the Node clients of tchannel-mock share (mock_client.js, stubs_client.js,
// journal_client.js): the real Node client (npm tchannel 4.0.1, installed by
// tests/interop/node/install.sh) connected to the mock as service keyvalue-server, its json
// and thrift (cassettes/keyvalue.thrift, strict: false) encodings, requests carrying the
// caller's name, and the `ok <case>` / `FAIL <case>: <why>` runner.
'use strict';

var fs = require('fs');
var path = require('path');

var nodeDir = path.join(__dirname, '..', '..', 'interop', 'node');
var lib = require(path.join(nodeDir, 'lib.js'));

// opts: defaults and usage (lib.parseArgs's), cn (the caller's name). Returns the parsed
// args, the channel (client), its sub channel (sub), asJSON, asThrift and
// req(extraHeaders, timeout): a request with header cn and extraHeaders (timeout 2000 ms
// unless given).
function connect(opts) {
    var args = lib.parseArgs(process.argv.slice(2), opts.defaults, opts.usage);
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
            headers: {cn: opts.cn}
        }
    });
    var asJSON = TChannelJSON({logger: lib.tchannelFile('null-logger.js')});
    var asThrift = TChannelThrift({
        channel: sub,
        source: fs.readFileSync(path.join(__dirname, '..', '..', '..', 'cassettes',
            'keyvalue.thrift'), 'utf8'),
        strict: false
    });

    function req(extraHeaders, timeout) {
        var headers = {cn: opts.cn};
        Object.keys(extraHeaders || {}).forEach(function k(h) { headers[h] = extraHeaders[h]; });
        return sub.request({serviceName: 'keyvalue-server', timeout: timeout || 2000,
            headers: headers});
    }

    return {args: args, client: client, sub: sub, asJSON: asJSON, asThrift: asThrift,
        req: req};
}

// null when got and want are the same JSON, else what differs.
function expectEq(got, want) {
    var g = JSON.stringify(got), w = JSON.stringify(want);
    return g === w ? null : 'got ' + g + ', want ' + w;
}

// Runs list ([name, function (done)] pairs) in order, writing `ok <name>` / `FAIL <name>:
// <why>` lines, then `N passed, M failed`; closes client and exits 0 iff none failed.
function runCases(list, client) {
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
}

module.exports = {lib: lib, connect: connect, expectEq: expectEq, runCases: runCases};
