"""Retries' decisions, in process: when the feature plugs into a run, what every worker is
told, and which worker a test runs again on. (What a user sees of retries: test_retries.py.)"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_procpar.extension import RunPlan
from pytest_procpar.retries import WORKERINPUT_KEY, Retries, RetriesPolicy

SUITE = """
import pytest

def test_plain():
    pass

@pytest.mark.procpar_flaky(retries=2)
def test_flaky():
    pass
"""


@dataclass
class FakeWorker:
    workerid: str
    assigned: Collection[int] = field(default_factory=list)


def plan_for(items: list[pytest.Item], dist: str = "load") -> RunPlan:
    return RunPlan(items[0].config if items else None, items, dist)  # type: ignore[arg-type]


def told(policy: RetriesPolicy) -> Any:
    node = SimpleNamespace(workerinput={})
    policy.pytest_procpar_worker_starting(node)  # type: ignore[arg-type]
    return node.workerinput[WORKERINPUT_KEY]


def test_off_without_the_option_or_a_marked_test(pytester: pytest.Pytester) -> None:
    items = pytester.getitems("def test_plain():\n    pass\n")
    policy = RetriesPolicy(default=0, flaky_fails=False)
    assert told(policy) == (0, True)  # before the items are known a test may be marked
    plan = plan_for(items)
    policy.pytest_procpar_run_planned(plan)
    assert plan.attempts is None
    assert told(policy) == (0, False)  # the workers' failures are final


def test_a_marked_test_turns_retries_on(pytester: pytest.Pytester) -> None:
    items = pytester.getitems(SUITE)
    policy = RetriesPolicy(default=0, flaky_fails=False)
    plan = plan_for(items)
    policy.pytest_procpar_run_planned(plan)
    assert isinstance(plan.attempts, Retries)
    assert told(policy) == (0, True)
    plain, flaky = items
    assert not plan.attempts.has_retry(plain)
    assert plan.attempts.has_retry(flaky)
    assert plan.config.pluginmanager.get_plugin("procpar_retries") is not None


def test_each_runs_every_test_everywhere_and_retries_none(pytester: pytest.Pytester) -> None:
    plan = plan_for(pytester.getitems(SUITE), dist="each")
    RetriesPolicy(default=3, flaky_fails=False).pytest_procpar_run_planned(plan)
    assert plan.attempts is None


def test_a_test_runs_again_elsewhere_unless_its_worker_is_the_last(
    pytester: pytest.Pytester,
) -> None:
    item = pytester.getitems(SUITE)[1]
    retries = Retries(default=0)
    retries.retry(item, 1, "gw0", [])
    gw0, gw1 = FakeWorker("gw0"), FakeWorker("gw1")
    assert retries.batch_for("gw0", [gw0, gw1]) == []
    assert retries.may_come([gw0, gw1])
    assert retries.batch_for("gw1", [gw0, gw1]) == [1]
    retries.retry(item, 1, "gw1", [])
    assert not retries.has_retry(item)  # two retries allowed, both used
    assert retries.batch_for("gw1", [gw1]) == [1]  # alone: it runs where it failed


def test_attempts_without_verdict_keep_their_last_reports(pytester: pytest.Pytester) -> None:
    item = pytester.getitems(SUITE)[1]
    retries = Retries(default=0)
    last = [pytest.TestReport(item.nodeid, item.location, {}, "failed", None, "call")]
    retries.retry(item, 1, "gw0", last)
    assert retries.without_verdict() == [(1, last)]
    assert not retries.may_come([FakeWorker("gw1")])
    retries.final(1, item.nodeid, passed=True)
    assert retries.flaky == [item.nodeid]  # passed after a failed attempt
