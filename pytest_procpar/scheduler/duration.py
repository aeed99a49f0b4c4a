"""``--dist duration`` (the default): the longest work first, using durations of earlier runs.

1. Items sharing a module- or class-scoped fixture form one unit, so the fixture is set up
   once; a unit expected to take more than half a worker's fair share is split, since a
   repeated setup costs less than a worker idling at the end.
2. Units that hold a test that failed last time go first (you learn about them soonest);
   the rest go longest first (LPT), so no long test starts near the end of the run.
3. A worker that asks gets units until the batch holds about ``remaining / (4 x workers)``
   seconds of expected work: big batches early, single units at the end.

Without any stored duration there is nothing to order by, nor any measure of what a shared
fixture costs: the run is then handed out exactly as ``--dist load`` (and xdist's default)
would, in collection order with batches cut anywhere. Grouping by fixture would cut the suite
only at class and module boundaries, which is where tests that rely on the one before them
(a class that switches a mode on for the next) get separated.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from pytest_procpar.scheduler.base import CHUNK_FACTOR, Scheduler, WorkItem
from pytest_procpar.scheduler.load import LoadScheduler
from pytest_procpar.scheduler.units import group_units

Unit = tuple[list[int], float]  # item indexes in collection order, expected seconds


def duration_scheduler(items: Sequence[WorkItem], workers: int) -> Scheduler:
    """Longest first when earlier runs measured something, else what ``load`` does."""
    if not any(item.known for item in items):
        return LoadScheduler(items, workers)
    units = fixture_units(items, max(1, workers))
    failed = {item.index for item in items if item.failed_last}
    # sort is stable: equal units keep collection order
    units.sort(key=lambda unit: (not failed.intersection(unit[0]), -unit[1]))
    return LongestFirstScheduler(units, workers)


def fixture_units(items: Sequence[WorkItem], workers: int) -> list[Unit]:
    """Items sharing a fixture scope, halved until each part is under half a fair share."""
    expected = {item.index: item.expected for item in items}
    limit = sum(expected.values()) / (2 * workers)

    def seconds(unit: list[int]) -> float:
        return sum(expected[i] for i in unit)

    def split(unit: list[int]) -> list[list[int]]:
        if len(unit) < 2 or seconds(unit) <= limit:
            return [unit]
        middle = len(unit) // 2
        return split(unit[:middle]) + split(unit[middle:])

    grouped = group_units(items, lambda item: item.fixture_scope)
    return [(part, seconds(part)) for unit in grouped for part in split(unit)]


class LongestFirstScheduler:
    """One pool of units in the order given; batches of about 1/(4 x workers) of what is left."""

    def __init__(self, units: Sequence[Unit], workers: int) -> None:
        self.workers = max(1, workers)
        self.units: deque[Unit] = deque(units)
        self.remaining = sum(seconds for _, seconds in units)

    def add_worker(self, worker: str) -> None:
        pass

    def next_batch(self, worker: str) -> list[int]:
        budget = self.remaining / (CHUNK_FACTOR * self.workers)
        batch: list[int] = []
        seconds = 0.0
        while self.units and (not batch or seconds + self.units[0][1] <= budget):
            indexes, expected = self.units.popleft()
            batch += indexes
            seconds += expected
        self.remaining -= seconds
        return batch

    def remove_worker(self, worker: str, unfinished: Sequence[int]) -> None:
        if unfinished:
            # Its share of the expected time is unknown here; count it as one average unit.
            share = self.remaining / max(1, len(self.units)) if self.units else 0.0
            self.units.appendleft((list(unfinished), share))
            self.remaining += share

    def has_pending(self) -> bool:
        return bool(self.units)
