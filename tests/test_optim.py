"""Optimiser steps and clipping against values computed by hand."""
import math

import numpy as np
import pytest
from helpers import numba_backend, numpy_backend

from simkit.errors import UserError
from simkit.optim import SGD, Adam, RMSprop, clip_grads, make_optimizer

BACKENDS = [numpy_backend, numba_backend]


def one_param(value):
    return [[np.array([value], dtype=float)]]


@pytest.mark.parametrize("make_bk", BACKENDS)
def test_adam_first_two_steps_by_hand(make_bk):
    bk = make_bk()
    p = one_param(1.0)
    opt = Adam(bk, p, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8)
    opt.step(p, [[np.array([0.5])]])
    # t=1: m=0.05, v=0.00025; mhat=0.5, vhat=0.25 -> step = 0.1*0.5/(0.5+1e-8)
    assert p[0][0][0] == pytest.approx(1.0 - 0.1 * 0.5 / (0.5 + 1e-8), abs=1e-15)
    opt.step(p, [[np.array([-1.0])]])
    m = 0.9 * 0.05 + 0.1 * -1.0
    v = 0.999 * 0.00025 + 0.001 * 1.0
    expect = 1.0 - 0.1 * 0.5 / (0.5 + 1e-8) - 0.1 / (1 - 0.81) * m / (math.sqrt(v) / math.sqrt(1 - 0.999 ** 2) + 1e-8)
    assert p[0][0][0] == pytest.approx(expect, abs=1e-14)


def test_adam_without_bias_correction_and_with_weight_decay():
    bk = numpy_backend()
    p = one_param(2.0)
    opt = Adam(bk, p, lr=0.1, beta1=0.5, beta2=0.5, eps=0.0, weight_decay=0.25, bias_correction=False)
    opt.step(p, [[np.array([0.5])]])
    g = 0.5 + 0.25 * 2.0                       # coupled L2
    m, v = 0.5 * g, 0.5 * g * g
    assert p[0][0][0] == pytest.approx(2.0 - 0.1 * m / math.sqrt(v))


def test_sgd_momentum_by_hand():
    bk = numpy_backend()
    p = one_param(1.0)
    opt = SGD(bk, p, lr=0.1, momentum=0.9)
    opt.step(p, [[np.array([1.0])]])           # m = 1, p = 0.9
    opt.step(p, [[np.array([1.0])]])           # m = 1.9, p = 0.71
    assert p[0][0][0] == pytest.approx(0.71)


def test_rmsprop_by_hand():
    bk = numpy_backend()
    p = one_param(1.0)
    opt = RMSprop(bk, p, lr=0.01, alpha=0.9, eps=0.0)
    opt.step(p, [[np.array([2.0])]])           # v = 0.4, step = 0.01*2/sqrt(0.4)
    assert p[0][0][0] == pytest.approx(1.0 - 0.02 / math.sqrt(0.4))


def test_per_layer_learning_rates_and_skipped_layers():
    bk = numpy_backend()
    p = [[np.array([1.0])], [np.array([1.0])], [np.array([1.0])]]
    opt = SGD(bk, p, lr=[0.1, 0.2, 0.3])
    opt.step(p, [[np.array([1.0])], None, [np.array([1.0])]])
    assert [x[0][0] for x in p] == pytest.approx([0.9, 1.0, 0.7])


def test_wrong_number_of_learning_rates_is_a_user_error():
    with pytest.raises(UserError, match="one value or one per layer"):
        SGD(numpy_backend(), [[np.zeros(1)]] * 3, lr=[0.1, 0.2])


def test_unknown_optimizer_is_a_user_error():
    with pytest.raises(UserError, match="allowed: SGD, Adam, RMSprop"):
        make_optimizer("adagrad", numpy_backend(), [[np.zeros(1)]], lr=0.1)


def test_per_layer_clipping_rescales_each_layer_separately():
    bk = numpy_backend()
    grads = [[np.array([3.0, 4.0]), np.array([0.0])], [np.array([0.3, 0.4])]]
    norms = clip_grads(bk, grads, 1.0, "per_layer")
    assert norms == pytest.approx([5.0, 0.5])
    np.testing.assert_allclose(grads[0][0], [3 / (5 + 1e-6), 4 / (5 + 1e-6)])
    np.testing.assert_allclose(grads[1][0], [0.3, 0.4])          # below the limit: untouched


def test_global_clipping_uses_the_joint_norm():
    bk = numpy_backend()
    grads = [[np.array([3.0])], [np.array([4.0])]]
    clip_grads(bk, grads, 1.0, "global")
    np.testing.assert_allclose([grads[0][0][0], grads[1][0][0]], [3 / (5 + 1e-6), 4 / (5 + 1e-6)])


def test_optimizer_state_round_trips():
    bk = numpy_backend()
    p = one_param(1.0)
    opt = Adam(bk, p, lr=0.1)
    opt.step(p, [[np.array([0.5])]])
    state = opt.state_dict()
    p2 = one_param(float(p[0][0][0]))
    opt2 = Adam(bk, p2, lr=0.1)
    opt2.load_state_dict(state)
    opt.step(p, [[np.array([0.3])]])
    opt2.step(p2, [[np.array([0.3])]])
    assert p[0][0][0] == p2[0][0][0]
