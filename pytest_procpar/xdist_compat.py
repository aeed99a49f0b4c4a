"""What pytest-xdist users and plugins rely on, provided by procpar: the one place that knows.

Workers look like xdist workers (``config.workerinput``/``workeroutput``, the ``PYTEST_XDIST_*``
environment variables, ``tmp_path`` under ``popen-gwN``; each configures itself as one, see
docs/how-it-works.rst), xdist's node hooks are called with a node object shaped like
xdist's (:class:`HookBridge` turns procpar's own worker hooks into them), reports carry that
node, and the ``worker_id`` / ``testrun_uid`` fixtures exist. The core reaches all of this
through the functions here and procpar's hooks.

Plugins written for xdist look for it by name (``pluginmanager.hasplugin("xdist")``) before
they register their xdist hooks or take their distributed path. procpar answers to that name
whether xdist is installed or not, and whether or not the user blocked it (``-p no:xdist``): it
registers :data:`XDIST_STAND_IN` as ``xdist``, which also keeps the real xdist from loading for
the run, so the two do not both own ``-n``; xdist's hook specifications are then declared here.
Where a plugin's xdist path needs more than procpar offers, its adapter is here too.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Generator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pytest_procpar.node import WorkerNode

XDIST_PLUGIN_NAMES = ("xdist", "xdist.plugin")
GROUP_MARKER = "xdist_group"  # the same as procpar_group


def workerinput(config: pytest.Config) -> dict[str, Any] | None:
    """What the controller handed this worker (None in the controller or a serial run)."""
    value: dict[str, Any] | None = getattr(config, "workerinput", None)
    return value


def workeroutput(config: pytest.Config) -> dict[str, Any]:
    """What this worker hands back to the controller when it finishes."""
    worker: Any = config  # the attribute is xdist's, not in pytest's types
    value: dict[str, Any] = worker.workeroutput
    return value


def become_worker(config: pytest.Config, given: dict[str, Any]) -> None:
    """What tells plugins they run in a worker, set before any of them configures for it."""
    worker: Any = config  # the attributes are xdist's, not in pytest's types
    worker.workerinput = given
    worker.workeroutput = {}
    export_identity(given)


def export_identity(given: dict[str, Any]) -> None:
    """The environment variables xdist-aware code reads to learn it runs in a worker."""
    os.environ["PYTEST_XDIST_WORKER"] = given["workerid"]
    os.environ["PYTEST_XDIST_WORKER_COUNT"] = str(given["workercount"])
    os.environ["PYTEST_XDIST_TESTRUNUID"] = given["testrunuid"]


def worker_basetemp(controller_basetemp: Path, workerid: str) -> Path:
    """Where a worker's ``tmp_path`` lives, as under xdist: beside the controller's."""
    return controller_basetemp / f"popen-{workerid}"


def attach_node(report: pytest.TestReport, node: WorkerNode) -> None:
    """``report.node``: the worker it came from, as xdist's reports carry it."""
    carrier: Any = report
    carrier.node = node


def announce_distribution(config: pytest.Config, dist: str, workers: int) -> None:
    """Where xdist-aware plugins read whether and on how many workers tests run (pytest-cov,
    pytest-benchmark; syrupy expects a report from each worker): xdist's ``dist`` is "no"
    unless workers run."""
    config.option.dist = dist if workers else "no"
    if workers:
        config.option.numprocesses = workers


class XdistStandIn:
    """Registered as the ``xdist`` plugin while procpar owns ``-n``: what plugins find when
    they ask whether xdist is there. It implements no hook."""

    __name__ = "xdist"

    def __repr__(self) -> str:
        return "<procpar standing in for xdist>"


XDIST_STAND_IN = XdistStandIn()


def xdist_loaded(pluginmanager: pytest.PytestPluginManager) -> bool:
    """Whether pytest-xdist registered before procpar (and so owns ``-n``)."""
    return any(
        pluginmanager.get_plugin(name) not in (None, XDIST_STAND_IN) for name in XDIST_PLUGIN_NAMES
    )


def stand_in_for_xdist(pluginmanager: pytest.PytestPluginManager) -> None:
    """Answer to xdist's name and keep xdist from loading later in this run; ``-p
    no:procpar`` lets it load instead.

    ``-p no:xdist`` blocks the name, which keeps the real xdist out as the stand-in does, but
    plugins asking for xdist would not find procpar either and take their serial path in a run
    with workers (pytest-randomly's workers would not get the seed, syrupy would delete every
    snapshot the workers used): the stand-in takes the name all the same. pytest applies the
    ``-p`` options of ``addopts`` and the command line in their order, so ``-p procpar -p
    no:xdist`` blocks the name after procpar registered, which unregisters the stand-in (and a
    spawned worker applies them once more after configuring): :class:`XdistNameKeeper` takes
    the name back."""
    pluginmanager.set_blocked("xdist.plugin")
    answer_to_xdist_name(pluginmanager)
    if not pluginmanager.has_plugin(XdistNameKeeper.NAME):
        pluginmanager.register(XdistNameKeeper(), XdistNameKeeper.NAME)


def answer_to_xdist_name(pluginmanager: pytest.PytestPluginManager) -> None:
    """Register the stand-in as ``xdist`` unless the name is taken: a block (the user's) is
    lifted for it; the real xdist's entry point still does not load, the name being taken."""
    if pluginmanager.get_plugin("xdist") is None:
        pluginmanager.unblock("xdist")
        pluginmanager.register(XDIST_STAND_IN, "xdist")


class XdistNameKeeper:
    """Gives xdist's name back to the stand-in where a ``-p no:xdist`` applied after procpar
    registered took it away: before the initial conftests load (every ``-p`` option is applied
    by then, and the real xdist's entry point was skipped, its name blocked) and before
    ``pytest_cmdline_main`` (a spawned worker's configuration applies the options once more
    after its conftests), so that conftests and plugins find procpar under xdist's name as they
    would find xdist. It does nothing once procpar itself is unregistered (``-p procpar ... -p
    no:procpar``)."""

    NAME = "procpar_xdist_name"

    # Wrappers, first: before any plugin's implementation (procpar's own forks the template
    # its local workers are forked from in pytest_load_initial_conftests).
    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_load_initial_conftests(
        self, early_config: pytest.Config
    ) -> Generator[None, object, object]:
        self.keep(early_config.pluginmanager)
        return (yield)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_cmdline_main(self, config: pytest.Config) -> Generator[None, object, object]:
        self.keep(config.pluginmanager)
        return (yield)

    @staticmethod
    def keep(pluginmanager: pytest.PytestPluginManager) -> None:
        procpar = sys.modules.get("pytest_procpar.plugin")
        if procpar is None or not pluginmanager.is_registered(procpar):
            return
        if not xdist_loaded(pluginmanager):
            answer_to_xdist_name(pluginmanager)


def disable_rerunfailures_xdist_mode() -> None:
    """pytest-rerunfailures' xdist mode keeps rerun counts in a socket server thread of the
    controller and reruns crashed tests through xdist's scheduler (``mark_test_pending``);
    procpar has neither (a thread would also make forking unsafe). Its plain mode reruns
    failures inside the worker, which is what procpar supports. In a worker it reports each
    rerun only if the installed pytest-xdist is recent enough (with none installed: never);
    procpar's workers report every attempt, so its reruns are always reported."""
    module: Any = sys.modules.get("pytest_rerunfailures")
    if getattr(module, "HAS_PYTEST_HANDLECRASHITEM", False):
        module.HAS_PYTEST_HANDLECRASHITEM = False
    if module is not None and hasattr(module, "works_with_current_xdist"):
        module.works_with_current_xdist = _reports_every_attempt


def _reports_every_attempt() -> bool:
    return True


class HookBridge:
    """procpar's worker hooks, told to plugins in xdist's hooks as well (first, so that
    procpar's own listeners find what xdist's put on the node)."""

    def __init__(self, config: pytest.Config) -> None:
        self.hook = config.hook

    @pytest.hookimpl(tryfirst=True)
    def pytest_procpar_worker_starting(self, node: WorkerNode) -> None:
        self.hook.pytest_configure_node(node=node)

    @pytest.hookimpl(tryfirst=True)
    def pytest_procpar_worker_ready(self, node: WorkerNode) -> None:
        self.hook.pytest_testnodeready(node=node)

    @pytest.hookimpl(tryfirst=True)
    def pytest_procpar_worker_finished(self, node: WorkerNode, error: str | None) -> None:
        self.hook.pytest_testnodedown(node=node, error=error)

    @pytest.hookimpl(tryfirst=True)
    def pytest_procpar_item_lost(
        self, nodeid: str, report: pytest.TestReport, scheduler: object
    ) -> None:
        self.hook.pytest_handlecrashitem(crashitem=nodeid, report=report, sched=scheduler)


class XdistHookSpecs:
    """xdist's hook specifications that procpar calls, with xdist's names and arguments."""

    @pytest.hookspec()
    def pytest_configure_node(self, node: Any) -> None:
        """Called in the controller before a worker starts; may update ``node.workerinput``."""

    @pytest.hookspec()
    def pytest_testnodeready(self, node: Any) -> None:
        """Called in the controller when a worker is ready to run tests."""

    @pytest.hookspec()
    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        """Called in the controller when a worker is gone; ``node.workeroutput`` is filled in."""

    @pytest.hookspec(firstresult=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport, sched: Any) -> Any:
        """Called in the controller for the item a crashed worker was running."""

    # Declared so that plugins implementing them can register; procpar never calls them.
    @pytest.hookspec()
    def pytest_xdist_setupnodes(self, config: pytest.Config, specs: Any) -> None:
        """xdist: before gateways are set up."""

    @pytest.hookspec()
    def pytest_xdist_newgateway(self, gateway: Any) -> None:
        """xdist: a gateway was set up."""

    @pytest.hookspec()
    def pytest_xdist_node_collection_finished(self, node: Any, ids: Any) -> None:
        """xdist: a worker finished collecting."""

    @pytest.hookspec(firstresult=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        """xdist: a scheduler instead of xdist's own."""

    @pytest.hookspec(firstresult=True)
    def pytest_xdist_auto_num_workers(self, config: pytest.Config) -> Any:
        """xdist: the number of workers for ``-n auto``."""


def missing_specs(pluginmanager: pytest.PytestPluginManager, namespace: object) -> type | None:
    """The hook specifications of ``namespace`` that nothing declared yet, as a namespace to
    pass to ``add_hookspecs`` (pluggy refuses a second declaration of a hook); None if none."""
    missing = {
        name: getattr(namespace, name)
        for name in dir(namespace)
        if pluginmanager.parse_hookspec_opts(namespace, name) is not None
        and getattr(getattr(pluginmanager.hook, name, None), "spec", None) is None
    }
    return type(getattr(namespace, "__name__", "Specs"), (), missing) if missing else None


def add_missing_hookspecs(pluginmanager: pytest.PytestPluginManager) -> None:
    """Declare xdist's hooks unless something (xdist itself) already did."""
    specs = missing_specs(pluginmanager, XdistHookSpecs)
    if specs is not None:
        pluginmanager.add_hookspecs(specs)


BDD_CONTEXT_KEY = "procpar_bdd_context"


class BddReportContexts:
    """pytest-bdd keeps what a scenario did (its steps and their outcomes) in a table keyed
    by the report object, which its cucumber JSON writer reads: a report rebuilt in the
    controller is not in it (xdist loses these too). In the worker the entry rides on the
    report as an attribute; the controller moves it back into the table for the rebuilt one."""

    def __init__(self, reporting: ModuleType) -> None:
        self.registry = reporting.test_report_context_registry
        self.context_type = reporting.ReportContext

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield  # pytest-bdd's own wrapper, inside this one, has filled its table
        context = self.registry.get(report)
        if context is not None:
            setattr(report, BDD_CONTEXT_KEY, {"scenario": context.scenario, "name": context.name})
        return report

    @pytest.hookimpl(wrapper=True)
    def pytest_report_from_serializable(self) -> Generator[None, Any, Any]:
        report = yield
        context = getattr(report, BDD_CONTEXT_KEY, None)
        if context is not None:
            delattr(report, BDD_CONTEXT_KEY)
            self.registry[report] = self.context_type(**context)
        return report


def register_adapters(config: pytest.Config) -> None:
    """Per-plugin adapters that listen to hooks, in the controller of a run with workers and
    in every worker."""
    reporting = sys.modules.get("pytest_bdd.reporting")
    if reporting is not None and hasattr(reporting, "test_report_context_registry"):
        config.pluginmanager.register(BddReportContexts(reporting), "procpar_bdd_contexts")


# Options of plugins that measure, and so need the machine to themselves: a run given one is
# serial, as one with --pdb. (Without them pytest-benchmark turns itself off with workers, and
# says so, as under xdist, where it even refuses --benchmark-only.)
PLUGIN_SERIAL_OPTIONS = {
    "benchmark_only": "--benchmark-only measures one benchmark at a time",
    "benchmark_enable": "--benchmark-enable measures one benchmark at a time",
}


def collecting_worker_options(config: pytest.Config) -> dict[str, Any]:
    """Options a worker that configures pytest anew (spawn, forkserver, ``--tx``) must see
    otherwise than the controller.

    pytest-cov starts its controller-side measurement in every process whose command line
    has ``--cov`` and ``-n``, and that start erases the data files earlier workers saved,
    unless it appends. Under xdist every worker starts before any test runs; here a worker
    may start (or be replaced) after another one finished and saved.
    """
    if config.pluginmanager.has_plugin("_cov"):
        return {"cov_append": True}
    return {}


def new_testrunuid() -> str:
    return uuid.uuid4().hex


@pytest.fixture(scope="session")
def worker_id(request: pytest.FixtureRequest) -> str:
    """The id of this worker (``gw0``, ``gw1``, ...), or ``"master"`` when not parallel."""
    given = workerinput(request.config)
    return str(given["workerid"]) if given else "master"


@pytest.fixture(scope="session")
def testrun_uid(request: pytest.FixtureRequest) -> str:
    """An id shared by every worker of this run, unique to the run."""
    given = workerinput(request.config)
    return str(given["testrunuid"]) if given else new_testrunuid()


def whole_suite_plugin(config: pytest.Config) -> str | None:
    """A known plugin whose ``pytest_collection_modifyitems`` orders or selects across the
    whole suite, so that workers cannot collect it in shares (see collect_mode.py)."""
    if config.pluginmanager.has_plugin("pytest_order"):
        return "pytest-order orders tests across the whole suite"
    if getattr(config.option, "splits", None):
        return "pytest-split picks its group from the whole suite"
    if config.pluginmanager.has_plugin("syrupy"):
        return "syrupy's unused-snapshot check lists the collected tests in the controller"
    return None
