"""A worker that dies costs only the test it was running; the run goes on."""

from __future__ import annotations

import re
from xml.etree import ElementTree

import pytest
from harness import runpytest

CRASHING_SUITE = """
import os, signal

def test_before():
    pass

def test_segfault():
    os.kill(os.getpid(), signal.SIGSEGV)

def test_killed():
    os.kill(os.getpid(), signal.SIGKILL)

def test_exit_code():
    os._exit(3)

{passing}
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_crashes_fail_only_their_test(pytester: pytest.Pytester, method: str) -> None:
    passing = "".join(f"def test_ok_{i}():\n    pass\n\n" for i in range(30))
    pytester.makepyfile(test_crash=CRASHING_SUITE.format(passing=passing))
    result = runpytest(
        pytester, "-p", "procpar", "-n", "2", "--procpar-start", method, "-p", "no:faulthandler"
    )
    result.assert_outcomes(passed=31, failed=3)
    assert result.ret == 1
    result.stdout.re_match_lines(
        [
            r".*worker gw\d+ crashed while running test_crash.py::test_segfault: "
            r"signal 11 \(SIGSEGV\)"
        ],
        consecutive=False,
    )
    result.stdout.re_match_lines(
        [r".*crashed while running test_crash.py::test_killed: signal 9 \(SIGKILL\)"]
    )
    result.stdout.re_match_lines(
        [r".*crashed while running test_crash.py::test_exit_code: exit code 3"]
    )


def test_every_worker_crashing_does_not_hang(pytester: pytest.Pytester) -> None:
    body = "".join(f"def test_die_{i}():\n    import os; os._exit(1)\n\n" for i in range(12))
    pytester.makepyfile(test_die=body)
    result = runpytest(pytester, "-p", "procpar", "-n", "2")
    assert result.ret == 1
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 1
    assert outcomes.get("passed", 0) == 0


def test_threads_at_fork_time_switch_to_forkserver(pytester: pytest.Pytester) -> None:
    """A thread running when the template would be forked (a plugin started it as it was
    imported): the copy would hold its locks, so the workers start with forkserver."""
    pytester.makepyfile(
        threading_plugin="""
        import threading
        stop = threading.Event()
        threading.Thread(target=stop.wait, name="plugin-thread", daemon=True).start()
        """
    )
    pytester.syspathinsert()
    pytester.makepyfile("def test_a(): pass\ndef test_b(): pass\n")
    result = runpytest(pytester, "-p", "threading_plugin", "-p", "procpar", "-n", "2")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["procpar: 2 workers (forkserver; *plugin-thread*), 2 items, collected in *"]
    )


def test_a_test_that_breaks_its_worker_errors_alone(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.hookimpl(wrapper=True)
        def pytest_runtest_protocol(item, nextitem):
            result = yield
            if item.name == "test_breaks":
                raise RuntimeError("worker state wrecked")
            return result
        """
    )
    pytester.makepyfile("".join(f"def test_{name}(): pass\n" for name in ("a", "breaks", "c", "d")))
    result = runpytest(pytester, "-p", "procpar", "-n", "2", "-rE")
    result.assert_outcomes(passed=4, errors=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_breaks*", "the test left its worker unusable while running *"]
    )
    assert "INTERNALERROR" not in result.stdout.str()


def test_crash_report_shows_what_the_test_printed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os, sys

        def test_talks_then_dies():
            print("last words on stdout")
            print("last words on stderr", file=sys.stderr)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(9)

        def test_fine():
            pass
        """
    )
    result = runpytest(pytester, "-p", "procpar", "-n", "2")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*crashed while running *test_talks_then_dies: exit code 9*",
            "*captured stdout before the crash*",
            "last words on stdout",
            "*captured stderr before the crash*",
            "last words on stderr",
        ]
    )


def test_closing_stdout_costs_only_that_test(pytester: pytest.Pytester) -> None:
    body = "import sys\n\ndef test_closes():\n    sys.stdout.close()\n\n" + "".join(
        f"def test_after_{i}():\n    print('fine')\n\n" for i in range(12)
    )
    pytester.makepyfile(test_close=body)
    result = runpytest(pytester, "-p", "procpar", "-n", "1", "--dist", "load", "-rfE")
    assert result.parseoutcomes()["passed"] == 12  # every later test, on a fresh worker
    problems = [line for line in result.outlines if line.startswith(("FAILED ", "ERROR "))]
    assert problems
    assert all("::test_closes" in line for line in problems)
    result.stdout.fnmatch_lines(["*the test left its worker unusable while running *test_closes*"])


def test_crash_report_shows_the_workers_stack_not_a_forked_childs(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import os, signal

        def test_child_segfaults():
            pid = os.fork()
            if pid == 0:
                os.kill(os.getpid(), signal.SIGSEGV)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == -signal.SIGSEGV

        def test_worker_segfaults():
            os.kill(os.getpid(), signal.SIGSEGV)
        """
    )
    result = runpytest(pytester, "-p", "procpar", "-n", "1")
    result.assert_outcomes(passed=1, failed=1)
    output = result.stdout.str()
    assert output.count("Fatal Python error: Segmentation fault") == 1, output
    result.stdout.fnmatch_lines(
        [
            "*crashed while running *test_worker_segfaults: signal 11 (SIGSEGV)",
            "Fatal Python error: Segmentation fault",
            '*File "*", line 11 in test_worker_segfaults',
        ]
    )


@pytest.mark.inner_runs(ci=True)
def test_crash_summary_is_one_line(pytester: pytest.Pytester) -> None:
    """The short summary, ``--tb=line`` and JUnit XML show the crash line alone, also in CI,
    where pytest prints a failure's whole message untrimmed; the stack is in the report only."""
    pytester.makepyfile(
        test_crash="""
        import os, signal

        def test_worker_segfaults():
            os.kill(os.getpid(), signal.SIGSEGV)
        """
    )
    line = (
        "worker gw0 crashed while running test_crash.py::test_worker_segfaults: signal 11 (SIGSEGV)"
    )
    junit = ("--junitxml=out.xml", "-o", "junit_family=xunit2")
    result = runpytest(pytester, "-p", "procpar", "-n", "1", "-rf", *junit)
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert output.count("Fatal Python error: Segmentation fault") == 1, output
    result.stdout.re_match_lines(
        [
            r"=+ short test summary info =+$",
            f"FAILED test_crash.py::test_worker_segfaults - {re.escape(line)}$",
            r"=+ 1 failed",
        ]
    )
    failure = ElementTree.parse(pytester.path / "out.xml").find(".//failure")
    assert failure is not None
    assert failure.get("message") == line
    assert "Fatal Python error: Segmentation fault" in (failure.text or "")

    result = runpytest(pytester, "-p", "procpar", "-n", "1", "--tb=line")
    result.stdout.re_match_lines([rf".*test_crash\.py:\d+: {re.escape(line)}$"])
    assert "Fatal Python error" not in result.stdout.str()
