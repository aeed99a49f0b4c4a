"""The composition root: the features a parallel run's controller registers as plugins.

Features reach the core through procpar's hooks (``hookspecs.py``), as pytest's own features
are plugins. This module is the one list of them, so the run loop, the pool and the
launcher name none. A feature that is off is not registered and costs nothing.
"""

from __future__ import annotations

from pytest_procpar import coverage_support, junit, logfile, resources, retries, worker_limits
from pytest_procpar.once import RunFixtures
from pytest_procpar.retries import RetriesPolicy
from pytest_procpar.settings import Settings
from pytest_procpar.timelimits import TimeLimitsPolicy
from pytest_procpar.worker_limits import Recycling


def for_parallel_run(settings: Settings) -> list[tuple[object, str]]:
    """The plugins of a parallel run's controller: what every worker is told, and the
    features that plug into the run once its items are known (``pytest_procpar_run_planned``):
    retries, the once-per-run fixtures and the time limits."""
    retries = RetriesPolicy(settings.retries, settings.flaky_fail)
    return [
        *told_to_workers(settings.recycling),
        (retries, "procpar_retries_policy"),
        (RunFixtures(), "procpar_run_fixtures"),
        (TimeLimitsPolicy(settings.timeout), "procpar_time_limits"),
    ]


def told_to_workers(recycling: Recycling | None) -> list[tuple[object, str]]:
    """The plugins that tell every worker (and every probe of ``--procpar-bisect``) what a
    feature needs there, as keys of its ``workerinput`` (``pytest_procpar_worker_starting``):
    coverage's settings, whether records go to ``--log-file``, the JUnit XML family, and the
    recycling limits (``recycling``; None: probes, which are not recycled). Coverage also
    merges what each worker measured when it finishes (``pytest_procpar_worker_finished``)."""
    plugins: list[tuple[object, str]] = [
        (coverage_support, "procpar_coverage"),
        (logfile, "procpar_log_file"),
        (junit, "procpar_junit"),
    ]
    if recycling is not None and recycling.active:
        plugins.append((recycling, "procpar_recycling"))
    return plugins


def for_worker() -> list[tuple[object, str]]:
    """The plugins of every worker that plug into its loop (``pytest_procpar_worker_loop_planned``):
    the gate of serial and capped tests, retries, recycling, and the JUnit XML stand-in."""
    return [
        (resources, "procpar_resources"),
        (retries, "procpar_retries_worker"),
        (worker_limits, "procpar_worker_limits"),
        (junit, "procpar_junit_worker"),
    ]
