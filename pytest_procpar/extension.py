"""The typed extension points of a parallel run: what a feature plugs into the run loop, the
dispatcher and the loss accounting on the per-test path, without the core naming it.

A feature implements ``pytest_procpar_run_planned(plan)`` (``hookspecs.py``): once the run's
items are known it looks at them and, if it has anything to do in this run, puts its object
into the :class:`RunPlan`. A feature that puts nothing there costs the run nothing per test.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

import pytest


class Busy(Protocol):
    """A live worker, as an extension sees it (the pool's worker)."""

    @property
    def workerid(self) -> str: ...

    @property
    def assigned(self) -> Collection[int]: ...  # its items handed out and not reported yet


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
