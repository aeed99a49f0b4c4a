"""Collecting in workers: every worker runs the tests of the files it collected itself, then
takes work over from the worker with the most left, importing the files that work is in.

An item can only run where its module was imported. Each worker starts with its *home*: the
items of the files it collected, grouped into units as the ``--dist`` policy groups them
(``duration``: tests sharing a module or class fixture, longest first once durations are
known; ``loadfile``: whole files; ``loadscope``: whole classes or modules; ``load`` and
``worksteal``: single tests in collection order). A worker whose home is used up takes units
from the tail of the busiest queue, about half of what is left there, but only where the
tests it takes are expected to run longer than importing their file costs it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence

from pytest_procpar.scheduler.base import CHUNK_FACTOR, WorkItem
from pytest_procpar.scheduler.duration import fixture_units
from pytest_procpar.scheduler.units import group_units

# The policies that keep their meaning when each worker starts on its own files.
SHARE_POLICIES = ("duration", "load", "worksteal", "loadfile", "loadscope")
Unit = tuple[list[int], float, str]  # item indexes, expected seconds, their file
ORPHANED = ""  # the queue of what lost workers left: anyone may take it

GROUPINGS = {
    "loadfile": lambda item: item.file,
    "loadscope": lambda item: item.scope,
}


def home_units(items: Sequence[WorkItem], policy: str, workers: int) -> list[Unit]:
    """``items`` (one worker's home, in collection order) as that worker's queue of units."""
    file_of = {item.index: item.file for item in items}
    if policy == "duration" and any(item.known for item in items):
        failed = {item.index for item in items if item.failed_last}
        grouped = fixture_units(items, workers)
        grouped.sort(key=lambda unit: (not failed.intersection(unit[0]), -unit[1]))
        return [(indexes, seconds, file_of[indexes[0]]) for indexes, seconds in grouped]
    expected = {item.index: item.expected for item in items}
    key = GROUPINGS.get(policy, lambda item: None)
    return [
        (unit, sum(expected[i] for i in unit), file_of[unit[0]]) for unit in group_units(items, key)
    ]


class ShareScheduler:
    """Home queues first, then work taken over from the busiest queue."""

    def __init__(
        self,
        items: Sequence[WorkItem],
        workers: int,
        homes: Mapping[str, set[str]],
        import_seconds: Mapping[str, float],
        policy: str = "duration",
    ) -> None:
        self.imported = {worker: set(files) for worker, files in homes.items()}
        self.import_seconds = import_seconds
        self.file_of = {item.index: item.file for item in items}
        owner = {file: worker for worker, files in homes.items() for file in files}
        mine: dict[str, list[WorkItem]] = {worker: [] for worker in homes}
        orphans: list[WorkItem] = []
        for item in items:
            worker = owner.get(item.file)
            (mine[worker] if worker is not None else orphans).append(item)
        count = max(1, workers)
        self.queues: dict[str, deque[Unit]] = {
            worker: deque(home_units(share, policy, count)) for worker, share in mine.items()
        }
        self.queues[ORPHANED] = deque(home_units(orphans, "load", count))

    def add_worker(self, worker: str) -> None:
        """A replacement starts with no home and nothing imported: it takes work over."""
        self.queues.setdefault(worker, deque())
        self.imported.setdefault(worker, set())

    def next_batch(self, worker: str) -> list[int]:
        own = self.queues.setdefault(worker, deque())
        if not own:
            self._take_over(worker, own)
        budget = sum(seconds for _, seconds, _ in own) / CHUNK_FACTOR
        batch: list[int] = []
        spent = 0.0
        while own and (not batch or spent + own[0][1] <= budget):
            indexes, seconds, _ = own.popleft()
            batch += indexes
            spent += seconds
        return batch

    def _take_over(self, thief: str, own: deque[Unit]) -> None:
        """Move about half of the busiest queue's remaining work (from its tail) to ``own``,
        leaving out files whose import would cost more than their tests run."""
        others = [(self._left(queue), name) for name, queue in self.queues.items() if name != thief]
        left, victim = max(others, default=(0.0, ORPHANED))
        queue = self.queues[victim]
        if not queue:
            return
        taken: list[Unit] = []
        seconds = 0.0
        # Orphans are taken whole; from a worker, the half that it would run last.
        while queue and (victim == ORPHANED or not taken or seconds + queue[-1][1] <= left / 2):
            unit = queue.pop()
            taken.append(unit)
            seconds += unit[1]
        by_file: dict[str, float] = {}
        for _, unit_seconds, file in taken:
            by_file[file] = by_file.get(file, 0.0) + unit_seconds
        have = self.imported.setdefault(thief, set())
        worth = {
            file
            for file, running in by_file.items()
            if file in have or running > self.import_seconds.get(file, 0.0) or victim == ORPHANED
        }
        for unit in reversed(taken):  # back in their queue's order
            (own.append(unit) if unit[2] in worth else queue.append(unit))
        have |= worth

    @staticmethod
    def _left(queue: deque[Unit]) -> float:
        return sum(seconds for _, seconds, _ in queue)

    def remove_worker(self, worker: str, unfinished: Sequence[int]) -> None:
        queue = self.queues.pop(worker, deque())
        self.imported.pop(worker, None)
        orphaned = self.queues[ORPHANED]
        # What it held goes first, then its queue; expected seconds unknown here: one each.
        held = [([index], 1.0, self.file_of[index]) for index in unfinished]
        orphaned.extendleft(reversed(held))
        orphaned.extend(queue)

    def has_pending(self) -> bool:
        return any(self.queues.values())
