"""Seeing what runs now (``pytest_procpar/live.py``): SLOW notices, the status line (drawn on
a terminal and erased, never anywhere else), and what SIGUSR1 to the controller prints.

Inner runs see no CI variables (on CI the status line would be off for that reason alone),
and load only what their command line names.
"""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections import Counter
from types import SimpleNamespace

import pytest
from _pytest._io import TerminalWriter
from harness import TIMEOUT_S, output, parallel

from pytest_procpar.live import StatusLine, status_text

pytestmark = pytest.mark.inner_runs(autoload_plugins=False, ci=False)

STATUS_PART = re.compile(r"gw\d+ test_x\.py::test_\w+ \d+\.\ds")  # one worker's, on the line


def test_slow_notices_are_plain_lines_and_a_log_gets_no_status_line(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_x="""
        import time

        def test_slow():
            time.sleep(0.8)

        def test_fast():
            pass
        """
    )
    result = parallel(pytester, "--procpar-slow", "0.2")
    assert result.ret == 0
    notices = Counter(
        re.sub(r" gw\d+ ", " gw* ", line) for line in result.outlines if "SLOW" in line
    )
    # each multiple once, 0.6 s too unless the test was over before the controller looked
    assert notices.keys() <= {f"SLOW [> {at}s] gw* test_x.py::test_slow" for at in (0.2, 0.4, 0.6)}
    assert notices["SLOW [> 0.2s] gw* test_x.py::test_slow"] == 1
    assert notices["SLOW [> 0.4s] gw* test_x.py::test_slow"] == 1
    assert notices["SLOW [> 0.6s] gw* test_x.py::test_slow"] <= 1
    printed = output(result)
    assert "\x1b[" not in printed  # not a terminal: no status line drawn, none erased
    assert not STATUS_PART.search(printed)


def test_bad_values_are_usage_errors(pytester: pytest.Pytester) -> None:
    result = parallel(pytester, "--procpar-live", "sometimes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "argument --procpar-live: expected one of auto, off, got 'sometimes'" in output(result)
    pytester.makeini("[pytest]\nprocpar_slow = soon\n")
    result = parallel(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "ini option procpar_slow: expected a number of seconds >= 0, got 'soon'" in output(
        result
    )


def test_status_line_shows_the_longest_running_first_cut_to_the_width() -> None:
    writer = TerminalWriter(io.StringIO())
    writer.fullwidth = 40
    writer.write("test_a.py ..")  # the progress: 12 columns
    line = StatusLine(SimpleNamespace(writer=writer))  # (what it reads of a BatchedTerminal)
    line.text = status_text(
        [(9.0, "gw1", "test_b.py::test_y"), (7.0, "gw0", "test_\u00e4.py::test_x")], now=10.0
    )
    assert line.text == "gw0 test_\\xe4.py::test_x 3.0s | gw1 test_b.py::test_y 1.0s"
    assert line.erased() == ""  # not drawn yet
    # under the progress, 39 columns (the 40th would wrap), then back to column 12 above
    assert line.drawn() == "\ngw0 test_\\xe4.py::test_x 3.0s | gw1 tes\x1b[A\r\x1b[12C"
    assert line.erased() == "\x1b[J"  # everything after the progress
    writer.write("." * 28)  # the progress fills its row
    assert line.drawn() == ""


def on_terminal(pytester: pytest.Pytester, *args: str, columns: int = 100) -> str:
    """What an inner parallel run writes to a pseudo-terminal ``columns`` wide."""
    ours, theirs = pty.openpty()
    command = [sys.executable, "-m", "pytest", "-p", "procpar", "-p", "no:randomly", *args]
    environment = dict(os.environ, COLUMNS=str(columns), TERM="xterm")
    with subprocess.Popen(
        command, stdin=theirs, stdout=theirs, stderr=theirs, cwd=pytester.path, env=environment
    ) as process:
        os.close(theirs)
        written = b""
        deadline = time.monotonic() + TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                if select.select([ours], [], [], 0.5)[0]:
                    try:
                        data = os.read(ours, 1 << 16)
                    except OSError:  # (EIO) every process holding the terminal is gone
                        break
                    if not data:
                        break
                    written += data
            else:
                pytest.fail(f"the run on a terminal took more than {TIMEOUT_S}s")
        finally:
            process.kill()
            os.close(ours)
    return written.decode()


def screen(text: str, width: int) -> list[str]:
    """The lines a terminal ``width`` wide shows after ``text`` (up to the last one not
    empty): what pytest without colors and the status line write."""
    rows: list[list[str]] = [[]]
    row = column = 0
    for match in re.finditer(r"\x1b\[(\d*)([A-Za-z])|(.)", text, re.DOTALL):
        count, command, char = match.groups()
        if char is not None and char not in "\r\n":
            if column == width:  # written past the last column: the next row
                row, column = row + 1, 0
            rows.extend([] for _ in range(row + 1 - len(rows)))
            rows[row].extend(" " * (column + 1 - len(rows[row])))
            rows[row][column] = char
            column += 1
        elif char == "\r":
            column = 0
        elif char == "\n":
            row += 1
            rows.extend([] for _ in range(row + 1 - len(rows)))
        elif command == "A":
            row -= int(count or 1)
        elif command == "C":
            column += int(count or 1)
        elif command == "J":  # to the end of the screen
            del rows[row][column:]
            del rows[row + 1 :]
        else:
            raise AssertionError(f"unexpected escape sequence {match.group()!r}")
    return "\n".join("".join(cells).rstrip() for cells in rows).rstrip("\n").split("\n")


def test_status_line_on_a_terminal_is_drawn_under_the_progress_and_erased(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_x="""
        import time

        def test_a():
            pass

        def test_slow():
            time.sleep(0.8)
        """
    )
    written = on_terminal(pytester, "-n", "2", "--dist", "load", "--color=no")
    drawn = {match.group() for match in STATUS_PART.finditer(written)}
    assert len({part for part in drawn if "::test_slow " in part}) >= 2, drawn  # redrawn
    # Back at the end of the progress, the line is erased before anything else is written.
    assert not re.search(r"\x1b\[A\r(\x1b\[\d+C)?(?!\x1b\[J|\x1b\[\d+C)", written)
    shown = screen(written, 100)
    assert not [line for line in shown if STATUS_PART.search(line)], shown
    assert any(re.fullmatch(r"\.\. +\[100%\]", line) for line in shown), shown  # one line
    assert re.fullmatch(r"=+ 2 passed in .* =+", shown[-1]), shown


def test_sigusr1_prints_what_each_worker_runs_with_its_stack(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_x="""
        import faulthandler, os, signal, time

        def test_signals():
            os.kill(os.getppid(), signal.SIGUSR1)  # the controller: forked workers' parent
            time.sleep(1.5)  # still running while the controller prints

        def test_crashes():
            faulthandler._sigsegv()
        """
    )
    pytester.makeconftest(
        """
        import signal

        def pytest_sessionfinish(session):
            if not hasattr(session.config, "workerinput"):
                with open("handler.txt", "w") as file:
                    file.write(str(signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL))
        """
    )
    result = parallel(pytester, "--dist", "load", workers=1)  # one worker: in this order
    result.stdout.fnmatch_lines(
        [
            "procpar: what each worker runs now",
            "gw0 test_x.py::test_signals *s",
            "    Current thread 0x* (most recent call first):",
            '      File "*test_x.py", line [45] in test_signals',  # signalling, or sleeping
        ]
    )
    # The dump's stack was taken out of the stack file: the crash's report has its own only.
    report = result.stdout.str().split("worker gw0 crashed while running", 1)[1]
    crash = re.split(r"\n(?:=|procpar: )", report, maxsplit=1)[0]
    assert "line 8 in test_crashes" in crash
    assert "test_signals" not in crash
    assert "\x00" not in crash
    assert (pytester.path / "handler.txt").read_text() == "True"  # the handler as before
