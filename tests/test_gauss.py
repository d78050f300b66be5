"""The counter-based normal stream (simkit.kernels.gauss): its definition, slices, distribution,
and the same numbers from every backend's twin."""
import numpy as np
import pytest
from scipy import stats

from simkit.backend import _cupy_usable, jit
from simkit.kernels import gauss
from simkit.kernels.gauss import GAMMA, HALF_PI, INV53, M1, M2, normals, stream_key
from tests.helpers import numba_backend, numpy_backend

KEY = stream_key(7, 1, 3, 0)
needs_numba = pytest.mark.skipif(not jit.ENABLED, reason=f"Numba twins are off ({jit.REASON})")


def definition(key, start, n):
    """The module docstring's formulas with NumPy's log, cos and sin."""
    p0, p1 = start // 2, (start + n + 1) // 2
    z = np.arange(2 * p0, 2 * p1, dtype=np.uint64) * np.uint64(GAMMA) ^ np.uint64(key)
    z = (z ^ (z >> 30)) * np.uint64(M1)                            # SplitMix64's finaliser
    z = (z ^ (z >> 27)) * np.uint64(M2)
    z = z ^ (z >> 31)
    z1, z2 = z[0::2], z[1::2]
    R = np.sqrt(-2.0 * np.log(((z1 >> 11).astype(np.float64) + 1.0) * INV53))
    f = ((z2 >> 9) & np.uint64((1 << 53) - 1)).astype(np.float64) * INV53
    theta = (z2 >> 62).astype(np.float64) * HALF_PI + (f - 0.5) * HALF_PI
    pairs = np.stack([R * np.cos(theta), R * np.sin(theta)], axis=1).reshape(-1)
    return pairs[start - 2 * p0:start - 2 * p0 + n]


@needs_numba
def test_kernel_matches_the_array_call_definition():
    """The vectorised kernel (series for ln, sin, cos) equals np.log / np.cos / np.sin's version
    of the same formulas to round-off, in float64, and float32 is its rounding."""
    a = normals(KEY, 12345, (400_000,), bk=numba_backend())
    np.testing.assert_allclose(a, definition(KEY, 12345, 400_000), rtol=0, atol=2e-14)
    np.testing.assert_array_equal(normals(KEY, 12345, (1000,), np.float32, bk=numba_backend()),
                                  a[:1000].astype(np.float32))


@pytest.mark.parametrize("start", [0, 1, 2, 7])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 64, 65])
def test_any_slice_is_the_slice_of_the_stream(start, n):
    full = normals(KEY, 0, (start + n + 3,))
    np.testing.assert_array_equal(normals(KEY, start, (n,)), full[start:start + n])
    np.testing.assert_allclose(definition(KEY, start, n), full[start:start + n],
                               rtol=0, atol=1e-13)


@needs_numba
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("start", [0, 1, 12345])
def test_numpy_and_numba_twins_draw_the_same_bits(start, dtype):
    shape = (3, 129, 17)
    np.testing.assert_array_equal(normals(KEY, start, shape, dtype, bk=numpy_backend()),
                                  normals(KEY, start, shape, dtype, bk=numba_backend()))


def test_the_numpy_backend_draws_without_numba(monkeypatch):
    """fill_normals runs the chosen backend's twin: the array calls on numpy."""
    monkeypatch.setattr(gauss, "fill", lambda *a: pytest.fail("the Numba twin ran on numpy"))
    out = gauss.fill_normals(numpy_backend(), np.empty((4, 5)), KEY, 3)
    np.testing.assert_array_equal(out.reshape(-1), normals(KEY, 3, (20,)))


@pytest.mark.gpu
def test_cupy_twin_draws_the_same_bits():
    pytest.importorskip("cupy")
    ok, why = _cupy_usable()
    if not ok:
        pytest.skip(why)
    from simkit.backend import get_backend
    gpu = get_backend("cupy", announce=False)
    for dtype in (np.float64, np.float32):
        np.testing.assert_array_equal(gpu.to_host(normals(KEY, 7, (3, 129, 17), dtype, bk=gpu)),
                                      normals(KEY, 7, (3, 129, 17), dtype))


def test_shape_is_row_major_over_the_stream():
    x = normals(KEY, 10, (4, 3, 5))
    np.testing.assert_array_equal(x.reshape(-1), normals(KEY, 10, (60,)))


def test_draws_are_standard_normal():
    """Moments, Kolmogorov-Smirnov and the tails on 2e6 draws (tolerances ~5 standard errors)."""
    n = 2_000_000
    x = normals(KEY, 0, (n,))
    se = 1 / np.sqrt(n)
    assert abs(x.mean()) < 5 * se
    assert abs(x.var() - 1) < 5 * np.sqrt(2) * se
    assert abs((x ** 3).mean()) < 5 * np.sqrt(15) * se
    assert abs((x ** 4).mean() - 3) < 5 * np.sqrt(96) * se
    assert stats.kstest(x, "norm").pvalue > 1e-3
    for z in (2.0, 3.0, 4.0):
        p = 2 * stats.norm.sf(z)
        assert abs((np.abs(x) > z).mean() - p) < 5 * np.sqrt(p / n)


def test_draws_are_independent():
    """Neighbours (lags 1-3, both halves of a Box-Muller pair, their squares), the pairs' angle
    (chi-square over 16 sectors) and two keys' streams are uncorrelated."""
    n = 1_000_000
    x = normals(KEY, 0, (n,))
    lim = 5 / np.sqrt(n)
    for lag in (1, 2, 3):
        assert abs(np.corrcoef(x[:-lag], x[lag:])[0, 1]) < lim
    a, b = x[0::2], x[1::2]
    assert abs(np.corrcoef(a ** 2, b ** 2)[0, 1]) < 5 / np.sqrt(n / 2)
    sectors = np.floor((np.arctan2(b, a) + np.pi) / (2 * np.pi) * 16).astype(int) % 16
    assert stats.chisquare(np.bincount(sectors, minlength=16)).pvalue > 1e-3
    y = normals(stream_key(7, 1, 3, 1), 0, (n,))
    assert abs(np.corrcoef(x, y)[0, 1]) < lim


def test_keys_of_nearby_tuples_differ():
    keys = {stream_key(s, e, c, p) for s in range(3) for e in range(3) for c in range(3)
            for p in range(2)}
    assert len(keys) == 54 and all(0 <= k < 2 ** 64 for k in keys)
    assert stream_key(1, 2) != stream_key(2, 1)
