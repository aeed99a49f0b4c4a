"""One parallel run of the collected items: start the workers, serve them, end them.

The run owns the loop. It wakes when a worker sends frames (handed to the
:class:`~pytest_procpar.dispatch.Dispatcher`), writes output (relayed to the terminal), or
exits (:class:`~pytest_procpar.losses.LossAccounting` decides what it lost, and a replacement
may start), or when a time limit is due. It answers requests for work from the scheduler, and
stops every worker one way (:meth:`~pytest_procpar.pool.WorkerPool.halt_all`) when the run
must stop. When it ends it raises what serial pytest's loop would have raised, so exit codes
and closing messages are the same.
"""

from __future__ import annotations

import shutil
import signal
import sys
from collections.abc import Callable, Collection
from typing import Any

import pytest

from pytest_procpar import (
    faults,
    gc_policy,
    isolation,
    launch,
    messages,
    resources,
    scheduling,
    workitems,
    xdist_compat,
)
from pytest_procpar.dispatch import Dispatcher
from pytest_procpar.durations import DurationStore
from pytest_procpar.extension import AttemptPolicy, RunPlan, Ticker
from pytest_procpar.live import LiveView
from pytest_procpar.losses import NOT_RUN_BUG, LossAccounting
from pytest_procpar.node import WorkerNode
from pytest_procpar.output import BatchedTerminal
from pytest_procpar.pool import Lifecycle, Worker, WorkerPool
from pytest_procpar.remote import RemoteStartError
from pytest_procpar.replay import Replayer
from pytest_procpar.runreport import RunReport
from pytest_procpar.scheduler import Scheduler
from pytest_procpar.settings import Settings
from pytest_procpar.template import TemplateGone
from pytest_procpar.xdist_compat import new_testrunuid

RESTARTS_PER_WORKER = 4  # like xdist: a crashing suite cannot restart workers forever
INTERRUPT_GRACE_S = 1.0  # after Ctrl-C: time for workers to answer, before TERM then KILL
INTERRUPT_TEARDOWN_S = 30.0  # after Ctrl-C: time for workers that answered to tear down
LOCK_WAIT_S = 1.0  # a lost worker's gate: how long the controller waits for its lock


class WorkerFailure(Exception):
    """An error inside a worker's own loop (not in a test): serial pytest's INTERNALERROR."""


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
        self.settings = settings
        self.items = session.items
        self.worker_count = self._worker_count(settings)
        xdist_compat.announce_distribution(self.config, settings.dist, self.worker_count)
        local = launch.local_start(self.config, settings.start_method, self.worker_count)
        self.start_method, self.notice = local.method, local.notice
        self.dist = settings.dist
        self.durations = durations
        self.report = RunReport(settings.dist)
        self.replayer = Replayer(self.config, self.items, durations)
        self.dispatcher = Dispatcher(
            session, self.replayer, self.report, self._give_work, self._collected
        )
        self.tickers: list[Ticker] = []  # the features' (time limits), once the items are known
        basetemp, self.own_basetemp = isolation.controller_basetemp(self.config)
        local_slots = [None] * (settings.workers - len(settings.remote))
        slot_specs = [*local_slots, *settings.remote][: self.worker_count]
        launcher = launch.Launcher(
            session,
            local,
            slot_specs,
            basetemp,
            settings.remote_rootdir,
            deselected,
            settings.resources,
        )
        restarts = settings.max_restarts
        self.pool = WorkerPool(
            launcher, RESTARTS_PER_WORKER * self.worker_count if restarts is None else restarts
        )
        self.testrunuid = new_testrunuid()
        self.terminal = BatchedTerminal(None)  # the real one while workers run
        self.live = LiveView(self.config, settings, self.pool)  # the status line, SLOW, SIGUSR1
        self.survivors = gc_policy.SurvivorsAside()  # in force while the workers run
        self.gave_up: str | None = None
        self.attempts: AttemptPolicy | None = None  # retries' decisions: see _plan
        self.parked: list[Worker] = []  # asked for work while more may still come
        self.dispatcher.item_settled = self._wake_parked

    def _worker_count(self, settings: Settings) -> int:
        """Never more workers than items, except that "each" runs every item on every
        worker."""
        if settings.dist == "each":
            return settings.workers
        return min(settings.workers, len(self.items))

    def _plan(self) -> None:
        """What needs the run's items: the scheduler and the bookkeeping by item."""
        self.chains = workitems.Chains(self.items)
        self.scheduler, self.report.policy = self._make_scheduler()
        self.losses = LossAccounting(
            self.config, self.items, self.replayer, self.scheduler, self.chains
        )
        self.dispatcher.losses = self.losses
        gate = self.pool.launcher.shared.gate
        if gate is not None and resources.any_gated(self.items):
            if any(self.pool.launcher.slot_specs):
                raise pytest.UsageError(
                    "procpar_serial and procpar_resource tests need local workers only: "
                    "--tx workers share no locks with them"
                )
            gate.active.value = 1
        plan = RunPlan(self.config, self.items, self.dist)
        self.config.hook.pytest_procpar_run_planned(plan=plan)
        self.attempts = self.dispatcher.attempts = self.losses.attempts = plan.attempts
        self.tickers = plan.tickers

    def _make_scheduler(self) -> tuple[Scheduler, str]:
        return scheduling.make_scheduler(
            self.session, self.durations, self.chains, self.dist, self.worker_count
        )

    @property
    def planned(self) -> bool:
        return self.dispatcher.losses is not None

    def abandon(self) -> None:
        """The run ends before its tests do (collection errors or an empty selection, once
        workers collected): the workers finish their sessions and go."""
        if self.report.ended is not None:  # it ended already
            return
        self.pool.halt_all()
        self._serve(until=faults.now() + INTERRUPT_TEARDOWN_S)
        self.pool.close()
        self.report.finish()

    @property
    def interrupted_test(self) -> Any:
        return self.dispatcher.interrupted_test

    # -- starting -------------------------------------------------------------------------

    def _start_worker(self, slot: int, share: list[int] | None = None) -> None:
        """Start a worker in ``slot`` with its first items (or, see CollectingRun, the
        ``share`` of the files it collects)."""
        workerid = f"gw{self.pool.started_count}"
        workerinput = worker_identity(workerid, self.worker_count, self.testrunuid)
        node = WorkerNode(self.config, workerinput)
        self.config.hook.pytest_procpar_worker_starting(node=node)
        initial: list[int] = []
        if self.planned:
            self.scheduler.add_worker(workerid)
            initial = self._first_batch(workerid)
        sys.stdout.flush()  # buffered output must not be written again by the copy
        sys.stderr.flush()
        try:
            worker = self.pool.start(workerid, node, slot, initial, share)
        except RemoteStartError as exc:
            raise self.session.Interrupted(str(exc)) from None
        except TemplateGone as exc:
            raise self.session.Interrupted(f"procpar: {exc}") from None
        node.pid = worker.handle.pid
        self.config.hook.pytest_procpar_worker_started(node=node)
        if initial:
            self._scheduled(worker, initial)

    def _first_batch(self, workerid: str) -> list[int]:
        """What a worker starts with, handed over with the process."""
        return self.chains.expand(self.scheduler.next_batch(workerid))

    # -- the loop -------------------------------------------------------------------------

    def execute(self, collected: str = "") -> None:
        """Run the items; ``collected`` says where they were collected, for the header."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            method = f"{self.start_method}{self.notice}"
            line = launch.header(self.worker_count, method, self.pool.launcher, len(self.items))
            reporter.write_line(f"{line}, {collected}" if collected else line)
            reporter.flush()
        restore = faults.interrupt_on_sigterm()
        self.terminal = BatchedTerminal(self.config.pluginmanager.get_plugin("terminalreporter"))
        self.live.start(self.terminal, self.items)
        try:
            if not self.planned:
                self._plan()
            for slot in range(self.pool.started_count, self.worker_count):
                self._start_worker(slot)
            with self.survivors:
                self._serve(until=None)
        except KeyboardInterrupt:
            self._interrupt()
            raise
        finally:
            restore()
            self.live.stop()
            self.terminal.restore()
            self.pool.close()
            if self.own_basetemp is not None:
                shutil.rmtree(self.own_basetemp, ignore_errors=True)
            self.report.finish()
            gate = self.pool.launcher.shared.gate
            if gate is not None and gate.active.value:
                self.report.waited_for_resources = sum(gate.waited)
        if self.attempts is not None:  # the run stopped before their next attempt ended
            stopped = self.session.shouldfail  # as the first final failure said it
            for index, last in self.attempts.without_verdict():
                self.replayer.replay_reports(self.items[index], last)
                self.losses.reported.add(index)
            self.session.shouldfail = stopped
        if self.dist != "each" and (self.gave_up or not self.pool.stopping):
            self.losses.never_ran(self.gave_up or NOT_RUN_BUG)
        if self.dispatcher.fatal is not None:
            end_as_worker_did(self.session, *self.dispatcher.fatal)

    def _serve(self, until: float | None, done: Callable[[], bool] = lambda: False) -> None:
        """Handle worker output and exits until every worker is gone (or ``until``, or
        ``done()``)."""
        while self.pool.has_watched() and not done():
            self.terminal.release_if_due()
            self.survivors.freeze_if_due()
            self.live.tick()
            wait = self._wait_time()
            if until is not None:
                wait = max(0.0, min(wait if wait is not None else until, until - faults.now()))
                if wait == 0.0:
                    return
            for worker, source in self.pool.wait(wait):
                if source == "frames":
                    self._read(worker)
                elif source == "exit":
                    self._exited(worker)
                elif not source.read():
                    self.pool.unwatch(source.fd)
            if self.tickers:
                living, now = self.pool.living(), faults.now()
                for ticker in self.tickers:
                    ticker.tick(living, now)
            if not self.pool.stopping and (
                self.session.shouldfail or self.session.shouldstop or self.dispatcher.fatal
            ):
                self.pool.halt_all()

    def _read(self, worker: Worker) -> None:
        reader = worker.handle.reader
        for message in reader.read_available():
            self.dispatcher.dispatch(worker, message)
        worker.heard_at = faults.now()
        if reader.eof:
            self.pool.unwatch(reader.fd)

    def _give_work(self, worker: Worker) -> None:
        attempts = None if self.pool.stopping else self.attempts
        batch = attempts.batch_for(worker.workerid, self.pool.living()) if attempts else []
        if not batch and not self.pool.stopping:
            batch = self.chains.expand(self.scheduler.next_batch(worker.workerid))
        if batch:
            if not self._takes(worker, batch):
                return
            worker.assigned.extend(batch)
            worker.handle.send(messages.run(batch))
            self._scheduled(worker, batch)
        elif not self.pool.stopping and self._more_may_come():
            if worker.assigned:
                worker.handle.send(messages.run([]))  # none for now: it runs what it holds
            else:
                self.parked.append(worker)  # asks again when a test is over, or at the end
        else:
            self.pool.tell_done(worker)

    def _more_may_come(self) -> bool:
        """Whether a worker given nothing now may get work later: a test may still fail and
        be retried."""
        return self.attempts is not None and self.attempts.may_come(self.pool.living())

    def _wake_parked(self) -> None:
        """A test's attempt is over: workers waiting for work ask again (a retry, work the
        scheduler now finds worth handing out), or are done. (Called after every test.)"""
        if not self.parked:
            return
        parked, self.parked = self.parked, []
        for worker in parked:
            if worker.lifecycle is Lifecycle.RUNNING:
                self._give_work(worker)

    def _takes(self, worker: Worker, batch: list[int]) -> bool:
        """Whether ``worker`` can run ``batch``: here it holds every item."""
        return True

    def _collected(self, worker: Worker, share: dict[str, Any]) -> None:
        """A worker said what it collected: only where workers collect (CollectingRun)."""
        raise messages.ProtocolError((messages.COLLECTED, worker.workerid))

    def _scheduled(self, worker: Worker, batch: list[int]) -> None:
        worker.handed += 1
        nodeids = [self.items[index].nodeid for index in batch]
        self.config.hook.pytest_procpar_items_scheduled(node=worker.node, nodeids=nodeids)

    def _wait_time(self) -> float | None:
        now = faults.now()
        waits = [self.terminal.wait_time(), self.live.wait_time(now)]
        if self.tickers:
            living = self.pool.living()
            waits += [ticker.wait_time(living, now) for ticker in self.tickers]
        known = [wait for wait in waits if wait is not None]
        return min(known) if known else None

    # -- endings --------------------------------------------------------------------------

    def _exited(self, worker: Worker) -> None:
        """Its process is gone: what it lost fails, and a replacement may take its slot."""
        for message in worker.handle.reader.receive(block=False):
            self.dispatcher.dispatch(worker, message)
        ended = worker.lifecycle
        self.pool.forget(worker)
        self._gone(worker, ended)

    def _gone(self, worker: Worker, ended: Lifecycle) -> None:
        """What ``worker``'s end means for the run: lost tests fail, a replacement may start."""
        gate = self.pool.launcher.shared.gate
        if gate is not None and gate.active.value:
            gate.leave(worker.slot, wait=LOCK_WAIT_S)  # what a lost test held is free again
        error = self.losses.worker_gone(worker, ended)
        if worker in self.parked:
            self.parked.remove(worker)
        self._wake_parked()  # what it was handed is back for the others
        if error is None:
            taking_over = worker.retired and ended is Lifecycle.FINISHED
            if taking_over and self.scheduler.has_pending() and not self.pool.stopping:
                self._start_worker(worker.slot)  # not a restart: nothing went wrong
            return
        self.config.hook.pytest_procpar_worker_finished(node=worker.node, error=error)
        if not self.scheduler.has_pending() or self.pool.stopping:
            return
        if self.pool.take_restart():
            self._start_worker(worker.slot)
        elif not any(other.lifecycle is Lifecycle.RUNNING for other in self.pool.workers):
            # Nobody left who will ask for work again: what is pending cannot run.
            restarts = self.pool.started_count - self.worker_count
            self.gave_up = f"no workers left after {restarts} worker restarts"
            self.pool.halt_all()

    def _interrupt(self) -> None:
        """Ctrl-C or SIGTERM: stop every worker's test as serial pytest's would stop. Workers
        that answer get time to tear their sessions down, the others are ended after a moment.
        """
        self.pool.halt_all()
        asked = faults.now()
        self.pool.signal_all(signal.SIGINT)
        self._serve(until=asked + INTERRUPT_GRACE_S)
        self.pool.end([worker for worker in self.pool.workers if worker.heard_at < asked])
        self._serve(until=asked + INTERRUPT_TEARDOWN_S)


def end_as_worker_did(session: pytest.Session, worker: Worker, message: messages.Fatal) -> None:
    """Raise what ends the run the way ``worker``'s loop ended (as serial pytest would)."""
    match message:
        case (messages.EXITED, reason, returncode):
            raise pytest.exit.Exception(reason, returncode)
        case (messages.INTERRUPTED, *_):
            raise KeyboardInterrupt  # shown where the test was: see pytest_keyboard_interrupt
        case (messages.MISMATCH | messages.UNAVAILABLE, why):
            raise session.Interrupted(f"procpar: worker {worker.workerid} {why}")
        case (messages.INTERNAL_ERROR | messages.STARTUP_FAILED, trace):
            raise WorkerFailure(f"worker {worker.workerid} failed:\n{trace}")
        case _:
            raise messages.ProtocolError(message)


def worker_identity(workerid: str, workercount: int, testrunuid: str) -> dict[str, Any]:
    """What any worker's ``workerinput`` holds before ``pytest_procpar_worker_starting``:
    xdist's keys (features add theirs in that hook, see ``features.py``)."""
    return {
        "workerid": workerid,
        "workercount": workercount,
        "testrunuid": testrunuid,
        "mainargv": list(sys.argv),
    }
