"""pytest fixtures for tchannel-mock (registered through the pytest11 entry
point when the package is installed; else list it in ``pytest_plugins``).

    @pytest.mark.tchannel_mock(cassettes=["cassettes/"], verify=True)
    def test_x(tchannel_mock):
        call(tchannel_mock.host_port)

    def test_y(tchannel_mock_factory):
        a = tchannel_mock_factory(cassettes=["a.yaml"])
        b = tchannel_mock_factory(cassettes=["b.yaml"], upstream=a.host_port, ...)
"""

import pytest

from .server import MockError, start


def pytest_addoption(parser):
    parser.addoption("--tchannel-mock-bin", default=None,
                     help="path of tchannel-mock (default: $TCHANNEL_MOCK_BIN, then PATH)")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "tchannel_mock(**options): options of tchannel_mock.start() for the "
        "tchannel_mock fixture; verify=True (or verify()'s keywords) checks after the test")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item._tchannel_mock_call_failed = rep.failed


class _Factory:
    def __init__(self, request):
        self._request = request
        self._started = []

    def __call__(self, cassettes=None, **options):
        options.setdefault("bin", self._request.config.getoption("--tchannel-mock-bin"))
        m = start(cassettes, **options)
        self._started.append(m)
        return m

    def finish(self):
        failed = getattr(self._request.node, "_tchannel_mock_call_failed", False)
        errors = []
        for m in reversed(self._started):
            if m._verify_on_exit is not None and not failed:
                try:
                    m.verify(**m._verify_on_exit)
                except AssertionError as err:
                    errors.append(err)
            try:
                m.stop()
            except MockError as err:
                errors.append(err)
        if errors:
            raise errors[0]


@pytest.fixture
def tchannel_mock_factory(request):
    """Starts mocks with tchannel_mock.start()'s options; all stop after the test."""
    factory = _Factory(request)
    yield factory
    factory.finish()


@pytest.fixture
def tchannel_mock(request, tchannel_mock_factory):
    """One mock, configured by the test's ``@pytest.mark.tchannel_mock(...)``."""
    marker = request.node.get_closest_marker("tchannel_mock")
    if marker is None:
        pytest.fail("the tchannel_mock fixture needs "
                    "@pytest.mark.tchannel_mock(cassettes=[...], ...)", pytrace=False)
    return tchannel_mock_factory(*marker.args, **marker.kwargs)
