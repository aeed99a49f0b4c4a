"""Collecting in workers, the controller's side: walk the directories, then show what the
workers collected as if it had been collected here.

The controller runs pytest's own collection, stopped at files (:class:`FileWalk`): it loads
conftests and asks ``pytest_ignore_collect``/``pytest_collect_file`` which files are test
files, without importing one. After forking, each worker collects its share and sends a
``collected`` message; :class:`CollectedShares` turns those into what a serial collection
would have produced in the controller: one ``pytest_collectreport`` per collector, with
stand-in items (:mod:`pytest_procpar.elsewhere`) as results, the ``pytest_deselected`` calls,
and ``session.items`` in collection order. Afterwards it numbers the run's items for every
worker and knows which file each item needs imported.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_procpar import pytest_internals, reports
from pytest_procpar.elsewhere import CollectedElsewhere, stand_in_collector
from pytest_procpar.messages import Event


class FileWalk:
    """The session's collection, stopped at files: the files found are the *units* shared
    out to workers (in collection order)."""

    def __init__(self, session: pytest.Session) -> None:
        self.session = session
        self.units: list[pytest.Collector] = []
        self._undo = pytest_internals.walk_to_files(session, self.units.append)

    def finish(self) -> list[pytest.Collector]:
        """The walk is over (workers then collect with pytest's own recursion)."""
        self._undo()
        return self.units

    def collect_here(self, items: list[pytest.Item]) -> None:
        """Collect every unit in the controller after all, as a serial run does."""
        for unit in self.units:
            items.extend(pytest_internals.collect_file(self.session, unit))


@dataclass(frozen=True)
class SharePlan:
    """The files found by the walk, and which of them each worker collects (by position)."""

    units: list[pytest.Collector]
    shares: list[list[int]]


@dataclass
class Origin:
    """Where a stand-in's real item is: its worker, its place in that worker's collection,
    and the unit (file) it came from."""

    workerid: str
    position: int
    unit: int


@dataclass
class Numbering:
    """The run's items as the workers know them, once the controller's list is final."""

    indexes: dict[str, list[int]]  # per worker: the run's index of each item it collected
    unit_of: list[int]  # per run index: the unit to import to run it
    unit_items: dict[int, list[tuple[int, str]]] = field(default_factory=dict)  # per unit


class CollectedShares:
    """What the workers collected, share by share, until every share is in."""

    def __init__(self, units: Sequence[pytest.Collector], shares: dict[str, list[int]]) -> None:
        self.units = units
        self.shares = shares  # workerid -> its units, in the order of the shares
        self.received: dict[str, dict[str, Any]] = {}
        self.failed: dict[str, pytest.CollectReport] = {}
        self.origins: dict[int, Origin] = {}  # by id() of the stand-in
        self.seconds: dict[str, float] = {}  # per unit nodeid: what collecting it took
        self.launched: dict[str, float] = {}  # per worker: when the controller started it
        self.starts: list[float] = []  # what starting each worker took, up to its collection

    @property
    def complete(self) -> bool:
        return len(self.received) + len(self.failed) == len(self.shares)

    def add(self, workerid: str, share: dict[str, Any]) -> None:
        if workerid in self.shares and workerid not in self.failed:
            self.received.setdefault(workerid, share)
            if workerid in self.launched:
                took = time.perf_counter() - self.launched[workerid]
                self.starts.append(max(0.0, took - sum(share["seconds"].values())))

    def start_seconds(self) -> float:
        """What starting a worker takes in this run, before it collects: the median of the
        workers' (a worker that takes work over from another must be a new one)."""
        return statistics.median(self.starts) if self.starts else 0.0

    def lost(self, workerid: str, message: str, detail: str) -> None:
        """The worker ended before it said what its share holds: the share's first file gets
        a collection error saying so, as serial pytest reports a file it cannot collect."""
        if workerid not in self.shares or workerid in self.received:
            return
        unit = self.units[self.shares[workerid][0]]
        text = f"{message}\n\n{detail}" if detail else message
        self.failed[workerid] = pytest.CollectReport(unit.nodeid, "failed", text, [])

    def replay(
        self,
        config: pytest.Config,
        items: list[pytest.Item],
        replay_events: Callable[[list[Event]], None],
    ) -> None:
        """Make the hook calls a serial collection makes, from what the workers sent, and put
        the items the run keeps into ``items``. Shares are replayed in order, so what several
        files reported (their warnings, say) reads as in a serial run."""
        standins: dict[str, list[CollectedElsewhere]] = {}
        for workerid, units in self.shares.items():
            if workerid in self.failed:
                unit = self.units[units[0]]
                unit.ihook.pytest_collectreport(report=self.failed[workerid])
                continue
            share = self.received[workerid]
            replay_events(share["events"])
            mine = standins[workerid] = self._stand_ins(workerid, share)
            for data, as_is, unit, children in share["reports"]:
                unit_node = self.units[unit]
                report = reports.decode_collect_report(config, data, as_is)
                report.result = [
                    mine[child] if isinstance(child, int) else stand_in_collector(unit_node, *child)
                    for child in children
                ]
                unit_node.ihook.pytest_collectreport(report=report)
            for unit, seconds in share["seconds"].items():
                self.seconds[self.units[unit].nodeid] = seconds
        for workerid, mine in standins.items():
            for positions in self.received[workerid]["deselected"]:
                config.hook.pytest_deselected(items=[mine[position] for position in positions])
        for workerid, mine in standins.items():
            items.extend(mine[position] for position in self.received[workerid]["kept"])

    def _stand_ins(self, workerid: str, share: dict[str, Any]) -> list[CollectedElsewhere]:
        made = []
        keywords = [dict.fromkeys(names, 1) for names in share["keywords"]]
        keywords.append({})  # entry -1: a parent without keywords
        for position, (facts, unit) in enumerate(zip(share["items"], share["units"], strict=True)):
            item = CollectedElsewhere.stand_in(self.units[unit], facts, keywords[facts.keywords_of])
            self.origins[id(item)] = Origin(workerid, position, unit)
            made.append(item)
        return made

    def number(self, items: Sequence[pytest.Item]) -> Numbering:
        """Index the run's final items (after every plugin selected and ordered them)."""
        numbering = Numbering(
            indexes={
                workerid: [-1] * len(share["items"]) for workerid, share in self.received.items()
            },
            unit_of=[],
        )
        for index, item in enumerate(items):
            origin = self.origins[id(item)]
            numbering.indexes[origin.workerid][origin.position] = index
            numbering.unit_of.append(origin.unit)
            numbering.unit_items.setdefault(origin.unit, []).append((index, item.nodeid))
        return numbering

    def home_units(self) -> dict[str, set[int]]:
        """The units each worker has imported by collecting its share."""
        return {workerid: set(self.shares[workerid]) for workerid in self.received}
