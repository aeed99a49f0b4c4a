"""``-n auto`` counts the CPUs this process may use: affinity capped by cgroup quotas."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_procpar import cpus


def fake_host(tmp_path: Path, cgroup_line: str, files: dict[str, str]) -> tuple[Path, Path]:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text(cgroup_line + "\n")
    root = tmp_path / "cgroup"
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return proc, root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "200000 100000\n"}, 2),
        ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs: round up, the second is half usable
        ({"cpu.max": "50000 100000\n"}, 1),
        # The tightest quota on the path wins, wherever it is set.
        ({"cpu.max": "400000 100000\n", "ci/job/cpu.max": "100000 100000\n"}, 1),
        ({"cpu.max": "100000 100000\n", "ci/job/cpu.max": "max 100000\n"}, 1),
        ({}, None),
    ],
)
def test_cgroup_v2_quota(tmp_path: Path, files: dict[str, str], expected: int | None) -> None:
    proc, root = fake_host(tmp_path, "0::/ci/job", files)
    assert cpus.cgroup_cpu_limit(proc, root) == expected


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    proc, root = fake_host(
        tmp_path,
        "4:cpu,cpuacct:/docker/abc",
        {
            "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "300000\n",
            "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cpus.cgroup_cpu_limit(proc, root) == 3


def test_cgroup_v1_unlimited(tmp_path: Path) -> None:
    proc, root = fake_host(
        tmp_path,
        "4:cpu,cpuacct:/",
        {"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
    )
    assert cpus.cgroup_cpu_limit(proc, root) is None


def test_available_cpus_is_capped_by_quota(tmp_path: Path) -> None:
    proc, root = fake_host(tmp_path, "0::/", {"cpu.max": "100000 100000\n"})
    assert cpus.available_cpus(proc, root) == 1


def test_available_cpus_without_cgroup_files(tmp_path: Path) -> None:
    import os

    assert cpus.available_cpus(tmp_path / "nowhere", tmp_path) == len(os.sched_getaffinity(0))
