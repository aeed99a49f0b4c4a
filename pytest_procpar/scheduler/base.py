"""The protocol between the controller and a scheduling policy, and what a policy knows.

The controller owns the workers and the bookkeeping of what each one holds; a policy only
answers "what should this worker run next?". It sees the run as :class:`WorkItem` records,
never pytest items, so a policy can be tested on made-up suites. Items are named by their index
in the collected ``session.items``, the one thing the controller and every worker agree on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

# Batches hold about 1/CHUNK_FACTOR of a worker's fair share of what is left, so they start
# large (few round trips) and shrink to single items at the end (no idle tail).
CHUNK_FACTOR = 4
MAX_CHUNK = 2000


@dataclass(frozen=True)
class WorkItem:
    """What a policy may know about one collected item."""

    index: int
    nodeid: str
    file: str  # the nodeid up to the first "::": the test module (or other file)
    scope: str  # the nodeid up to the last "::": the module or class holding the test
    fixture_scope: str | None  # the module/class whose scoped fixtures the item shares, if any
    group: str | None  # the name given by an xdist_group / procpar_group marker
    expected: float  # seconds, from the durations of earlier runs (the median when unknown)
    known: bool  # whether ``expected`` was measured for this very test
    failed_last: bool  # whether it failed in the previous run


class Scheduler(Protocol):
    """A policy handing out item indexes to workers that ask for work."""

    def add_worker(self, worker: str) -> None:
        """A worker started (also a replacement for one that died)."""
        ...

    def next_batch(self, worker: str) -> list[int]:
        """Items for ``worker`` to run next, in order; empty when none are left for it."""
        ...

    def remove_worker(self, worker: str, unfinished: Sequence[int]) -> None:
        """A worker is gone; ``unfinished`` were handed to it but never run."""
        ...

    def has_pending(self) -> bool:
        """Whether some item still has to be handed out to some worker."""
        ...


def guided_count(pending: int, workers: int) -> int:
    """How many of ``pending`` equal-cost items one batch should hold."""
    size = math.ceil(pending / (CHUNK_FACTOR * max(1, workers)))
    return min(max(1, size), MAX_CHUNK, pending)
