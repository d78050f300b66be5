r"""Backpropagation (Rumelhart, Hinton & Williams 1986), written out layer by layer.

The error at the output is the loss gradient through the output nonlinearity; each hidden
layer receives the next layer's error through the *transpose of the forward weights*:

.. math::

    \delta_L &= \frac{\partial L}{\partial h_L} \odot \phi_L'(a_L) \\
    \delta_{l} &= \left(\delta_{l+1} W_{l+1}\right) \odot \phi_l'(a_l), \qquad l = L-1, \dots, 1 \\
    \nabla W_l &= \delta_l^\top h_{l-1}, \qquad \nabla b_l = \textstyle\sum_n \delta_{l,n}

(rows are samples, so :math:`\delta_{l+1} W_{l+1}` is :math:`W_{l+1}^\top \delta_{l+1}` per
sample.) The biologically plausible rules in this package differ from this one only in *what
carries* :math:`\delta_{l+1}` back to layer :math:`l`: here it is :math:`W_{l+1}^\top` itself
(the "weight transport problem").

Symbols: ``W[l-1]`` (n_l, n_{l-1}), ``h[l]`` (B, n_l), ``a[l]`` (B, n_l), ``delta[l-1]`` (B, n_l).
The recursion runs on any network with :meth:`~simkit.nn.MLP.back` (the product with
:math:`W_{l+1}^\top`) and :meth:`~simkit.nn.MLP.times_dphi` (the product with :math:`\phi_l'`):
the dense MLP and the invertible networks of :mod:`simkit.nn.invertible`.
"""
from __future__ import annotations

from simkit.rules.common import grads_from_deltas, output_delta


def bp_deltas(net, cache, dL_dy, backward_weights=None) -> list:
    """Error signals :math:`\\delta_1..\\delta_L` (list index ``0..L-1``).

    ``backward_weights[l]`` replaces ``W[l]`` on the way back (None: BP's own weights); feedback
    alignment passes its random ``B`` here.
    """
    deltas = [None] * net.L
    deltas[-1] = output_delta(net, cache, dL_dy)                     # delta_L
    for l in range(net.L - 1, 0, -1):                                # paper numbering
        back = net.back(l + 1, deltas[l], backward_weights)          # delta_{l+1} W_{l+1}
        deltas[l - 1] = net.times_dphi(l, cache, back)               # delta_l
    return deltas


class Backprop:
    """The BP rule: gradients of the loss by the chain rule.

    ``layers``: indices of the layers to train (``-1`` is the last); None trains all. Layers left
    out get no update (strong_dfc's ``--only_train_first_layer`` and friends).
    """

    name = "bp"

    def __init__(self, layers=None):
        self.layers = layers

    def grads(self, net, cache, dL_dy, **_):
        grads = grads_from_deltas(net, cache, bp_deltas(net, cache, dL_dy))
        if self.layers is not None:
            keep = {l % net.L for l in self.layers}
            grads = [g if l in keep else None for l, g in enumerate(grads)]
        return grads

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict):
        pass
