r"""Direct feedback: DFA (Nøkland 2016) and DRTP (Frenkel, Lefebvre & Bol 2021).

* A. Nøkland, "Direct Feedback Alignment Provides Learning in Deep Neural Networks",
  NeurIPS 2016; arXiv:1609.01596.
* C. Frenkel, M. Lefebvre, D. Bol, "Learning Without Feedback: Fixed Random Learning Signals
  Allow for Feedforward Training of Deep Neural Networks", Frontiers in Neuroscience 15, 629892
  (2021); arXiv:1909.01311.

Instead of passing the error down layer by layer (BP, FA), every hidden layer receives one
global signal :math:`E` (N, C) straight from the top, through its own fixed random matrix
:math:`B_l` (C, n_l). The output layer keeps its exact gradient:

.. math::

    \delta_L &= \frac{\partial L}{\partial h_L} \odot \phi_L'(a_L) \\
    G_l &= E\,B_l  &&\text{(D.1; Nøkland's } \delta a_l = (B_l e) \odot f'(a_l)\text{, rows as samples)} \\
    \delta_l &= G_l \odot \phi_l'(a_l), \qquad l = 1..L-1 &&\text{(D.2)} \\
    \nabla W_l &= \delta_l^\top h_{l-1}, \qquad \nabla b_l = \textstyle\sum_n \delta_{l,n}

What :math:`E` is distinguishes the rules:

========  ======================================================================================
``dfa``   :math:`E = e = \delta_L = \partial L/\partial a_L`, the output error (Nøkland's
          Eq. (5), :math:`e = \delta a_3`)
``drtp``  :math:`E = t`, the one-hot target (Frenkel et al.'s "direct random target
          projection"): known before the forward pass ends, so the hidden layers are neither
          update- nor backward-locked. Its sign: the plus gradient is :math:`t B_l`.
``f3``    a per-sample buffer of the error from the sample's previous visit, see
          :mod:`simkit.rules.f3`
========  ======================================================================================

Limit: on a *linear* network, DFA with :math:`B_l = W_L W_{L-1}\cdots W_{l+1}` (C, n_l) is
exactly BP, since then :math:`\delta_L B_l = \delta_L W_L\cdots W_{l+1}` is BP's
:math:`\delta_l` (the limit test).

Tags (D.1), (D.2) are this module's: only the papers' abstracts and secondary descriptions could
be checked, so their equation numbers are not quoted except Nøkland's Eq. (5) for :math:`e`.

Symbols and shapes
------------------
=============  ===============  ================================================
``B[l]``       (C, n_{l+1})      feedback of hidden layer l+1 (list index l = 0..L-2)
``E``          (N, C)            the projected signal
``G[l]``       (N, n_{l+1})      stand-in for dL/dh of hidden layer l+1
=============  ===============  ================================================

Diagnostics (per layer, 1-based): ``angle_bp`` as in :mod:`simkit.rules.fa`; ``angle_fb`` and
``norm_ratio_fb`` compare the *effective* feedback :math:`s B_l` (``s = feedback_sign``: +1 for
DFA; -1 for DRTP and F³, whose signal :math:`t` or :math:`t-y` has the opposite sign of the error
:math:`y-t`) with the linearised forward path :math:`W_L\cdots W_{l+1}` (C, n_l) that BP would use
(ignoring the :math:`\phi'` factors); ``norm_ratio_fb`` = path norm / feedback norm.

Deviations from the original code: Nøkland's code zero-initialises the forward weights for
tanh/sigmoid networks and uses RMSprop; DRTP's uses Kaiming feedback with ``a = 0`` and SGD
with Nesterov momentum. Here those are configuration choices (``init``, ``optimizer``,
``rule_opts={'a': 0}``); the rules default to F³'s Kaiming feedback :math:`\mathcal U(\pm 1/\sqrt{n_l})`.
"""
from __future__ import annotations

from simkit.metrics import angle_deg, norm_ratio
from simkit.rules.common import grads_from_deltas, output_delta
from simkit.rules.fa import UpdateAngles, feedback_init_kw
from simkit.rules.feedback import SQRT5, direct_feedback


class DirectFeedback(UpdateAngles):
    """Base of DFA, DRTP and F³: subclasses define :meth:`error_information`."""

    name = "direct"
    feedback_sign = 1.0

    def __init__(self, feedback="kaiming_uniform", scalar=1.0, discrete_values=(-1.0, 0.0, 1.0),
                 a=SQRT5, rfb_mag=0.0):
        self.init_kw = feedback_init_kw(feedback, scalar, discrete_values, a, rfb_mag)
        self.B = None
        self.E = self.G = None  # the last projected signal and dL/dh stand-ins (for tests)

    def setup(self, net, rng, **_):
        """Draw one ``B_l`` (C, n_l) per hidden layer from the rule's host stream."""
        kw = dict(self.init_kw)
        self.bk = net.bk
        self.B = [net.bk.asarray(b) for b in direct_feedback(rng, net, method=kw.pop("method"), **kw)]

    def error_information(self, net, cache, dL_dy, t, loss, idx):
        """The signal ``E`` (N, C) projected to the hidden layers; None: no hidden update."""
        raise NotImplementedError

    def hidden_deltas(self, net, cache, E) -> list:
        if self.B is None:
            raise RuntimeError("call setup(net, rng) before grads: the feedback weights are drawn there")
        xp = net.bk.xp
        deltas, self.G = [], []
        for l in range(net.L - 1):
            G = E @ self.B[l]                                              # Eq. (D.1)
            self.G.append(G)
            deltas.append(G * net.phi[l].df(xp, cache.a[l + 1], cache.h[l + 1]))  # Eq. (D.2)
        return deltas

    def grads(self, net, cache, dL_dy, *, t=None, loss=None, idx=None, epoch=0):
        E = self.error_information(net, cache, dL_dy, t, loss, idx)
        self.E = E
        hidden = [None] * (net.L - 1) if E is None else self.hidden_deltas(net, cache, E)
        grads = grads_from_deltas(net, cache, hidden + [output_delta(net, cache, dL_dy)])
        self._remember(cache, dL_dy, grads)
        return grads

    def feedback_alignment(self, net) -> dict:
        """Angle and norm ratio of ``feedback_sign * B_l`` to the path ``W_L ... W_{l+1}``."""
        xp = net.bk.xp
        out, path = {}, None
        for l in range(net.L - 2, -1, -1):
            path = net.W[l + 1] if path is None else path @ net.W[l + 1]   # (C, n_{l+1})
            fb = self.feedback_sign * self.B[l]
            out[l + 1] = {"angle_fb": angle_deg(xp, path, fb), "norm_ratio_fb": norm_ratio(xp, path, fb)}
        return out

    def state_dict(self) -> dict:
        return {} if self.B is None else {f"B{l + 1}": self.bk.to_host(b) for l, b in enumerate(self.B)}

    def load_state_dict(self, state: dict):
        for l, b in enumerate(self.B or []):
            b[...] = self.bk.asarray(state[f"B{l + 1}"])


class DFA(DirectFeedback):
    """Direct feedback alignment: :math:`E = \\delta_L`, the output error."""

    name = "dfa"

    def error_information(self, net, cache, dL_dy, t, loss, idx):
        return output_delta(net, cache, dL_dy)                    # Eq. (5): e = dL/da_L


class DRTP(DirectFeedback):
    """Direct random target projection: :math:`E = t`, the target."""

    name = "drtp"
    feedback_sign = -1.0

    def error_information(self, net, cache, dL_dy, t, loss, idx):
        return t                                                  # E = t (DRTP)
