"""``--dist load``: items in collection order, pulled in batches that shrink towards the end."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from pytest_procpar.scheduler.base import WorkItem, guided_count


class LoadScheduler:
    """Whoever asks gets the next ``pending / (4 x workers)`` items in collection order."""

    def __init__(self, items: Sequence[WorkItem], workers: int) -> None:
        self.pending: deque[int] = deque(item.index for item in items)
        self.workers = max(1, workers)

    def add_worker(self, worker: str) -> None:
        pass

    def next_batch(self, worker: str) -> list[int]:
        return [
            self.pending.popleft() for _ in range(guided_count(len(self.pending), self.workers))
        ]

    def remove_worker(self, worker: str, unfinished: Sequence[int]) -> None:
        self.pending.extendleft(reversed(unfinished))

    def has_pending(self) -> bool:
        return bool(self.pending)
