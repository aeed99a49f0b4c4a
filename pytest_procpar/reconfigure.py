"""A forked worker configured the way an xdist worker is: plugins decide their role again.

xdist-aware plugins decide in ``pytest_configure`` (and ``pytest_sessionstart``) whether they
run in the controller or in a worker, by looking at ``config.workerinput``: the controller
registers a reporter or opens a file, a worker puts what the controller needs into
``config.workeroutput``. A forked worker is a copy of the configured controller, so it would
inherit the controller's choices. This module undoes them:

- In the controller, :class:`ConfigureRecord` notes which plugins were registered while
  ``pytest_configure`` and ``pytest_sessionstart`` ran.
- In the worker, :func:`withdraw_controller_role` unregisters the third-party ones among them
  (they belong to the controller's role), then :func:`configure_again` runs the third-party
  and conftest ``pytest_configure`` implementations again, now with ``workerinput`` set, so
  each plugin registers what a worker of its own needs; :func:`start_sessions` does the same
  for ``pytest_sessionstart``, and :func:`unconfigure` ends the worker with the same plugins'
  ``pytest_unconfigure``.

pytest's own plugins are left alone: their worker state is set up in
:mod:`pytest_procpar.isolation`. Spawned and forkserver workers need none of this, since they
configure from scratch with ``workerinput`` already set.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from pytest_procpar import hookspecs, pytest_internals, xdist_compat

BUILTIN_PLUGIN_MODULES = ("_pytest.", "pytest_procpar.", "pluggy.")
RECORD_KEY = pytest.StashKey["ConfigureRecord"]()


def plugin_module(plugin: object) -> str:
    """The module a plugin comes from: itself, or its class's."""
    return plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__


def is_builtin(plugin: object) -> bool:
    """Whether ``plugin`` is pytest's or procpar's own: set up for workers by procpar itself."""
    return plugin_module(plugin).startswith(BUILTIN_PLUGIN_MODULES)


class ConfigureRecord:
    """Which plugins the configure and session-start hooks register in the controller (its
    role, which a worker must not keep). Made and registered before ``pytest_configure``."""

    def __init__(self, config: pytest.Config) -> None:
        self.before = config.pluginmanager.get_plugins()
        self.registered: list[object] = []
        config.stash[RECORD_KEY] = self

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.registered = [
            plugin
            for plugin in session.config.pluginmanager.get_plugins()
            if plugin not in self.before and not is_builtin(plugin)
        ]


def _builtin_plugins(manager: pytest.PytestPluginManager) -> set[object]:
    """What the worker must not call again: pytest's and procpar's own plugins."""
    return {plugin for plugin in manager.get_plugins() if is_builtin(plugin)}


def _call_third_party(
    manager: pytest.PytestPluginManager, name: str, skip: set[object] | None = None, **kwargs: Any
) -> None:
    """Call hook ``name`` on third-party plugins and conftests only (and not on ``skip``).
    Also for historic hooks (``pytest_configure``): called as a plain call, so that plugins
    registered later in the worker are not configured twice."""
    left_out = _builtin_plugins(manager) | (skip or set())
    caller = manager.subset_hook_caller(name, remove_plugins=left_out)
    pytest_internals.call_implementations(caller, kwargs)


# What the worker withdrew: kept referenced until the process ends, so that no file object
# of the controller's is closed (and its buffer written a second time) by the garbage collector.
_withdrawn: list[object] = []


@contextlib.contextmanager
def _output_discarded() -> Iterator[None]:
    """What configuring prints or warns again, the controller printed already (a serial run:
    once). Warnings are not errors here, as pytest does not let them be while configuring."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def withdraw_controller_role(config: pytest.Config) -> None:
    """Unregister what third-party configure and session-start hooks registered in the
    controller: a reporter, a file writer, a server."""
    record = config.stash.get(RECORD_KEY, None)
    manager = config.pluginmanager
    for plugin in record.registered if record is not None else ():
        if manager.is_registered(plugin):
            manager.unregister(plugin)
            _withdrawn.append(plugin)
    _as_if_registered_once(manager)
    xdist_compat.withdraw_outside_pytest()


def _as_if_registered_once(manager: pytest.PytestPluginManager) -> None:
    """Make the worker's plugin manager take what configuring again repeats.

    A plugin registered anew replays the historic ``pytest_addhooks``, so its hook
    specifications, which the controller's withdrawn copy already declared, are declared
    again: only the missing ones are. And a plugin's ``pytest_unconfigure`` may unregister the
    object it registered in the controller (the worker inherited the reference): that is
    already done.
    """
    add_hookspecs, unregister = manager.add_hookspecs, manager.unregister

    def add_missing_hookspecs(module_or_class: object) -> None:
        specs = hookspecs.missing_specs(manager, module_or_class)
        if specs is not None:
            add_hookspecs(specs)

    def unregister_unless_withdrawn(plugin: object = None, name: str | None = None) -> Any:
        if plugin is not None and any(plugin is gone for gone in _withdrawn):
            return plugin
        return unregister(plugin, name)

    manager.add_hookspecs = add_missing_hookspecs  # type: ignore[method-assign]
    manager.unregister = unregister_unless_withdrawn  # type: ignore[method-assign]


def configure_again(config: pytest.Config) -> None:
    """Configure third-party plugins and conftests again, as workers (``config.workerinput``
    is set)."""
    with _output_discarded():
        _call_third_party(config.pluginmanager, "pytest_configure", config=config)


def start_sessions(session: pytest.Session) -> None:
    """Run third-party plugins' and conftests' ``pytest_sessionstart`` in a forked worker.

    Under xdist every worker is a whole pytest session, and plugins (pytest-cov, database
    plugins, conftests) set up per-worker state there, looking at ``config.workerinput``. The
    fork copied the controller after its session start, so they get that call now; pytest's
    own plugins must not, they already set up the copied session.
    """
    manager = session.config.pluginmanager
    kept = {
        plugin
        for plugin in manager.get_plugins()
        if plugin_module(plugin).split(".", 1)[0] in xdist_compat.KEEP_SESSION_MODULES
    }
    _call_third_party(manager, "pytest_sessionstart", kept, session=session)


def unconfigure(config: pytest.Config) -> None:
    """The end of a forked worker: what pytest would call as the process's session ends."""
    _call_third_party(config.pluginmanager, "pytest_unconfigure", config=config)
