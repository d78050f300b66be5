"""``simkit bdfa``: bdfa-torch's ``Main.lua`` command line (MLP network), with the code's defaults.

Luo, Fu & Glass 2017 (arXiv:1702.07097), code bdfa-torch (Lua Torch7, a fork of Nøkland's
dfa-torch); research note ``f3_dfa_bdfa.md`` §5. Flags keep their single-dash Torch spelling
(``-gradient dfa -LR 1e-4 -batchSize 128 ...``); boolean options (``-whiten``, ``-augment``,
``-validate``, ``-constBatchSize``) are switches, as in ``torch.CmdLine``. What the code does,
simkit does (the rule is :class:`simkit.rules.bidirectional.BdfaTorch`):

* ``mlp.lua``: ``-num_layers`` hidden layers of ``-num_hidden`` units (``-nonlin`` tanh, sigm or
  relu), a linear output read by the BCE criterion (sigmoid inside, gradient :math:`\\sigma(z)-t`
  summed over the batch) or by ``-criterion ce`` (log-softmax + NLL, batch mean); Torch's
  ``Linear`` init :math:`\\mathcal U(\\pm 1/\\sqrt{\\text{fan-in}})`, except that with tanh/sigm
  every layer of a ``dfa`` network, and every layer but the first of an ``fa`` network, starts at
  zero;
* ``-gradient dfa`` is the code's DFA, whose feedback *learns* (bidirectional DFA, feedback rate
  ``--feedback-lr``, 5e-5 as hard-coded there); ``bdfa`` is the same; ``fa`` has fixed feedback
  (a copy of the layer's initial weights when ``-rfb_mag 0``); ``bfa`` learns it (a reconstruction;
  see :mod:`simkit.rules.bidirectional`); ``--feedback-lr 0`` gives Nøkland's DFA / plain FA;
* ``-optimization`` sgd (Torch7's: dampened momentum, coupled weight decay, ``-LRDecay``
  :math:`\\eta/(1+t\\lambda)`), rmsprop (alpha 0.99, eps 1e-8) or adam; ``-epoch_step k > 0``
  halves the rate every k epochs;
* ``-dataset MNIST`` or ``Cifar10``; ``-normalization scale`` (min-max to [0, 1] from the training
  set), ``simple`` (training mean and std) or ``channel`` (per channel); ``-validate`` tests on
  the last 10,000 training images instead of the test set;
* ``-dropout``, ``-eps``, ``-accGradient``, ``-maxInNorm``/``-maxOutNorm``, ``-bias 0`` as in the code.

Fixed bugs: the code runs ``-epoch`` minus one epochs (``while epoch ~= opt.epoch``); here
``-epoch N`` runs N (``--original-epochs`` restores N-1); its ``-criterion ce`` DFA projects the
gradient with respect to the log-probabilities, :math:`-t/N`, to the hidden layers instead of the
output error (here the output error :math:`(\\mathrm{softmax}(z) - t)/N`); the in-place
``y:mul(0.25)`` cascade of its feedback learning (``--cascade-bug`` restores it). Torch7's Adam
adds its epsilon to :math:`\\sqrt{v}` before bias correction; simkit's after (a negligible
difference). Not supported (one-line error): ``-network conv.lua``, ``-batchnorm 1``,
``-epoch_step 0``, ``-epoch -1``, ``-normalization image``, ``-format yuv``, ``-whiten``,
``-augment``, ``-load``, and the data sets other than MNIST and Cifar10.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from simkit import data as simdata
from simkit.backend import get_backend
from simkit.commands.options import (
    SWITCH,
    add_table,
    apply_divergence_flag,
    common_options,
    simkit_group,
)
from simkit.commands.runner import (
    command_flags,
    default_out_dir,
    fit_and_report,
    progress_setting,
    stored_run,
)
from simkit.errors import UserError
from simkit.nn import soft_targets
from simkit.rules.bidirectional import FEEDBACK_LR
from simkit.training.config import Split, build, resolve_config
from simkit.training.epochs import Trainer
from simkit.training.rundir import RunDir

PAPER_COMMAND = "bdfa-torch Main.lua (Luo et al. 2017): BP, FA, DFA and bidirectional FA/DFA, MLP"
DATASETS = {"MNIST": "mnist", "Cifar10": "cifar10"}
OPTIMIZERS = ("sgd", "rmsprop", "adam")


#: ``Main.lua``'s ``torch.CmdLine`` options: flag, the code's default, kind and meaning.
ORIGINAL_FLAGS = (
    ("-modelsFolder", "./Models/", str, "folder of the models; accepted, no effect"),
    ("-network", "mlp.lua", str, "model file; only mlp.lua"),
    ("-criterion", "bce", str, "bce or ce"),
    ("-eps", 0.0, float, "adversarial fast-gradient-sign magnitude"),
    ("-dropout", 0, int, ">= 1: input dropout 0.1; 1: also hidden dropout 0.5"),
    ("-batchnorm", 0, int, "only 0"),
    ("-nonlin", "tanh", str, "tanh, sigm or relu"),
    ("-num_layers", 2, int, "hidden layers"), ("-num_hidden", 800, int, "hidden units"),
    ("-bias", 1, int, "0: no biases"),
    ("-rfb_mag", 0.0, float, "feedback magnitude, 0 = auto scale"),
    ("-LR", 1e-4, float, "learning rate"), ("-LRDecay", 0.0, float, "sgd learning-rate decay"),
    ("-weightDecay", 0.0, float, "L2 penalty"), ("-momentum", 0.0, float, "sgd momentum"),
    ("-batchSize", 128, int, "batch size"),
    ("-optimization", "sgd", str, "sgd, rmsprop or adam"),
    ("-epoch", 200, int, "number of epochs"),
    ("-epoch_step", -1, int, "> 0: halve the learning rate every k epochs"),
    ("-gradient", "dfa", str, "bp, fa, dfa (learned feedback, as the code), bfa, bdfa"),
    ("-maxInNorm", 400.0, float, "max norm of a unit's outgoing weights (< 400 applies)"),
    ("-maxOutNorm", 400.0, float, "max norm of a unit's incoming weights (< 400 applies)"),
    ("-accGradient", 0, int, "with -eps: add the clean BP gradients"),
    ("-type", "cuda", str, "tensor type; accepted, no effect"),
    ("-devid", 1, int, "GPU id; accepted, no effect"),
    ("-nGPU", 1, int, "number of GPUs; accepted, no effect"),
    ("-load", "", str, "a model to load; not supported (use --resume DIR)"),
    (("-save", "--out-dir"), None, str,
     "run directory (default: runs/DATE-TIME_bdfa_GRADIENT_DATASET_sSEED)"),
    ("-dataset", "MNIST", str, "MNIST or Cifar10"),
    ("-normalization", "scale", str, "scale, simple or channel"),
    ("-format", "rgb", str, "colour format; only rgb"),
    ("-preProcDir", "./PreProcData/", str, "folder of preprocessed data; accepted, no effect"),
    ("-datapath", "./Datasets/", str, "data folder; accepted, simkit reads --data-dir / "
                                      "SIMKIT_DATA"),
    ("-visualize", 0, int, "plot the training; accepted, no effect"),
    ("-whiten", False, SWITCH, "whitened data; not supported"),
    ("-augment", False, SWITCH, "data augmentation; not supported"),
    ("-validate", False, SWITCH, "test on the last 10,000 training images instead of the test "
                                 "set"),
    ("-constBatchSize", False, SWITCH, "only full batches; accepted, no effect"),
)
SIMKIT_FLAGS = (
    ("--feedback-lr", FEEDBACK_LR, float,
     "learning rate of the feedback weights (dfa, bfa, bdfa; 0: fixed feedback)"),
    ("--cascade-bug", False, SWITCH, "the code's 0.25^k label scaling"),
    ("--original-epochs", False, SWITCH, "run -epoch minus 1 epochs, as the code"),
    ("--seed", 1, int, "run seed (the code does not seed)"),
    ("--dtype", "float64", ("float64", "float32"),
     "array dtype (the code computes in float32, where a saturated sigmoid makes simkit's BCE "
     "gradient 0/0)"),
    ("--resume", None, str, "continue the run in DIR", {"metavar": "DIR"}),
)


def register(sub, parent):
    # -threads (Torch's spelling) is --threads: the common options' parser with that alias
    p = sub.add_parser("bdfa", parents=[common_options(threads_aliases=("-threads",))],
                       help="bdfa-torch's Main.lua (MLP), verbatim",
                       description=__doc__.split("\n\n")[0], allow_abbrev=False)
    add_table(p, ORIGINAL_FLAGS)
    add_table(simkit_group(p), SIMKIT_FLAGS)
    p.set_defaults(func=run)


def check_flags(o):
    """One-line errors for values the code rejects or simkit does not support."""
    def allowed(name, value, choices):
        if value not in choices:
            raise UserError(f"-{name} {value!r} is not supported; allowed: {', '.join(map(str, choices))}")
    allowed("network", Path(o.network).stem, ("mlp",))
    allowed("criterion", o.criterion, ("bce", "ce"))
    allowed("nonlin", o.nonlin, ("tanh", "sigm", "relu"))
    allowed("optimization", o.optimization, OPTIMIZERS)
    allowed("gradient", o.gradient, ("bp", "fa", "dfa", "bfa", "bdfa"))
    allowed("dataset", o.dataset, tuple(DATASETS))
    allowed("normalization", o.normalization, ("scale", "simple", "channel"))
    allowed("batchnorm", o.batchnorm, (0,))
    allowed("format", o.format, ("rgb",))
    for name in ("whiten", "augment"):
        if getattr(o, name):
            raise UserError(f"-{name} is not supported")
    if o.load:
        raise UserError("-load is not supported; continue a run with --resume DIR")
    if o.epoch < 1:
        raise UserError(f"-epoch must be a positive number of epochs, got {o.epoch}")
    if o.epoch_step == 0:
        raise UserError("-epoch_step 0 (automatic halving) is not supported; use -1 or k > 0")
    for name in ("num_layers", "num_hidden", "batchSize"):
        if getattr(o, name) < 1:
            raise UserError(f"-{name} must be a positive integer, got {getattr(o, name)}")


def bdfa_config(o) -> dict:
    """Translate ``Main.lua``'s flags into a simkit configuration."""
    check_flags(o)
    act = {"tanh": "tanh", "sigm": "sigmoid", "relu": "relu"}[o.nonlin]
    zero_init = o.gradient in ("dfa", "bdfa") and act != "relu"
    sgd = o.optimization == "sgd"
    rule_opts = {"gradient": o.gradient, "feedback_lr": o.feedback_lr, "rfb_mag": o.rfb_mag,
                 "cascade_bug": o.cascade_bug, "loss_sum": True, "dropout": o.dropout,
                 "eps": o.eps, "acc_gradient": o.accGradient, "max_out_norm": o.maxOutNorm,
                 "max_in_norm": o.maxInNorm, "momentum": o.momentum if sgd else 0.0,
                 "weight_decay": o.weightDecay if sgd else 0.0}
    epochs = o.epoch - 1 if o.original_epochs else o.epoch
    if epochs < 1:
        raise UserError("-epoch 1 with --original-epochs runs no epoch; give -epoch 2 or more")
    return resolve_config({
        "rule": "bdfa_torch", "rule_opts": rule_opts, "dataset": DATASETS[o.dataset],
        "data_dir": o.data_dir, "hidden": [o.num_hidden] * o.num_layers, "hidden_activation": act,
        "loss": o.criterion, "init": "zeros" if zero_init else "kaiming_uniform",
        "init_kw": {} if zero_init else {"a": math.sqrt(5.0)},
        "bias": bool(o.bias), "bias_init": "zeros" if zero_init else "fan_in",
        "epochs": epochs, "batch_size": o.batchSize, "optimizer": o.optimization, "lr": o.LR,
        "momentum": o.momentum if sgd else 0.0,
        "weight_decay": 0.0 if sgd else o.weightDecay, "eps": 1e-8,
        "seed": o.seed, "dtype": o.dtype, "backend": o.backend})


# ------------------------------------------------------------------------------------- data
def normalise(x_train, x_test, how, channels):
    """``scale``: min-max from the training set; ``simple``: training mean/std; ``channel``: per
    channel (inputs flattened channel-major)."""
    if how == "scale":
        lo, hi = x_train.min(), x_train.max()
        return (x_train - lo) / (hi - lo), (x_test - lo) / (hi - lo)
    if how == "simple":
        m, s = x_train.mean(), x_train.std()
        return (x_train - m) / s, (x_test - m) / s
    shape = lambda x: x.reshape(len(x), channels, -1)                       # noqa: E731
    m = shape(x_train).mean(axis=(0, 2))[None, :, None]
    s = shape(x_train).std(axis=(0, 2))[None, :, None]
    return [((shape(x) - m) / s).reshape(len(x), -1) for x in (x_train, x_test)]


def bdfa_splits(bk, cfg, flags):
    ds = simdata.load(cfg["dataset"], cfg["data_dir"])
    x_tr, y_tr, x_te, y_te = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    if flags["validate"]:                       # the last 10,000 training images become the test set
        x_tr, y_tr, x_te, y_te = x_tr[:-10000], y_tr[:-10000], x_tr[-10000:], y_tr[-10000:]
    x_tr, x_te = normalise(x_tr, x_te, flags["normalization"], 3 if cfg["dataset"] == "cifar10" else 1)

    def split(x, y):
        return Split(bk.asarray(x), bk.asarray(soft_targets(y, ds.n_classes)), np.asarray(y))
    return {"train": split(x_tr, y_tr), "test": split(x_te, y_te)}, ds


# ------------------------------------------------------------------------------------- training
class BdfaTrainer(Trainer):
    """The training loop with Torch7's learning-rate schedule: ``-epoch_step`` halvings and, for
    sgd, ``-LRDecay``: :math:`\\eta_t = \\eta_e / (1 + t\\lambda)` after t steps."""

    mid_epoch_checkpoints = False      # the decayed rate is set between steps

    def __init__(self, *a, lr_decay=0.0, epoch_step=-1, **kw):
        super().__init__(*a, **kw)
        self.base_lr, self.lr_decay, self.epoch_step = float(self.cfg["lr"]), lr_decay, epoch_step
        self.on_batch = self.after_step
        self.batches = math.ceil(len(self.splits["train"]) / int(self.cfg["batch_size"]))

    def epoch_lr(self, epoch):
        halvings = (epoch - 1) // self.epoch_step if self.epoch_step > 0 else 0
        return self.base_lr / 2 ** halvings

    def set_lr(self, lr):
        self.opt.lr = [lr] * len(self.opt.lr)

    def train_epoch(self, epoch):
        self.set_lr(self.epoch_lr(epoch))
        return super().train_epoch(epoch)

    def after_step(self, epoch, k):
        if self.lr_decay:
            steps = (epoch - 1) * self.batches + k + 1
            self.set_lr(self.epoch_lr(epoch) / (1.0 + steps * self.lr_decay))


def prepare(bk, cfg, flags):
    splits, ds = bdfa_splits(bk, cfg, flags)
    net, rule, opt, loss, streams = build(bk, cfg, ds)
    if flags["gradient"] in ("fa", "bfa") and flags["nonlin"] != "relu":
        for l in range(1, net.L):               # the code's FA layers start at zero (B keeps a copy)
            net.W[l][...] = 0.0
            if net.b[l] is not None:
                net.b[l][...] = 0.0
    return splits, ds, net, rule, opt, loss, streams


def execute_bdfa(cfg, flags, out_dir, args, resume=False) -> dict:
    run = RunDir(out_dir)
    apply_divergence_flag(cfg, args)
    bk = get_backend(cfg["backend"], cfg["dtype"])
    splits, ds, net, rule, opt, loss, streams = prepare(bk, cfg, flags)
    quiet = bool(getattr(args, "quiet", False))
    trainer = BdfaTrainer(bk, cfg, net, rule, opt, loss, splits, run=run,
                          shuffle_seed=int(streams[1].generate_state(1)[0]),
                          progress=progress_setting(args), log=None if quiet else print,
                          lr_decay=flags["LRDecay"] if flags["optimization"] == "sgd" else 0.0,
                          epoch_step=flags["epoch_step"])
    args.resume_hint = f"simkit bdfa --resume {out_dir}"
    trainer.start(resume, cfg, paper_command="bdfa", bdfa_flags=flags,
                  data={"name": ds.name, "task": ds.task, "n_train": len(splits["train"]),
                        "n_test": len(splits["test"])})
    return fit_and_report(trainer, out_dir, quiet)


def run(args) -> int:
    if args.resume:
        info, cfg, epochs = stored_run(args.resume, "bdfa", args, flags_key="bdfa_flags",
                                       epochs_dest="epoch", free=("save",))
        flags = info["bdfa_flags"]
        if epochs is not None:                  # -epoch N: go on to N epochs
            flags["epoch"] = epochs
            cfg["epochs"] = epochs - 1 if flags["original_epochs"] else epochs
        execute_bdfa(cfg, flags, args.resume, args, resume=True)
        return 0
    cfg = bdfa_config(args)
    flags = command_flags(args)
    out_dir = args.save or default_out_dir(cfg, f"bdfa_{args.gradient}")
    execute_bdfa(cfg, flags, out_dir, args)
    return 0
