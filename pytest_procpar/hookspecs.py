"""procpar's own hooks: the public contract for plugins that extend it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_procpar.extension import RunPlan, WorkerPlan
    from pytest_procpar.node import WorkerNode
    from pytest_procpar.scheduler import Scheduler, WorkItem


@pytest.hookspec(firstresult=True)
def pytest_procpar_auto_num_workers(config: pytest.Config) -> int | None:
    """Return the number of workers ``-n auto`` starts, or None to let procpar decide.

    The environment variables ``PYTEST_PROCPAR_AUTO_NUM_WORKERS`` and
    ``PYTEST_XDIST_AUTO_NUM_WORKERS`` still take precedence, so a CI job can override a plugin.
    """


@pytest.hookspec(firstresult=True)
def pytest_procpar_make_scheduler(
    config: pytest.Config, items: Sequence[WorkItem], workers: int
) -> Scheduler | None:
    """Return a scheduler for this run (see ``pytest_procpar.scheduler.base.Scheduler``), or
    None to use the ``--dist`` policy. ``items`` describe the collected tests in order."""


@pytest.hookspec()
def pytest_procpar_worker_starting(node: WorkerNode) -> None:
    """A worker is about to start: ``node.workerinput`` may still be changed (it is what the
    worker gets as ``config.workerinput``). Controller only. xdist's name:
    ``pytest_configure_node``."""


@pytest.hookspec()
def pytest_procpar_run_planned(plan: RunPlan) -> None:
    """A parallel run's items are known (``plan.items``), before any of them is handed out:
    a feature plugs what it does in this run into ``plan`` (see ``extension.py``). Controller
    only."""


@pytest.hookspec()
def pytest_procpar_worker_loop_planned(plan: WorkerPlan) -> None:
    """A worker's loop is about to run its tests: a feature plugs what it does in this worker
    into ``plan`` (see ``extension.py``). Worker only."""


@pytest.hookspec()
def pytest_procpar_worker_started(node: WorkerNode) -> None:
    """A worker process started (``node.gateway.id``, ``node.workerinput``). Controller only."""


@pytest.hookspec()
def pytest_procpar_worker_ready(node: WorkerNode) -> None:
    """A worker is configured, holds its first items and is about to run them. Controller
    only. xdist's name: ``pytest_testnodeready``."""


@pytest.hookspec()
def pytest_procpar_worker_finished(node: WorkerNode, error: str | None) -> None:
    """A worker is gone: ``error`` is None after a clean finish (``node.workeroutput`` then
    holds what it reported), else why it ended. Controller only. xdist's name:
    ``pytest_testnodedown``."""


@pytest.hookspec()
def pytest_procpar_items_scheduled(node: WorkerNode, nodeids: Sequence[str]) -> None:
    """``nodeids`` were handed to the worker ``node``, to run in this order. Controller only."""


@pytest.hookspec()
def pytest_procpar_item_lost(nodeid: str, report: pytest.TestReport, scheduler: Scheduler) -> None:
    """The worker running ``nodeid`` ended without reporting it (a crash, a time limit); it
    was reported failed with ``report``. Controller only. xdist's name:
    ``pytest_handlecrashitem``."""


@pytest.hookspec()
def pytest_procpar_needs_whole_suite(config: pytest.Config) -> str | None:
    """Return why this plugin (or conftest) needs every collected item in one process, or
    None. When workers would collect the suite in shares, each worker runs
    ``pytest_collection_modifyitems`` over its own share; a plugin that selects or orders
    items by looking at all of them at once (a slice of the suite, an order across files)
    says so here, and procpar then collects in the controller, printing the reason. Called in
    the controller after the directories are walked, so conftests anywhere in the tree count.
    """
