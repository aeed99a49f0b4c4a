"""Framing: how messages travel over one pipe pair per worker, whole or not at all.

Each worker has its own pipes rather than sharing one ``multiprocessing.Queue``: a worker killed
while writing (OOM killer, segfault) can then only cut its own stream short, never hold a shared
lock that hangs everybody else. A frame is a 4-byte big-endian length and a pickle of one
message (see :mod:`pytest_procpar.messages`). Workers write one frame per test item, so the
kernel's pipe buffer does the batching and nothing a finished test reported can be lost when a
later test kills the worker; the controller reads whatever is buffered in one system call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import select
import signal
import struct
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from pytest_procpar.pytest_internals import saferepr

M = TypeVar("M")  # the messages one direction carries: messages.FromWorker or ToWorker

_HEADER = struct.Struct("!I")
_PIPE_SIZE = 1 << 20
_FIRST_CHUNK = 1 << 16
_F_SETPIPE_SZ = 1031  # Linux fcntl command; other platforms keep the default pipe size


def enlarge_pipe(fd: int) -> None:
    """Ask Linux for a 1 MiB pipe buffer so a burst of results never stalls a worker."""
    try:
        import fcntl

        fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_SIZE)
    except (ImportError, OSError):
        pass


_DEFERRED = {signal.SIGINT, signal.SIGTERM}
_ATOMIC_WRITE = getattr(select, "PIPE_BUF", 512)  # POSIX guarantees at least 512


def encode(message: tuple[object, ...]) -> bytes:
    """One frame: what :func:`send` writes, and what remote links carry as they are.

    A value that cannot be pickled (a lambda in a subtest's parameters, a lock in a user
    property, a plugin's object in a report or in ``workeroutput``) travels as its
    ``saferepr``: the message, and the test's outcome, still arrive."""
    try:
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        payload = pickle.dumps(picklable(message), protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


def can_pickle(value: object) -> bool:
    """Whether pickle takes ``value`` whole."""
    try:
        pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return False
    return True


def picklable(value: Any) -> Any:
    """``value`` with every part pickle cannot take replaced by its ``saferepr``; containers
    become plain dicts, lists and tuples, dataclasses keep their type. Only called once
    pickling the whole has failed."""
    if can_pickle(value):
        return value
    if isinstance(value, dict):
        return {picklable(key): picklable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        parts = [picklable(item) for item in value]
        return parts if isinstance(value, list) else tuple(parts)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # a subtest's context
        fields = {f.name: picklable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        with contextlib.suppress(Exception):
            return dataclasses.replace(value, **fields)
    return ShownAs(saferepr(value))


class ShownAs(str):
    """The ``saferepr`` text of a value that could not be sent: its ``repr()`` is that text,
    not a quoted string, so the controller shows it as the worker would have shown the value
    (in a subtest's parameters, say)."""

    def __repr__(self) -> str:
        return str(self)


def send(fd: int, message: tuple[object, ...]) -> None:
    """Write one frame, all of it: Ctrl-C or SIGTERM arriving meanwhile waits until the frame
    is whole, since half a frame would garble every frame after it."""
    write_all(fd, encode(message))


def write_all(fd: int, data: bytes) -> None:
    """Write ``data`` whole, with Ctrl-C and SIGTERM held back until it is written.

    Up to ``PIPE_BUF`` bytes, a pipe write is atomic: a signal interrupts it before anything
    is written or not at all. Most frames are that small and need no signal mask, which saves
    two system calls per test.
    """
    if len(data) <= _ATOMIC_WRITE:
        written = os.write(fd, data)
        if written == len(data):
            return
        data = data[written:]  # not a pipe after all: write the rest the careful way
    view = memoryview(data)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED)
    try:
        while view:
            view = view[os.write(fd, view) :]
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class FrameReader(Generic[M]):
    """Turns the bytes read from one pipe into whole messages (of the kinds ``M``)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.eof = False
        self._buffer = bytearray()
        # Reused (a fresh buffer per read would cost an allocation, for large ones an mmap and
        # a munmap); doubled whenever a read fills it, up to the pipe's size.
        self._chunk = bytearray(_FIRST_CHUNK)

    def read_available(self) -> list[M]:
        """Read what the pipe holds now (call when it is readable) and return complete frames."""
        count = os.readv(self.fd, [self._chunk])
        if not count:
            self.eof = True
        self._buffer += memoryview(self._chunk)[:count]
        if count == len(self._chunk) < _PIPE_SIZE:
            self._chunk = bytearray(2 * count)
        return list(self._frames())

    def receive(self, block: bool) -> list[M]:
        """Frames available now; with ``block``, wait until at least one arrives or EOF."""
        messages: list[M] = []
        while not self.eof and ((block and not messages) or select.select([self.fd], [], [], 0)[0]):
            messages += self.read_available()
        return messages

    def _frames(self) -> Iterator[M]:
        buffer, pos = self._buffer, 0
        with memoryview(buffer) as view:  # unpickle in place, no copies
            while len(buffer) - pos >= _HEADER.size:
                (size,) = _HEADER.unpack_from(buffer, pos)
                end = pos + _HEADER.size + size
                if len(buffer) < end:
                    break
                yield pickle.loads(view[pos + _HEADER.size : end])
                pos = end
        del buffer[:pos]
