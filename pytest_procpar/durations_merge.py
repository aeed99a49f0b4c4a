"""One durations file from what several shard jobs measured (``merge-durations``).

Every ``--shard`` job must read the same durations, or two jobs could split the suite
differently; each then writes back the file it read with its own tests' new measurements on
top. So a shard's file also holds the starting values of every other shard's tests, and a
merge in which the newest file wins would put those old values back. Given the file the
shards started from (``--base``), a value that differs from it is a measurement and replaces
it. Where inputs still disagree (a test measured in two of them), the most recently modified
input wins, and of inputs modified at the same time the later argument: that is the newer
measurement. Without ``--base`` (or when it does not exist: the shards started without
durations) every value counts as measured.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from pytest_procpar.durations import CACHE_KEY, from_json, to_json

CACHE_FILE = Path("v", *CACHE_KEY.split("/"))  # where the durations are in a pytest cache


class MergeError(Exception):
    """An input or the output that cannot be used: a one-line message, no traceback."""


def read(path: Path, *, missing_ok: bool = False) -> tuple[dict[str, float], float]:
    """The durations in a durations file, or in a pytest cache directory (``.pytest_cache``),
    and when they were written. A missing file, where ``missing_ok``, holds none (as for
    ``--procpar-durations``)."""
    file = path / CACHE_FILE if path.is_dir() else path
    try:
        text = file.read_text(encoding="utf-8")
        modified = file.stat().st_mtime
        data: object = json.loads(text)
    except FileNotFoundError:
        if missing_ok:
            return {}, 0.0
        raise MergeError(f"{file}: no such file") from None
    except (OSError, ValueError) as exc:
        raise MergeError(f"{file}: {exc}") from None
    if not isinstance(data, dict):
        raise MergeError(f"{file}: expected a JSON object mapping node ids to seconds")
    return from_json(data), modified


def merge(base: Mapping[str, float], measured: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """``base`` updated with what differs from it in each of ``measured``, oldest first (a
    later one wins)."""
    merged = dict(base)
    for durations in measured:
        for nodeid, seconds in durations.items():
            if base.get(nodeid) != seconds:
                merged[nodeid] = seconds
    return merged


def merge_files(out: Path, inputs: Sequence[Path], base: Path | None) -> str:
    """Write the merge of ``inputs`` to ``out``; what to tell the user."""
    start = read(base, missing_ok=True)[0] if base is not None else {}
    found = [read(path) for path in inputs]
    by_age = sorted(found, key=lambda entry: entry[1])  # stable: ties keep argument order
    merged = merge(start, [durations for durations, _ in by_age])
    try:
        out.write_text(to_json(merged), encoding="utf-8")
    except OSError as exc:
        raise MergeError(f"{out}: {exc}") from None
    changed = sum(1 for nodeid, seconds in merged.items() if start.get(nodeid) != seconds)
    return f"{out}: {len(merged)} durations, {changed} of them new"
