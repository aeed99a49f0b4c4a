"""Remote workers (``--tx``): execnet gateways run the same worker and report the same results.

popen gateways are other local interpreters; the socket and ssh gateways are servers these
tests start on 127.0.0.1 (see conftest.py). Whether remote workers report exactly what a
serial run reports is checked with the shared mixed suite in test_equivalence.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from harness import run

SUITE = """
    import pytest

    @pytest.mark.parametrize("number", range(12))
    def test_number(number, worker_id):
        print(f"test {number} on {worker_id}")

    def test_fails():
        assert 1 == 2
"""


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("bogus", "expected popen, ssh=HOST or socket=HOST:PORT in the spec, got 'bogus'"),
        ("0*popen", "expected SPEC or N*SPEC with N >= 1, got '0*popen'"),
        ("x*popen", "expected SPEC or N*SPEC with N >= 1, got 'x*popen'"),
        ("popen//ssh=host", "expected popen, ssh=HOST or socket=HOST:PORT in the spec"),
    ],
)
def test_bad_tx_is_a_usage_error(pytester: pytest.Pytester, value: str, message: str) -> None:
    pytester.makepyfile(SUITE)
    result = run(pytester, "--tx", value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*argument --tx: {message}*"])
    assert "Traceback" not in result.stderr.str()


def test_popen_workers_beside_local_ones(pytester: pytest.Pytester) -> None:
    """``-n 1 --tx 2*popen``: three workers, every test once, remote output tagged."""
    pytester.makepyfile(SUITE)
    result = run(pytester, "-n", "1", "--tx", "2*popen", "-s", "-v")
    result.stdout.fnmatch_lines(
        ["procpar: 3 workers (1 fork from template, 2*popen), 13 items, collected in *"]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert result.parseoutcomes() == {"passed": 12, "failed": 1}
    text = result.stdout.str()
    for number in range(12):
        assert (
            text.count(f"PASSED test_popen_workers_beside_local_ones.py::test_number[{number}]")
            == 1
        )
    ran_on = {
        line.split()[-1] for line in result.outlines if line.startswith("[gw") and " on gw" in line
    }
    assert {"gw1", "gw2"} & ran_on, ran_on  # the remote workers ran tests and their output showed


def test_failure_names_the_remote_interpreter(pytester: pytest.Pytester) -> None:
    """The failure header says which interpreter ran the test, as xdist's does."""
    pytester.makepyfile("def test_fails():\n    assert False\n")
    result = run(pytester, "--tx", f"popen//python={sys.executable}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    version = ".".join(map(str, sys.version_info[:3]))
    result.stdout.fnmatch_lines([f"[[]gw0[]] linux -- Python {version} {sys.executable}"])


def test_a_failing_cleanup_after_a_remote_worker_finished_costs_nothing(
    pytester: pytest.Pytester,
) -> None:
    """A plugin whose ``pytest_unconfigure`` fails in the worker, after its results are in:
    the run's results stand, as with a local worker."""
    pytester.makeconftest(
        """
        def pytest_unconfigure(config):
            if hasattr(config, "workerinput"):
                raise RuntimeError("cleanup failed")
        """
    )
    pytester.makepyfile(SUITE)
    result = run(pytester, "--tx", "popen")
    assert result.parseoutcomes() == {"passed": 12, "failed": 1}
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "INTERNALERROR" not in result.stdout.str()


def test_crash_on_a_remote_worker_costs_one_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os, signal, pytest

        def test_crashes():
            print("last words")
            os.kill(os.getpid(), signal.SIGSEGV)

        @pytest.mark.parametrize("number", range(10))
        def test_number(number):
            pass
        """
    )
    result = run(pytester, "--tx", "2*popen", "--dist", "load")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert result.parseoutcomes() == {"passed": 10, "failed": 1}
    # A popen worker runs on this host: its stack and output are shown as a local worker's.
    result.stdout.fnmatch_lines(
        [
            "*worker gw* crashed while running test_crash*::test_crashes: signal 11 (SIGSEGV)",
            "Fatal Python error: Segmentation fault",
            '*File "*test_crash*.py", line 5 in test_crashes',
            "*captured stdout before the crash*",
            "last words",
        ]
    )


def test_timeout_on_a_remote_worker_shows_its_stack(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import threading, pytest

        @pytest.mark.procpar_timeout(1)
        def test_hangs():
            threading.Event().wait()

        def test_after():
            pass
        """
    )
    result = run(pytester, "--tx", "popen", "--dist", "load")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert result.parseoutcomes() == {"passed": 1, "failed": 1}
    result.stdout.fnmatch_lines(
        ["*Timeout after 1s while running test_timeout*::test_hangs", "*line 5 in test_hangs"]
    )


def test_exitfirst_halts_remote_workers(pytester: pytest.Pytester) -> None:
    """-x stops remote workers before their next test, without waiting for their queues."""
    pytester.makepyfile(
        """
        import time, pytest

        def test_fails_first():
            assert False

        @pytest.mark.parametrize("number", range(200))
        def test_slow(number):
            time.sleep(0.05)
        """
    )
    result = run(pytester, "--tx", "2*popen", "--dist", "load", "-x")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 1
    assert outcomes.get("passed", 0) < 40, outcomes  # of 200: the queues were not drained


def test_remote_without_procpar_is_a_clear_error(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory
) -> None:
    bare = tmp_path_factory.mktemp("bare-venv")
    venv.create(bare, with_pip=False)
    pytester.makepyfile(SUITE)
    result = run(pytester, "--tx", f"popen//python={bare / 'bin' / 'python'}")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        ["*procpar: worker gw0 could not start on popen//python=*: "
         "ModuleNotFoundError: No module named 'pytest_procpar'*"]
    )  # fmt: skip
    assert "INTERNALERROR" not in result.stdout.str()


def test_unreachable_gateway_is_a_clear_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SUITE)
    result = run(pytester, "--tx", "popen//python=/nonexistent/python")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        ["*procpar: could not open a gateway for popen//python=/nonexistent/python: *"]
    )
    assert "INTERNALERROR" not in result.stdout.str()


def test_chdir_maps_the_rootdir(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """The remote end collects at --procpar-chdir, and is checked against the controller."""
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(
        test_where="""
        from pathlib import Path

        def test_where():
            assert Path("where.txt").read_text() == "remote"
        """
    )
    (pytester.path / "where.txt").write_text("local")
    elsewhere = tmp_path / "checkout"
    shutil.copytree(pytester.path, elsewhere)
    (elsewhere / "where.txt").write_text("remote")
    result = run(pytester, "--tx", "popen", f"--procpar-chdir={elsewhere}")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert result.parseoutcomes() == {"passed": 1}

    (elsewhere / "test_extra.py").write_text("def test_only_there():\n    pass\n")
    result = run(pytester, "--tx", "popen", f"--procpar-chdir={elsewhere}")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert (
        "worker gw0 collected 2 test files, the controller 1; first only in the controller: "
        "none, first only in the worker: ['test_extra.py']"
    ) in result.stdout.str()


def test_socket_gateway(pytester: pytest.Pytester, socket_gateway: str, remote_tmp: Path) -> None:
    pytester.makepyfile(SUITE)
    result = run(pytester, "--tx", socket_gateway, "-v")
    result.stdout.fnmatch_lines(
        [f"procpar: 1 worker (1*{socket_gateway}), 13 items, collected in *"]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert result.parseoutcomes() == {"passed": 12, "failed": 1}
    assert not list(remote_tmp.iterdir())  # the worker's stack and capture files are gone


def test_remote_dirs_of_dead_workers_are_removed(
    pytester: pytest.Pytester, socket_gateway: str, remote_tmp: Path
) -> None:
    """A remote worker that crashes cannot remove its directory; the next worker on that
    host removes it, and leaves those of live processes alone."""
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    dead = remote_tmp / f"procpar-remote-{ended.stdout.strip()}-abc"
    alive = remote_tmp / f"procpar-remote-{os.getpid()}-def"
    for path in (dead, alive):
        path.mkdir()
        (path / "worker.stack").write_text("")
    pytester.makepyfile("def test_passes():\n    pass\n")
    result = run(pytester, "--tx", socket_gateway)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert sorted(remote_tmp.iterdir()) == [alive]


def test_ssh_gateway(pytester: pytest.Pytester, ssh_gateway: str) -> None:
    pytester.makepyfile(SUITE)
    result = run(pytester, "-n", "1", "--tx", ssh_gateway, "-s")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    assert result.parseoutcomes() == {"passed": 12, "failed": 1}
    assert any(line.startswith("[gw1] test ") for line in result.outlines), result.stdout.str()
