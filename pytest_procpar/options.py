"""Command-line options and ini keys: what procpar lets a user say, and how each is spelled.

Every value a user can give is parsed by one function (:mod:`pytest_procpar.option_values`, or
the module of the feature it sets), whether it comes from the command line (argparse calls
it, so a bad value is a pytest usage error naming the option) or from the ini file
(:func:`pytest_procpar.settings.resolve` calls it and raises :class:`pytest.UsageError`).
"""

from __future__ import annotations

import pytest

from pytest_procpar import (
    pytest_internals,
    shard,
    worker_limits,
)
from pytest_procpar.option_values import (
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
)
from pytest_procpar.scheduler import DEFAULT_POLICY, POLICIES
from pytest_procpar.settings import KEEP_RUN_RECORDS, SLOW_S


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
        help="How workers are started: fork (default on Linux: forked from a template made "
        "before the conftests load), forkserver or spawn (fresh interpreters); each worker "
        "configures pytest itself, as a worker. Ini: procpar_start.",
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
        "workers start, and again in every worker), workers (each its share of the files, in "
        "parallel) or auto (default: workers when that is safe and expected to end "
        "collection sooner). Ini: procpar_collect.",
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
