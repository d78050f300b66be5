r"""Feedback alignment (FA): backpropagation through fixed random feedback weights.

Lillicrap, Cownden, Tweed & Akerman, "Random synaptic feedback weights support error
backpropagation for deep learning", Nature Communications 7, 13276 (2016); arXiv:1411.0247.

Backpropagation sends the error of layer :math:`l+1` down through the transpose of the forward
weights, :math:`W_{l+1}^\top`. FA replaces that transpose by a fixed random matrix :math:`B_{l+1}`
of the same shape, so no synapse needs to know another's weight (the weight transport
problem). With rows as samples (so :math:`\delta W` is :math:`W^\top\delta` per sample):

.. math::

    \delta_L &= \frac{\partial L}{\partial h_L} \odot \phi_L'(a_L)
        &&\text{(output error, as in BP)} \\
    \delta_l &= \left(\delta_{l+1} B_{l+1}\right) \odot \phi_l'(a_l), \quad l = L-1..1
        &&\text{(FA.1; the paper's } \Delta h_{FA} = B e \text{ instead of } W^\top e) \\
    \nabla W_l &= \delta_l^\top h_{l-1}, \qquad \nabla b_l = \textstyle\sum_n \delta_{l,n}
        &&\text{(FA.2)}

(FA.1-2 are this module's tags: the paper's equation numbers could not be checked.) The
forward weights come to *align* with the feedback: :math:`W_{l+1}` drifts towards
:math:`B_{l+1}` (in this layout the two have the same shape), after which :math:`\delta_l` lies
within 90 degrees of the true gradient. With :math:`B_{l+1} = W_{l+1}` (i.e. "B = Wᵀ" in the
paper's column-vector notation) FA *is* BP, bit for bit; that is the limit test.

Symbols and shapes
------------------
=============  ===================  ================================================
``W[l]``       (n_{l+1}, n_l)       forward weights of layer l+1 (list index l)
``B[l]``       (n_{l+1}, n_l)       feedback that sends layer l+1's error to layer l;
                                    ``B[0]`` is None (nothing goes below layer 1)
``delta[l]``   (N, n_{l+1})         error signal of layer l+1
=============  ===================  ================================================

Diagnostics (every epoch, into metrics.csv by layer, 1-based):
``angle_bp``       angle between the rule's weight update and the BP gradient of the same
                   minibatch (the last one of the epoch; the BP gradient is recomputed at the end
                   of the epoch from that minibatch's forward state, with the weights after its
                   step, an error of one optimiser step);
``angle_fb``       angle between :math:`W_l` and its feedback :math:`B_l`;
``norm_ratio_fb``  :math:`\lVert W_l\rVert_F / \lVert B_l\rVert_F`.

Deviations: the paper's networks used plain SGD; here any simkit optimiser applies.
"""
from __future__ import annotations

from simkit.metrics import angle_deg, norm_ratio
from simkit.rules.bp import bp_deltas
from simkit.rules.common import grads_from_deltas
from simkit.rules.feedback import SQRT5, fa_feedback


class UpdateAngles:
    """Mixin: remember the last minibatch and compare the rule's update with BP's there.

    A rule calls :meth:`_remember` in ``grads``; :meth:`epoch_metrics` then reports
    ``angle_bp`` for every layer the rule updates, plus whatever :meth:`feedback_alignment`
    returns (forward vs feedback weights).
    """

    _last = None

    def _remember(self, cache, dL_dy, grads):
        self._last = (cache, dL_dy, grads)

    def update_angles(self, net) -> dict:
        if self._last is None:
            return {}
        xp = net.bk.xp
        cache, dL_dy, grads = self._last
        bp = grads_from_deltas(net, cache, bp_deltas(net, cache, dL_dy))
        return {l + 1: {"angle_bp": angle_deg(xp, g[0], bp[l][0])}
                for l, g in enumerate(grads) if g is not None}

    def feedback_alignment(self, net) -> dict:
        return {}

    def epoch_metrics(self, net) -> dict:
        out = self.update_angles(net)
        for layer, metrics in self.feedback_alignment(net).items():
            out.setdefault(layer, {}).update(metrics)
        return dict(sorted(out.items()))


def feedback_init_kw(feedback, scalar, discrete_values, a, rfb_mag) -> dict:
    """The keyword set every feedback rule passes to :mod:`simkit.rules.feedback`."""
    return {"method": feedback, "scalar": float(scalar),
            "discrete_values": tuple(float(v) for v in discrete_values),
            "a": float(a), "rfb_mag": float(rfb_mag)}


class FeedbackAlignment(UpdateAngles):
    """FA with fixed feedback ``B`` drawn by :func:`simkit.rules.feedback.fa_feedback`.

    Options: ``feedback`` (an initialisation name of :mod:`simkit.rules.feedback`, default
    ``kaiming_uniform``, i.e. :math:`\\mathcal U(\\pm 1/\\sqrt{n_{l-1}})` like the forward
    weights of a PyTorch ``Linear``), ``scalar``, ``discrete_values``, ``a``, ``rfb_mag``.
    """

    name = "fa"

    def __init__(self, feedback="kaiming_uniform", scalar=1.0, discrete_values=(-1.0, 0.0, 1.0),
                 a=SQRT5, rfb_mag=0.0):
        self.init_kw = feedback_init_kw(feedback, scalar, discrete_values, a, rfb_mag)
        self.B = None

    def setup(self, net, rng, **_):
        kw = dict(self.init_kw)
        host = fa_feedback(rng, net, kw.pop("method"), **kw)
        self.bk = net.bk
        self.B = [None] + [net.bk.asarray(b) for b in host[1:]]

    def deltas(self, net, cache, dL_dy) -> list:
        """delta_L as in BP, then delta_l = (delta_{l+1} B_{l+1}) * phi'(a_l): Eq. (FA.1)."""
        if self.B is None:
            raise RuntimeError("call setup(net, rng) before grads: the feedback weights are drawn there")
        return bp_deltas(net, cache, dL_dy, backward_weights=self.B)

    def grads(self, net, cache, dL_dy, **_):
        grads = grads_from_deltas(net, cache, self.deltas(net, cache, dL_dy))
        self._remember(cache, dL_dy, grads)
        return grads

    def feedback_alignment(self, net) -> dict:
        xp = net.bk.xp
        return {l + 1: {"angle_fb": angle_deg(xp, net.W[l], self.B[l]),
                        "norm_ratio_fb": norm_ratio(xp, net.W[l], self.B[l])}
                for l in range(1, net.L)}

    def state_dict(self) -> dict:
        if self.B is None:
            return {}
        return {f"B{l + 1}": self.bk.to_host(self.B[l]) for l in range(1, len(self.B))}

    def load_state_dict(self, state: dict):
        for l in range(1, len(self.B or [])):
            self.B[l][...] = self.bk.asarray(state[f"B{l + 1}"])
