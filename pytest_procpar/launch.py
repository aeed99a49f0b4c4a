"""Starting worker processes: pipes, the start method, and what each worker is handed.

With ``fork`` a worker is a copy of the controller right after collection, so it never imports
or collects again and shares the controller's memory pages (``gc.freeze()`` first, so the
garbage collector does not touch, and thereby copy, every inherited object). With ``spawn`` and
``forkserver`` a worker is a fresh interpreter that rebuilds the config from the controller's
options and collects by itself.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import pickle
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import pytest

from pytest_procpar import protocol, worker


@dataclass
class WorkerProcess:
    """A started worker: its process and the controller's ends of its two pipes."""

    process: BaseProcess
    reader: protocol.FrameReader
    command_fd: int
    output_fds: dict[str, int]  # "stdout"/"stderr": what the worker writes outside captures
    connections: list[Any] = field(default_factory=list)  # own the controller-side fds

    def send(self, message: tuple[Any, ...]) -> None:
        # A worker that is gone cannot be told anything; its exit is handled from its sentinel.
        with contextlib.suppress(OSError):
            protocol.send(self.command_fd, message)

    def close(self) -> None:
        for connection in self.connections:
            connection.close()
        self.connections = []


def picklable_options(config: pytest.Config) -> dict[str, Any]:
    """The parsed options a spawned worker needs to rebuild the same config."""
    options = {}
    for name, value in vars(config.option).items():
        if name == "file_or_dir":  # comes again from the command line arguments
            continue
        try:
            pickle.dumps(value)
        except Exception:
            continue
        options[name] = value
    return options


def other_threads() -> list[str]:
    """Names of threads besides this one: forking copies none of them, but does copy their locks."""
    current = threading.current_thread()
    return [thread.name for thread in threading.enumerate() if thread is not current]


class Launcher:
    """Starts workers with one start method and hands each its share of the run."""

    def __init__(
        self, session: pytest.Session, start_method: str, slots: int, basetemp: Path
    ) -> None:
        self.session = session
        self.start_method = start_method
        self.context = multiprocessing.get_context(start_method)
        maxfail = int(session.config.option.maxfail or 0)
        self.shared = worker.Shared(
            failures=self.context.RawArray("i", slots),
            stop=self.context.RawValue("i", 0),
            maxfail=maxfail,
            running=self.context.RawArray("l", [-1] * slots),
            started=self.context.RawArray("d", slots),
        )
        self.basetemp = basetemp
        self.controller_fds: set[int] = set()
        self._options: dict[str, Any] | None = None

    def start(self, workerinput: dict[str, Any], slot: int, initial: list[int]) -> WorkerProcess:
        commands_r, commands_w = self.context.Pipe(duplex=False)
        results_r, results_w = self.context.Pipe(duplex=False)
        stdout_r, stdout_w = self.context.Pipe(duplex=False)
        stderr_r, stderr_w = self.context.Pipe(duplex=False)
        protocol.enlarge_pipe(results_w.fileno())
        ends = worker.ChildEnds(commands_r, results_w, stdout_w, stderr_w)
        ours = [results_r, commands_w, stdout_r, stderr_r]
        self.controller_fds |= {connection.fileno() for connection in ours}
        argument: worker.ForkStart | worker.SpawnStart
        if self.start_method == "fork":
            target: Callable[..., None] = worker.run_forked
            argument = self._fork_start(workerinput, slot, initial, ends)
        else:
            target = worker.run_spawned
            argument = self._spawn_start(workerinput, slot, initial, ends)
        process = self.context.Process(  # type: ignore[attr-defined]
            target=target, args=(argument,), name=f"procpar-{workerinput['workerid']}"
        )
        if self.start_method == "fork":
            gc.freeze()  # keep the collector from writing to (and so copying) inherited objects
        process.start()
        for connection in (commands_r, results_w, stdout_w, stderr_w):
            connection.close()
        return WorkerProcess(
            process=process,
            reader=protocol.FrameReader(results_r.fileno()),
            command_fd=commands_w.fileno(),
            output_fds={"stdout": stdout_r.fileno(), "stderr": stderr_r.fileno()},
            connections=ours,
        )

    def forget(self, started: WorkerProcess) -> None:
        """The worker has ended: later forks need not close its pipe ends any more."""
        self.controller_fds -= {connection.fileno() for connection in started.connections}
        started.close()

    def stack_path(self, workerinput: dict[str, Any]) -> Path:
        """Where the worker's faulthandler writes: beside its basetemp, which it may wipe."""
        return self.basetemp / f"procpar-{workerinput['workerid']}.stack"

    def close(self) -> None:
        """The run is over: let the controller's collector see its objects again."""
        if self.start_method == "fork":
            gc.unfreeze()

    def _fork_start(
        self, workerinput: dict[str, Any], slot: int, initial: list[int], ends: worker.ChildEnds
    ) -> worker.ForkStart:
        return worker.ForkStart(
            session=self.session,
            workerinput=workerinput,
            slot=slot,
            ends=ends,
            close_fds=sorted(self.controller_fds),
            shared=self.shared,
            initial=initial,
            basetemp=self.basetemp,
            stack_path=self.stack_path(workerinput),
            parent_pid=os.getpid() if self.start_method != "forkserver" else None,
        )

    def _spawn_start(
        self, workerinput: dict[str, Any], slot: int, initial: list[int], ends: worker.ChildEnds
    ) -> worker.SpawnStart:
        config = self.session.config
        if self._options is None:
            self._options = picklable_options(config)
        options = dict(
            self._options, basetemp=str(self.basetemp / f"popen-{workerinput['workerid']}")
        )
        return worker.SpawnStart(
            args=list(config.invocation_params.args),
            option_dict=options,
            invocation_dir=str(config.invocation_params.dir),
            workerinput=workerinput,
            slot=slot,
            ends=ends,
            shared=self.shared,
            initial=initial,
            nodeids=[item.nodeid for item in self.session.items],
            stack_path=self.stack_path(workerinput),
            parent_pid=os.getpid() if self.start_method != "forkserver" else None,
        )
