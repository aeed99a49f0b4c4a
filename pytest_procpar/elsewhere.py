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

import pickle
from typing import Any, NamedTuple

import pytest

from pytest_procpar import messages, once, timelimits, workitems

# The markers procpar reads from items in the controller; the closest of each travels.
MARKERS_READ = (
    (timelimits.TIMEOUT_MARKER,),
    workitems.GROUP_MARKERS,
    workitems.ORDER_MARKERS,
)


class ItemFacts(NamedTuple):
    """What the controller needs to know about one item a worker collected (pickled: a tuple
    pickles cheapest)."""

    nodeid: str
    name: str
    location: messages.Location
    keywords: tuple[str, ...]
    scope: str  # its parent's nodeid (module or class)
    fixture_scope: str | None  # see scheduler.base.WorkItem
    markers: tuple[tuple[str, tuple[Any, ...], dict[str, Any]], ...]
    run_fixtures: tuple[str, ...]  # the once-per-run fixtures it uses


class Memo:
    """The lookups :func:`facts_of` shares between the items of one collection."""

    def __init__(self) -> None:
        self.markers: dict[int, pytest.Mark | None] = {}
        self.scopes: dict[int, set[str]] = {}


def facts_of(item: pytest.Item, memo: Memo) -> ItemFacts:
    """The facts of ``item``, as the worker that collected it knows them."""
    nodeid = item.nodeid
    file = nodeid.split("::", 1)[0]
    scope = item.parent.nodeid if item.parent is not None else file
    markers = []
    for names in MARKERS_READ:
        mark = workitems.closest_marker(item, names, memo.markers)
        if mark is not None and _picklable((mark.args, mark.kwargs)):
            markers.append((mark.name, tuple(mark.args), dict(mark.kwargs)))
    fixturenames = getattr(item, "fixturenames", ())
    return ItemFacts(
        nodeid=nodeid,
        name=item.name,
        location=(str(item.location[0]), item.location[1], str(item.location[2])),
        keywords=tuple(item.keywords),
        scope=scope,
        fixture_scope=workitems.fixture_scope(item, file, scope, memo.scopes),
        markers=tuple(markers),
        run_fixtures=tuple(name for name in fixturenames if name in once.REGISTRY),
    )


def _picklable(value: object) -> bool:
    try:
        pickle.dumps(value)
    except Exception:
        return False
    return True


class CollectedElsewhere(pytest.Item):
    """The controller's stand-in for an item a worker collected and will run."""

    procpar_facts: ItemFacts  # the name workitems.describe looks for

    @classmethod
    def stand_in(cls, file: pytest.Collector, facts: ItemFacts) -> CollectedElsewhere:
        item = cls.from_parent(file, name=facts.name, nodeid=facts.nodeid)
        item.procpar_facts = facts
        item.__dict__["location"] = facts.location  # what the worker computed, not recomputed
        item.keywords.update(dict.fromkeys(facts.keywords, 1))
        item.own_markers = [pytest.Mark(name, args, kwargs) for name, args, kwargs in facts.markers]
        item.fixturenames = list(facts.run_fixtures)  # type: ignore[attr-defined]
        return item

    def runtest(self) -> None:
        raise RuntimeError(f"{self.nodeid} was collected in a worker and runs there")

    def reportinfo(self) -> tuple[Any, int | None, str]:
        _, lineno, domain = self.procpar_facts.location
        return self.path, lineno, domain
