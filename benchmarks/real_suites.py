#!/usr/bin/env python3
"""Run the test suites of real projects serially, with procpar and with xdist; compare outcomes.

For each pinned project below, the script downloads its sdist from PyPI (``pip download
--no-deps --no-binary :all:``), unpacks it, and runs its tests five times in a virtual
environment it creates under the work dir (pinned pytest, pytest-xdist, the project's test
dependencies, the project itself from its sdist, and pytest-procpar from this repository):

    serial         -p no:procpar -p no:xdist
    procpar        -p procpar -n 2
    procpar-w      -p procpar -n 2 --procpar-collect=workers
    procpar-spawn  -p procpar -n 2 --procpar-start spawn
    xdist          -p no:procpar -n 2

each with ``-p no:cacheprovider -q -ra`` and a JUnit XML file, whose per-test outcomes are
compared with the serial run's. An untimed ``--collect-only`` run first writes the bytecode
caches (``PYTHONDONTWRITEBYTECODE`` is removed from the children's environment).

``--with-cacheprovider`` keeps pytest's cache plugin instead, giving every run its own empty
``cache_dir``: for comparing outcomes with a plugin version that cannot run without it.

Django REST framework's suite runs with pytest-django, twice: ``djangorestframework-sqlite``
(its default, in-memory SQLite) and ``djangorestframework-postgres``, for which the script
starts a PostgreSQL server of its own (pgserver.py: Debian's package, installed with apt-get if
missing; a temp dir and a loopback port; stopped and deleted at the end) and hands it to the
suite in ``DATABASE_URL``, which its tests/conftest.py reads. No file of the sdist is changed.
That conftest calls ``settings.configure()`` in ``pytest_configure``; pytest-django makes one
test database per xdist worker (``test_djangorestframework_gw0``, ...), and the report lists
the databases each run created and any it left behind (they are dropped before the next run).
The Django projects get a venv of their own (``venv-django``), so pytest-django does not load
into the other suites. Both are in the default list; leave ``djangorestframework-postgres`` out
of ``--projects`` where PostgreSQL is neither installed nor installable (the script checks that
before any run). Its 1664 tests take 16 s serially on SQLite and 36 s on PostgreSQL on an idle
2-CPU machine; the five runs of each took about 2.5 and 4 minutes with other work running.

``sympy`` is not in the default list (its five runs take many minutes): name it in
``--projects``. Five directories of its suite, 2281 tests, whose serial ``--collect-only``
took about a minute of CPU on a busy 2-CPU machine: benchmarks/collect_modes.py times
procpar's ``--procpar-collect`` modes on it.

usage: python benchmarks/real_suites.py [--projects attrs,toolz] [--workdir DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pgserver
from common import child_env, format_table, git_revision

REPO = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_S = 1800.0
WORKERS = 2
LIST_AT_MOST = 20  # differing tests listed per project and runner
ABORTED = (2, 3, 4)  # pytest's exit codes for interrupted, internal error, usage error
INTERNAL_ERROR_CASE = "pytest::internal"  # the test case junitxml writes for an INTERNALERROR

# Everything installed into the venvs, pinned (the projects under test are pinned below).
PINS = {
    "pytest": "9.2.0",
    "pytest-xdist": "3.8.0",
    "execnet": "2.1.2",
    "pluggy": "1.7.0",
    "iniconfig": "2.3.1",
    "packaging": "26.4",
    "pygments": "2.21.0",
    "hypothesis": "6.170.17",
    "sortedcontainers": "2.4.0",
    "cloudpickle": "3.1.3",
    "pympler": "1.1",
    "pretend": "1.0.9",
    "tomli-w": "1.2.0",
    "attrs": "26.1.0",
    "railroad-diagrams": "3.0.1",
    "jinja2": "3.1.6",
    "markupsafe": "3.0.4",
    # Django REST framework: its "test" dependency group (without pytest-cov) and its "optional"
    # one (with psycopg for PostgreSQL), which its CI installs; their dependencies.
    "django": "5.2.20",
    "asgiref": "3.13.0",
    "sqlparse": "0.6.1",
    "pytest-django": "4.14.0",
    "dj-database-url": "3.1.2",
    "psycopg": "3.3.9",
    "psycopg-binary": "3.3.9",
    "typing-extensions": "4.16.0",
    "django-filter": "26.2",
    "django-guardian": "3.5.2",
    "inflection": "0.5.1",
    "markdown": "3.11.4",
    "pyyaml": "6.0.4",
    "requests": "2.34.2",
    "certifi": "2026.10.19.post1",
    "charset-normalizer": "3.5.3",
    "idna": "3.21",
    "urllib3": "2.8.0",
    "uritemplate": "4.2.0",
    # SymPy: its one dependency (below 1.4, as it requires); its conftest requires hypothesis.
    "mpmath": "1.3.0",
}


@dataclass(frozen=True)
class Project:
    name: str  # PyPI name
    version: str
    test_args: tuple[str, ...]  # what to pass to pytest, relative to the unpacked sdist
    deps: tuple[str, ...] = ()  # test-only dependencies (pinned in PINS)
    parallel_args: tuple[str, ...] = ()  # for procpar and xdist alike, such as a --dist
    variant: str = ""  # tells apart runs of one project with other settings
    venv: str = "venv"  # the venv's dir in the work dir: the deps of one venv load into its runs
    postgres: bool = False  # give the suite a PostgreSQL server in DATABASE_URL
    opt_in: bool = False  # not in the default --projects: its runs take many minutes

    @property
    def key(self) -> str:
        """The name for --projects and the results: the PyPI name, variant and parallel args."""
        parts = [self.name, self.variant, *(arg.lstrip("-") for arg in self.parallel_args)]
        return "-".join(part for part in parts if part)


# pyparsing's own suite passes only in collection order: a one-test class turns packrat on for
# the class after it (Test04_WithPackrat's first test fails when run alone, serially too), and
# tests/test_examples.py changes the default whitespace for every later test until a
# test_unit.py class resets it. Without stored durations (this script keeps no cache) every
# runner's default hands it out in collection order; --dist loadfile runs the tiny examples
# right after test_examples.py (17 fail). It runs twice: with each runner's default, and with
# --dist load.
pyparsing = functools.partial(
    Project,
    "pyparsing",
    "3.3.3",
    ("tests", "examples/tiny/tests"),  # as its tox.ini runs it
    # Its "diagrams" extra, so that tests/test_diagram.py (which imports railroad) collects;
    # no matplotlib: test_matplotlib_cases.py skips without it.
    ("railroad-diagrams", "jinja2"),
)

# Run as its tox.ini runs it (its pyproject.toml adds --no-migrations), with both its test and
# its optional dependency groups. Its tests/conftest.py configures Django's settings in
# pytest_configure, with the database from DATABASE_URL if that is set.
drf = functools.partial(
    Project,
    "djangorestframework",
    "3.18.3",
    ("tests",),
    (
        *("django", "pytest-django", "dj-database-url", "psycopg", "psycopg-binary"),
        *("django-filter", "django-guardian", "inflection", "markdown", "pyyaml", "requests"),
        "uritemplate",
    ),
    venv="venv-django",
)

PROJECTS: dict[str, Project] = {
    project.key: project
    for project in (
        Project("attrs", "26.1.0", ("tests",), ("hypothesis", "cloudpickle", "pympler")),
        Project("packaging", "26.4", ("tests",), ("hypothesis", "pretend", "tomli-w")),
        Project("more-itertools", "11.2.1", ("tests",)),
        Project("toolz", "1.2.0", ("toolz",)),
        Project("pluggy", "1.7.0", ("testing",)),
        Project("iniconfig", "2.3.1", ("testing",)),
        Project("six", "1.17.0", ("test_six.py",)),
        pyparsing(),
        pyparsing(parallel_args=("--dist", "load")),
        drf(variant="sqlite"),
        drf(variant="postgres", postgres=True),
        # Collection-heavy: importing sympy and these test modules. Its own pyproject.toml adds
        # -m 'not slow and not tooslow' (16 of the 2297 tests are slow, none too slow).
        Project(
            "sympy",
            "1.14.0",
            (
                *("sympy/printing", "sympy/sets", "sympy/logic"),
                *("sympy/assumptions", "sympy/functions"),
            ),
            ("mpmath", "hypothesis"),
            opt_in=True,
        ),
    )
}

RUNNERS: dict[str, tuple[str, ...]] = {
    "serial": ("-p", "no:procpar", "-p", "no:xdist"),
    "procpar": ("-p", "procpar", "-n", str(WORKERS)),
    # the same, each worker importing and collecting its share of the files
    "procpar-w": ("-p", "procpar", "-n", str(WORKERS), "--procpar-collect=workers"),
    # spawned workers (fresh interpreters, as xdist's), collecting as auto decides
    "procpar-spawn": ("-p", "procpar", "-n", str(WORKERS), "--procpar-start", "spawn"),
    "xdist": ("-p", "no:procpar", "-n", str(WORKERS)),
}
COMPARED = ("procpar", "procpar-w", "procpar-spawn", "xdist")  # each compared with serial


# ---------------------------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------------------------


def check_call(cmd: list[str]) -> None:
    print("  $", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=child_env())


def make_venv(workdir: Path, base_python: str, projects: list[Project], name: str) -> Path:
    """The venv ``workdir / name`` with the pinned tools, procpar (editable, from this repo)
    and the test deps of ``projects``.

    A venv made earlier with the same pins and repo is reused; the test deps of projects it
    was not made for are added to it."""
    venv = workdir / name
    python = venv / "bin" / "python"
    marker = venv / "procpar-real-suites.json"
    constraints = workdir / "constraints.txt"
    pip = [str(python), "-m", "pip", "install", "-q", "-c", str(constraints)]
    deps = sorted({dep for project in projects for dep in project.deps})
    base = {"pins": PINS, "repo": str(REPO)}
    made = json.loads(marker.read_text()) if python.exists() and marker.exists() else {}
    if {key: made.get(key) for key in base} == base:
        print(f"reusing {venv}")
        have = set(made.get("deps", []))
        if missing := [dep for dep in deps if dep not in have]:
            check_call([*pip, *missing])
            marker.write_text(json.dumps({**base, "deps": sorted(have | set(missing))}))
        return python
    shutil.rmtree(venv, ignore_errors=True)
    print(f"creating {venv}", flush=True)
    check_call([base_python, "-m", "venv", str(venv)])
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in PINS.items()))
    check_call([*pip, "pytest", "pytest-xdist", *deps, "-e", str(REPO)])
    marker.write_text(json.dumps({**base, "deps": deps}))
    return python


def fetch_project(python: Path, workdir: Path, project: Project) -> Path:
    """Download the pinned sdist (once), unpack it afresh, install it; returns the source tree."""
    sdists = workdir / "sdists" / f"{project.name}-{project.version}"
    if not list(sdists.glob("*.tar.gz")):
        download = [str(python), "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
        check_call([*download, f"{project.name}=={project.version}", "-d", str(sdists)])
    found = list(sdists.glob("*.tar.gz"))
    if len(found) != 1:
        raise SystemExit(f"expected one sdist of {project.name} {project.version} in {sdists}")
    unpacked = workdir / "src"
    with tarfile.open(found[0]) as archive:
        top = archive.getnames()[0].split("/")[0]
        shutil.rmtree(unpacked / top, ignore_errors=True)
        if hasattr(tarfile, "data_filter"):
            archive.extractall(unpacked, filter="data")
        else:  # Python < 3.10.12 / 3.11.4
            archive.extractall(unpacked)
    check_call([str(python), "-m", "pip", "install", "-q", "--no-deps", str(found[0])])
    return unpacked / top


# ---------------------------------------------------------------------------------------------
# Runs and outcomes
# ---------------------------------------------------------------------------------------------


@dataclass
class Run:
    runner: str
    wall_s: float
    returncode: int
    summary: str
    outcomes: dict[str, str] = field(default_factory=dict)
    log: str = ""
    databases: list[str] = field(default_factory=list)  # PostgreSQL databases the run created
    left_behind: list[str] = field(default_factory=list)  # and those still there at its end
    error: str = ""  # the last INTERNALERROR line, if any

    @property
    def tests_ran(self) -> bool:
        return any(key != INTERNAL_ERROR_CASE for key in self.outcomes)


def junit_outcomes(path: Path) -> dict[str, str]:
    """Test id -> outcome (passed, failed, error, skipped, xfailed; joined by + if several)."""
    if not path.exists():
        return {}
    outcomes: dict[str, list[str]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        key = f"{case.get('classname', '')}::{case.get('name', '')}"
        found = []
        for child in case:
            if child.tag in ("failure", "error"):
                found.append("failed" if child.tag == "failure" else "error")
            elif child.tag == "skipped":
                found.append("xfailed" if child.get("type") == "pytest.xfail" else "skipped")
        outcomes.setdefault(key, []).extend(found or ["passed"])
    return {key: "+".join(sorted(values)) for key, values in outcomes.items()}


def cache_args(results: Path, stem: str, with_cache: bool) -> list[str]:
    """``-p no:cacheprovider``, or a fresh empty cache dir for this run."""
    if not with_cache:
        return ["-p", "no:cacheprovider"]
    cache_dir = results / f"{stem}.cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    return ["-o", f"cache_dir={cache_dir}"]


def run_pytest(
    python: Path,
    tree: Path,
    project: Project,
    runner: str,
    results: Path,
    with_cache: bool,
    env: dict[str, str],
) -> Run:
    stem = f"{project.key}-{runner}"
    options = [*RUNNERS[runner], *cache_args(results, stem, with_cache)]
    if runner != "serial":
        options += project.parallel_args
    return run_logged(python, tree, project, runner, options, results / stem, env)


def run_logged(
    python: Path,
    tree: Path,
    project: Project,
    runner: str,
    options: list[str],
    stem: Path,
    env: dict[str, str],
) -> Run:
    """One timed run of the project's tests with ``options``; its JUnit XML and its output go
    to ``stem`` + ``.xml`` and ``.log``."""
    xml = stem.parent / f"{stem.name}.xml"
    log = stem.parent / f"{stem.name}.log"
    xml.unlink(missing_ok=True)
    cmd = [str(python), "-m", "pytest", *options, "-q", "-ra"]
    cmd += [f"--junitxml={xml}", *project.test_args]
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
    wall = time.perf_counter() - start
    text = output.decode(errors="replace")
    log.write_text(f"$ (cd {tree} && {' '.join(cmd)})\n{text}")
    lines = [line.strip("= ") for line in text.splitlines() if line.strip()]
    summary = lines[-1] if lines else ""
    prefix = "INTERNALERROR>"
    errors = [line.removeprefix(prefix).strip() for line in lines if line.startswith(prefix)]
    run = Run(runner, wall, proc.returncode, summary, junit_outcomes(xml), str(log))
    run.error = errors[-1] if errors else ""
    return run


@dataclass
class ProjectResult:
    name: str
    version: str
    runs: dict[str, Run]
    differences: dict[str, list[tuple[str, str, str]]]  # runner -> (test, serial, runner's)


def compare(serial: dict[str, str], other: dict[str, str]) -> list[tuple[str, str, str]]:
    return [
        (key, serial.get(key, "missing"), other.get(key, "missing"))
        for key in sorted(set(serial) | set(other))
        if serial.get(key) != other.get(key)
    ]


def database_server(
    project: Project,
) -> contextlib.AbstractContextManager[pgserver.PgServer | None]:
    """The PostgreSQL server the project's runs use, if it needs one."""
    return pgserver.running() if project.postgres else contextlib.nullcontext()


def warm_up(
    python: Path,
    tree: Path,
    project: Project,
    results: Path,
    with_cache: bool,
    env: dict[str, str],
) -> None:
    """Untimed: compile (and assertion-rewrite) everything once, so no timed run pays for it."""
    warmup = cache_args(results, f"{project.name}-warmup", with_cache)
    pytest = [str(python), "-m", "pytest", *RUNNERS["serial"], *warmup]
    subprocess.run(
        [*pytest, "-q", "--collect-only", *project.test_args],
        cwd=tree,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )


def chosen_projects(parser: argparse.ArgumentParser, names_text: str) -> list[Project]:
    """The projects ``--projects`` names, in its order; an unknown name is a usage error."""
    names = [name.strip() for name in names_text.split(",") if name.strip()]
    unknown = [name for name in names if name not in PROJECTS]
    if unknown:
        parser.error(f"unknown project(s) {', '.join(unknown)}; known: {', '.join(PROJECTS)}")
    return [PROJECTS[name] for name in names]


def prepare_venvs(workdir: Path, base_python: str, projects: list[Project]) -> dict[str, Path]:
    """The venv of each of ``projects``' venv names (made once each), by name; a PostgreSQL
    server's binaries first, where a project needs one (they may need installing)."""
    if any(project.postgres for project in projects):
        pgserver.server_bindir()
    return {
        venv: make_venv(workdir, base_python, [p for p in projects if p.venv == venv], venv)
        for venv in dict.fromkeys(project.venv for project in projects)
    }


def run_project(python: Path, workdir: Path, project: Project, with_cache: bool) -> ProjectResult:
    print(f"\n[{project.key} {project.version}]", flush=True)
    tree = fetch_project(python, workdir, project)
    results = workdir / "results"
    results.mkdir(parents=True, exist_ok=True)
    with database_server(project) as server:
        env = child_env()
        if server:
            env["DATABASE_URL"] = server.url(project.name.replace("-", "_"))
        warm_up(python, tree, project, results, with_cache, env)
        runs = {}
        for runner in RUNNERS:
            if server:
                server.created()  # from here on
            run = run_pytest(python, tree, project, runner, results, with_cache, env)
            if server:
                run.databases = server.created()
                run.left_behind = server.databases()
                server.drop(run.left_behind)  # the next run starts on an empty server
            runs[runner] = run
            made, left = ", ".join(run.databases) or "-", ", ".join(run.left_behind) or "none"
            dbs = f"  databases: {made}; left: {left}" if server else ""
            error = f"  {run.error}" if run.error else ""
            print(
                f"  {runner:<8} {run.wall_s:7.2f} s  exit {run.returncode}  "
                f"{len(run.outcomes)} tests  [{run.summary}]{dbs}{error}",
                flush=True,
            )
    serial = runs["serial"].outcomes
    differences = {runner: compare(serial, runs[runner].outcomes) for runner in COMPARED}
    return ProjectResult(project.key, project.version, runs, differences)


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def _wall_cell(run: Run, serial: Run) -> str:
    if serial.tests_ran and (not run.tests_ran or run.returncode in ABORTED):
        return f"FAILED ({run.wall_s:.2f})"
    return f"{run.wall_s:.2f} ({run.wall_s / serial.wall_s:.2f}x)"


def report(results: list[ProjectResult]) -> str:
    header = ["project", "version", "tests", "serial s", *(f"{name} s" for name in COMPARED)]
    header += ["exit " + "/".join(("serial", *COMPARED)), *(f"diff {name}" for name in COMPARED)]
    rows = []
    for result in results:
        serial = result.runs["serial"]
        others = [result.runs[name] for name in COMPARED]
        rows.append(
            [
                result.name,
                result.version,
                str(len(serial.outcomes)),
                f"{serial.wall_s:.2f}",
                *(_wall_cell(run, serial) for run in others),
                "/".join(str(run.returncode) for run in (serial, *others)),
                *(str(len(result.differences[name])) for name in COMPARED),
            ]
        )
    out = [
        f"per-test outcomes vs serial pytest; -n {WORKERS}; "
        "diff = tests whose outcome differs from the serial run's",
        format_table(header, rows),
    ]
    for result in results:
        if not any(run.databases or run.left_behind for run in result.runs.values()):
            continue
        out.append(f"\n{result.name}: PostgreSQL databases each run created (left behind):")
        for name, run in result.runs.items():
            left = ", ".join(run.left_behind) or "none"
            out.append(f"  {name:<13} {', '.join(run.databases) or '-'} ({left})")
    for runner in COMPARED:
        if not any(r.differences[runner] for r in results):
            continue
        out.append(f"\noutcome differences, {runner} vs serial (test: serial -> {runner}):")
        for r in results:
            diffs = r.differences[runner]
            run = r.runs[runner]
            if diffs and not run.tests_ran:
                out.append(
                    f"  {r.name}: all {len(r.runs['serial'].outcomes)} tests: "
                    f"no per-test results from {runner} "
                    f"(exit {run.returncode}: {run.error or run.summary}); log {run.log}"
                )
                continue
            out.extend(f"  {r.name}: {test}: {a} -> {b}" for test, a, b in diffs[:LIST_AT_MOST])
            if len(diffs) > LIST_AT_MOST:
                more = len(diffs) - LIST_AT_MOST
                out.append(f"  {r.name}: ... and {more} more (all in --json output)")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = ",".join(key for key, project in PROJECTS.items() if not project.opt_in)
    parser.add_argument("--projects", default=default, help="comma-separated names")
    parser.add_argument(
        "--workdir", type=Path, help="venv, sdists, sources and logs (kept; default: a temp dir)"
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter to base the venv on")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument(
        "--with-cacheprovider",
        action="store_true",
        help="keep pytest's cacheprovider (a fresh cache dir per run) instead of disabling it",
    )
    args = parser.parse_args(argv)
    projects = chosen_projects(parser, args.projects)

    started = time.perf_counter()
    start_load = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="procpar-real-") as tmp:
        workdir = (args.workdir or Path(tmp)).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        print(f"workdir: {workdir}")
        print(f"procpar: {REPO} (git {git_revision(REPO)})")
        cache = "a fresh cache_dir each" if args.with_cacheprovider else "-p no:cacheprovider"
        print(f"runs: {cache}")
        pythons = prepare_venvs(workdir, args.python, projects)
        results = [
            run_project(pythons[project.venv], workdir, project, args.with_cacheprovider)
            for project in projects
        ]
        if args.workdir is None:
            print("(logs are deleted with the temp dir: pass --workdir to keep them)")
    elapsed = time.perf_counter() - started

    print()
    print(report(results))
    load = [round(x, 2) for x in os.getloadavg()]
    print(
        f"\ntotal time {elapsed:.0f} s; load average at the start {start_load}, at the end {load}"
    )
    if args.json:
        payload = [
            {
                "project": r.name,
                "version": r.version,
                "runs": {name: asdict(run) for name, run in r.runs.items()},
                "differences": r.differences,
            }
            for r in results
        ]
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    ours = [name for name in COMPARED if name.startswith("procpar")]
    return 1 if any(r.differences[name] for r in results for name in ours) else 0


if __name__ == "__main__":
    sys.exit(main())
