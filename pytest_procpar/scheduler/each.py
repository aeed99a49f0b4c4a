"""``--dist each``: every worker runs every test (for example to run a suite against several
environments at once); a replacement worker runs only what the one it replaces left."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from pytest_procpar.scheduler.base import WorkItem, guided_count


class EachScheduler:
    def __init__(self, items: Sequence[WorkItem], workers: int) -> None:
        self.all = [item.index for item in items]
        self.first_generation = max(1, workers)
        self.queues: dict[str, deque[int]] = {}
        self.orphans: list[list[int]] = []

    def add_worker(self, worker: str) -> None:
        if self.first_generation:
            self.first_generation -= 1
            self.queues[worker] = deque(self.all)
        else:
            self.queues[worker] = deque(self.orphans.pop(0) if self.orphans else [])

    def next_batch(self, worker: str) -> list[int]:
        own = self.queues.get(worker, deque())
        return [own.popleft() for _ in range(guided_count(len(own), 1) if own else 0)]

    def remove_worker(self, worker: str, unfinished: Sequence[int]) -> None:
        left = [*unfinished, *self.queues.pop(worker, deque())]
        if left:
            self.orphans.append(left)

    def has_pending(self) -> bool:
        return bool(self.orphans) or any(self.queues.values())
