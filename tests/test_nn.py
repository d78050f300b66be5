"""Activations, losses, initialisers and backprop: derivatives against finite differences."""
import numpy as np
import pytest

from simkit.errors import UserError
from simkit.nn import MLP, get_activation, get_loss, soft_targets
from simkit.nn import init as inits
from simkit.nn.activations import ACTIVATIONS, df_from_output
from simkit.nn.losses import log_softmax, softmax
from simkit.rules.bp import Backprop
from simkit.rules.common import output_target

from helpers import finite_difference, numpy_backend

ACTS = list(ACTIVATIONS) + ["leaky_relu:0.1"]


@pytest.mark.parametrize("name", ACTS)
def test_activation_derivative_matches_finite_difference(name):
    phi = get_activation(name)
    a = np.linspace(-2.3, 2.1, 17)            # avoids a == 0 where relu has a kink
    h = phi.f(np, a)
    eps = 1e-6
    fd = (phi.f(np, a + eps) - phi.f(np, a - eps)) / (2 * eps)
    np.testing.assert_allclose(phi.df(np, a, h), fd, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", ACTS)
def test_derivative_from_output_alone(name):
    """Networks that keep no pre-activation (the online DI models) read phi' from h."""
    phi = get_activation(name)
    a = np.linspace(-2.3, 2.1, 17)
    h = phi.f(np, a)
    np.testing.assert_array_equal(df_from_output(np, phi, h), phi.df(np, a, h))


def test_softmax_rows_and_log_softmax():
    z = np.random.default_rng(0).normal(size=(5, 4)) * 30.0
    p = softmax(np, z)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(np.log(p), log_softmax(np, z), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", [n for n in ACTS if n != "relu"])
def test_activation_inverse(name):
    phi = get_activation(name)
    a = np.linspace(-3, 3, 13)
    np.testing.assert_allclose(phi.inv(np, phi.f(np, a)), a, rtol=1e-9, atol=1e-12)


def test_sigmoid_is_stable_for_large_inputs():
    phi = get_activation("sigmoid")
    y = phi.f(np, np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_allclose(y, [0.0, 0.5, 1.0])


def test_unknown_activation_names_the_allowed_ones():
    with pytest.raises(UserError, match="allowed: linear, tanh"):
        get_activation("swish")


@pytest.mark.parametrize("loss_name", ["ce", "mse", "bce"])
def test_loss_gradient_matches_finite_difference(loss_name):
    rng = np.random.default_rng(0)
    loss = get_loss(loss_name)
    y = rng.uniform(0.1, 0.9, size=(4, 3)) if loss_name == "bce" else rng.normal(size=(4, 3))
    t = soft_targets([0, 2, 1, 2], 3, 0.9) if loss_name != "mse" else rng.normal(size=(4, 3))
    fd = finite_difference(lambda: loss.value(np, y, t), y)
    np.testing.assert_allclose(loss.grad(np, y, t), fd, rtol=1e-6, atol=1e-9)


def test_cross_entropy_of_known_values():
    z = np.array([[0.0, np.log(3.0)]])          # softmax = [1/4, 3/4]
    t = np.array([[0.0, 1.0]])
    loss = get_loss("ce")
    assert loss.value(np, z, t) == pytest.approx(-np.log(0.75))
    np.testing.assert_allclose(loss.grad(np, z, t), [[0.25, -0.25]])


def test_soft_targets_follow_dfc_convention():
    t = soft_targets(np.array([1, 0]), 10, 0.99)
    assert t[0, 1] == pytest.approx(0.99) and t[0, 0] == pytest.approx(0.01 / 9)
    np.testing.assert_allclose(t.sum(axis=1), 1.0)


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "relu", "leaky_relu", "linear"])
@pytest.mark.parametrize("loss_name", ["ce", "mse", "bce"])
def test_backprop_matches_finite_differences(act, loss_name):
    bk = numpy_backend()
    rng = np.random.default_rng(1)
    loss = get_loss(loss_name)
    net = MLP(bk, [5, 4, 3, 3], act, loss.output_activation, rng=rng, bias_init="fan_in")
    x = rng.normal(size=(6, 5))
    t = soft_targets(rng.integers(0, 3, 6), 3, 0.8) if loss_name != "mse" else rng.normal(size=(6, 3))
    cache = net.forward(x)
    grads = Backprop().grads(net, cache, loss.grad(np, cache.y, t))

    def value():
        return loss.value(np, net.predict(x), t)
    for l in range(net.L):
        np.testing.assert_allclose(grads[l][0], finite_difference(value, net.W[l]), rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(grads[l][1], finite_difference(value, net.b[l]), rtol=1e-5, atol=1e-8)


def test_backprop_can_leave_layers_alone():
    bk = numpy_backend()
    net = MLP(bk, [3, 4, 2], rng=np.random.default_rng(0))
    cache = net.forward(np.ones((2, 3)))
    grads = Backprop(layers=[-1]).grads(net, cache, np.ones((2, 2)))
    assert grads[0] is None and grads[1] is not None


def test_xavier_normal_has_the_glorot_variance():
    W = inits.xavier_normal(np.random.default_rng(0), (300, 500))
    assert W.std() == pytest.approx(np.sqrt(2 / 800), rel=0.02)


def test_kaiming_uniform_with_a_sqrt5_has_bound_one_over_sqrt_fan_in():
    W = inits.kaiming_uniform(np.random.default_rng(0), (3, 5), a=np.sqrt(5))
    assert np.abs(W).max() <= 1 / np.sqrt(5)
    W = inits.kaiming_uniform(np.random.default_rng(0), (200, 5), a=np.sqrt(5))
    assert np.abs(W).max() > 0.95 / np.sqrt(5)


@pytest.mark.parametrize("shape", [(5, 5), (3, 7), (7, 3)])
def test_orthogonal_has_orthonormal_rows_or_columns(shape):
    W = inits.orthogonal(np.random.default_rng(0), shape)
    k = min(shape)
    G = W @ W.T if shape[0] <= shape[1] else W.T @ W
    np.testing.assert_allclose(G, np.eye(k), atol=1e-12)


def test_identity_repeat_pm_tiles_plus_minus_identity():
    B = inits.identity_repeat_pm(None, (2, 5))
    np.testing.assert_array_equal(B, [[1, 0, -1, 0, 1], [0, 1, 0, -1, 0]])


def test_discrete_uniform_draws_only_the_given_values():
    B = inits.discrete_uniform(np.random.default_rng(0), (30, 40), values=(-1, 0, 1), scalar=2.0)
    assert set(np.unique(B)) == {-2.0, 0.0, 2.0}


def test_impossible_layer_sizes_are_a_user_error():
    with pytest.raises(UserError, match="impossible layer sizes"):
        MLP(numpy_backend(), [784, 0, 10], rng=np.random.default_rng(0))


def test_angle_and_norm_ratio():
    from simkit.metrics import angle_deg, norm_ratio
    assert angle_deg(np, np.array([1.0, 0.0]), np.array([1.0, 1.0])) == pytest.approx(45.0)
    assert angle_deg(np, np.array([1.0, 2.0]), np.array([-2.0, -4.0])) == pytest.approx(180.0)
    assert angle_deg(np, np.zeros(2), np.ones(2)) == 90.0
    assert norm_ratio(np, np.array([3.0, 4.0]), np.array([0.0, 1.0])) == pytest.approx(5.0)


def test_invertible_net_and_mlp_share_the_layer_convention():
    """Same W (out, in), same rows: same forward pass and the same BP gradients (one bp_deltas)."""
    from simkit.nn.invertible import InvertibleNet
    from simkit.rules.gait import InvertibleRule
    bk, rng = numpy_backend(), np.random.default_rng(2)
    mlp = MLP(bk, [6, 6, 6], "leaky_relu:0.1", "leaky_relu:0.1", rng=rng, bias_init="fan_in")
    inv = InvertibleNet(bk, [6, 6, 6], mlp.W, mlp.b)
    x, onehot = rng.normal(size=(5, 6)), np.eye(3)[[0, 2, 1, 1, 0]]
    cache, icache = mlp.forward(x), inv.forward(x)
    np.testing.assert_array_equal(cache.y, icache.y)
    T = output_target(np, cache.y, onehot)
    g_mlp = Backprop().grads(mlp, cache, (cache.y - T) / x.shape[0])
    g_inv = InvertibleRule("BP").grads(inv, icache, t=T)
    for l in range(2):
        np.testing.assert_allclose(g_inv[l][0], g_mlp[l][0], rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(g_inv[l][1], g_mlp[l][1], rtol=1e-13, atol=1e-15)


def test_output_target_label_or_loss_step():
    y = np.arange(12.0).reshape(3, 4)
    T = output_target(np, y, np.eye(3)[:, :2])
    np.testing.assert_array_equal(T[:, :2], np.eye(3)[:, :2])
    np.testing.assert_array_equal(T[:, 2:], y[:, 2:])            # zero error beyond the label
    g = np.ones_like(y)
    np.testing.assert_array_equal(output_target(np, y, None, 0.5, g), y - 1.5)   # y - step B dL/dy
