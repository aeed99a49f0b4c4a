"""The plugin matrix, reporting plugins: the files they write from a parallel run hold what a
serial run's hold.

Each test runs one small suite plainly and on two workers (forked or spawned, see
``matrix.METHODS``), checks that exit code, summary counts and per-test outcomes agree
(``matrix.run_pair``), then compares the plugin's own file, normalized for what legitimately
differs: durations, timestamps, ids the plugin makes up, worker ids and the order of tests.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from matrix import (
    METHODS,
    PLUGINS_ALONE,
    assert_same,
    both,
    load,
    normalized,
    run_pair,
)

pytestmark = PLUGINS_ALONE

# Passes, fails, a skip, an xfail, a setup error, output, a log record, a user property and a
# warning: what report files show.
SUITE = """
import logging
import warnings

import pytest

@pytest.fixture
def broken():
    raise RuntimeError("setup broke")

@pytest.mark.parametrize("n", [1, 2, 3])
def test_square(n, record_property):
    record_property("square", n * n)
    print(f"square of {n}")
    assert n * n < 9

def test_logs():
    logging.getLogger("app").warning("something to see")

def test_skipped():
    pytest.skip("not on this platform")

@pytest.mark.xfail(reason="known bug")
def test_known_bug():
    assert False

def test_needs_broken(broken):
    pass

class TestGroup:
    def test_one(self):
        pass

    def test_warns(self):
        warnings.warn(UserWarning("deprecated thing"))
"""
COUNTS = {"passed": 5, "failed": 1, "skipped": 1, "xfailed": 1, "errors": 1, "warnings": 1}


# -- pytest-html ---------------------------------------------------------------------------

HTML_EXTRAS = """
import pytest_html

def test_with_extras(extras):
    extras.append(pytest_html.extras.url("https://example.com/build/7"))
    extras.append(pytest_html.extras.text("request log", name="log"))
"""


HTML = load("pytest_metadata.plugin", "pytest_html.fixtures", "pytest_html.plugin")


def html_results(path: Path) -> dict[str, Any]:
    """The report's data (pytest-html 4 embeds it as JSON): per test, what the results table
    shows, and the environment table. A worker's report has pytest's worker line in its log
    ("[gw0] linux -- Python ..."), as under xdist: it is left out, and so, for a passing test,
    is the "No log output captured." the log shows instead without it."""
    found = re.search(r'data-jsonblob="([^"]*)"', path.read_text())
    assert found, f"no data in {path.name}"
    data = json.loads(html.unescape(found.group(1)))
    tests = {
        nodeid: sorted(
            (
                row["testId"],
                row["result"],
                normalized(row["log"]).strip() or "No log output captured.",
                [(extra["name"], extra["format_type"]) for extra in row["extras"]],
            )
            for row in rows
        )
        for nodeid, rows in data["tests"].items()
    }
    plugins = data["environment"].get("Plugins", {})
    for name in ("procpar", "xdist"):  # the runner
        plugins.pop(name, None)
    run_count = re.search(r'<p class="run-count">(\d+ tests?) took', path.read_text())
    return {
        "tests": tests,
        "environment": data["environment"],
        "run-count": run_count.group(1) if run_count else None,
    }


@pytest.mark.parametrize("method", METHODS)
def test_html_report(pytester: pytest.Pytester, method: str) -> None:
    pytest.importorskip("pytest_html")
    pytester.makepyfile(test_suite=SUITE, test_extras=HTML_EXTRAS)
    pair = run_pair(pytester, method, "--html={run}.html", plugins=HTML)
    assert pair.expected.parseoutcomes() == {**COUNTS, "passed": 6}
    expected, got = (html_results(path) for path in both(pytester.path, "{run}.html"))
    assert len(expected["tests"]) == 10
    assert_same(expected, got)


# -- pytest-reportlog ----------------------------------------------------------------------


REPORTLOG = load("pytest_reportlog.plugin")


def report_log(path: Path) -> Counter[tuple[Any, ...]]:
    """The records of a report log, as a multiset (a duplicate counts twice), without
    durations, timestamps and worker details."""
    records: Counter[tuple[Any, ...]] = Counter()
    for line in path.read_text().splitlines():
        record = json.loads(line)
        kind = record["$report_type"]
        if kind == "TestReport":
            key: tuple[Any, ...] = (
                record["nodeid"],
                record["when"],
                record["outcome"],
                normalized(json.dumps(record["longrepr"], sort_keys=True)),
                json.dumps(record["sections"]),
                json.dumps(record["user_properties"]),
            )
        elif kind == "CollectReport":
            key = (record["nodeid"], record["outcome"], len(record["result"] or ()))
        elif kind == "WarningMessage":
            key = tuple(record[name] for name in ("category", "message", "when", "lineno"))
        elif kind == "SessionFinish":
            key = (record["exitstatus"],)
        else:
            key = ()
        records[(kind, *key)] += 1
    return records


@pytest.mark.parametrize("method", METHODS)
def test_report_log(pytester: pytest.Pytester, method: str) -> None:
    """One record per report, as serially: none missing, none written twice (by a worker and
    by the controller)."""
    pytest.importorskip("pytest_reportlog")
    pytester.makepyfile(test_suite=SUITE)
    pair = run_pair(pytester, method, "--report-log={run}.jsonl", plugins=REPORTLOG)
    assert pair.expected.parseoutcomes() == COUNTS
    expected, got = (report_log(path) for path in both(pytester.path, "{run}.jsonl"))
    test_reports = [n for key, n in expected.items() if key[0] == "TestReport"]
    assert sum(test_reports) == 9 * 3 - 1  # the setup error has no call
    assert set(test_reports) == {1}
    assert_same(expected, got)


# -- pytest-json-report --------------------------------------------------------------------

JSON_METADATA = """
def test_with_metadata(json_metadata):
    json_metadata["ticket"] = "PROJ-12"
    json_metadata["retries"] = 0
"""


JSONREPORT = load("pytest_jsonreport.plugin")


# What a log record says, not when or in which process it was made.
LOG_RECORD = ("name", "msg", "args", "levelname", "filename", "lineno", "funcName", "exc_text")


def json_stage(data: dict[str, Any]) -> dict[str, Any]:
    stage = {key: value for key, value in data.items() if key not in ("duration", "longrepr")}
    longrepr = normalized(data.get("longrepr", "")).strip()
    if longrepr:
        stage["longrepr"] = longrepr
    if "log" in data:
        stage["log"] = [{key: record[key] for key in LOG_RECORD} for record in data["log"]]
    return stage


def json_report(path: Path) -> dict[str, Any]:
    """The report without durations, timestamps, log records' processes, worker lines and (sorted)
    test order."""
    data = json.loads(path.read_text())
    tests = []
    for test in data["tests"]:
        stages = {
            when: json_stage(test[when]) for when in ("setup", "call", "teardown") if when in test
        }
        tests.append((test["nodeid"], test["outcome"], test.get("metadata"), stages))
    return {
        "exitcode": data["exitcode"],
        "summary": data["summary"],
        "collectors": sorted(
            (c["nodeid"], c["outcome"], len(c["result"])) for c in data.get("collectors", [])
        ),
        "tests": sorted(tests, key=lambda test: test[0]),
        "warnings": sorted(
            (w["category"], w["message"], w["when"]) for w in data.get("warnings", [])
        ),
    }


@pytest.mark.parametrize("method", METHODS)
def test_json_report(pytester: pytest.Pytester, method: str) -> None:
    pytest.importorskip("pytest_jsonreport")
    pytester.makepyfile(test_suite=SUITE, test_metadata=JSON_METADATA)
    pair = run_pair(
        pytester, method, "--json-report", "--json-report-file={run}.json", plugins=JSONREPORT
    )
    assert pair.expected.parseoutcomes() == {**COUNTS, "passed": 6}
    expected, got = (json_report(path) for path in both(pytester.path, "{run}.json"))
    assert expected["summary"]["total"] == 10
    assert ("test_metadata.py::test_with_metadata", "passed") in {
        test[:2] for test in expected["tests"]
    }
    assert_same(expected, got)


# -- allure-pytest -------------------------------------------------------------------------

ALLURE_TESTS = """
import allure
import pytest

@allure.feature("checkout")
@allure.title("pay by card")
def test_pay():
    with allure.step("fill the form"):
        allure.attach("card 4111", name="form", attachment_type=allure.attachment_type.TEXT)
    with allure.step("submit"):
        pass

@allure.feature("checkout")
@pytest.mark.parametrize("amount", [10, 0])
def test_amount(amount):
    with allure.step(f"charge {amount}"):
        assert amount > 0, "nothing to charge"

@pytest.fixture
def cart():
    with allure.step("fill the cart"):
        yield ["book"]

def test_cart(cart):
    assert cart == ["book"]

def test_later():
    pytest.skip("payment provider down")
"""


ALLURE = load("allure_pytest.plugin")


def steps(entry: dict[str, Any]) -> list[Any]:
    return [(step["name"], step["status"], steps(step)) for step in entry.get("steps", [])]


def allure_results(directory: Path) -> dict[str, Any]:
    """Per test result file: name, status and its message, steps, attachments, parameters and
    labels (but the process' thread and host); fixture containers by what they hold."""
    results = []
    for path in directory.glob("*-result.json"):
        data = json.loads(path.read_text())
        labels = sorted(
            (label["name"], label["value"])
            for label in data["labels"]
            if label["name"] not in ("thread", "host")
        )
        attachments = [(a["name"], a["type"]) for a in data.get("attachments", [])]
        for step in data.get("steps", []):
            attachments += [(a["name"], a["type"]) for a in step.get("attachments", [])]
        parameters = sorted((p["name"], p["value"]) for p in data.get("parameters", []))
        message = data.get("statusDetails", {}).get("message", "")
        status = (data["fullName"], data["name"], data["status"], message.splitlines()[:1])
        results.append((*status, steps(data), attachments, parameters, labels))
    fixtures: Counter[tuple[Any, ...]] = Counter()
    for path in directory.glob("*-container.json"):
        data = json.loads(path.read_text())
        for kind in ("befores", "afters"):
            for fixture in data.get(kind, []):
                entry = (kind, fixture["name"], fixture.get("status"), repr(steps(fixture)))
                fixtures[(*entry, len(data.get("children", [])))] += 1
    return {"results": sorted(results, key=repr), "fixtures": fixtures}


@pytest.mark.parametrize("method", METHODS)
def test_allure_results(pytester: pytest.Pytester, method: str) -> None:
    """One result file per test, with its status, steps and attachments, as serially."""
    pytest.importorskip("allure_pytest")
    pytester.makepyfile(test_shop=ALLURE_TESTS)
    pair = run_pair(pytester, method, "--alluredir={run}-allure", plugins=ALLURE)
    assert pair.expected.parseoutcomes() == {"passed": 3, "failed": 1, "skipped": 1}
    expected, got = (allure_results(path) for path in both(pytester.path, "{run}-allure"))
    assert len(expected["results"]) == 5
    assert_same(expected, got)
