"""What the run's local workers share with the controller, in shared memory made before the
template is forked (see :mod:`pytest_procpar.launch`): failures and the stop flag for ``-x``,
the test each worker runs and since when (time limits, the live view), and the gate of serial
and capped tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pytest_procpar import resources


@dataclass
class Shared:
    """Run-wide state in shared memory, written without locks.

    ``failures[i]`` is written only by worker ``i``; ``stop`` only by the controller. Workers read
    both before starting each item, so ``-x`` stops every worker without a round trip.
    """

    failures: Any  # multiprocessing RawArray of int, one slot per worker slot
    stop: Any  # multiprocessing RawValue of int
    maxfail: int
    running: Any  # RawArray of int: index of the item each slot runs now, -1 between items
    running_since: Any  # RawArray of double: when that item started (faults.now()), for timeouts
    gate: resources.Gate | None = None  # local workers: when a test may start (serial, capped)

    def should_stop(self) -> bool:
        return bool(self.stop.value) or bool(self.maxfail and sum(self.failures) >= self.maxfail)
