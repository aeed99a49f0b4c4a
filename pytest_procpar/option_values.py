"""How each value a user can give procpar is read: one function per kind of value, called by
argparse for the command line (a bad value is then a usage error naming the option) and by
:func:`pytest_procpar.settings.resolve` for the ini file.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from collections.abc import Sequence

from pytest_procpar import collect_mode, remote, shard
from pytest_procpar.scheduler import POLICIES, SERIAL_POLICY

START_METHODS = ("fork", "forkserver", "spawn")
LIVE_MODES = ("auto", "off")  # --procpar-live
NumProcesses = int | str  # a count, or "auto" / "logical"


def parse_numprocesses(value: str) -> NumProcesses:
    """``-n`` value: ``auto``, ``logical`` or a whole number >= 0."""
    text = str(value).strip()
    if text in ("auto", "logical"):
        return text
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(
            f"expected 'auto', 'logical' or a whole number >= 0, got {value!r}"
        )
    return count


def whole_number(value: str, minimum: int) -> int:
    try:
        count = int(str(value).strip())
    except ValueError:
        count = minimum - 1
    if count < minimum:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {value!r}")
    return count


def parse_maxprocesses(value: str) -> int:
    """``--maxprocesses`` value: a whole number >= 1."""
    return whole_number(value, 1)


def _one_of(value: str, choices: Sequence[str]) -> str:
    text = str(value).strip()
    if text not in choices:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)}, got {value!r}")
    return text


def parse_start_method(value: str) -> str:
    """``--procpar-start`` value: one of :data:`START_METHODS` this platform offers."""
    text = _one_of(value, START_METHODS)
    if text not in multiprocessing.get_all_start_methods():
        raise argparse.ArgumentTypeError(
            f"start method {text!r} is not available on {sys.platform}"
        )
    return text


def parse_seconds(value: str) -> float:
    """``--procpar-timeout`` or ``--procpar-slow`` value: seconds >= 0 (0: off)."""
    try:
        seconds = float(str(value).strip())
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {value!r}")
    return seconds


def parse_live(value: str) -> str:
    """``--procpar-live`` value: one of :data:`LIVE_MODES`."""
    return _one_of(value, LIVE_MODES)


def parse_collect_mode(value: str) -> str:
    """``--procpar-collect`` value: one of :data:`collect_mode.MODES`."""
    return _one_of(value, collect_mode.MODES)


def parse_restarts(value: str) -> int:
    """``--max-worker-restart`` value: a whole number >= 0."""
    return whole_number(value, 0)


def parse_max_tests(value: str) -> int:
    """``--max-tests-per-worker`` value: a whole number >= 1."""
    return whole_number(value, 1)


def parse_dist(value: str) -> str:
    """``--dist`` value: a scheduling policy name, or ``no`` for a serial run."""
    return _one_of(value, [*POLICIES, SERIAL_POLICY])


def parse_tx(value: str) -> list[str]:
    """``--tx`` value: an execnet gateway spec, ``N*SPEC`` for N of them."""
    import execnet

    text = str(value).strip()
    count_text, star, spec = text.partition("*")
    if not star:
        count_text, spec = "1", text
    try:
        count = whole_number(count_text, 1)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected SPEC or N*SPEC with N >= 1, got {value!r}"
        ) from None
    try:
        xspec = execnet.XSpec(spec)
    except Exception as exc:
        raise argparse.ArgumentTypeError(
            f"not an execnet gateway spec: {value!r} ({exc})"
        ) from None
    kinds = [kind for kind in remote.GATEWAY_KINDS if getattr(xspec, kind, None)]
    if len(kinds) != 1:
        raise argparse.ArgumentTypeError(
            f"expected popen, ssh=HOST or socket=HOST:PORT in the spec, got {value!r}"
        )
    return [spec] * count


def parse_shard_mode(value: str) -> str:
    """``--shard-mode`` value: one of :data:`shard.MODES`."""
    return _one_of(value, shard.MODES)


def default_start_method() -> str:
    """fork where the platform has it (workers forked from the template start warm), else
    spawn."""
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
