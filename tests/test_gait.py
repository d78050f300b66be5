"""Invertible networks, BP / GAIT-prop / TP on them, and the GAIT training loop.

The invariants of issue 6: exact inverses, GAIT-prop == BP at orthogonal weights (exact
formulation), TP's closed form on linear orthogonal nets, the regulariser's gradient against
finite differences, numpy/numba parity, singular layers reported, and a quick "it learns" run.
"""
import json

import numpy as np
import pytest

from simkit.errors import NumericalError, UserError
from simkit.nn.activations import sigma, sigma_inv
from simkit.nn.invertible import (
    InvertibleNet,
    original_init,
    ortho_grad,
    ortho_penalty,
    probe_rows,
    solve_right,
)
from simkit.optim import Adam
from simkit.rules.gait import (
    InvertibleRule,
    output_target,
    scaled_increment,
    tp_targets,
)
from simkit.training.fixed_order import GaitTrainer, Schedule, Split
from simkit.training.rundir import RunDir, load_arrays

from helpers import (
    finite_difference,
    numba_backend,
    numpy_backend,
    one_blas_thread,  # noqa: F401 (autouse fixture)
)

ADAM = {"beta1": 0.9, "beta2": 0.99, "eps": 1e-8, "bias_correction": False}


def batch(n, N=12, seed=0, C=10):
    rng = np.random.default_rng(seed)
    return rng.random((N, n)), np.eye(C)[rng.integers(0, C, N)]


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def grads_of(net, alg, x, onehot, **kw):
    cache = net.forward(x)
    T = output_target(np, cache.y, onehot)
    return [[g.copy() for g in layer] for layer in InvertibleRule(alg, **kw).grads(net, cache, t=T)]


@pytest.fixture(scope="module")
def bk():
    return numpy_backend()


# ---------------------------------------------------------------------------------- the network
@pytest.mark.parametrize("linear", [False, True])
def test_square_round_trip(bk, linear):
    net = InvertibleNet.square(bk, 64, 4, seed=3, linear=linear)
    x, _ = batch(64)
    cache = net.forward(x)
    rec = net.inverse_pass(cache.y, cache)
    for k in range(net.L + 1):
        assert np.abs(rec[k] - cache.h[k]).max() < 1e-10, k


def test_tower_round_trip_native_sizes(bk):
    net = InvertibleNet.tower(bk, (784, 784, 500, 200, 10), seed=1)
    x, _ = batch(784, N=5)
    cache = net.forward(x)
    assert [h.shape[1] for h in cache.h] == [784, 784, 500, 200, 10]
    rec = net.inverse_pass(cache.y, cache)
    for k in range(net.L + 1):
        assert np.abs(rec[k] - cache.h[k]).max() < 1e-10, k


def test_transfer_function_and_init_quirks(bk):
    z = np.array([-2.0, -0.0, 0.0, 3.0])
    np.testing.assert_array_equal(sigma(np, z), [-0.2, 0.0, 0.0, 3.0])
    np.testing.assert_allclose(sigma_inv(np, sigma(np, z)), z, atol=1e-15)
    W = original_init(32, 7, True)
    assert np.abs(W @ W.T - np.eye(32)).max() < 1e-14
    net = InvertibleNet.square(bk, 16, 2, seed=1)
    np.testing.assert_array_equal(net.W[1], net.W[2])          # the original's seed reuse
    net = InvertibleNet.square(bk, 16, 2, seed=1, distinct_output_seed=True)
    assert np.abs(net.W[1] - net.W[2]).max() > 0.1
    with pytest.raises(UserError):
        InvertibleNet(bk, [10, 20])                             # widths must not grow


# ---------------------------------------------------------------------------------- inverses
def test_singular_and_ill_conditioned_layers_are_reported(bk):
    net = InvertibleNet.square(bk, 8, 2, seed=1)
    net.W[1][:, 3] = net.W[1][:, 5]                             # two equal columns: singular
    x, onehot = batch(8, C=4)
    with pytest.raises(NumericalError, match="layer 2 is singular or ill-conditioned"):
        grads_of(net, "GAIT", x, onehot)
    Y, R = np.ones((3, 8)), probe_rows(8)
    with pytest.raises(NumericalError, match="condition number"):    # invertible, cond 1e14
        solve_right(np, np.diag([1.0] * 7 + [1e-14]), Y, R, 3)
    W = np.eye(8)
    W[0, 0] = np.nan
    with pytest.raises(NumericalError):
        solve_right(np, W, Y, R, 1)
    X, cond = solve_right(np, np.diag([1.0] * 7 + [1e-6]), Y, R, 1)   # badly scaled but fine
    assert 1e4 < cond < 1e7 and X[0, 7] == pytest.approx(1e6)
    Q = original_init(64, 3, True)
    assert solve_right(np, Q, Y[:, :1].repeat(64, 1), probe_rows(64), 1)[1] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------- the rules
@pytest.mark.parametrize("shape", ["square", "tower"])
def test_gait_equals_bp_at_orthogonal_weights(bk, shape):
    """The paper's result, to round-off, with the exact formulation (Eq. 9), every layer."""
    if shape == "square":
        net = InvertibleNet.square(bk, 128, 4, seed=1)
    else:
        net = InvertibleNet.tower(bk, (128, 128, 60, 30, 10), seed=1)
    x, onehot = batch(128, N=20)
    bp, gait = grads_of(net, "BP", x, onehot), grads_of(net, "GAIT", x, onehot)
    for l in range(net.L):
        assert rel(gait[l][0], bp[l][0]) < 1e-8, l
        assert rel(gait[l][1], bp[l][1]) < 1e-8, l


def test_original_gait_is_roundoff_at_the_bottom_and_exact_form_is_not(bk):
    """Research note §4.3 at the native size: 784 wide, 4 hidden layers, gamma = 1e-3."""
    net = InvertibleNet.square(bk, 784, 4, seed=1)
    x, onehot = batch(784, N=30, seed=2)
    x *= (x > 0.6)                                              # sparse, MNIST-like inputs
    bp = grads_of(net, "BP", x, onehot)
    exact = grads_of(net, "GAIT", x, onehot)
    original = grads_of(net, "GAIT", x, onehot, formulation="original")
    assert max(rel(exact[l][0], bp[l][0]) for l in range(5)) < 1e-10
    assert rel(original[0][0], bp[0][0]) > 1e-2                 # bottom layer: mostly noise
    assert rel(original[3][0], bp[3][0]) < 1e-6                 # top layers agree


def test_gait_differs_from_bp_without_orthogonality(bk):
    W = [original_init(32, s, False).T for s in (1, 2, 3)]      # Xavier: W^-1 != W^T
    net = InvertibleNet(bk, [32] * 4, W)
    x, onehot = batch(32)
    bp, gait = grads_of(net, "BP", x, onehot), grads_of(net, "GAIT", x, onehot)
    assert rel(gait[2][0], bp[2][0]) < 1e-12                    # output layer: same error
    assert rel(gait[0][0], bp[0][0]) > 0.1


def test_exact_gait_keeps_the_kink_crossings_of_the_original(bk):
    """At a large gamma (0.3) both formulations are well conditioned and agree, crossings included."""
    net = InvertibleNet.square(bk, 48, 3, seed=5)
    x, onehot = batch(48, N=16)
    exact = grads_of(net, "GAIT", x, onehot, gamma=0.3)
    original = grads_of(net, "GAIT", x, onehot, gamma=0.3, formulation="original")
    bp = grads_of(net, "BP", x, onehot)
    for l in range(net.L):
        assert rel(exact[l][0], original[l][0]) < 1e-10, l
    assert rel(exact[0][0], bp[0][0]) > 1e-3                    # crossings do change the update


def test_scaled_increment_matches_direct_difference():
    rng = np.random.default_rng(0)
    h = rng.normal(size=2000) * 0.1
    D = rng.normal(size=2000)
    for s in (0.5, 0.05):
        direct = (sigma_inv(np, h + s * np.where(h >= 0, 1.0, 0.01) * D) - sigma_inv(np, h)) / s
        got = scaled_increment(np, h, D, s, 0.1, False)
        crossed = np.sign(h) != np.sign(h + s * np.where(h >= 0, 1.0, 0.01) * D)
        assert crossed.sum() > 20                               # both branches exercised
        np.testing.assert_allclose(got, direct, rtol=1e-9, atol=1e-12)


def test_tp_targets_closed_form_on_linear_orthogonal_net(bk):
    r"""Linear, orthogonal: :math:`T_l - h_l = (T_L - h_L) W_L \cdots W_{l+1}`; TP == BP."""
    net = InvertibleNet.square(bk, 24, 3, seed=2, linear=True)
    net.b = [np.random.default_rng(l).normal(size=24) * 0.1 for l in range(net.L)]
    x, onehot = batch(24)
    cache = net.forward(x)
    T = output_target(np, cache.y, onehot)
    targets = tp_targets(net, cache.h, T, bottom=True)
    diff = T - cache.y
    for l in range(net.L, -1, -1):
        np.testing.assert_allclose(targets[l] - cache.h[l], diff, atol=1e-12)
        if l:
            diff = diff @ net.W[l - 1]
    bp, tp = grads_of(net, "BP", x, onehot), grads_of(net, "TP", x, onehot)
    for l in range(net.L):
        assert rel(tp[l][0], bp[l][0]) < 1e-12


def test_tp_differs_from_bp_with_leaky_relu(bk):
    net = InvertibleNet.square(bk, 64, 3, seed=1)
    x, onehot = batch(64)
    bp, tp = grads_of(net, "BP", x, onehot), grads_of(net, "TP", x, onehot)
    assert rel(tp[0][0], bp[0][0]) > 0.5


def test_bp_deltas_against_finite_differences(bk):
    net = InvertibleNet.tower(bk, (12, 12, 10, 10), seed=4)
    x, onehot = batch(12, N=5)

    def loss():
        y = net.forward(x).y
        return 0.5 * ((y[:, :10] - onehot) ** 2).sum() / x.shape[0]

    g = grads_of(net, "BP", x, onehot)
    for l in range(net.L):
        np.testing.assert_allclose(g[l][0], finite_difference(loss, net.W[l]), atol=1e-8)
        np.testing.assert_allclose(g[l][1], finite_difference(loss, net.b[l]), atol=1e-8)


def test_regulariser_gradient_against_finite_differences():
    W = np.random.default_rng(1).normal(size=(7, 7))
    lam = 0.3
    fd = finite_difference(lambda: lam * ortho_penalty(np, W), W)
    np.testing.assert_allclose(ortho_grad(np, W, lam), fd, rtol=1e-7, atol=1e-8)
    Q = original_init(20, 1, True)
    assert np.abs(ortho_grad(np, Q * 3.0, 10.0)).max() < 1e-12   # column norms are free


# ---------------------------------------------------------------------------------- optimiser, parity
def run_steps(bk, alg, lam, steps=3, lr=1e-4):
    net = InvertibleNet.square(bk, 32, 2, seed=1)
    rule = InvertibleRule(alg, lam)
    opt = Adam(bk, net.params(), lr, **ADAM)
    x, onehot = batch(32, N=9)
    for _ in range(steps):
        cache = net.forward(x)
        opt.step(net.params(), rule.grads(net, cache, t=output_target(np, cache.y, onehot)))
        net.weights_changed()
    return net, opt


def test_first_adam_step_is_lr_times_sign():
    bk = numpy_backend()
    net0 = InvertibleNet.square(bk, 32, 2, seed=1)
    x, onehot = batch(32, N=9)
    g = grads_of(net0, "BP", x, onehot)
    net, _ = run_steps(bk, "BP", 0.0, steps=1)
    step = net.W[0] - net0.W[0]
    big = np.abs(g[0][0]) > 1e-3                                # m/(1e-8 + sqrt v) = d/(1e-7 + |d|)
    np.testing.assert_allclose(step[big], -1e-4 * np.sign(g[0][0][big]), rtol=1e-3)


@pytest.mark.parametrize("alg,lam", [("GAIT", 0.1), ("TP", 1000.0)])
def test_numpy_numba_parity(alg, lam):
    a, opt_a = run_steps(numpy_backend(), alg, lam)
    b, opt_b = run_steps(numba_backend(), alg, lam)
    for l in range(a.L):
        np.testing.assert_allclose(b.W[l], a.W[l], rtol=0, atol=1e-13)
        np.testing.assert_allclose(b.b[l], a.b[l], rtol=0, atol=1e-13)
        np.testing.assert_allclose(opt_b.state["v"][l][0], opt_a.state["v"][l][0], rtol=1e-10)


def test_cupy_parity_where_a_gpu_is_present():
    from simkit.backend import get_backend
    try:
        gpu = get_backend("cupy", announce=False)
    except UserError:
        pytest.skip("no usable GPU / CuPy")
    a, _ = run_steps(numpy_backend(), "GAIT", 0.1)
    b, _ = run_steps(gpu, "GAIT", 0.1)
    for l in range(a.L):
        np.testing.assert_allclose(gpu.to_host(b.W[l]), a.W[l], rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------- training loop
def toy_splits(bk, n=32, n_train=600, n_test=200, C=4, seed=0):
    """Gaussian blobs in [0, 1]^n, one per class."""
    rng = np.random.default_rng(seed)
    centres = rng.random((C, n))
    y = rng.integers(0, C, n_train + n_test)
    x = np.clip(centres[y] + 0.25 * rng.normal(size=(len(y), n)), 0, 1)
    eye = np.eye(C)
    return {"train": Split(bk.asarray(x[:n_train]), bk.asarray(eye[y[:n_train]]), y[:n_train]),
            "test": Split(bk.asarray(x[n_train:]), bk.asarray(eye[y[n_train:]]), y[n_train:])}


def toy_trainer(bk, alg="GAIT", lam=0.1, lr=1e-3, epochs=2, run=None, on_batch=None, **sched):
    net = InvertibleNet.square(bk, 32, 2, seed=1)
    rule = InvertibleRule(alg, lam)
    opt = Adam(bk, net.params(), lr, **ADAM)
    schedule = Schedule(epochs, 20, 30, **{"eval_every": 10, **sched})
    return GaitTrainer(bk, net, rule, opt, toy_splits(bk), schedule, run=run, log=None,
                       progress=False, on_batch=on_batch)


@pytest.mark.parametrize("alg", ["BP", "GAIT", "TP"])
def test_it_learns(alg):
    tr = toy_trainer(numpy_backend(), alg, lam=1.0 if alg == "TP" else 0.1, lr=1e-3, epochs=3)
    summary = tr.fit()
    assert summary["acc_test_init"] < 0.5
    assert summary["acc_test_last"] > 0.9, summary


class Interrupt:
    def __init__(self, epoch, b):
        self.at = (epoch, b)

    def __call__(self, epoch, b):
        if (epoch, b) == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize("checkpoint_every", [0, 7])
def test_interrupted_run_resumes_exactly(tmp_path, checkpoint_every):
    bk = numpy_backend()
    whole = RunDir(tmp_path / "whole")
    whole.create({"config": {}})
    toy_trainer(bk, run=whole, checkpoint_every=checkpoint_every).fit()
    cut = RunDir(tmp_path / "cut")
    cut.create({"config": {}})
    with pytest.raises(KeyboardInterrupt):
        toy_trainer(bk, run=cut, on_batch=Interrupt(2, 16), checkpoint_every=checkpoint_every).fit()
    assert json.loads(cut.run_json.read_text())["status"] == "interrupted"
    tr = toy_trainer(bk, run=cut, checkpoint_every=checkpoint_every)
    assert tr.resume() and tr.updates == (44 if checkpoint_every else 30)
    tr.fit()
    a, b = load_arrays(whole.checkpoint), load_arrays(cut.checkpoint)
    for key in a:
        if key.startswith(("net.", "opt.", "points.")):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert whole.metrics_csv.read_text() == cut.metrics_csv.read_text()
    curve = np.loadtxt(cut.path / "test_acc.txt")
    assert curve.shape == (1 + 2 * 2,)                          # init + batches 10, 20 per epoch
    assert (cut.path / "2Lweights.npy").exists()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_diverging_run_stops_with_numerical_error(tmp_path):
    run = RunDir(tmp_path / "r")
    run.create({"config": {}})
    tr = toy_trainer(numpy_backend(), "BP", lam=0.0, run=run)
    tr.net.W[0][0, 0] = np.inf
    with pytest.raises(NumericalError):
        tr.fit()
    assert json.loads(run.run_json.read_text())["status"] == "failed"
