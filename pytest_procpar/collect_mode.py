"""Where the suite is collected: once in the controller, or in shares by the workers.

Collecting in workers (see docs/how-it-works.rst) takes the import of test modules off the
controller's one CPU, but only pays when collection is slow, and is only safe when nothing
needs the whole list of items in one process. :func:`before_walk` decides from the options
and what the last run measured, :func:`after_walk` from the plugins and conftests found while
walking the directories; each gives the reason the header prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from pytest_procpar import once, xdist_compat
from pytest_procpar.scheduler.shares import SHARE_POLICIES

MODES = ("auto", "controller", "workers")


@dataclass(frozen=True)
class Decision:
    in_workers: bool
    reason: str  # for the header: "auto: collection took 4.1s last time"
    weigh: bool = False  # auto, after the walk: whether shares are expected to pay
    collected_again: bool = False  # collecting once, every worker would collect it all again


def before_walk(
    config: pytest.Config,
    mode: str,
    start_method: str,
    workers: int,
    remote: bool,
    dist: str,
) -> Decision:
    """Whether to walk the directories only and let the workers collect the files."""
    asked = f"--procpar-collect={mode}"
    if mode == "controller":
        return Decision(False, asked)
    why_not = _unsafe(config, dist)
    if why_not is not None:
        return Decision(False, why_not)
    if mode == "workers":
        return Decision(True, asked)
    if dist not in SHARE_POLICIES:
        return Decision(False, f"auto: --dist {dist} hands out tests from the whole suite")
    if config.hook.pytest_procpar_make_scheduler.get_hookimpls():
        return Decision(False, "auto: a plugin's scheduler hands out tests from the whole suite")
    # Every worker configures pytest and collects by itself (forked from the template,
    # spawned, or remote): collecting once here as well would collect the suite twice.
    kind = "--tx" if remote else start_method
    reason = f"auto: {kind} workers collect by themselves"
    return Decision(True, reason, weigh=True, collected_again=True)


def _unsafe(config: pytest.Config, dist: str) -> str | None:
    """What needs collect-once, known before any conftest below the rootdir is loaded."""
    if dist == "each":
        return "--dist each runs every test on every worker"
    option = config.option
    if option.pyargs or any("::" in str(arg) for arg in config.args):
        return "test ids on the command line are found by collecting their modules"
    cache = getattr(config, "cache", None)
    last_failed = getattr(option, "lf", False) or getattr(option, "failedfirst", False)
    if last_failed and cache and cache.get("cache/lastfailed", {}):
        return "--lf/--ff choose from the whole suite"
    if getattr(option, "stepwise", False) or getattr(option, "stepwise_skip", False):
        return "--sw counts and skips in the whole suite"
    return xdist_compat.whole_suite_plugin(config)


def after_walk(config: pytest.Config) -> str | None:
    """Why collection must happen in the controller after all, naming the plugin or conftest
    that says so through ``pytest_procpar_needs_whole_suite``; None if none does."""
    if once.REGISTRY:
        names = ", ".join(sorted(once.REGISTRY))
        return f"once_per_run fixtures ({names}) are set up before the workers start"
    hook = config.hook.pytest_procpar_needs_whole_suite
    for impl in reversed(hook.get_hookimpls()):  # in calling order
        reason = impl.function(config=config)
        if reason:
            return f"{_plugin_name(config, impl.plugin, impl.plugin_name)}: {reason}"
    return None


def _plugin_name(config: pytest.Config, plugin: object, registered: str) -> str:
    path = getattr(plugin, "__file__", None)
    if path is not None and os.path.basename(path) == "conftest.py":
        return os.path.relpath(path, config.rootpath)
    return registered
