"""Loss accounting: every collected item ends with exactly one outcome, even if its worker
does not.

A worker can end without reporting the test it ran: killed past its time limit, crashed (a
segfault, the OOM killer, ``os._exit``), or left unusable by the test (its stdout closed). That
test then fails with what is known (the stack, what it printed), and what the worker was
handed but never ran goes back to the scheduler. When the run ends, any item nobody reported
fails as "not run", with the reason: a run that loses a test says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pytest_procpar import faults, isolation, messages
from pytest_procpar.extension import AttemptPolicy, LostKind
from pytest_procpar.pool import Lifecycle, Worker
from pytest_procpar.replay import Replayer
from pytest_procpar.scheduler import Scheduler
from pytest_procpar.workitems import Chains

NOT_RUN_BUG = "procpar lost track of it; please report this as a bug"


class LossAccounting:
    """Which items have an outcome, and outcomes for those their workers lost."""

    def __init__(
        self,
        config: pytest.Config,
        items: Sequence[pytest.Item],
        replayer: Replayer,
        scheduler: Scheduler,
        chains: Chains,
    ) -> None:
        self.config = config
        self.items = items
        self.replayer = replayer
        self.scheduler = scheduler
        self.chains = chains
        self.reported: set[int] = set()
        self.attempts: AttemptPolicy | None = None  # retries: a lost test may run again

    def item_reported(self, worker: Worker, index: int) -> None:
        self.attempt_done(worker, index)
        self.reported.add(index)

    def attempt_done(self, worker: Worker, index: int) -> None:
        """``worker`` ran ``index`` (perhaps not for the last time: retries)."""
        if index in worker.assigned:
            worker.assigned.remove(index)

    def worker_gone(self, worker: Worker, ended: Lifecycle) -> str | None:
        """``worker``'s process is gone, ``ended`` being where its life was: fail what it lost
        and give its unfinished items back. The error for ``pytest_procpar_worker_finished``,
        or None
        when it ended as it should (finished, or reported why it stopped the run)."""
        stack = faults.read_stack(worker.crash_files)
        charge = worker.charged
        if charge is not None:
            return self._lost(worker, charge.index, charge.what, stack, kind=charge.kind)
        if worker.unusable is not None:
            index, trace = worker.unusable
            return self._lost(
                worker, index, "the test left its worker unusable", trace, kind="crashed"
            )
        if ended in (Lifecycle.FINISHED, Lifecycle.FAILED):
            return None
        printed = isolation.printed_before_crash(worker.crash_files)
        detail = "\n\n".join(part for part in (stack, printed) if part)
        how = worker.handle.describe_exit()
        what = f"worker {worker.workerid} crashed"
        return self._lost(worker, worker.running, what, detail, how, kind="crashed")

    def _lost(
        self,
        worker: Worker,
        index: int | None,
        what: str,
        detail: str,
        how: str = "",
        *,
        kind: LostKind,
    ) -> str:
        where = f" while running {self.items[index].nodeid}" if index is not None else ""
        message = f"{what}{where}" + (f": {how}" if how else "")
        if index is not None:
            item = self.items[index]
            # A test that already reported keeps its outcome and gains a teardown error.
            when: messages.When = "teardown" if index in self.reported else "call"
            running, since = worker.handle.running()
            seconds = faults.now() - since if running == index else 0.0  # as far as it got
            report = self.replayer.lost_report(
                worker.node, item, message, when, seconds, detail, kind=kind
            )
            attempts = self.attempts
            if when == "call" and attempts is not None and attempts.has_retry(item):
                attempts.retry(item, index, worker.workerid, [report])
                self.attempt_done(worker, index)
            else:
                if attempts is not None:
                    attempts.final(index, item.nodeid, passed=False)
                self.replayer.fail_item(item, report)
                self.item_reported(worker, index)
                self.config.hook.pytest_procpar_item_lost(
                    nodeid=item.nodeid, report=report, scheduler=self.scheduler
                )
        self.give_back(worker)
        return message

    def give_back(self, worker: Worker) -> None:
        """What ``worker`` was handed and has not reported goes to the other workers."""
        self.scheduler.remove_worker(worker.workerid, self.chains.collapse(worker.assigned))
        worker.assigned.clear()

    def never_ran(self, reason: str) -> None:
        """Fail every item nobody reported: ``not run: <reason>``."""
        for index, item in enumerate(self.items):
            if index not in self.reported:
                message = f"not run: {reason}"
                report = self.replayer.lost_report(None, item, message, "call", kind="notrun")
                self.replayer.fail_item(item, report)
                self.reported.add(index)
