"""The harness of the plugin matrix (``tests/test_plugins.py``, ``tests/test_plugin_matrix*.py``),
built on the suite's own (``tests/harness.py``: how inner runs start, and their environment).

Every inner run is a pytester subprocess. The reference is plain pytest, with neither procpar
nor xdist loaded (``harness.reference``); a parallel run loads procpar explicitly (``-p
procpar``: pytest-xdist, also installed, would otherwise own ``-n``). Inner runs do not see
that they run in CI. In ``tests/test_plugins.py`` installed plugins load as usual
(:data:`PLUGINS_AS_INSTALLED`), and runs block pytest-randomly (it would reorder and reseed
every run) and hypothesis' plugin (it only slows the start) unless a test asks for them. The
matrix modules load no plugin but the ones a test names (:data:`PLUGINS_ALONE`,
:func:`load`): a result then belongs to that plugin, and a run starts in a third of the time.

``PROCPAR_MATRIX_START`` chooses the start methods the matrix tests are parametrized over
(default ``"fork spawn"``); ``xdist`` among them runs the same tests under pytest-xdist
(``-p no:procpar -p xdist -n 2``), which is how docs/plugins.rst's xdist column was
measured.

A few tests, of plugins that look for xdist by name, also run procpar with pytest-xdist
blocked or absent (:func:`with_xdist`, :func:`xdist_as`). ``PROCPAR_MATRIX_XDIST`` (``blocked``
or ``absent``; by default ``installed``) puts every procpar run of the matrix in that state,
which is how docs/plugins.rst's results for those two were measured.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import pytest
from harness import NO_RANDOMLY, QUIET, junit_suite, output, reference, runpytest, short_summary

PROGRESS = re.compile(r"^\[(gw\d+)\] \[\s*\d+%\] (PASSED|FAILED|ERROR|SKIPPED|RERUN) (\S+)")
RELAYED = re.compile(r"^\[gw\d+\] ")  # a line a worker wrote, as procpar shows it
# The line pytest writes above a report that has a ``node`` (as from xdist's workers too):
# "[gw0] linux -- Python 3.11.7 /usr/bin/python3", and the empty line after it.
WORKER_LINE = re.compile(r"^\[gw\d+\] \w+ -- Python .*\n?\n?", re.MULTILINE)
ADDRESS = re.compile(r"\b0x[0-9a-f]{6,}\b")
PORT = re.compile(r"\b(localhost|127\.0\.0\.1):\d+")
# A failure's header: pytest's "____ test_a[2] ____", pytest-sugar's "―――― test_a[2] ――――".
FAILURE_HEADER = re.compile(r"^[_―]{3,} (.+?) [_―]{3,}$")
METHODS = tuple(os.environ.get("PROCPAR_MATRIX_START", "fork spawn").split())

# The environment of the matrix's inner runs, as a module's ``pytestmark`` (tests/harness.py:
# clean_environment). They do not see that they run in CI: pytest then prints each failure's
# whole message in the short summary (object addresses, a plugin's many lines), which the
# comparison reads line by line. In tests/test_plugins.py installed plugins load as usual; the
# matrix modules load only procpar and the plugins their -p options name.
PLUGINS_AS_INSTALLED = pytest.mark.inner_runs(ci=False)
PLUGINS_ALONE = pytest.mark.inner_runs(autoload_plugins=False, ci=False)


# How pytest-xdist is there for procpar's runs. Plugins look for it by name
# (``hasplugin("xdist")``) and take their xdist path when they find it; procpar answers to the
# name in every case, so a plugin must give the same result in all three:
# - "installed": as in the matrix's environment (tests/test_plugins.py autoloads it; the
#   matrix modules only have it importable);
# - "blocked": installed, and blocked with ``-p no:xdist`` after ``-p procpar``, as people
#   write who keep both installed;
# - "absent": neither importable nor among the installed distributions (:data:`HIDE_XDIST`),
#   as where it is not installed.
XDIST_STATES = ("installed", "blocked", "absent")
XDIST = os.environ.get("PROCPAR_MATRIX_XDIST", "installed")  # for every procpar run

# A sitecustomize module, in the inner runs' directory (pytester puts it on ``PYTHONPATH``, so
# every process of the run, spawned workers too, imports it at start): pytest-xdist is not
# importable, and its distribution, with its entry points, is not listed.
HIDE_XDIST = """
import importlib.abc
import importlib.metadata
import sys


class HideXdist(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "xdist" or name.startswith("xdist."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def without_xdist(distributions):
    def listed(**kwargs):
        for dist in distributions(**kwargs):
            if (dist.metadata["Name"] or "").lower().replace("_", "-") != "pytest-xdist":
                yield dist

    return listed


def refuse_xdist(distribution):
    def found(name):
        if name.lower().replace("_", "-") == "pytest-xdist":
            raise importlib.metadata.PackageNotFoundError(name)
        return distribution(name)

    return found


sys.meta_path.insert(0, HideXdist())
importlib.metadata.distributions = without_xdist(importlib.metadata.distributions)
importlib.metadata.distribution = refuse_xdist(importlib.metadata.distribution)
"""


def with_xdist(**methods: tuple[str, ...]) -> list[Any]:
    """``(method, xdist)`` parameters: each start method of :data:`METHODS` with pytest-xdist
    installed, and the methods named for each other state (``blocked=("fork",)``; see
    :data:`XDIST_STATES`) where :data:`METHODS` has them. Ids: the method alone where xdist is
    installed (the ids the tests had), else ``fork-xdist-blocked`` and so on."""
    assert set(methods) <= set(XDIST_STATES) - {"installed"}, methods
    params = [pytest.param(method, "installed", id=method) for method in METHODS]
    for state, named in methods.items():
        params += [
            pytest.param(method, state, id=f"{method}-xdist-{state}")
            for method in METHODS
            if method in named and method != "xdist"
        ]
    return params


def xdist_as(state: str, pytester: pytest.Pytester) -> tuple[str, ...]:
    """Make pytest-xdist ``state`` (see :data:`XDIST_STATES`) for the inner runs from now on;
    returns the options to add to procpar's runs (``procpar_args``): ``-p no:xdist`` where
    blocked, which the plain reference runs have anyway."""
    assert state in XDIST_STATES, state
    if state == "absent":
        pytester.makepyfile(sitecustomize=HIDE_XDIST)
    return ("-p", "no:xdist") if state == "blocked" else ()


def load(*modules: str) -> tuple[str, ...]:
    """``-p`` options loading these plugin modules (by module: some entry point names, such as
    ``html`` and ``socket``, are names of standard modules, which pytest would then try to
    mark for assertion rewriting). pytest-randomly is blocked even then, in case it was named
    or is loaded some other way (``PYTEST_PLUGINS``)."""
    return (*NO_RANDOMLY, *(arg for module in modules for arg in ("-p", module)))


def parallel(
    pytester: pytest.Pytester, *args: str, method: str = "fork", plugins: tuple[str, ...] = QUIET
) -> pytest.RunResult:
    """Two workers: procpar's, started with ``method`` (with pytest-xdist as
    ``PROCPAR_MATRIX_XDIST`` says), or pytest-xdist's (``"xdist"``)."""
    if method == "xdist":
        return runpytest(pytester, "-p", "no:procpar", "-p", "xdist", "-n", "2", *plugins, *args)
    plugins = (*plugins, *xdist_as(XDIST, pytester))
    return harness.parallel(pytester, *args, method=method, plugins=plugins)


def read_json_files(directory: Path, pattern: str) -> dict[str, Any]:
    """``{stem: content}`` of the JSON files the inner tests wrote; removes them."""
    found = {}
    for path in sorted(directory.glob(pattern)):
        found[path.stem] = json.loads(path.read_text())
        path.unlink()
    return found


def worker_sequences(result: pytest.RunResult) -> dict[str, list[tuple[str, str]]]:
    """``{worker: [(outcome, nodeid), ...]}`` in the order each worker reported, from ``-v``."""
    sequences: dict[str, list[tuple[str, str]]] = {}
    for line in result.outlines:
        match = PROGRESS.match(line)
        if match:
            worker, outcome, nodeid = match.groups()
            sequences.setdefault(worker, []).append((outcome, nodeid))
    return sequences


def case_outcome(case: ET.Element) -> tuple[str, str]:
    """``(outcome, message)`` of one ``<testcase>``; a pass has an empty message."""
    for child in case:
        if child.tag in ("failure", "error", "skipped"):
            return child.tag, normalized(child.get("message", ""))
    return "passed", ""


def junit_cases(path: Path) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    """Sorted ``(classname, name, outcome)`` per testcase, and the suite's counters."""
    suite = junit_suite(path)
    cases = []
    for case in suite.iter("testcase"):
        outcome, _ = case_outcome(case)
        cases.append((case.get("classname", ""), case.get("name", ""), outcome))
    counters = {key: suite.get(key, "") for key in ("tests", "errors", "failures", "skipped")}
    return sorted(cases), counters


def junit_tests(path: Path) -> list[tuple[str, str, str]]:
    """Sorted ``(classname::name, outcome, message)`` per testcase, duplicates kept."""
    return sorted(
        (f"{case.get('classname', '')}::{case.get('name', '')}", *case_outcome(case))
        for case in junit_suite(path).iter("testcase")
    )


@dataclass
class Pair:
    """The reference run and the parallel run of one suite, found equal where a user looks."""

    expected: pytest.RunResult
    result: pytest.RunResult
    tests: Sequence[tuple[str, ...]]  # per test ``(id, outcome, message)``, both runs alike


def both(path: Path, name: str) -> tuple[Path, Path]:
    """The serial and the parallel run's file (``name`` holding ``{run}``)."""
    return path / name.format(run="serial"), path / name.format(run="parallel")


def with_run(args: Iterable[str], run: str) -> list[str]:
    return [arg.replace("{run}", run) for arg in args]


def failure_sections(lines: list[str], keep: Callable[[str], bool]) -> dict[str, list[str]]:
    """``{header: lines}`` of the failures printed, with the lines ``keep`` selects from
    each (normalized): the sections' order differs between runs, their contents do not."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        header = FAILURE_HEADER.match(line)
        if header:
            current = sections.setdefault(header.group(1), [])
        elif "short test summary info" in line:
            current = None
        elif current is not None and keep(line):
            current.append(normalized(line))
    return sections


def run_pair(
    pytester: pytest.Pytester,
    method: str,
    *args: str,
    plugins: tuple[str, ...],
    procpar_args: tuple[str, ...] = (),
    ignore: tuple[str, ...] = (),
    counts: bool = True,
    summary_line: Callable[[str], str] = str,
    messages: bool = True,
) -> Pair:
    """Run the suite plainly, then on two workers, and check what a user looks at: the exit
    code, the summary counts (but those named in ``ignore``; none with ``counts=False``, for
    plugins that replace pytest's closing line), the short test summary, each test's outcome
    and message (JUnit XML), and that workers printed nothing outside the tests.

    ``{run}`` in an argument becomes ``serial`` or ``parallel``, so that the files a plugin
    writes do not overwrite each other; ``--junitxml={run}.xml`` is added. ``procpar_args``
    go to procpar's runs only; ``summary_line`` normalizes each short test summary line, and
    ``messages=False`` compares the outcomes in JUnit XML without their messages."""
    # The harness's own additions: JUnit XML in the format record_property does not warn
    # about, and not collecting the basetemp of the run before (under the rootdir: a Dir).
    junit = ("--junitxml={run}.xml", "-o", "junit_family=legacy", "--ignore-glob=runpytest-*")
    expected = reference(pytester, *with_run((*junit, *args), "serial"), plugins=plugins)
    extra = procpar_args if method != "xdist" else ()
    parallel_args = with_run((*junit, *args, *extra), "parallel")
    result = parallel(pytester, *parallel_args, method=method, plugins=plugins)
    assert "INTERNALERROR" not in output(result), output(result)
    # What workers wrote outside any test (procpar relays it, tagged; xdist drops it): a serial
    # run writes no such thing. On standard output pytest's own worker line is expected.
    relayed = [line for line in result.errlines if RELAYED.match(line)] + [
        line for line in result.outlines if RELAYED.match(line) and not WORKER_LINE.match(line)
    ]
    assert not relayed, "\n".join(relayed)
    if counts:
        wanted = {key: n for key, n in expected.parseoutcomes().items() if key not in ignore}
        got = {key: n for key, n in result.parseoutcomes().items() if key not in ignore}
        assert got == wanted, f"summary counts: serially {wanted}, in parallel {got}"
    assert result.ret == expected.ret, (
        f"exit code: serially {expected.ret}, in parallel {result.ret}"
    )
    summaries = ([summary_line(line) for line in short_summary(run)] for run in (expected, result))
    assert_same(*summaries)
    tests, got_tests = (
        [test if messages else test[:2] for test in junit_tests(pytester.path / f"{run}.xml")]
        for run in ("serial", "parallel")
    )
    assert_same(tests, got_tests)
    return Pair(expected, result, tests)


def normalized(text: str) -> str:
    """``text`` without what differs from one process to the next: object addresses, local
    ports, and the worker line pytest writes at the top of a report's text when it has a
    ``node`` (so under xdist too)."""
    return PORT.sub(r"\1:?", ADDRESS.sub("0x?", WORKER_LINE.sub("", text)))


def differences(expected: Any, got: Any, where: str = "") -> list[str]:
    """Where ``got`` differs from ``expected``, one line per difference, for readable failures
    of the large structures reports are compared as."""
    if isinstance(expected, dict) and isinstance(got, dict):
        found = []
        for key in sorted(expected.keys() | got.keys(), key=repr):
            at = f"{where}[{key!r}]"
            if key not in got:
                found.append(f"{at}: missing (serially {expected[key]!r})")
            elif key not in expected:
                found.append(f"{at}: not in the serial run ({got[key]!r})")
            else:
                found += differences(expected[key], got[key], at)
        return found
    same_shape = isinstance(expected, (list, tuple)) and type(expected) is type(got)
    if same_shape and len(expected) == len(got):
        pairs = enumerate(zip(expected, got, strict=True))
        return [line for i, pair in pairs for line in differences(*pair, f"{where}[{i}]")]
    if same_shape:  # lengths differ: which elements are missing, which are extra
        missing, extra = Counter(map(repr, expected)), Counter(map(repr, got))
        return [f"{where}: missing {item}" for item in (missing - extra).elements()] + [
            f"{where}: not in the serial run {item}" for item in (extra - missing).elements()
        ]
    if expected != got:
        return [f"{where}: serially {expected!r}, in parallel {got!r}"]
    return []


def assert_same(expected: Any, got: Any) -> None:
    found = differences(expected, got)
    assert not found, "\n".join(line[:600] for line in found)


# A Django project's settings module for the matrix's pytest-django tests, with a SQLite
# database in the test's directory.
DJANGO_SETTINGS = """
from pathlib import Path

HERE = Path(__file__).resolve().parent
SECRET_KEY = "procpar-tests"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(HERE / "db.sqlite3"),
        "TEST": {"NAME": str(HERE / "test_db.sqlite3")},
    }
}
"""
