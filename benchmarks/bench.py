#!/usr/bin/env python3
"""Benchmark pytest-procpar against plain pytest and pytest-xdist on synthetic suites.

Each suite is generated into a work directory (a temporary one unless ``--workdir`` is given),
then every runner configuration of that suite is run ``--rounds`` times, interleaved round by
round (plain, xdist, procpar, plain, xdist, procpar, ...) so that a noisy machine slows all of
them alike. One untimed warm-up run of each configuration comes first (it also writes the
bytecode caches: ``PYTHONDONTWRITEBYTECODE`` is removed from the children's environment).
Each configuration keeps its own pytest cache dir (``-o cache_dir=...``), so what one runner
stores there (procpar's learned test durations) never feeds another. The ``skewed`` suite runs
twice per round from an emptied cache dir and only the second run is timed: the first one
teaches the scheduler the durations, as on a developer's second run.

The table shows median wall seconds and the median of the per-round ratios to plain pytest. For
the ``memory`` suite it also shows the peak total PSS of the pytest process and all its
descendants, sampled from ``/proc/<pid>/smaps_rollup`` about every 20 ms. A CPU meter
(``cpumeter.py``, loaded into every process of every run) gives the CPU microseconds per test
of serial pytest's run loop, of the workers' loops and of the controller's replay; the
``tiny_n4`` and ``tiny_n8`` suites show how the controller's cost per test moves with the
number of workers (the controller, not the workers, caps a suite of tiny tests on a machine
with many cores). ``heavy_import_spawn`` is the heavy-imports suite with spawned workers, as
xdist's are fresh interpreters too; its ``procpar-once`` column collects once in the
controller, after which every spawned worker collects the whole suite again.

Runs use ``-q -p no:randomly``; ``-p procpar`` for procpar, ``-p no:procpar`` for xdist and
``-p no:procpar -p no:xdist`` for plain pytest, since procpar and xdist both register ``-n``.

usage: python benchmarks/bench.py [--suites tiny,one,...] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cpumeter
from common import child_env, format_table, git_revision

RUN_TIMEOUT_S = 900.0
SAMPLE_INTERVAL_S = 0.02
COMMON_ARGS = ["-q", "-p", "no:randomly"]

# ---------------------------------------------------------------------------------------------
# Suite generation
# ---------------------------------------------------------------------------------------------

BUSY_MODULE = '''\
"""CPU-bound waiting: a test that takes N seconds keeps one core busy for N seconds."""

import time


def busy(seconds: float) -> int:
    deadline = time.perf_counter() + seconds
    spins = 0
    while time.perf_counter() < deadline:
        spins += 1
    return spins
'''

# Every suite gets its own ini file, so pytest never picks up the config of a directory above
# the work dir (for instance this repository's pyproject.toml when --workdir is inside it).
PYTEST_INI = "[pytest]\npythonpath = .\n"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _tests(bodies: list[str], args: str = "") -> str:
    """Test functions test_0, test_1, ... with these bodies (unindented source lines)."""
    return "".join(
        f"\n\ndef test_{j}({args}):\n{textwrap.indent(body, '    ')}"
        for j, body in enumerate(bodies)
    )


def make_tiny(root: Path) -> str:
    files, per_file = 50, 100
    for i in range(files):
        _write(root / f"test_tiny_{i:03d}.py", "# empty tests" + _tests(["pass\n"] * per_file))
    return f"{files * per_file} empty tests in {files} files"


def make_one(root: Path) -> str:
    _write(root / "test_one.py", "def test_one():\n    pass\n")
    return "a single trivial test"


def make_heavy_import(root: Path) -> str:
    files, per_file, import_cpu_s = 120, 5, 0.03
    _write(root / "_busy.py", BUSY_MODULE)
    for i in range(files):
        head = f"from _busy import busy\n\nbusy({import_cpu_s})  # import-time cost\n"
        _write(root / f"test_heavy_{i:03d}.py", head + _tests(["busy(0.002)\n"] * per_file))
    return f"{files} modules x {per_file} tests, {import_cpu_s * 1000:.0f} ms CPU at import"


def skewed_durations(count: int = 160, seed: int = 20240601) -> list[float]:
    """Pareto(alpha=1.3, x_m=10 ms) CPU seconds, capped at 2 s, sorted slowest last."""
    rng = random.Random(seed)
    alpha, minimum, cap = 1.3, 0.01, 2.0
    durations = [min(cap, minimum / (1.0 - rng.random()) ** (1.0 / alpha)) for _ in range(count)]
    return sorted(durations)


def make_skewed(root: Path) -> str:
    durations = skewed_durations()
    per_file = 20
    _write(root / "_busy.py", BUSY_MODULE)
    for f in range(0, len(durations), per_file):
        chunk = durations[f : f + per_file]
        body = _tests([f"busy({seconds:.4f})\n" for seconds in chunk])
        _write(root / f"test_skew_{f // per_file:02d}.py", "from _busy import busy" + body)
    return (
        f"{len(durations)} CPU tests, Pareto tail: total {sum(durations):.2f} s CPU, "
        f"longest {max(durations):.2f} s (last)"
    )


def make_sleep(root: Path) -> str:
    files, per_file, seconds = 20, 20, 0.025
    for i in range(files):
        body = _tests([f"time.sleep({seconds})\n"] * per_file)
        _write(root / f"test_sleep_{i:02d}.py", "import time" + body)
    return f"{files * per_file} tests sleeping {seconds * 1000:.0f} ms"


def make_fixtures(root: Path) -> str:
    files, per_file, setup_s = 24, 10, 0.15
    _write(root / "_busy.py", BUSY_MODULE)
    for i in range(files):
        head = (
            "import pytest\n\nfrom _busy import busy\n\n\n"
            '@pytest.fixture(scope="module")\n'
            "def resource():\n"
            f"    busy({setup_s})\n"
            f"    yield {i}\n"
        )
        body = _tests([f"busy(0.005)\nassert resource == {i}\n"] * per_file, "resource")
        _write(root / f"test_fix_{i:02d}.py", head + body)
    return f"{files} modules: {setup_s} s CPU module fixture, {per_file} tests of 5 ms each"


def make_memory(root: Path) -> str:
    files, per_file, megabytes = 4, 25, 100
    for i in range(files):
        head = f"DATA = bytes(range(256)) * ({megabytes} * 1024 * 1024 // 256)  # made at import\n"
        body = _tests([f"assert DATA[{j}] == {j}\n" for j in range(per_file)])
        _write(root / f"test_mem_{i:02d}.py", head + body)
    return f"{files} modules holding {megabytes} MB each, {per_file} tests each"


# ---------------------------------------------------------------------------------------------
# Suites and their runner configurations
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    name: str  # column name: plain, xdist, procpar, xdist-loadscope
    args: tuple[str, ...]


@dataclass(frozen=True)
class Suite:
    name: str
    make: Callable[[Path], str]
    expected_passed: int
    workers: int
    twice: bool = False  # run twice per round, time the second run (duration learning)
    memory: bool = False  # sample the process tree's PSS
    loadscope: bool = False  # extra xdist --dist loadscope column
    start: str = "fork"  # procpar's start method (spawn: fresh interpreters, as xdist's)
    once: bool = False  # extra procpar column collecting once in the controller

    def configs(self) -> list[Config]:
        n = str(self.workers)
        procpar = ("-p", "procpar", "-n", n, "--procpar-start", self.start)
        configs = [
            Config("plain", ("-p", "no:procpar", "-p", "no:xdist")),
            Config("xdist", ("-p", "no:procpar", "-n", n)),
            Config("procpar", procpar),
        ]
        if self.loadscope:
            configs.append(
                Config("xdist-loadscope", ("-p", "no:procpar", "-n", n, "--dist", "loadscope"))
            )
        if self.once:
            configs.append(Config("procpar-once", (*procpar, "--procpar-collect=controller")))
        return configs


SUITES: dict[str, Suite] = {
    suite.name: suite
    for suite in (
        Suite("tiny", make_tiny, 5000, workers=2),
        Suite("one", make_one, 1, workers=8),
        Suite("heavy_import", make_heavy_import, 600, workers=2),
        Suite("skewed", make_skewed, 160, workers=2, twice=True),
        Suite("sleep", make_sleep, 400, workers=8),
        Suite("fixtures", make_fixtures, 240, workers=2, loadscope=True),
        Suite("memory", make_memory, 100, workers=4, memory=True),
        # the controller's cost per test as workers are added (CPU meter table)
        Suite("tiny_n4", make_tiny, 5000, workers=4),
        Suite("tiny_n8", make_tiny, 5000, workers=8),
        # spawned workers: collecting once, each would collect the whole suite again
        Suite("heavy_import_spawn", make_heavy_import, 600, workers=2, start="spawn", once=True),
    )
}

COLUMNS = ("plain", "xdist", "procpar", "xdist-loadscope", "procpar-once")


# ---------------------------------------------------------------------------------------------
# Measuring one run
# ---------------------------------------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc/<pid>/stat (no /proc/<pid>/task/*/children here)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: fields follow the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def process_tree(root: int) -> list[int]:
    children = _children_map()
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass  # gone already, or not ours to read
    return 0


class PssSampler(threading.Thread):
    """Sums the PSS of a process and all its descendants every ~20 ms; keeps the maximum."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kib = 0
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            total = sum(pss_kib(pid) for pid in process_tree(self.pid))
            self.peak_kib = max(self.peak_kib, total)
            self.samples += 1
            self._stop_event.wait(SAMPLE_INTERVAL_S)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@dataclass
class RunResult:
    wall_s: float
    returncode: int
    passed: int
    ok: bool
    peak_pss_mib: float | None = None
    problem: str = ""
    cpu_s: float | None = None  # user + system seconds of pytest and the processes it reaped
    per_test_us: dict[str, float] = field(default_factory=dict)  # CPU meter, by role


PASSED_RE = re.compile(r"(\d+) passed")


def run_pytest(
    python: str, suite: Suite, root: Path, config: Config, cache_dir: Path, *, sample: bool
) -> RunResult:
    cmd = [python, "-m", "pytest", *COMMON_ARGS, "-o", f"cache_dir={cache_dir}", *config.args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    meter = cache_dir.parent / f"{config.name}.meter"
    proc = subprocess.Popen(
        cmd,
        cwd=root,
        env=cpumeter.environment(child_env(), meter),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # so a hung run can be killed with all its workers
    )
    sampler = PssSampler(proc.pid) if sample else None
    if sampler is not None:
        sampler.start()
    try:
        output, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        timed_out = True
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if sampler is not None:
        sampler.stop()
    text = output.decode(errors="replace")
    passed = 0
    for line in text.splitlines():  # the closing line, e.g. "5000 passed in 4.2s"
        match = PASSED_RE.search(line)
        if match and " in " in line:
            passed = int(match.group(1))
    problem = ""
    if timed_out:
        problem = f"timed out after {RUN_TIMEOUT_S:.0f} s"
    elif proc.returncode != 0:
        problem = f"exit code {proc.returncode}"
    elif passed != suite.expected_passed:
        problem = f"{passed} of {suite.expected_passed} passed"
    if problem:
        tail = "\n".join(text.splitlines()[-15:])
        problem += f"\n    $ (cd {root} && {' '.join(cmd)})\n" + textwrap.indent(tail, "    | ")
    return RunResult(
        wall_s=wall,
        returncode=proc.returncode,
        passed=passed,
        ok=not problem,
        peak_pss_mib=sampler.peak_kib / 1024 if sampler is not None else None,
        problem=problem,
        cpu_s=cpu,
        per_test_us=cpumeter.per_test_us(meter),
    )


# ---------------------------------------------------------------------------------------------
# Running a suite
# ---------------------------------------------------------------------------------------------


@dataclass
class ConfigResult:
    name: str
    args: list[str]
    runs: list[RunResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(run.ok for run in self.runs)

    @property
    def median_wall(self) -> float:
        return statistics.median(run.wall_s for run in self.runs)

    @property
    def median_pss(self) -> float | None:
        values = [run.peak_pss_mib for run in self.runs if run.peak_pss_mib is not None]
        return statistics.median(values) if values else None

    def median_per_test(self, role: str) -> float | None:
        values = [run.per_test_us[role] for run in self.runs if role in run.per_test_us]
        return statistics.median(values) if values else None

    @property
    def median_cpu(self) -> float | None:
        values = [run.cpu_s for run in self.runs if run.cpu_s is not None]
        return statistics.median(values) if values else None


@dataclass
class SuiteResult:
    name: str
    description: str
    workers: int
    configs: dict[str, ConfigResult]

    def ratio(self, name: str, attr: str = "wall_s") -> float | None:
        """Median over rounds of this config's value divided by plain's in the same round."""
        plain, other = self.configs.get("plain"), self.configs.get(name)
        if plain is None or other is None:
            return None
        ratios = [
            getattr(mine, attr) / getattr(base, attr)
            for base, mine in zip(plain.runs, other.runs, strict=False)
            if getattr(base, attr) and getattr(mine, attr) is not None
        ]
        return statistics.median(ratios) if ratios else None

    def excess(self, name: str) -> float | None:
        """Median over rounds of this config's wall seconds minus plain's in the same round."""
        plain, other = self.configs.get("plain"), self.configs.get(name)
        if plain is None or other is None:
            return None
        diffs = [
            mine.wall_s - base.wall_s for base, mine in zip(plain.runs, other.runs, strict=False)
        ]
        return statistics.median(diffs) if diffs else None


def run_suite(python: str, suite: Suite, root: Path, cache_root: Path, rounds: int) -> SuiteResult:
    description = suite.make(root)
    _write(root / "pytest.ini", PYTEST_INI)
    configs = suite.configs()
    results = {config.name: ConfigResult(config.name, list(config.args)) for config in configs}
    print(f"\n[{suite.name}] {description}; -n {suite.workers}", flush=True)

    def once(config: Config, label: str) -> RunResult:
        cache_dir = cache_root / suite.name / config.name
        if suite.twice:
            # A fresh cache, one untimed run that fills it, then the timed run that may use it.
            shutil.rmtree(cache_dir, ignore_errors=True)
            first = run_pytest(python, suite, root, config, cache_dir, sample=False)
            if not first.ok:
                print(f"  {label:>8} {config.name:<16} first run FAILED", flush=True)
                return first
        result = run_pytest(python, suite, root, config, cache_dir, sample=suite.memory)
        pss = (
            f"  peak PSS {result.peak_pss_mib:8.1f} MiB" if result.peak_pss_mib is not None else ""
        )
        status = "ok" if result.ok else "FAILED: " + result.problem
        print(f"  {label:>8} {config.name:<16} {result.wall_s:8.2f} s{pss}  {status}", flush=True)
        return result

    for config in configs:
        once(config, "warm-up")
    for round_no in range(1, rounds + 1):
        for config in configs:
            results[config.name].runs.append(once(config, f"round {round_no}"))
    return SuiteResult(suite.name, description, suite.workers, results)


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------


@dataclass
class Target:
    text: str
    met: bool | None  # None: not measurable (a configuration failed)


# Wall-time ratio to plain pytest the project aims for, per suite: parallel collection's
# (issue 14) for tiny, skewed and heavy_import; the scheduling issue's for the others.
RATIO_TARGETS = {
    "tiny": 0.60,
    "skewed": 0.51,
    "fixtures": 0.55,
    "sleep": 0.16,
    "heavy_import": 0.60,
}


def targets(result: SuiteResult) -> list[Target]:
    """The project's targets for this suite, with whether the measured medians meet them."""
    procpar, plain = result.configs.get("procpar"), result.configs.get("plain")
    if procpar is None or plain is None:
        return []
    measurable = procpar.ok and plain.ok
    goals: list[tuple[str, float | None, str, float]] = []  # (what, value, unit, limit)
    if result.name in RATIO_TARGETS:
        limit = RATIO_TARGETS[result.name]
        goals.append((f"procpar <= {limit:.2f}x plain", result.ratio("procpar"), "x", limit))
    elif result.name == "one":
        goals.append(("procpar <= plain + 0.15 s", result.excess("procpar"), " s", 0.15))
    elif result.name == "memory":
        goals.append(
            ("procpar PSS <= 1.15x plain", result.ratio("procpar", "peak_pss_mib"), "x", 1.15)
        )
    found = []
    for what, value, unit, limit in goals:
        if value is None or not measurable:
            found.append(Target(what, None))
        else:
            shown = f"{value:+.2f}" if unit == " s" else f"{value:.2f}"
            found.append(Target(f"{what} (got {shown}{unit})", value <= limit))
    return found


def _cell(result: SuiteResult, name: str) -> str:
    config = result.configs.get(name)
    if config is None:
        return "-"
    if not config.ok:
        return "FAILED"
    if name == "plain":
        return f"{config.median_wall:.2f}"
    ratio = result.ratio(name)
    return f"{config.median_wall:.2f} ({ratio:.2f}x)"


def _measure_cell(result: SuiteResult, name: str, median: str, attr: str, digits: int) -> str:
    """A config's median of one measure (``median``: a ConfigResult property) and its median
    ratio to plain (``attr``: the RunResult field)."""
    config = result.configs.get(name)
    value = getattr(config, median) if config is not None else None
    if config is None or value is None:
        return "-"
    failed = "" if config.ok else " FAILED"
    if name == "plain":
        return f"{value:.{digits}f}{failed}"
    return f"{value:.{digits}f} ({result.ratio(name, attr):.2f}x){failed}"


def _us(result: SuiteResult, name: str, role: str) -> str:
    config = result.configs.get(name)
    value = config.median_per_test(role) if config is not None else None
    return "-" if value is None else f"{value:.0f}"


def _target_text(found: list[Target]) -> str:
    marks = {True: "met", False: "MISSED", None: "n/a"}
    return "; ".join(f"{target.text}: {marks[target.met]}" for target in found)


def report(results: list[SuiteResult], rounds: int) -> str:
    out = [f"median wall seconds over {rounds} interleaved rounds (median ratio to plain pytest)"]
    header = ["suite", "-n", *COLUMNS, "target"]
    rows = []
    for result in results:
        wall_targets = [t for t in targets(result) if "PSS" not in t.text]
        row = [result.name, str(result.workers), *(_cell(result, name) for name in COLUMNS)]
        rows.append([*row, _target_text(wall_targets)])
    out.append(format_table(header, rows))
    out.append("")
    out.append(
        "median CPU seconds, user + system, of pytest and the processes it waited for "
        "(median ratio to plain pytest)"
    )
    rows = [
        [result.name, str(result.workers)]
        + [_measure_cell(result, name, "median_cpu", "cpu_s", 2) for name in COLUMNS]
        for result in results
    ]
    out.append(format_table(["suite", "-n", *COLUMNS], rows))
    out.append("")
    out.append(
        "CPU meter: microseconds of CPU per test in the run loop (median of rounds): serial "
        "pytest's loop, workers' (summed), and the controller's replay"
    )
    header = ["suite", "-n", "plain", "xdist workers", "xdist controller"]
    header += ["procpar workers", "procpar controller"]
    rows = []
    for result in results:
        cells = [result.name, str(result.workers), _us(result, "plain", "serial")]
        for name in ("xdist", "procpar"):
            cells += [_us(result, name, "worker"), _us(result, name, "controller")]
        rows.append(cells)
    out.append(format_table(header, rows))
    memory = [
        result
        for result in results
        if any(c.median_pss is not None for c in result.configs.values())
    ]
    if memory:
        out.append("")
        out.append(
            "peak total PSS of the pytest process tree, MiB (median of rounds; ratio to plain)"
        )
        header = ["suite", "-n", "plain", "xdist", "procpar", "target"]
        rows = []
        for result in memory:
            pss_targets = [t for t in targets(result) if "PSS" in t.text]
            cells = [
                _measure_cell(result, name, "median_pss", "peak_pss_mib", 0)
                for name in ("plain", "xdist", "procpar")
            ]
            rows.append([result.name, str(result.workers), *cells, _target_text(pss_targets)])
        out.append(format_table(header, rows))
    failures = [
        (result.name, config.name, run.problem)
        for result in results
        for config in result.configs.values()
        for run in config.runs
        if not run.ok
    ]
    if failures:
        out.append("")
        out.append("FAILED runs:")
        for suite, config, problem in failures:
            out.append(f"  {suite} / {config}: {problem}")
    return "\n".join(out)


def machine_info(python: str) -> dict[str, object]:
    probe = (
        "import importlib.metadata as m, json, platform\n"
        "def v(name):\n"
        "    try:\n"
        "        return m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        return None\n"
        "import pytest_procpar\n"
        "print(json.dumps({'python': platform.python_version(), 'pytest': v('pytest'),"
        " 'pytest-xdist': v('pytest-xdist'), 'pytest-procpar': v('pytest-procpar'),"
        " 'procpar_path': pytest_procpar.__path__[0]}))\n"
    )
    versions = json.loads(subprocess.check_output([python, "-c", probe], text=True))
    versions["procpar_git"] = git_revision(Path(versions["procpar_path"]))
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python_executable": python,
        **versions,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suites", default=",".join(SUITES), help="comma-separated suite names")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per configuration")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--workdir", type=Path, help="generate suites here (default: a temp dir)")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs pytest")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.suites.split(",") if name.strip()]
    unknown = [name for name in names if name not in SUITES]
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)}; known: {', '.join(SUITES)}")
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")

    info = machine_info(args.python)
    print(
        f"machine: nproc {info['nproc']} (cpu_count {info['cpu_count']}), "
        f"python {info['python']}, pytest {info['pytest']}, "
        f"pytest-xdist {info['pytest-xdist']}, pytest-procpar {info['pytest-procpar']}"
    )
    print(f"         procpar from {info['procpar_path']} (git {info['procpar_git']})")
    print(f"         {info['platform']}, load average {info['loadavg']}")

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="procpar-bench-") as tmp:
        workdir = (args.workdir or Path(tmp)).resolve()
        print(f"workdir: {workdir}")
        results = []
        for name in names:
            root = workdir / "suites" / name
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            results.append(
                run_suite(args.python, SUITES[name], root, workdir / "cache", args.rounds)
            )
    elapsed = time.perf_counter() - started

    print()
    print(report(results, args.rounds))
    load = [round(x, 2) for x in os.getloadavg()]
    print(f"\ntotal benchmark time {elapsed:.0f} s; load average at the end {load}")

    if args.json:
        payload = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": info,
            "rounds": args.rounds,
            "elapsed_s": elapsed,
            "suites": [
                {
                    "name": result.name,
                    "description": result.description,
                    "workers": result.workers,
                    "targets": [asdict(t) for t in targets(result)],
                    "configs": {
                        name: {
                            "args": config.args,
                            "ok": config.ok,
                            "median_wall_s": config.median_wall,
                            "median_ratio_to_plain": result.ratio(name),
                            "median_peak_pss_mib": config.median_pss,
                            "median_pss_ratio_to_plain": (
                                result.ratio(name, "peak_pss_mib") if config.median_pss else None
                            ),
                            "runs": [asdict(run) for run in config.runs],
                        }
                        for name, config in result.configs.items()
                    },
                }
                for result in results
            ],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    failed = any(not config.ok for result in results for config in result.configs.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
