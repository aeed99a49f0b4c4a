"""When workers die, hang or are interrupted: the pieces both sides need.

Worker side: a worker leads its own process group (so it and whatever its tests started can be
stopped together), dies with the controller (Linux parent-death signal), and points
faulthandler at a per-worker file, so a segfault or a timeout leaves a Python stack the
controller can read after the process is gone.

Controller side: reading a lost worker's stack, the messages for the reports of tests that
could not report themselves, and signalling a worker's process group (time limits, in
:mod:`pytest_procpar.timelimits`, use it to end overdue tests).
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

STACK_SIGNAL = signal.SIGUSR1
_PR_SET_PDEATHSIG = 1
_kept_open: list[IO[str]] = []  # faulthandler writes to these until the process ends
_fork_mask = threading.local()  # whether SIGTERM was blocked before a fork, per thread


def prepare_worker_process(stack_path: Path, parent_pid: int | None) -> None:
    """Own process group, death with the parent, stacks to ``stack_path``.

    ``parent_pid`` is the controller for fork and spawn; a forkserver worker's parent is the
    fork server (None here), which itself ends when the controller does.
    """
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if parent_pid is not None and os.getppid() != parent_pid:  # died before the line above
        os._exit(1)
    # Appending: the controller empties the file after reading a stack it asked for (see
    # live.py), and the next stack must then start at its beginning.
    stream = open(stack_path, "a", encoding="utf-8")  # noqa: SIM115 - kept for faulthandler
    stream.truncate(0)
    _kept_open.append(stream)
    point_faulthandler_at_stack()
    faulthandler.register(STACK_SIGNAL, file=stream, all_threads=True, chain=False)
    _release_forkserver()
    own_group = os.getpgid(0) == os.getpid()
    signal.signal(signal.SIGTERM, _take_group_down if own_group else signal.SIG_DFL)
    os.register_at_fork(
        before=_hold_sigterm,
        after_in_parent=_release_sigterm,
        after_in_child=_restore_signals_of_forked_child,
    )


def point_faulthandler_at_stack() -> None:
    """Fatal errors (segfaults) write the Python stack where the controller will read it;
    again after pytest's own faulthandler plugin, which points it at stderr."""
    if _kept_open:
        faulthandler.enable(file=_kept_open[0], all_threads=True)


def _take_group_down(signum: int, frame: object) -> None:
    """SIGTERM (the controller died, or stops this worker): end what the tests started too."""
    os.killpg(os.getpid(), signal.SIGKILL)


def _hold_sigterm() -> None:
    """Block SIGTERM across a test's fork: a child signalled before its at-fork hook has run
    would otherwise take it with the worker's handler, which CPython then drops for the
    child's own default, and survive (``Pool.terminate()`` right after the pool started)."""
    _fork_mask.sigterm_was_blocked = signal.SIGTERM in signal.pthread_sigmask(
        signal.SIG_BLOCK, {signal.SIGTERM}
    )


def _release_sigterm() -> None:
    if not getattr(_fork_mask, "sigterm_was_blocked", True):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def _restore_signals_of_forked_child() -> None:
    """A process a test forks gets SIGTERM and the stack signal as serial pytest leaves them,
    and writes a fatal error's stack to its stderr, not to the worker's stack file.

    Inherited, the worker's SIGTERM handler would try to kill a process group the child does
    not lead and raise instead of ending it: ``Pool.terminate()`` in a test then waits forever
    for a pool process that survived its SIGTERM. A child's segfault in the worker's stack
    file would show in the report of the worker's own crash.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _release_sigterm()  # a SIGTERM that came meanwhile now ends the child
    faulthandler.unregister(STACK_SIGNAL)
    if faulthandler.is_enabled():
        faulthandler.enable(file=2, all_threads=True)


def _release_forkserver() -> None:
    """A forkserver child holds the "controller alive" pipe of the fork server; dropping it
    lets the fork server, and through the parent-death signal this worker, end with the
    controller."""
    forkserver = sys.modules.get("multiprocessing.forkserver")
    if forkserver is None:  # not started by a fork server (and importing it costs ~8 ms)
        return
    with contextlib.suppress(Exception):
        server = forkserver._forkserver
        alive = getattr(server, "_forkserver_alive_fd", None)
        if alive is not None:
            os.close(alive)
            setattr(server, "_forkserver_alive_fd", None)  # noqa: B010 - not in typeshed


STACK_POLL_S = 0.02  # how often to look whether a stack asked for is written yet


def stack_size(stack_path: Path) -> int:
    """How much of a stack the worker has written (0: none, or no file)."""
    try:
        return stack_path.stat().st_size
    except OSError:
        return 0


def read_stack(stack_path: Path) -> str:
    try:
        return stack_path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def describe_exit(exitcode: int | None) -> str:
    """``signal 11 (SIGSEGV)`` or ``exit code 3``, for crash messages."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "unknown signal"
        return f"signal {-exitcode} ({name})"
    return f"exit code {exitcode}"


def signal_group(pid: int, signum: int) -> None:
    """Send ``signum`` once to the worker's process group (its tests' children too), or to
    the worker alone if it has no group of its own."""
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def now() -> float:
    """The clock workers and controller share (CLOCK_MONOTONIC is system-wide on Linux).

    Read through ``clock_gettime``, which tests that freeze time do not touch: freezegun
    replaces ``time.monotonic`` and ``time.perf_counter`` (a module-scoped ``freeze_time``
    would otherwise give a test a duration of decades, and the controller a deadline that
    ``select`` cannot wait for)."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def interrupt_on_sigterm() -> Callable[[], None]:
    """While workers run, SIGTERM to the controller ends the run like Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore
