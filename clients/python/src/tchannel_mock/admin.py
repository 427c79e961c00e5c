"""A typed client for tchannel-mock's HTTP admin API (docs/mockserver.md).

Answers become dataclasses (each keeps the decoded JSON as ``raw``); a
non-2xx answer raises AdminError with the mock's message and the status.
"""

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field, fields
from typing import Any, Dict, Iterable, List, Optional

MODES = ("once", "new_episodes", "none", "all")
OUTCOMES = ("replayed", "recorded", "unmatched", "failed", "hyperbahn")


class AdminError(Exception):
    """The admin API answered with an error status."""

    def __init__(self, method: str, path: str, status: int, message: str, body: Any):
        super().__init__("tchannel-mock admin %s %s: %d %s" % (method, path, status, message))
        self.method = method
        self.path = path
        self.status = status
        self.message = message
        self.body = body


def _from_json(cls, obj: Dict[str, Any], **nested):
    names = {f.name for f in fields(cls)}
    # camelCase keys as the mock writes them -> snake_case fields
    kw = {}
    for key, value in obj.items():
        name = "".join("_" + c.lower() if c.isupper() else c for c in key)
        if name in nested:
            value = nested[name](value)
        if name in names:
            kw[name] = value
    return cls(raw=obj, **kw)


@dataclass
class Health:
    status: str = ""
    listening: str = ""
    mode: str = ""
    cassettes: int = 0
    interactions: int = 0
    load_errors: int = 0
    calls: int = 0
    misses: int = 0
    uptime_ms: int = 0
    recording: bool = False
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class Interaction:
    index: int = 0
    line: Optional[int] = None
    service: Optional[str] = None
    endpoint: Optional[str] = None
    scheme: Optional[str] = None
    plays: int = 0
    error: Optional[str] = None
    delay_ms: Optional[int] = None
    fault: Optional[str] = None
    pending: bool = False
    aborted: bool = False
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)


def _interactions(v):
    return [_from_json(Interaction, i) for i in v]


@dataclass
class Cassette:
    path: str = ""
    mode: str = ""
    record_target: bool = False
    can_record: bool = False
    loaded_at_ms: int = 0
    reloads: int = 0
    plays: int = 0
    pending_recordings: int = 0
    load_error: Optional[str] = None
    interactions: List[Interaction] = field(default_factory=list)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)


def _cassettes(v):
    return [_from_json(Cassette, c, interactions=_interactions) for c in v]


@dataclass
class CassetteList:
    mode: str = ""
    cassettes: List[Cassette] = field(default_factory=list)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class JournalEntry:
    seq: int = 0
    time_ms: int = 0
    service: str = ""
    endpoint: str = ""
    scheme: str = ""
    peer: str = ""
    outcome: str = ""
    matched: bool = False
    cassette: Optional[str] = None
    index: Optional[int] = None
    stub_id: Optional[str] = None
    message: Optional[str] = None
    near_miss: Optional[Dict[str, Any]] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)


def _entries(v):
    return [_from_json(JournalEntry, e) for e in v]


@dataclass
class Journal:
    capacity: int = 0
    total: int = 0
    dropped: int = 0
    matching: int = 0
    entries: List[JournalEntry] = field(default_factory=list)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class ReloadResult:
    path: str = ""
    ok: bool = False
    error: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)


def _reloads(body) -> List[ReloadResult]:
    return [_from_json(ReloadResult, r) for r in body.get("reloaded", [])]


@dataclass
class Stub:
    """A run-time stub as the mock holds it; ``raw`` is what PUT /stubs/ID takes back."""
    id: str = ""
    request: Dict[str, Any] = field(default_factory=dict)
    response: Optional[Dict[str, Any]] = None
    error: Optional[Dict[str, Any]] = None
    priority: Optional[int] = None
    required: bool = False
    scenario: Optional[str] = None
    required_state: Optional[str] = None
    new_state: Optional[str] = None
    plays: int = 0
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)


def _stubs(v):
    return [_from_json(Stub, s) for s in v]


@dataclass
class Scenario:
    name: str = ""
    state: str = ""
    possible_states: List[str] = field(default_factory=list)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class NotCalled:
    """An interaction or stub marked required that was never called."""
    cassette: str = ""
    index: int = 0
    id: Optional[str] = None
    line: Optional[int] = None
    service: Optional[str] = None
    endpoint: Optional[str] = None
    describe: str = ""
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)


def _not_called(v):
    return [_from_json(NotCalled, n) for n in v]


@dataclass
class VerifyReport:
    """GET /verify: ok when every required interaction and stub was called
    and no request went unmatched since the last clear."""
    ok: bool = False
    not_called: List[NotCalled] = field(default_factory=list)
    unmatched: int = 0
    unmatched_requests: List[JournalEntry] = field(default_factory=list)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class Redactions:
    """What recordings must not keep (each becomes "<redacted>")."""
    headers: List[str] = field(default_factory=list)
    transport_headers: List[str] = field(default_factory=list)
    json_paths: List[str] = field(default_factory=list)
    thrift_fields: List[str] = field(default_factory=list)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)


def _segment(v: str, what: str) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError("%s: expected a non-empty string, got %r" % (what, v))
    return urllib.parse.quote(v, safe="")


def _message(body: Any, text: str) -> str:
    """The mock's own words: {"error": ...}, or the files a reload could not read."""
    if isinstance(body, dict):
        if isinstance(body.get("error"), str):
            return body["error"]
        failed = [r for r in body.get("reloaded", []) if not r.get("ok")]
        if failed:
            return "; ".join("%s: %s" % (r.get("path"), r.get("error")) for r in failed)
    return text.strip() or "no answer body"


class AdminClient:
    """Talks to the admin API at ``url`` (http://HOST:PORT)."""

    def __init__(self, url: str, token: Optional[str] = None, timeout: float = 10.0):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "http" or not parsed.netloc:
            raise ValueError("AdminClient: expected an http://HOST:PORT URL, got %r" % url)
        self.url = "http://" + parsed.netloc
        self.token = token
        self.timeout = timeout
        # the admin API is local: an http_proxy in the environment must not see it
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def request(self, method: str, path: str, body: Any = None, ok: tuple = ()) -> Any:
        """Sends one request; returns the decoded JSON answer. A status in
        ``ok`` (beside 2xx) is an answer too, not an error."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        try:
            with self._opener.open(req, timeout=self.timeout) as res:
                status, text = res.status, res.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as err:
            status, text = err.code, err.read().decode("utf-8", "replace")
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        if not 200 <= status <= 299 and not (status in ok and isinstance(parsed, dict)):
            raise AdminError(method, path, status, _message(parsed, text), parsed)
        if parsed is None:
            raise AdminError(method, path, status, "answer is not JSON: %r" % text[:200], None)
        return parsed

    def health(self) -> Health:
        return _from_json(Health, self.request("GET", "/health"))

    def cassettes(self) -> CassetteList:
        return _from_json(CassetteList, self.request("GET", "/cassettes"), cassettes=_cassettes)

    def load_cassette(self, path: str, record_target: bool = False) -> List[Cassette]:
        """Loads a file or directory; record_target starts a new cassette to record into."""
        body: Dict[str, Any] = {"path": path}
        if record_target:
            body["recordTarget"] = True
        return _cassettes(self.request("POST", "/cassettes", body)["loaded"])

    def unload_cassette(self, path: str) -> str:
        q = urllib.parse.urlencode({"path": path})
        return self.request("DELETE", "/cassettes?" + q)["unloaded"]

    def reload(self) -> List[ReloadResult]:
        return _reloads(self.request("POST", "/reload"))

    def reset(self) -> List[ReloadResult]:
        return _reloads(self.request("POST", "/reset"))

    def rewind(self) -> int:
        """Play counts back to zero; returns how many cassettes."""
        return self.request("POST", "/rewind")["rewound"]

    def mode(self) -> str:
        return self.request("GET", "/mode")["mode"]

    def set_mode(self, mode: str) -> str:
        if mode not in MODES:
            raise ValueError("mode must be one of %s, got %r" % (", ".join(MODES), mode))
        return self.request("PUT", "/mode", {"mode": mode})["mode"]

    def journal(self, service: Optional[str] = None, endpoint: Optional[str] = None,
                outcome: Optional[str] = None, limit: Optional[int] = None) -> Journal:
        if outcome is not None and outcome not in OUTCOMES:
            raise ValueError("outcome must be one of %s, got %r" % (", ".join(OUTCOMES), outcome))
        params = [(k, v) for k, v in (("service", service), ("endpoint", endpoint),
                                      ("outcome", outcome), ("limit", limit)) if v is not None]
        q = "?" + urllib.parse.urlencode(params) if params else ""
        return _from_json(Journal, self.request("GET", "/journal" + q), entries=_entries)

    def count(self, service: Optional[str] = None, endpoint: Optional[str] = None,
              outcome: Optional[str] = None) -> int:
        """How many journal entries pass the filters (within the ring's capacity)."""
        return self.journal(service, endpoint, outcome, limit=1).matching

    def unmatched(self) -> List[JournalEntry]:
        """The requests no cassette or stub answered, oldest first (GET /journal/unmatched)."""
        return _entries(self.request("GET", "/journal/unmatched")["entries"])

    def unmatched_since_clear(self) -> int:
        """How many requests went unmatched since start or the last clear,
        those the journal has let go included."""
        return self.request("GET", "/journal/unmatched")["unmatchedSinceClear"]

    def find_requests(self, rules: Optional[Dict[str, Any]] = None) -> List[JournalEntry]:
        """The journal entries the match rules pass (a stub's ``request``
        object; {} or None: every request), oldest first."""
        return _entries(self.request("POST", "/journal/find", rules or {})["entries"])

    def count_requests(self, rules: Optional[Dict[str, Any]] = None) -> int:
        """How many journal entries the match rules pass."""
        return self.request("POST", "/journal/count", rules or {})["count"]

    def clear_journal(self) -> int:
        """Empties the journal (not the cassettes); returns how many entries it held."""
        return self.request("DELETE", "/journal")["cleared"]

    def verify(self) -> VerifyReport:
        """GET /verify; its 409 (something to report) is an answer, not an error."""
        return _from_json(VerifyReport, self.request("GET", "/verify", ok=(409,)),
                          not_called=_not_called, unmatched_requests=_entries)

    # ---- run-time stubs and scenarios

    def stubs(self) -> List[Stub]:
        return _stubs(self.request("GET", "/stubs")["stubs"])

    def stub(self, stub_id: str) -> Stub:
        return _from_json(Stub, self.request("GET", "/stubs/" + _segment(stub_id, "stub id")))

    def add_stub(self, stub: Dict[str, Any]) -> Stub:
        """Adds a stub (docs/cassettes.md#stubs); without an id the mock names it."""
        return _from_json(Stub, self.request("POST", "/stubs", stub)["stub"])

    def replace_stub(self, stub_id: str, stub: Dict[str, Any]) -> Stub:
        return _from_json(Stub, self.request("PUT", "/stubs/" + _segment(stub_id, "stub id"),
                                             stub)["stub"])

    def delete_stub(self, stub_id: str) -> str:
        return self.request("DELETE", "/stubs/" + _segment(stub_id, "stub id"))["deleted"]

    def delete_stubs(self) -> int:
        """Drops every run-time stub (and their scenarios' states); returns how many."""
        return self.request("DELETE", "/stubs")["deleted"]

    def save_stubs(self, path: str, overwrite: bool = False) -> int:
        """Writes the run-time stubs as a cassette (inside the cassette roots);
        returns how many were saved."""
        body: Dict[str, Any] = {"path": os.fspath(path)}
        if overwrite:
            body["overwrite"] = True
        return self.request("POST", "/stubs/save", body)["saved"]

    def scenarios(self) -> List[Scenario]:
        return [_from_json(Scenario, sc) for sc in self.request("GET", "/scenarios")["scenarios"]]

    def set_scenario_state(self, name: str, state: str) -> str:
        path = "/scenarios/%s/state" % _segment(name, "scenario name")
        return self.request("PUT", path, {"state": state})["state"]

    def reset_scenarios(self) -> None:
        """Every scenario back to "Started"."""
        self.request("POST", "/scenarios/reset")

    # ---- redactions

    def redactions(self) -> Redactions:
        return _from_json(Redactions, self.request("GET", "/redactions"))

    def set_redactions(self, headers: Iterable[str] = (), transport_headers: Iterable[str] = (),
                       json_paths: Iterable[str] = (),
                       thrift_fields: Iterable[str] = ()) -> Redactions:
        """Replaces the whole set (a list left empty is emptied)."""
        body = {"headers": list(headers), "transportHeaders": list(transport_headers),
                "jsonPaths": list(json_paths), "thriftFields": list(thrift_fields)}
        return _from_json(Redactions, self.request("PUT", "/redactions", body))

    def hyperbahn(self) -> Dict[str, Any]:
        return self.request("GET", "/hyperbahn")
