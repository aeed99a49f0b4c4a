"""What a worker is handed when it starts, however it starts (forked from the template,
spawned, on a ``--tx`` host): the controller's command line and options, its identity, its
pipe ends, its first items or its share of the files; and the check of what it collected
against the controller's items."""

from __future__ import annotations

import os
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_procpar.collect_share import WorkerCollectionMismatch, describe_difference
from pytest_procpar.shared import Shared


@dataclass
class ChildEnds:
    """The worker's ends of its pipes (multiprocessing Connections, so spawn can send them)."""

    commands: Any  # read: RUN / DONE from the controller
    results: Any  # write: frames for the controller
    stdout: Any  # becomes the worker's file descriptor 1: the controller tags and prints it
    stderr: Any  # becomes file descriptor 2

    def redirect_output(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self.stdout.fileno(), 1)
        os.dup2(self.stderr.fileno(), 2)


@dataclass
class SpawnStart:
    """What a worker receives, pickled (through the template, or by multiprocessing for
    spawn and forkserver): enough to configure and collect as the controller did."""

    args: list[str]
    option_dict: dict[str, Any]
    invocation_dir: str
    workerinput: dict[str, Any]
    slot: int
    ends: ChildEnds
    shared: Shared
    initial: list[int]
    nodeids: list[str]
    deselected: list[str]  # what the controller collected but will not run (-k, --shard, ...)
    stack_path: Path
    parent_pid: int | None
    # spawned: the environment to start from, as pytest was started; forked from the template:
    # what to add to the one it inherits (None: remote, its own)
    environment: dict[str, str] | None = None
    units: list[str] | None = None  # collecting in workers: the files the controller found
    share: list[int] | None = None  # and those this worker collects (None: it collects all)


def match_items(
    items: Sequence[pytest.Item], nodeids: Sequence[str], deselected: Collection[str] = ()
) -> list[pytest.Item]:
    """The worker's own items in the controller's order; a clear error when they differ.

    The worker may keep items the controller deselected: plugins that deselect in the
    controller only (``--shard``), or from state of their own (a remote host's ``--lf``
    cache), need not agree with it.
    """
    own = {item.nodeid: item for item in items}
    known = {*nodeids, *deselected}
    if any(nodeid not in own for nodeid in nodeids) or any(n not in known for n in own):
        found = [item.nodeid for item in items]
        raise WorkerCollectionMismatch(describe_difference("items", found, nodeids, deselected))
    return [own[nodeid] for nodeid in nodeids]
