"""The worker's loop: runs the items the controller hands it and streams back what they report.

A worker runs an ordinary pytest session over its share of the items: the same
``pytest_runtest_protocol`` serial pytest calls, with the real next item so module and class
fixtures are torn down exactly when serial pytest would. Since the next item may not have
arrived yet, the worker asks for more work while it still holds a few items, and only blocks
when its queue is down to the item about to run. How a process becomes a worker is in
:mod:`pytest_procpar.worker_start`; both start paths run the loop through one
:class:`WorkerSession`.
"""

from __future__ import annotations

import os
import traceback
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from pytest_procpar import (
    coverage_support,
    faults,
    framing,
    isolation,
    logfile,
    messages,
    reports,
    xdist_compat,
)
from pytest_procpar.collect_share import ShareCollection
from pytest_procpar.extension import WorkerPlan
from pytest_procpar.messages import Event, ToWorker
from pytest_procpar.recorder import RUN_STOPPING, EventRecorder
from pytest_procpar.shared import Shared


class WorkerUnusable(Exception):
    """A test left the worker in a state no later test could run in."""


class WorkerLoop:
    """Pulls item indexes from the controller and runs them in order."""

    def __init__(
        self,
        session: pytest.Session,
        reader: framing.FrameReader[ToWorker],
        write_fd: int,
        shared: Shared,
        slot: int,
        collection: ShareCollection | None = None,
    ) -> None:
        self.session = session
        # By the run's index: the session's items, or, for a worker that collects its own
        # share, those the controller numbers for it (``numbered``, ``import``).
        self.numbered: dict[int, pytest.Item] = {}
        self.items: Sequence[pytest.Item] | Mapping[int, pytest.Item] = (
            self.numbered if collection is not None else session.items
        )
        self.collection = collection
        self.reader = reader
        self.write_fd = write_fd
        self.shared = shared
        self.slot = slot
        self.queue: deque[int] = deque()
        self.no_more = False
        self.asked = False
        self.low_water = 1
        self.pid = os.getpid()
        self.broken: int | None = None
        self.recorder = EventRecorder(session.config, shared, slot)
        self.tests_run = 0
        self.nothing_yet = False
        session.config.pluginmanager.register(self.recorder, "procpar_worker")
        self.recorder.live = True
        plan = WorkerPlan(
            session.config,
            xdist_compat.workerinput(session.config) or {},
            self.items,
            slot,
            shared,
            lambda: self.recorder.events,
        )
        session.config.hook.pytest_procpar_worker_loop_planned(plan=plan)
        self.turns, self.attempts, self.retirement = plan.turns, plan.attempts, plan.retirement

    def take(self, commands: list[ToWorker]) -> None:
        """Apply controller commands: more items (and how early to ask again), or no more."""
        for command in commands:
            match command:
                case (messages.RUN, indexes):
                    self.nothing_yet = not indexes  # none for now, but the run is not over
                    self.queue.extend(indexes)
                    self.low_water = max(1, len(indexes) // 2)
                    self.asked = False
                case (messages.DONE,):
                    self.no_more = True
                case (messages.NUMBERED, indexes) if self.collection is not None:
                    self.numbered.update(self.collection.numbered(indexes))
                case (messages.IMPORT, unit, numbered) if self.collection is not None:
                    with self.recorder.keyword_changes.paused():
                        found = self.collection.import_unit(self.session, unit, numbered)
                    self.numbered.update(found)
                case _:
                    raise messages.ProtocolError(command)
        if self.reader.eof:  # the controller is gone: nothing more will come
            self.no_more = True

    def _ask(self) -> None:
        if not self.asked:
            framing.send(self.write_fd, messages.want())
            self.asked = True

    def _refill(self) -> None:
        """Ask early for more work; wait for it only when the next item is needed (or, when
        the controller had nothing for now, once the queue is empty: retries may follow)."""
        if not self.no_more and len(self.queue) <= self.low_water and not self._held_off():
            self._ask()
        if self.asked:  # commands only ever answer a request (a stop comes as shared memory)
            self.take(self.reader.receive(block=False))
        while not self.no_more and len(self.queue) < 2 and not self._held_off():
            self._ask()
            self.take(self.reader.receive(block=True))

    def _held_off(self) -> bool:
        return self.nothing_yet and bool(self.queue)

    def send_events(self, index: int | None, seconds: float = 0.0) -> None:
        """What was recorded since the last send: ``index``'s events, or the session's."""
        events = self.recorder.take_events()
        framing.send(
            self.write_fd,
            messages.session_events(events)
            if index is None
            else messages.item_done(index, events, seconds),
        )
        self.recorder.begin(None)

    def run(self) -> None:
        """Run items until the queue is empty and the controller has no more, or a stop."""
        session = self.session
        # The controller knows the items as collected; from here on changes are this worker's
        self.recorder.keyword_changes.watch(session)
        self._refill()
        while self.queue and not self.shared.should_stop():
            index = self.turns.next_index(self.queue) if self.turns else self.queue.popleft()
            if index is None:
                break  # the run stopped while this worker waited for its next test to start
            nextitem = self.items[self.queue[0]] if self.queue else None
            self.recorder.begin(self.items[index])
            attempts = self.attempts
            self.recorder.retryable = bool(attempts and attempts.before(self.items[index], index))
            started = faults.now()
            self.shared.running_since[self.slot] = started
            self.shared.running[self.slot] = index
            try:
                self.items[index].config.hook.pytest_runtest_protocol(
                    item=self.items[index], nextitem=nextitem
                )
            except BaseException:
                self.broken = index  # what the worker was running when its loop broke
                raise
            finally:
                if os.getpid() != self.pid:  # a test forked and its child came back up here
                    os._exit(0)
                if self.turns:
                    self.turns.done()
                self.shared.running[self.slot] = -1
                self.send_events(index, faults.now() - started)
            if isolation.streams_broken():
                self.broken = index
                raise WorkerUnusable("the test closed the worker's stdout or stderr")
            self.tests_run += 1
            over = self.retirement.due(self.tests_run) if self.retirement else None
            last = self.no_more and not self.queue
            if over is not None and not last and not self.shared.should_stop():
                framing.send(self.write_fd, messages.recycle(*over))
                break
            if session.shouldstop == RUN_STOPPING:
                break
            if session.shouldfail or session.shouldstop:
                framing.send(
                    self.write_fd, messages.stop_run(session.shouldfail, session.shouldstop)
                )
                break
            self._refill()

    def serve(self) -> Fatal | None:
        """Run the items; how the loop ended if not cleanly (``pytest.exit``, Ctrl-C, a bug)."""
        try:
            self.run()
        except pytest.exit.Exception as exc:
            code = exc.returncode if exc.returncode is not None else pytest.ExitCode.INTERRUPTED
            return Fatal(messages.exited(exc.msg, exc.returncode), code)
        except KeyboardInterrupt:
            where = reports.encode_interrupt(self.session.config)
            return Fatal(messages.interrupted(where, self.broken))
        except BaseException:
            trace = traceback.format_exc()
            message: messages.Fatal | messages.Unusable = (
                messages.internal_error(trace)
                if self.broken is None
                else messages.unusable(self.broken, trace)
            )
            return Fatal(message, pytest.ExitCode.INTERNAL_ERROR)
        return None

    def exitstatus(self, fatal: Fatal | None) -> int:
        """What serial pytest would pass to ``pytest_sessionfinish`` after this loop."""
        if fatal is not None:
            return fatal.exitstatus
        return pytest.ExitCode.TESTS_FAILED if self.session.testsfailed else pytest.ExitCode.OK

    def report_end(self, fatal: Fatal | None) -> None:
        """Last events, then ``finished`` with ``workeroutput`` (with what xdist's workers add
        to it), or the message saying how the loop ended early."""
        self.send_events(None)  # what plugins recorded after the last item (sessionfinish)
        if fatal is None:
            session = self.session
            workeroutput = xdist_compat.workeroutput(session.config)
            workeroutput.setdefault("exitstatus", int(self.exitstatus(None)))
            workeroutput.setdefault("shouldfail", session.shouldfail)
            workeroutput.setdefault("shouldstop", session.shouldstop)
            framing.send(self.write_fd, messages.finished(workeroutput))
        else:
            framing.send(self.write_fd, fatal.message)


@dataclass
class Fatal:
    """How a worker's loop ended badly: the message saying so, and the session's exit status."""

    message: messages.Fatal | messages.Unusable
    exitstatus: int = pytest.ExitCode.INTERRUPTED


class LoopPlugin:
    """Runs the worker loop as the worker's ``pytest_runtestloop``.

    Plugins that wrap the run loop (pytest-cov ends a worker's measurement there, the logging
    plugin attaches its handlers) then do in each worker what they do in an xdist worker.
    """

    def __init__(self, loop: WorkerLoop) -> None:
        self.loop = loop
        self.fatal: Fatal | None = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        self.fatal = self.loop.serve()
        return True


class WorkerSession:
    """The steps around the loop, the same on every start path: ready, the loop (as the
    session's ``pytest_runtestloop``), and after ``pytest_sessionfinish`` the last events and
    ``finished``, or the message saying why the loop ended early."""

    def __init__(self, write_fd: int, workerinput: dict[str, Any]) -> None:
        self.write_fd = write_fd
        self.measuring = coverage_support.WorkerCoverage(workerinput)
        self.runner: LoopPlugin | None = None
        self.finished = False  # the last message is sent: what fails after it is only news
        self.early_events: list[Event] = []  # recorded before the loop was set up

    def events(self) -> list[Event]:
        """Where an event recorded now goes: with the loop's next item, or kept until the
        loop is set up (``--log-file`` records of configure and session-start hooks)."""
        return self.runner.loop.recorder.events if self.runner is not None else self.early_events

    def forward_log_file(self, config: pytest.Config) -> None:
        """From now on, what the worker logs to ``--log-file`` travels to the controller."""
        logfile.forward_log_file(config, logfile.LogFileStream(self.events))

    def ready(
        self,
        session: pytest.Session,
        command_fd: int,
        shared: Shared,
        slot: int,
        initial: list[int],
        collection: ShareCollection | None = None,
    ) -> LoopPlugin:
        """Set the loop up with the first items, and say so. A worker that collects its share
        collects it next, in its session's own collection."""
        commands: framing.FrameReader[ToWorker] = framing.FrameReader(command_fd)
        loop = WorkerLoop(session, commands, self.write_fd, shared, slot, collection)
        loop.take([messages.run(initial)])
        framing.send(self.write_fd, messages.ready())
        loop.recorder.events[:0] = self.early_events
        self.early_events = []
        self.runner = LoopPlugin(loop)
        if collection is not None:
            session.config.pluginmanager.register(collection, "procpar_share_collection")
        return self.runner

    def collecting_failed(self) -> None:
        """A plugin's collection hook failed: serial pytest's INTERNALERROR."""
        framing.send(self.write_fd, messages.internal_error(traceback.format_exc()))

    def share_collected(self, session: pytest.Session) -> None:
        """Tell the controller what the share holds."""
        assert self.runner is not None
        loop = self.runner.loop
        collection = loop.collection
        assert collection is not None
        session.config.pluginmanager.unregister(collection)
        session.testsfailed = 0  # collection errors are the controller's to count
        session.shouldfail = session.shouldstop = False
        share = collection.share_message(session, loop.recorder.take_events())
        framing.send(self.write_fd, messages.collected(share))

    def exitstatus(self) -> int:
        """What serial pytest would pass to ``pytest_sessionfinish`` after this loop."""
        assert self.runner is not None
        return self.runner.loop.exitstatus(self.runner.fatal)

    def failed(self) -> None:
        """A plugin's hook failed around the loop: a bug, unless the loop ended early anyway."""
        assert self.runner is not None
        if self.runner.fatal is None:
            self.runner.fatal = Fatal(messages.internal_error(traceback.format_exc()))

    def finish(self) -> Fatal | None:
        """After ``pytest_sessionfinish``: coverage data, the last events, how it ended."""
        assert self.runner is not None
        loop = self.runner.loop
        self.measuring.finish(xdist_compat.workeroutput(loop.session.config))
        loop.report_end(self.runner.fatal)
        self.finished = True
        return self.runner.fatal
