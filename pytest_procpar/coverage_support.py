"""``coverage run -m pytest -p procpar -n N`` measures what the workers run, too.

Under ``coverage run`` only the controller is measured by coverage itself: forked workers
inherit the running measurement but would never save it (they do not run the controller's
exit handlers) and must not write to its data file, spawned workers are not measured at all.
So every worker stops what it inherited and measures afresh, in memory, with the controller's
settings, and sends its data back in ``workeroutput``; the controller merges it into its own
before coverage saves at exit.

pytest-cov is not handled here: it speaks xdist's protocol, which procpar provides. When it
is active it replaces the measurement in workers, and this module steps aside.
"""

from __future__ import annotations

import sys
from typing import Any

SETTINGS_KEY = "procpar_coverage"
DATA_KEY = "procpar_coverage_data"


def current() -> Any:
    """The running ``coverage.Coverage``, if anything measures this process."""
    if "coverage" not in sys.modules:
        return None
    import coverage

    return coverage.Coverage.current()


def settings_for_workers(pytest_cov_active: bool) -> dict[str, Any] | None:
    """What a worker needs to measure like the controller (None: nothing to do)."""
    cov = current()
    if cov is None or pytest_cov_active:
        return None
    config = cov.config
    return {
        "config_file": config.config_file or False,
        "data_file": None,  # in memory: the data travels back in workeroutput
        "source": config.source,
        "branch": config.branch,
        "include": config.run_include,
        "omit": config.run_omit,
    }


class WorkerCoverage:
    """A worker's part: measure in memory, hand the data back at the end."""

    def __init__(self, workerinput: dict[str, Any]) -> None:
        self.cov = None
        settings = workerinput.get(SETTINGS_KEY)
        if settings is not None:
            import coverage

            inherited = current()
            if inherited is not None:
                inherited.stop()  # the controller's: it saves to the controller's data file
            self.cov = coverage.Coverage(**settings)
            self.cov.start()

    def finish(self, workeroutput: dict[str, Any]) -> None:
        """Stop measuring and put the data in ``workeroutput`` (unless pytest-cov took over)."""
        if self.cov is None or current() is not self.cov:
            return
        self.cov.stop()
        workeroutput[DATA_KEY] = self.cov.get_data().dumps()


def merge(workeroutput: dict[str, Any]) -> None:
    """In the controller: add a worker's data to the running measurement."""
    dumped = workeroutput.get(DATA_KEY)
    cov = current()
    if dumped is None or cov is None:
        return
    from coverage import CoverageData

    data = CoverageData(no_disk=True)
    data.loads(dumped)
    cov.get_data().update(data)
