"""Coverage sees the lines workers ran: pytest-cov and ``coverage run`` match a serial run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from harness import TIMEOUT_S, runpytest

pytest.importorskip("coverage")

PACKAGE = """
def sign(x):
    if x > 0:
        return "positive"
    if x < 0:
        return "negative"
    return "zero"


def parity(x):
    if x % 2:
        return "odd"
    return "even"


def unused():
    return "never called"
"""

TESTS = """
import pytest
from pkg import parity, sign

@pytest.mark.parametrize("x", [1, 5, 9])
def test_sign(x):
    assert sign(x) == "positive"

def test_parity():
    assert parity(3) == "odd"

def test_zero():
    assert sign(0) == "zero"
"""

METHODS = [[], ["-n", "2"], ["-n", "2", "--procpar-start", "spawn"]]


def covered_lines(report: str) -> dict[str, list[int]]:
    files = json.loads(report)["files"]
    return {name: data["executed_lines"] for name, data in files.items()}


def make_suite(pytester: pytest.Pytester) -> None:
    pytester.mkpydir("pkg").joinpath("__init__.py").write_text(PACKAGE)
    pytester.makepyfile(test_cov=TESTS)


@pytest.mark.parametrize("parallel", METHODS, ids=["serial", "fork", "spawn"])
def test_pytest_cov_same_lines_as_serial(pytester: pytest.Pytester, parallel: list[str]) -> None:
    pytest.importorskip("pytest_cov")
    make_suite(pytester)
    args = ["-p", "procpar", "--cov=pkg", "--cov-report=json:cov.json", *parallel]
    result = runpytest(pytester, *args)
    result.assert_outcomes(passed=5)
    lines = covered_lines((pytester.path / "cov.json").read_text())
    assert lines == {"pkg/__init__.py": [2, 3, 4, 5, 7, 10, 11, 12, 16]}


def coverage(pytester: pytest.Pytester, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coverage", *args],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


@pytest.mark.parametrize("parallel", METHODS, ids=["serial", "fork", "spawn"])
@pytest.mark.parametrize("mode", ["plain", "parallel-combine"])
def test_coverage_run_same_lines_as_serial(
    pytester: pytest.Pytester, parallel: list[str], mode: str
) -> None:
    make_suite(pytester)
    extra = ["--parallel-mode"] if mode == "parallel-combine" else []
    ran = coverage(
        pytester, "run", *extra, "--source=pkg", "-m", "pytest", "-p", "procpar", "-p",
        "no:cov", "-q", *parallel,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    if mode == "parallel-combine":
        combined = coverage(pytester, "combine")
        assert combined.returncode == 0, combined.stderr
    reported = coverage(pytester, "json", "-o", "cov.json")
    assert reported.returncode == 0, reported.stdout + reported.stderr
    lines = covered_lines((pytester.path / "cov.json").read_text())
    assert lines == {"pkg/__init__.py": [2, 3, 4, 5, 7, 10, 11, 12, 16]}


LATE_WORKER_PLUGIN = """
import os

# Imported by -p before pytest-cov sets up: gw1 waits here until gw0 has finished its
# session and saved its coverage data (the FIFO's writer opens only then).
if os.environ.get("PYTEST_XDIST_WORKER") == "gw1":
    with open(os.environ["LATE_WORKER_FIFO"]) as fifo:
        fifo.read()


def pytest_unconfigure(config):
    if os.environ.get("PYTEST_XDIST_WORKER") == "gw0":
        with open(os.environ["LATE_WORKER_FIFO"], "w"):
            pass
"""


def test_pytest_cov_keeps_data_of_workers_that_finished_before_another_started(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spawned worker starting late must not erase the data files of finished workers
    (pytest-cov's start in a process whose command line has ``--cov`` and ``-n`` erases them
    unless told to append)."""
    pytest.importorskip("pytest_cov")
    make_suite(pytester)
    pytester.makepyfile(late_worker=LATE_WORKER_PLUGIN)
    fifo = pytester.path / "late-worker.fifo"
    os.mkfifo(fifo)
    monkeypatch.setenv("LATE_WORKER_FIFO", str(fifo))
    monkeypatch.setenv("PYTHONPATH", str(pytester.path), prepend=os.pathsep)
    args = ["-p", "late_worker", "-p", "procpar", "--cov=pkg", "--cov-report=json:cov.json"]
    result = runpytest(pytester, *args, "-n", "2", "--procpar-start", "spawn")
    result.assert_outcomes(passed=5)
    lines = covered_lines((pytester.path / "cov.json").read_text())
    assert lines == {"pkg/__init__.py": [2, 3, 4, 5, 7, 10, 11, 12, 16]}
