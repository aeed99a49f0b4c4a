"""What workers print outside pytest's capture reaches the terminal tagged, a line at a time."""

from __future__ import annotations

import re

import pytest
from harness import output, runpytest

PRINTING = """
import sys

def test_{name}():
    for i in range(20):
        print("{name}-line-" + str(i))
        print("{name}-err-" + str(i), file=sys.stderr)
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_dash_s_lines_are_tagged_and_in_order(pytester: pytest.Pytester, method: str) -> None:
    for name in ("alpha", "beta", "gamma"):
        pytester.makepyfile(**{f"test_{name}": PRINTING.format(name=name)})
    result = runpytest(pytester, "-p", "procpar", "-n", "2", "-s", "--procpar-start", method)
    result.assert_outcomes(passed=3)
    for stream in (result.outlines, result.errlines):
        kind = "line" if stream is result.outlines else "err"
        for name in ("alpha", "beta", "gamma"):
            pattern = re.compile(rf"^\[(gw\d+)\] {name}-{kind}-(\d+)$")
            matches = [pattern.match(line) for line in stream]
            found = [match for match in matches if match]
            assert [int(match[2]) for match in found] == list(range(20)), name
            assert len({match[1] for match in found}) == 1  # one test, one worker
        assert not any(f"-{kind}-" in line and not line.startswith("[gw") for line in stream)


def test_captured_output_stays_captured(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PRINTING.format(name="quiet"))
    result = runpytest(pytester, "-p", "procpar", "-n", "2")
    result.assert_outcomes(passed=1)
    assert "quiet-line" not in result.stdout.str()
    assert "quiet-err" not in result.stderr.str()


def test_live_log_records_are_tagged(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import logging

        def test_logs():
            logging.getLogger("app").warning("live-record-marker")
        """
    )
    result = runpytest(pytester, "-p", "procpar", "-n", "2", "--log-cli-level=WARNING")
    result.assert_outcomes(passed=1)
    result.stdout.re_match_lines(
        [r"^\[gw\d+\] WARNING +app:test_live_log_records_are_tagged.py:\d+ live-record-marker$"]
    )


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_log_file_written_by_the_controller_only(pytester: pytest.Pytester, method: str) -> None:
    pytester.makepyfile(
        """
        import logging, pytest

        @pytest.mark.parametrize("n", range(30))
        def test_logs(n):
            logging.getLogger("app").warning("file-record-%d", n)
        """
    )
    pytester.makefile(".log", run="stale content the run must replace")
    args = ["-p", "procpar", "-n", "2", "--procpar-start", method, "--log-file=run.log"]
    result = runpytest(pytester, *args, "--log-file-level=WARNING")
    result.assert_outcomes(passed=30)
    lines = (pytester.path / "run.log").read_text().splitlines()
    assert sorted(lines, key=lambda line: int(line.rsplit("-", 1)[1])) == [
        f"WARNING  app:test_log_file_written_by_the_controller_only.py:5 file-record-{n}"
        for n in range(30)
    ]


def log_file_lines(pytester: pytest.Pytester, conftest: str) -> list[str]:
    """What ``--log-file`` holds after two passing tests on two workers, sorted."""
    pytester.makeconftest(conftest)
    pytester.makepyfile("def test_a():\n    pass\n\ndef test_b():\n    pass\n")
    args = ["-p", "procpar", "-n", "2", "--log-file=run.log", "--log-file-level=WARNING"]
    result = runpytest(pytester, *args, "--log-file-format=%(message)s")
    result.assert_outcomes(passed=2)
    return sorted((pytester.path / "run.log").read_text().splitlines())


def test_log_file_gets_what_workers_log_after_their_last_test(pytester: pytest.Pytester) -> None:
    conftest = """
        import logging

        def pytest_sessionfinish(session):
            workerinput = getattr(session.config, "workerinput", None)
            if workerinput is not None:
                logging.getLogger("app").warning("finished %s", workerinput["workerid"])
    """
    assert log_file_lines(pytester, conftest) == ["finished gw0", "finished gw1"]


def test_log_file_gets_what_workers_log_between_their_tests(pytester: pytest.Pytester) -> None:
    """A record logged outside any test (here by a run-loop wrapper, before the first test
    starts) travels with the next test's events."""
    conftest = """
        import logging

        import pytest

        @pytest.hookimpl(wrapper=True)
        def pytest_runtestloop(session):
            workerinput = getattr(session.config, "workerinput", None)
            if workerinput is not None:
                logging.getLogger("app").warning("loop %s", workerinput["workerid"])
            return (yield)
    """
    assert log_file_lines(pytester, conftest) == ["loop gw0", "loop gw1"]


def test_output_the_terminal_cannot_encode_is_escaped(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The controller writes a round of output at once; text its terminal's encoding cannot
    take is escaped, as pytest's terminal writer does, and the run goes on."""
    pytester.makepyfile(
        """
        import os

        def test_prints_utf8():
            os.write(1, "caf\\u00e9 au lait\\n".encode())
        """
    )
    monkeypatch.setenv("PYTHONIOENCODING", "ascii")
    result = runpytest(pytester, "-p", "procpar", "-n", "2", "-s")
    result.assert_outcomes(passed=1)
    assert r"caf\xe9 au lait" in result.stdout.str()
    assert "INTERNALERROR" not in output(result)
