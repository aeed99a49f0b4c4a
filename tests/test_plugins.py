"""Third-party pytest plugins under procpar: the first part of the plugin matrix
(pytest-timeout, pytest-randomly, pytest-rerunfailures, pytest-asyncio, hypothesis,
pytest-django, pytest-benchmark; the rest is in ``tests/test_plugin_matrix_*.py``, the shared
harness in ``tests/matrix.py``).

Each plugin test starts with ``pytest.importorskip`` of the plugin's module, so a run without
the plugin installed skips it; CI installs the matrix to run them. Here the installed plugins
load as usual in every inner run, which loads procpar explicitly (``-p procpar``: pytest-xdist,
also installed, would otherwise own ``-n``) and blocks pytest-randomly unless the test is about
it (installed, it would reorder and reseed every inner run). Results are compared with a
serial run wherever the plugin's behaviour there is the reference.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from typing import Any

import pytest
from harness import NO_HYPOTHESIS, NO_RANDOMLY, QUIET, header_method, output, reference, run
from matrix import (
    DJANGO_SETTINGS,
    METHODS,
    PLUGINS_AS_INSTALLED,
    XDIST,
    junit_cases,
    parallel,
    read_json_files,
    run_pair,
    with_xdist,
    worker_sequences,
    xdist_as,
)

pytestmark = PLUGINS_AS_INSTALLED

# SPAWN_LATE: on a busy machine a spawned worker may still be starting when the other has run
# every test, so "both workers ran tests" is not asserted where workers are spawned.

# -- pytest-timeout ------------------------------------------------------------------------

BLOCKING = """
import threading

import pytest

def test_blocks():
    threading.Event().wait()

@pytest.mark.parametrize("i", range(3))
def test_quick(i):
    pass
"""

TIMEOUT_MESSAGE = "Failed: Timeout (>1.0s) from pytest-timeout."


@pytest.mark.parametrize("method", METHODS)
def test_timeout_option_fails_only_the_blocking_test(
    pytester: pytest.Pytester, method: str
) -> None:
    """``--timeout`` is pytest-timeout's; ``--procpar-timeout`` (procpar's) is accepted beside
    it and, being longer, leaves the test to pytest-timeout: the outcomes are the serial
    run's."""
    pytest.importorskip("pytest_timeout")
    pytester.makepyfile(test_block=BLOCKING)
    limits = ("--procpar-timeout", "60")
    pair = run_pair(pytester, method, "--timeout", "1", plugins=QUIET, procpar_args=limits)
    assert pair.expected.parseoutcomes() == {"passed": 3, "failed": 1}
    result = pair.result
    if method != "xdist":
        result.stdout.fnmatch_lines(
            [f"procpar: 2 workers ({header_method(method)}), 4 items, collected in *"]
        )
    result.stdout.fnmatch_lines(
        [f"E * {TIMEOUT_MESSAGE}", "FAILED test_block.py::test_blocks - Failed: Timeout*"],
        consecutive=False,
    )
    assert "crashed" not in result.stdout.str()
    assert "Timeout after" not in result.stdout.str()  # procpar's own limit did not fire


MARKED = """
import threading

import pytest

@pytest.mark.timeout(1)
def test_pytest_timeout_marker():
    threading.Event().wait()

@pytest.mark.timeout(60)
@pytest.mark.procpar_timeout(60)
def test_both_markers_generous():
    pass

def test_plain():
    pass
"""


def test_timeout_marker_beside_procpar_timeout_marker(pytester: pytest.Pytester) -> None:
    """``timeout`` is pytest-timeout's marker, ``procpar_timeout`` procpar's: both are
    registered (``--strict-markers``) and pytest-timeout enforces its own."""
    pytest.importorskip("pytest_timeout")
    pytester.makepyfile(test_marked=MARKED)
    result = parallel(pytester, "--strict-markers")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [f"E * {TIMEOUT_MESSAGE}", "FAILED test_marked.py::test_pytest_timeout_marker - *"],
        consecutive=False,
    )
    markers = run(pytester, "--markers")
    markers.stdout.fnmatch_lines(["@pytest.mark.timeout(*"])
    markers.stdout.fnmatch_lines(["@pytest.mark.procpar_timeout(*"])


PROCPAR_MARKED = """
import threading

import pytest

@pytest.mark.procpar_timeout(1)
def test_procpar_timeout_marker():
    threading.Event().wait()

@pytest.mark.parametrize("i", range(3))
def test_quick(i):
    pass
"""


def test_procpar_timeout_marker_with_pytest_timeout_loaded(pytester: pytest.Pytester) -> None:
    """procpar's own limit still works with pytest-timeout loaded (no ``--timeout``): the
    hung test fails once, its worker is replaced, and the other tests pass."""
    pytest.importorskip("pytest_timeout")
    pytester.makepyfile(test_marked=PROCPAR_MARKED)
    result = parallel(pytester, "--strict-markers")
    result.stdout.fnmatch_lines(
        ["FAILED test_marked.py::test_procpar_timeout_marker - Timeout after 1s*"]
    )
    result.assert_outcomes(passed=3, failed=1)


def test_timeout_thread_method_costs_only_its_test(pytester: pytest.Pytester) -> None:
    """pytest-timeout's thread method ends the whole process (``os._exit(1)``): as under
    xdist, the worker's test is reported as a crash and the run goes on."""
    pytest.importorskip("pytest_timeout")
    pytester.makepyfile(test_block=BLOCKING)
    result = parallel(pytester, "--timeout", "1", "--timeout-method", "thread")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.re_match_lines(
        [r"FAILED test_block.py::test_blocks - worker gw\d+ crashed while running .*"]
    )


# -- pytest-randomly -----------------------------------------------------------------------

# Every test records the seed it sees, a number it draws and its worker.
RANDOM_TESTS = """
import json
import random

import pytest

@pytest.mark.parametrize("i", range({count}))
def test_draw(i, request, worker_id):
    seen = {{
        "seed": request.config.getoption("randomly_seed"),
        "random": random.random(),
        "worker": worker_id,
    }}
    with open(f"seen-{{__name__}}-{{i}}.json", "w") as out:
        json.dump(seen, out)
"""

# Every process that collects writes the order it collected in.
COLLECTION_CONFTEST = """
import json
import os

def pytest_collection_finish(session):
    who = getattr(session.config, "workerinput", {}).get("workerid", "controller")
    with open(f"collected-{who}-{os.getpid()}.json", "w") as out:
        json.dump([item.nodeid for item in session.items], out)
"""

UNSHUFFLED = [
    *(f"test_more.py::test_draw[{i}]" for i in range(5)),
    *(f"test_random.py::test_draw[{i}]" for i in range(8)),
]
RANDOMLY = ("-p", "randomly", *NO_HYPOTHESIS)
SEED = "--randomly-seed=1234"


def make_random_suite(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(COLLECTION_CONFTEST)
    pytester.makepyfile(
        test_random=RANDOM_TESTS.format(count=8), test_more=RANDOM_TESTS.format(count=5)
    )


def draws(seen: dict[str, Any]) -> dict[str, float]:
    return {test: entry["random"] for test, entry in seen.items()}


def collections(pytester: pytest.Pytester) -> dict[str, list[str]]:
    """``{who: nodeids}`` for each process that collected (who: controller, gw0, ...)."""
    found = read_json_files(pytester.path, "collected-*.json")
    return {stem.split("-")[1]: order for stem, order in found.items()}


# Who collects, besides a serial run: procpar's workers (forked from the template or spawned)
# collect again, and must then be given the controller's seed; under xdist only the workers
# collect.
COLLECTORS = {
    "fork": {"controller", "gw0", "gw1"},
    "spawn": {"controller", "gw0", "gw1"},
    "xdist": {"gw0", "gw1"},
}


@pytest.mark.parametrize(("method", "xdist"), with_xdist(blocked=("fork",)))
def test_randomly_seed_is_the_same_on_every_worker(
    pytester: pytest.Pytester, method: str, xdist: str
) -> None:
    """With a fixed seed every worker reseeds like the serial run: each test sees the same
    seed and draws the same number as serially, and whoever collects shuffles into the
    serial run's order. (pytest-randomly passes the seed in ``workerinput["randomly_seed"]``
    from its ``pytest_configure_node``, which it registers only when ``hasplugin("xdist")``:
    with xdist blocked, ``-p procpar -p no:xdist``, a worker that does not get the seed fails
    pytest-randomly's ``pytest_configure`` with ``KeyError: 'randomly_seed'``.)
    """
    pytest.importorskip("pytest_randomly")
    make_random_suite(pytester)
    xdist_options = xdist_as(xdist, pytester)
    run(pytester, SEED, plugins=RANDOMLY).assert_outcomes(passed=13)
    expected = read_json_files(pytester.path, "seen-*.json")
    serial_order = collections(pytester)["controller"]
    assert serial_order != UNSHUFFLED  # pytest-randomly did shuffle
    assert sorted(serial_order) == sorted(UNSHUFFLED)

    plugins = (*RANDOMLY, *xdist_options)
    result = parallel(pytester, SEED, "--max-worker-restart", "0", method=method, plugins=plugins)
    assert "KeyError" not in output(result)
    result.assert_outcomes(passed=13)
    seen = read_json_files(pytester.path, "seen-*.json")
    assert {entry["seed"] for entry in seen.values()} == {1234}
    assert {entry["worker"] for entry in seen.values()} <= {"gw0", "gw1"}  # see SPAWN_LATE
    assert draws(seen) == draws(expected)
    assert collections(pytester) == dict.fromkeys(COLLECTORS[method], serial_order)


def test_randomly_default_seed_is_shared_by_workers(pytester: pytest.Pytester) -> None:
    """Without ``--randomly-seed`` the controller picks one seed (shown in the header) and
    every worker uses it."""
    pytest.importorskip("pytest_randomly")
    make_random_suite(pytester)
    result = parallel(pytester, plugins=RANDOMLY)
    result.assert_outcomes(passed=13)
    match = re.search(r"^Using --randomly-seed=(\d+)$", result.stdout.str(), re.MULTILINE)
    assert match is not None
    seen = read_json_files(pytester.path, "seen-*.json")
    assert {entry["seed"] for entry in seen.values()} == {int(match.group(1))}
    assert {entry["worker"] for entry in seen.values()} == {"gw0", "gw1"}


def test_spawned_worker_failing_to_start_is_not_blamed_on_a_test(
    pytester: pytest.Pytester,
) -> None:
    """A spawned worker whose pytest_configure raises never ran a test. xdist ends such a run
    with INTERNALERROR (exit 3, "no tests ran"); procpar must not report the worker's first
    test as having crashed it, nor start replacement workers that fail the same way.
    (pytest-randomly under spawn fails like this, see the test above.)"""
    pytester.makeconftest(
        """
        def pytest_configure(config):
            if hasattr(config, "workerinput"):
                raise RuntimeError("worker configure broke")
        """
    )
    pytester.makepyfile("def test_a(): pass\ndef test_b(): pass\ndef test_c(): pass\n")
    result = parallel(pytester, method="spawn")
    assert "RuntimeError: worker configure broke" in output(result)
    assert "crashed while running" not in result.stdout.str()
    # No replacement worker (the paths name the worker running this test: not them).
    assert "gw2" not in result.stdout.str().replace(str(pytester.path.parent), "")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR


# -- pytest-rerunfailures ------------------------------------------------------------------

FLAKY = """
from pathlib import Path

import pytest

def test_flaky():
    marker = Path("flaky-ran")
    if not marker.exists():
        marker.write_text("first attempt")
        raise AssertionError("fails the first time")

def test_steady():
    pass

@pytest.mark.flaky(reruns=1)
def test_always_fails():
    assert False, "broken for good"
"""


@pytest.mark.parametrize("xdist", ["installed", "absent"])
def test_reruns_flaky_test_like_serial(pytester: pytest.Pytester, xdist: str) -> None:
    """A test failing once then passing, and one failing however often its marker lets it
    rerun, give ``1 failed, 2 passed, 2 rerun`` serially, and the same with forked and with
    spawned workers; also where pytest-xdist is not installed (rerunfailures then reports a
    worker's reruns only because procpar tells it that its workers report every attempt)."""
    pytest.importorskip("pytest_rerunfailures")
    xdist_as(xdist, pytester)
    pytester.makepyfile(test_flaky=FLAKY)
    marker = pytester.path / "flaky-ran"
    expected = reference(pytester, "--reruns", "2")
    assert expected.parseoutcomes() == {"passed": 2, "failed": 1, "rerun": 2}
    for method in METHODS:
        marker.unlink()
        result = parallel(pytester, "--reruns", "2", "-rR", method=method)
        assert result.parseoutcomes() == expected.parseoutcomes(), method
        result.stdout.fnmatch_lines(
            ["RERUN test_flaky.py::test_flaky", "PASSED test_flaky.py::test_flaky"]
        )
        assert result.ret == expected.ret
        assert marker.exists()


def test_reruns_win_over_procpar_retries(pytester: pytest.Pytester) -> None:
    """With ``--reruns`` pytest-rerunfailures reruns in the worker, and ``--procpar-retries``
    stays out of its way: the same outcomes as with ``--reruns`` alone, nothing flaky."""
    pytest.importorskip("pytest_rerunfailures")
    pytester.makepyfile(test_flaky=FLAKY)
    alone = parallel(pytester, "--reruns", "2")
    (pytester.path / "flaky-ran").unlink()
    both = parallel(pytester, "--reruns", "2", "--procpar-retries", "3")
    assert both.parseoutcomes() == alone.parseoutcomes() == {"passed": 2, "failed": 1, "rerun": 2}


CRASHING_ONCE = """
import os
from pathlib import Path

def test_crashes_once():
    marker = Path("crashed-once")
    if not marker.exists():
        marker.write_text("x")
        os._exit(1)

def test_steady():
    pass
"""


def test_a_worker_crash_is_reported_not_rerun(pytester: pytest.Pytester) -> None:
    """pytest-rerunfailures reruns crashed tests only through pytest-xdist's scheduler (it
    enables that path only when xdist itself is loaded). Under procpar a crash is reported as
    a failure naming the worker, the run goes on, and ordinary failures are still rerun."""
    pytest.importorskip("pytest_rerunfailures")
    pytester.makepyfile(test_crash=CRASHING_ONCE)
    result = parallel(pytester, "--reruns", "2")
    assert (pytester.path / "crashed-once").exists()  # it did crash its worker once
    outcomes = result.parseoutcomes()
    # syrupy, also installed, warns that a worker's snapshot report is missing (as under xdist)
    outcomes.pop("warnings", None)
    assert outcomes == {"passed": 1, "failed": 1}
    result.stdout.fnmatch_lines(["*worker gw* crashed while running *: exit code *"])


# -- pytest-asyncio ------------------------------------------------------------------------

ASYNC_INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""

ASYNC_TESTS = """
import asyncio
import os

import pytest

def record(name):
    with open(f"ran-{name}-{os.environ.get('PYTEST_XDIST_WORKER', 'serial')}", "w"):
        pass

@pytest.fixture
async def answer():
    await asyncio.sleep(0)
    yield 42
    await asyncio.sleep(0)
    record("fixture-teardown")

async def test_async_fixture(answer):
    await asyncio.sleep(0)
    assert answer == 42
    record("test_async_fixture")

async def test_gather():
    results = await asyncio.gather(*(asyncio.sleep(0, result=i) for i in range(3)))
    assert results == [0, 1, 2]
    record("test_gather")

async def test_running_loop():
    assert asyncio.get_running_loop().is_running()
    record("test_running_loop")

def test_sync():
    record("test_sync")

async def test_fails():
    await asyncio.sleep(0)
    assert await asyncio.sleep(0, result="late") == "early"
"""


@pytest.mark.parametrize("method", METHODS)
def test_asyncio_tests_and_fixtures(pytester: pytest.Pytester, method: str) -> None:
    """Async tests and fixtures (set up and torn down on the test's loop) run on both
    workers, with the serial run's outcomes."""
    pytest.importorskip("pytest_asyncio")
    pytester.makeini(ASYNC_INI)
    pytester.makepyfile(test_async=ASYNC_TESTS)
    pair = run_pair(pytester, method, plugins=QUIET)
    assert pair.expected.parseoutcomes() == {"passed": 4, "failed": 1}
    if method != "xdist":
        pair.result.stdout.fnmatch_lines(
            [f"procpar: 2 workers ({header_method(method)}), 5 items, collected in *"]
        )
    ran = [path.name.rsplit("-", 1) for path in pytester.path.glob("ran-*")]
    expected = [
        "ran-fixture-teardown",
        "ran-test_async_fixture",
        "ran-test_gather",
        "ran-test_running_loop",
        "ran-test_sync",
    ]
    assert sorted(name for name, worker in ran if worker == "serial") == expected
    assert sorted(name for name, worker in ran if worker != "serial") == expected
    assert {worker for _, worker in ran} - {"serial"} <= {"gw0", "gw1"}  # see SPAWN_LATE


# -- hypothesis ----------------------------------------------------------------------------

PROPERTIES = """
from hypothesis import given, settings, strategies as st

settings.register_profile("quick", max_examples=30)
settings.load_profile("quick")

@given(st.integers(), st.integers())
def test_commutative(a, b):
    assert a + b == b + a

@given(st.lists(st.integers()))
def test_sort_idempotent(xs):
    assert sorted(sorted(xs)) == sorted(xs)

@given(st.dictionaries(st.integers(), st.booleans()))
def test_dict_roundtrip(d):
    assert dict(d.items()) == d

@given(st.integers(min_value=0))
def test_small(n):
    assert n < 10
"""

FALSIFYING = [
    r"E\s+(Falsifying example|Failing test case): test_small\($",
    r"E\s+n=10,$",
]


# Where CI is set, hypothesis loads its "ci" profile, which keeps no example database.
DEFAULT_PROFILE = "--hypothesis-profile=default"


@pytest.mark.parametrize("method", METHODS)
def test_hypothesis_with_a_shared_database(pytester: pytest.Pytester, method: str) -> None:
    """Both workers use the default database directory ``.hypothesis/``; two runs in a row
    (the second replays what the first saved) give the serial outcomes and no errors, and the
    failing property shows its minimal falsifying example."""
    pytest.importorskip("hypothesis")
    pytester.makepyfile(test_props=PROPERTIES)
    expected = reference(pytester, DEFAULT_PROFILE, plugins=NO_RANDOMLY).parseoutcomes()
    assert expected == {"passed": 3, "failed": 1}
    shutil.rmtree(pytester.path / ".hypothesis")  # the workers start the database afresh
    for _ in range(2):
        result = parallel(pytester, DEFAULT_PROFILE, method=method, plugins=NO_RANDOMLY)
        assert result.parseoutcomes() == expected
        result.stdout.re_match_lines(FALSIFYING)
        result.stdout.fnmatch_lines(["FAILED test_props.py::test_small - assert 10 < 10"])
        text = output(result)
        assert "INTERNALERROR" not in text
        assert "Traceback" not in text
    saved = (pytester.path / ".hypothesis").rglob("*")
    assert any(path.is_file() for path in saved)  # the workers wrote to the shared database


# -- pytest-django -------------------------------------------------------------------------

DJANGO_INI = """
[pytest]
DJANGO_SETTINGS_MODULE = settings
pythonpath = .
"""

DJANGO_TESTS = """
import json
import os

import pytest
from django.contrib.auth.models import User
from django.db import connection

@pytest.mark.django_db
@pytest.mark.parametrize("i", range(6))
def test_user(i):
    User.objects.create(username=f"user{i}")
    assert User.objects.count() == 1  # each test alone in its transaction, in its database
    worker = os.environ.get("PYTEST_XDIST_WORKER", "serial")
    with open(f"db-{i}.json", "w") as out:
        json.dump({"worker": worker, "name": connection.settings_dict["NAME"]}, out)

@pytest.mark.django_db
def test_missing_user():
    User.objects.get(username="nobody")

def test_settings_fixture(settings):
    from django.conf import settings as live

    settings.USE_TZ = False
    assert live.USE_TZ is False

def test_database_not_marked():
    User.objects.count()
"""


@pytest.mark.parametrize("method", METHODS)
def test_django_database_per_worker(pytester: pytest.Pytester, method: str) -> None:
    """pytest-django suffixes the test database name with the xdist worker id: each worker
    creates, uses and finally destroys its own sqlite file; the outcomes (a missing row, a
    test without database access) are the serial run's."""
    pytest.importorskip("pytest_django")
    pytest.importorskip("django")
    pytester.makepyfile(settings=DJANGO_SETTINGS, test_users=DJANGO_TESTS)
    pytester.makeini(DJANGO_INI)
    pair = run_pair(pytester, method, plugins=QUIET)
    assert pair.expected.parseoutcomes() == {"passed": 7, "failed": 2}
    seen = read_json_files(pytester.path, "db-*.json")  # the parallel run's
    assert len(seen) == 6
    test_db = str(pytester.path.resolve() / "test_db.sqlite3")
    for entry in seen.values():
        assert entry["name"] == f"{test_db}_{entry['worker']}"
    assert {entry["worker"] for entry in seen.values()} <= {"gw0", "gw1"}  # see SPAWN_LATE
    assert not list(pytester.path.glob("test_db.sqlite3*"))  # every worker destroyed its own


# -- pytest-benchmark ----------------------------------------------------------------------

BENCHMARKS = """
def test_sum(benchmark):
    assert benchmark(sum, range(100)) == 4950

def test_sorted(benchmark):
    assert benchmark(sorted, [3, 1, 2]) == [1, 2, 3]

def test_plain():
    pass

def test_wrong_result(benchmark):
    assert benchmark(min, [3, 1, 2]) == 3
"""

QUICK_BENCHMARKS = "--benchmark-max-time=0.01"  # measuring, when it does, takes little time
BENCHMARK_DISABLED = "Benchmarks are automatically disabled because xdist plugin is active"


@pytest.mark.parametrize("method", METHODS)
def test_benchmark_disabled_once_with_workers(pytester: pytest.Pytester, method: str) -> None:
    """With ``-n``, benchmarks are not measured side by side without saying so: like under
    xdist, pytest-benchmark switches itself off, and its warning says why, once. The tests
    still pass or fail as serially (the fixture still calls the function once); no table is
    printed, where the serial run prints one."""
    pytest.importorskip("pytest_benchmark")
    pytester.makepyfile(test_bench=BENCHMARKS)
    pair = run_pair(pytester, method, QUICK_BENCHMARKS, plugins=QUIET, ignore=("warnings",))
    assert pair.expected.parseoutcomes() == {"passed": 3, "failed": 1}
    assert "benchmark: 3 tests" in output(pair.expected)
    assert BENCHMARK_DISABLED not in output(pair.expected)
    text = output(pair.result)
    assert "benchmark: 3 tests" not in text
    assert text.count(BENCHMARK_DISABLED) == 1


@pytest.mark.parametrize(
    ("option", "skipped"), [("--benchmark-only", 1), ("--benchmark-enable", 0)]
)
def test_asking_for_benchmarks_runs_serially(
    pytester: pytest.Pytester, option: str, skipped: int
) -> None:
    """Asked to measure, the run starts no workers (a benchmark beside other tests would
    measure them too) and says so; pytest-benchmark measures as in a serial run. (xdist
    refuses ``--benchmark-only`` with a usage error and turns ``--benchmark-enable`` off.)"""
    pytest.importorskip("pytest_benchmark")
    pytester.makepyfile(test_bench=BENCHMARKS)
    result = parallel(pytester, option, QUICK_BENCHMARKS)
    result.assert_outcomes(passed=3 - skipped, failed=1, skipped=skipped)  # only: no test_plain
    result.stdout.fnmatch_lines(
        [f"procpar: {option} measures one benchmark at a time, no workers started"]
    )
    result.stdout.fnmatch_lines(["*benchmark: 3 tests*"])
    assert BENCHMARK_DISABLED not in output(result)


def test_benchmark_runs_when_procpar_is_loaded_without_workers(pytester: pytest.Pytester) -> None:
    """Without ``-n`` procpar must stay out of the way: pytest-benchmark measures and prints
    its table as it does with ``-p no:procpar``. It decides "xdist is active" from
    ``config.getoption("dist", "no") != "no"``."""
    pytest.importorskip("pytest_benchmark")
    pytester.makepyfile(test_bench=BENCHMARKS)
    without = reference(pytester, QUICK_BENCHMARKS)
    without.assert_outcomes(passed=3, failed=1)
    without.stdout.fnmatch_lines(["*benchmark: 3 tests*"])
    result = run(pytester, QUICK_BENCHMARKS)
    result.assert_outcomes(passed=3, failed=1)
    assert BENCHMARK_DISABLED not in output(result)
    result.stdout.fnmatch_lines(["*benchmark: 3 tests*"])


def test_spawned_workers_export_identity_before_plugins_configure(
    pytester: pytest.Pytester,
) -> None:
    """xdist sets ``PYTEST_XDIST_WORKER`` before a worker's config exists; plugins read it in
    ``pytest_configure`` (pytest-benchmark does, to warn once, from gw0 only). Forked workers
    do not configure again; spawned ones must have the variable by then."""
    pytester.makeconftest(
        """
        import os

        def pytest_configure(config):
            if hasattr(config, "workerinput"):
                with open(f"env-{config.workerinput['workerid']}.json", "w") as out:
                    out.write(repr(os.environ.get("PYTEST_XDIST_WORKER")))
        """
    )
    pytester.makepyfile("def test_a(): pass\ndef test_b(): pass\n")
    parallel(pytester, method="spawn").assert_outcomes(passed=2)
    seen = {path.stem: path.read_text() for path in pytester.path.glob("env-*.json")}
    assert seen == {"env-gw0": "'gw0'", "env-gw1": "'gw1'"}


def test_dist_option_reads_no_without_workers(pytester: pytest.Pytester) -> None:
    """xdist's ``--dist`` defaults to ``"no"``, and plugins (pytest-benchmark, pytest-cov)
    take any other value to mean a distributed run; procpar's must read the same when no
    workers run."""
    pytester.makeconftest(
        """
        def pytest_configure(config):
            with open("dist.txt", "w") as out:
                out.write(repr(config.getoption("dist", "no")))
        """
    )
    pytester.makepyfile("def test_a(): pass\n")
    run(pytester).assert_outcomes(passed=1)
    assert (pytester.path / "dist.txt").read_text() == "'no'"


# -- pytest-xdist installed, blocked or absent ------------------------------------------------

# What a plugin finds when it looks for xdist, in the controller and in each worker.
XDIST_PROBE = """
import json
import sys

def pytest_configure(config):
    manager = config.pluginmanager
    try:
        import xdist
    except ImportError:
        importable = False
    else:
        importable = True
    real = sys.modules.get("xdist.plugin")
    seen = {
        "hasplugin": manager.hasplugin("xdist"),
        "xdist": repr(manager.get_plugin("xdist")),
        "real xdist registered": real is not None and manager.is_registered(real),
        "importable": importable,
    }
    who = getattr(config, "workerinput", {}).get("workerid", "controller")
    with open(f"xdist-{who}.json", "w") as out:
        json.dump(seen, out)
"""


@pytest.mark.parametrize(
    ("xdist", "block"),
    [
        pytest.param("installed", False, id="installed"),
        pytest.param("blocked", False, id="blocked"),
        pytest.param("absent", False, id="absent"),
        pytest.param("absent", True, id="absent-blocked"),
    ],
)
def test_plugins_find_procpar_under_xdists_name(
    pytester: pytest.Pytester, xdist: str, block: bool
) -> None:
    """Whether pytest-xdist is installed, blocked (``-p procpar -p no:xdist``) or absent (and
    its name blocked all the same), a plugin asking for xdist by name finds procpar's stand-in,
    in the controller and in every worker, as it finds xdist in xdist's runs; the real xdist
    is not loaded. (Spawned workers, which configure anew and apply the ``-p`` options again,
    are in ``test_plugin_matrix_files.py::test_syrupy_snapshots[spawn-xdist-blocked]``.)"""
    pytester.makeconftest(XDIST_PROBE)
    pytester.makepyfile(test_some="def test_a(): pass\ndef test_b(): pass\ndef test_c(): pass\n")
    options = (*xdist_as(xdist, pytester), *(("-p", "no:xdist") if block else ()))
    result = parallel(pytester, "--max-worker-restart", "0", plugins=(*QUIET, *options))
    result.assert_outcomes(passed=3)
    seen = read_json_files(pytester.path, "xdist-*.json")
    expected = {
        "hasplugin": True,
        "xdist": "<procpar standing in for xdist>",
        "real xdist registered": False,
        "importable": "absent" not in (xdist, XDIST)
        and importlib.util.find_spec("xdist") is not None,
    }
    assert seen.pop("xdist-controller") == expected
    assert seen  # a worker that started after the other ran every test may not configure
    assert set(seen) <= {"xdist-gw0", "xdist-gw1"}
    assert all(found == expected for found in seen.values()), seen


# -- pytest's own: --junitxml, --lf, --ff ----------------------------------------------------

REPORTED = """
import pytest

@pytest.mark.parametrize("i", range(6))
def test_param(i):
    assert i != 4

def test_skipped():
    pytest.skip("not today")

@pytest.mark.xfail(reason="known")
def test_xfail():
    assert False

class TestGroup:
    def test_one(self):
        pass

    def test_error(self, missing_fixture):
        pass
"""


def test_junitxml_one_testcase_per_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_reported=REPORTED)
    run(pytester, "--junitxml=serial.xml")
    parallel(pytester, "--junitxml=parallel.xml").assert_outcomes(
        passed=6, failed=1, skipped=1, xfailed=1, errors=1
    )
    expected_cases, expected_counters = junit_cases(pytester.path / "serial.xml")
    cases, counters = junit_cases(pytester.path / "parallel.xml")
    assert len(cases) == 10
    assert len({(classname, name) for classname, name, _ in cases}) == 10
    assert cases == expected_cases
    assert counters == expected_counters


FAILING_SOME = """
import pytest

@pytest.mark.parametrize("i", range(10))
def test_p(i):
    assert i not in (2, 5, 7)
"""
FAILING_IDS = {f"test_p.py::test_p[{i}]" for i in (2, 5, 7)}


def test_last_failed_reruns_only_failures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_p=FAILING_SOME)
    parallel(pytester).assert_outcomes(passed=7, failed=3)
    result = parallel(pytester, "--lf", "-v")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(["run-last-failure: rerun previous 3 failures"])
    ran = [nodeid for steps in worker_sequences(result).values() for _, nodeid in steps]
    assert sorted(ran) == sorted(FAILING_IDS)


@pytest.mark.parametrize("dist", ["duration", "load"])
def test_failed_first_runs_failures_first(pytester: pytest.Pytester, dist: str) -> None:
    """Each worker starts with the failures it is given: none runs after a passing test."""
    pytester.makepyfile(test_p=FAILING_SOME)
    parallel(pytester, "--dist", dist).assert_outcomes(passed=7, failed=3)
    result = parallel(pytester, "--ff", "-v", "--dist", dist)
    result.assert_outcomes(passed=7, failed=3)
    result.stdout.fnmatch_lines(["run-last-failure: rerun previous 3 failures first"])
    sequences = worker_sequences(result)
    assert sum(len(steps) for steps in sequences.values()) == 10
    for worker, steps in sequences.items():
        outcomes = [outcome for outcome, _ in steps]
        first_pass = outcomes.index("PASSED") if "PASSED" in outcomes else len(outcomes)
        assert "FAILED" not in outcomes[first_pass:], (worker, steps)
    failed = {
        nodeid for steps in sequences.values() for outcome, nodeid in steps if outcome == "FAILED"
    }
    assert failed == FAILING_IDS
