"""The typed extension points of a parallel run: what a feature plugs into the per-test path
of the controller (the run loop, the dispatcher, the loss accounting) and of each worker's
loop, without the core naming it.

A feature implements ``pytest_procpar_run_planned(plan)`` in the controller and
``pytest_procpar_worker_loop_planned(plan)`` in the workers (``hookspecs.py``): once the items
are known it looks at them and, if it has anything to do, puts its object into the
:class:`RunPlan` or :class:`WorkerPlan`. A feature that puts nothing there costs nothing per
test.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeAlias

import pytest

from pytest_procpar.messages import Event

LostKind: TypeAlias = Literal["crashed", "timeout", "notrun"]  # how a test without a report ended


@dataclass(frozen=True)
class Charge:
    """Why a feature ends a worker: the test it charges, whose report says ``what`` (a time
    limit: ``Timeout after 2s``), lost as ``kind``."""

    index: int
    what: str
    kind: LostKind


class Handle(Protocol):
    """A started worker's process, as an extension acts on it (the launcher's handle)."""

    def running(self) -> tuple[int, float]: ...  # (item index or -1, since when: faults.now())
    def request_stack(self) -> None: ...  # dump the Python stack where its stack path points
    def signal(self, signum: int) -> None: ...  # to the worker and what its tests started


class Busy(Protocol):
    """A live worker, as an extension sees it (the pool's worker)."""

    charged: Charge | None  # set by the feature that ends it for a test

    @property
    def workerid(self) -> str: ...

    @property
    def assigned(self) -> Collection[int]: ...  # its items handed out and not reported yet

    @property
    def handle(self) -> Handle: ...

    @property
    def crash_files(self) -> Path: ...  # its stack dump's path


class Ticker(Protocol):
    """Acts on the live workers whenever the run's loop wakes up (time limits)."""

    def wait_time(self, workers: Sequence[Busy], now: float) -> float | None:
        """How long the loop may block before this ticker has something to do."""
        ...

    def tick(self, workers: Sequence[Busy], now: float) -> None: ...


class AttemptPolicy(Protocol):
    """Decides, before a test's reports are replayed, whether this attempt is its last, and
    serves the attempts it holds back before the scheduler's work (retries)."""

    def has_retry(self, item: pytest.Item) -> bool:
        """Whether a failed attempt of ``item`` is held back: the test runs again."""
        ...

    def retry(
        self, item: pytest.Item, index: int, workerid: str, reports: list[pytest.TestReport]
    ) -> None:
        """Hold back the failed attempt ``reports`` that ``workerid`` made of ``index``."""
        ...

    def final(self, index: int, nodeid: str, passed: bool) -> None:
        """The test's last attempt is being replayed."""
        ...

    def batch_for(self, workerid: str, living: Sequence[Busy]) -> list[int]:
        """Work for ``workerid`` that comes before the scheduler's (may be empty)."""
        ...

    def may_come(self, living: Sequence[Busy]) -> bool:
        """Whether work may still come for a worker that gets none now."""
        ...

    def without_verdict(self) -> list[tuple[int, list[pytest.TestReport]]]:
        """At the end: the tests whose next attempt never ended, with their last reports."""
        ...


@dataclass
class RunPlan:
    """One run's extension points, filled by ``pytest_procpar_run_planned``."""

    config: pytest.Config
    items: Sequence[pytest.Item]
    dist: str  # the run's --dist
    attempts: AttemptPolicy | None = None  # at most one feature decides on attempts
    tickers: list[Ticker] = field(default_factory=list)


class Turns(Protocol):
    """When a worker's queued tests may start (serial and capped tests)."""

    def next_index(self, queue: deque[int]) -> int | None:
        """Take the next test to run from ``queue``, once it may start (None: the run stops
        while it waits)."""
        ...

    def done(self) -> None:
        """The test it gave last is over."""
        ...


class AttemptWatch(Protocol):
    """Before each test: whether its failure may not be final (retries)."""

    def before(self, item: pytest.Item, index: int) -> bool: ...


class Retirement(Protocol):
    """After each test: the limit the worker is over, with what it measured (recycling)."""

    def due(self, tests_run: int) -> tuple[str, str] | None: ...


@dataclass
class WorkerPlan:
    """One worker loop's extension points, filled by ``pytest_procpar_worker_loop_planned``."""

    config: pytest.Config
    workerinput: Mapping[str, Any]
    items: Sequence[pytest.Item] | Mapping[int, pytest.Item]  # by the run's index
    slot: int
    shared: Any  # shared.Shared: what the run's local workers share
    events: Callable[[], list[Event]]  # the events recorded for the running test
    turns: Turns | None = None
    attempts: AttemptWatch | None = None
    retirement: Retirement | None = None
