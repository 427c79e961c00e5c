'use strict';
// tchannel-mock for Node tests: start the mock on an ephemeral port, call its
// admin API, stop it on teardown. See docs/clients-node.md.

var admin = require('./lib/admin');
var binary = require('./lib/binary');
var server = require('./lib/server');

module.exports = {
    startMock: server.startMock,
    withMock: server.withMock,
    MockServer: server.MockServer,
    MockError: server.MockError,
    VerifyError: server.VerifyError,
    AdminClient: admin.AdminClient,
    AdminError: admin.AdminError,
    findBinary: binary.findBinary
};
