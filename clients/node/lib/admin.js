'use strict';
// A client for tchannel-mock's HTTP admin API (docs/mockserver.md). Every
// method returns a promise of the decoded JSON answer; a non-2xx answer
// rejects with an AdminError carrying the mock's message and the status.

var http = require('http');

var OUTCOMES = ['replayed', 'recorded', 'unmatched', 'failed', 'hyperbahn'];
var MODES = ['once', 'new_episodes', 'none', 'all'];

function AdminError(method, path, status, message, body) {
    var err = new Error('tchannel-mock admin ' + method + ' ' + path + ': ' + status + ' ' +
        message);
    Object.setPrototypeOf(err, AdminError.prototype);
    err.name = 'AdminError';
    err.method = method;
    err.path = path;
    err.status = status;
    err.mockMessage = message;
    err.body = body;
    return err;
}
AdminError.prototype = Object.create(Error.prototype, {
    constructor: {value: AdminError, writable: true, configurable: true}
});

// The mock's own words: {"error": ...}, or the files a reload could not read.
function messageOf(body, text) {
    if (body && typeof body.error === 'string') {
        return body.error;
    }
    if (body && Array.isArray(body.reloaded)) {
        var failed = body.reloaded.filter(function bad(r) { return !r.ok; });
        if (failed.length) {
            return failed.map(function m(r) { return r.path + ': ' + r.error; }).join('; ');
        }
    }
    return text.trim() || 'no answer body';
}

function AdminClient(url, options) {
    if (!(this instanceof AdminClient)) {
        return new AdminClient(url, options);
    }
    options = options || {};
    var u = new URL(url);
    if (u.protocol !== 'http:') {
        throw new Error('AdminClient: expected an http:// URL, got ' + url);
    }
    this.url = u.origin;
    this.host = u.hostname;
    this.port = Number(u.port);
    this.token = options.token || null;
    this.timeoutMs = options.timeoutMs || 10000;
}

// alsoOk: a status (beside 2xx) whose JSON answer resolves instead of rejecting.
AdminClient.prototype.request = function request(method, path, body, alsoOk) {
    var self = this;
    var payload = body === undefined ? null : Buffer.from(JSON.stringify(body));
    var headers = {Accept: 'application/json'};
    if (payload) {
        headers['Content-Type'] = 'application/json';
        headers['Content-Length'] = payload.length;
    }
    if (self.token) {
        headers.Authorization = 'Bearer ' + self.token;
    }
    return new Promise(function run(resolve, reject) {
        var req = http.request({
            host: self.host, port: self.port, method: method, path: path, headers: headers,
            agent: false
        }, function onResponse(res) {
            var chunks = [];
            res.on('data', function onData(c) { chunks.push(c); });
            res.on('error', reject);
            res.on('end', function onEnd() {
                var text = Buffer.concat(chunks).toString('utf8');
                var parsed = null;
                try {
                    parsed = text ? JSON.parse(text) : null;
                } catch (err) {
                    parsed = null;
                }
                var ok = (res.statusCode >= 200 && res.statusCode <= 299) ||
                    (res.statusCode === alsoOk && parsed !== null && typeof parsed === 'object');
                if (!ok) {
                    reject(AdminError(method, path, res.statusCode, messageOf(parsed, text),
                        parsed));
                } else if (parsed === null) {
                    reject(AdminError(method, path, res.statusCode,
                        'answer is not JSON: ' + JSON.stringify(text.slice(0, 200)), null));
                } else {
                    resolve(parsed);
                }
            });
        });
        req.setTimeout(self.timeoutMs, function onTimeout() {
            req.destroy(new Error('tchannel-mock admin ' + method + ' ' + path +
                ': no answer within ' + self.timeoutMs + ' ms'));
        });
        req.on('error', reject);
        req.end(payload || undefined);
    });
};

function query(params, allowed) {
    var parts = [];
    Object.keys(params || {}).forEach(function each(k) {
        if (allowed.indexOf(k) < 0) {
            throw new TypeError('unknown journal filter ' + JSON.stringify(k) + ' (allowed: ' +
                allowed.join(', ') + ')');
        }
        var v = params[k];
        if (v === undefined || v === null) {
            return;
        }
        if (k === 'outcome' && OUTCOMES.indexOf(v) < 0) {
            throw new TypeError('outcome must be one of ' + OUTCOMES.join(', ') + ', got ' +
                JSON.stringify(v));
        }
        parts.push(encodeURIComponent(k) + '=' + encodeURIComponent(String(v)));
    });
    return parts.length ? '?' + parts.join('&') : '';
}

AdminClient.prototype.health = function health() {
    return this.request('GET', '/health');
};

AdminClient.prototype.cassettes = function cassettes() {
    return this.request('GET', '/cassettes');
};

// Loads a cassette file or directory; recordTarget starts a new cassette to
// record into. Resolves to the list of cassettes loaded.
AdminClient.prototype.loadCassette = function loadCassette(path, options) {
    var body = {path: path};
    if (options && options.recordTarget) {
        body.recordTarget = true;
    }
    return this.request('POST', '/cassettes', body).then(function loaded(r) { return r.loaded; });
};

AdminClient.prototype.unloadCassette = function unloadCassette(path) {
    return this.request('DELETE', '/cassettes?path=' + encodeURIComponent(path));
};

AdminClient.prototype.reload = function reload() {
    return this.request('POST', '/reload');
};

AdminClient.prototype.reset = function reset() {
    return this.request('POST', '/reset');
};

AdminClient.prototype.rewind = function rewind() {
    return this.request('POST', '/rewind');
};

AdminClient.prototype.mode = function mode() {
    return this.request('GET', '/mode').then(function m(r) { return r.mode; });
};

AdminClient.prototype.setMode = function setMode(mode) {
    if (MODES.indexOf(mode) < 0) {
        return Promise.reject(new TypeError('mode must be one of ' + MODES.join(', ') +
            ', got ' + JSON.stringify(mode)));
    }
    return this.request('PUT', '/mode', {mode: mode}).then(function m(r) { return r.mode; });
};

// filters: {service, endpoint, outcome, limit}. Resolves to the whole answer:
// {capacity, total, dropped, matching, entries}.
AdminClient.prototype.journal = function journal(filters) {
    var q;
    try {
        q = query(filters, ['service', 'endpoint', 'outcome', 'limit']);
    } catch (err) {
        return Promise.reject(err);
    }
    return this.request('GET', '/journal' + q);
};

// How many journal entries pass the filters (within the ring's capacity).
AdminClient.prototype.count = function count(filters) {
    var f = Object.assign({}, filters || {}, {limit: 1});
    return this.journal(f).then(function c(r) { return r.matching; });
};

// The requests no cassette or stub answered, oldest first.
AdminClient.prototype.unmatched = function unmatched() {
    return this.unmatchedReport().then(function e(r) { return r.entries; });
};

// GET /journal/unmatched: {count, unmatchedSinceClear, entries}.
AdminClient.prototype.unmatchedReport = function unmatchedReport() {
    return this.request('GET', '/journal/unmatched');
};

// The journal entries the match rules pass (a stub's request object; none:
// every request), oldest first.
AdminClient.prototype.findRequests = function findRequests(rules) {
    return this.request('POST', '/journal/find', rules || {})
        .then(function e(r) { return r.entries; });
};

// How many journal entries the match rules pass.
AdminClient.prototype.countRequests = function countRequests(rules) {
    return this.request('POST', '/journal/count', rules || {})
        .then(function c(r) { return r.count; });
};

// Empties the journal (not the cassettes); resolves to how many it held.
AdminClient.prototype.clearJournal = function clearJournal() {
    return this.request('DELETE', '/journal').then(function c(r) { return r.cleared; });
};

// GET /verify: {ok, notCalled, unmatched, unmatchedRequests}. Its 409
// (something to report) resolves with ok false; it is not an error.
AdminClient.prototype.verify = function verify() {
    return this.request('GET', '/verify', undefined, 409);
};

// ---- run-time stubs and scenarios

function segment(what, v) {
    if (typeof v !== 'string' || v === '') {
        throw new TypeError(what + ': expected a non-empty string, got ' + JSON.stringify(v));
    }
    return encodeURIComponent(v);
}

// Runs fn() and turns what it throws into a rejection.
function attempt(fn) {
    try {
        return fn();
    } catch (err) {
        return Promise.reject(err);
    }
}

function stubOf(r) {
    return r.stub;
}

AdminClient.prototype.stubs = function stubs() {
    return this.request('GET', '/stubs').then(function s(r) { return r.stubs; });
};

AdminClient.prototype.stub = function stub(id) {
    var self = this;
    return attempt(function get() {
        return self.request('GET', '/stubs/' + segment('stub id', id));
    });
};

// Adds a stub (docs/cassettes.md#stubs); without an id the mock names it.
// Resolves to the stub as the mock holds it.
AdminClient.prototype.addStub = function addStub(stub) {
    return this.request('POST', '/stubs', stub).then(stubOf);
};

AdminClient.prototype.replaceStub = function replaceStub(id, stub) {
    var self = this;
    return attempt(function put() {
        return self.request('PUT', '/stubs/' + segment('stub id', id), stub).then(stubOf);
    });
};

AdminClient.prototype.deleteStub = function deleteStub(id) {
    var self = this;
    return attempt(function del() {
        return self.request('DELETE', '/stubs/' + segment('stub id', id))
            .then(function d(r) { return r.deleted; });
    });
};

// Drops every run-time stub (and their scenarios' states); resolves to how many.
AdminClient.prototype.deleteStubs = function deleteStubs() {
    return this.request('DELETE', '/stubs').then(function d(r) { return r.deleted; });
};

// Writes the run-time stubs as a cassette (inside the cassette roots);
// resolves to how many it saved.
AdminClient.prototype.saveStubs = function saveStubs(path, options) {
    var body = {path: path};
    if (options && options.overwrite) {
        body.overwrite = true;
    }
    return this.request('POST', '/stubs/save', body).then(function s(r) { return r.saved; });
};

AdminClient.prototype.scenarios = function scenarios() {
    return this.request('GET', '/scenarios').then(function s(r) { return r.scenarios; });
};

AdminClient.prototype.setScenarioState = function setScenarioState(name, state) {
    var self = this;
    return attempt(function put() {
        return self.request('PUT', '/scenarios/' + segment('scenario name', name) + '/state',
            {state: state}).then(function s(r) { return r.state; });
    });
};

// Every scenario back to "Started".
AdminClient.prototype.resetScenarios = function resetScenarios() {
    return this.request('POST', '/scenarios/reset');
};

// ---- redactions: {headers, transportHeaders, jsonPaths, thriftFields}

AdminClient.prototype.redactions = function redactions() {
    return this.request('GET', '/redactions');
};

// Replaces the whole set (a list left out is emptied); resolves to the set in force.
AdminClient.prototype.setRedactions = function setRedactions(set) {
    var s = set || {};
    return this.request('PUT', '/redactions', {
        headers: s.headers || [], transportHeaders: s.transportHeaders || [],
        jsonPaths: s.jsonPaths || [], thriftFields: s.thriftFields || []
    });
};

AdminClient.prototype.hyperbahn = function hyperbahn() {
    return this.request('GET', '/hyperbahn');
};

module.exports = {AdminClient: AdminClient, AdminError: AdminError, OUTCOMES: OUTCOMES,
    MODES: MODES};
