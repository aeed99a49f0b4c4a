"""Workers in other interpreters or on other hosts (``--tx``), reached through execnet.

A remote worker runs the same worker loop as a spawned local one (see
:mod:`pytest_procpar.remote_worker`): it collects by itself, checks it found the controller's
nodeids, and speaks the same frames. Only the transport differs. execnet delivers what the
worker sends on a background thread; :class:`RemoteWorker` writes it into local pipes, so the
controller's selector loop serves remote and local workers alike and a lost gateway looks like
a worker whose pipes closed. What shared memory does for local workers (the stop flag, which
test runs since when) travels as small channel messages instead.

The code must already be at the remote end: procpar copies no files. ``--procpar-chdir`` (or a
spec's own ``chdir=``) says where the rootdir is found there.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

import pytest

from pytest_procpar import faults, framing, messages
from pytest_procpar.messages import FromWorker, ToWorker

# Executed in the gateway's interpreter: everything else comes from procpar installed there.
BOOTSTRAP = "from pytest_procpar.remote_worker import serve\nserve(channel)\n"
GATEWAY_KINDS = ("popen", "ssh", "socket", "vagrant_ssh")
PAYLOAD_PICKLE_PROTOCOL = 4  # readable by every Python procpar supports, whatever runs here

# Messages on the channel, each a tuple tagged by its kind.
FRAME: Final = "frame"  # ("frame", bytes): protocol frames, either way
RUNNING: Final = "running"  # ("running", index): the worker started item index (-1: between)
STACK: Final = "stack"  # controller: ("stack",) dump your stack; worker: ("stack", text)
HALT: Final = "halt"  # ("halt",): stop before the next item
SIGNAL: Final = "signal"  # ("signal", signum): to the worker and what its tests started
# ("stdout", bytes), ("stderr", bytes): what the worker wrote outside captures
ToRemote: TypeAlias = (
    tuple[Literal["frame"], bytes]
    | tuple[Literal["halt"]]
    | tuple[Literal["stack"]]
    | tuple[Literal["signal"], int]
)
FromRemote: TypeAlias = (
    tuple[Literal["frame", "stdout", "stderr"], bytes]
    | tuple[Literal["running"], int]
    | tuple[Literal["stack"], str]
)

END = object()  # the end-of-channel marker our channel callbacks get from execnet


def map_path(value: Any, rootdir: Path, remote_rootdir: str | None) -> Any:
    """A local path under ``rootdir`` as the remote end sees it (strings and lists of them)."""
    if remote_rootdir is None:
        return value
    if isinstance(value, list | tuple):
        return type(value)(map_path(part, rootdir, remote_rootdir) for part in value)
    if not isinstance(value, str | Path) or not os.path.isabs(value):
        return value
    try:
        relative = Path(value).relative_to(rootdir)
    except ValueError:
        return value
    mapped = Path(remote_rootdir, relative)
    return str(mapped) if isinstance(value, str) else mapped


class RemoteWorker:
    """A worker behind an execnet channel, presented like a local worker process."""

    def __init__(self, gateway: Any, channel: Any, spec: str, stack_path: Path) -> None:
        self.gateway = gateway
        self.channel = channel
        self.spec = spec
        self.stack_path = stack_path
        results_r, self._results_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        self.sentinel, self._exit_w = os.pipe()
        framing.enlarge_pipe(self._results_w)
        self.reader: framing.FrameReader[FromWorker] = framing.FrameReader(results_r)
        self.output_fds = {"stdout": stdout_r, "stderr": stderr_r}
        self._writers = {FRAME: self._results_w, "stdout": stdout_w, "stderr": stderr_w}
        self._running = (-1, 0.0)
        self._ended = threading.Event()
        self._lock = threading.Lock()  # the callback's writes against close()
        self._closed = False
        self.lost = ""  # why the connection ended, when it did not end cleanly
        channel.setcallback(self._received, endmarker=END)

    # -- execnet's receiver thread --------------------------------------------------------

    def _received(self, message: FromRemote | object) -> None:
        match message:  # (a bare name in a pattern would capture: the kinds are spelled out)
            case ("running", int() as index):
                self._running = (index, faults.now())
            case ("stack", str() as text):
                with contextlib.suppress(OSError):
                    self.stack_path.write_text(text, encoding="utf-8")
            case (("frame" | "stdout" | "stderr") as kind, bytes() as data):
                self._write(self._writers[kind], data)
            case _ if message is END:
                self._ended_by(self.channel._getremoteerror())
            case _:
                raise messages.ProtocolError(message if isinstance(message, tuple) else (message,))

    def _ended_by(self, error: Any) -> None:
        """The channel closed: say why, then wake the controller through the sentinel. The
        pipes stay open until the controller closes them all, so their descriptor numbers
        cannot be reused while forked workers are told to close them."""
        import execnet

        if isinstance(error, execnet.RemoteError):  # procpar is not importable over there
            last_line = error.formatted.strip().splitlines()[-1]
            text = f"could not start on {self.spec}: {last_line}"
            self._write(self._results_w, framing.encode(messages.unavailable(text)))
        elif error is not None:
            self.lost = f"connection to {self.spec} lost ({error})"
        self._write(self._exit_w, b"x")
        self._ended.set()

    def _write(self, fd: int, data: bytes) -> None:
        with self._lock:
            if self._closed:
                return
            with contextlib.suppress(OSError):  # the controller closed its end: nobody reads
                framing.write_all(fd, data)

    # -- the controller's side (WorkerHandle) ---------------------------------------------

    def _tell(self, message: ToRemote) -> None:
        with contextlib.suppress(OSError, ValueError):  # the channel is closed: it is gone
            self.channel.send(message)

    def send(self, message: ToWorker) -> None:
        self._tell((FRAME, framing.encode(message)))

    def halt(self) -> None:
        self._tell((HALT,))

    def running(self) -> tuple[int, float]:
        return self._running

    def request_stack(self) -> None:
        self._tell((STACK,))

    def signal(self, signum: int) -> None:
        self._tell((SIGNAL, int(signum)))
        if signum == signal.SIGKILL:  # it may be too stuck to answer: end the gateway
            self._kill_gateway()

    def _kill_gateway(self) -> None:
        with contextlib.suppress(Exception):
            self.gateway._io.kill()
        with contextlib.suppress(Exception):
            self.gateway.exit()

    def join(self, timeout: float | None = None) -> None:
        self._ended.wait(timeout)

    def is_alive(self) -> bool:
        return not self._ended.is_set()

    def describe_exit(self) -> str:
        """The exit status of a ``popen`` worker's process; for other gateways only that the
        connection was lost."""
        popen = getattr(getattr(self.gateway, "_io", None), "popen", None)
        if getattr(self.gateway.spec, "popen", False) and isinstance(popen, subprocess.Popen):
            with contextlib.suppress(subprocess.TimeoutExpired):
                return faults.describe_exit(popen.wait(timeout=1.0))
        return self.lost or f"connection to {self.spec} closed"

    @property
    def pid(self) -> int:
        """The remote process's id, as execnet reports it."""
        return int(getattr(self.interpreter(), "pid", 0) or 0)

    def interpreter(self) -> Any:
        """execnet's facts about the remote interpreter (its version, platform, cwd)."""
        try:
            return self.gateway._rinfo()
        except Exception:
            return None

    def _readers(self) -> list[int]:
        return [self.reader.fd, *self.output_fds.values(), self.sentinel]

    def close(self) -> None:
        if self._closed:
            return
        for fd in self._readers():  # first: a callback blocked on a full pipe gets EPIPE
            os.close(fd)
        with self._lock:
            self._closed = True
            for fd in (*self._writers.values(), self._exit_w):
                os.close(fd)
        with contextlib.suppress(Exception):
            self.gateway.exit()


class RemoteLauncher:
    """Opens gateways and starts a worker through each."""

    def __init__(self, config: pytest.Config, remote_rootdir: str | None) -> None:
        import execnet

        self.config = config
        self.remote_rootdir = remote_rootdir
        self.group = execnet.Group()

    def start(
        self,
        spec: str,
        payload: dict[str, Any],
        stack_path: Path,
    ) -> RemoteWorker:
        """Open a gateway for ``spec``, start the worker there, hand it ``payload``."""
        import execnet

        try:
            gateway = self.group.makegateway(spec)
            channel = gateway.remote_exec(BOOTSTRAP)
        except (execnet.HostNotFound, OSError, EOFError) as exc:
            raise RemoteStartError(f"procpar: could not open a gateway for {spec}: {exc}") from exc
        worker = RemoteWorker(gateway, channel, spec, stack_path)
        rootdir = getattr(gateway.spec, "chdir", None) or self.remote_rootdir
        payload = self.mapped(payload, rootdir)
        if getattr(gateway.spec, "popen", False):  # this host: the controller can read it
            payload["stack_path"] = str(stack_path)
        channel.send(pickle.dumps(payload, protocol=PAYLOAD_PICKLE_PROTOCOL))
        return worker

    def mapped(self, payload: dict[str, Any], remote_rootdir: str | None) -> dict[str, Any]:
        """The payload with local paths under the rootdir moved to ``remote_rootdir``."""
        rootdir = self.config.rootpath
        options = {
            name: map_path(value, rootdir, remote_rootdir)
            for name, value in payload["option_dict"].items()
        }
        return dict(
            payload,
            option_dict=options,
            args=map_path(payload["args"], rootdir, remote_rootdir),
            invocation_dir=map_path(payload["invocation_dir"], rootdir, remote_rootdir),
        )

    def close(self) -> None:
        self.group.terminate(timeout=1.0)


class RemoteStartError(Exception):
    """A gateway could not be opened (no such host, interpreter or server)."""
