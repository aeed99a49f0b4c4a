"""The garbage collector and the collected suite: kept apart, so that forking stays cheap.

A collected suite is many long-lived objects. The collector's full passes would walk them all
again and again (while collecting, while the controller replays), and in a forked worker its
writes to their headers would copy every inherited page. These functions freeze the suite out
of the collector's sight at the right moments, and give it back when pytest is done.
"""

from __future__ import annotations

import atexit
import functools
import gc

import pytest


def set_aside_while_collecting() -> None:
    """Called after each collector: what is collected so far lives as long as the run, so the
    garbage collector's full passes while the rest is collected need not walk it again (about
    15% of the time it takes to collect 5000 small tests). :func:`collection_done` gives it
    back to the collector."""
    gc.freeze()


def collection_done() -> None:
    """Undo :func:`set_aside_while_collecting`, however collection ended: what it left as
    garbage is then finalized by :func:`set_suite_aside`'s collection, or at pytest's end."""
    gc.unfreeze()


def set_suite_aside() -> None:
    """Once collected, the suite lives as long as the run: keep the garbage collector off it.

    After ``gc.freeze()`` the controller's collections (while it schedules, replays, and the
    two pytest makes as the session ends) only walk what the run itself allocates. Garbage
    left over from collecting is collected first, so its finalizers run, as they would in a
    serial run. For 5000 tests that one collection costs 50 ms and saves 150 ms at the end.
    :func:`release_suite` undoes the freeze.
    """
    gc.collect()
    gc.freeze()


class SurvivorsAside:
    """While the workers run: what outlives a full collection in the controller (every
    report, which the terminal reporter keeps to the end, and what plugins keep of them)
    lives as long as the run, so it is frozen after each full pass, which would otherwise
    walk it again and again (about 230 ms of the controller's 440 ms of garbage collection
    for 20000 tiny tests). A context manager; the run loop calls :meth:`freeze_if_due`, out
    of the collector's own callback. :func:`release_suite` undoes these freezes too."""

    def __init__(self) -> None:
        self.due = False

    def __enter__(self) -> SurvivorsAside:
        gc.callbacks.append(self._observe)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._observe)

    def _observe(self, phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == _OLDEST:
            self.due = True

    def freeze_if_due(self) -> None:
        if self.due:
            self.due = False
            gc.freeze()


_OLDEST = len(gc.get_threshold()) - 1  # the generation a full pass collects


def release_suite(config: pytest.Config) -> None:
    """Unfreeze when ``config``'s cleanup ends, after pytest's last collections of the
    session: a later ``pytest.main()`` in this process gets a working collector. Call this
    before the configure hooks, whose cleanups then come first."""
    config.add_cleanup(gc.unfreeze)


@functools.cache
def freeze_at_exit() -> None:
    """When the interpreter exits, spare it the last garbage collections over the collected
    suite (about 0.3 s for 5000 tests): nothing is left to clean up that the process's end
    does not. Not before then, as pytest may be run again in this process."""
    atexit.register(gc.freeze)
