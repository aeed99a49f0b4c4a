"""The controller's plugin: in the main process, it runs the items on workers in place of
pytest's own run loop, when ``-n`` asks for workers.

It runs after pytest's own collection (so -k, -m, --deselect and every plugin's
``pytest_collection_modifyitems`` applied once) and hands the collected items to a
:class:`~pytest_procpar.run.ParallelRun`, which never runs a test itself. Around it, the plugin
keeps the garbage collector off the collected suite, stores the durations the workers measured,
points an interruption at the test it hit, and prints the run report.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import pytest

from pytest_procpar import gc_policy
from pytest_procpar.durations import DurationStore
from pytest_procpar.options import Settings
from pytest_procpar.run import ParallelRun


class ShownRepr:
    """Stands in for an ExceptionInfo where pytest only asks for its representation: the one
    a worker built of its own exception."""

    def __init__(self, representation: Any) -> None:
        self.representation = representation

    def getrepr(self, **options: Any) -> Any:
        return self.representation


class ControllerPlugin:
    """Registered in the main process when the run has workers."""

    def __init__(self, settings: Settings, durations: DurationStore) -> None:
        self.settings = settings
        self.durations = durations
        self.run: ParallelRun | None = None
        self.deselected: set[str] = set()  # for workers that collect again: not a mismatch
        self.collecting = False

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:  # results of different files interleave: no path prefixes
            reporter.showfspath = False

    @pytest.hookimpl(wrapper=True)
    def pytest_collection(self) -> Generator[None, object, object]:
        self.collecting = True
        try:
            return (yield)
        finally:
            self.collecting = False
            gc_policy.collection_done()

    def pytest_collectreport(self) -> None:
        if self.collecting:
            gc_policy.set_aside_while_collecting()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            count = session.testsfailed
            raise session.Interrupted(f"{count} error{'s' if count != 1 else ''} during collection")
        if session.config.option.collectonly or not session.items:
            return True
        gc_policy.set_suite_aside()
        self.run = ParallelRun(session, self.settings, self.durations, self.deselected)
        self.run.execute()
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        if session.shouldstop:
            raise session.Interrupted(session.shouldstop)
        return True

    @pytest.hookimpl(trylast=True)  # after the terminal reporter noted the controller's own
    def pytest_keyboard_interrupt(self) -> None:
        """Point the interruption banner at the test a worker was running, as serial pytest
        points at the test's line, not at the controller's loop."""
        run = self.run
        if run is None or run.interrupted_test is None:
            return
        reporter = run.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.pytest_keyboard_interrupt(excinfo=ShownRepr(run.interrupted_test))

    def pytest_deselected(self, items: Sequence[pytest.Item]) -> None:
        self.deselected.update(item.nodeid for item in items)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.durations.record(report)

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        self.durations.finish(nodeid)

    def pytest_sessionfinish(self) -> None:
        if self.run is not None:
            self.durations.save()

    def pytest_terminal_summary(
        self, terminalreporter: pytest.TerminalReporter, config: pytest.Config
    ) -> None:
        run = self.run
        if run is None or not run.report.workers:
            return
        if config.option.procpar_report or config.get_verbosity() > 0:
            terminalreporter.write_sep("=", "procpar run report")
            for line in run.report.table(run.worker_count, self.durations.slowest(5)):
                terminalreporter.write_line(line)
        else:
            slowest = self.durations.slowest(1)
            terminalreporter.write_line(run.report.summary_line(run.worker_count, slowest))
