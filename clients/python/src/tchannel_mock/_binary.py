"""Finding the tchannel-mock executable, and what its command line offers."""

import os
import subprocess
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional

ENV_VAR = "TCHANNEL_MOCK_BIN"
NAME = "tchannel-mock"


class BinaryNotFound(FileNotFoundError):
    """No tchannel-mock where we looked; ``tried`` lists each place."""

    def __init__(self, tried: List[str]):
        super().__init__("cannot find %s; tried %s" % (NAME, "; ".join(tried)))
        self.tried = tried


@dataclass(frozen=True)
class Binary:
    path: str
    source: str  # "argument", "TCHANNEL_MOCK_BIN" or "PATH"


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_binary(explicit: Optional[str] = None,
                env: Optional[Mapping[str, str]] = None) -> Binary:
    """The argument, then $TCHANNEL_MOCK_BIN, then PATH."""
    env = os.environ if env is None else env
    tried = []
    if explicit:
        if _executable(explicit):
            return Binary(os.path.abspath(explicit), "argument")
        tried.append("argument: %s (not an executable file)" % explicit)
    else:
        tried.append("argument: not given")
    from_env = env.get(ENV_VAR)
    if from_env:
        if _executable(from_env):
            return Binary(os.path.abspath(from_env), ENV_VAR)
        tried.append("%s=%s (not an executable file)" % (ENV_VAR, from_env))
    else:
        tried.append("%s: not set" % ENV_VAR)
    dirs = [d for d in env.get("PATH", "").split(os.pathsep) if d]
    for d in dirs:
        candidate = os.path.join(d, NAME)
        if _executable(candidate):
            return Binary(candidate, "PATH")
    tried.append("PATH: no %s in %s" % (NAME, os.pathsep.join(dirs) or "(empty)"))
    raise BinaryNotFound(tried)


_features: Dict[str, Dict[str, bool]] = {}


def features(path: str) -> Dict[str, bool]:
    """The newer options the binary's --help lists (cached per path)."""
    if path not in _features:
        res = subprocess.run([path, "--help"], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=10)
        if res.returncode != 0:
            raise RuntimeError("%s --help failed: exit %d: %s"
                               % (path, res.returncode, res.stderr))
        _features[path] = {
            "exit_on_stdin_eof": "--exit-on-stdin-eof" in res.stdout,
            "admin_token_file": "--admin-token-file" in res.stdout,
            "cassette_root": "--cassette-root" in res.stdout,
        }
    return _features[path]
