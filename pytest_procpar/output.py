"""What workers print outside pytest's capture (``-s``, live logs), shown by the controller.

A worker's file descriptors 1 and 2 are pipes to the controller. The controller cuts what
arrives into lines and prints each whole line as soon as it is complete, prefixed with the
worker id, so two workers never mix within a line and every line says where it came from.
"""

from __future__ import annotations

import os
import sys
from typing import Any

CHUNK = 1 << 16


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
        if self.stream == "stdout" and self.reporter is not None:
            writer = self.reporter._tw  # the terminal writer knows where its line stands
            if writer.width_of_current_line:
                writer.line()  # leave the progress dots' line as it is
            writer.line(text)
            writer.flush()
        else:
            target = sys.stdout if self.stream == "stdout" else sys.stderr
            target.write(text + "\n")
            target.flush()
