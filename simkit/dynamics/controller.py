r"""The DFC controller loop: a PI controller driving every layer, integrated by forward Euler.

Meulemans, Tristany Farinha, Garcia Ordonez, Vilimelis Aceituno, Sacramento, Grewe (2021),
"Credit Assignment in Neural Networks through Deep Feedback Control", NeurIPS 2021,
arXiv 2106.07887; Meulemans, Tristany Farinha, Cervera, Sacramento, Grewe (2022), "Minimizing
Control for Credit Assignment with Strong Feedback", ICML 2022, arXiv 2204.07249.

Dynamics (DFC paper Eqs. (1)-(4), (6); as the original codes them, research note §1.5)
--------------------------------------------------------------------------------------
Layers :math:`l = 1..L`, input :math:`r_0 = x` clamped, :math:`\bar Q` the stack of the
:math:`Q_l`. At :math:`t = 0`: :math:`v_l = v_{ff,l} = v^-_l`, :math:`v_{fb,l} = 0`,
:math:`u = u_{int} = 0`. Each Euler step :math:`t \to t+1`, with :math:`e = e(r_L[t])`:

.. math::

    e &= r^*_L - r_L \quad(\text{mse}) \quad\text{or}\quad r^*_L - \mathrm{softmax}(r_L)
        \quad(\text{ce, strong feedback})                                       && (6)\\
    u_{int} &\leftarrow u_{int} + \Delta t\,(e - \alpha u), \qquad
        u \leftarrow u_{int} + k_p e                                            && (4)\\
    v_{ff,l} &= W_l r_{l-1} + b_l                                               && (1)\\
    v_{fb,l} &\leftarrow v_{fb,l} + \tfrac{\Delta t}{\tau_A}(Q_l u - v_{fb,l}) + \text{noise} && (2)\\
    v_l &\leftarrow v_l + \tfrac{\Delta t}{\tau_v}(v_{fb,l} + v_{ff,l} - v_l), \qquad r_l = \phi_l(v_l) && (1)

The leak uses the *total* :math:`u`, as the original does (its docstring says :math:`u_{int}`).
With :math:`k_p = 0` the controller is pure integral: :math:`u \leftarrow u + \Delta t(e-\alpha u)`.
``proactive``: :math:`Q_l` multiplies the new :math:`u`; else the old one. ``inst_transmission``:
layers update in order :math:`l = 1..L` from the already-updated :math:`r_{l-1}`; else all from the
previous step's rates. ``inst_system``: :math:`v_l = v_{fb,l} + v_{ff,l}`.

Options of the original that no published command uses (reference loop only):
``lp_u`` (``--low_pass_filter_u``): the layers receive :math:`u_f`, an exponential moving average
of :math:`u` with factor :math:`a = \Delta t/\tau_f` that starts at the first control,
:math:`u_f[1] = u[1]`, :math:`u_f[t+1] = a\,u[t+1] + (1-a)\,u_f[t]` (:math:`u_f[0] = 0`); the
feedback sums keep the raw :math:`u`. ``P["jacobian_fb"]`` (``--use_jacobian_as_fb``): the
apical input is :math:`J_l(t)^\top u` per sample instead of :math:`Q_l u`, with :math:`J(t)` the
Jacobian of :math:`r_L` to the voltages at the state before the step (:func:`jacobian_blocks`).
``P["mask"]`` (B, 1): per-sample weights on every running sum (``--include_only_converged_samples``
zeroes the non-converged samples' terms, as the original's reset to the feed-forward state does).

Noise on :math:`v_{fb}` (§1.6), :math:`\xi \sim N(0, I)` drawn outside the loop:
white :math:`\sigma_l\sqrt{\Delta t}/\tau_A\,\xi`; Ornstein-Uhlenbeck ("low-pass")
:math:`n_l \leftarrow (a/\sqrt{\Delta t})\xi + (1-a) n_l`, :math:`a = \Delta t/\tau_{noise}`,
then :math:`\sigma_l n_l`. :math:`\sigma_l = \sigma` for hidden layers, :math:`\sigma_{out}` for the output.

Time-averaged updates, accumulated as the loop runs (no trajectories stored)
-----------------------------------------------------------------------------
Forward (Eq. (5) of the DFC paper, ``nonlinear_difference``), over all :math:`T` stored points
(:math:`\delta_l[0] = 0` counts in :math:`T`):

.. math::

    \delta_l[t] = \phi(v_l[t]) - \phi(v_{ff,l}[t]), \qquad
    A_l = \textstyle\sum_t \delta_l[t]^\top r_{l-1}[t], \qquad
    A_1 = \big(\sum_t \delta_1[t]\big)^\top x

(``voltage_difference``: :math:`\delta = v - v_{ff}`). The rule scales :math:`A_l` by
:math:`-2/(BT)`. Feedback (DFC Eq. (13), anti-Hebbian; §1.9): :math:`C_l = \sum_{t=0}^{T-2}
v_{fb,l}[t]^\top \tilde u[t+1]`, with :math:`\tilde u = u` (sleep phase) or the high-passed
:math:`u - u_{lp}`, :math:`u_{lp} \leftarrow a_u u + (1-a_u) u_{lp}` (single phase), whose low pass
starts at the first control, :math:`u_{lp}[1] = u[1]`, as the original's filter of u[1:] does
(:func:`lowpass_start`).

Symbols and shapes: ``W[l]`` (n_l, n_{l-1}), ``b[l]`` (n_l,), ``Q[l]`` (n_l, n_L), ``u`` (B, n_L),
``v, v_ff, v_fb, r`` per layer (B, n_l). Deviations from the original: :math:`W_1 x` is computed
once; updates are accumulated online (exact up to summation order); a step with
:math:`\Delta t > \tau_v` or :math:`\Delta t > \tau_A` is refused instead of clipped.

Code: the step and the settings live in :mod:`simkit.kernels.dfc_step` (shared with the fast
twins, which sit below this module) and are imported here; this module adds the readable loop
(:func:`simulate_reference`) and the per-sample checks of the DFC rule.
"""
from __future__ import annotations

from simkit.kernels.dfc_step import (
    NOISE_CHUNK,
    Dynamics,
    Learning,
    State,
    accumulate_forward,
    basal,
    controller_inputs,
    controller_step,
    controller_update,
    error,
    feedback_input,
    init_state,
    jacobian_blocks,
    low_passed_control,
    lowpass_start,
    needs_reference,
    noise_term,
    refuse_reference_only,
    start,
)
from simkit.kernels.xpmath import log_softmax

__all__ = ["NOISE_CHUNK", "Dynamics", "Learning", "State", "accumulate_forward", "basal",
           "controller_inputs", "controller_step", "controller_update", "error",
           "feedback_input", "init_state", "jacobian_blocks", "low_passed_control",
           "lowpass_start", "needs_reference", "noise_term", "refuse_reference_only",
           "sample_loss", "simulate_reference", "start", "to_feedforward"]


def sample_loss(xp, dyn, r_target, r_L):
    r"""Per-sample loss the original checks convergence with: :math:`\|r^* - r_L\|_2` (mse) or
    :math:`-\sum_k r^*_k \log\mathrm{softmax}(r_L)_k` (ce)."""
    if dyn.error == "mse":
        return xp.sqrt(((r_target - r_L) ** 2).sum(axis=1))
    return -(r_target * log_softmax(xp, r_L)).sum(axis=1)


def to_feedforward(xp, st, ok, cache):
    """Samples not ``ok`` back to their feed-forward state (v = v_ff = v-, r = r-, v_fb = 0,
    u = 0; ``cache`` holds v- and r-), as the original's ``include_only_converged_samples`` sets
    them after the simulation."""
    keep = ok[:, None]
    for l in range(len(st.r)):
        st.v[l] = xp.where(keep, st.v[l], cache.a[l + 1])
        st.v_ff[l] = xp.where(keep, st.v_ff[l], cache.a[l + 1])
        st.r[l] = xp.where(keep, st.r[l], cache.h[l + 1])
        st.v_fb[l] = xp.where(keep, st.v_fb[l], 0.0)
    st.u = xp.where(keep, st.u, 0.0)


def simulate_reference(xp, P, v_ff0, r0, dyn, learn, noise=None, record=None, dtype=None):
    """Run the T-1 Euler steps with the readable step above; returns the final :class:`State`.

    ``noise(t0, t1)`` returns per-layer draws of shape (t1-t0, B, n_l) for steps t0..t1-1 (the
    same chunks the Numba kernel consumes); ``record(t, st)`` is called after every step.
    """
    dtype = dtype or v_ff0[0].dtype
    st = start(xp, P, v_ff0, r0, dyn, learn, dtype)
    chunk = None
    for t in range(dyn.T - 1):
        xi = None
        if noise is not None and dyn.noise != "none":
            if t % NOISE_CHUNK == 0:
                chunk = noise(t, min(t + NOISE_CHUNK, dyn.T - 1))
            xi = [c[t % NOISE_CHUNK] for c in chunk]
        controller_step(xp, st, P, dyn, learn, xi)
        if record is not None:
            record(t + 1, st)
    st.A[0] = st.A[0].T @ P["x"]                                        # (sum_t delta_1)^T x
    return st
