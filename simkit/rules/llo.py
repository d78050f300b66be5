r"""LLO, "last layer only" (shallow learning): the hidden layers stay at their random init.

The baseline of the F³ paper (Flügel et al. 2023, arXiv:2304.13372, ``--mode llo``; research
note §1.4) and of DRTP's "shallow" mode (Frenkel et al. 2021): a random, fixed feature map
:math:`h_{L-1}(x)` with a trained linear (+ sigmoid) read-out. Only the output layer learns,
with its exact gradient:

.. math::

    \delta_L &= \frac{\partial L}{\partial h_L} \odot \phi_L'(a_L)                &&\text{(S.1)}\\
    \nabla W_L &= \delta_L^\top h_{L-1}, \qquad \nabla b_L = \textstyle\sum_n \delta_{L,n}
                                                                                  &&\text{(S.2)}\\
    \nabla W_l &= \text{none}, \quad l < L                                       &&\text{(S.3)}

(S.1-3 are this module's tags.) The hidden weights are never handed to the optimiser, so they
stay bit-identical to their initial values (the limit test). The original freezes them with
``requires_grad=False``; the effect is the same.

Diagnostic: ``angle_bp`` of the output layer (0 degrees: its update *is* the BP gradient).
"""
from __future__ import annotations

from simkit.rules.common import grads_from_deltas, output_delta
from simkit.rules.fa import UpdateAngles


class LastLayerOnly(UpdateAngles):
    """Train only the output layer, with its exact gradient."""

    name = "llo"

    def grads(self, net, cache, dL_dy, **_):
        deltas = [None] * (net.L - 1) + [output_delta(net, cache, dL_dy)]   # Eqs. (S.1), (S.3)
        grads = grads_from_deltas(net, cache, deltas)                          # Eq. (S.2)
        self._remember(cache, dL_dy, grads)
        return grads

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict):
        pass
