"""Policies that keep groups of items ("units") together on one worker.

A unit goes to one worker whole, so what its items share (a module or class fixture, a
resource named by a group marker) is set up once. Subclasses only say which unit an item
belongs to; items without one are units of their own.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from pytest_procpar.scheduler.base import WorkItem, guided_count


def group_units(
    items: Sequence[WorkItem], key: Callable[[WorkItem], str | None]
) -> list[list[int]]:
    """Items grouped by ``key(item)`` (None: alone), units in order of their first item."""
    units: dict[object, list[int]] = {}
    for item in items:
        name = key(item)
        units.setdefault(item.index if name is None else ("unit", name), []).append(item.index)
    return list(units.values())


class UnitScheduler:
    """Hands out whole units, as many as make a batch of about the guided size."""

    def __init__(self, items: Sequence[WorkItem], workers: int) -> None:
        self.units: deque[list[int]] = deque(group_units(items, self.unit_of))
        self.pending_items = sum(len(unit) for unit in self.units)
        self.workers = max(1, workers)

    @staticmethod
    def unit_of(item: WorkItem) -> str | None:
        raise NotImplementedError

    def add_worker(self, worker: str) -> None:
        pass

    def next_batch(self, worker: str) -> list[int]:
        target = guided_count(self.pending_items, self.workers) if self.pending_items else 0
        batch: list[int] = []
        while self.units and (not batch or len(batch) + len(self.units[0]) <= target):
            batch += self.units.popleft()
        self.pending_items -= len(batch)
        return batch

    def remove_worker(self, worker: str, unfinished: Sequence[int]) -> None:
        if unfinished:  # what is left of its units stays together
            self.units.appendleft(list(unfinished))
            self.pending_items += len(unfinished)

    def has_pending(self) -> bool:
        return bool(self.units)
