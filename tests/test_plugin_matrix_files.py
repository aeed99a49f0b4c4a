"""The plugin matrix, plugins whose files a later run or another tool reads: syrupy's
snapshots, pytest-cov's coverage data and pytest-bdd's cucumber JSON hold what a serial run's
hold.

Each test runs one small suite plainly and on two workers (forked or spawned, see
``matrix.METHODS``), checks that exit code, summary counts and per-test outcomes agree
(``matrix.run_pair``), then compares the files, normalized for what legitimately differs.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from harness import reference
from matrix import (
    METHODS,
    PLUGINS_ALONE,
    assert_same,
    both,
    load,
    parallel,
    run_pair,
    with_xdist,
    xdist_as,
)

pytestmark = PLUGINS_ALONE

# -- syrupy --------------------------------------------------------------------------------

SNAPSHOTS = """
import pytest

def test_user(snapshot):
    assert {{"name": "ada", "roles": ["admin", "dev"]}} == snapshot

@pytest.mark.parametrize("n", [1, 2, 3])
def test_table(n, snapshot):
    assert [n * i for i in range(4)] == snapshot

def test_two_snapshots(snapshot):
    assert "first" == snapshot
    assert {second!r} == snapshot
{extra}
"""
OBSOLETE = """
def test_obsolete(snapshot):
    assert "to be deleted" == snapshot
"""
SYRUPY_SUMMARY = re.compile(r"^\d+ snapshots? \w+.*$", re.MULTILINE)


SYRUPY = load("syrupy")


def snapshot_files(directory: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(directory.rglob("*.ambr"))}


@pytest.mark.parametrize(
    ("method", "xdist"), with_xdist(blocked=("fork", "spawn"), absent=("fork",))
)
def test_syrupy_snapshots(pytester: pytest.Pytester, method: str, xdist: str) -> None:
    """``--snapshot-update`` on two workers writes the serial run's snapshot file; a later check
    reports the same failed and unused snapshots as serially (and deletes nothing). syrupy
    merges the workers' reports only when it finds xdist by name: with xdist blocked (``-p
    procpar -p no:xdist``) and not found, ``--snapshot-update`` deleted every snapshot the
    workers had written or used."""
    pytest.importorskip("syrupy")
    xdist_options = xdist_as(xdist, pytester)
    snapshots = pytester.path / "__snapshots__"
    pytester.makepyfile(test_snap=SNAPSHOTS.format(second="second", extra=OBSOLETE))
    created = reference(pytester, "--snapshot-update", plugins=SYRUPY)
    assert created.ret == pytest.ExitCode.OK
    expected_files = snapshot_files(pytester.path)
    assert len(expected_files) == 1
    shutil.rmtree(snapshots)
    result = parallel(
        pytester, "--snapshot-update", method=method, plugins=(*SYRUPY, *xdist_options)
    )
    assert result.ret == pytest.ExitCode.OK
    assert SYRUPY_SUMMARY.findall(result.stdout.str()) == SYRUPY_SUMMARY.findall(
        created.stdout.str()
    )
    assert snapshot_files(pytester.path) == expected_files

    # One snapshot no longer matches, and test_obsolete's is not used any more.
    pytester.makepyfile(test_snap=SNAPSHOTS.format(second="changed", extra=""))
    pair = run_pair(pytester, method, plugins=SYRUPY, procpar_args=xdist_options)
    assert pair.expected.parseoutcomes() == {"passed": 4, "failed": 1}
    summary = SYRUPY_SUMMARY.findall(pair.expected.stdout.str())
    assert summary == ["1 snapshot failed. 5 snapshots passed. 1 snapshot unused."]
    assert SYRUPY_SUMMARY.findall(pair.result.stdout.str()) == summary
    assert snapshot_files(pytester.path) == expected_files


# -- pytest-cov ----------------------------------------------------------------------------

PACKAGE = """
def classify(n):
    if n < 0:
        return "negative"
    if n == 0:
        return "zero"
    return "positive"

def describe(items):
    if not items:
        return "empty"
    return ", ".join(sorted(items))

def never_called():
    return "untested"
"""
COV_TESTS = """
import pytest
from shop import classify, describe

@pytest.mark.parametrize("n, kind", [(1, "positive"), (5, "positive"), (0, "zero")])
def test_classify(n, kind):
    assert classify(n) == kind

def test_describe():
    assert describe(["b", "a"]) == "a, b"

def test_describe_fails():
    assert describe([]) == "nothing"
"""
COVERAGE_KEYS = ("executed_lines", "missing_lines", "executed_branches", "missing_branches")


PYTEST_COV = load("pytest_cov.plugin")
COV = ("--cov=shop", "--cov-branch")


def coverage_json(path: Path) -> dict[str, Any]:
    files = json.loads(path.read_text())["files"]
    return {
        name: {key: data[key] for key in (*COVERAGE_KEYS, "summary")}
        for name, data in files.items()
    }


def coverage_table(result: pytest.RunResult) -> list[str]:
    """The term-missing table's rows (file, statements, misses, branches, ... missing)."""
    return [line for line in result.outlines if re.match(r"^(shop|TOTAL)\S*\s+\d+", line)]


@pytest.mark.parametrize("method", METHODS)
def test_coverage_report(pytester: pytest.Pytester, method: str) -> None:
    """Lines and branches, the terminal table and ``--cov-fail-under``'s verdict as serially."""
    pytest.importorskip("pytest_cov")
    pytester.mkpydir("shop").joinpath("__init__.py").write_text(PACKAGE)
    pytester.makepyfile(test_shop=COV_TESTS)
    reports = ("--cov-report=term-missing", "--cov-report=json:{run}-cov.json")
    pair = run_pair(pytester, method, *COV, *reports, "--cov-fail-under=95", plugins=PYTEST_COV)
    assert pair.expected.parseoutcomes() == {"passed": 4, "failed": 1}
    expected, got = (coverage_json(path) for path in both(pytester.path, "{run}-cov.json"))
    assert expected["shop/__init__.py"]["missing_lines"]
    assert_same(expected, got)
    assert coverage_table(pair.result) == coverage_table(pair.expected)
    assert len(coverage_table(pair.expected)) == 2
    fail_under = "FAIL Required test coverage of 95% not reached*"
    pair.expected.stdout.fnmatch_lines([fail_under])
    pair.result.stdout.fnmatch_lines([fail_under])


# -- pytest-bdd ----------------------------------------------------------------------------

FEATURE = """\
Feature: Cart
    Scenario: Add a book
        Given an empty cart
        When I add a "book"
        Then the cart holds 1 item

    Scenario: Add two books
        Given an empty cart
        When I add a "book"
        And I add a "book"
        Then the cart holds 2 items

    Scenario: Miscounted
        Given an empty cart
        When I add a "pen"
        Then the cart holds 3 items

    Scenario Outline: Add things
        Given an empty cart
        When I add a "<thing>"
        Then the cart holds 1 item

        Examples:
        | thing |
        | lamp  |
        | chair |
"""

STEPS = """
import pytest
from pytest_bdd import given, parsers, scenarios, then, when

scenarios("cart.feature")

@given("an empty cart", target_fixture="cart")
def empty_cart():
    return []

@when(parsers.parse('I add a "{thing}"'))
def add(cart, thing):
    cart.append(thing)

@then(parsers.re(r"the cart holds (?P<count>\\d+) items?"))
def holds(cart, count):
    assert len(cart) == int(count)
"""


BDD = load("pytest_bdd.plugin")


def cucumber(path: Path) -> list[Any]:
    """Scenarios of a cucumber JSON report with their steps' statuses, without durations."""
    scenarios = []
    for feature in json.loads(path.read_text()):
        for element in feature["elements"]:
            scenario_steps = [
                (step["keyword"], step["name"], step["result"]["status"])
                for step in element["steps"]
            ]
            scenarios.append((feature["name"], element["name"], element["id"], scenario_steps))
    return sorted(scenarios)


@pytest.mark.parametrize("method", METHODS)
def test_bdd_scenarios(pytester: pytest.Pytester, method: str) -> None:
    """Scenarios pass and fail as serially, and the cucumber JSON report lists every one."""
    pytest.importorskip("pytest_bdd")
    (pytester.path / "cart.feature").write_text(FEATURE)
    pytester.makepyfile(test_cart=STEPS)
    pair = run_pair(pytester, method, "--cucumber-json={run}.json", plugins=BDD)
    assert pair.expected.parseoutcomes() == {"passed": 4, "failed": 1}
    expected, got = (cucumber(path) for path in both(pytester.path, "{run}.json"))
    assert len(expected) == 5
    assert_same(expected, got)
