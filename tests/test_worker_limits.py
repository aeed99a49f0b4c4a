"""What workers may use: the threads of the numeric libraries' pools, and the memory and tests
before a worker is recycled (a fresh one takes its place, no test lost).

Each test runs a small suite whose tests write down what their process saw (its pid, the
thread variables), and checks it against the limits and against a serial run.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from harness import THREAD_ENV, junit_suite, parallel, reference, run

from pytest_procpar.cpus import available_cpus

REPORTS_ENVIRONMENT = """
    import json, os

    def test_environment():
        seen = {name: os.environ.get(name) for name in NAMES}
        with open(f"seen-{os.getpid()}.json", "w") as out:
            json.dump(seen, out)
""".replace("NAMES", repr(THREAD_ENV))


def seen(pytester: pytest.Pytester) -> list[dict[str, str | None]]:
    found = [json.loads(path.read_text()) for path in pytester.path.glob("seen-*.json")]
    for path in pytester.path.glob("seen-*.json"):
        path.unlink()
    return found


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_thread_pools_share_the_cpus(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    """Each worker's pools get the usable CPUs divided by the workers; a variable the user
    set is kept; ``off`` and serial runs set none; a number is taken as it is."""
    pytester.makepyfile(test_env=REPORTS_ENVIRONMENT)
    share = str(max(1, available_cpus() // 2))
    parallel(pytester, method=method).assert_outcomes(passed=1)
    assert seen(pytester) == [dict.fromkeys(THREAD_ENV, share)]
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    parallel(pytester, method=method).assert_outcomes(passed=1)
    assert seen(pytester) == [{**dict.fromkeys(THREAD_ENV, share), "OMP_NUM_THREADS": "3"}]
    monkeypatch.delenv("OMP_NUM_THREADS")
    parallel(pytester, "--procpar-threads", "4", method=method).assert_outcomes(passed=1)
    assert seen(pytester) == [dict.fromkeys(THREAD_ENV, "4")]
    parallel(pytester, "--procpar-threads", "off", method=method).assert_outcomes(passed=1)
    assert seen(pytester) == [dict.fromkeys(THREAD_ENV)]
    run(pytester).assert_outcomes(passed=1)  # no -n: procpar stays out of the way
    assert seen(pytester) == [dict.fromkeys(THREAD_ENV)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--procpar-threads", "0"), "*--procpar-threads: expected 'auto', 'off' or a whole*"),
        (("--max-worker-rss", "lots"), "*--max-worker-rss: expected a size such as 512M*"),
        (("--max-tests-per-worker", "0"), "*--max-tests-per-worker: expected a whole number*"),
        (("-o", "procpar_max_worker_rss=2X"), "*ini option procpar_max_worker_rss: expected*"),
    ],
)
def test_bad_limits_are_usage_errors(
    pytester: pytest.Pytester, args: tuple[str, ...], message: str
) -> None:
    pytester.makepyfile("def test_a(): pass\n")
    result = parallel(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stderr.str()


def leaking_suite(tests: int, mib: int) -> str:
    """``tests`` tests, each keeping ``mib`` MiB and writing down which process ran it."""
    return """
        import os
        import pytest

        KEPT = []  # what a leaking suite keeps from test to test

        @pytest.mark.parametrize("n", range(TESTS))
        def test_keeps(n):
            KEPT.append(bytearray(b"x") * (MIB << 20))  # written: resident
            with open(f"ran-{os.getpid()}.txt", "a") as out:
                out.write(f"{n}\\n")
            assert n != 5
        """.replace("TESTS", str(tests)).replace("MIB", str(mib))


def runs_by_process(pytester: pytest.Pytester) -> Counter[int]:
    ran = Counter(
        {
            int(path.stem.removeprefix("ran-")): len(path.read_text().split())
            for path in pytester.path.glob("ran-*.txt")
        }
    )
    numbers = [n for path in pytester.path.glob("ran-*.txt") for n in path.read_text().split()]
    assert sorted(numbers, key=int) == [str(n) for n in range(len(numbers))]  # each once
    for path in pytester.path.glob("ran-*.txt"):
        path.unlink()
    return ran


@pytest.mark.parametrize(
    "how",
    [("-n", "2"), ("-n", "2", "--procpar-start", "spawn"), ("--tx", "2*popen")],
    ids=["fork", "spawn", "--tx"],
)
def test_workers_are_recycled_after_so_many_tests(
    pytester: pytest.Pytester, how: tuple[str, ...]
) -> None:
    pytester.makepyfile(test_leaks=leaking_suite(12, 0))
    serial = reference(pytester)
    assert sum(runs_by_process(pytester).values()) == 12
    recycled = run(pytester, *how, "--max-tests-per-worker", "3", "--junitxml=junit.xml")
    assert recycled.ret == serial.ret == pytest.ExitCode.TESTS_FAILED
    assert recycled.parseoutcomes() == serial.parseoutcomes() == {"passed": 11, "failed": 1}
    ran = runs_by_process(pytester)
    assert sum(ran.values()) == 12 and max(ran.values()) <= 3, ran
    assert len(ran) >= 4, ran  # more processes than workers: fresh ones took over
    recycled.stdout.fnmatch_lines(["procpar: *, * workers recycled (* over the tests limit)*"])
    assert "crashed" not in recycled.stdout.str()
    assert "Traceback" not in recycled.stdout.str()  # ending early, each ends its session cleanly
    assert len(list(junit_suite(pytester.path / "junit.xml").iter("testcase"))) == 12


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_over_the_memory_limit_are_recycled(pytester: pytest.Pytester, method: str) -> None:
    """Each test keeps 40 MiB: workers limited to 120 MiB of their own memory make way every
    few tests, and the run ends as serially."""
    pytester.makepyfile(test_leaks=leaking_suite(10, 40))
    serial = reference(pytester)
    runs_by_process(pytester)
    recycled = parallel(pytester, "--max-worker-rss", "120M", "--procpar-report", method=method)
    assert recycled.parseoutcomes() == serial.parseoutcomes()
    ran = runs_by_process(pytester)
    assert sum(ran.values()) == 10 and max(ran.values()) <= 3, ran
    recycled.stdout.fnmatch_lines(
        [
            "recycled gw*: * MiB of its own, over 120.0 MiB",
            "procpar: *, * workers recycled (* over the memory limit)*",
        ]
    )
    assert "crashed" not in recycled.stdout.str()
