"""``--procpar-bisect NODEID``: find the tests that make NODEID fail by running before it.

From the newest run record in which NODEID did not pass, take what ran before it on its
worker, check that NODEID passes alone and fails after all of them, then narrow them down
(delta debugging: halves while one half still makes it fail, then leaving out one test at a
time) to a set that makes it fail and of which no test can be left out. Every candidate runs
in a fresh worker forked from the template (see :mod:`pytest_procpar.template`), as a run's
workers are: configured as the recorded worker, it collects the files of its tests only and
runs them in the candidate's order through pytest's whole session (every plugin's hooks),
with its output thrown away, and tells the controller each finished test's outcome through a
pipe.
"""

from __future__ import annotations

import os
import pickle
import select
import shutil
import signal
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pytest_procpar import faults, isolation, launch, worker_start
from pytest_procpar.node import WorkerNode
from pytest_procpar.run import worker_identity
from pytest_procpar.run_record import (
    NOT_PASSED,
    RecordStore,
    RunRecord,
    TestEntry,
    apply_seeds,
    keep_sequence,
    outcome_of,
)
from pytest_procpar.shared import Shared
from pytest_procpar.template import Template, TemplateChild
from pytest_procpar.xdist_compat import new_testrunuid, worker_basetemp

T = TypeVar("T")
PROBE_SLACK_S = 60.0  # a probe may take this much longer than its tests took when recorded
PROBE_SLOWDOWN = 5.0  # ... and this many times as long


def smallest_cause(before: Sequence[T], fails: Callable[[list[T]], bool]) -> list[T]:
    """A subsequence of ``before`` (``fails(before)`` is true) for which ``fails`` is still
    true and no element can be left out: halving while one half alone is enough, then one
    element at a time."""
    cause = list(before)
    while len(cause) > 1:
        half = len(cause) // 2
        later, earlier = cause[half:], cause[:half]
        if fails(later):  # those just before the test first: the likelier culprits
            cause = later
        elif fails(earlier):
            cause = earlier
        else:
            break  # it takes tests from both halves
    position = 0
    while len(cause) > 1 and position < len(cause):
        without = cause[:position] + cause[position + 1 :]
        if fails(without):
            cause = without
        else:
            position += 1
    return cause


def failing_record(config: pytest.Config, nodeid: str) -> tuple[RunRecord, TestEntry]:
    """The newest record in which ``nodeid`` did not pass on a worker, and that test's line."""
    looked = 0
    for record in RecordStore(config).newest_first():
        looked += 1
        for entry in record.tests:
            if entry.nodeid == nodeid and entry.outcome in NOT_PASSED and entry.worker:
                return record, entry
    raise pytest.UsageError(
        f"--procpar-bisect: {nodeid} did not fail on a worker in any of the {looked} recorded runs"
    )


class Probe:
    """Runs a sequence of items in a worker forked from the template, and says how the last
    one ended (or why it did not)."""

    def __init__(
        self,
        config: pytest.Config,
        template: Template,
        recorded_seconds: dict[str, float],
        workerinput: dict[str, Any],
        basetemp: Path,
    ) -> None:
        self.template = template
        self.recorded_seconds = recorded_seconds
        self.workerinput = workerinput  # every probe is the same worker, fresh
        self.basetemp = basetemp
        self.option_dict = launch.picklable_options(config)
        self.environment = isolation.starting_environment()
        self.invocation_dir = str(config.invocation_params.dir)
        self.count = 0

    def outcome(self, sequence: Sequence[pytest.Item]) -> str:
        """The last item's outcome; ``crashed``/``timeout`` if the process died or hung while
        running it; ``broken`` if it never got there (an earlier test took the process down)."""
        self.count += 1
        expected = sum(self.recorded_seconds.get(item.nodeid, 0.0) for item in sequence)
        deadline = time.monotonic() + PROBE_SLACK_S + PROBE_SLOWDOWN * expected
        start = ProbeStart(
            nodeids=[item.nodeid for item in sequence],
            files=sorted({str(item.path) for item in sequence}),
            option_dict=self.option_dict,
            environment=self.environment,
            workerinput=self.workerinput,
            basetemp=str(worker_basetemp(self.basetemp, self.workerinput["workerid"])),
            stack_path=self.basetemp / f"procpar-probe-{self.workerinput['workerid']}.stack",
            invocation_dir=self.invocation_dir,
        )
        read_fd, write_fd = os.pipe()
        try:
            child = self.template.start(pickle.dumps((run_probe, start)), [write_fd])
        finally:
            os.close(write_fd)
        finished, timed_out = self._read_until(read_fd, child, deadline)
        if len(finished) == len(sequence):
            return finished[-1]
        if len(finished) < len(sequence) - 1:
            return "broken"
        return "timeout" if timed_out else "crashed"

    @staticmethod
    def _read_until(read_fd: int, child: TemplateChild, deadline: float) -> tuple[list[str], bool]:
        data = b""
        timed_out = False
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    faults.signal_group(child.pid, signal.SIGKILL)
                    break
                ready, _, _ = select.select([read_fd], [], [], left)
                if not ready:
                    continue
                chunk = os.read(read_fd, 65536)
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(read_fd)
            child.join()
            child.close()
        return data.decode().split(), timed_out


@dataclass
class ProbeStart:
    """What a probe is given (pickled, through the template)."""

    nodeids: list[str]  # the candidate sequence, the target last
    files: list[str]  # the files of its tests: all the probe collects
    option_dict: dict[str, Any]  # the controller's options
    environment: dict[str, str]  # the one pytest was started with
    workerinput: dict[str, Any]
    basetemp: str
    stack_path: Path
    invocation_dir: str


def run_probe(shared: Shared, start: ProbeStart, fds: list[int], template_pid: int) -> int:
    """A probe's process: configured as the recorded worker, it collects the sequence's files,
    runs the sequence in its order and writes each outcome to ``fds[0]``; its output is
    dropped."""
    (write_fd,) = fds
    config, output = worker_start.fresh_config(
        start.option_dict,
        start.files,
        start.environment,
        start.workerinput,
        start.invocation_dir,
        start.stack_path,
        template_pid,
    )
    worker_start.as_worker(config, start.workerinput, start.basetemp)
    config.pluginmanager.register(ProbeSession(start.nodeids, write_fd), "procpar_probe")
    with output:  # what the probe prints is not what it tells
        config.hook.pytest_cmdline_main(config=config)
    return 0


class ProbeSession:
    """A probe's own session: its items are the sequence, run in that order."""

    def __init__(self, nodeids: list[str], write_fd: int) -> None:
        self.nodeids = nodeids
        self.write_fd = write_fd
        self.made: list[pytest.TestReport] = []

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> Generator[None, None, None]:
        yield
        keep_sequence(config, items, self.nodeids)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.made.append(report)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        items = session.items
        for position, item in enumerate(items):
            following = items[position + 1] if position + 1 < len(items) else None
            self.made.clear()
            item.ihook.pytest_runtest_protocol(item=item, nextitem=following)
            os.write(self.write_fd, f"{outcome_of(self.made)}\n".encode())
        return True


class BisectPlugin:
    """Keeps the target's worker's sequence, then bisects it in place of the run loop."""

    def __init__(self, config: pytest.Config, nodeid: str) -> None:
        self.nodeid = nodeid
        self.record, entry = failing_record(config, nodeid)
        self.seeds = apply_seeds(config, self.record)
        assert entry.worker is not None  # as failing_record found it
        self.worker = entry.worker
        self.recorded_outcome = entry.outcome
        self.sequence = [e.nodeid for e in self.record.sequence(self.worker)]
        self.sequence = self.sequence[: self.sequence.index(nodeid) + 1]
        self.recorded_seconds = {e.nodeid: e.end - e.start for e in self.record.tests}
        self.missing: list[str] = []
        self.own_basetemp: Path | None = None  # made for the probes, removed at the end

    def pytest_procpar_needs_whole_suite(self, config: pytest.Config) -> str:
        return "--procpar-bisect runs recorded sequences"

    def _workerinput(self, config: pytest.Config) -> dict[str, Any]:
        """The recorded worker's identity, for every probe, told to plugins as a worker's
        (``pytest_configure_node``: pytest-randomly puts its seed there)."""
        count = int(self.record.run.get("workers") or len(self.record.workers()))
        workerinput = worker_identity(self.worker, count, new_testrunuid())
        config.hook.pytest_procpar_worker_starting(node=WorkerNode(config, workerinput))
        return workerinput

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self) -> None:
        if self.own_basetemp is not None:
            shutil.rmtree(self.own_basetemp, ignore_errors=True)

    @pytest.hookimpl(wrapper=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> Generator[None, None, None]:
        yield
        self.missing = keep_sequence(config, items, self.sequence)
        if self.nodeid in self.missing:
            raise pytest.UsageError(
                f"--procpar-bisect: {self.nodeid} is not collected (give the paths the "
                "recorded run collected, or none)"
            )

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        if session.config.option.collectonly:
            return False
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")

        def say(line: str) -> None:
            if reporter is not None:
                reporter.ensure_newline()
                reporter.write_line(f"procpar bisect: {line}")
                reporter.flush()

        *before, target = session.items
        seeds = f", with {', '.join(self.seeds)}" if self.seeds else ""
        say(
            f"{self.nodeid} ended {self.recorded_outcome} in run {self.record.name} on "
            f"{self.worker}, after {_tests(len(before))} there{seeds}"
        )
        if self.missing:
            say(f"{len(self.missing)} of them are not collected now, left out")
        basetemp, self.own_basetemp = isolation.controller_basetemp(session.config)
        local = launch.local_start(session.config, "fork", 1)
        if local.template is None:
            raise session.Interrupted(
                "procpar: --procpar-bisect runs its probes in workers forked from a template, "
                f"and none could be made here{local.notice}"
            )
        template = local.template
        workerinput = self._workerinput(session.config)
        probe = Probe(session.config, template, self.recorded_seconds, workerinput, basetemp)
        started = time.monotonic()

        def fails(chosen: list[pytest.Item]) -> bool:
            outcome = probe.outcome([*chosen, target])
            after = f"after {_tests(len(chosen))}" if chosen else "alone"
            if outcome == "broken":
                say(f"  {after}: one of those ended the process before it ran")
                return False
            say(f"  {after}: {outcome}")
            return outcome in NOT_PASSED

        if fails([]):
            say(f"{self.nodeid} fails when it runs alone: no other test is needed")
            session.testsfailed = 1
        elif not before or not fails(before):
            say(
                f"{self.nodeid} passes after the {_tests(len(before))} that ran before it: "
                "the failure does not come back in this order (it may depend on timing, on "
                "other processes, or on tests of other workers)"
            )
        else:
            cause = smallest_cause(before, fails)
            elapsed = time.monotonic() - started
            say(f"found in {probe.count} runs ({elapsed:.1f}s); {self.nodeid} fails after:")
            for item in cause:
                say(f"  {item.nodeid}")
            session.testsfailed = 1
        return True


def _tests(count: int) -> str:
    return f"{count} test{'s' if count != 1 else ''}"
