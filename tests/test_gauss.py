"""The counter-based normal stream (simkit.kernels.gauss): its definition, slices, distribution."""
import numpy as np
import pytest
from scipy import stats

from simkit.kernels.gauss import normals, normals_xp, stream_key

KEY = stream_key(7, 1, 3, 0)


def test_kernel_matches_the_array_call_definition():
    """The vectorised kernel (series for ln, sin, cos) equals np.log / np.cos / np.sin's version
    of the same formulas to round-off, in float64, and float32 is its rounding."""
    a = normals(KEY, 12345, (400_000,))
    b = normals_xp(np, KEY, 12345, (400_000,))
    np.testing.assert_allclose(a, b, rtol=0, atol=2e-14)
    np.testing.assert_array_equal(normals(KEY, 12345, (1000,), np.float32),
                                  a[:1000].astype(np.float32))


@pytest.mark.parametrize("start", [0, 1, 2, 7])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 64, 65])
def test_any_slice_is_the_slice_of_the_stream(start, n):
    full = normals(KEY, 0, (start + n + 3,))
    np.testing.assert_array_equal(normals(KEY, start, (n,)), full[start:start + n])
    np.testing.assert_allclose(normals_xp(np, KEY, start, (n,)), full[start:start + n],
                               rtol=0, atol=1e-13)


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
