"""What both benchmark scripts need: the children's environment, tables, the git revision."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def child_env() -> dict[str, str]:
    """The environment of every measured run: users have bytecode caching, and each run gets
    exactly the options the script shows."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_PLUGINS", None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return "\n".join(line.rstrip() for line in lines)


def git_revision(path: Path) -> str | None:
    """``abc1234`` or ``abc1234-dirty`` for the checkout that holds ``path``, if it is one."""
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None
