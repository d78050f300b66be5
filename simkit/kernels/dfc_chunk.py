r"""A chunk of DFC Euler steps as one Numba call: :func:`~simkit.kernels.dfc_fast.simulate_fast`'s
per-step work without the Python interpreter in between.

The steps are those of :func:`simkit.dynamics.controller.controller_step` (the reference; read
that one), in its order of operations, for the published networks' shape: tanh (or linear)
hidden layers and a linear (or tanh) output layer. Per step :math:`t`:

.. math::

    e &= r^*_L - r_L \ \text{(or } r^*_L - \mathrm{softmax}(r_L)\text{)}, \qquad
    u_{int} \leftarrow u_{int} + \Delta t\,(e - \alpha u), \quad u = u_{int} + k_p e
    \quad (4)\\
    c &= \bar Q u_c, \qquad v_{ff,l} = W_l r_{l-1} + b_l, \qquad
    v_{fb,l} \leftarrow v_{fb,l} + f_A (c_l - v_{fb,l}) + \text{noise}_l \quad (2)\\
    v_l &\leftarrow v_l + f_v (v_{fb,l} + v_{ff,l} - v_l), \qquad r_l = \phi(v_l) \quad (1)

with the fused layer pass :func:`layer_pass` (which ``simulate_fast``'s Python step calls too; its
constants from :func:`~simkit.kernels.dfc_fast._coefficients`) and the products as ``np.dot``
(BLAS, one thread). The rates go to the chunk's R buffers and the basal voltages to its VFF buffers
(or the state's ``v_ff`` when nothing learns forward), Eq. (13)'s factors :math:`v_{fb}[t]`,
:math:`u[t+1]` to its FB and U buffers; the sums over the chunk stay with ``simulate_fast``
(products over K*B rows, on the helper thread). It speeds up the forward phases
(``bench_dfc.py`` compares the two); the sleep phases keep the Python step, faster there.

:func:`usable` says when the kernel applies (NumPy backend with Numba, tanh/linear layers, at
least two layers, the noise as :class:`~simkit.dynamics.noise.LayerDraws`, not
``voltage_difference``, no low-pass on u); otherwise ``simulate_fast`` runs its Python step.
"""
from __future__ import annotations

import numpy as np

from simkit.backend import jit

ENABLED = True        # False: simulate_fast's Python step everywhere (benchmarks, tests)
ACT = {"linear": 0, "tanh": 1}

if jit.ENABLED:
    from simkit.kernels.vmath import tanh as vm_tanh


def control(r_L, target, u, u_int, u_old, e, dt, alpha, k_p, ce):
    """Eq. (4) in place (``u_old`` receives the previous u); e as ``controller.error``. Plain
    Python, compiled once below: this chunk kernel and :mod:`~simkit.kernels.dfc`'s Numba twin
    both call the compiled one."""
    B, m = r_L.shape
    for i in range(B):
        if ce:
            mx = r_L[i, 0]
            for j in range(1, m):
                mx = max(mx, r_L[i, j])
            s = 0.0
            for j in range(m):
                e[i, j] = np.exp(r_L[i, j] - mx)
                s += e[i, j]
            for j in range(m):
                e[i, j] = target[i, j] - e[i, j] / s
        else:
            for j in range(m):
                e[i, j] = target[i, j] - r_L[i, j]
        for j in range(m):
            u_old[i, j] = u[i, j]
            if k_p > 0:
                u_int[i, j] = u_int[i, j] + dt * (e[i, j] - alpha * u[i, j])
                u[i, j] = u_int[i, j] + k_p * e[i, j]
            else:
                u[i, j] = u[i, j] + dt * (e[i, j] - alpha * u[i, j])
                u_int[i, j] = u[i, j]


if jit.ENABLED:
    control = jit.njit(nogil=True, error_model="numpy", cache=True)(control)


def usable(xp, P, dyn, learn) -> bool:
    """Whether :func:`run` can take the steps (module docstring; the noise chunks must also be
    LayerDraws, which ``simulate_fast`` checks per chunk)."""
    return (ENABLED and jit.ENABLED and xp is np and len(P["W"]) >= 2
            and all(phi.name in ACT for phi in P["phi"])
            and learn.fw != "voltage_difference" and not dyn.lp_u
            and (learn.fw or not learn.fb))          # sleep phases: the Python step is faster


def run(F, P, dyn, learn, chunk, n, coefs):
    """Steps F.k .. F.k + n - 1 of the current chunk (``chunk``: its LayerDraws or None) with
    the kernel; ``coefs``: (L, 7), per layer :func:`~simkit.kernels.dfc_fast._coefficients`."""
    st, dtype = F.st, F.st.v[0].dtype
    if F.kernel_consts is None:                                   # once per simulation
        F.kernel_consts = (
            np.zeros((1, 1, 1), dtype=dtype),
            tuple(np.zeros(w.shape[0], dtype=dtype) if bl is None else bl
                  for w, bl in zip(P["W"], P["b"])),
            np.array(coefs, dtype=np.float64),                               # (L, 7)
            np.empty((st.v[0].shape[0], F.Qcat.shape[1]), dtype=dtype),     # Q u scratch
            np.array([ACT[p.name] for p in P["phi"]]))
    one, b, c, C, act = F.kernel_consts
    VFF = tuple(F.VFF) if F.VFF is not None else tuple(a[None] for a in st.v_ff)
    X = chunk.full if chunk is not None and dyn.noise != "none" else one
    fb = (2 if learn.fb == "highpass" else 1) if F.fb else 0
    ou = chunk is not None and dyn.noise == "ou"
    _steps(F.k, n, tuple(P["W"][1:]), b[1:], F.Qcat, P["v_ff1"], P["r_target"],
           tuple(st.v), tuple(st.v_fb), tuple(st.n) if ou else tuple(F.tmp), tuple(F.R), VFF,
           int(F.VFF is not None), X, F.bufs["FB"] if fb else one, F.bufs["U"] if fb else one,
           fb, learn.a_u, st.u, st.u_int, st.u_lp, act,
           c, dyn.dt, dyn.alpha, dyn.k_p, dyn.proactive, dyn.inst_transmission,
           dyn.error == "ce", C)


if jit.ENABLED:
    @jit.njit(nogil=True, error_model="numpy", cache=True)
    def layer_pass(C, co, X, xo, noisy, n, v_fb, v_ff, v, r, c, act):
        r"""One layer's step in one pass, in the reference's order, with the seven constants
        ``c`` = (keep_fb, f_A, a', b', s, keep_v, f_v) of
        :func:`~simkit.kernels.dfc_fast._coefficients`: :math:`n \leftarrow a'\xi + b'n` (if
        ``noisy``), :math:`v_{fb} \leftarrow k_{fb}v_{fb} + f_A(c - k_{fb}v_{fb}) + s n` (Eq. (2)
        and the noise), :math:`v \leftarrow k_v v + f_v(v_{fb} + v_{ff} - k_v v)` (Eq. (1)),
        :math:`r = \tanh v` (:mod:`vmath`'s; ``act`` 1) or :math:`r = v`. Here :math:`c` is
        C[:, co:] and :math:`\xi` X[:, xo:]: C-contiguous with an offset, so the inner loops
        have unit stride. One row at a time, three loops: each touches few enough arrays for
        LLVM's alias checks, so each one vectorises."""
        keep_fb, fA, a_ou, b_ou, s, keep_v, fv = c[0], c[1], c[2], c[3], c[4], c[5], c[6]
        B, m = v.shape
        for i in range(B):
            ni, fi, vi, ri, ffi = n[i], v_fb[i], v[i], r[i], v_ff[i]
            ci = C[i, co:co + m]
            if noisy:
                xi = X[i, xo:xo + m]
                for j in range(m):
                    ni[j] = a_ou * xi[j] + b_ou * ni[j]
            for j in range(m):
                f = keep_fb * fi[j]
                fi[j] = (f + fA * (ci[j] - f)) + s * ni[j]
            for j in range(m):
                w = keep_v * vi[j]
                vv = w + fv * ((fi[j] + ffi[j]) - w)
                vi[j] = vv
                ri[j] = vm_tanh(vv) if act == 1 else vv

    @jit.njit(nogil=True, error_model="numpy", cache=True)
    def _steps(k0, n, W, b, Qcat, vff1, target, v, v_fb, ns, R, VFF, vff_t, X, FB, U, fb, a_u,
               u, u_int, u_lp, act, coef, dt, alpha, k_p, proactive, inst, ce, C):
        """``n`` Euler steps from chunk position ``k0`` (see :func:`run`); ``ns``: the OU noise
        states, or zeroed scratch (white noise writes its draws there, none leaves it 0)."""
        L = len(v)
        u_old, e = np.empty_like(u), np.empty_like(u)
        for k in range(k0, k0 + n):
            control(R[L - 1][k], target, u, u_int, u_old, e, dt, alpha, k_p, ce)
            if fb:                                           # Eq. (13)'s factors, v_fb[t] u[t+1]
                o = 0
                for l in range(L):
                    FB[k, :, o:o + v_fb[l].shape[1]] = v_fb[l]
                    o += v_fb[l].shape[1]
                if fb == 2:
                    for i in range(u.shape[0]):
                        for j in range(u.shape[1]):
                            u_lp[i, j] = a_u * u[i, j] + (1.0 - a_u) * u_lp[i, j]
                            U[k, i, j] = u[i, j] - u_lp[i, j]
                else:
                    U[k] = u
            np.dot(u if proactive else u_old, Qcat, C)       # Q_l u, all layers
            o, noisy = 0, X.shape[2] > 1
            Xk = X[k] if noisy else X[0]
            for l in range(L):
                if l == 0:
                    vff = vff1
                else:
                    vff = VFF[l][k * vff_t]
                    rin = R[l - 1][k + 1] if inst else R[l - 1][k]
                    np.dot(rin, W[l - 1].T, vff)
                    bl = b[l - 1]
                    for i in range(vff.shape[0]):
                        for j in range(vff.shape[1]):
                            vff[i, j] += bl[j]
                layer_pass(C, o, Xk, o if noisy else 0, noisy, ns[l], v_fb[l], vff, v[l],
                           R[l][k + 1], coef[l], act[l])
                o += v[l].shape[1]
