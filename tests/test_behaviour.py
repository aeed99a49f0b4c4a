"""Observable behaviour of parallel runs: stopping, selection, reports, identity, options.

Every inner run is a subprocess (``runpytest_subprocess``) and loads the plugin explicitly with
``-p procpar``, since pytest-xdist, also installed, would otherwise compete for ``-n``.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

import pytest
from harness import (
    IDENTITY_ENV,
    QUIET,
    TIMEOUT_S,
    junit_suite,
    output,
    run,
    runpytest,
    summary_outcomes,
)

# procpar's header: "procpar: 2 workers (fork from template), 6 items, collected in ... (...)".
HEADER = re.compile(
    r"^procpar: (\d+) workers? \((\w+)(?: from template)?\), (\d+) items, collected in .*$"
)

# Counts the workers the controller starts, through the xdist hook procpar calls for each.
NODE_CONFTEST = """
    def pytest_configure_node(node):
        with open(node.config.rootpath / "nodes.txt", "a") as f:
            f.write(node.gateway.id + "\\n")
"""


def headers(result: pytest.RunResult) -> list[str]:
    """Lines announcing workers or a serial run (not the closing run report)."""
    return [
        line
        for line in result.outlines
        if line.startswith("procpar:") and "scheduling," not in line
    ]


def header(result: pytest.RunResult) -> tuple[int, str, int]:
    """(workers, start method, items) from the single ``procpar:`` header line."""
    lines = headers(result)
    assert len(lines) == 1, result.outlines
    match = HEADER.match(lines[0])
    assert match, lines[0]
    return int(match[1]), match[2], int(match[3])


def started_nodes(pytester: pytest.Pytester) -> list[str]:
    path = pytester.path / "nodes.txt"
    return path.read_text().split() if path.exists() else []


def outcome_lines(result: pytest.RunResult, word: str) -> list[str]:
    """Sorted ``-rA`` short-summary nodeids with the given verb (PASSED, FAILED, ...)."""
    lines = summary_outcomes(result).elements()
    return sorted(nodeid for outcome, nodeid in lines if outcome == word)


# -- stopping early ------------------------------------------------------------------------

STOP_CONFTEST = """
    import pytest

    LOG = []


    def _log(text):
        with open(LOG[0], "a") as f:
            f.write(text + "\\n")


    @pytest.fixture(autouse=True)
    def log_start(request):
        _log("start " + request.node.nodeid)


    def pytest_configure(config):
        LOG.append(config.rootpath / "events.log")
        LOG.append(config)


    def pytest_runtest_logreport(report):
        # Only where the test ran (the controller replays the report too). In a worker this
        # runs after procpar counted the failure for the whole run, so a test starting after
        # this line was already on its way when the run stopped.
        if report.when == "call" and report.failed and hasattr(LOG[1], "workerinput"):
            _log("failed " + report.nodeid)
"""

STOP_TESTS = """
    import pytest


    @pytest.mark.parametrize("i", range(60))
    def test_many(i):
        assert i not in (1, 2)
"""


@pytest.mark.parametrize(("option", "maxfail"), [("-x", 1), ("--maxfail=2", 2)])
def test_stopping_after_failures(pytester: pytest.Pytester, option: str, maxfail: int) -> None:
    pytester.makeconftest(STOP_CONFTEST)
    pytester.makepyfile(test_stop=STOP_TESTS)
    events = pytester.path / "events.log"

    serial = run(pytester, option)
    assert serial.ret == pytest.ExitCode.TESTS_FAILED
    assert serial.parseoutcomes() == {"failed": maxfail, "passed": 1}
    assert f"stopping after {maxfail} failures" in serial.stdout.str()
    events.unlink()

    workers = 2
    result = run(pytester, option, "-n", str(workers))
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    counts = result.parseoutcomes()
    # Failures already on their way on other workers are reported too (as under xdist).
    assert maxfail <= counts["failed"] <= maxfail + workers - 1
    assert f"stopping after {counts['failed']} failures" in result.stdout.str()
    log = events.read_text().splitlines()
    started = [line for line in log if line.startswith("start ")]
    # Every test that started was reported: nothing is lost by stopping.
    assert len(started) == counts["failed"] + counts.get("passed", 0)
    failed_at = [i for i, line in enumerate(log) if line.startswith("failed ")]
    after_stop = [line for line in log[failed_at[maxfail - 1] :] if line.startswith("start ")]
    assert len(after_stop) <= workers, log


# -- selection -----------------------------------------------------------------------------

SELECTION_TESTS = """
    import pytest


    @pytest.mark.parametrize("i", range(6))
    def test_alpha(i):
        pass


    @pytest.mark.slow
    @pytest.mark.parametrize("i", range(4))
    def test_beta(i):
        pass


    @pytest.mark.slow
    def test_alpha_and_beta():
        pass


    def test_gamma():
        pass
"""


@pytest.mark.parametrize(
    "selection",
    [("-k", "alpha and not beta"), ("-m", "slow"), ("-m", "not slow", "-k", "gamma or alpha")],
    ids=["k", "m", "m-and-k"],
)
def test_selection_like_serial(pytester: pytest.Pytester, selection: tuple[str, ...]) -> None:
    pytester.makeini("[pytest]\nmarkers =\n    slow: a slow test\n")
    pytester.makepyfile(test_sel=SELECTION_TESTS)
    serial = run(pytester, "-rA", *selection)
    parallel = run(pytester, "-rA", "-n", "2", *selection)
    assert serial.ret == parallel.ret == pytest.ExitCode.OK
    assert parallel.parseoutcomes() == serial.parseoutcomes()
    assert serial.parseoutcomes()["deselected"] > 0
    collected = [line for line in serial.outlines if line.startswith("collected ")]
    assert collected
    assert [line for line in parallel.outlines if line.startswith("collected ")] == collected
    assert outcome_lines(parallel, "PASSED") == outcome_lines(serial, "PASSED")
    assert header(parallel) == (2, "fork", serial.parseoutcomes()["passed"])


# -- the cache -----------------------------------------------------------------------------


def test_last_failed_reruns_only_failures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_lf="""
        import pytest


        @pytest.mark.parametrize("i", range(12))
        def test_n(i):
            assert i % 4 != 1
        """
    )
    failing = ["test_lf.py::test_n[1]", "test_lf.py::test_n[5]", "test_lf.py::test_n[9]"]
    first = run(pytester, "-rA", "-n", "2")
    assert first.parseoutcomes() == {"failed": 3, "passed": 9}
    lastfailed = json.loads((pytester.path / ".pytest_cache/v/cache/lastfailed").read_text())
    assert sorted(lastfailed) == failing

    second = run(pytester, "-rA", "-n", "2", "--lf")
    assert second.ret == pytest.ExitCode.TESTS_FAILED
    assert outcome_lines(second, "FAILED") == failing
    assert outcome_lines(second, "PASSED") == []
    second.stdout.fnmatch_lines(["run-last-failure: rerun previous 3 failures"])
    assert header(second) == (2, "fork", 3)

    serial = run(pytester, "-rA", "--lf")
    assert outcome_lines(serial, "FAILED") == failing
    assert second.parseoutcomes() == serial.parseoutcomes()


# -- reports -------------------------------------------------------------------------------

JUNIT_TESTS = """
    import pytest


    @pytest.fixture
    def broken():
        raise RuntimeError("setup boom")


    @pytest.mark.parametrize("i", range(4))
    def test_pass(i):
        pass


    @pytest.mark.parametrize("i", range(2))
    def test_fail(i):
        assert False


    def test_skip():
        pytest.skip("skipped on purpose")


    def test_error(broken):
        pass
"""

JUNIT_CONFTEST = """
    def pytest_sessionfinish(session):
        config = session.config
        if hasattr(config, "workerinput"):
            plugins = config.pluginmanager.get_plugins()
            writers = [p for p in plugins if type(p).__name__ == "LogXML"]
            name = "xml-" + config.workerinput["workerid"]
            (config.rootpath / name).write_text(str(len(writers)))
"""


def junit_cases(path: Path) -> dict[str, list[str]]:
    """``{testcase name: [child tags]}`` for the outcome children of each testcase."""
    cases: dict[str, list[str]] = {}
    for case in junit_suite(path).iter("testcase"):
        assert case.get("name") not in cases
        tags = sorted(c.tag for c in case if c.tag in ("failure", "error", "skipped"))
        cases[str(case.get("name"))] = tags
    return cases


def test_junitxml_written_once_by_controller(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(JUNIT_CONFTEST)
    pytester.makepyfile(test_junit=JUNIT_TESTS)
    serial = run(pytester, "--junitxml=serial.xml")
    result = run(pytester, "-n", "2", "--junitxml=out.xml")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert len([line for line in result.outlines if "generated xml file" in line]) == 1
    expected = {
        **{f"test_pass[{i}]": [] for i in range(4)},
        **{f"test_fail[{i}]": ["failure"] for i in range(2)},
        "test_skip": ["skipped"],
        "test_error": ["error"],
    }
    assert junit_cases(pytester.path / "serial.xml") == expected
    assert junit_cases(pytester.path / "out.xml") == expected
    suite = junit_suite(pytester.path / "out.xml")
    attributes = {key: suite.get(key) for key in ("tests", "failures", "errors", "skipped")}
    assert attributes == {"tests": "8", "failures": "2", "errors": "1", "skipped": "1"}
    # The workers ran without a junitxml writer of their own.
    assert sorted(p.name for p in pytester.path.glob("xml-gw*")) == ["xml-gw0", "xml-gw1"]
    assert {p.read_text() for p in pytester.path.glob("xml-gw*")} == {"0"}
    assert serial.ret == result.ret


def test_durations_lists_every_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_dur="""
        import pytest


        @pytest.mark.parametrize("i", range(5))
        def test_d(i):
            pass
        """
    )
    result = run(pytester, "-n", "2", "--durations=0", "--durations-min=0")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*slowest durations*"])
    for i in range(5):
        for when in ("setup", "call", "teardown"):
            pattern = rf"^\d+\.\d+s {when} +test_dur\.py::test_d\[{i}\]$"
            assert len([line for line in result.outlines if re.match(pattern, line)]) == 1


def test_warning_summary_once_with_nodeid(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_warn="""
        import warnings

        import pytest

        MARKER = "procpar-" + "warning-marker"


        def test_warns():
            warnings.warn(MARKER, UserWarning)


        @pytest.mark.parametrize("i", range(8))
        def test_quiet(i):
            pass
        """
    )
    result = run(pytester, "-n", "2")
    assert result.ret == pytest.ExitCode.OK
    assert result.parseoutcomes() == {"passed": 9, "warnings": 1}
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if "warnings summary" in line)
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("-- Docs"))
    section = lines[start + 1 : end]
    marked = [line for line in section if "procpar-warning-marker" in line]
    assert len(marked) == 1
    assert "UserWarning: procpar-warning-marker" in marked[0]
    assert [line for line in section if "::" in line] == ["test_warn.py::test_warns"]
    assert sum("UserWarning: procpar-warning-marker" in line for line in lines) == 1


# -- what tests see ------------------------------------------------------------------------

IDENTITY_TESTS = """
    import json
    import os

    import pytest


    @pytest.mark.parametrize("i", range(10))
    def test_identity(i, request, worker_id, testrun_uid):
        data = {
            "worker_id": worker_id,
            "testrun_uid": testrun_uid,
            "env": {name: os.environ.get(name) for name in %r},
            "workerinput": getattr(request.config, "workerinput", None),
        }
        out = request.config.rootpath / "ids"
        out.mkdir(exist_ok=True)
        (out / f"{i}.json").write_text(json.dumps(data, default=str))
"""


def read_identities(pytester: pytest.Pytester) -> list[dict[str, object]]:
    files = sorted((pytester.path / "ids").glob("*.json"))
    assert len(files) == 10
    return [json.loads(path.read_text()) for path in files]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_worker_identity(pytester: pytest.Pytester, method: str) -> None:
    pytester.makepyfile(test_ident=IDENTITY_TESTS % (IDENTITY_ENV,))
    result = run(pytester, "-n", "2", "--procpar-start", method)
    assert result.ret == pytest.ExitCode.OK
    identities = read_identities(pytester)
    assert {data["worker_id"] for data in identities} == {"gw0", "gw1"}
    uids = {data["testrun_uid"] for data in identities}
    assert len(uids) == 1
    (uid,) = uids
    assert isinstance(uid, str) and uid
    for data in identities:
        assert data["env"] == {
            "PYTEST_XDIST_WORKER": data["worker_id"],
            "PYTEST_XDIST_WORKER_COUNT": "2",
            "PYTEST_XDIST_TESTRUNUID": uid,
        }
        workerinput = data["workerinput"]
        assert isinstance(workerinput, dict)
        assert workerinput["workerid"] == data["worker_id"]
        assert workerinput["workercount"] == 2
        assert workerinput["testrunuid"] == uid


def test_identity_without_workers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_ident=IDENTITY_TESTS % (IDENTITY_ENV,))
    result = run(pytester)
    assert result.ret == pytest.ExitCode.OK
    identities = read_identities(pytester)
    assert {data["worker_id"] for data in identities} == {"master"}
    assert len({data["testrun_uid"] for data in identities}) == 1
    for data in identities:
        assert data["workerinput"] is None
        assert data["env"] == dict.fromkeys(IDENTITY_ENV)


def test_tmp_path_unique_across_workers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_tmp="""
        import pytest


        @pytest.mark.parametrize("i", range(30))
        def test_tmp(i, tmp_path, request):
            (tmp_path / "data.txt").write_text(request.node.nodeid)
            out = request.config.rootpath / "paths"
            out.mkdir(exist_ok=True)
            (out / f"{i}.txt").write_text(str(tmp_path))
        """
    )
    result = run(pytester, "-n", "2")
    assert result.parseoutcomes() == {"passed": 30}
    paths = {i: Path((pytester.path / "paths" / f"{i}.txt").read_text()) for i in range(30)}
    assert len(set(paths.values())) == 30
    for i, path in paths.items():
        # <--basetemp given by pytester: runpytest-N>/popen-gwK/<test dir>
        assert path.parent.parent.name.startswith("runpytest-"), path
        assert (path / "data.txt").read_text() == f"test_tmp.py::test_tmp[{i}]"
    assert {path.parent.name for path in paths.values()} == {"popen-gw0", "popen-gw1"}


def test_captured_output_per_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_out="""
        import logging
        import sys

        import pytest


        @pytest.mark.parametrize("i", range(4))
        def test_loud_failure(i):
            print(f"stdout-of-failure-{i}")
            sys.stderr.write(f"stderr-of-failure-{i}\\n")
            logging.getLogger("procpar.test").warning(f"log-of-failure-{i}")
            assert False


        @pytest.mark.parametrize("i", range(12))
        def test_quiet_pass(i):
            print(f"leak-marker-{i}")
            sys.stderr.write(f"leak-marker-err-{i}\\n")
        """
    )
    result = run(pytester, "-n", "2", "--tb=short")
    assert result.parseoutcomes() == {"failed": 4, "passed": 12}
    text = result.stdout.str()
    assert "leak-marker" not in text
    for section in ("Captured stdout call", "Captured stderr call", "Captured log call"):
        assert len([line for line in result.outlines if section in line]) == 4, section
    for i in range(4):
        for kind in ("stdout", "stderr", "log"):
            assert text.count(f"{kind}-of-failure-{i}") == 1, (kind, i)
    # Each captured section holds its own test's output, right under that test's header.
    blocks = re.split(r"\n_+ test_loud_failure\[(\d)\] _+\n", text)[1:]
    for number, block in zip(blocks[::2], blocks[1::2], strict=True):
        assert re.findall(r"(?:stdout|stderr|log)-of-failure-(\d)", block) == [number] * 3


def test_verbose_worker_tags_and_header(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_v="""
        import pytest


        @pytest.mark.parametrize("i", range(8))
        def test_v(i):
            pass
        """
    )
    result = run(pytester, "-v", "-n", "2")
    assert result.ret == pytest.ExitCode.OK
    assert header(result) == (2, "fork", 8)
    tags = Counter()
    for line in result.outlines:
        match = re.match(r"^\[(gw\d+)\] .*PASSED test_v\.py::test_v\[\d\]", line)
        if match:
            tags[match[1]] += 1
    assert set(tags) == {"gw0", "gw1"}
    assert sum(tags.values()) == 8


# -- options -------------------------------------------------------------------------------

SIMPLE_TESTS = """
    import pytest


    @pytest.mark.parametrize("i", range(6))
    def test_simple(i):
        pass
"""


@pytest.mark.parametrize(
    ("args", "ini", "needle", "value"),
    [
        (["-n", "-1"], None, "--numprocesses", "-1"),
        (["-n", "abc"], None, "--numprocesses", "abc"),
        (["--maxprocesses", "0"], None, "--maxprocesses", "0"),
        (["-n", "2", "--procpar-start", "bogus"], None, "--procpar-start", "bogus"),
        ([], "procpar_numprocesses = abc", "procpar_numprocesses", "abc"),
        (["-n", "2"], "procpar_maxprocesses = 0", "procpar_maxprocesses", "0"),
        (["-n", "2"], "procpar_start = bogus", "procpar_start", "bogus"),
    ],
    ids=[
        "n-negative",
        "n-word",
        "maxprocesses-0",
        "start-bogus",
        "ini-numprocesses",
        "ini-maxprocesses",
        "ini-start",
    ],
)
def test_bad_value_is_usage_error(
    pytester: pytest.Pytester, args: list[str], ini: str | None, needle: str, value: str
) -> None:
    if ini is not None:
        pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(test_simple=SIMPLE_TESTS)
    result = run(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    everything = result.outlines + result.errlines
    assert not [line for line in everything if "Traceback" in line]
    assert headers(result) == []
    naming = [line for line in everything if needle in line]
    assert len(naming) == 1, everything
    assert repr(value) in naming[0] or f"got {value}" in naming[0]


def test_auto_env_override(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_simple=SIMPLE_TESTS)
    monkeypatch.setenv("PYTEST_PROCPAR_AUTO_NUM_WORKERS", "3")
    result = run(pytester, "-n", "auto")
    assert result.parseoutcomes() == {"passed": 6}
    assert header(result) == (3, "fork", 6)

    monkeypatch.setenv("PYTEST_PROCPAR_AUTO_NUM_WORKERS", "x")
    bad = run(pytester, "-n", "auto")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert headers(bad) == []
    everything = bad.outlines + bad.errlines
    naming = [line for line in everything if "PYTEST_PROCPAR_AUTO_NUM_WORKERS" in line]
    assert len(naming) == 1
    assert "Traceback" not in output(bad)


def test_no_workers_without_n_or_with_n0(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(NODE_CONFTEST)
    pytester.makepyfile(
        test_mixed="""
        import pytest


        @pytest.mark.parametrize("i", range(5))
        def test_m(i, worker_id):
            assert worker_id == "master"
            assert i != 3
        """
    )
    plain = run(pytester, "-rA")
    zero = run(pytester, "-rA", "-n", "0")
    for result in (plain, zero):
        assert result.ret == pytest.ExitCode.TESTS_FAILED
        assert result.parseoutcomes() == {"failed": 1, "passed": 4}
        assert headers(result) == []
    assert outcome_lines(zero, "FAILED") == outcome_lines(plain, "FAILED")
    assert started_nodes(pytester) == []


@pytest.mark.parametrize(
    ("args", "items", "workers"),
    [(["--maxprocesses", "1", "-n", "4"], 6, 1), (["-n", "8"], 3, 3)],
    ids=["maxprocesses", "fewer-items"],
)
def test_worker_count_capped(
    pytester: pytest.Pytester, args: list[str], items: int, workers: int
) -> None:
    pytester.makeconftest(NODE_CONFTEST)
    pytester.makepyfile(
        test_cap=f"""
        import pytest


        @pytest.mark.parametrize("i", range({items}))
        def test_c(i):
            pass
        """
    )
    result = run(pytester, *args)
    assert result.parseoutcomes() == {"passed": items}
    assert header(result) == (workers, "fork", items)
    assert sorted(started_nodes(pytester)) == [f"gw{i}" for i in range(workers)]


def test_empty_selection_starts_no_worker(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(NODE_CONFTEST)
    pytester.makepyfile(test_simple=SIMPLE_TESTS)
    result = run(pytester, "-n", "2", "-k", "nothing_matches")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert headers(result) == []
    assert started_nodes(pytester) == []
    assert result.parseoutcomes() == {"deselected": 6}


@pytest.mark.parametrize("source", ["ini-key", "pytest.ini", "pyproject.toml", "tox.ini", "env"])
def test_configuration_sources(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    pytester.makepyfile(test_simple=SIMPLE_TESTS)
    args: list[str] = []
    if source == "ini-key":
        pytester.makeini("[pytest]\nprocpar_numprocesses = 2\n")
        args = ["-p", "procpar"]
    elif source == "pytest.ini":
        pytester.makeini("[pytest]\naddopts = -p procpar -n 2\n")
    elif source == "pyproject.toml":
        pytester.makepyprojecttoml('[tool.pytest.ini_options]\naddopts = "-p procpar -n 2"\n')
    elif source == "tox.ini":
        pytester.makefile(".ini", tox="[pytest]\naddopts = -p procpar -n 2\n")
    else:
        monkeypatch.setenv("PYTEST_ADDOPTS", "-p procpar -n 2")
    result = runpytest(pytester, *QUIET, *args)  # no -p procpar: the configuration names it
    assert result.parseoutcomes() == {"passed": 6}
    assert header(result) == (2, "fork", 6)


# -- how a run ends ------------------------------------------------------------------------

SESSION_CONFTEST = """
    import pytest


    def _log(config, text):
        with open(config.rootpath / "fixtures.log", "a") as f:
            f.write(text + "\\n")


    @pytest.fixture(scope="session", autouse=True)
    def session_resource(request, worker_id):
        _log(request.config, "setup " + worker_id)
        yield
        _log(request.config, "teardown " + worker_id)
"""


def fixture_log(pytester: pytest.Pytester) -> Counter[str]:
    return Counter((pytester.path / "fixtures.log").read_text().splitlines())


EXIT_AT_THE_THIRD = """
import pytest


@pytest.mark.parametrize("i", range(10))
def test_e(i):
    if i == 2:
        pytest.exit("bye", returncode=7)
"""


def test_pytest_exit_like_serial(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_exit=EXIT_AT_THE_THIRD)
    serial = run(pytester)
    parallel = run(pytester, "-n", "2")
    for result in (serial, parallel):
        assert result.ret == 7
        assert "bye" in result.stdout.str()
    assert header(parallel)[0] == 2


def test_pytest_exit_tears_down_session_fixtures(pytester: pytest.Pytester) -> None:
    """After pytest.exit, serial pytest still tears the session's fixtures down; so must the
    worker that called it."""
    pytester.makeconftest(SESSION_CONFTEST)
    pytester.makepyfile(test_exit=EXIT_AT_THE_THIRD)
    serial = run(pytester)
    assert serial.ret == 7
    assert fixture_log(pytester) == Counter({"setup master": 1, "teardown master": 1})
    (pytester.path / "fixtures.log").unlink()

    parallel = run(pytester, "-n", "2")
    assert parallel.ret == 7
    log = fixture_log(pytester)
    setups = Counter({k.split()[1]: v for k, v in log.items() if k.startswith("setup ")})
    teardowns = Counter({k.split()[1]: v for k, v in log.items() if k.startswith("teardown ")})
    assert setups
    assert teardowns == setups


def test_session_fixture_once_per_worker(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(SESSION_CONFTEST)
    pytester.makepyfile(
        test_s="""
        import pytest


        @pytest.mark.parametrize("i", range(20))
        def test_s(i):
            pass
        """
    )
    result = run(pytester, "-n", "2")
    assert result.parseoutcomes() == {"passed": 20}
    assert fixture_log(pytester) == Counter(
        {"setup gw0": 1, "setup gw1": 1, "teardown gw0": 1, "teardown gw1": 1}
    )


MODULE_FIXTURE_CONFTEST = """
    import pytest


    @pytest.fixture(scope="module", autouse=True)
    def module_resource(request, worker_id):
        name = request.module.__name__
        with open(request.config.rootpath / "fixtures.log", "a") as f:
            f.write(f"setup {name} {worker_id}\\n")
        yield
        with open(request.config.rootpath / "fixtures.log", "a") as f:
            f.write(f"teardown {name} {worker_id}\\n")
"""


@pytest.mark.parametrize("args", [[], ["-x"]], ids=["complete", "stopped"])
def test_module_fixture_teardown_for_every_setup(
    pytester: pytest.Pytester, args: list[str]
) -> None:
    pytester.makeconftest(MODULE_FIXTURE_CONFTEST)
    for name in ("test_mod_a", "test_mod_b", "test_mod_c"):
        failing = 3 if name == "test_mod_b" else -1
        pytester.makepyfile(
            **{
                name: f"""
                import pytest


                @pytest.mark.parametrize("i", range(8))
                def test_t(i):
                    assert i != {failing}
                """
            }
        )
    result = run(pytester, "-n", "2", *args)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    log = (pytester.path / "fixtures.log").read_text().splitlines()
    setups = Counter(line.split(" ", 1)[1] for line in log if line.startswith("setup "))
    teardowns = Counter(line.split(" ", 1)[1] for line in log if line.startswith("teardown "))
    assert setups
    assert teardowns == setups
    if not args:
        modules = {key.split()[0] for key in setups}
        assert modules == {"test_mod_a", "test_mod_b", "test_mod_c"}


def test_pdb_runs_serially(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(NODE_CONFTEST)
    pytester.makepyfile(test_simple=SIMPLE_TESTS)
    result = run(pytester, "-n", "2", "--pdb")
    assert result.ret == pytest.ExitCode.OK
    assert result.parseoutcomes() == {"passed": 6}
    assert started_nodes(pytester) == []
    notices = [line for line in result.outlines if "--pdb runs serially" in line]
    assert len(notices) == 1
    assert not [line for line in headers(result) if HEADER.match(line)]


@pytest.mark.parametrize(
    ("option", "reason"),
    [
        ("--collect-only", "--collect-only runs no tests"),
        ("--fixtures", "--fixtures runs no tests"),
    ],
)
def test_collection_only_options_start_no_workers(
    pytester: pytest.Pytester, option: str, reason: str
) -> None:
    pytester.makepyfile("def test_a(): pass\n")
    result = run(pytester, "-n", "2", option)
    assert result.ret == 0
    result.stdout.fnmatch_lines([f"procpar: {reason}, no workers started"])
    assert not [line for line in result.outlines if HEADER.match(line)]


def test_suite_kept_from_the_collector_until_pytest_is_done_with_it(
    pytester: pytest.Pytester,
) -> None:
    """pytest's end-of-session garbage collections run while the collected suite is frozen
    (they would walk all of it), a later pytest.main() in the process gets it unfrozen, and
    garbage left from collecting is still finalized, as in a serial run."""
    pytester.makeconftest(
        """
        import gc, os

        CONTROLLER = os.environ.get("PYTEST_XDIST_WORKER") is None


        class Cycle:
            def __init__(self):
                self.me = self

            def __del__(self):
                if CONTROLLER:
                    with open("finalized.txt", "a") as stream:
                        stream.write("x")


        held = [Cycle()]
        gc.collect()  # now in the oldest generation, which is seldom collected


        def pytest_collection_finish(session):
            held.clear()  # garbage from here on


        def pytest_unconfigure(config):
            if CONTROLLER:
                with open("frozen_at_unconfigure.txt", "w") as stream:
                    stream.write(str(gc.get_freeze_count()))
        """
    )
    pytester.makepyfile(
        "import pytest\n\n@pytest.mark.parametrize('i', range(50))\ndef test_a(i): pass\n"
    )
    script = (
        "import gc, sys, pytest\n"
        "code = pytest.main(['-p', 'procpar', '-n', '2', '-q', '-p', 'no:cacheprovider'])\n"
        "print('frozen after main:', gc.get_freeze_count())\n"
        "sys.exit(code)\n"
    )
    result = pytester.run(sys.executable, "-c", script, timeout=TIMEOUT_S)
    assert result.ret == 0, output(result)
    result.stdout.fnmatch_lines(["*50 passed*", "frozen after main: 0"])
    assert int((pytester.path / "frozen_at_unconfigure.txt").read_text()) > 1000
    assert (pytester.path / "finalized.txt").read_text() == "x"


def test_exit_skips_the_last_collections_but_not_atexit_handlers(
    pytester: pytest.Pytester,
) -> None:
    """After a parallel run the interpreter's final garbage collections skip the suite's
    objects (they cost ~0.3 s at exit for 5000 tests); atexit handlers still all run."""
    pytester.makeconftest(
        """
        import atexit, gc, os

        def report():  # registered before procpar's handler, so it runs after it
            with open("at_exit.txt", "w") as stream:
                stream.write(str(gc.get_freeze_count()))

        if os.environ.get("PYTEST_XDIST_WORKER") is None:
            atexit.register(report)
        """
    )
    pytester.makepyfile(
        "import pytest\n\n@pytest.mark.parametrize('i', range(50))\ndef test_a(i): pass\n"
    )
    result = runpytest(pytester, "-p", "procpar", "-n", "2")
    result.assert_outcomes(passed=50)
    assert int((pytester.path / "at_exit.txt").read_text()) > 1000
