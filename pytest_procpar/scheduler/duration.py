"""``--dist duration`` (the default): the longest work first, using durations of earlier runs.

1. Items sharing a module- or class-scoped fixture form one unit, so the fixture is set up
   once; a unit expected to take more than half a worker's fair share is split, since a
   repeated setup costs less than a worker idling at the end.
2. Units that hold a test that failed last time go first (you learn about them soonest);
   the rest go longest first (LPT), so no long test starts near the end of the run.
3. A worker that asks gets units until the batch holds about ``remaining / (4 x workers)``
   seconds of expected work: big batches early, single units at the end.

Without history every test is expected to take the same time, and units keep collection
order (a bigger unit is not known to take longer): what ``load`` would do, plus fixture
grouping. Suites whose tests depend on the order they run in are safest then.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from pytest_procpar.scheduler.base import CHUNK_FACTOR, WorkItem
from pytest_procpar.scheduler.units import group_units

Unit = tuple[list[int], float]  # item indexes in collection order, expected seconds


class DurationScheduler:
    def __init__(self, items: Sequence[WorkItem], workers: int) -> None:
        self.workers = max(1, workers)
        by_index = {item.index: item for item in items}
        units = group_units(items, lambda item: item.fixture_scope)
        total = sum(item.expected for item in items)
        limit = total / (2 * self.workers)
        split: list[list[int]] = []
        for unit in units:
            split += self._split(unit, by_index, limit)
        weighted = [(unit, sum(by_index[i].expected for i in unit)) for unit in split]
        # Without any stored duration the sizes of units say nothing about their time (every
        # test is expected to take the median): they keep collection order, as ``load`` would.
        measured = any(item.known for item in items)
        weighted.sort(
            key=lambda entry: (
                not any(by_index[i].failed_last for i in entry[0]),
                -entry[1] if measured else 0.0,
            )
        )  # sort is stable: equal units keep collection order
        self.units: deque[Unit] = deque(weighted)
        self.remaining = total

    @staticmethod
    def _split(unit: list[int], by_index: dict[int, WorkItem], limit: float) -> list[list[int]]:
        """Halve a unit until each part is under ``limit`` seconds (or a single item)."""
        if len(unit) < 2 or sum(by_index[i].expected for i in unit) <= limit:
            return [unit]
        middle = len(unit) // 2
        return DurationScheduler._split(unit[:middle], by_index, limit) + DurationScheduler._split(
            unit[middle:], by_index, limit
        )

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
