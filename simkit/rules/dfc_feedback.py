r"""DFC feedback weights: initialisation, anti-Hebbian learning, and the diagnostics built on J.

Meulemans et al. 2021 (arXiv 2106.07887, Sec. 4 "Learning the feedback weights", Eq. (13)) and
Meulemans et al. 2022 (arXiv 2204.07249, Sec. 4); as the original codes it (research note §1.9).

Feedback learning
-----------------
The controller runs with noise :math:`\xi` on the apical compartments; the feedback update pairs
each layer's apical voltage at :math:`t` with the control at :math:`t+1`:

.. math::

    g_{Q_l} = \frac{s_l}{(T-1)B}\sum_{t=0}^{T-2} v_{fb,l}[t]^\top \tilde u[t+1], \qquad
    s_l = \frac{k_l}{\max(\sigma_l, 0.01)^2}, \qquad
    k_l = \Big(1 + \frac{\tau_v}{\tau_{noise}}\Big)^{L-l}\ (\text{--scaling\_fb\_updates, else } 1)  \quad (13)

and the optimiser steps *against* :math:`g_Q` (:math:`\Delta Q \propto -v_{fb}u^\top`,
anti-Hebbian); its coupled L2 weight decay (``weight_decay_fb``) is the homeostatic term.
:math:`\tilde u = u` in the two-phase "sleep" simulation (target :math:`r^-_L`, or the label with
strong feedback); in the single phase it is the high-passed :math:`u - u_{lp}`. The floor 0.01 on
:math:`\sigma` is the original's and sets the effective learning rate, so it stays.

Initialisation: hidden :math:`Q_l` from ``initialization_fb`` (:math:`n_l \times n_L`),
:math:`Q_L = I`; ``weight_product``: :math:`Q_l = \prod_{j>l} W_j^\top` (+ N(0, sigma_init^2)).

Diagnostics
-----------
:math:`J_b` (n_L x N): Jacobian of :math:`r_L` w.r.t. all layers' voltages at the feed-forward
state, :math:`J_L = \mathrm{diag}\,\phi_L'`, :math:`J_l = J_{l+1} W_{l+1}\mathrm{diag}\,\phi_l'`.
Condition 2 (GN condition, DFC Eq. (12)): :math:`\|J^\top(JJ^\top)^{-1}J\bar Q\|_F/\|\bar Q\|_F`,
batch mean. The minimum-norm Gauss-Newton step is :math:`\Delta v = J^\top(JJ^\top)^{-1}\delta_L`;
DFC-SSA's linearised steady state is :math:`u = (J\bar Q + \alpha I)^{-1}\delta_L`
(:func:`ssa_state`). The surrogate loss of Strong-DFC (2022, Sec. 4) is
:math:`\mathcal H = \tfrac12\|\bar Q u_{ss}\|^2`; with :math:`u_{ss} = (J\bar Q + \alpha I)^{-1}
\delta_L`, :math:`\delta_L = r^*_L - r_L` and J held fixed, :math:`\partial\delta_L/\partial v = -J`,
so its gradient (the original's ``compute_H_update``, :func:`h_grads`) is

.. math::

    \frac{\partial\mathcal H}{\partial W_l} = -\frac1B\sum_b
    \big[u_b^\top\bar Q^\top\bar Q\,(J_b\bar Q + \alpha I)^{-1}J_b\big]_l^\top r_{l-1,b}^\top .

With :math:`\bar Q = J^\top` and :math:`\alpha \to 0` the bracket is :math:`u^\top J`, so
:math:`-\partial\mathcal H/\partial W_l = Q_l u\, r_{l-1}^\top`: the DFC update descends
:math:`\mathcal H`.
The ratio of feedback to feed-forward drive (``--save_ratio_ff_fb``, :func:`ratio_ff_fb`) is
:math:`\frac1B\sum_b \|\bar Q_l u_b\| / \|W_l r_{l-1,b}\|` at the last control and state.
J is taken at the feed-forward state :math:`v^-`, as the original's is (``compute_full_jacobian``
reads the layers' low-passed voltages, which only its forward pass sets unless
``use_jacobian_as_fb``), not at the controlled steady state the paper writes :math:`J_{ss}` for.
Deviation: the original's ratio (its docstring: "the current feedforward and feedback
stimulus") divides by :math:`\|r_l^\top W_l\|` for l > 1 (the layer's own rate, W not
transposed), reads the feed-forward rates, and never reaches its output, as it writes to
DataFrames it never creates; simkit's basal drive is the one at the same (last) time point as u.
"""
from __future__ import annotations

import numpy as np

from simkit.dynamics.controller import State, error, feedback_input, jacobian_blocks
from simkit.nn.init import init_weights
from simkit.optim import clip_grads, make_optimizer


def init_Q(rng, net, method="xavier_normal", sigma_init=0.0) -> list:
    """Host feedback weights :math:`Q_l` (n_l, n_L), hidden layers first, :math:`Q_L = I`."""
    n_out, L = net.sizes[-1], net.L
    if method == "weight_product":
        Ws = [net.bk.to_host(W).astype(float) for W in net.W]
        Q, prod = [None] * L, np.eye(n_out)
        for l in range(L - 1, -1, -1):
            Q[l] = prod.copy()
            prod = Ws[l].T @ prod                                   # prod_{j>=l} W_j^T
        if sigma_init:
            Q = [q + rng.normal(0.0, sigma_init, size=q.shape) for q in Q]
        return Q
    Q = [init_weights(rng, (n, n_out), method) for n in net.sizes[1:-1]]
    return Q + [np.eye(net.sizes[-1], n_out)]


def fb_scales(sigmas, L, scaling, tau_v, tau_noise) -> list:
    """:math:`s_l = k_l / \\max(\\sigma_l, 0.01)^2` of Eq. (13)."""
    out = []
    for l in range(L):
        k = (1.0 + tau_v / tau_noise) ** (L - 1 - l) if scaling else 1.0
        out.append(k / max(sigmas[l], 0.01) ** 2)
    return out


def make_fb_optimizer(bk, Q, o, lr):
    """An optimiser over ``[[Q_1], ..., [Q_L]]`` with the ``_fb`` options ``o``."""
    name = o.optimizer_fb.lower()
    kw = {"lr": lr, "weight_decay": o.weight_decay_fb}
    if name == "sgd":
        kw["momentum"] = o.momentum_fb
    elif name == "adam":
        kw.update(beta1=o.adam_beta1_fb, beta2=o.adam_beta2_fb, eps=o.adam_epsilon_fb)
    elif name == "rmsprop":
        kw["eps"] = o.adam_epsilon_fb
    return make_optimizer(name, bk, [[q] for q in Q], **kw)


def step_Q(bk, opt, Q, C, scales, T, B, clip, train_output=True):
    """Eq. (13) from the running sums ``C``; clip per layer, step ``opt``. Returns the grads."""
    grads = [[(s / ((T - 1) * B)) * c] for s, c in zip(scales, C)]
    if not train_output:
        grads[-1] = None
    clip_grads(bk, grads, clip, "per_layer")
    opt.step([[q] for q in Q], grads)
    return grads


def jacobians(xp, net, cache):
    """Per-sample :math:`J_b` at the feed-forward state as a list of blocks (B, n_L, n_l)."""
    return jacobian_blocks(xp, net.W, net.phi, cache.a[1:], cache.h[1:])


def condition_two(xp, J, Q) -> float:
    """Batch mean of :math:`\\|J^\\top(JJ^\\top)^{-1}J\\bar Q\\|_F / \\|\\bar Q\\|_F`."""
    Jf = xp.concatenate(J, axis=2)                                   # (B, n_L, N)
    Qb = xp.concatenate(Q, axis=0)                                   # (N, n_L)
    JQ = Jf @ Qb
    proj = xp.swapaxes(Jf, 1, 2) @ xp.linalg.solve(Jf @ xp.swapaxes(Jf, 1, 2), JQ)
    ratio = xp.sqrt((proj ** 2).sum(axis=(1, 2))) / xp.sqrt((Qb ** 2).sum())
    return float(ratio.mean())


def gn_delta_v(xp, J, delta_L) -> list:
    """Minimum-norm Gauss-Newton step per layer: :math:`J^\\top (JJ^\\top)^{-1}\\delta_L`."""
    Jf = xp.concatenate(J, axis=2)
    w = xp.linalg.solve(Jf @ xp.swapaxes(Jf, 1, 2), delta_L[:, :, None])   # (B, n_L, 1)
    return [(xp.swapaxes(Jl, 1, 2) @ w)[:, :, 0] for Jl in J]


def h_grads(xp, J, Q, u, alpha, h) -> list:
    """:math:`\\partial\\mathcal H/\\partial W_l` per layer (module docstring) for the control
    ``u`` (B, n_L) and the layers' inputs ``h`` (:math:`r_0 = x, r_1, ...`)."""
    Jf, Qb = xp.concatenate(J, axis=2), xp.concatenate(Q, axis=0)           # (B, n_L, N), (N, n_L)
    M = Jf @ Qb + alpha * xp.eye(Qb.shape[1], dtype=Qb.dtype)              # J Q + alpha I
    a = (u @ Qb.T) @ Qb                                                   # u^T Q^T Q, (B, n_L)
    w = xp.linalg.solve(xp.swapaxes(M, 1, 2), a[:, :, None])             # (M^T)^-1 a = (a^T M^-1)^T
    B = u.shape[0]
    return [-(xp.swapaxes(Jl, 1, 2) @ w)[:, :, 0].T @ h[l] / B for l, Jl in enumerate(J)]


def ratio_ff_fb(xp, W, fb_in, r_in) -> list:
    """Per layer, the batch mean of :math:`\\|\\bar Q_l u_b\\| / \\|W_l r_{l-1,b}\\|`:
    ``fb_in[l]`` the apical input :math:`\\bar Q_l u` (B, n_l), ``r_in[l]`` the layer's
    input rate :math:`r_{l-1}` (B, n_{l-1}), with :math:`r_0 = x`."""
    return [float((xp.linalg.norm(a, axis=1) / xp.linalg.norm(r @ w.T, axis=1)).mean())
            for w, a, r in zip(W, fb_in, r_in)]


def ssa_state(xp, net, cache, Q, r_target, dyn, J=None, jacobian_fb=False):
    r"""DFC-SSA (``--ssa``, research note §1.7): the linearised controller's steady state.

    With :math:`J` the Jacobian of :math:`r_L` to every layer's voltage at the feed-forward
    state and :math:`\bar Q` the stacked feedback weights, the linear controller settles where
    :math:`e = \alpha u` and :math:`e = \delta_L - J\bar Q u`:

    .. math::  u_{ss} = (J\bar Q + \alpha I)^{-1}\delta_L, \qquad
               \Delta v_l = Q_l u_{ss}, \qquad
               v_l = W_l r_{l-1} + b_l + \Delta v_l,\ r_l = \phi(v_l)

    (rates recomputed layer by layer from the target rates below, :math:`r_0 = x`). The state
    feeds :func:`simkit.rules.dfc.ss_grads`, as DFC-SS does. The original solves with
    ``torch.solve``, removed in torch 2, so its ``--ssa`` no longer runs; this is the formula it
    codes. ``J``: the per-layer blocks of :func:`jacobians`, when the caller has them.
    ``jacobian_fb`` (``--use_jacobian_as_fb``): :math:`\bar Q := J^\top` per sample, so
    :math:`u_{ss} = (JJ^\top + \alpha I)^{-1}\delta_L` and :math:`\Delta v_l = J_l^\top u_{ss}`.
    """
    Jb = jacobians(xp, net, cache) if J is None else J
    J = xp.concatenate(Jb, axis=2)                                      # (B, n_L, N)
    JQ = J @ (xp.swapaxes(J, 1, 2) if jacobian_fb else xp.concatenate(Q, axis=0))  # (B, n_L, n_L)
    JQ += dyn.alpha * xp.eye(JQ.shape[1], dtype=JQ.dtype)
    delta = error(xp, dyn, r_target, cache.y)                           # delta_L = e(r*, r-)
    u = xp.linalg.solve(JQ, delta[:, :, None])[:, :, 0]                 # u_ss
    st = State(v=[], v_ff=[], v_fb=[], r=[], n=[], u=u, u_int=u, u_lp=None)
    fb_in = feedback_input({"Q": Q}, u, Jb if jacobian_fb else None)
    r = cache.h[0]
    for l in range(net.L):
        st.v_ff.append(r @ net.W[l].T + (net.b[l] if net.b[l] is not None else 0.0))
        st.v_fb.append(fb_in[l])                                        # Delta v_l = Q_l u_ss
        st.v.append(st.v_ff[l] + st.v_fb[l])
        r = net.phi[l].f(xp, st.v[l])
        st.r.append(r)
    return st


def angle_deg(xp, a, b) -> float:
    """Angle in degrees between two arrays seen as vectors."""
    a, b = a.ravel(), b.ravel()
    c = float(xp.vdot(a, b)) / (float(xp.linalg.norm(a)) * float(xp.linalg.norm(b)) + 1e-300)
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


class SplitInputs:
    """The run's training split, as the feedback ("sleep") epochs draw minibatches from it."""

    def __init__(self, bk, split):
        self.bk, self.split = bk, split

    def __len__(self):
        return len(self.split)

    def batch(self, idx):
        """Device ``(x, t)`` of the training samples ``idx`` (host integer array)."""
        j = idx if self.bk.name != "cupy" else self.bk.xp.asarray(idx)
        return self.split.x[j], self.split.t[j]
