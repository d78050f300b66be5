r"""Optimisers and gradient clipping, as explicit update equations.

Parameters and gradients come as per-layer lists ``[[W_1, b_1], [W_2, b_2], ...]``; a layer's
gradient may be ``None`` (the rule leaves it alone). Learning rate and (for Adam) epsilon may be a
single number or one per layer, as in the DFC code. Weight decay is coupled L2 (PyTorch's
``weight_decay``): :math:`g \leftarrow g + \lambda p` before the update.

SGD with momentum :math:`\mu` (PyTorch's form, dampening 0):

.. math:: m \leftarrow \mu m + g, \qquad p \leftarrow p - \eta\, m

Adam (Kingma & Ba 2015), see :mod:`simkit.kernels.adam` for the fused step:

.. math:: m \leftarrow \beta_1 m + (1-\beta_1) g,\quad v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
          p \leftarrow p - \frac{\eta}{1-\beta_1^t}\frac{m}{\sqrt{v/(1-\beta_2^t)}+\epsilon}

RMSprop (Tieleman & Hinton 2012, PyTorch's form):

.. math:: v \leftarrow \alpha v + (1-\alpha) g^2, \qquad p \leftarrow p - \eta\,\frac{g}{\sqrt{v}+\epsilon}

Clipping rescales a group of gradients whose joint L2 norm exceeds ``max_norm``:
:math:`g \leftarrow g \cdot \min(1, c/(\lVert g\rVert + 10^{-6}))` (PyTorch's
``clip_grad_norm_``), either for each layer's ``[W, b]`` separately (``per_layer``, DFC's
``--clip_grad_norm``) or for all layers together (``global``).
"""
from __future__ import annotations

import math

import numpy as np

from simkit.errors import UserError
from simkit.kernels.adam import ADAM

OPTIMIZERS = ("sgd", "adam", "rmsprop")


def _per_layer(value, n_layers: int, what: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != n_layers:
            raise UserError(f"{what} has {len(value)} values but the network has {n_layers} "
                            "layers; give one value or one per layer")
        return [float(v) for v in value]
    return [float(value)] * n_layers


class Optimizer:
    """Base class: per-layer hyper-parameters and per-tensor state buffers."""

    buffers: tuple = ()

    def __init__(self, bk, params, lr, weight_decay=0.0):
        self.bk = bk
        self.lr = _per_layer(lr, len(params), "lr")
        self.weight_decay = float(weight_decay)
        self.t = 0
        self.state = {name: [[bk.xp.zeros_like(p) for p in layer] for layer in params]
                      for name in self.buffers}

    def step(self, params, grads):
        """Apply one update in place; ``grads`` has the per-layer layout of ``params``."""
        self.t += 1
        for l, (layer, g_layer) in enumerate(zip(params, grads)):
            if g_layer is None:
                continue
            for i, (p, g) in enumerate(zip(layer, g_layer)):
                self.update(l, i, p, g)

    def state_dict(self) -> dict:
        out = {"t": np.asarray(self.t)}
        for name, layers in self.state.items():
            for l, layer in enumerate(layers):
                for i, buf in enumerate(layer):
                    out[f"{name}_{l}_{i}"] = self.bk.to_host(buf)
        return out

    def load_state_dict(self, state: dict):
        self.t = int(state["t"])
        for name, layers in self.state.items():
            for l, layer in enumerate(layers):
                for i, buf in enumerate(layer):
                    buf[...] = self.bk.asarray(state[f"{name}_{l}_{i}"])


class SGD(Optimizer):
    buffers = ("momentum",)

    def __init__(self, bk, params, lr, momentum=0.0, weight_decay=0.0):
        super().__init__(bk, params, lr, weight_decay)
        self.momentum = float(momentum)

    def update(self, l, i, p, g):
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            m = self.state["momentum"][l][i]
            m *= self.momentum
            m += g                                   # m <- mu m + g
            g = m
        p -= self.lr[l] * g                          # p <- p - eta m


class Adam(Optimizer):
    buffers = ("m", "v")

    def __init__(self, bk, params, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                 bias_correction=True):
        super().__init__(bk, params, lr, weight_decay)
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.eps = _per_layer(eps, len(params), "adam epsilon")
        self.bias_correction = bias_correction
        self._step = bk.kernel(ADAM)

    def update(self, l, i, p, g):
        c1 = 1.0 - self.beta1 ** self.t if self.bias_correction else 1.0
        c2 = 1.0 - self.beta2 ** self.t if self.bias_correction else 1.0
        self._step(g, self.lr[l], self.beta1, self.beta2, self.eps[l], c1, c2, self.weight_decay,
                   p, self.state["m"][l][i], self.state["v"][l][i])


class RMSprop(Optimizer):
    buffers = ("v",)

    def __init__(self, bk, params, lr, alpha=0.99, eps=1e-8, weight_decay=0.0):
        super().__init__(bk, params, lr, weight_decay)
        self.alpha, self.eps = float(alpha), float(eps)

    def update(self, l, i, p, g):
        if self.weight_decay:
            g = g + self.weight_decay * p
        v = self.state["v"][l][i]
        v *= self.alpha
        v += (1.0 - self.alpha) * g * g              # v <- alpha v + (1-alpha) g^2
        p -= self.lr[l] * g / (self.bk.xp.sqrt(v) + self.eps)


def make_optimizer(name: str, bk, params, **kw) -> Optimizer:
    """Build ``sgd``, ``adam`` or ``rmsprop`` (case-insensitive) with keyword hyper-parameters."""
    cls = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop}.get(name.lower())
    if cls is None:
        raise UserError(f"unknown optimizer {name!r}; allowed: SGD, Adam, RMSprop")
    return cls(bk, params, **kw)


def _scale_group(xp, group, max_norm):
    norm = math.sqrt(sum(float(xp.vdot(g.ravel(), g.ravel())) for g in group))
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        for g in group:
            g *= coef
    return norm


def clip_grads(bk, grads, max_norm, mode="per_layer"):
    """Clip in place (see module docstring); ``max_norm <= 0`` does nothing. Returns the norms."""
    if max_norm is None or max_norm <= 0:
        return []
    layers = [g for g in grads if g is not None]
    if mode == "per_layer":
        return [_scale_group(bk.xp, g, max_norm) for g in layers]
    if mode == "global":
        return [_scale_group(bk.xp, [t for g in layers for t in g], max_norm)]
    raise UserError(f"unknown clipping mode {mode!r}; allowed: per_layer, global")
