r"""BP, GAIT-prop and target propagation on invertible networks.

Ahmad, van Gerven & Ambrogioni, "GAIT-prop: A biologically plausible learning rule derived from
backpropagation of error", NeurIPS 2020, arXiv:2006.06438; original code ``nasiryahm/GAIT-prop``
(``inv_net.py``, ``run.py``). The network, its inverse :math:`g_l` and the regulariser are in
:mod:`simkit.nn.invertible` (Eqs. 1-5 there). Equation numbers continue that module's; they
number the derivation below, not the paper's equations.

Symbols (rows are samples, batch :math:`N`, layer :math:`l = 1..L`, width :math:`n_l`)
=====================  =================  ====================================================
:math:`h_l`            (N, n_l)           forward activity, :math:`h_0 = x`
:math:`T_L`            (N, n_L)           output target: one-hot on the first C units, the
                                          output's own value on the others (zero error there)
:math:`T_l`            (N, n_l)           layer target (GAIT-prop, TP)
:math:`E_l`            (N, n_l)           error at the output of layer :math:`l`
:math:`\delta_l`       (N, n_l)           :math:`E_l \odot \sigma'(h_l)`
:math:`\gamma`         scalar             GAIT-prop's increment (1e-3 in ``run.py``)
:math:`\lambda`        scalar             orthogonality-regulariser weight (Eq. 5)
=====================  =================  ====================================================

Every rule gives each layer a local error and the same layer-local update (one matrix product
per layer, never per-sample outer products), plus the regulariser's gradient (Eq. 5):

.. math::

    \nabla W_l = \tfrac1N\, \delta_l^\top h_{l-1}^{[:n_l]} + \nabla_W R(W_l), \qquad
    \nabla b_l = \tfrac1N \textstyle\sum_n \delta_{l,n}                                     \qquad (6)

The optimiser steps against these "plus" gradients (the original returns their negatives).

**BP** on the loss :math:`\tfrac1{2N}\sum_n \lVert h_{L,n} - T_{L,n}\rVert^2`, auxiliary units of
a tower receiving zero error (:func:`simkit.rules.bp.bp_deltas`):

.. math:: E_L = h_L - T_L, \qquad E_{l-1} = \big[\,\delta_l W_l,\; 0\,\big]                \qquad (7)

**GAIT-prop.** Each layer's target is the inverse image of a point moved from the forward
activity a fraction :math:`\gamma \sigma'(h_l)^2` of the way towards the target above, and the
error is rescaled by :math:`\gamma^{-(L-l)}`:

.. math::

    T_{l-1} = \big[\, g_l\big(h_l + \gamma\, \sigma'(h_l)^2 \odot (T_l - h_l)\big),\;
              h_{l-1}^{[n_l:]} \,\big], \qquad
    E_l = \gamma^{-(L-l)}\,(h_l - T_l)                                                      \qquad (8)

Why :math:`\sigma'^2`: :math:`\sigma^{-1}` divides a small increment by :math:`\sigma'`, so the
pre-activation moves by :math:`\gamma\,\sigma' \odot (T_l - h_l)`; unless a unit crosses the kink
of :math:`\sigma`, :math:`E_{l-1} = \delta_l W_l^{-\top}`. That is Eq. (7) with :math:`W_l^{-\top}`
for :math:`W_l`: **GAIT-prop equals BP when every** :math:`W_l` **is orthogonal** (the paper's
result), up to the :math:`O(\gamma)` kink-crossing units.

*Exact formulation (the default).* Eq. (8) as written subtracts absolute targets that differ from
:math:`h_l` by :math:`\gamma^{L-l}`; at :math:`\gamma = 10^{-3}` and five layers the bottom
difference is ~1e-12 of the activity, the size of the round-off, and the bottom update is mostly
noise (cosine 0.49 with BP). Propagate the *scaled displacement*
:math:`D_l = (T_l - h_l)/\gamma^{L-l}` instead. The bias cancels in
:math:`g_l(y) - g_l(h_l)`, so with :math:`s = \gamma^{L-l+1}` and :math:`u = \sigma'(h_l)^2 D_l`

.. math::

    D_L = T_L - h_L, \qquad
    D_{l-1} = \Big[\, \frac{\sigma^{-1}(h_l + s\,u) - \sigma^{-1}(h_l)}{s}\, W_l^{-\top},\; 0 \,\Big],
    \qquad E_l = -D_l                                                                       \qquad (9)

and the quotient is evaluated without cancellation: :math:`\sigma'(h_l) D_l` for a unit that stays
on its side of the kink, and :math:`(h/s)(1/a - 1) + u/a` (crossing downwards) or
:math:`(h/s)(1 - 1/a) + u` (upwards) otherwise, both :math:`O(|u|)` because a crossing needs
:math:`|h| < s|u|`. This is Eq. (8) in exact arithmetic (same crossing effects at any
:math:`\gamma`) and matches BP to ~1e-13 at orthogonal weights. ``formulation='original'`` runs
Eq. (8) literally, with absolute targets, as the original does (its curves, noise included).

**TP** (exact-inverse target propagation: no difference correction, no learned inverse):

.. math:: T_{l-1} = \big[\, g_l(T_l),\; h_{l-1}^{[n_l:]} \,\big], \qquad E_l = h_l - T_l   \qquad (10)

For a linear network with orthogonal weights TP equals BP exactly; with the leaky ReLU every
negative unit's target is multiplied by 10 at each :math:`\sigma^{-1}`, hence TP's small learning
rate and large :math:`\lambda` in the paper.

Deliberate deviations from the original code
--------------------------------------------
1. GAIT-prop uses Eq. (9) by default (``formulation='original'`` for Eq. 8).
2. Eq. (6) is one matrix product per layer instead of a mean of per-sample outer products (an
   ``N x n x n`` tensor, 295 MB per layer per step at MNIST size); same value up to round-off.
3. The regulariser uses its closed form (Eq. 5) instead of Chainer's autograd.
4. :math:`y W_l^{-\top}` comes from an LU solve per layer and step, not an explicit inverse; the
   bottom layer's target (never used for an update) is not computed.
"""
from __future__ import annotations

from simkit.errors import UserError
from simkit.nn.activations import times_dsigma
from simkit.nn.invertible import InvCache, InvertibleNet, ortho_grad, pad_aux
from simkit.rules.bp import bp_deltas
from simkit.rules.common import output_target

ALGORITHMS = ("BP", "GAIT", "TP")
FORMULATIONS = ("exact", "original")



# ------------------------------------------------------------------------------ GAIT-prop
def scaled_increment(xp, h, D, s, slope, linear):
    r"""Eq. (9)'s bracket, :math:`(\sigma^{-1}(h + s\,\sigma'(h)^2 D) - \sigma^{-1}(h))/s`, exactly."""
    if linear:
        return D
    r = times_dsigma(xp, h, D, slope)                  # no kink crossed: sigma'(h) D
    if s == 0.0:
        return r
    u = times_dsigma(xp, h, r, slope)                  # u = sigma'(h)^2 D
    y = h + s * u                                      # Eq. (9): the moved point, h + s u
    down = (h >= 0) & (y < 0)
    up = (h < 0) & (y >= 0)
    if bool(down.any()):
        r = xp.where(down, (h / s) * (1.0 / slope - 1.0) + u / slope, r)   # Eq. (9), crossing down
    if bool(up.any()):
        r = xp.where(up, (h / s) * (1.0 - 1.0 / slope) + u, r)             # Eq. (9), crossing up
    return r


def gait_deltas_exact(net, h, T, gamma) -> list:
    r""":math:`\delta_l` of GAIT-prop from scaled displacements, Eq. (9)."""
    xp, L = net.bk.xp, net.L
    deltas = [None] * (L + 1)
    D = T - h[L]                                                      # Eq. (9), D_L
    for l in range(L, 0, -1):
        deltas[l] = -times_dsigma(xp, h[l], D, net.slope, net.linear)  # Eq. (9): E_l = -D_l
        if l > 1:
            r = scaled_increment(xp, h[l], D, gamma ** (L - l + 1), net.slope, net.linear)
            D = pad_aux(xp, net.solve(l, r), net.widths[l - 1])       # Eq. (9), D_{l-1}
    return deltas


def gait_targets(net, h, T, gamma, bottom=False) -> list:
    r"""Absolute targets :math:`T_0..T_L` of Eq. (8) (``T_0`` only if ``bottom``), as the original."""
    xp = net.bk.xp
    targets = [None] * (net.L + 1)
    targets[net.L] = T
    for l in range(net.L, 0 if bottom else 1, -1):
        d = times_dsigma(xp, h[l], xp.ones_like(h[l]), net.slope, net.linear)   # sigma'(h_l)
        c = gamma * d * d
        point = (1.0 - c) * h[l] + c * targets[l]                     # Eq. (8): h + c (T - h)
        targets[l - 1] = net.g(l, point, h[l - 1])                    # Eq. (8)
    return targets


def gait_deltas_original(net, h, T, gamma) -> list:
    """:math:`\\delta_l` of Eq. (8) with absolute targets (the original's round-off included)."""
    xp, L = net.bk.xp, net.L
    targets = gait_targets(net, h, T, gamma)
    return [None] + [times_dsigma(xp, h[l], gamma ** -(L - l) * (h[l] - targets[l]),
                                  net.slope, net.linear) for l in range(1, L + 1)]  # Eq. (8)


# ------------------------------------------------------------------------------ TP
def tp_targets(net, h, T, bottom=False) -> list:
    """Targets :math:`T_l` of Eq. (10), the full inverse of the output target."""
    targets = [None] * (net.L + 1)
    targets[net.L] = T
    for l in range(net.L, 0 if bottom else 1, -1):
        targets[l - 1] = net.g(l, targets[l], h[l - 1])               # Eq. (10)
    return targets


def tp_deltas(net, h, T) -> list:
    xp = net.bk.xp
    targets = tp_targets(net, h, T)
    return [None] + [times_dsigma(xp, h[l], h[l] - targets[l], net.slope, net.linear)
                     for l in range(1, net.L + 1)]                    # Eq. (10)


# ------------------------------------------------------------------------------ the rule
class InvertibleRule:
    """BP, GAIT-prop or TP on an :class:`~simkit.nn.invertible.InvertibleNet` (module docstring).

    ``grads(net, cache, dL_dy, *, t)`` takes the full output target ``t`` (:func:`output_target`);
    ``dL_dy`` is ignored (the rules define their own output error, Eq. 7). The returned gradient
    arrays are buffers reused by the next call: consume them before calling again.
    """

    def __init__(self, algorithm="GAIT", ortho_reg=0.0, gamma=1e-3, formulation="exact"):
        algorithm = str(algorithm).upper()
        if algorithm not in ALGORITHMS:
            raise UserError(f"unknown algorithm {algorithm!r}; allowed: {', '.join(ALGORITHMS)}")
        if formulation not in FORMULATIONS:
            raise UserError(f"unknown GAIT formulation {formulation!r}; allowed: exact, original")
        if not 0.0 < float(gamma) < 1.0:
            raise UserError(f"gamma must be in (0, 1), got {gamma}")
        if float(ortho_reg) < 0:
            raise UserError(f"the orthogonal regulariser must be >= 0, got {ortho_reg}")
        self.algorithm, self.formulation = algorithm, formulation
        self.name = algorithm.lower()
        self.ortho_reg, self.gamma = float(ortho_reg), float(gamma)
        self._buffers = {}

    def deltas(self, net, h, T) -> list:
        if self.algorithm == "BP":
            return [None] + bp_deltas(net, InvCache(h), h[-1] - T)     # Eq. (7)
        if self.algorithm == "TP":
            return tp_deltas(net, h, T)
        if self.formulation == "exact":
            return gait_deltas_exact(net, h, T, self.gamma)
        return gait_deltas_original(net, h, T, self.gamma)

    def _buffer(self, xp, key, shape, dtype):
        buf = self._buffers.get(key)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self._buffers[key] = xp.empty(shape, dtype=dtype)
        return buf

    def grads(self, net, cache, dL_dy=None, *, t, **_) -> list:
        """Per-layer ``[dW_l, db_l]`` plus-gradients, Eq. (6)."""
        if not isinstance(net, InvertibleNet):
            raise UserError(f"rule {self.name!r} needs an invertible network; use `simkit gait`")
        xp, h = net.bk.xp, cache.h
        N = h[0].shape[0]
        deltas = self.deltas(net, h, t)
        out = []
        for l in range(1, net.L + 1):
            W, n = net.W[l - 1], net.widths[l]
            buf = self._buffer(xp, ("dW", l), W.shape, W.dtype)
            dW = xp.matmul(deltas[l].T, h[l - 1][:, :n], out=buf)
            dW /= N                                                   # Eq. (6)
            if self.ortho_reg:
                reg = ortho_grad(xp, W, self.ortho_reg, out=self._buffer(xp, ("R", l), W.shape, W.dtype),
                                 gram=self._buffer(xp, ("G", l), W.shape, W.dtype))
                dW += reg                                             # Eq. (6) + Eq. (5)
            out.append([dW, deltas[l].mean(axis=0)])                  # Eq. (6), bias
        return out

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict):
        pass


def make_gait(**kw):
    return InvertibleRule("GAIT", **kw)


def make_tp(**kw):
    return InvertibleRule("TP", **kw)


def make_inv_bp(**kw):
    return InvertibleRule("BP", **kw)


__all__ = [
    "InvertibleRule",
    "gait_deltas_exact",
    "gait_deltas_original",
    "gait_targets",
    "output_target",
    "scaled_increment",
    "tp_deltas",
    "tp_targets",
]
