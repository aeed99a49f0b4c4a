"""``coverage run -m pytest -p procpar -n N`` measures what the workers run, too.

Under ``coverage run`` only the controller is measured by coverage itself: workers forked
from the template inherit the running measurement, which is the controller's to save (its exit
handler would write the controller's data file), and spawned workers are not measured at all.
So every worker stops what it inherited (:func:`forget_inherited`) and measures afresh, in
memory, with the controller's settings, and sends its data back in ``workeroutput``; the
controller merges it into its own before coverage saves at exit.

pytest-cov is not handled here: it speaks xdist's protocol, which procpar provides. When it
is active it replaces the measurement in workers, and this module steps aside.
"""

from __future__ import annotations

import atexit
import sys
from typing import Any

from pytest_procpar.node import WorkerNode

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


def pytest_procpar_worker_starting(node: WorkerNode) -> None:
    """Controller: every worker measures as the controller does (this module is registered
    as a plugin for parallel runs, see ``features.py``)."""
    pytest_cov = node.config.pluginmanager.has_plugin("_cov")
    node.workerinput[SETTINGS_KEY] = settings_for_workers(pytest_cov)


def forget_inherited() -> None:
    """In a process forked from the template: a measurement running now was started by the
    controller before the fork (``coverage run``; pytest-cov's controller side, which it
    starts while the initial conftests load) and is the controller's. Here it stops, and its
    exit handler, which would stop it again and may save it to the controller's data file,
    is withdrawn."""
    if "coverage" not in sys.modules:
        return
    import coverage

    while (cov := coverage.Coverage.current()) is not None:
        cov.stop()
        atexit.unregister(cov._atexit)


class WorkerCoverage:
    """A worker's part: measure in memory, hand the data back at the end."""

    def __init__(self, workerinput: dict[str, Any]) -> None:
        self.cov = None
        settings = workerinput.get(SETTINGS_KEY)
        if settings is not None:
            import coverage

            self.cov = coverage.Coverage(**settings)
            self.cov.start()

    def finish(self, workeroutput: dict[str, Any]) -> None:
        """Stop measuring and put the data in ``workeroutput`` (unless pytest-cov took over)."""
        if self.cov is None or current() is not self.cov:
            return
        self.cov.stop()
        workeroutput[DATA_KEY] = self.cov.get_data().dumps()


def pytest_procpar_worker_finished(node: WorkerNode, error: str | None) -> None:
    """Controller: a worker that finished cleanly sent its measurement along, which joins
    the running one (this module is a plugin of parallel runs, see ``features.py``)."""
    if error is None:
        merge(node.workeroutput)


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
