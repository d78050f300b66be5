r"""Error propagation by inversion: BP, FA, PBP, NDI, DI and SDI (Podlaski & Machens 2020).

W. F. Podlaski and C. K. Machens, "Biological credit assignment through dynamic inversion of
feedforward networks", NeurIPS 2020, arXiv:2007.05112. Notes on the original code:
``shared/research/dynamic_inversion.md``.

Each rule maps the error :math:`\delta_l` at a layer's output to the error at its input,
:math:`\delta_{l-1}`; the weight update is then :math:`\Delta W_l = \eta\,\delta_l h_{l-1}^\top`
(errors are *target minus output*, so updates are added). With :math:`W` (d_out, d_in),
:math:`B` (d_in, d_out) (the shape of :math:`W^\top`), :math:`h' = f'(a_{l-1})`:

.. math::

    \text{BP:}\quad  \delta_{l-1} &= (W^\top \delta_l)\odot h'                         \\
    \text{FA:}\quad  \delta_{l-1} &= (B \delta_l)\odot h'                              \\
    \text{PBP:}\quad \delta_{l-1} &= (W^{+} \delta_l)\odot h'                          \\
    \text{NDI:}\quad \delta_{l-1} &= B\,(W B - \alpha I)^{-1}\delta_l \odot h'
                                   = (B W - \alpha I)^{-1} B\,\delta_l \odot h'     && \text{(Eq. 7)}

The two NDI forms are equal by the push-through identity; the first solves a d_out x d_out
system (wide or square W), the second a d_in x d_in one (tall W), as the original picks. NDI is
the fixed point of the dynamic-inversion ODE (:mod:`simkit.dynamics.di`), which gives DI; with
:math:`B=-W^\top`, :math:`\alpha=0` it is :math:`W^\top (W W^\top)^{-1}\delta = W^+\delta`
(PBP), and for :math:`\alpha>0` a Tikhonov-regularised pseudo-inverse.

Symbols (batch rows, n samples): ``delta`` (n, d_out), ``dh`` (n, d_in), ``W`` (d_out, d_in),
``B`` (d_in, d_out), ``alpha`` scalar. Returns (n, d_in).

Deviations from the original code
---------------------------------
* Batched over samples (rows); the original works on one column vector.
* PBP and NDI solve their square systems by LU (PBP by the normal equations of the smaller side),
  falling back to the original's min-norm ``lstsq`` (machine-epsilon cutoff, ``rcond=-1``) when
  the system is singular; ``EXACT = True`` uses lstsq throughout, as the original.
* Feedback initialisers never modify their input (the original's SSA mutates B in place).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simkit.errors import NumericalError, UserError

MODELS = ("BP", "FA", "PBP", "NDI", "DI", "SDI")
FEEDBACK = ("random", "neg-transpose", "optim")


EXACT = False   # True: every solve is the original's lstsq (SVD); False: LU, lstsq fallback
RANK1_MIN = 1 << 16   # below this many weights a kernel's call costs more than NumPy's 2 passes


def _lstsq(xp, A, b):
    """Minimum-norm least squares ``A x = b`` (machine-epsilon cutoff, as ``rcond=-1``)."""
    return xp.linalg.lstsq(A, b, rcond=None)[0]


def _solve(xp, A, b):
    """``A x = b`` for square A: LU (10-100x cheaper than lstsq's SVD); lstsq when A is singular
    or the result is not finite, or always when :data:`EXACT` is set."""
    if not EXACT:
        try:
            x = xp.linalg.solve(A, b)
            if bool(xp.isfinite(x).all()):
                return x
        except np.linalg.LinAlgError:
            pass
    return _lstsq(xp, A, b)


def error_bp(xp, W, delta, dh):
    return (delta @ W) * dh                                         # (W^T delta) . h'


def error_fa(xp, B, delta, dh):
    return (delta @ B.T) * dh                                       # (B delta) . h'


def error_pbp(xp, W, delta, dh):
    """Pseudo-backprop: min-norm solution of ``W x = delta`` per sample, times h'.

    W^+ via the normal equations of the smaller side (W^T (W W^T)^-1 for wide W,
    (W^T W)^-1 W^T for tall), or lstsq when :data:`EXACT` (as the original).
    """
    d_out, d_in = W.shape
    if EXACT:
        return _lstsq(xp, W, delta.T).T * dh                        # (W^+ delta) . h'
    if d_out <= d_in:
        return (W.T @ _solve(xp, W @ W.T, delta.T)).T * dh          # W^T (W W^T)^-1 delta
    return _solve(xp, W.T @ W, W.T @ delta.T).T * dh                # (W^T W)^-1 W^T delta


def ndi_operator(xp, W, B, alpha, delta, form="auto"):
    """The NDI steady state without h': ``B (W B - a I)^-1 delta`` (Eq. 7), batch rows.

    ``form``: 'wide' solves the d_out system, 'tall' the d_in one, 'auto' the smaller (as the
    original: 'wide' when d_out <= d_in).
    """
    d_out, d_in = W.shape
    if form == "auto":
        form = "wide" if d_out <= d_in else "tall"
    if form == "wide":
        M = W @ B - alpha * xp.eye(d_out, dtype=W.dtype)           # W B - alpha I
        return (B @ _solve(xp, M, delta.T)).T                       # Eq. (7)
    if form == "tall":
        M = B @ W - alpha * xp.eye(d_in, dtype=W.dtype)             # B W - alpha I
        return _solve(xp, M, B @ delta.T).T                         # Eq. (7), push-through
    raise UserError(f"NDI form must be 'auto', 'wide' or 'tall', got {form!r}")


def error_ndi(xp, W, B, alpha, delta, dh, form="auto"):
    return ndi_operator(xp, W, B, alpha, delta, form) * dh


def backprop_error(xp, model, W, B, alpha, delta, dh, di_solver=None):
    """The error at a layer's input for ``model`` in :data:`MODELS` (except SDI, a whole-net loop).

    DI ignores ``dh`` like the original (its ODE returns the input-side state); the caller
    applies h' where the original does. ``di_solver(W, B, alpha, delta)`` runs the dynamics.
    """
    if model == "BP":
        return error_bp(xp, W, delta, dh)
    if model == "FA":
        return error_fa(xp, B, delta, dh)
    if model == "PBP":
        return error_pbp(xp, W, delta, dh)
    if model == "NDI":
        return error_ndi(xp, W, B, alpha, delta, dh)
    if model == "DI":
        if di_solver is None:
            raise UserError("model DI needs a di_solver (see simkit.dynamics.di.DISolver)")
        return di_solver(W, B, alpha, delta)
    raise UserError(f"unknown model {model!r}; allowed here: BP, FA, PBP, NDI, DI")


def init_feedback(rng, W, kind, scale=0.5, alpha=0.0, ssa_opts=None, retries=3):
    """Feedback weights for forward weights ``W`` (host arrays): a new array, W untouched.

    kind 'random': ``U(-scale, scale)`` in W^T's shape (the original's FA feedback);
    'neg-transpose': ``-W^T``; 'optim': random ``U(-scale, scale)``, then SSA-stabilised for ``alpha``
    (:func:`simkit.dynamics.ssa.stabilise`, bounded retries with derived seeds).
    """
    W = np.asarray(W)
    if kind == "random":
        return rng.uniform(-scale, scale, W.T.shape)
    if kind == "neg-transpose":
        return -W.T.copy()
    if kind == "optim":
        from simkit.dynamics.ssa import ssa_opt, stabilise
        B0 = rng.uniform(-scale, scale, W.T.shape)
        return stabilise(B0, lambda b: ssa_opt(W, b, alpha, **(ssa_opts or {})), rng, retries)
    raise UserError(f"unknown feedback init {kind!r}; allowed: {', '.join(FEEDBACK)}")


def mat_angle(B, W) -> float:
    """Angle in degrees between B and -W^T (the original's ``get_mat_angle(B, -W)``)."""
    from simkit.metrics import angle_deg
    return angle_deg(np, np.asarray(B), -np.asarray(W).T)


# ----------------------------------------------------------------------------------------------
# Networks of models: feedback, errors of every layer, updates, stability (used by the task loops)
# ----------------------------------------------------------------------------------------------

@dataclass
class ModelSpec:
    """One curve: rule in BP/FA/PBP/NDI/DI/SDI, feedback init, leak alpha."""
    name: str
    rule: str
    fback: str | None = None
    alpha: float = 0.0
    fa_scale: float = 0.5


@dataclass
class Model:
    spec: ModelSpec
    W: list
    b: list
    B: list = field(default_factory=list)      # per layer l >= 1 (None where unused)
    B_sdi: object = None
    abscissa: list = field(default_factory=list)


@dataclass
class TaskConfig:
    acts: list                 # activation per layer: 'linear' or 'tanh' (output: 'linear'/'softmax')
    eta: float
    w_decay: float = 0.0
    clip: dict = field(default_factory=dict)   # hidden layer index -> max norm of delta
    norm_delW: bool = False
    skip_first: bool = False
    bias: bool = True
    dh_mode: str = "paper"
    ssa: dict = field(default_factory=dict)    # SSA options during training


def _act(xp, name, a):
    return xp.tanh(a) if name == "tanh" else a


def _dact(xp, name, h):
    return 1.0 - h * h if name == "tanh" else xp.ones_like(h)


def forward(xp, W, b, acts, x, a0=None):
    """Hidden/outputs per layer (rows); the last entry is the output pre-activation's image.

    ``a0``: the first layer's product :math:`x W_1^\top` when the caller already has it (the
    deferred first-layer updates of :func:`simkit.inversion_tasks.run_online`).
    """
    hs = [x]
    for l, (Wl, bl) in enumerate(zip(W, b)):
        a = (a0 if l == 0 and a0 is not None else hs[-1] @ Wl.T) + bl
        hs.append(_act(xp, acts[l], a) if l < len(W) - 1 else a)
    return hs


def output_error(xp, out_act, a_out, target):
    """e = y* - y: MSE with a linear output, onehot - softmax for classification."""
    if out_act == "softmax":
        z = a_out - a_out.max(axis=1, keepdims=True)               # log-sum-exp guard
        p = xp.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        return target - p
    return target - a_out


def _clip_rows(xp, d, c):
    n = xp.sqrt((d * d).sum(axis=1, keepdims=True))
    return d * xp.minimum(1.0, c / xp.maximum(n, 1e-300))


def hidden_errors(xp, m, cfg, hs, e, di):
    """delta_l for every layer (list, index l = layer l's output error), output first = e."""
    L = len(m.W)
    deltas = [None] * L
    deltas[L - 1] = e
    rule, alpha = m.spec.rule, m.spec.alpha
    if rule == "SDI":
        from simkit.dynamics.di import sdi_reference
        rx, ry = sdi_reference(xp, m.W[1], m.W[2], m.B_sdi, e, alpha, di.dt, di.n_steps, True,
                               bk=di.bk)
        deltas[0], deltas[1] = rx, ry                               # used directly, no h'
    else:
        for l in range(L - 1, 0, -1):
            dh = _dact(xp, cfg.acts[l - 1], hs[l])
            d = backprop_error(xp, rule, m.W[l], m.B[l], alpha, deltas[l], dh, di)
            if rule == "DI" or (cfg.dh_mode == "code_2021" and rule != "DI"):
                d = d * dh                                          # DI: h' once; 2021: h'^2
            deltas[l - 1] = d
    for l, c in cfg.clip.items():
        deltas[l] = _clip_rows(xp, deltas[l], c)
    return deltas


def _update_weights(bk, cfg, W, delta, h):
    """W += eta sum_batch delta h^T - lambda W; one sample: one fused pass (the rank-1 kernel)."""
    from simkit.kernels.di import RANK1_UPDATE, rank1_reference
    xp = bk.xp
    if delta.shape[0] == 1 and not cfg.norm_delW:
        run = bk.kernel(RANK1_UPDATE) if W.size >= RANK1_MIN else \
            (lambda *a: rank1_reference(xp, *a))
        run(xp.ascontiguousarray(delta[0]), xp.ascontiguousarray(h[0]), cfg.eta, cfg.w_decay, W)
        return
    dW = delta.T @ h                                                # sum_batch delta h^T
    if cfg.norm_delW:
        dW = dW / max(float(xp.sqrt((dW * dW).sum())), 1e-300)
    W += cfg.eta * dW - cfg.w_decay * W


def update(bk, m, cfg, hs, deltas, defer_W1=False):
    """Every layer's weights (:func:`_update_weights`) and biases, b += eta sum delta - lambda b.

    ``defer_W1``: leave the first weight matrix to the caller (its bias is still updated).
    """
    for l in range(len(m.W)):
        if not (l == 0 and defer_W1):
            _update_weights(bk, cfg, m.W[l], deltas[l], hs[l])
        if cfg.bias:
            d = deltas[l]
            step = cfg.eta * (d[0] if d.shape[0] == 1 else d.sum(axis=0))
            m.b[l] += step - cfg.w_decay * m.b[l] if cfg.w_decay else step


def restabilise(bk, m, rng, ssa_opts):
    """DI/SDI: record each loop's spectral abscissa; re-run SSA on that loop's B if >= 0."""
    from simkit.dynamics.di import di_abscissa, sdi_abscissa
    from simkit.dynamics.ssa import ssa_opt, ssa_opt_sdi, stabilise
    if m.spec.rule not in ("DI", "SDI"):
        return
    h = bk.to_host
    W = [h(w) for w in m.W]
    if m.spec.rule == "SDI":
        s = sdi_abscissa(W[1], W[2], h(m.B_sdi), m.spec.alpha)
        if s >= 0:
            opt = lambda b: ssa_opt_sdi(W[1], W[2], b, m.spec.alpha, **ssa_opts)  # noqa: E731
            m.B_sdi = bk.asarray(stabilise(h(m.B_sdi), opt, rng))
        m.abscissa = [s]
        return
    out = []
    for l in range(1, len(W)):
        s = di_abscissa(W[l], h(m.B[l]), m.spec.alpha)
        if s >= 0:
            opt = lambda b, l=l: ssa_opt(W[l], b, m.spec.alpha, **ssa_opts)  # noqa: E731
            m.B[l] = bk.asarray(stabilise(h(m.B[l]), opt, rng))
        out.append(s)
    m.abscissa = out


def build_models(bk, specs, W0, b0, rng, optim_B=None, sdi_optim=None):
    """Models with copies of the shared initial weights; feedback from each spec (host draws).

    ``optim_B``: per-layer SSA-optimised feedback shared by all 'optim' models (as the original);
    ``sdi_optim``: the SDI 'optim' B (= -B1 B2 of the optimised per-layer B's by default).
    """
    models = []
    for sp in specs:
        B = [None] * len(W0)
        for l in range(1, len(W0)):
            if sp.rule == "FA" and sp.fback == "random":
                B[l] = rng.uniform(-sp.fa_scale, sp.fa_scale, W0[l].T.shape)
            elif sp.fback == "neg-transpose" or (sp.rule == "FA" and sp.fback == "neg50"):
                B[l] = -W0[l].T * (50.0 if sp.fback == "neg50" else 1.0)
            elif sp.fback == "optim":
                B[l] = optim_B[l]
        m = Model(sp, [bk.asarray(w.copy()) for w in W0], [bk.asarray(v.copy()) for v in b0],
                  [None if x is None else bk.asarray(x) for x in B])
        if sp.rule == "SDI":
            if sp.fback == "optim":
                Bs = sdi_optim if sdi_optim is not None else -optim_B[1] @ optim_B[2]
            else:
                Bs = -(W0[2] @ W0[1]).T                             # -W1^T W2^T
            m.B_sdi = bk.asarray(Bs)
        models.append(m)
    return models


def optim_feedback(W0, rng, ssa_opts, alpha=0.0, retries=3):
    """Per-layer SSA-optimised B (from U(-0.01, 0.01) draws), shared by all 'optim' models."""
    out = [None] * len(W0)
    for l in range(len(W0) - 1, 0, -1):                               # B2 then B1, as the original
        out[l] = init_feedback(rng, W0[l], "optim", scale=0.01, alpha=alpha,
                               ssa_opts=ssa_opts, retries=retries)
    return out


def train_step(bk, m, cfg, x, target, di, rng, out_act="linear", update_weights=True, diag=None,
               a0=None):
    """One sample (or minibatch) for one model: forward, errors, update, stability check.

    ``diag(m, hs, e, deltas)`` runs before the update (angle panels need the current weights).
    ``a0`` (:math:`x W_1^\top`, given by a caller that defers the first layer's updates): the
    first weight matrix is then neither read nor updated here.
    """
    xp = bk.xp
    hs = forward(xp, m.W, m.b, cfg.acts, x, a0)
    e = output_error(xp, out_act, hs[-1], target)
    deltas = hidden_errors(xp, m, cfg, hs, e, di)
    if diag is not None:
        diag(m, hs, e, deltas)
    if update_weights:
        update(bk, m, cfg, hs, deltas, defer_W1=a0 is not None)
        restabilise(bk, m, rng, cfg.ssa)
    return hs, deltas


def check_finite(bk, m):
    """Stop a model whose weights blew up (called at every evaluation)."""
    if not all(bool(bk.xp.isfinite(w).all()) for w in m.W):
        raise NumericalError(f"model {m.spec.name}: weights became NaN/inf; lower eta")


def ndi_reference_delta(xp, m, cfg, hs, e):
    """The NDI (h' once) errors for m's weights and B (angle panels)."""
    d, out = e, []
    for l in range(len(m.W) - 1, 0, -1):
        dh = _dact(xp, cfg.acts[l - 1], hs[l])
        d = ndi_operator(xp, m.W[l], m.B[l], m.spec.alpha, d) * dh
        out.insert(0, d)
    return out


def check_models(specs):
    for sp in specs:
        if sp.rule not in ("BP", "FA", "PBP", "NDI", "DI", "SDI"):
            raise UserError(f"model {sp.name}: unknown rule {sp.rule!r}")
