"""A typed client for tchannel-mock's HTTP admin API (docs/mockserver.md).

Answers become dataclasses (each keeps the decoded JSON as ``raw``); a
non-2xx answer raises AdminError with the mock's message and the status.
"""

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional

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

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Sends one request; returns the decoded JSON answer."""
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
        if not 200 <= status <= 299:
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
        """The requests no cassette answered, oldest first."""
        return self.journal(outcome="unmatched").entries

    def hyperbahn(self) -> Dict[str, Any]:
        return self.request("GET", "/hyperbahn")
