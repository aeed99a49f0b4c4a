"""Every scheduling policy, driven by a simulated controller on made-up suites.

The simulation follows the controller's call pattern (``controller.ParallelRun``): each worker
slot is started with ``add_worker`` plus an initial ``next_batch``; a worker asks for more with
``next_batch`` and is told "done" on an empty batch; a worker that vanishes gives back what it
was handed but did not run (``remove_worker``) and, while the scheduler has pending work and
restarts are left, a replacement with a new id is started in its slot. Hypothesis picks the
suite, the worker count and the interleaving of asks, runs and vanishings.
"""

from __future__ import annotations

import itertools
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pytest_procpar.scheduler import POLICIES, Scheduler, WorkItem
from pytest_procpar.scheduler.shares import SHARE_POLICIES, ShareScheduler

# Policies whose workers each run the whole suite: a worker can be out of work while others
# still have some, so an empty batch is only wrong when *this* worker still has items to get.
PER_WORKER = {"each"}
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_STEPS = 80  # hypothesis-chosen steps before the run is finished deterministically

FILES = ("test_a.py", "test_b.py", "pkg/test_c.py", "pkg/sub/test_d.py")
CLASSES = (None, "TestOne", "TestTwo")
GROUPS = (None, None, "db", "net", "gpu")


def share_scheduler(policy: str) -> Callable[[Sequence[WorkItem], int], Scheduler]:
    """Workers that collected their own files (see collect_shares.split): worker ``gwN``
    imported the Nth contiguous run of files; importing a file costs 2 seconds."""

    def make(items: Sequence[WorkItem], workers: int) -> Scheduler:
        files = list(dict.fromkeys(item.file for item in items))
        count = max(1, min(workers, len(files)))
        homes = {f"gw{n}": set(files[n * len(files) // count : (n + 1) * len(files) // count])
                 for n in range(count)}  # fmt: skip
        return ShareScheduler(items, workers, homes, dict.fromkeys(files, 2.0), policy)

    return make


# Every policy, and every policy as it runs when workers collected their own shares.
SCHEDULERS: dict[str, Callable[[Sequence[WorkItem], int], Scheduler]] = {
    **POLICIES,
    **{f"shares-{policy}": share_scheduler(policy) for policy in SHARE_POLICIES},
}


@st.composite
def work_items(draw: st.DrawFn, min_size: int = 1, max_size: int = 40) -> list[WorkItem]:
    """A suite: random files, classes, shared fixtures, groups, durations and failures.

    Durations are multiples of 1/4 second, so every sum is exact and comparisons between
    expected times cannot be decided by rounding.
    """
    count = draw(st.integers(min_value=min_size, max_value=max_size))
    items = []
    for index in range(count):
        file = draw(st.sampled_from(FILES))
        cls = draw(st.sampled_from(CLASSES))
        scope = file if cls is None else f"{file}::{cls}"
        fixture = draw(st.sampled_from(("none", "module", "class")))
        fixture_scope = {"none": None, "module": file, "class": scope}[fixture]
        known = draw(st.booleans())
        items.append(
            WorkItem(
                index=index,
                nodeid=f"{scope}::test_{index}",
                file=file,
                scope=scope,
                fixture_scope=fixture_scope,
                group=draw(st.sampled_from(GROUPS)),
                expected=draw(st.integers(min_value=0, max_value=80)) / 4,
                known=known,
                failed_last=draw(st.sampled_from((False, False, False, True))),
            )
        )
    return items


@dataclass
class Worker:
    name: str
    slot: int
    assigned: deque[int] = field(default_factory=deque)  # handed out, not run yet, in order
    done: bool = False  # got an empty batch: the controller told it there is no more


@dataclass
class Batch:
    worker: str
    slot: int
    indexes: list[int]
    initial: bool


class Controller:
    """The controller's side of the scheduler protocol, with nothing but bookkeeping."""

    def __init__(self, policy: str, items: Sequence[WorkItem], workers: int, restarts: int):
        self.policy = policy
        self.n = len(items)
        self.scheduler = SCHEDULERS[policy](items, workers)
        self.live: dict[str, Worker] = {}
        self.started = 0
        self.restarts_left = restarts
        self.batches: list[Batch] = []
        self.runs: Counter[int] = Counter()  # index -> times run, over all workers
        self.stream: dict[str, list[int]] = {}  # worker -> indexes in the order it ran them
        self.slot_runs: dict[int, list[int]] = {}  # slot -> indexes run by its workers, in order
        self.slot_todo: dict[int, set[int]] = {}  # each: what a slot's chain has still to get
        self.broken_slots: set[int] = set()  # a worker vanished and no replacement came
        for slot in range(workers):
            self.slot_runs[slot] = []
            self.slot_todo[slot] = set(range(self.n))
            self.start(slot)

    # -- the protocol calls ----------------------------------------------------------------

    def start(self, slot: int) -> None:
        name = f"gw{self.started}"
        self.started += 1
        self.scheduler.add_worker(name)
        worker = Worker(name, slot)
        self.live[name] = worker
        self.stream[name] = []
        self.ask(worker, initial=True)

    def can_get_work(self, worker: Worker) -> bool:
        if self.policy in PER_WORKER:
            return bool(self.slot_todo[worker.slot])
        return self.scheduler.has_pending()

    def ask(self, worker: Worker, initial: bool = False) -> None:
        expecting = self.can_get_work(worker)
        batch = self.scheduler.next_batch(worker.name)
        assert isinstance(batch, list)
        assert all(isinstance(index, int) and 0 <= index < self.n for index in batch), batch
        assert len(set(batch)) == len(batch), f"{worker.name} got duplicates: {batch}"
        # Workers that collected may leave work where it is when taking it over would cost
        # more importing than running it, while its owner is still there to run it.
        others_ask = any(not other.done for other in self.live.values() if other is not worker)
        if expecting and not (self.policy.startswith("shares-") and others_ask):
            assert batch, (
                f"{self.policy}: empty batch for {worker.name} while it can still get work"
            )
        if self.policy in PER_WORKER:
            todo = self.slot_todo[worker.slot]
            assert set(batch) <= todo, f"{worker.name} got {batch}, its slot still needs {todo}"
            todo.difference_update(batch)
        if batch:
            worker.assigned.extend(batch)
            self.batches.append(Batch(worker.name, worker.slot, batch, initial))
        elif not initial:  # an empty first batch: the worker asks again before giving up
            worker.done = True

    def run_one(self, worker: Worker) -> None:
        index = worker.assigned.popleft()
        self.runs[index] += 1
        self.stream[worker.name].append(index)
        self.slot_runs[worker.slot].append(index)

    def vanish(self, worker: Worker, while_running: bool) -> None:
        """The worker dies; like the controller, the item it was running counts as run."""
        if while_running and worker.assigned:
            self.run_one(worker)
        unfinished = list(worker.assigned)
        del self.live[worker.name]
        self.scheduler.remove_worker(worker.name, unfinished)
        if self.scheduler.has_pending() and self.restarts_left > 0:
            self.restarts_left -= 1
            self.slot_todo[worker.slot].update(unfinished)  # the replacement continues the slot
            self.start(worker.slot)
        elif self.policy in PER_WORKER and (unfinished or self.slot_todo[worker.slot]):
            self.broken_slots.add(worker.slot)

    # -- driving ---------------------------------------------------------------------------

    def may_vanish(self, worker: Worker) -> bool:
        """A vanishing without a replacement must leave a worker that still asks for work,
        or nobody would ever run what came back (the controller would stop the run)."""
        return self.restarts_left > 0 or any(
            not other.done for other in self.live.values() if other is not worker
        )

    def step(self, data: st.DataObject, vanish_budget: int) -> int:
        """One hypothesis-chosen event; returns what is left of the vanishing budget."""
        name = data.draw(st.sampled_from(sorted(self.live)), label="worker")
        worker = self.live[name]
        action = data.draw(st.sampled_from(("ask", "run", "run", "vanish")), label="action")
        if action == "vanish" and vanish_budget > 0 and self.may_vanish(worker):
            self.vanish(worker, data.draw(st.booleans(), label="while running"))
            return vanish_budget - 1
        if action == "ask" and not worker.done:
            self.ask(worker)
        elif worker.assigned:
            self.run_one(worker)
        elif worker.done:
            del self.live[name]  # finished its session
        return vanish_budget

    def finish(self) -> None:
        """Every live worker runs its queue and asks until told done, round robin."""
        for _ in range(10 * (self.n + 1) * (len(self.slot_runs) + self.started + 2)):
            if not self.live:
                return
            for name in sorted(self.live):
                worker = self.live[name]
                if worker.assigned:
                    self.run_one(worker)
                elif not worker.done:
                    self.ask(worker)
                else:
                    del self.live[name]
        raise AssertionError(f"{self.policy}: the run never ends: {self.batches[-5:]}")

    def play(self, data: st.DataObject, vanish_budget: int) -> None:
        for _ in range(data.draw(st.integers(0, MAX_STEPS), label="steps")):
            if not self.live:
                break
            vanish_budget = self.step(data, vanish_budget)
        self.finish()


def simulate(
    data: st.DataObject, policy: str, items: list[WorkItem], workers: int, vanishings: int
) -> Controller:
    workers = min(workers, len(items))  # the controller never starts more workers than items
    restarts = data.draw(st.integers(0, vanishings), label="restarts")
    controller = Controller(policy, items, workers, restarts)
    controller.play(data, vanishings)
    return controller


# -- the contract, for every policy ---------------------------------------------------------


@pytest.mark.parametrize("policy", sorted(SCHEDULERS))
@SETTINGS
@given(
    items=work_items(),
    workers=st.integers(1, 8),
    vanishings=st.integers(0, 4),
    data=st.data(),
)
def test_contract(
    policy: str, items: list[WorkItem], workers: int, vanishings: int, data: st.DataObject
) -> None:
    """Every item runs exactly once (``each``: once per slot), no empty batch while work is
    left for the asking worker (checked at every ask), and nothing is pending at the end."""
    run = simulate(data, policy, items, workers, vanishings)
    everything = list(range(len(items)))
    if policy in PER_WORKER:
        for slot, ran in run.slot_runs.items():
            assert len(ran) == len(set(ran)), f"slot {slot} ran an item twice: {ran}"
            if slot not in run.broken_slots:
                # a replacement takes over where its predecessor stopped, in collection order
                assert ran == everything, f"slot {slot}"
        assert run.scheduler.has_pending() == bool(run.broken_slots)
    else:
        assert sorted(run.runs.elements()) == everything
        assert not run.scheduler.has_pending()


@pytest.mark.parametrize("policy", sorted(SCHEDULERS))
@SETTINGS
@given(items=work_items(), workers=st.integers(1, 8), data=st.data())
def test_without_vanishing_every_batch_is_run_as_handed_out(
    policy: str, items: list[WorkItem], workers: int, data: st.DataObject
) -> None:
    """With no worker lost, each worker runs exactly the concatenation of its batches."""
    run = simulate(data, policy, items, workers, vanishings=0)
    for name, ran in run.stream.items():
        assert ran == [i for batch in run.batches if batch.worker == name for i in batch.indexes]
    expected_runs = len(run.slot_runs) if policy in PER_WORKER else 1
    assert run.runs == Counter({index: expected_runs for index in range(len(items))})


# -- what each policy promises beyond the contract (no worker lost) -------------------------


def batches_holding(run: Controller, indexes: set[int]) -> list[Batch]:
    return [batch for batch in run.batches if indexes & set(batch.indexes)]


def assert_kept_together(run: Controller, items: list[WorkItem], key: str) -> None:
    units: dict[object, set[int]] = {}
    for item in items:
        name = getattr(item, key)
        if name is not None:
            units.setdefault(name, set()).add(item.index)
    for name, indexes in units.items():
        holding = batches_holding(run, indexes)
        assert len(holding) == 1, f"{key} {name!r} split over {[b.indexes for b in holding]}"
        assert indexes <= set(holding[0].indexes)


@pytest.mark.parametrize(
    ("policy", "key"),
    [
        ("loadscope", "scope"),
        ("loadfile", "file"),
        ("loadgroup", "group"),
        ("shares-loadscope", "scope"),
        ("shares-loadfile", "file"),
    ],
)
@SETTINGS
@given(items=work_items(), workers=st.integers(1, 8), data=st.data())
def test_units_stay_in_one_batch(
    policy: str, key: str, items: list[WorkItem], workers: int, data: st.DataObject
) -> None:
    run = simulate(data, policy, items, workers, vanishings=0)
    assert_kept_together(run, items, key)


def assert_batches_as_load(policy: str, items: list[WorkItem], workers: int) -> None:
    workers = min(workers, len(items))
    runs = {name: Controller(name, items, workers, 0) for name in ("load", policy)}
    for run in runs.values():
        run.finish()
    assert [b.indexes for b in runs[policy].batches] == [b.indexes for b in runs["load"].batches]


@SETTINGS
@given(items=work_items(), workers=st.integers(1, 8))
def test_loadgroup_schedules_ungrouped_items_like_load(items: list[WorkItem], workers: int) -> None:
    """Without group markers nothing is tied together: the batches are exactly load's."""
    assert_batches_as_load("loadgroup", [replace(item, group=None) for item in items], workers)


@SETTINGS
@given(items=work_items(), workers=st.integers(1, 8))
def test_duration_without_any_stored_duration_schedules_like_load(
    items: list[WorkItem], workers: int
) -> None:
    """Nothing measured: collection order, cut anywhere (fixtures, failures notwithstanding)."""
    assert_batches_as_load("duration", [replace(item, known=False) for item in items], workers)


def duration_units(items: list[WorkItem], workers: int) -> tuple[list[list[int]], set[str]]:
    """The fixture-scope units that cannot have been split, and the names of those that may.

    A unit may be split only when it is expected to take more than total / (2 x workers).
    """
    total = sum(item.expected for item in items)
    limit = total / (2 * workers)
    grouped: dict[object, list[int]] = {}
    for item in items:
        key = item.index if item.fixture_scope is None else ("scope", item.fixture_scope)
        grouped.setdefault(key, []).append(item.index)
    whole, splittable = [], set()
    for key, indexes in grouped.items():
        if len(indexes) > 1 and sum(items[i].expected for i in indexes) > limit:
            assert isinstance(key, tuple)
            splittable.add(key[1])
        else:
            whole.append(indexes)
    return whole, splittable


@SETTINGS
@given(items=work_items(), workers=st.integers(1, 8), data=st.data())
def test_duration_keeps_fixture_units_together_and_orders_them(
    items: list[WorkItem], workers: int, data: st.DataObject
) -> None:
    assume(any(item.known for item in items))
    run = simulate(data, "duration", items, workers, vanishings=0)
    workers = min(workers, len(items))
    whole, _ = duration_units(items, workers)

    # a unit under the split limit goes to one worker in one batch
    for unit in whole:
        holding = batches_holding(run, set(unit))
        assert len(holding) == 1, f"unit {unit} split over {[b.indexes for b in holding]}"

    stream = [i for batch in run.batches for i in batch.indexes]
    position = {index: place for place, index in enumerate(stream)}
    first = sorted(whole, key=lambda unit: min(position[i] for i in unit))

    def failed(unit: list[int]) -> bool:
        return any(items[i].failed_last for i in unit)

    def seconds(unit: list[int]) -> float:
        return sum(items[i].expected for i in unit)

    # units with a test that failed last time come first ...
    flags = [failed(unit) for unit in first]
    assert flags == sorted(flags, reverse=True), [(u, failed(u)) for u in first]
    # ... even before the pieces of split units: a failed test precedes every whole clean unit
    clean = [i for unit in whole if not failed(unit) for i in unit]
    for item in items:
        if item.failed_last and clean:
            assert position[item.index] < min(position[i] for i in clean), item
    # ... then longest first, and equal units in collection order
    for before, after in itertools.pairwise(first):
        if failed(before) == failed(after):
            assert seconds(before) >= seconds(after), (before, after)
            if seconds(before) == seconds(after):
                assert min(before) < min(after), (before, after)


@SETTINGS
@given(items=work_items(), workers=st.integers(1, 8), data=st.data())
def test_load_hands_out_in_collection_order(
    items: list[WorkItem], workers: int, data: st.DataObject
) -> None:
    run = simulate(data, "load", items, workers, vanishings=0)
    assert [i for batch in run.batches for i in batch.indexes] == list(range(len(items)))
    for ran in run.stream.values():
        assert ran == sorted(ran)
    sizes = [len(batch.indexes) for batch in run.batches]
    assert sizes == sorted(sizes, reverse=True), "batches shrink towards the end"


@SETTINGS
@given(items=work_items(), workers=st.integers(1, 8), data=st.data())
def test_each_worker_runs_the_suite_in_collection_order(
    items: list[WorkItem], workers: int, data: st.DataObject
) -> None:
    run = simulate(data, "each", items, workers, vanishings=0)
    assert len(run.stream) == min(workers, len(items))
    for ran in run.stream.values():
        assert ran == list(range(len(items)))


@SETTINGS
@given(items=work_items(), workers=st.integers(1, 8), data=st.data())
def test_worksteal_starts_from_even_contiguous_shares(
    items: list[WorkItem], workers: int, data: st.DataObject
) -> None:
    """Each first batch starts the worker's share; shares are contiguous, in worker order, and
    differ in size by at most one; every batch is a contiguous run in collection order."""
    run = simulate(data, "worksteal", items, workers, vanishings=0)
    workers = min(workers, len(items))
    firsts = [batch for batch in run.batches if batch.initial]
    assert [batch.worker for batch in firsts] == [f"gw{k}" for k in range(workers)]
    starts = [batch.indexes[0] for batch in firsts]
    bounds = [*starts, len(items)]
    sizes = [end - start for start, end in itertools.pairwise(bounds)]
    assert starts[0] == 0
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1, sizes
    for batch, end in zip(firsts, bounds[1:], strict=True):
        assert batch.indexes[-1] < end, "a first batch stays within the worker's own share"
    for batch in run.batches:
        assert batch.indexes == list(range(batch.indexes[0], batch.indexes[-1] + 1))


@SETTINGS
@given(items=work_items(min_size=2), workers=st.integers(2, 8), thief=st.integers(0, 7))
def test_worksteal_thief_takes_upper_half_of_busiest_queue_in_order(
    items: list[WorkItem], workers: int, thief: int
) -> None:
    """Only one worker asks after the start (the others are busy with their first batch):
    once its share is used up, every steal takes the upper half (rounded up) of the longest
    other queue, and the stolen items arrive in collection order."""
    workers = min(workers, len(items))
    run = Controller("worksteal", items, workers, restarts=0)
    firsts = [batch for batch in run.batches if batch.initial]
    bounds = [*(batch.indexes[0] for batch in firsts), len(items)]
    remaining = {
        batch.worker: list(range(batch.indexes[-1] + 1, end))
        for batch, end in zip(firsts, bounds[1:], strict=True)
    }
    name = f"gw{thief % workers}"
    own = deque(remaining.pop(name))
    worker = run.live[name]
    worker.assigned.clear()  # its first batch: already accounted for
    while True:
        run.ask(worker)
        batch = [*worker.assigned]
        worker.assigned.clear()
        if not own and batch:  # a steal: from the victim holding its first item
            victim = next(w for w, queue in remaining.items() if batch[0] in queue)
            longest = max(len(queue) for queue in remaining.values())
            assert len(remaining[victim]) == longest, (victim, remaining)
            take = (longest + 1) // 2
            own.extend(remaining[victim][-take:])
            del remaining[victim][-take:]
        if not batch:
            break
        assert batch == [own.popleft() for _ in batch]
    assert worker.done
    assert not own and not any(remaining.values())


def test_shares_work_not_worth_importing_yet_is_taken_once_tests_say_otherwise() -> None:
    """A worker whose own file is done asks while nothing of the other file has run: eight
    tests guessed at a few milliseconds do not pay for a 0.1 s import, so it gets nothing. Once
    one of them took 0.25 s, it asks again and takes about half of the rest, from the tail."""

    def item(index: int, file: str) -> WorkItem:
        return WorkItem(index, f"{file}::t{index}", file, file, None, None, 0.0, False, False)

    items = [item(0, "test_quick.py"), *(item(n, "test_slow.py") for n in range(1, 9))]
    homes = {"gw0": {"test_quick.py"}, "gw1": {"test_slow.py"}}
    measured: dict[str, float] = {}
    imports = {"test_quick.py": 0.1, "test_slow.py": 0.1}
    scheduler = ShareScheduler(items, 2, homes, imports, "load", measured)
    assert scheduler.next_batch("gw0") == [0]
    first = scheduler.next_batch("gw1")
    assert first[0] == 1
    measured["test_quick.py::t0"] = 0.001
    assert scheduler.next_batch("gw0") == []
    assert scheduler.has_pending()
    assert scheduler.next_batch("gw0") == []  # asked again, nothing new known: the same
    measured["test_slow.py::t1"] = 0.25
    taken = scheduler.next_batch("gw0")
    taken += [index for unit in scheduler.queues["gw0"].units for index in unit.indexes]
    assert taken == list(range(9 - len(taken), 9)) and 2 <= len(taken) <= 4, taken
    assert not set(taken) & set(first)


@pytest.mark.parametrize(("start_seconds", "takes"), [(0.0, True), (0.3, True), (0.6, False)])
def test_shares_take_over_pays_for_starting_a_new_worker(start_seconds: float, takes: bool) -> None:
    """A worker that ran its own file's tests cannot import another: a new worker takes the
    work over, so what it takes must be expected to run longer than starting that worker and
    importing the files. Eight tests of 0.1 s are left in gw1's file; about half of them
    (0.4 s) pays for a start of 0.3 s and an import of 0.05 s, not for a start of 0.6 s."""

    def item(index: int, file: str) -> WorkItem:
        return WorkItem(index, f"{file}::t{index}", file, file, None, None, 0.1, True, False)

    items = [item(0, "test_quick.py"), *(item(n, "test_slow.py") for n in range(1, 10))]
    homes = {"gw0": {"test_quick.py"}, "gw1": {"test_slow.py"}}
    imports = {"test_quick.py": 0.05, "test_slow.py": 0.05}
    scheduler = ShareScheduler(items, 2, homes, imports, "load", {}, start_seconds)
    assert scheduler.next_batch("gw0") == [0]
    assert scheduler.next_batch("gw1")[0] == 1
    taken = scheduler.next_batch("gw0")
    assert bool(taken) is takes, taken
    assert scheduler.has_pending()
