"""Shared configuration of procpar's own test suite."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "stress: large inner runs (tens of thousands of tests); part of the normal run, "
        "deselect with -m 'not stress'",
    )
