"""Seeing what runs now: a status line with each worker's test, notices of slow tests, and on
request (SIGUSR1, or Ctrl-T where the system has SIGINFO) what every worker runs, with its stack.

A worker writes which test it runs, and since when, into shared memory (for the time limits),
so the controller knows what runs without a word from the workers. The run's loop drives all
three: it asks :meth:`LiveView.wait_time` how long it may block and calls :meth:`LiveView.tick`
whenever it wakes up; the work is done only when a look is due (a few times a second with the
status line, at the next multiple of the slow threshold without it), never per test.

The status line is drawn on the line under the progress, and the cursor goes back to the end
of the progress, where pytest goes on writing: it is the overlay of the
:class:`~pytest_procpar.output.BatchedTerminal`, which erases it (everything after the cursor)
before it writes held output and draws it again after.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pytest

from pytest_procpar import faults, pytest_internals
from pytest_procpar.output import BatchedTerminal

if TYPE_CHECKING:
    from pytest_procpar.pool import Worker, WorkerPool
    from pytest_procpar.settings import Settings

REFRESH_S = 0.25  # how often the status line is drawn again
STACK_WAIT_S = 1.0  # how long a dump waits for the workers' stacks
PAST_S = 0.01  # a slow test is looked at just past a multiple of the threshold, not on it
ERASE = "\x1b[J"  # from the cursor to the end of the screen: the status line under it
UP = "\x1b[A"
DUMP_SIGNALS = tuple(
    signum for signum in (signal.SIGUSR1, getattr(signal, "SIGINFO", None)) if signum is not None
)
_listening: list[DumpRequests] = []  # this process's, while a run goes on


def status_text(running: Sequence[tuple[float, str, str]], now: float) -> str:
    """``gw0 test_a.py::test_x 3.2s | gw1 test_b.py::test_y 0.4s`` from (started, workerid,
    nodeid): the longest running first, so that what the width cuts off started last; in
    ASCII, one column a character."""
    parts = [
        f"{workerid} {nodeid} {now - started:.1f}s" for started, workerid, nodeid in sorted(running)
    ]
    return " | ".join(parts).encode("ascii", "backslashreplace").decode("ascii")


class StatusLine:
    """The status line, as the overlay of the batched terminal (see the module's docstring)."""

    def __init__(self, terminal: BatchedTerminal) -> None:
        assert terminal.writer is not None
        self.writer = terminal.writer  # knows the column the progress stands at
        self.text = ""  # what the line shows, "" for nothing
        self.shown = False

    def erased(self) -> str:
        shown, self.shown = self.shown, False
        return ERASE if shown else ""

    def drawn(self) -> str:
        """The line under the progress, cut to the terminal's width, and back up to where the
        progress ends."""
        column, width = self.writer.width_of_current_line, self.writer.fullwidth
        if not self.text or column >= width:  # nothing to show, or the progress filled its row
            return ""
        self.shown = True
        back = f"\x1b[{column}C" if column else ""
        return f"\n{self.text[: width - 1]}{UP}\r{back}"


def wants_status_line(mode: str, config: pytest.Config, terminal: BatchedTerminal) -> bool:
    """On a terminal only: not in a CI log, not into a file or pipe, not with ``-qq``, not
    on a terminal that cannot move its cursor."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    return (
        mode == "auto"
        and terminal.writer is not None
        and bool(getattr(reporter, "isatty", False))
        and not pytest_internals.running_on_ci()
        and int(config.option.verbose) > -2
        and os.environ.get("TERM") != "dumb"
    )


class DumpRequests:
    """The dump signals, while workers run. The handler only notes the request and wakes the
    loop up (a byte in a pipe the loop watches): the loop dumps."""

    def __init__(self) -> None:
        self.asked = False
        self.read_fd, self.write_fd = os.pipe()
        for fd in (self.read_fd, self.write_fd):
            os.set_blocking(fd, False)
        self.previous = {signum: signal.signal(signum, self._note) for signum in DUMP_SIGNALS}
        _listening.append(self)

    def _note(self, signum: int, frame: object) -> None:
        self.asked = True
        with contextlib.suppress(OSError):  # the pipe is full: the loop is woken up already
            os.write(self.write_fd, b"\0")

    def take(self) -> None:
        """The request is being answered: a signal from now on asks again."""
        self.asked = False
        with contextlib.suppress(OSError):  # empty
            while os.read(self.read_fd, 512):
                pass

    def close(self) -> None:
        """The handlers that were there before, and no pipe."""
        for signum, previous in self.previous.items():
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        os.close(self.read_fd)
        os.close(self.write_fd)
        _listening.remove(self)


def _forget_in_child() -> None:
    """A forked worker takes neither the handlers nor the pipe: SIGUSR1 asks it for its stack,
    and the processes its tests fork find the signal at its default."""
    for requests in list(_listening):
        requests.close()


os.register_at_fork(after_in_child=_forget_in_child)


class LiveView:
    """The status line, the slow-test notices and the dump, for one run."""

    def __init__(self, config: pytest.Config, settings: Settings, pool: WorkerPool) -> None:
        self.config = config
        self.mode = settings.live
        self.slow = settings.slow
        self.pool = pool
        self.items: Sequence[pytest.Item] = ()
        self.terminal = BatchedTerminal(None)
        self.status: StatusLine | None = None
        self.requests: DumpRequests | None = None
        self.due_at: float | None = None  # when to look next (None: never)
        self.announced: dict[str, tuple[tuple[int, float], int]] = {}  # by workerid: its test
        # (item index, started) and how many multiples of the slow threshold it was shown at

    def start(self, terminal: BatchedTerminal, items: Sequence[pytest.Item]) -> None:
        """The workers start running ``items``, writing through ``terminal``."""
        self.terminal, self.items = terminal, items
        if wants_status_line(self.mode, self.config, terminal):
            self.status = terminal.overlay = StatusLine(terminal)
        if threading.current_thread() is threading.main_thread():  # (signals are the main's)
            self.requests = DumpRequests()
            self.pool.watch_wakeup(self.requests.read_fd)
        if self.status is not None or self.slow:
            self.due_at = faults.now()

    def stop(self) -> None:
        """The run is over: the status line erased, the signals' handlers as they were."""
        if self.status is not None:
            self.status.text = ""
            self.terminal.release()
            self.terminal.overlay = self.status = None
        if self.requests is not None:
            self.pool.unwatch(self.requests.read_fd)
            self.requests.close()
            self.requests = None
        self.due_at = None

    def wait_time(self, now: float) -> float | None:
        """How long the loop may block before the next look is due (None: no look is)."""
        return None if self.due_at is None else max(0.0, self.due_at - now)

    def tick(self) -> None:
        """The loop woke up: dump if asked to, look if a look is due."""
        requests = self.requests
        if requests is not None and requests.asked:
            requests.take()
            self._dump()
        if self.due_at is not None and (now := faults.now()) >= self.due_at:
            self.due_at = self._look(now)

    def _running(self, worker: Worker) -> tuple[int, float] | None:
        """(item index, started) of the test ``worker`` runs, if it runs one."""
        index, started = worker.handle.running()
        return (index, started) if 0 <= index < len(self.items) else None

    def _look(self, now: float) -> float:
        """Draw the status line again and announce slow tests; when to look next."""
        due = now + REFRESH_S if self.status is not None else math.inf
        if self.slow:
            due = min(due, now + self.slow)  # a test that starts later is slow after that
        running: list[tuple[float, str, str]] = []
        for worker in self.pool.living():
            test = self._running(worker)
            if test is None:
                continue
            nodeid = self.items[test[0]].nodeid
            running.append((test[1], worker.workerid, nodeid))
            if self.slow:
                due = min(due, self._announce(worker.workerid, test, nodeid, now))
        if self.status is not None:
            self.status.text = status_text(running, now)
            self.terminal.release()
        return due

    def _announce(self, workerid: str, test: tuple[int, float], nodeid: str, now: float) -> float:
        """A SLOW line for each multiple of the threshold ``test`` ran past since the last
        look (more than one only if the loop was held up); when it passes the next."""
        known, shown = self.announced.get(workerid, (test, 0))
        shown = shown if known == test else 0
        reached = int((now - test[1]) // self.slow)
        self._write(
            [
                f"SLOW [> {k * self.slow:g}s] {workerid} {nodeid}"
                for k in range(shown + 1, reached + 1)
            ]
        )
        shown = max(shown, reached)
        self.announced[workerid] = (test, shown)
        return test[1] + (shown + 1) * self.slow + PAST_S

    def _dump(self) -> None:
        """What every worker runs and for how long, with the stacks that arrive in time."""
        now = faults.now()
        tests = [(worker, self._running(worker)) for worker in self.pool.living()]
        # Not one a feature ends for its test (a time limit): its stack file is that test's.
        asked = [worker for worker, test in tests if test is not None and worker.charged is None]
        for worker in asked:
            worker.handle.request_stack()
        stacks = collect_stacks(asked)
        lines = ["procpar: what each worker runs now"]
        for worker, test in tests:
            if test is None:
                lines.append(f"{worker.workerid} idle")
                continue
            lines.append(f"{worker.workerid} {self.items[test[0]].nodeid} {now - test[1]:.1f}s")
            if worker.charged is not None:
                lines.append(f"    ({worker.charged.what}: being stopped)")
                continue
            stack = stacks.get(worker.workerid, "")
            lines += [f"    {line}" for line in stack.splitlines()] or [
                f"    (no stack within {STACK_WAIT_S:g}s)"
            ]
        self._write(lines)

    def _write(self, lines: list[str]) -> None:
        """Whole lines between the progress (on stderr without a terminal reporter)."""
        if not lines:
            return
        reporter: Any = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            sys.stderr.write("".join(f"{line}\n" for line in lines))
            return
        writer = pytest_internals.terminal_writer(reporter)
        if writer is not None and writer.width_of_current_line:  # dots with no path before
            writer.line()  # (which ensure_newline looks for)
        for line in lines:
            reporter.write_line(line)


def collect_stacks(workers: Sequence[Worker]) -> dict[str, str]:
    """The stacks ``workers`` were asked for, by workerid, as far as they arrive within
    :data:`STACK_WAIT_S`. Each file read is emptied (the worker appends to it), so that a later
    crash or time limit shows its own stack, and the time limit sees when that is written."""
    pending = {worker.workerid for worker in workers}
    sizes: dict[str, int] = {}
    deadline = faults.now() + STACK_WAIT_S
    while pending and faults.now() < deadline:
        time.sleep(faults.STACK_POLL_S)
        for worker in workers:
            size = faults.stack_size(worker.crash_files)
            if size and size == sizes.get(worker.workerid):  # written, and no longer growing
                pending.discard(worker.workerid)
            sizes[worker.workerid] = size
    stacks = {}
    for worker in workers:
        if worker.workerid in pending:
            continue
        stacks[worker.workerid] = faults.read_stack(worker.crash_files)
        if worker.handle.is_alive():  # else what it wrote may be its crash's, for its report
            with contextlib.suppress(OSError):
                os.truncate(worker.crash_files, 0)
    return stacks
