"""The controller's side of the protocol: one handler for each message a worker sends.

Every frame read from a worker comes here. Results are replayed into the controller's hooks,
requests for work are passed to the run, and the ways a worker's loop can end are noted for
the run to act on once the worker's process is gone. A kind this side does not know is a
:class:`~pytest_procpar.messages.ProtocolError`, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pytest_procpar import messages, reports
from pytest_procpar.extension import AttemptPolicy
from pytest_procpar.losses import LossAccounting
from pytest_procpar.messages import Event, FromWorker
from pytest_procpar.pool import Lifecycle, Worker
from pytest_procpar.replay import Replayer
from pytest_procpar.runreport import RunReport


class Dispatcher:
    """Acts on worker messages; ``give_work`` answers a worker that asks for more."""

    def __init__(
        self,
        session: pytest.Session,
        replayer: Replayer,
        report: RunReport,
        give_work: Callable[[Worker], None],
        collected: Callable[[Worker, dict[str, Any]], None],
    ) -> None:
        self.session = session
        self.config = session.config
        self.replayer = replayer
        self.losses: LossAccounting | None = None  # the run's, once its items are known
        self.attempts: AttemptPolicy | None = None  # retries, once the items are known
        self.item_settled: Callable[[], None] = lambda: None  # a test's attempt is over
        self.report = report
        self.give_work = give_work
        self.collected = collected
        self.fatal: tuple[Worker, messages.Fatal] | None = None  # the first, which ends the run
        self.interrupted_test: Any = None  # where the first interrupted test was, as shown

    def dispatch(self, worker: Worker, message: FromWorker) -> None:
        match message:
            case (messages.ITEM, index, events, seconds):
                self.item_done(worker, index, events, seconds)
            case (messages.WANT,):
                self.give_work(worker)
            case (messages.SESSION, events):
                self.replayer.replay_session(events)
            case (messages.READY,):
                self.config.hook.pytest_procpar_worker_ready(node=worker.node)
            case (messages.COLLECTED, share):
                self.collected(worker, share)
            case (messages.STOP, shouldfail, shouldstop):
                self.session.shouldfail = self.session.shouldfail or shouldfail
                self.session.shouldstop = self.session.shouldstop or shouldstop
            case (messages.FINISHED, workeroutput):
                self.finished(worker, workeroutput)
            case (messages.UNUSABLE, index, trace):
                worker.unusable = (index, trace)  # only that test fails; a new worker follows
            case (messages.RECYCLE, limit, detail):
                self.recycled(worker, limit, detail)
            case (messages.INTERRUPTED, where, index):
                if index is not None and self.interrupted_test is None:
                    self.interrupted_test = reports.decode_interrupt(self.config, where)
                self.ended_run(worker, message)
            case (
                (messages.EXITED, _, _)
                | (messages.INTERNAL_ERROR, _)
                | (messages.STARTUP_FAILED, _)
                | (messages.MISMATCH, _)
                | (messages.UNAVAILABLE, _)
            ):
                self.ended_run(worker, message)
            case _:
                raise messages.ProtocolError(message)

    def item_done(self, worker: Worker, index: int, events: list[Event], seconds: float) -> None:
        if self.losses is None:
            raise messages.ProtocolError((messages.ITEM, index, "before the run's items"))
        self.report.item_done(worker.workerid, seconds)
        attempts = self.attempts
        if attempts is not None:
            item = self.replayer.items[index]
            failed = messages.attempt_failed(events)
            if failed and attempts.has_retry(item):
                reports_made = self.replayer.set_aside(worker.node, index, events)
                attempts.retry(item, index, worker.workerid, reports_made)
                self.losses.attempt_done(worker, index)
                self.item_settled()
                return
            attempts.final(index, item.nodeid, passed=not failed)
        self.losses.item_reported(worker, index)
        self.replayer.replay_item(worker.node, index, events, seconds)
        self.item_settled()

    def finished(self, worker: Worker, workeroutput: dict[str, Any]) -> None:
        worker.node.workeroutput = workeroutput
        worker.lifecycle = Lifecycle.FINISHED
        self.config.hook.pytest_procpar_worker_finished(node=worker.node, error=None)

    def recycled(self, worker: Worker, limit: str, detail: str) -> None:
        """``worker`` runs nothing more: a fresh one takes its place once it is gone."""
        if self.losses is None:
            raise messages.ProtocolError((messages.RECYCLE, "before the run's items"))
        worker.retired = True
        self.losses.give_back(worker)
        self.report.worker_recycled(worker.workerid, limit, detail)

    def ended_run(self, worker: Worker, message: messages.Fatal) -> None:
        worker.lifecycle = Lifecycle.FAILED
        if self.fatal is None:
            self.fatal = (worker, message)
