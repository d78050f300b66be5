r"""DFC's forward-weight updates and output target (Meulemans et al. 2021, Eqs. (5), (6)).

The output target (Eq. (6)) is the label with strong feedback, else a step of size
:math:`\lambda` down the loss: :math:`r^*_L = r^-_L - \lambda\,\partial_{r_L}(B\bar{\mathcal L})`.
The update (Eq. (5), ``nonlinear_difference``) is the time average over the simulation of the
somatic-basal mismatch times the layer's input, taken from the running sums the controller loop
accumulates (:func:`continuous_grads`); DFC-SS and DFC-SSA use the steady state alone
(:func:`ss_grads`).
"""
from __future__ import annotations


def output_target(xp, o, y, t, loss, dL_dy):
    """:math:`r^*_L` (Eq. (6)): the label (strong) or a small step down the loss (weak)."""
    if o.strong_feedback:
        return t
    return y - o.target_stepsize * y.shape[0] * dL_dy                # r- - lambda d(B L)/dr


def ss_grads(xp, net, st, x, rule):
    """DFC-SS: the update from the steady state only (sign of voltage_difference fixed)."""
    out, B = [], x.shape[0]
    for l in range(net.L):
        r_in = x if l == 0 else st.r[l - 1]
        dv = st.v[l] - st.v_ff[l]
        v_ff = r_in @ net.W[l].T + (net.b[l] if net.b[l] is not None else 0.0)
        if rule == "voltage_difference":
            delta = dv
        else:
            phi = net.phi[l]
            delta = phi.f(xp, v_ff + dv) - phi.f(xp, v_ff)
        gW = (-2.0 / B) * (delta.T @ r_in)
        out.append([gW] if net.b[l] is None else [gW, -2.0 * delta.mean(axis=0)])
    return out


def continuous_grads(net, st, B, T):
    """Eq. (5) from the running sums of the simulation."""
    c = -2.0 / (B * T)
    return [[c * st.A[l]] if net.b[l] is None else [c * st.A[l], c * st.Ab[l]]
            for l in range(net.L)]
