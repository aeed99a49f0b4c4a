"""The controller's cost per test against pytest's own reporting, in instructions.

CPU time per test on a busy 2-CPU machine moves with whatever else runs; instruction counts
under callgrind do not. This script runs one pytest process (no workers) over a suite of
empty tests three times under ``valgrind --tool=callgrind``, with itself loaded as a plugin
that replaces the run loop:

- ``path``: every test's events, as a worker sends them, go through a pipe into procpar's
  frame reader, dispatcher and replayer, down to the last hook call;
- ``floor``: what serial pytest does to report a test: three reports made as
  ``TestReport.from_item_and_call`` makes them, the same hook calls (the least any replay
  can cost);
- ``none``: neither, the baseline both are measured from.

It prints instructions per test for both and their ratio (docs/performance.rst, "The
controller's cost per test").

usage: python benchmarks/controller_path.py [--python PY] [--tests 2000]
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import pytest

MODE_ENV = "PROCPAR_PATH_MODE"
MODES = ("none", "floor", "path")
PER_FILE = 100


# -- the plugin, in the measured process ----------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    mode = os.environ.get(MODE_ENV)
    if mode not in MODES:
        return None
    from pytest_procpar import framing, messages, pytest_internals
    from pytest_procpar.dispatch import Dispatcher
    from pytest_procpar.durations import DurationStore
    from pytest_procpar.replay import Replayer
    from pytest_procpar.runreport import RunReport
    from pytest_procpar.xdist_compat import WorkerNode

    config, items = session.config, session.items
    now = time.time()
    plain = [(messages.PLAIN_REPORT, when, "passed", 1e-4, now, now + 1e-4) for when in WHENS]
    frames = [
        framing.encode((messages.ITEM, index, _events(item.location, plain), 1e-3))
        for index, item in enumerate(items)
    ]
    if mode == "floor":
        for item in items:  # as serial pytest reports a test (TestReport.from_item_and_call)
            nodeid = pytest_internals.structured_nodeid(item)
            hooks = item.ihook
            hooks.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
            for when in WHENS:
                keywords: dict[str, Any] = {name: 1 for name in item.keywords}
                report = pytest.TestReport(
                    nodeid, item.location, keywords, "passed", None, when, (), 1e-4, now, now
                )
                hooks.pytest_runtest_logreport(report=report)
            hooks.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    elif mode == "path":
        replayer = Replayer(config, items, DurationStore(config))
        dispatcher = Dispatcher(session, replayer, RunReport("load"), _ignore, _ignore)
        dispatcher.losses = _Reported()  # type: ignore[assignment]
        worker: Any = types.SimpleNamespace(
            workerid="gw0",
            node=WorkerNode(config, {"workerid": "gw0"}),
            assigned=collections.deque(),
        )
        read_fd, write_fd = os.pipe()
        reader: framing.FrameReader[Any] = framing.FrameReader(read_fd)
        for start in range(0, len(frames), 2):  # two frames a wake-up, as in a -n 2 run
            os.write(write_fd, b"".join(frames[start : start + 2]))
            for message in reader.read_available():
                dispatcher.dispatch(worker, message)
    return True


WHENS: tuple[Any, ...] = ("setup", "call", "teardown")


def _events(location: Any, reports: list[Any]) -> list[Any]:
    """A passing test's events, as its worker sends them."""
    from pytest_procpar import messages

    return [messages.log_start(location, None), *reports, messages.log_finish(location, None)]


def _ignore(*args: object) -> None:
    """Work requests and collection shares: this run has none."""


class _Reported:
    """The loss accounting's part on the path: an item reported is no longer assigned."""

    def item_reported(self, worker: Any, index: int) -> None:
        if index in worker.assigned:
            worker.assigned.remove(index)


# -- the driver -----------------------------------------------------------------------------


def make_suite(root: Path, tests: int) -> None:
    for number in range(max(1, tests // PER_FILE)):
        body = "".join(f"\n\ndef test_{j}():\n    pass\n" for j in range(PER_FILE))
        (root / f"test_path_{number:03d}.py").write_text("# empty tests" + body, "utf-8")
    (root / "pytest.ini").write_text("[pytest]\n", "utf-8")


def instructions(python: str, root: Path, mode: str, out: Path) -> int:
    """callgrind's instruction count for one pytest process in ``mode``."""
    env = {**os.environ, MODE_ENV: mode, "PYTHONPATH": str(Path(__file__).resolve().parent)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    target = out / f"callgrind.{mode}"
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={target}", python, "-m", "pytest",
         "-q", "-p", "controller_path", "-p", "no:cacheprovider", "-p", "no:randomly"],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
    )  # fmt: skip
    for line in target.read_text("utf-8", "replace").splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"no summary line in {target}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--tests", type=int, default=2000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root, out = Path(tmp, "suite"), Path(tmp, "out")
        root.mkdir()
        out.mkdir()
        make_suite(root, args.tests)
        instructions(args.python, root, "none", out)  # warm-up: bytecode caches
        counts = {mode: instructions(args.python, root, mode, out) for mode in MODES}
    tests = max(1, args.tests // PER_FILE) * PER_FILE
    floor = (counts["floor"] - counts["none"]) / tests
    path = (counts["path"] - counts["none"]) / tests
    print(f"serial pytest reporting a test (reports, hooks): {floor:,.0f} instructions/test")
    print(f"procpar's controller path, frames to hooks:     {path:,.0f} instructions/test")
    print(f"ratio: {path / floor:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
