"""The default pull scheduler hands out every item exactly once, in shrinking batches."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pytest_procpar.scheduler import LoadScheduler


@given(
    items=st.integers(min_value=0, max_value=3000),
    workers=st.integers(min_value=1, max_value=16),
    lost=st.lists(st.integers(min_value=0, max_value=3000), max_size=20),
)
def test_every_item_handed_out_exactly_once(items: int, workers: int, lost: list[int]) -> None:
    scheduler = LoadScheduler(items, workers)
    handed: list[int] = []
    requeued = False
    while scheduler.has_pending():
        batch = scheduler.next_batch(f"gw{len(handed) % workers}")
        assert batch, "a scheduler with pending items must hand something out"
        if not requeued and lost:  # a worker vanished holding this batch: it comes back
            requeued = True
            scheduler.requeue(batch)
            continue
        handed += batch
    assert sorted(handed) == list(range(items))


def test_batches_shrink_to_single_items_at_the_end() -> None:
    scheduler = LoadScheduler(1000, 2)
    sizes = []
    while scheduler.has_pending():
        sizes.append(len(scheduler.next_batch("gw0")))
    assert sizes[0] > 50
    assert sizes[-4:] == [1, 1, 1, 1]
    assert sizes == sorted(sizes, reverse=True)
