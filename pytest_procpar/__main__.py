"""``python -m pytest_procpar``: what procpar does outside a pytest run, for CI scripts.

``merge-durations OUT IN...`` combines the durations files of several ``--shard`` jobs (see
:mod:`pytest_procpar.durations_merge`). Errors are one line and exit code 2, like a usage
error of argparse's, so that a CI log shows the cause and not a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pytest_procpar.durations_merge import MergeError, merge_files

USAGE_ERROR = 2


def parser() -> argparse.ArgumentParser:
    commands = argparse.ArgumentParser(prog="python -m pytest_procpar")
    subcommands = commands.add_subparsers(dest="command", required=True)
    merge = subcommands.add_parser(
        "merge-durations",
        help="Merge the durations files of several --shard jobs into one.",
        description="Merge durations files (or pytest cache directories) into OUT, the "
        "pytest-split format --procpar-durations reads.",
    )
    merge.add_argument("out", metavar="OUT", type=Path, help="the merged file to write")
    merge.add_argument(
        "inputs", metavar="IN", type=Path, nargs="+", help="a durations file or .pytest_cache"
    )
    merge.add_argument(
        "--base",
        type=Path,
        default=None,
        help="the durations the shard jobs started from: their values that differ from it "
        "are new measurements and win",
    )
    return commands


def main(argv: Sequence[str]) -> int:
    arguments = parser().parse_args(argv)
    try:
        print(merge_files(arguments.out, arguments.inputs, arguments.base))
    except MergeError as exc:
        print(f"merge-durations: {exc}", file=sys.stderr)
        return USAGE_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
