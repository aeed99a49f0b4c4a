"""Replaying a worker's events in the controller as the hook calls serial pytest would make.

The terminal reporter, junitxml, the cache (--lf, --ff, --sw), --durations, the warnings summary
and every other plugin listening to these hooks in the controller see the same calls, with the
same reports, as in a serial run. Each report carries ``node`` (the worker), as under xdist.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytest

from pytest_procpar import junit, logfile, messages, pytest_internals, reports, xdist_compat
from pytest_procpar.durations import DurationStore
from pytest_procpar.extension import LostKind
from pytest_procpar.messages import Event
from pytest_procpar.node import WorkerNode
from pytest_procpar.pytest_internals import ReprFileLocation

_ITEM_EVENTS = (messages.PLAIN_REPORT, messages.REPORT, messages.LOGSTART, messages.LOGFINISH)

# Why the controller reports a test its worker could not: the words of the run record.


class Replayer:
    """Turns the event lists of ITEM frames into hook calls on the controller's config, and
    keeps each replayed item's duration in the durations store (here, not in a hook
    implementation: that would cost every report one more call)."""

    def __init__(
        self, config: pytest.Config, items: Sequence[pytest.Item], durations: DurationStore
    ) -> None:
        self.config = config
        self.hook = config.hook
        self.items = items
        self.durations = durations
        self._hook_proxies: dict[int, Any] = {}
        self.keywords = pytest_internals.ReportKeywords()

    def replay_item(
        self, node: WorkerNode | None, index: int, events: list[Event], seconds: float
    ) -> None:
        """The hook calls of one item's events, which its worker timed at ``seconds`` from
        start to end."""
        item = self.items[index]
        keywords = self.keywords.of(item)
        nodeid = pytest_internals.structured_nodeid(item)
        # As in serial pytest: only the conftests on the item's path hear about it.
        hooks = self._hooks_for(item)
        location = None  # the item's, as computed by the worker and sent with logstart
        phases = 0.0  # setup + call + teardown, as the durations store keeps them
        for event in events:
            match event:
                case (messages.PLAIN_REPORT | messages.REPORT, *_):
                    if location is None:
                        location = item.location
                    report = reports.decode_report(self.config, event, nodeid, location, keywords)
                    if node is not None:
                        xdist_compat.attach_node(report, node)
                    hooks.pytest_runtest_logreport(report=report)
                    phases = report.duration + (phases if report.when != "setup" else 0.0)
                case (messages.LOGSTART, where, other):
                    if other is None:
                        location = where
                    hooks.pytest_runtest_logstart(
                        nodeid=item.nodeid if other is None else other, location=where
                    )
                case (messages.LOGFINISH, where, other):
                    hooks.pytest_runtest_logfinish(
                        nodeid=item.nodeid if other is None else other, location=where
                    )
                    # pytest times the phases with a clock tests can freeze (which then says
                    # decades): they cannot have taken longer than the worker's own measure.
                    self.durations.measure(item.nodeid, min(phases, seconds))
                case _:
                    self._replay_other(hooks, event)

    def set_aside(
        self, node: WorkerNode | None, index: int, events: list[Event]
    ) -> list[pytest.TestReport]:
        """An attempt that runs again (see :mod:`pytest_procpar.retries`): its reports, made but
        not reported; its other events (warnings, log records) replayed as they came."""
        item = self.items[index]
        keywords = self.keywords.of(item)
        nodeid = pytest_internals.structured_nodeid(item)
        hooks = self._hooks_for(item)
        location = item.location
        made = []
        for event in events:
            match event:
                case (messages.PLAIN_REPORT | messages.REPORT, *_):
                    report = reports.decode_report(self.config, event, nodeid, location, keywords)
                    if node is not None:
                        xdist_compat.attach_node(report, node)
                    made.append(report)
                case (messages.LOGSTART, where, None):
                    location = where
                case (messages.LOGSTART | messages.LOGFINISH, *_):
                    pass
                case _:
                    self._replay_other(hooks, event)
        return made

    def replay_reports(self, item: pytest.Item, made: Sequence[pytest.TestReport]) -> None:
        """Report what :meth:`set_aside` made after all (the test will not run again)."""
        hooks = self._hooks_for(item)
        hooks.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        for report in made:
            hooks.pytest_runtest_logreport(report=report)
        hooks.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)

    def replay_session(self, events: list[Event]) -> None:
        """Events outside any item: a worker's warnings, log records, suite properties."""
        for event in events:
            if event[0] in _ITEM_EVENTS:
                raise messages.ProtocolError(("an item's event outside any item", event))
            self._replay_other(self.hook, event)

    def _replay_other(self, hooks: Any, event: Event) -> None:
        match event:
            case (messages.LOG_FILE, text):
                logfile.write_log_file(self.config, text)
            case (messages.SUITE_PROPERTY, name, value):
                junit.add_suite_property(self.config, name, value)
            case (messages.WARNING, data, when, nodeid, where):
                hooks.pytest_warning_recorded.call_historic(
                    kwargs=dict(
                        warning_message=reports.decode_warning(data),
                        when=when,
                        nodeid=nodeid,
                        location=where,
                    )
                )
            case _:
                raise messages.ProtocolError(event)

    def _hooks_for(self, item: pytest.Item) -> Any:
        """``item.ihook``, looked up once per parent node (conftests apply by directory)."""
        key = id(item.parent)
        if key not in self._hook_proxies:
            self._hook_proxies[key] = item.ihook
        return self._hook_proxies[key]

    def fail_item(self, item: pytest.Item, report: pytest.TestReport) -> None:
        """Report ``item`` as failed (``report``, from :meth:`lost_report`) for a reason its
        worker could not report itself; its duration is what ``--durations`` and the
        durations store then see."""
        self.replay_reports(item, [report])
        self.durations.measure(item.nodeid, report.duration)

    def lost_report(
        self,
        node: Any,
        item: pytest.Item,
        message: str,
        when: messages.When,
        seconds: float = 0.0,
        detail: str = "",
        *,
        kind: LostKind,
    ) -> pytest.TestReport:
        """A failed report of ``item``, which ran for ``seconds``, for a reason its worker
        could not report (of ``kind``). The ``detail`` is left out with ``--tb=line``, as pytest
        leaves out a failure's traceback."""
        now = time.time()
        if self.config.option.tbstyle == "line":
            detail = ""
        report = pytest.TestReport(
            nodeid=item.nodeid,
            location=item.location,
            keywords=self.keywords.of(item),
            outcome="failed",
            longrepr=LostTestRepr(item, message, detail, kind),
            when=when,
            sections=[],
            duration=seconds,
            start=now - seconds,
            stop=now,
            user_properties=[],
        )
        if node is not None:
            xdist_compat.attach_node(report, node)
        return report


class LostTestRepr(reports.TextRepr):
    """Why the controller failed a test for its worker: ``message`` is the one line the short
    summary, ``--tb=line`` and JUnit XML show (in CI pytest does not trim it to the terminal's
    width, so a crash's stack must not be part of it); ``detail`` follows it in the report;
    ``kind`` says what happened, for the run record."""

    def __init__(self, item: pytest.Item, message: str, detail: str, kind: LostKind) -> None:
        super().__init__(message + (f"\n\n{detail}" if detail else ""))
        self.kind = kind
        lineno = item.location[1]
        self.reprcrash = ReprFileLocation(
            str(item.path), lineno + 1 if lineno is not None else 0, message
        )
