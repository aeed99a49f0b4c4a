"""The protocol's handlers, in process: the controller's dispatcher, replayer and loss
accounting, driven by hand-made messages and a fake worker handle, and the worker's handling
of commands (milliseconds, no processes).
"""

from __future__ import annotations

import gc
import json
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_procpar import framing, gc_policy, messages, pytest_internals, xdist_compat
from pytest_procpar.dispatch import Dispatcher
from pytest_procpar.extension import Charge
from pytest_procpar.losses import LossAccounting
from pytest_procpar.node import WorkerNode
from pytest_procpar.pool import Lifecycle, Worker
from pytest_procpar.replay import Replayer
from pytest_procpar.runreport import RunReport
from pytest_procpar.shared import Shared
from pytest_procpar.worker import WorkerLoop
from pytest_procpar.workitems import Chains

SUITE = """
def test_one(): pass
def test_two(): pass
def test_three(): pass
"""


@dataclass
class FakeHandle:
    """A worker handle that records what it is sent and says what its "process" runs."""

    now_running: int = -1
    since: float = 0.0
    sent: list[tuple[object, ...]] = field(default_factory=list)

    def running(self) -> tuple[int, float]:
        return self.now_running, self.since

    def describe_exit(self) -> str:
        return "signal 9 (SIGKILL)"

    def send(self, message: tuple[object, ...]) -> None:
        self.sent.append(message)


@dataclass
class FakeScheduler:
    given_back: list[tuple[str, list[int]]] = field(default_factory=list)

    def remove_worker(self, worker: str, unfinished: Sequence[int]) -> None:
        self.given_back.append((worker, list(unfinished)))


class FakeDurations:
    def __init__(self) -> None:
        self.seen: dict[str, float] = {}

    def measure(self, nodeid: str, seconds: float) -> None:
        self.seen[nodeid] = seconds


class Recorder:
    """Registered in the config: the hook calls the controller's plugins would see."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self.calls.append(("logstart", nodeid))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.calls.append(("logreport", (report.nodeid, report.when, report.outcome, report)))

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        self.calls.append(("logfinish", nodeid))

    def pytest_testnodedown(self, node: Any, error: object) -> None:
        self.calls.append(("testnodedown", error))

    def pytest_handlecrashitem(self, crashitem: str) -> None:
        self.calls.append(("handlecrashitem", crashitem))


@dataclass
class Controller:
    items: list[pytest.Item]
    recorder: Recorder
    replayer: Replayer
    losses: LossAccounting
    dispatcher: Dispatcher
    scheduler: FakeScheduler
    durations: FakeDurations
    asked: list[Worker]
    report: RunReport

    def worker(self, assigned: Sequence[int] = (), tmp: Path | None = None) -> Worker:
        node = WorkerNode(self.items[0].config, {"workerid": "gw0"})
        handle: Any = FakeHandle()
        worker = Worker("gw0", node, 0, handle, (tmp or Path("/nonexistent")) / "gw0.stack")
        worker.assigned.extend(assigned)
        return worker


@pytest.fixture
def controller(pytester: pytest.Pytester) -> Controller:
    items = pytester.getitems(SUITE)
    config = items[0].config
    recorder = Recorder()
    config.pluginmanager.register(recorder, "test_recorder")
    # what a run with workers registers: xdist's hooks are called from procpar's
    config.pluginmanager.register(xdist_compat.HookBridge(config), "procpar_xdist_hooks")
    durations = FakeDurations()
    replayer = Replayer(config, items, durations)  # type: ignore[arg-type]
    scheduler = FakeScheduler()
    losses = LossAccounting(config, items, replayer, scheduler, Chains(items))  # type: ignore[arg-type]
    asked: list[Worker] = []
    report = RunReport("load")
    dispatcher = Dispatcher(
        items[0].session,
        replayer,
        report,
        asked.append,
        lambda worker, share: None,
    )
    dispatcher.losses = losses
    return Controller(
        items, recorder, replayer, losses, dispatcher, scheduler, durations, asked, report
    )


def plain(when: messages.When, outcome: messages.Outcome = "passed") -> messages.PlainReport:
    return (messages.PLAIN_REPORT, when, outcome, 0.01, 1.0, 1.01)


def item_events(item: pytest.Item, outcome: messages.Outcome = "passed") -> list[messages.Event]:
    location = item.location
    return [
        messages.log_start(location, None),
        plain("setup"),
        plain("call", outcome),
        plain("teardown"),
        messages.log_finish(location, None),
    ]


def test_an_item_is_replayed_as_serial_pytest_calls_the_hooks(controller: Controller) -> None:
    item = controller.items[1]
    worker = controller.worker(assigned=[1, 2])
    controller.dispatcher.dispatch(worker, messages.item_done(1, item_events(item, "failed"), 0.5))
    calls = controller.recorder.calls
    assert [name for name, _ in calls] == [
        "logstart", "logreport", "logreport", "logreport", "logfinish",
    ]  # fmt: skip
    assert calls[0] == ("logstart", item.nodeid) and calls[-1] == ("logfinish", item.nodeid)
    phases = [payload[:3] for name, payload in calls if name == "logreport"]
    assert phases == [
        (item.nodeid, "setup", "passed"),
        (item.nodeid, "call", "failed"),
        (item.nodeid, "teardown", "passed"),
    ]
    report = calls[2][1][3]
    assert report.node is worker.node and report.location == item.location
    # the bookkeeping: reported, no longer assigned, timed (its phases), counted
    assert controller.losses.reported == {1} and list(worker.assigned) == [2]
    assert controller.durations.seen == {item.nodeid: pytest.approx(0.03)}
    assert controller.report.workers["gw0"].items == 1


def test_an_items_duration_is_at_most_what_its_worker_measured(controller: Controller) -> None:
    """pytest times the phases with a clock a test can freeze: the worker's measure caps them."""
    item = controller.items[0]
    controller.dispatcher.dispatch(
        controller.worker(assigned=[0]), messages.item_done(0, item_events(item), 0.02)
    )
    assert controller.durations.seen == {item.nodeid: 0.02}


def test_an_item_cut_short_has_no_duration(controller: Controller) -> None:
    """No logfinish (an interruption ended the item): nothing is measured."""
    item = controller.items[0]
    events = item_events(item)[:-1]
    controller.dispatcher.dispatch(
        controller.worker(assigned=[0]), messages.item_done(0, events, 1)
    )
    assert controller.durations.seen == {}


def test_an_event_naming_another_node_is_replayed_for_that_node(controller: Controller) -> None:
    other = controller.items[2]
    events: list[messages.Event] = [
        messages.log_start(other.location, other.nodeid),
        messages.log_finish(other.location, other.nodeid),
    ]
    controller.dispatcher.dispatch(controller.worker(), messages.item_done(0, events, 0.0))
    assert controller.recorder.calls == [("logstart", other.nodeid), ("logfinish", other.nodeid)]


def test_requests_stops_and_a_clean_finish(controller: Controller) -> None:
    worker = controller.worker()
    controller.dispatcher.dispatch(worker, messages.want())
    assert controller.asked == [worker]
    controller.dispatcher.dispatch(worker, messages.stop_run("maxfail reached", False))
    assert controller.items[0].session.shouldfail == "maxfail reached"
    controller.dispatcher.dispatch(worker, messages.finished({"exitstatus": 1}))
    assert worker.lifecycle is Lifecycle.FINISHED
    assert worker.node.workeroutput == {"exitstatus": 1}
    assert ("testnodedown", None) in controller.recorder.calls


def test_the_first_message_that_ends_the_run_is_the_one_kept(controller: Controller) -> None:
    first, second = controller.worker(), controller.worker()
    controller.dispatcher.dispatch(first, messages.exited("stop here", 3))
    controller.dispatcher.dispatch(second, messages.internal_error("Traceback ..."))
    assert controller.dispatcher.fatal == (first, messages.exited("stop here", 3))
    assert first.lifecycle is second.lifecycle is Lifecycle.FAILED


def test_a_test_that_breaks_its_worker_is_noted_not_fatal(controller: Controller) -> None:
    worker = controller.worker()
    controller.dispatcher.dispatch(worker, messages.unusable(2, "Traceback ..."))
    assert worker.unusable == (2, "Traceback ...")
    assert worker.lifecycle is Lifecycle.RUNNING and controller.dispatcher.fatal is None


@pytest.mark.parametrize(
    "message",
    [("bogus",), ("item", 0), ("want", "extra")],
    ids=["unknown kind", "too few fields", "too many fields"],
)
def test_a_message_this_side_does_not_know_is_an_error(
    controller: Controller, message: tuple[object, ...]
) -> None:
    with pytest.raises(messages.ProtocolError, match="unknown or malformed message"):
        controller.dispatcher.dispatch(controller.worker(), message)  # type: ignore[arg-type]


def test_an_event_this_side_does_not_know_is_an_error(controller: Controller) -> None:
    events: Any = [("bogus", 1)]
    with pytest.raises(messages.ProtocolError, match="'bogus'"):
        controller.dispatcher.dispatch(controller.worker(), messages.item_done(0, events, 0.0))


def test_a_crash_fails_the_running_test_and_gives_the_rest_back(
    controller: Controller, tmp_path: Path
) -> None:
    worker = controller.worker(assigned=[0, 1, 2], tmp=tmp_path)
    worker.handle.now_running = 1  # type: ignore[attr-defined]
    (tmp_path / "gw0.stack").write_text("Fatal Python error: Segmentation fault")
    error = controller.losses.worker_gone(worker, Lifecycle.RUNNING)
    nodeid = controller.items[1].nodeid
    assert error == f"worker gw0 crashed while running {nodeid}: signal 9 (SIGKILL)"
    reports = [payload for name, payload in controller.recorder.calls if name == "logreport"]
    assert [report[:3] for report in reports] == [(nodeid, "call", "failed")]
    assert "Segmentation fault" in str(reports[0][3].longrepr)
    assert ("handlecrashitem", nodeid) in controller.recorder.calls
    assert controller.scheduler.given_back == [("gw0", [0, 2])]
    assert controller.losses.reported == {1} and not worker.assigned


def test_a_crash_after_the_test_reported_is_a_teardown_error(controller: Controller) -> None:
    worker = controller.worker(assigned=[0])
    item = controller.items[0]
    controller.dispatcher.dispatch(worker, messages.item_done(0, item_events(item), 0.0))
    worker.handle.now_running = 0  # type: ignore[attr-defined]
    controller.losses.worker_gone(worker, Lifecycle.RUNNING)
    phases = [payload[1:3] for name, payload in controller.recorder.calls if name == "logreport"]
    assert phases[-1] == ("teardown", "failed")


def test_timeouts_name_the_limit_and_clean_ends_lose_nothing(controller: Controller) -> None:
    worker = controller.worker(assigned=[2])
    worker.charged = Charge(2, "Timeout after 1.5s", "timeout")
    error = controller.losses.worker_gone(worker, Lifecycle.RUNNING)
    assert error == f"Timeout after 1.5s while running {controller.items[2].nodeid}"
    assert controller.losses.worker_gone(controller.worker(), Lifecycle.FINISHED) is None
    assert controller.losses.worker_gone(controller.worker(), Lifecycle.FAILED) is None


def test_items_nobody_reported_fail_as_not_run(controller: Controller) -> None:
    controller.losses.reported.add(0)
    controller.losses.never_ran("no workers left after 4 worker restarts")
    failed = [payload for name, payload in controller.recorder.calls if name == "logreport"]
    assert [report[0] for report in failed] == [item.nodeid for item in controller.items[1:]]
    assert all("not run: no workers left" in str(report[3].longrepr) for report in failed)
    assert controller.losses.reported == {0, 1, 2}


def test_the_worker_takes_runs_and_done_and_refuses_anything_else(controller: Controller) -> None:
    read_fd, write_fd = os.pipe()
    shared = Shared(
        failures=[0], stop=SimpleNamespace(value=0), maxfail=0, running=[-1], running_since=[0.0]
    )
    try:
        loop = WorkerLoop(
            controller.items[0].session, framing.FrameReader(read_fd), write_fd, shared, 0
        )
        loop.take([messages.run([0, 1]), messages.run([2])])
        assert list(loop.queue) == [0, 1, 2] and not loop.no_more
        loop.take([messages.done()])
        assert loop.no_more
        with pytest.raises(messages.ProtocolError, match="'bogus'"):
            loop.take([("bogus",)])  # type: ignore[list-item]
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_report_keywords_are_the_items_keyword_names_in_order(pytester: pytest.Pytester) -> None:
    """What both sides build reports' keywords from, worked out per parent, equals
    ``dict.fromkeys(item.keywords, 1)`` (as pytest builds them) for items in classes, nested
    classes, with markers on each level and parameters, and a keyword added at run time."""
    marks = ("module_mark", "class_mark", "own", "added_late", "on_the_class")
    pytester.makeini("[pytest]\nmarkers =\n" + "".join(f"  {mark}\n" for mark in marks))
    items = pytester.getitems(
        textwrap.dedent(
            """
        import pytest
        pytestmark = pytest.mark.module_mark

        @pytest.mark.class_mark
        class TestOuter:
            @pytest.mark.parametrize("x", [1, 2])
            def test_a(self, x): pass

            @pytest.mark.module_mark
            class TestInner:
                @pytest.mark.own
                def test_b(self): pass

        def test_c(): pass
        """
        )
    )
    assert len(items) == 4
    items[0].add_marker("added_late")
    items[0].parent.add_marker("on_the_class")  # type: ignore[union-attr]
    keywords = pytest_internals.ReportKeywords()
    for item in items:
        assert list(keywords.of(item).items()) == list(dict.fromkeys(item.keywords, 1).items())
    assert "on_the_class" in keywords.of(items[1])


@pytest.mark.parametrize("collect", ["controller", "workers"])
def test_a_marker_added_to_a_later_test_reaches_its_reports(
    pytester: pytest.Pytester, collect: str
) -> None:
    """A test that marks a later test, or its class, while it runs: the later test's reports
    carry the marker as serially, though the controller's copy of it was never marked."""
    pytester.makeini("[pytest]\nmarkers =\n  late\n  on_the_class\n")
    pytester.makeconftest(
        """
        import json, os

        def pytest_runtest_logreport(report):
            if "PYTEST_XDIST_WORKER" not in os.environ:  # as the controller (or serially) sees it
                with open("keywords.jsonl", "a") as out:
                    out.write(json.dumps([report.nodeid, report.when, list(report.keywords)]))
                    out.write("\\n")
        """
    )
    pytester.makepyfile(
        test_marks="""
        def test_marks_the_others(request):
            for item in request.session.items:
                if item.name == "test_later":
                    item.add_marker("late")
                if item.name == "test_in_class":
                    item.parent.add_marker("on_the_class")

        def test_later():
            pass

        class TestClass:
            def test_in_class(self):
                pass
        """
    )

    def keywords(*args: str) -> list[Any]:
        log = pytester.path / "keywords.jsonl"
        log.unlink(missing_ok=True)
        result = pytester.runpytest_subprocess(*args, "-p", "no:randomly", timeout=60)
        result.assert_outcomes(passed=3)
        return sorted(json.loads(line) for line in log.read_text().splitlines())

    serial = keywords("-p", "no:xdist", "-p", "no:procpar")
    assert any("late" in names for nodeid, _, names in serial if nodeid.endswith("test_later"))
    parallel = keywords(
        "-p", "no:xdist", "-p", "procpar", "-n", "1", f"--procpar-collect={collect}"
    )
    assert parallel == serial


def test_what_outlives_a_full_collection_while_workers_run_is_set_aside() -> None:
    """The controller freezes what survived each full collection of the run (the reports its
    plugins keep), from its loop, and stops watching when the run ends."""
    kept = [[index] for index in range(1000)]  # long-lived, as the terminal's reports are
    before = gc.get_freeze_count()
    try:
        with gc_policy.SurvivorsAside() as survivors:
            survivors.freeze_if_due()
            assert gc.get_freeze_count() == before  # no full collection yet: nothing frozen
            gc.collect()
            survivors.freeze_if_due()
            assert gc.get_freeze_count() >= before + len(kept)
        frozen = gc.get_freeze_count()
        kept += [[index] for index in range(1000)]
        gc.collect()
        survivors.freeze_if_due()
        assert gc.get_freeze_count() == frozen  # no longer watching
    finally:
        gc.unfreeze()
