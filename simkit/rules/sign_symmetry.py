r"""Sign symmetry: feedback alignment whose feedback is the sign of the forward weights.

Liao, Leibo & Poggio, "How important is weight symmetry in backpropagation?", AAAI 2016;
arXiv:1510.05067. The paper's "uniform sign-concordant feedback" (uSF): the backward pass uses
:math:`V = \operatorname{sign}(W)` in place of :math:`W`, so that a feedback synapse knows only
the sign of its forward twin, never its magnitude.

This is FA (:mod:`simkit.rules.fa`) with one change: :math:`B_{l+1}` is not drawn once but read
off the current forward weights before every step. In this layout (rows are samples, ``B[l]``
shaped like ``W[l]``; "B = sign(Wᵀ)" in the paper's column-vector notation):

.. math::

    B_{l+1} &= \operatorname{sign}(W_{l+1}) \quad \text{(entries } -1, 0, +1\text{), at every step}
        &&\text{(SS.1)} \\
    \delta_l &= \left(\delta_{l+1} B_{l+1}\right) \odot \phi_l'(a_l), \quad l = L-1..1
        &&\text{(FA.1)} \\
    \nabla W_l &= \delta_l^\top h_{l-1}, \qquad \nabla b_l = \textstyle\sum_n \delta_{l,n}
        &&\text{(FA.2)}

(SS.1 is this module's tag: the paper's section and equation numbers could not be checked.)
Every entry of :math:`B_{l+1}` has the sign of :math:`W_{l+1}`'s, so each hidden layer's error
is BP's with the magnitudes of the weights above it replaced by 1. With every entry of
:math:`W_{l+1}` in :math:`\{-1, +1\}` the rule *is* BP, bit for bit; that is the limit test.

The paper finds the magnitudes of the feedback irrelevant, but only together with Batch
Normalisation or its "Batch Manhattan" update (a step along the sign of each gradient entry):
with weights of typical magnitude :math:`|w|`, ``sign(W)`` scales a hidden error by about
:math:`1/|w|` for each layer above it. simkit has neither; an optimiser that normalises each
entry's step (Adam, the default of ``simkit train``, or RMSprop) plays that part. With plain SGD,
lower the learning rate of the hidden layers.

Nothing is drawn and nothing is stored (``state_dict`` is empty: ``B`` is a function of ``W``).
Diagnostics as FA's: ``angle_bp``, and ``angle_fb`` / ``norm_ratio_fb`` between :math:`W_l` and
:math:`\operatorname{sign}(W_l)`.
"""
from __future__ import annotations

from simkit.rules.fa import FeedbackAlignment


class SignSymmetry(FeedbackAlignment):
    """FA with ``B[l] = sign(W[l])``, recomputed from the current weights at every step."""

    name = "sign_symmetry"

    def __init__(self):
        self.B = None

    def setup(self, net, rng=None, **_):
        """Nothing to draw: the feedback is read off the forward weights (Eq. SS.1)."""

    @staticmethod
    def feedback(net) -> list:
        """``[None, sign(W_2), ..., sign(W_L)]``: Eq. (SS.1) for the current weights."""
        xp = net.bk.xp
        return [None] + [xp.sign(W) for W in net.W[1:]]

    def deltas(self, net, cache, dL_dy) -> list:
        self.B = self.feedback(net)
        return super().deltas(net, cache, dL_dy)

    def feedback_alignment(self, net) -> dict:
        self.B = self.feedback(net)
        return super().feedback_alignment(net)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict):
        pass
