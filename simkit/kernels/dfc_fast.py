r"""The DFC controller loop with NumPy (or CuPy) array calls, fewer of them than the reference.

:func:`simulate_fast` runs the steps of :func:`simkit.dynamics.controller.controller_step` (the
reference; read that one) with buffers reused (``out=``), :math:`\phi(W_1 x + b_1)` computed
once, and the forward sums (DFC Eq. (5)) :math:`\sum_t \delta_l^\top r_{l-1}` taken once per
chunk of K = ``NOISE_CHUNK`` steps as one product over K*B rows instead of K products over B
rows. On the CPU those chunk products run on a helper thread while the loop fills the other of
two buffer sets, so the second core works too. The sums are those of the reference up to
summation order (tests, rtol 1e-12); :mod:`simkit.kernels.dfc` has the Numba twin for small nets.
"""
from __future__ import annotations

import math

import numpy as np

from simkit.backend import jit
from simkit.kernels import dfc_chunk
from simkit.kernels import dfc_step as ctl
from simkit.kernels.spares import Spares

if jit.ENABLED:
    from simkit.kernels.vmath import tanh as vm_tanh

FUSED = True     # tanh layers on the host through dfc_chunk.layer_pass (False: array calls)
SPARES = Spares()    # chunk buffer sets kept from one minibatch for the next (see spares.py)


def _phi_into(xp, phi, a, out):
    """``out[...] = phi(a)`` without a temporary where NumPy/CuPy allow it."""
    if phi.name == "tanh":
        xp.tanh(a, out=out)
    elif phi.name == "linear":
        out[...] = a
    else:
        out[...] = phi.f(xp, a)


class _Fast:
    """Buffers of :func:`simulate_fast`: rates of one chunk of steps (K+1, B, n_l), mismatches
    (K, B, n_l), and the per-layer state; see that function.

    On the CPU the chunk's sums are taken on a helper thread while the loop fills a second set
    of buffers (double buffering): the per-step products are too small for two BLAS threads, so
    the second core would idle otherwise. One job at a time, in order: the same sums, bit for bit.
    """

    def __init__(self, xp, P, v_ff0, r0, dyn, learn, K, chunk_fb=False):
        dtype, B = v_ff0[0].dtype, v_ff0[0].shape[0]
        self.st = ctl.start(xp, P, v_ff0, r0, dyn, learn, dtype)
        # Eq. (13)'s sums go into the chunks too when Eq. (5)'s do (the single phase) or the
        # chunk kernel runs (``chunk_fb``); alone (sleep phases in the Python step) per-step
        # sums are as fast, without buffers.
        self.xp, self.learn, self.phi = xp, learn.fw, P["phi"]
        self.fb = bool(learn.fb) and (bool(learn.fw) or chunk_fb)
        two = 2 if (learn.fw and xp is np) else 1
        N, n_L = sum(a.shape[1] for a in v_ff0), P["Q"][0].shape[1]

        def chunk(n):                                 # (n, B, n_l) per layer
            return [xp.empty((n, B, a.shape[1]), dtype=dtype) for a in v_ff0]
        volt = learn.fw == "voltage_difference"
        fb = (lambda *s: xp.empty(s, dtype=dtype)) if self.fb else (lambda *s: None)

        def make():
            return [{"R": chunk(K + 1), "D": chunk(K) if learn.fw else None,
                     "VFF": chunk(K) if learn.fw else None, "V": chunk(K) if volt else None,
                     "FB": fb(K, B, N), "U": fb(K, B, n_L),             # Eq. (13)'s factors
                     "P": [None] + [xp.empty(w.shape, dtype=dtype) for w in P["W"][1:]]
                     if learn.fw else None}                               # Eq. (5)'s products
                    for _ in range(two)]
        self.key = (xp.__name__, dtype, B, K, two, tuple(a.shape[1] for a in v_ff0), n_L,
                    learn.fw, self.fb)
        self.sets = SPARES.take(self.key, make)       # kept from the last minibatch if it fits
        self.jobs = [None] * two
        self.cur = 0
        self._use(self.sets[0])
        for Rl, r in zip(self.R, r0):
            Rl[0] = r
        self.tmp = [xp.zeros_like(a) for a in v_ff0]      # scratch (finite: the kernel reads it)
        self.v_ff1 = P["v_ff1"]
        self.phi_vff1 = P["phi"][0].f(xp, P["v_ff1"])                 # constant: W_1 x is fixed
        self.Qcat = xp.concatenate(P["Q"], axis=0).T.copy()          # (n_L, N): one product
        self.offs = np.cumsum([0] + [a.shape[1] for a in v_ff0])
        self.k = 0
        self.host = FUSED and jit.ENABLED and xp is np
        self.fused = [self.host and phi.name == "tanh" for phi in P["phi"]]
        self.kernel_consts = None                     # dfc_chunk.run's, made on its first call
        self.coefs = None                             # (L, 7) layer_pass constants, per layer

    def _use(self, bufs):
        self.bufs = bufs
        self.R, self.VFF, self.V = bufs["R"], bufs["VFF"], bufs["V"]

    def _mismatch(self, xp, bufs, l, k):
        r"""Eq. (5)'s delta for the chunk's k steps of layer l, into the D buffer:
        :math:`\phi(v_l) - \phi(v_{ff,l})` (or :math:`v_l - v_{ff,l}`)."""
        D = bufs["D"][l][:k]
        vff = self.v_ff1 if l == 0 else bufs["VFF"][l][:k]
        if self.learn == "voltage_difference":
            return xp.subtract(bufs["V"][l][:k], vff, out=D)
        if l == 0:
            return xp.subtract(bufs["R"][0][1:k + 1], self.phi_vff1, out=D)
        _phi_into(xp, self.phi[l], vff, D)
        return xp.subtract(bufs["R"][l][1:k + 1], D, out=D)

    def record_fb(self, v_fb, u_fb):
        """Eq. (13)'s factors of this step, :math:`v_{fb}[t]` and :math:`u[t+1]` (or its high-pass),
        into the chunk buffers (``controller_update``'s ``record``)."""
        FB, k = self.bufs["FB"][self.k], self.k
        for l, v in enumerate(v_fb):
            FB[:, self.offs[l]:self.offs[l + 1]] = v
        self.bufs["U"][k][...] = u_fb

    def _sums(self, bufs, k):
        r"""Add a chunk's terms to the sums: per layer one product with K*B rows for Eq. (5), and
        one for all layers' Eq. (13), :math:`\sum_t v_{fb}[t]^\top u[t+1]`."""
        st, R = self.st, bufs["R"]
        if self.fb:
            FB, U = bufs["FB"][:k], bufs["U"][:k]
            C = FB.reshape(-1, FB.shape[2]).T @ U.reshape(-1, U.shape[2])
            for l in range(len(st.C)):
                st.C[l] += C[self.offs[l]:self.offs[l + 1]]
        if not self.learn:
            return
        for l in range(len(R)):
            Dk = self._delta(bufs, l, k)
            if l > 0:
                B, n_in = Dk.shape[1], R[l - 1].shape[2]
                prod = self.xp.matmul(Dk.reshape(k * B, -1).T,
                                      R[l - 1][1:k + 1].reshape(k * B, n_in), out=bufs["P"][l])
                st.A[l] += prod

    def _delta(self, bufs, l, k):
        r"""Eq. (5)'s :math:`\delta_l` of the chunk's k steps, added to the bias sum
        :math:`\sum_t \delta_l` (layer 1: also to A[0], :math:`\sum_t \delta_1` per sample, whose
        product with the fixed x waits until the end); returns it for the weight sums of l > 0.
        On the host one Numba pass does the first layer, and tanh layers' mismatch with the bias
        sum (a third of the time of ``np.tanh``, a subtraction and a sum; this is helper-thread
        work once per element of every step, which the loop would otherwise wait for)."""
        st, R = self.st, bufs["R"][l][1:k + 1]
        if self.host and self.learn != "voltage_difference":
            if l == 0:
                _first_layer_kernel(R, self.phi_vff1, st.A[0], st.Ab[0])
                return None
            if self.fused[l]:
                D = bufs["D"][l][:k]
                _mismatch_kernel(R, bufs["VFF"][l][:k], D, st.Ab[l])
                return D
        D = self._mismatch(self.xp, bufs, l, k)
        st.Ab[l] += D.sum(axis=(0, 1))
        if l == 0:
            st.A[0] += D.sum(axis=0)
        return D

    def flush(self, xp, P):
        """Hand the chunk's sums over (to the helper thread if there are two buffer sets) and
        start the next chunk in the other set, from this chunk's last rates."""
        k, R = self.k, self.R
        if (self.learn or self.fb) and k:
            if len(self.sets) == 2:
                self.jobs[self.cur] = _helper().submit(self._sums, self.bufs, k)
            else:
                self._sums(self.bufs, k)
        self.cur = (self.cur + 1) % len(self.sets)
        self.wait(self.cur)                                 # its previous chunk is summed
        self._use(self.sets[self.cur])
        for Rl, Rold in zip(self.R, R):
            Rl[0] = Rold[k]
        self.k = 0

    def wait(self, which=None):
        """Finish the pending sums (of one buffer set, or all)."""
        for j in range(len(self.jobs)) if which is None else [which]:
            if self.jobs[j] is not None:
                self.jobs[j].result()
                self.jobs[j] = None


_HELPER = None


def _helper():
    """The one helper thread that sums finished chunks (created on first use)."""
    global _HELPER
    if _HELPER is None:
        from concurrent.futures import ThreadPoolExecutor
        _HELPER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simkit-dfc-sums")
    return _HELPER


def close_helper():
    """Shut the helper thread down (a later :func:`simulate_fast` starts a new one)."""
    global _HELPER
    if _HELPER is not None:
        _HELPER.shutdown(wait=True)
        _HELPER = None


def _fast_layers(xp, F, P, dyn, u_c, xi):
    """The layer updates of one step (``controller_step``'s loop) into the chunk buffers; the
    mismatches of Eq. (5) are left to the chunk sums (:meth:`_Fast._mismatch`). Eqs. (1)-(2)
    after the products run as one fused Numba pass per layer for tanh layers on the host
    (:func:`~simkit.kernels.dfc_chunk.layer_pass`), else as array calls (:func:`_layer_arrays`)."""
    st, k = F.st, F.k
    L = len(P["W"])
    c_all = u_c @ F.Qcat                                               # Q_l u, all layers
    for l in range(L):
        if l == 0:
            v_ff = P["v_ff1"]
        else:
            rin = F.R[l - 1][k + 1] if dyn.inst_transmission else F.R[l - 1][k]
            v_ff = st.v_ff[l] if F.VFF is None else F.VFF[l][k]
            xp.matmul(rin, P["W"][l].T, out=v_ff)
            if P["b"][l] is not None:
                v_ff += P["b"][l]
        c = c_all[:, F.offs[l]:F.offs[l + 1]]
        if F.fused[l]:
            X, xo = (c_all, 0) if xi is None else _noise_rows(xi, l, F.offs)
            n = st.n[l] if dyn.noise == "ou" else F.tmp[l]           # white / none: scratch
            dfc_chunk.layer_pass(c_all, F.offs[l], X, xo, True, n, st.v_fb[l], v_ff, st.v[l],
                                 F.R[l][k + 1], F.coefs[l], 1)
        else:
            _layer_arrays(xp, F, P, dyn, l, L, c, v_ff, xi)
        if F.V is not None:
            F.V[l][k][...] = st.v[l]


def _layer_arrays(xp, F, P, dyn, l, L, c, v_ff, xi):
    """Eqs. (2), the noise and (1) of layer l with array calls (any backend, any phi)."""
    st, fA, fv = F.st, dyn.dt / dyn.tau_A, dyn.dt / dyn.tau_v
    if fA == 1.0:                                                      # tau_A = dt: v_fb = Q u
        st.v_fb[l][...] = c
    else:
        c -= st.v_fb[l]
        c *= fA
        st.v_fb[l] += c                                                # Eq. (2)
    if xi is not None:
        st.v_fb[l] += ctl.noise_term(dyn, st, l, L, xi[l])
    if dyn.inst_system:
        xp.add(st.v_fb[l], v_ff, out=st.v[l])
    else:
        tmp = F.tmp[l]
        xp.add(st.v_fb[l], v_ff, out=tmp)
        tmp -= st.v[l]
        tmp *= fv
        st.v[l] += tmp                                                 # Eq. (1)
    _phi_into(xp, P["phi"][l], st.v[l], F.R[l][F.k + 1])


def _noise_rows(xi, l, offs):
    """(X, offset): this step's draws of layer l are X[:, offset:offset + n_l], X C-contiguous
    (the chunk's full (B, N) row when the noise source gives it, else a copy)."""
    full = getattr(xi, "full", None)
    if full is not None:
        return full, int(offs[l])
    return np.ascontiguousarray(xi[l]), 0


def _coefficients(dyn, l, L, noisy):
    r"""The fused kernel's constants, chosen so that its one formula does the reference's
    operations exactly: keep_fb = 0 and f_A = 1 give :math:`v_{fb} = c`; (a', b', s) give no
    noise (0, 0, 0), white noise :math:`s\xi` (1, 0, :math:`\sigma\sqrt{\Delta t}/\tau_A`) or
    OU :math:`n \leftarrow a'\xi + b'n`, :math:`s n` (:math:`a/\sqrt{\Delta t}`, 1 - a,
    :math:`\sigma`), as :func:`ctl.noise_term`; keep_v = 0 and f_v = 1 the instantaneous system."""
    fA, fv = dyn.dt / dyn.tau_A, dyn.dt / dyn.tau_v
    keep_fb = 0.0 if fA == 1.0 else 1.0
    keep_v, fv = (0.0, 1.0) if dyn.inst_system else (1.0, fv)
    a_ou, b_ou, s = 0.0, 0.0, 0.0
    if noisy and dyn.noise != "none":
        sigma = dyn.sigma_out if l == L - 1 else dyn.sigma
        if dyn.noise == "white":
            a_ou, s = 1.0, sigma * math.sqrt(dyn.dt) / dyn.tau_A
        else:
            a = dyn.dt / dyn.tau_noise
            a_ou, b_ou, s = a / math.sqrt(dyn.dt), 1.0 - a, sigma
    return keep_fb, fA, a_ou, b_ou, s, keep_v, fv


if jit.ENABLED:
    @jit.njit(nogil=True, error_model="numpy", cache=True)
    def _mismatch_kernel(R, VFF, D, ab):
        r"""Eq. (5)'s :math:`\delta = r - \tanh(v_{ff})` of a chunk's (K, B, n) steps into D, and
        its sum over steps and samples added to ``ab``, in one pass (:mod:`vmath`'s tanh)."""
        K, B, m = VFF.shape
        for k in range(K):
            for i in range(B):
                r, v, d = R[k, i], VFF[k, i], D[k, i]
                for j in range(m):
                    d[j] = r[j] - vm_tanh(v[j])
                for j in range(m):
                    ab[j] += d[j]

    @jit.njit(nogil=True, error_model="numpy", cache=True)
    def _first_layer_kernel(R, phi_vff1, A, ab):
        r"""Layer 1's :math:`\delta_1 = r_1 - \phi(W_1 x + b_1)` (the second term is fixed)
        summed over a chunk's steps into A (B, n) and over steps and samples into ``ab``."""
        K, B, m = R.shape
        for k in range(K):
            for i in range(B):
                r, c, a = R[k, i], phi_vff1[i], A[i]
                for j in range(m):
                    d = r[j] - c[j]
                    a[j] += d
                    ab[j] += d


def simulate_fast(xp, P, v_ff0, r0, dyn, learn, noise=None):
    r""":func:`~simkit.dynamics.controller.simulate_reference` with fewer array calls.

    The same steps and the same sums (equal up to summation order): buffers are reused
    (``out=``), :math:`\phi(W_1 x + b_1)` is computed once, and the forward sums
    :math:`\sum_t \delta_l^\top r_{l-1}` and the feedback sums :math:`\sum_t v_{fb}^\top u` are
    taken once per chunk of K = NOISE_CHUNK steps as one product over K*B rows instead of K
    products over B rows.
    """
    ctl.refuse_reference_only(dyn, P, "simulate_fast")
    K, L, noisy = ctl.NOISE_CHUNK, len(P["W"]), noise is not None and dyn.noise != "none"
    kernel = dfc_chunk.usable(xp, P, dyn, learn)
    F = _Fast(xp, P, v_ff0, r0, dyn, learn, K, chunk_fb=kernel)
    F.coefs = np.array([_coefficients(dyn, l, L, noisy) for l in range(L)], dtype=np.float64)
    st, chunk, t = F.st, None, 0
    while t < dyn.T - 1:
        if t % K == 0:
            F.flush(xp, P)
            if noisy:
                chunk = noise(t, min(t + K, dyn.T - 1))
        if kernel and (chunk is None or hasattr(chunk, "full")):      # the rest of the chunk
            n = min(K - t % K, dyn.T - 1 - t)
            dfc_chunk.run(F, P, dyn, learn, chunk, n, F.coefs)
            F.k, t = F.k + n, t + n
            continue
        xi = None if chunk is None else \
            chunk.step(t % K) if hasattr(chunk, "step") else [c[t % K] for c in chunk]
        st.r[-1] = F.R[-1][F.k]
        u_c = ctl.controller_update(xp, st, P, dyn, learn, F.record_fb if F.fb else None)
        _fast_layers(xp, F, P, dyn, u_c, xi)
        F.k, t = F.k + 1, t + 1
    if F.VFF is not None:                                   # the last basal voltages
        st.v_ff[1:] = [F.VFF[l][F.k - 1].copy() for l in range(1, len(st.v_ff))]
    F.flush(xp, P)
    F.wait()
    st.r = [Rl[0].copy() for Rl in F.R]
    SPARES.give(F.key, F.sets)
    st.v_ff[0] = P["v_ff1"]
    st.A[0] = st.A[0].T @ P["x"]
    return st
