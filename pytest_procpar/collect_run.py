"""A parallel run whose workers collect the suite, each its share of the files.

:class:`CollectingRun` is a :class:`~pytest_procpar.run.ParallelRun` that starts its workers
during collection, each collecting a share (see :mod:`pytest_procpar.collect_phase`), waits
until all have, and once every plugin has chosen and ordered the items numbers them for the
workers. It then runs like any run, with two rules of its own: a test runs only where its file
was imported, and only a worker that has not run a test yet imports a file, so that in every
process the test modules are imported before the first test runs, as in a serial run.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from pytest_procpar import faults, messages, scheduling
from pytest_procpar.collect_phase import CollectedShares, Numbering, SharePlan
from pytest_procpar.durations import DurationStore
from pytest_procpar.pool import Lifecycle, Worker
from pytest_procpar.run import ParallelRun, end_as_worker_did
from pytest_procpar.scheduler import Scheduler
from pytest_procpar.settings import Settings


class CollectingRun(ParallelRun):
    """A run whose workers collect the suite in shares."""

    def __init__(
        self,
        session: pytest.Session,
        settings: Settings,
        durations: DurationStore,
        plan: SharePlan,
    ) -> None:
        super().__init__(session, settings, durations)
        shares = {f"gw{slot}": share for slot, share in enumerate(plan.shares)}
        self.collection = CollectedShares(plan.units, shares)  # what workers collected
        self.numbering: Numbering | None = None  # the run's items as those workers know them
        self.imported: dict[str, set[int]] = {}  # the units each worker has collected
        self.waiting: list[Worker] = []  # asked for work before the run's items were known
        self.pool.launcher.units = plan.units

    def _worker_count(self, settings: Settings) -> int:
        """The items are not known yet: as many as asked for (see items_final)."""
        return settings.workers

    def collect_in_workers(self, items: list[pytest.Item]) -> None:
        """Start the workers, each collecting its share, and wait until all have; then make
        the controller's collection hooks see what they collected (``items`` gets the items)."""
        try:
            for slot, (workerid, share) in enumerate(self.collection.shares.items()):
                self.collection.launched[workerid] = time.perf_counter()
                self._start_worker(slot, share)
            self._serve(until=None, done=lambda: self.collection.complete)
        except BaseException:
            self.abandon()
            raise
        if self.dispatcher.fatal is not None:
            self.abandon()
            end_as_worker_did(self.session, *self.dispatcher.fatal)
        self.collection.replay(self.config, items, self.replayer.replay_session)

    def items_final(self) -> None:
        """Every plugin has chosen and ordered the items: number them for the workers, start
        those beyond the number of files, and answer the workers waiting for work."""
        self.numbering = self.collection.number(self.items)
        self.imported = self.collection.home_units()
        collecting = len(self.collection.shares)
        self.worker_count = max(collecting, min(self.worker_count, len(self.items)))
        self._plan()
        for worker in self.pool.living():
            self.scheduler.add_worker(worker.workerid)
            indexes = self.numbering.indexes.get(worker.workerid, [])
            worker.handle.send(messages.numbered(indexes))
        for slot in range(collecting, self.worker_count):  # fewer files than workers
            self._start_worker(slot)
        waiting, self.waiting = self.waiting, []
        for worker in waiting:
            self._give_work(worker)

    def _make_scheduler(self) -> tuple[Scheduler, str]:
        return scheduling.make_scheduler(
            self.session, self.durations, self.chains, self.dist, self.worker_count, self.collection
        )

    # -- the rules of a run whose workers collect -----------------------------------------

    def _start_worker(self, slot: int, share: list[int] | None = None) -> None:
        """A worker started after the collection (a replacement, or one taking work over)
        collects nothing; it imports what it is given."""
        super()._start_worker(slot, [] if share is None else share)

    def _first_batch(self, workerid: str) -> list[int]:
        return []  # its files must be imported first: it asks, and gets them with its work

    def _collected(self, worker: Worker, share: dict[str, Any]) -> None:
        if not self.planned:
            self.collection.add(worker.workerid, share)

    def _give_work(self, worker: Worker) -> None:
        if self.planned:
            super()._give_work(worker)
        elif self.pool.stopping:
            self.pool.tell_done(worker)
        else:
            self.waiting.append(worker)

    def _more_may_come(self) -> bool:
        """Work left that the scheduler did not find worth importing for a worker may become
        so once more tests have finished (a suite's first tests say little about the rest)."""
        return super()._more_may_come() or self.scheduler.has_pending()

    def _takes(self, worker: Worker, batch: list[int]) -> bool:
        """Have ``worker`` collect the files of ``batch`` it lacks, if it has run no test
        yet (a module built at import from state an earlier test left would differ). One that
        has gives the batch back and finishes; a fresh worker forked in its slot takes the
        work over (see :meth:`_gone`)."""
        assert self.numbering is not None
        have = self.imported.setdefault(worker.workerid, set())
        missing = [
            unit
            for unit in dict.fromkeys(self.numbering.unit_of[index] for index in batch)
            if unit not in have
        ]
        if missing and worker.handed:
            self.scheduler.remove_worker(worker.workerid, self.chains.collapse(batch))
            worker.retired = True
            self.pool.tell_done(worker)
            return False
        for unit in missing:
            worker.handle.send(messages.import_unit(unit, self.numbering.unit_items[unit]))
            have.add(unit)
        return True

    def _gone(self, worker: Worker, ended: Lifecycle) -> None:
        if not self.planned:
            self._gone_while_collecting(worker, ended)
            return
        super()._gone(worker, ended)  # a retired worker is replaced there

    def _gone_while_collecting(self, worker: Worker, ended: Lifecycle) -> None:
        """Before the run's items are known a lost worker takes no test with it; what it had
        not reported of its share becomes a collection error."""
        if ended in (Lifecycle.FINISHED, Lifecycle.FAILED):
            return
        error = (
            f"worker {worker.workerid} crashed while collecting: {worker.handle.describe_exit()}"
        )
        self.collection.lost(worker.workerid, error, faults.read_stack(worker.crash_files))
        self.config.hook.pytest_procpar_worker_finished(node=worker.node, error=error)
