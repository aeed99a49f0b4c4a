"""Command-line and ini options, and turning their values into one validated :class:`Settings`.

Every value a user can give is parsed by one function here, whether it comes from the command
line (argparse calls it, so a bad value is a pytest usage error naming the option) or from the
ini file (:func:`resolve` calls it and raises :class:`pytest.UsageError`).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import pytest

from pytest_procpar import collect_mode, pytest_internals, remote, shard, xdist_compat
from pytest_procpar.cpus import available_cpus
from pytest_procpar.scheduler import DEFAULT_POLICY, POLICIES, SERIAL_POLICY

START_METHODS = ("fork", "forkserver", "spawn")
AUTO_ENV_VARS = ("PYTEST_PROCPAR_AUTO_NUM_WORKERS", "PYTEST_XDIST_AUTO_NUM_WORKERS")
NumProcesses = int | str  # a count, or "auto" / "logical"

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


def parse_numprocesses(value: str) -> NumProcesses:
    """``-n`` value: ``auto``, ``logical`` or a whole number >= 0."""
    text = str(value).strip()
    if text in ("auto", "logical"):
        return text
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(
            f"expected 'auto', 'logical' or a whole number >= 0, got {value!r}"
        )
    return count


def _whole_number(value: str, minimum: int) -> int:
    try:
        count = int(str(value).strip())
    except ValueError:
        count = minimum - 1
    if count < minimum:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {value!r}")
    return count


def parse_maxprocesses(value: str) -> int:
    """``--maxprocesses`` value: a whole number >= 1."""
    return _whole_number(value, 1)


def _one_of(value: str, choices: Sequence[str]) -> str:
    text = str(value).strip()
    if text not in choices:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)}, got {value!r}")
    return text


def parse_start_method(value: str) -> str:
    """``--procpar-start`` value: one of :data:`START_METHODS` this platform offers."""
    text = _one_of(value, START_METHODS)
    if text not in multiprocessing.get_all_start_methods():
        raise argparse.ArgumentTypeError(
            f"start method {text!r} is not available on {sys.platform}"
        )
    return text


def parse_seconds(value: str) -> float:
    """``--procpar-timeout`` value: seconds >= 0 (0: no limit)."""
    try:
        seconds = float(str(value).strip())
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {value!r}")
    return seconds


def parse_collect_mode(value: str) -> str:
    """``--procpar-collect`` value: one of :data:`collect_mode.MODES`."""
    return _one_of(value, collect_mode.MODES)


def parse_restarts(value: str) -> int:
    """``--max-worker-restart`` value: a whole number >= 0."""
    return _whole_number(value, 0)


def parse_dist(value: str) -> str:
    """``--dist`` value: a scheduling policy name, or ``no`` for a serial run."""
    return _one_of(value, [*POLICIES, SERIAL_POLICY])


def parse_tx(value: str) -> list[str]:
    """``--tx`` value: an execnet gateway spec, ``N*SPEC`` for N of them."""
    import execnet

    text = str(value).strip()
    count_text, star, spec = text.partition("*")
    if not star:
        count_text, spec = "1", text
    try:
        count = _whole_number(count_text, 1)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected SPEC or N*SPEC with N >= 1, got {value!r}"
        ) from None
    try:
        xspec = execnet.XSpec(spec)
    except Exception as exc:
        raise argparse.ArgumentTypeError(
            f"not an execnet gateway spec: {value!r} ({exc})"
        ) from None
    kinds = [kind for kind in remote.GATEWAY_KINDS if getattr(xspec, kind, None)]
    if len(kinds) != 1:
        raise argparse.ArgumentTypeError(
            f"expected popen, ssh=HOST or socket=HOST:PORT in the spec, got {value!r}"
        )
    return [spec] * count


def parse_shard_mode(value: str) -> str:
    """``--shard-mode`` value: one of :data:`shard.MODES`."""
    return _one_of(value, shard.MODES)


def default_start_method() -> str:
    """fork where the platform has it (workers then share the collected items), else spawn."""
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


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


def auto_workers(config: pytest.Config) -> int:
    """Worker count for ``-n auto``: an env override, a plugin's answer, else our CPUs."""
    for name in AUTO_ENV_VARS:
        raw = os.environ.get(name)
        if raw:
            try:
                return _whole_number(raw, 1)
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
    found = shard.from_environment(os.environ)
    if found is None:
        names = ", ".join(f"{index}/{count}" for index, count, _ in shard.CI_VARIABLES)
        raise pytest.UsageError(f"--shard auto: none of these is set: {names}")
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
    return replace(base, workers=workers)
