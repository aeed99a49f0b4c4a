"""Faults: workers that crash, hang or are interrupted, reports that are hard to transport,
tests that start processes of their own, and a large run.

Every inner run is a subprocess and loads the plugin explicitly with ``-p procpar`` (pytest-xdist,
also installed, would otherwise own ``-n``). Runs that must be signalled are started with
``subprocess.Popen``; the tests wait for files the inner tests write, never for a fixed time, and
every wait has a deadline so a regression fails instead of hanging. Inner tests record the pids
of the processes they run in, so the tests can check that none is left behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from harness import QUIET, output, run, summary_outcomes
from harness import parallel as run_parallel
from harness import reference as run_serial

GONE_TIMEOUT_S = 10.0  # for processes that should end

# Inner runs see no third-party plugin the environment happens to hold (they reorder tests or
# add warnings to the summary): they load only what their command line names.
pytestmark = pytest.mark.inner_runs(autoload_plugins=False)


def nodeids(lines: Counter[tuple[str, str]]) -> Counter[str]:
    counted: Counter[str] = Counter()
    for (_, nodeid), count in lines.items():
        counted[nodeid] += count
    return counted


def sections(result: pytest.RunResult, title: str) -> list[str]:
    """The bodies of the FAILURES / ERRORS sections headed ``title`` (a test's name)."""
    header = re.compile(rf"^_+ {re.escape(title)} _+$")
    bodies: list[list[str]] = []
    body: list[str] | None = None
    for line in result.outlines:
        if header.match(line):
            body = []
            bodies.append(body)
        elif line.startswith(("___", "===")):
            body = None
        elif body is not None:
            body.append(line)
    return ["\n".join(lines) for lines in bodies]


def without_worker_line(bodies: list[str]) -> list[str]:
    """Report bodies without the ``[gw0] linux -- Python ...`` line a parallel run adds."""
    return [re.sub(r"^\[gw\d+\] .*\n?", "", body) for body in bodies]


def is_alive(pid: int) -> bool:
    """Whether ``pid`` still runs; a zombie (ended, not yet reaped by whoever adopted it) has
    ended."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def still_alive(pids: set[int], timeout: float = GONE_TIMEOUT_S) -> set[int]:
    """Wait up to ``timeout`` for ``pids`` to end; the ones that did not."""
    deadline = time.monotonic() + timeout
    while True:
        left = {pid for pid in pids if is_alive(pid)}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def wait_for(
    condition: Callable[[], bool],
    what: str,
    process: subprocess.Popen[bytes] | None = None,
    timeout: float = 60.0,
) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` or if ``process`` ended."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the run ended (code {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout}s waiting until {what}")
        time.sleep(0.02)


def kill_quietly(pids: set[int]) -> None:
    """Clean up after a failed check: SIGKILL what this test's inner run left running."""
    for pid in pids:
        if is_alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


# Every inner test records the pid of the process it runs in (its worker).
PID_CONFTEST = """
    import os
    import pathlib

    import pytest

    PIDS = pathlib.Path(__file__).parent / "pids"


    @pytest.fixture(autouse=True)
    def _record_worker_pid():
        PIDS.mkdir(exist_ok=True)
        (PIDS / str(os.getpid())).touch()
        yield
"""


def recorded_pids(pytester: pytest.Pytester, directory: str = "pids") -> set[int]:
    path = pytester.path / directory
    return {int(entry.name) for entry in path.iterdir()} if path.exists() else set()


def assert_workers_gone(pytester: pytest.Pytester) -> None:
    pids = recorded_pids(pytester)
    assert pids, "no inner test recorded its worker"
    left = still_alive(pids)
    kill_quietly(left)
    assert not left, f"workers still running after the run: {sorted(left)}"


def passing_tests(count: int, prefix: str = "test_ok") -> str:
    return "".join(f"def {prefix}_{i}():\n    pass\n\n\n" for i in range(count))


# -- crashes --------------------------------------------------------------------------------

CRASHES = {
    "segfault": ("os.kill(os.getpid(), signal.SIGSEGV)", r"signal 11 \(SIGSEGV\)"),
    "exit_code": ("os._exit(3)", "exit code 3"),
    "sigkill": ("os.kill(os.getpid(), signal.SIGKILL)", r"signal 9 \(SIGKILL\)"),
}


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("kind", list(CRASHES))
def test_crash_fails_only_its_test(pytester: pytest.Pytester, kind: str, method: str) -> None:
    statement, how = CRASHES[kind]
    pytester.makeconftest(PID_CONFTEST)
    pytester.makepyfile(
        test_crash=f"import os\nimport signal\n\n\ndef test_crashes():\n    {statement}\n\n\n"
        + passing_tests(12)
    )
    result = run_parallel(pytester, "-rA", method=method)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    expected = {("FAILED", "test_crash.py::test_crashes"): 1}
    expected.update({("PASSED", f"test_crash.py::test_ok_{i}"): 1 for i in range(12)})
    assert summary_outcomes(result) == expected
    result.assert_outcomes(passed=12, failed=1)
    [report] = sections(result, "test_crashes")
    assert re.search(
        rf"^worker gw\d+ crashed while running test_crash\.py::test_crashes: {how}$",
        report,
        re.MULTILINE,
    ), report
    if kind == "segfault":  # faulthandler's stack of the crashing thread, in the report itself
        assert "Fatal Python error: Segmentation fault" in report
        assert re.search(
            r'^\s*File ".*test_crash\.py", line \d+ in test_crashes$', report, re.MULTILINE
        ), report
    assert "INTERNALERROR" not in output(result)
    assert_workers_gone(pytester)


@pytest.mark.parametrize("kind", ["segfault", "exit_code"])
def test_output_before_a_crash(pytester: pytest.Pytester, kind: str) -> None:
    """What the crashing test printed: procpar shows it or not (noted, not required); the crash
    report must be there either way."""
    statement, how = CRASHES[kind]
    pytester.makepyfile(
        test_crash=f"""
        import os
        import signal
        import sys


        def test_talks_then_crashes():
            print("said on stdout before crashing")
            print("said on stderr before crashing", file=sys.stderr)
            sys.stdout.flush()
            sys.stderr.flush()
            {statement}


        def test_ok():
            pass
        """
    )
    result = run_parallel(pytester, "-rA")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, failed=1)
    [report] = sections(result, "test_talks_then_crashes")
    assert re.search(
        rf"crashed while running test_crash\.py::test_talks_then_crashes: {how}", report
    )
    shown = [stream for stream in ("stdout", "stderr") if f"said on {stream}" in report]
    print(f"output printed before the crash ({kind}) shown in its report: {shown or 'none'}")


# -- tests that close the standard streams ----------------------------------------------------

CLOSING_SUITE = """
import os
import pathlib
import sys

RAN = pathlib.Path(__file__).parent / "ran"


def _ran(name):
    RAN.mkdir(exist_ok=True)
    (RAN / f"{{name}}-{{os.getpid()}}").touch()


def test_closes():
    _ran("test_closes")
    {statement}


{later}
"""
LATER_TEST = """
def test_later_{i}():
    _ran("test_later_{i}")
    print("still printing")
    print("still warning", file=sys.stderr)

"""
LATER_COUNT = 10


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("statement", ["sys.stdout.close()", "sys.stderr.close()", "os.close(1)"])
def test_closing_a_standard_stream(pytester: pytest.Pytester, statement: str, method: str) -> None:
    later = "".join(LATER_TEST.format(i=i) for i in range(LATER_COUNT))
    pytester.makepyfile(test_streams=CLOSING_SUITE.format(statement=statement, later=later))
    result = run_parallel(pytester, "-rA", method=method)

    everything = output(result)
    assert "INTERNALERROR" not in everything
    names = ["test_closes", *(f"test_later_{i}" for i in range(LATER_COUNT))]
    lines = summary_outcomes(result)
    per_test = nodeids(lines)
    # Each test reported, none twice over: at most one call outcome (setup and teardown errors
    # come on their own lines, as in serial pytest), and the totals agree with the lines.
    assert set(per_test) == {f"test_streams.py::{name}" for name in names}, lines
    for name in names:
        calls = sum(lines[(word, f"test_streams.py::{name}")] for word in ("PASSED", "FAILED"))
        assert calls <= 1, lines
    counts = result.parseoutcomes()
    for word, key in (("PASSED", "passed"), ("FAILED", "failed"), ("ERROR", "errors")):
        assert counts.get(key, 0) == sum(n for (w, _), n in lines.items() if w == word), lines

    ran = {entry.name.rsplit("-", 1)[0]: int(entry.name.rsplit("-", 1)[1])
           for entry in (pytester.path / "ran").iterdir()}  # fmt: skip
    closer = ran["test_closes"]
    if statement.startswith("os.close"):
        # fd capture puts the descriptor back after the test: nothing else is affected.
        assert result.ret == pytest.ExitCode.OK
        assert lines == Counter({("PASSED", f"test_streams.py::{name}"): 1 for name in names})
        return
    # Closing pytest's capture stream breaks the capture of the process that did it, in serial
    # pytest too; the tests on every other worker are untouched and pass.
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    elsewhere = [name for name, pid in ran.items() if pid != closer]
    assert elsewhere, "every test ran on the closing test's worker: nothing to compare"
    for name in elsewhere:
        assert lines[("PASSED", f"test_streams.py::{name}")] == 1, (name, lines)
    never_ran = set(names) - set(ran)
    for name in never_ran:  # broken at setup by the closed capture, as serial pytest reports it
        assert lines[("ERROR", f"test_streams.py::{name}")] >= 1, (name, lines)


# -- restarts ---------------------------------------------------------------------------------


def test_restart_limit_reports_the_rest_as_not_run(pytester: pytest.Pytester) -> None:
    dying = "".join(f"def test_die_{i}():\n    os._exit(1)\n\n\n" for i in range(10))
    pytester.makepyfile(test_die="import os\n\n\n" + dying + passing_tests(10))
    result = run_parallel(pytester, "-rA", "--max-worker-restart", "1")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    lines = summary_outcomes(result)
    all_ids = {f"test_die.py::test_die_{i}" for i in range(10)}
    all_ids |= {f"test_die.py::test_ok_{i}" for i in range(10)}
    assert nodeids(lines) == Counter({nodeid: 1 for nodeid in all_ids}), lines
    assert all(word in ("PASSED", "FAILED") for word, _ in lines), lines
    assert all("test_ok" in nodeid for word, nodeid in lines if word == "PASSED"), lines
    crashes = re.findall(r"^worker gw\d+ crashed while running (\S+): exit code 1$",
                         result.stdout.str(), re.MULTILINE)  # fmt: skip
    assert 1 <= len(crashes) <= 3, crashes  # two workers and one replacement
    not_run = [line for line in result.outlines if line.startswith("not run: ")]
    assert not_run, result.outlines
    assert set(not_run) == {"not run: no workers left after 1 worker restarts"}
    assert len(crashes) + len(not_run) == sum(n for (w, _), n in lines.items() if w == "FAILED")


# -- timeouts ---------------------------------------------------------------------------------

HANG_SUITE = """
import pathlib
import subprocess
import sys
import threading

import pytest

HERE = pathlib.Path(__file__).parent


{decorator}
def test_hangs():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    (HERE / "child.pid").write_text(str(child.pid))
    threading.Event().wait()


{later}
"""


def make_hanging_suite(pytester: pytest.Pytester, decorator: str = "") -> None:
    pytester.makeconftest(PID_CONFTEST)
    pytester.makepyfile(test_hang=HANG_SUITE.format(decorator=decorator, later=passing_tests(8)))


def check_timed_out(pytester: pytest.Pytester, result: pytest.RunResult, limit: str) -> None:
    child_file = pytester.path / "child.pid"
    assert child_file.exists(), "the hanging test was stopped before it started its subprocess"
    left = still_alive({int(child_file.read_text())})
    kill_quietly(left)
    assert not left, "the hung test's subprocess outlived its worker"

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    expected = {("FAILED", "test_hang.py::test_hangs"): 1}
    expected.update({("PASSED", f"test_hang.py::test_ok_{i}"): 1 for i in range(8)})
    assert summary_outcomes(result) == expected
    report = sections(result, "test_hangs")[0]
    assert re.search(
        rf"^Timeout after {re.escape(limit)} while running test_hang\.py::test_hangs$",
        report,
        re.MULTILINE,
    ), report
    assert re.search(r'^\s*File ".*test_hang\.py", line \d+ in test_hangs$', report, re.MULTILINE)
    assert re.search(r'^\s*File ".*threading\.py", line \d+ in wait$', report, re.MULTILINE)
    assert_workers_gone(pytester)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_timeout_option(pytester: pytest.Pytester, method: str) -> None:
    make_hanging_suite(pytester)
    result = run_parallel(pytester, "-rA", "--procpar-timeout", "1", method=method)
    check_timed_out(pytester, result, "1s")


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_timeout_marker(pytester: pytest.Pytester, method: str) -> None:
    make_hanging_suite(pytester, decorator="@pytest.mark.procpar_timeout(0.5)")
    result = run_parallel(pytester, "-rA", method=method)
    check_timed_out(pytester, result, "0.5s")


def test_timeout_ini(pytester: pytest.Pytester) -> None:
    make_hanging_suite(pytester)
    pytester.makeini("[pytest]\nprocpar_timeout = 1\n")
    result = run_parallel(pytester, "-rA")
    check_timed_out(pytester, result, "1s")


@pytest.mark.parametrize("value", ["-1", "abc"])
def test_timeout_bad_option_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    pytester.makepyfile("def test_a():\n    pass\n")
    result = run_parallel(pytester, f"--procpar-timeout={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*argument --procpar-timeout: expected a number of seconds >= 0, got '{value}'"]
    )


def test_timeout_bad_ini_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a():\n    pass\n")
    pytester.makeini("[pytest]\nprocpar_timeout = abc\n")
    result = run_parallel(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*ini option procpar_timeout: expected a number of seconds >= 0, got 'abc'"]
    )


# -- signals to the controller ------------------------------------------------------------------

# Tests mark files named <kind>-<i>-<pid>-<parent pid>; the controller's conftest marks every
# call report it has received, so "the controller knows" is a condition the tests can wait for.
SIGNAL_CONFTEST = """
    import os
    import pathlib

    MARKS = pathlib.Path(__file__).parent / "marks"
    _config = []


    def mark(kind, i):
        MARKS.mkdir(exist_ok=True)
        (MARKS / f"{kind}-{i}-{os.getpid()}-{os.getppid()}").touch()


    def pytest_configure(config):
        _config.append(config)


    def pytest_runtest_logreport(report):
        if report.when == "call" and not hasattr(_config[0], "workerinput"):
            MARKS.mkdir(exist_ok=True)
            (MARKS / f"reported-{report.location[2]}").touch()
"""
SIGNAL_SUITE_HEAD = """
import signal
import threading
import time

import pytest

from conftest import mark
"""
FAST_TESTS = """

@pytest.mark.parametrize("i", range({first}, {first} + {count}))
def test_fast(i):
    mark("fast", i)
"""
BLOCKING_TESTS = """

@pytest.mark.parametrize("i", range({count}))
def test_block(i):
    if {stubborn}:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    mark("block", i)
    threading.Event().wait()
"""
SESSION_TEARDOWN = """

@pytest.fixture(scope="session", autouse=True)
def resource():
    yield
    mark("teardown", 0)
    {teardown}
    mark("clean", 0)
"""


def marks(pytester: pytest.Pytester, kind: str) -> list[list[str]]:
    path = pytester.path / "marks"
    if not path.exists():
        return []
    return [entry.name.split("-")[1:] for entry in path.iterdir() if entry.name.startswith(kind)]


def marked_pids(pytester: pytest.Pytester) -> set[int]:
    return {int(parts[1]) for kind in ("fast", "block") for parts in marks(pytester, kind)}


@contextlib.contextmanager
def controller(pytester: pytest.Pytester, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """A parallel run in the background, its output going to ``controller.out``; whatever it
    leaves running is killed at the end (after the test's own checks)."""
    with (pytester.path / "controller.out").open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "pytest", f"--basetemp={pytester.path / 'basetemp'}",
             "-p", "procpar", *QUIET, "--dist", "load", *args],
            cwd=pytester.path, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        parents = {int(parts[2]) for parts in marks(pytester, "block")} - {process.pid}
        kill_quietly(marked_pids(pytester))
        kill_quietly(parents)  # a fork server


def make_signal_suite(
    pytester: pytest.Pytester,
    fast: int,
    blocking: int,
    stubborn: bool = False,
    teardown: str | None = None,
    files: int = 1,
) -> None:
    """``files`` test files, each with ``fast`` tests first (in collection order, which
    --dist load keeps) and then ``blocking`` tests."""
    pytester.makeconftest(SIGNAL_CONFTEST)
    for number in range(files):
        source = SIGNAL_SUITE_HEAD
        if fast:
            source += FAST_TESTS.format(first=number * fast, count=fast)
        source += BLOCKING_TESTS.format(count=blocking, stubborn=stubborn)
        if teardown is not None:  # a session fixture whose teardown runs this statement
            source += SESSION_TEARDOWN.format(teardown=teardown)
        pytester.makepyfile(**{f"test_signals{number or ''}": source})


def wait_until_blocked(
    pytester: pytest.Pytester, process: subprocess.Popen[bytes], fast: int, blocked: int
) -> None:
    def ready() -> bool:
        reported = marks(pytester, "reported-test_fast")
        return len(reported) == fast and len(marks(pytester, "block")) >= blocked

    wait_for(ready, f"{fast} fast tests reported and {blocked} tests blocking", process)


def ended_interrupted(
    pytester: pytest.Pytester, process: subprocess.Popen[bytes], after: str
) -> str:
    """Wait for the controller to end after ``after``; its output, once its exit code is
    pytest's for an interrupted run."""
    try:
        returncode = process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the controller did not end within 30s of {after}")
    text = (pytester.path / "controller.out").read_text(errors="replace")
    assert returncode == pytest.ExitCode.INTERRUPTED, text
    return text


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupting_the_controller(
    pytester: pytest.Pytester, signum: signal.Signals, method: str
) -> None:
    # One file per worker (--dist loadfile hands each its file at start), so the signal finds
    # both workers inside their blocking test, whichever answers first.
    make_signal_suite(pytester, fast=2, blocking=1, files=2)
    with controller(
        pytester, "-n", "2", "--procpar-start", method, "--dist", "loadfile"
    ) as process:
        wait_until_blocked(pytester, process, fast=4, blocked=2)
        process.send_signal(signum)
        text = ended_interrupted(pytester, process, signum.name)
        assert "KeyboardInterrupt" in text, text
        # Where a worker's test was stopped (waiting on its Event), as serial pytest shows it;
        # not the controller's loop.
        assert re.search(r"^\S*/threading\.py:\d+: KeyboardInterrupt$", text, re.M), text
        last = text.strip().splitlines()[-1]
        assert re.fullmatch(r"=+ 4 passed in [\d.]+s =+", last), text
        left = still_alive(marked_pids(pytester))
        assert not left, f"workers still running after {signum.name}: {sorted(left)}\n{text}"


def test_interrupt_kills_workers_that_ignore_it(pytester: pytest.Pytester) -> None:
    """Tests ignoring SIGINT and SIGTERM: their workers must still be killed 2 s after Ctrl-C
    (a second for an answer that never comes, then TERM and a second before the kill)."""
    make_signal_suite(pytester, fast=0, blocking=3, stubborn=True)
    with controller(pytester, "-n", "3") as process:
        wait_until_blocked(pytester, process, fast=0, blocked=3)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        text = ended_interrupted(pytester, process, "SIGINT")
        elapsed = time.monotonic() - started
        assert "KeyboardInterrupt" in text, text
        left = still_alive(marked_pids(pytester))
        assert not left, f"workers still running after SIGINT: {sorted(left)}"
        # 2 s of grace, then the kill; 3 s more for a slow machine.
        assert elapsed < 5.0, f"the controller took {elapsed:.1f}s to end after SIGINT"


def test_interrupt_waits_for_workers_tearing_down(pytester: pytest.Pytester) -> None:
    """Workers that answer Ctrl-C tear their sessions down as serial pytest would, even when
    that takes longer than the second after which silent workers are ended."""
    make_signal_suite(pytester, fast=0, blocking=2, teardown="time.sleep(3)")
    with controller(pytester, "-n", "2") as process:
        wait_until_blocked(pytester, process, fast=0, blocked=2)
        process.send_signal(signal.SIGINT)
        text = ended_interrupted(pytester, process, "SIGINT")
        assert re.search(r"^\S*/threading\.py:\d+: KeyboardInterrupt$", text, re.M), text
        assert len(marks(pytester, "clean")) == 2, text


def test_second_interrupt_ends_the_wait_for_teardowns(pytester: pytest.Pytester) -> None:
    make_signal_suite(pytester, fast=0, blocking=2, teardown="threading.Event().wait()")
    with controller(pytester, "-n", "2") as process:
        wait_until_blocked(pytester, process, fast=0, blocked=2)
        process.send_signal(signal.SIGINT)

        def tearing_down() -> bool:
            return len(marks(pytester, "teardown")) == 2

        wait_for(tearing_down, "both workers are tearing down", process)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        ended_interrupted(pytester, process, "the second SIGINT")
        elapsed = time.monotonic() - started
        left = still_alive(marked_pids(pytester))
        assert not left, f"workers still running after two SIGINTs: {sorted(left)}"
        # TERM, 1 s of grace, then the kill; 3 s more for a slow machine.
        assert elapsed < 4.0, f"the controller took {elapsed:.1f}s to end after the second SIGINT"


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_workers_die_with_a_killed_controller(pytester: pytest.Pytester, method: str) -> None:
    make_signal_suite(pytester, fast=2, blocking=2)
    with controller(pytester, "-n", "2", "--procpar-start", method) as process:
        wait_until_blocked(pytester, process, fast=2, blocked=1)
        process.kill()
        process.wait(timeout=30)
        pids = marked_pids(pytester)
        assert pids
        left = still_alive(pids)
        assert not left, f"workers alive {GONE_TIMEOUT_S}s after the controller: {sorted(left)}"


# -- stops from inside a test -----------------------------------------------------------------


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_keyboard_interrupt_in_a_test_like_serial(pytester: pytest.Pytester, method: str) -> None:
    pytester.makepyfile(
        test_kbint=passing_tests(3, "test_before")
        + "def test_interrupts():\n    raise KeyboardInterrupt\n\n\n"
        + passing_tests(3, "test_after")
    )
    serial = run_serial(pytester)
    parallel = run_parallel(pytester, method=method)

    assert serial.ret == parallel.ret == pytest.ExitCode.INTERRUPTED
    for result in (serial, parallel):
        result.stdout.fnmatch_lines(
            [
                "*KeyboardInterrupt*",
                "(to show a full traceback on KeyboardInterrupt use --full-trace)",
            ]
        )
        # The tests that ended before are counted (which ones depends on the workers' pace).
        assert re.fullmatch(r"=+ (\d+ passed|no tests ran) in [\d.]+s =+", result.outlines[-1])
    serial.stdout.fnmatch_lines(["=* 3 passed in *"])
    assert "INTERNALERROR" not in output(parallel)
    # The banner and the line it points at are serial pytest's: the test's, not the controller's.
    assert interruption(parallel) == interruption(serial)
    assert interruption(serial)[1].endswith("test_kbint.py:14: KeyboardInterrupt")

    full = run_parallel(pytester, "--full-trace", method=method)
    full.stdout.fnmatch_lines(["    def test_interrupts():", ">       raise KeyboardInterrupt"])


def interruption(result: pytest.RunResult) -> list[str]:
    """pytest's KeyboardInterrupt banner and the location line under it."""
    lines = result.outlines
    banner = next(
        i for i, line in enumerate(lines) if re.fullmatch(r"!+ KeyboardInterrupt !+", line)
    )
    return lines[banner : banner + 2]


EXIT_FIXTURES = {
    "setup": """
        import pytest


        @pytest.fixture
        def leave():
            pytest.exit("bye", returncode=3)
    """,
    "session_teardown": """
        import pytest


        @pytest.fixture(scope="session")
        def leave():
            yield
            pytest.exit("bye", returncode=3)
    """,
}


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("where", list(EXIT_FIXTURES))
def test_pytest_exit_in_a_fixture_like_serial(
    pytester: pytest.Pytester, where: str, method: str
) -> None:
    pytester.makeconftest(EXIT_FIXTURES[where])
    pytester.makepyfile(
        test_exit=passing_tests(3, "test_before")
        + "def test_leaves(leave):\n    pass\n\n\n"
        + passing_tests(3, "test_after")
    )
    serial = run_serial(pytester)
    parallel = run_parallel(pytester, method=method)

    assert serial.ret == parallel.ret == 3
    for result in (serial, parallel):
        result.stdout.fnmatch_lines(["!!!* _pytest.outcomes.Exit: bye !!!*"])
    assert "INTERNALERROR" not in output(parallel)


# -- reports that are hard to transport ---------------------------------------------------------

HARD_REPORTS = """
    import threading

    import pytest


    class LockedError(Exception):
        def __init__(self):
            super().__init__("holds a lock")
            self.lock = threading.Lock()  # cannot be pickled


    class UnprintableError(Exception):
        def __str__(self):
            raise RuntimeError("no text for you")


    def test_unpicklable_exception():
        raise LockedError()


    def test_exception_str_raises():
        raise UnprintableError()


    def test_ten_megabytes_of_output():
        print("x" * (10 * 1024 * 1024))
        assert False


    @pytest.mark.parametrize(
        "value",
        [
            pytest.param(1, id="h\\u00e9llo-\\u00fcn\\u00efc\\u00f8d\\u00e9-\\u65e5\\u672c"),
            pytest.param(2, id="lone-\\udcff-surrogate"),
            pytest.param(3, id="nul-\\x00-byte"),
            pytest.param(4, id="long-" + "a" * 5000),
        ],
    )
    def test_odd_ids(value):
        pass


    @pytest.mark.parametrize(
        "value", [pytest.param(1, id="failing-\\u00e9-\\udcff-\\x00")]
    )
    def test_odd_id_failing(value):
        assert value == 2


    def test_plain():
        pass
"""


def test_hard_to_transport_reports_like_serial(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_hard=HARD_REPORTS)
    serial = run_serial(pytester, "-rA")
    serial_lines = summary_outcomes(serial)
    assert serial_lines, serial.outlines  # pytest itself accepts every id here
    assert len(nodeids(serial_lines)) == 9
    for method in ("fork", "spawn"):
        parallel = run_parallel(pytester, "-rA", method=method)
        assert parallel.ret == serial.ret == pytest.ExitCode.TESTS_FAILED
        assert summary_outcomes(parallel) == serial_lines, method
        assert parallel.parseoutcomes() == serial.parseoutcomes(), method
        everything = output(parallel)
        assert "INTERNALERROR" not in everything
        assert everything.count("x" * 1000) >= 10 * 1024, "the 10 MB of output went missing"
        for name in ("test_unpicklable_exception", "test_exception_str_raises"):
            assert without_worker_line(sections(parallel, name)) == sections(serial, name)


# -- tests that use processes -------------------------------------------------------------------

PROCESS_SUITE = """
    import multiprocessing
    import os
    import signal
    import subprocess
    import sys
    import time

    import pytest

    from helpers import square

    pytest_plugins = ["pytester"]


    def test_fork_in_a_test():
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
    def test_forked_child_ends_on_signal(signum):
        pid = os.fork()
        if pid == 0:
            os.kill(os.getpid(), signum)
            os._exit(3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == -signum


    def test_forked_child_signalled_at_once():
        pid = os.fork()
        if pid == 0:
            time.sleep(10)  # ended by the signal long before
            os._exit(0)
        os.kill(pid, signal.SIGTERM)  # as Pool.terminate() does to a pool process just started
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == -signal.SIGTERM


    @pytest.mark.parametrize("context", ["fork", "spawn"])
    def test_pool(context):
        with multiprocessing.get_context(context).Pool(2) as pool:
            assert pool.map(square, range(6)) == [0, 1, 4, 9, 16, 25]


    def test_subprocess_run():
        done = subprocess.run(
            [sys.executable, "-c", "print(6 * 7)"], capture_output=True, text=True, timeout=60
        )
        assert done.stdout.strip() == "42"


    def test_inner_pytester(pytester):
        pytester.makepyfile("def test_x():\\n    pass\\n\\ndef test_y():\\n    pass\\n")
        result = pytester.runpytest_subprocess(
            "-p", "procpar", "-p", "no:hypothesispytest", "-n", "2", timeout=60
        )
        result.assert_outcomes(passed=2)
"""


def test_tests_that_use_processes_like_serial(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(helpers="def square(x):\n    return x * x\n")
    pytester.makepyfile(test_processes=PROCESS_SUITE)
    # Name the file: the inner pytester test writes test files under the run's basetemp.
    serial = run_serial(pytester, "-rA", "test_processes.py")
    assert serial.ret == pytest.ExitCode.OK
    serial.assert_outcomes(passed=8)
    for method in ("fork", "spawn"):
        parallel = run_parallel(pytester, "-rA", "test_processes.py", method=method)
        assert parallel.ret == pytest.ExitCode.OK, method
        assert summary_outcomes(parallel) == summary_outcomes(serial), method


# -- a large run --------------------------------------------------------------------------------

PEAK_CONFTEST = """
    import resource


    def pytest_unconfigure(config):
        if not hasattr(config, "workerinput"):
            with open("controller-peak-kb.txt", "w") as out:
                out.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
"""
STRESS_TESTS = 20_000
PEAK_LIMIT_MB = 600


@pytest.mark.stress
def test_twenty_thousand_tests_on_eight_workers(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(PEAK_CONFTEST)
    pytester.makepyfile(
        test_many=f"""
        import pytest


        @pytest.mark.parametrize("i", range({STRESS_TESTS}))
        def test_trivial(i):
            pass
        """
    )
    started = time.monotonic()
    result = run(pytester, "-n", "8", "-q", timeout=900)
    wall = time.monotonic() - started
    peak_mb = int((pytester.path / "controller-peak-kb.txt").read_text()) / 1024

    print(f"stress: {STRESS_TESTS} tests, wall {wall:.1f}s, controller peak RSS {peak_mb:.0f} MB")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=STRESS_TESTS)
    assert peak_mb < PEAK_LIMIT_MB
