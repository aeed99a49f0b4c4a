#!/usr/bin/env python3
"""Time procpar's collection modes on a real suite, the second run with pytest's cache on.

``--procpar-collect=auto`` decides from what the last run measured, kept in pytest's cache, so
what users see is a second run: this script runs each mode twice in a row with one
``cache_dir`` (empty before the first run, which fills it) and times the second:

    controller  -p procpar -n 2 --procpar-collect=controller
    workers     -p procpar -n 2 --procpar-collect=workers
    auto        -p procpar -n 2 --procpar-collect=auto

The modes are interleaved over ``--rounds`` rounds, a fresh cache dir per mode and round. The
table gives each mode's median wall time of the second run, its ratio to ``controller``, and
the header line procpar printed about the collection (``procpar: ... collected in ...``) in
the last round; every run must have the same outcome counts (from JUnit XML).

The projects, pins, venvs, sdists and bytecode warm-up are real_suites.py's (one untimed
``--collect-only`` first); ``sympy`` is the collection-heavy one. ``--test-args`` replaces a
project's test paths, for a quick check on a smaller part of its suite.

usage: python benchmarks/collect_modes.py [--projects sympy] [--rounds 3] [--workdir DIR]
                                          [--test-args "sympy/logic"]
"""

from __future__ import annotations

import argparse
import collections
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from common import child_env, format_table, git_revision
from real_suites import (
    ABORTED,
    REPO,
    RUNNERS,
    WORKERS,
    Project,
    Run,
    chosen_projects,
    database_server,
    fetch_project,
    prepare_venvs,
    run_logged,
    warm_up,
)

MODES = ("controller", "workers", "auto")
HEADER = "procpar:"  # the header line about the collection starts so and says "collected in"


@dataclass(frozen=True)
class Pair:
    """A mode's two runs in a row with one cache dir: the first fills it, the second is timed."""

    first: Run
    second: Run


def header(run: Run) -> str:
    """The line procpar printed about where it collected, or ``-``."""
    for line in Path(run.log).read_text(errors="replace").splitlines():
        if line.startswith(HEADER) and "collected in" in line:
            return line.strip()
    return "-"


def counts(run: Run) -> str:
    """The run's outcome counts, such as ``passed 2041, skipped 12, xfailed 40``."""
    counted = collections.Counter(run.outcomes.values())
    return ", ".join(f"{outcome} {count}" for outcome, count in sorted(counted.items())) or "none"


def run_pair(
    python: Path,
    tree: Path,
    project: Project,
    mode: str,
    results: Path,
    round_: int,
    env: dict[str, str],
) -> Pair:
    stem = f"{project.key}-collect-{mode}-{round_}"
    cache_dir = results / f"{stem}.cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    options = [*RUNNERS["procpar"], f"--procpar-collect={mode}", "-o", f"cache_dir={cache_dir}"]
    options += project.parallel_args
    first, second = (
        run_logged(python, tree, project, mode, options, results / f"{stem}-{n}", env)
        for n in (1, 2)
    )
    for n, run in enumerate((first, second), 1):
        print(
            f"  round {round_} {mode:<10} run {n} {run.wall_s:7.2f} s  exit {run.returncode}  "
            f"[{counts(run)}]  {header(run)}",
            flush=True,
        )
    return Pair(first, second)


def measure(python: Path, workdir: Path, project: Project, rounds: int) -> dict[str, list[Pair]]:
    print(f"\n[{project.key} {project.version}] {shlex.join(project.test_args)}", flush=True)
    tree = fetch_project(python, workdir, project)
    results = workdir / "results"
    results.mkdir(parents=True, exist_ok=True)
    pairs: dict[str, list[Pair]] = {mode: [] for mode in MODES}
    with database_server(project) as server:
        env = child_env()
        if server:
            env["DATABASE_URL"] = server.url(project.name.replace("-", "_"))
        warm_up(python, tree, project, results, True, env)
        for round_ in range(1, rounds + 1):
            for mode in MODES:
                pairs[mode].append(run_pair(python, tree, project, mode, results, round_, env))
                if server:
                    server.drop(server.databases())  # the next pair starts on an empty server
    return pairs


def report(measured: dict[Project, dict[str, list[Pair]]], rounds: int) -> tuple[str, bool]:
    """The table, and whether every run of each project had the same outcome counts."""
    header_row = ["project", "mode", "2nd run s", "vs controller", "1st run s", "procpar header"]
    rows = []
    notes = []
    same = True
    for project, pairs in measured.items():
        medians = {mode: statistics.median(p.second.wall_s for p in pairs[mode]) for mode in MODES}
        for mode in MODES:
            first = statistics.median(p.first.wall_s for p in pairs[mode])
            rows.append(
                [
                    project.key,
                    mode,
                    f"{medians[mode]:.2f}",
                    f"{medians[mode] / medians['controller']:.2f}x",
                    f"{first:.2f}",
                    header(pairs[mode][-1].second),
                ]
            )
        runs = [run for mode in MODES for p in pairs[mode] for run in (p.first, p.second)]
        seen = collections.Counter(counts(run) for run in runs)
        aborted = [run for run in runs if run.returncode in ABORTED or not run.tests_ran]
        if len(seen) > 1 or aborted:
            same = False
            notes.append(f"\n{project.key}: NOT the same outcomes in every run:")
            notes.extend(f"  {n} run(s): {outcome}" for outcome, n in seen.most_common())
            notes.extend(f"  aborted (exit {run.returncode}): {run.log}" for run in aborted)
        else:
            notes.append(f"\n{project.key}: every run {counts(runs[0])}")
    when = time.strftime("%Y-%m-%d %H:%M")
    title = (
        f"procpar {git_revision(REPO)}, {when}: median wall s of the second of two runs in a "
        f"row with one cache_dir; -n {WORKERS}; {rounds} round(s); header of the last round's"
    )
    return "\n".join([title, format_table(header_row, rows), *notes]), same


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--projects", default="sympy", help="comma-separated real_suites names")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the modes")
    parser.add_argument(
        "--workdir", type=Path, help="venv, sdists, sources and logs (kept; default: a temp dir)"
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter to base the venv on")
    parser.add_argument(
        "--test-args",
        help='instead of the projects\' test paths (shell words), such as "sympy/logic"',
    )
    args = parser.parse_args(argv)
    projects = chosen_projects(parser, args.projects)
    if args.test_args is not None:
        test_args = tuple(shlex.split(args.test_args))
        projects = [replace(project, test_args=test_args) for project in projects]

    started = time.perf_counter()
    start_load = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="procpar-collect-") as tmp:
        workdir = (args.workdir or Path(tmp)).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        print(f"workdir: {workdir}")
        print(f"procpar: {REPO} (git {git_revision(REPO)})")
        pythons = prepare_venvs(workdir, args.python, projects)
        measured = {
            project: measure(pythons[project.venv], workdir, project, args.rounds)
            for project in projects
        }
        if args.workdir is None:
            print("(logs are deleted with the temp dir: pass --workdir to keep them)")
    elapsed = time.perf_counter() - started

    table, ok = report(measured, args.rounds)
    print()
    print(table)
    load = [round(x, 2) for x in os.getloadavg()]
    print(
        f"\ntotal time {elapsed:.0f} s; load average at the start {start_load}, at the end {load}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
