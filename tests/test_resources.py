"""Serial and capped tests: ``procpar_serial`` runs while no other test runs, and
``procpar_resource(name)`` while fewer than the resource's limit hold it; ``procpar_slot``
tells a test which slot it holds.

Each test of the inner suites writes down when it ran (``time.monotonic``, one clock for every
process on Linux), in which process and with which slot; the checks are on those intervals.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from harness import parallel, reference, run

RECORDER = """
    import json, os, time
    import pytest

    @pytest.fixture
    def record(request):
        slot = request.getfixturevalue("procpar_slot") if request.node.get_closest_marker(
            "procpar_resource") else None
        started = time.monotonic()
        yield
        with open(f"ran-{os.getpid()}.jsonl", "a") as out:
            out.write(json.dumps([request.node.name, started, time.monotonic(), slot]) + "\\n")
"""


def intervals(path: Path) -> list[tuple[str, float, float, int | None]]:
    found = [
        tuple(json.loads(line))
        for log in path.glob("ran-*.jsonl")
        for line in log.read_text().splitlines()
    ]
    for log in path.glob("ran-*.jsonl"):
        log.unlink()
    return found  # type: ignore[return-value]


def overlapping(runs: list[Any], at: float) -> list[Any]:
    return [entry for entry in runs if entry[1] <= at < entry[2]]


@pytest.mark.parametrize("collect", ["controller", "workers"])
def test_serial_tests_run_alone(pytester: pytest.Pytester, collect: str) -> None:
    pytester.makeconftest(RECORDER)
    pytester.makepyfile(
        test_mixed="""
        import time
        import pytest

        @pytest.mark.parametrize("n", range(12))
        def test_plain(n, record):
            time.sleep(0.05)

        @pytest.mark.procpar_serial
        @pytest.mark.parametrize("n", range(3))
        def test_alone(n, record):
            time.sleep(0.05)
        """
    )
    result = parallel(pytester, f"--procpar-collect={collect}", workers=3)
    result.assert_outcomes(passed=15)
    runs = intervals(pytester.path)
    assert sorted(name for name, *_ in runs) == sorted(
        [f"test_plain[{n}]" for n in range(12)] + [f"test_alone[{n}]" for n in range(3)]
    )
    for name, started, ended, _ in runs:
        if name.startswith("test_alone"):
            others = [entry for entry in runs if entry[0] != name]
            assert not [o for o in others if o[1] < ended and started < o[2]], (name, runs)
    assert max(len(overlapping(runs, entry[1])) for entry in runs) > 1  # the rest ran side by side
    result.stdout.fnmatch_lines(["procpar: *, *s waiting for serial or capped tests*"])


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_resource_is_held_by_at_most_its_limit(pytester: pytest.Pytester, method: str) -> None:
    """``db:2``: never more than two at once, each with a slot of its own; ``lock`` is not
    declared: one at a time; the others run beside them."""
    pytester.makeini("[pytest]\nprocpar_resources = db:2\n")
    pytester.makeconftest(RECORDER)
    pytester.makepyfile(
        test_capped="""
        import time
        import pytest

        @pytest.mark.procpar_resource("db")
        @pytest.mark.parametrize("n", range(9))
        def test_db(n, record, procpar_slot):
            assert procpar_slot in (0, 1)
            time.sleep(0.05)

        @pytest.mark.procpar_resource("lock")
        @pytest.mark.parametrize("n", range(4))
        def test_lock(n, record):
            time.sleep(0.05)

        @pytest.mark.parametrize("n", range(6))
        def test_free(n, record):
            time.sleep(0.05)
        """
    )
    result = parallel(pytester, method=method, workers=4)
    result.assert_outcomes(passed=19)
    runs = intervals(pytester.path)
    assert len(runs) == 19 and len({name for name, *_ in runs}) == 19  # each once
    for kind, limit in (("test_db", 2), ("test_lock", 1)):
        held = [entry for entry in runs if entry[0].startswith(kind)]
        for entry in held:
            at_once = overlapping(held, entry[1])
            assert len(at_once) <= limit, (kind, at_once)
            slots = [slot for *_, slot in at_once]
            assert len(slots) == len(set(slots)), at_once  # a slot of its own
    db = [entry for entry in runs if entry[0].startswith("test_db")]
    assert max(len(overlapping(db, entry[1])) for entry in db) == 2  # the limit is used


def test_what_a_crashed_test_held_is_free_again(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_crash="""
        import os
        import pytest

        @pytest.mark.procpar_resource("db")
        def test_crashes():
            os._exit(3)

        @pytest.mark.procpar_resource("db")
        @pytest.mark.parametrize("n", range(4))
        def test_after(n):
            pass

        @pytest.mark.procpar_serial
        def test_alone():
            pass
        """
    )
    result = parallel(pytester)
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(["*test_crashes*worker gw* crashed*"])


def test_marked_tests_run_as_any_test_serially(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(RECORDER)
    pytester.makepyfile(
        test_one="""
        import pytest

        @pytest.mark.procpar_serial
        def test_alone(record):
            pass

        @pytest.mark.procpar_resource("db")
        def test_db(record, procpar_slot):
            assert procpar_slot == 0

        def test_no_resource(procpar_slot):
            pass
        """
    )
    serial = reference(pytester, "-p", "procpar")
    serial.assert_outcomes(passed=2, errors=1)
    serial.stdout.fnmatch_lines(["*procpar_slot needs the test to hold a resource*"])
    shared = parallel(pytester)
    shared.assert_outcomes(passed=2, errors=1)


def test_bad_resource_limits_are_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nprocpar_resources = db:0\n")
    pytester.makepyfile("def test_a(): pass\n")
    result = parallel(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini option procpar_resources: expected name:limit pairs*"])


def test_remote_workers_cannot_take_part(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "import pytest\n\n@pytest.mark.procpar_serial\ndef test_alone():\n    pass\n"
        "def test_other():\n    pass\n"
    )
    result = run(pytester, "--tx", "popen")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*procpar_serial and procpar_resource tests need local workers*"])
