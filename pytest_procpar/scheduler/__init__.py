"""Scheduling policies: which worker runs which item, and when.

Every policy implements :class:`pytest_procpar.scheduler.base.Scheduler`; the controller knows
nothing else about it. See docs/schedulers.rst for how to add one.
"""

from pytest_procpar.scheduler.base import Scheduler
from pytest_procpar.scheduler.load import LoadScheduler

__all__ = ["LoadScheduler", "Scheduler"]
