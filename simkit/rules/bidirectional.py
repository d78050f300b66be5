r"""Bidirectional (direct) feedback alignment: feedback weights that learn (Luo, Fu & Glass).

H. Luo, J. Fu, J. Glass, "Bidirectional Backpropagation: Towards Biologically Plausible Error
Signal Transmission in Neural Networks", arXiv:1702.07097 (2017; v4 "Adaptive Bidirectional
Backpropagation"). Code: bdfa-torch (Lua Torch7, a fork of Nøkland's dfa-torch; research note
``f3_dfa_bdfa.md`` §5).

FA and DFA send the error down through *fixed* random matrices. Here the feedback matrices are
plastic too: they are "trained to approximate the forward activations". In the code, a
feedback matrix :math:`B_l` (C, n_l) maps a soft label :math:`S_n` (C,) to a top-down
prediction of the hidden activity, and is trained by gradient *ascent* on the agreement of that
prediction with the actual activity :math:`h_{l,n}`:

.. math::

    S_{nc} &= \begin{cases} 1 & c = c_n \text{ (the label)} \\ \kappa\, o_{nc} & \text{otherwise}\end{cases}
        &&\text{(B.1, } o \text{ = network output, } \kappa = 0.25\text{)}\\
    s_n &= (S_n B_l) \cdot h_{l,n}, \qquad J(B_l) = \textstyle\sum_n \log\sigma(s_n)  &&\text{(B.2)}\\
    \frac{\partial J}{\partial B_l} &= \textstyle\sum_n \big(1-\sigma(s_n)\big)\, S_n^\top h_{l,n}
        &&\text{(B.3)}\\
    B_l &\leftarrow B_l + \eta_B\, \partial J/\partial B_l, \qquad \eta_B = 5\cdot 10^{-5} &&\text{(B.4)}

The forward weights learn by DFA (:mod:`simkit.rules.dfa`) through the current :math:`B_l`; the
feedback step (B.4) follows, using the same minibatch. With :math:`\eta_B \to 0` this is DFA.
(B.1-4 are this module's tags; only the paper's abstract could be checked.) The network output
:math:`o` is what the original's network returns: the logits for its BCE criterion (which
applies the sigmoid itself), the log-probabilities for ``ce``.

BFA, the layer-wise variant, is described in the paper but absent from the code's last version
(its FA feedback is fixed there). :class:`BFA` is a reconstruction with the same objective one
layer at a time: :math:`B_{l+1}` (n_{l+1}, n_l), which carries layer :math:`l+1`'s error down
to layer :math:`l`, learns to predict :math:`h_l` from the activity above it, :math:`h_{l+1}`
(or from :math:`S` for the output layer): :math:`s_n = (h_{l+1,n} B_{l+1})\cdot h_{l,n}`, same
(B.2-4).

Symbols and shapes
------------------
=============  ==================  ============================================
``S``          (N, C)              soft labels (B.1)
``B[l]``       (C, n_{l+1})        BDFA feedback of hidden layer l+1
               (n_{l+1}, n_l)      BFA feedback sending layer l+1's error down
``h``          (N, n)              the forward activity the prediction is scored on
=============  ==================  ============================================

Deviations from the original code:

* its ``label_matrix`` scales the network output tensor *in place*, so the k-th feedback
  module from the top sees :math:`0.25^k o`; here every layer sees :math:`0.25\,o`
  (``cascade_bug=True`` restores the original);
* 10 classes and CUDA are no longer hard-coded; the unused 3072 x 10 ``feedforward`` matrix
  is not allocated.
"""
from __future__ import annotations

import copy
import json

import numpy as np

from simkit.errors import UserError
from simkit.nn.activations import Activation
from simkit.nn.losses import log_softmax
from simkit.rules.bp import Backprop, bp_deltas
from simkit.rules.common import grads_from_deltas
from simkit.rules.dfa import DFA
from simkit.rules.fa import FeedbackAlignment
from simkit.rules.feedback import SQRT5

FEEDBACK_LR = 5e-5        # bdfa-torch's hard-coded feedback learning rate
LABEL_SCALE = 0.25        # kappa in Eq. (B.1)


def network_output(net, cache, loss):
    """What the original network returns: logits (BCE), log-probabilities (CE), else ``h_L``."""
    if loss is not None and loss.name == "bce":
        return cache.a[-1]
    if loss is not None and loss.name == "ce":
        return log_softmax(net.bk.xp, cache.a[-1])
    return cache.y


def soft_labels(xp, out, t, scale=LABEL_SCALE):
    """Eq. (B.1): ``scale * out`` with 1 at each row's label (the arg-max of ``t``)."""
    is_label = xp.arange(t.shape[1])[None, :] == t.argmax(axis=1)[:, None]
    return xp.where(is_label, 1.0, scale * out)


def agreement(xp, S, B, h):
    """Eq. (B.2): scores ``s_n = (S_n B) . h_n``."""
    return ((S @ B) * h).sum(axis=1)


def feedback_objective(xp, S, B, h) -> float:
    """Eq. (B.2): :math:`J = \\sum_n \\log\\sigma(s_n)`, computed as :math:`-\\log(1+e^{-s})`."""
    return float(-xp.logaddexp(0.0, -agreement(xp, S, B, h)).sum())


def feedback_gradient(xp, S, B, h):
    """Eq. (B.3): :math:`\\partial J/\\partial B = S^\\top \\big((1-\\sigma(s)) \\odot h\\big)`."""
    s = agreement(xp, S, B, h)
    one_minus_sigma = 0.5 * (1.0 - xp.tanh(0.5 * s))          # 1 - sigma(s), overflow-free
    return S.T @ (one_minus_sigma[:, None] * h)


class BDFA(DFA):
    """Bidirectional DFA: DFA whose feedback learns by Eqs. (B.1-4).

    Options: ``feedback_lr`` (:math:`\\eta_B`, default 5e-5), ``label_scale`` (0.25),
    ``cascade_bug`` (False), and DFA's feedback options (default ``rfb_mag``, bdfa-torch's
    :math:`\\mathcal U(\\pm 1/\\sqrt{n_l})`).
    """

    name = "bdfa"

    def __init__(self, feedback_lr=FEEDBACK_LR, label_scale=LABEL_SCALE, cascade_bug=False,
                 feedback="rfb_mag", **feedback_kw):
        super().__init__(feedback=feedback, **feedback_kw)
        self.feedback_lr, self.label_scale = float(feedback_lr), float(label_scale)
        self.cascade_bug = bool(cascade_bug)

    def grads(self, net, cache, dL_dy, *, t=None, loss=None, idx=None, epoch=0):
        grads = super().grads(net, cache, dL_dy, t=t, loss=loss, idx=idx, epoch=epoch)
        if self.feedback_lr:
            xp, out = net.bk.xp, network_output(net, cache, loss)
            for k, l in enumerate(range(net.L - 2, -1, -1), start=1):        # top hidden first
                kappa = self.label_scale ** k if self.cascade_bug else self.label_scale
                S = soft_labels(xp, out, t, kappa)                           # Eq. (B.1)
                dJ = feedback_gradient(xp, S, self.B[l], cache.h[l + 1])        # Eq. (B.3)
                self.B[l] += self.feedback_lr * dJ                               # Eq. (B.4)
        return grads


class BFA(FeedbackAlignment):
    """Bidirectional FA (reconstruction, see the module docstring): FA whose ``B`` learns.

    Options: ``feedback_lr``, ``label_scale``, and FA's feedback options (default ``rfb_mag``:
    bdfa-torch's copy of the layer's initial weights, or :math:`\\mathcal U(\\pm 1/\\sqrt{n_l})`).
    """

    name = "bfa"

    def __init__(self, feedback_lr=FEEDBACK_LR, label_scale=LABEL_SCALE, feedback="rfb_mag",
                 scalar=1.0, discrete_values=(-1.0, 0.0, 1.0), a=SQRT5, rfb_mag=0.0):
        super().__init__(feedback, scalar, discrete_values, a, rfb_mag)
        self.feedback_lr, self.label_scale = float(feedback_lr), float(label_scale)

    def grads(self, net, cache, dL_dy, *, t=None, loss=None, idx=None, epoch=0):
        grads = super().grads(net, cache, dL_dy)
        if self.feedback_lr:
            xp = net.bk.xp
            for l in range(net.L - 1, 0, -1):
                above = (soft_labels(xp, network_output(net, cache, loss), t, self.label_scale)
                         if l == net.L - 1 else cache.h[l + 1])              # Eq. (B.1) or h_{l+1}
                dJ = feedback_gradient(xp, above, self.B[l], cache.h[l])         # Eq. (B.3)
                self.B[l] += self.feedback_lr * dJ                               # Eq. (B.4)
        return grads


# ---------------------------------------------------------------------------------------------
# The bdfa-torch training step around a rule (what `simkit bdfa` runs)
# ---------------------------------------------------------------------------------------------
GRADIENTS = ("bp", "fa", "dfa", "bfa", "bdfa")


def _dropped(phi, mask):
    """``phi`` followed by dropout with the scaled mask ``mask`` (its derivative includes it)."""
    return Activation(f"{phi.name}+dropout", f=lambda xp, a: phi.f(xp, a) * mask,
                      df=lambda xp, a, h: phi.df(xp, a, phi.f(xp, a)) * mask)


def renorm_(xp, W, max_norm, axis):
    """Torch's ``renorm(2, dim, max)`` in place: rows (axis 1) or columns (axis 0) longer than
    ``max_norm`` are scaled to it (dpnn ``maxParamNorm``)."""
    norms = xp.sqrt((W * W).sum(axis=axis, keepdims=True))
    W *= xp.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0)


class BdfaTorch:
    """One training step of bdfa-torch's ``Main.lua`` around an inner rule.

    ``gradient``: ``bp``, ``fa`` (fixed feedback, as in the code), ``dfa`` and ``bdfa`` (both
    :class:`BDFA`: the code's ``-gradient dfa`` learns its feedback), ``bfa`` (:class:`BFA`).
    ``feedback_lr = 0`` turns ``dfa``/``bfa`` into Nøkland's DFA / plain FA. What the step adds:

    * ``loss_sum``: the BCE gradient is :math:`\\sigma(z) - t`, not divided by N·C (the
      code's ``BCECriterion``); the ``ce`` gradient stays batch-averaged (``ClassNLLCriterion``);
    * ``dropout`` (the flag's 0/1/2): >= 1 drops inputs with p = 0.1, == 1 also hidden
      activities with p = 0.5 (scaled by 1/(1-p)); this needs a second forward pass;
    * ``eps`` > 0: fast-gradient-sign adversarial training: the input gradient by true BP,
      :math:`x \\leftarrow x + \\epsilon\\,\\mathrm{sign}(\\partial E/\\partial x)`, then the rule on the
      perturbed batch (with ``acc_gradient`` the clean BP gradients are added);
    * ``max_out_norm``/``max_in_norm`` < 400: rows / columns of every weight matrix are capped in
      norm after the forward pass and before the gradients, as the code does;
    * ``momentum``, ``weight_decay`` (Torch7 ``optim.sgd``; pair with simkit's SGD at the same
      momentum and no weight decay of its own): coupled weight decay, and dampening = momentum
      after the first step, folded into the gradients (Torch7's learning-rate decay is a
      schedule of the optimiser's rate, which ``simkit bdfa`` sets after every step).
    """

    name = "bdfa_torch"

    def __init__(self, gradient="dfa", feedback_lr=FEEDBACK_LR, rfb_mag=0.0, cascade_bug=False,
                 loss_sum=True, dropout=0, eps=0.0, acc_gradient=0, max_out_norm=400.0,
                 max_in_norm=400.0, momentum=0.0, weight_decay=0.0):
        if gradient not in GRADIENTS:
            raise UserError(f"unknown gradient {gradient!r}; allowed: {', '.join(GRADIENTS)}")
        self.gradient = gradient
        self.inner = {"bp": lambda: Backprop(),
                      "fa": lambda: FeedbackAlignment("rfb_mag", rfb_mag=rfb_mag),
                      "bfa": lambda: BFA(feedback_lr, rfb_mag=rfb_mag),
                      }.get(gradient, lambda: BDFA(feedback_lr, cascade_bug=cascade_bug,
                                                   rfb_mag=rfb_mag))()
        self.loss_sum, self.dropout, self.eps = bool(loss_sum), int(dropout), float(eps)
        self.acc_gradient = bool(acc_gradient)
        self.max_out_norm, self.max_in_norm = float(max_out_norm), float(max_in_norm)
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)
        self.steps, self.rng = 0, np.random.default_rng(0)

    def setup(self, net, rng, **_):
        if hasattr(self.inner, "setup"):
            self.inner.setup(net, rng)
        self.rng = rng

    # ----------------------------------------------------------------------------- pieces
    def forward(self, net, x):
        """A training forward pass; with dropout, fresh masks and a network view that applies them."""
        if not self.dropout:
            return net, net.forward(x)
        bk = net.bk
        if self.dropout >= 1:
            self.input_mask = bk.asarray((self.rng.random(x.shape) >= 0.1) / 0.9)
            x = x * self.input_mask
        view = copy.copy(net)
        if self.dropout == 1:
            view.phi = [_dropped(phi, bk.asarray((self.rng.random((x.shape[0], n)) >= 0.5) / 0.5))
                        for phi, n in zip(net.phi[:-1], net.sizes[1:-1])] + [net.phi[-1]]
        return view, view.forward(x)

    def loss_gradient(self, net, cache, t, loss):
        dL_dy = loss.grad(net.bk.xp, cache.y, t)
        return dL_dy * (dL_dy.size if self.loss_sum and loss.name != "ce" else 1.0)

    def max_norm(self, net):
        if self.max_out_norm < 400 or self.max_in_norm < 400:
            for W in net.W:
                renorm_(net.bk.xp, W, self.max_out_norm, axis=1)      # rows: into output units
                renorm_(net.bk.xp, W, self.max_in_norm, axis=0)       # columns: out of input units

    def torch7_sgd(self, net, grads):
        """Fold Torch7 SGD's weight decay and dampening into the gradients."""
        c = 1.0 if (self.momentum == 0.0 or self.steps == 1) else 1.0 - self.momentum
        if c == 1.0 and not self.weight_decay:
            return grads
        return [None if g is None else [c * (gi + self.weight_decay * p) for gi, p in zip(g, params)]
                for g, params in zip(grads, net.params())]

    # ----------------------------------------------------------------------------- the step
    def grads(self, net, cache, dL_dy, *, t=None, loss=None, idx=None, epoch=0):
        self.steps += 1
        self.max_norm(net)
        x = cache.h[0]
        view, cache = self.forward(net, x) if self.dropout else (net, cache)
        dL_dy = self.loss_gradient(view, cache, t, loss)
        clean = None
        if self.eps > 0:
            deltas = bp_deltas(view, cache, dL_dy)
            dE_dx = deltas[0] @ net.W[0]                              # true BP to the input
            if self.dropout >= 1:
                dE_dx = dE_dx * self.input_mask                       # through the input dropout
            if self.acc_gradient:
                clean = grads_from_deltas(view, cache, deltas)
            view, cache = self.forward(net, x + self.eps * net.bk.xp.sign(dE_dx))
            dL_dy = self.loss_gradient(view, cache, t, loss)
        grads = self.inner.grads(view, cache, dL_dy, t=t, loss=loss, idx=idx, epoch=epoch)
        if clean is not None:
            grads = [None if g is None else [a + b for a, b in zip(g, c)] for g, c in zip(grads, clean)]
        return self.torch7_sgd(net, grads)

    def epoch_metrics(self, net) -> dict:
        return self.inner.epoch_metrics(net) if hasattr(self.inner, "epoch_metrics") else {}

    def state_dict(self) -> dict:
        rng = json.dumps(self.rng.bit_generator.state).encode()
        return {**self.inner.state_dict(), "steps": np.asarray(self.steps),
                "rng_state": np.frombuffer(rng, dtype=np.uint8)}

    def load_state_dict(self, state: dict):
        self.inner.load_state_dict(state)
        self.steps = int(state["steps"])
        self.rng.bit_generator.state = json.loads(bytes(state["rng_state"]).decode())
