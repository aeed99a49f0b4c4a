"""Command-line and ini options, and turning their values into one validated :class:`Settings`.

Every value a user can give is parsed by one function (:mod:`pytest_procpar.option_values`, or
the module of the feature it sets), whether it comes from the command line (argparse calls
it, so a bad value is a pytest usage error naming the option) or from the ini file
(:func:`resolve` calls it and raises :class:`pytest.UsageError`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

import pytest

from pytest_procpar import (
    pytest_internals,
    resources,
    shard,
    worker_limits,
    xdist_compat,
)
from pytest_procpar.cpus import available_cpus
from pytest_procpar.option_values import (
    NumProcesses,
    default_start_method,
    parse_collect_mode,
    parse_dist,
    parse_live,
    parse_max_tests,
    parse_maxprocesses,
    parse_numprocesses,
    parse_restarts,
    parse_seconds,
    parse_shard_mode,
    parse_start_method,
    parse_tx,
    whole_number,
)
from pytest_procpar.scheduler import DEFAULT_POLICY, POLICIES, SERIAL_POLICY

KEEP_RUN_RECORDS = 20  # the default of ini procpar_run_records
SLOW_S = 60.0  # the default of --procpar-slow
AUTO_ENV_VARS = ("PYTEST_PROCPAR_AUTO_NUM_WORKERS", "PYTEST_XDIST_AUTO_NUM_WORKERS")

# Options that make no sense on workers: pytest runs them serially, as if -n were not given.
SERIAL_ONLY_OPTIONS = {
    "usepdb": "--pdb runs serially",
    "trace": "--trace runs serially",
    "setuponly": "--setup-only runs serially",
    "setupplan": "--setup-plan runs serially",
    "setupshow": "--setup-show runs serially",
    "collectonly": "--collect-only runs no tests",
    "showfixtures": "--fixtures runs no tests",
    "show_fixtures_per_test": "--fixtures-per-test runs no tests",
    "markers": "--markers runs no tests",
}


def register(parser: pytest.Parser, *, with_xdist_names: bool) -> None:
    """Add procpar's options; ``-n`` and ``--maxprocesses`` only when xdist does not own them."""
    group = parser.getgroup("procpar", "parallel test execution (procpar)")
    if with_xdist_names:
        # pytest reserves lowercase short options for itself; -n is xdist's established name.
        pytest_internals.add_option(
            group,
            "-n",
            "--numprocesses",
            dest="numprocesses",
            metavar="N",
            type=parse_numprocesses,
            default=None,
            help="Run tests on N workers: a number, 'auto' (the CPUs this process may use, "
            "honouring affinity and cgroup quotas), 'logical' (all logical CPUs) "
            "or 0 (plain serial pytest). Ini: procpar_numprocesses.",
        )
        group.addoption(
            "--maxprocesses",
            dest="maxprocesses",
            metavar="N",
            type=parse_maxprocesses,
            default=None,
            help="Never start more than N workers. Ini: procpar_maxprocesses.",
        )
        group.addoption(
            "--dist",
            dest="procpar_dist",  # config.option.dist is set to xdist's meaning, see plugin.py
            metavar="POLICY",
            type=parse_dist,
            default=None,
            help=f"How tests are shared out: {', '.join(POLICIES)} (default {DEFAULT_POLICY}: "
            "longest first by the durations of earlier runs, keeping tests that share a "
            "module or class fixture together), or no (serial). Ini: procpar_dist.",
        )
    group.addoption(
        "--procpar-start",
        dest="procpar_start",
        metavar="METHOD",
        type=parse_start_method,
        default=None,
        help="How workers are started: fork (default on Linux: workers inherit the "
        "collected tests), forkserver or spawn (workers collect again). Ini: procpar_start.",
    )
    if with_xdist_names:
        group.addoption(
            "--max-worker-restart",
            dest="maxworkerrestart",
            metavar="N",
            type=parse_restarts,
            default=None,
            help="Replace at most N crashed workers (default: 4 per worker); the tests "
            "left after that are reported as not run. Ini: procpar_max_worker_restart.",
        )
    if with_xdist_names:
        group.addoption(
            "--tx",
            dest="tx",
            metavar="SPEC",
            action="append",
            type=parse_tx,
            default=[],
            help="Also run workers through this execnet gateway: popen (another local "
            "interpreter, e.g. popen//python=python3.12), ssh=USER@HOST or socket=HOST:PORT; "
            "N*SPEC for N of them. Repeatable; the code must be present there.",
        )
    group.addoption(
        "--procpar-collect",
        dest="procpar_collect",
        metavar="WHERE",
        type=parse_collect_mode,
        default=None,
        help="Where test modules are imported and collected: controller (once, before the "
        "workers start), workers (each its share of the files, in parallel) or auto (default: "
        "workers when that is safe and the last collection took 0.5s or more, or the workers "
        "are spawned). "
        "Ini: procpar_collect.",
    )
    group.addoption(
        "--procpar-chdir",
        dest="procpar_chdir",
        metavar="DIR",
        default=None,
        help="Where remote --tx workers find the rootdir (default: the same path as here).",
    )
    group.addoption(
        "--procpar-timeout",
        dest="procpar_timeout",
        metavar="SECONDS",
        type=parse_seconds,
        default=None,
        help="Fail a test that runs longer than SECONDS (its stack is shown), kill its worker "
        "and go on with a new one; 0 means no limit. Per test: "
        "@pytest.mark.procpar_timeout(SECONDS). Ini: procpar_timeout.",
    )
    group.addoption(
        "--shard",
        dest="procpar_shard",
        metavar="K/N",
        type=shard.parse_shard,
        default=None,
        help="Run only part K of N of the collected tests (for splitting a suite across CI "
        "jobs); 'auto' reads K and N from the CI's environment. Combines with -n.",
    )
    group.addoption(
        "--shard-mode",
        dest="procpar_shard_mode",
        type=parse_shard_mode,
        default=None,
        help="How --shard splits: duration (default with stored durations: equal expected "
        "time), hash (stable as tests are added) or slice (contiguous).",
    )
    group.addoption(
        "--procpar-durations",
        dest="procpar_durations",
        metavar="PATH",
        default=None,
        help="Read and update test durations in this JSON file (pytest-split's format) "
        "instead of pytest's cache, e.g. to cache or commit it in CI.",
    )
    group.addoption(
        "--procpar-retries",
        dest="procpar_retries",
        metavar="N",
        type=parse_restarts,
        default=None,
        help="Run a failed or crashed test again, up to N times, on another worker when there "
        "is one; one that passes on a retry is FLAKY. Per test: "
        "@pytest.mark.procpar_flaky(retries=N). Ini: procpar_retries.",
    )
    group.addoption(
        "--procpar-flaky-fail",
        dest="procpar_flaky_fail",
        action="store_true",
        default=None,
        help="A flaky test fails the run (exit code 1). Ini: procpar_flaky_fail.",
    )
    group.addoption(
        "--procpar-threads",
        dest="procpar_threads",
        metavar="N",
        type=worker_limits.parse_threads,
        default=None,
        help="Threads each worker's OpenMP and BLAS pools get (OMP_NUM_THREADS, "
        "OPENBLAS_NUM_THREADS, MKL_NUM_THREADS, NUMEXPR_NUM_THREADS, VECLIB_MAXIMUM_THREADS): "
        "auto (default: the usable CPUs divided by the local workers), off, or N. Variables "
        "already set are kept. Ini: procpar_threads.",
    )
    group.addoption(
        "--max-worker-rss",
        dest="procpar_max_worker_rss",
        metavar="SIZE",
        type=worker_limits.parse_size,
        default=None,
        help="Replace a worker whose own memory (what it does not share with the controller) "
        "is over SIZE (512M, 2G) after a test; no test is lost. Ini: procpar_max_worker_rss.",
    )
    group.addoption(
        "--max-tests-per-worker",
        dest="procpar_max_tests_per_worker",
        metavar="N",
        type=parse_max_tests,
        default=None,
        help="Replace a worker once it has run N tests. Ini: procpar_max_tests_per_worker.",
    )
    group.addoption(
        "--procpar-report",
        dest="procpar_report",
        action="store_true",
        default=False,
        help="Print a per-worker table of items, busy and idle time after a parallel run "
        "(also shown with -v).",
    )
    parser.addini("procpar_numprocesses", "Default for -n/--numprocesses.", default=None)
    parser.addini("procpar_dist", "Default for --dist.", default=None)
    parser.addini("procpar_timeout", "Default for --procpar-timeout.", default=None)
    parser.addini("procpar_max_worker_restart", "Default for --max-worker-restart.", default=None)
    parser.addini("procpar_maxprocesses", "Default for --maxprocesses.", default=None)
    parser.addini("procpar_start", "Default for --procpar-start.", default=None)
    parser.addini("procpar_collect", "Default for --procpar-collect.", default=None)
    parser.addini("procpar_threads", "Default for --procpar-threads.", default=None)
    parser.addini("procpar_retries", "Default for --procpar-retries.", default=None)
    parser.addini(
        "procpar_flaky_fail", "Default for --procpar-flaky-fail.", type="bool", default=False
    )
    parser.addini(
        "procpar_resources",
        "Resources tests hold with @pytest.mark.procpar_resource(name), and how many tests may "
        "hold each at once: name:limit pairs, e.g. 'db:2 gpu:1' (undeclared names: 1).",
        default=None,
    )
    parser.addini("procpar_max_worker_rss", "Default for --max-worker-rss.", default=None)
    parser.addini(
        "procpar_max_tests_per_worker", "Default for --max-tests-per-worker.", default=None
    )
    _add_record_options(group, parser)
    _add_live_options(group, parser)


def _add_live_options(group: pytest.OptionGroup, parser: pytest.Parser) -> None:
    """Seeing what runs now (see live)."""
    group.addoption(
        "--procpar-live",
        dest="procpar_live",
        metavar="WHEN",
        type=parse_live,
        default=None,
        help="Show each worker's test, and for how long it has run, on a line under the "
        "progress: auto (default: on a terminal, not in CI, not with -qq) or off. "
        "Ini: procpar_live.",
    )
    group.addoption(
        "--procpar-slow",
        dest="procpar_slow",
        metavar="SECONDS",
        type=parse_seconds,
        default=None,
        help=f"Print a SLOW line when a test has run SECONDS, and at each multiple (default "
        f"{SLOW_S:g}; 0: never). Ini: procpar_slow.",
    )
    parser.addini("procpar_live", "Default for --procpar-live.", default=None)
    parser.addini("procpar_slow", "Default for --procpar-slow.", default=None)


def _add_record_options(group: pytest.OptionGroup, parser: pytest.Parser) -> None:
    """Runs that start from a run record (see record_use and polluters)."""
    group.addoption(
        "--procpar-replay",
        dest="procpar_replay",
        nargs="?",
        const="last",
        default=None,
        metavar="RUN",
        help="Run what one worker of a recorded run (default: the last) ran, in its order, "
        "in one process.",
    )
    group.addoption(
        "--procpar-replay-worker",
        dest="procpar_replay_worker",
        default=None,
        metavar="gwN",
        help="With --procpar-replay: the worker (default: the one whose test failed first).",
    )
    group.addoption(
        "--procpar-rerun",
        dest="procpar_rerun",
        nargs="?",
        const="last",
        default=None,
        metavar="RUN",
        help="Run the tests of a recorded run (default: the last) that did not pass, and "
        "tests that did not exist then.",
    )
    group.addoption(
        "--procpar-bisect",
        dest="procpar_bisect",
        default=None,
        metavar="NODEID",
        help="Find the tests that make NODEID fail when they run before it on its worker, "
        "from the last recorded run in which it failed.",
    )
    group.addoption(
        "--procpar-runs",
        dest="procpar_runs",
        action="store_true",
        default=False,
        help="List the run records and exit.",
    )
    parser.addini(
        "procpar_run_records",
        f"How many run records to keep in pytest's cache (0: none). Default {KEEP_RUN_RECORDS}.",
        default=None,
    )


T = TypeVar("T")  # what an option's parser gives


@dataclass(frozen=True)
class Settings:
    """What the user asked for, resolved against this machine."""

    workers: int  # local and remote; 0 means: run serially, procpar stays out of the way
    start_method: str
    dist: str = DEFAULT_POLICY
    timeout: float = 0.0  # seconds a test may run, 0: no limit
    max_restarts: int | None = None  # None: 4 per worker
    serial_reason: str | None = None  # set when -n was asked for but an option needs serial
    shard: shard.ShardSpec | None = None
    remote: tuple[str, ...] = ()  # one execnet gateway spec per remote worker (--tx)
    remote_rootdir: str | None = None  # --procpar-chdir
    collect: str = "auto"  # --procpar-collect: where test modules are collected
    thread_env: dict[str, str] = field(default_factory=dict)  # for the workers' thread pools
    recycling: worker_limits.Recycling = field(default_factory=worker_limits.Recycling)
    resources: dict[str, int] = field(default_factory=dict)  # name: how many may hold it at once
    retries: int = 0  # times a failed test runs again (see retries.py)
    flaky_fail: bool = False  # a flaky test fails the run
    run_records: int = KEEP_RUN_RECORDS  # how many run records to keep (0: none)
    live: str = "auto"  # --procpar-live: the status line on a terminal, or off
    slow: float = SLOW_S  # seconds after which (and each multiple) a test is SLOW, 0: never


def _from_ini(config: pytest.Config, name: str, parse: Callable[[str], T]) -> T | None:
    raw = config.getini(name)
    if raw in (None, ""):
        return None
    try:
        return parse(raw)
    except argparse.ArgumentTypeError as exc:
        raise pytest.UsageError(f"ini option {name}: {exc}") from None


def _option(config: pytest.Config, dest: str, ini: str, parse: Callable[[str], T]) -> T | None:
    """The command line's value (already parsed by ``parse``), else the ini key's."""
    value: T | None = getattr(config.option, dest, None)
    return value if value is not None else _from_ini(config, ini, parse)


def _retries(config: pytest.Config) -> int:
    """``--procpar-retries``, unless pytest-rerunfailures retries (``--reruns``): it then has
    the last word, as it runs the test again in the same worker."""
    if getattr(config.option, "reruns", 0):
        return 0
    return _option(config, "procpar_retries", "procpar_retries", parse_restarts) or 0


RECORD_OPTIONS = (
    "procpar_replay",
    "procpar_replay_worker",
    "procpar_rerun",
    "procpar_bisect",
    "procpar_runs",
)


def starts_from_record(config: pytest.Config) -> bool:
    """Whether an option asks for a run record (see record_use)."""
    return any(getattr(config.option, dest, None) for dest in RECORD_OPTIONS)


def _slow(config: pytest.Config) -> float:
    slow = _option(config, "procpar_slow", "procpar_slow", parse_seconds)
    return SLOW_S if slow is None else slow  # (0 is off, not the default)


def _run_records(config: pytest.Config) -> int:
    kept = _from_ini(config, "procpar_run_records", lambda raw: whole_number(raw, 0))
    return KEEP_RUN_RECORDS if kept is None else kept


def auto_workers(config: pytest.Config) -> int:
    """Worker count for ``-n auto``: an env override, a plugin's answer, else our CPUs."""
    for name in AUTO_ENV_VARS:
        raw = os.environ.get(name)
        if raw:
            try:
                return whole_number(raw, 1)
            except argparse.ArgumentTypeError as exc:
                raise pytest.UsageError(f"{name}: {exc}") from None
    from_plugin = config.hook.pytest_procpar_auto_num_workers(config=config)
    return int(from_plugin) if from_plugin else available_cpus()


def count_workers(config: pytest.Config, requested: NumProcesses) -> int:
    if requested == "auto":
        return auto_workers(config)
    if requested == "logical":
        return os.cpu_count() or 1
    assert isinstance(requested, int)
    return requested


def resolve_shard(config: pytest.Config) -> shard.ShardSpec | None:
    requested: shard.ShardSpec | str | None = getattr(config.option, "procpar_shard", None)
    if not isinstance(requested, str):
        return requested
    try:
        found = shard.from_environment(os.environ)
    except shard.BadShardVariable as exc:
        raise pytest.UsageError(f"--shard auto: {exc}") from None
    if found is None:
        raise pytest.UsageError(f"--shard auto: none of these is set: {shard.variable_names()}")
    return found


def resolve(config: pytest.Config) -> Settings:
    """Validate every procpar option and decide how many workers this run gets."""
    requested = _option(config, "numprocesses", "procpar_numprocesses", parse_numprocesses)
    maximum = _option(config, "maxprocesses", "procpar_maxprocesses", parse_maxprocesses)
    start = _option(config, "procpar_start", "procpar_start", parse_start_method)
    dist = str(_option(config, "procpar_dist", "procpar_dist", parse_dist) or DEFAULT_POLICY)
    timeout = _option(config, "procpar_timeout", "procpar_timeout", parse_seconds) or 0.0
    restarts = _option(config, "maxworkerrestart", "procpar_max_worker_restart", parse_restarts)
    start_method = str(start) if start is not None else default_start_method()
    collect = _option(config, "procpar_collect", "procpar_collect", parse_collect_mode)
    threads = _option(config, "procpar_threads", "procpar_threads", worker_limits.parse_threads)
    recycling = worker_limits.Recycling(
        _option(
            config, "procpar_max_worker_rss", "procpar_max_worker_rss", worker_limits.parse_size
        ),
        _option(
            config, "procpar_max_tests_per_worker", "procpar_max_tests_per_worker", parse_max_tests
        ),
    )
    base = Settings(
        workers=0,
        start_method=start_method,
        dist=dist,
        timeout=timeout,
        max_restarts=restarts,
        shard=resolve_shard(config),
        remote=tuple(spec for specs in getattr(config.option, "tx", None) or [] for spec in specs),
        remote_rootdir=config.option.procpar_chdir,
        collect=collect or "auto",
        recycling=recycling,
        resources=resources.parse_limits(config.getini("procpar_resources") or ""),
        retries=_retries(config),
        flaky_fail=bool(config.option.procpar_flaky_fail or config.getini("procpar_flaky_fail")),
        run_records=_run_records(config),
        live=_option(config, "procpar_live", "procpar_live", parse_live) or "auto",
        slow=_slow(config),
    )
    if requested is None and not base.remote:
        return base
    workers = count_workers(config, requested) if requested is not None else 0
    if isinstance(maximum, int):
        workers = min(workers, maximum)
    workers += len(base.remote)
    if workers and dist == SERIAL_POLICY:
        return replace(base, serial_reason="--dist no runs serially")
    for dest, reason in {**SERIAL_ONLY_OPTIONS, **xdist_compat.PLUGIN_SERIAL_OPTIONS}.items():
        if workers and getattr(config.option, dest, False):
            return replace(base, serial_reason=reason)
    local = workers - len(base.remote)
    thread_env = worker_limits.thread_variables(
        threads or "auto", local, available_cpus(), os.environ
    )
    return replace(base, workers=workers, thread_env=thread_env)
