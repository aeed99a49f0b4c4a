"""pytest-procpar: run a pytest suite on parallel workers forked after one collection."""

__version__ = "0.1.0"
