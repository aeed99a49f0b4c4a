"""The worker: runs the items the controller hands it and streams back what they report.

A worker runs an ordinary pytest session over its share of the items: the same
``pytest_runtest_protocol`` serial pytest calls, with the real next item so module and class
fixtures are torn down exactly when serial pytest would. Since the next item may not have
arrived yet, the worker asks for more work while it still holds a few items, and only blocks
when its queue is down to the item about to run.

Two start paths lead here. Forked workers (the default) inherit the collected session and go
straight to :func:`run_forked`. Spawned and forkserver workers start a fresh interpreter,
collect themselves (:func:`run_spawned`), and check they found the controller's nodeids.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import tempfile
import traceback
import warnings
from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_procpar import coverage_support, faults, isolation, junit, protocol, reconfigure

# Set on the worker's session so the running item's teardown takes every fixture down, as serial
# pytest does after -x; not news for the controller, which stopped the run itself.
RUN_STOPPING = "procpar: the run is stopping"


@dataclass
class Shared:
    """Run-wide state in shared memory, written without locks.

    ``failures[i]`` is written only by worker ``i``; ``stop`` only by the controller. Workers read
    both before starting each item, so ``-x`` stops every worker without a round trip.
    """

    failures: Any  # multiprocessing RawArray of int, one slot per worker slot
    stop: Any  # multiprocessing RawValue of int
    maxfail: int
    running: Any  # RawArray of int: index of the item each slot runs now, -1 between items
    started: Any  # RawArray of double: when it started (faults.now()), for timeouts

    def should_stop(self) -> bool:
        return bool(self.stop.value) or bool(self.maxfail and sum(self.failures) >= self.maxfail)


class EventRecorder:
    """Registered in the worker: records the events of the running item for the controller."""

    def __init__(self, config: pytest.Config, shared: Shared, slot: int) -> None:
        self.config = config
        self.shared = shared
        self.slot = slot
        self.events: list[tuple[Any, ...]] = []
        self.item: pytest.Item | None = None
        self.keywords: dict[str, int] = {}
        self.live = False  # historic hook replays at registration are not this worker's news

    def begin(self, item: pytest.Item | None) -> None:
        """Start recording for ``item`` (None: the session's own start or end)."""
        self.item = item
        self.keywords = {name: 1 for name in item.keywords} if item is not None else {}
        self.events = []

    def _location_event(self, kind: str, nodeid: str, location: Any) -> tuple[Any, ...]:
        """The location always travels (the worker computed it anyway, the controller need
        not); the nodeid only when it is not the running item's."""
        item = self.item
        if item is not None and nodeid == item.nodeid:
            return (kind, tuple(location))
        return (kind, tuple(location), nodeid)

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self.events.append(self._location_event(protocol.LOGSTART, nodeid, location))

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        self.events.append(self._location_event(protocol.LOGFINISH, nodeid, location))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # As a serial run's terminal reporter does before anything is written: plugins may
        # settle the report's outcome there (pytest's subtests fail a test whose subtests
        # failed), and such a verdict is only known in the process that ran the test.
        self.config.hook.pytest_report_teststatus(report=report, config=self.config)
        if report.failed and not hasattr(report, "wasxfail"):
            self.shared.failures[self.slot] += 1
        if self.item is not None and self.shared.should_stop():
            # Like serial -x: the running item's teardown then takes everything down.
            session = self.item.session
            session.shouldstop = session.shouldstop or RUN_STOPPING
        self.events.append(protocol.encode_report(self.config, report, self.item, self.keywords))

    def pytest_warning_recorded(
        self, warning_message: warnings.WarningMessage, when: str, nodeid: str, location: Any
    ) -> None:
        if self.live:
            data = protocol.encode_warning(warning_message)
            self.events.append((protocol.WARNING, data, when, nodeid, location))


class WorkerUnusable(Exception):
    """A test left the worker in a state no later test could run in."""


class WorkerLoop:
    """Pulls item indexes from the controller and runs them in order."""

    def __init__(
        self,
        session: pytest.Session,
        reader: protocol.FrameReader,
        write_fd: int,
        shared: Shared,
        slot: int,
    ) -> None:
        self.session = session
        self.items = session.items
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
        session.config.pluginmanager.register(self.recorder, "procpar_worker")
        self.recorder.live = True
        stream = isolation.LogFileStream(lambda: self.recorder.events)
        isolation.forward_log_file(session.config, stream)
        junit.forward_from_worker(session.config, lambda: self.recorder.events)

    def take(self, messages: list[tuple[Any, ...]]) -> None:
        """Apply controller commands: more items (and how early to ask again), or no more."""
        for message in messages:
            if message[0] == protocol.RUN:
                self.queue.extend(message[1])
                self.low_water = max(1, len(message[1]) // 2)
                self.asked = False
            elif message[0] == protocol.DONE:
                self.no_more = True
        if self.reader.eof:  # the controller is gone: nothing more will come
            self.no_more = True

    def _ask(self) -> None:
        if not self.asked:
            protocol.send(self.write_fd, (protocol.WANT,))
            self.asked = True

    def _refill(self) -> None:
        """Ask early for more work; wait for it only when the next item is needed."""
        if not self.no_more and len(self.queue) <= self.low_water:
            self._ask()
        if self.asked:  # commands only ever answer a request (a stop comes as shared memory)
            self.take(self.reader.receive(block=False))
        while not self.no_more and len(self.queue) < 2:
            self._ask()
            self.take(self.reader.receive(block=True))

    def send_events(self, index: int | None, seconds: float = 0.0) -> None:
        protocol.send(self.write_fd, (protocol.ITEM, index, self.recorder.events, seconds))
        self.recorder.begin(None)

    def run(self) -> None:
        """Run items until the queue is empty and the controller has no more, or a stop."""
        session = self.session
        self._refill()
        while self.queue and not self.shared.should_stop():
            index = self.queue.popleft()
            nextitem = self.items[self.queue[0]] if self.queue else None
            self.recorder.begin(self.items[index])
            started = faults.now()
            self.shared.started[self.slot] = started
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
                self.shared.running[self.slot] = -1
                self.send_events(index, faults.now() - started)
            if isolation.streams_broken():
                self.broken = index
                raise WorkerUnusable("the test closed the worker's stdout or stderr")
            if session.shouldstop == RUN_STOPPING:
                break
            if session.shouldfail or session.shouldstop:
                protocol.send(
                    self.write_fd, (protocol.STOP, session.shouldfail, session.shouldstop)
                )
                break
            self._refill()

    def serve(self) -> Fatal | None:
        """Run the items; how the loop ended if not cleanly (``pytest.exit``, Ctrl-C, a bug)."""
        try:
            self.run()
        except pytest.exit.Exception as exc:
            code = exc.returncode if exc.returncode is not None else pytest.ExitCode.INTERRUPTED
            return Fatal(("exit", exc.msg, exc.returncode), code)
        except KeyboardInterrupt:
            where = protocol.encode_interrupt(self.session.config)
            return Fatal(("interrupt", where, self.broken))
        except BaseException:
            message = ("internal", traceback.format_exc(), self.broken)
            return Fatal(message, pytest.ExitCode.INTERNAL_ERROR)
        return None

    def exitstatus(self, fatal: Fatal | None) -> int:
        """What serial pytest would pass to ``pytest_sessionfinish`` after this loop."""
        if fatal is not None:
            return fatal.exitstatus
        return pytest.ExitCode.TESTS_FAILED if self.session.testsfailed else pytest.ExitCode.OK

    def report_end(self, fatal: Fatal | None) -> None:
        """Last events, then FINISHED with ``workeroutput`` (with what xdist's workers add to
        it), or FATAL."""
        self.send_events(None)  # what plugins recorded after the last item (sessionfinish)
        if fatal is None:
            session = self.session
            workeroutput = session.config.workeroutput  # type: ignore[attr-defined]
            workeroutput.setdefault("exitstatus", int(self.exitstatus(None)))
            workeroutput.setdefault("shouldfail", session.shouldfail)
            workeroutput.setdefault("shouldstop", session.shouldstop)
            protocol.send(self.write_fd, (protocol.FINISHED, workeroutput))
        else:
            protocol.send(self.write_fd, (protocol.FATAL, *fatal.message))


@dataclass
class Fatal:
    """How a worker's loop ended badly: the FATAL message and the session's exit status."""

    message: tuple[Any, ...]
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


@dataclass
class ChildEnds:
    """The worker's ends of its pipes (multiprocessing Connections, so spawn can send them)."""

    commands: Any  # read: RUN / DONE from the controller
    results: Any  # write: frames for the controller
    stdout: Any  # becomes the worker's file descriptor 1: the controller tags and prints it
    stderr: Any  # becomes file descriptor 2

    def redirect_output(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self.stdout.fileno(), 1)
        os.dup2(self.stderr.fileno(), 2)


@dataclass
class ForkStart:
    """What a forked worker receives (inherited through fork, never pickled)."""

    session: pytest.Session
    workerinput: dict[str, Any]
    slot: int
    ends: ChildEnds
    close_fds: Sequence[int]
    shared: Shared
    initial: Sequence[int]
    basetemp: Path
    stack_path: Path
    parent_pid: int | None


def run_forked(start: ForkStart) -> None:
    """Entry point of a forked worker."""
    for fd in start.close_fds:  # other workers' pipe ends: EOF must mean what it says
        os.close(fd)
    faults.prepare_worker_process(start.stack_path, start.parent_pid)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # The suite was frozen for the fork; tests see the collector a serial run has. Pages stay
    # shared until a full collection walks them (a test's gc.collect(), or many new objects).
    gc.unfreeze()
    session = start.session
    config = session.config
    write_fd = start.ends.results.fileno()
    try:
        become_forked_worker(start)
    except BaseException:
        message = f"configuring the worker failed:\n{traceback.format_exc()}"
        protocol.send(write_fd, (protocol.FATAL, "startup", message))
        sys.exit(1)
    measuring = coverage_support.WorkerCoverage(start.workerinput)
    reconfigure.start_sessions(session)
    session.testsfailed = 0
    session.shouldfail = session.shouldstop = False
    commands = protocol.FrameReader(start.ends.commands.fileno())
    loop = WorkerLoop(session, commands, write_fd, start.shared, start.slot)
    loop.take([(protocol.RUN, list(start.initial))])
    protocol.send(write_fd, (protocol.READY, None))
    runner = LoopPlugin(loop)
    config.pluginmanager.register(runner, "procpar_loop")
    try:
        config.hook.pytest_runtestloop(session=session)
    except BaseException:  # a plugin's wrapper failed after the loop
        runner.fatal = runner.fatal or Fatal(("internal", traceback.format_exc(), None))
    try:  # also after pytest.exit or Ctrl-C, as serial pytest does: session fixtures go down
        config.hook.pytest_sessionfinish(session=session, exitstatus=loop.exitstatus(runner.fatal))
    except BaseException:
        runner.fatal = runner.fatal or Fatal(("internal", traceback.format_exc(), None))
    measuring.finish(config.workeroutput)  # type: ignore[attr-defined]
    loop.report_end(runner.fatal)
    try:
        reconfigure.unconfigure(config)
    except Exception:  # the results are in; a plugin's failing cleanup is only news
        traceback.print_exc()
    if runner.fatal is not None:
        sys.exit(1)  # multiprocessing ends the process, skipping the controller's atexit handlers


def become_forked_worker(start: ForkStart) -> None:
    """Turn the copy of the controller into a worker, in the state an xdist worker's plugins
    would have configured: see :mod:`pytest_procpar.reconfigure`."""
    config = start.session.config
    isolation.identify_as_worker(config, start.workerinput)
    isolation.withdraw_controller_plugins(config)
    isolation.restart_capture(config, start.ends.redirect_output)
    isolation.capture_files_visible(config, start.stack_path)
    isolation.worker_basetemp(config, start.basetemp)
    reconfigure.withdraw_controller_role(config)
    isolation.quiet_terminal(config)
    reconfigure.configure_again(config)
    isolation.silence_terminal(config)


@dataclass
class SpawnStart:
    """What a spawned or forkserver worker receives, pickled: enough to collect again."""

    args: list[str]
    option_dict: dict[str, Any]
    invocation_dir: str
    workerinput: dict[str, Any]
    slot: int
    ends: ChildEnds
    shared: Shared
    initial: list[int]
    nodeids: list[str]
    deselected: list[str]  # what the controller collected but will not run (-k, --shard, ...)
    stack_path: Path
    parent_pid: int | None
    environment: dict[str, str] | None = None  # to start from, as pytest was started (local)


def match_items(
    items: Sequence[pytest.Item], nodeids: Sequence[str], deselected: Collection[str] = ()
) -> list[pytest.Item]:
    """The worker's own items in the controller's order; a clear error when they differ.

    The worker may keep items the controller deselected: plugins that deselect in the
    controller only (``--shard``), or from state of their own (a remote host's ``--lf``
    cache), need not agree with it.
    """
    own = {item.nodeid: item for item in items}
    missing = [nodeid for nodeid in nodeids if nodeid not in own]
    known = {*nodeids, *deselected}
    extra = [item.nodeid for item in items if item.nodeid not in known]
    if missing or extra:
        raise WorkerCollectionMismatch(
            f"collected {len(items)} items, the controller {len(nodeids)}; "
            f"first only in the controller: {missing[:1] or 'none'}, "
            f"first only in the worker: {extra[:1] or 'none'}"
        )
    return [own[nodeid] for nodeid in nodeids]


class WorkerCollectionMismatch(Exception):
    """A spawned worker collected other tests than the controller."""


class SpawnedWorker:
    """Plugin driving a spawned worker's own pytest session through the same loop."""

    def __init__(self, start: SpawnStart) -> None:
        self.start = start
        self.runner: LoopPlugin | None = None
        self.measuring = coverage_support.WorkerCoverage(start.workerinput)

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        isolation.withdraw_controller_plugins(config)
        isolation.silence_terminal(config)
        faults.point_faulthandler_at_stack()
        self.start.ends.redirect_output()  # from now on output is news; before, a repeat
        isolation.capture_files_visible(config, self.start.stack_path)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        """Check the collection, then hand over to the loop (registered just now, so it runs
        next, inside every plugin's run-loop wrapper)."""
        start = self.start
        write_fd = start.ends.results.fileno()
        try:
            session.items = match_items(session.items, start.nodeids, start.deselected)
        except WorkerCollectionMismatch as exc:
            protocol.send(write_fd, (protocol.FATAL, "mismatch", str(exc)))
            return True
        protocol.send(write_fd, (protocol.READY, None))
        commands = protocol.FrameReader(start.ends.commands.fileno())
        loop = WorkerLoop(session, commands, write_fd, start.shared, start.slot)
        loop.take([(protocol.RUN, start.initial)])
        self.runner = LoopPlugin(loop)
        self.runner.pytest_runtestloop(session)
        if self.runner.fatal is not None:
            loop.report_end(self.runner.fatal)
        return True

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self) -> Any:
        result = yield
        if self.runner is not None and self.runner.fatal is None:
            self.measuring.finish(self.runner.loop.session.config.workeroutput)  # type: ignore[attr-defined]
            self.runner.loop.report_end(None)
        return result


def run_spawned(start: SpawnStart) -> None:
    """Entry point of a spawned or forkserver worker: collect like the controller, then serve."""
    faults.prepare_worker_process(start.stack_path, start.parent_pid)
    # What configuring pytest prints again (its warnings, say) the controller printed already;
    # it is kept aside, and shown only if this worker fails to start.
    early_output = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the worker
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(early_output.fileno(), 1)
    os.dup2(early_output.fileno(), 2)
    if start.environment is not None:
        os.environ.clear()
        os.environ.update(start.environment)
    isolation.export_identity(start.workerinput)  # before any plugin or conftest looks
    os.chdir(start.invocation_dir)
    config = pytest.Config.fromdictargs(start.option_dict, start.args)
    isolation.identify_as_worker(config, start.workerinput)
    if config.option.log_file:  # opening it ("w") would truncate the controller's
        config.option.log_file = os.devnull
    worker = SpawnedWorker(start)
    config.pluginmanager.register(worker, "procpar_spawned")
    status = config.hook.pytest_cmdline_main(config=config)
    if worker.runner is None:  # pytest ended before the run loop: nothing ran here
        sys.stdout.flush()
        sys.stderr.flush()
        early_output.seek(0)
        printed = early_output.read().decode(errors="replace")[-20_000:]
        message = f"pytest in the worker ended before running tests (exit code {int(status)})"
        protocol.send(
            start.ends.results.fileno(), (protocol.FATAL, "startup", f"{message}\n{printed}")
        )
        sys.exit(1)
