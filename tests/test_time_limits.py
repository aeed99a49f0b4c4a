"""Time limits as the run loop drives them, in process: a ticker over fake workers and a fake
clock. (Hung tests in real runs: test_faults.py.)"""

from __future__ import annotations

import signal
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_procpar.extension import Charge, RunPlan
from pytest_procpar.timelimits import SHUTDOWN_GRACE_S, STACK_WAIT_S, TimeLimitsPolicy

SUITE = """
import pytest

def test_unlimited():
    pass

@pytest.mark.procpar_timeout(2)
def test_limited():
    pass
"""


@dataclass
class FakeHandle:
    index: int = -1
    since: float = 0.0
    asked: list[str] = field(default_factory=list)

    def running(self) -> tuple[int, float]:
        return self.index, self.since

    def request_stack(self) -> None:
        self.asked.append("stack")

    def signal(self, signum: int) -> None:
        self.asked.append(signal.Signals(signum).name)


@dataclass
class FakeWorker:
    workerid: str
    handle: FakeHandle
    crash_files: Path
    assigned: Collection[int] = ()
    charged: Charge | None = None


def planned(items: list[pytest.Item], default: float = 0.0) -> RunPlan:
    plan = RunPlan(items[0].config, items, "load")
    TimeLimitsPolicy(default).pytest_procpar_run_planned(plan)
    return plan


def test_no_ticker_where_no_test_has_a_limit(pytester: pytest.Pytester) -> None:
    assert planned(pytester.getitems("def test_a():\n    pass\n")).tickers == []


def test_a_bad_limit_is_a_usage_error_before_anything_runs(pytester: pytest.Pytester) -> None:
    source = "import pytest\n@pytest.mark.procpar_timeout('soon')\ndef test_a():\n    pass\n"
    with pytest.raises(pytest.UsageError, match="takes seconds, got 'soon'"):
        planned(pytester.getitems(source))


def test_an_overdue_test_is_charged_then_its_worker_stopped(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    (limits,) = planned(pytester.getitems(SUITE)).tickers
    unlimited = FakeWorker("gw0", FakeHandle(index=0, since=0.0), tmp_path / "gw0.stack")
    limited = FakeWorker("gw1", FakeHandle(index=1, since=0.0), tmp_path / "gw1.stack")
    workers = [unlimited, limited]
    assert limits.wait_time(workers, 1.0) == pytest.approx(1.01)  # when the limit passes
    limits.tick(workers, 1.5)
    assert limited.charged is None and limited.handle.asked == []
    limits.tick(workers, 2.5)
    assert limited.charged == Charge(1, "Timeout after 2s", "timeout")
    assert limited.handle.asked == ["stack"]
    limits.tick(workers, 2.5 + STACK_WAIT_S)  # no stack written in time
    assert limited.handle.asked == ["stack", "SIGTERM"]
    limits.tick(workers, 2.5 + STACK_WAIT_S + SHUTDOWN_GRACE_S)
    assert limited.handle.asked == ["stack", "SIGTERM", "SIGKILL"]
    assert unlimited.charged is None and unlimited.handle.asked == []
