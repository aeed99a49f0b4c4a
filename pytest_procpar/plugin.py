"""The ``procpar`` pytest plugin: options, validation, and the switch into controller mode.

Nothing here runs tests. With ``-n`` absent or 0, procpar registers nothing beyond its options
and pytest runs exactly as without it (but for ``--shard`` and Bazel's ``XML_OUTPUT_FILE``).
In a worker (``config.workerinput`` is set) the worker modules are in charge and this plugin
only provides the xdist fixtures.
"""

from __future__ import annotations

import os

import pytest

from pytest_procpar import (
    features,
    gc_policy,
    hookspecs,
    isolation,
    junit,
    options,
    resources,
    shard,
    template,
    xdist_compat,
)
from pytest_procpar.durations import DurationStore
from pytest_procpar.settings import Settings, starts_from_record, template_slots
from pytest_procpar.settings import resolve as resolve_settings
from pytest_procpar.xdist_compat import testrun_uid, worker_id

__all__ = ["testrun_uid", "worker_id"]

SETTINGS_KEY = pytest.StashKey[Settings]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    isolation.note_starting_environment()  # before plugins change it (pytest-env, conftests)
    pluginmanager.add_hookspecs(hookspecs)
    if not xdist_compat.xdist_loaded(pluginmanager):
        xdist_compat.add_missing_hookspecs(pluginmanager)


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    active = not xdist_compat.xdist_loaded(pluginmanager)
    if active:
        xdist_compat.stand_in_for_xdist(pluginmanager)
    options.register(parser, with_xdist_names=active)


# Neither tryfirst nor trylast: after the plugins' tryfirst set-up (pytest-cov's, pytest-env's)
# and before pytest's, which imports the conftests (trylast).
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """The last moment before any conftest is imported: fork the template that this run's
    local workers will be forked from (see docs/how-it-works.rst, "The process model"). A
    worker goes on from here."""
    if template.is_worker() or xdist_compat.xdist_loaded(early_config.pluginmanager):
        return
    slots = template_slots(early_config)
    if slots:
        from pytest_procpar import launch  # only then: it imports the worker's side

        limits = resources.parse_limits(early_config.getini("procpar_resources") or "")
        if launch.prepare(early_config, slots, limits):
            early_config.add_cleanup(lambda: template.close(early_config))


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """Validate every option before anything else happens: bad values are usage errors."""
    if xdist_compat.xdist_loaded(config.pluginmanager):
        return None
    xdist_compat.disable_rerunfailures_xdist_mode()  # every plugin is imported by now
    if xdist_compat.workerinput(config) is not None:
        return None
    junit.default_path_from_bazel(config, os.environ)  # the controller writes JUnit XML
    settings = resolve_settings(config)
    record_plugins: list[tuple[object, str]] = []
    if starts_from_record(config):
        from pytest_procpar import record_use  # only then: it reads the run records

        if config.option.procpar_runs:
            record_use.list_records(config)
            return 0
        settings, record_plugins = record_use.configure(config, settings)
    config.stash[SETTINGS_KEY] = settings
    xdist_compat.announce_distribution(config, settings.dist, settings.workers)
    if settings.workers:
        isolation.set_for_workers(settings.thread_env)  # before test modules are imported
        gc_policy.release_suite(config)  # now, so that it is the last cleanup
    elif config.option.procpar_bisect is None:
        template.close(config)  # no local worker will start
    for plugin, name in record_plugins:
        config.pluginmanager.register(plugin, name)
    return None


@pytest.hookimpl(trylast=True)  # after the terminal reporter exists
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "procpar_group(name): with --dist loadgroup, run these tests on one worker"
    )
    config.addinivalue_line(
        "markers", "procpar_timeout(seconds): with -n, fail this test after so many seconds"
    )
    config.addinivalue_line(
        "markers", "procpar_serial: with -n, run this test while no other test runs"
    )
    config.addinivalue_line(
        "markers",
        "procpar_flaky(retries=N): with -n, run this test again up to N times if it fails",
    )
    config.addinivalue_line(
        "markers",
        "procpar_resource(name, ...): with -n, run this test while fewer tests than the "
        "resource's limit (ini procpar_resources, default 1) hold it",
    )
    if not xdist_compat.xdist_loaded(config.pluginmanager):
        config.addinivalue_line("markers", "xdist_group(name): the same as procpar_group")
    settings = config.stash.get(SETTINGS_KEY, None)
    if xdist_compat.workerinput(config) is not None:
        for feature, name in features.for_worker():
            config.pluginmanager.register(feature, name)
    if xdist_compat.workerinput(config) is not None or (settings is not None and settings.workers):
        xdist_compat.register_adapters(config)
    if settings is None or (settings.shard is None and not settings.workers):
        return
    durations = DurationStore(config)  # read once, for sharding and for scheduling
    if settings.shard is not None:
        mode = config.option.procpar_shard_mode
        plugin = shard.ShardPlugin(settings.shard, mode, durations.known)
        config.pluginmanager.register(plugin, "procpar_shard")
    if settings.workers > 0:
        # Imported here: a run without workers (most runs where procpar is merely installed)
        # need not load the controller, the launcher and the worker.
        from pytest_procpar.controller import ControllerPlugin

        controller = ControllerPlugin(settings, durations)
        config.pluginmanager.register(controller, "procpar_controller")
        config.pluginmanager.register(xdist_compat.HookBridge(config), "procpar_xdist_hooks")
        for feature, name in features.for_parallel_run(settings):
            config.pluginmanager.register(feature, name)


@pytest.fixture
def procpar_slot(request: pytest.FixtureRequest) -> int:
    """Which of its first resource's slots the test holds (0 ... limit - 1): a port or a
    device of its own among the tests holding the resource at the same time."""
    item = request.node
    needs = resources.needs_of(item)
    if needs is None or not needs.resources:
        raise pytest.UsageError(
            f"{item.nodeid}: procpar_slot needs the test to hold a resource: "
            "@pytest.mark.procpar_resource(name)"
        )
    held: dict[str, int] = item.stash.get(resources.SLOTS_KEY, {})  # none: a serial run
    return held.get(needs.resources[0], 0)


def pytest_report_header(config: pytest.Config) -> str | None:
    settings = config.stash.get(SETTINGS_KEY, None)
    if settings is None or not settings.serial_reason:
        return None
    return f"procpar: {settings.serial_reason}, no workers started"
