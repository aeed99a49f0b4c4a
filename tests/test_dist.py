"""``--dist`` policies end to end: outcomes, where tests run, durations, hooks, run report.

Every inner run is a subprocess (``runpytest_subprocess``) with plugin autoloading off, and loads
the plugin explicitly with ``-p procpar`` (pytest-xdist, also installed, would otherwise compete
for ``-n``).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict

import pytest
from harness import output, run, take_lines

from pytest_procpar.scheduler import POLICIES

# Inner runs see no other installed plugin (pytest-randomly reorders tests, pytest-django adds a
# class-scoped autouse fixture to every test): only -p procpar is loaded.
pytestmark = pytest.mark.inner_runs(autoload_plugins=False)


# Records, from the process that reports (the controller, or serial pytest), every report's
# phase and outcome; and, from the process that runs each test, which worker ran it.
RECORDING_CONFTEST = """
    import os

    import pytest


    def pytest_runtest_logreport(report):
        if os.environ.get("PYTEST_XDIST_WORKER"):
            return  # a worker: the controller replays this report and records it
        xfail = "xfail" if hasattr(report, "wasxfail") else ""
        with open("reports.log", "a") as f:
            f.write(f"{report.nodeid}\\t{report.when}\\t{report.outcome}\\t{xfail}\\n")


    @pytest.fixture(autouse=True)
    def record_worker(request, worker_id):
        with open(request.config.rootpath / "ran.log", "a") as f:
            f.write(f"{request.node.nodeid}\\t{worker_id}\\n")
"""


def reports(pytester: pytest.Pytester) -> Counter[str]:
    return Counter(take_lines(pytester.path / "reports.log", missing_ok=True))


def ran(pytester: pytest.Pytester) -> list[tuple[str, str]]:
    """(nodeid, worker id) for every test that started, in the order each worker started them
    (the lines of different workers interleave)."""
    lines = take_lines(pytester.path / "ran.log", missing_ok=True)
    return [(line.split("\t")[0], line.split("\t")[1]) for line in lines]


def workers_by(pytester: pytest.Pytester, key: object) -> dict[str, set[str]]:
    """The worker ids that ran the tests of each ``key(nodeid)``."""
    found: dict[str, set[str]] = defaultdict(set)
    for nodeid, worker in ran(pytester):
        found[key(nodeid)].add(worker)  # type: ignore[operator]
    return dict(found)


# -- every policy gives serial outcomes -------------------------------------------------------

OUTCOME_FILES = {
    "test_one": """
        import pytest


        @pytest.fixture(scope="module")
        def shared():
            return object()


        @pytest.fixture
        def broken():
            raise RuntimeError("setup broke")


        def test_pass(shared):
            pass


        def test_fail(shared):
            assert 1 == 2


        @pytest.mark.skip(reason="not today")
        def test_skip():
            pass


        @pytest.mark.xfail(reason="known bug")
        def test_xfail():
            assert 0


        @pytest.mark.xfail(reason="fixed meanwhile")
        def test_xpass():
            pass


        def test_error(broken):
            pass


        class TestThings:
            @pytest.mark.procpar_group("a")
            def test_grouped(self):
                pass

            @pytest.mark.parametrize("i", range(4))
            def test_param(self, i):
                assert i != 2
    """,
    "test_two": """
        import pytest


        @pytest.mark.xdist_group("b")
        @pytest.mark.parametrize("i", range(5))
        def test_many(i):
            pass


        def test_teardown_error(request):
            request.addfinalizer(lambda: 1 / 0)
    """,
}
SERIAL_OUTCOMES = {"passed": 11, "failed": 2, "skipped": 1, "xfailed": 1, "xpassed": 1, "errors": 2}


_SERIAL: list[Counter[str]] = []  # the serial run's reports, made once per process


def serial_baseline(pytester: pytest.Pytester) -> Counter[str]:
    if not _SERIAL:
        serial = run(pytester)
        assert serial.parseoutcomes() == SERIAL_OUTCOMES
        _SERIAL.append(reports(pytester))
    assert sum(_SERIAL[0].values()) == 3 * 17 - 2  # the skip and the setup error have no call
    return _SERIAL[0]


@pytest.mark.parametrize("dist", [*POLICIES, "no"])
def test_every_policy_gives_serial_outcomes(pytester: pytest.Pytester, dist: str) -> None:
    pytester.makeconftest(RECORDING_CONFTEST)
    pytester.makepyfile(**OUTCOME_FILES)
    serial_reports = serial_baseline(pytester)

    result = run(pytester, "-n", "2", "--dist", dist)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    runs = 2 if dist == "each" else 1  # each: the whole suite on both workers
    assert result.parseoutcomes() == {k: v * runs for k, v in SERIAL_OUTCOMES.items()}
    assert reports(pytester) == Counter({line: n * runs for line, n in serial_reports.items()})


# -- where tests run --------------------------------------------------------------------------

MODULE_BODY = """
    import pytest


    @pytest.mark.parametrize("i", range(6))
    def test_f(i):
        pass
"""
CLASS_MODULE = """
    def test_free_one():
        pass


    class TestAlpha:
        def test_a1(self):
            pass

        def test_a2(self):
            pass

        def test_a3(self):
            pass


    def test_free_two():
        pass


    class TestBeta:
        def test_b1(self):
            pass

        def test_b2(self):
            pass
"""


def make_modules(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(RECORDING_CONFTEST)
    pytester.makepyfile(**{f"test_m{k}": MODULE_BODY for k in range(4)}, test_cls=CLASS_MODULE)


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


@pytest.mark.parametrize("dist", ["loadscope", "loadfile"])
def test_module_stays_on_one_worker(pytester: pytest.Pytester, dist: str) -> None:
    make_modules(pytester)
    result = run(pytester, "-n", "2", "--dist", dist)
    result.assert_outcomes(passed=31)
    by_file = workers_by(pytester, file_of)
    assert len(by_file) == 5
    for file, workers in by_file.items():
        if file != "test_cls.py" or dist == "loadfile":
            assert len(workers) == 1, (file, workers)
    # both workers had work: each one's first batch is a different module
    assert set().union(*by_file.values()) == {"gw0", "gw1"}


def test_loadscope_keeps_each_class_on_one_worker(pytester: pytest.Pytester) -> None:
    make_modules(pytester)
    run(pytester, "-n", "2", "--dist", "loadscope").assert_outcomes(passed=31)
    by_scope = workers_by(pytester, lambda nodeid: nodeid.rsplit("::", 1)[0])
    assert {"test_cls.py", "test_cls.py::TestAlpha", "test_cls.py::TestBeta"} <= set(by_scope)
    for scope, workers in by_scope.items():
        assert len(workers) == 1, (scope, workers)


def test_load_does_split_modules(pytester: pytest.Pytester) -> None:
    """The control for the two tests above: without scoping, the first module collected (6 or
    7 tests) is shared, since the workers' first batches are its first and next four tests."""
    make_modules(pytester)
    options = ("--dist", "load", "--procpar-collect=controller")  # batches from the whole suite
    run(pytester, "-n", "2", *options).assert_outcomes(passed=31)
    by_file = workers_by(pytester, file_of)
    assert {"gw0", "gw1"} in by_file.values(), by_file


def test_loadscope_module_with_colons_in_parameter_ids(pytester: pytest.Pytester) -> None:
    """A module's tests stay on one worker even when parametrize ids contain ``::``."""
    pytester.makeconftest(RECORDING_CONFTEST)
    pytester.makepyfile(
        test_ids="""
        import pytest


        @pytest.mark.parametrize("name", ["std::vector", "std::map", "boost::any", "absl::span"])
        def test_p(name):
            pass


        def test_q():
            pass
        """,
        test_other=MODULE_BODY,
    )
    run(pytester, "-n", "2", "--dist", "loadscope").assert_outcomes(passed=11)
    by_file = workers_by(pytester, file_of)
    assert len(by_file["test_ids.py"]) == 1, by_file


GROUP_FILES = {
    "test_g1": """
        import pytest


        @pytest.mark.procpar_group("a")
        def test_a1():
            pass


        @pytest.mark.parametrize("i", range(4))
        def test_free(i):
            pass


        @pytest.mark.xdist_group("b")
        def test_b1():
            pass


        @pytest.mark.procpar_group(name="a")
        def test_a2():
            pass
    """,
    "test_g2": """
        import pytest


        @pytest.mark.xdist_group(name="b")
        class TestB:
            def test_b2(self):
                pass

            def test_b3(self):
                pass


        @pytest.mark.parametrize("i", range(4))
        def test_free(i):
            pass


        @pytest.mark.procpar_group("a")
        def test_a3():
            pass
    """,
}


def group_of(nodeid: str) -> str:
    name = nodeid.rsplit("::", 1)[1]
    return "a" if name.startswith("test_a") else "b" if name.startswith("test_b") else nodeid


# pytest-dependency's rule, made here so the test needs no plugin: a test marked
# ``dependency(depends=[...])`` is skipped unless those tests passed earlier in this process.
DEPENDENCY_CONFTEST = """
    import pytest

    PASSED = set()


    def pytest_configure(config):
        config.addinivalue_line("markers", "dependency(depends=()): needs those to pass first")
        config.addinivalue_line("markers", "order(n): runs in this order")


    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(item, call):
        report = yield
        if report.when == "call" and report.passed:
            PASSED.add(item.name)
        return report


    def pytest_runtest_setup(item):
        marker = item.get_closest_marker("dependency")
        depends = marker.kwargs.get("depends", ()) if marker else ()
        missing = [name for name in depends if name not in PASSED]
        if missing:
            pytest.skip(f"depends on {missing}")
"""


def chained_module(step: int) -> str:
    depends = f"depends=['test_step{step - 1}']" if step else ""
    return f"""
    import pytest


    @pytest.mark.parametrize("i", range(8))
    def test_free(i):
        pass


    @pytest.mark.dependency({depends})
    def test_step{step}():
        pass


    @pytest.mark.order({step})
    def test_ordered{step}():
        pass
    """


@pytest.mark.parametrize("dist", [name for name in POLICIES if name != "each"])
def test_ordered_tests_run_as_one_chain(pytester: pytest.Pytester, dist: str) -> None:
    """Tests marked ``dependency`` or ``order`` run on one worker in collection order, under
    every policy; the other tests still spread over both workers."""
    pytester.makeconftest(RECORDING_CONFTEST + DEPENDENCY_CONFTEST)
    pytester.makepyfile(**{f"test_c{step}": chained_module(step) for step in range(4)})
    # Collected once: collecting in workers, the chain's worker would hand its slot over to a
    # fresh one to import each next file (see test_collect_workers.py)
    result = run(pytester, "-n", "2", "--dist", dist, "--procpar-collect=controller")
    result.assert_outcomes(passed=40)  # none skipped: each step ran after the one before
    ran_in_order = ran(pytester)
    chained = [(nodeid, worker) for nodeid, worker in ran_in_order if "::test_free" not in nodeid]
    assert [nodeid for nodeid, _ in chained] == [
        f"test_c{step}.py::test_{kind}{step}" for step in range(4) for kind in ("step", "ordered")
    ]
    assert len({worker for _, worker in chained}) == 1
    assert {worker for _, worker in ran_in_order} == {"gw0", "gw1"}


@pytest.mark.parametrize("collect", ["controller", "workers"])
def test_loadgroup_keeps_marked_groups_on_one_worker(
    pytester: pytest.Pytester, collect: str
) -> None:
    """Also when the workers collect: the controller knows each test's group from the
    marker its worker found (on the test or its class)."""
    pytester.makeconftest(RECORDING_CONFTEST + INSPECTING_CONFTEST)
    pytester.makepyfile(**GROUP_FILES)
    options = ("--dist", "loadgroup", "--strict-markers", f"--procpar-collect={collect}")
    result = run(pytester, "-n", "2", *options)
    result.assert_outcomes(passed=14)
    assert "PytestUnknownMarkWarning" not in output(result)
    by_group = workers_by(pytester, group_of)
    assert len(by_group) == 2 + 8
    assert len(by_group["a"]) == 1, by_group
    assert len(by_group["b"]) == 1, by_group
    # both markers, positional or by name, on the test or its class, name the group
    groups = {nodeid: item["group"] for nodeid, item in described(pytester).items()}
    assert groups == {
        nodeid: group_of(nodeid) if "::test_free" not in nodeid else None for nodeid in groups
    }


def test_group_markers_known_under_strict_markers_without_workers(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(**GROUP_FILES)
    run(pytester, "--strict-markers").assert_outcomes(passed=14)


EACH_TESTS = """
    import pytest


    @pytest.mark.parametrize("i", range(5))
    def test_e(i):
        pass
"""


@pytest.mark.parametrize(
    ("workers", "tests"), [(2, 5), (3, 2)], ids=["2-workers-5-tests", "3-workers-2-tests"]
)
def test_each_runs_every_test_on_every_worker(
    pytester: pytest.Pytester, workers: int, tests: int
) -> None:
    pytester.makeconftest(RECORDING_CONFTEST)
    pytester.makepyfile(
        test_each=f"""
        import pytest


        @pytest.mark.parametrize("i", range({tests}))
        def test_e(i):
            pass
        """
    )
    result = run(pytester, "-n", str(workers), "--dist", "each")
    result.assert_outcomes(passed=tests * workers)
    counts = Counter(ran(pytester))
    expected_workers = {f"gw{k}" for k in range(workers)}
    assert {worker for _, worker in counts} == expected_workers
    assert len(counts) == tests * workers
    assert set(counts.values()) == {1}


def test_dist_from_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nprocpar_dist = each\n")
    pytester.makeconftest(RECORDING_CONFTEST)
    pytester.makepyfile(test_each=EACH_TESTS)
    result = run(pytester, "-n", "2")
    result.assert_outcomes(passed=10)
    assert len(ran(pytester)) == 10
    assert any(line.startswith("procpar: each scheduling,") for line in result.outlines)
    run(pytester, "-n", "2", "--dist", "load").assert_outcomes(passed=5)  # the option wins


def test_dist_no_runs_serially(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(RECORDING_CONFTEST)
    pytester.makepyfile(test_each=EACH_TESTS)
    result = run(pytester, "-n", "2", "--dist", "no")
    result.assert_outcomes(passed=5)
    notices = [line for line in result.outlines if line.startswith("procpar:")]
    assert notices == ["procpar: --dist no runs serially, no workers started"]
    assert {worker for _, worker in ran(pytester)} == {"master"}


@pytest.mark.parametrize("ini", [False, True], ids=["option", "ini"])
def test_bad_dist_is_usage_error(pytester: pytest.Pytester, ini: bool) -> None:
    pytester.makepyfile(test_each=EACH_TESTS)
    if ini:
        pytester.makeini("[pytest]\nprocpar_dist = bogus\n")
        result = run(pytester, "-n", "2")
    else:
        result = run(pytester, "-n", "2", "--dist", "bogus")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = "\n".join(result.outlines + result.errlines)
    assert "'bogus'" in text
    assert ("procpar_dist" if ini else "--dist") in text
    assert "Traceback" not in text
    assert not [line for line in result.outlines if line.startswith("procpar:")]


# -- durations --------------------------------------------------------------------------------

DURATION_TESTS = """
    import pytest


    @pytest.fixture(scope="module")
    def shared():
        return 1


    @pytest.mark.parametrize("i", range(4))
    def test_d(i):
        pass


    def test_uses_shared(shared):
        pass


    def test_fails():
        assert False


    class TestK:
        @pytest.fixture(scope="class")
        def per_class(self):
            return 2

        def test_k(self, per_class):
            pass

        @pytest.mark.procpar_group("g")
        def test_grouped(self):
            pass
"""
DURATION_IDS = [
    *(f"test_dur.py::test_d[{i}]" for i in range(4)),
    "test_dur.py::test_uses_shared",
    "test_dur.py::test_fails",
    "test_dur.py::TestK::test_k",
    "test_dur.py::TestK::test_grouped",
]

# Writes what the scheduler hook is told about every item, and leaves the choice to --dist.
INSPECTING_CONFTEST = """
    import json


    def pytest_procpar_make_scheduler(config, items, workers):
        described = {
            item.nodeid: {
                "index": item.index,
                "file": item.file,
                "scope": item.scope,
                "fixture_scope": item.fixture_scope,
                "group": item.group,
                "expected": item.expected,
                "known": item.known,
                "failed_last": item.failed_last,
            }
            for item in items
        }
        with open(config.rootpath / "described.json", "w") as f:
            json.dump({"workers": workers, "items": described}, f)
        return None
"""


def described(pytester: pytest.Pytester) -> dict[str, dict[str, object]]:
    data = json.loads((pytester.path / "described.json").read_text())
    assert data["workers"] == 2
    return data["items"]  # type: ignore[no-any-return]


def test_durations_saved_in_cache(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_dur=DURATION_TESTS)
    run(pytester, "-n", "2").assert_outcomes(passed=7, failed=1)
    stored = json.loads((pytester.path / ".pytest_cache/v/procpar/durations").read_text())
    assert sorted(stored) == sorted(DURATION_IDS)
    assert all(isinstance(value, float) and value >= 0 for value in stored.values())


def test_durations_file_written_and_read_back(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_dur=DURATION_TESTS)
    path = pytester.path / "durations.json"
    run(pytester, "-n", "2", "--procpar-durations", "durations.json").assert_outcomes(
        passed=7, failed=1
    )
    stored = json.loads(path.read_text())
    assert sorted(stored) == sorted(DURATION_IDS)
    assert all(isinstance(value, float) and value >= 0 for value in stored.values())
    assert not (pytester.path / ".pytest_cache/v/procpar/durations").exists()

    # the second run must be told exactly these (distinct, recognisable) values
    planted = {nodeid: 10.0 + k for k, nodeid in enumerate(DURATION_IDS)}
    del planted["test_dur.py::test_d[3]"]  # unknown: expected is the median of the known
    planted["test_gone.py::test_old"] = 99.0  # a test that no longer exists
    path.write_text(json.dumps(planted))
    pytester.makeconftest(INSPECTING_CONFTEST)
    run(pytester, "-n", "2", "--procpar-durations", "durations.json").assert_outcomes(
        passed=7, failed=1
    )
    items = described(pytester)
    assert sorted(items) == sorted(DURATION_IDS)
    median = sorted(value for name, value in planted.items() if name in items)[3]  # 7 known
    for nodeid, item in items.items():
        if nodeid in planted:
            assert (item["expected"], item["known"]) == (planted[nodeid], True), nodeid
        else:
            assert (item["expected"], item["known"]) == (median, False), nodeid
    updated = json.loads(path.read_text())
    assert set(DURATION_IDS) <= set(updated)
    assert updated["test_dur.py::test_d[0]"] != planted["test_dur.py::test_d[0]"]  # remeasured


def test_durations_of_tests_cut_short(pytester: pytest.Pytester) -> None:
    """A crashed or timed-out test is remembered as long as it ran (it goes first next time);
    a test that was never measured, or whose run was interrupted, keeps its old duration."""
    pytester.makepyfile(
        test_cut="""
        import os
        import time


        def test_crashes():
            time.sleep(0.3)
            os._exit(3)


        def test_hangs():
            time.sleep(60)


        def test_ok():
            pass
        """
    )
    path = pytester.path / "durations.json"
    args = ("-n", "2", "--procpar-timeout=1", "--procpar-durations", "durations.json")
    run(pytester, *args).assert_outcomes(passed=1, failed=2)
    stored = json.loads(path.read_text())
    assert stored["test_cut.py::test_crashes"] >= 0.3, stored
    assert stored["test_cut.py::test_hangs"] >= 1.0, stored

    pytester.makepyfile(test_cut="def test_interrupted():\n    raise KeyboardInterrupt\n")
    path.write_text(json.dumps({"test_cut.py::test_interrupted": 7.0}))
    assert run(pytester, *args).ret == pytest.ExitCode.INTERRUPTED
    assert json.loads(path.read_text()) == {"test_cut.py::test_interrupted": 7.0}


def test_scheduler_hook_sees_items_described(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_dur=DURATION_TESTS)
    pytester.makeconftest(INSPECTING_CONFTEST)
    run(pytester, "-n", "2").assert_outcomes(passed=7, failed=1)  # records lastfailed, durations
    first = described(pytester)
    assert sorted(first) == sorted(DURATION_IDS)
    assert not any(item["known"] or item["failed_last"] for item in first.values())
    assert len({item["expected"] for item in first.values()}) == 1  # no history: all equal
    run(pytester, "-n", "2").assert_outcomes(passed=7, failed=1)
    items = described(pytester)
    assert [item["index"] for item in items.values()] == list(range(len(DURATION_IDS)))
    assert all(item["known"] for item in items.values())
    assert [nodeid for nodeid, item in items.items() if item["failed_last"]] == [
        "test_dur.py::test_fails"
    ]
    assert {item["file"] for item in items.values()} == {"test_dur.py"}
    fixture_scopes = {nodeid: item["fixture_scope"] for nodeid, item in items.items()}
    assert fixture_scopes["test_dur.py::test_uses_shared"] == "test_dur.py"
    assert fixture_scopes["test_dur.py::TestK::test_k"] == "test_dur.py::TestK"
    assert fixture_scopes["test_dur.py::test_d[0]"] is None
    assert items["test_dur.py::TestK::test_k"]["scope"] == "test_dur.py::TestK"
    groups = {nodeid: item["group"] for nodeid, item in items.items() if item["group"]}
    assert groups == {"test_dur.py::TestK::test_grouped": "g"}


# -- plugins choosing the scheduler and the worker count ------------------------------------

ONE_WORKER_SCHEDULER = """
    class FirstTakesAll:
        '''Everything to the first worker that asks, nothing to the others.'''

        def __init__(self, items):
            self.pending = [item.index for item in items]

        def add_worker(self, worker):
            pass

        def next_batch(self, worker):
            batch, self.pending = self.pending, []
            return batch

        def remove_worker(self, worker, unfinished):
            self.pending = list(unfinished) + self.pending

        def has_pending(self):
            return bool(self.pending)


    def pytest_procpar_make_scheduler(config, items, workers):
        return FirstTakesAll(items)
"""


def test_plugin_scheduler_is_used(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(RECORDING_CONFTEST + ONE_WORKER_SCHEDULER)
    pytester.makepyfile(test_each=EACH_TESTS, test_more=MODULE_BODY)
    result = run(pytester, "-n", "2")
    result.assert_outcomes(passed=11)
    workers = Counter(worker for _, worker in ran(pytester))
    assert workers == Counter({"gw0": 11})


def test_plugin_sets_auto_worker_count(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        RECORDING_CONFTEST
        + "\n\n    def pytest_procpar_auto_num_workers(config):\n        return 3\n"
    )
    pytester.makepyfile(test_each=EACH_TESTS, test_more=MODULE_BODY)
    result = run(pytester, "-n", "auto", "--dist", "each")
    result.assert_outcomes(passed=33)
    assert any(line.startswith("procpar: 3 workers (") for line in result.outlines)
    assert {worker for _, worker in ran(pytester)} == {"gw0", "gw1", "gw2"}


# -- the run report ---------------------------------------------------------------------------

REPORT_LINE = re.compile(
    r"^procpar: (\w+)(?: \(by share\))? scheduling, (\d+) workers, efficiency \d+%"
)
TABLE_ROW = re.compile(r"^(gw\d+)\s+(\d+)\s+\d+\.\d\d\s+\d+\.\d\d$")
SEPARATOR = re.compile(r"^=+ procpar run report =+$")


def report_lines(result: pytest.RunResult) -> list[re.Match[str]]:
    return [m for m in map(REPORT_LINE.match, result.outlines) if m]


def test_default_report_is_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_each=EACH_TESTS, test_more=MODULE_BODY)
    result = run(pytester, "-n", "2")
    result.assert_outcomes(passed=11)
    assert [m.groups() for m in report_lines(result)] == [("duration", "2")]
    assert not any(SEPARATOR.match(line) for line in result.outlines)
    assert not any(TABLE_ROW.match(line) for line in result.outlines)


@pytest.mark.parametrize(
    ("args", "policy", "runs"),
    [
        (["--procpar-report"], "duration", 1),
        (["-v"], "duration", 1),
        (["--procpar-report", "--dist", "load"], "load", 1),
        (["--procpar-report", "--dist", "each"], "each", 2),
    ],
    ids=["report", "verbose", "load", "each"],
)
def test_report_table(pytester: pytest.Pytester, args: list[str], policy: str, runs: int) -> None:
    pytester.makepyfile(test_each=EACH_TESTS, test_more=MODULE_BODY)
    result = run(pytester, "-n", "2", *args)
    result.assert_outcomes(passed=11 * runs)
    separators = [k for k, line in enumerate(result.outlines) if SEPARATOR.match(line)]
    assert len(separators) == 1, result.outlines
    after = result.outlines[separators[0] :]
    rows = {m[1]: int(m[2]) for m in map(TABLE_ROW.match, after) if m}
    assert set(rows) == {"gw0", "gw1"}
    assert sum(rows.values()) == 11 * runs
    assert [m.groups() for m in report_lines(result)] == [(policy, "2")]


def test_no_report_without_workers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_each=EACH_TESTS)
    for args in ([], ["-n", "2", "--dist", "no", "--procpar-report"]):
        result = run(pytester, *args)
        result.assert_outcomes(passed=5)
        assert report_lines(result) == []
        assert not any(SEPARATOR.match(line) for line in result.outlines)


def test_report_patterns_match_runreport() -> None:
    """The regexes above really match what runreport prints (no inner run needed)."""
    from pytest_procpar.runreport import RunReport

    report = RunReport("load")
    report.item_done("gw1", 0.5)
    report.item_done("gw0", 0.25)
    report.item_done("gw1", 0.25)
    report.finish()
    lines = report.table(2, [("t.py::test", 0.5)])
    rows = [m.groups() for m in map(TABLE_ROW.match, lines) if m]
    assert rows == [("gw0", "1"), ("gw1", "2")]
    assert [m.groups() for m in map(REPORT_LINE.match, lines) if m] == [("load", "2")]
