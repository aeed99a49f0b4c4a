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
import shutil
import signal
import sys
import tempfile
import threading
from collections import Counter, deque
from collections.abc import Callable, Collection, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_procpar import (
    coverage_support,
    faults,
    isolation,
    junit,
    launch,
    once,
    protocol,
    workitems,
)
from pytest_procpar.durations import DurationStore
from pytest_procpar.options import Settings
from pytest_procpar.output import BatchedTerminal, OutputRelay
from pytest_procpar.remote import RemoteStartError
from pytest_procpar.replay import Replayer
from pytest_procpar.runreport import RunReport
from pytest_procpar.scheduler import POLICIES, Scheduler
from pytest_procpar.timelimits import Overdue, TimeLimits
from pytest_procpar.xdist_compat import WorkerNode, new_testrunuid

RESTARTS_PER_WORKER = 4  # like xdist: a crashing suite cannot restart workers forever
INTERRUPT_GRACE_S = 1.0  # after Ctrl-C: time for workers to answer, before TERM then KILL
INTERRUPT_TEARDOWN_S = 30.0  # after Ctrl-C: time for workers that answered to tear down


class WorkerFailure(Exception):
    """An error inside a worker's own loop (not in a test): serial pytest's INTERNALERROR."""


@dataclass
class WorkerState:
    """The controller's bookkeeping for one worker process."""

    node: WorkerNode
    slot: int
    started: launch.WorkerHandle
    stack_path: Path  # where it writes its stack when it crashes or hangs, and what it printed
    assigned: deque[int] = field(default_factory=deque)  # handed out, not reported, in run order
    finished: bool = False
    fatal: bool = False
    told_done: bool = False
    alive: bool = True
    overdue: Overdue = field(default_factory=Overdue)
    heard_at: float = 0.0  # when its last frame arrived
    internal_error: tuple[int, str] | None = None  # (item index, traceback)
    relays: list[OutputRelay] = field(default_factory=list)

    @property
    def workerid(self) -> str:
        return str(self.node.gateway.id)


class ParallelRun:
    """One parallel execution of ``session.items``."""

    def __init__(
        self,
        session: pytest.Session,
        settings: Settings,
        durations: DurationStore,
        deselected: Collection[str] = (),
    ) -> None:
        self.session = session
        self.config = session.config
        self.items = session.items
        # Never more workers than items, except that "each" runs every item on every worker.
        self.worker_count = (
            settings.workers if settings.dist == "each" else min(settings.workers, len(self.items))
        )
        # What xdist-aware plugins read for the number of workers, resolved as xdist resolves
        # ``-n auto`` (syrupy expects a report from each).
        self.config.option.numprocesses = self.worker_count
        self.start_method = settings.start_method
        self.notice = ""
        threads = launch.other_threads() if self.start_method == "fork" else []
        if threads:
            self.start_method = "forkserver"
            self.notice = f"; fork is unsafe with threads running ({', '.join(threads)})"
        self.dist = settings.dist
        self.chains = workitems.Chains(self.items)
        self.durations = durations
        self.scheduler, policy = self._make_scheduler(settings.dist)
        self.report = RunReport(policy)
        self.replayer = Replayer(self.config, self.items)
        self.time_limits = TimeLimits(settings.timeout, self.items)
        factory = getattr(self.config, "_tmp_path_factory", None)  # None: -p no:tmpdir
        self.own_basetemp = None if factory else Path(tempfile.mkdtemp(prefix="procpar-"))
        basetemp = Path(factory.getbasetemp()) if factory else Path(str(self.own_basetemp))
        local = [None] * (settings.workers - len(settings.remote))
        slot_specs = [*local, *settings.remote][: self.worker_count]
        self.launcher = launch.Launcher(
            session,
            self.start_method,
            slot_specs,
            basetemp,
            settings.remote_rootdir,
            deselected,
        )
        self.testrunuid = new_testrunuid()
        self.selector = selectors.DefaultSelector()
        self.terminal = BatchedTerminal(None)  # the real one while workers run
        self.workers: list[WorkerState] = []
        self.started_count = 0
        self.restarts_left = (
            settings.max_restarts
            if settings.max_restarts is not None
            else RESTARTS_PER_WORKER * self.worker_count
        )
        self.fatal: tuple[WorkerState, str, tuple[Any, ...]] | None = None
        self.interrupted_test: Any = None  # where the first interrupted test was, as shown
        self.done: set[int] = set()
        self.gave_up: str | None = None
        self.run_fixtures: list[once.RunFixture] = []

    def _make_scheduler(self, dist: str) -> tuple[Scheduler, str]:
        """The scheduler, and the policy's name for the run report (a plugin's: its class)."""
        cache = getattr(self.config, "cache", None)
        lastfailed = cache.get("cache/lastfailed", {}) if cache is not None else {}
        described = workitems.describe(self.items, self.durations.known, lastfailed, self.chains)
        custom: Scheduler | None = self.config.hook.pytest_procpar_make_scheduler(
            config=self.config, items=described, workers=self.worker_count
        )
        if custom is not None:
            return custom, type(custom).__name__
        return POLICIES[dist](described, self.worker_count), dist

    # -- starting -------------------------------------------------------------------------

    def _start_worker(self, slot: int) -> None:
        workerinput = {
            "workerid": f"gw{self.started_count}",
            "workercount": self.worker_count,
            "testrunuid": self.testrunuid,
            "mainargv": list(sys.argv),
            coverage_support.SETTINGS_KEY: coverage_support.settings_for_workers(
                self.config.pluginmanager.has_plugin("_cov")
            ),
            isolation.LOG_FILE_KEY: isolation.log_file_configured(self.config),
            **junit.workerinput(self.config),
        }
        if self.start_method != "fork" or self.launcher.is_remote(slot):
            # (forked workers inherit the values themselves)
            workerinput[once.WORKERINPUT_KEY] = once.values_for_spawn(self.run_fixtures)
        self.started_count += 1
        node = WorkerNode(self.config, workerinput)
        self.config.hook.pytest_configure_node(node=node)
        self.scheduler.add_worker(node.gateway.id)
        initial = self.chains.expand(self.scheduler.next_batch(node.gateway.id))
        sys.stdout.flush()  # buffered output must not be written again by the copy
        sys.stderr.flush()
        try:
            started = self.launcher.start(node.workerinput, slot, initial)
        except RemoteStartError as exc:
            raise self.session.Interrupted(str(exc)) from None
        node.interpreter = started.interpreter() or {}
        stack_path = self.launcher.stack_path(node.workerinput)
        state = WorkerState(node, slot, started, stack_path, deque(initial))
        self.workers.append(state)
        self.config.hook.pytest_procpar_worker_started(node=node)
        self._scheduled(state, initial)
        self.selector.register(started.reader.fd, selectors.EVENT_READ, (state, "pipe"))
        self.selector.register(started.sentinel, selectors.EVENT_READ, (state, "exit"))
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        for stream, fd in started.output_fds.items():
            relay = OutputRelay(fd, state.workerid, stream, reporter)
            state.relays.append(relay)
            self.selector.register(fd, selectors.EVENT_READ, (state, relay))

    def _write_header(self) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"procpar: {self.worker_count} worker{'s' if self.worker_count != 1 else ''} "
                f"({self._kinds()}), "
                f"{len(self.items)} items"
            )
            reporter.flush()

    def _kinds(self) -> str:
        """``fork``, ``2 fork, 2*popen``: how the workers are started."""
        remote = Counter(self.launcher.slot_specs)  # in slot order; None counts local ones
        local = remote.pop(None, 0)
        method = f"{self.start_method}{self.notice}"
        kinds = [f"{local} {method}" if remote else method] if local else []
        kinds += [f"{count}*{spec}" for spec, count in remote.items()]
        return ", ".join(kinds)

    # -- the loop -------------------------------------------------------------------------

    def execute(self) -> None:
        self._write_header()
        restore = _interrupt_on_sigterm()
        self.terminal = BatchedTerminal(self.config.pluginmanager.get_plugin("terminalreporter"))
        try:
            self.run_fixtures = once.set_up_for(self.items, self.config)
            for slot in range(self.worker_count):
                self._start_worker(slot)
            self._serve(until=None)
        except KeyboardInterrupt:
            self._interrupt()
            raise
        finally:
            restore()
            self.terminal.restore()
            self._terminate_all()
            once.tear_down(self.run_fixtures)
            if self.own_basetemp is not None:
                shutil.rmtree(self.own_basetemp, ignore_errors=True)
            self.report.finish()
        self._account()
        self._raise_fatal()

    def _serve(self, until: float | None) -> None:
        """Handle worker output and exits until every worker is gone (or ``until``)."""
        while self.selector.get_map():
            self.terminal.release_if_due()
            wait = self._wait_time()
            if until is not None:
                wait = max(0.0, min(wait if wait is not None else until, until - faults.now()))
                if wait == 0.0:
                    return
            for key, _ in self.selector.select(wait):
                if self.selector.get_map().get(key.fd) is not key:
                    continue  # closed by an earlier event of this round
                state, what = key.data
                if what == "pipe":
                    self._read(state)
                elif what == "exit":
                    self._exited(state)
                elif not what.read():
                    self.selector.unregister(key.fd)
            self.time_limits.enforce(self._watched(), faults.now())
            self._check_stop()

    @property
    def stopping(self) -> bool:
        return bool(self.launcher.shared.stop.value)

    def _stop(self) -> None:
        self.launcher.shared.stop.value = 1
        for state in self.workers:
            state.started.halt()
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
        state.heard_at = faults.now()
        if reader.eof:
            self.selector.unregister(reader.fd)

    def _dispatch(self, state: WorkerState, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == protocol.ITEM:
            _, index, events, seconds = message
            if index is not None:
                if index in state.assigned:
                    state.assigned.remove(index)
                self.done.add(index)
                self.report.item_done(state.workerid, seconds)
            self.replayer.replay(state.node, index, events)
            if index is not None:
                self.durations.at_most(self.items[index].nodeid, seconds)
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
            coverage_support.merge(state.node.workeroutput)
            self.config.hook.pytest_testnodedown(node=state.node, error=None)
            self.config.hook.pytest_procpar_worker_finished(node=state.node, error=None)
        elif kind == protocol.FATAL and message[1] == "internal" and message[3] is not None:
            state.internal_error = (message[3], message[2])  # the test broke its worker
        elif kind == protocol.FATAL:
            state.fatal = True
            if message[1] == "interrupt" and message[3] is not None and not self.interrupted_test:
                self.interrupted_test = protocol.decode_interrupt(self.config, message[2])
            if self.fatal is None:
                self.fatal = (state, message[1], message[2:])

    def _give_work(self, state: WorkerState) -> None:
        batch = [] if self.stopping else self.scheduler.next_batch(state.workerid)
        batch = self.chains.expand(batch)
        if batch:
            state.assigned.extend(batch)
            state.started.send((protocol.RUN, batch))
            self._scheduled(state, batch)
        else:
            self._tell_done(state)

    def _scheduled(self, state: WorkerState, batch: list[int]) -> None:
        nodeids = [self.items[index].nodeid for index in batch]
        self.config.hook.pytest_procpar_items_scheduled(node=state.node, nodeids=nodeids)

    # -- time limits ----------------------------------------------------------------------

    def _watched(self) -> list[WorkerState]:
        return [state for state in self.workers if state.alive]

    def _wait_time(self) -> float | None:
        waits = [
            self.terminal.wait_time(),
            self.time_limits.wait_time(self._watched(), faults.now()),
        ]
        known = [wait for wait in waits if wait is not None]
        return min(known) if known else None

    # -- endings --------------------------------------------------------------------------

    def _forget(self, state: WorkerState) -> None:
        for relay in state.relays:
            relay.drain()
        fds = [state.started.reader.fd, state.started.sentinel]
        for fd in fds + [relay.fd for relay in state.relays]:
            if fd in self.selector.get_map():
                self.selector.unregister(fd)
        state.started.join()
        state.alive = False
        self.launcher.forget(state.started)

    def _exited(self, state: WorkerState) -> None:
        reader = state.started.reader
        for message in reader.receive(block=False):
            self._dispatch(state, message)
        self._forget(state)
        stack = faults.read_stack(state.stack_path)
        if state.overdue.test is not None:
            index, limit = state.overdue.test
            self._lost(state, index, f"Timeout after {limit:g}s", stack)
        elif state.internal_error is not None:
            index, trace = state.internal_error
            self._lost(state, index, "the test left its worker unusable", trace)
        elif not (state.finished or state.fatal):
            running = state.assigned[0] if state.assigned else None
            how = state.started.describe_exit()
            printed = isolation.printed_before_crash(state.stack_path)
            detail = "\n\n".join(part for part in (stack, printed) if part)
            self._lost(state, running, f"worker {state.workerid} crashed", detail, how)

    def _lost(
        self, state: WorkerState, index: int | None, what: str, detail: str, how: str = ""
    ) -> None:
        """A worker is gone without finishing: fail its test, give its queue to others."""
        where = f" while running {self.items[index].nodeid}" if index is not None else ""
        message = f"{what}{where}" + (f": {how}" if how else "")
        if index is not None:
            if index in state.assigned:
                state.assigned.remove(index)
            item = self.items[index]
            # A test that already reported keeps its outcome and gains a teardown error.
            when = "teardown" if index in self.done else "call"
            running, since = state.started.running()
            seconds = faults.now() - since if running == index else 0.0  # as far as it got
            report = self.replayer.fail_item(state.node, item, message, when, seconds, detail)
            self.done.add(index)
            self.config.hook.pytest_handlecrashitem(
                crashitem=item.nodeid, report=report, sched=self.scheduler
            )
        self.scheduler.remove_worker(state.workerid, self.chains.collapse(state.assigned))
        state.assigned.clear()
        self.config.hook.pytest_testnodedown(node=state.node, error=message)
        self.config.hook.pytest_procpar_worker_finished(node=state.node, error=message)
        if not self.scheduler.has_pending() or self.stopping:
            return
        if self.restarts_left > 0:
            self.restarts_left -= 1
            self._start_worker(state.slot)
        elif not any(other.alive and not other.told_done for other in self.workers):
            # Nobody left who will ask for work again: what is pending cannot run.
            restarts = self.started_count - self.worker_count
            self.gave_up = f"no workers left after {restarts} worker restarts"
            self._stop()

    def _interrupt(self) -> None:
        """Ctrl-C or SIGTERM: stop every worker's test as serial pytest's would stop. Workers
        that answer get time to tear their sessions down, the others are ended after a moment.
        """
        self._stop()
        asked = faults.now()
        for state in self.workers:
            if state.alive:
                state.started.signal(signal.SIGINT)
        self._serve(until=asked + INTERRUPT_GRACE_S)
        self._end_workers([state for state in self.workers if state.heard_at < asked])
        self._serve(until=asked + INTERRUPT_TEARDOWN_S)

    def _terminate_all(self) -> None:
        """No process outlives the run."""
        self._end_workers(self.workers)
        self.selector.close()
        self.launcher.close()

    def _end_workers(self, states: list[WorkerState]) -> None:
        """TERM every worker group still there, KILL them all once a common grace period is
        over; what they had not reported stays unreported, as after Ctrl-C in serial pytest."""
        states = [state for state in states if state.alive]
        for state in states:
            state.started.signal(signal.SIGTERM)
        deadline = faults.now() + INTERRUPT_GRACE_S
        for state in states:
            state.started.join(max(0.0, deadline - faults.now()))
        for state in states:
            if state.started.is_alive():
                state.started.signal(signal.SIGKILL)
            self._forget(state)

    def _account(self) -> None:
        """Every collected item ends with an outcome: report those that never ran."""
        if self.dist == "each" or (self.stopping and not self.gave_up):
            return
        reason = self.gave_up or "procpar lost track of it; please report this as a bug"
        for index, item in enumerate(self.items):
            if index not in self.done:
                self.replayer.fail_item(None, item, f"not run: {reason}", "call")
                self.done.add(index)

    def _raise_fatal(self) -> None:
        if self.fatal is None:
            return
        state, kind, payload = self.fatal
        if kind == "exit":
            raise pytest.exit.Exception(payload[0], payload[1])
        if kind == "interrupt":
            raise KeyboardInterrupt  # shown where the test was: see pytest_keyboard_interrupt
        if kind in ("mismatch", protocol.UNAVAILABLE):
            raise self.session.Interrupted(f"procpar: worker {state.workerid} {payload[0]}")
        raise WorkerFailure(f"worker {state.workerid} failed:\n{payload[0]}")


class ShownRepr:
    """Stands in for an ExceptionInfo where pytest only asks for its representation: the one
    a worker built of its own exception."""

    def __init__(self, representation: Any) -> None:
        self.representation = representation

    def getrepr(self, **options: Any) -> Any:
        return self.representation


def _interrupt_on_sigterm() -> Callable[[], None]:
    """While workers run, SIGTERM to the controller ends the run like Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


class Controller:
    """Plugin registered in the main process when the run has workers."""

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
            launch.collection_done()

    def pytest_collectreport(self) -> None:
        if self.collecting:
            launch.set_aside_while_collecting()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            count = session.testsfailed
            raise session.Interrupted(f"{count} error{'s' if count != 1 else ''} during collection")
        if session.config.option.collectonly or not session.items:
            return True
        launch.set_suite_aside()
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
