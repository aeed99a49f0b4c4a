"""The worker pool: the workers of one run, their lifecycle, and the one way to stop them.

The pool starts workers through the :class:`~pytest_procpar.launch.Launcher`, registers the
file descriptors the controller's loop watches (the worker's frames, its exit, its stdout and
stderr), keeps the restart budget, and ends workers: told "done" when the scheduler has no
more for them, halted all at once when the run stops, signalled when they must go. It knows
nothing about tests; the run decides what each worker is handed.
"""

from __future__ import annotations

import enum
import selectors
import signal
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeAlias

from pytest_procpar import faults, launch, messages
from pytest_procpar.extension import Charge
from pytest_procpar.node import WorkerNode
from pytest_procpar.output import OutputRelay

GRACE_S = 1.0  # from SIGTERM to SIGKILL when workers are ended


class Lifecycle(enum.Enum):
    """Where a worker is in its life, as the controller knows it."""

    RUNNING = "running"  # asks for work and gets it
    DRAINING = "draining"  # told there is no more: finishing its queue and its session
    FINISHED = "finished"  # reported a clean end (``finished``)
    FAILED = "failed"  # reported an end that stops the run (pytest.exit, Ctrl-C, a bug)
    GONE = "gone"  # its process has ended and the controller closed its pipes


@dataclass
class Worker:
    """The controller's record of one worker process."""

    workerid: str  # gw0, gw1, ...: a replacement gets a new one
    node: WorkerNode  # what plugins see of it, in xdist's shape (hooks, report.node)
    slot: int
    handle: launch.WorkerHandle
    crash_files: Path  # its stack dump; beside it, <name>.stdout/.stderr: what tests printed
    assigned: deque[int] = field(default_factory=deque)  # handed out, not reported, in order
    lifecycle: Lifecycle = Lifecycle.RUNNING
    charged: Charge | None = None  # a feature ends it for this test (a time limit)
    heard_at: float = 0.0  # when its last frame arrived
    unusable: tuple[int, str] | None = None  # (item index, traceback): a test broke it
    handed: int = 0  # how many batches it was handed
    # Making way for a fresh worker in its slot: told done so that the fresh one imports what
    # it was to take over (collecting in workers), or over a recycling limit
    retired: bool = False
    relays: list[OutputRelay] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.lifecycle is not Lifecycle.GONE

    @property
    def running(self) -> int | None:
        """The item it runs now: the one fact about a worker the worker itself writes."""
        index, _ = self.handle.running()
        return index if index >= 0 else None


Source: TypeAlias = Literal["frames", "exit"] | OutputRelay  # what woke the loop up


class WorkerPool:
    """Starts, watches and ends the workers of one run."""

    def __init__(self, launcher: launch.Launcher, restarts: int) -> None:
        self.launcher = launcher
        self.selector = selectors.DefaultSelector()
        self.workers: list[Worker] = []
        self.started_count = 0
        self.restarts_left = restarts
        self.wakeups: set[int] = set()  # fds that only wake the loop up (see watch_wakeup)

    @property
    def stopping(self) -> bool:
        return bool(self.launcher.shared.stop.value)

    def start(
        self,
        workerid: str,
        node: WorkerNode,
        slot: int,
        initial: list[int],
        share: list[int] | None = None,
    ) -> Worker:
        """Start worker ``workerid`` in ``slot`` holding ``initial`` (or collecting ``share``),
        and watch what it sends."""
        self.started_count += 1
        handle = self.launcher.start(node.workerinput, slot, initial, share)
        node.remote_interpreter = handle.interpreter()
        worker = Worker(workerid, node, slot, handle, self.launcher.stack_path(node.workerinput))
        worker.assigned.extend(initial)
        self.workers.append(worker)
        self._watch(handle.reader.fd, worker, "frames")
        self._watch(handle.sentinel, worker, "exit")
        reporter = node.config.pluginmanager.get_plugin("terminalreporter")
        for stream, fd in handle.output_fds.items():
            relay = OutputRelay(fd, worker.workerid, stream, reporter)
            worker.relays.append(relay)
            self._watch(fd, worker, relay)
        return worker

    def _watch(self, fd: int, worker: Worker, source: Source) -> None:
        self.selector.register(fd, selectors.EVENT_READ, (worker, source))

    def watch_wakeup(self, fd: int) -> None:
        """Wake the loop up when ``fd`` is readable (a signal handler's pipe, see live.py):
        no worker's, so not waited for, nor handed out by :meth:`wait`; its owner reads it."""
        self.selector.register(fd, selectors.EVENT_READ, None)
        self.wakeups.add(fd)

    def has_watched(self) -> bool:
        return len(self.selector.get_map()) > len(self.wakeups)

    def wait(self, timeout: float | None) -> Iterator[tuple[Worker, Source]]:
        """What became readable within ``timeout``, one at a time: an fd that handling an
        earlier one closed is left out."""
        for key, _ in self.selector.select(timeout):
            if key.data is not None and self.selector.get_map().get(key.fd) is key:
                worker, source = key.data
                yield worker, source

    def unwatch(self, fd: int) -> None:
        if fd in self.selector.get_map():
            self.selector.unregister(fd)
        self.wakeups.discard(fd)

    def take_restart(self) -> bool:
        """Whether a lost worker may be replaced (then the budget is one smaller)."""
        if self.restarts_left <= 0:
            return False
        self.restarts_left -= 1
        return True

    def tell_done(self, worker: Worker) -> None:
        """Nothing more for this worker: it finishes its queue and its session."""
        if worker.lifecycle is Lifecycle.RUNNING:
            worker.lifecycle = Lifecycle.DRAINING
            worker.handle.send(messages.done())

    def halt_all(self) -> None:
        """Stop the run: every worker stops before its next item (the shared flag, or a halt
        message for a remote one), and is told no more will come."""
        self.launcher.shared.stop.value = 1
        for worker in self.workers:
            worker.handle.halt()
            self.tell_done(worker)

    def forget(self, worker: Worker) -> None:
        """Its process is gone: print what it wrote last, close and stop watching its pipes."""
        for relay in worker.relays:
            relay.drain()
        handle = worker.handle
        for fd in [handle.reader.fd, handle.sentinel, *handle.output_fds.values()]:
            self.unwatch(fd)
        handle.join()
        worker.lifecycle = Lifecycle.GONE
        self.launcher.forget(handle)

    def living(self) -> list[Worker]:
        return [worker for worker in self.workers if worker.alive]

    def signal_all(self, signum: int) -> None:
        for worker in self.living():
            worker.handle.signal(signum)

    def end(self, workers: Sequence[Worker]) -> None:
        """TERM every worker group still there, KILL them all once a common grace period is
        over; what they had not reported stays unreported, as after Ctrl-C in serial pytest."""
        living = [worker for worker in workers if worker.alive]
        for worker in living:
            worker.handle.signal(signal.SIGTERM)
        deadline = faults.now() + GRACE_S
        for worker in living:
            worker.handle.join(max(0.0, deadline - faults.now()))
        for worker in living:
            if worker.handle.is_alive():
                worker.handle.signal(signal.SIGKILL)
            self.forget(worker)

    def close(self) -> None:
        """No process outlives the run."""
        self.end(self.workers)
        self.selector.close()
        self.launcher.close()
