"""The process model's invariant (docs/how-it-works.rst, "The process model"): in every worker
process each ``pytest_configure`` and ``pytest_sessionstart`` ran once, in that process's own
memory, with ``config.workerinput`` set, and what they started is alive and the worker's own.

Each suite here holds set-up code that is not idempotent, or that starts something a fork
would not carry over, the way real conftests do: configuring a second time on top of a copy
of the controller breaks the first kind, a copy that does not configure at all breaks the
second. The tests run with the default start method (workers forked from the template) and
with spawned workers, and compare with a serial run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from harness import TIMEOUT_S, header_method, output, parallel, reference

METHODS = ["fork", "spawn"]

# -- one configuration per process --------------------------------------------------------

ONCE_CONFTEST = """
import atexit
import logging
import os
import sqlite3

CONFIGURED = []  # the processes that ran pytest_configure with this module's memory
REGISTRY = set()  # like a metrics registry: a name registered twice is an error


def register(name):
    if name in REGISTRY:
        raise ValueError(f"duplicated timeseries in registry: {name}")
    REGISTRY.add(name)


def pytest_configure(config):
    CONFIGURED.append(os.getpid())
    register("tests_total")
    role = "worker" if hasattr(config, "workerinput") else "controller"
    handler = logging.FileHandler(f"log-{role}-{os.getpid()}.txt")
    logging.getLogger("suite").addHandler(handler)
    logging.getLogger("suite").setLevel(logging.INFO)
    atexit.register(lambda: open(f"exit-{role}-{os.getpid()}.txt", "w").close())


def pytest_sessionstart(session):
    session.config.database = sqlite3.connect("shared.sqlite3", timeout=30)
    session.config.database_pid = os.getpid()


def pytest_sessionfinish(session):
    session.config.database.close()
    with open(f"closed-{os.getpid()}.txt", "w"):
        pass
"""

ONCE_TESTS = """
import atexit
import logging
import os

import pytest
from conftest import CONFIGURED


@pytest.mark.parametrize("i", range(6))
def test_own_configuration(i, pytestconfig):
    assert CONFIGURED == [os.getpid()]
    logging.getLogger("suite").info("record %d", i)
    assert pytestconfig.database_pid == os.getpid()
    pytestconfig.database.execute("select 1")
    atexit.register(lambda: open(f"test-exit-{i}-{os.getpid()}.txt", "w").close())
"""


def _names(directory: Path, pattern: str) -> list[str]:
    return sorted(path.name for path in directory.glob(pattern))


@pytest.mark.parametrize("method", METHODS)
def test_each_process_configures_once_as_itself(pytester: pytest.Pytester, method: str) -> None:
    pytester.makeconftest(ONCE_CONFTEST)
    pytester.makepyfile(test_once=ONCE_TESTS)
    serial = reference(pytester)
    assert serial.ret == 0, output(serial)
    for path in pytester.path.glob("*.txt"):
        path.unlink()
    result = parallel(pytester, "-rA", method=method)
    assert result.ret == 0, output(result)
    assert result.parseoutcomes() == serial.parseoutcomes() == {"passed": 6}
    here = pytester.path
    workers = {name.split("-")[2].split(".")[0] for name in _names(here, "log-worker-*")}
    assert len(workers) == 2
    # every record once, in the log of the worker that ran the test
    records = [line for path in here.glob("log-worker-*") for line in path.read_text().splitlines()]
    assert sorted(records) == [f"record {i}" for i in range(6)]
    assert (here / f"log-controller-{_controller(here)}.txt").read_text() == ""
    # each process's exit handlers ran once when it ended: the controller's own, each
    # worker's own (registered by its configure hook, and by its tests)
    assert _names(here, "exit-worker-*") == sorted(f"exit-worker-{pid}.txt" for pid in workers)
    assert len(_names(here, "exit-controller-*")) == 1
    test_exits = _names(here, "test-exit-*")
    assert sorted(name.split("-")[2] for name in test_exits) == [str(i) for i in range(6)]
    assert {name.split("-")[3].split(".")[0] for name in test_exits} == workers
    # each worker closed its own connection at its session's end; the controller its own
    assert {name[len("closed-") : -len(".txt")] for name in _names(here, "closed-*")} == {
        *workers,
        _controller(here),
    }


def _controller(directory: Path) -> str:
    (log,) = directory.glob("log-controller-*")
    return log.name[len("log-controller-") : -len(".txt")]


# -- what a test module opens at import time -----------------------------------------------

IMPORT_TIME_TESTS = """
import os
import socket

import pytest

LISTENER = socket.socket()
LISTENER.bind(("127.0.0.1", 0))
LISTENER.listen()
OPENED_BY = os.getpid()


@pytest.mark.parametrize("i", range(4))
def test_module_state_is_this_process(i):
    assert OPENED_BY == os.getpid()
    with open(f"port-{os.getpid()}-{LISTENER.getsockname()[1]}.txt", "w"):
        pass
"""


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("collect", ["workers", "controller"])
def test_module_imported_in_the_worker(
    pytester: pytest.Pytester, method: str, collect: str
) -> None:
    """A socket a test module opens at import time is the worker's own, one per worker that
    imported the module (as under xdist), whether the controller collected the suite or not."""
    pytester.makepyfile(test_import_time=IMPORT_TIME_TESTS)
    pytester.makepyfile(test_other="def test_other():\n    pass\n")
    result = parallel(pytester, f"--procpar-collect={collect}", method=method)
    assert result.ret == 0, output(result)
    assert result.parseoutcomes() == {"passed": 5}
    ports = {name.split("-")[2] for name in _names(pytester.path, "port-*")}
    pids = {name.split("-")[1] for name in _names(pytester.path, "port-*")}
    assert len(ports) == len(pids)  # a socket per process that ran the module's tests


# -- threads started while configuring ---------------------------------------------------------

SERVER_CONFTEST = """
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = str(os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def pytest_configure(config):
    server = HTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, name="hello", daemon=True).start()
    config.hello_port = server.server_address[1]
"""

SERVER_TESTS = """
import os
import urllib.request

import pytest


@pytest.mark.parametrize("i", range(4))
def test_own_server(i, pytestconfig):
    url = f"http://127.0.0.1:{pytestconfig.hello_port}/"
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.read().decode() == str(os.getpid())
"""


@pytest.mark.parametrize("method", METHODS)
def test_a_server_started_while_configuring_serves_its_worker(
    pytester: pytest.Pytester, method: str
) -> None:
    """A thread a configure hook starts runs in each worker, its own; and being forked from
    the template, made before any configure hook ran, fork stays the start method."""
    pytester.makeconftest(SERVER_CONFTEST)
    pytester.makepyfile(test_server=SERVER_TESTS)
    result = parallel(pytester, method=method)
    assert result.ret == 0, output(result)
    assert result.parseoutcomes() == {"passed": 4}
    result.stdout.fnmatch_lines([f"procpar: 2 workers ({header_method(method)}), 4 items, *"])


# -- module-level code of the conftests ---------------------------------------------------------

IDENTITY_CONFTEST = """
import os

# as real conftests name a per-worker database or port at import time
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
"""

IDENTITY_TESTS = """
import os

import pytest
from conftest import WORKER


@pytest.mark.parametrize("i", range(4))
def test_conftest_knew_its_worker(i):
    assert WORKER == os.environ["PYTEST_XDIST_WORKER"]
"""


@pytest.mark.parametrize("method", METHODS)
def test_conftests_are_imported_by_their_worker(pytester: pytest.Pytester, method: str) -> None:
    """The template is forked before any conftest is imported: each worker imports the
    initial conftests itself, knowing already which worker it is, as under xdist."""
    pytester.makeconftest(IDENTITY_CONFTEST)
    pytester.makepyfile(test_identity=IDENTITY_TESTS)
    result = parallel(pytester, method=method)
    assert result.ret == 0, output(result)
    assert result.parseoutcomes() == {"passed": 4}


# -- a worker's end ---------------------------------------------------------------------------

MAIN_TWICE = """
import os
import sys

import pytest

for suite in ("good", "bad"):
    code = pytest.main(["-p", "procpar", "-n", "2", "-p", "no:cacheprovider", suite])
    with open("after-main.txt", "a") as done:
        done.write(f"{suite} {os.getpid()} {int(code)}\\n")
"""

FAILS_IN_GW1 = """
import os

if os.environ.get("PYTEST_XDIST_WORKER") == "gw1":
    raise RuntimeError("gw1 cannot import this conftest")
"""

FOUR_TESTS = """
import pytest


@pytest.mark.parametrize("i", range(4))
def test_four(i):
    pass
"""


def test_workers_never_return_from_pytest_main(pytester: pytest.Pytester) -> None:
    """A worker forked from the template goes on with the start-up of the controller's
    ``pytest.main()``, and ends before that returns, however its start-up ends: only the
    caller's own process goes on after it (here twice: a good run, then one whose conftest
    fails in one worker, which the run reports with the worker's traceback)."""
    pytester.makepyfile(run_twice=MAIN_TWICE)
    for suite in ("good", "bad"):
        pytester.mkdir(suite)
        (pytester.path / suite / f"test_{suite}.py").write_text(FOUR_TESTS)
    (pytester.path / "bad" / "conftest.py").write_text(FAILS_IN_GW1)
    result = pytester.run(sys.executable, "run_twice.py", timeout=TIMEOUT_S)
    lines = (pytester.path / "after-main.txt").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["good", "bad"], output(result)
    assert len({line.split()[1] for line in lines}) == 1  # the caller's process, both times
    assert lines[0].split()[2] == "0"
    assert lines[1].split()[2] != "0"
    result.stdout.fnmatch_lines(["*RuntimeError: gw1 cannot import this conftest*"])
