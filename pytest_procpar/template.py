"""The template process: forked from the controller before pytest configures, it forks the
run's local workers on request.

A worker must be what a fresh xdist worker is: every ``pytest_configure`` and
``pytest_sessionstart`` ran once in its own memory, with ``config.workerinput`` set, and what
they started (threads, servers, handlers, connections) is its own and alive. A copy of the
configured controller cannot be that (configuring again on top of the first configuration
breaks whatever is not idempotent, and threads do not survive a fork), and a spawned
interpreter pays for importing pytest, the plugins and the conftests again. The template is a
copy of the controller taken at the last moment before the conftests are imported: the command
line and the ini file read, the plugins imported and registered, nothing configured. A worker
forked from it returns from the fork into pytest's own start-up, which goes on as in any
process: the conftests load, pytest configures (as a worker), the session runs (see
docs/how-it-works.rst, "The process model").

The template is single-threaded and idle between requests, so forking it is safe. It talks to
the controller over a Unix socket pair:

- controller to template: a request, two 8-byte lengths followed by that many bytes of
  payload (opaque here) and of module names to import first (see :meth:`Template.start`),
  with the worker's file descriptors attached to the lengths (``SCM_RIGHTS``); the last
  descriptor is the write end of the worker's status pipe;
- template to controller: the new worker's pid (8 bytes);
- template to the status pipe, once it reaped the worker: its exit code (4 bytes, signed, as
  :attr:`multiprocessing.Process.exitcode` gives it), then the pipe is closed.

The controller's end of the status pipe is the worker's sentinel: readable once the worker is
gone. When the controller closes its socket (or dies) the template ends; its workers get
``SIGTERM`` through their parent-death signal.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import os
import select
import selectors
import signal
import socket
import struct
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

_LENGTH = struct.Struct("q")
_LENGTHS = struct.Struct("qq")  # a request's payload and module names
_EXIT = struct.Struct("i")
_MAX_FDS = 16
_PR_SET_PDEATHSIG = 1
LOST_EXIT = None  # a worker whose template vanished before reaping it: exit code unknown
# standard modules never imported ahead: they act on import (print, open a browser) or set up
# the terminal, which a process that runs no interactive code does not do
_NOT_AHEAD = frozenset({"__main__", "antigravity", "this", "readline", "rlcompleter", "idlelib"})

# (payload, fds, template pid). Returns in a worker that goes on with pytest's start-up from
# where the template was forked; other children (bisect's probes) never return.
ChildMain = Callable[[bytes, list[int], int], None]


_worker = False  # this process is a worker (or a probe) of a run, being configured


def mark_worker() -> None:
    """This process becomes a worker: it makes no template of its own."""
    global _worker
    _worker = True


def is_worker() -> bool:
    return _worker


def available() -> bool:
    """Whether this platform can run a template: fork, descriptor passing, and pidfds (the
    template waits for its workers' exits and for requests in one ``select``)."""
    return hasattr(os, "fork") and hasattr(os, "pidfd_open") and hasattr(socket, "send_fds")


class TemplateChild:
    """A worker forked by the template, as the controller sees it: what the launcher needs
    from a :class:`multiprocessing.Process` (pid, sentinel, exit code, join, liveness)."""

    def __init__(self, pid: int, status_fd: int) -> None:
        self.pid = pid
        self.sentinel = status_fd  # readable once the template reaped the worker
        self.exitcode: int | None = None
        self.reaped = False

    def join(self, timeout: float | None = None) -> None:
        if self.reaped:
            return
        ready, _, _ = select.select([self.sentinel], [], [], timeout)
        if not ready:
            return
        data = b""
        with contextlib.suppress(OSError):
            while len(data) < _EXIT.size:
                chunk = os.read(self.sentinel, _EXIT.size - len(data))
                if not chunk:
                    break
                data += chunk
        self.exitcode = _EXIT.unpack(data)[0] if len(data) == _EXIT.size else LOST_EXIT
        self.reaped = True

    def is_alive(self) -> bool:
        self.join(0)
        return not self.reaped

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.sentinel)


class TemplateGone(Exception):
    """The template process is not there to fork a worker."""


class Template:
    """The controller's handle on its template process."""

    def __init__(self, pid: int, channel: socket.socket, modules: set[str]) -> None:
        self.pid = pid
        self.channel = channel
        self.modules = modules  # what the template has imported, as far as this side knows

    @classmethod
    def fork(cls, child_main: ChildMain) -> Template | None:
        """Fork the template here and now; in the template, serve requests until the
        controller goes, forking a process that runs ``child_main`` for each. Returns the
        template in the controller, and None in a child whose ``child_main`` returned: that
        child goes on from here, where the template was forked. The template never returns."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            if stream is not None:  # what is buffered must not be written again by the copies
                stream.flush()
        controller = os.getpid()
        modules = set(sys.modules)
        pid = os.fork()
        if pid == 0:  # the template
            try:
                ours.close()
                _become_template(controller)
                if _serve(theirs, child_main):
                    return None  # a child, going on from here
            except BaseException:  # never back into the controller's stack
                traceback.print_exc()
                os._exit(70)
            os._exit(0)
        theirs.close()
        return cls(pid, ours, modules)

    def start(self, payload: bytes, fds: Sequence[int]) -> TemplateChild:
        """Ask for a worker: it gets ``fds`` (the caller keeps and closes its own copies) and
        ``payload``.

        The standard library modules this process imported since the template was forked
        (while configuring, starting its session, collecting) are imported in the template
        first: every worker would import them again (``pdb`` as pytest configures, what a
        Django conftest imports: about 100 modules and 90 ms a worker in Django REST
        framework's suite); forked with them, it shares them instead. Only the standard
        library's, whose import changes nothing a test could see but ``sys.modules``; the
        template leaves out a module whose import warns (see :func:`_import_ahead`)."""
        ahead = [name for name in list(sys.modules) if self._ahead(name)]
        self.modules.update(ahead)
        names = "\n".join(ahead).encode()
        status_r, status_w = os.pipe()
        try:
            lengths = _LENGTHS.pack(len(payload), len(names))
            socket.send_fds(self.channel, [lengths], [*fds, status_w])
            self.channel.sendall(payload + names)
            pid = _LENGTH.unpack(_receive_exactly(self.channel, _LENGTH.size))[0]
        except (OSError, EOFError) as exc:
            os.close(status_r)
            raise TemplateGone(f"the template process is gone ({exc})") from None
        finally:
            os.close(status_w)
        return TemplateChild(pid, status_r)

    def _ahead(self, name: str) -> bool:
        """Whether the template is to import ``name`` before it forks the next worker."""
        top = name.partition(".")[0]
        return name not in self.modules and top in sys.stdlib_module_names and top not in _NOT_AHEAD

    def close(self) -> None:
        """The run is over: the template ends (and is reaped here)."""
        self.channel.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _receive_exactly(channel: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = channel.recv(size - len(data))
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
    return data


def _become_template(controller: int) -> None:
    """Die with the controller; let Ctrl-C reach the controller and the workers only; pass
    ``SIGUSR1`` (procpar's "what runs now", see :doc:`live`), which a test may send to its
    parent, on to the controller; keep the collector off what the workers inherit, for
    good: their collections walk only their own objects, and the inherited pages stay
    shared (docs/how-it-works.rst, "The process model")."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != controller:  # the controller died before the line above
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, lambda signum, frame: os.kill(controller, signum))
    gc.freeze()


def _serve(channel: socket.socket, child_main: ChildMain) -> bool:
    """The template's loop: fork a worker per request, report each worker's exit. Returns
    False in the template when the controller has gone, True in a child that goes on."""
    selector = selectors.DefaultSelector()
    selector.register(channel, selectors.EVENT_READ, None)
    children: dict[int, tuple[int, int]] = {}  # pidfd -> (pid, status pipe's write end)
    while True:
        for key, _ in selector.select():
            if key.data is None:
                request = _receive_request(channel)
                if request is None:  # the controller closed its end, or died
                    return False
                payload, ahead, fds = request
                *given, status_w = fds
                _import_ahead(ahead)
                pid = os.fork()
                if pid == 0:
                    _enter_child(selector, channel, children, status_w, child_main, payload, given)
                    return True
                for fd in given:
                    os.close(fd)
                pidfd = os.pidfd_open(pid)
                children[pidfd] = (pid, status_w)
                selector.register(pidfd, selectors.EVENT_READ, pid)
                channel.sendall(_LENGTH.pack(pid))
            else:
                pid, status_w = children.pop(key.fd)
                selector.unregister(key.fd)
                os.close(key.fd)
                _, status = os.waitpid(pid, 0)
                with contextlib.suppress(OSError):  # the controller may have closed its end
                    os.write(status_w, _EXIT.pack(os.waitstatus_to_exitcode(status)))
                os.close(status_w)


def _enter_child(
    selector: selectors.BaseSelector,
    channel: socket.socket,
    children: dict[int, tuple[int, int]],
    status_w: int,
    child_main: ChildMain,
    payload: bytes,
    fds: list[int],
) -> None:
    """In a newly forked child: drop the template's descriptors and run ``child_main``.
    Returns if it returns (the child goes on); exits if it fails."""
    template = os.getppid()
    try:
        selector.close()
        channel.close()
        for pidfd, (_, other_status) in children.items():
            os.close(pidfd)
            os.close(other_status)
        os.close(status_w)
        # what the template changed, as a process pytest starts has it
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        child_main(payload, fds, template)
    except BaseException:
        traceback.print_exc()
        os._exit(70)


def _receive_request(channel: socket.socket) -> tuple[bytes, list[str], list[int]] | None:
    """The next request (payload, modules to import first, descriptors), or None once the
    controller has closed its end."""
    try:
        header, fds, _, _ = socket.recv_fds(channel, _LENGTHS.size, _MAX_FDS)
    except (ConnectionResetError, EOFError):
        return None
    if not header:
        return None
    if len(header) < _LENGTHS.size:
        header += _receive_exactly(channel, _LENGTHS.size - len(header))
    payload_length, names_length = _LENGTHS.unpack(header)
    payload = _receive_exactly(channel, payload_length)
    names = _receive_exactly(channel, names_length).decode()
    return payload, names.split("\n") if names else [], fds


def _import_ahead(names: Sequence[str]) -> None:
    """Import ``names`` here, for the workers forked from now on to share (see
    :meth:`Template.start`). A module whose import fails is left to the workers; so is one
    whose import warns (forgotten again, with what it imported): the worker that imports it
    shows the warning where a serial run does. What is imported is kept from the garbage
    collector, as everything the workers inherit."""
    imported = False
    for name in names:
        if name in sys.modules:
            continue
        before = set(sys.modules)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                importlib.import_module(name)
                quiet = not caught
            except Exception:
                quiet = False
        if not quiet:
            for added in set(sys.modules) - before:
                del sys.modules[added]
        else:
            imported = True
    if imported:
        gc.freeze()


@dataclass
class Made:
    """What the controller made before its conftests loaded: the template (None: none could
    be made, ``notice`` says why) and what it was forked with (shared memory, opaque here)."""

    template: Template | None
    shared: Any
    notice: str


MADE_KEY = pytest.StashKey[Made]()


def remember(config: pytest.Config, made: Made) -> None:
    config.stash[MADE_KEY] = made


def made(config: pytest.Config) -> Made | None:
    return config.stash.get(MADE_KEY, None)


def close(config: pytest.Config) -> None:
    """No more workers will be started: the template ends."""
    found = made(config)
    if found is not None and found.template is not None:
        found.template.close()
        found.template = None
