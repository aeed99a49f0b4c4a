"""``--log-file`` with workers: the controller is the only process that writes the file.

A worker opening the file would truncate it (mode "w") or interleave with the others. So in a
worker the logging plugin's file handler writes into a stream that turns each formatted record
into an event; the controller writes the records it replays into its own handler's stream.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pytest_procpar import messages, xdist_compat
from pytest_procpar.node import WorkerNode

LOG_FILE_KEY = "procpar_log_file"


class LogFileStream:
    """Stands in for the ``--log-file`` stream in a worker: records become events, and only
    the controller writes the file (workers writing it too would interleave or truncate)."""

    def __init__(self, events: Callable[[], list[messages.Event]]) -> None:
        self.events = events

    def write(self, text: str) -> None:
        self.events().append(messages.log_file_record(text))

    def flush(self) -> None:
        pass


def forward_log_file(config: pytest.Config, stream: LogFileStream) -> None:
    if not (xdist_compat.workerinput(config) or {}).get(LOG_FILE_KEY):
        return
    plugin = config.pluginmanager.get_plugin("logging-plugin")
    if plugin is not None:
        plugin.log_file_handler.setStream(stream)


def write_log_file(config: pytest.Config, text: str) -> None:
    """In the controller: a worker's record into the real ``--log-file``."""
    plugin = config.pluginmanager.get_plugin("logging-plugin")
    if plugin is not None:
        plugin.log_file_handler.stream.write(text)
        plugin.log_file_handler.flush()


def pytest_procpar_worker_starting(node: WorkerNode) -> None:
    """Controller: with ``--log-file``, every worker sends its records here (this module is
    registered as a plugin for parallel runs, see ``features.py``)."""
    config = node.config
    node.workerinput[LOG_FILE_KEY] = bool(
        config.getoption("log_file", None) or config.getini("log_file")
    )
