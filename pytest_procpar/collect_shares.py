"""Sharing the suite's files out to workers that collect them, by what they are expected to
cost: importing and collecting them (measured by earlier runs, the file's size as a first
guess) plus running their tests (the durations store).

Shares are contiguous runs of files in collection order, so the suite's order across shares is
the serial order, and a worker's module- and package-scoped fixtures see the files a serial
run would show them next to each other.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pytest

CACHE_KEY = "procpar/collection"
GUESS_SECONDS_PER_BYTE = 2e-6  # a test module of 10 kB: about 20 ms to import and collect
# What collecting in workers costs beyond collecting: describing each item and building its
# stand-in (measured: about 20 microseconds an item), and a round trip to every worker before
# the controller can replay the collection (the workers fork either way).
STAND_IN_SECONDS = 20e-6
START_SECONDS = 0.05
IMBALANCE = 1.25  # a share holding more than this times its part of the run gets stolen from


class CollectionCosts:
    """What collecting took: the whole collection, and each file (kept in pytest's cache,
    next to the durations)."""

    def __init__(self, config: pytest.Config) -> None:
        self.cache: pytest.Cache | None = getattr(config, "cache", None)
        data = self.cache.get(CACHE_KEY, None) if self.cache is not None else None
        data = data if isinstance(data, dict) else {}
        seconds = data.get("seconds")
        self.last_seconds = float(seconds) if isinstance(seconds, (int, float)) else None
        items = data.get("items")
        self.last_items = int(items) if isinstance(items, int) else None
        self.measured_items: int | None = None
        files = data.get("files")
        self.files: dict[str, float] = {
            str(name): float(value)
            for name, value in (files.items() if isinstance(files, dict) else ())
            if isinstance(value, (int, float))
        }
        self.measured_seconds: float | None = None

    def record(
        self, files: Mapping[str, float], total: float | None = None, items: int | None = None
    ) -> None:
        self.files.update(files)
        if total is not None:
            self.measured_seconds = total
        if items is not None:
            self.measured_items = items

    def save(self) -> None:
        if self.cache is None:
            return
        seconds = self.measured_seconds if self.measured_seconds is not None else self.last_seconds
        items = self.measured_items if self.measured_items is not None else self.last_items
        files = {name: round(value, 6) for name, value in self.files.items()}
        self.cache.set(CACHE_KEY, {"seconds": seconds, "items": items, "files": files})


@dataclass(frozen=True)
class UnitCost:
    """What one unit (a file) is expected to cost: collecting it, and running its tests."""

    collect: float
    run: float


def unit_costs(
    units: Sequence[tuple[str, str]], known: Mapping[str, float], durations: Mapping[str, float]
) -> list[UnitCost]:
    """Expected seconds of each unit (nodeid, path): collecting it, and running its tests."""
    running: dict[str, float] = {}
    for nodeid, seconds in durations.items():
        file = nodeid.split("::", 1)[0]
        running[file] = running.get(file, 0.0) + seconds
    named = [(nodeid, _size(path)) for nodeid, path in units]
    rates = [known[nodeid] / size for nodeid, size in named if nodeid in known and size]
    rate = statistics.median(rates) if rates else GUESS_SECONDS_PER_BYTE
    return [
        UnitCost(known.get(nodeid, size * rate), running.get(nodeid, 0.0)) for nodeid, size in named
    ]


def not_worth_it(
    costs: Sequence[UnitCost],
    shares: Sequence[Sequence[int]],
    workers: int,
    items: int | None,
    collected_again: bool = False,
) -> str | None:
    """Why collecting in these shares is not expected to end the run sooner than collecting
    once, or None. Once: all collecting (twice when the workers collect it all again:
    ``collected_again``), then the running spread evenly. In shares: the slowest share's
    collecting, the same running, the stand-ins for every item, a round trip to the workers
    (forked ones), and, when a share holds much more than its part of the run, importing its
    biggest file again in the worker that takes work over from it."""
    collect = sum(cost.collect for cost in costs)
    run = sum(cost.run for cost in costs)
    fair = (collect + run) / max(1, workers)  # fewer shares than workers: the rest take over
    slowest = max(sum(costs[unit].collect for unit in share) for share in shares)
    again = 0.0
    for share in shares:
        if sum(costs[unit].collect + costs[unit].run for unit in share) > IMBALANCE * fair:
            again = max(again, max(costs[unit].collect for unit in share))
    # (workers that collect again start before the first test either way)
    start = 0.0 if collected_again else START_SECONDS
    in_shares = slowest + again + STAND_IN_SECONDS * (items or 0) + start
    if in_shares < collect * (2 if collected_again else 1):
        return None
    if again >= START_SECONDS:
        return f"the run does not split by file (taking work over imports {again:.1f}s again)"
    return f"collecting once ({collect:.1f}s) is about as fast"


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def split(costs: Sequence[float], count: int) -> list[list[int]]:
    """At most ``count`` contiguous, non-empty shares of the units, of about equal cost: a
    share ends where the running total is nearest to its fair part of the whole."""
    count = max(1, min(count, len(costs)))
    total = sum(costs) or 1.0
    shares: list[list[int]] = [[]]
    done = 0.0
    for index, cost in enumerate(costs):
        left_units = len(costs) - index
        left_shares = count - len(shares)
        target = total * len(shares) / count
        if (
            shares[-1]
            and left_shares
            and (left_units <= left_shares or abs(done - target) < abs(done + cost - target))
        ):
            shares.append([])
        shares[-1].append(index)
        done += cost
    return shares
