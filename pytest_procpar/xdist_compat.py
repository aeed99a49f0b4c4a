"""What pytest-xdist users and plugins rely on, provided by procpar.

Workers look like xdist workers (``config.workerinput``/``workeroutput``, the ``PYTEST_XDIST_*``
environment variables, see :mod:`pytest_procpar.isolation` and
:mod:`pytest_procpar.reconfigure`), the controller calls xdist's node hooks with a node object
shaped like xdist's, and the ``worker_id`` / ``testrun_uid`` fixtures exist.

Plugins written for xdist look for it by name (``pluginmanager.hasplugin("xdist")``) before
they register their xdist hooks or take their distributed path. procpar answers to that name:
it registers :data:`XDIST_STAND_IN` as ``xdist``, which also keeps the real xdist from loading
for the run, so the two do not both own ``-n``; xdist's hook specifications are then declared
here. Where a plugin's xdist path needs more than procpar offers, its adapter is here too.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
import uuid
from types import SimpleNamespace
from typing import Any

import pytest

XDIST_PLUGIN_NAMES = ("xdist", "xdist.plugin")


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
    no:procpar`` lets it load instead."""
    pluginmanager.set_blocked("xdist.plugin")
    if pluginmanager.get_plugin("xdist") is None and not pluginmanager.is_blocked("xdist"):
        pluginmanager.register(XDIST_STAND_IN, "xdist")


def disable_rerunfailures_xdist_mode() -> None:
    """pytest-rerunfailures' xdist mode keeps rerun counts in a socket server thread of the
    controller and reruns crashed tests through xdist's scheduler (``mark_test_pending``);
    procpar has neither (a thread would also make forking unsafe). Its plain mode reruns
    failures inside the worker, which is what procpar supports."""
    module: Any = sys.modules.get("pytest_rerunfailures")
    if getattr(module, "HAS_PYTEST_HANDLECRASHITEM", False):
        module.HAS_PYTEST_HANDLECRASHITEM = False


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


def add_missing_hookspecs(pluginmanager: pytest.PytestPluginManager) -> None:
    """Declare xdist's hooks unless something (xdist itself) already did."""
    missing = [
        name
        for name in dir(XdistHookSpecs)
        if name.startswith("pytest_")
        and getattr(getattr(pluginmanager.hook, name, None), "spec", None) is None
    ]
    if missing:
        specs = type(
            "XdistHookSpecs", (), {name: getattr(XdistHookSpecs, name) for name in missing}
        )
        pluginmanager.add_hookspecs(specs)


class WorkerNode:
    """The controller's handle on one worker, in the shape xdist-aware plugins expect.

    ``report.node`` is set to it (the terminal shows ``[gw0]`` from ``node.gateway.id``), and
    it is the ``node`` argument of the xdist node hooks.
    """

    workeroutput: dict[str, Any]  # set once the worker finished cleanly, as xdist's node

    def __init__(self, config: pytest.Config, workerinput: dict[str, Any]) -> None:
        self.config = config
        self.workerinput = workerinput
        self.interpreter: dict[str, Any] = {}  # another Python's (--tx): see workerinfo
        self.gateway = SimpleNamespace(id=workerinput["workerid"], _rinfo=self._rinfo)
        self.nodemanager = SimpleNamespace(roots=[])  # pytest-cov: no rsync roots, same files

    def _rinfo(self) -> SimpleNamespace:
        """What execnet's ``gateway._rinfo()`` returns."""
        return SimpleNamespace(**self.workerinfo)

    @functools.cached_property
    def workerinfo(self) -> dict[str, Any]:
        """What xdist's node carries, worked out when first read (above a failure, by a
        plugin): ``platform.platform()`` runs ``uname -p`` the first time, a cost passing runs
        need not pay."""
        return {**interpreter_info(self.gateway.id), **self.interpreter}

    def __repr__(self) -> str:
        return f"<WorkerNode {self.gateway.id}>"


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


def interpreter_info(workerid: str) -> dict[str, Any]:
    """The ``workerinfo`` xdist's nodes carry; pytest prints it above a worker's failures."""
    return {
        "id": workerid,
        "version": sys.version,
        "version_info": tuple(sys.version_info),
        "sysplatform": sys.platform,
        "platform": platform.platform(),
        "executable": sys.executable,
        "cwd": os.getcwd(),
    }


def new_testrunuid() -> str:
    return uuid.uuid4().hex


@pytest.fixture(scope="session")
def worker_id(request: pytest.FixtureRequest) -> str:
    """The id of this worker (``gw0``, ``gw1``, ...), or ``"master"`` when not parallel."""
    workerinput = getattr(request.config, "workerinput", None)
    return str(workerinput["workerid"]) if workerinput else "master"


@pytest.fixture(scope="session")
def testrun_uid(request: pytest.FixtureRequest) -> str:
    """An id shared by every worker of this run, unique to the run."""
    workerinput = getattr(request.config, "workerinput", None)
    return str(workerinput["testrunuid"]) if workerinput else new_testrunuid()
