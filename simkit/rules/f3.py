r"""F³: forward feedback with *delayed* error information (Flügel et al.).

K. Flügel, D. Coquelin, M. Weiel, C. Debus, A. Streit, M. Götz, "Feed-Forward Optimization With
Delayed Feedback for Neural Networks", arXiv:2304.13372 (2023; ICONIP 2024, LNCS 15289).
Original code: github.com/Helmholtz-AI-Energy/f3 (research note ``f3_dfa_bdfa.md`` §1).

F³ is direct feedback (:mod:`simkit.rules.dfa`) whose projected signal :math:`E` is known
*before* the forward pass of a sample: it is what the network got wrong on that sample the
previous time it saw it. The paper states the hidden update as :math:`\delta h_i = B_i^\top
e^{t-1}`; with rows as samples and the original's sign convention (its hidden signal is a
*plus* gradient, :math:`\partial L/\partial h_l := E B_l`):

.. math::

    E_n &= \text{error information of sample } n                       &&\text{(F.1, table below)}\\
    G_l &= E\,B_l, \qquad \delta_l = G_l \odot (1 - h_l^2)             &&\text{(F.2, tanh hidden units)}\\
    \nabla W_l &= \delta_l^\top h_{l-1}, \qquad \nabla b_l = \textstyle\sum_n \delta_{l,n}
                                                                       &&\text{(F.3, no 1/N)}\\
    D_{i} &\leftarrow \text{new row for sample } i \text{ (after the step, from this step's } y)
                                                                       &&\text{(F.4)}

The output layer always gets its exact gradient. :math:`D` is a per-sample buffer
(N_train, C) that starts as the training targets, so **every delayed variant equals DRTP in
the first epoch**, and from the second epoch on each sample's :math:`E` is what was stored at
its previous visit (0 to 2 epochs of updates old, since the order is reshuffled every epoch).

===========================  ======================  =======================================
``error_info``               :math:`E` (F.1)         row stored for the next visit (F.4)
===========================  ======================  =======================================
``one_hot_target`` (DRTP)    :math:`t`               --
``current_error`` (DFA)      :math:`t - y`           --
``zeros``                    none (hidden layers     --
                             are not updated)
``delayed_error``            :math:`D_i`             :math:`t - y`
``delayed_loss``             :math:`D_i`             :math:`-\partial L/\partial y` (BCE:
                                                     :math:`(t-y)/(y(1-y)NC)`)
``delayed_error_one_hot``    :math:`t \odot D_i`     :math:`t - y` (so :math:`E` keeps the true
                                                     class only, with :math:`1 - y_c`)
``delayed_loss_one_hot``     :math:`t \odot D_i`     :math:`-\partial L/\partial y`
``delayed_error_softmax``    :math:`D_i`             :math:`t - \operatorname{softmax}(y)`
``delayed_loss_softmax``     :math:`D_i`             :math:`-\partial L(s, t)/\partial y`,
                                                     :math:`s = \operatorname{softmax}(y)`
===========================  ======================  =======================================

(F.1-4 are this module's tags; only the paper's abstract could be checked.) Here :math:`y` is the
network output *after* its nonlinearity (the sigmoid for classification), :math:`L` the batch
mean loss (BCE over N·C elements, or MSE), and the softmax variants apply the softmax on top of
the sigmoid outputs, as the original does. The signs follow the original, whose projected signal
is :math:`t - y`, the negative of Nøkland's :math:`y - t`: with feedback distributions symmetric
about 0 (Kaiming, trinomial, ±I) that makes no difference; with binomial {0, 1} feedback it does.

Symbols and shapes
------------------
=============  ==================  ==============================================
``B[l]``       (C, n_{l+1})        fixed feedback of hidden layer l+1
``D``          (N_train, C)        delayed buffer (:class:`DelayedBuffer`)
``E``          (N, C)              error information of the minibatch
=============  ==================  ==============================================

Deviations from the original code (none changes a number):

* the buffer rows are filled lazily: a row not yet written reads as the sample's target, which
  is what the original's buffer, initialised with all training targets, holds there (so no
  slow pass over the data set before training);
* ``current_error`` takes :math:`y` from the training forward pass instead of an extra
  eval-mode pass; the two are identical (no dropout or batch norm);
* ``zeros`` returns no hidden update instead of zero gradients (Adam then leaves the hidden
  weights unchanged either way).
"""
from __future__ import annotations

import numpy as np

from simkit.errors import UserError
from simkit.nn.losses import log_softmax
from simkit.rules.dfa import DirectFeedback

ERROR_INFO = ("one_hot_target", "zeros", "delayed_loss", "delayed_error", "delayed_loss_one_hot",
              "delayed_error_one_hot", "delayed_loss_softmax", "delayed_error_softmax",
              "current_error")


class DelayedBuffer:
    """Per-sample rows ``D[i]`` (C,) on the device; a row never written reads as the target.

    ``capacity`` (the training-set size, when known) allocates once, and indices must lie below
    it; otherwise the buffer grows (doubling) to the largest sample index seen, which costs a
    device-to-host read of ``max(idx)`` per minibatch.
    """

    def __init__(self, bk, n_out: int, capacity: int = 0):
        self.bk, self.n_out, self.fixed = bk, int(n_out), int(capacity) > 0
        self.D = bk.xp.zeros((int(capacity), self.n_out), dtype=bk.dtype)
        self.seen = bk.xp.zeros(int(capacity), dtype=bool)

    def _ensure(self, idx):
        if self.fixed:
            return
        need = int(idx.max()) + 1
        if need <= self.D.shape[0]:
            return
        xp, n = self.bk.xp, max(need, 2 * self.D.shape[0])
        D, seen = xp.zeros((n, self.n_out), dtype=self.D.dtype), xp.zeros(n, dtype=bool)
        D[:self.D.shape[0]], seen[:self.D.shape[0]] = self.D, self.seen
        self.D, self.seen = D, seen

    def read(self, idx, t):
        """Rows ``D[idx]``, with the targets ``t`` where a sample has no stored row yet."""
        self._ensure(idx)
        return self.bk.xp.where(self.seen[idx][:, None], self.D[idx], t)

    def write(self, idx, rows):
        self._ensure(idx)
        self.D[idx] = rows
        self.seen[idx] = True

    def state_dict(self) -> dict:
        return {"D": self.bk.to_host(self.D), "seen": self.bk.to_host(self.seen)}

    def load_state_dict(self, state: dict):
        self.D = self.bk.asarray(state["D"])
        self.seen = self.bk.asarray(np.asarray(state["seen"], dtype=bool), dtype=bool)


def softmax_loss_grad(xp, loss, y, t):
    r""":math:`\partial L(s, t)/\partial y` with :math:`s = \operatorname{softmax}(y)`:
    :math:`s \odot (g - \langle g, s\rangle)`, :math:`g = \partial L/\partial s` (softmax Jacobian)."""
    s = xp.exp(log_softmax(xp, y))                     # softmax as the CE loss's gradient has it
    g = loss.grad(xp, s, t)
    return s * (g - (g * s).sum(axis=1, keepdims=True))


class F3(DirectFeedback):
    """F³ and its relatives, chosen by ``error_info`` (see the module table).

    Options: ``error_info`` (default ``one_hot_target``, the original's default), the feedback
    options of :class:`~simkit.rules.dfa.DirectFeedback` (``feedback``, ``scalar``,
    ``discrete_values``, ``a``, ``rfb_mag``), and ``n_train`` (buffer size, optional).
    """

    name = "f3"
    feedback_sign = -1.0

    def __init__(self, error_info="one_hot_target", n_train=None, **feedback_kw):
        if error_info not in ERROR_INFO:
            raise UserError(f"unknown error_info {error_info!r}; allowed: {', '.join(ERROR_INFO)}")
        super().__init__(**feedback_kw)
        self.error_info, self.n_train = error_info, n_train
        self.delayed = error_info.startswith("delayed_")
        self.buffer = None

    def setup(self, net, rng, n_train=None, **_):
        super().setup(net, rng)
        self.buffer = DelayedBuffer(net.bk, net.sizes[-1], int(n_train or self.n_train or 0))

    def error_information(self, net, cache, dL_dy, t, loss, idx):
        info = self.error_info
        if info == "one_hot_target":
            return t                                            # Eq. (F.1), DRTP
        if info == "zeros":
            return None
        if info == "current_error":
            return t - cache.y                                  # Eq. (F.1), DFA with F³'s sign
        if idx is None:
            raise UserError(f"error_info {info} needs the minibatch's sample indices")
        rows = self.buffer.read(idx, t)                         # D_i from the previous visit
        return t * rows if info.endswith("_one_hot") else rows  # Eq. (F.1)

    def stored_rows(self, net, cache, dL_dy, t, loss):
        """What sample ``i`` leaves in the buffer for its next visit: Eq. (F.4)."""
        xp, y, info = net.bk.xp, cache.y, self.error_info
        if info == "delayed_error_softmax":
            return t - xp.exp(log_softmax(xp, y))
        if info == "delayed_loss_softmax":
            return -softmax_loss_grad(xp, loss, y, t)
        if info.startswith("delayed_error"):
            return t - y
        return -dL_dy                                           # delayed_loss(_one_hot)

    def grads(self, net, cache, dL_dy, *, t=None, loss=None, idx=None, epoch=0):
        grads = super().grads(net, cache, dL_dy, t=t, loss=loss, idx=idx, epoch=epoch)
        if self.delayed:
            self.buffer.write(idx, self.stored_rows(net, cache, dL_dy, t, loss))   # Eq. (F.4)
        return grads

    def state_dict(self) -> dict:
        out = super().state_dict()
        if self.buffer is not None:
            out.update({f"buffer_{k}": v for k, v in self.buffer.state_dict().items()})
        return out

    def load_state_dict(self, state: dict):
        super().load_state_dict(state)
        if self.buffer is not None and "buffer_D" in state:
            self.buffer.load_state_dict({"D": state["buffer_D"], "seen": state["buffer_seen"]})
