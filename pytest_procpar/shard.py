"""``--shard K/N``: run one of N parts of the suite, for CI jobs that split a suite between them.

Every job collects the whole suite and keeps its part, so the parts never overlap and always
add up to the suite, given the same tests and the same durations file. Modes:

- ``duration`` (the default when durations are known): longest-processing-time-first over the
  stored durations (unknown tests count as the median), so the parts take about equally long.
- ``hash``: by a stable hash of the nodeid; adding a test moves no other test.
- ``slice``: contiguous runs of the collection order.

``--shard auto`` reads the job's index and count from the CI's environment, or from Bazel's
(https://bazel.build/reference/test-encyclopedia), which also wants the runner to say it
shards: it touches ``TEST_SHARD_STATUS_FILE``.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import statistics
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

MODES = ("duration", "hash", "slice")

# (index variable, count variable, whether the index counts from 1)
CI_VARIABLES = (
    ("CI_NODE_INDEX", "CI_NODE_TOTAL", True),  # GitLab CI parallel jobs
    ("BUILDKITE_PARALLEL_JOB", "BUILDKITE_PARALLEL_JOB_COUNT", False),
    ("CIRCLE_NODE_INDEX", "CIRCLE_NODE_TOTAL", False),
    ("PYTEST_SHARD_INDEX", "PYTEST_SHARD_COUNT", True),  # set these yourself anywhere else
)
# Bazel's (0-based), read before the CI's: a Bazel test can run inside a sharded CI job.
BAZEL_INDEX, BAZEL_COUNT, BAZEL_STATUS_FILE = (
    "TEST_SHARD_INDEX",
    "TEST_TOTAL_SHARDS",
    "TEST_SHARD_STATUS_FILE",
)


class BadShardVariable(ValueError):
    """A sharding variable Bazel set that is no valid shard: the message names it."""


@dataclass(frozen=True)
class ShardSpec:
    index: int  # 1-based
    count: int
    # Bazel's TEST_SHARD_STATUS_FILE: touched once the run starts, to show Bazel we shard
    status_file: Path | None = field(default=None, compare=False)


def variable_names() -> str:
    """The variable pairs ``--shard auto`` reads, for the error when none is set."""
    pairs = [(BAZEL_INDEX, BAZEL_COUNT), *((i, c) for i, c, _ in CI_VARIABLES)]
    return ", ".join(f"{index}/{count}" for index, count in pairs)


def parse_shard(value: str) -> ShardSpec | str:
    """``K/N`` with 1 <= K <= N, or ``auto``."""
    text = str(value).strip()
    if text == "auto":
        return text
    try:
        index_text, count_text = text.split("/")
        spec = ShardSpec(int(index_text), int(count_text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected K/N (e.g. 2/4) or auto, got {value!r}"
        ) from None
    if not 1 <= spec.index <= spec.count:
        raise argparse.ArgumentTypeError(f"expected 1 <= K <= N in K/N, got {value!r}")
    return spec


def _whole_number(environ: Mapping[str, str], name: str) -> int:
    raw = environ.get(name)
    if raw is None:
        raise BadShardVariable(f"{name} is not set, but {BAZEL_COUNT} is")
    try:
        return int(raw)
    except ValueError:
        raise BadShardVariable(f"{name}: expected a whole number, got {raw!r}") from None


def from_bazel(environ: Mapping[str, str]) -> ShardSpec | None:
    """Bazel's shard, if it shards this test. Unlike a CI variable that makes no sense (and is
    skipped), a bad value is an error: Bazel starts this runner once per shard, and each
    running the whole suite would run every test ``count`` times."""
    if BAZEL_COUNT not in environ:
        return None
    count = _whole_number(environ, BAZEL_COUNT)
    index = _whole_number(environ, BAZEL_INDEX)
    if count < 1:
        raise BadShardVariable(f"{BAZEL_COUNT}: expected a whole number >= 1, got {count}")
    if not 0 <= index < count:
        raise BadShardVariable(
            f"{BAZEL_INDEX}: expected 0 <= index < {BAZEL_COUNT} ({count}), got {index}"
        )
    status = environ.get(BAZEL_STATUS_FILE)
    return ShardSpec(index + 1, count, Path(status) if status else None)


def from_environment(environ: Mapping[str, str]) -> ShardSpec | None:
    """The shard Bazel or the CI chose for this job; raises :class:`BadShardVariable`."""
    bazel = from_bazel(environ)
    if bazel is not None:
        return bazel
    for index_name, count_name, one_based in CI_VARIABLES:
        if index_name in environ and count_name in environ:
            try:
                index, count = int(environ[index_name]), int(environ[count_name])
            except ValueError:
                continue
            spec = ShardSpec(index if one_based else index + 1, count)
            if 1 <= spec.index <= spec.count:
                return spec
    return None


def assign(
    nodeids: Sequence[str], count: int, mode: str, durations: Mapping[str, float]
) -> list[int]:
    """The 0-based shard of every nodeid; deterministic for the same inputs."""
    if mode == "slice":
        return [position * count // max(1, len(nodeids)) for position in range(len(nodeids))]
    if mode == "hash":
        return [int(hashlib.sha256(nodeid.encode()).hexdigest(), 16) % count for nodeid in nodeids]
    expected = expected_durations(nodeids, durations)
    order = sorted(range(len(nodeids)), key=lambda i: (-expected[i], nodeids[i]))
    loads = [(0.0, shard) for shard in range(count)]  # a heap: the least loaded shard first
    shards = [0] * len(nodeids)
    for position in order:
        load, shard = heapq.heappop(loads)
        shards[position] = shard
        heapq.heappush(loads, (load + expected[position], shard))
    return shards


def expected_durations(nodeids: Sequence[str], durations: Mapping[str, float]) -> list[float]:
    known = [durations[nodeid] for nodeid in nodeids if nodeid in durations]
    median = statistics.median(known) if known else 1.0
    return [durations.get(nodeid, median) for nodeid in nodeids]


class ShardPlugin:
    """Keeps this job's shard of the collected items (registered when ``--shard`` is given)."""

    def __init__(self, spec: ShardSpec, mode: str | None, durations: Mapping[str, float]) -> None:
        self.spec = spec
        self.durations = durations
        self.mode = mode or ("duration" if durations else "hash")
        self.notice = "" if mode or durations else "; no stored durations yet"
        self.summary = ""

    def pytest_sessionstart(self) -> None:
        """Bazel fails a sharded test whose runner leaves the status file untouched."""
        if self.spec.status_file is None:
            return
        try:
            self.spec.status_file.touch()
        except OSError as exc:
            raise pytest.UsageError(f"{BAZEL_STATUS_FILE}: {exc}") from None

    # After every other plugin chose and ordered the items; a wrapper, so that it also sees
    # the whole suite when workers collected it (their items arrive as the wrappers resume).
    @pytest.hookimpl(wrapper=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> Generator[None, None, None]:
        yield
        nodeids = [item.nodeid for item in items]
        shards = assign(nodeids, self.spec.count, self.mode, self.durations)
        mine = self.spec.index - 1
        kept = [item for item, shard in zip(items, shards, strict=True) if shard == mine]
        dropped = [item for item, shard in zip(items, shards, strict=True) if shard != mine]
        expected = expected_durations(nodeids, self.durations)
        seconds = sum(e for e, shard in zip(expected, shards, strict=True) if shard == mine)
        timing = f", expected {seconds:.1f}s" if self.durations else ""
        self.summary = (
            f"procpar: shard {self.spec.index}/{self.spec.count} ({self.mode}{self.notice}): "
            f"{len(kept)} of {len(items)} items{timing}"
        )
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept

    def pytest_report_collectionfinish(self) -> str:
        return self.summary
