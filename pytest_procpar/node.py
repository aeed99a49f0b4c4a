"""The controller's handle on one worker in xdist's shape (``node``), which xdist-aware plugins
get in the node hooks and on ``report.node``."""

from __future__ import annotations

import functools
import os
import platform
import sys
from types import SimpleNamespace
from typing import Any

import pytest


class WorkerNode:
    """The controller's handle on one worker, in the shape xdist-aware plugins expect.

    ``report.node`` is set to it (the terminal shows ``[gw0]`` from ``node.gateway.id``), and
    it is the ``node`` argument of the xdist node hooks.
    """

    workeroutput: dict[str, Any]  # set once the worker finished cleanly, as xdist's node

    def __init__(self, config: pytest.Config, workerinput: dict[str, Any]) -> None:
        self.config = config
        self.workerinput = workerinput
        self.remote_interpreter: Any = None  # execnet's facts about a --tx worker's Python
        self.gateway = SimpleNamespace(id=workerinput["workerid"], _rinfo=self._rinfo)
        self.nodemanager = SimpleNamespace(roots=[])  # pytest-cov: no rsync roots, same files
        self.pid: int | None = None  # its process's, once started

    def _rinfo(self) -> SimpleNamespace:
        """What execnet's ``gateway._rinfo()`` returns."""
        return SimpleNamespace(**self.workerinfo)

    @functools.cached_property
    def workerinfo(self) -> dict[str, Any]:
        """What xdist's node carries, worked out when first read (above a failure, by a
        plugin): ``platform.platform()`` runs ``uname -p`` the first time, a cost passing runs
        need not pay."""
        facts = self.remote_interpreter
        remote = remote_interpreter_info(facts) if facts is not None else {}
        return {**interpreter_info(self.gateway.id), **remote}

    def __repr__(self) -> str:
        return f"<WorkerNode {self.gateway.id}>"


def interpreter_info(workerid: str) -> dict[str, Any]:
    """The ``workerinfo`` xdist's nodes carry; pytest prints it above a worker's failures."""
    return {
        "id": workerid,
        "version": sys.version,
        "version_info": tuple(sys.version_info),
        "sysplatform": sys.platform,
        "platform": platform.platform(),
        "executable": sys.executable,
        "cwd": os.getcwd(),
    }


def remote_interpreter_info(facts: Any) -> dict[str, Any]:
    """The ``workerinfo`` of another interpreter, from execnet's ``gateway._rinfo()``."""
    version_info = tuple(facts.version_info)
    return {
        "version": ".".join(str(part) for part in version_info[:3]),
        "version_info": version_info,
        "sysplatform": facts.platform,
        "platform": facts.platform,
        "executable": facts.executable,
        "cwd": facts.cwd,
    }
