"""tchannel-mock for Python tests: start the mock on an ephemeral port, call
its admin API, stop it on teardown. See docs/clients-python.md."""

from ._binary import Binary, BinaryNotFound, find_binary
from .admin import (AdminClient, AdminError, Cassette, CassetteList, Health, Interaction,
                    Journal, JournalEntry, NotCalled, Redactions, ReloadResult, Scenario, Stub,
                    VerifyReport)
from .server import MockError, MockServer, VerifyError, start

__all__ = ["AdminClient", "AdminError", "Binary", "BinaryNotFound", "Cassette", "CassetteList",
           "Health", "Interaction", "Journal", "JournalEntry", "MockError", "MockServer",
           "NotCalled", "Redactions", "ReloadResult", "Scenario", "Stub", "VerifyError",
           "VerifyReport", "find_binary", "start"]
