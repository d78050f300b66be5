r"""The models that the Podlaski & Machens task loops train, one sample (or minibatch) at a time.

A :class:`Model` is a network in :class:`simkit.nn.MLP`'s convention (rows are samples, per-layer
lists ``W[l-1]`` of shape (out, in) and ``b[l-1]``), plus its feedback weights and the rule named
by its :class:`ModelSpec`. A :class:`TaskConfig` holds what the task fixes for all its models:
activations (:mod:`simkit.nn.activations`), learning rate, decay, clipping. :func:`train_step`
is one online step: forward pass, output error, the rule's errors
(:func:`simkit.rules.inversion.layer_errors`), update, re-stabilisation of DI/SDI feedback:

.. math::  W_l \leftarrow W_l + \eta\,\delta_l^\top h_{l-1} - \lambda W_l, \qquad
           b_l \leftarrow b_l + \eta \textstyle\sum_n \delta_{l,n} - \lambda b_l

(errors are target minus output, so updates are added; a batch is summed).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from simkit.errors import NumericalError, UserError
from simkit.nn.activations import Activation, df_from_output, get_activation
from simkit.nn.losses import softmax
from simkit.rules.inversion import MODELS, init_feedback, layer_errors, ndi_operator

RANK1_MIN = 1 << 16   # below this many weights a kernel's call costs more than NumPy's 2 passes
OUTPUTS = ("linear", "softmax")


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
    """What a task fixes for all its models.

    ``acts``: one activation per layer, names or :class:`~simkit.nn.activations.Activation`
    objects; the output's entry is 'linear' or 'softmax', and the output layer itself is linear
    (a softmax enters the output error, :func:`output_error`). After construction ``acts`` holds
    the activation objects and ``output`` the output's name.
    """
    acts: list
    eta: float
    w_decay: float = 0.0
    clip: dict = field(default_factory=dict)   # hidden layer index -> max norm of delta
    norm_delW: bool = False
    skip_first: bool = False
    bias: bool = True
    dh_mode: str = "paper"
    ssa: dict = field(default_factory=dict)    # SSA options during training
    output: str = field(init=False, default="linear")

    def __post_init__(self):
        out = self.acts[-1]
        self.output = out.name if isinstance(out, Activation) else str(out)
        if self.output not in OUTPUTS:
            raise UserError(f"output activation {self.output!r}; allowed: {', '.join(OUTPUTS)}")
        self.acts = [a if isinstance(a, Activation) else get_activation(a)
                     for a in self.acts[:-1]] + [get_activation("linear")]


def activate(xp, phi: Activation, a):
    """:math:`h = \\phi(a)` of a hidden layer."""
    return phi.f(xp, a)


def forward(xp, W, b, acts, x, a0=None):
    r"""Activities ``[x, h_1, ..., h_{L-1}, a_L]`` (rows); the output is its pre-activation.

    ``acts``: per-layer activations (objects, as :class:`TaskConfig` holds them). ``a0``: the
    first layer's product :math:`x W_1^\top` when the caller already has it (the deferred
    first-layer updates of :func:`simkit.tasks.inversion.run_online`).
    """
    hs = [x]
    for l, (Wl, bl) in enumerate(zip(W, b)):
        a = (a0 if l == 0 and a0 is not None else hs[-1] @ Wl.T) + bl
        hs.append(activate(xp, acts[l], a) if l < len(W) - 1 else a)
    return hs


def output_error(xp, out_act, a_out, target):
    """e = y* - y: MSE with a linear output, onehot - softmax for classification."""
    if out_act == "softmax":
        return target - softmax(xp, a_out)
    return target - a_out


def _clip_rows(xp, d, c):
    n = xp.sqrt((d * d).sum(axis=1, keepdims=True))
    return d * xp.minimum(1.0, c / xp.maximum(n, 1e-300))


def hidden_errors(xp, m, cfg, hs, e, di):
    """delta_l for every layer (list, index l = layer l's output error), output first = e;
    the task's clipping applied."""
    deltas = layer_errors(xp, m.spec.rule, m.W, m.B, m.spec.alpha, e, hs, cfg.acts,
                          B_sdi=m.B_sdi, di=di, dh_mode=cfg.dh_mode)
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


def _feedback(spec, W0, rng, optim_B) -> list:
    """Per-layer B of one model (host draws), as its spec says."""
    B = [None] * len(W0)
    for l in range(1, len(W0)):
        if spec.rule == "FA" and spec.fback == "random":
            B[l] = rng.uniform(-spec.fa_scale, spec.fa_scale, W0[l].T.shape)
        elif spec.fback == "neg-transpose" or (spec.rule == "FA" and spec.fback == "neg50"):
            B[l] = -W0[l].T * (50.0 if spec.fback == "neg50" else 1.0)
        elif spec.fback == "optim":
            B[l] = optim_B[l]
    return B


def build_models(bk, specs, W0, b0, rng, optim_B=None, sdi_optim=None):
    """Models with copies of the shared initial weights; feedback from each spec (host draws).

    ``optim_B``: per-layer SSA-optimised feedback shared by all 'optim' models (as the original);
    ``sdi_optim``: the SDI 'optim' B (= -B1 B2 of the optimised per-layer B's by default).
    """
    models = []
    for sp in specs:
        B = _feedback(sp, W0, rng, optim_B)
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
    ``a0`` (:math:`x W_1^\\top`, given by a caller that defers the first layer's updates): the
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
        dh = df_from_output(xp, cfg.acts[l - 1], hs[l])
        d = ndi_operator(xp, m.W[l], m.B[l], m.spec.alpha, d) * dh
        out.insert(0, d)
    return out


def check_models(specs):
    for sp in specs:
        if sp.rule not in MODELS:
            raise UserError(f"model {sp.name}: unknown rule {sp.rule!r}")
