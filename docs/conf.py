"""Sphinx configuration for the pytest-procpar documentation (no extensions, builds offline)."""

import re
from pathlib import Path

_init = (Path(__file__).parent.parent / "pytest_procpar" / "__init__.py").read_text()
release = re.search(r'^__version__ = "([^"]+)"', _init, re.MULTILINE).group(1)
version = release

project = "pytest-procpar"
author = "pytest-procpar developers"
copyright = "pytest-procpar developers"

extensions: list[str] = []
root_doc = "index"
exclude_patterns = ["_build", "bench-results.rst"]  # included by performance.rst
highlight_language = "none"
pygments_style = "sphinx"

html_theme = "alabaster"
html_title = f"pytest-procpar {release}"
