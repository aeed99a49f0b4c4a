"""The options' values resolved into one validated :class:`Settings`, against this machine
(how many workers ``-n auto`` means, which options force a serial run, the CI's shard).

The options themselves are declared in :mod:`pytest_procpar.options`; every value is parsed
by the same function whether it comes from the command line or from the ini file.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

import pytest

from pytest_procpar import resources, shard, worker_limits, xdist_compat
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
    parse_start_method,
    whole_number,
)
from pytest_procpar.scheduler import DEFAULT_POLICY, SERIAL_POLICY

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


# Worker slots of a template made for "-n auto": the hook or variable that decides may ask for
# more than the CPUs; a run that needs more slots starts its workers with forkserver.
AUTO_TEMPLATE_SLOTS = 64
SHOWS_ONLY = ("help", "version", "showfixtures", "show_fixtures_per_test", "markers", "cacheshow")


def template_slots(config: pytest.Config) -> int:
    """Before the initial conftests are loaded (only the command line and the ini file are
    read): how many local worker slots a template forked now may have to serve; 0 when no
    local worker can start (or fork is not the start method): no template is made."""
    known = config.known_args_namespace
    if getattr(known, "procpar_bisect", None) is not None:
        return 1  # its probes
    if getattr(known, "collectonly", False) or any(getattr(known, n, False) for n in SHOWS_ONLY):
        return 0
    try:
        start = getattr(known, "procpar_start", None)
        start = start or _from_ini(config, "procpar_start", parse_start_method)
        requested = getattr(known, "numprocesses", None)
        if requested is None:
            requested = _from_ini(config, "procpar_numprocesses", parse_numprocesses)
    except pytest.UsageError:  # said again, as a usage error, once the options are parsed
        return 0
    if (start or default_start_method()) != "fork" or not requested:
        return 0
    remote = sum(len(specs) for specs in getattr(known, "tx", None) or [])  # slots too
    if isinstance(requested, int):
        return requested + remote
    return max(AUTO_TEMPLATE_SLOTS, os.cpu_count() or 1) + remote


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
