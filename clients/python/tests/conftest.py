"""Runs the tests against the package in ../src unless it is installed."""

import os
import sys

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def _installed() -> bool:
    from importlib import metadata
    eps = metadata.entry_points()
    group = eps.select(group="pytest11") if hasattr(eps, "select") else eps.get("pytest11", [])
    return any(ep.value.startswith("tchannel_mock.") for ep in group)


if not _installed():
    sys.path.insert(0, SRC)
    pytest_plugins = ["tchannel_mock.pytest_plugin"]
pytest_plugins = list(globals().get("pytest_plugins", [])) + ["pytester"]
