"""How a process becomes a worker: forked from the controller, or started afresh.

Forked workers (the default) inherit the collected session and become workers in
:func:`run_forked`: configured again as xdist workers are (see
:mod:`pytest_procpar.reconfigure`), then straight to the loop. Spawned and forkserver workers,
and remote ones, start a fresh interpreter, collect by themselves (:func:`run_spawned`), and
check they found the controller's nodeids. Both run the loop through
:class:`~pytest_procpar.worker.WorkerSession`.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable, Collection, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_procpar import faults, framing, isolation, messages, reconfigure, xdist_compat
from pytest_procpar.collect_share import (
    ShareCollection,
    WorkerCollectionMismatch,
    describe_difference,
)
from pytest_procpar.worker import Shared, WorkerSession


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
    units: Sequence[pytest.Collector] = ()  # collecting in workers: the files to share out
    share: Sequence[int] | None = None  # the units this worker collects, None: none to collect


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
        framing.send(write_fd, messages.startup_failed(message))
        sys.exit(1)
    worker_session = WorkerSession(write_fd, start.workerinput)  # coverage starts measuring
    reconfigure.start_sessions(session)
    session.testsfailed = 0
    session.shouldfail = session.shouldstop = False
    command_fd = start.ends.commands.fileno()
    collection = ShareCollection(start.units, start.share) if start.share is not None else None
    runner = worker_session.ready(
        session, command_fd, start.shared, start.slot, list(start.initial), collection
    )
    if collection is not None:
        worker_session.collect_share(session)
    config.pluginmanager.register(runner, "procpar_loop")
    try:
        config.hook.pytest_runtestloop(session=session)
    except BaseException:  # a plugin's wrapper failed after the loop
        worker_session.failed()
    try:  # also after pytest.exit or Ctrl-C, as serial pytest does: session fixtures go down
        config.hook.pytest_sessionfinish(session=session, exitstatus=worker_session.exitstatus())
    except BaseException:
        worker_session.failed()
    fatal = worker_session.finish()
    try:
        reconfigure.unconfigure(config)
    except Exception:  # the results are in; a plugin's failing cleanup is only news
        traceback.print_exc()
    if fatal is not None:
        sys.exit(1)  # multiprocessing ends the process, skipping the controller's atexit handlers


def become_forked_worker(start: ForkStart) -> None:
    configure_as_worker(
        start.session.config,
        start.workerinput,
        start.ends.redirect_output,
        start.stack_path,
        start.basetemp,
    )


def configure_as_worker(
    config: pytest.Config,
    workerinput: dict[str, Any],
    redirect_output: Callable[[], None],
    stack_path: Path,
    basetemp: Path,
) -> None:
    """Turn this copy of the controller into a worker, in the state an xdist worker's plugins
    would have configured (see :mod:`pytest_procpar.reconfigure`): a forked worker, and the
    probes of ``--procpar-bisect``. ``redirect_output`` points file descriptors 1 and 2 where
    what escapes capture goes."""
    xdist_compat.become_worker(config, workerinput)
    isolation.withdraw_controller_plugins(config)
    isolation.restart_capture(config, redirect_output)
    isolation.capture_files_visible(config, stack_path)
    isolation.use_basetemp(config, xdist_compat.worker_basetemp(basetemp, workerinput["workerid"]))
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
    units: list[str] | None = None  # collecting in workers: the files the controller found
    share: list[int] | None = None  # and those this worker collects (None: it collects all)


def match_items(
    items: Sequence[pytest.Item], nodeids: Sequence[str], deselected: Collection[str] = ()
) -> list[pytest.Item]:
    """The worker's own items in the controller's order; a clear error when they differ.

    The worker may keep items the controller deselected: plugins that deselect in the
    controller only (``--shard``), or from state of their own (a remote host's ``--lf``
    cache), need not agree with it.
    """
    own = {item.nodeid: item for item in items}
    known = {*nodeids, *deselected}
    if any(nodeid not in own for nodeid in nodeids) or any(n not in known for n in own):
        found = [item.nodeid for item in items]
        raise WorkerCollectionMismatch(describe_difference("items", found, nodeids, deselected))
    return [own[nodeid] for nodeid in nodeids]


class SpawnedWorker:
    """Plugin driving a spawned worker's own pytest session through the same loop."""

    def __init__(self, start: SpawnStart) -> None:
        self.start = start
        self.worker_session = WorkerSession(start.ends.results.fileno(), start.workerinput)
        self.mismatch = False

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        isolation.withdraw_controller_plugins(config)
        isolation.silence_terminal(config)
        faults.point_faulthandler_at_stack()
        self.start.ends.redirect_output()  # from now on output is news; before, a repeat
        isolation.capture_files_visible(config, self.start.stack_path)

    @pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: it sees collection's warnings
    def pytest_collection(self, session: pytest.Session) -> Generator[None, object, object]:
        """Collecting in workers: the session's collection walks the directories and collects
        this worker's share (see :meth:`ShareCollection.walking`)."""
        start = self.start
        if start.share is None or start.units is None:
            return (yield)
        collection = ShareCollection.walking(session, start.units, start.share)
        command_fd = start.ends.commands.fileno()
        self.worker_session.ready(session, command_fd, start.shared, start.slot, [], collection)
        try:
            result = yield
        except WorkerCollectionMismatch as exc:
            self._mismatch(str(exc))
            return True
        except BaseException:
            self.worker_session.collecting_failed()
            raise
        self.worker_session.share_collected(session)
        return result

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        """Check the collection, then run the loop (inside every plugin's run-loop wrapper)."""
        start = self.start
        runner = self.worker_session.runner
        if self.mismatch:
            return True
        if runner is None:
            try:
                session.items = match_items(session.items, start.nodeids, start.deselected)
            except WorkerCollectionMismatch as exc:
                self._mismatch(str(exc))
                return True
            command_fd = start.ends.commands.fileno()
            runner = self.worker_session.ready(
                session, command_fd, start.shared, start.slot, start.initial
            )
        runner.pytest_runtestloop(session)
        return True

    def _mismatch(self, why: str) -> None:
        self.mismatch = True
        framing.send(self.start.ends.results.fileno(), messages.mismatch(why))

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self) -> Generator[None, object, object]:
        if self.worker_session.runner is None or self.mismatch:
            return (yield)
        try:
            return (yield)
        except BaseException:
            self.worker_session.failed()
            raise
        finally:
            self.worker_session.finish()


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
    xdist_compat.export_identity(start.workerinput)  # before any plugin or conftest looks
    os.chdir(start.invocation_dir)
    config = pytest.Config.fromdictargs(start.option_dict, start.args)
    # The command line's --basetemp is the controller's: a worker that shared it would wipe
    # it (and race the others creating it); its own was chosen for it (None: a default one).
    config.option.basetemp = start.option_dict.get("basetemp")
    xdist_compat.become_worker(config, start.workerinput)
    if config.option.log_file:  # opening it ("w") would truncate the controller's
        config.option.log_file = os.devnull
    worker = SpawnedWorker(start)
    config.pluginmanager.register(worker, "procpar_spawned")
    try:
        status = config.hook.pytest_cmdline_main(config=config)
    except Exception:
        if not worker.worker_session.finished:
            raise
        traceback.print_exc()  # a plugin's failing cleanup after the results are in
        return
    if worker.mismatch:
        sys.exit(1)
    if worker.worker_session.runner is None:  # pytest ended before the run loop: nothing ran here
        sys.stdout.flush()
        sys.stderr.flush()
        early_output.seek(0)
        printed = early_output.read().decode(errors="replace")[-20_000:]
        message = f"pytest in the worker ended before running tests (exit code {int(status)})"
        framing.send(start.ends.results.fileno(), messages.startup_failed(f"{message}\n{printed}"))
        sys.exit(1)
    if worker.worker_session.runner.fatal is not None:
        sys.exit(1)
