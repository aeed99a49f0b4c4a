"""A small demo suite: `pytest -p procpar -n auto examples/demo` runs it on every CPU."""

import time

import pytest


@pytest.fixture(scope="module")
def table():
    time.sleep(0.05)  # an expensive module fixture: set up once per worker that needs it
    return {n: n * n for n in range(100)}


@pytest.mark.parametrize("n", range(40))
def test_square(table, n):
    assert table[n] == n * n


@pytest.mark.parametrize("n", range(20))
def test_slow(n):
    time.sleep(0.02)
    assert n >= 0


def test_worker_identity(worker_id):
    assert worker_id.startswith("gw")
