'use strict';
// Runs tchannel-mock as a child process for the length of a test.

var childProcess = require('child_process');
var fs = require('fs');
var os = require('os');
var path = require('path');

var admin = require('./admin');
var binary = require('./binary');

var STDERR_KEEP = 64 * 1024;
var STDOUT_KEEP = 16 * 1024;

// Mocks still running, so that a test process that exits without stopping
// them still sends SIGTERM (the stdin pipe covers the exits no handler sees).
var live = new Set();
function onProcessExit() {
    live.forEach(function kill(m) {
        try {
            m.child.kill('SIGTERM');
        } catch (err) {
            // already gone
        }
    });
}

function track(m) {
    if (live.size === 0) {
        process.on('exit', onProcessExit);
    }
    live.add(m);
}

function untrack(m) {
    live.delete(m);
    if (live.size === 0) {
        process.removeListener('exit', onProcessExit);
    }
}

function MockError(message, stderr) {
    var err = new Error(message + (stderr ? '\n--- tchannel-mock stderr ---\n' + stderr : ''));
    Object.setPrototypeOf(err, MockError.prototype);
    err.name = 'MockError';
    err.stderr = stderr;
    return err;
}
MockError.prototype = Object.create(Error.prototype, {
    constructor: {value: MockError, writable: true, configurable: true}
});

function VerifyError(problems) {
    var err = new Error('tchannel-mock verification failed:\n  ' + problems.join('\n  '));
    Object.setPrototypeOf(err, VerifyError.prototype);
    err.name = 'VerifyError';
    err.problems = problems;
    return err;
}
VerifyError.prototype = Object.create(Error.prototype, {
    constructor: {value: VerifyError, writable: true, configurable: true}
});

function list(v) {
    if (v === undefined || v === null) {
        return [];
    }
    return Array.isArray(v) ? v : [v];
}

// A positional that starts with '-' would be read as an option.
function positional(p) {
    return p.charAt(0) === '-' ? './' + p : p;
}

function buildArgs(o, feats, tokenFile) {
    var args = ['--host', o.host || '127.0.0.1', '--port', '0', '--admin-port', '0'];
    if (o.mode) {
        args.push('--mode', o.mode);
    }
    list(o.upstream).forEach(function up(u) { args.push('--upstream', u); });
    if (o.recordTo) {
        args.push('--record-to', o.recordTo);
    }
    if (o.allowRepeats) {
        args.push('--allow-repeats');
    }
    if (o.match) {
        args.push('--match', list(o.match).join(','));
    }
    if (feats.exitOnStdinEof) {
        args.push('--exit-on-stdin-eof');
    }
    if (tokenFile) {
        args.push('--admin-token-file', tokenFile);
    }
    list(o.cassetteRoots).forEach(function root(d) { args.push('--cassette-root', d); });
    args.push.apply(args, list(o.args));
    list(o.cassettes).forEach(function c(p) { args.push(positional(p)); });
    return args;
}

function MockServer(child, bin, opts) {
    this.child = child;
    this.pid = child.pid;
    this.binary = bin.path;
    this.binarySource = bin.source;
    this.hostPort = null;
    this.host = null;
    this.port = null;
    this.adminHostPort = null;
    this.adminUrl = null;
    this.admin = null;
    this.exited = null; // {code, signal} once the child has exited
    this._stderr = '';
    this._opts = opts;
    this._tokenDir = null;
    this._exitWaiters = [];
    this._stopping = null;
}

MockServer.prototype.stderr = function stderr() {
    return this._stderr;
};

MockServer.prototype._onExit = function _onExit(code, signal) {
    this.exited = {code: code, signal: signal};
    untrack(this);
    this._removeToken();
    var waiters = this._exitWaiters;
    this._exitWaiters = [];
    waiters.forEach(function w(fn) { fn(); });
};

MockServer.prototype._removeToken = function _removeToken() {
    if (this._tokenDir) {
        fs.rmSync(this._tokenDir, {recursive: true, force: true});
        this._tokenDir = null;
    }
};

// Resolves once the child has exited, or to false after ms.
MockServer.prototype._waitExit = function _waitExit(ms) {
    var self = this;
    if (self.exited) {
        return Promise.resolve(true);
    }
    return new Promise(function wait(resolve) {
        var timer = setTimeout(function late() { resolve(false); }, ms);
        self._exitWaiters.push(function done() {
            clearTimeout(timer);
            resolve(true);
        });
    });
};

// SIGTERM, a bounded wait, then SIGKILL. Resolves to {code, signal}; rejects
// when the mock had to be killed or exited non-zero (a cassette it could not
// save, for one), with its stderr in the message.
MockServer.prototype.stop = function stop() {
    var self = this;
    if (self._stopping) {
        return self._stopping;
    }
    var stopMs = self._opts.stopTimeoutMs || 5000;
    self._stopping = (async function run() {
        var wasRunning = !self.exited;
        if (wasRunning) {
            self.child.kill('SIGTERM');
        }
        var killed = false;
        if (!(await self._waitExit(stopMs))) {
            killed = true;
            self.child.kill('SIGKILL');
            await self._waitExit(stopMs);
        }
        self.child.stdin.destroy();
        var ex = self.exited || {code: null, signal: 'SIGKILL'};
        if (killed) {
            throw MockError('tchannel-mock (pid ' + self.pid + ') did not exit within ' +
                stopMs + ' ms of SIGTERM and was killed', self._stderr);
        }
        if (!wasRunning || ex.code !== 0) {
            throw MockError('tchannel-mock (pid ' + self.pid + ') ' +
                (wasRunning ? 'exited' : 'had already exited before stop(),') +
                (ex.signal ? ' on signal ' + ex.signal : ' with status ' + ex.code), self._stderr);
        }
        return ex;
    })();
    return self._stopping;
};

// Asks the mock (GET /verify) and rejects with a VerifyError listing every
// problem the options ask about, in the mock's words:
//   required:  interactions and stubs marked `required: true` never called
//              (default true);
//   unmatched: requests no cassette or stub answered since start or the
//              last clear of the journal (default true);
//   allPlayed: (not part of /verify) recorded interactions never played since
//              the last load, reset, rewind or mode change (default false).
MockServer.prototype.verify = async function verify(options) {
    var o = Object.assign({unmatched: true, required: true, allPlayed: false}, options || {});
    var problems = [];
    if (o.unmatched || o.required) {
        var report = await this.admin.verify();
        if (o.required) {
            report.notCalled.forEach(function n(c) {
                problems.push('required, never called: ' + c.describe);
            });
        }
        if (o.unmatched && report.unmatched > 0) {
            problems.push(report.unmatched + ' request(s) matched no interaction or stub');
            report.unmatchedRequests.forEach(function e(u) {
                problems.push('unmatched ' + u.service + '::' + u.endpoint + ': ' + u.message);
            });
        }
    }
    if (o.allPlayed) {
        var cs = await this.admin.cassettes();
        cs.cassettes.forEach(function each(c) {
            c.interactions.forEach(function it(i) {
                if (!i.pending && !i.aborted && i.plays === 0) {
                    problems.push('never played: ' + c.path + ' #' + i.index + ' (line ' + i.line +
                        ') ' + i.service + '::' + i.endpoint);
                }
            });
        });
    }
    if (problems.length) {
        throw VerifyError(problems);
    }
};

function writeToken(token) {
    var dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tchannel-mock-token-'));
    var file = path.join(dir, 'token');
    fs.writeFileSync(file, token, {mode: 0o600});
    return {dir: dir, file: file};
}

// Starts tchannel-mock; resolves to a MockServer once it printed its
// `listening` and `admin` lines. Options: cassettes, mode, upstream, recordTo,
// allowRepeats, match, args, bin, env, cwd, host, adminToken, cassetteRoots, startTimeoutMs
// (default 10000), stopTimeoutMs (default 5000).
function startMock(options) {
    var o = options || {};
    var bin, feats;
    try {
        bin = binary.findBinary(o.bin, o.env || process.env);
        feats = binary.features(bin.path);
    } catch (err) {
        return Promise.reject(err);
    }
    if (list(o.cassetteRoots).length && !feats.cassetteRoot) {
        return Promise.reject(new Error('cassetteRoots: ' + bin.path +
            ' has no --cassette-root option (see its --help)'));
    }
    var token = null;
    if (o.adminToken) {
        if (!feats.adminTokenFile) {
            return Promise.reject(new Error('adminToken: ' + bin.path +
                ' has no --admin-token-file option (see its --help)'));
        }
        token = writeToken(o.adminToken);
    }
    var args = buildArgs(o, feats, token && token.file);
    var exe = bin.path;
    var setpriv = feats.exitOnStdinEof ? null : binary.pdeathsigWrapper();
    if (setpriv) { // SIGTERM to the mock when this process dies; it execs the mock, same pid
        args = ['--pdeathsig', 'TERM', '--', bin.path].concat(args);
        exe = setpriv;
    }
    var child;
    try {
        child = childProcess.spawn(exe, args, {
            // stdin stays a pipe only this process holds: it closes when we die
            stdio: ['pipe', 'pipe', 'pipe'], cwd: o.cwd, env: o.env || process.env
        });
    } catch (err) {
        if (token) {
            fs.rmSync(token.dir, {recursive: true, force: true});
        }
        return Promise.reject(err);
    }
    var m = new MockServer(child, bin, o);
    m._tokenDir = token && token.dir;
    track(m);
    // a forgotten stop() must not keep the test process alive
    child.unref();
    [child.stdin, child.stdout, child.stderr].forEach(function u(s) { s.unref(); });
    child.stdin.on('error', function ignore() {}); // EPIPE once the mock is gone
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', function onErr(d) {
        m._stderr = (m._stderr + d).slice(-STDERR_KEEP);
    });
    child.on('exit', function onExit(code, signal) { m._onExit(code, signal); });
    return awaitReady(m, child, o, token && o.adminToken);
}

function awaitReady(m, child, o, token) {
    var startMs = o.startTimeoutMs || 10000;
    return new Promise(function ready(resolve, reject) {
        var out = ''; // a bounded tail of what stdout said, for error messages
        var partial = ''; // the line being read
        var listening = null;
        var adminAt = null;
        var done = false;
        var timer = setTimeout(function late() {
            fail('tchannel-mock did not print its listening and admin lines within ' +
                startMs + ' ms');
        }, startMs);
        child.stdout.setEncoding('utf8');
        child.stdout.on('data', onData);
        child.on('error', function onSpawnError(err) { fail('cannot run ' + m.binary + ': ' +
            err.message); });
        // 'close' comes after the exit and after stderr was read to its end
        child.once('close', function exitedEarly(code, signal) {
            fail('tchannel-mock exited during start-up (' +
                (signal ? 'signal ' + signal : 'status ' + code) + ')');
        });

        // Reads lines until both are seen, then stops collecting: the mock
        // runs as long as the test, and what it prints later is not ours to keep.
        function onData(d) {
            if (done) {
                return;
            }
            out = (out + d).slice(-STDOUT_KEEP);
            var lines = (partial + d).split('\n');
            partial = lines.pop().slice(-STDOUT_KEEP);
            lines.forEach(function each(line) {
                var l = /^listening (\S+)$/.exec(line);
                var a = /^admin (\S+)$/.exec(line);
                listening = l ? l[1] : listening;
                adminAt = a ? a[1] : adminAt;
            });
            if (!listening || !adminAt) {
                return;
            }
            done = true;
            clearTimeout(timer);
            // keep the pipe drained so the mock never blocks on a full pipe
            child.stdout.removeListener('data', onData);
            child.stdout.resume();
            m.hostPort = listening;
            var i = m.hostPort.lastIndexOf(':');
            m.host = m.hostPort.slice(0, i).replace(/^\[|\]$/g, '');
            m.port = Number(m.hostPort.slice(i + 1));
            m.adminHostPort = adminAt;
            m.adminUrl = 'http://' + adminAt;
            m.admin = new admin.AdminClient(m.adminUrl, {token: token});
            resolve(m);
        }

        function fail(msg) {
            if (done) {
                return;
            }
            done = true;
            clearTimeout(timer);
            if (!m.exited) {
                child.kill('SIGKILL');
            }
            var cmd = child.spawnargs.join(' ');
            reject(MockError(msg + '\ncommand: ' + cmd + '\nstdout so far: ' +
                JSON.stringify(out), m._stderr));
        }
    });
}

// Starts a mock, runs fn(mock), verifies when options.verify is given
// (true or the options of verify()), and stops the mock whatever happened.
async function withMock(options, fn) {
    var m = await startMock(options);
    var result;
    try {
        result = await fn(m);
        if (options && options.verify) {
            await m.verify(options.verify === true ? {} : options.verify);
        }
    } catch (err) {
        await m.stop().catch(function ignore() {}); // the first failure is the one to see
        throw err;
    }
    await m.stop();
    return result;
}

module.exports = {startMock: startMock, withMock: withMock, MockServer: MockServer,
    MockError: MockError, VerifyError: VerifyError};
