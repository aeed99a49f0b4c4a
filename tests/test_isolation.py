"""A forked worker starts as a copy of the controller: nothing the copy holds may act twice."""

from __future__ import annotations

import pytest
from harness import output, runpytest


def test_output_buffered_before_the_fork_is_written_once(pytester: pytest.Pytester) -> None:
    """What a plugin wrote before the template was forked is not written again by the
    template's workers."""
    pytester.makepyfile(
        early_plugin="""
        import sys

        sys.stdout.write("BUFFERED-BEFORE-FORK")  # no newline, no flush: still in the buffer
        """
    )
    pytester.syspathinsert()
    pytester.makepyfile("".join(f"def test_{i}(): pass\n" for i in range(6)))
    result = runpytest(pytester, "-p", "early_plugin", "-p", "procpar", "-n", "3")
    result.assert_outcomes(passed=6)
    assert result.stdout.str().count("BUFFERED-BEFORE-FORK") == 1


def test_summary_and_header_printed_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_ok(): pass\ndef test_bad(): assert 0\n")
    result = runpytest(pytester, "-p", "procpar", "-n", "2", "-rA")
    text = result.stdout.str()
    assert text.count("test session starts") == 1
    assert text.count("procpar: 2 workers") == 1
    assert text.count("short test summary info") == 1
    assert text.count("FAILED ") == 1
    assert text.count("PASSED ") == 1


def test_capture_files_are_not_shared(pytester: pytest.Pytester) -> None:
    """Each failing test shows exactly its own output, however the workers interleave."""
    body = "".join(
        f"def test_{i}():\n    print('own-output-{i}-' * 50)\n    assert False\n\n"
        for i in range(20)
    )
    pytester.makepyfile(test_out=body)
    result = runpytest(pytester, "-p", "procpar", "-n", "2")
    result.assert_outcomes(failed=20)
    text = result.stdout.str()
    for i in range(20):
        assert text.count(f"own-output-{i}-" * 50) == 1


@pytest.mark.parametrize("blocked", ["tmpdir", "cacheprovider", "terminal", "junitxml"])
def test_runs_with_builtin_plugins_disabled(pytester: pytest.Pytester, blocked: str) -> None:
    pytester.makepyfile("def test_ok(): pass\ndef test_bad(): assert 0\n")
    result = runpytest(pytester, "-p", "procpar", "-n", "2", "-p", f"no:{blocked}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "INTERNALERROR" not in output(result)


GC_SUITE = """
    import gc
    import weakref


    class Node:
        def __init__(self):
            self.me = self  # a reference cycle: only the cyclic collector frees it


    held = Node()
    made_at_import = [Node() for _ in range(3)]


    def test_cycle_made_at_import_is_collected():
        global held
        ref = weakref.ref(held)
        del held
        gc.collect()
        assert ref() is None


    def test_collector_sees_objects_made_at_import():
        assert sum(isinstance(o, Node) for o in gc.get_objects()) >= 3


    def test_collector_finds_referrers_made_at_import():
        assert any(r is made_at_import for r in gc.get_referrers(made_at_import[0]))
"""


def test_the_collector_works_as_in_a_serial_run(pytester: pytest.Pytester) -> None:
    """The suite is frozen for the fork (gc.freeze); in the worker it is the collector's again."""
    pytester.makepyfile(test_gc=GC_SUITE)
    runpytest(pytester, "-p", "no:procpar").assert_outcomes(passed=3)
    result = runpytest(pytester, "-p", "procpar", "-n", "2", "--procpar-start", "fork")
    result.assert_outcomes(passed=3)


FINALIZER_SUITE = """
    import os


    class Garbage:
        def __del__(self):
            with open("finalized.txt", "a") as out:
                out.write(f"{os.getpid()}\\n")


    def _make_cycle():
        garbage = Garbage()
        garbage.me = garbage


    _make_cycle()  # cyclic garbage left by importing the module


    def test_a():
        pass


    def test_b():
        pass
"""


def test_garbage_left_by_collection_is_finalized_once(pytester: pytest.Pytester) -> None:
    """By the worker that imported the module, once, as a serial run does: not never."""
    pytester.makepyfile(test_garbage=FINALIZER_SUITE)
    options = ("--procpar-start", "fork", "--procpar-collect=workers")
    result = runpytest(pytester, "-p", "procpar", "-n", "2", *options)
    result.assert_outcomes(passed=2)
    assert len((pytester.path / "finalized.txt").read_text().split()) == 1
