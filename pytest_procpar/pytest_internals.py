"""Every private part of pytest and pluggy that procpar relies on, in one place.

Replaying reports in another process, moving captures, re-running plugins' configure hooks and
writing JUnit XML from workers go where pytest's public API does not. Each private name is
reached through this module only, so that a pytest release that changes one touches this file
(and the tests of the feature using it fail, naming the function here).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from _pytest import terminal as _pytest_terminal
from _pytest._code.code import ReprFileLocation, TerminalRepr
from _pytest._io import TerminalWriter
from _pytest._io.saferepr import saferepr
from _pytest.assertion.rewrite import AssertionRewritingHook
from _pytest.cacheprovider import Cache
from _pytest.junitxml import _check_record_param_type, bin_xml_escape, xml_key
from _pytest.nodes import Node
from _pytest.tmpdir import TempPathFactory

__all__ = [
    "Node",
    "ReprFileLocation",
    "TerminalRepr",
    "bin_xml_escape",
    "check_record_param_type",
    "saferepr",
    "xml_key",
]

check_record_param_type = _check_record_param_type  # what record_testsuite_property checks


def tmp_path_factory(config: pytest.Config) -> TempPathFactory | None:
    """The session's ``tmp_path_factory`` (None with ``-p no:tmpdir``)."""
    factory: TempPathFactory | None = getattr(config, "_tmp_path_factory", None)
    return factory


def terminal_writer(reporter: object) -> TerminalWriter | None:
    """The terminal reporter's writer, which knows the column its line stands at (None: no
    reporter, or one whose writer is not pytest's)."""
    writer = getattr(reporter, "_tw", None)
    return writer if isinstance(writer, TerminalWriter) else None


def swap_writer_file(writer: TerminalWriter, file: object) -> Any:
    """Make ``writer`` write to ``file``; the file it wrote to."""
    previous = writer._file
    writer._file = file
    return previous


def cache_subdir(config: pytest.Config, name: str) -> Path:
    """What ``config.cache.mkdir(name)`` makes, known before the cache plugin is configured
    (ini ``cache_dir`` resolved as pytest resolves it)."""
    cache_dir: Path = Cache.cache_dir_from_config(config, _ispytest=True)
    return cache_dir / Cache._CACHE_PREFIX_DIRS / name


def writer_file(writer: TerminalWriter) -> Any:
    """The file ``writer`` writes to now."""
    return writer._file


def running_on_ci() -> bool:
    """Whether pytest takes the run for a CI job (``CI`` or ``BUILD_NUMBER`` set): the
    terminal reporter's own test, which has moved between pytest's modules."""
    on_ci: Callable[[], bool] = getattr(_pytest_terminal, "running_on_ci")  # noqa: B009
    return bool(on_ci())


def fixture_scopes(item: pytest.Item, known: dict[int, set[str]]) -> set[str] | None:
    """The scopes of the fixtures ``item`` uses (None: it has no fixture info), memoized in
    ``known`` per fixture info, which the items of one parametrized function share."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    scopes = known.get(id(info))
    if scopes is None:
        scopes = known[id(info)] = {
            defs[-1].scope for defs in info.name2fixturedefs.values() if defs
        }
    return scopes


def global_capturing(config: pytest.Config) -> Any:
    """The capture manager's process-wide capture (its temp files), if there is one."""
    capman = config.pluginmanager.get_plugin("capturemanager")
    return getattr(capman, "_global_capturing", None)


def drop_global_capture(config: pytest.Config) -> Any:
    """Let go of a process-wide capture made before this process was forked, without reading
    its temp files: they are shared with the process it was forked from, and reading one
    empties it (pytest's own ``stop_global_capturing`` does). Returns the capture manager
    whose capture was dropped (None: there was none), to start one of this process's own."""
    capman: Any = config.pluginmanager.get_plugin("capturemanager")
    capturing = getattr(capman, "_global_capturing", None)
    if capturing is None:
        return None
    capturing.stop_capturing()  # puts the saved descriptors back, closes its copies
    capman._global_capturing = None
    return capman


def drop_assertion_rewriting() -> None:
    """Remove the import hooks of assertion rewriting made before this process was forked:
    the config that made them is gone, the one made next installs its own."""
    sys.meta_path[:] = [
        finder for finder in sys.meta_path if not isinstance(finder, AssertionRewritingHook)
    ]


def add_option(group: pytest.OptionGroup, *names: str, **attrs: Any) -> None:
    """Add an option to a group without pytest's check against lowercase short options
    (``-n`` is xdist's, and procpar's)."""
    group._addoption(*names, **attrs)


def walk_to_files(
    session: pytest.Session, found: Callable[[pytest.Collector], None]
) -> Callable[[], None]:
    """Make the session's collection stop at files: directories are collected as pytest
    collects them (conftests load, ``pytest_ignore_collect`` and ``pytest_collect_file``
    decide), every other collector is handed to ``found`` uncollected (its module is not
    imported). Returns the undo. ``Session.genitems`` is what recurses into collectors."""
    collect = type(session).genitems

    def genitems(node: pytest.Item | pytest.Collector) -> Iterator[pytest.Item]:
        if isinstance(node, (pytest.Session, pytest.Directory, pytest.Item)):
            yield from collect(session, node)
        else:
            found(node)

    session.genitems = genitems  # type: ignore[method-assign]
    return lambda: vars(session).pop("genitems", None)


def collect_file(session: pytest.Session, node: pytest.Collector) -> Iterator[pytest.Item]:
    """The items of ``node``, collected as pytest's own collection would collect them."""
    return type(session).genitems(session, node)


def own_keywords(node: Node) -> Iterable[str]:
    """The keywords ``node`` itself adds to those of its parents (``NodeKeywords`` keeps
    them apart; iterating it walks every parent, for every item)."""
    keywords = node.keywords
    own: dict[str, Any] | None = getattr(keywords, "_markers", None)
    return own if own is not None else keywords


class ReportKeywords:
    """An item's keyword names as a report carries them (``{name: 1}``, as pytest's
    ``TestReport.from_item_and_call`` makes them), with what each parent passes down worked out
    once: iterating ``item.keywords`` walks every parent again, for every item, on the
    per-test path of both the worker and the controller."""

    def __init__(self) -> None:
        self._passed_down: dict[int, tuple[Node, dict[str, Literal[1]]]] = {}

    def of(self, item: Node) -> dict[str, Literal[1]]:
        """The names ``dict.fromkeys(item.keywords, 1)`` holds, in its order."""
        keywords = item.keywords
        if getattr(keywords, "_markers", None) is None:  # not pytest's NodeKeywords
            return dict.fromkeys(keywords, 1)
        names: dict[str, Literal[1]] = dict.fromkeys(own_keywords(item), 1)
        names.update(self.passed_down(item.parent))
        return names

    def passed_down(self, node: Node | None) -> dict[str, Literal[1]]:
        """The names ``node`` gives its children: its own, then those of its parents."""
        if node is None:
            return {}
        known = self._passed_down.get(id(node))
        if known is None or known[0] is not node:
            known = self._passed_down[id(node)] = (node, self.of(node))
        return known[1]


class KeywordChanges:
    """The nodes whose keywords changed in this process since :meth:`watch` (``add_marker``,
    ``node.keywords[name] = ...``): their reports' keywords can no longer be rebuilt from
    another process's copy of the node. pytest's ``NodeKeywords`` has no other way to tell;
    its two ways to add a keyword are watched. Collecting (:meth:`paused`) is no change: a
    node's keywords as collected are what every process knows of it."""

    def __init__(self) -> None:
        self.nodes: set[int] = set()  # by id()
        self._watching = False

    def watch(self, session: pytest.Session) -> None:
        keywords_type = type(session.keywords)
        if getattr(session.keywords, "_markers", None) is None:  # not pytest's NodeKeywords
            return
        setitem, update = keywords_type.__setitem__, keywords_type.update

        def set_and_note(keywords: Any, key: str, value: Any) -> None:
            if self._watching:
                self.nodes.add(id(keywords.node))
            setitem(keywords, key, value)

        def update_and_note(keywords: Any, *args: Any, **kwds: Any) -> None:
            if self._watching:
                self.nodes.add(id(keywords.node))
            update(keywords, *args, **kwds)

        keywords_type.__setitem__ = set_and_note  # type: ignore[method-assign]
        keywords_type.update = update_and_note  # type: ignore[method-assign,assignment]
        self._watching = True

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        watching, self._watching = self._watching, False
        try:
            yield
        finally:
            self._watching = watching

    def touched(self, item: Node) -> bool:
        """Whether ``item``'s keywords, or a parent's, changed."""
        nodes = self.nodes
        return bool(nodes) and any(id(node) in nodes for node in item.listchain())


def reset_for_rerun(item: pytest.Item) -> None:
    """Fresh function-scoped fixtures for an item that runs again in this process (its fixture
    values from the last run would otherwise be reused)."""
    initrequest = getattr(item, "_initrequest", None)
    if initrequest is not None:
        initrequest()


def make_mark(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> pytest.Mark:
    """A marker as a decorator would have made it (``Mark`` itself is private to make)."""
    return pytest.Mark(name, args, kwargs, _ispytest=True)


def structured_nodeid(item: pytest.Item) -> Any:
    """What a report for ``item`` is made with, as pytest's own ``from_item_and_call`` makes
    it: on pytest 9.1+ the parsed ``item.id``, which ``TestReport`` takes as it is (the nodeid
    string it would parse again, three times a test); older pytest has only the string."""
    return item.id if _NODES_HAVE_IDS else item.nodeid  # type: ignore[attr-defined,unused-ignore]


_NODES_HAVE_IDS = isinstance(getattr(pytest.Item, "id", None), property)
