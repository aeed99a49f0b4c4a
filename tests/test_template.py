"""The template process, in this process: what a worker forked from it inherits."""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import pytest

from pytest_procpar import template

# standard modules a test run seldom imports: the first not imported yet is the one to watch
RARE_STANDARD_MODULES = ("colorsys", "netrc", "tabnanny", "wave", "mailcap", "pyclbr")


def unimported_standard_module() -> str:
    for name in RARE_STANDARD_MODULES:
        if name not in sys.modules:
            return name
    pytest.skip("every candidate module is imported already")


def report_whether_imported(name: str):  # type: ignore[no-untyped-def]
    """A ``child_main`` that writes to its one descriptor whether ``name`` is imported."""

    def child_main(payload: bytes, fds: list[int], template_pid: int) -> None:
        os.write(fds[0], b"1" if name in sys.modules else b"0")
        os._exit(0)

    return child_main


@pytest.mark.skipif(not template.available(), reason="no template on this platform")
def test_a_worker_inherits_the_standard_modules_imported_after_the_fork() -> None:
    """What the controller imported of the standard library since the template was forked
    is imported in the template before it forks a worker: the worker shares it."""
    name = unimported_standard_module()
    made = template.Template.fork(report_whether_imported(name))
    assert made is not None  # the child never returns (it exits in child_main)
    try:
        __import__(name)
        read, write = os.pipe()
        child = made.start(b"", [write])
        os.close(write)
        child.join(timeout=30)
        assert child.exitcode == 0
        assert os.read(read, 1) == b"1"
        os.close(read)
        child.close()
    finally:
        made.close()
        sys.modules.pop(name, None)


def test_a_module_whose_import_warns_is_left_to_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that imports it shows the warning, where a serial run does; one whose
    import is quiet is imported ahead."""
    (tmp_path / "warns_on_import.py").write_text(
        "import warnings\nimport warns_helper\nwarnings.warn('old', DeprecationWarning)\n"
    )
    (tmp_path / "warns_helper.py").write_text("")
    (tmp_path / "quiet_on_import.py").write_text("")
    (tmp_path / "fails_on_import.py").write_text("raise ImportError('no')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(gc, "freeze", lambda: None)  # not this process's collector
    names = ["warns_on_import", "warns_helper", "quiet_on_import", "fails_on_import"]
    for name in names:
        monkeypatch.delitem(sys.modules, name, raising=False)
    template._import_ahead(["warns_on_import", "quiet_on_import", "fails_on_import"])
    imported = [name for name in names if name in sys.modules]
    for name in imported:
        del sys.modules[name]
    assert imported == ["quiet_on_import"]
