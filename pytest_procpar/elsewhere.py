"""Items collected in another process: the facts a worker sends about each one it collected,
and the stand-in the controller builds from them.

When workers collect (``--procpar-collect=workers``) the controller never imports a test
module, yet its plugins must see items: the terminal reporter counts them, ``--lf`` and
``--nf`` order them, reports are rebuilt from them, ``procpar_timeout`` and group markers are
read from them. A :class:`CollectedElsewhere` stands in for each: a pytest Item under the
controller's own node for the file, with the nodeid, location and keywords the worker's item
had and the few markers procpar itself reads. It never runs.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, TypeVar, cast

import pytest

from pytest_procpar import (
    framing,
    messages,
    once,
    pytest_internals,
    resources,
    retries,
    timelimits,
    workitems,
)

# The markers procpar reads from items in the controller; the closest of each travels.
MARKERS_READ = (
    (timelimits.TIMEOUT_MARKER,),
    workitems.GROUP_MARKERS,
    workitems.ORDER_MARKERS,
    (resources.SERIAL_MARKER,),
    (resources.RESOURCE_MARKER,),
    (retries.FLAKY_MARKER,),
)


class ItemFacts(NamedTuple):
    """What the controller needs to know about one item a worker collected (pickled: a tuple
    pickles cheapest)."""

    nodeid: str
    kind: str  # its class's name: Function, DoctestItem, TestCaseFunction, a plugin's
    keywords: tuple[str, ...]  # its own; with those of ``keywords_of``'s entry, all of them
    keywords_of: int  # its parent's entry in the share's table of keywords
    scope: str  # its parent's nodeid (module or class)
    fixture_scope: str | None  # see scheduler.base.WorkItem
    markers: tuple[tuple[str, tuple[Any, ...], dict[str, Any]], ...]
    run_fixtures: tuple[str, ...]  # the once-per-run fixtures it uses


class Memo:
    """What :func:`facts_of` looks up once per parent node, marker or string for all the
    items of one share; ``keyword_table`` travels with their facts."""

    def __init__(self) -> None:
        # per group of marker names: by id() of a parent node, its closest such marker
        self.markers: dict[tuple[str, ...], dict[int, pytest.Mark | None]] = {
            names: {} for names in MARKERS_READ
        }
        self.scopes: dict[int, set[str]] = {}
        self.sendable: dict[int, bool] = {}  # by id() of a marker: its arguments pickle
        self.parents: dict[int, int] = {}  # by id() of a parent node: its keyword entry
        self.keyword_table: list[tuple[str, ...]] = []
        self.keywords = pytest_internals.ReportKeywords()
        self.strings: dict[str, str] = {}  # one object per text: pickled once

    def keywords_of(self, node: pytest_internals.Node | None) -> int:
        """The entry of the keywords ``node`` passes to its children (-1: none)."""
        if node is None:
            return -1
        entry = self.parents.get(id(node))
        if entry is None:
            entry = self.parents[id(node)] = len(self.keyword_table)
            self.keyword_table.append(tuple(self.keywords.passed_down(node)))
        return entry

    def text(self, value: str) -> str:
        return self.strings.setdefault(value, value)


def facts_of(item: pytest.Item, memo: Memo) -> ItemFacts:
    """The facts of ``item``, as the worker that collected it knows them."""
    nodeid = item.nodeid
    file = nodeid.split("::", 1)[0]
    scope = memo.text(item.parent.nodeid if item.parent is not None else file)
    markers = []
    for names in MARKERS_READ:
        mark = workitems.closest_marker(item, names, memo.markers[names])
        if mark is None:
            continue
        if id(mark) not in memo.sendable:
            memo.sendable[id(mark)] = framing.can_pickle((mark.args, mark.kwargs))
        if memo.sendable[id(mark)]:
            markers.append((mark.name, tuple(mark.args), dict(mark.kwargs)))
    fixturenames = getattr(item, "fixturenames", ()) if once.REGISTRY else ()
    return ItemFacts(
        nodeid=nodeid,
        kind=memo.text(type(item).__name__),
        keywords=tuple(pytest_internals.own_keywords(item)),
        keywords_of=memo.keywords_of(item.parent),
        scope=scope,
        fixture_scope=workitems.fixture_scope(item, file, scope, memo.scopes),
        markers=tuple(markers),
        run_fixtures=tuple(name for name in fixturenames if name in once.REGISTRY),
    )


class CollectedElsewhere(pytest.Item):
    """The controller's stand-in for an item a worker collected and will run."""

    procpar_facts: ItemFacts  # the name workitems.describe looks for

    @classmethod
    def stand_in(
        cls, file: pytest.Collector, facts: ItemFacts, inherited: dict[str, int]
    ) -> CollectedElsewhere:
        """``facts``' item, under the controller's node for its ``file``; ``inherited``: the
        keywords of its parent in the worker (the table entry ``facts.keywords_of``)."""
        name = facts.nodeid.rsplit("::", 1)[-1]
        item = _named(cls, facts.kind).from_parent(file, name=name, nodeid=facts.nodeid)
        item.procpar_facts = facts
        # The worker's item's keywords, as a plain mapping: nothing in the controller adds to
        # them, and reports are built from them for every test.
        keywords = dict.fromkeys(facts.keywords, 1)  # in NodeKeywords' order: own names first
        keywords.update(inherited)
        item.keywords = keywords
        item.own_markers = [pytest_internals.make_mark(*marker) for marker in facts.markers]
        item.fixturenames = list(facts.run_fixtures)  # type: ignore[attr-defined]
        return item

    def runtest(self) -> None:
        raise RuntimeError(f"{self.nodeid} was collected in a worker and runs there")

    @functools.cached_property
    def location(self) -> messages.Location:
        """Where the item is, as far as its nodeid tells: reports come with the location the
        worker computed (working it out costs as much as collecting the item), so this is only
        shown for a test its worker could not report (a crash, a time limit)."""
        file, _, rest = self.nodeid.partition("::")
        return file, None, rest.replace("::", ".")

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, self.location[2]


class CollectorElsewhere(pytest.Collector):
    """The controller's stand-in for a collector (a class, say) a worker collected: what a
    collection report lists among its results."""

    def collect(self) -> list[pytest.Item | pytest.Collector]:
        raise RuntimeError(f"{self.nodeid} was collected in a worker")


def stand_in_collector(file: pytest.Collector, nodeid: str, kind: str) -> CollectorElsewhere:
    """A stand-in for the collector ``nodeid`` (of class ``kind``) under ``file``."""
    name = nodeid.rsplit("::", 1)[-1]
    return _named(CollectorElsewhere, kind).from_parent(file, name=name, nodeid=nodeid)


StandIn = TypeVar("StandIn", CollectedElsewhere, CollectorElsewhere)
_NAMED: dict[tuple[type, str], type] = {}


def _named(cls: type[StandIn], kind: str) -> type[StandIn]:
    """``cls`` under the name of the class it stands for: what plugins that show a node's
    type print (pytest-json-report's collectors say ``Function``, as serially)."""
    named = _NAMED.get((cls, kind))
    if named is None:
        named = _NAMED[cls, kind] = type(kind, (cls,), {"__module__": cls.__module__})
    return cast("type[StandIn]", named)
