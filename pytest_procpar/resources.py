"""Tests that must not run beside others: ``procpar_serial`` runs while no other test runs, and
``procpar_resource(name)`` while fewer than the resource's limit of tests hold it.

Where a test runs is the scheduler's business; when it may start is decided here, between the
workers, at the moment each test starts: a batch handed out a while ago cannot know what will
be running then. The workers of a run share one :class:`Gate` (multiprocessing shared memory
and a condition variable, made by the launcher before any worker starts). A worker asks it
before each test and tells it after; a worker whose next test cannot start yet starts another
of its queue that can, and waits only when none can. A serial test waiting keeps every other
worker from starting one, so it cannot starve.

The gate only acts once a collected test carries one of the markers (:attr:`Gate.active`):
other runs pay nothing but one shared read per test.
"""

from __future__ import annotations

import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from pytest_procpar import workitems
from pytest_procpar.extension import WorkerPlan

SERIAL_MARKER = "procpar_serial"
RESOURCE_MARKER = "procpar_resource"
SLOTS_KEY = pytest.StashKey[dict[str, int]]()  # on a running item: the slot of each resource
UNDECLARED_LOCKS = 64  # names not in procpar_resources: a limit of 1, by hash (may share)
WAIT_S = 0.1  # a waiting worker looks at the run's stop flag this often


def parse_limits(text: str) -> dict[str, int]:
    """``procpar_resources`` value: ``name:limit`` pairs, by spaces or commas (``db:2 gpu:1``)."""
    limits: dict[str, int] = {}
    for entry in text.replace(",", " ").split():
        name, _, limit = entry.partition(":")
        if not name or not limit.isdigit() or int(limit) < 1:
            raise pytest.UsageError(
                f"ini option procpar_resources: expected name:limit pairs such as db:2, "
                f"got {entry!r}"
            )
        limits[name] = int(limit)
    return limits


@dataclass(frozen=True)
class Needs:
    """What a test must hold while it runs."""

    serial: bool
    resources: tuple[str, ...]  # in the order its markers name them


def needs_of(item: pytest.Item) -> Needs | None:
    """What ``item``'s markers ask for, or None when it runs like any test."""
    serial = item.get_closest_marker(SERIAL_MARKER) is not None
    names = dict.fromkeys(
        str(name) for mark in item.iter_markers(RESOURCE_MARKER) for name in mark.args
    )
    return Needs(serial, tuple(names)) if serial or names else None


def any_gated(items: Iterable[pytest.Item]) -> bool:
    """Whether a test carries one of the markers (looked up once per parent: every run asks)."""
    known: dict[int, pytest.Mark | None] = {}
    names = (SERIAL_MARKER, RESOURCE_MARKER)
    return any(workitems.closest_marker(item, names, known) for item in items)


class Gate:
    """Who runs a test now and who holds which slot of which resource, shared by a run's local
    workers. Every field is read and written under :attr:`condition`."""

    def __init__(self, context: Any, slots: int, limits: Mapping[str, int]) -> None:
        self.condition = context.Condition()
        self.active = context.RawValue("b", 0)  # set by the controller once a test needs it
        self.in_test = context.RawArray("b", slots)  # 1 while that worker slot runs a test
        self.serial = context.RawValue("i", -1)  # the slot running a serial test, or -1
        self.serial_waiting = context.RawArray("b", slots)
        self.holders = {name: context.RawArray("i", [-1] * limit) for name, limit in limits.items()}
        self.undeclared = context.RawArray("i", [-1] * UNDECLARED_LOCKS)
        self.waited = context.RawArray("d", slots)  # seconds each slot waited to start a test

    def enter(
        self,
        slot: int,
        candidates: Callable[[], Iterable[Needs | None]],
        stop: Callable[[], bool],
    ) -> tuple[int, dict[str, int]] | None:
        """Start one of ``candidates()`` (a worker's queue, in order) on ``slot``: its position
        and the resource slots it now holds. Waits while none can start; None if ``stop()``
        becomes true meanwhile."""
        started = time.perf_counter()
        with self.condition:
            while True:
                for position, needs in enumerate(candidates()):
                    held = self._take(slot, needs)
                    if held is not None:
                        self.in_test[slot] = 1
                        self.waited[slot] += time.perf_counter() - started
                        return position, held
                if stop():
                    self.serial_waiting[slot] = 0
                    self.condition.notify_all()
                    return None
                self.condition.wait(WAIT_S)

    def leave(self, slot: int, wait: float | None = None) -> None:
        """``slot``'s test is over (or its worker is gone: the controller waits at most
        ``wait`` seconds for the lock a worker killed inside it would never give back): what
        it held is free."""
        if not self.condition.acquire(True, wait):
            return
        try:
            self._free(slot)
        finally:
            self.condition.release()

    def _free(self, slot: int) -> None:
        self.in_test[slot] = 0
        self.serial_waiting[slot] = 0
        if self.serial.value == slot:
            self.serial.value = -1
        for holders in (*self.holders.values(), self.undeclared):
            for position, holder in enumerate(holders):
                if holder == slot:
                    holders[position] = -1
        self.condition.notify_all()

    def _take(self, slot: int, needs: Needs | None) -> dict[str, int] | None:
        """What a test with ``needs`` holds if it can start now (and it takes it), or None."""
        if self.serial.value != -1:
            return None  # a serial test runs: nothing else starts
        serial = needs is not None and needs.serial
        waiting = [other for other, flag in enumerate(self.serial_waiting) if flag]
        if waiting and not (serial and waiting == [slot]):
            return None  # a serial test waits for the others to end: nothing else starts
        if serial:
            if any(self.in_test):
                self.serial_waiting[slot] = 1
                return None
            self.serial_waiting[slot] = 0
        taken: list[tuple[Any, int]] = []  # (holders, position), to undo: all or nothing
        held: dict[str, int] = {}
        for name in needs.resources if needs is not None else ():
            holders, first, count = self._places(name)
            free = next((p for p in range(first, first + count) if holders[p] == -1), None)
            if free is None:
                for array, position in taken:
                    array[position] = -1
                return None
            holders[free] = slot
            taken.append((holders, free))
            held[name] = free - first
        if serial:
            self.serial.value = slot
        return held

    def _places(self, name: str) -> tuple[Any, int, int]:
        """Where a resource's holders are: the shared array, its slot 0 there, its limit."""
        if name in self.holders:
            holders = self.holders[name]
            return holders, 0, len(holders)
        return self.undeclared, zlib.crc32(name.encode()) % UNDECLARED_LOCKS, 1


class Turns:
    """A worker's side of the gate: which of its queued items starts next, and when."""

    def __init__(
        self,
        gate: Gate,
        slot: int,
        items: Sequence[pytest.Item] | Mapping[int, pytest.Item],
        stop: Callable[[], bool],
    ) -> None:
        self.gate = gate
        self.slot = slot
        self.items = items
        self.stop = stop
        self.needs: dict[int, Needs | None] = {}  # by index, as the gate asked
        self.inside = False  # the running test entered the gate: it leaves it when done

    def next_index(self, queue: deque[int]) -> int | None:
        """The next item to run: the queue's first or, once tests are serial or capped, the
        first of the queue that may start now (waiting until one may; None: the run stops)."""
        if not self.gate.active.value:
            return queue.popleft()
        found = self.gate.enter(self.slot, lambda: self._needs(queue), self.stop)
        if found is None:
            return None
        position, held = found
        index = queue[position]
        del queue[position]
        self.items[index].stash[SLOTS_KEY] = held
        self.inside = True
        return index

    def done(self) -> None:
        if self.inside:
            self.inside = False
            self.gate.leave(self.slot)

    def _needs(self, queue: deque[int]) -> Iterator[Needs | None]:
        for index in queue:
            if index not in self.needs:
                self.needs[index] = needs_of(self.items[index])
            yield self.needs[index]


def pytest_procpar_worker_loop_planned(plan: WorkerPlan) -> None:
    """Worker: where the local workers share a gate, each test waits for its turn (this module
    is a plugin of every worker, see ``features.py``)."""
    gate = plan.shared.gate
    if gate is not None:
        plan.turns = Turns(gate, plan.slot, plan.items, plan.shared.should_stop)
