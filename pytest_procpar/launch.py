"""Starting worker processes: pipes, the start method, and what each worker is handed.

With ``fork`` (the default on Linux) a worker is forked from the template, a copy of the
controller made before pytest configured (:func:`prepare`, see :mod:`pytest_procpar.template`):
it configures itself as a worker and collects by itself, sharing the memory pages of pytest
and the plugins with the controller. With ``spawn`` and ``forkserver`` a worker
is a fresh interpreter that rebuilds the config from the controller's options. Either way the
worker is handed the same :class:`~pytest_procpar.handover.SpawnStart`.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import pickle
import threading
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Protocol

import pytest

from pytest_procpar import (
    faults,
    framing,
    gc_policy,
    handover,
    isolation,
    resources,
    template,
    worker_start,
)
from pytest_procpar.messages import FromWorker, ToWorker
from pytest_procpar.remote import RemoteLauncher
from pytest_procpar.shared import Shared
from pytest_procpar.xdist_compat import collecting_worker_options, worker_basetemp


class WorkerHandle(Protocol):
    """What the controller needs from a started worker, local or remote."""

    reader: framing.FrameReader[FromWorker]  # the worker's frames
    output_fds: dict[str, int]  # "stdout"/"stderr": what it writes outside captures

    @property
    def sentinel(self) -> int: ...  # readable once the worker is gone

    def send(self, message: ToWorker) -> None: ...
    def halt(self) -> None: ...  # stop before the next item (-x, a fatal error elsewhere)
    @property
    def pid(self) -> int: ...  # the worker process's (on its own machine), 0 if unknown

    def running(self) -> tuple[int, float]: ...  # (item index or -1, since when: faults.now())
    def request_stack(self) -> None: ...  # dump the Python stack where stack_path points
    def signal(self, signum: int) -> None: ...  # to the worker and what its tests started
    def join(self, timeout: float | None = None) -> None: ...
    def is_alive(self) -> bool: ...
    def describe_exit(self) -> str: ...  # "signal 9 (SIGKILL)", for crash messages
    def interpreter(self) -> Any: ...  # execnet's facts about another Python, or None
    def close(self) -> None: ...


@dataclass
class WorkerProcess:
    """A worker process on this machine: the process and the controller's ends of its pipes."""

    process: BaseProcess | template.TemplateChild
    reader: framing.FrameReader[FromWorker]
    command_fd: int
    output_fds: dict[str, int]
    shared: Shared
    slot: int
    connections: list[Any] = field(default_factory=list)  # own the controller-side fds

    @property
    def sentinel(self) -> int:
        return int(self.process.sentinel)

    @property
    def pid(self) -> int:
        return int(self.process.pid or 0)

    def send(self, message: ToWorker) -> None:
        # A worker that is gone cannot be told anything; its exit is handled from its sentinel.
        with contextlib.suppress(OSError):
            framing.send(self.command_fd, message)

    def halt(self) -> None:
        """Nothing to send: the worker reads the stop flag from shared memory."""

    def running(self) -> tuple[int, float]:
        return int(self.shared.running[self.slot]), float(self.shared.running_since[self.slot])

    def request_stack(self) -> None:
        # To the worker alone: its tests' children would die of the signal.
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, faults.STACK_SIGNAL)

    def signal(self, signum: int) -> None:
        faults.signal_group(self.pid, signum)

    def join(self, timeout: float | None = None) -> None:
        self.process.join(timeout)

    def is_alive(self) -> bool:
        return self.process.is_alive()

    def describe_exit(self) -> str:
        return faults.describe_exit(self.process.exitcode)

    def interpreter(self) -> None:
        """The controller's own: nothing to tell."""

    def close(self) -> None:
        for connection in self.connections:
            connection.close()
        self.connections = []
        if isinstance(self.process, template.TemplateChild):
            self.process.close()


def picklable_options(config: pytest.Config) -> dict[str, Any]:
    """The parsed options a spawned worker needs to rebuild the same config."""
    options = {}
    for name, value in vars(config.option).items():
        if name == "file_or_dir":  # comes again from the command line arguments
            continue
        if framing.can_pickle(value):
            options[name] = value
    return options


def failures_that_stop(config: pytest.Config) -> int:
    """After how many failures every worker stops before its next test (0: never): -x and
    --maxfail, and --sw (stops at the first failure; with --sw-skip, the second), as the
    serial run stops right after the failing test."""
    limits = [int(config.option.maxfail or 0)]
    if getattr(config.option, "stepwise_skip", False):
        limits.append(2)
    elif getattr(config.option, "stepwise", False):
        limits.append(1)
    return min((limit for limit in limits if limit), default=0)


@dataclass
class LocalStart:
    """How this run's local workers start: the start method, a notice for the header, and
    for ``fork`` the template and the shared memory it was forked with."""

    method: str
    notice: str = ""
    template: template.Template | None = None
    shared: Shared | None = None


def prepare(config: pytest.Config, slots: int, resource_limits: Mapping[str, int]) -> bool:
    """Before the initial conftests are imported: make the shared memory for ``slots``
    workers and fork the template (both must exist before the copy is taken). Where forking
    is unsafe or the platform cannot run a template, there is none (see :func:`local_start`).
    Returns False in a worker forked from the template, which goes on from here with
    pytest's start-up (see :func:`worker_start.continue_as_worker`)."""
    threads = other_threads()
    if threads:
        notice = f"; fork is unsafe with threads ({', '.join(threads)})"
        template.remember(config, template.Made(None, None, notice))
        return True
    if not template.available():
        notice = "; this platform cannot fork from a template"
        template.remember(config, template.Made(None, None, notice))
        return True
    context = multiprocessing.get_context("fork")
    shared = make_shared(context, slots, 0, resource_limits)  # maxfail: told each worker
    child_main = functools.partial(worker_start.from_template, config, shared)
    forked = template.Template.fork(child_main)
    if forked is None:
        return False
    template.remember(config, template.Made(forked, shared, ""))
    return True


def local_start(config: pytest.Config, method: str, slots: int) -> LocalStart:
    """How ``slots`` local workers start: ``method``, and for fork the template made for the
    run (fork is only ever from a template: where there is none, or it has too few slots, the
    workers start with forkserver)."""
    if method != "fork":
        return LocalStart(method)
    made = template.made(config)
    if made is None:
        return LocalStart("forkserver", "; no template was made before the conftests loaded")
    if made.template is None:
        return LocalStart("forkserver", made.notice)
    shared: Shared = made.shared
    if slots > len(shared.failures):
        return LocalStart("forkserver", f"; the template was made for {len(shared.failures)}")
    return LocalStart("fork", " from template", made.template, shared)


def make_shared(
    context: Any, slots: int, maxfail: int, resource_limits: Mapping[str, int]
) -> Shared:
    return Shared(
        failures=context.RawArray("i", slots),
        stop=context.RawValue("i", 0),
        maxfail=maxfail,
        running=context.RawArray("l", [-1] * slots),
        running_since=context.RawArray("d", slots),
        gate=resources.Gate(context, slots, resource_limits),
    )


def other_threads() -> list[str]:
    """Names of threads besides this one: forking copies none of them, but does copy their locks."""
    current = threading.current_thread()
    return [thread.name for thread in threading.enumerate() if thread is not current]


class Launcher:
    """Starts workers, local with one start method or remote through execnet, and hands each
    its share of the run.

    ``slot_specs`` has one entry per worker slot: None for a local worker, else the execnet
    gateway spec of a remote one.
    """

    def __init__(
        self,
        session: pytest.Session,
        local: LocalStart,
        slot_specs: Sequence[str | None],
        basetemp: Path,
        remote_rootdir: str | None = None,
        deselected: Collection[str] = (),
        resource_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.session = session
        self.start_method = local.method
        self.template = local.template
        self.context = multiprocessing.get_context(local.method)
        maxfail = failures_that_stop(session.config)
        self.shared = local.shared or make_shared(
            self.context, len(slot_specs), maxfail, resource_limits or {}
        )
        self.shared.maxfail = maxfail  # (the template's was made before the options were read)
        self.slot_specs = list(slot_specs)
        self.remote = (
            RemoteLauncher(session.config, remote_rootdir) if any(self.slot_specs) else None
        )
        self.basetemp = basetemp
        self.deselected = deselected
        self._same_for_all: dict[str, Any] | None = None
        self.units: Sequence[pytest.Collector] = ()  # collecting in workers: the files

    def is_remote(self, slot: int) -> bool:
        return self.slot_specs[slot] is not None

    def start(
        self,
        workerinput: dict[str, Any],
        slot: int,
        initial: list[int],
        share: list[int] | None = None,
    ) -> WorkerHandle:
        """Start the worker of ``slot`` with ``initial`` items or, collecting in workers, the
        ``share`` of :attr:`units` to collect."""
        spec = self.slot_specs[slot]
        if spec is not None:
            assert self.remote is not None
            payload = self._collect_again(workerinput, initial, None, share)
            payload["maxfail"] = self.shared.maxfail
            return self.remote.start(spec, payload, self.stack_path(workerinput))
        return self._start_local(workerinput, slot, initial, share)

    def _start_local(
        self, workerinput: dict[str, Any], slot: int, initial: list[int], share: list[int] | None
    ) -> WorkerProcess:
        commands_r, commands_w = self.context.Pipe(duplex=False)
        results_r, results_w = self.context.Pipe(duplex=False)
        stdout_r, stdout_w = self.context.Pipe(duplex=False)
        stderr_r, stderr_w = self.context.Pipe(duplex=False)
        framing.enlarge_pipe(results_w.fileno())
        theirs = (commands_r, results_w, stdout_w, stderr_w)
        ours = [results_r, commands_w, stdout_r, stderr_r]
        basetemp = worker_basetemp(self.basetemp, workerinput["workerid"])
        fields = {
            **self._collect_again(workerinput, initial, str(basetemp), share),
            "slot": slot,
            "stack_path": self.stack_path(workerinput),
            # what a forked worker adds to what it inherits; what a spawned one starts from
            "environment": (
                isolation.set_since_the_template()
                if self.template is not None
                else isolation.starting_environment()
            ),
        }
        self.shared.running[slot] = -1  # not the hung test of a worker it replaces
        process: BaseProcess | template.TemplateChild
        if self.template is not None:
            fds = [connection.fileno() for connection in theirs]
            argument = (fields, self.shared.maxfail)
            payload = pickle.dumps((worker_start.continue_as_worker, argument))
            process = self.template.start(payload, fds)
        else:
            start = handover.SpawnStart(
                **fields,
                ends=handover.ChildEnds(*theirs),
                shared=self.shared,
                parent_pid=os.getpid() if self.start_method != "forkserver" else None,
            )
            spawned = self.context.Process(  # type: ignore[attr-defined]
                target=worker_start.run_spawned,
                args=(start,),
                name=f"procpar-{workerinput['workerid']}",
            )
            spawned.start()
            process = spawned
        for connection in theirs:
            connection.close()
        return WorkerProcess(
            process=process,
            reader=framing.FrameReader(results_r.fileno()),
            command_fd=commands_w.fileno(),
            output_fds={"stdout": stdout_r.fileno(), "stderr": stderr_r.fileno()},
            shared=self.shared,
            slot=slot,
            connections=ours,
        )

    def forget(self, started: WorkerHandle) -> None:
        """The worker has ended: close the controller's ends of its pipes."""
        started.close()

    def stack_path(self, workerinput: dict[str, Any]) -> Path:
        """Where the worker's faulthandler writes: beside its basetemp, which it may wipe."""
        return self.basetemp / f"procpar-{workerinput['workerid']}.stack"

    def close(self) -> None:
        """The run is over: close gateways."""
        if self.remote is not None:
            self.remote.close()
        template.close(self.session.config)
        gc_policy.freeze_at_exit()

    def _collect_again(
        self,
        workerinput: dict[str, Any],
        initial: list[int],
        basetemp: str | None,
        share: list[int] | None,
    ) -> dict[str, Any]:
        """What a worker that collects by itself needs: the command line, the options, the
        controller's nodeids to check against, and its first items; collecting in workers,
        the files the controller found and the ``share`` it collects of them. ``basetemp``
        None lets it choose its own (a remote host's temp dir)."""
        if self._same_for_all is None:  # worked out once, for every such worker
            config = self.session.config
            options = dict(picklable_options(config), **collecting_worker_options(config))
            self._same_for_all = {
                "args": list(config.invocation_params.args),
                "option_dict": options,
                "invocation_dir": str(config.invocation_params.dir),
                "nodeids": [item.nodeid for item in self.session.items],
                "deselected": sorted(self.deselected),
                "units": [unit.nodeid for unit in self.units],
            }
        same = self._same_for_all
        return {
            **same,
            "option_dict": dict(same["option_dict"], basetemp=basetemp),
            "workerinput": workerinput,
            "initial": list(initial),
            "units": None if share is None else same["units"],
            "share": share,
        }


def header(workers: int, method: str, launcher: Launcher, items: int) -> str:
    """``procpar: 2 workers (fork), 120 items``; remote ones by spec (``1 fork, 2*popen``)."""
    remote = Counter(launcher.slot_specs)  # in slot order; None counts local ones
    local = remote.pop(None, 0)
    kinds = [f"{local} {method}" if remote else method] if local else []
    kinds += [f"{count}*{spec}" for spec, count in remote.items()]
    plural = "s" if workers != 1 else ""
    return f"procpar: {workers} worker{plural} ({', '.join(kinds)}), {items} items"
