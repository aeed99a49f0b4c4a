"""``--dist loadscope``: tests of one module, or of one class, always run on one worker."""

from __future__ import annotations

from pytest_procpar.scheduler.base import WorkItem
from pytest_procpar.scheduler.units import UnitScheduler


class LoadScopeScheduler(UnitScheduler):
    @staticmethod
    def unit_of(item: WorkItem) -> str:
        return item.scope
