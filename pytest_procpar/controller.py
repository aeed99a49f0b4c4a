"""The controller's plugin: in the main process, it runs the items on workers in place of
pytest's own run loop, when ``-n`` asks for workers.

It runs after pytest's own collection (so -k, -m, --deselect and every plugin's
``pytest_collection_modifyitems`` applied once) and hands the collected items to a
:class:`~pytest_procpar.run.ParallelRun`, which never runs a test itself. Around it, the plugin
keeps the garbage collector off the collected suite, stores the durations the workers measured,
points an interruption at the test it hit, and prints the run report.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from typing import Any

import pytest

from pytest_procpar import collect_mode, collect_shares, gc_policy, launch, run_record
from pytest_procpar.collect_phase import FileWalk, SharePlan
from pytest_procpar.collect_run import CollectingRun
from pytest_procpar.collect_shares import CollectionCosts
from pytest_procpar.durations import DurationStore
from pytest_procpar.run import ParallelRun
from pytest_procpar.settings import Settings


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
        self.where = collect_mode.Decision(False, "")  # where the suite is collected, and why
        self.walk: FileWalk | None = None  # collecting in workers: the walk to the files
        self.costs: CollectionCosts | None = None
        self.file_started: dict[str, float] = {}  # collecting here: files being collected
        self.collect_started = 0.0

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:  # results of different files interleave: no path prefixes
            reporter.showfspath = False

    @pytest.hookimpl(wrapper=True)
    def pytest_collection(self, session: pytest.Session) -> Generator[None, object, object]:
        self.collecting = True
        config = session.config
        self.costs = costs = CollectionCosts(config)
        settings = self.settings
        self.where = collect_mode.before_walk(
            config,
            settings.collect,
            launch.local_start(config, settings.start_method, settings.workers).method,
            settings.workers,
            bool(settings.remote),
            settings.dist,
        )
        if self.where.in_workers:
            self.walk = FileWalk(session)
        self.collect_started = time.perf_counter()
        try:
            return (yield)
        finally:
            self.collecting = False
            if self.walk is not None:  # collection ended before its items were modified
                self.walk.finish()
                self.walk = None
            gc_policy.collection_done()
            if not isinstance(self.run, CollectingRun):
                seconds = time.perf_counter() - self.collect_started
                costs.record({}, seconds, len(session.items))

    @pytest.hookimpl(wrapper=True, trylast=True)  # innermost: see collect_in_workers
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> Generator[None, object, object]:
        """Collecting in workers: the walk found the files; every plugin's hook runs in the
        workers over their shares, and here over no items. The workers' items arrive before
        the wrappers around this one resume, so those (``--lf``, ``--nf``, ``--shard``) see
        the whole suite."""
        walk, self.walk = self.walk, None
        if walk is None:
            return (yield)
        walked = time.perf_counter() - self.collect_started
        units = walk.finish()
        reason = collect_mode.after_walk(config) if units else "no test files found"
        if reason is not None:
            self.where = collect_mode.Decision(False, reason)
            _notice(config, f"procpar: collecting in the controller: {reason}")
            walk.collect_here(items)
            return (yield)
        assert self.costs is not None
        nodes = [(unit.nodeid, str(unit.path)) for unit in units]
        costs = collect_shares.unit_costs(nodes, self.costs.files, self.durations.known)
        shares = collect_shares.split(
            [cost.collect + cost.run for cost in costs], self.settings.workers
        )
        if self.where.weigh:
            reason = collect_shares.not_worth_it(
                costs,
                shares,
                self.settings.workers,
                self.costs.last_items,
                self.where.collected_again,
            )
            if reason is not None:
                self.where = collect_mode.Decision(False, f"auto: {reason}")
                walk.collect_here(items)
                return (yield)
        result = yield
        run = CollectingRun(session, self.settings, self.durations, SharePlan(units, shares))
        self.run = run
        run.collect_in_workers(items)
        seconds = run.collection.seconds
        # What collecting once would have taken: the walk, and every file's own time.
        self.costs.record(seconds, walked + sum(seconds.values()), len(items))
        return result

    def pytest_collectstart(self, collector: pytest.Collector) -> None:
        if self.collecting and isinstance(collector, pytest.File):
            self.file_started[collector.nodeid] = time.perf_counter()

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if self.collecting:
            gc_policy.set_aside_while_collecting()
            started = self.file_started.pop(report.nodeid, None)
            if started is not None and self.costs is not None:
                self.costs.record({report.nodeid: time.perf_counter() - started})

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        run = self.run
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            if run is not None:
                run.abandon()
            count = session.testsfailed
            raise session.Interrupted(f"{count} error{'s' if count != 1 else ''} during collection")
        if session.config.option.collectonly or not session.items:
            if run is not None:
                run.abandon()
            return True
        gc_policy.set_suite_aside()
        settings = self.settings
        run_record.start_recording(
            session.config, session.items, settings.run_records, settings.workers
        )
        if isinstance(run, CollectingRun):
            run.items_final()
            where = "workers"
        else:
            self.run = run = ParallelRun(session, self.settings, self.durations, self.deselected)
            where = "the controller"
        run.execute(f"collected in {where} ({self.where.reason})")
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

    def pytest_sessionfinish(self) -> None:
        if self.run is not None:
            self.run.abandon()  # if the session ended before the run did (a usage error)
            self.durations.save()
        if self.costs is not None:
            self.costs.save()

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


def _notice(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_line(line)
