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


class DurationStore:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.cache: pytest.Cache | None = getattr(
            config, "cache", None
        )  # None: -p no:cacheprovider
        option = config.getoption("procpar_durations", None)
        self.path = Path(option) if option else None
        self.known = self._load()
        self.running: dict[str, float] = {}  # items whose protocol has not finished yet
        self.measured: dict[str, float] = {}

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
        if not isinstance(data, dict):
            return {}
        return {str(k): float(v) for k, v in data.items() if isinstance(v, (int, float))}

    def record(self, report: pytest.TestReport) -> None:
        """Add one phase's seconds; a setup report starts the item's total afresh."""
        if report.when == "setup":
            self.running[report.nodeid] = report.duration
        else:
            self.running[report.nodeid] = self.running.get(report.nodeid, 0.0) + report.duration

    def finish(self, nodeid: str) -> None:
        """The item's protocol has ended: its total is a measurement, unless it is zero (the
        controller's report for an item that never started). An item cut short by an
        interruption never gets here. Either way its earlier duration is kept."""
        seconds = self.running.pop(nodeid, 0.0)
        if seconds > 0.0:
            self.measured[nodeid] = seconds

    def at_most(self, nodeid: str, seconds: float) -> None:
        """The item's worker measured ``seconds`` around all of it: its phases cannot have
        taken longer. (pytest times the phases with a clock that tests can freeze, and a
        frozen clock says decades.)"""
        if self.measured.get(nodeid, 0.0) > seconds:
            self.measured[nodeid] = seconds

    def save(self) -> None:
        merged = {**self.known, **{k: round(v, 6) for k, v in self.measured.items()}}
        if self.path is not None:
            self.path.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n", "utf-8")
        elif self.cache is not None:
            self.cache.set(CACHE_KEY, merged)

    def slowest(self, count: int) -> list[tuple[str, float]]:
        return sorted(self.measured.items(), key=lambda entry: -entry[1])[:count]
