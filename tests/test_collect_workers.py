"""Collecting in workers (``--procpar-collect=workers``): each worker imports and collects its
share of the files, and the run still reads as serial pytest's.

Every test here runs the same suite serially and with workers that collect, and compares what
a user sees: the "collected" line, collection errors, the selection options' decisions,
counts and exit codes. Then: when collection falls back to the controller, and how work moves
between workers whose shares differ.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from harness import junit_suite, parallel, reference, run, short_summary

WORKERS = ("--procpar-collect=workers",)


def make_files(pytester: pytest.Pytester, count: int = 6) -> None:
    pytester.makeini("[pytest]\n")
    for number in range(count):
        pytester.makepyfile(
            **{
                f"test_m{number}": f"""
                    import pytest

                    def test_a():
                        pass

                    def test_b():
                        assert {number} != 3

                    class TestC:
                        def test_x(self):
                            pass

                    @pytest.mark.slow
                    @pytest.mark.parametrize("n", range(3))
                    def test_p(n):
                        pass
                """
            }
        )


def collected_line(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if line.startswith(("collected ", "run-last"))]


def from_errors(result: pytest.RunResult) -> list[str]:
    """What a run printed from its ERRORS section on, without the time it took."""
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if " ERRORS " in line)
    return [re.sub(r" in [\d.]+s", "", line) for line in lines[start:] if "procpar" not in line]


def compare(
    pytester: pytest.Pytester, *args: str, workers: int = 2, dist: str = "duration"
) -> pytest.RunResult:
    """Run serially and collecting in workers; the same collected line, counts, summary and
    exit code. Returns the parallel run."""
    # Each remembers its own runs (--lf, --sw), in a cache of its own.
    serial = reference(pytester, "-rA", "-o", "cache_dir=.serial_cache", *args)
    shared = parallel(
        pytester,
        "-rA",
        "-o",
        "cache_dir=.shared_cache",
        "--dist",
        dist,
        *WORKERS,
        *args,
        workers=workers,
    )
    assert collected_line(shared) == collected_line(serial), shared.outlines
    assert shared.ret == serial.ret, shared.outlines
    assert sorted(short_summary(shared)) == sorted(short_summary(serial))
    if serial.ret != pytest.ExitCode.NO_TESTS_COLLECTED:
        assert shared.parseoutcomes() == serial.parseoutcomes()
    return shared


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_collection_error_stops_the_run_as_serially(
    pytester: pytest.Pytester, workers: int
) -> None:
    make_files(pytester)
    pytester.makepyfile(test_broken="import no_such_module_xyz\n\ndef test_never():\n    pass\n")
    serial = reference(pytester)
    shared = parallel(pytester, *WORKERS, workers=workers)
    assert serial.ret == shared.ret == pytest.ExitCode.INTERRUPTED
    assert from_errors(shared) == from_errors(serial)
    assert "passed" not in shared.stdout.str()  # no test ran


def test_continue_on_collection_errors_runs_the_rest(pytester: pytest.Pytester) -> None:
    """The rest runs, and the JUnit report holds the same cases as serially, the collection
    error among them."""
    make_files(pytester)
    pytester.makepyfile(test_broken="import no_such_module_xyz\n")
    shared = compare(pytester, "--continue-on-collection-errors", "--junitxml=junit.xml")
    assert shared.ret == pytest.ExitCode.TESTS_FAILED
    shared.stdout.fnmatch_lines(["*= 1 failed, 35 passed, * 1 error in *"])
    shared_suite = junit_suite(pytester.path / "junit.xml")
    reference(pytester, "--continue-on-collection-errors", "--junitxml=junit.xml")
    serial_suite = junit_suite(pytester.path / "junit.xml")

    def cases(suite: ET.Element) -> dict[tuple[str | None, str | None], list[str]]:
        return {
            (case.get("classname"), case.get("name")): [child.tag for child in case]
            for case in suite.iter("testcase")
        }

    assert cases(shared_suite) == cases(serial_suite)
    assert cases(serial_suite)[("", "test_broken")] == ["error"]
    for count in ("tests", "errors", "failures", "skipped"):
        assert shared_suite.get(count) == serial_suite.get(count)


@pytest.mark.parametrize(
    "selection",
    [("-k", "TestC or test_b"), ("-m", "not slow"), ("--deselect", "test_m1.py::test_a")],
    ids=["-k", "-m", "--deselect"],
)
def test_selection_options_keep_their_meaning(
    pytester: pytest.Pytester, selection: tuple[str, str]
) -> None:
    make_files(pytester)
    shared = compare(pytester, *selection)
    shared.stdout.fnmatch_lines(["collected 36 items / * deselected / * selected"])


def test_empty_selection_exits_as_serially(pytester: pytest.Pytester) -> None:
    make_files(pytester)
    shared = compare(pytester, "-k", "no_such_test")
    assert shared.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_last_failed_decides_for_the_whole_suite(pytester: pytest.Pytester) -> None:
    """``--lf`` with nothing failed: one decision for the suite ("no previously failed
    tests"); after a failure it needs every item at once, and the controller collects."""
    make_files(pytester)
    shared = compare(pytester, "--lf")
    shared.stdout.fnmatch_lines(["run-last-failure: no previously failed tests, *"])
    shared.stdout.fnmatch_lines(["procpar: *, collected in workers (*)"])
    rerun = compare(pytester, "--lf")
    rerun.stdout.fnmatch_lines(["run-last-failure: rerun previous 1 failure*"])
    rerun.stdout.fnmatch_lines(["procpar: *, collected in the controller (--lf/--ff choose *)"])


def test_new_first_orders_the_whole_suite(pytester: pytest.Pytester) -> None:
    """``--nf`` runs new files first across shares: its order is decided after the workers'
    items arrived, so the whole suite's "new" is what it judges."""
    make_files(pytester, count=4)
    reference(pytester)  # remembers the nodeids
    pytester.makepyfile(test_new="def test_new():\n    pass\n")
    result = parallel(pytester, "-p", "no:cacheprovider", *WORKERS)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    shared = parallel(pytester, "--nf", "-v", *WORKERS, "--dist", "load", workers=1)
    ran = re.findall(r"(?:PASSED|FAILED) (\S+)", shared.stdout.str())
    assert ran[0] == "test_new.py::test_new", ran


def test_plugin_that_needs_the_whole_suite_makes_the_controller_collect(
    pytester: pytest.Pytester,
) -> None:
    """A conftest's modifyitems that picks from the whole list declares it: the run falls
    back, says so in one line naming the conftest, and gives the serial result."""
    make_files(pytester)
    pytester.makeconftest(
        """
        import pytest

        @pytest.hookimpl(optionalhook=True)  # plain pytest runs it too
        def pytest_procpar_needs_whole_suite(config):
            return "keeps every third test of the suite"

        def pytest_collection_modifyitems(config, items):
            dropped = [item for position, item in enumerate(items) if position % 3]
            config.hook.pytest_deselected(items=dropped)
            items[:] = items[::3]
        """
    )
    shared = compare(pytester)
    shared.stdout.fnmatch_lines(
        ["procpar: collecting in the controller: conftest.py: keeps every third test*"]
    )
    shared.stdout.fnmatch_lines(["collected 36 items / 24 deselected / 12 selected"])


def test_stepwise_makes_the_controller_collect(pytester: pytest.Pytester) -> None:
    # One worker in collection order: the same tests ran when the first failure stops it.
    make_files(pytester)
    compare(pytester, "--sw", dist="load", workers=1)
    again = compare(pytester, "--sw", dist="load", workers=1)
    again.stdout.fnmatch_lines(["stepwise: skipping 19 already passed items*"])
    again.stdout.fnmatch_lines(["procpar: *, collected in the controller (--sw *)"])
    again.stdout.fnmatch_lines(["procpar: *, collected in the controller (--sw *)"])


def test_work_moves_to_the_worker_whose_share_ran_out(pytester: pytest.Pytester) -> None:
    """One file holds all the slow tests: a worker whose share is done takes half of them
    over. Every test runs exactly once, on two processes, and every process imported the
    file before it ran any test (the worker that ran test_quick does not import it after;
    a fresh one forked in its place does). Importing the file costs more than its tests are
    guessed to take before any has run, so the worker asking first gets nothing: it must ask
    again once the first slow test has run, not finish."""
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(
        test_slow="""
            import os
            import time

            import pytest

            def log(line):
                with open(f"events-{os.getpid()}.txt", "a") as events:
                    events.write(line + "\\n")

            log("import")
            time.sleep(0.1)  # what importing it costs

            @pytest.mark.parametrize("n", range(8))
            def test_slow(n):
                time.sleep(0.25)
                log(f"test {n}")
        """,
        test_quick="""
            import os

            def test_quick():
                with open(f"events-{os.getpid()}.txt", "a") as events:
                    events.write("quick\\n")
        """,
    )
    result = parallel(pytester, *WORKERS, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
    logs = {path.name: path.read_text().split("\n")[:-1] for path in pytester.path.glob("events-*")}
    slow = [lines for lines in logs.values() if "import" in lines]
    for lines in slow:
        assert lines[0] == "import" and lines.count("import") == 1, logs  # before any test
    assert ["quick"] in logs.values(), logs  # so not in the process that ran test_quick
    assert len(slow) == 2, logs  # another process took some over
    ran = sorted(int(line.split()[1]) for lines in slow for line in lines[1:])
    assert ran == list(range(8))  # each once


def test_collection_warnings_are_summarised_once(pytester: pytest.Pytester) -> None:
    make_files(pytester, count=2)
    pytester.makepyfile(
        test_warns="""
            import warnings
            warnings.warn(UserWarning("at import"))

            def test_w():
                pass
        """
    )
    shared = compare(pytester)
    assert shared.stdout.str().count("UserWarning: at import") == 1


def test_worker_crash_while_collecting_is_a_collection_error(pytester: pytest.Pytester) -> None:
    make_files(pytester, count=2)
    pytester.makepyfile(test_crash="import os\nos._exit(3)\n")
    result = parallel(pytester, *WORKERS)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        ["*ERROR collecting*", "*worker gw* crashed while collecting: exit code 3*"]
    )
    result.stdout.fnmatch_lines(["*Interrupted: 1 error during collection*"])


def test_auto_weighs_the_measured_files(pytester: pytest.Pytester) -> None:
    """Every worker collects by itself: auto shares the files out unless collecting once (in
    the controller, then in every worker) is expected to end as soon, by what each file took
    to collect last time."""
    make_files(pytester, count=2)
    first = parallel(pytester)
    first.stdout.fnmatch_lines(["procpar: *, collected in * (auto: *)"])
    cache = pytester.path / ".pytest_cache" / "v" / "procpar" / "collection"
    recorded = json.loads(cache.read_text())
    files = {"test_m0.py", "test_m1.py"}
    assert set(recorded["files"]) == files
    # Each file slow to import: two workers halve it.
    cache.write_text(json.dumps({**recorded, "seconds": 5.0, "files": dict.fromkeys(files, 2.5)}))
    slow = parallel(pytester)
    slow.stdout.fnmatch_lines(
        ["procpar: *, collected in workers (auto: fork workers collect by themselves)"]
    )


def test_bad_collect_mode_is_a_usage_error(pytester: pytest.Pytester) -> None:
    make_files(pytester, count=1)
    result = parallel(pytester, "--procpar-collect=everywhere")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--procpar-collect: expected one of auto, controller, workers*"])


def test_markers_procpar_reads_come_from_the_worker(pytester: pytest.Pytester) -> None:
    """A time limit set on a class travels with the tests its worker collected: the
    controller enforces it, and no deprecation warning comes of carrying it."""
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(
        test_limits="""
            import time

            import pytest

            @pytest.mark.procpar_timeout(0.5)
            class TestLimited:
                def test_hangs(self):
                    time.sleep(60)

                def test_quick(self):
                    pass
        """,
        test_other="def test_other():\n    pass\n",
    )
    result = parallel(pytester, *WORKERS, "-W", "error::pytest.PytestDeprecationWarning")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*Timeout after 0.5s while running *TestLimited::test_hangs*"])
    result.assert_outcomes(passed=2, failed=1)


# -- workers that configure pytest anew: spawn, forkserver, --tx ------------------------------

SELF_STARTED = {
    "spawn": ("-n", "2", "--procpar-start", "spawn"),
    "forkserver": ("-n", "2", "--procpar-start", "forkserver"),
    "--tx": ("--tx", "2*popen"),
}


def count_collected(pytester: pytest.Pytester) -> None:
    """Every process writes down how many items it collected itself."""
    pytester.makeconftest(
        """
        import os

        def pytest_itemcollected(item):
            name = getattr(item.config, "workerinput", {}).get("workerid", "controller")
            with open(f"collected-{name}-{os.getpid()}.txt", "a") as out:
                out.write(item.nodeid + "\\n")
        """
    )


@pytest.mark.parametrize("how", list(SELF_STARTED))
def test_self_started_workers_collect_only_their_share(pytester: pytest.Pytester, how: str) -> None:
    """They walk the directories themselves and collect their share: the suite is collected
    once across the processes, and the run reads as the serial one."""
    make_files(pytester)
    count_collected(pytester)
    serial = reference(pytester, "-rA")
    for log in pytester.path.glob("collected-*.txt"):
        log.unlink()
    shared = run(pytester, *SELF_STARTED[how], *WORKERS, "-rA")
    assert collected_line(shared) == collected_line(serial), shared.outlines
    assert shared.ret == serial.ret == pytest.ExitCode.TESTS_FAILED
    assert sorted(short_summary(shared)) == sorted(short_summary(serial))
    assert shared.parseoutcomes() == serial.parseoutcomes()
    logs = {log.name: log.read_text().split() for log in pytester.path.glob("collected-*.txt")}
    assert not any(name.startswith("collected-controller") for name in logs), logs
    collected = [nodeid for nodeids in logs.values() for nodeid in nodeids]
    assert len(logs) == 2 and all(logs.values()), logs  # each worker its share
    assert sorted(collected) == sorted(set(collected)) and len(collected) == 36  # once each


def test_self_started_workers_report_collection_errors_as_serially(
    pytester: pytest.Pytester,
) -> None:
    make_files(pytester)
    pytester.makepyfile(test_broken="import no_such_module_xyz\n\ndef test_never():\n    pass\n")
    serial = reference(pytester)
    shared = parallel(pytester, *WORKERS, method="spawn")
    assert serial.ret == shared.ret == pytest.ExitCode.INTERRUPTED
    assert from_errors(shared) == from_errors(serial)


def test_auto_collects_in_self_started_workers_when_shares_pay(pytester: pytest.Pytester) -> None:
    """Collecting once, each of them would collect the whole suite again: auto shares the
    files out from the first run on, unless the shares cannot split the work."""
    make_files(pytester)
    result = parallel(pytester, method="spawn")
    result.stdout.fnmatch_lines(
        ["procpar: *, collected in workers (auto: spawn workers collect by themselves)"]
    )
    pytester.path.joinpath("pytest.ini").write_text("[pytest]\npython_files = test_m0.py\n")
    one_file = parallel(pytester, method="spawn")
    one_file.stdout.fnmatch_lines(
        ["procpar: *, collected in the controller (auto: collecting once (*s) is about as fast)"]
    )


def test_collection_reports_list_what_serial_ones_list(pytester: pytest.Pytester) -> None:
    """Each collector's report lists its items and collectors (a class), of the same kinds
    by name, as serially: what plugins that write collection reports out (json-report) see."""
    make_files(pytester, count=2)
    pytester.makeconftest(
        """
        import json, os

        def pytest_collectreport(report):
            if "PYTEST_XDIST_WORKER" not in os.environ:
                children = [(node.nodeid, type(node).__name__) for node in report.result]
                with open("collectors.jsonl", "a") as out:
                    out.write(json.dumps([report.nodeid, report.outcome, children]) + "\\n")
        """
    )

    def reports(result: pytest.RunResult) -> list[Any]:
        assert result.ret == pytest.ExitCode.OK, result.outlines
        log = pytester.path / "collectors.jsonl"
        written = sorted(json.loads(line) for line in log.read_text().splitlines())
        log.unlink()
        return [report for report in written if report[0].startswith("test_")]  # not the dirs

    serial = reports(reference(pytester))
    assert ["test_m0.py::TestC", "Class"] in next(r[2] for r in serial if r[0] == "test_m0.py")
    assert reports(parallel(pytester, *WORKERS)) == serial
