"""The controller-worker wire protocol: framed messages over one pipe pair per worker.

Each worker has its own pipes rather than sharing one ``multiprocessing.Queue``: a worker killed
while writing (OOM killer, segfault) can then only cut its own stream short, never hold a shared
lock that hangs everybody else. A frame is a 4-byte big-endian length and a pickle of a tuple whose
first element is the message kind. Workers write one frame per test item, so the kernel's pipe
buffer does the batching and nothing a finished test reported can be lost when a later test
kills the worker; the controller reads whatever is buffered in one system call.

Reports travel as pytest's own ``pytest_report_to_serializable`` dicts, never as pickled
exceptions. A report with nothing beyond what the controller already knows from its own copy of
the item (no longrepr, no sections, no extra attributes) travels as a short tuple instead.
See docs/protocol.rst for the message table.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import pickle
import select
import signal
import struct
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from _pytest._io.saferepr import saferepr

# Controller -> worker.
RUN = "run"  # ("run", [item index, ...]): append these items to the worker's queue
DONE = "done"  # ("done",): no more items will come; finish the queue and the session

# Worker -> controller.
READY = "ready"  # ("ready", None): the worker is up and has the items
ITEM = "item"  # ("item", index, [event, ...], seconds): all one item reported, and its time
WANT = "want"  # ("want",): the worker's queue is running low
STOP = "stop"  # ("stop", shouldfail, shouldstop): the worker's session asked to stop
FINISHED = "finished"  # ("finished", workeroutput): session finished cleanly
FATAL = "fatal"  # ("fatal", kind, payload): the worker loop ended by an exception
UNAVAILABLE = "unavailable"  # FATAL kind: a remote worker could not start (payload: why)

# Events inside an ITEM frame.
LOGSTART = "logstart"  # ("logstart", location) or ("logstart", location, nodeid)
LOGFINISH = "logfinish"  # ("logfinish", location) or ("logfinish", location, nodeid)
REPORT = "report"  # ("report", serialized report dict, longrepr is text without a crash line)
PLAIN_REPORT = "plain"  # ("plain", when, outcome, duration, start, stop)
LOG_FILE = "logfile"  # ("logfile", text): a record for --log-file, formatted by the worker
WARNING = "warning"  # ("warning", serialized warning dict, when, nodeid, location)

_SUBTEST_CONTEXT = "_subtest.context"  # in a serialized SubtestReport (pytest >= 9)
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


def encode(message: tuple[Any, ...]) -> bytes:
    """One frame: what :func:`send` writes, and what remote links carry as they are.

    A value that cannot be pickled (a lambda in a subtest's parameters, a lock in a user
    property, a plugin's object in a report or in ``workeroutput``) travels as its
    ``saferepr``: the message, and the test's outcome, still arrive."""
    try:
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        payload = pickle.dumps(picklable(message), protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


def picklable(value: Any) -> Any:
    """``value`` with every part pickle cannot take replaced by its ``saferepr``; containers
    become plain dicts, lists and tuples, dataclasses keep their type. Only called once
    pickling the whole has failed."""
    try:
        pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        return value
    except Exception:
        pass
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


def send(fd: int, message: tuple[Any, ...]) -> None:
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


class FrameReader:
    """Turns the bytes read from one pipe into whole messages."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.eof = False
        self._buffer = bytearray()
        # Reused (a fresh buffer per read would cost an allocation, for large ones an mmap and
        # a munmap); doubled whenever a read fills it, up to the pipe's size.
        self._chunk = bytearray(_FIRST_CHUNK)

    def read_available(self) -> list[tuple[Any, ...]]:
        """Read what the pipe holds now (call when it is readable) and return complete frames."""
        count = os.readv(self.fd, [self._chunk])
        if not count:
            self.eof = True
        self._buffer += memoryview(self._chunk)[:count]
        if count == len(self._chunk) < _PIPE_SIZE:
            self._chunk = bytearray(2 * count)
        return list(self._frames())

    def receive(self, block: bool) -> list[tuple[Any, ...]]:
        """Frames available now; with ``block``, wait until at least one arrives or EOF."""
        messages: list[tuple[Any, ...]] = []
        while not self.eof and ((block and not messages) or select.select([self.fd], [], [], 0)[0]):
            messages += self.read_available()
        return messages

    def _frames(self) -> Iterator[tuple[Any, ...]]:
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


# The attributes of a report made from nothing but the constructor's arguments; pytest versions
# differ in how they store some of them, so ask this one.
_PLAIN_KEYS = frozenset(vars(pytest.TestReport("x", ("x", 0, "x"), {}, "passed", None, "call")))


def encode_report(
    config: pytest.Config,
    report: pytest.TestReport,
    item: pytest.Item | None,
    keywords: dict[str, int],
) -> tuple[Any, ...]:
    """A report as an event: the short form when the controller can rebuild it exactly."""
    if (
        item is not None
        and type(report) is pytest.TestReport
        and report.__dict__.keys() == _PLAIN_KEYS
        and report.longrepr is None
        and not report.sections
        and not report.user_properties
        and report.nodeid == item.nodeid
        and report.location == item.location
        and report.keywords == keywords
    ):
        return (PLAIN_REPORT, report.when, report.outcome, report.duration, report.start,
                report.stop)  # fmt: skip
    data = serialize_report(config, report)
    # pytest serializes a failure representation without a crash line (a doctest failure,
    # a plugin's own repr) as its text; say so, or the text would pass for the crash message.
    longrepr = report.longrepr
    opaque = hasattr(longrepr, "toterminal") and not hasattr(longrepr, "reprcrash")
    return (REPORT, data, opaque)


def serialize_report(config: pytest.Config, report: pytest.TestReport) -> dict[str, Any]:
    """``pytest_report_to_serializable``, which cannot fail here: when the report cannot
    serialize itself (a value in it that cannot even be copied, such as a lock among a
    subtest's parameters), it is serialized again with such values made :func:`picklable`,
    and failing that as a plain ``TestReport`` with the same outcome."""
    serialize = config.hook.pytest_report_to_serializable
    try:
        data: dict[str, Any] = serialize(config=config, report=report)
        return data
    except Exception:
        pass
    sendable = copy.copy(report)
    vars(sendable).update((name, picklable(value)) for name, value in vars(report).items())
    try:
        data = serialize(config=config, report=sendable)
    except Exception:
        data = serialize(config=config, report=_plain_copy(report))
    return data


def _plain_copy(report: pytest.TestReport) -> pytest.TestReport:
    """``report`` as a plain ``TestReport``: its failure as text, its other values picklable."""
    plain = pytest.TestReport(
        nodeid=report.nodeid,
        location=report.location,
        keywords=dict.fromkeys(report.keywords, 1),
        outcome=report.outcome,
        longrepr=None if report.longrepr is None else str(report.longrepr),
        when=report.when,
        sections=[(str(name), str(text)) for name, text in report.sections],
        duration=report.duration,
        start=report.start,
        stop=report.stop,
        user_properties=picklable(report.user_properties),
    )
    for name, value in vars(report).items():
        if name not in vars(plain):
            setattr(plain, name, picklable(value))
    return plain


def decode_report(
    config: pytest.Config,
    event: tuple[Any, ...],
    item: pytest.Item,
    location: tuple[str, int | None, str],
    keywords: dict[str, int],
) -> pytest.TestReport:
    """The controller's copy of a report sent by :func:`encode_report`."""
    if event[0] == PLAIN_REPORT:
        _, when, outcome, duration, start, stop = event
        return pytest.TestReport(
            nodeid=item.nodeid,
            location=location,
            keywords=dict(keywords),  # type: ignore[arg-type]
            outcome=outcome,
            longrepr=None,
            when=when,
            sections=[],
            duration=duration,
            start=start,
            stop=stop,
            user_properties=[],
        )
    data = event[1]
    report: pytest.TestReport = config.hook.pytest_report_from_serializable(
        config=config, data=data
    )
    context = data.get(_SUBTEST_CONTEXT)
    if context is not None and hasattr(report, "context"):
        # pytest's SubtestContext passes its values through saferepr when it is made, also
        # when it is rebuilt from values that are that text already ('1' for 1): keep them.
        object.__setattr__(report.context, "kwargs", dict(context["kwargs"]))
    if event[2] and isinstance(report.longrepr, str):
        report.longrepr = TextRepr(report.longrepr)  # type: ignore[assignment]
    return report


def encode_interrupt(config: pytest.Config) -> dict[str, Any]:
    """The KeyboardInterrupt being handled, represented as serial pytest's terminal shows it
    (ending at the test's line), in the form reports travel in."""
    excinfo = pytest.ExceptionInfo.from_current()
    carrier = pytest.TestReport(
        nodeid="",
        location=("", None, ""),
        keywords={},
        outcome="failed",
        longrepr=excinfo.getrepr(funcargs=True),
        when="call",
    )
    data: dict[str, Any] = config.hook.pytest_report_to_serializable(config=config, report=carrier)
    return data


def decode_interrupt(config: pytest.Config, data: dict[str, Any]) -> Any:
    """The representation :func:`encode_interrupt` sent: what ``ExceptionInfo.getrepr`` gave."""
    carrier = config.hook.pytest_report_from_serializable(config=config, data=data)
    return carrier.longrepr


class TextRepr:
    """A failure representation that arrived as text: printed as it is, with no crash line."""

    def __init__(self, text: str) -> None:
        self.text = text

    def toterminal(self, tw: Any) -> None:
        for line in self.text.splitlines():
            tw.line(line)

    def __str__(self) -> str:
        return self.text


def encode_warning(message: warnings.WarningMessage) -> dict[str, Any]:
    """A recorded warning as plain data: category by import path, message as text."""
    category = message.category
    return {
        "message": str(message.message),
        "category_module": category.__module__,
        "category_name": category.__qualname__,
        "filename": message.filename,
        "lineno": message.lineno,
        "line": message.line,
    }


def decode_warning(data: dict[str, Any]) -> warnings.WarningMessage:
    """Rebuild a warning; an unimportable category becomes a UserWarning naming it."""
    category: type[Warning] = UserWarning
    text = data["message"]
    try:
        module = __import__(data["category_module"], fromlist=["_"])
        found = module
        for part in data["category_name"].split("."):
            found = getattr(found, part)
        if isinstance(found, type) and issubclass(found, Warning):
            category = found
    except Exception:
        text = f"{data['category_module']}.{data['category_name']}: {text}"
    try:
        instance = category(text)
    except Exception:
        instance = UserWarning(text)
    return warnings.WarningMessage(
        instance, type(instance), data["filename"], data["lineno"], line=data["line"]
    )
