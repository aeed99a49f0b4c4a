"""``--dist loadgroup``: tests marked with the same group name run on one worker.

The marker is ``procpar_group(name)``; ``xdist_group(name)`` is read the same way, so suites
written for xdist keep their groups. Unmarked tests are scheduled one by one, as with ``load``.
"""

from __future__ import annotations

from pytest_procpar.scheduler.base import WorkItem
from pytest_procpar.scheduler.units import UnitScheduler


class LoadGroupScheduler(UnitScheduler):
    @staticmethod
    def unit_of(item: WorkItem) -> str | None:
        return item.group
