"""Bidirectional feedback (BDFA, BFA) and bdfa-torch's step: the feedback objective's gradient,
its ascent, limits, the Torch7 SGD emulation."""
import numpy as np
import pytest
from fa_helpers import make_net, one_batch, teacher_data, train

from simkit.errors import UserError
from simkit.nn import get_loss, soft_targets
from simkit.optim import SGD
from simkit.rules import make_rule
from simkit.rules.bidirectional import (
    BdfaTorch,
    feedback_gradient,
    feedback_objective,
    renorm_,
    soft_labels,
)
from simkit.rules.bp import Backprop

from helpers import finite_difference, numpy_backend


# ------------------------------------------------------------------------------ bidirectional
def test_feedback_gradient_matches_finite_difference_of_its_objective():
    rng = np.random.default_rng(0)
    S, B, h = rng.normal(size=(6, 4)), rng.normal(size=(4, 5)) * 0.3, np.tanh(rng.normal(size=(6, 5)))
    fd = finite_difference(lambda: feedback_objective(np, S, B, h), B)
    np.testing.assert_allclose(feedback_gradient(np, S, B, h), fd, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("rule_name", ["bdfa", "bfa"])
def test_bidirectional_feedback_step_ascends_its_objective(rule_name):
    bk = numpy_backend()
    net, cache, dL_dy, t = one_batch(bk, [9, 8, 7, 4])
    rule = make_rule(rule_name, feedback_lr=1e-3)
    rule.setup(net, np.random.default_rng(1))
    l = 1 if rule_name == "bdfa" else 2           # top hidden layer's B / the output layer's B
    S = soft_labels(np, cache.a[-1], t)
    h = cache.h[2]
    B0 = rule.B[l].copy()
    fd = finite_difference(lambda: feedback_objective(np, S, rule.B[l], h), rule.B[l])
    J0 = feedback_objective(np, S, B0, h)
    rule.grads(net, cache, dL_dy, t=t, loss=get_loss("bce"))
    np.testing.assert_allclose(rule.B[l] - B0, 1e-3 * fd, rtol=1e-6, atol=1e-12)
    assert feedback_objective(np, S, rule.B[l], h) > J0


def test_bdfa_with_zero_feedback_rate_is_dfa():
    bk = numpy_backend()
    net, cache, dL_dy, t = one_batch(bk, [9, 8, 7, 4])
    bdfa, dfa = make_rule("bdfa", feedback_lr=0.0), make_rule("dfa")
    bdfa.setup(net, np.random.default_rng(1))
    dfa.setup(net, np.random.default_rng(2))
    dfa.B = [b.copy() for b in bdfa.B]
    for a, b in zip(bdfa.grads(net, cache, dL_dy, t=t), dfa.grads(net, cache, dL_dy, t=t)):
        np.testing.assert_array_equal(a[0], b[0])


def test_cascade_bug_scales_lower_layers_by_powers_of_a_quarter():
    bk = numpy_backend()
    net, cache, dL_dy, t = one_batch(bk, [9, 8, 7, 4])
    deltas = []
    for bug in (False, True):
        rule = make_rule("bdfa", cascade_bug=bug)
        rule.setup(net, np.random.default_rng(1))
        B0 = [b.copy() for b in rule.B]
        rule.grads(net, cache, dL_dy, t=t, loss=get_loss("bce"))
        deltas.append([b - b0 for b, b0 in zip(rule.B, B0)])
    np.testing.assert_array_equal(deltas[0][1], deltas[1][1])        # top: 0.25 either way
    S = soft_labels(np, cache.a[-1], t, 0.25 ** 2)
    np.testing.assert_allclose(deltas[1][0], 5e-5 * feedback_gradient(np, S, B0[0], cache.h[1]), rtol=1e-8)


# ------------------------------------------------------------------------------ bdfa-torch step
def test_bdfa_torch_bce_gradient_is_not_batch_averaged():
    bk = numpy_backend()
    net, cache, dL_dy, t = one_batch(bk, [9, 8, 4])
    rule = BdfaTorch(gradient="bp")
    rule.setup(net, np.random.default_rng(0))
    g = rule.grads(net, cache, dL_dy, t=t, loss=get_loss("bce"))
    np.testing.assert_allclose(g[-1][1], (cache.y - t).sum(axis=0), rtol=1e-12)   # sum of sigma(z)-t


def test_bdfa_torch_sgd_emulates_torch7_dampened_momentum_and_weight_decay():
    """Torch7 optim.sgd: g += wd p; v = g (first step) else mu v + (1-mu) g; p -= lr v."""
    bk = numpy_backend()
    x, labels = teacher_data(n=40)
    mu, wd, lr = 0.9, 1e-3, 1e-3
    net_a, net_b = make_net(bk, [12, 6, 3]), make_net(bk, [12, 6, 3])
    rule_a = BdfaTorch(gradient="bp", momentum=mu, weight_decay=wd)
    rule_a.setup(net_a, np.random.default_rng(0))
    train(bk, net_a, rule_a, x, labels, epochs=2, opt=SGD(bk, net_a.params(), lr=lr, momentum=mu))
    v, loss_fn, T = None, get_loss("bce"), soft_targets(labels, 3)
    for epoch in (1, 2):
        order = np.random.default_rng([0, epoch]).permutation(40)
        for i in range(0, 40, 20):
            idx = order[i:i + 20]
            cache = net_b.forward(x[idx])
            dL = loss_fn.grad(np, cache.y, T[idx]) * T[idx].size
            g = [[gi + wd * p for gi, p in zip(gl, pl)]
                 for gl, pl in zip(Backprop().grads(net_b, cache, dL), net_b.params())]
            v = g if v is None else [[mu * vi + (1 - mu) * gi for vi, gi in zip(vl, gl)]
                                     for vl, gl in zip(v, g)]
            for pl, vl in zip(net_b.params(), v):
                for p, vi in zip(pl, vl):
                    p -= lr * vi
    for a, b in zip(net_a.W, net_b.W):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_renorm_caps_row_and_column_norms():
    W = np.random.default_rng(0).normal(size=(5, 4)) * 3
    renorm_(np, W, 1.0, axis=1)
    assert np.linalg.norm(W, axis=1).max() <= 1.0 + 1e-9
    renorm_(np, W, 0.5, axis=0)
    assert np.linalg.norm(W, axis=0).max() <= 0.5 + 1e-9


def test_bdfa_torch_rejects_an_unknown_gradient():
    with pytest.raises(UserError, match="allowed: bp, fa"):
        BdfaTorch(gradient="tp")
