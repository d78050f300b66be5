"""Shared test helpers (not a test module); imported as ``from helpers import ...``
(``tests/conftest.py`` puts this folder on ``sys.path``)."""
from pathlib import Path

import numpy as np
import pytest

from simkit.backend import get_backend

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"   # numbers recorded from the original codes


def numpy_backend(dtype="float64"):
    return get_backend("numpy", dtype, announce=False)


def numba_backend(dtype="float64"):
    return get_backend("numba", dtype, announce=False)


def finite_difference(f, x, eps=1e-6):
    """Central differences of the scalar function ``f`` at the array ``x`` (modified in place)."""
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        fp = f()
        x[i] = old - eps
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """One BLAS thread for a test module that imports this fixture: when other processes keep
    the cores busy, a second BLAS thread waiting for one makes the 784-wide products up to 100x
    slower, while one thread is at most 2x slower on idle cores."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1, user_api="blas"):
        yield
