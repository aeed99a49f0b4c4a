"""The harness of procpar's own tests: how they start an inner run and read what it printed.

A plain module, imported as ``from harness import ...`` (pytest puts ``tests/``, which is no
package, on ``sys.path``), like ``tests/matrix.py``, the plugin matrix's harness, which builds
on this one.

Every inner run is a pytester subprocess with a deadline (:data:`TIMEOUT_S`): nothing may hang
the suite. A run that is about procpar loads it explicitly (``-p procpar``): pytest-xdist,
also installed, would otherwise own ``-n``.

The environment inner runs start from is prepared for every test by the autouse fixture in
``tests/conftest.py``, with :func:`clean_environment`; a module (``pytestmark``) or a test
chooses the policy with the ``inner_runs`` marker, whose keyword arguments are
:func:`clean_environment`'s: ``@pytest.mark.inner_runs(autoload_plugins=False, ci=False)``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

TIMEOUT_S = 120  # an inner run taking longer is killed: nothing here may hang the suite

# -- the environment of inner runs ------------------------------------------------------------

# What procpar's (and xdist's) workers set: the outer run's, when it runs in parallel.
IDENTITY_ENV = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")
AUTO_COUNT_ENV = ("PYTEST_PROCPAR_AUTO_NUM_WORKERS", "PYTEST_XDIST_AUTO_NUM_WORKERS")  # -n auto
CI_ENV = ("CI", "BUILD_NUMBER")  # what pytest reads to tell it runs in CI
# What ``bazel test`` sets, which procpar reads: an inner run must not shard, nor write the
# outer run's JUnit XML.
BAZEL_ENV = ("TEST_TOTAL_SHARDS", "TEST_SHARD_INDEX", "TEST_SHARD_STATUS_FILE", "XML_OUTPUT_FILE")
AUTOLOAD_ENV = "PYTEST_DISABLE_PLUGIN_AUTOLOAD"
# What procpar sets for its workers' thread pools (worker_limits.THREAD_VARIABLES)
THREAD_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def clean_environment(
    monkeypatch: pytest.MonkeyPatch, *, autoload_plugins: bool = True, ci: bool | None = None
) -> None:
    """Prepare the environment inner runs inherit.

    Always: they do not see the outer run's worker identity, its ``-n auto`` overrides, the
    thread counts it set for its workers, Bazel's test variables, nor its ``PYTEST_ADDOPTS``
    (pytester drops that one too, once it is set up).

    ``autoload_plugins``: whether the installed plugins load (entry points), as in a user's
    run; ``False`` sets ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``, and inner runs load only what
    their ``-p`` options name (pytest-randomly would reorder tests, pytest-django add a
    class-scoped autouse fixture to every test, others add warnings).

    ``ci``: ``None`` leaves the outer run's CI variables; ``False`` removes them (pytest then
    prints each failure's whole message in the short summary: object addresses, a plugin's
    many lines); ``True`` tells inner runs they run in CI."""
    for name in (*IDENTITY_ENV, *AUTO_COUNT_ENV, *THREAD_ENV, *BAZEL_ENV, "PYTEST_ADDOPTS"):
        monkeypatch.delenv(name, raising=False)
    if autoload_plugins:
        monkeypatch.delenv(AUTOLOAD_ENV, raising=False)
    else:
        monkeypatch.setenv(AUTOLOAD_ENV, "1")
    if ci is not None:
        for name in CI_ENV:
            monkeypatch.delenv(name, raising=False)
        if ci:
            monkeypatch.setenv("CI", "1")


# -- starting inner runs ----------------------------------------------------------------------

NO_RANDOMLY = ("-p", "no:randomly")  # pytest-randomly would reorder and reseed every run
NO_HYPOTHESIS = ("-p", "no:hypothesispytest")  # hypothesis' plugin only slows every start
QUIET = NO_HYPOTHESIS + NO_RANDOMLY  # the installed plugins that runs not about them block
PLAIN = ("-p", "no:procpar", "-p", "no:xdist")  # neither procpar nor xdist


def runpytest(
    pytester: pytest.Pytester, *args: str, timeout: float = TIMEOUT_S
) -> pytest.RunResult:
    """pytest in a subprocess with these arguments alone, killed after ``timeout``."""
    return pytester.runpytest_subprocess(*args, timeout=timeout)


def run(
    pytester: pytest.Pytester,
    *args: str,
    plugins: tuple[str, ...] = QUIET,
    timeout: float = TIMEOUT_S,
) -> pytest.RunResult:
    """procpar loaded, and ``plugins`` (options: by default :data:`QUIET`); without ``-n`` it
    must stay out of the way."""
    return runpytest(pytester, "-p", "procpar", *plugins, *args, timeout=timeout)


def parallel(
    pytester: pytest.Pytester,
    *args: str,
    method: str = "fork",
    workers: int = 2,
    plugins: tuple[str, ...] = QUIET,
) -> pytest.RunResult:
    """procpar's ``workers``, started with ``method``."""
    options = ("-n", str(workers), "--procpar-start", method)
    return run(pytester, *options, *args, plugins=plugins)


def header_method(method: str) -> str:
    """How procpar's header names ``method``: ``fork from template`` for fork."""
    return "fork from template" if method == "fork" else method


def reference(
    pytester: pytest.Pytester, *args: str, plugins: tuple[str, ...] = QUIET
) -> pytest.RunResult:
    """Plain pytest, neither procpar nor xdist loaded: the serial run others are held to."""
    return runpytest(pytester, *PLAIN, *plugins, *args)


# -- reading what a run printed or wrote ------------------------------------------------------

# A short summary line (``-rA``), as pytest writes it: "FAILED test_a.py::test_b - message".
SUMMARY_LINE = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (\S+)")


def output(result: pytest.RunResult) -> str:
    """All a run printed: its standard output, then its standard error."""
    return result.stdout.str() + "\n" + result.stderr.str()


def short_summary(result: pytest.RunResult) -> list[str]:
    """The lines of the (last) "short test summary info" section, sorted (parallel runs
    report in another order); none without that section."""
    lines = result.outlines
    starts = [i for i, line in enumerate(lines) if "short test summary info" in line]
    if not starts:
        return []
    section = []
    for line in lines[starts[-1] + 1 :]:
        if line.startswith(("=", "Results (")):  # the closing line (or pytest-sugar's summary)
            break
        section.append(line)
    return sorted(section)


def summary_outcomes(result: pytest.RunResult) -> Counter[tuple[str, str]]:
    """The short summary's ``(outcome, nodeid)`` lines (``-rA``), counted."""
    found: Counter[tuple[str, str]] = Counter()
    for line in result.outlines:
        match = SUMMARY_LINE.match(line)
        if match:
            found[(match.group(1), match.group(2))] += 1
    return found


def junit_suite(path: Path) -> ET.Element:
    """The ``<testsuite>`` of a JUnit XML file (the root, or the first below the root)."""
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None, f"no <testsuite> in {path}"
    return suite


def take_lines(path: Path, *, missing_ok: bool = False) -> list[str]:
    """The lines of a file the inner tests wrote, which is removed, so that the next run
    writes a new one. Without the file: no lines where ``missing_ok``, else an error."""
    if missing_ok and not path.exists():
        return []
    lines = path.read_text().splitlines()
    path.unlink()
    return lines
