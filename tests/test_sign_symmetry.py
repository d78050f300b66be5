"""Sign symmetry (Liao, Leibo & Poggio 2016): B = sign(W^T) read off the forward weights at every
step; BP exactly when every weight above the first layer is +-1; it learns."""
import numpy as np
import pytest

from simkit.metrics import angle_deg
from simkit.rules import make_rule
from simkit.rules.bp import Backprop

from helpers import numba_backend, numpy_backend
from test_fa_family import accuracy, make_net, one_batch, teacher_data, train


def test_feedback_is_the_sign_of_the_current_forward_weights_at_every_step():
    bk = numpy_backend()
    x, labels = teacher_data(n=200)
    net = make_net(bk, [12, 9, 8, 3])
    rule = make_rule("sign_symmetry")
    rule.setup(net, np.random.default_rng(0))
    seen = []

    def check(epoch, idx, cache, rule):        # before the optimiser's step: B from this W
        for l in range(1, net.L):
            np.testing.assert_array_equal(rule.B[l], np.sign(net.W[l]))
        seen.append([b.copy() for b in rule.B[1:]])
    train(bk, net, rule, x, labels, epochs=2, lr=3e-2, on_step=check)
    assert rule.B[0] is None and len(seen) == 20
    assert any(not np.array_equal(a, b) for a, b in zip(seen[0], seen[-1])), \
        "no weight changed sign: the test cannot tell a B drawn once from one read every step"


def test_with_weights_of_plus_minus_one_it_is_bp_exactly():
    bk = numpy_backend()
    net, cache, dL_dy, _ = one_batch(bk, [9, 8, 7, 6, 4])
    for l in range(1, net.L):                    # W above the first layer: entries +-1
        net.W[l][...] = np.where(net.W[l] >= 0, 1.0, -1.0)
    cache = net.forward(cache.h[0])
    bp = Backprop().grads(net, cache, dL_dy)
    for g_ss, g_bp in zip(make_rule("sign_symmetry").grads(net, cache, dL_dy), bp):
        for a, b in zip(g_ss, g_bp):
            np.testing.assert_array_equal(a, b)


def test_update_is_within_90_degrees_of_bp_and_differs_from_it():
    bk = numpy_backend()
    net, cache, dL_dy, _ = one_batch(bk, [9, 8, 7, 6, 4])
    ss = make_rule("sign_symmetry").grads(net, cache, dL_dy)
    bp = Backprop().grads(net, cache, dL_dy)
    angles = [angle_deg(np, a[0], b[0]) for a, b in zip(ss, bp)]
    assert angles[-1] == pytest.approx(0.0, abs=1e-6)           # the output layer: BP's
    assert all(0.5 < a < 90.0 for a in angles[:-1]), angles


def test_nothing_is_drawn_or_stored_and_metrics_compare_w_with_its_sign():
    bk = numpy_backend()
    net, cache, dL_dy, _ = one_batch(bk, [9, 8, 7, 4])
    rule = make_rule("sign_symmetry")
    rng = np.random.default_rng(0)
    rule.setup(net, rng)
    assert rng.bit_generator.state == np.random.default_rng(0).bit_generator.state
    rule.grads(net, cache, dL_dy)
    assert rule.state_dict() == {}
    m = rule.epoch_metrics(net)
    assert set(m) == {1, 2, 3} and 0.0 < m[2]["angle_fb"] < 90.0
    assert m[3]["norm_ratio_fb"] == pytest.approx(np.linalg.norm(net.W[2]) / np.sqrt(net.W[2].size))


def test_numpy_and_numba_backends_agree():
    x, labels = teacher_data(n=60)
    out = []
    for bk in (numpy_backend(), numba_backend()):
        net = make_net(bk, [12, 9, 8, 3])
        train(bk, net, make_rule("sign_symmetry"), x, labels, epochs=2)
        out.append([bk.to_host(W) for W in net.W])
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


def test_it_learns_a_teacher_task():
    bk = numpy_backend()
    x, labels = teacher_data(n=600, seed=1)
    net = make_net(bk, [12, 32, 3])
    rule = make_rule("sign_symmetry")
    start = accuracy(net, x, labels)
    train(bk, net, rule, x, labels, epochs=6, lr=1e-2)
    assert accuracy(net, x, labels) > max(0.75, start + 0.25)


def test_simkit_train_runs_it(tmp_path):
    from simkit.cli import main
    rc = main(["train", "--rule", "sign_symmetry", "--hidden", "16", "--epochs", "1",
               "--max-batches", "5", "--backend", "numpy", "--quiet",
               "--out-dir", str(tmp_path / "r")])
    assert rc == 0 and (tmp_path / "r" / "checkpoint.npz").exists()
