"""The run report: how busy each worker was, so a bad schedule is visible at a glance.

Efficiency is busy time over (workers x wall time): 100% means no worker ever waited, and the
run could not have finished sooner with the same workers (short of running tests faster).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from pytest_procpar import faults


@dataclass
class WorkerStats:
    items: int = 0
    busy: float = 0.0


@dataclass
class RunReport:
    policy: str
    workers: dict[str, WorkerStats] = field(default_factory=dict)
    started: float = field(default_factory=faults.now)
    ended: float | None = None
    recycled: Counter[str] = field(default_factory=Counter)  # by the limit hit: memory, tests
    recycling: list[str] = field(default_factory=list)  # "gw1: ran 500 tests", in order
    waited_for_resources: float = 0.0  # seconds workers waited to start serial or capped tests

    def worker_recycled(self, worker: str, limit: str, detail: str) -> None:
        self.recycled[limit] += 1
        self.recycling.append(f"{worker}: {detail}")

    def item_done(self, worker: str, seconds: float) -> None:
        stats = self.workers.get(worker)
        if stats is None:
            stats = self.workers[worker] = WorkerStats()
        stats.items += 1
        stats.busy += seconds

    def finish(self) -> None:
        self.ended = faults.now()

    @property
    def wall(self) -> float:
        return (self.ended or faults.now()) - self.started

    @property
    def busy(self) -> float:
        return sum(stats.busy for stats in self.workers.values())

    def efficiency(self, worker_slots: int) -> float:
        return self.busy / (worker_slots * self.wall) if self.wall > 0 and worker_slots else 0.0

    def summary_line(self, worker_slots: int, slowest: list[tuple[str, float]]) -> str:
        line = (
            f"procpar: {self.policy} scheduling, {worker_slots} "
            f"worker{'s' if worker_slots != 1 else ''}, "
            f"efficiency {self.efficiency(worker_slots):.0%} "
            f"(busy {self.busy:.1f}s of {worker_slots} x {self.wall:.1f}s)"
        )
        if self.waited_for_resources:
            line += f", {self.waited_for_resources:.1f}s waiting for serial or capped tests"
        if self.recycled:
            count = sum(self.recycled.values())
            limits = ", ".join(f"{n} over the {limit} limit" for limit, n in self.recycled.items())
            line += f", {count} worker{'s' if count != 1 else ''} recycled ({limits})"
        if slowest:
            nodeid, seconds = slowest[0]
            line += f", slowest {nodeid} {seconds:.2f}s"
        return line

    def table(self, worker_slots: int, slowest: list[tuple[str, float]]) -> list[str]:
        lines = [f"{'worker':<8} {'items':>7} {'busy s':>8} {'idle s':>8}"]
        for worker, stats in sorted(self.workers.items(), key=lambda entry: int(entry[0][2:])):
            idle = max(0.0, self.wall - stats.busy)
            lines.append(f"{worker:<8} {stats.items:>7} {stats.busy:>8.2f} {idle:>8.2f}")
        lines += [f"recycled {line}" for line in self.recycling]
        lines.append(self.summary_line(worker_slots, []))
        lines += [f"slowest: {seconds:8.2f}s {nodeid}" for nodeid, seconds in slowest]
        return lines
