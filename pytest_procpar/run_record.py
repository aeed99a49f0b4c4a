"""Run records: what every worker ran, in which order, and how each test ended.

A parallel run's order is not the same twice, so a test that fails because of what an
earlier test on its worker left behind fails "at random". Every run with workers therefore
keeps a record in pytest's cache (``.pytest_cache/d/procpar-runs/<run>.jsonl``), written by
the controller as the reports come in (so a killed run still leaves one), from which
``--procpar-replay``, ``--procpar-bisect`` and ``--procpar-rerun`` work
(:mod:`pytest_procpar.record_use`, :mod:`pytest_procpar.polluters`).

The format (documented in docs/run-records.rst) is JSON Lines: a ``run`` line first, one
``test`` line per test as it finished (so a worker's tests appear in the order it ran them),
and an ``end`` line if the run ended at all. Readers skip lines of kinds they do not know, and
refuse a record of a later major version.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import pytest_procpar
from pytest_procpar import pytest_internals
from pytest_procpar.replay import LostTestRepr

FORMAT = "procpar-run-record"
VERSION = 1
CACHE_DIR = "procpar-runs"  # under the cache's d/
MAX_TOTAL_BYTES = 200 * 1024 * 1024  # the oldest records go first when they take more
FLUSH_EVERY_S = 0.5  # what a controller killed outright can lose
# Outcomes of a test that did not pass: what --procpar-rerun runs again and --procpar-bisect
# looks for.
NOT_PASSED = frozenset({"failed", "error", "crashed", "timeout", "notrun"})


def outcome_of(reports: Sequence[pytest.TestReport]) -> str:
    """One word for how a test ended, from its reports: ``passed``, ``failed``, ``error``
    (setup or teardown failed), ``skipped``, ``xfailed``, ``xpassed``, or, for a test its
    worker could not report, ``crashed``, ``timeout`` or ``notrun``. (Runs for every test in
    the controller: plain attributes, no properties.)"""
    outcome = "passed"
    for report in reports:
        result = report.outcome
        if result == "failed":
            if isinstance(report.longrepr, LostTestRepr):
                return report.longrepr.kind
            if report.when == "call":
                outcome = "failed"
            elif outcome != "failed":
                outcome = "error"
        elif report.when == "call" or result == "skipped":
            if getattr(report, "wasxfail", None) is not None:
                outcome = "xfailed" if result == "skipped" else "xpassed"
            elif result == "skipped":
                outcome = "skipped"
    return outcome


def seeds_of(config: pytest.Config) -> dict[str, Any]:
    """The seeds plugins were given or chose, by option name (``randomly_seed``,
    ``hypothesis_seed``, ``random_order_seed``, ...): what replaying the run needs again."""
    return {
        dest: value
        for dest, value in sorted(vars(config.option).items())
        if "seed" in dest and isinstance(value, (int, str)) and not isinstance(value, bool)
        and value not in ("default", "last", "")
    }  # fmt: skip


def apply_seeds(config: pytest.Config, record: RunRecord) -> list[str]:
    """Give plugins the seeds they had in ``record``, where the command line gives none (a
    value still a default word such as pytest-randomly's ``default``); returns what was set."""
    applied = []
    for dest, value in record.run.get("seeds", {}).items():
        current = getattr(config.option, dest, None)
        if current is None or (isinstance(current, str) and not current.lstrip("-").isdigit()):
            setattr(config.option, dest, value)
            applied.append(f"{dest}={value}")
    return applied


@dataclass
class TestEntry:
    """One test line of a record."""

    nodeid: str
    outcome: str
    worker: str | None  # None: no worker ran it (not run)
    pid: int | None
    start: float  # seconds since the run started
    end: float


@dataclass
class RunRecord:
    """A record read back."""

    path: Path
    run: dict[str, Any]  # the first line
    tests: list[TestEntry] = field(default_factory=list)
    end: dict[str, Any] | None = None  # None: the run never ended (killed)

    @property
    def name(self) -> str:
        return self.path.stem

    def sequence(self, worker: str) -> list[TestEntry]:
        """What ``worker`` ran, in the order it ran it."""
        return [entry for entry in self.tests if entry.worker == worker]

    def workers(self) -> list[str]:
        return list(dict.fromkeys(entry.worker for entry in self.tests if entry.worker))

    def outcomes(self) -> dict[str, str]:
        return {entry.nodeid: entry.outcome for entry in self.tests}

    @classmethod
    def read(cls, path: Path) -> RunRecord:
        """The record at ``path``; a usage error if it is not one procpar can read. A last
        line cut short (the run was killed while writing it) is left out."""
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise pytest.UsageError(f"procpar: cannot read run record {path}: {exc}") from None
        parsed: list[dict[str, Any]] = []
        for number, line in enumerate(lines, 1):
            try:
                parsed.append(json.loads(line))
            except ValueError:
                if number == len(lines):
                    break
                raise pytest.UsageError(f"procpar: {path}:{number}: not JSON") from None
        if not parsed or parsed[0].get("format") != FORMAT:
            raise pytest.UsageError(f"procpar: {path} is not a procpar run record")
        if int(parsed[0].get("version", 0)) > VERSION:
            raise pytest.UsageError(
                f"procpar: {path} is a version {parsed[0]['version']} record; this procpar "
                f"reads version {VERSION}"
            )
        record = cls(path, parsed[0])
        for line_data in parsed[1:]:
            kind = line_data.get("kind")
            if kind == "test":
                record.tests.append(
                    TestEntry(
                        line_data["nodeid"],
                        line_data["outcome"],
                        line_data.get("worker"),
                        line_data.get("pid"),
                        float(line_data.get("start", 0.0)),
                        float(line_data.get("end", 0.0)),
                    )
                )
            elif kind == "end":
                record.end = line_data
        return record


class RecordStore:
    """The records in pytest's cache, oldest first (their names sort by time)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.directory = records_directory(config)

    def paths(self) -> list[Path]:
        if self.directory is None or not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("*.jsonl"))

    def find(self, wanted: str) -> RunRecord:
        """``last``, a record's name, or the start of exactly one name."""
        paths = self.paths()
        if not paths:
            raise pytest.UsageError(
                "procpar: no run records yet (a run with -n keeps one in pytest's cache)"
            )
        if wanted == "last":
            return RunRecord.read(paths[-1])
        matching = [path for path in paths if path.stem.startswith(wanted)]
        exact = [path for path in matching if path.stem == wanted]
        if exact or len(matching) == 1:
            return RunRecord.read((exact or matching)[0])
        names = ", ".join(path.stem for path in (matching or paths)[-5:])
        which = "more than one run record starts" if matching else "no run record is named"
        hint = "" if matching else "; before test paths, write the option as --procpar-...=last"
        raise pytest.UsageError(f"procpar: {which} {wanted!r} (recent: {names}){hint}")

    def newest_first(self) -> Iterable[RunRecord]:
        for path in reversed(self.paths()):
            try:
                yield RunRecord.read(path)
            except pytest.UsageError:
                continue  # another version's, or damaged: look further back

    def new_path(self, keep: int) -> Path | None:
        """Where this run's record goes, after making room: at most ``keep`` records (this
        one included) and :data:`MAX_TOTAL_BYTES` in all. None when there is no cache."""
        cache: pytest.Cache | None = getattr(self.config, "cache", None)
        if self.directory is None or cache is None or keep <= 0:
            return None
        cache.mkdir(CACHE_DIR)  # as pytest makes its cache (with its .gitignore)
        paths = self.paths()
        sizes = {path: _size(path) for path in paths}
        while paths and (len(paths) >= keep or sum(sizes.values()) > MAX_TOTAL_BYTES):
            oldest = paths.pop(0)
            oldest.unlink(missing_ok=True)
            sizes.pop(oldest)
        now = time.time()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))  # names sort by time
        return self.directory / f"{stamp}.{int(now * 1000) % 1000:03d}-{os.getpid()}.jsonl"


def records_directory(config: pytest.Config) -> Path | None:
    """Where the records are in pytest's cache, known before the cache plugin is configured,
    which is too late for what replaying a record sets (the seeds plugins read while they are
    configured). None with ``-p no:cacheprovider``."""
    if not config.pluginmanager.has_plugin("cacheprovider"):
        return None
    return pytest_internals.cache_subdir(config, CACHE_DIR)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class RunRecorder:
    """The controller's plugin that writes the record from the reports it replays.

    Lines wait in a list and go to the file with one ``os.write`` at most every
    :data:`FLUSH_EVERY_S`: a forked worker inherits that list and the descriptor, and as
    neither flushes anything by itself, a worker can never write the controller's lines."""

    def __init__(
        self, config: pytest.Config, path: Path, items: Sequence[pytest.Item], workers: int
    ) -> None:
        self.path = path
        self.started = time.time()
        self.fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.pending: list[str] = []
        self.flushed = time.monotonic()
        self.reports: dict[str, list[pytest.TestReport]] = {}
        self._write(
            {
                "format": FORMAT,
                "version": VERSION,
                "kind": "run",
                "started": round(self.started, 3),
                "args": list(config.invocation_params.args),
                "invocation_dir": str(config.invocation_params.dir),
                "rootdir": str(config.rootpath),
                "procpar": pytest_procpar.__version__,
                "pytest": pytest.__version__,
                "python": sys.version.split()[0],
                "seeds": seeds_of(config),
                "workers": workers,
                "items": [item.nodeid for item in items],
            }
        )
        self._flush()

    def _write(self, data: dict[str, Any]) -> None:
        self.pending.append(json.dumps(data, separators=(",", ":")) + "\n")

    def _flush(self) -> None:
        if self.fd is not None and self.pending:
            data = "".join(self.pending).encode()
            self.pending.clear()
            while data:
                data = data[os.write(self.fd, data) :]
        self.flushed = time.monotonic()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.reports.setdefault(report.nodeid, []).append(report)

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        made = self.reports.pop(nodeid, None)
        if not made:
            return
        # Written out by hand rather than by json.dumps of a dict: this runs for every test,
        # in the controller's busiest path (the nodeid is the only string needing escapes).
        node = getattr(made[-1], "node", None)
        worker = f'"{node.gateway.id}"' if node is not None else "null"
        pid = getattr(node, "pid", None)
        start = max(0.0, getattr(made[0], "start", self.started) - self.started)
        end = max(start, getattr(made[-1], "stop", self.started) - self.started)
        self.pending.append(
            f'{{"kind":"test","nodeid":{json.dumps(nodeid)},"outcome":"{outcome_of(made)}",'
            f'"worker":{worker},"pid":{pid if pid else "null"},'
            f'"start":{start:.4f},"end":{end:.4f}}}\n'
        )
        if time.monotonic() - self.flushed > FLUSH_EVERY_S:
            self._flush()

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, exitstatus: int) -> None:
        self._write(
            {
                "kind": "end",
                "at": round(time.time() - self.started, 3),
                "exitstatus": int(exitstatus),
            }
        )
        self.close()

    def close(self) -> None:
        self._flush()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def keep_sequence(
    config: pytest.Config, items: list[pytest.Item], nodeids: Sequence[str]
) -> list[str]:
    """Make ``items`` the collected items of ``nodeids``, in that order; the nodeids no item
    has now."""
    by_nodeid = {item.nodeid: item for item in items}
    keep_only(config, items, [by_nodeid[nodeid] for nodeid in nodeids if nodeid in by_nodeid])
    return [nodeid for nodeid in nodeids if nodeid not in by_nodeid]


def keep_only(config: pytest.Config, items: list[pytest.Item], kept: list[pytest.Item]) -> None:
    """Make ``items`` ``kept``, the others deselected (as ``-k`` deselects)."""
    chosen = {id(item) for item in kept}
    dropped = [item for item in items if id(item) not in chosen]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = kept


def start_recording(
    config: pytest.Config, items: Sequence[pytest.Item], keep: int, workers: int
) -> None:
    """Keep a record of this run on ``workers``, among ``keep`` records at most, unless there
    is no cache to keep it in (``-p no:cacheprovider``)."""
    path = RecordStore(config).new_path(keep)
    if path is not None:
        recorder = RunRecorder(config, path, items, workers)
        config.pluginmanager.register(recorder, "procpar_run_record")
