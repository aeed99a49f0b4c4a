"""``--shard K/N``: every test in exactly one shard, balanced by stored durations; Bazel's
sharding protocol; merging the shards' durations."""

from __future__ import annotations

import json
import os
import random
import sys
from collections import Counter
from pathlib import Path

import pytest
from harness import TIMEOUT_S, junit_suite, output, run, runpytest, summary_outcomes
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_procpar import durations_merge, shard

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
    bazel_in_gitlab = {"TEST_TOTAL_SHARDS": "3", "TEST_SHARD_INDEX": "0", "CI_NODE_INDEX": "2"}
    assert shard.from_environment({**bazel_in_gitlab, "CI_NODE_TOTAL": "3"}) == (
        shard.ShardSpec(1, 3)
    )
    for bad in ({"TEST_SHARD_INDEX": "x"}, {"TEST_SHARD_INDEX": "-1"}, {}):
        with pytest.raises(shard.BadShardVariable, match="TEST_SHARD_INDEX"):
            shard.from_environment({"TEST_TOTAL_SHARDS": "2", **bad})


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


def test_bazel_shards_as_shard_does_and_gets_junit_xml(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bazel's 0-based shard index 1 of 3 is ``--shard 2/3``; the runner says it shards (the
    status file) and writes the JUnit XML where Bazel reads it, with or without workers, each
    test once."""
    pytester.makepyfile("".join(f"def test_{i}(): pass\n" for i in range(12)))
    expected = summary_outcomes(run(pytester, "--shard=2/3", "--shard-mode=hash", "-rA"))
    assert 0 < len(expected) < 12
    status = pytester.path / "shard-status"
    monkeypatch.setenv("TEST_TOTAL_SHARDS", "3")
    monkeypatch.setenv("TEST_SHARD_INDEX", "1")
    monkeypatch.setenv("TEST_SHARD_STATUS_FILE", str(status))
    for workers in ([], ["-n", "2"]):
        xml = pytester.path / f"bazel-{len(workers)}.xml"
        monkeypatch.setenv("XML_OUTPUT_FILE", str(xml))
        result = run(pytester, "--shard=auto", "--shard-mode=hash", "-rA", *workers)
        assert result.ret == 0, output(result)
        assert summary_outcomes(result) == expected
        assert status.exists()
        status.unlink()  # the next run must touch it again
        cases = Counter(case.get("name") for case in junit_suite(xml).iter("testcase"))
        assert cases == Counter(nodeid.split("::")[1] for _, nodeid in expected)


def test_bad_bazel_shard_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile("def test_a(): pass\n")
    monkeypatch.setenv("TEST_TOTAL_SHARDS", "3")
    monkeypatch.setenv("TEST_SHARD_INDEX", "3")
    result = run(pytester, "--shard=auto")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    message = "TEST_SHARD_INDEX: expected 0 <= index < TEST_TOTAL_SHARDS (3), got 3"
    result.stderr.fnmatch_lines([f"ERROR: --shard auto: {message}"])
    assert "Traceback" not in output(result)


def merge_durations(pytester: pytest.Pytester, *args: str | Path) -> pytest.RunResult:
    return pytester.run(
        sys.executable, "-m", "pytest_procpar", "merge-durations", *args, timeout=TIMEOUT_S
    )


def test_merged_durations_hold_what_every_shard_measured(pytester: pytest.Pytester) -> None:
    """Both shards start from the same old durations and write them back with their own
    tests' new ones; the merge keeps the new ones of each. One shard keeps its durations in a
    file, the other in pytest's cache."""
    pytester.makepyfile("".join(f"def test_{i}(): pass\n" for i in range(10)))
    nodeids = [
        f"test_merged_durations_hold_what_every_shard_measured.py::test_{i}" for i in range(10)
    ]
    old = json.dumps(dict.fromkeys(nodeids, 100.0))  # far longer than the tests take now
    (pytester.path / "base.json").write_text(old)
    (pytester.path / "shard-1.json").write_text(old)
    cache_file = pytester.path / ".pytest_cache" / durations_merge.CACHE_FILE
    cache_file.parent.mkdir(parents=True)
    cache_file.write_text(old)
    for k, store in ((1, ["--procpar-durations=shard-1.json"]), (2, [])):
        result = run(pytester, "-n", "2", f"--shard={k}/2", *store)
        assert result.ret == 0, output(result)
    result = merge_durations(
        pytester, "--base", "base.json", "merged.json", "shard-1.json", ".pytest_cache"
    )
    assert result.ret == 0, output(result)
    merged = json.loads((pytester.path / "merged.json").read_text())
    assert sorted(merged) == nodeids
    assert all(0 < seconds < 100.0 for seconds in merged.values()), merged


def test_merge_conflicts_go_to_the_newest_input(tmp_path: Path) -> None:
    older, newer = tmp_path / "older.json", tmp_path / "newer.json"
    older.write_text(json.dumps({"t::a": 1.0, "t::b": 1.0}))
    newer.write_text(json.dumps({"t::a": 2.0}))
    os.utime(older, (1_000, 1_000))
    os.utime(newer, (2_000, 2_000))
    durations_merge.merge_files(tmp_path / "out.json", [newer, older], None)
    assert json.loads((tmp_path / "out.json").read_text()) == {"t::a": 2.0, "t::b": 1.0}


def test_merge_errors_are_one_line(pytester: pytest.Pytester) -> None:
    (pytester.path / "bad.json").write_text("{")
    for missing_or_bad in ("missing.json", "bad.json"):
        result = merge_durations(pytester, "out.json", missing_or_bad)
        assert result.ret == 2
        assert result.outlines == []
        assert len(result.errlines) == 1
        assert result.errlines[0].startswith(f"merge-durations: {missing_or_bad}: ")
    assert not (pytester.path / "out.json").exists()
