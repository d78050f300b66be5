"""SSA feedback optimisation: stabilises random feedback, never mutates, fails loudly."""
import numpy as np
import pytest

from simkit.dynamics.di import di_jacobian, sdi_jacobian, spectral_abscissa
from simkit.dynamics.ssa import SSAError, ssa_opt, ssa_opt_sdi, stabilise
from simkit.errors import NumericalError


def _unstable(seed):
    """W 10x20, B ~ U(+-0.01) with a positive abscissa at alpha = 0 (the original's setting)."""
    rng = np.random.default_rng(seed)
    while True:
        W, B = rng.uniform(-0.01, 0.01, (10, 20)), rng.uniform(-0.01, 0.01, (20, 10))
        if spectral_abscissa(di_jacobian(W, B, 0.0)) > 0:
            return rng, W, B


@pytest.mark.parametrize("smoothed", [False, True])
def test_ssa_reaches_negative_abscissa(smoothed):
    for seed in range(3):
        _, W, B = _unstable(seed)
        W0, B0 = W.copy(), B.copy()
        Bs = ssa_opt(W, B, 0.0, smoothed=smoothed)
        assert spectral_abscissa(di_jacobian(W, Bs, 0.0)) < 0
        np.testing.assert_array_equal(W, W0)            # W untouched
        np.testing.assert_array_equal(B, B0)            # never in place
        assert Bs is not B


def test_ssa_deterministic():
    _, W, B = _unstable(5)
    np.testing.assert_array_equal(ssa_opt(W, B, 0.0), ssa_opt(W, B, 0.0))


def test_ssa_raises_named_error_with_abscissa_and_iterations():
    _, W, B = _unstable(1)
    with pytest.raises(SSAError) as exc:
        ssa_opt(W, B, 0.0, lr=1e-9, maxiters=3, miniters=1)
    assert exc.value.abscissa > 0 and exc.value.iterations == 3
    assert isinstance(exc.value, NumericalError) and "abscissa" in str(exc.value)


def test_stabilise_bounded_retries():
    rng, W, B = _unstable(2)
    calls = []

    def never(b):
        calls.append(b)
        raise SSAError(0.5, 7)
    with pytest.raises(SSAError) as exc:
        stabilise(B, never, rng, retries=2)
    assert len(calls) == 3 and exc.value.tries == 3 and exc.value.iterations == 7
    assert not np.array_equal(calls[0], calls[1])       # retries from fresh, derived draws


def test_ssa_on_sdi_loop():
    rng = np.random.default_rng(7)
    W1, W2 = rng.uniform(-0.01, 0.01, (10, 20)), rng.uniform(-0.01, 0.01, (10, 10))
    while True:
        B = rng.uniform(-0.01, 0.01, (20, 10))
        if spectral_abscissa(sdi_jacobian(W1, W2, B, 0.0)) > 0:
            break
    Bs = ssa_opt_sdi(W1, W2, B, 0.0, lr=0.5, maxiters=2000, miniters=100)
    assert spectral_abscissa(sdi_jacobian(W1, W2, Bs, 0.0)) < 0
