r"""The DFC controller's Euler step, shared by the readable loop and its fast twins.

The equations, their symbols and the original's choices are written out in
:mod:`simkit.dynamics.controller` (read that module's docstring first); this module holds the
pieces that the readable loop (:func:`simkit.dynamics.controller.simulate_reference`) and the
twins (:mod:`simkit.kernels.dfc`, :mod:`simkit.kernels.dfc_fast`, :mod:`simkit.kernels.dfc_cuda`)
share: the settings (:class:`Dynamics`, :class:`Learning`), the state (:class:`State`), one step
(:func:`controller_step`: the controller, Eq. (4), then Eqs. (1)-(2) per layer) and the guard of
the options only the readable loop has (:func:`refuse_reference_only`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from simkit.errors import UserError
from simkit.kernels.xpmath import softmax

NOISE_CHUNK = 50   # Euler steps of noise drawn at once (bounded memory, same draws everywhere)


@dataclass(frozen=True)
class Dynamics:
    """Hyper-parameters of one controller simulation (the forward or the ``_fb`` set)."""

    dt: float
    T: int                         # stored time points t = 0..T-1 (T-1 Euler steps)
    tau_v: float                   # time_constant_ratio
    tau_A: float                   # apical_time_constant (-1 already replaced by dt)
    alpha: float
    k_p: float
    proactive: bool = True
    inst_transmission: bool = True
    inst_system: bool = False
    noise: str = "none"            # none | white | ou
    sigma: float = 0.0             # hidden layers
    sigma_out: float = 0.0         # output layer
    tau_noise: float = 0.8
    error: str = "mse"             # mse | ce
    lp_u: float = 0.0              # --low_pass_filter_u: EMA factor dt/tau_f (0: off)

    def check(self, what="--dt_di"):
        """Refuse an Euler step too large for its time constants (clear message, no clipping)."""
        if self.T < 2:
            raise UserError(f"the simulation needs at least 2 time points (tmax), got {self.T}")
        if not self.dt > 0:
            raise UserError(f"{what} must be positive, got {self.dt}")
        if not self.inst_system and self.dt > self.tau_v:
            raise UserError(f"{what}={self.dt:g} is larger than the neuron time constant "
                            f"time_constant_ratio={self.tau_v:g}: forward Euler would overshoot "
                            "(dt/tau_v > 1); use dt <= time_constant_ratio")
        if self.dt > self.tau_A:
            raise UserError(f"{what}={self.dt:g} is larger than the apical time constant "
                            f"{self.tau_A:g}: forward Euler would overshoot; use dt <= tau_A")
        if self.noise == "ou" and self.dt > self.tau_noise:
            raise UserError(f"{what}={self.dt:g} is larger than tau_noise={self.tau_noise:g}")
        if not 0.0 <= self.lp_u <= 1.0:
            raise UserError(f"{what}={self.dt:g} is larger than tau_f: --low_pass_filter_u needs "
                            "dt <= tau_f")
        if self.noise not in ("none", "white", "ou") or self.error not in ("mse", "ce"):
            raise UserError(f"unknown noise {self.noise!r} or error {self.error!r}")
        return self


@dataclass
class Learning:
    """What to accumulate: ``fw`` (None | nonlinear_difference | voltage_difference), ``fb``
    (None | plain | highpass), the high-pass factor ``a_u`` and where its low pass starts,
    ``lp_start``: "first" (the original's: at the first control u[1], so the first high-passed
    u is 0) or "zero" (:math:`u_{lp}[0] = 0`)."""

    fw: str | None = "nonlinear_difference"
    fb: str | None = None
    a_u: float = 0.0
    lp_start: str = "first"


@dataclass
class State:
    """Controller state and the running sums (per layer lists)."""

    v: list
    v_ff: list
    v_fb: list
    r: list
    n: list                        # OU noise state
    u: object
    u_int: object
    u_lp: object
    u_f: object = None             # low-passed control (--low_pass_filter_u)
    A: list = field(default_factory=list)   # forward sums (A[0] holds sum_t delta_1)
    Ab: list = field(default_factory=list)  # bias sums sum_t sum_batch delta_l
    C: list = field(default_factory=list)   # feedback sums


def controller_inputs(net, Q, cache, r_target, jacobian_fb=False, mask=None) -> dict:
    """``P``, what a simulation reads: the network's own per-layer lists (as
    :class:`~simkit.nn.mlp.MLP` holds them) ``W`` (n_l, n_{l-1}), ``b`` (n_l,) and ``phi``, the
    feedback weights ``Q`` (a list of (n_l, n_L)), the constant ``v_ff1`` = :math:`W_1 x + b_1`
    and the input ``x`` from the feed-forward ``cache``, the output target ``r_target``, and the
    reference loop's switches ``jacobian_fb`` and ``mask`` (B, 1) (None: all samples)."""
    P = {"W": net.W, "b": net.b, "Q": Q, "phi": net.phi, "v_ff1": cache.a[1], "x": cache.h[0],
         "r_target": r_target, "jacobian_fb": jacobian_fb}
    if mask is not None:
        P["mask"] = mask
    return P


def error(xp, dyn, r_target, r_L):
    """Control error :math:`e` (Eq. (6)): mse or the negative CE gradient (softmax)."""
    if dyn.error == "mse":
        return r_target - r_L
    return r_target - softmax(xp, r_L)


def init_state(xp, v_ff0, r0, n_out, learn, dtype):
    """The state at t = 0 from the feed-forward pass (``v_ff0``, ``r0`` per layer)."""
    B = v_ff0[0].shape[0]
    z = lambda *s: xp.zeros(s, dtype=dtype)   # noqa: E731
    st = State(v=[a.copy() for a in v_ff0], v_ff=[a.copy() for a in v_ff0],
               v_fb=[xp.zeros_like(a) for a in v_ff0], r=[h.copy() for h in r0],
               n=[xp.zeros_like(a) for a in v_ff0], u=z(B, n_out), u_int=z(B, n_out),
               u_lp=z(B, n_out))
    return st


def jacobian_blocks(xp, W, phi, v, r):
    r""":math:`J_l = \partial r_L / \partial v_l` per sample at the state (``v``, ``r``), blocks
    (B, n_L, n_l): :math:`J_L = \mathrm{diag}\,\phi_L'`,
    :math:`J_l = J_{l+1} W_{l+1} \mathrm{diag}\,\phi_l'`."""
    L = len(W)
    d = [phi[l].df(xp, v[l], r[l]) for l in range(L)]
    B, nL = r[-1].shape
    J = [None] * L
    J[-1] = xp.broadcast_to(xp.eye(nL, dtype=r[-1].dtype), (B, nL, nL)) * d[-1][:, None, :]
    for l in range(L - 2, -1, -1):
        J[l] = (J[l + 1] @ W[l + 1]) * d[l][:, None, :]
    return J


def feedback_input(P, u, J=None):
    r"""The apical input per layer (Eq. (2)): :math:`Q_l u`, or :math:`J_l^\top u` per sample
    when the Jacobian blocks ``J`` stand in for the feedback weights."""
    if J is None:
        return [u @ q.T for q in P["Q"]]
    return [(u[:, None, :] @ Jl)[:, 0, :] for Jl in J]


def controller_step(xp, st, P, dyn, learn, xi=None):
    """One Euler step t -> t+1 of the loop above, in place on ``st``; accumulates the sums.

    ``P``: dict with ``W``, ``b``, ``Q``, ``phi`` (lists), ``v_ff1`` (= W_1 x + b_1, constant),
    ``x`` and ``r_target``; optional ``jacobian_fb`` and ``mask`` (see above). ``xi``: per-layer
    standard-normal draws (None: no noise).
    """
    L = len(P["W"])
    J = jacobian_blocks(xp, P["W"], P["phi"], st.v, st.r) if P.get("jacobian_fb") else None
    u_c = controller_update(xp, st, P, dyn, learn)
    dt = dyn.dt
    r_prev = [P["x"]] + list(st.r)
    fb_in = feedback_input(P, u_c, J)
    for l in range(L):
        rin = st.r[l - 1] if (dyn.inst_transmission and l > 0) else r_prev[l]
        st.v_ff[l] = P["v_ff1"] if l == 0 else basal(P, l, rin)           # Eq. (1)
        c = fb_in[l]
        st.v_fb[l] = st.v_fb[l] + (dt / dyn.tau_A) * (c - st.v_fb[l])   # Eq. (2)
        if xi is not None:
            st.v_fb[l] = st.v_fb[l] + noise_term(dyn, st, l, L, xi[l])
        if dyn.inst_system:
            st.v[l] = st.v_fb[l] + st.v_ff[l]
        else:
            st.v[l] = st.v[l] + (dt / dyn.tau_v) * (st.v_fb[l] + st.v_ff[l] - st.v[l])  # Eq. (1)
        st.r[l] = P["phi"][l].f(xp, st.v[l])
    if learn.fw:
        accumulate_forward(xp, st, P, learn)


def controller_update(xp, st, P, dyn, learn, record=None):
    """The PI controller's step (Eq. (4)) and the feedback sums (Eq. (13)); returns the u
    that the layers receive (the new one if ``proactive``). ``record(v_fb, u_fb)``: hand this
    step's Eq. (13) factors to the caller (chunked sums) instead of adding them here."""
    dt, L = dyn.dt, len(P["W"])
    e = error(xp, dyn, P["r_target"], st.r[-1])
    u_old = st.u
    if dyn.k_p > 0:
        st.u_int = st.u_int + dt * (e - dyn.alpha * u_old)              # Eq. (4), leak on total u
        st.u = st.u_int + dyn.k_p * e
    else:
        st.u = u_old + dt * (e - dyn.alpha * u_old)
        st.u_int = st.u
    u_c = st.u if dyn.proactive else u_old
    if dyn.lp_u:
        u_c = low_passed_control(xp, st, dyn)
    if learn.fb:
        u_fb = st.u
        if learn.fb == "highpass":
            st.u_lp = learn.a_u * st.u + (1.0 - learn.a_u) * st.u_lp
            u_fb = st.u - st.u_lp
        if record is not None:
            record(st.v_fb, u_fb)
            return u_c
        m = P.get("mask")
        for l in range(L):
            v_fb = st.v_fb[l] if m is None else st.v_fb[l] * m
            st.C[l] += v_fb.T @ u_fb                          # Eq. (13): v_fb[t] u[t+1]^T
    return u_c


def low_passed_control(xp, st, dyn):
    """``--low_pass_filter_u``: advance :math:`u_f` (starts at the first u) and return the one the
    layers receive, the new :math:`u_f` if ``proactive``, else the previous (0 at t = 0)."""
    old = st.u_f
    st.u_f = st.u.copy() if old is None else dyn.lp_u * st.u + (1.0 - dyn.lp_u) * old
    if dyn.proactive:
        return st.u_f
    return xp.zeros_like(st.u) if old is None else old


def basal(P, l, r_in):
    """:math:`v_{ff,l} = W_l r_{l-1} + b_l` (Eq. (1))."""
    v = r_in @ P["W"][l].T
    return v if P["b"][l] is None else v + P["b"][l]


def noise_term(dyn, st, l, L, xi_l):
    """The noise added to v_fb of layer ``l`` (white or OU, §1.6)."""
    sigma = dyn.sigma_out if l == L - 1 else dyn.sigma
    if dyn.noise == "white":
        return (sigma * math.sqrt(dyn.dt) / dyn.tau_A) * xi_l
    a = dyn.dt / dyn.tau_noise
    st.n[l] = (a / math.sqrt(dyn.dt)) * xi_l + (1.0 - a) * st.n[l]
    return sigma * st.n[l]


def accumulate_forward(xp, st, P, learn):
    """Add this time point's term of Eq. (5) to the running sums."""
    m = P.get("mask")
    for l in range(len(st.r)):
        if learn.fw == "voltage_difference":
            delta = st.v[l] - st.v_ff[l]
        else:
            delta = st.r[l] - P["phi"][l].f(xp, st.v_ff[l])            # Eq. (5)
        if m is not None:
            delta = delta * m
        if l == 0:
            st.A[0] += delta                                            # sum_t delta_1 (x is fixed)
        else:
            st.A[l] += delta.T @ st.r[l - 1]
        st.Ab[l] += delta.sum(axis=0)


def needs_reference(dyn, P) -> bool:
    """Whether the simulation asks for an option only the readable loop has (``lp_u``,
    ``jacobian_fb``, ``mask``); the Numba and fast twins refuse those."""
    return bool(dyn.lp_u or P.get("jacobian_fb") or P.get("mask") is not None)


def refuse_reference_only(dyn, P, who):
    """The twins' guard: an option they would silently ignore is an error."""
    if needs_reference(dyn, P):
        raise ValueError(f"{who} has no low-pass control, Jacobian feedback or sample mask; "
                         "use simulate_reference")


def lowpass_start(xp, P, r0, dyn, learn):
    r""":math:`u_{lp}` at t = 0, None for zeros. The original high-passes u[1:] with a low pass
    that starts at u[1]; here the low pass runs from the first step on, so starting it at
    :math:`u[1]` gives :math:`u_{lp}[1] = a_u u[1] + (1-a_u) u[1] = u[1]`. From t = 0
    (:math:`u = u_{int} = 0`, :math:`e = e(r^-_L)`) Eq. (4) gives :math:`u_{int}[1] = \Delta t\,e`
    and :math:`u[1] = u_{int}[1] + k_p e` (:math:`\Delta t\,e` without the proportional term)."""
    if learn.fb != "highpass" or learn.lp_start == "zero":
        return None
    if learn.lp_start != "first":
        raise UserError(f"lp_start must be first or zero, got {learn.lp_start!r}")
    e = error(xp, dyn, P["r_target"], r0[-1])
    return dyn.dt * e + dyn.k_p * e if dyn.k_p > 0 else dyn.dt * e


def start(xp, P, v_ff0, r0, dyn, learn, dtype):
    """Initial state with zeroed running sums."""
    W, n_out = P["W"], P["Q"][0].shape[1]
    st = init_state(xp, v_ff0, r0, n_out, learn, dtype)
    u_lp = lowpass_start(xp, P, r0, dyn, learn)
    if u_lp is not None:
        st.u_lp = u_lp.astype(dtype)
    st.A = [xp.zeros_like(v_ff0[0])] + [xp.zeros(w.shape, dtype=dtype) for w in W[1:]]
    st.Ab = [xp.zeros(w.shape[0], dtype=dtype) for w in W]
    st.C = [xp.zeros(q.shape, dtype=dtype) for q in P["Q"]]
    return st
