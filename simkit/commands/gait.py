"""``simkit gait``: GAIT-prop's ``run.py`` command line, verbatim, with its defaults.

Ahmad, van Gerven & Ambrogioni 2020 (``nasiryahm/GAIT-prop``). The flags and defaults are
``run.py``'s: ``--algorithm=BP``, ``--seed=1``, ``--orthogonal_reg=0.0``, ``--device=0``,
``--nb_epochs=100``, ``--nb_layers=1``, ``--learning_rate=0.0001``, ``--dataset=MNIST``, and the
switches ``--orthogonal_init``, ``--linear``, ``--tower``, ``--load`` (resume). As in the original:
pixels scaled by the training set's maximum, batch = training-set size / 1000 (60) in a fixed
order, float64, Adam without bias correction (beta1 0.9, beta2 0.99, eps 1e-8 outside the square
root), GAIT-prop's gamma = 1e-3, a 784-wide output layer whose first 10 units are the classes,
evaluation of the whole training and test sets every 10 batches. The original's results folder
``./results/<DATASET>_<ALG>_[Linear_][OrthoInit_]<reg>OrthoReg_<seed>Seed_<lr>LR_<n>L|TOWER/``
becomes the run directory ``runs/gait_<that name>/`` (``--out_dir`` names another).

The original's quirks, and what simkit does with them (research note gait_tp.md §5):

* GAIT-prop's bottom-layer update is mostly round-off in the original's absolute-target form;
  simkit uses the exact form by default (``--gait_formulation=original`` for the original's).
* ``--orthogonal_reg=0`` forces orthogonal initialisation, whatever ``--orthogonal_init`` says
  (the published BP run depends on it): kept; ``--no_forced_ortho_init`` draws Xavier weights then.
* The output layer reuses the last hidden layer's seed, so both start from the same matrix: kept;
  ``--distinct_output_seed`` gives it its own.
* ``--tower`` ignores ``--nb_layers`` (the tower is 784-784-500-200-10): kept, with a note.
* The logged loss is not a loss: fixed (simkit logs the squared error the updates descend).
* ``--load`` reloads weights but not the optimiser's moments: fixed (exact resume).

simkit's own options: ``--eval_every N`` (batches between evaluations; 0: at epoch ends only),
``--eval_splits``, ``--gamma``, ``--batch_size``, ``--max_batches``, ``--checkpoint_every``,
``--out_dir`` (or ``--out-dir``). ``--load`` continues the run with the command line's
``--nb_epochs``, ``--eval_every`` and ``--checkpoint_every`` (and backend); everything else comes
from its run.json, and a flag given with another value than the run's is refused.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

import numpy as np

from simkit.backend import get_backend
from simkit.commands.options import SWITCH, add_table, simkit_group
from simkit.errors import UserError
from simkit.nn.invertible import InvertibleNet
from simkit.optim import Adam
from simkit.rules.gait import InvertibleRule
from simkit.training.fixed_order import GaitTrainer, Schedule, Split
from simkit.training.loop import DIVERGENCE_FACTOR
from simkit.training.rundir import RunDir

PAPER_COMMAND = ("GAIT-prop run.py (Ahmad, van Gerven & Ambrogioni 2020): BP, GAIT-prop or TP "
                 "on invertible networks")
DATASETS = {"MNIST": "mnist", "FMNIST": "fashion_mnist", "KMNIST": "kmnist"}
TOWER = (500, 200, 10)          # run.py's hard-coded tower after the input-wide first layer
ADAM = {"beta1": 0.9, "beta2": 0.99, "eps": 1e-8, "bias_correction": False}
# what --load takes from the command line; everything else comes from the run's run.json
RESUME_OVERRIDES = ("nb_epochs", "eval_every", "checkpoint_every", "backend", "data_dir", "device",
                    "divergence_factor")


#: run.py's options: flag, default, kind and meaning.
RUN_PY = (
    ("--algorithm", "BP", ("BP", "GAIT", "TP"),
     "the learning rule: BP, GAIT (GAIT-prop) or TP (target propagation)"),
    ("--seed", 1, int, "seed of the weight initialisation"),
    ("--orthogonal_reg", 0.0, float, "lambda of the orthogonality penalty"),
    ("--orthogonal_init", False, SWITCH, "orthogonal initial weights"),
    ("--device", 0, int, "GPU id (CuPy backend only)"),
    ("--nb_epochs", 100, int, "training epochs"),
    ("--nb_layers", 1, int, "hidden layers of the square net"),
    ("--learning_rate", 0.0001, float, "Adam's learning rate"),
    ("--dataset", "MNIST", tuple(DATASETS), "the data set"),
    ("--linear", False, SWITCH, "identity transfer function instead of leaky ReLU"),
    ("--tower", False, SWITCH, "the 784-784-500-200-10 tower instead of a square net"),
    ("--load", False, SWITCH, "resume the run in the run directory (or --out_dir)"),
)
SIMKIT_FLAGS = (
    ("--eval_every", 10, int, "evaluate after every N-th batch, as the original (0: epoch ends "
                              "only)"),
    ("--eval_splits", "train,test", str, "the splits evaluated: train,test or test"),
    ("--gait_formulation", "exact", ("exact", "original"),
     "exact scaled-displacement GAIT-prop or the original's"),
    ("--gamma", 1e-3, float, "GAIT-prop's gamma"),
    ("--no_forced_ortho_init", False, SWITCH,
     "with --orthogonal_reg=0, do not force orthogonal init (the original does)"),
    ("--distinct_output_seed", False, SWITCH,
     "seed the output layer on its own (original: the last hidden layer's seed)"),
    ("--batch_size", None, int, "minibatch size (default: training-set size / 1000, i.e. 60)"),
    ("--max_batches", 0, int, "cap on batches per epoch (0: none)"),
    ("--checkpoint_every", 0, int, "also checkpoint every N batches (0: at epoch ends only)"),
    (("--out_dir", "--out-dir"), None, str,
     "run directory (default: runs/gait_ and the original's folder name)"),
)


def register(sub, parent):
    p = sub.add_parser("gait", parents=[parent], help="GAIT-prop's run.py, verbatim",
                       description=__doc__.split("\n\n")[0])
    add_table(p, RUN_PY)
    add_table(simkit_group(p), SIMKIT_FLAGS)
    p.set_defaults(func=run)


# ---------------------------------------------------------------------------------- config
def config_from_args(args) -> dict:
    """Check the flags and turn them into the run's configuration (saved in run.json)."""
    checks = [(args.nb_epochs >= 0, "--nb_epochs must be >= 0"),
              (args.nb_layers >= 0, "--nb_layers must be >= 0"),
              (args.learning_rate > 0, "--learning_rate must be > 0"),
              (args.orthogonal_reg >= 0, "--orthogonal_reg must be >= 0"),
              (0 <= args.seed < 2 ** 32 - 64, "--seed must be in [0, 2**32 - 64)"),
              (0 < args.gamma < 1, "--gamma must be in (0, 1)"),
              (args.eval_every >= 0, "--eval_every must be >= 0 (0: epoch ends only)"),
              (args.batch_size is None or args.batch_size >= 1, "--batch_size must be >= 1"),
              (args.max_batches >= 0, "--max_batches must be >= 0"),
              (args.checkpoint_every >= 0, "--checkpoint_every must be >= 0")]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    splits = tuple(s.strip() for s in args.eval_splits.split(",") if s.strip())
    if not splits or set(splits) - {"train", "test"} or "test" not in splits:
        raise UserError(f"--eval_splits must be 'train,test' or 'test', got {args.eval_splits!r}")
    forced = args.orthogonal_reg == 0.0 and not args.no_forced_ortho_init
    return {
        "algorithm": args.algorithm, "seed": args.seed, "orthogonal_reg": args.orthogonal_reg,
        "orthogonal_init": args.orthogonal_init, "orthogonal_init_used": args.orthogonal_init or forced,
        "nb_epochs": args.nb_epochs, "nb_layers": args.nb_layers,
        "learning_rate": args.learning_rate, "dataset": args.dataset, "linear": args.linear,
        "tower": args.tower, "gamma": args.gamma, "gait_formulation": args.gait_formulation,
        "no_forced_ortho_init": args.no_forced_ortho_init,
        "distinct_output_seed": args.distinct_output_seed, "batch_size": args.batch_size,
        "max_batches": args.max_batches, "eval_every": args.eval_every, "eval_splits": list(splits),
        "checkpoint_every": args.checkpoint_every, "device": args.device,
        "divergence_factor": DIVERGENCE_FACTOR if getattr(args, "divergence_factor", None) is None
        else args.divergence_factor,
        "backend": args.backend, "data_dir": args.data_dir, "dtype": "float64",
    }


def config_from_flags(flags) -> dict:
    """The configuration ``simkit gait FLAGS`` would run (for scripts, e.g. the figures)."""
    from simkit.commands.options import Parser, common_options
    parser = Parser(prog="simkit")
    register(parser.add_subparsers(dest="command", parser_class=Parser), common_options())
    return config_from_args(parser.parse_args(["gait", *flags]))


def original_folder(cfg) -> str:
    """run.py's output folder name for these settings (plus tags for simkit's non-defaults)."""
    name = f"{cfg['dataset']}_{cfg['algorithm']}_"
    name += "Linear_" if cfg["linear"] else ""
    name += "OrthoInit_" if cfg["orthogonal_init"] else ""
    name += f"{cfg['orthogonal_reg']}OrthoReg_{cfg['seed']}Seed_{cfg['learning_rate']}LR_"
    name += f"{cfg['nb_layers']}{'TOWER' if cfg['tower'] else 'L'}"
    tags = [("gait_formulation", "original", "origGAIT"), ("no_forced_ortho_init", True, "xavier"),
            ("distinct_output_seed", True, "distinctOutSeed")]
    for key, value, tag in tags:
        if cfg[key] == value:
            name += f"_{tag}"
    return name


# ---------------------------------------------------------------------------------- building
def load_data(cfg):
    """The data set as run.py prepares it: flattened, divided by the training set's max |x|."""
    from simkit import data
    ds = data.load(DATASETS[cfg["dataset"]], cfg["data_dir"])
    scale = float(np.max(np.abs(ds.x_train)))
    return (ds.x_train / scale, np.asarray(ds.y_train), ds.x_test / scale, np.asarray(ds.y_test),
            int(ds.n_classes))


def build(cfg, bk, data=None):
    """Network, rule, optimiser, splits and schedule; ``data`` replaces :func:`load_data`'s."""
    x_tr, y_tr, x_te, y_te, C = data if data is not None else load_data(cfg)
    n = x_tr.shape[1]
    kw = {"seed": cfg["seed"], "orthogonal": cfg["orthogonal_init_used"], "linear": cfg["linear"]}
    if cfg["tower"]:
        net = InvertibleNet.tower(bk, (n, n) + TOWER, **kw)
    else:
        net = InvertibleNet.square(bk, n, cfg["nb_layers"],
                                   distinct_output_seed=cfg["distinct_output_seed"], **kw)
    if net.widths[-1] < C:
        raise UserError(f"the output layer has {net.widths[-1]} units, fewer than {C} classes")
    rule = InvertibleRule(cfg["algorithm"], cfg["orthogonal_reg"], cfg["gamma"], cfg["gait_formulation"])
    opt = Adam(bk, net.params(), cfg["learning_rate"], **ADAM)
    eye = np.eye(C)
    splits = {"train": Split(bk.asarray(x_tr), bk.asarray(eye[y_tr]), y_tr),
              "test": Split(bk.asarray(x_te), bk.asarray(eye[y_te]), y_te)}
    bs = cfg["batch_size"] or len(x_tr) // 1000
    if bs < 1:
        raise UserError(f"{len(x_tr)} training samples give a batch size of 0; pass --batch_size")
    nb = len(x_tr) // bs
    nb = min(nb, cfg["max_batches"]) if cfg["max_batches"] else nb
    schedule = Schedule(cfg["nb_epochs"], bs, nb, cfg["eval_every"], tuple(cfg["eval_splits"]),
                        cfg["checkpoint_every"])
    return net, rule, opt, splits, schedule


def execute(cfg, out_dir, *, resume=False, args=None, on_batch=None, log=print, progress=None,
            data=None):
    """Train ``cfg`` in ``out_dir`` (or resume the run there); returns the summary.

    ``data``: ``(x_train, y_train, x_test, y_test, n_classes)`` instead of the named data set.
    """
    run = RunDir(out_dir)
    if resume:
        stored = run.read_info()["config"]
        stored.update({k: cfg[k] for k in RESUME_OVERRIDES if k in cfg})
        cfg = stored
    bk = get_backend(cfg["backend"], "float64")
    if bk.name == "cupy":
        bk.xp.cuda.Device(int(cfg["device"])).use()
    net, rule, opt, splits, schedule = build(cfg, bk, data)
    trainer = GaitTrainer(bk, net, rule, opt, splits, schedule, run=run, log=log,
                          progress=progress, on_batch=on_batch,
                          divergence_factor=cfg.get("divergence_factor"))
    if args is not None:
        flags = [a for a in sys.argv[2:] if a != "--load"]
        args.resume_hint = f"simkit gait {' '.join(map(shlex.quote, flags))} --load"
    resumed = trainer.start(resume, cfg, paper_command="gait",
                            data={"name": cfg["dataset"], "n_train": len(splits["train"]),
                                  "n_test": len(splits["test"])})
    if resumed and log:
        log(f"simkit: resuming {out_dir} after {trainer.updates} updates")
    return trainer.fit()


def check_stored(out_dir, args):
    """Refuse ``--load`` with flags other than the run's (except :data:`RESUME_OVERRIDES`)."""
    from simkit.commands.runner import check_resume
    stored = RunDir(out_dir).read_info()["config"]
    stored = {**stored, "eval_splits": ",".join(stored["eval_splits"])}
    check_resume(out_dir, args, stored, "nb_epochs", free=RESUME_OVERRIDES)


def run(args) -> int:
    from simkit.commands.runner import RUNS, progress_setting
    cfg = config_from_args(args)
    if cfg["tower"] and cfg["nb_layers"] != 1 and not args.quiet:
        print(f"simkit: note: --tower ignores --nb_layers={cfg['nb_layers']} (the tower is "
              f"input-input-{'-'.join(map(str, TOWER))}, as in run.py)", file=sys.stderr)
    out_dir = Path(args.out_dir) if args.out_dir else RUNS / f"gait_{original_folder(cfg)}"
    if args.load and not RunDir(out_dir).exists():
        raise UserError(f"--load: no run to resume in {out_dir}; start it without --load")
    if args.load:
        check_stored(out_dir, args)
    if not args.load and RunDir(out_dir).exists():
        raise UserError(f"{out_dir} already holds a run; pass --load to continue it or choose "
                        "another --out_dir")
    execute(cfg, out_dir, resume=args.load, args=args, log=None if args.quiet else print,
            progress=progress_setting(args))
    if not args.quiet:
        print(f"results in {out_dir}")
    return 0
