"""Scheduling policies: which worker runs which item, and when.

Every policy implements :class:`pytest_procpar.scheduler.base.Scheduler` and is built from the
run's :class:`~pytest_procpar.scheduler.base.WorkItem` records and the worker count; the
controller knows nothing else about it. ``--dist NAME`` picks one from :data:`POLICIES`; a
plugin can supply its own through the ``pytest_procpar_make_scheduler`` hook. See
docs/schedulers.rst for how to add one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pytest_procpar.scheduler.base import Scheduler, WorkItem
from pytest_procpar.scheduler.duration import duration_scheduler
from pytest_procpar.scheduler.each import EachScheduler
from pytest_procpar.scheduler.load import LoadScheduler
from pytest_procpar.scheduler.loadfile import LoadFileScheduler
from pytest_procpar.scheduler.loadgroup import LoadGroupScheduler
from pytest_procpar.scheduler.loadscope import LoadScopeScheduler
from pytest_procpar.scheduler.worksteal import WorkStealScheduler

POLICIES: dict[str, Callable[[Sequence[WorkItem], int], Scheduler]] = {
    "duration": duration_scheduler,
    "load": LoadScheduler,
    "loadscope": LoadScopeScheduler,
    "loadfile": LoadFileScheduler,
    "loadgroup": LoadGroupScheduler,
    "worksteal": WorkStealScheduler,
    "each": EachScheduler,
}
DEFAULT_POLICY = "duration"
SERIAL_POLICY = "no"  # xdist's name for "do not distribute": the run is serial

__all__ = ["DEFAULT_POLICY", "POLICIES", "SERIAL_POLICY", "Scheduler", "WorkItem"]
