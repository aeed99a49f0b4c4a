"""Reports, interruptions and warnings as the plain data that frames carry.

Reports travel as pytest's own ``pytest_report_to_serializable`` dicts, never as pickled
exceptions. A report with nothing beyond what the controller already knows from its own copy of
the item (no longrepr, no sections, no extra attributes) travels as a short tuple instead.
Nothing a test puts into a report can stop it from travelling: values that cannot be sent
arrive as their ``saferepr``.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import pytest

from pytest_procpar import messages
from pytest_procpar.framing import picklable
from pytest_procpar.pytest_internals import TerminalRepr

_SUBTEST_CONTEXT = "_subtest.context"  # in a serialized SubtestReport (pytest >= 9)

# The attributes of a report made from nothing but the constructor's arguments; pytest versions
# differ in how they store some of them, so ask this one.
_PLAIN_KEYS = frozenset(vars(pytest.TestReport("x", ("x", 0, "x"), {}, "passed", None, "call")))


def encode_report(
    config: pytest.Config,
    report: pytest.TestReport,
    item: pytest.Item | None,
    keywords: messages.Keywords | None,
) -> messages.Report | messages.PlainReport:
    """A report as an event: the short form when the controller can rebuild it exactly."""
    if (
        item is not None
        and type(report) is pytest.TestReport
        and report.__dict__.keys() == _PLAIN_KEYS
        and report.longrepr is None
        and not report.sections
        and not report.user_properties
        and report.nodeid == item.nodeid
        and report.location == item.location
        and report.keywords == keywords
    ):
        return (messages.PLAIN_REPORT, report.when, report.outcome, report.duration,
                report.start, report.stop)  # fmt: skip
    return (messages.REPORT, serialize_report(config, report), shown_as_is(report.longrepr))


def shown_as_is(longrepr: object) -> bool:
    """pytest serializes a failure representation without a crash line (a doctest failure,
    a collection error, a plugin's own repr) as its text; say so, or the text would pass for
    the crash message."""
    return hasattr(longrepr, "toterminal") and not hasattr(longrepr, "reprcrash")


def encode_collect_report(
    config: pytest.Config, report: pytest.CollectReport
) -> tuple[dict[str, Any], bool]:
    """A collection report as data, and whether its failure is shown as it is."""
    data = config.hook.pytest_report_to_serializable(config=config, report=report)
    return data, shown_as_is(report.longrepr)


def decode_collect_report(
    config: pytest.Config, data: dict[str, Any], as_is: bool
) -> pytest.CollectReport:
    report: pytest.CollectReport = config.hook.pytest_report_from_serializable(
        config=config, data=data
    )
    if as_is and isinstance(report.longrepr, str):
        report.longrepr = TextRepr(report.longrepr)
    return report


def serialize_report(config: pytest.Config, report: pytest.TestReport) -> dict[str, Any]:
    """``pytest_report_to_serializable``, which cannot fail here: when the report cannot
    serialize itself (a value in it that cannot even be copied, such as a lock among a
    subtest's parameters), it is serialized again with such values made :func:`picklable`,
    and failing that as a plain ``TestReport`` with the same outcome."""
    serialize = config.hook.pytest_report_to_serializable
    try:
        data: dict[str, Any] = serialize(config=config, report=report)
        return data
    except Exception:
        pass
    sendable = copy.copy(report)
    vars(sendable).update((name, picklable(value)) for name, value in vars(report).items())
    try:
        data = serialize(config=config, report=sendable)
    except Exception:
        data = serialize(config=config, report=_plain_copy(report))
    return data


def _plain_copy(report: pytest.TestReport) -> pytest.TestReport:
    """``report`` as a plain ``TestReport``: its failure as text, its other values picklable."""
    plain = pytest.TestReport(
        nodeid=report.nodeid,
        location=report.location,
        keywords=dict.fromkeys(report.keywords, 1),
        outcome=report.outcome,
        longrepr=None if report.longrepr is None else str(report.longrepr),
        when=report.when,
        sections=[(str(name), str(text)) for name, text in report.sections],
        duration=report.duration,
        start=report.start,
        stop=report.stop,
        user_properties=picklable(report.user_properties),
    )
    for name, value in vars(report).items():
        if name not in vars(plain):
            setattr(plain, name, picklable(value))
    return plain


def decode_report(
    config: pytest.Config,
    event: messages.Report | messages.PlainReport,
    nodeid: Any,
    location: messages.Location,
    keywords: messages.Keywords,
) -> pytest.TestReport:
    """The controller's copy of a report sent by :func:`encode_report` (a plain one always
    belongs to the running item: ``nodeid``, at ``location``)."""
    if event[0] == messages.PLAIN_REPORT:
        _, when, outcome, duration, start, stop = event
        return pytest.TestReport(nodeid, location, dict(keywords), outcome, None, when, (),
                                 duration, start, stop)  # fmt: skip
    _, data, opaque = event
    report: pytest.TestReport = config.hook.pytest_report_from_serializable(
        config=config, data=data
    )
    context = data.get(_SUBTEST_CONTEXT)
    if context is not None and hasattr(report, "context"):
        # pytest's SubtestContext passes its values through saferepr when it is made, also
        # when it is rebuilt from values that are that text already ('1' for 1): keep them.
        object.__setattr__(report.context, "kwargs", dict(context["kwargs"]))
    if opaque and isinstance(report.longrepr, str):
        report.longrepr = TextRepr(report.longrepr)
    return report


def encode_interrupt(config: pytest.Config) -> dict[str, Any]:
    """The KeyboardInterrupt being handled, represented as serial pytest's terminal shows it
    (ending at the test's line), in the form reports travel in."""
    excinfo = pytest.ExceptionInfo.from_current()
    carrier = pytest.TestReport(
        nodeid="",
        location=("", None, ""),
        keywords={},
        outcome="failed",
        longrepr=excinfo.getrepr(funcargs=True),
        when="call",
    )
    data: dict[str, Any] = config.hook.pytest_report_to_serializable(config=config, report=carrier)
    return data


def decode_interrupt(config: pytest.Config, data: dict[str, Any]) -> Any:
    """The representation :func:`encode_interrupt` sent: what ``ExceptionInfo.getrepr`` gave."""
    carrier = config.hook.pytest_report_from_serializable(config=config, data=data)
    return carrier.longrepr


class TextRepr(TerminalRepr):
    """A failure representation that arrived as text: printed as it is, with no crash line."""

    def __init__(self, text: str) -> None:
        self.text = text

    def toterminal(self, tw: Any) -> None:
        for line in self.text.splitlines():
            tw.line(line)

    def __str__(self) -> str:
        return self.text


def encode_warning(message: warnings.WarningMessage) -> dict[str, Any]:
    """A recorded warning as plain data: category by import path, message as text."""
    category = message.category
    return {
        "message": str(message.message),
        "category_module": category.__module__,
        "category_name": category.__qualname__,
        "filename": message.filename,
        "lineno": message.lineno,
        "line": message.line,
    }


def decode_warning(data: dict[str, Any]) -> warnings.WarningMessage:
    """Rebuild a warning; an unimportable category becomes a UserWarning naming it."""
    category: type[Warning] = UserWarning
    text = data["message"]
    try:
        module = __import__(data["category_module"], fromlist=["_"])
        found = module
        for part in data["category_name"].split("."):
            found = getattr(found, part)
        if isinstance(found, type) and issubclass(found, Warning):
            category = found
    except Exception:
        text = f"{data['category_module']}.{data['category_name']}: {text}"
    try:
        instance = category(text)
    except Exception:
        instance = UserWarning(text)
    return warnings.WarningMessage(
        instance, type(instance), data["filename"], data["lineno"], line=data["line"]
    )
