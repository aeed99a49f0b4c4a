"""Collecting in workers, the worker's side: its share of the suite's files is its session's
collection, and files it takes over later are imported on demand.

The controller walked the directories to the test files (the *units*) without importing one.
A worker's own session walks them the same way, checks it found the controller's files, and
collects its share of them with pytest's own ``genitems`` where pytest's collection modifies
the items, so that every plugin's ``pytest_collection_modifyitems`` sees the share (``-k``,
``-m``, ``--deselect`` and plugins act per item). It then tells the controller what it
collected, what it kept and what collection reported, so that the controller can show and
decide what a serial run shows and decides. Items are then named by the run's indexes, which
the controller sends (``numbered``); a file taken over from another worker is collected again
here (``import``).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Collection, Generator, Sequence
from typing import Any

import pytest

from pytest_procpar import elsewhere, pytest_internals, reports
from pytest_procpar.messages import Event


class ShareCollection:
    """Registered in a worker that collects: its session's collection walks to the files (it
    must find the controller's ``expected`` nodeids) and collects ``share`` of them."""

    def __init__(
        self, session: pytest.Session, expected: Sequence[str], share: Sequence[int]
    ) -> None:
        self.units: list[pytest.Collector] = []
        self.expected = expected
        self.share = share
        self.collected: list[pytest.Item] = []
        self.unit_of: list[int] = []  # the unit each collected item came from
        self.reports: list[tuple[pytest.CollectReport, int]] = []
        self.deselected: list[list[pytest.Item]] = []  # one list per pytest_deselected call
        self.seconds: dict[int, float] = {}
        self.unit: int | None = None  # the unit being collected: its reports are news
        self._end_walk: Callable[[], None] | None = pytest_internals.walk_to_files(
            session, self.units.append
        )

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, items: list[pytest.Item]
    ) -> Generator[None, object, object]:
        """Walking here, the walk ends where pytest modifies the items it found (none): the
        share is collected into them first, for every plugin to see."""
        end_walk, self._end_walk = self._end_walk, None
        if end_walk is not None:
            end_walk()
            found = [unit.nodeid for unit in self.units]
            if found != self.expected:
                raise WorkerCollectionMismatch(
                    describe_difference("test files", found, self.expected)
                )
            self._collect_share(session)
            items.extend(self.collected)
        return (yield)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_finish(self) -> None:
        self.unit = None  # what is deselected from now on is not collection's news

    def _collect_share(self, session: pytest.Session) -> None:
        for unit in self.share:
            self.unit = unit
            found = self._collect(session, unit)
            self.collected += found
            self.unit_of += [unit] * len(found)
        self.unit = -1  # deselections are news; collection reports no more

    def _collect(self, session: pytest.Session, unit: int) -> list[pytest.Item]:
        started = time.perf_counter()
        found = list(pytest_internals.collect_file(session, self.units[unit]))
        self.seconds[unit] = time.perf_counter() - started
        return found

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if self.unit is not None and self.unit >= 0:
            self.reports.append((report, self.unit))

    def pytest_deselected(self, items: Sequence[pytest.Item]) -> None:
        if self.unit is not None:
            self.deselected.append(list(items))

    def share_message(self, session: pytest.Session, events: list[Event]) -> dict[str, Any]:
        """What the ``collected`` message carries, with the ``events`` collecting recorded
        (its warnings): see :class:`~pytest_procpar.collect_phase.CollectedShares` for how
        the controller reads it."""
        config = session.config
        position = {id(item): i for i, item in enumerate(self.collected)}
        memo = elsewhere.Memo()

        def positions(items: Sequence[Any]) -> list[int]:
            return [position[id(item)] for item in items if id(item) in position]

        def children(nodes: Sequence[Any]) -> list[int | tuple[str, str]]:
            """A report's result: positions of items, (nodeid, kind) of collectors."""
            return [
                position[id(node)] if id(node) in position else (node.nodeid, type(node).__name__)
                for node in nodes
                if id(node) in position or isinstance(node, pytest.Collector)
            ]

        facts = [elsewhere.facts_of(item, memo) for item in self.collected]
        return {
            "items": facts,
            "keywords": memo.keyword_table,
            "units": self.unit_of,
            "reports": [
                (*reports.encode_collect_report(config, report), unit, children(report.result))
                for report, unit in self.reports
            ],
            "kept": positions(session.items),
            "deselected": [positions(items) for items in self.deselected],
            "seconds": self.seconds,
            "events": events,
        }

    def numbered(self, indexes: Sequence[int]) -> dict[int, pytest.Item]:
        """This worker's collected items by the run's indexes (-1: not in the run)."""
        return {
            index: item for index, item in zip(indexes, self.collected, strict=True) if index >= 0
        }

    def import_unit(
        self, session: pytest.Session, unit: int, numbered: Sequence[tuple[int, str]]
    ) -> dict[int, pytest.Item]:
        """Collect ``unit`` here too (another worker collected it first: its warnings and
        reports were shown then), and name the items the run keeps by their indexes."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = {item.nodeid: item for item in self._collect(session, unit)}
        missing = [nodeid for _, nodeid in numbered if nodeid not in found]
        if missing:
            raise ImportedUnitMismatch(
                f"collecting {self.units[unit].nodeid} again did not find {missing[0]}"
                f" ({len(missing)} missing): the file collects differently in each process"
            )
        return {index: found[nodeid] for index, nodeid in numbered}


class ImportedUnitMismatch(Exception):
    """A file taken over from another worker collected other tests here."""


class WorkerCollectionMismatch(Exception):
    """A worker that collects by itself found other tests (or files) than the controller."""


def describe_difference(
    noun: str, found: Sequence[str], expected: Sequence[str], allowed: Collection[str] = ()
) -> str:
    """What a worker found against what the controller did (``allowed``: found, not expected,
    but no difference)."""
    found_set, known = set(found), {*expected, *allowed}
    missing = [nodeid for nodeid in expected if nodeid not in found_set]
    extra = [nodeid for nodeid in found if nodeid not in known]
    if not missing and not extra:
        return f"found the controller's {len(found)} {noun} in another order"
    return (
        f"collected {len(found)} {noun}, the controller {len(expected)}; "
        f"first only in the controller: {missing[:1] or 'none'}, "
        f"first only in the worker: {extra[:1] or 'none'}"
    )
