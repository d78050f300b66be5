r"""The DFC controller loop as one kernel: K Euler steps on flat, layer-blocked state.

The equations are those of :mod:`simkit.dynamics.controller` (its ``controller_step`` is the
reference; read that one). This module packs the per-layer state into flat buffers so one
compiled call runs a whole chunk of steps, with noise drawn outside (host ``Generator``, the
same draws for every backend) and the time-averaged updates accumulated as the loop runs.

Layout ("layer-blocked"): with :math:`N = \sum_l n_l` and offsets :math:`o_l = \sum_{k<l} n_k`,
layer :math:`l`'s (B, n_l) block of ``v, v_ff, v_fb, r, n`` is ``flat[B o_l : B (o_l + n_l)]``
(C order), so every block is contiguous; ``Q`` is :math:`\bar Q` (N, n_L); ``W`` concatenates
:math:`W_2..W_L` (:math:`W_1 x + b_1` is the constant ``v_ff1``); ``AW`` likewise concatenates
the sums :math:`A_2..A_L`, ``A1`` is :math:`\sum_t\delta_1` (B, n_1), ``Ab`` the bias sums (N),
``C`` the feedback sums (N, n_L); ``xi`` (K, B N) holds step ``k``'s draws in the same layout.

The scalars travel in two arrays, read by the named indices below (:func:`coded` packs them):
``prm`` (float64) ``[DT, TAU_V, TAU_A, ALPHA, K_P, SIGMA, SIGMA_OUT, A_NOISE, A_U]`` and ``flg``
(int64) ``[BATCH, STEPS, PROACTIVE, INST_TRANSMISSION, INST_SYSTEM, NOISE, CE, PHI_HIDDEN,
PHI_OUT, FW, FB]`` (the CUDA kernel adds ``STREAM``), whose values are the ``NOISE_*``,
``PHI_*``, ``FW_*`` and ``FB_*`` codes.

Twins: the Numba ``loop`` below calls one compiled helper, the PI controller of Eq. (4)
(:func:`simkit.kernels.dfc_chunk.control`, shared with the chunk kernel); the activations are
written inline, so it is a documented kernel longer than simkit's usual 60 lines. Its products
are ``np.dot`` calls (BLAS). On CuPy the loop is :mod:`simkit.kernels.dfc_cuda`'s persistent
kernel, with this module's flat state (:func:`flat_state`, :func:`coded`, :func:`state_of`);
``cuda=None`` here.

Three ways to run the loop, all tested against ``controller_step`` (rtol 1e-12, fixed noise):

* :func:`simulate` with the Numba twin: the fastest for small nets (up to ~64 neurons), but
  Numba's scalar ``tanh`` is slower than NumPy's SIMD one, so it loses on the published
  784-256-256-256-10 net;
* :func:`simkit.kernels.dfc_fast.simulate_fast`: ``controller_step``'s arithmetic with reused
  buffers, :math:`\phi(W_1x+b_1)` once, and the forward sums as one product over (K*B) rows per
  chunk of K steps, taken on a helper thread; BLAS-bound; what the DFC rule uses on the CPU;
* :func:`simkit.dynamics.controller.simulate_reference`: the readable loop (backend numpy).

BLAS should run on one thread: the products are small (32 x 256 x 256), too small to share.
"""
from __future__ import annotations

import math

import numpy as np

from simkit.backend import Kernel
from simkit.kernels import dfc_step as ctl
from simkit.kernels.dfc_chunk import control

# Indices of ``prm`` (float64): the step, time constants, gains, noise amplitudes and factors.
DT, TAU_V, TAU_A, ALPHA, K_P, SIGMA, SIGMA_OUT, A_NOISE, A_U = range(9)
# Indices of ``flg`` (int64): batch size, steps of the chunk, the switches and the codes below;
# STREAM (CUDA only): 1 when the kernel draws the counter stream itself.
(BATCH, STEPS, PROACTIVE, INST_TRANSMISSION, INST_SYSTEM, NOISE, CE, PHI_HIDDEN, PHI_OUT, FW,
 FB, STREAM) = range(12)
NOISE_NONE, NOISE_WHITE, NOISE_OU = 0, 1, 2                    # flg[NOISE]
PHI_LINEAR, PHI_TANH, PHI_RELU, PHI_LEAKY, PHI_SIGMOID = range(5)   # flg[PHI_HIDDEN], [PHI_OUT]
FW_NONE, FW_NONLINEAR, FW_VOLTAGE = 0, 1, 2                    # flg[FW]: Eq. (5)'s delta
FB_NONE, FB_PLAIN, FB_HIGHPASS = 0, 1, 2                       # flg[FB]: Eq. (13)'s u~

ACT_CODES = {"linear": PHI_LINEAR, "tanh": PHI_TANH, "relu": PHI_RELU,
             "leaky_relu:0.2": PHI_LEAKY, "sigmoid": PHI_SIGMOID}
NOISE_CODES = {"none": NOISE_NONE, "white": NOISE_WHITE, "ou": NOISE_OU}
FW_CODES = {None: FW_NONE, "nonlinear_difference": FW_NONLINEAR,
            "voltage_difference": FW_VOLTAGE}
FB_CODES = {None: FB_NONE, "plain": FB_PLAIN, "highpass": FB_HIGHPASS}


class _Phi:
    """The reference twin's :math:`\\phi` for an activation code, as the network's own
    (:mod:`simkit.nn.activations`; the Numba and CUDA twins write it inline)."""

    def __init__(self, code):
        self.code = int(code)

    def f(self, xp, a):
        if self.code == PHI_TANH:
            return xp.tanh(a)
        if self.code == PHI_RELU:
            return xp.maximum(a, 0.0)
        if self.code == PHI_LEAKY:
            return xp.where(a > 0, a, 0.2 * a)
        if self.code == PHI_SIGMOID:
            e = xp.exp(-xp.abs(a))
            return xp.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        return a


def _decode(codes, value):
    """The name a code stands for (the inverse of one of the ``*_CODES`` dicts)."""
    return next(k for k, c in codes.items() if c == value)


def _blocks(xp, flat, sizes, B):
    """Per-layer (B, n_l) views of a layer-blocked flat buffer."""
    out, o = [], 0
    for n in sizes[1:]:
        out.append(flat[B * o:B * (o + n)].reshape(B, n))
        o += n
    return out


def _mats(flat, shapes):
    out, o = [], 0
    for (r, c) in shapes:
        out.append(flat[o:o + r * c].reshape(r, c))
        o += r * c
    return out


def controller_reference(xp, sizes, W, b, Q, v_ff1, r_target, xi, prm, flg,
                         v, v_ff, v_fb, r, n, u, u_int, u_lp, A1, AW, Ab, C):
    """Readable definition: unpack, run ``controller_step`` K times, write the state back."""
    sizes = [int(s) for s in sizes]
    B, K, L, nL = int(flg[BATCH]), int(flg[STEPS]), len(sizes) - 1, sizes[-1]
    dt, a_n = float(prm[DT]), float(prm[A_NOISE])
    dyn = ctl.Dynamics(dt=dt, T=2, tau_v=float(prm[TAU_V]), tau_A=float(prm[TAU_A]),
                       alpha=float(prm[ALPHA]), k_p=float(prm[K_P]), proactive=bool(flg[PROACTIVE]),
                       inst_transmission=bool(flg[INST_TRANSMISSION]),
                       inst_system=bool(flg[INST_SYSTEM]), noise=_decode(NOISE_CODES, flg[NOISE]),
                       sigma=float(prm[SIGMA]), sigma_out=float(prm[SIGMA_OUT]),
                       tau_noise=dt / a_n if a_n else 1.0, error="ce" if flg[CE] else "mse")
    learn = ctl.Learning(fw=_decode(FW_CODES, flg[FW]), fb=_decode(FB_CODES, flg[FB]),
                         a_u=float(prm[A_U]))
    phi = [_Phi(flg[PHI_HIDDEN])] * (L - 1) + [_Phi(flg[PHI_OUT])]
    Ws = [None] + _mats(W, [(sizes[l + 1], sizes[l]) for l in range(1, L)])
    bs = _blocks(xp, b, sizes, 1)
    P = {"W": Ws, "b": [x[0] for x in bs], "Q": _mats(Q, [(s, nL) for s in sizes[1:]]),
         "phi": phi, "v_ff1": v_ff1.reshape(B, sizes[1]), "x": None,
         "r_target": r_target.reshape(B, nL)}
    names = ("v", "v_ff", "v_fb", "r", "n")
    views = {k: _blocks(xp, a, sizes, B) for k, a in zip(names, (v, v_ff, v_fb, r, n))}
    st = ctl.State(**{k: list(views[k]) for k in names}, u=u.reshape(B, nL),
                   u_int=u_int.reshape(B, nL), u_lp=u_lp.reshape(B, nL),
                   A=[A1.reshape(B, sizes[1])] + _mats(AW, [(sizes[l + 1], sizes[l])
                                                              for l in range(1, L)]),
                   Ab=[x[0] for x in _blocks(xp, Ab, sizes, 1)],
                   C=_mats(C, [(s, nL) for s in sizes[1:]]))
    P["x"] = xp.zeros((B, sizes[0]), dtype=v.dtype)       # only the first layer's sum uses x
    for k in range(K):
        xk = _blocks(xp, xi[k], sizes, B) if flg[NOISE] != NOISE_NONE else None
        ctl.controller_step(xp, st, P, dyn, learn, xk)
    for k in names:
        for dst, src in zip(views[k], getattr(st, k)):
            dst[...] = src
    u.reshape(B, nL)[...] = st.u
    u_int.reshape(B, nL)[...] = st.u_int
    u_lp.reshape(B, nL)[...] = st.u_lp


def controller_loop(sizes, W, b, Q, v_ff1, r_target, xi, prm, flg,
                    v, v_ff, v_fb, r, n, u, u_int, u_lp, A1, AW, Ab, C):
    """Numba twin of :func:`controller_reference`: K Euler steps on the layer-blocked state
    (the module docstring), per step Eq. (4) (:func:`~simkit.kernels.dfc_chunk.control`), the
    feedback sums (Eq. (13)), then per layer Eqs. (1)-(2), the noise, :math:`r = \\phi(v)` and
    Eq. (5)'s sums; one documented kernel, its activations written inline."""
    B, K, L = flg[BATCH], flg[STEPS], sizes.size - 1
    nL = sizes[L]
    dt, tau_v, tau_A, alpha, k_p = prm[DT], prm[TAU_V], prm[TAU_A], prm[ALPHA], prm[K_P]
    a_n, a_u = prm[A_NOISE], prm[A_U]
    highpass, fw = flg[FB] == FB_HIGHPASS, flg[FW]
    off = np.zeros(L + 1, np.int64)
    woff = np.zeros(L + 1, np.int64)
    for l in range(L):
        off[l + 1] = off[l] + sizes[l + 1]
        woff[l + 1] = woff[l] + (sizes[l + 1] * sizes[l] if l > 0 else 0)
    N = off[L]
    U, UI, ULP = u.reshape(B, nL), u_int.reshape(B, nL), u_lp.reshape(B, nL)
    RT = r_target.reshape(B, nL)
    e = np.empty_like(U)
    uo = np.empty_like(U)
    ufb = np.empty_like(U)
    rold = np.empty_like(r)
    for k in range(K):
        rL = r[B * off[L - 1]:B * N].reshape(B, nL)
        control(rL, RT, U, UI, uo, e, dt, alpha, k_p, flg[CE] == 1)      # Eq. (4)
        for i in range(B):
            for j in range(nL):
                if highpass:
                    ULP[i, j] = a_u * U[i, j] + (1.0 - a_u) * ULP[i, j]
                ufb[i, j] = U[i, j] - ULP[i, j] if highpass else U[i, j]
        if flg[FB] != FB_NONE:                                   # C_l += v_fb_l[t]^T u~[t+1]
            Cm = C.reshape(N, nL)
            for l in range(L):
                vfb_l = v_fb[B * off[l]:B * off[l + 1]].reshape(B, off[l + 1] - off[l])
                Cm[off[l]:off[l + 1], :] += np.dot(vfb_l.T, ufb)
        uc = U if flg[PROACTIVE] == 1 else uo
        if flg[INST_TRANSMISSION] == 0:
            rold[:] = r
        for l in range(L):
            nl, s0, s1 = sizes[l + 1], B * off[l], B * off[l + 1]
            VFF = v_ff[s0:s1].reshape(B, nl)
            if l == 0:
                VFF[:, :] = v_ff1.reshape(B, nl)
            else:
                src = r if flg[INST_TRANSMISSION] == 1 else rold
                rin = src[B * off[l - 1]:s0].reshape(B, sizes[l])
                Wl = W[woff[l]:woff[l + 1]].reshape(nl, sizes[l])
                VFF[:, :] = np.dot(rin, Wl.T)
                for i in range(B):
                    for j in range(nl):
                        VFF[i, j] += b[off[l] + j]
            c = np.dot(uc, Q[off[l] * nL:off[l + 1] * nL].reshape(nl, nL).T)
            act = flg[PHI_OUT] if l == L - 1 else flg[PHI_HIDDEN]
            sig = prm[SIGMA_OUT] if l == L - 1 else prm[SIGMA]
            VFB, V, R = v_fb[s0:s1].reshape(B, nl), v[s0:s1].reshape(B, nl), r[s0:s1].reshape(B, nl)
            NS = n[s0:s1].reshape(B, nl)
            D = np.empty_like(VFF)
            for i in range(B):
                for j in range(nl):
                    fb = VFB[i, j] + (dt / tau_A) * (c[i, j] - VFB[i, j])
                    if flg[NOISE] == NOISE_WHITE:
                        fb += sig * math.sqrt(dt) / tau_A * xi[k * B * N + s0 + i * nl + j]
                    elif flg[NOISE] == NOISE_OU:
                        NS[i, j] = (a_n / math.sqrt(dt)) * xi[k * B * N + s0 + i * nl + j] \
                            + (1.0 - a_n) * NS[i, j]
                        fb += sig * NS[i, j]
                    VFB[i, j] = fb
                    if flg[INST_SYSTEM] == 1:
                        V[i, j] = fb + VFF[i, j]
                    else:
                        V[i, j] += (dt / tau_v) * (fb + VFF[i, j] - V[i, j])
                    for q in range(2):                    # q=0: r = phi(v); q=1: phi(v_ff)
                        a = V[i, j] if q == 0 else VFF[i, j]
                        if act == PHI_TANH:
                            h = math.tanh(a)
                        elif act == PHI_RELU:
                            h = max(a, 0.0)
                        elif act == PHI_LEAKY:
                            h = a if a > 0 else 0.2 * a
                        elif act == PHI_SIGMOID:
                            h = 1.0 / (1.0 + math.exp(-a)) if a >= 0 else \
                                math.exp(a) / (1.0 + math.exp(a))
                        else:
                            h = a
                        if q == 0:
                            R[i, j] = h
                        else:
                            D[i, j] = R[i, j] - h if fw == FW_NONLINEAR else V[i, j] - VFF[i, j]
                    if fw != FW_NONE:
                        Ab[off[l] + j] += D[i, j]
            if fw != FW_NONE:
                if l == 0:
                    A1 += D.reshape(B * nl)
                else:
                    rp = r[B * off[l - 1]:s0].reshape(B, sizes[l])
                    AW[woff[l]:woff[l + 1]] += np.dot(D.T, rp).reshape(nl * sizes[l])


def _pack(xp, mats, dtype):
    return xp.concatenate([m.reshape(-1) for m in mats]) if mats else xp.zeros(0, dtype=dtype)


def flat_state(xp, P, v_ff0, r0, dyn, learn, dtype):
    """The layer-blocked state at t = 0 and zeroed running sums (see the module docstring),
    with per-layer views of the sums (``AW_blocks``, ``Ab_blocks``, ``C_blocks``) and
    ``pack`` (a list of arrays -> one flat buffer)."""
    L, B = len(P["W"]), v_ff0[0].shape[0]
    sizes = [P["x"].shape[1]] + [a.shape[1] for a in v_ff0]
    nL, N = sizes[-1], sum(sizes[1:])
    F = {"sizes": sizes, "B": B, "pack": lambda arrs: _pack(xp, list(arrs), dtype)}
    F.update({k: F["pack"](a) for k, a in (("v", v_ff0), ("v_ff", v_ff0), ("r", r0))})
    for k in ("v_fb", "n"):
        F[k] = xp.zeros(B * N, dtype=dtype)
    for k in ("u", "u_int", "u_lp"):
        F[k] = xp.zeros(B * nL, dtype=dtype)
    u_lp = ctl.lowpass_start(xp, P, r0, dyn, learn)
    if u_lp is not None:
        F["u_lp"][...] = u_lp.reshape(-1)
    F["A1"], F["Ab"] = xp.zeros(B * sizes[1], dtype=dtype), xp.zeros(N, dtype=dtype)
    F["AW"] = xp.zeros(sum(sizes[l + 1] * sizes[l] for l in range(1, L)), dtype=dtype)
    F["C"] = xp.zeros(N * nL, dtype=dtype)
    F["b"] = F["pack"]([bb if bb is not None else xp.zeros(w.shape[0], dtype=dtype)
                        for bb, w in zip(P["b"], P["W"])])
    F["AW_blocks"] = _mats(F["AW"], [(sizes[l + 1], sizes[l]) for l in range(1, L)])
    F["Ab_blocks"] = [x[0] for x in _blocks(xp, F["Ab"], sizes, 1)]
    F["C_blocks"] = _mats(F["C"], [(s, nL) for s in sizes[1:]])
    return F


def coded(dyn, learn, P, B, K):
    """``prm`` and ``flg`` (indices and codes: the module's constants) for a chunk of K steps."""
    prm = np.zeros(9, dtype=np.float64)
    prm[[DT, TAU_V, TAU_A, ALPHA, K_P]] = dyn.dt, dyn.tau_v, dyn.tau_A, dyn.alpha, dyn.k_p
    prm[SIGMA], prm[SIGMA_OUT] = dyn.sigma, dyn.sigma_out
    prm[A_NOISE] = dyn.dt / dyn.tau_noise if dyn.noise == "ou" else 0.0
    prm[A_U] = learn.a_u
    flg = np.zeros(STREAM, dtype=np.int64)
    flg[BATCH], flg[STEPS] = B, K
    flg[[PROACTIVE, INST_TRANSMISSION, INST_SYSTEM]] = \
        dyn.proactive, dyn.inst_transmission, dyn.inst_system
    flg[NOISE], flg[CE] = NOISE_CODES[dyn.noise], dyn.error == "ce"
    flg[PHI_HIDDEN] = ACT_CODES[P["phi"][0].name] if len(P["W"]) > 1 else PHI_LINEAR
    flg[PHI_OUT] = ACT_CODES[P["phi"][-1].name]
    flg[FW], flg[FB] = FW_CODES[learn.fw], FB_CODES[learn.fb]
    return prm, flg


def state_of(xp, F, x):
    r"""The :class:`~simkit.dynamics.controller.State` (per-layer views) of a flat state;
    ``A[0]`` becomes :math:`(\sum_t\delta_1)^\top x`."""
    sizes, B = F["sizes"], F["B"]
    nL = sizes[-1]
    out = ctl.State(**{k: _blocks(xp, F[k], sizes, B) for k in ("v", "v_ff", "v_fb", "r", "n")},
                    **{k: F[k].reshape(B, nL) for k in ("u", "u_int", "u_lp")})
    out.A = [F["A1"].reshape(B, sizes[1]).T @ x] + F["AW_blocks"]
    out.Ab, out.C = F["Ab_blocks"], F["C_blocks"]
    return out


def simulate(bk, P, v_ff0, r0, dyn, learn, noise=None):
    r"""Run the T-1 Euler steps with the backend's twin; returns a :class:`~simkit.dynamics.
    controller.State` whose lists are per-layer views (``A[0]`` already :math:`(\sum_t\delta_1)^\top x`).

    Same arguments as :func:`simkit.dynamics.controller.simulate_reference`; ``noise(t0, t1)``
    gives per-layer draws (t1-t0, B, n_l) for steps t0..t1-1.
    """
    ctl.refuse_reference_only(dyn, P, "the Numba DFC kernel")
    xp = bk.xp
    F = flat_state(xp, P, v_ff0, r0, dyn, learn, v_ff0[0].dtype)
    sizes, B = F["sizes"], F["B"]
    W, Q = F["pack"](P["W"][1:]), F["pack"](P["Q"])
    run = bk.kernel(CONTROLLER)
    no_xi = xp.zeros((1, 0), dtype=v_ff0[0].dtype)
    for t0 in range(0, dyn.T - 1, ctl.NOISE_CHUNK):
        t1 = min(t0 + ctl.NOISE_CHUNK, dyn.T - 1)
        xi = no_xi
        if dyn.noise != "none":
            chunk = noise(t0, t1)
            xi = xp.concatenate([c.reshape(t1 - t0, -1) for c in chunk], axis=1)
        prm, flg = coded(dyn, learn, P, B, t1 - t0)
        run(np.asarray(sizes, dtype=np.int64), W, F["b"], Q, P["v_ff1"], P["r_target"], xi, prm,
            flg, *(F[k] for k in ("v", "v_ff", "v_fb", "r", "n", "u", "u_int", "u_lp", "A1",
                                  "AW", "Ab", "C")))
    return state_of(xp, F, P["x"])


CONTROLLER = Kernel("dfc_controller", reference=controller_reference, loop=controller_loop,
                    helpers=(control,),
                    cuda=None)
