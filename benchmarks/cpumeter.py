"""A pytest plugin the benchmark loads into every process of a run: the CPU each one spent in
its run loop, and how many tests it ran (a worker, or serial pytest) or replayed (a
controller). From these the benchmark prints microseconds of CPU per test for the workers and
for the controller, which caps how many workers a suite of tiny tests can keep busy.

Loaded through ``PYTEST_PLUGINS=cpumeter`` with this directory on ``PYTHONPATH``, so that
xdist's and procpar's workers load it too, however they start. Each process appends one JSON
line to the file named by ``PROCPAR_CPU_METER`` when its run loop ends.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator
from pathlib import Path

import pytest

METER_ENV = "PROCPAR_CPU_METER"


class Meter:
    def __init__(self) -> None:
        self.tests = 0


_meter = Meter()


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    started = time.process_time()
    _meter.tests = 0
    try:
        return (yield)
    finally:
        _record(session.config, time.process_time() - started)


def _record(config: pytest.Config, cpu_s: float) -> None:
    path = os.environ.get(METER_ENV)
    if not path:
        return
    if getattr(config, "workerinput", None) is not None:
        role = "worker"
    else:
        role = "controller" if config.getoption("numprocesses", None) else "serial"
    line = json.dumps({"role": role, "cpu_s": cpu_s, "tests": _meter.tests}) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError:
        return  # the measurement is lost, the run is not
    try:
        os.write(fd, line.encode())  # one small write: lines never interleave
    finally:
        os.close(fd)


def pytest_runtest_logfinish() -> None:
    _meter.tests += 1


# -- the benchmark's side ---------------------------------------------------------------------

ROLES = ("serial", "worker", "controller")


def environment(env: dict[str, str], path: Path) -> dict[str, str]:
    """``env`` for a measured run whose processes append their figures to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    here = str(Path(__file__).resolve().parent)
    return {
        **env,
        "PYTHONPATH": os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")])),
        "PYTEST_PLUGINS": "cpumeter",
        METER_ENV: str(path),
    }


def per_test_us(path: Path) -> dict[str, float]:
    """Microseconds of CPU per test in the run loop, per role (workers summed)."""
    try:
        lines = [json.loads(line) for line in path.read_text().splitlines() if line]
    except OSError:
        return {}
    found = {}
    for role in ROLES:
        chosen = [line for line in lines if line["role"] == role]
        tests = sum(int(line["tests"]) for line in chosen)
        if tests:
            found[role] = 1e6 * sum(float(line["cpu_s"]) for line in chosen) / tests
    return found
