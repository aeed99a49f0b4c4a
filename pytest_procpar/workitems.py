"""What the scheduler is told about each collected item (see ``scheduler.base.WorkItem``)."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping, Sequence

import pytest

from pytest_procpar import pytest_internals, xdist_compat
from pytest_procpar.pytest_internals import Node
from pytest_procpar.scheduler.base import WorkItem

GROUP_MARKERS = ("procpar_group", xdist_compat.GROUP_MARKER)
SHARED_SCOPES = ("package", "module", "class")
# Markers that fix the order of tests relative to each other: pytest-order's, and
# pytest-dependency's (a dependent test is skipped unless what it depends on passed earlier
# in the same process).
ORDER_MARKERS = ("order", "dependency")


def closest_marker(
    node: Node, names: tuple[str, ...], known: dict[int, pytest.Mark | None]
) -> pytest.Mark | None:
    """The closest marker named one of ``names``, as ``get_closest_marker`` finds it, but
    looked up once per parent node: that walks the whole chain for every item of a big suite,
    and this runs for every item before any worker starts. ``known`` is the memo."""
    for marker in node.own_markers:  # in the order get_closest_marker tries them
        if marker.name in names:
            return marker
    parent = node.parent
    if parent is None:
        return None
    if id(parent) not in known:
        known[id(parent)] = closest_marker(parent, names, known)
    return known[id(parent)]


def group_name(item: pytest.Item, known: dict[int, pytest.Mark | None]) -> str | None:
    """The name given by the closest ``procpar_group``/``xdist_group`` marker."""
    marker = closest_marker(item, GROUP_MARKERS, known)
    if marker is None:
        return None
    return str(marker.args[0] if marker.args else marker.kwargs.get("name", "default"))


def fixture_scope(
    item: pytest.Item, file: str, scope: str, known: dict[int, set[str]]
) -> str | None:
    """The module (or class) whose scoped fixtures this item shares with its neighbours.
    ``known`` memoizes the scopes per fixture info, which the items of one parametrized
    function share (reading a fixture's scope costs an enum lookup)."""
    scopes = pytest_internals.fixture_scopes(item, known)
    if scopes is None:
        return None
    if scopes & {"package", "module"}:
        return file
    if "class" in scopes:
        return scope
    return None


class Chains:
    """Items that must run on one worker in collection order, each chain seen by the
    scheduler as one :class:`WorkItem`: the index of its first item stands for all of it.

    Every policy, including a plugin's own, then keeps a chain whole without knowing about
    chains: the controller expands what the policy hands out, and gives back what a lost
    worker left of a chain as the chain's first index.
    """

    def __init__(self, items: Sequence[pytest.Item]) -> None:
        known: dict[int, pytest.Mark | None] = {}
        chained = [i for i, item in enumerate(items) if closest_marker(item, ORDER_MARKERS, known)]
        self.members = {chained[0]: chained} if len(chained) > 1 else {}
        self.head = {index: head for head, chain in self.members.items() for index in chain}
        self.left: dict[int, list[int]] = {}  # what lost workers left of a chain, by its head

    def expand(self, batch: Sequence[int]) -> list[int]:
        """What the worker is to run for a policy's ``batch``: a chain's items, or what a lost
        worker left of them."""
        if not self.members:
            return list(batch)
        expanded: list[int] = []
        for index in batch:
            expanded += self.left.pop(index, []) or self.members.get(index) or [index]
        return expanded

    def collapse(self, unfinished: Sequence[int]) -> list[int]:
        """What to give back to the policy for items handed out but not run."""
        if not self.members:
            return list(unfinished)
        for head in self.members:
            left = [index for index in unfinished if self.head.get(index) == head]
            if left:
                self.left[head] = left
        return list(dict.fromkeys(self.head.get(index, index) for index in unfinished))


def describe(
    items: Sequence[pytest.Item],
    durations: Mapping[str, float],
    lastfailed: Mapping[str, object],
    chains: Chains,
) -> list[WorkItem]:
    known = [durations[item.nodeid] for item in items if item.nodeid in durations]
    median = statistics.median(known) if known else 1.0
    described = []
    groups: dict[int, pytest.Mark | None] = {}
    scopes: dict[int, set[str]] = {}
    for index, item in enumerate(items):
        nodeid = item.nodeid
        file = nodeid.split("::", 1)[0]
        facts = getattr(item, "procpar_facts", None)  # collected in a worker: it knows them
        if facts is not None:
            scope, shared = facts.scope, facts.fixture_scope
        else:
            # The parent's nodeid, not a split of the item's: parameter ids may contain "::".
            scope = item.parent.nodeid if item.parent is not None else file
            shared = fixture_scope(item, file, scope, scopes)
        described.append(
            WorkItem(
                index=index,
                nodeid=nodeid,
                file=file,
                scope=scope,
                fixture_scope=shared,
                group=group_name(item, groups),
                expected=durations.get(nodeid, median),
                known=nodeid in durations,
                failed_last=nodeid in lastfailed,
            )
        )
    for head, chain in chains.members.items():
        first = described[head]
        described[head] = dataclasses.replace(
            first,
            expected=sum(described[i].expected for i in chain),
            known=all(described[i].known for i in chain),
            failed_last=any(described[i].failed_last for i in chain),
        )
    taken = set(chains.head) - set(chains.members)
    return [item for item in described if item.index not in taken]
