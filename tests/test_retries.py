"""Retries: a failed or crashed test runs again, on another worker when there is one; one that
passes on a retry is FLAKY (its letter, its word, its count, its section, JUnit's
``flakyFailure``), and only final verdicts count for ``-x``, the exit code and the reports.

The inner suites' tests fail on their first attempt only by leaving a file behind, and write
down which process ran each attempt.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import junit_suite, parallel, run

SUITE = """
    import os, pathlib
    import pytest

    def attempt(name):
        '''Which attempt this is (1, 2, ...), written down with the process that runs it.'''
        log = pathlib.Path(f"attempts-{name}.txt")
        with log.open("a") as out:
            out.write(f"{os.getpid()}\\n")
        return len(log.read_text().split())

    def test_fails_once():
        assert attempt("fails_once") > 1, "first attempt fails"

    def test_crashes_once():
        if attempt("crashes_once") == 1:
            os._exit(3)

    def test_always():
        attempt("always")
        assert False, "always"

    @pytest.mark.parametrize("n", range(4))
    def test_passes(n):
        pass
"""


def attempts(pytester: pytest.Pytester, name: str) -> list[str]:
    return (pytester.path / f"attempts-{name}.txt").read_text().split()


def cases(path: Path) -> dict[str | None, list[str]]:
    suite = junit_suite(path)
    return {case.get("name"): [child.tag for child in case] for case in suite.iter("testcase")}


@pytest.mark.parametrize(
    "how",
    [("-n", "2"), ("-n", "2", "--procpar-start", "spawn"), ("--tx", "2*popen")],
    ids=["fork", "spawn", "--tx"],
)
def test_flaky_and_failed_verdicts(pytester: pytest.Pytester, how: tuple[str, ...]) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = run(pytester, *how, "--procpar-retries", "2", "--junitxml=junit.xml", "-rA")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert result.parseoutcomes() == {"failed": 1, "flaky": 2, "passed": 4}
    output = result.stdout.str()
    flaky_section = output[output.index("= flaky tests =") : output.index("short test summary")]
    for shown in (  # in the order they passed
        "test_suite.py::test_fails_once (attempt 1 of 2, gw",
        "AssertionError: first attempt fails",
        "test_suite.py::test_crashes_once (attempt 1 of 2, gw",
        "crashed while running test_suite.py::test_crashes_once",
    ):
        assert shown in flaky_section, output
    short_summary = output[output.index("short test summary") :]
    for shown in (
        "FAILED test_suite.py::test_always - AssertionError: always",
        "FLAKY test_suite.py::test_fails_once - passed on attempt 2",
        "FLAKY test_suite.py::test_crashes_once - passed on attempt 2",
    ):
        assert shown in short_summary, output
    assert "PASSED test_suite.py::test_fails_once" not in output
    for name in ("fails_once", "crashes_once"):
        first, second = attempts(pytester, name)
        assert first != second  # the retry ran in another process
    assert len(attempts(pytester, "always")) == 3  # the first run and two retries
    found = cases(pytester.path / "junit.xml")
    assert found["test_fails_once"] == ["flakyFailure"]
    assert found["test_crashes_once"] == ["flakyFailure"]
    assert found["test_always"] == ["failure", "rerunFailure", "rerunFailure"]
    assert found["test_passes[0]"] == []
    suite = junit_suite(pytester.path / "junit.xml")
    assert (suite.get("tests"), suite.get("failures")) == ("7", "1")


def test_flaky_fail_makes_a_flaky_test_fail_the_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    args = ("--procpar-retries", "1", "-k", "fails_once or passes")
    passing = parallel(pytester, *args)
    assert passing.ret == pytest.ExitCode.OK
    assert passing.parseoutcomes() == {"flaky": 1, "passed": 4, "deselected": 2}
    (pytester.path / "attempts-fails_once.txt").unlink()
    failing = parallel(pytester, *args, "--procpar-flaky-fail")
    assert failing.ret == pytest.ExitCode.TESTS_FAILED
    assert failing.parseoutcomes() == passing.parseoutcomes()


def test_the_marker_retries_its_tests_only(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_marked="""
        import pathlib
        import pytest

        @pytest.mark.procpar_flaky(retries=1)
        def test_fails_once():
            log = pathlib.Path("marked.txt")
            first = not log.exists()
            log.write_text("ran")
            assert not first

        def test_fails():
            assert False
        """
    )
    result = parallel(pytester)
    assert result.parseoutcomes() == {"failed": 1, "flaky": 1}


def test_only_final_verdicts_stop_the_run(pytester: pytest.Pytester) -> None:
    """``-x``: a first attempt that fails stops nothing; a test that fails for good does."""
    pytester.makepyfile(test_suite=SUITE)
    flaky = parallel(pytester, "-x", "--procpar-retries", "1", "-k", "fails_once or passes")
    assert flaky.ret == pytest.ExitCode.OK
    assert flaky.parseoutcomes() == {"flaky": 1, "passed": 4, "deselected": 2}
    assert "stopping after" not in flaky.stdout.str()
    failing = parallel(pytester, "-x", "--procpar-retries", "1", "-k", "always")
    assert failing.ret == pytest.ExitCode.TESTS_FAILED
    failing.stdout.fnmatch_lines(["*stopping after 1 failures*"])
    assert failing.parseoutcomes()["failed"] == 1
