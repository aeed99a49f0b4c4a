"""``once_per_run`` fixtures: set up once in the controller, shared by every worker."""

from __future__ import annotations

import pytest
from harness import runpytest

CONFTEST = """
import os
from pytest_procpar import once_per_run

@once_per_run
def shared_token(tmp_path_factory):
    with open("events.txt", "a") as out:
        out.write(f"setup {os.getpid()}\\n")
    yield f"token-{os.getpid()}"
    with open("events.txt", "a") as out:
        out.write(f"teardown {os.getpid()}\\n")
"""

TESTS = """
import os, pytest

@pytest.mark.parametrize("n", range(8))
def test_sees_token(shared_token, worker_id, n):
    with open(f"seen-{worker_id}-{n}.txt", "w") as out:
        out.write(f"{shared_token} {os.getpid()}")
"""


@pytest.mark.parametrize("method", ["fork", "spawn", None])
def test_set_up_once_for_all_workers(pytester: pytest.Pytester, method: str | None) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(TESTS)
    args = ["-p", "procpar"] + (["-n", "2", "--procpar-start", method] if method else [])
    result = runpytest(pytester, *args)
    result.assert_outcomes(passed=8)
    events = (pytester.path / "events.txt").read_text().split("\n")[:-1]
    assert [event.split()[0] for event in events] == ["setup", "teardown"]
    setup_pid = events[0].split()[1]
    assert events[1].split()[1] == setup_pid
    seen = [path.read_text().split() for path in pytester.path.glob("seen-*.txt")]
    assert len(seen) == 8
    assert {token for token, _ in seen} == {f"token-{setup_pid}"}
    test_pids = {pid for _, pid in seen}
    if method:  # ran in workers, not in the process that set the fixture up
        assert setup_pid not in test_pids
        assert {path.name.split("-")[1] for path in pytester.path.glob("seen-*.txt")} <= {
            "gw0",
            "gw1",
        }


def test_not_set_up_when_no_test_uses_it(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile("def test_plain(): pass\n")
    result = runpytest(pytester, "-p", "procpar", "-n", "2")
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "events.txt").exists()


def test_a_failing_setup_errors_the_tests_that_use_it(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        from pytest_procpar import once_per_run

        @once_per_run
        def broken():
            raise RuntimeError("no database today")
        """
    )
    pytester.makepyfile("def test_a(broken): pass\ndef test_b(broken): pass\ndef test_c(): pass\n")
    result = runpytest(pytester, "-p", "procpar", "-n", "2")
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(["*RuntimeError: no database today*"])


def test_unsupported_arguments_are_rejected(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        from pytest_procpar import once_per_run

        @once_per_run
        def needs_request(request):
            return 1
        """
    )
    pytester.makepyfile("def test_a(): pass\n")
    result = runpytest(pytester, "-p", "procpar", "-n", "2")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*may only take config, tmp_path_factory; got request*"])
