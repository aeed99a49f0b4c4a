"""Retries: a failed or crashed test runs again, on another worker when there is one, and a
test that passes on a retry is FLAKY.

The controller decides, from each attempt's events before it replays them: the reports of a
failed attempt that has retries left are kept aside (for the "flaky tests" section and the
JUnit file), the attempt's other events (warnings, log records) are replayed, and the test
goes to a queue the run serves before its scheduler, to a worker other than the one it
failed on. Only the last attempt is replayed as the test's reports, so ``-x``, ``--maxfail``,
``--lf``, the durations store and every reporting plugin see the final verdict; workers do
not count failures themselves while retries are on (an attempt does not know it is final).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_procpar import pytest_internals, workitems
from pytest_procpar.extension import Busy, RunPlan, WorkerPlan
from pytest_procpar.node import WorkerNode

FLAKY_MARKER = "procpar_flaky"
# What pytest's short test summary lists for each -r character (a header only when it does)
SUMMARISED = dict(f="failed", E="error", s="skipped", x="xfailed", X="xpassed", p="passed")
WORKERINPUT_KEY = "procpar_retries"  # in workerinput: retries are on, failures are not final


def allowed(item: pytest.Item, default: int) -> int:
    """How many times ``item`` may run again after failing."""
    marker = item.get_closest_marker(FLAKY_MARKER)
    if marker is None:
        return default
    retries = marker.kwargs.get("retries", marker.args[0] if marker.args else max(default, 1))
    return max(0, int(retries))


@dataclass
class Attempt:
    """One earlier attempt of a test: where it ran and what it reported."""

    workerid: str
    reports: list[pytest.TestReport]


@dataclass
class Retries:
    """Which tests run again, and the attempts kept aside."""

    default: int
    flaky_fails: bool = False  # --procpar-flaky-fail: a flaky test fails the run
    earlier: dict[str, list[Attempt]] = field(default_factory=dict)  # by nodeid
    queue: deque[tuple[int, str]] = field(default_factory=deque)  # (index, avoid workerid)
    flaky: list[str] = field(default_factory=list)  # nodeids, in the order they passed
    running_again: dict[int, str] = field(default_factory=dict)  # queued or running: nodeid

    def has_retry(self, item: pytest.Item) -> bool:
        return len(self.earlier.get(item.nodeid, ())) < allowed(item, self.default)

    def retry(
        self, item: pytest.Item, index: int, workerid: str, reports: list[pytest.TestReport]
    ) -> None:
        """Keep a failed attempt aside and queue the test again (it has a retry left)."""
        self.earlier.setdefault(item.nodeid, []).append(Attempt(workerid, reports))
        self.queue.append((index, workerid))
        self.running_again[index] = item.nodeid

    def batch_for(self, workerid: str, living: Sequence[Busy]) -> list[int]:
        """A test to run again for ``workerid``: one that did not fail there, unless it is the
        only worker left."""
        alone = len(living) <= 1
        for position, (index, avoid) in enumerate(self.queue):
            if avoid != workerid or alone:
                del self.queue[position]
                return [index]
        return []

    def may_come(self, living: Sequence[Busy]) -> bool:
        """Whether a test may still fail and need a worker to run it again: one is queued,
        or a worker holds tests not reported yet."""
        return bool(self.queue) or any(worker.assigned for worker in living)

    def without_verdict(self) -> list[tuple[int, list[pytest.TestReport]]]:
        """The tests whose next attempt never ended (the run stopped first), with their last
        attempt's reports: their verdict after all."""
        found = [
            (index, self.earlier[nodeid][-1].reports)
            for index, nodeid in self.running_again.items()
        ]
        self.running_again.clear()
        self.queue.clear()
        return found

    def final(self, index: int, nodeid: str, passed: bool) -> None:
        """The test's last attempt is being replayed."""
        self.running_again.pop(index, None)
        if passed and self.earlier.get(nodeid):
            self.flaky.append(nodeid)


class RetriesPolicy:
    """Registered in every parallel run's controller (``features.py``): tells each worker
    whether its failures are final, and decides on attempts once a test may run again
    (``--procpar-retries``, or a ``procpar_flaky`` test; not with ``--dist each``, which runs
    every test everywhere anyway)."""

    def __init__(self, default: int, flaky_fails: bool) -> None:
        self.default = default
        self.flaky_fails = flaky_fails
        self.marked: bool | None = None  # whether a test has procpar_flaky (None: not known)

    def pytest_procpar_worker_starting(self, node: WorkerNode) -> None:
        # the marker is looked up once the items are known: while workers collect, a test
        # may carry it
        node.workerinput[WORKERINPUT_KEY] = (self.default, self.marked is not False)

    def pytest_procpar_run_planned(self, plan: RunPlan) -> None:
        known: dict[int, pytest.Mark | None] = {}
        self.marked = any(
            workitems.closest_marker(item, (FLAKY_MARKER,), known) for item in plan.items
        )
        if plan.dist == "each" or not (self.default or self.marked):
            return
        retries = Retries(self.default, self.flaky_fails)
        plan.attempts = retries
        plan.config.pluginmanager.register(RetriesPlugin(plan.config, retries), "procpar_retries")


class RetriesPlugin:
    """Registered in the controller: what a flaky test looks like to the user."""

    def __init__(self, config: pytest.Config, retries: Retries) -> None:
        self.config = config
        self.retries = retries

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(
        self, report: pytest.TestReport
    ) -> tuple[str, str, tuple[str, dict[str, bool]]] | None:
        if report.when == "call" and report.passed and report.nodeid in self.retries.flaky:
            return "flaky", "f", ("FLAKY", {"yellow": True})
        return None

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """JUnit XML in Maven Surefire's shape: a flaky test's earlier failures as
        ``flakyFailure`` (``flakyError`` outside the call), a failing one's as
        ``rerunFailure``."""
        attempts = self.retries.earlier.get(report.nodeid)
        xml: Any = self.config.stash.get(pytest_internals.xml_key, None)
        if not attempts or xml is None or not _closes_testcase(report):
            return
        prefix = "flaky" if report.passed else "rerun"
        reporter = xml.node_reporter(report)
        for attempt in attempts:
            for failed in (r for r in attempt.reports if r.failed):
                kind = "Failure" if failed.when == "call" else "Error"
                element = ET.Element(f"{prefix}{kind}", message=_message(failed))
                element.text = str(failed.longrepr)
                reporter.append(element)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        """The earlier attempts of each flaky test, as the failures section shows failures."""
        if not self.retries.flaky:
            return
        terminalreporter.write_sep("=", "flaky tests")
        writer = pytest_internals.terminal_writer(terminalreporter)
        for nodeid in self.retries.flaky:
            attempts = self.retries.earlier[nodeid]
            for number, attempt in enumerate(attempts, 1):
                terminalreporter.write_sep(
                    "_", f"{nodeid} (attempt {number} of {len(attempts) + 1}, {attempt.workerid})"
                )
                for failed in (r for r in attempt.reports if r.failed):
                    if writer is not None:
                        failed.toterminal(writer)
                    else:
                        terminalreporter.write_line(str(failed.longrepr))

    # around the terminal reporter's, which prints the short test summary last
    @pytest.hookimpl(wrapper=True, tryfirst=True, specname="pytest_terminal_summary")
    def pytest_terminal_summary_flaky_lines(  # (pytest reads hooks from pytest_* names only)
        self, terminalreporter: pytest.TerminalReporter
    ) -> Generator[None, object, object]:
        """``FLAKY <nodeid>`` lines at the end of the short test summary (``-r``)."""
        result = yield
        reporter = terminalreporter
        if self.retries.flaky and reporter.reportchars:
            chars = [char for char in reporter.reportchars if char in SUMMARISED]
            if not any(reporter.stats.get(SUMMARISED[char]) for char in chars):
                reporter.write_sep("=", "short test summary info", cyan=True, bold=True)
            for nodeid in self.retries.flaky:
                passed_on = len(self.retries.earlier[nodeid]) + 1
                reporter.write_line(f"FLAKY {nodeid} - passed on attempt {passed_on}")
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Generator[None, object, object]:
        if self.retries.flaky_fails and self.retries.flaky and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        return (yield)


def _closes_testcase(report: pytest.TestReport) -> bool:
    return report.when == "call" or (report.when == "setup" and report.failed)


def _message(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    return str(crash.message if crash is not None else report.longrepr).splitlines()[0][:200]


class WorkerRetries:
    """A worker's side: which items may run again (their failures are not final, so neither
    ``-x`` nor ``--maxfail`` counts them here), and fresh fixtures for an item run again."""

    def __init__(self, workerinput: dict[str, Any]) -> None:
        self.default, self.marked = workerinput.get(WORKERINPUT_KEY, (0, False))
        self.ran: set[int] = set()
        self.known: dict[int, pytest.Mark | None] = {}  # closest_marker's memo, by parent

    def before(self, item: pytest.Item, index: int) -> bool:
        """``item`` is about to run: whether it may run again after this."""
        if index in self.ran:
            pytest_internals.reset_for_rerun(item)
        self.ran.add(index)
        retryable = bool(self.default) or (
            self.marked and workitems.closest_marker(item, (FLAKY_MARKER,), self.known) is not None
        )
        if retryable and item.config.option.maxfail:
            item.config.option.maxfail = 0  # the controller's session counts final failures
        return retryable


def pytest_procpar_worker_loop_planned(plan: WorkerPlan) -> None:
    """Worker: with retries on, each test's failure is the controller's to call final (this
    module is a plugin of every worker, see ``features.py``)."""
    retries = WorkerRetries(dict(plan.workerinput))
    if retries.default or retries.marked:
        plan.attempts = retries
