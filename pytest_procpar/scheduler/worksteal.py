"""``--dist worksteal``: every worker starts with an even, contiguous share of the suite;
a worker whose share is used up takes half of what the busiest other worker still has."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from pytest_procpar.scheduler.base import WorkItem, guided_count


class WorkStealScheduler:
    def __init__(self, items: Sequence[WorkItem], workers: int) -> None:
        self.workers = max(1, workers)
        self.unassigned: deque[int] = deque(item.index for item in items)
        self.queues: dict[str, deque[int]] = {}
        self.shares_left = self.workers

    def add_worker(self, worker: str) -> None:
        """A first-generation worker takes its share; a replacement starts empty and steals."""
        share = len(self.unassigned) // self.shares_left if self.shares_left else 0
        if self.shares_left == 1:
            share = len(self.unassigned)
        self.shares_left = max(0, self.shares_left - 1)
        self.queues[worker] = deque(self.unassigned.popleft() for _ in range(share))

    def next_batch(self, worker: str) -> list[int]:
        own = self.queues.setdefault(worker, deque())
        if not own:
            self._steal_for(own)
        count = guided_count(len(own), 1) if own else 0
        return [own.popleft() for _ in range(count)]

    def _steal_for(self, own: deque[int]) -> None:
        if self.unassigned:
            own.extend(self.unassigned)
            self.unassigned.clear()
            return
        victim = max(self.queues.values(), key=len, default=deque())
        for _ in range((len(victim) + 1) // 2):
            own.appendleft(victim.pop())

    def remove_worker(self, worker: str, unfinished: Sequence[int]) -> None:
        left = self.queues.pop(worker, deque())
        self.unassigned.extendleft(reversed([*unfinished, *left]))

    def has_pending(self) -> bool:
        return bool(self.unassigned) or any(self.queues.values())
