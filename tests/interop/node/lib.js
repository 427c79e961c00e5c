// Shared helpers for the interop and bench scripts that drive Uber's Node TChannel
// (npm tchannel 4.0.1, installed by ./install.sh into ./node_modules).
'use strict';

var path = require('path');

var CHECKSUMS = {none: 0, crc32: 1, farmhash: 2, crc32c: 3};

// The KeyValue IDL both servers serve and both clients call (--idl overrides it).
var DEFAULT_IDL = path.join(__dirname, '..', '..', '..', 'cassettes', 'keyvalue.thrift');
// What json_error answers (body {message: ...}) on both servers.
var JSON_ERROR_MESSAGE = 'json_error: failed on purpose';

// Loads tchannel from this folder's node_modules, with a clear message when install.sh has
// not been run.
function loadTChannel() {
    try {
        return require(path.join(__dirname, 'node_modules', 'tchannel'));
    } catch (err) {
        process.stderr.write('cannot load tchannel (' + err.message + '); run ' +
            path.join(__dirname, 'install.sh') + '\n');
        process.exit(2);
    }
    return null;
}

// A module inside the installed tchannel package, e.g. 'v2/checksum.js'.
function tchannelFile(rel) {
    return require(path.join(__dirname, 'node_modules', 'tchannel', rel));
}

// Node tchannel 4.0.1 writes every frame of a message to the socket at once and resets the
// whole connection (tchannel.connection.reset, "Could not write to socket; socket has N
// writes") when more than 100 writes are queued in the socket (connection.js,
// MAX_PENDING_SOCKET_WRITE_REQ). A message takes one write per 64 KiB frame, so stock Node
// cannot send an arg much beyond ~6 MiB; a 16 MiB message is ~257 frames. The interop tests
// need 16 MiB both ways, so unless stock is asked for, this replaces writeToSocket with a
// plain socket.write (same bytes on the wire, only the self-imposed backlog limit is gone).
function liftWriteLimit() {
    var Connection = tchannelFile('connection.js');
    Connection.prototype.writeToSocket = function writeToSocket(buf) {
        this.socket.write(buf);
    };
}

// Minimal --flag value parser. spec maps flag name -> default value (strings/numbers/booleans);
// a boolean flag takes no value. Unknown flags or missing values print usage and exit 2.
function parseArgs(argv, spec, usage) {
    var out = {};
    Object.keys(spec).forEach(function each(k) { out[k] = spec[k]; });
    for (var i = 0; i < argv.length; i++) {
        var a = argv[i];
        var name = a.replace(/^--/, '');
        if (a.slice(0, 2) !== '--' || !(name in spec)) {
            fail('unknown argument ' + JSON.stringify(a));
        }
        if (typeof spec[name] === 'boolean') {
            out[name] = true;
            continue;
        }
        if (i + 1 >= argv.length) {
            fail('missing value for ' + a);
        }
        var v = argv[++i];
        if (typeof spec[name] === 'number') {
            if (!/^[0-9]+(\.[0-9]+)?$/.test(v)) {
                fail('bad number for ' + a + ': ' + JSON.stringify(v));
            }
            v = Number(v);
        }
        out[name] = v;
    }
    return out;

    function fail(msg) {
        process.stderr.write(msg + '\n' + usage + '\n');
        process.exit(2);
    }
}

// The `big` endpoint's content: n bytes, byte i = i % 251.
function bigPayload(n) {
    var b = Buffer.allocUnsafe(n);
    for (var i = 0; i < n; i++) {
        b[i] = i % 251;
    }
    return b;
}

// A deterministic payload of n bytes, different for different seeds.
function payload(n, seed) {
    var b = Buffer.allocUnsafe(n);
    var x = (seed * 2654435761 + 12345) >>> 0;
    for (var i = 0; i < n; i++) {
        x = (x * 1103515245 + 12345) >>> 0;
        b[i] = x >>> 24;
    }
    return b;
}

function parseHostPort(s) {
    var m = /^(.+):([0-9]+)$/.exec(s || '');
    if (!m) {
        return null;
    }
    return {host: m[1], port: Number(m[2])};
}

module.exports = {
    CHECKSUMS: CHECKSUMS,
    DEFAULT_IDL: DEFAULT_IDL,
    JSON_ERROR_MESSAGE: JSON_ERROR_MESSAGE,
    loadTChannel: loadTChannel,
    tchannelFile: tchannelFile,
    liftWriteLimit: liftWriteLimit,
    parseArgs: parseArgs,
    bigPayload: bigPayload,
    payload: payload,
    parseHostPort: parseHostPort
};
