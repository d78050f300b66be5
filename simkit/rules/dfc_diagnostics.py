r"""The diagnostics the original DFC code records (research note §1.10), on one minibatch.

Meulemans et al. 2021 / 2022, as ``mariacer/strong_dfc`` computes them on each epoch's last
minibatch: condition 2 (DFC Eq. (12)); per layer the angle between the DFC update and BP's
gradient, the minimum-norm Gauss-Newton step, the DFC-SSA update (``--save_ndi_angle``) and the
gradient of Strong-DFC's surrogate :math:`\mathcal H` (``--save_H_angle``; ``angle_H`` also
over all layers' weights together, as the original's total); ``ratio_ff_fb``, the apical input
:math:`\bar Q_l u` over the basal :math:`W_l r_{l-1}` at the last state (``--save_ratio_ff_fb``;
per layer and their mean); ``dist_to_ndi`` (``--compare_with_ndi``),
:math:`\|r_L - r_L^{ssa}\| / \|r^-_L - r_L^{ssa}\|` for the simulated output :math:`r_L` at the
last time point. The maths of each is in :mod:`simkit.rules.dfc_feedback`; J is taken at the
feed-forward state, as the original's is.
"""
from __future__ import annotations

from simkit.rules import dfc_feedback as fbk
from simkit.rules.bp import bp_deltas
from simkit.rules.common import grads_from_deltas
from simkit.rules.dfc_updates import ss_grads


def diagnose(xp, net, cache, dL_dy, r_t, g, st, fb_in, Q, dyn, o) -> dict:
    """The diagnostics above as ``{name: value}`` (``name/layer`` per layer, layers from 1) for
    the minibatch's feed-forward ``cache``, loss gradient ``dL_dy``, output target ``r_t``, DFC
    update ``g``, final controller state ``st`` and apical inputs ``fb_in`` (rule options ``o``)."""
    J = fbk.jacobians(xp, net, cache)
    out = {"condition_2": fbk.condition_two(xp, J, Q)}
    g_bp = grads_from_deltas(net, cache, bp_deltas(net, cache, dL_dy))
    dv = fbk.gn_delta_v(xp, J, r_t - cache.y)
    ssa = fbk.ssa_state(xp, net, cache, Q, r_t, dyn, J, jacobian_fb=o.use_jacobian_as_fb)
    g_ssa = ss_grads(xp, net, ssa, cache.h[0], o.learning_rule)
    gap = float(xp.linalg.norm(cache.y - ssa.r[-1]))
    out["dist_to_ndi"] = float(xp.linalg.norm(st.r[-1] - ssa.r[-1])) / max(gap, 1e-300)
    g_H = fbk.h_grads(xp, J, Q, st.u, dyn.alpha, cache.h)
    ratio = fbk.ratio_ff_fb(xp, net.W, fb_in, [cache.h[0], *st.r[:-1]])
    out["ratio_ff_fb"] = sum(ratio) / net.L
    for l in range(net.L):
        out[f"ratio_ff_fb/{l + 1}"] = ratio[l]
        g_gn = -(dv[l].T @ cache.h[l])
        out[f"angle_bp/{l + 1}"] = fbk.angle_deg(xp, g[l][0], g_bp[l][0])
        out[f"angle_gn/{l + 1}"] = fbk.angle_deg(xp, g[l][0], g_gn)
        out[f"angle_ndi/{l + 1}"] = fbk.angle_deg(xp, g[l][0], g_ssa[l][0])
        out[f"angle_H/{l + 1}"] = fbk.angle_deg(xp, g[l][0], g_H[l])
    out["angle_H"] = fbk.angle_deg(xp, xp.concatenate([gl[0].ravel() for gl in g]),
                                   xp.concatenate([gh.ravel() for gh in g_H]))
    return out
