"""Spawned and forkserver workers collect by themselves and must find the controller's tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import runpytest

# What only workers do differently, where they collect: the tests once, the files in shares.
DIFFER_IN_WORKERS = {
    "controller": (
        """
        def pytest_collection_modifyitems(config, items):
            if hasattr(config, "workerinput"):
                items[:] = [item for item in items if item.name != "test_b"]
        """,
        "*procpar: worker gw* collected 3 items, the controller 4; "
        "first only in the controller: [[]*::test_b*",
    ),
    "workers": (
        """
        def pytest_ignore_collect(collection_path, config):
            if hasattr(config, "workerinput") and collection_path.name == "test_two.py":
                return True
        """,
        "*procpar: worker gw* collected 1 test files, the controller 2; "
        "first only in the controller: [[]'test_two.py'[]]*",
    ),
}


@pytest.mark.parametrize("collect", list(DIFFER_IN_WORKERS))
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_collection_mismatch_is_a_clear_error(
    pytester: pytest.Pytester, method: str, collect: str
) -> None:
    conftest, message = DIFFER_IN_WORKERS[collect]
    pytester.makeconftest(conftest)
    pytester.makepyfile(
        test_one="def test_a(): pass\ndef test_b(): pass\n",
        test_two="def test_c(): pass\ndef test_d(): pass\n",
    )
    where = f"--procpar-collect={collect}"
    result = runpytest(pytester, "-p", "procpar", "-n", "2", "--procpar-start", method, where)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines([message])
    assert "Traceback" not in result.stdout.str()


def test_each_file_is_imported_once(pytester: pytest.Pytester) -> None:
    """Collecting in workers, every test module is imported by one worker (again only where
    another worker takes tests of it over: never once per worker), and the controller imports
    none."""
    for name in ("a", "b", "c", "d"):
        pytester.makepyfile(
            **{
                f"test_{name}": f"""
                import os
                with open("imports.txt", "a") as out:
                    out.write(f"{name} {{os.environ.get('PYTEST_XDIST_WORKER', 'controller')}}\\n")

                def test_{name}(): pass
                """
            }
        )
    result = runpytest(pytester, "-p", "procpar", "-n", "2", "--procpar-collect=workers")
    result.assert_outcomes(passed=4)
    imports = sorted((pytester.path / "imports.txt").read_text().splitlines())
    assert {line.split()[0] for line in imports} == {"a", "b", "c", "d"}
    assert len(imports) < 2 * 4
    assert "controller" not in {line.split()[1] for line in imports}


def test_spawned_workers_collect_and_match(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "import pytest\n@pytest.mark.parametrize('x', range(6))\ndef test_x(x): pass\n"
    )
    result = runpytest(pytester, "-p", "procpar", "-n", "2", "--procpar-start", "spawn")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["procpar: 2 workers (spawn), 6 items, collected in *"])


def test_side_by_side_with_xdist(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile("def test_a(): pass\ndef test_b(): pass\n")
    ours = runpytest(pytester, "-p", "procpar", "-n", "2")
    ours.assert_outcomes(passed=2)
    ours.stdout.fnmatch_lines(["procpar: 2 workers (fork from template), 2 items, collected in *"])
    theirs = runpytest(pytester, "-p", "no:procpar", "-n", "2")
    theirs.assert_outcomes(passed=2)
    assert "procpar:" not in theirs.stdout.str()
    theirs.stdout.fnmatch_lines(["*2 workers [[]2 items[]]*"])


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_spawned_workers_keep_their_own_basetemp(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    """``--basetemp`` on the command line is the controller's: each worker's ``tmp_path``
    lives in a directory of its own under it (``popen-gwN``), as with forked workers."""
    pytester.makepyfile(
        """
        import os
        import pytest

        @pytest.mark.parametrize("n", range(4))
        def test_where(n, tmp_path, worker_id):
            with open(os.path.join(os.environ["OUT"], f"{worker_id}-{n}.txt"), "w") as out:
                out.write(str(tmp_path))
        """
    )
    out = pytester.mkdir("out")
    basetemp = pytester.path / "chosen"
    monkeypatch.setenv("OUT", str(out))
    result = runpytest(
        pytester, "-p", "procpar", "-n", "2", "--procpar-start", method,
        "--procpar-collect=controller", f"--basetemp={basetemp}",
    )  # fmt: skip
    result.assert_outcomes(passed=4)
    for path in out.iterdir():
        worker = path.name.split("-")[0]
        assert Path(path.read_text()).is_relative_to(basetemp / f"popen-{worker}"), path
