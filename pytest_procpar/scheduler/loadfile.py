"""``--dist loadfile``: all tests of one file run on one worker."""

from __future__ import annotations

from pytest_procpar.scheduler.base import WorkItem
from pytest_procpar.scheduler.units import UnitScheduler


class LoadFileScheduler(UnitScheduler):
    @staticmethod
    def unit_of(item: WorkItem) -> str:
        return item.file
