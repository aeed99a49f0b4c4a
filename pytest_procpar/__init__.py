"""pytest-procpar: run a pytest suite on parallel workers forked after one collection."""

from pytest_procpar.once import once_per_run

__version__ = "0.1.0"
__all__ = ["once_per_run"]
