"""JUnit XML with workers: the controller writes the file, and learns what tests add to it.

Only the controller has pytest's ``LogXML`` (a worker writing the file too would clobber it),
so in a worker ``record_testsuite_property`` would record nothing and the fixtures that warn
about the JUnit family would not warn. A worker gets a :class:`WorkerLogXML` instead: it knows
the controller's family and turns each suite property into an event, which the controller adds
to its own ``LogXML``. (xdist drops these properties.)

Under ``bazel test``, Bazel's ``XML_OUTPUT_FILE`` is where the file goes by default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from pytest_procpar import messages
from pytest_procpar.extension import WorkerPlan
from pytest_procpar.node import WorkerNode
from pytest_procpar.pytest_internals import bin_xml_escape, check_record_param_type, xml_key

FAMILY_KEY = "procpar_junit_family"  # in workerinput: the controller writes JUnit XML
BAZEL_XML_OUTPUT = "XML_OUTPUT_FILE"


def default_path_from_bazel(config: pytest.Config, environ: Mapping[str, str]) -> None:
    """Bazel's ``XML_OUTPUT_FILE`` as the ``--junitxml`` path, unless one was given: Bazel
    reads its test results there (without it, it makes a file holding only the log). Called
    before pytest's junitxml plugin configures, which reads the path."""
    path = environ.get(BAZEL_XML_OUTPUT)
    if path and hasattr(config.option, "xmlpath") and config.option.xmlpath is None:
        config.option.xmlpath = path


def pytest_procpar_worker_starting(node: WorkerNode) -> None:
    """Controller: with JUnit XML, every worker learns its family (this module is registered
    as a plugin for parallel runs, see ``features.py``)."""
    xml = node.config.stash.get(xml_key, None)
    if xml is not None:
        node.workerinput[FAMILY_KEY] = xml.family


class _NoAttributes:
    """``record_xml_attribute`` in a worker: attributes of one test's element stay unwritten,
    as under xdist."""

    def add_attribute(self, name: str, value: object) -> None:
        pass


class WorkerLogXML:
    """The part of ``LogXML`` that fixtures use, in a worker."""

    def __init__(self, family: str, events: Callable[[], list[messages.Event]]) -> None:
        self.family = family
        self._events = events

    def add_global_property(self, name: str, value: object) -> None:
        __tracebackhide__ = True
        check_record_param_type("name", name)
        self._events().append(messages.suite_property(name, bin_xml_escape(value)))

    def node_reporter(self, nodeid: str) -> _NoAttributes:
        return _NoAttributes()


def pytest_procpar_worker_loop_planned(plan: WorkerPlan) -> None:
    """Worker: stand in for the controller's ``LogXML``, if it has one (this module is a
    plugin of every worker, see ``features.py``)."""
    config = plan.config
    family = plan.workerinput.get(FAMILY_KEY)
    if family is not None:
        stand_in = WorkerLogXML(family, plan.events)
        stash: Any = config.stash  # a stand-in, not the LogXML the key is typed for
        stash[xml_key] = stand_in
        # pytest's junitxml unregisters what the key holds when the session is unconfigured
        config.pluginmanager.register(stand_in, "procpar_worker_logxml")


def add_suite_property(config: pytest.Config, name: str, value: str) -> None:
    """In the controller: a worker's suite property, into the real ``LogXML``."""
    xml = config.stash.get(xml_key, None)
    if xml is not None:
        xml.global_properties.append((name, value))
