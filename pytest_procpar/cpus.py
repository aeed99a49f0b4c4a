"""How many CPUs this process may really use, for ``-n auto``.

``os.cpu_count()`` reports the host's CPUs; in a container limited to 2 CPUs on a 64-core host
that would start 64 workers fighting for 2 CPUs. The real limit is the smaller of the affinity
mask and the cgroup CPU quota (cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), taken over the
process's cgroup and every parent cgroup.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path


def available_cpus(proc: Path = Path("/proc"), cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """The CPUs this process may use: affinity mask, capped by any cgroup CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = cgroup_cpu_limit(proc, cgroup_root)
    if quota is not None:
        count = min(count, quota)
    return max(1, count)


def cgroup_cpu_limit(proc: Path, cgroup_root: Path) -> int | None:
    """The tightest CPU quota over this process's cgroup and its parents, rounded up."""
    try:
        lines = (proc / "self" / "cgroup").read_text().splitlines()
    except OSError:
        return None
    limits: list[int] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            limits += _walk(cgroup_root, path, _v2_limit)
        elif "cpu" in controllers.split(","):
            for mount in (
                cgroup_root / controllers,
                cgroup_root / "cpu,cpuacct",
                cgroup_root / "cpu",
            ):
                if mount.is_dir():
                    limits += _walk(mount, path, _v1_limit)
                    break
    return min(limits) if limits else None


def _walk(mount: Path, path: str, read_limit: Callable[[Path], int | None]) -> list[int]:
    """Limits found in the cgroup directory for ``path`` and each of its parents."""
    found = []
    parts = [part for part in path.split("/") if part]
    for depth in range(len(parts), -1, -1):
        limit = read_limit(mount.joinpath(*parts[:depth]))
        if limit is not None:
            found.append(limit)
    return found


def _v2_limit(directory: Path) -> int | None:
    try:
        quota, period = (directory / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return _ratio(quota, period)


def _v1_limit(directory: Path) -> int | None:
    try:
        quota = (directory / "cpu.cfs_quota_us").read_text().strip()
        period = (directory / "cpu.cfs_period_us").read_text().strip()
    except OSError:
        return None
    return _ratio(quota, period)


def _ratio(quota: str, period: str) -> int | None:
    if quota == "max":
        return None
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None
    if quota_us <= 0 or period_us <= 0:
        return None
    return max(1, math.ceil(quota_us / period_us))
