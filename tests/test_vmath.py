"""The vectorisable elementary functions (simkit.kernels.vmath) against NumPy's."""
import numpy as np
import pytest

vmath = pytest.importorskip("simkit.kernels.vmath")
LOG, TANH, EXPM1, SIN, COS = range(5)


def run(which, x):
    out = np.empty_like(x)
    vmath.apply(which, x, out)
    return out


def rel_err(got, ref):
    return np.max(np.abs(got - ref) / np.maximum(np.abs(ref), np.finfo(float).tiny))


def test_tanh_is_numpys_to_a_few_ulp_everywhere():
    """Across 0, tiny, small (no cancellation), the expm1 reduction's branch points and the
    saturation at +-19.5, both signs."""
    mags = np.concatenate([np.logspace(-300, -1, 3000), np.linspace(0.1, 25, 200_001),
                           np.arange(1, 60) * np.log(2) / 2, [vmath.TANH_ONE, 30.0, 1e300]])
    x = np.concatenate([mags, -mags, [0.0]])
    assert rel_err(run(TANH, x), np.tanh(x)) < 5e-16
    assert run(TANH, np.array([np.inf, -np.inf])).tolist() == [1.0, -1.0]


def test_log_sin_cos_expm1_on_their_ranges():
    u = np.concatenate([np.logspace(-307, 0, 50_000), np.linspace(1e-6, 1, 100_001)])
    assert rel_err(run(LOG, u), np.log(u)) < 2e-14        # |ln u| down to 1e-6: m - 1 rounds
    assert rel_err(run(LOG, u[:50_000]), np.log(u[:50_000])) < 5e-16
    t = np.linspace(-np.pi / 4, np.pi / 4, 100_001)
    np.testing.assert_allclose(run(SIN, t), np.sin(t), rtol=3e-16, atol=1e-300)
    np.testing.assert_allclose(run(COS, t), np.cos(t), rtol=3e-16)
    y = np.linspace(0, 39, 100_001)
    assert rel_err(run(EXPM1, y)[1:], np.expm1(y)[1:]) < 5e-16
