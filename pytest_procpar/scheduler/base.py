"""The protocol between the controller and a scheduling policy.

The controller owns the workers and the bookkeeping of what each one holds; a policy only
answers "what should this worker run next?". Items are named by their index in the collected
``session.items``, the one thing the controller and every worker agree on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Scheduler(Protocol):
    """A policy handing out item indexes to workers that ask for work."""

    def next_batch(self, worker: str) -> list[int]:
        """Items for ``worker`` to run next, in order; empty when none are left for it."""
        ...

    def requeue(self, indexes: Sequence[int]) -> None:
        """Take back items a lost worker held but never ran; they go out again first."""
        ...

    def has_pending(self) -> bool:
        """Whether any item has not been handed out yet."""
        ...
