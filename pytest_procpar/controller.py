"""The controller: replaces pytest's run loop in the main process when ``-n`` asks for workers.

It runs after pytest's own collection (so -k, -m, --deselect and every plugin's
``pytest_collection_modifyitems`` applied once), starts the workers, answers their requests
for work from the scheduler, and replays everything they report through
:class:`~pytest_procpar.replay.Replayer`. It never runs a test itself. When the loop ends it
raises what serial pytest's loop would have raised (``Failed`` after ``-x``, ``Interrupted``
after a stop), so exit codes and closing messages are the same.
"""

from __future__ import annotations

import selectors
import signal
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_procpar import launch, protocol, workitems
from pytest_procpar.durations import DurationStore
from pytest_procpar.options import Settings
from pytest_procpar.replay import Replayer
from pytest_procpar.runreport import RunReport
from pytest_procpar.scheduler import POLICIES, Scheduler
from pytest_procpar.xdist_compat import WorkerNode, new_testrunuid

RESTARTS_PER_WORKER = 4  # like xdist: a crashing suite cannot restart workers forever
SHUTDOWN_GRACE_S = 2.0


class WorkerFailure(Exception):
    """An error inside a worker's own loop (not in a test): serial pytest's INTERNALERROR."""


def describe_exit(exitcode: int | None) -> str:
    """``signal 11 (SIGSEGV)`` or ``exit code 3``, for crash messages."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "unknown signal"
        return f"signal {-exitcode} ({name})"
    return f"exit code {exitcode}"


@dataclass
class WorkerState:
    """The controller's bookkeeping for one worker process."""

    node: WorkerNode
    slot: int
    started: launch.WorkerProcess
    assigned: deque[int] = field(default_factory=deque)  # handed out, not reported, in run order
    finished: bool = False
    fatal: bool = False
    told_done: bool = False

    @property
    def workerid(self) -> str:
        return str(self.node.gateway.id)


class ParallelRun:
    """One parallel execution of ``session.items``."""

    def __init__(
        self, session: pytest.Session, settings: Settings, durations: DurationStore
    ) -> None:
        self.session = session
        self.config = session.config
        self.items = session.items
        self.worker_count = min(settings.workers, len(self.items))
        self.start_method = settings.start_method
        self.notice = ""
        threads = launch.other_threads() if self.start_method == "fork" else []
        if threads:
            self.start_method = "forkserver"
            self.notice = f"; fork is unsafe with threads running ({', '.join(threads)})"
        self.scheduler = self._make_scheduler(settings.dist, durations)
        self.report = RunReport(settings.dist)
        self.replayer = Replayer(self.config, self.items)
        basetemp = self.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
        self.launcher = launch.Launcher(session, self.start_method, self.worker_count, basetemp)
        self.testrunuid = new_testrunuid()
        self.selector = selectors.DefaultSelector()
        self.workers: list[WorkerState] = []
        self.started_count = 0
        self.restarts_left = RESTARTS_PER_WORKER * self.worker_count
        self.fatal: tuple[WorkerState, str, tuple[Any, ...]] | None = None

    def _make_scheduler(self, dist: str, durations: DurationStore) -> Scheduler:
        cache = self.config.cache
        lastfailed = cache.get("cache/lastfailed", {}) if cache is not None else {}
        described = workitems.describe(self.items, durations.known, lastfailed)
        custom: Scheduler | None = self.config.hook.pytest_procpar_make_scheduler(
            config=self.config, items=described, workers=self.worker_count
        )
        return custom if custom is not None else POLICIES[dist](described, self.worker_count)

    # -- starting -------------------------------------------------------------------------

    def _start_worker(self, slot: int) -> None:
        workerinput = {
            "workerid": f"gw{self.started_count}",
            "workercount": self.worker_count,
            "testrunuid": self.testrunuid,
            "mainargv": list(sys.argv),
        }
        self.started_count += 1
        node = WorkerNode(self.config, workerinput)
        self.config.hook.pytest_configure_node(node=node)
        self.scheduler.add_worker(node.gateway.id)
        initial = self.scheduler.next_batch(node.gateway.id)
        sys.stdout.flush()  # buffered output must not be written again by the copy
        sys.stderr.flush()
        started = self.launcher.start(node.workerinput, slot, initial)
        state = WorkerState(node, slot, started, deque(initial))
        self.workers.append(state)
        self.selector.register(started.reader.fd, selectors.EVENT_READ, (state, "pipe"))
        self.selector.register(started.process.sentinel, selectors.EVENT_READ, (state, "exit"))

    def _write_header(self) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"procpar: {self.worker_count} workers ({self.start_method}{self.notice}), "
                f"{len(self.items)} items"
            )
            reporter.flush()

    # -- the loop -------------------------------------------------------------------------

    def execute(self) -> None:
        self._write_header()
        try:
            for slot in range(self.worker_count):
                self._start_worker(slot)
            while self.selector.get_map():
                for key, _ in self.selector.select():
                    if self.selector.get_map().get(key.fd) is not key:
                        continue  # closed by an earlier event of this round
                    state, what = key.data
                    if what == "pipe":
                        self._read(state)
                    else:
                        self._exited(state)
                self._check_stop()
        except KeyboardInterrupt:
            self._stop()
            self._drain_until_gone(SHUTDOWN_GRACE_S)
            raise
        finally:
            self._terminate_all()
            self.report.finish()
        self._raise_fatal()

    @property
    def stopping(self) -> bool:
        return bool(self.launcher.shared.stop.value)

    def _stop(self) -> None:
        self.launcher.shared.stop.value = 1
        for state in self.workers:
            self._tell_done(state)

    def _tell_done(self, state: WorkerState) -> None:
        if not state.told_done:
            state.told_done = True
            state.started.send((protocol.DONE,))

    def _check_stop(self) -> None:
        if not self.stopping and (self.session.shouldfail or self.session.shouldstop or self.fatal):
            self._stop()

    def _read(self, state: WorkerState) -> None:
        reader = state.started.reader
        for message in reader.read_available():
            self._dispatch(state, message)
        if reader.eof:
            self.selector.unregister(reader.fd)

    def _dispatch(self, state: WorkerState, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == protocol.ITEM:
            _, index, events, seconds = message
            if index is not None:
                if index in state.assigned:
                    state.assigned.remove(index)
                self.report.item_done(state.workerid, seconds)
            self.replayer.replay(state.node, index, events)
        elif kind == protocol.WANT:
            self._give_work(state)
        elif kind == protocol.READY:
            self.config.hook.pytest_testnodeready(node=state.node)
        elif kind == protocol.STOP:
            _, shouldfail, shouldstop = message
            self.session.shouldfail = self.session.shouldfail or shouldfail
            self.session.shouldstop = self.session.shouldstop or shouldstop
        elif kind == protocol.FINISHED:
            state.node.workeroutput = message[1]
            state.finished = True
            self.config.hook.pytest_testnodedown(node=state.node, error=None)
        elif kind == protocol.FATAL:
            state.fatal = True
            if self.fatal is None:
                self.fatal = (state, message[1], message[2:])

    def _give_work(self, state: WorkerState) -> None:
        batch = [] if self.stopping else self.scheduler.next_batch(state.workerid)
        if batch:
            state.assigned.extend(batch)
            state.started.send((protocol.RUN, batch))
        else:
            self._tell_done(state)

    # -- endings --------------------------------------------------------------------------

    def _forget(self, state: WorkerState) -> None:
        for fd in (state.started.reader.fd, state.started.process.sentinel):
            if fd in self.selector.get_map():
                self.selector.unregister(fd)
        state.started.process.join()
        self.launcher.forget(state.started)

    def _exited(self, state: WorkerState) -> None:
        reader = state.started.reader
        for message in reader.receive(block=False):
            self._dispatch(state, message)
        self._forget(state)
        if state.finished or state.fatal:
            return
        self._crashed(state, describe_exit(state.started.process.exitcode))

    def _crashed(self, state: WorkerState, how: str) -> None:
        """The worker died: fail the item it was running, give its queue to others."""
        if state.assigned:
            item = self.items[state.assigned.popleft()]
            message = f"worker {state.workerid} crashed while running {item.nodeid}: {how}"
            report = self.replayer.fail_item(state.node, item, message)
            self.config.hook.pytest_handlecrashitem(
                crashitem=item.nodeid, report=report, sched=self.scheduler
            )
        else:
            message = f"worker {state.workerid} crashed: {how}"
        self.scheduler.remove_worker(state.workerid, list(state.assigned))
        state.assigned.clear()
        self.config.hook.pytest_testnodedown(node=state.node, error=message)
        if not self.scheduler.has_pending() or self.stopping:
            return
        if self.restarts_left > 0:
            self.restarts_left -= 1
            self._start_worker(state.slot)
        elif not any(not other.finished and not other.fatal for other in self.workers):
            self.session.shouldstop = "procpar: too many worker crashes, stopping"

    def _drain_until_gone(self, timeout: float) -> None:
        """After Ctrl-C: keep replaying what workers still send, for a short while."""
        for state in self.workers:
            state.started.process.join(timeout)
            if state.started.reader.fd in self.selector.get_map():
                for message in state.started.reader.receive(block=False):
                    if message[0] == protocol.ITEM:
                        self._dispatch(state, message)

    def _terminate_all(self) -> None:
        for state in self.workers:
            process = state.started.process
            if process.is_alive():
                process.kill()
            process.join()
            self.launcher.forget(state.started)
        self.selector.close()
        self.launcher.close()

    def _raise_fatal(self) -> None:
        if self.fatal is None:
            return
        state, kind, payload = self.fatal
        if kind == "exit":
            raise pytest.exit.Exception(payload[0], payload[1])
        if kind == "interrupt":
            raise KeyboardInterrupt(payload[0])
        if kind == "mismatch":
            raise self.session.Interrupted(f"procpar: worker {state.workerid} {payload[0]}")
        raise WorkerFailure(f"worker {state.workerid} failed:\n{payload[0]}")


class Controller:
    """Plugin registered in the main process when the run has workers."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.settings = settings
        self.durations = DurationStore(config)
        self.run: ParallelRun | None = None

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:  # results of different files interleave: no path prefixes
            reporter.showfspath = False

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            count = session.testsfailed
            raise session.Interrupted(f"{count} error{'s' if count != 1 else ''} during collection")
        if session.config.option.collectonly or not session.items:
            return True
        self.run = ParallelRun(session, self.settings, self.durations)
        self.run.execute()
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        if session.shouldstop:
            raise session.Interrupted(session.shouldstop)
        return True

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.durations.record(report)

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
