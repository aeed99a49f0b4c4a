"""What workers print outside pytest's capture (``-s``, live logs), shown by the controller.

A worker's file descriptors 1 and 2 are pipes to the controller. The controller cuts what
arrives into lines and prints each whole line as soon as it is complete, prefixed with the
worker id, so two workers never mix within a line and every line says where it came from.
"""

from __future__ import annotations

import os
import sys
import weakref
from typing import Any, Protocol

from pytest_procpar import faults, pytest_internals

CHUNK = 1 << 16
HOLD_S = 0.1  # how long terminal output may wait to be written with what follows


class OutputRelay:
    """Line assembly and printing for one worker's stdout or stderr pipe."""

    def __init__(self, fd: int, workerid: str, stream: str, reporter: Any) -> None:
        self.fd = fd
        self.prefix = f"[{workerid}] "
        self.stream = stream
        self.reporter = reporter
        self.partial = b""

    def read(self) -> bool:
        """Relay what the pipe holds now; False once the worker closed it."""
        try:
            data = os.read(self.fd, CHUNK)
        except OSError:
            data = b""
        if not data:
            self.flush()
            return False
        *lines, self.partial = (self.partial + data).split(b"\n")
        for line in lines:
            self._print(line)
        return True

    def drain(self) -> None:
        """Relay everything left after the worker ended."""
        import select

        while select.select([self.fd], [], [], 0)[0] and self.read():
            pass
        self.flush()

    def flush(self) -> None:
        if self.partial:
            self._print(self.partial)
            self.partial = b""

    def _print(self, raw: bytes) -> None:
        text = self.prefix + raw.decode(errors="replace").rstrip("\r")
        writer = pytest_internals.terminal_writer(self.reporter)
        if writer is not None and self.stream == "stdout":
            if writer.width_of_current_line:  # the writer knows where its line stands
                writer.line()  # leave the progress dots' line as it is
            writer.line(text)
            writer.flush()
        else:
            terminal = pytest_internals.writer_file(writer) if writer is not None else None
            if isinstance(terminal, BatchedTerminal):  # first what it holds, without overlay
                terminal.release(overlay=False)
            target = sys.stdout if self.stream == "stdout" else sys.stderr
            target.write(text + "\n")
            target.flush()


class Overlay(Protocol):
    """What is drawn over the output while workers run (live.py's status line)."""

    def erased(self) -> str: ...  # what takes it away, if it is shown
    def drawn(self) -> str: ...  # what draws it again where the output stands now


class BatchedTerminal:
    """Holds the terminal's output for up to :data:`HOLD_S` and writes it with one system
    call.

    pytest's terminal reporter flushes after every report, so a run of tiny tests costs the
    controller one write per test (and one wake-up of whatever reads its output), a fifth of
    its time on a 2-CPU machine. Held, it costs at most ten writes a second, and what a test
    prints still shows a tenth of a second later at most.
    """

    def __init__(self, reporter: Any) -> None:
        self.writer = pytest_internals.terminal_writer(reporter)
        self.file: Any = None
        self.parts: list[str] = []
        self.due_at = 0.0  # when what is held must be written
        self.overlay: Overlay | None = None  # taken away before held output, drawn again after
        if self.writer is not None:
            self.file = pytest_internals.swap_writer_file(self.writer, self)
            # A forked worker prints through the same writer (live logs): not batched there,
            # and what the controller holds is not the worker's to print.
            me = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _unbatch(me()))

    def write(self, text: str) -> int:
        if not self.parts:
            self.due_at = faults.now() + HOLD_S
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        """The reporter's flushes wait for :meth:`release`."""

    def wait_time(self) -> float | None:
        """How long the controller may block before held output is due (None: none held)."""
        if not self.parts:
            return None
        return max(0.001, self.due_at - faults.now())

    def release_if_due(self) -> None:
        if self.parts and faults.now() >= self.due_at:
            self.release()

    def release(self, *, overlay: bool = True) -> None:
        """Write what is held (with an overlay: even if nothing is, to draw it again; not
        drawn with ``overlay`` False, when something else writes to the terminal next)."""
        if not self.parts and self.overlay is None:
            return
        text = "".join(self.parts)
        self.parts.clear()
        if self.overlay is not None:
            text = self.overlay.erased() + text + (self.overlay.drawn() if overlay else "")
        if not text:
            return
        try:
            self.file.write(text)
        except UnicodeEncodeError:  # escaped, as the terminal writer does
            encoding = getattr(self.file, "encoding", None) or "ascii"
            self.file.write(text.encode(encoding, "backslashreplace").decode(encoding))
        self.file.flush()

    def restore(self) -> None:
        if self.writer is not None:
            self.release()
            pytest_internals.swap_writer_file(self.writer, self.file)
            self.writer = None

    def __getattr__(self, name: str) -> Any:  # isatty, encoding, ...: the real file's
        return getattr(self.file, name)


def _unbatch(terminal: BatchedTerminal | None) -> None:
    if terminal is not None and terminal.writer is not None:
        terminal.parts.clear()
        terminal.overlay = None
        terminal.restore()
