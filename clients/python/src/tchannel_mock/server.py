"""Runs tchannel-mock as a child process for the length of a test."""

import atexit
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from typing import Iterable, List, Mapping, Optional, Sequence, Union

from . import _binary
from .admin import AdminClient

STDERR_KEEP = 64 * 1024
STDOUT_LINE_KEEP = 16 * 1024
_PR_SET_PDEATHSIG = 1


class MockError(RuntimeError):
    """tchannel-mock did not start, or did not stop cleanly; ``stderr`` is its log."""

    def __init__(self, message: str, stderr: str = ""):
        text = message
        if stderr:
            text += "\n--- tchannel-mock stderr ---\n" + stderr
        super().__init__(text)
        self.stderr = stderr


class VerifyError(AssertionError):
    """What verify() found; ``problems`` lists each."""

    def __init__(self, problems: List[str]):
        super().__init__("tchannel-mock verification failed:\n  " + "\n  ".join(problems))
        self.problems = problems


def _parent_death_signal():
    """A preexec_fn for Linux: the child gets SIGTERM when the thread that
    started it dies (the whole process dying included). Everything it needs is
    resolved here, in the parent: after fork, in a process that may have had
    other threads, the child must not import or allocate much."""
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()
    term = int(signal.SIGTERM)

    def in_child():
        prctl(_PR_SET_PDEATHSIG, term, 0, 0, 0)
        if os.getppid() != parent:  # it died before prctl took effect
            os.kill(os.getpid(), term)

    return in_child


_live: "weakref.WeakSet[MockServer]" = weakref.WeakSet()


@atexit.register
def _stop_live() -> None:
    for m in list(_live):
        m._terminate_quietly()


def _as_list(v: Union[None, str, Iterable[str]]) -> List[str]:
    if v is None:
        return []
    if isinstance(v, (str, os.PathLike)):
        return [os.fspath(v)]
    return [os.fspath(x) for x in v]


def _positional(p: str) -> str:
    return "./" + p if p.startswith("-") else p  # not read as an option


class MockServer:
    """A running tchannel-mock. Use start() to make one; it is a context manager."""

    def __init__(self, proc: subprocess.Popen, binary: _binary.Binary, stop_timeout: float,
                 token_dir: Optional[str], verify_on_exit: Optional[dict]):
        self.proc = proc
        self.pid = proc.pid
        self.binary = binary.path
        self.binary_source = binary.source
        self.host_port = ""
        self.host = ""
        self.port = 0
        self.admin_host_port = ""
        self.admin_url = ""
        self.admin: AdminClient = None  # type: ignore[assignment]
        self.stop_timeout = stop_timeout
        self._verify_on_exit = verify_on_exit
        self._token_dir = token_dir
        self._stderr = bytearray()
        self._stderr_lock = threading.Lock()
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._ready = threading.Event()
        self._stopped = False
        self._threads = [threading.Thread(target=self._read_stderr, daemon=True),
                         threading.Thread(target=self._read_stdout, daemon=True)]
        for t in self._threads:
            t.start()
        _live.add(self)

    # Both pipes are drained for the mock's whole life: a full pipe would block it.
    def _read_stderr(self) -> None:
        for chunk in iter(lambda: self.proc.stderr.read1(4096), b""):
            with self._stderr_lock:
                self._stderr += chunk
                del self._stderr[:-STDERR_KEEP]

    # Lines are queued only until the listening and admin lines were read;
    # after that the mock's stdout is drained and dropped.
    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            if self._ready.is_set():
                continue
            self._lines.put(line[:STDOUT_LINE_KEEP].decode("utf-8", "replace").rstrip("\n"))
        self._lines.put(None)

    def stderr(self) -> str:
        """What the mock wrote to stderr so far (the last 64 KiB)."""
        with self._stderr_lock:
            return self._stderr.decode("utf-8", "replace")

    def _wait_ready(self, timeout: float, cmd: Sequence[str], token: Optional[str]) -> None:
        deadline = time.monotonic() + timeout
        seen: List[str] = []
        listening = admin = None
        while listening is None or admin is None:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise queue.Empty
                line = self._lines.get(timeout=left)
            except queue.Empty:
                self._fail_start(seen, cmd, timeout, eof=False)
            if line is None:  # stdout's end
                self._fail_start(seen, cmd, timeout, eof=True)
            seen = seen[-63:] + [line]  # a bounded tail for the error message
            m = re.match(r"^listening (\S+)$", line)
            listening = m.group(1) if m else listening
            m = re.match(r"^admin (\S+)$", line)
            admin = m.group(1) if m else admin
        self._ready.set()
        self._drain_lines()
        self.host_port = listening
        host, _, port = listening.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.admin_host_port = admin
        self.admin_url = "http://" + admin
        self.admin = AdminClient(self.admin_url, token=token)

    def _drain_lines(self) -> None:
        try:
            while True:
                self._lines.get_nowait()
        except queue.Empty:
            pass

    def _fail_start(self, seen: List[str], cmd: Sequence[str], timeout: float,
                    eof: bool) -> None:
        if eof:  # stdout closed: the mock is exiting, or has
            try:
                self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                pass
        code = self.proc.poll()
        if code is None:
            why = ("closed its stdout without printing its listening and admin lines" if eof
                   else "did not print its listening and admin lines within %g s" % timeout)
            self.proc.kill()
        else:
            why = "exited during start-up (%s)" % (
                "signal %d" % -code if code < 0 else "status %d" % code)
        self._reap()
        self._threads[0].join(timeout=self.stop_timeout)  # the rest of stderr
        raise MockError("tchannel-mock %s\ncommand: %s\nstdout so far: %r"
                        % (why, " ".join(cmd), "\n".join(seen)), self.stderr())

    def _reap(self) -> None:
        try:
            self.proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            pass
        self._cleanup()

    def _cleanup(self) -> None:
        self._stopped = True
        _live.discard(self)
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        if self._token_dir:
            shutil.rmtree(self._token_dir, ignore_errors=True)
            self._token_dir = None

    def _terminate_quietly(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()

    def stop(self) -> int:
        """SIGTERM, a bounded wait, then SIGKILL. Returns the exit status (0).
        Raises MockError when the mock had to be killed or exited non-zero
        (a cassette it could not save, for one), with its stderr."""
        if self._stopped:
            return self.proc.returncode
        running = self.proc.poll() is None
        killed = False
        if running:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                killed = True
                self.proc.kill()
                self.proc.wait(timeout=self.stop_timeout)
        self._cleanup()
        self._threads[0].join(timeout=self.stop_timeout)
        code = self.proc.returncode
        if killed:
            raise MockError("tchannel-mock (pid %d) did not exit within %g s of SIGTERM and "
                            "was killed" % (self.pid, self.stop_timeout), self.stderr())
        if not running or code != 0:
            raise MockError("tchannel-mock (pid %d) %s %s"
                            % (self.pid, "exited" if running else "had already exited before "
                               "stop(),", "on signal %d" % -code if code < 0
                               else "with status %d" % code), self.stderr())
        return code

    def verify(self, unmatched: bool = True, required: bool = True,
               all_played: bool = False) -> None:
        """Asks the mock (GET /verify) and raises VerifyError listing every
        problem it found, in the mock's own words:
        required:   an interaction or stub marked ``required: true`` was never called;
        unmatched:  a request reached the mock that no cassette or stub answered
                    (since start or the last clear of the journal);
        all_played: (not part of /verify) an interaction was never played since
                    the last load, reset, rewind or mode change."""
        problems: List[str] = []
        report = self.admin.verify() if (unmatched or required) else None
        if required and report is not None:
            problems += ["required, never called: " + n.describe for n in report.not_called]
        if unmatched and report is not None and report.unmatched:
            problems.append("%d request(s) matched no interaction or stub" % report.unmatched)
            problems += ["unmatched %s::%s: %s" % (e.service, e.endpoint, e.message)
                         for e in report.unmatched_requests]
        if all_played:
            for c in self.admin.cassettes().cassettes:
                problems += ["never played: %s #%d (line %s) %s::%s"
                             % (c.path, i.index, i.line, i.service, i.endpoint)
                             for i in c.interactions
                             if not i.pending and not i.aborted and i.plays == 0]
        if problems:
            raise VerifyError(problems)

    def __enter__(self) -> "MockServer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None and self._verify_on_exit is not None:
                self.verify(**self._verify_on_exit)
        except BaseException:
            self._stop_after_failure()
            raise
        if exc_type is None:
            self.stop()
        else:
            self._stop_after_failure()

    def _stop_after_failure(self) -> None:
        try:
            self.stop()
        except MockError:
            pass  # the first failure is the one to see


def _write_token(token: str) -> (str, str):
    d = tempfile.mkdtemp(prefix="tchannel-mock-token-")
    path = os.path.join(d, "token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    return d, path


def start(cassettes: Union[None, str, Iterable[str]] = None, *, mode: Optional[str] = None,
          upstream: Union[None, str, Iterable[str]] = None, record_to: Optional[str] = None,
          allow_repeats: bool = False, match: Union[None, str, Iterable[str]] = None,
          args: Sequence[str] = (), bin: Optional[str] = None,
          env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None,
          host: str = "127.0.0.1", admin_token: Optional[str] = None,
          cassette_roots: Union[None, str, Iterable[str]] = None,
          start_timeout: float = 10.0, stop_timeout: float = 5.0,
          verify: Union[None, bool, dict] = None) -> MockServer:
    """Starts tchannel-mock and returns once it printed its listening and admin
    lines. ``verify`` (True or verify()'s keyword arguments) checks on leaving
    a ``with`` block that ended without an exception."""
    binary = _binary.find_binary(bin, env)
    feats = _binary.features(binary.path)
    cmd = [binary.path, "--host", host, "--port", "0", "--admin-port", "0"]
    if mode:
        cmd += ["--mode", mode]
    for u in _as_list(upstream):
        cmd += ["--upstream", u]
    if record_to:
        cmd += ["--record-to", os.fspath(record_to)]
    if allow_repeats:
        cmd.append("--allow-repeats")
    if match:
        cmd += ["--match", ",".join(_as_list(match))]
    if feats["exit_on_stdin_eof"]:
        cmd.append("--exit-on-stdin-eof")
    roots = _as_list(cassette_roots)
    if roots and not feats["cassette_root"]:
        raise MockError("cassette_roots: %s has no --cassette-root option (see its --help)"
                        % binary.path)
    for d in roots:
        cmd += ["--cassette-root", d]
    token_dir = None
    if admin_token:
        if not feats["admin_token_file"]:
            raise MockError("admin_token: %s has no --admin-token-file option (see its --help)"
                            % binary.path)
        token_dir, token_file = _write_token(admin_token)
        cmd += ["--admin-token-file", token_file]
    cmd += list(args)
    cmd += [_positional(p) for p in _as_list(cassettes)]
    try:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=cwd, env=None if env is None else dict(env), close_fds=True,
            # the stdin pipe is ours alone; until every mock watches it, the
            # kernel's parent-death signal covers a test process that dies
            preexec_fn=_parent_death_signal() if sys.platform.startswith("linux") else None)
    except BaseException:
        if token_dir:
            shutil.rmtree(token_dir, ignore_errors=True)
        raise
    verify_kw = {} if verify is True else (verify or None)
    m = MockServer(proc, binary, stop_timeout, token_dir, verify_kw)
    m._wait_ready(start_timeout, cmd, admin_token)
    return m
