r"""A dense multilayer perceptron that keeps its forward state for the learning rules.

Layers are numbered :math:`l = 1..L` in the papers and ``0..L-1`` in the lists here
(``W[0]`` is the paper's :math:`W_1`). With :math:`h_0 = x`, a minibatch stored as rows:

.. math::

    a_l = h_{l-1} W_l^\top + b_l, \qquad h_l = \phi_l(a_l), \qquad l = 1..L

``W[l]`` has shape ``(n_l, n_{l-1})`` (PyTorch's layout), ``b[l]`` shape ``(n_l,)``; activities
are ``(B, n_l)``. :meth:`MLP.forward` returns a :class:`Cache` holding every :math:`a_l` and
:math:`h_l`, which is what a learning rule turns into weight updates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simkit.errors import UserError
from simkit.nn.activations import get_activation
from simkit.nn.init import init_weights


@dataclass
class Cache:
    """Forward state of one minibatch: ``h[0] = x``, ``a[l+1], h[l+1]`` for layer ``l``."""

    a: list   # a[0] is None; a[l] pre-activations (B, n_l)
    h: list   # h[0] = x; h[l] = phi_l(a[l])

    @property
    def y(self):
        """The network output :math:`h_L`."""
        return self.h[-1]


class MLP:
    """Dense network ``sizes[0] -> ... -> sizes[-1]``.

    Parameters
    ----------
    bk : simkit.backend.Backend
    sizes : list of int
        Layer widths including input and output, e.g. ``[784, 256, 256, 256, 10]``.
    hidden_activation, output_activation : str
        Names from :mod:`simkit.nn.activations`.
    rng : numpy.random.Generator
        Host stream the weights are drawn from.
    init : str
        Weight initialiser (:mod:`simkit.nn.init`); biases start at zero unless
        ``bias_init='fan_in'`` (PyTorch's ``Linear`` default, :math:`\\mathcal U(\\pm 1/\\sqrt{n_{l-1}})`).
    bias : bool
        Whether layers have biases.
    """

    def __init__(self, bk, sizes, hidden_activation="tanh", output_activation="linear", *,
                 rng, init="xavier_normal", bias=True, bias_init="zeros", init_kw=None):
        if len(sizes) < 2 or any(int(n) < 1 for n in sizes):
            raise UserError(f"impossible layer sizes {list(sizes)}: need at least an input and an "
                            "output size, all positive")
        self.bk, self.sizes = bk, [int(n) for n in sizes]
        L = len(sizes) - 1
        self.phi = [get_activation(hidden_activation)] * (L - 1) + [get_activation(output_activation)]
        self.W, self.b = [], []
        for l in range(L):
            shape = (self.sizes[l + 1], self.sizes[l])
            self.W.append(bk.asarray(init_weights(rng, shape, init, **(init_kw or {}))))
            if not bias:
                self.b.append(None)
            elif bias_init == "fan_in":
                bound = 1.0 / np.sqrt(shape[1])
                self.b.append(bk.asarray(rng.uniform(-bound, bound, size=shape[0])))
            else:
                self.b.append(bk.asarray(np.zeros(shape[0])))

    @property
    def L(self) -> int:
        """Number of layers with weights."""
        return len(self.W)

    def layer(self, l, h_prev):
        """One layer: returns ``(a_l, h_l)`` for input rows ``h_prev``."""
        a = h_prev @ self.W[l].T
        if self.b[l] is not None:
            a += self.b[l]
        return a, self.phi[l].f(self.bk.xp, a)

    def forward(self, x) -> Cache:
        """Forward pass keeping every layer's state (Eq. above)."""
        cache = Cache(a=[None], h=[x])
        for l in range(self.L):
            a, h = self.layer(l, cache.h[-1])
            cache.a.append(a)
            cache.h.append(h)
        return cache

    def back(self, l, delta, W=None):
        r""":math:`\delta_l W_l`: the error at layer ``l``'s pre-activation (paper numbering
        ``l = 1..L``, as the cache) carried to its input by :math:`W_l^\top` (``W[l-1]`` instead,
        if given: feedback alignment's :math:`B`)."""
        return delta @ (self.W if W is None else W)[l - 1]

    def times_dphi(self, l, cache: Cache, e):
        r""":math:`e \odot \phi_l'(a_l)` (paper numbering; no product for a linear layer)."""
        phi = self.phi[l - 1]
        if phi.name == "linear":
            return e
        return e * phi.df(self.bk.xp, cache.a[l], cache.h[l])

    def predict(self, x):
        """Output :math:`h_L` only, without keeping the intermediate state."""
        h = x
        for l in range(self.L):
            h = self.layer(l, h)[1]
        return h

    def params(self) -> list:
        """Per-layer parameter lists ``[[W_1, b_1], ...]`` (biases omitted when absent)."""
        return [[W] if b is None else [W, b] for W, b in zip(self.W, self.b)]

    def state_dict(self) -> dict:
        """Host copies of the parameters, keyed ``W1, b1, ...`` (the papers' numbering)."""
        out = {}
        for l in range(self.L):
            out[f"W{l + 1}"] = self.bk.to_host(self.W[l])
            if self.b[l] is not None:
                out[f"b{l + 1}"] = self.bk.to_host(self.b[l])
        return out

    def load_state_dict(self, state: dict):
        """Copy parameters from :meth:`state_dict` output (checks shapes)."""
        for l in range(self.L):
            for name, arr in (("W", self.W), ("b", self.b)):
                key = f"{name}{l + 1}"
                if arr[l] is None:
                    continue
                if key not in state or tuple(state[key].shape) != tuple(arr[l].shape):
                    raise UserError(f"checkpoint does not fit this network: {key} missing or of "
                                    f"another shape (expected {tuple(arr[l].shape)})")
                arr[l][...] = self.bk.asarray(state[key])
