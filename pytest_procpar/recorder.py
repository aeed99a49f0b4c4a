"""The worker's recorder: registered in the worker's pytest, it turns what the running item
reports (its reports, log start and finish, warnings) into the events the controller replays."""

from __future__ import annotations

import warnings
from typing import cast

import pytest

from pytest_procpar import messages, pytest_internals, reports
from pytest_procpar.messages import Event
from pytest_procpar.shared import Shared

# Set on the worker's session so the running item's teardown takes every fixture down, as serial
# pytest does after -x; not news for the controller, which stopped the run itself.
RUN_STOPPING = "procpar: the run is stopping"


class EventRecorder:
    """Registered in the worker: records the events of the running item for the controller."""

    def __init__(self, config: pytest.Config, shared: Shared, slot: int) -> None:
        self.config = config
        self.shared = shared
        self.slot = slot
        self.events: list[Event] = []
        self.item: pytest.Item | None = None
        # The running item's report keywords as the controller would rebuild them: None when
        # they may differ, since a node in its chain changed here (see begin)
        self.keywords: messages.Keywords | None = None
        self.keyword_names = pytest_internals.ReportKeywords()
        self.keyword_changes = pytest_internals.KeywordChanges()  # watched once the loop runs
        self.live = False  # historic hook replays at registration are not this worker's news
        self.retryable = False  # the running item may run again: its failure is not final

    def begin(self, item: pytest.Item | None) -> None:
        """Record for ``item`` from now (None: between items, the session's own start or end).
        What was recorded since the last send (a log record between two items) is kept."""
        self.item = item
        if item is None or self.keyword_changes.touched(item):
            self.keywords = None  # reports go in full (a test added a marker to a later one)
        else:
            self.keywords = self.keyword_names.of(item)

    def take_events(self) -> list[Event]:
        """What was recorded since the last call, to send."""
        events, self.events = self.events, []
        return events

    def _other_nodeid(self, nodeid: str) -> str | None:
        """The location always travels (the worker computed it anyway, the controller need
        not); the nodeid only when it is not the running item's."""
        item = self.item
        return None if item is not None and nodeid == item.nodeid else nodeid

    def pytest_runtest_logstart(self, nodeid: str, location: messages.Location) -> None:
        location = cast(messages.Location, tuple(location))  # plugins may pass a list
        self.events.append(messages.log_start(location, self._other_nodeid(nodeid)))

    def pytest_runtest_logfinish(self, nodeid: str, location: messages.Location) -> None:
        location = cast(messages.Location, tuple(location))
        self.events.append(messages.log_finish(location, self._other_nodeid(nodeid)))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # As a serial run's terminal reporter does before anything is written: plugins may
        # settle the report's outcome there (pytest's subtests fail a test whose subtests
        # failed), and such a verdict is only known in the process that ran the test.
        self.config.hook.pytest_report_teststatus(report=report, config=self.config)
        if report.failed and not hasattr(report, "wasxfail") and not self.retryable:
            self.shared.failures[self.slot] += 1  # (a retried test's verdict is the controller's)
        if self.item is not None and self.shared.should_stop():
            # Like serial -x: the running item's teardown then takes everything down.
            session = self.item.session
            session.shouldstop = session.shouldstop or RUN_STOPPING
        self.events.append(reports.encode_report(self.config, report, self.item, self.keywords))

    def pytest_warning_recorded(
        self,
        warning_message: warnings.WarningMessage,
        when: str,
        nodeid: str,
        location: tuple[str, int, str] | None,
    ) -> None:
        if self.live:
            data = reports.encode_warning(warning_message)
            self.events.append(messages.warning_recorded(data, when, nodeid, location))
