"""Runs that start from a run record (see :mod:`pytest_procpar.run_record`).

- ``--procpar-replay [RUN] [--procpar-replay-worker gwN]``: exactly what one worker ran, in
  that order, in one process (one worker with ``-n``, else serially), with the seeds the run's
  plugins had: an order-dependent failure comes back.
- ``--procpar-rerun [RUN]``: what did not pass (failed, errors, crashed, timed out, never
  ran), and the tests that did not exist then.
- ``--procpar-runs``: list the records.

Both selections are made after every other plugin chose and ordered the items (a wrapper of
``pytest_collection_modifyitems``, like ``--shard``) and need the whole suite in the
controller, which they say through ``pytest_procpar_needs_whole_suite``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator

import pytest

from pytest_procpar import features, xdist_compat
from pytest_procpar.polluters import BisectPlugin
from pytest_procpar.run_record import (
    NOT_PASSED,
    RecordStore,
    RunRecord,
    apply_seeds,
    keep_only,
    keep_sequence,
)
from pytest_procpar.settings import Settings


def replay_worker(record: RunRecord, asked: str | None) -> str:
    """The worker to replay: ``asked``, else the one whose test failed first."""
    workers = record.workers()
    if asked is not None:
        if asked not in workers:
            raise pytest.UsageError(
                f"--procpar-replay-worker {asked}: run {record.name} had no such worker "
                f"(it had {', '.join(workers) or 'none'})"
            )
        return asked
    failed = sorted(
        (entry.end, entry.worker)
        for entry in record.tests
        if entry.outcome in NOT_PASSED and entry.worker is not None
    )
    if failed:
        return failed[0][1]
    if len(workers) == 1:
        return workers[0]
    raise pytest.UsageError(
        f"--procpar-replay: no test failed in run {record.name}; choose a worker with "
        f"--procpar-replay-worker (it had {', '.join(workers)})"
    )


class ReplayPlugin:
    """Keeps one recorded worker's tests, in the order it ran them."""

    def __init__(self, record: RunRecord, worker: str, seeds: list[str]) -> None:
        self.record = record
        self.worker = worker
        self.seeds = seeds
        self.summary = ""

    def pytest_procpar_needs_whole_suite(self, config: pytest.Config) -> str:
        return "--procpar-replay runs a recorded sequence"

    @pytest.hookimpl(wrapper=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> Generator[None, None, None]:
        yield
        sequence = [entry.nodeid for entry in self.record.sequence(self.worker)]
        missing = keep_sequence(config, items, sequence)
        seeds = f", with {', '.join(self.seeds)}" if self.seeds else ""
        self.summary = (
            f"procpar: replaying {self.worker} of run {self.record.name}: "
            f"{len(items)} tests in its order{seeds}"
        )
        if missing:
            shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
            self.summary += f"; {len(missing)} recorded tests not collected now: {shown}"

    def pytest_report_collectionfinish(self) -> str:
        return self.summary


class RerunPlugin:
    """Keeps the tests that did not pass in a recorded run, and those new since."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        self.summary = ""

    def pytest_procpar_needs_whole_suite(self, config: pytest.Config) -> str:
        return "--procpar-rerun chooses from the whole suite"

    @pytest.hookimpl(wrapper=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> Generator[None, None, None]:
        yield
        outcomes = self.record.outcomes()
        recorded = set(self.record.run.get("items", ())) | set(outcomes)
        why: dict[str, int] = {}
        kept = []
        for item in items:
            outcome = outcomes.get(item.nodeid)
            if item.nodeid not in recorded:
                reason = "new"
            elif outcome is None:
                reason = "notrun"  # the run ended before it: killed, or -x
            elif outcome in NOT_PASSED:
                reason = outcome
            else:
                continue
            kept.append(item)
            why[reason] = why.get(reason, 0) + 1
        keep_only(config, items, kept)
        counts = ", ".join(f"{count} {reason.replace('notrun', 'not run')}"
                           for reason, count in sorted(why.items()))  # fmt: skip
        self.summary = f"procpar: rerun of run {self.record.name}: {counts or 'nothing to run'}"

    def pytest_report_collectionfinish(self) -> str:
        return self.summary


def configure(
    config: pytest.Config, settings: Settings
) -> tuple[Settings, list[tuple[object, str]]]:
    """The settings the options ask for, and the controller's plugins that carry them out
    (the caller registers them, after the template is forked: they are the controller's): a
    replay runs in one process (one worker, in its order, if workers were asked for, else
    serially); a bisection starts its own processes. Called at the start of
    ``pytest_cmdline_main``: the recorded seeds must be set before plugins are configured."""
    option = config.option
    asked = [name for name in ("replay", "rerun", "bisect") if getattr(option, f"procpar_{name}")]
    if len(asked) > 1:
        raise pytest.UsageError(
            " and ".join(f"--procpar-{name}" for name in asked) + " do not go together"
        )
    store = RecordStore(config)
    plugins: list[tuple[object, str]] = []
    if option.procpar_replay_worker is not None and option.procpar_replay is None:
        raise pytest.UsageError("--procpar-replay-worker goes with --procpar-replay")
    if option.procpar_replay is not None:
        record = store.find(option.procpar_replay)
        worker = replay_worker(record, option.procpar_replay_worker)
        replay = ReplayPlugin(record, worker, apply_seeds(config, record))
        plugins.append((replay, "procpar_replay"))
        if settings.workers:
            settings = dataclasses.replace(settings, workers=1, remote=(), dist="load")
    if option.procpar_rerun is not None:
        plugins.append((RerunPlugin(store.find(option.procpar_rerun)), "procpar_rerun"))
    if option.procpar_bisect is not None:
        plugins.append((BisectPlugin(config, option.procpar_bisect), "procpar_bisect"))
        # Its probes are workers: told to plugins as such.
        plugins.append((xdist_compat.HookBridge(config), "procpar_xdist_hooks"))
        plugins.extend(features.told_to_workers(None))
        if settings.workers:
            reason = "--procpar-bisect starts its own processes"
            settings = dataclasses.replace(settings, workers=0, remote=(), serial_reason=reason)
    return settings, plugins


def list_records(config: pytest.Config) -> None:
    """``--procpar-runs``: one line per record, the newest last."""
    store = RecordStore(config)
    records = list(store.newest_first())[::-1]
    if not records:
        print(f"no run records in {store.directory}")
        return
    print(f"run records in {store.directory}:")
    for record in records:
        outcomes = [entry.outcome for entry in record.tests]
        bad = sum(outcome in NOT_PASSED for outcome in outcomes)
        workers = len(record.workers())
        ended = "" if record.end is not None else ", never ended"
        args = " ".join(record.run.get("args", []))
        print(
            f"  {record.name}  {len(outcomes)} tests, {bad} not passed, "
            f"{workers} worker{'s' if workers != 1 else ''}{ended}  [{args}]"
        )
