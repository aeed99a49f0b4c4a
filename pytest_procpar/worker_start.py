"""How a process becomes a worker: forked from the template, or started afresh.

Every local worker imports the conftests and configures pytest itself, as a worker, as an
xdist worker does. Forked from the template (the default, see :mod:`pytest_procpar.template`)
it lets go of what the controller had started before the fork, becomes a worker
(:func:`continue_as_worker`) and returns into pytest's start-up where the template was forked:
the command line read, the plugins registered, the conftests not yet imported. A spawned or
forkserver worker starts a fresh interpreter and builds its config from the controller's
options (:func:`serve_spawned`). Either way :class:`SpawnedWorker` then drives pytest's own
session: configure, session start, collection (its share of the files, or the whole suite
checked against the controller's nodeids), the loop of
:class:`~pytest_procpar.worker.WorkerSession`, session finish, unconfigure.
"""

from __future__ import annotations

import atexit
import gc
import os
import pickle
import sys
import tempfile
import traceback
from collections.abc import Generator
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
)
from pytest_procpar.handover import ChildEnds, SpawnStart, match_items
from pytest_procpar.shared import Shared
from pytest_procpar.worker import WorkerSession


class SpawnedWorker:
    """Plugin driving a worker's own pytest session (every local worker's, and remote ones')
    through procpar's loop."""

    def __init__(
        self,
        config: pytest.Config,
        start: SpawnStart,
        early_output: IO[bytes],
        from_template: bool = False,
    ) -> None:
        self.config = config
        self.start = start
        self.early_output = early_output
        # going on with the start-up the template was forked in (else: a config of its own)
        self.from_template = from_template
        self.worker_session = WorkerSession(start.ends.results.fileno(), start.workerinput)
        self.mismatch = False
        self.session: pytest.Session | None = None  # made before pytest configures

    def pytest_plugin_registered(self, plugin: object, plugin_name: str | None) -> None:
        if plugin_name == "logging-plugin":  # configured: --log-file has its handler now
            self.worker_session.forward_log_file(self.config)
        elif isinstance(plugin, pytest.Session):
            self.session = plugin

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_cmdline_main(self, config: pytest.Config) -> Generator[None, object, object]:
        """Options parsed, nothing configured: the config becomes a worker's. Forked from the
        template, the process ends here at the latest (normally in :meth:`leave`, earlier)."""
        if self.from_template:  # the controller's options, over those parsed here
            vars(config.option).update(self.start.option_dict)
        as_worker(config, self.start.workerinput, self.start.option_dict.get("basetemp"))
        if not self.from_template:
            return (yield)
        try:
            yield
        except BaseException:
            self.leave()
        self.leave()

    def leave(self) -> NoReturn:
        """End a worker forked from the template (the last of the config's cleanups, or
        :meth:`pytest_cmdline_main`): it must never return from ``pytest.main`` into the
        code that called it in the controller."""
        failure = sys.exc_info()[1]  # called while pytest handles an error in its start-up
        code = 0
        if failure is None or not self.worker_session.finished:
            code = self.exit_code(failure)
        leave_process(code)

    def exit_code(self, failure: BaseException | None = None) -> int:
        """The process's exit code; if pytest ended before this worker's loop began, the
        controller is told why (what pytest printed, ``failure``)."""
        if self.mismatch:
            return 1
        runner = self.worker_session.runner
        if runner is None:  # pytest ended before the run loop: nothing ran here
            sys.stdout.flush()
            sys.stderr.flush()
            self.early_output.seek(0)
            printed = self.early_output.read().decode(errors="replace")[-20_000:]
            status = "" if self.session is None else f" (exit code {int(self.session.exitstatus)})"
            message = f"pytest in the worker ended before running tests{status}\n{printed}"
            if failure is not None:
                message += "".join(traceback.format_exception(failure))
            framing.send(self.start.ends.results.fileno(), messages.startup_failed(message))
            return 1
        return 0 if runner.fatal is None else 1

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


def leave_process(code: int) -> NoReturn:
    """End this forked process as an interpreter ends: its ``atexit`` handlers (its own, and
    those of modules imported before the fork) run, then a garbage collection finalizes what
    is left in reference cycles (of its own objects: what it inherited is frozen), and its
    output is flushed."""
    try:
        atexit._run_exitfuncs()
        gc.collect()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


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
) -> None:
    """Entry point of every process forked from the template: ``config`` is the controller's
    as it was before the conftests loaded, ``payload`` names what the process is (a worker:
    :func:`continue_as_worker`, which returns; a probe of ``--procpar-bisect``, which does not)
    and what it is given, ``fds`` are its ends of its pipes."""
    entry, argument = pickle.loads(payload)
    if entry is continue_as_worker:
        continue_as_worker(config, shared, argument, fds, template_pid)
        return
    code = 1
    try:
        pytest_internals.drop_assertion_rewriting()  # the probe's fresh config makes its own
        forget_the_controller(config)
        code = entry(shared, argument, fds, template_pid)
    finally:
        leave_process(code)


def forget_the_controller(config: pytest.Config) -> Any:
    """In a process forked from the template: let go of what the controller had started
    before the fork, without touching it (the capture of the conftests' loading, whose files
    are shared with the controller; a coverage measurement). Returns the capture manager
    whose capture was dropped (None: there was none)."""
    capman = pytest_internals.drop_global_capture(config)
    coverage_support.forget_inherited()
    # What the template holds stays frozen (see template.py): the worker's collections walk
    # only its own objects, and leave the inherited pages shared.
    return capman


def continue_as_worker(
    config: pytest.Config,
    shared: Shared,
    argument: tuple[dict[str, Any], int],
    fds: list[int],
    template_pid: int,
) -> None:
    """A worker forked from the template: ``argument`` holds the rest of its
    :class:`SpawnStart` and when it stops (``--maxfail``). The process becomes a worker
    here, then returns into pytest's start-up, just before the conftests are imported: they
    see which worker imports them, pytest configures as a worker, and :class:`SpawnedWorker`
    ends the process (it never returns from ``pytest.main``)."""
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
    template.mark_worker()
    faults.prepare_worker_process(start.stack_path, start.parent_pid)
    capman = forget_the_controller(config)
    early_output = _keep_early_output()
    if capman is not None:  # the conftests' loading is captured, as in the controller
        capman.start_global_capturing()
    os.environ.update(start.environment or {})
    xdist_compat.export_identity(start.workerinput)  # before any conftest looks
    worker = SpawnedWorker(config, start, early_output, from_template=True)
    config.pluginmanager.register(worker, "procpar_spawned")
    config.add_cleanup(worker.leave)  # the first cleanup of the worker's, so it runs last


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
    """Run pytest's own session in this spawned worker, as a worker; the process's exit
    code."""
    worker = SpawnedWorker(config, start, early_output)
    config.pluginmanager.register(worker, "procpar_spawned")
    try:
        config.hook.pytest_cmdline_main(config=config)
    except Exception:
        if not worker.worker_session.finished:
            raise
        traceback.print_exc()  # a plugin's failing cleanup after the results are in
        return 0
    return worker.exit_code()
