"""Per-test time limits (``--procpar-timeout``, the ``procpar_timeout`` marker), enforced from
the controller.

Workers write when their current test started into shared memory; the controller compares
that with each test's limit whenever its loop wakes. An overdue test's worker is asked for its
stack (faulthandler writes it to the worker's stack file), then its process group gets
SIGTERM once the stack is written or after :data:`STACK_WAIT_S`, and SIGKILL after
:data:`SHUTDOWN_GRACE_S` more. The worker's exit then reports the test as failed, with that
stack (see :mod:`pytest_procpar.faults`).
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from pytest_procpar import faults
from pytest_procpar.extension import Busy, Charge, RunPlan
from pytest_procpar.workitems import closest_marker

TIMEOUT_MARKER = "procpar_timeout"
STACK_WAIT_S = 1.0  # how long a hung worker gets to write its stack
SHUTDOWN_GRACE_S = 2.0  # from SIGTERM to SIGKILL
DEADLINE_POLL_S = 0.25  # a worker may start a limited test at any time: look again this soon


@dataclass
class Overdue:
    """What the time limits did to one worker."""

    test: tuple[int, float] | None = None  # (item index, limit) once its test was overdue
    term_at: float = 0.0  # when to SIGTERM it, if its stack is not written before
    kill_at: float = 0.0  # when to SIGKILL what is left of it


class TimeLimits:
    """Every item's limit, and the steps taken against workers running past one."""

    def __init__(self, default: float, items: Sequence[pytest.Item]) -> None:
        known: dict[int, pytest.Mark | None] = {}
        self.limits = [self._limit(item, default, known) for item in items]
        self.enabled = any(self.limits)
        self.overdue: dict[str, Overdue] = {}  # by workerid: the steps taken against it

    def _steps(self, worker: Busy) -> Overdue:
        steps = self.overdue.get(worker.workerid)
        if steps is None:
            steps = self.overdue[worker.workerid] = Overdue()
        return steps

    @staticmethod
    def _limit(item: pytest.Item, default: float, known: dict[int, pytest.Mark | None]) -> float:
        """Seconds ``item`` may run, 0 for no limit; a bad marker value is a usage error
        before anything runs."""
        marker = closest_marker(item, (TIMEOUT_MARKER,), known)
        value = marker.args[0] if marker is not None and marker.args else default
        try:
            return float(value)
        except (TypeError, ValueError):
            raise pytest.UsageError(
                f"{item.nodeid}: {TIMEOUT_MARKER} takes seconds, got {value!r}"
            ) from None

    def _passed(self, index: int, started: float, now: float) -> float | None:
        """The limit item ``index``, running since ``started``, has passed, if it has."""
        if index < 0:
            return None
        limit = self.limits[index]
        return limit if limit > 0 and now - started > limit else None

    def wait_time(self, workers: Sequence[Busy], now: float) -> float | None:
        """How long the controller may block before one of the steps is due."""
        steps = [self._steps(worker) for worker in workers]
        waits = [overdue.kill_at - now for overdue in steps if overdue.kill_at]
        if any(overdue.term_at for overdue in steps):
            waits.append(faults.STACK_POLL_S)
        if self.enabled:
            overdue_in = [
                started + self.limits[index] - now
                for index, started in (worker.handle.running() for worker in workers)
                if index >= 0 and self.limits[index] > 0
            ]
            waits.append(max(0.0, min(overdue_in)) + 0.01 if overdue_in else DEADLINE_POLL_S)
        return max(0.0, min(waits)) if waits else None

    def tick(self, workers: Sequence[Busy], now: float) -> None:
        """Take the steps that are due: ask for a stack, TERM, KILL."""
        for worker in workers:
            overdue, handle = self._steps(worker), worker.handle
            written = overdue.term_at and faults.stack_size(worker.crash_files)
            if overdue.term_at and (now >= overdue.term_at or written):
                overdue.term_at = 0.0
                handle.signal(signal.SIGTERM)
                overdue.kill_at = now + SHUTDOWN_GRACE_S
            elif overdue.kill_at and now >= overdue.kill_at:
                handle.signal(signal.SIGKILL)
            if not self.enabled or overdue.test is not None:
                continue
            index, started = handle.running()
            limit = self._passed(index, started, now)
            if limit is not None:
                overdue.test = (index, limit)
                worker.charged = Charge(index, f"Timeout after {limit:g}s", "timeout")
                handle.request_stack()  # faulthandler: dump the hung stack
                overdue.term_at = now + STACK_WAIT_S


class TimeLimitsPolicy:
    """Registered in every parallel run's controller (``features.py``): once the items are
    known, their limits (a bad marker value is a usage error then); a run where no test has
    one has no ticker."""

    def __init__(self, default: float) -> None:
        self.default = default

    def pytest_procpar_run_planned(self, plan: RunPlan) -> None:
        limits = TimeLimits(self.default, plan.items)
        if limits.enabled:
            plan.tickers.append(limits)
