"""Every message of the controller-worker protocol: its kind, its payload, its constructor.

A message is a plain tuple whose first element names its kind; the aliases below give each
kind its payload's types, so both sides are checked by mypy, and a ``match`` on a message
narrows it. They stay plain tuples on the wire because that is what pickles cheapest: a
NamedTuple would cost the per-test path several microseconds on each side for its class
reference. Both sides build messages with the constructors here (the report events, on the
per-test path, are built in :mod:`pytest_procpar.reports` as their aliases type them), and
answer a kind or shape they do not know with :class:`ProtocolError`. docs/protocol.rst has
the tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal, TypeAlias

Location: TypeAlias = tuple[str, int | None, str]  # what pytest's item.location holds
Verdict: TypeAlias = bool | str  # session.shouldfail / shouldstop: False or the reason

# -- events: what one item (or the session around the items) reported, in order --------------

LOGSTART: Final = "logstart"
LOGFINISH: Final = "logfinish"
REPORT: Final = "report"
PLAIN_REPORT: Final = "plain"
LOG_FILE: Final = "logfile"
WARNING: Final = "warning"
SUITE_PROPERTY: Final = "suiteproperty"

# nodeid None: the running item's (the usual case, which then need not travel)
LogStart: TypeAlias = tuple[Literal["logstart"], Location, str | None]
LogFinish: TypeAlias = tuple[Literal["logfinish"], Location, str | None]
# a serialized report; whether its failure text has no crash line (shown as it is)
Report: TypeAlias = tuple[Literal["report"], dict[str, Any], bool]
When: TypeAlias = Literal["setup", "call", "teardown"]
Outcome: TypeAlias = Literal["passed", "failed", "skipped"]
Keywords: TypeAlias = dict[str, Literal[1]]  # a report's keywords: an item's names, each 1
# a report the controller can rebuild from its own item: when, outcome, duration, start, stop
PlainReport: TypeAlias = tuple[Literal["plain"], When, Outcome, float, float, float]
LogFileRecord: TypeAlias = tuple[Literal["logfile"], str]  # a --log-file record, formatted
# a serialized warning, when, nodeid, location (as pytest_warning_recorded has them)
WarningRecorded: TypeAlias = tuple[
    Literal["warning"], dict[str, Any], str, str, tuple[str, int, str] | None
]
SuiteProperty: TypeAlias = tuple[Literal["suiteproperty"], str, str]  # record_testsuite_property
Event: TypeAlias = (
    LogStart | LogFinish | Report | PlainReport | LogFileRecord | WarningRecorded | SuiteProperty
)

# -- controller -> worker ---------------------------------------------------------------------

RUN: Final = "run"
DONE: Final = "done"
NUMBERED: Final = "numbered"
IMPORT: Final = "import"

Run: TypeAlias = tuple[Literal["run"], list[int]]  # append these item indexes to the queue
Done: TypeAlias = tuple[Literal["done"]]  # nothing more will come: finish queue and session
# Collecting in workers: the run's index of each item this worker collected, in the order it
# collected them (-1: the run leaves it out: deselected, another shard)
Numbered: TypeAlias = tuple[Literal["numbered"], list[int]]
# Collecting in workers: import and collect file ``unit`` (its position in the controller's
# walk) too, and number its items: (run index, nodeid) of each one the run keeps
Import: TypeAlias = tuple[Literal["import"], int, list[tuple[int, str]]]
ToWorker: TypeAlias = Run | Done | Numbered | Import

# -- worker -> controller ---------------------------------------------------------------------

READY: Final = "ready"
ITEM: Final = "item"
SESSION: Final = "session"
WANT: Final = "want"
STOP: Final = "stop"
FINISHED: Final = "finished"
EXITED: Final = "exit"
INTERRUPTED: Final = "interrupted"
INTERNAL_ERROR: Final = "internal"
UNUSABLE: Final = "unusable"
STARTUP_FAILED: Final = "startup"
MISMATCH: Final = "mismatch"
UNAVAILABLE: Final = "unavailable"
COLLECTED: Final = "collected"
RECYCLE: Final = "recycle"

Ready: TypeAlias = tuple[Literal["ready"]]  # up, and holding the items
# Collecting in workers: what this worker's share held (see collect_share.CollectedShare)
Collected: TypeAlias = tuple[Literal["collected"], dict[str, Any]]
ItemDone: TypeAlias = tuple[Literal["item"], int, list[Event], float]  # index, events, seconds
SessionEvents: TypeAlias = tuple[Literal["session"], list[Event]]  # reported outside any item
Want: TypeAlias = tuple[Literal["want"]]  # the queue is running low
StopRun: TypeAlias = tuple[Literal["stop"], Verdict, Verdict]  # the session asked to stop
Finished: TypeAlias = tuple[Literal["finished"], dict[str, Any]]  # clean end: workeroutput
# The worker's loop ended early (the worker then exits); each ends the whole run.
Exited: TypeAlias = tuple[Literal["exit"], str, int | None]  # pytest.exit(msg, returncode)
# Ctrl-C: the interruption's representation (serialized), the item it hit if any
Interrupted: TypeAlias = tuple[Literal["interrupted"], dict[str, Any], int | None]
InternalError: TypeAlias = tuple[Literal["internal"], str]  # a bug outside any test: traceback
StartupFailed: TypeAlias = tuple[Literal["startup"], str]  # could not become a worker: why
Mismatch: TypeAlias = tuple[Literal["mismatch"], str]  # a collecting worker found other tests
Unavailable: TypeAlias = tuple[Literal["unavailable"], str]  # a remote worker could not start
# Only that item fails, and a new worker takes over: the item, the traceback
Unusable: TypeAlias = tuple[Literal["unusable"], int, str]
# Over a recycling limit after its last test (the limit, memory or tests; what it measured): it
# runs no more and finishes its session; what it was handed and did not start goes to other
# workers, and a fresh worker takes its place
Recycle: TypeAlias = tuple[Literal["recycle"], str, str]
Fatal: TypeAlias = Exited | Interrupted | InternalError | StartupFailed | Mismatch | Unavailable
FromWorker: TypeAlias = (
    Ready
    | Collected
    | ItemDone
    | SessionEvents
    | Want
    | StopRun
    | Finished
    | Unusable
    | Recycle
    | Fatal
)


class ProtocolError(Exception):
    """A message this side cannot read: the two ends disagree on the protocol."""

    def __init__(self, message: tuple[object, ...]) -> None:
        super().__init__(f"procpar: unknown or malformed message {message!r:.200}")


def log_start(location: Location, nodeid: str | None) -> LogStart:
    return (LOGSTART, location, nodeid)


def log_finish(location: Location, nodeid: str | None) -> LogFinish:
    return (LOGFINISH, location, nodeid)


def log_file_record(text: str) -> LogFileRecord:
    return (LOG_FILE, text)


def warning_recorded(
    data: dict[str, Any], when: str, nodeid: str, location: tuple[str, int, str] | None
) -> WarningRecorded:
    return (WARNING, data, when, nodeid, location)


def suite_property(name: str, value: str) -> SuiteProperty:
    return (SUITE_PROPERTY, name, value)


def run(indexes: list[int]) -> Run:
    return (RUN, indexes)


def done() -> Done:
    return (DONE,)


def numbered(indexes: list[int]) -> Numbered:
    return (NUMBERED, indexes)


def import_unit(unit: int, numbered: list[tuple[int, str]]) -> Import:
    return (IMPORT, unit, numbered)


def ready() -> Ready:
    return (READY,)


def collected(share: dict[str, Any]) -> Collected:
    return (COLLECTED, share)


def item_done(index: int, events: list[Event], seconds: float) -> ItemDone:
    return (ITEM, index, events, seconds)


def session_events(events: list[Event]) -> SessionEvents:
    return (SESSION, events)


def want() -> Want:
    return (WANT,)


def stop_run(shouldfail: Verdict, shouldstop: Verdict) -> StopRun:
    return (STOP, shouldfail, shouldstop)


def finished(workeroutput: dict[str, Any]) -> Finished:
    return (FINISHED, workeroutput)


def exited(reason: str, returncode: int | None) -> Exited:
    return (EXITED, reason, returncode)


def interrupted(where: dict[str, Any], index: int | None) -> Interrupted:
    return (INTERRUPTED, where, index)


def internal_error(trace: str) -> InternalError:
    return (INTERNAL_ERROR, trace)


def unusable(index: int, trace: str) -> Unusable:
    return (UNUSABLE, index, trace)


def recycle(limit: str, detail: str) -> Recycle:
    return (RECYCLE, limit, detail)


def startup_failed(why: str) -> StartupFailed:
    return (STARTUP_FAILED, why)


def mismatch(why: str) -> Mismatch:
    return (MISMATCH, why)


def unavailable(why: str) -> Unavailable:
    return (UNAVAILABLE, why)


def attempt_failed(events: Sequence[Event]) -> bool:
    """Whether an attempt's events hold a failed report (an xfail is no failure)."""
    for event in events:
        if event[0] == PLAIN_REPORT and event[2] == "failed":
            return True
        if event[0] == REPORT:
            data = event[1]
            if data.get("outcome") == "failed" and "wasxfail" not in data:
                return True
    return False
