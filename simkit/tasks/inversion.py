r"""Task loops of Podlaski & Machens 2020 (Figures 3-4): regression, MNIST, autoencoder.

The original trains sample by sample (online SGD, batch 1) and evaluates on its own schedule
(regression: training-set error after every sample; MNIST: every 1000 samples): the online
schedule of :mod:`simkit.training.online`, driven by :func:`run_online`. All models of a
task start from the same weights and see the same samples in the same order (paired curves).

Per sample (or minibatch, rows) with forward :math:`a_l = W_l h_{l-1} + b_l`,
:math:`h_l = f_l(a_l)`, output error :math:`e = y^* - y` (linear output, MSE) or
:math:`e = \mathrm{onehot} - \mathrm{softmax}(a_L)` (classification), :math:`\delta_L = e`, the
errors :math:`\delta_{l-1}` come from :func:`simkit.rules.inversion.backprop_error` (SDI: from the
single loop) and

.. math::  W_l \leftarrow W_l + \eta\,\delta_l h_{l-1}^\top - \lambda W_l, \qquad
           b_l \leftarrow b_l + \eta\,\delta_l - \lambda b_l

(batch sum, as the original's autoencoder). Options per task, as the original: clipping of the
hidden errors' norms, ``norm_delW`` (each :math:`\Delta W` divided by its Frobenius norm), skipping
the update of the first sample. Feedback B is fixed during training; DI/SDI models check their
spectral abscissa after every update and re-run SSA when it is >= 0 (the original's layer-2
re-stabilisation wrote into B1 and would loop forever; here each layer's B is fixed correctly).

``dh_mode`` (nonlinear regression): 'paper' applies h' once for every rule; 'code_2021' applies it
twice for BP/FA/PBP/NDI, as the Jan-2021 script does (research note, section 1.5).
"""
from __future__ import annotations

import numpy as np

from simkit.dynamics.di import DISolver
from simkit.errors import UserError
from simkit.nn.activations import df_from_output
from simkit.rules.inversion import backprop_error
from simkit.tasks.inversion_model import (
    ModelSpec,
    TaskConfig,
    activate,
    build_models,
    check_finite,
    check_models,
    forward,
    ndi_reference_delta,
    optim_feedback,
    train_step,
)
from simkit.training.online import OnlineTrainer

# ----------------------------------------------------------------------------------------------
# The online loop and the four tasks
# ----------------------------------------------------------------------------------------------

def _angle(xp, a, b):
    from simkit.metrics import angle_deg
    return angle_deg(xp, a, b)


def _abscissae(bk, m):
    """Spectral abscissa of each of m's DI loops (SDI: of its one loop) for its current weights."""
    from simkit.dynamics.di import di_abscissa, sdi_abscissa
    h, a = bk.to_host, m.spec.alpha
    if m.spec.rule == "SDI":
        return [sdi_abscissa(h(m.W[1]), h(m.W[2]), h(m.B_sdi), a)]
    return [di_abscissa(h(m.W[l]), h(m.B[l]), a) for l in range(1, len(m.W))]


def make_diag(bk, cfg, store):
    r"""Diagnostics of DI/SDI models (the original's section E), called after a step's update.

    Per row: the spectral abscissa of each loop, the angle of each layer's fixed :math:`B_l` to
    :math:`-W_l^\top` (``B{l}``), and the angles (degrees) of :math:`\delta_{l-1}` to the NDI
    error (``ndi{l}``: Eq. 7 with h' once, chained from e with the model's per-layer
    :math:`B_l`, for SDI too) and to the PBP error (``pbp{l}``). As the original, the weights
    are the updated ones, while e, h' and the deltas are those the step used.
    """
    xp = bk.xp

    def diag(m, hs, e, deltas):
        if m.spec.rule not in ("DI", "SDI"):
            return
        row = {"abscissa": _abscissae(bk, m)}
        nd = ndi_reference_delta(xp, m, cfg, hs, e)
        for l in range(len(m.W) - 1, 0, -1):
            dh = df_from_output(xp, cfg.acts[l - 1], hs[l])
            pbp = backprop_error(xp, "PBP", m.W[l], None, 0.0, deltas[l], dh)
            row[f"ndi{l}"] = _angle(xp, deltas[l - 1], nd[l - 1])
            row[f"pbp{l}"] = _angle(xp, deltas[l - 1], pbp)
            if m.B[l] is not None:
                row[f"B{l}"] = _angle(xp, m.B[l], -m.W[l].T)
        store.setdefault(m.spec.name, []).append(row)
    return diag


def online_steps(bk, models, cfg, X, Y, rngs, *, batch=1, di=None, out_act="linear", diag_n=0,
                 defer=1):
    """``(train_block, diagnostics)``: ``train_block(order, i, j)`` trains steps ``i .. j-1`` of
    ``order``, one sample (or minibatch) for every model in turn, or with ``defer`` > 1 (online
    SGD only) samples whose first-layer updates are applied together, exactly
    (:mod:`simkit.tasks.deferred`); ``diagnostics`` fills as :func:`make_diag` says."""
    if defer > 1 and (batch != 1 or diag_n or cfg.norm_delW):
        raise UserError("deferred first-layer updates need batch 1, no diagnostics and no "
                        "norm_delW; use defer=1")
    Xd, Yd = bk.asarray(X), bk.asarray(Y)
    di = di or DISolver(bk)
    store = {}
    diag = make_diag(bk, cfg, store) if diag_n else None

    def train_block(order, i, j):
        idx = np.asarray(order[i * batch:j * batch])
        if defer > 1:
            _deferred_block(bk, models, cfg, Xd, Yd, idx, i, di, rngs, out_act)
            return
        x, t = Xd[bk.xp.asarray(idx)], Yd[bk.xp.asarray(idx)]
        for m, r in zip(models, rngs):
            hs, deltas = train_step(bk, m, cfg, x, t, di, r, out_act,
                                    update_weights=not (cfg.skip_first and i == 0))
            if i < diag_n:
                diag(m, hs, deltas[-1], deltas)               # deltas[-1] = e (never clipped)
    return train_block, store


def checked(bk, models, eval_fn):
    """``evaluate()`` for the loop: ``eval_fn(models)`` once every model is finite (or raise)."""
    def evaluate():
        for m in models:
            check_finite(bk, m)
        return eval_fn(models)
    return evaluate


def run_online(bk, models, cfg, X, Y, order, eval_fn, *, batch=1, eval_every=1, di=None,
               rng=None, out_act="linear", diag_n=0, defer=1, metric=("train", "sse"),
               run=None, config=None, progress=False, position=None, on_batch=None):
    """Train every model on the same samples in ``order``; evaluate every ``eval_every`` steps.

    One pass of the online schedule (:class:`simkit.training.online.OnlineTrainer`) of the steps
    of :func:`online_steps`. ``rng``: the SSA re-stabilisation stream, one shared Generator or a
    list with one per model. ``run``: a run directory for the settings ``config`` (None: none),
    continued where it holds the same settings; ``progress``, ``on_batch``: the loop's.
    Returns (steps, evals (n_evals, n_models), diagnostics {model: [rows]}).
    """
    rngs = list(rng) if isinstance(rng, (list, tuple)) else [rng] * len(models)
    block, store = online_steps(bk, models, cfg, X, Y, rngs, batch=batch, di=di, out_act=out_act,
                                diag_n=diag_n, defer=defer)
    loop = OnlineTrainer(bk, models, rngs, len(order) // batch,
                         lambda epoch, i, j: block(order, i, j), checked(bk, models, eval_fn),
                         names=[m.spec.name for m in models], eval_every=eval_every, defer=defer,
                         metric=metric, progress=progress, position=position, on_batch=on_batch,
                         desc="online" if run is None else str(run))
    loop.fit_in(run, config)
    return np.array(loop.steps), np.array(loop.evals), store


def eval_forward(xp, m, cfg, X):
    """Model ``m``'s outputs for the evaluation set ``X`` in X's dtype (float32: half the cost)."""
    return forward(xp, [w.astype(X.dtype) for w in m.W], [v.astype(X.dtype) for v in m.b],
                   cfg.acts, X)[-1]


def _deferred_block(bk, models, cfg, Xd, Yd, idx, first, di, rngs, out_act):
    """Online steps ``first ..`` on samples ``idx`` with deferred first-layer updates (Eq. D3)."""
    from simkit.tasks.deferred import DeferredFirstLayer
    ix = bk.xp.asarray(idx)
    Xb, Tb = Xd[ix], Yd[ix]
    K = Xb @ Xb.T                                                 # x_i^T x_j
    updates = [not (cfg.skip_first and first + j == 0) for j in range(len(idx))]
    state = [DeferredFirstLayer(bk.xp, m.W[0], Xb, cfg.eta, cfg.w_decay, updates)
             for m in models]
    for j, upd in enumerate(updates):
        for m, st, r in zip(models, state, rngs):
            _, deltas = train_step(bk, m, cfg, Xb[j:j + 1], Tb[j:j + 1], di, r, out_act,
                                   update_weights=upd, a0=st.product(j, K))
            st.record(j, deltas[0])
    for st in state:
        st.apply()


ONLINE_COST = {"SDI": 6.0, "DI": 5.0, "NDI": 2.0}   # time per online step (1: BP, FA, PBP)


def _streams(seed, n=4):
    return [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(n)]


def sse_eval(bk, cfg, X, Y, dtype=None):
    """Sum over the whole set of squared output errors (the original's regression error).

    ``dtype``: the forward pass's precision (default: the run's). The set is held as columns
    (:math:`W_l H_{l-1}`, examples along the contiguous axis): with 10-30 units per layer that
    product is 1.7x faster than the row form; a stack of all models in one product was slower.
    """
    xp = bk.xp
    XT, YT = bk.asarray(X.T, dtype), bk.asarray(Y.T, dtype)
    XT, YT = xp.ascontiguousarray(XT), xp.ascontiguousarray(YT)

    def sse(m):
        h = XT
        for l, (W, b) in enumerate(zip(m.W, m.b)):
            h = W.astype(XT.dtype) @ h + b.astype(XT.dtype)[:, None]    # a_l = W_l h_{l-1} + b_l
            h = activate(xp, cfg.acts[l], h) if l < len(m.W) - 1 else h
        r = (YT - h).ravel()
        return float(r @ r)
    return lambda models: [sse(m) for m in models]


def _uniform_net(rng, sizes, scale=0.01, bias=True):
    W = [rng.uniform(-scale, scale, (o, i)) for i, o in zip(sizes[:-1], sizes[1:])]
    b = [rng.uniform(-scale, scale, o) if bias else np.zeros(o) for o in sizes[1:]]
    return W, b


LINEAR_MODELS = [ModelSpec("BP", "BP"), ModelSpec("FA", "FA", "random"),
                 ModelSpec("FA-2", "FA", "neg50"), ModelSpec("PBP", "PBP"),
                 ModelSpec("NDI", "NDI", "neg-transpose", 0.01),
                 ModelSpec("NDI-2", "NDI", "neg-transpose", 0.001),
                 ModelSpec("NDI-3", "NDI", "optim", 0.01),
                 ModelSpec("DI", "DI", "neg-transpose", 0.01),
                 ModelSpec("DI-2", "DI", "neg-transpose", 0.001),
                 ModelSpec("DI-3", "DI", "optim", 0.01)]
NONLINEAR_MODELS = [ModelSpec("FA-2", "FA", "neg-transpose") if s.name == "FA-2" else s
                    for s in LINEAR_MODELS] + [
    ModelSpec("SDI", "SDI", "neg-transpose", 0.01), ModelSpec("SDI-2", "SDI", "neg-transpose", 0.001),
    ModelSpec("SDI-3", "SDI", "optim", 0.01)]
MNIST_MODELS = [ModelSpec("BP", "BP"), ModelSpec("FA", "FA", "random"), ModelSpec("PBP", "PBP"),
                ModelSpec("NDI", "NDI", "neg-transpose", 0.0),
                ModelSpec("NDI-2", "NDI", "neg-transpose", 0.01)]
AE_MODELS = [ModelSpec("FA", "FA", "random", fa_scale=0.01) if s.rule == "FA" else s
             for s in MNIST_MODELS]


def regression_task(bk, seed=0, nonlinear=False, n_train=None, norm_delW=False, eval_every=1,
                    batch=1, diag_n=500, specs=None, dh_mode="paper", di_steps=1000,
                    eval_dtype=None, workers=1):
    """Fig. 3a-f (linear) or 3g-k (nonlinear). Returns a dict of host arrays and diagnostics.

    ``eval_dtype``: precision of the training-set error's forward pass (default: the run's);
    ``workers``: processes the models are spread over (:mod:`simkit.training.parallel`).
    """
    from simkit.data import load
    s_init, s_fb, s_order, s_ssa = _streams(seed)
    if nonlinear:
        ds = load("nonlinear_regression", n_train=n_train or 10000, n_test=0, seed=seed)
        sizes, acts, clip, ssa = [30, 20, 10, 10], ["tanh", "tanh", "linear"], {0: 1.0, 1: 1.0}, \
            dict(lr=0.5, maxiters=2000, miniters=100)
    else:
        ds = load("linear_regression", n_train=n_train or 2000, n_test=0, seed=seed)
        sizes, acts, clip, ssa = [30, 20, 10], ["linear", "linear"], {0: 10.0}, \
            dict(lr=0.05, maxiters=200, miniters=10)
    specs = specs or (NONLINEAR_MODELS if nonlinear else LINEAR_MODELS)
    check_models(specs)
    W0, b0 = _uniform_net(s_init, sizes, bias=nonlinear)
    optim_B = optim_feedback(W0, s_fb, ssa) if any(s.fback == "optim" for s in specs) else None
    cfg = TaskConfig(acts, eta=0.01, clip=clip, norm_delW=norm_delW, skip_first=True,
                     bias=nonlinear, dh_mode=dh_mode, ssa=ssa)
    models = build_models(bk, specs, W0, b0, s_fb, optim_B)
    order = s_order.permutation(len(ds.x_train))
    rngs = [np.random.default_rng(s) for s in s_ssa.spawn(len(specs))]   # one SSA stream each
    from simkit.training.parallel import run_models_parallel
    steps, err, diag = run_models_parallel(
        run_online, bk, models, cfg, ds.x_train, ds.y_train, order,
        sse_eval(bk, cfg, ds.x_train, ds.y_train, eval_dtype), batch=batch, eval_every=eval_every,
        di=DISolver(bk, n_steps=di_steps), rng=rngs, diag_n=diag_n, workers=workers,
        cost=ONLINE_COST)
    return {"names": [s.name for s in specs], "steps": steps, "error": err,
            "nse": err / err.max(), "diag": diag}


def _mnist(data_dir=None, zscore=True):
    from simkit.data import load
    ds = load("mnist", data_dir=data_dir)
    xtr, xte = ds.x_train * 255.0, ds.x_test * 255.0
    if zscore:                                  # global scalar mean and std of the training set
        mu, sd = xtr.mean(), xtr.std()
        return ds, (xtr - mu) / sd, (xte - mu) / sd
    return ds, xtr / 255.0, xte / 255.0


def mnist_task(bk, seed=0, n_samples=2000, epochs=1, eval_every=1000, batch=1, specs=None,
               data_dir=None, n_test=None, progress=False, defer=100, eval_dtype="float32",
               run=None, on_batch=None):
    """Fig. 4a: 784-1000-10 tanh/softmax, online SGD, eta 1e-3, decay 1e-6 per sample.

    Test error (%) every ``eval_every`` samples; ``n_samples`` per epoch (None: all 60k).
    ``defer``: first-layer updates applied this many samples at a time, exactly
    (:mod:`simkit.tasks.deferred`; 1 = one per sample, as the original). ``eval_dtype``: the test
    forward pass's precision (float32 halves its cost; an argmax tie within 1e-7 could differ).
    ``run``: a run directory (:class:`simkit.training.online.OnlineTrainer`: saved about once a
    minute, continued by the same call); ``progress``, ``on_batch``: the loop's.
    """
    xp = bk.xp
    ds, xtr, xte = _mnist(data_dir)
    n_test = n_test or len(xte)
    s_init, s_fb, s_order, _ = _streams(seed)
    specs = specs or MNIST_MODELS
    check_models(specs)
    W0, b0 = _uniform_net(s_init, [784, 1000, 10], bias=False)
    cfg = TaskConfig(["tanh", "softmax"], eta=1e-3, w_decay=1e-6)
    models = build_models(bk, specs, W0, b0, s_fb)
    if batch != 1:
        defer = 1
    Xte = bk.asarray(xte[:n_test]).astype(eval_dtype)
    yte = bk.asarray(ds.y_test[:n_test], dtype=np.int64)

    def test_error(models):
        out = [eval_forward(xp, m, cfg, Xte) for m in models]
        return [100.0 * float((o.argmax(axis=1) != yte).mean()) for o in out]
    orders = [s_order.permutation(len(xtr))[:n_samples] for _ in range(epochs)]  # one an epoch
    block, _ = online_steps(bk, models, cfg, xtr, np.eye(10)[ds.y_train], [None] * len(models),
                            batch=batch, out_act="softmax", defer=defer)
    loop = OnlineTrainer(bk, models, [None] * len(models), len(orders[0]) // batch,
                         lambda epoch, i, j: block(orders[epoch - 1], i, j),
                         checked(bk, models, test_error), names=[s.name for s in specs],
                         n_epochs=epochs, eval_every=max(1, eval_every // batch), defer=defer,
                         metric=("test", "error_pct"), progress=progress, on_batch=on_batch,
                         desc="fig4a")
    loop.fit_in(run, {"task": "fig4a", "seed": seed, "n_samples": n_samples, "epochs": epochs,
                      "eval_every": eval_every, "batch": batch, "defer": defer,
                      "eval_dtype": str(eval_dtype), "n_test": n_test,
                      "dtype": np.dtype(bk.dtype).name, "models": [s.name for s in specs]})
    units, steps = np.array(loop.units), np.array(loop.steps)
    return {"names": [s.name for s in specs],
            "samples": (steps + 1) * batch + (units - 1) * len(orders[0]),
            "test_error": np.array(loop.evals)}


def autoencoder_task(bk, seed=0, init="normal", n_batches=30, batch=100, eval_every=10,
                     specs=None, data_dir=None, n_test=None, progress=False, eval_dtype="float32",
                     run=None, position=None):
    """Fig. 4b: 784-500-250-30-250-500-784 autoencoder, batch-sum updates, eta 1e-6, decay 1e-10.

    ``eval_dtype``: the test forward pass's precision (float32 halves the cost, which is most of
    the figure's; the MSE then carries ~1e-7 relative round-off). ``run``: a run directory, as
    :func:`mnist_task`'s; ``progress`` and ``position`` (its line): the loop's progress bar.
    """
    from simkit.nn.init import orthogonal
    xp = bk.xp
    _, xtr, xte = _mnist(data_dir, zscore=False)
    xte = xte[:n_test or len(xte)]
    s_init, s_fb, s_order, _ = _streams(seed)
    sizes = [784, 500, 250, 30, 250, 500, 784]
    if init == "normal":
        W0, b0 = _uniform_net(s_init, sizes, bias=False)
    elif init == "orthogonal":
        W0 = [orthogonal(s_init, (o, i)) for i, o in zip(sizes[:-1], sizes[1:])]
        b0 = [np.zeros(o) for o in sizes[1:]]
    else:
        raise UserError(f"autoencoder init must be 'normal' or 'orthogonal', got {init!r}")
    specs = specs or AE_MODELS
    check_models(specs)
    cfg = TaskConfig(["tanh", "tanh", "linear", "tanh", "tanh", "linear"], eta=1e-6, w_decay=1e-10)
    models = build_models(bk, specs, W0, b0, s_fb)
    Xte = bk.asarray(xte).astype(eval_dtype)

    def mse(models):
        return [float(((Xte - eval_forward(xp, m, cfg, Xte)) ** 2).mean(dtype=np.float64))
                for m in models]
    n_ep = -(-n_batches * batch // len(xtr))                      # reshuffled every epoch
    order = np.concatenate([s_order.permutation(len(xtr)) for _ in range(n_ep)])[:n_batches * batch]
    config = {"task": "fig4b", "seed": seed, "init": init, "n_batches": n_batches, "batch": batch,
              "eval_every": eval_every, "n_test": n_test, "eval_dtype": str(eval_dtype),
              "dtype": np.dtype(bk.dtype).name, "models": [s.name for s in specs]}
    st, ev, _ = run_online(bk, models, cfg, xtr, xtr, order, mse, batch=batch,
                           eval_every=eval_every, metric=("test", "mse"), run=run, config=config,
                           progress=progress, position=position)
    return {"names": [s.name for s in specs], "examples": (st + 1) * batch, "test_mse": ev}


# ----------------------------------------------------------------------------------------------
# Saving results (figure scripts)
# ----------------------------------------------------------------------------------------------

def diag_arrays(diag: dict, prefix="") -> dict:
    """Per-step diagnostics as flat arrays ``{prefix}{model}__{key}`` (NaN where missing)."""
    out = {}
    for name, rows in diag.items():
        keys = sorted({k for r in rows for k in r if k != "abscissa"})
        n_ab = max((len(r["abscissa"]) for r in rows), default=0)
        ab = np.full((len(rows), n_ab), np.nan)
        for i, r in enumerate(rows):
            ab[i, :len(r["abscissa"])] = r["abscissa"]
        out[f"{prefix}{name}__abscissa"] = ab
        for k in keys:
            out[f"{prefix}{name}__{k}"] = np.array([r.get(k, np.nan) for r in rows])
    return out


COLORS = {"BP": "k", "FA": "0.5", "FA-2": "0.75", "PBP": "g", "NDI": "tab:blue",
          "NDI-2": "tab:purple", "NDI-3": "y", "DI": "tab:blue", "DI-2": "tab:purple",
          "DI-3": "y", "SDI": "tab:cyan", "SDI-2": "tab:pink", "SDI-3": "tab:orange"}


def style(name):
    """Colour and line style of a model's curve (the original's colours; NDI faded, SDI dotted)."""
    kw = {"color": COLORS.get(name, None), "label": name}
    if name.startswith("NDI"):
        kw.update(alpha=0.5, lw=3)
    if name.startswith("SDI"):
        kw.update(ls=":")
    return kw
