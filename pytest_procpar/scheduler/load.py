"""Pull scheduling with shrinking chunks: big batches early, single items at the end.

A worker asks for work when its queue runs low. It gets ``pending / (FACTOR * workers)`` items,
so the first batches are large (few round trips for thousands of tiny tests) and the last ones
hold a single item each (no worker sits idle while another still has a queue).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

CHUNK_FACTOR = 4
MAX_CHUNK = 2000


class LoadScheduler:
    """Hands out items in collection order, in chunks that shrink as the run nears its end."""

    def __init__(self, item_count: int, worker_count: int) -> None:
        self.pending: deque[int] = deque(range(item_count))
        self.worker_count = max(1, worker_count)

    def next_batch(self, worker: str) -> list[int]:
        size = math.ceil(len(self.pending) / (CHUNK_FACTOR * self.worker_count))
        size = min(max(1, size), MAX_CHUNK)
        return [self.pending.popleft() for _ in range(min(size, len(self.pending)))]

    def requeue(self, indexes: Sequence[int]) -> None:
        self.pending.extendleft(reversed(indexes))

    def has_pending(self) -> bool:
        return bool(self.pending)
