"""Collecting in workers: every worker runs the tests of the files it collected itself, then
takes work over from the worker with the most left, importing the files that work is in.

An item can only run where its module was imported. Each worker starts with its *home*: the
items of the files it collected, in collection order, grouped into units as the ``--dist``
policy groups them (``duration``: tests sharing a module or class fixture; ``loadfile``:
whole files; ``loadscope``: whole classes or modules; ``load`` and ``worksteal``: single
tests). A worker whose home is used up takes over about half of what is left in the busiest
queue, from that queue's tail: files it has imported already first, then the files whose tests
are expected to run longest for what importing them costs, and only files whose tests are
expected to run longer than that; when the worker must import, a new one takes the work over
(see :class:`~pytest_procpar.collect_run.CollectingRun`), so what it takes must also pay for
starting it. Taking from the tail is what balances the end of the run,
so a worker's own tests keep their serial order (tests that rely on the one before them are
common, and ordering by duration would expose them). Tests without a stored duration are
expected to take what this run's tests took on average.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pytest_procpar.scheduler.base import CHUNK_FACTOR, WorkItem
from pytest_procpar.scheduler.duration import fixture_units
from pytest_procpar.scheduler.units import group_units

# The policies that keep their meaning when each worker starts on its own files.
SHARE_POLICIES = ("duration", "load", "worksteal", "loadfile", "loadscope")
ORPHANED = ""  # the queue of what lost workers left: anyone may take it
# What a test without a stored duration is expected to take before this run measured any:
# typical of unit tests, so that importing a big file for a few unknown tests does not pay.
FIRST_GUESS_S = 0.005

GROUPINGS = {
    "loadfile": lambda item: item.file,
    "loadscope": lambda item: item.scope,
}


@dataclass
class Unit:
    """Items handed out together (in collection order), all from one file."""

    indexes: list[int]
    file: str
    known_seconds: float  # the stored durations of those that have one
    unknown: int  # how many have none


@dataclass
class Queue:
    """A worker's units in the order it runs them."""

    units: deque[Unit] = field(default_factory=deque)
    known_seconds: float = 0.0
    unknown: int = 0

    def push(self, unit: Unit, front: bool = False) -> None:
        (self.units.appendleft if front else self.units.append)(unit)
        self.known_seconds += unit.known_seconds
        self.unknown += unit.unknown

    def pop(self, front: bool = True) -> Unit:
        unit = self.units.popleft() if front else self.units.pop()
        self.known_seconds -= unit.known_seconds
        self.unknown -= unit.unknown
        return unit


def home_units(items: Sequence[WorkItem], policy: str, workers: int) -> list[Unit]:
    """``items`` (one worker's home, in collection order) as that worker's queue of units."""
    by_index = {item.index: item for item in items}

    def unit(indexes: list[int]) -> Unit:
        known = [by_index[i].expected for i in indexes if by_index[i].known]
        return Unit(indexes, by_index[indexes[0]].file, sum(known), len(indexes) - len(known))

    if policy == "duration" and any(item.known for item in items):
        # In collection order: stealing from the tail balances the end of the run, and a
        # worker's tests keep the order a serial run gives them (tests that rely on the
        # test before them are common; reordering by duration exposes them).
        return [unit(indexes) for indexes, _ in fixture_units(items, workers)]
    key = GROUPINGS.get(policy, lambda item: None)
    return [unit(indexes) for indexes in group_units(items, key)]


class ShareScheduler:
    """Home queues first, then work taken over from the busiest queue."""

    def __init__(
        self,
        items: Sequence[WorkItem],
        workers: int,
        homes: Mapping[str, set[str]],
        import_seconds: Mapping[str, float],
        policy: str = "duration",
        measured: Mapping[str, float] | None = None,
        start_seconds: float = 0.0,
    ) -> None:
        self.imported = {worker: set(files) for worker, files in homes.items()}
        self.import_seconds = import_seconds
        self.start_seconds = start_seconds  # what starting a new worker takes
        self.measured = measured if measured is not None else {}  # this run's, as it goes
        self._guess_s = FIRST_GUESS_S
        self._guessed_from = 0
        # Why a worker got nothing last time it asked: (victim, guess). Asked again with both
        # the same, the answer is the same (queues only shrink): no need to work it out again.
        self._refused: dict[str, tuple[str, float]] = {}
        self.file_of = {item.index: item.file for item in items}
        owner = {file: worker for worker, files in homes.items() for file in files}
        mine: dict[str, list[WorkItem]] = {worker: [] for worker in homes}
        orphans: list[WorkItem] = []
        for item in items:
            worker = owner.get(item.file)
            (mine[worker] if worker is not None else orphans).append(item)
        count = max(1, workers)
        self.queues: dict[str, Queue] = {}
        for worker, share in [*mine.items(), (ORPHANED, orphans)]:
            queue = self.queues[worker] = Queue()
            for unit in home_units(share, policy if worker != ORPHANED else "load", count):
                queue.push(unit)

    def _guess(self) -> float:
        """Expected seconds of a test without a stored duration: the mean of what this run
        measured, worked out again each time the measurements have doubled."""
        count = len(self.measured)
        if count >= 2 * self._guessed_from and count:
            self._guess_s = statistics.fmean(self.measured.values())
            self._guessed_from = count
        return self._guess_s

    def _seconds(self, known: float, unknown: int, guess: float) -> float:
        return known + unknown * guess

    def add_worker(self, worker: str) -> None:
        """A replacement starts with no home and nothing imported: it takes work over."""
        self.queues.setdefault(worker, Queue())
        self.imported.setdefault(worker, set())

    def next_batch(self, worker: str) -> list[int]:
        own = self.queues.setdefault(worker, Queue())
        guess = self._guess()
        if not own.units:
            self._take_over(worker, own, guess)
        budget = self._seconds(own.known_seconds, own.unknown, guess) / CHUNK_FACTOR
        batch: list[int] = []
        spent = 0.0
        while own.units:
            first = own.units[0]
            seconds = self._seconds(first.known_seconds, first.unknown, guess)
            if batch and spent + seconds > budget:
                break
            batch += own.pop().indexes
            spent += seconds
        return batch

    def _take_over(self, thief: str, own: Queue, guess: float) -> None:
        """Move about half of the busiest queue's expected work to ``own``, file by file from
        its tail, where running the tests is expected to take longer than importing their
        file (orphaned work is taken whole: nobody else holds it)."""

        def left(queue: Queue) -> float:
            return self._seconds(queue.known_seconds, queue.unknown, guess)

        others = [(left(queue), name) for name, queue in self.queues.items() if name != thief]
        if self.queues[ORPHANED].units:
            victim = ORPHANED
        else:
            victim = max(others, default=(0.0, ORPHANED))[1]
        queue = self.queues[victim]
        if not queue.units or self._refused.get(thief) == (victim, guess):
            return
        have = self.imported.setdefault(thief, set())
        by_file: dict[str, float] = {}
        for unit in queue.units:
            seconds = self._seconds(unit.known_seconds, unit.unknown, guess)
            by_file[unit.file] = by_file.get(unit.file, 0.0) + seconds

        def gain(file: str) -> float:
            return by_file[file] - (0.0 if file in have else self.import_seconds.get(file, 0.0))

        wanted = left(queue) / 2 if victim != ORPHANED else float("inf")
        worth = {file for file in by_file if victim == ORPHANED or gain(file) > 0}
        taken: dict[str, list[Unit]] = {}
        taking = 0.0
        kept: list[Unit] = []
        # From the tail, units of files worth taking, until about half is taken (a file
        # already imported here costs nothing, so a part of it is as good as all of it).
        for unit in reversed(queue.units):
            if unit.file in worth and taking < wanted:
                taken.setdefault(unit.file, []).append(unit)
                taking += self._seconds(unit.known_seconds, unit.unknown, guess)
            else:
                kept.append(unit)
        for file, units in list(taken.items()):
            part = sum(self._seconds(u.known_seconds, u.unknown, guess) for u in units)
            if (
                victim != ORPHANED
                and file not in have
                and part <= self.import_seconds.get(file, 0.0)
            ):
                kept += taken.pop(file)  # only a sliver of it fitted: not worth the import
        new_files = [file for file in taken if file not in have]
        if victim != ORPHANED and have and new_files:
            # A worker that ran its own tests imports no more files: a new worker takes the
            # work over, which must start and import all of it before its first test.
            cost = self.start_seconds + sum(self.import_seconds.get(f, 0.0) for f in taken)
            units = [unit for file_units in taken.values() for unit in file_units]
            if sum(self._seconds(u.known_seconds, u.unknown, guess) for u in units) <= cost:
                for file in new_files:
                    kept += taken.pop(file)
        back = {id(unit) for unit in kept}
        remaining = Queue()
        for unit in queue.units:
            (remaining if id(unit) in back else own).push(unit)
        self.queues[victim] = remaining
        have |= set(taken)
        if not own.units:
            self._refused[thief] = (victim, guess)

    def remove_worker(self, worker: str, unfinished: Sequence[int]) -> None:
        queue = self.queues.pop(worker, Queue())
        self.imported.pop(worker, None)
        orphaned = self.queues[ORPHANED]
        # What it held goes first (its durations are not known here), then its queue.
        for index in reversed(unfinished):
            orphaned.push(Unit([index], self.file_of[index], 0.0, 1), front=True)
        while queue.units:
            orphaned.push(queue.pop())

    def has_pending(self) -> bool:
        return any(queue.units for queue in self.queues.values())
