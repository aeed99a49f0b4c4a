"""Workers configured as xdist workers, and reports that reach the controller whatever they hold.

The plugins here are conftests written the way xdist-aware plugins are (pytest-html,
pytest-reportlog, pytest-metadata, syrupy): each decides its role in ``pytest_configure`` by
looking at ``config.workerinput``. Every run is compared with a serial run of the same suite,
with fork and with a start method whose workers configure from scratch.
"""

from __future__ import annotations

import json

import pytest
from harness import junit_suite, output, parallel, run, short_summary, take_lines

METHODS = ["fork", "spawn"]


# A reporter registered in the controller only, a worker half that answers through
# workeroutput (read in pytest_testnodedown without a guard, as pytest-metadata does), a
# plugin object registered whatever the role, and a record of which hooks ran where.
ROLE_CONFTEST = """
import json, os

def where(config):
    return config.workerinput["workerid"] if hasattr(config, "workerinput") else "controller"

def note(config, what):
    with open(os.path.join(str(config.rootpath), "hooks.jsonl"), "a") as out:
        out.write(json.dumps([where(config), what]) + "\\n")

class Reporter:
    def __init__(self, path):
        self.out = open(path, "w")

    def pytest_runtest_logreport(self, report):
        self.out.write(json.dumps([report.nodeid, report.when, report.outcome]) + "\\n")
        self.out.flush()

    def pytest_unconfigure(self, config):
        self.out.close()

class Everywhere:
    pass

def pytest_configure(config):
    note(config, "configure")
    config.pluginmanager.register(Everywhere(), "everywhere")
    if hasattr(config, "workerinput"):
        config.workeroutput["role"] = "worker " + config.workerinput["workerid"]
    else:
        config.pluginmanager.register(Reporter(str(config.rootpath / "log.jsonl")), "reporter")

def pytest_testnodedown(node, error):
    if error is None:
        note(node.config, ["node down", node.workeroutput["role"], node.workeroutput["exitstatus"]])

def pytest_unconfigure(config):
    note(config, "unconfigure")
"""

ROLE_TESTS = """
import pytest

@pytest.mark.parametrize("i", range(6))
def test_pass(i):
    pass

def test_fail():
    assert False
"""


def hook_calls(pytester: pytest.Pytester) -> list[tuple[str, object]]:
    calls = [tuple(json.loads(line)) for line in take_lines(pytester.path / "hooks.jsonl")]
    return sorted(calls, key=repr)  # type: ignore[arg-type]


def report_log(pytester: pytest.Pytester) -> list[list[str]]:
    return sorted(json.loads(line) for line in take_lines(pytester.path / "log.jsonl"))


@pytest.mark.parametrize("method", METHODS)
def test_plugins_decide_their_role_in_each_worker(pytester: pytest.Pytester, method: str) -> None:
    """Configure runs again in each worker with workerinput set: the controller's reporter
    writes each record once, workers answer through workeroutput, unconfigure runs in each."""
    pytester.makeconftest(ROLE_CONFTEST)
    pytester.makepyfile(test_role=ROLE_TESTS)
    serial = run(pytester)
    serial.assert_outcomes(passed=6, failed=1)
    serial_log = report_log(pytester)
    assert len(serial_log) == 21
    assert hook_calls(pytester) == [("controller", "configure"), ("controller", "unconfigure")]

    result = parallel(pytester, method=method)
    result.assert_outcomes(passed=6, failed=1)
    assert result.ret == serial.ret == pytest.ExitCode.TESTS_FAILED
    assert "INTERNALERROR" not in result.stdout.str()
    assert report_log(pytester) == serial_log  # once each: no worker writes to the file
    calls = hook_calls(pytester)
    down = sorted(what[1:] for where, what in calls if isinstance(what, list))  # type: ignore[index]
    assert down == [["worker gw0", 1], ["worker gw1", 0]] or down == [
        ["worker gw0", 0],
        ["worker gw1", 1],
    ]  # the exit status each worker's own session ended with: one ran the failing test
    assert [call for call in calls if not isinstance(call[1], list)] == sorted(
        [
            ("controller", "configure"),
            ("controller", "unconfigure"),
            *[(worker, hook) for worker in ("gw0", "gw1") for hook in ("configure", "unconfigure")],
        ],
        key=repr,
    )


def test_node_has_no_workeroutput_when_its_worker_crashed(pytester: pytest.Pytester) -> None:
    """As xdist's node: plugins guard with hasattr before reading what a worker sent."""
    pytester.makeconftest(
        """
        def pytest_testnodedown(node, error):
            if hasattr(node, "workeroutput"):
                node.workeroutput["metadata"]  # what the worker's configure put there
            else:
                print("no workeroutput:", node.gateway.id, error is not None)

        def pytest_configure(config):
            if hasattr(config, "workeroutput"):
                config.workeroutput["metadata"] = {}
        """
    )
    pytester.makepyfile(
        test_crash="""
        import os

        def test_crash():
            os._exit(3)

        def test_other():
            pass
        """
    )
    result = parallel(pytester, "-s", "--dist", "loadfile", method="fork")
    result.assert_outcomes(passed=1, failed=1)
    assert "INTERNALERROR" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*no workeroutput: gw0 True*"])


def test_plugins_find_xdist_by_name(pytester: pytest.Pytester) -> None:
    """``hasplugin("xdist")`` is true while procpar owns -n, in the controller and workers,
    also where the user blocked xdist (``-p no:xdist``), as it is in xdist's runs."""
    pytester.makeconftest(
        """
        def pytest_configure(config):
            found = config.pluginmanager.hasplugin("xdist")
            print("xdist found:", found, getattr(config, "workerinput", {}).get("workerid"))
        """
    )
    pytester.makepyfile(test_one="def test_one(): pass")
    result = parallel(pytester, "-s", method="spawn")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*xdist found: True None*"])
    blocked = run(pytester, "-p", "no:xdist", "-n", "1", "-s")
    blocked.stdout.fnmatch_lines(["*xdist found: True None*"])


UNPICKLABLE = """
import threading
import unittest

import pytest

class Cases(unittest.TestCase):
    def test_passing_subtests(self):
        for value in (lambda: 1, threading.Lock()):
            with self.subTest(value=value):
                pass

    def test_failing_subtest(self):
        with self.subTest(value=lambda: 2):
            self.fail("boom")

def test_property(record_property):
    record_property("lock", threading.Lock())

@pytest.mark.parametrize("i", range(4))
def test_after(i):
    pass
"""


@pytest.mark.parametrize("method", METHODS)
def test_unpicklable_report_values_keep_the_outcome(pytester: pytest.Pytester, method: str) -> None:
    """A value pickle cannot take is sent as its saferepr; no worker dies, no test is lost."""
    pytester.makepyfile(test_values=UNPICKLABLE)
    serial = run(pytester, "-rA", "--junitxml=out.xml")
    result = parallel(pytester, "-rA", "--junitxml=out.xml", method=method)
    assert result.parseoutcomes() == serial.parseoutcomes()
    assert result.ret == serial.ret == pytest.ExitCode.TESTS_FAILED
    text = result.stdout.str()
    assert "crashed" not in text
    assert "pickle" not in text
    if int(pytest.__version__.split(".")[0]) >= 9:  # unittest's subtests reported as pytest's
        result.stdout.fnmatch_lines(
            ["SUBFAILED(value=<function *<lambda> at 0x*>) *test_failing_subtest*"]
        )
    properties = junit_suite(pytester.path / "out.xml").iter("property")
    assert [p.get("value", "").startswith("<unlocked _thread.lock") for p in properties] == [True]


SUBTESTS = """
def test_parent(subtests):
    for i in range(4):
        with subtests.test(msg="step", i=i):
            assert i % 2 == 0

def test_all_pass(subtests):
    with subtests.test(i=0):
        pass
"""


@pytest.mark.parametrize("method", METHODS)
def test_subtests_give_the_serial_verdict(pytester: pytest.Pytester, method: str) -> None:
    """pytest 9's subtests: the parent of failed subtests fails, lines and counts as serial."""
    if not hasattr(pytest, "Subtests"):
        pytest.skip("pytest has no built-in subtests before 9.0")
    pytester.makepyfile(test_sub=SUBTESTS)
    serial = run(pytester, "-rA")
    result = parallel(pytester, "-rA", method=method)
    assert result.parseoutcomes() == serial.parseoutcomes()
    assert result.ret == serial.ret == pytest.ExitCode.TESTS_FAILED

    assert short_summary(serial)
    assert short_summary(result) == short_summary(serial)
    result.stdout.fnmatch_lines(["FAILED test_sub.py::test_parent - contains 2 failed subtests"])


def test_suite_properties_reach_the_junit_xml(pytester: pytest.Pytester) -> None:
    """``record_testsuite_property`` in workers lands in the controller's XML, as serially."""
    pytester.makepyfile(
        test_props="""
        import pytest

        @pytest.mark.parametrize("i", range(4))
        def test_prop(record_testsuite_property, i):
            record_testsuite_property(f"prop{i}", i)
        """
    )

    def suite_properties(*args: str) -> list[tuple[str | None, str | None]]:
        run(pytester, "--junitxml=out.xml", *args).assert_outcomes(passed=4)
        suite = junit_suite(pytester.path / "out.xml")
        found = [(p.get("name"), p.get("value")) for p in suite.findall("properties/property")]
        return sorted(found)

    serial = suite_properties()
    assert serial == [(f"prop{i}", str(i)) for i in range(4)]
    assert suite_properties("-n", "2") == serial
    assert suite_properties("-n", "2", "--procpar-start", "spawn") == serial


def test_legacy_tmpdir_factory_is_the_workers(pytester: pytest.Pytester) -> None:
    """``tmpdir_factory`` and ``tmp_path_factory`` share one basetemp, the worker's."""
    pytester.makepyfile(
        test_tmp="""
        def test_same(tmpdir_factory, tmp_path_factory, worker_id):
            base = tmp_path_factory.getbasetemp()
            assert str(tmpdir_factory.getbasetemp()) == str(base)
            assert base.name == "popen-" + worker_id
        """
    )
    run(pytester, "-n", "2").assert_outcomes(passed=1)


def test_configure_failing_in_a_worker_is_reported(pytester: pytest.Pytester) -> None:
    """A plugin whose configure fails as a worker stops the run with its traceback."""
    pytester.makeconftest(
        """
        def pytest_configure(config):
            if hasattr(config, "workerinput"):
                raise RuntimeError("no worker may run here")
        """
    )
    pytester.makepyfile(test_one="def test_one(): pass")
    result = run(pytester, "-n", "1")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.stdout.fnmatch_lines(
        [
            "*pytest in the worker ended before running tests (exit code 3)*",
            "*RuntimeError: no worker may run here*",
        ]
    )


# Configured again in a forked worker, this plugin declares its hooks again (as a plugin object
# registered in configure does, through pytest_addhooks) and, at the end, unregisters the
# object the controller registered: both as pytest-json-report and pytest-bdd do.
REPEATING_CONFTEST = """
class Hooks:
    def pytest_repeating_report(self, data):
        '''A hook of this plugin's own.'''

class Reporter:
    def pytest_addhooks(self, pluginmanager):
        pluginmanager.add_hookspecs(Hooks)

    def pytest_repeating_report(self, data):
        data.append(1)

def pytest_configure(config):
    if not hasattr(config, "workerinput"):
        config._reporter = Reporter()
        config.pluginmanager.register(config._reporter, "repeating-reporter")
    else:
        config.pluginmanager.register(Reporter())

def pytest_unconfigure(config):
    reporter = getattr(config, "_reporter", None)
    if reporter is not None:
        del config._reporter
        config.pluginmanager.unregister(reporter)
"""


def test_configure_repeated_in_a_worker_declares_and_unregisters_once(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(REPEATING_CONFTEST)
    pytester.makepyfile(
        test_hooks="""
        def test_hook(request):
            data = []
            request.config.hook.pytest_repeating_report(data=data)
            assert data == [1]
        """
    )
    result = parallel(pytester, method="fork")
    result.assert_outcomes(passed=1)
    assert "INTERNALERROR" not in output(result)
    assert "Traceback" not in output(result)


ENV_PLUGIN = """
import os

def pytest_load_initial_conftests(early_config):
    os.environ["PROCPAR_TEST_PATH"] = "/added:" + os.environ.get("PROCPAR_TEST_PATH", "")
"""


@pytest.mark.parametrize("method", METHODS)
def test_workers_that_configure_anew_start_from_the_first_environment(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    """A plugin that extends a variable while pytest starts (pytest-env) extends it once."""
    monkeypatch.setenv("PROCPAR_TEST_PATH", "/base")
    monkeypatch.syspath_prepend(pytester.path)
    pytester.makepyfile(
        envplugin=ENV_PLUGIN,
        test_env="""
        import os

        def test_path():
            assert os.environ["PROCPAR_TEST_PATH"] == "/added:/base"
        """,
    )
    parallel(pytester, "-p", "envplugin", method=method).assert_outcomes(passed=1)
    run(pytester, "-p", "envplugin").assert_outcomes(passed=1)


def test_a_frozen_clock_does_not_reach_time_limits(pytester: pytest.Pytester) -> None:
    """Tests that replace time.monotonic and time.perf_counter (freezegun does) leave the
    worker's clock alone: time limits and recorded durations stay sane."""
    pytester.makepyfile(
        test_frozen="""
        import time

        import pytest
        from _pytest import timing

        def frozen_clock():
            return 1.5e9

        @pytest.fixture(scope="module", autouse=True)
        def frozen(monkeypatch_module):
            # What freezegun does: every reference to the clocks, pytest's own included.
            for module in (time, timing):
                monkeypatch_module.setattr(module, "perf_counter", frozen_clock)
            monkeypatch_module.setattr(time, "monotonic", frozen_clock)

        @pytest.fixture(scope="module")
        def monkeypatch_module():
            with pytest.MonkeyPatch.context() as patch:
                yield patch

        @pytest.mark.parametrize("i", range(3))
        def test_frozen(i):
            pass
        """
    )
    result = run(pytester, "-n", "1", "--procpar-timeout", "60", "--procpar-report")
    result.assert_outcomes(passed=3)
    assert "INTERNALERROR" not in result.stdout.str()
    durations = json.loads((pytester.path / ".pytest_cache/v/procpar/durations").read_text())
    assert all(seconds < 60 for seconds in durations.values()), durations


def test_numprocesses_is_the_number_of_workers_started(pytester: pytest.Pytester) -> None:
    """What xdist-aware plugins read for the worker count (syrupy expects a report from each)
    is resolved as xdist resolves ``-n auto``, to the workers this run started."""
    pytester.makeconftest(
        """
        def pytest_sessionfinish(session):
            if not hasattr(session.config, "workerinput"):
                print("numprocesses:", repr(session.config.option.numprocesses))
        """
    )
    pytester.makepyfile(test_one="def test_one(): pass")
    result = run(pytester, "-n", "auto", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*numprocesses: 1*"])  # one test: one worker
