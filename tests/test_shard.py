"""``--shard K/N``: every test in exactly one shard, balanced by stored durations."""

from __future__ import annotations

import json
import random

import pytest
from harness import runpytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_procpar import shard

nodeid_lists = st.lists(st.text(min_size=1, max_size=12), max_size=60, unique=True)


@settings(max_examples=60, deadline=None)
@given(
    nodeids=nodeid_lists,
    count=st.integers(min_value=1, max_value=8),
    mode=st.sampled_from(shard.MODES),
    seconds=st.lists(st.floats(min_value=0, max_value=5), max_size=60),
)
def test_every_item_in_exactly_one_shard(
    nodeids: list[str], count: int, mode: str, seconds: list[float]
) -> None:
    durations = dict(zip(nodeids, seconds, strict=False))
    shards = shard.assign(nodeids, count, mode, durations)
    assert len(shards) == len(nodeids)
    assert all(0 <= s < count for s in shards)
    assert shards == shard.assign(list(nodeids), count, mode, dict(durations))  # deterministic


@settings(max_examples=40, deadline=None)
@given(nodeids=nodeid_lists, new=st.text(min_size=13, max_size=20))
def test_hash_shards_are_stable_when_a_test_is_added(nodeids: list[str], new: str) -> None:
    before = shard.assign(nodeids, 4, "hash", {})
    after = shard.assign([*nodeids, new], 4, "hash", {})
    assert after[: len(nodeids)] == before


def test_long_tail_shards_are_balanced() -> None:
    rnd = random.Random(7)
    seconds = sorted(min(2.0, rnd.paretovariate(1.3) * 0.01) for _ in range(160))
    nodeids = [f"test_skew.py::test_{i}" for i in range(160)]
    durations = dict(zip(nodeids, seconds, strict=True))
    shards = shard.assign(nodeids, 4, "duration", durations)
    loads = [sum(s for s, k in zip(seconds, shards, strict=True) if k == n) for n in range(4)]
    assert max(loads) <= 1.10 * max(sum(seconds) / 4, max(seconds))


def test_environment_detection() -> None:
    assert shard.from_environment({"CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "3"}) == shard.ShardSpec(
        2, 3
    )
    assert shard.from_environment({"CIRCLE_NODE_INDEX": "0", "CIRCLE_NODE_TOTAL": "2"}) == (
        shard.ShardSpec(1, 2)
    )
    assert shard.from_environment({}) is None


def test_shards_partition_a_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("".join(f"def test_{i}(): pass\n" for i in range(25)))
    durations = {f"test_shards_partition_a_run.py::test_{i}": float(i % 5) for i in range(25)}
    seen: list[str] = []
    for k in (1, 2, 3):  # each CI job starts from the same stored durations
        (pytester.path / "durations.json").write_text(json.dumps(durations))
        result = runpytest(
            pytester, "-p", "procpar", "-n", "2", f"--shard={k}/3",
            "--procpar-durations=durations.json", "-rA", "-p", "no:randomly",
        )  # fmt: skip
        assert result.ret == 0
        result.stdout.fnmatch_lines([f"procpar: shard {k}/3 (duration): * of 25 items, expected *"])
        seen += [line.split()[1] for line in result.outlines if line.startswith("PASSED ")]
    assert sorted(seen) == sorted(durations)


@pytest.mark.parametrize(
    "workers",
    [["-n", "2", "--procpar-start", "spawn"], ["--tx", "popen"], ["-n", "1", "--tx", "popen"]],
    ids=["spawn", "popen", "fork+popen"],
)
def test_shard_with_workers_that_collect_again(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    """Workers that collect by themselves find the whole suite; the tests the controller's
    shard left out are not a collection mismatch, and the shard runs as it does serially."""
    pytester.makepyfile("".join(f"def test_{i}(): pass\n" for i in range(12)))
    ran = {}
    for args in ([], workers):
        result = runpytest(
            pytester, "-p", "procpar", "--shard=2/3", "--shard-mode=hash", "-rA",
            "-p", "no:randomly", *args,
        )  # fmt: skip
        assert result.ret == 0, result.stdout.str()
        ran[bool(args)] = sorted(line for line in result.outlines if line.startswith("PASSED "))
    assert ran[True] == ran[False]
    assert 0 < len(ran[True]) < 12


def test_shard_without_durations_falls_back_to_hash(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a(): pass\ndef test_b(): pass\n")
    result = runpytest(pytester, "-p", "procpar", "--shard=1/2", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["procpar: shard 1/2 (hash; no stored durations yet): *"])


@pytest.mark.parametrize("value", ["0/2", "3/2", "x", "1/0"])
def test_bad_shard_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    pytester.makepyfile("def test_a(): pass\n")
    result = runpytest(pytester, "-p", "procpar", f"--shard={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--shard" in result.stderr.str()
