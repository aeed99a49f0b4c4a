"""How a process becomes a worker: forked from the template, or started afresh.

Every local worker builds its own config from the controller's options, imports the conftests
and configures pytest itself, as a worker, as an xdist worker does. Forked from the template
(the default, see :mod:`pytest_procpar.template`) it first lets go of what the controller had
started before the fork (:func:`forget_the_controller`), and finds pytest and the plugins
imported already; a spawned or forkserver worker starts a fresh interpreter. Both then take
the same path (:func:`serve_spawned`): :class:`SpawnedWorker` drives pytest's own session:
configure, session start, collection (its share of the files, or the whole suite checked
against the controller's nodeids), the loop of :class:`~pytest_procpar.worker.WorkerSession`,
session finish, unconfigure.
"""

from __future__ import annotations

import atexit
import gc
import os
import pickle
import sys
import tempfile
import traceback
from collections.abc import Collection, Generator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any, NoReturn

import pytest

from pytest_procpar import (
    coverage_support,
    faults,
    framing,
    isolation,
    messages,
    pytest_internals,
    template,
    xdist_compat,
)
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
class SpawnStart:
    """What a worker receives, pickled (through the template, or by multiprocessing for
    spawn and forkserver): enough to configure and collect as the controller did."""

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
    """Plugin driving a worker's own pytest session (every local worker's, and remote ones')
    through procpar's loop."""

    def __init__(self, config: pytest.Config, start: SpawnStart) -> None:
        self.config = config
        self.start = start
        self.worker_session = WorkerSession(start.ends.results.fileno(), start.workerinput)
        self.mismatch = False

    def pytest_plugin_registered(self, plugin_name: str | None) -> None:
        if plugin_name == "logging-plugin":  # configured: --log-file has its handler now
            self.worker_session.forward_log_file(self.config)

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        isolation.withdraw_controller_plugins(config)
        isolation.silence_terminal(config)
        faults.point_faulthandler_at_stack()
        # From now on output is news; before, a repeat. The capture saved the descriptors it
        # found, so it starts again over the pipes.
        isolation.restart_capture(config, self.start.ends.redirect_output)
        isolation.capture_files_visible(config, self.start.stack_path)

    @pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: it sees collection's warnings
    def pytest_collection(self, session: pytest.Session) -> Generator[None, object, object]:
        """Collecting in workers: the session's collection walks the directories and collects
        this worker's share (see :class:`ShareCollection`)."""
        start = self.start
        if start.share is None or start.units is None:
            return (yield)
        collection = ShareCollection(session, start.units, start.share)
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
            _discard_output()


def _discard_output() -> None:
    """The results are in: what the worker prints from here on (unconfiguring, its exit
    handlers) repeats what the controller prints as it ends, as what configuring printed
    repeats its start (see :func:`_keep_early_output`); an xdist worker's is not shown either."""
    sys.stdout.flush()
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)


def run_spawned(start: SpawnStart) -> None:
    """Entry point of a spawned or forkserver worker."""
    code = serve_spawned(start)
    if code:
        sys.exit(code)


def serve_spawned(start: SpawnStart) -> int:
    """Configure pytest as the controller was configured, as a worker, then run its session
    (collect, serve, finish): the process's exit code."""
    config, early_output = fresh_config(
        start.option_dict,
        start.args,
        start.environment,
        start.workerinput,
        start.invocation_dir,
        start.stack_path,
        start.parent_pid,
    )
    with early_output:
        return _serve(config, start, early_output)


def fresh_config(
    option_dict: dict[str, Any],
    args: list[str],
    environment: dict[str, str] | None,
    workerinput: dict[str, Any],
    invocation_dir: str,
    stack_path: Path,
    parent_pid: int | None,
) -> tuple[pytest.Config, IO[bytes]]:
    """A worker's own config, built from the controller's options, with the conftests imported
    here, knowing it is a worker; and where the output of configuring goes."""
    template.mark_worker()
    faults.prepare_worker_process(stack_path, parent_pid)
    early_output = _keep_early_output()
    if environment is not None:
        os.environ.clear()
        os.environ.update(environment)
    xdist_compat.export_identity(workerinput)  # before any plugin or conftest looks
    os.chdir(invocation_dir)
    return pytest.Config.fromdictargs(option_dict, args), early_output


def from_template(
    config: pytest.Config, shared: Shared, payload: bytes, fds: list[int], template_pid: int
) -> NoReturn:
    """Entry point of every process forked from the template: ``config`` is the controller's
    as it was before the conftests loaded, ``payload`` names what the process is (a worker:
    :func:`serve_from_template`; a probe of ``--procpar-bisect``) and what it is given, ``fds``
    are its ends of its pipes. Leaves as a process does, with its ``atexit`` handlers."""
    entry, argument = pickle.loads(payload)
    code = 1
    try:
        forget_the_controller(config)
        code = entry(shared, argument, fds, template_pid)
    finally:
        try:
            atexit._run_exitfuncs()  # its own, and those of modules imported before the fork
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)


def forget_the_controller(config: pytest.Config) -> None:
    """In a process forked from the template: let go of what the controller had started
    before the fork, without touching it (the capture of the conftests' loading, whose files
    are shared with the controller; a coverage measurement; the import hook of its assertion
    rewriting). The process then configures pytest anew, as a spawned worker does."""
    pytest_internals.drop_global_capture(config)
    pytest_internals.drop_assertion_rewriting()
    coverage_support.forget_inherited()
    # The template froze what it holds (so that its pages stay shared until a worker uses
    # them); tests see the collector a fresh process has.
    gc.unfreeze()


def serve_from_template(
    shared: Shared, argument: tuple[dict[str, Any], int], fds: list[int], template_pid: int
) -> int:
    """A worker forked from the template: ``argument`` holds the rest of its
    :class:`SpawnStart` and when it stops (``--maxfail``)."""
    fields, shared.maxfail = argument
    commands, results, stdout, stderr = fds
    start = SpawnStart(
        **fields,
        ends=ChildEnds(
            Connection(commands, writable=False),
            Connection(results, readable=False),
            Connection(stdout, readable=False),
            Connection(stderr, readable=False),
        ),
        shared=shared,
        parent_pid=template_pid,
    )
    return serve_spawned(start)


def as_worker(config: pytest.Config, workerinput: dict[str, Any], basetemp: str | None) -> None:
    """Before configuring: ``config`` belongs to a worker with ``basetemp`` its own (None: a
    default one)."""
    # The command line's --basetemp is the controller's: a worker that shared it would wipe
    # it (and race the others creating it).
    config.option.basetemp = basetemp
    xdist_compat.become_worker(config, workerinput)
    if config.option.log_file:  # opening it ("w") would truncate the controller's
        config.option.log_file = os.devnull


def _keep_early_output() -> IO[bytes]:
    """What configuring pytest prints again (its warnings, say) the controller printed
    already: kept aside from here on, and shown only if this worker fails to start."""
    early_output = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the worker
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(early_output.fileno(), 1)
    os.dup2(early_output.fileno(), 2)
    return early_output


def _serve(config: pytest.Config, start: SpawnStart, early_output: IO[bytes]) -> int:
    """Run pytest's own session in this worker, as a worker; the process's exit code."""
    as_worker(config, start.workerinput, start.option_dict.get("basetemp"))
    worker = SpawnedWorker(config, start)
    config.pluginmanager.register(worker, "procpar_spawned")
    try:
        status = config.hook.pytest_cmdline_main(config=config)
    except Exception:
        if not worker.worker_session.finished:
            raise
        traceback.print_exc()  # a plugin's failing cleanup after the results are in
        return 0
    if worker.mismatch:
        return 1
    if worker.worker_session.runner is None:  # pytest ended before the run loop: nothing ran here
        sys.stdout.flush()
        sys.stderr.flush()
        early_output.seek(0)
        printed = early_output.read().decode(errors="replace")[-20_000:]
        message = f"pytest in the worker ended before running tests (exit code {int(status)})"
        framing.send(start.ends.results.fileno(), messages.startup_failed(f"{message}\n{printed}"))
        return 1
    if worker.worker_session.runner.fatal is not None:
        return 1
    return 0
