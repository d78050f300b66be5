"""Dynamic inversion (Podlaski & Machens 2020): limit tests of the error propagation and DI loop."""
import numpy as np
import pytest

from simkit.backend import get_backend
from simkit.dynamics.di import (
    DISolver,
    di_jacobian,
    euler_radius,
    sdi_jacobian,
    sdi_reference,
    spectral_abscissa,
)
from simkit.errors import NumericalError
from simkit.rules import inversion as inv

xp = np


def _net(seed=0, d_out=10, d_in=20, scale=0.3, n=4):
    rng = np.random.default_rng(seed)
    W = rng.uniform(-scale, scale, (d_out, d_in))
    return rng, W, rng.standard_normal((n, d_out)), rng.uniform(0.5, 1.0, (n, d_in))


@pytest.mark.parametrize("shape", [(10, 20), (20, 10), (10, 10)])
def test_ndi_forms_agree(shape):
    rng, W, _, _ = _net(d_out=shape[0], d_in=shape[1])
    B = rng.standard_normal(W.T.shape)
    delta = rng.standard_normal((3, shape[0]))
    wide = inv.ndi_operator(xp, W, B, 0.05, delta, "wide")
    tall = inv.ndi_operator(xp, W, B, 0.05, delta, "tall")
    np.testing.assert_allclose(wide, tall, rtol=1e-9, atol=1e-12)


def test_ndi_is_right_inverse_at_alpha_zero():
    rng, W, delta, _ = _net()
    B = rng.standard_normal(W.T.shape)
    r = inv.ndi_operator(xp, W, B, 0.0, delta)
    np.testing.assert_allclose(r @ W.T, delta, atol=1e-10)


def test_ndi_neg_transpose_alpha0_is_pbp():
    _, W, delta, dh = _net()
    ndi = inv.error_ndi(xp, W, -W.T, 0.0, delta, dh)
    pbp = inv.error_pbp(xp, W, delta, dh)
    np.testing.assert_allclose(ndi, pbp, rtol=1e-10, atol=1e-12)


def test_ndi_neg_transpose_is_ridge_pseudo_inverse():
    _, W, delta, _ = _net()
    a = 0.01
    ridge = (W.T @ np.linalg.solve(W @ W.T + a * np.eye(10), delta.T)).T
    np.testing.assert_allclose(inv.ndi_operator(xp, W, -W.T, a, delta), ridge, rtol=1e-10)


@pytest.mark.parametrize("shape", [(10, 20), (15, 15)])
def test_pbp_equals_bp_for_orthonormal_rows(shape):
    rng, _, _, _ = _net()
    q, _ = np.linalg.qr(rng.standard_normal((shape[1], shape[1])))
    W = q[:shape[0]]                                     # orthonormal rows
    delta, dh = rng.standard_normal((3, shape[0])), rng.uniform(0.5, 1, (3, shape[1]))
    np.testing.assert_allclose(inv.error_pbp(xp, W, delta, dh), inv.error_bp(xp, W, delta, dh),
                               rtol=1e-10, atol=1e-12)


def test_fa_with_transpose_is_bp():
    _, W, delta, dh = _net()
    np.testing.assert_allclose(inv.error_fa(xp, W.T, delta, dh), inv.error_bp(xp, W, delta, dh))


def test_bp_matches_finite_differences():
    """delta_0 = (W1^T e) . h' is minus the gradient of 1/2|y*-y|^2 w.r.t. the hidden pre-activation."""
    rng = np.random.default_rng(3)
    W0, W1 = rng.standard_normal((6, 4)), rng.standard_normal((3, 6))
    x, t = rng.standard_normal(4), rng.standard_normal(3)
    loss = lambda a: 0.5 * np.sum((t - W1 @ np.tanh(a)) ** 2)   # noqa: E731
    a = W0 @ x
    e = (t - W1 @ np.tanh(a))[None]
    d = inv.error_bp(xp, W1, e, (1 - np.tanh(a) ** 2)[None])[0]
    fd = np.array([(loss(a + h) - loss(a - h)) / 2e-6 for h in 1e-6 * np.eye(6)])
    np.testing.assert_allclose(d, -fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_di_converges_to_ndi(backend):
    _, W, delta, _ = _net(scale=0.3)
    bk = get_backend(backend, "float64")
    r = DISolver(bk, n_steps=3000)(W, -W.T, 0.01, delta)
    np.testing.assert_allclose(r, inv.ndi_operator(xp, W, -W.T, 0.01, delta), rtol=1e-8, atol=1e-10)


def test_di_default_steps_not_converged_for_small_alpha():
    """999 steps of dt 0.5 at W ~ U(+-0.01), alpha 0.001: several degrees off NDI (as the original)."""
    from simkit.metrics import angle_deg
    _, W, delta, _ = _net(scale=0.01, n=1)
    r = DISolver(get_backend("numpy", "float64"))(W, -W.T, 0.001, delta)
    assert 1.0 < angle_deg(xp, r, inv.ndi_operator(xp, W, -W.T, 0.001, delta)) < 20.0
    rt = DISolver(get_backend("numpy", "float64"), n_steps=400000, tol=1e-13)(W, -W.T, 0.001, delta)
    assert angle_deg(xp, rt, inv.ndi_operator(xp, W, -W.T, 0.001, delta)) < 1e-3


@pytest.mark.parametrize("g", ["linear", "tanh"])
def test_di_numpy_numba_parity(g):
    rng, W, delta, _ = _net(scale=0.5, n=7)
    B = -W.T + 0.1 * rng.standard_normal(W.T.shape)
    out = [DISolver(get_backend(b, "float64"), n_steps=500, g=g)(W, B, 0.01, delta)
           for b in ("numpy", "numba")]
    np.testing.assert_allclose(out[0], out[1], rtol=1e-11, atol=1e-13)


def test_di_tolerance_stops_early_and_agrees():
    _, W, delta, _ = _net(scale=0.5)
    for b in ("numpy", "numba"):
        s = DISolver(get_backend(b, "float64"), n_steps=5000, tol=1e-12)
        r = s(W, -W.T, 0.01, delta)
        assert s.last_steps < 4999
        np.testing.assert_allclose(r, inv.ndi_operator(xp, W, -W.T, 0.01, delta), rtol=1e-8)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_diverging_euler_step_stops_with_message(backend):
    rng = np.random.default_rng(1)
    W = 5.0 * np.linalg.qr(rng.standard_normal((20, 20)))[0][:10]     # sigma = 5 > 3.46
    assert spectral_abscissa(di_jacobian(W, -W.T, 0.01)) < 0 < euler_radius(W, -W.T, 0.01) - 1
    with pytest.raises(NumericalError, match="diverged.*dt"):
        DISolver(get_backend(backend, "float64"))(W, -W.T, 0.01, rng.standard_normal((2, 10)))


def test_neg_transpose_is_stable():
    _, W, _, _ = _net(scale=1.0)
    assert spectral_abscissa(di_jacobian(W, -W.T, 0.01)) < 0


def test_sdi_linear_fixed_point():
    rng = np.random.default_rng(2)
    W1, W2 = rng.uniform(-0.3, 0.3, (10, 20)), rng.uniform(-0.3, 0.3, (10, 10))
    B, a = -(W2 @ W1).T, 0.01
    assert spectral_abscissa(sdi_jacobian(W1, W2, B, a)) < 0
    delta = rng.standard_normal((2, 10))
    rx, ry = sdi_reference(xp, W1, W2, B, delta, a, 0.5, 4000, False)
    rz = np.linalg.solve(W2 @ W1 @ B - a * np.eye(10), delta.T).T
    np.testing.assert_allclose(rx, rz @ B.T, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(ry, rx @ W1.T, rtol=1e-8, atol=1e-12)


def test_sdi_gain_limit_detected():
    """With B = -(W2 W1)^T the loop is unstable once sigma^2(W2 W1) > ~2 + 4 alpha."""
    rng = np.random.default_rng(4)
    q1 = np.linalg.qr(rng.standard_normal((20, 20)))[0][:10]
    for gain in (1.6, 6.0):                              # sigma^2 = 2.56, 36
        W1, W2 = gain * q1, np.eye(10)
        assert spectral_abscissa(sdi_jacobian(W1, W2, -(W2 @ W1).T, 0.01)) > 0
    with pytest.raises(NumericalError, match="SDI"):
        sdi_reference(xp, W1, W2, -(W2 @ W1).T, rng.standard_normal((1, 10)), 0.01, 0.5, 1000, False)


def test_feedback_inits_do_not_touch_w():
    rng, W, _, _ = _net(scale=0.01)
    W0 = W.copy()
    for kind in inv.FEEDBACK:
        B = inv.init_feedback(rng, W, kind, scale=0.01)
        assert B.shape == W.T.shape
    np.testing.assert_array_equal(W, W0)
    assert inv.mat_angle(inv.init_feedback(rng, W, "neg-transpose"), W) == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("g", [False, True])
def test_sdi_numpy_numba_parity(g):
    rng = np.random.default_rng(5)
    W1, W2 = rng.uniform(-0.3, 0.3, (10, 20)), rng.uniform(-0.3, 0.3, (10, 10))
    delta = rng.standard_normal((3, 10))
    out = [sdi_reference(xp, W1, W2, -(W2 @ W1).T, delta, 0.01, 0.5, 400, g,
                         bk=get_backend(b, "float64")) for b in ("numpy", "numba")]
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("dh_mode", ["paper", "code_2021"])
def test_nonlinear_bp_errors_vs_finite_differences(dh_mode):
    """'paper' BP errors are -dL/da of 1/2|y*-y|^2; 'code_2021' multiplies h' in once more."""
    from simkit.tasks.inversion_model import Model, ModelSpec, TaskConfig, forward, hidden_errors
    rng = np.random.default_rng(6)
    sizes = [5, 4, 3, 2]
    W = [rng.standard_normal((o, i)) for i, o in zip(sizes[:-1], sizes[1:])]
    b = [rng.standard_normal(o) for o in sizes[1:]]
    x, t = rng.standard_normal((1, 5)), rng.standard_normal((1, 2))
    cfg = TaskConfig(["tanh", "tanh", "linear"], eta=0.0, dh_mode=dh_mode)
    m = Model(ModelSpec("BP", "BP"), W, b, [None] * 3)
    hs = forward(xp, W, b, cfg.acts, x)
    deltas = hidden_errors(xp, m, cfg, hs, t - hs[-1], None)

    def loss(a1):                                        # as a function of layer 1's pre-activation
        h = np.tanh(a1)
        return 0.5 * np.sum((t - (np.tanh(h @ W[1].T + b[1]) @ W[2].T + b[2])) ** 2)
    a1 = x @ W[0].T + b[0]
    fd = np.array([(loss(a1 + h) - loss(a1 - h)) / 2e-6 for h in 1e-6 * np.eye(4)])
    want = -fd if dh_mode == "paper" else None
    if dh_mode == "paper":
        np.testing.assert_allclose(deltas[0][0], want, rtol=1e-6, atol=1e-9)
    else:                                                # h'^2 at both hidden layers
        d2 = ((t - hs[-1]) @ W[2]) * (1 - hs[2] ** 2) ** 2
        np.testing.assert_allclose(deltas[0], (d2 @ W[1]) * (1 - hs[1] ** 2) ** 2, rtol=1e-12)


def test_di_parity_large_uses_blas_branch():
    rng = np.random.default_rng(8)
    W = rng.uniform(-0.2, 0.2, (40, 80))                 # 64 x 40 x 80 > kernels.di.SMALL
    delta = rng.standard_normal((64, 40))
    out = [DISolver(get_backend(b, "float64"), n_steps=200)(W, -W.T, 0.01, delta)
           for b in ("numpy", "numba")]
    np.testing.assert_allclose(out[0], out[1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("d_out,d_in", [(4, 9), (9, 4), (6, 6)])
@pytest.mark.parametrize("alpha", [0.0, 0.01, 0.3])
def test_reduced_di_abscissa_equals_full_jacobian(d_out, d_in, alpha):
    from simkit.dynamics.di import di_abscissa
    rng = np.random.default_rng(d_out * 10 + d_in)
    for scale in (0.1, 1.0, 3.0):                      # stable and unstable loops
        W, B = rng.normal(0, scale, (d_out, d_in)), rng.normal(0, scale, (d_in, d_out))
        full = spectral_abscissa(di_jacobian(W, B, alpha))
        assert di_abscissa(W, B, alpha) == pytest.approx(full, abs=1e-10)


@pytest.mark.parametrize("n1,n2,n3", [(8, 5, 3), (6, 4, 5), (3, 3, 5)])
@pytest.mark.parametrize("alpha", [0.0, 0.05])
def test_reduced_sdi_abscissa_equals_full_jacobian(n1, n2, n3, alpha):
    from simkit.dynamics.di import sdi_abscissa
    rng = np.random.default_rng(n1 + 10 * n2 + 100 * n3)
    for scale in (0.2, 1.0, 2.0):
        W1, W2 = rng.normal(0, scale, (n2, n1)), rng.normal(0, scale, (n3, n2))
        B = rng.normal(0, scale, (n1, n3))
        full = spectral_abscissa(sdi_jacobian(W1, W2, B, alpha))
        assert sdi_abscissa(W1, W2, B, alpha) == pytest.approx(full, abs=1e-9)
