"""Test durations remembered across runs: what the default scheduler orders work by.

Each parallel run records setup + call + teardown seconds per nodeid from the reports the
controller replays, and merges them into the store at the end: pytest's cache
(``.pytest_cache/v/procpar/durations``) or, with ``--procpar-durations PATH``, a JSON file CI can
cache or commit. The file format is pytest-split's ``.test_durations``: one JSON object mapping
nodeid to seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CACHE_KEY = "procpar/durations"


def from_json(data: object) -> dict[str, float]:
    """The durations in a loaded file or cache value: entries that are no number are skipped,
    as is anything but an object (an unreadable store is an empty one)."""
    if not isinstance(data, dict):
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, (int, float))}


def to_json(durations: dict[str, float]) -> str:
    """A durations file's text: sorted, one entry a line, so that a committed file diffs well."""
    return json.dumps(durations, indent=1, sort_keys=True) + "\n"


class DurationStore:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.cache: pytest.Cache | None = getattr(
            config, "cache", None
        )  # None: -p no:cacheprovider
        option = config.getoption("procpar_durations", None)
        self.path = Path(option) if option else None
        self.known = self._load()
        self.measured: dict[str, float] = {}  # this run's, by nodeid

    def _load(self) -> dict[str, float]:
        data: object = None
        if self.path is not None:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                data = None
            except (OSError, ValueError) as exc:
                raise pytest.UsageError(f"--procpar-durations {self.path}: {exc}") from None
        elif self.cache is not None:
            data = self.cache.get(CACHE_KEY, None)
        return from_json(data)

    def measure(self, nodeid: str, seconds: float) -> None:
        """An item's protocol ended after ``seconds`` of setup, call and teardown: the
        duration the next run schedules by. Zero (the controller's report for an item that
        never started) is no measurement, and keeps what is known."""
        if seconds > 0.0:
            self.measured[nodeid] = seconds

    def save(self) -> None:
        merged = {**self.known, **{k: round(v, 6) for k, v in self.measured.items()}}
        if self.path is not None:
            self.path.write_text(to_json(merged), "utf-8")
        elif self.cache is not None:
            self.cache.set(CACHE_KEY, merged)

    def slowest(self, count: int) -> list[tuple[str, float]]:
        return sorted(self.measured.items(), key=lambda entry: -entry[1])[:count]
