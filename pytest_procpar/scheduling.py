"""Choosing the run's scheduler: a plugin's (``pytest_procpar_make_scheduler``), the
``--dist`` policy over the whole suite, or, when the workers collected, the share policy that
starts each worker on the files it collected."""

from __future__ import annotations

import pytest

from pytest_procpar import workitems
from pytest_procpar.collect_phase import CollectedShares
from pytest_procpar.durations import DurationStore
from pytest_procpar.scheduler import POLICIES, Scheduler
from pytest_procpar.scheduler.shares import SHARE_POLICIES, ShareScheduler


def make_scheduler(
    session: pytest.Session,
    durations: DurationStore,
    chains: workitems.Chains,
    dist: str,
    workers: int,
    collection: CollectedShares | None = None,
) -> tuple[Scheduler, str]:
    """The run's scheduler, and the policy's name for the run report (a plugin's: its class).
    When workers collected, a policy that can starts each worker on the files it collected."""
    config = session.config
    cache = getattr(config, "cache", None)
    lastfailed = cache.get("cache/lastfailed", {}) if cache is not None else {}
    described = workitems.describe(session.items, durations.known, lastfailed, chains)
    custom: Scheduler | None = config.hook.pytest_procpar_make_scheduler(
        config=config, items=described, workers=workers
    )
    if custom is not None:
        return custom, type(custom).__name__
    if collection is not None and dist in SHARE_POLICIES:
        homes = {
            workerid: {collection.units[unit].nodeid for unit in units}
            for workerid, units in collection.home_units().items()
        }
        policy = ShareScheduler(
            described,
            workers,
            homes,
            collection.seconds,
            dist,
            durations.measured,
            collection.start_seconds(),
        )
        return policy, f"{dist} (by share)"
    return POLICIES[dist](described, workers), dist
