"""Shared helpers of the feedback-alignment family's tests: networks, a teacher task, a loop."""
import math

import numpy as np

from simkit.nn import MLP, get_loss, soft_targets
from simkit.optim import Adam

LOSS_FOR = {"bce": "sigmoid", "ce": "linear", "mse": "linear"}


def make_net(bk, sizes, act="tanh", loss="bce", seed=0):
    return MLP(bk, sizes, act, LOSS_FOR[loss], rng=np.random.default_rng(seed),
               init="kaiming_uniform", init_kw={"a": math.sqrt(5)}, bias_init="fan_in")


def teacher_data(n=240, n_in=12, C=3, seed=0):
    """Labels of a random tanh teacher: learnable, not linearly trivial."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_in))
    y = np.tanh(x @ rng.normal(size=(n_in, 16))) @ rng.normal(size=(16, C))
    return x, y.argmax(axis=1)


def train(bk, net, rule, x, labels, *, epochs=1, bs=20, lr=1e-2, loss="bce", seed=0, opt=None,
          on_step=None):
    loss_fn = get_loss(loss)
    T = soft_targets(labels, net.sizes[-1])
    opt = opt or Adam(bk, net.params(), lr=lr)
    for epoch in range(1, epochs + 1):
        order = np.random.default_rng([seed, epoch]).permutation(len(x))
        for i in range(0, len(x), bs):
            idx = order[i:i + bs]
            xb, tb = bk.asarray(x[idx]), bk.asarray(T[idx])
            cache = net.forward(xb)
            dL_dy = loss_fn.grad(bk.xp, cache.y, tb)
            grads = rule.grads(net, cache, dL_dy, t=tb, loss=loss_fn, idx=idx, epoch=epoch)
            if on_step is not None:
                on_step(epoch, idx, cache, rule)
            opt.step(net.params(), grads)
    return opt


def accuracy(net, x, labels):
    return float((net.predict(net.bk.asarray(x)).argmax(axis=1) == labels).mean())


def one_batch(bk, sizes, act="tanh", loss="bce", seed=3):
    net = make_net(bk, sizes, act, loss)
    rng = np.random.default_rng(seed)
    x = bk.asarray(rng.normal(size=(7, sizes[0])))
    t = bk.asarray(soft_targets(rng.integers(0, sizes[-1], 7), sizes[-1]))
    cache = net.forward(x)
    return net, cache, get_loss(loss).grad(bk.xp, cache.y, t), t
