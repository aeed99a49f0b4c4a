"""The far end of a ``--tx`` worker: runs in the gateway's interpreter, started by execnet.

It runs the spawned worker (:func:`pytest_procpar.worker_start.run_spawned`) unchanged, by giving it
ordinary pipes: threads here carry what it writes (frames, stdout, stderr) onto the execnet
channel, and the channel's callback writes the controller's frames into its command pipe. The
controller's other messages are handled right in the callback, so they act while a test runs:
``halt`` sets the stop flag the worker checks before each item, ``stack`` dumps every
thread's stack and sends it, ``signal`` signals this process (and its group, when it leads one).
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import pickle
import shutil
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

from pytest_procpar import faults, framing, handover, messages, remote, worker_start
from pytest_procpar.shared import Shared

PUMP_CHUNK = 1 << 16
OWN_DIR_PREFIX = "procpar-remote-"
DRAIN_TIMEOUT_S = 2.0  # a test's leftover child may hold stdout open: do not wait for it


class Pipe:
    """An OS pipe; each end is an object with ``fileno()``, as ``handover.ChildEnds`` wants."""

    def __init__(self) -> None:
        read_fd, write_fd = os.pipe()
        self.read_end = SimpleNamespace(fileno=lambda: read_fd)
        self.write_end = SimpleNamespace(fileno=lambda: write_fd)


class RunningAnnouncer:
    """Stands in for the shared ``running`` array: tells the controller which item runs, so
    it can time it (the controller's clock starts when the message arrives)."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.index = -1

    def __getitem__(self, slot: int) -> int:
        return self.index

    def __setitem__(self, slot: int, index: int) -> None:
        self.index = index
        with contextlib.suppress(OSError, ValueError):
            self.channel.send((remote.RUNNING, index))


class Agent:
    """Connects the worker's pipes to the channel and obeys the controller's messages."""

    def __init__(self, channel: Any, maxfail: int, stack_path: str | None) -> None:
        self.channel = channel
        self.commands, self.results, self.stdout, self.stderr = (Pipe() for _ in range(4))
        framing.enlarge_pipe(self.results.write_end.fileno())
        self.shared = Shared(
            failures=[0],  # this worker's own; the controller counts everybody's
            stop=SimpleNamespace(value=0),
            maxfail=maxfail,
            running=RunningAnnouncer(channel),
            running_since=[0.0],
        )
        # On the controller's host (popen) the stack and what tests printed go where a local
        # worker's go, for crash reports; elsewhere to a directory of this worker's own.
        self.own_dir: Path | None = None
        if stack_path is None:
            self.own_dir = own_directory()
            stack_path = str(self.own_dir / "worker.stack")
        self.stack_path = Path(stack_path)
        self.saved_output = (os.dup(1), os.dup(2))  # a socket server's own, restored at the end
        self.pumps = [
            self._pump(self.results, remote.FRAME),
            self._pump(self.stdout, "stdout"),
            self._pump(self.stderr, "stderr"),
        ]

    def _pump(self, pipe: Pipe, kind: Literal["frame", "stdout", "stderr"]) -> threading.Thread:
        def carry() -> None:
            fd = pipe.read_end.fileno()
            while data := os.read(fd, PUMP_CHUNK):
                with contextlib.suppress(OSError, ValueError):
                    self.channel.send((kind, data))
            os.close(fd)

        thread = threading.Thread(target=carry, name=f"procpar-{kind}", daemon=True)
        thread.start()
        return thread

    def obey(self, message: remote.ToRemote | object) -> None:
        """The channel's callback, on execnet's receiver thread."""
        match message:
            case (remote.FRAME, bytes() as frame):
                with contextlib.suppress(OSError):
                    framing.write_all(self.commands.write_end.fileno(), frame)
            case (remote.HALT,):
                self.shared.stop.value = 1
            case (remote.SIGNAL, int() as signum):
                faults.signal_group(os.getpid(), signum)
            case (remote.STACK,):
                with open(self.stack_path, "w", encoding="utf-8") as stream:
                    faulthandler.dump_traceback(file=stream, all_threads=True)
                text = self.stack_path.read_text(encoding="utf-8", errors="replace")
                with contextlib.suppress(OSError, ValueError):
                    self.channel.send((remote.STACK, text))
            case _ if message is remote.END:
                with contextlib.suppress(OSError):  # the worker reads EOF: nothing more comes
                    os.close(self.commands.write_end.fileno())
            case _:
                raise messages.ProtocolError(message if isinstance(message, tuple) else (message,))

    def spawn_start(self, payload: dict[str, Any]) -> handover.SpawnStart:
        """What a spawned local worker gets, with this end's pipes and stand-ins."""
        ends = handover.ChildEnds(
            self.commands.read_end, self.results.write_end, self.stdout.write_end,
            self.stderr.write_end,
        )  # fmt: skip
        return handover.SpawnStart(
            **payload, slot=0, ends=ends, shared=self.shared, stack_path=self.stack_path,
            parent_pid=None,
        )  # fmt: skip

    def fail(self, why: str) -> None:
        framing.send(self.results.write_end.fileno(), messages.startup_failed(why))

    def finish(self) -> None:
        """Close every write end (fd 1 and 2 point at two of them), let the pumps carry the
        rest, and give a long-lived process (a socket server) its own output back."""
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self.saved_output[0], 1)
        os.dup2(self.saved_output[1], 2)
        for pipe in (self.results, self.stdout, self.stderr):
            with contextlib.suppress(OSError):
                os.close(pipe.write_end.fileno())
        for pump in self.pumps:
            pump.join(DRAIN_TIMEOUT_S)
        for fd in self.saved_output:
            os.close(fd)
        if self.own_dir is not None:
            shutil.rmtree(self.own_dir, ignore_errors=True)


def own_directory() -> Path:
    """A new directory for this worker's files, named for its process. Those of workers on
    this host whose process is gone are removed first: a crash ends the process that would
    have removed its own."""
    for path in Path(tempfile.gettempdir()).glob(f"{OWN_DIR_PREFIX}*-*"):
        pid = path.name[len(OWN_DIR_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{OWN_DIR_PREFIX}{os.getpid()}-"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        pass
    return True


def serve(channel: Any) -> None:
    """Entry point, run by :data:`pytest_procpar.remote.BOOTSTRAP` in the gateway."""
    payload = pickle.loads(channel.receive())
    agent = Agent(channel, int(payload.pop("maxfail")), payload.pop("stack_path", None))
    channel.setcallback(agent.obey, endmarker=remote.END)
    try:
        worker_start.run_spawned(agent.spawn_start(payload))
    except SystemExit:  # run_spawned said why first
        pass
    except BaseException:
        agent.fail(traceback.format_exc())
    finally:
        agent.finish()
