"""pytest for the tchannel-mock Python client, against the real binary
($TCHANNEL_MOCK_BIN, else PATH).

No TChannel client for Python can be installed here (tchannel-python is not
packaged by Debian), so the calls through the mock are made with this
project's tcurl, named by $TCURL_BIN.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import tchannel_mock
from tchannel_mock import AdminError, MockError, VerifyError

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CASSETTES = os.path.join(ROOT, "cassettes")
KEYVALUE = os.path.join(CASSETTES, "keyvalue.yaml")
ECHO = os.path.join(CASSETTES, "echo-raw.yaml")
IDL = os.path.join(CASSETTES, "keyvalue.thrift")
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")

BIN = tchannel_mock.find_binary().path
FEATURES = tchannel_mock._binary.features(BIN)


def tcurl(host_port, *args):
    """One call with our tcurl; returns the CompletedProcess (text)."""
    exe = os.environ.get("TCURL_BIN")
    if not exe or not os.access(exe, os.X_OK):
        pytest.fail("set TCURL_BIN to this project's tcurl (build/tools/tcurl); got %r" % exe,
                    pytrace=False)
    return subprocess.run([exe, "-p", host_port, "--retry-limit", "0", *args],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)


def wait_gone(pid, seconds):
    """Waits, bounded, for a process that is not our child to be gone (a
    zombie counts: its parent is no longer there to reap it)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with open("/proc/%d/stat" % pid) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


@pytest.mark.tchannel_mock(cassettes=[KEYVALUE], verify=True)
def test_replays_all_three_schemes(tchannel_mock):
    m = tchannel_mock
    assert m.binary == BIN
    assert m.host == "127.0.0.1" and m.host_port == "127.0.0.1:%d" % m.port
    assert m.admin_url.startswith("http://127.0.0.1:")
    r = tcurl(m.host_port, "keyvalue-server", "echo", "hello")
    assert (r.returncode, r.stdout) == (0, "hello"), r.stderr
    r = tcurl(m.host_port, "--json", "keyvalue-server", "json_echo",
              '{"key":"foo","value":"bar"}')
    assert r.returncode == 0, r.stderr
    assert '"value": "bar"' in r.stdout
    r = tcurl(m.host_port, "--thrift", IDL, "keyvalue-server", "KeyValue::getValue",
              '{"key":"foo"}')
    assert r.returncode == 0, r.stderr
    assert '"body": "bar"' in r.stdout
    assert m.admin.count(outcome="replayed") == 3
    assert m.admin.count(service="keyvalue-server", endpoint="echo") == 1
    j = m.admin.journal(limit=1)
    assert (j.matching, len(j.entries)) == (3, 1)
    assert j.entries[0].endpoint == "KeyValue::getValue" and j.entries[0].matched
    h = m.admin.health()
    assert (h.listening, h.calls, h.misses) == (m.host_port, 3, 0)


def test_unmatched_request_fails_verify(tchannel_mock_factory):
    m = tchannel_mock_factory([ECHO])
    r = tcurl(m.host_port, "keyvalue-server", "echo", "hello?")
    assert r.returncode != 0 and "badRequest" in r.stderr
    [u] = m.admin.unmatched()
    assert u.outcome == "unmatched" and "nearest #0" in u.message
    assert u.near_miss["diffs"][0]["field"] == "body"
    with pytest.raises(VerifyError) as err:
        m.verify()
    assert "1 request(s) matched no interaction or stub" in str(err.value)
    assert "keyvalue-server::echo: " in err.value.problems[1]
    m.admin.reset()  # clears the journal and the counters
    m.verify()


def test_stubs_scenarios_and_saving(tchannel_mock_factory, tmp_path):
    m = tchannel_mock_factory([ECHO], cassette_roots=[str(tmp_path)])
    a = m.admin
    ping = a.add_stub({"id": "ping", "request": {"serviceName": "keyvalue-server",
                                                 "endpoint": "ping",
                                                 "body": {"matches": "^ping-[0-9]+$"}},
                       "response": {"body": "pong"}})
    assert (ping.id, ping.plays, ping.request["endpoint"]) == ("ping", 0, "ping")
    named = a.add_stub({"request": {"serviceName": "keyvalue-server", "endpoint": "x"},
                        "response": {"body": "x"}})
    assert named.id and named.id != "ping"  # the mock names a stub given no id
    assert tcurl(m.host_port, "keyvalue-server", "ping", "ping-42").stdout == "pong"
    assert tcurl(m.host_port, "keyvalue-server", "ping", "ping-43").stdout == "pong"
    assert a.stub("ping").plays == 2
    assert [s.id for s in a.stubs()] == ["ping", named.id]
    changed = a.replace_stub("ping", {"id": "ping", "request": {
        "serviceName": "keyvalue-server", "endpoint": "ping"}, "response": {"body": "PONG"}})
    assert changed.response["body"] == "PONG"
    assert tcurl(m.host_port, "keyvalue-server", "ping", "anything").stdout == "PONG"
    with pytest.raises(AdminError) as err:
        a.stub("nope")
    assert err.value.status == 404 and "nope" in err.value.message
    with pytest.raises(AdminError) as err:
        a.add_stub({"request": {"endpoint": {"matches": "("}}, "response": {"body": "x"}})
    assert err.value.status == 400 and "endpoint.matches" in err.value.message
    with pytest.raises(ValueError):
        a.stub("")

    # scenarios: a stub answers only in its state, and moves it
    for sid, need, then, body in (("empty", "Started", "full", "empty"),
                                  ("full", "full", None, "one item")):
        stub = {"id": sid, "scenario": "cart", "requiredState": need,
                "request": {"serviceName": "keyvalue-server", "endpoint": "cart"},
                "response": {"body": body}}
        if then:
            stub["newState"] = then
        a.add_stub(stub)
    assert tcurl(m.host_port, "keyvalue-server", "cart").stdout == "empty"
    [cart] = a.scenarios()
    assert (cart.name, cart.state) == ("cart", "full")
    assert set(cart.possible_states) >= {"Started", "full"}
    assert tcurl(m.host_port, "keyvalue-server", "cart").stdout == "one item"
    assert a.set_scenario_state("cart", "Started") == "Started"
    assert tcurl(m.host_port, "keyvalue-server", "cart").stdout == "empty"
    a.reset_scenarios()
    assert a.scenarios()[0].state == "Started"
    with pytest.raises(AdminError) as err:
        a.set_scenario_state("cart", "ful")
    assert err.value.status == 400 and "'full'" in err.value.message
    with pytest.raises(AdminError) as err:
        a.set_scenario_state("no such", "Started")
    assert err.value.status == 404

    # saved as a cassette another mock serves
    out = tmp_path / "stubs.yaml"
    assert a.save_stubs(str(out)) == 4
    with pytest.raises(AdminError) as err:
        a.save_stubs(str(out))
    assert err.value.status == 409 and "overwrite" in err.value.message
    assert a.save_stubs(str(out), overwrite=True) == 4
    assert a.delete_stub(named.id) == named.id
    assert a.delete_stubs() == 3
    assert a.stubs() == []
    other = tchannel_mock_factory([str(out)])
    assert tcurl(other.host_port, "keyvalue-server", "ping", "x").stdout == "PONG"


def test_journal_rules_and_verify(tchannel_mock_factory):
    m = tchannel_mock_factory([KEYVALUE], args=["--thrift", IDL])
    a = m.admin
    a.add_stub({"id": "must", "required": True,
                "request": {"serviceName": "keyvalue-server", "endpoint": "must"},
                "response": {"body": "done"}})
    assert tcurl(m.host_port, "-t", IDL, "keyvalue-server", "KeyValue::getValue",
                 '{"key": "foo"}').returncode == 0
    assert tcurl(m.host_port, "keyvalue-server", "nothing-here").returncode != 0
    rules = {"endpoint": "KeyValue::getValue",
             "body": {"matchesJsonPath": {"expression": "$.key", "equalTo": "foo"}}}
    assert a.count_requests(rules) == 1
    [found] = a.find_requests(rules)
    assert found.outcome == "replayed" and found.raw["bodyDecoded"] == {"key": "foo"}
    assert a.count_requests() == 2
    assert a.count_requests({"endpoint": "who"}) == 0
    with pytest.raises(AdminError) as err:
        a.count_requests({"body": {"matchesJsonPath": "$.a["}})
    assert err.value.status == 400 and "body.matchesJsonPath" in err.value.message
    [miss] = a.unmatched()
    assert miss.endpoint == "nothing-here" and a.unmatched_since_clear() == 1

    report = a.verify()  # a 409 is a report, not an error
    assert not report.ok and report.unmatched == 1
    assert [(n.id, n.endpoint) for n in report.not_called] == [("must", "must")]
    assert report.unmatched_requests[0].endpoint == "nothing-here"
    with pytest.raises(VerifyError) as err:
        m.verify()
    assert any("required, never called" in p and "[must]" in p for p in err.value.problems)
    assert any("nothing-here" in p for p in err.value.problems)
    m.verify(required=False, unmatched=False)  # nothing asked, nothing to fail

    assert a.clear_journal() == 2
    with pytest.raises(VerifyError) as err:  # the required stub is still not called
        m.verify()
    assert len(err.value.problems) == 1
    assert tcurl(m.host_port, "keyvalue-server", "must").stdout == "done"
    assert a.verify().ok
    m.verify()


def test_redactions(tchannel_mock_factory):
    m = tchannel_mock_factory([ECHO])
    r = m.admin.redactions()
    assert (r.headers, r.transport_headers, r.json_paths, r.thrift_fields) == ([], [], [], [])
    r = m.admin.set_redactions(headers=["x-token"], json_paths=["$.password"])
    assert (r.headers, r.json_paths) == (["x-token"], ["$.password"])
    with pytest.raises(AdminError) as err:
        m.admin.set_redactions(json_paths=["password"])
    assert err.value.status == 400 and "jsonPaths[0]" in err.value.message
    assert m.admin.redactions().json_paths == ["$.password"]  # left as it was
    assert m.admin.set_redactions().headers == []


def test_admin_api(tchannel_mock_factory, tmp_path):
    # the admin API may load from tmp_path (a mock with --cassette-root limits it)
    m = tchannel_mock_factory(
        [ECHO], cassette_roots=[str(tmp_path)] if FEATURES["cassette_root"] else None)
    assert m.admin.mode() == "none"
    with pytest.raises(AdminError) as err:
        m.admin.set_mode("once")
    assert err.value.status == 400
    # the wording may change; what to give it (--upstream) is named
    assert "--upstream" in err.value.message
    with pytest.raises(ValueError):
        m.admin.set_mode("sometimes")
    with pytest.raises(ValueError):
        m.admin.journal(outcome="lost")
    with pytest.raises(AdminError) as err:
        m.admin.unload_cassette(KEYVALUE)
    assert (err.value.status, err.value.method) == (404, "DELETE")
    with pytest.raises(AdminError) as err:
        m.admin.load_cassette(str(tmp_path / "none.yaml"))
    assert err.value.status == 404 and "no such file" in err.value.message
    [loaded] = m.admin.load_cassette(KEYVALUE)
    assert loaded.path == KEYVALUE and loaded.interactions[0].endpoint == "KeyValue::getValue"
    with pytest.raises(AdminError) as err:
        m.admin.load_cassette(KEYVALUE)
    assert err.value.status == 409
    [fresh] = m.admin.load_cassette(str(tmp_path / "new.yaml"), record_target=True)
    assert fresh.record_target
    assert [c.path for c in m.admin.cassettes().cassettes] == [
        ECHO, KEYVALUE, str(tmp_path / "new.yaml")]
    assert m.admin.unload_cassette(KEYVALUE) == KEYVALUE

    assert tcurl(m.host_port, "keyvalue-server", "echo", "hello").stdout == "hello"
    again = tcurl(m.host_port, "keyvalue-server", "echo", "hello")
    assert again.returncode != 0 and "already played" in again.stderr
    assert m.admin.rewind() == 2
    assert tcurl(m.host_port, "keyvalue-server", "echo", "hello").stdout == "hello"
    assert all(r.ok for r in m.admin.reload())
    assert isinstance(m.admin.hyperbahn()["advertiseTo"], list)

    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\ninteractions: []\n")
    m.admin.load_cassette(str(broken))
    broken.write_text("interactions: [\n")
    with pytest.raises(AdminError) as err:
        m.admin.reload()
    assert err.value.status == 409 and err.value.message.startswith(str(broken))


def test_records_through_then_replays(tchannel_mock_factory, tmp_path):
    rec = str(tmp_path / "rec.yaml")
    upstream = tchannel_mock_factory([ECHO])
    with tchannel_mock.start(mode="new_episodes", upstream=upstream.host_port,
                             record_to=rec) as m:
        assert m.admin.health().recording
        assert tcurl(m.host_port, "keyvalue-server", "echo", "hello").stdout == "hello"
        assert m.admin.count(outcome="recorded") == 1
    with open(rec) as f:
        assert "body: hello" in f.read()
    replay = tchannel_mock_factory([rec], verify={"all_played": True})
    assert tcurl(replay.host_port, "keyvalue-server", "echo", "hello").stdout == "hello"


def test_context_manager_stops_on_exception_and_verifies():
    with pytest.raises(RuntimeError, match="test body failed"):
        with tchannel_mock.start([ECHO]) as m:
            pid = m.pid
            raise RuntimeError("test body failed")
    assert m.proc.returncode == 0 and wait_gone(pid, 5)
    with pytest.raises(VerifyError, match="never played"):
        with tchannel_mock.start([ECHO], verify={"all_played": True}) as m:
            pass
    assert m.proc.returncode == 0


def test_start_failure_carries_stderr(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("interactions:\n  - request: [\n")
    with pytest.raises(MockError) as err:
        tchannel_mock.start([str(bad)])
    assert "exited during start-up (status 1)" in str(err.value)
    assert str(bad) + ":" in err.value.stderr
    with pytest.raises(MockError, match="unknown option --bogus"):
        tchannel_mock.start([ECHO], args=["--bogus"])


def test_bounded_start_and_stop(tmp_path):
    silent = tmp_path / "silent-mock"
    silent.write_text('#!/bin/sh\n[ "$1" = --help ] && exit 0\n'
                      'echo "starting, but never listening" >&2\nexec sleep 30\n')
    silent.chmod(0o755)
    t0 = time.monotonic()
    with pytest.raises(MockError) as err:
        tchannel_mock.start(bin=str(silent), start_timeout=0.3)
    assert "within 0.3 s" in str(err.value) and "never listening" in err.value.stderr
    assert time.monotonic() - t0 < 5

    deaf = tmp_path / "deaf-mock"
    deaf.write_text('#!/bin/sh\n[ "$1" = --help ] && exit 0\ntrap "" TERM\n'
                    'echo "listening 127.0.0.1:1"\necho "admin 127.0.0.1:2"\nexec sleep 30\n')
    deaf.chmod(0o755)
    m = tchannel_mock.start(bin=str(deaf), stop_timeout=0.3)
    with pytest.raises(MockError, match="did not exit within 0.3 s of SIGTERM and was killed"):
        m.stop()
    assert m.proc.returncode == -signal.SIGKILL


def test_find_binary_order_and_error():
    d = os.path.dirname(BIN)
    assert tchannel_mock.find_binary(BIN, {}).source == "argument"
    assert tchannel_mock.find_binary(None, {"TCHANNEL_MOCK_BIN": BIN}).source == \
        "TCHANNEL_MOCK_BIN"
    assert tchannel_mock.find_binary(None, {"PATH": d}) == tchannel_mock.Binary(BIN, "PATH")
    with pytest.raises(tchannel_mock.BinaryNotFound) as err:
        tchannel_mock.find_binary("/nonexistent/tchannel-mock",
                                  {"TCHANNEL_MOCK_BIN": "/also/missing", "PATH": "/nowhere"})
    msg = str(err.value)
    assert "argument: /nonexistent/tchannel-mock" in msg
    assert "TCHANNEL_MOCK_BIN=/also/missing" in msg
    assert "PATH: no tchannel-mock in /nowhere" in msg


def test_mock_does_not_outlive_a_killed_test_process():
    script = textwrap.dedent("""
        import sys, time
        sys.path.insert(0, %r)
        import tchannel_mock
        m = tchannel_mock.start([%r], bin=%r)
        print(m.pid, flush=True)
        time.sleep(60)
    """ % (SRC, ECHO, BIN))
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
    finally:
        parent.kill()
        parent.wait(timeout=10)
    assert wait_gone(pid, 10), "mock %d outlived its killed parent" % pid


@pytest.mark.skipif(not FEATURES["admin_token_file"],
                    reason="this tchannel-mock has no --admin-token-file")
def test_admin_token(tchannel_mock_factory):
    m = tchannel_mock_factory([ECHO], admin_token="s3cret")
    assert m.admin.health().status == "ok"
    with pytest.raises(AdminError) as err:
        tchannel_mock.AdminClient(m.admin_url).health()
    assert err.value.status == 401 and "Bearer" in err.value.message
    with pytest.raises(AdminError) as err:
        tchannel_mock.AdminClient(m.admin_url, token="guess").health()
    assert err.value.status == 401


def test_fixture_verify_fails_the_test(pytester, monkeypatch):
    pytester.makepyfile(textwrap.dedent("""
        import os, subprocess, pytest

        @pytest.mark.tchannel_mock(cassettes=[%r], verify=True)
        def test_miss(tchannel_mock):
            subprocess.run([os.environ["TCURL_BIN"], "-p", tchannel_mock.host_port,
                            "--retry-limit", "0", "keyvalue-server", "echo", "nope"],
                           capture_output=True, timeout=20)

        @pytest.mark.tchannel_mock(cassettes=[%r], verify=True)
        def test_clean(tchannel_mock):
            assert tchannel_mock.admin.health().status == "ok"

        def test_no_marker(tchannel_mock):
            pass
    """ % (ECHO, ECHO)))
    env_path = SRC + os.pathsep + os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", env_path)
    args = ["-p", "tchannel_mock.pytest_plugin", "--tchannel-mock-bin", BIN]
    if any(ep for ep in _pytest11() if ep.startswith("tchannel_mock.")):
        args = ["--tchannel-mock-bin", BIN]
    res = pytester.runpytest_subprocess(*args)
    res.assert_outcomes(passed=2, errors=2)
    res.stdout.fnmatch_lines(["*1 request(s) matched no interaction*",
                              "*needs @pytest.mark.tchannel_mock*"])


def _pytest11():
    from importlib import metadata
    eps = metadata.entry_points()
    group = eps.select(group="pytest11") if hasattr(eps, "select") else eps.get("pytest11", [])
    return [ep.value for ep in group]
