"""What a worker may use: threads for the numeric libraries' pools, and memory and tests before
it is recycled.

Thread pools. N workers that each start an OpenMP or BLAS pool as wide as the machine run N
threads per CPU (xdist #1012). Unless the user set them, the variables those libraries read
when they start get the usable CPUs divided by the local workers, at least 1. They are set in
the controller before collection, so that forked workers inherit them and libraries imported
while collecting start their pools with them, and in a spawned worker's environment.

Recycling. A worker that keeps memory from test to test ends in swap or the OOM killer. With a
limit, a worker checks itself after each test; over it, it stops taking tests, gives back
those it was handed and finishes its session, and a fresh worker takes its place. Memory is
what the worker does not share (its unique resident set): a forked worker's resident set
includes the suite it shares with the controller, which is not the worker's to give back.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_procpar.extension import WorkerPlan
from pytest_procpar.node import WorkerNode

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
WORKERINPUT_KEY = "procpar_recycle"  # (max unique bytes or None, max tests or None)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?", re.IGNORECASE)


def parse_threads(value: str) -> int | str:
    """``--procpar-threads`` value: ``auto``, ``off`` or a whole number >= 1."""
    text = str(value).strip()
    if text in ("auto", "off"):
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(
        f"expected 'auto', 'off' or a whole number >= 1, got {value!r}"
    )


def parse_size(value: str) -> int:
    """``--max-worker-rss`` value: bytes, or a number with K, M, G or T (powers of 1024)."""
    found = _SIZE.fullmatch(str(value).strip())
    if found is None or float(found.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"expected a size such as 512M or 2G, got {value!r}")
    return int(float(found.group(1)) * _UNITS[found.group(2).upper()])


def thread_variables(
    requested: int | str, local_workers: int, cpus: int, environ: Mapping[str, str]
) -> dict[str, str]:
    """The variables to set for the workers: those of :data:`THREAD_VARIABLES` the user did
    not set, to the threads each worker gets."""
    if requested == "off" or local_workers < 1:
        return {}
    threads = requested if isinstance(requested, int) else max(1, cpus // local_workers)
    return {name: str(threads) for name in THREAD_VARIABLES if name not in environ}


@dataclass(frozen=True)
class Recycling:
    """When a worker makes way for a fresh one."""

    max_unique_bytes: int | None = None
    max_tests: int | None = None

    @property
    def active(self) -> bool:
        return self.max_unique_bytes is not None or self.max_tests is not None

    def pytest_procpar_worker_starting(self, node: WorkerNode) -> None:
        """Controller: every worker checks itself against the limits (registered as a plugin
        for parallel runs that recycle, see ``features.py``)."""
        node.workerinput[WORKERINPUT_KEY] = (self.max_unique_bytes, self.max_tests)

    @classmethod
    def from_workerinput(cls, workerinput: Mapping[str, Any]) -> Recycling:
        max_unique_bytes, max_tests = workerinput.get(WORKERINPUT_KEY, (None, None))
        return cls(max_unique_bytes, max_tests)

    def due(self, tests_run: int) -> tuple[str, str] | None:
        """The limit a worker that has run ``tests_run`` tests is over (``memory`` or
        ``tests``) and what it measured, or None."""
        if self.max_tests is not None and tests_run >= self.max_tests:
            return "tests", f"ran {tests_run} tests"
        limit = self.max_unique_bytes
        # The resident set is cheap to read, and the unique part never exceeds it.
        if limit is not None and resident_bytes() > limit:
            unique = unique_bytes()
            if unique > limit:
                return "memory", f"{format_size(unique)} of its own, over {format_size(limit)}"
        return None


def resident_bytes() -> int:
    """This process's resident set (``/proc/self/statm``; peak resident where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return _peak_resident()


def unique_bytes() -> int:
    """The resident pages no other process shares (private, from ``smaps_rollup``)."""
    try:
        with open("/proc/self/smaps_rollup", "rb") as rollup:
            lines = rollup.read().splitlines()
    except OSError:
        return resident_bytes()
    return sum(int(line.split()[1]) * 1024 for line in lines if line.startswith(b"Private_"))


def _peak_resident() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes there, KiB elsewhere


def format_size(size: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if size >= _UNITS[unit]:
            return f"{size / _UNITS[unit]:.1f} {unit}iB"
    return f"{size} B"


def pytest_procpar_worker_loop_planned(plan: WorkerPlan) -> None:
    """Worker: with recycling limits, it checks itself after each test (this module is a
    plugin of every worker, see ``features.py``)."""
    recycling = Recycling.from_workerinput(plan.workerinput)
    if recycling.active:
        plan.retirement = recycling
