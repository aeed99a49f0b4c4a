"""What the scheduler is told about each collected item (see ``scheduler.base.WorkItem``)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

import pytest
from _pytest.nodes import Node

from pytest_procpar.scheduler.base import WorkItem

GROUP_MARKERS = ("procpar_group", "xdist_group")
SHARED_SCOPES = ("package", "module", "class")


def group_name(node: Node, known: dict[int, str | None]) -> str | None:
    """The closest ``procpar_group``/``xdist_group`` name, looked up once per parent node
    (``get_closest_marker`` walks the whole chain for every item of a big suite)."""
    for marker in reversed(node.own_markers):
        if marker.name in GROUP_MARKERS:
            value = marker.args[0] if marker.args else marker.kwargs.get("name", "default")
            return str(value)
    parent = node.parent
    if parent is None:
        return None
    if id(parent) not in known:
        known[id(parent)] = group_name(parent, known)
    return known[id(parent)]


def fixture_scope(item: pytest.Item, file: str, scope: str) -> str | None:
    """The module (or class) whose scoped fixtures this item shares with its neighbours."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    scopes = {defs[-1].scope for defs in info.name2fixturedefs.values() if defs}
    if scopes & {"package", "module"}:
        return file
    if "class" in scopes:
        return scope
    return None


def describe(
    items: Sequence[pytest.Item], durations: Mapping[str, float], lastfailed: Mapping[str, object]
) -> list[WorkItem]:
    known = [durations[item.nodeid] for item in items if item.nodeid in durations]
    median = statistics.median(known) if known else 1.0
    described = []
    groups: dict[int, str | None] = {}
    for index, item in enumerate(items):
        nodeid = item.nodeid
        file = nodeid.split("::", 1)[0]
        # The parent's nodeid, not a split of the item's: parameter ids may contain "::".
        scope = item.parent.nodeid if item.parent is not None else file
        described.append(
            WorkItem(
                index=index,
                nodeid=nodeid,
                file=file,
                scope=scope,
                fixture_scope=fixture_scope(item, file, scope),
                group=group_name(item, groups),
                expected=durations.get(nodeid, median),
                known=nodeid in durations,
                failed_last=nodeid in lastfailed,
            )
        )
    return described
