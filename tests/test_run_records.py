"""Run records and what starts from them: every run with workers leaves a record of what each
worker ran (written as it goes, so a killed run leaves one too); ``--procpar-replay`` runs one
worker's sequence again, ``--procpar-bisect`` finds the tests that make another fail, and
``--procpar-rerun`` runs what did not pass and what is new.

The inner suites pollute through a module-level dict: a test that fails after another one ran
in the same process, and passes alone.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from harness import parallel, run

POLLUTED = """
    STATE = {}

    def test_a1(): pass
    def test_a2(): pass
    def test_sets_x(): STATE["x"] = True
    def test_a3(): pass
    def test_a4(): pass
    def test_a5(): pass
    def test_sets_y(): STATE["y"] = True
    def test_a6(): pass
    def test_victim(): assert "x" not in STATE
    def test_needs_both(): assert not ("x" in STATE and "y" in STATE) or "z" in STATE
    def test_a7(): pass
"""


def ran_verbosely(result: pytest.RunResult) -> list[str]:
    """The nodeids a ``-v -rN`` run reported, in the order it reported them."""
    found = (re.search(r"\S+\.py::\S+", line) for line in result.stdout.lines
             if re.search(r"\b(PASSED|FAILED|ERROR)\b", line))  # fmt: skip
    return [match.group() for match in found if match is not None]


def records(pytester: pytest.Pytester) -> list[Path]:
    return sorted((pytester.path / ".pytest_cache" / "d" / "procpar-runs").glob("*.jsonl"))


def read_record(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def entries_of(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["kind"] == "test"]


def test_record_has_every_test_once_with_its_worker_pid_and_outcome(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(
        test_kinds="""
            import os
            import pytest

            def mark(name):
                with open(f"pid-{name}.txt", "w") as out:
                    out.write(str(os.getpid()))

            def test_passes(): mark("passes")
            def test_fails(): mark("fails"); assert False
            def test_skips(): mark("skips"); pytest.skip("no")
            @pytest.mark.xfail
            def test_xfails(): mark("xfails"); assert False
            @pytest.fixture
            def broken(): raise RuntimeError("setup")
            def test_errors(broken): pass
            def test_crashes(): mark("crashes"); os._exit(3)
            @pytest.mark.procpar_timeout(0.3)
            def test_hangs():
                mark("hangs")
                import time; time.sleep(60)
            @pytest.mark.parametrize("n", range(6))
            def test_many(n): mark(f"many{n}")
        """
    )
    result = parallel(pytester, "--max-worker-restart", "2")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    (path,) = records(pytester)
    lines = read_record(path)
    head = lines[0]
    assert (head["format"], head["version"], head["kind"]) == ("procpar-run-record", 1, "run")
    assert "--max-worker-restart" in head["args"] and head["pytest"] == pytest.__version__
    assert len(head["items"]) == 13
    tests = entries_of(lines)
    assert sorted(entry["nodeid"] for entry in tests) == sorted(head["items"])  # each once
    outcomes = {entry["nodeid"].split("::")[1]: entry["outcome"] for entry in tests}
    assert outcomes["test_passes"] == "passed" and outcomes["test_fails"] == "failed"
    assert outcomes["test_skips"] == "skipped" and outcomes["test_xfails"] == "xfailed"
    assert outcomes["test_errors"] == "error" and outcomes["test_crashes"] == "crashed"
    assert outcomes["test_hangs"] == "timeout"
    for entry in tests:
        name = entry["nodeid"].split("::")[1].replace("test_", "").replace("[", "").rstrip("]")
        pid_file = pytester.path / f"pid-{name}.txt"
        if pid_file.exists():
            assert entry["pid"] == int(pid_file.read_text()), entry
        assert entry["worker"].startswith("gw") and 0 <= entry["start"] <= entry["end"]
    assert lines[-1]["kind"] == "end" and lines[-1]["exitstatus"] == 1
    listed = run(pytester, "--procpar-runs")
    assert listed.ret == 0
    listed.stdout.fnmatch_lines([f"  {path.stem}  13 tests, 4 not passed, * workers  *"])


def test_a_killed_run_leaves_its_record_and_rerun_takes_what_did_not_pass(
    pytester: pytest.Pytester,
) -> None:
    """The controller is killed outright in the middle of the run: the record holds what
    finished before (not an end). ``--procpar-rerun`` then runs the failed test, the tests that
    never ran, and a test added since; not the ones that passed."""
    pytester.makeini("[pytest]\n")
    pytester.makeconftest(
        """
            import os

            def pytest_configure(config):
                if not hasattr(config, "workerinput"):
                    with open("controller.pid", "w") as out:
                        out.write(str(os.getpid()))
        """
    )
    pytester.makepyfile(
        test_run="""
            import os, signal, time

            def test_passes(): pass
            def test_fails(): assert False
            def test_takes_a_while(): time.sleep(0.6)  # the record is written meanwhile
            def test_kills_the_controller():
                if os.path.exists("armed"):
                    os.remove("armed")
                    with open("controller.pid") as pid:
                        os.kill(int(pid.read()), signal.SIGKILL)
            def test_after(): pass
        """
    )
    (pytester.path / "armed").touch()
    killed = parallel(pytester, "-p", "no:randomly", workers=1)
    assert killed.ret != 0
    (path,) = records(pytester)
    lines = read_record(path)
    assert lines[-1]["kind"] != "end"
    done = {entry["nodeid"].split("::")[1]: entry["outcome"] for entry in entries_of(lines)}
    assert done == {"test_passes": "passed", "test_fails": "failed", "test_takes_a_while": "passed"}
    pytester.makepyfile(test_new="def test_added(): pass")
    again = parallel(pytester, "--procpar-rerun", "-v", "-rN")
    assert again.ret == pytest.ExitCode.TESTS_FAILED
    again.stdout.fnmatch_lines([f"procpar: rerun of run {path.stem}: 1 failed, 1 new, 2 not run"])
    assert set(ran_verbosely(again)) == {
        "test_new.py::test_added",
        "test_run.py::test_fails",
        "test_run.py::test_kills_the_controller",
        "test_run.py::test_after",
    }


def test_replay_runs_the_failing_workers_sequence_in_its_order_with_its_seeds(
    pytester: pytest.Pytester,
) -> None:
    """Two files on two workers (loadfile); the victim fails after a test of its file. The
    replay (no worker named: the one whose test failed) runs that worker's tests in the order
    it ran them, in one worker, and with the seed a plugin chose in the recorded run."""
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(
        test_polluted=POLLUTED, test_other="def test_o1(): pass\ndef test_o2(): pass"
    )
    pytester.makeconftest(
        """
        import random

        def pytest_addoption(parser):
            parser.addoption("--demo-seed", dest="demo_seed", type=int, default=None)

        def pytest_configure(config):
            if config.option.demo_seed is None:
                config.option.demo_seed = random.randrange(10**9)

        def pytest_report_header(config):
            return f"demo seed: {config.option.demo_seed}"
        """
    )
    first = parallel(pytester, "--dist", "loadfile", "-v")
    assert first.ret == pytest.ExitCode.TESTS_FAILED
    (path,) = records(pytester)
    lines = read_record(path)
    seed = lines[0]["seeds"]["demo_seed"]
    first.stdout.fnmatch_lines([f"demo seed: {seed}"])
    victim = next(e for e in entries_of(lines) if e["nodeid"].endswith("test_victim"))
    order = [e["nodeid"] for e in entries_of(lines) if e["worker"] == victim["worker"]]
    replay = parallel(pytester, "--procpar-replay", "-v", "-rN")
    assert replay.ret == pytest.ExitCode.TESTS_FAILED
    replay.stdout.fnmatch_lines(
        [
            f"demo seed: {seed}",
            f"procpar: replaying {victim['worker']} of run {path.stem}: {len(order)} tests in "
            f"its order, with demo_seed={seed}",
            "procpar: 1 worker (fork from template), *",
        ]
    )
    assert ran_verbosely(replay) == order
    serially = run(pytester, "--procpar-replay", path.stem, "-v", "-rN")
    assert ran_verbosely(serially) == order


def test_bisect_finds_the_polluting_tests(pytester: pytest.Pytester) -> None:
    """One polluter, then two that only together make a test fail; a test failing alone and
    one failing only beside another worker are told apart. Every probe is configured as the
    recorded worker (plugins see its ``workerinput`` and xdist's environment variables)."""
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_polluted=POLLUTED)
    pytester.makeconftest(
        """
        import os

        def pytest_configure(config):
            given = getattr(config, "workerinput", None)
            role = "controller" if given is None else given["workerid"]
            with open(f"role-{os.getpid()}.txt", "w") as out:
                out.write(f"{role} {os.environ.get('PYTEST_XDIST_WORKER')}")
        """
    )
    recorded = parallel(pytester, workers=1)
    assert recorded.ret == pytest.ExitCode.TESTS_FAILED
    for path in pytester.path.glob("role-*.txt"):
        path.unlink()
    one = run(pytester, "--procpar-bisect", "test_polluted.py::test_victim", "-n", "2")
    assert one.ret == pytest.ExitCode.TESTS_FAILED
    roles = sorted(path.read_text() for path in pytester.path.glob("role-*.txt"))
    assert roles[0] == "controller None" and len(roles) > 3
    assert set(roles[1:]) == {"gw0 gw0"}  # each probe: the worker the test failed on
    one.stdout.fnmatch_lines(
        [
            "procpar bisect: test_polluted.py::test_victim ended failed in run * on gw0, "
            "after 8 tests there",
            "procpar bisect:   alone: passed",
            "procpar bisect:   after 8 tests: failed",
            "procpar bisect: found in * runs (*s); test_polluted.py::test_victim fails after:",
            "procpar bisect:   test_polluted.py::test_sets_x",
        ]
    )
    assert "procpar: --procpar-bisect starts its own processes" in one.stdout.str()
    two = run(pytester, "--procpar-bisect", "test_polluted.py::test_needs_both")
    two.stdout.fnmatch_lines(
        [
            "procpar bisect: found in * test_polluted.py::test_needs_both fails after:",
            "procpar bisect:   test_polluted.py::test_sets_x",
            "procpar bisect:   test_polluted.py::test_sets_y",
            "",
        ]
    )
    assert two.stdout.str().count("procpar bisect:   test_polluted.py::") == 2
    pytester.makepyfile(test_polluted=POLLUTED.replace('"x" not in STATE', "False"))
    alone = run(pytester, "--procpar-bisect", "test_polluted.py::test_victim")
    assert alone.ret == pytest.ExitCode.TESTS_FAILED
    alone.stdout.fnmatch_lines(["procpar bisect: * fails when it runs alone: *"])
    pytester.makepyfile(test_polluted=POLLUTED.replace('"x" not in STATE', "True"))
    gone = run(pytester, "--procpar-bisect", "test_polluted.py::test_victim")
    assert gone.ret == pytest.ExitCode.OK
    gone.stdout.fnmatch_lines(["procpar bisect: * passes after the 8 tests that ran before it: *"])


def test_record_options_errors_and_limits(pytester: pytest.Pytester) -> None:
    """Usage errors, never tracebacks; the ini key bounds how many records are kept."""
    pytester.makeini("[pytest]\nprocpar_run_records = 2\n")
    pytester.makepyfile(test_one="def test_one(): pass")
    none_yet = run(pytester, "--procpar-replay")
    assert none_yet.ret == pytest.ExitCode.USAGE_ERROR
    none_yet.stderr.fnmatch_lines(["ERROR: procpar: no run records yet *"])
    for _ in range(3):
        assert parallel(pytester).ret == pytest.ExitCode.OK
    assert len(records(pytester)) == 2
    errors = {
        ("--procpar-replay", "--procpar-replay-worker", "gw7"): "*run * had no such worker*",
        ("--procpar-replay-worker", "gw0"): "*--procpar-replay-worker goes with --procpar-replay",
        ("--procpar-replay", "nosuchrun"): "*no run record is named 'nosuchrun' (recent: *",
        ("--procpar-replay", "2"): "*more than one run record starts '2' (recent: *",
        ("--procpar-rerun", "--procpar-bisect", "x"): "*--procpar-rerun and --procpar-bisect do*",
        ("--procpar-bisect", "test_one.py::test_one"): "*did not fail on a worker in any of the 2*",
        ("-o", "procpar_run_records=many"): "*procpar_run_records: expected a whole number >= 0*",
    }
    for args, message in errors.items():
        result = run(pytester, *args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR, args
        result.stderr.fnmatch_lines([message])
        assert "Traceback" not in result.stderr.str() + result.stdout.str()
    pytester.makeini("[pytest]\nprocpar_run_records = 0\n")
    assert parallel(pytester).ret == pytest.ExitCode.OK
    assert len(records(pytester)) == 2  # none added
