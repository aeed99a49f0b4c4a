"""The plugin matrix, plugins that fence off or fake the outside world: blocked sockets, a local
HTTP server, and a frozen or travelling clock give the serial run's outcomes on two workers.

Each test runs one small suite plainly and on two workers (forked or spawned, see
``matrix.METHODS``) and compares them with ``matrix.run_pair``: exit code, summary counts,
short test summary and each test's outcome and message.
"""

from __future__ import annotations

import re

import pytest
from matrix import METHODS, PLUGINS_ALONE, load, run_pair

pytestmark = PLUGINS_ALONE


# -- pytest-socket -------------------------------------------------------------------------

SOCKETS = """
import socket

import re

import pytest
from pytest_socket import SocketBlockedError

def test_blocked():
    with pytest.raises(SocketBlockedError):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)

def test_connect_fails():
    socket.create_connection(("127.0.0.1", 9))

@pytest.mark.enable_socket
def test_enabled():
    server = socket.create_server(("127.0.0.1", 0))
    with server, socket.create_connection(server.getsockname()) as client:
        client.sendall(b"ping")
        connection, _ = server.accept()
        with connection:
            assert connection.recv(4) == b"ping"

def test_unix_sockets_allowed():
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        left.sendall(b"ok")
        assert right.recv(2) == b"ok"
"""


@pytest.mark.parametrize("method", METHODS)
def test_socket_blocking(pytester: pytest.Pytester, method: str) -> None:
    """``--disable-socket`` blocks network sockets in every test on the workers, the marker
    lifts it, and the blocked test fails with pytest-socket's error, as serially."""
    pytest.importorskip("pytest_socket")
    pytester.makepyfile(test_net=SOCKETS)
    args = ("--disable-socket", "--allow-unix-socket")
    pair = run_pair(pytester, method, *args, plugins=load("pytest_socket"))
    assert pair.expected.parseoutcomes() == {"passed": 3, "failed": 1, "warnings": 2}
    assert any("SocketBlockedError" in message for _, _, message in pair.tests)


# -- pytest-httpserver ---------------------------------------------------------------------

HTTP_TESTS = """
import json
import urllib.error
import urllib.request

import re

import pytest

def fetch(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.read()

def test_json(httpserver):
    httpserver.expect_request("/api/user", query_string="id=1").respond_with_json({"n": "ada"})
    status, body = fetch(httpserver.url_for("/api/user?id=1"))
    assert (status, json.loads(body)) == (200, {"n": "ada"})

def test_ordered(httpserver):
    httpserver.expect_ordered_request("/first").respond_with_data("1")
    httpserver.expect_ordered_request("/second").respond_with_data("2")
    assert fetch(httpserver.url_for("/first"))[1] == b"1"
    assert fetch(httpserver.url_for("/second"))[1] == b"2"
    httpserver.check_assertions()

@pytest.mark.parametrize("code", [404, 503])
def test_error_status(httpserver, code):
    httpserver.expect_request("/down").respond_with_data("no", status=code)
    with pytest.raises(urllib.error.HTTPError) as raised:
        fetch(httpserver.url_for("/down"))
    assert raised.value.code == code

def test_unexpected_request(httpserver):
    httpserver.expect_request("/expected").respond_with_data("ok")
    with pytest.raises(urllib.error.HTTPError):
        fetch(httpserver.url_for("/other"))
    httpserver.check_assertions()
"""


@pytest.mark.parametrize("method", METHODS)
def test_http_server_fixture(pytester: pytest.Pytester, method: str) -> None:
    """Each worker serves its tests' expectations (the server is session-scoped: one per
    worker), and a request nothing expected fails its test, as serially."""
    pytest.importorskip("pytest_httpserver")
    pytester.makepyfile(test_http=HTTP_TESTS)
    pair = run_pair(pytester, method, plugins=load("pytest_httpserver.pytest_plugin"))
    assert pair.expected.parseoutcomes() == {"passed": 4, "failed": 1}


# -- freezegun and time-machine ------------------------------------------------------------

# One module's tests share a frozen clock (a module-scoped fixture), so the clock is frozen
# from the end of the first test's setup to the last test's teardown, also while procpar
# notes when each test starts; an assert on the frozen date fails.
FROZEN = """
import datetime as dt
import time

import re

import pytest
from freezegun import freeze_time

@pytest.fixture(scope="module", autouse=True)
def leap_day():
    with freeze_time("2020-02-29 12:00:00"):
        yield

def test_today():
    assert dt.date.today() == dt.date(2020, 2, 29)

def test_clock_stands_still():
    assert time.time() == time.time()

def test_tick():
    with freeze_time("1999-12-31 23:59:59") as frozen:
        frozen.tick(dt.timedelta(seconds=1))
        assert dt.datetime.now() == dt.datetime(2000, 1, 1)

@freeze_time("2021-06-01")
def test_decorator():
    assert dt.date.today() == dt.date(2021, 6, 1)

def test_wrong_month():
    assert dt.date.today().month == 3
"""

TRAVELLED = """
import datetime as dt
import time

import re

import pytest
import time_machine

@pytest.fixture(scope="module", autouse=True)
def leap_day():
    with time_machine.travel(dt.datetime(2020, 2, 29, 12, tzinfo=dt.timezone.utc), tick=False):
        yield

def test_today():
    assert dt.datetime.now(dt.timezone.utc).date() == dt.date(2020, 2, 29)

def test_clock_stands_still():
    assert time.time() == time.time()

def test_fixture_moves(time_machine):
    time_machine.move_to(dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc), tick=False)
    assert dt.datetime.now(dt.timezone.utc).year == 2030

def test_shift(time_machine):
    time_machine.move_to(dt.datetime(2020, 2, 29, 12, tzinfo=dt.timezone.utc), tick=False)
    time_machine.shift(dt.timedelta(days=1))
    assert dt.datetime.now(dt.timezone.utc).date() == dt.date(2020, 3, 1)

def test_wrong_month():
    assert dt.datetime.now(dt.timezone.utc).month == 3
"""

REAL_CLOCK = """
import datetime as dt

def test_real_clock():
    assert dt.date.today().year >= 2024
"""
# The frozen module's tests on one worker, in order, each with a time limit.
ON_ONE_WORKER = ("--dist", "loadfile", "--procpar-timeout", "60")
RUN_REPORT = re.compile(r"^procpar: .* slowest \S+ ([\d.]+)s$", re.MULTILINE)
CLOSING = re.compile(r"^=+ .* in ([\d.]+)s", re.MULTILINE)


def assert_run_report_sane(result: pytest.RunResult) -> None:
    """No test took longer than the whole run: the workers measured time with a clock the
    tests did not freeze."""
    slowest, run = RUN_REPORT.search(result.stdout.str()), CLOSING.search(result.stdout.str())
    assert slowest and run, result.stdout.str()
    assert float(slowest.group(1)) <= float(run.group(1)) + 0.01, slowest.group(0)


@pytest.mark.parametrize("method", METHODS)
def test_freezegun_frozen_clock(pytester: pytest.Pytester, method: str) -> None:
    """freezegun replaces ``time.monotonic`` and ``time.perf_counter`` too, wherever they are
    looked up: what a worker measures or schedules by must not use the frozen clock."""
    pytest.importorskip("freezegun")
    pytester.makepyfile(test_frozen=FROZEN, test_real=REAL_CLOCK)
    pair = run_pair(pytester, method, plugins=(), procpar_args=ON_ONE_WORKER)
    assert pair.expected.parseoutcomes() == {"passed": 5, "failed": 1}
    if method != "xdist":
        assert_run_report_sane(pair.result)


@pytest.mark.parametrize("method", METHODS)
def test_time_machine_travel(pytester: pytest.Pytester, method: str) -> None:
    """time-machine moves the wall clock (``time.time``, ``datetime.now``) of everything in
    the process, procpar's worker included, but not the monotonic clocks."""
    pytest.importorskip("time_machine")
    pytester.makepyfile(test_travel=TRAVELLED, test_real=REAL_CLOCK)
    pair = run_pair(pytester, method, plugins=load("time_machine"), procpar_args=ON_ONE_WORKER)
    assert pair.expected.parseoutcomes() == {"passed": 5, "failed": 1}
    if method != "xdist":
        assert_run_report_sane(pair.result)
