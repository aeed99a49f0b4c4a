"""procpar's hooks and xdist's node hooks, as a plugin in the controller sees them."""

from __future__ import annotations

import json
import sys

import pytest
from harness import runpytest

CONFTEST = """
import json

EVENTS = []

def pytest_configure_node(node):
    node.workerinput["from_controller"] = "hello " + node.gateway.id

def pytest_procpar_worker_started(node):
    EVENTS.append(["started", node.gateway.id])

def pytest_procpar_items_scheduled(node, nodeids):
    EVENTS.append(["scheduled", node.gateway.id, list(nodeids)])

def pytest_testnodedown(node, error):
    info = node.workerinfo
    echo = node.workeroutput.get("echo")
    EVENTS.append(["xdist-down", node.gateway.id, echo, info["id"], info["executable"]])

def pytest_procpar_worker_finished(node, error):
    EVENTS.append(["finished", node.gateway.id, error])

def pytest_sessionfinish(session):
    config = session.config
    if hasattr(config, "workerinput"):  # in a worker: answer through workeroutput
        config.workeroutput["echo"] = config.workerinput["from_controller"]
    else:
        with open("events.json", "w") as out:
            json.dump(EVENTS, out)
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_worker_hooks_and_workeroutput(pytester: pytest.Pytester, method: str) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile("".join(f"def test_{i}(): pass\n" for i in range(12)))
    result = runpytest(pytester, "-p", "procpar", "-n", "2", "--procpar-start", method)
    result.assert_outcomes(passed=12)
    events = json.loads((pytester.path / "events.json").read_text())
    kinds = [event[0] for event in events]
    assert kinds.count("started") == 2
    assert kinds.count("finished") == 2
    scheduled = [nodeid for event in events if event[0] == "scheduled" for nodeid in event[2]]
    assert sorted(scheduled) == sorted(
        f"test_worker_hooks_and_workeroutput.py::test_{i}" for i in range(12)
    )
    for event in events:
        if event[0] == "xdist-down":
            assert event[2] == f"hello {event[1]}"
            assert event[3:] == [event[1], sys.executable]
        if event[0] == "finished":
            assert event[2] is None
