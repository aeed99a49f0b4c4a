"""What a worker must not share with the controller, set up right after its own
``pytest_configure``: the terminal (the controller alone reports), the run-wide files (junit
XML, the stepwise cache entry), standard output and error (pipes to the controller) and the
capture files the controller can read after a crash; and the environment a worker starts from.
The worker then looks to every plugin like a pytest-xdist worker: ``config.workerinput`` is set
and controller-only plugins are gone.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_procpar import pytest_internals
from pytest_procpar.pytest_internals import xml_key

# Plugins that only make sense once per run; the controller keeps them.
CONTROLLER_ONLY_PLUGINS = (
    "stepwiseplugin",
    "procpar_controller",
    "procpar_shard",
    "procpar_retries",
    "procpar_run_record",
)


class SilentTerminal:
    """Stands in for the terminal reporter inside a worker.

    Plugins and pytest itself look the reporter up (assertion rewriting asks it for its
    writer's highlighter), so it must exist; but a real reporter would listen to every test
    hook and print to the controller's terminal. This object forwards attribute lookups to
    the reporter it wraps and, having no ``pytest_*`` attributes of its own, is called by no
    hook.
    """

    def __init__(self, reporter: Any) -> None:
        self._reporter = reporter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reporter, name)


def silence_terminal(config: pytest.Config) -> None:
    """Wrap whatever ``terminalreporter`` is now (a plugin may have replaced it) in a
    :class:`SilentTerminal`: the controller alone reports."""
    manager = config.pluginmanager
    reporter = manager.get_plugin("terminalreporter")
    if reporter is None:
        return
    manager.unregister(reporter, name="terminalreporter")
    manager.register(SilentTerminal(reporter), "terminalreporter")


def withdraw_controller_plugins(config: pytest.Config) -> None:
    """Unregister plugins that write run-wide files (junit XML, stepwise state)."""
    manager = config.pluginmanager
    xml = config.stash.get(xml_key, None)
    if xml is not None:
        manager.unregister(xml)
        del config.stash[xml_key]
    for name in CONTROLLER_ONLY_PLUGINS:
        plugin = manager.get_plugin(name)
        if plugin is not None:
            manager.unregister(plugin, name=name)


def restart_capture(config: pytest.Config, redirect_output: Callable[[], None]) -> None:
    """Point the worker's stdout and stderr at the controller's pipes, under its capture.

    The capture started while the conftests loaded saved the descriptors it found (where the
    output of configuring is kept aside), and would put them back each time it suspends.
    Between stopping it and starting a new one, ``redirect_output`` points fds 1 and 2 at the
    controller's pipes, so whatever escapes capture (``-s``, live logs) reaches the terminal
    tagged with the worker.
    """
    capman = config.pluginmanager.get_plugin("capturemanager")
    if capman is not None:
        capman.stop_global_capturing()
    redirect_output()
    if capman is not None:
        capman.start_global_capturing()
        capman.suspend_global_capture()


_starting_environment: dict[str, str] = {}
_for_workers: dict[str, str] = {}


def note_starting_environment() -> None:
    """Remember the environment pytest was started with, before plugins change it: pytest-env
    sets variables while configuring, some expanding what is already there."""
    _starting_environment.clear()
    _starting_environment.update(os.environ)
    _for_workers.clear()


def set_for_workers(variables: Mapping[str, str]) -> None:
    """Set ``variables`` here, in the environment spawned workers start from, and for the
    workers forked from the template (made before they were set) to add."""
    os.environ.update(variables)
    _starting_environment.update(variables)
    _for_workers.update(variables)


def starting_environment() -> dict[str, str]:
    """What a worker that configures pytest anew starts from (it runs those plugins again)."""
    return dict(_starting_environment or os.environ)


def set_since_the_template() -> dict[str, str]:
    """What a worker forked from the template adds to the environment it inherits (which
    is the controller's as it was when the template was forked)."""
    return dict(_for_workers)


def capture_files_visible(config: pytest.Config, prefix: Path) -> None:
    """Put the worker's capture temp files at ``<prefix>.stdout`` / ``.stderr``, where the
    controller can read what a test had printed when its worker died mid-test."""
    capturing = pytest_internals.global_capturing(config)
    for stream in ("stdout", "stderr"):
        tmpfile: Any = getattr(getattr(capturing, stream[3:], None), "tmpfile", None)
        try:
            target = tmpfile.fileno()
        except (AttributeError, OSError, ValueError):
            continue  # not capturing at the file descriptor level
        with open(prefix.with_suffix(f".{stream}"), "w+b") as named:
            os.dup2(named.fileno(), target)


def printed_before_crash(prefix: Path) -> str:
    """What :func:`capture_files_visible` files hold, as report sections."""
    sections = []
    for stream in ("stdout", "stderr"):
        try:
            text = prefix.with_suffix(f".{stream}").read_text(errors="replace")
        except OSError:
            continue
        if text:
            sections.append(f"----- captured {stream} before the crash -----\n{text[-20_000:]}")
    return "\n".join(sections)


def streams_broken() -> bool:
    """Whether a test closed the worker's standard streams (every later test would fail)."""
    streams = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    return any(stream is not None and stream.closed for stream in streams)


def controller_basetemp(config: pytest.Config) -> tuple[Path, Path | None]:
    """Where workers' temp directories go: the session's basetemp, or (``-p no:tmpdir``) a
    directory of the run's own, returned second so that the run removes it."""
    factory = pytest_internals.tmp_path_factory(config)
    if factory is not None:
        return Path(factory.getbasetemp()), None
    own = Path(tempfile.mkdtemp(prefix="procpar-"))
    return own, own
