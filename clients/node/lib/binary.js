'use strict';
// Finding the tchannel-mock executable, and what its command line offers.

var childProcess = require('child_process');
var fs = require('fs');
var path = require('path');

var ENV_VAR = 'TCHANNEL_MOCK_BIN';
var NAME = 'tchannel-mock';

function isExecutable(file) {
    try {
        fs.accessSync(file, fs.constants.X_OK);
        return fs.statSync(file).isFile();
    } catch (err) {
        return false;
    }
}

// Returns {path, source} where source is 'option', 'TCHANNEL_MOCK_BIN' or 'PATH'.
// Throws an Error listing every place it looked when none holds the binary.
function findBinary(explicit, env) {
    env = env || process.env;
    var tried = [];
    if (explicit) {
        if (isExecutable(explicit)) {
            return {path: path.resolve(explicit), source: 'option'};
        }
        tried.push('option bin: ' + explicit + ' (not an executable file)');
    } else {
        tried.push('option bin: not given');
    }
    var fromEnv = env[ENV_VAR];
    if (fromEnv) {
        if (isExecutable(fromEnv)) {
            return {path: path.resolve(fromEnv), source: ENV_VAR};
        }
        tried.push(ENV_VAR + '=' + fromEnv + ' (not an executable file)');
    } else {
        tried.push(ENV_VAR + ': not set');
    }
    var dirs = (env.PATH || '').split(path.delimiter).filter(Boolean);
    for (var i = 0; i < dirs.length; i++) {
        var candidate = path.join(dirs[i], NAME);
        if (isExecutable(candidate)) {
            return {path: candidate, source: 'PATH'};
        }
    }
    tried.push('PATH: no ' + NAME + ' in ' + (dirs.length ? dirs.join(path.delimiter) : '(empty)'));
    var err = new Error('cannot find ' + NAME + '; tried ' + tried.join('; '));
    err.tried = tried;
    throw err;
}

var featureCache = new Map();

// The long options the binary's --help lists, so newer flags are used only
// where they exist. Cached per path.
function features(bin) {
    if (featureCache.has(bin)) {
        return featureCache.get(bin);
    }
    var res = childProcess.spawnSync(bin, ['--help'], {encoding: 'utf8', timeout: 10000});
    if (res.error || res.status !== 0) {
        throw new Error(bin + ' --help failed: ' +
            (res.error ? res.error.message : 'exit ' + res.status + ': ' + res.stderr));
    }
    var found = {
        exitOnStdinEof: res.stdout.indexOf('--exit-on-stdin-eof') >= 0,
        adminTokenFile: res.stdout.indexOf('--admin-token-file') >= 0,
        cassetteRoot: res.stdout.indexOf('--cassette-root') >= 0
    };
    featureCache.set(bin, found);
    return found;
}

var wrapper;

// Node cannot ask for a parent-death signal itself; util-linux's setpriv can,
// for the process it then executes. Used only for a mock that does not watch
// its stdin. Returns setpriv's path, or null.
function pdeathsigWrapper() {
    if (wrapper !== undefined) {
        return wrapper;
    }
    wrapper = null;
    if (process.platform !== 'linux') {
        return wrapper;
    }
    var dirs = (process.env.PATH || '').split(path.delimiter).concat(['/usr/bin', '/bin']);
    for (var i = 0; i < dirs.length && !wrapper; i++) {
        var candidate = path.join(dirs[i], 'setpriv');
        if (dirs[i] && isExecutable(candidate)) {
            var res = childProcess.spawnSync(candidate, ['--help'],
                {encoding: 'utf8', timeout: 10000});
            wrapper = res.status === 0 && /--pdeathsig/.test(res.stdout) ? candidate : null;
        }
    }
    return wrapper;
}

module.exports = {findBinary: findBinary, features: features, pdeathsigWrapper: pdeathsigWrapper,
    ENV_VAR: ENV_VAR};
