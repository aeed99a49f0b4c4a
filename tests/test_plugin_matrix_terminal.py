"""The plugin matrix, plugins that replace pytest's terminal reporter: pytest-sugar's and
pytest-instafail's output from a parallel run shows what a serial run's shows.

Each test runs one small suite plainly and on two workers (forked or spawned, see
``matrix.METHODS``), compares them with ``matrix.run_pair`` (exit code, short test summary,
each test's outcome and message), then compares what the plugin prints.
"""

from __future__ import annotations

import pytest
from matrix import (
    FAILURE_HEADER,
    METHODS,
    PLUGINS_ALONE,
    assert_same,
    failure_sections,
    load,
    run_pair,
    with_xdist,
    xdist_as,
)

pytestmark = PLUGINS_ALONE

SUITE = """
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("setup broke")

@pytest.mark.parametrize("i", range(6))
def test_param(i):
    assert i not in (2, 4), f"{i} is not allowed"

def test_skipped():
    pytest.skip("not here")

def test_error(broken):
    pass

class TestGroup:
    def test_one(self):
        pass

    def test_two(self):
        assert [1, 2] == [1, 3]
"""


def headers(lines: list[str]) -> list[str]:
    return sorted(match.group(1) for line in lines if (match := FAILURE_HEADER.match(line)))


def sugar_results(result: pytest.RunResult) -> list[str]:
    """pytest-sugar's closing summary ("Results (0.05s):" and its lines), sorted, without the
    time."""
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if line.startswith("Results ("))
    return sorted(line.strip() for line in lines[start + 1 :] if line.strip())


@pytest.mark.parametrize(("method", "xdist"), with_xdist(blocked=("fork",), absent=("fork",)))
def test_sugar_output(pytester: pytest.Pytester, method: str, xdist: str) -> None:
    """pytest-sugar's progress and summary show every test once (its reporter runs where
    the reports are replayed), and no worker prints its own. (pytest-sugar takes its xdist
    path when it finds xdist by name and can import it: not where xdist is absent.)"""
    pytest.importorskip("pytest_sugar")
    pytester.makepyfile(test_suite=SUITE)
    pair = run_pair(
        pytester,
        method,
        "--force-sugar",
        plugins=load("pytest_sugar"),
        procpar_args=xdist_as(xdist, pytester),
        counts=False,
    )
    expected = sugar_results(pair.expected)
    assert {"1 error", "1 skipped", "3 failed", "5 passed"} <= set(expected), expected
    assert_same(expected, sugar_results(pair.result))
    assert_same(headers(pair.expected.outlines), headers(pair.result.outlines))
    assert len(headers(pair.expected.outlines)) == 4


def instafail_sections(result: pytest.RunResult) -> list[str]:
    """The failure sections printed before the closing summary, with their header."""
    lines = result.outlines
    end = next(i for i, line in enumerate(lines) if "short test summary info" in line)
    return headers(lines[:end])


@pytest.mark.parametrize("method", METHODS)
def test_instafail_output(pytester: pytest.Pytester, method: str) -> None:
    """Each failure is printed as it happens, once, with its traceback, as serially."""
    pytest.importorskip("pytest_instafail")
    pytester.makepyfile(test_suite=SUITE)
    pair = run_pair(pytester, method, "--instafail", plugins=load("pytest_instafail"))
    assert pair.expected.parseoutcomes() == {"passed": 5, "failed": 3, "skipped": 1, "errors": 1}
    expected = instafail_sections(pair.expected)
    failed = ["test_param[2]", "test_param[4]", "TestGroup.test_two"]
    assert expected == sorted([*failed, "ERROR at setup of test_error"])
    assert_same(expected, instafail_sections(pair.result))
    assert "= FAILURES =" not in pair.result.stdout.str()
    expected, got = (
        failure_sections(run.outlines, lambda line: line.startswith("E "))
        for run in (pair.expected, pair.result)
    )
    assert_same(expected, got)
