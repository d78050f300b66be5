"""``simkit f3``: F³'s ``start_training.py`` command line, verbatim, with its defaults.

Flügel et al. 2023 (arXiv:2304.13372), ``Helmholtz-AI-Energy/f3``; research note
``f3_dfa_bdfa.md`` §1-2. The flags and defaults are the original's (``--mode f3``,
``--error_info one_hot_target``, ``--initialization_method kaiming_uniform``, ``--lr 1.5e-4``,
``--batch_size 50``, ``--seed 1``, ``--epochs`` required, ...). What the original does, simkit does:

* network ``[D] + [width]*depth + [C]``: tanh hidden layers, a sigmoid output with BCE (mean over
  N·C) for classification, a linear output with MSE for regression; PyTorch's ``Linear`` init
  :math:`\\mathcal U(\\pm 1/\\sqrt{\\text{fan-in}})` for weights and biases; one Adam for all layers
  (betas 0.9/0.999, eps 1e-8);
* ``--mode bp`` is :mod:`~simkit.rules.bp`, ``llo`` :mod:`~simkit.rules.llo`, ``f3``
  :mod:`~simkit.rules.f3` with ``--error_info`` and the feedback initialisation flags;
* data: MNIST standardised with (x - 0.1307)/0.3081; CIFAR-10 per channel with F³'s
  means/stds; SGEMM and Wine Quality (``wine_quality_regression``) as F³ prepares them;
* results: the original's CSV, ``f3_results.csv`` in the run directory, with a train and a test
  evaluation row at epoch 0 and after every epoch (loss summed over outputs, AUROC, multilabel
  F1, correct, accuracy in %, or MAPE/MAE for regression), every flag as a string column,
  ``init_method`` and ``result_filename``; with ``--output_path`` also where the original writes it,
  ``<output_path>/<YYYY>/<YYYY>-<M>/<YYYY-MM-DD>/<YYYY-MM-DD--HH-MM-SS>-<output_name>-<uuid8>.csv``.

Fixed bugs of the original (none changes a number): it reads ``config.model`` without defining
``--model`` (here ``--model`` exists and only its default, none, is accepted); ``--dry_run`` stops
after one batch and then fails to write its CSV (here it writes it); the CSV is written after
every epoch instead of only at the end. ``--device`` is recorded but the array backend comes from
``--backend`` (the original defaults to ``cuda`` and fails on CPU-only machines). Data sets
``susy``, ``kdd``, ``census_income`` and ``wine_quality_classification`` are not available.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import io
import math
import pathlib
import sys
import uuid
from pathlib import Path

import numpy as np

from simkit.backend import get_backend
from simkit.commands.options import SWITCH, add_table, apply_divergence_flag, simkit_group
from simkit.commands.runner import default_out_dir, fit_and_report, progress_setting, stored_run
from simkit.errors import UserError
from simkit.rules.f3 import ERROR_INFO, DelayedBuffer
from simkit.rules.feedback import METHODS
from simkit.training.config import build, load_splits, resolve_config
from simkit.training.epochs import Trainer
from simkit.training.rundir import RunDir, atomic_write_bytes

PAPER_COMMAND = "F3 start_training.py (Fluegel et al. 2023): BP, LLO, DFA, DRTP and F3 variants"
DATASETS = {  # the original's name -> (simkit data set, standardisation, loss name in the CSV)
    "mnist": ("mnist", "mnist", "binary_cross_entropy"),
    "cifar10": ("cifar10", "none", "binary_cross_entropy"),
    "sgemm": ("sgemm", "none", "mse_loss"),
    "wine_quality_regression": ("wine_quality", "none", "mse_loss"),
}
UNAVAILABLE = ("susy", "kdd", "census_income", "wine_quality_classification")
CIFAR_MEAN = np.array([125.3, 123.0, 113.9]) / 255.0
CIFAR_STD = np.array([63.0, 62.1, 66.7]) / 255.0
F3_INIT_METHODS = tuple(m for m in METHODS if m != "rfb_mag")


REQUIRED = "(default: none: required, except with --resume)"
#: ``start_training.py``'s options, in its order, with its defaults and meanings.
F3_FLAGS = (
    ("--depth", None, int, f"the model depth: number of hidden layers {REQUIRED}"),
    ("--width", None, int, f"the model width: neurons in each hidden layer {REQUIRED}"),
    ("--mode", "f3", ("f3", "bp", "llo"),
     "the training mode: f3 (direct feedback of --error_info), bp, llo (last layer only)"),
    ("--initialization_method", "kaiming_uniform", F3_INIT_METHODS,
     "the initialisation of the feedback weights"),
    ("--scalar", 1.0, float, "the scale of the constant-based feedback initialisations"),
    ("--discrete_values", [-1, 0, 1], float,
     "the values of discrete_uniform / cartesian_product", {"nargs": "+"}),
    ("--device", "cuda", str, "recorded only; simkit picks the array backend from --backend"),
    ("--dataset", "mnist", (*DATASETS, *UNAVAILABLE),
     f"the data set ({', '.join(UNAVAILABLE)}: not available in simkit)"),
    ("--epochs", None, int, "the number of epochs to train", {"required": True}),
    ("--batch_size", 50, int, "the training minibatch size"),
    ("--test_batch_size", 1000, int, "the evaluation minibatch size"),
    ("--lr", 1.5 * 1e-4, float, "Adam's learning rate"),
    ("--dry_run", False, bool, "any non-empty value: stop after the first batch"),
    ("--seed", 1, int, "the run's seed"),
    ("--log_interval", 0, int, "accepted; no effect (as in the original)"),
    ("--print_eval", False, SWITCH, "print the evaluation results after each epoch"),
    ("--eval_every_nth_batch", 0, int, "extra test evaluations every n batches inside an epoch "
                                       "(0: none)"),
    ("--error_info", "one_hot_target", ERROR_INFO, "what the feedback carries to the hidden "
                                                   "layers (--mode f3)"),
    ("--no_output", False, SWITCH, "do not write the results CSV"),
    ("--output_path", None, pathlib.Path,
     "also write the results CSV where the original does: OUTPUT_PATH/YYYY/YYYY-M/YYYY-MM-DD/"
     "DATE--TIME-OUTPUT_NAME-UUID.csv (default: only f3_results.csv in the run directory)"),
    ("--output_name", "", str, "the name in the file name of --output_path's CSV"),
    ("--model", None, str, "read by the original without being defined; not supported: give "
                           "--depth and --width"),
)
ORIGINAL_FLAGS = tuple(row[0].lstrip("-") for row in F3_FLAGS if row[0] != "--model")
SIMKIT_FLAGS = (
    ("--dtype", "float64", ("float64", "float32"),
     "array dtype (the original computes in float32)"),
    ("--out-dir", None, str, "run directory (default: runs/DATE-TIME_f3_MODE_DATASET_sSEED)"),
    ("--resume", None, str, "continue the run in DIR", {"metavar": "DIR"}),
)
USAGE = ("%(prog)s --depth N --width N --epochs N [options]\n"
         "       %(prog)s --epochs N --resume DIR [options]")


def register(sub, parent):
    p = sub.add_parser("f3", parents=[parent], help="F3's start_training.py, verbatim",
                       description=__doc__.split("\n\n")[0], allow_abbrev=False, usage=USAGE)
    add_table(p, F3_FLAGS)
    add_table(simkit_group(p), SIMKIT_FLAGS)
    p.set_defaults(func=run)


def f3_config(args) -> dict:
    """Translate the original's flags into a simkit configuration."""
    if args.model is not None:
        raise UserError("--model is not supported; give --depth and --width")
    if args.depth is None or args.width is None:
        raise UserError("--depth and --width are required (the original asserts them)")
    if args.dataset in UNAVAILABLE:
        raise UserError(f"--dataset {args.dataset} is not available in simkit; allowed: "
                        f"{', '.join(DATASETS)}")
    for name in ("depth", "width", "epochs", "batch_size", "test_batch_size"):
        if getattr(args, name) < (0 if name == "depth" else 1):
            raise UserError(f"--{name} must be a positive integer, got {getattr(args, name)}")
    dataset, standardize, loss_name = DATASETS[args.dataset]
    rule_opts = {}
    if args.mode == "f3":
        rule_opts = {"error_info": args.error_info, "feedback": args.initialization_method,
                     "scalar": args.scalar, "discrete_values": list(args.discrete_values)}
    return resolve_config({
        "rule": args.mode, "rule_opts": rule_opts, "dataset": dataset, "standardize": standardize,
        "data_dir": args.data_dir, "hidden": [args.width] * args.depth,
        "hidden_activation": "tanh", "loss": "mse" if loss_name == "mse_loss" else "bce",
        "init": "kaiming_uniform", "init_kw": {"a": math.sqrt(5.0)}, "bias_init": "fan_in",
        "epochs": 1 if args.dry_run else args.epochs, "max_batches": 1 if args.dry_run else 0,
        "batch_size": args.batch_size, "eval_batch_size": args.test_batch_size,
        "optimizer": "adam", "lr": args.lr, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
        "seed": args.seed, "dtype": args.dtype, "backend": args.backend})


def init_method_string(flags: dict) -> str:
    """The original's ``init_method`` column, e.g. ``discrete_uniform_1.0_[-1.0, 0.0, 1.0]``."""
    tokens = [flags["initialization_method"]]
    if tokens[0] in ("constant", "alternate_negative", "chunked_negative", "discrete_uniform",
                     "cartesian_product"):
        tokens.append(flags["scalar"])
    if tokens[0] in ("discrete_uniform", "cartesian_product"):
        tokens.append(flags["discrete_values"])
    return "_".join(str(t) for t in tokens)


# ------------------------------------------------------------------------------------- metrics
def multilabel_auroc(y, T) -> float:
    """Macro AUROC over the C labels (Mann-Whitney U with mid-ranks; torchmetrics' exact AUROC)."""
    from scipy.stats import rankdata
    aucs = []
    for c in range(T.shape[1]):
        pos = T[:, c] > 0.5
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        if n_pos == 0 or n_neg == 0:
            aucs.append(0.0)
            continue
        ranks = rankdata(y[:, c])
        aucs.append((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return float(np.mean(aucs))


def multilabel_f1(y, T, threshold=0.5) -> float:
    """Macro F1 over the C labels of ``y > threshold`` (0 for a label with no TP, FP or FN)."""
    pred, true = y > threshold, T > 0.5
    tp = (pred & true).sum(axis=0)
    fp, fn = (pred & ~true).sum(axis=0), (~pred & true).sum(axis=0)
    den = 2 * tp + fp + fn
    return float(np.mean(np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)))


class F3Trainer(Trainer):
    """The training loop, plus the original's evaluation rows and results CSV."""

    mid_epoch_checkpoints = False      # its evaluation rows live in memory until epoch end

    def __init__(self, *a, results=None, loss_name="", **kw):
        super().__init__(*a, **kw)
        self.results, self.loss_name = results, loss_name
        self._cache = {}

    def evaluate(self, split) -> dict:
        key = id(split)
        if key not in self._cache:
            self._cache[key] = self._evaluate(split)
        return self._cache[key]

    def _evaluate(self, split) -> dict:
        bs, loss_sum, ys = int(self.cfg["eval_batch_size"]), 0.0, []
        for i in range(0, len(split), bs):
            y = self.net.predict(split.x[i:i + bs])
            loss_sum += self.loss.value(self.bk.xp, y, split.t[i:i + bs]) * y.shape[0]
            ys.append(self.bk.to_host(y))
        y, T = np.concatenate(ys), self.bk.to_host(split.t)
        out = {"loss": loss_sum / len(split)}
        if split.labels is not None:
            out.update(acc=float((y.argmax(axis=1) == split.labels).mean()),
                       auroc=multilabel_auroc(y, T), f1=multilabel_f1(y, T))
        else:
            err = np.abs(y - T)
            out.update(mae=float(err.mean()), mape=float((err / np.maximum(np.abs(T), 1.17e-6)).mean()))
        return out

    def original_row(self, epoch, split_name, processed) -> dict:
        split = self.splits[split_name]
        m, p = self.evaluate(split), split_name
        row = {"epoch": epoch, "processed_samples": processed,
               f"{p}_loss": m["loss"] * split.t.shape[1], "loss_name": self.loss_name}
        if split.labels is not None:
            correct = int(round(m["acc"] * len(split)))
            row.update({f"{p}_AUROC": m["auroc"], f"{p}_MultilabelF1": m["f1"],
                        f"{p}_correct": float(correct), f"{p}_accuracy": 100.0 * correct / len(split)})
        else:
            row.update({f"{p}_mape": m["mape"], f"{p}_mae": m["mae"]})
        return row

    def evaluate_all(self, epoch, train_metrics):
        self._cache = {}
        results = super().evaluate_all(epoch, train_metrics)
        if self.results is not None:
            per_epoch = len(self.splits["train"])
            if int(self.cfg.get("max_batches", 0)) > 0:
                per_epoch = min(per_epoch, int(self.cfg["max_batches"]) * int(self.cfg["batch_size"]))
            processed = epoch * per_epoch
            self.results.add(self.original_row(epoch, "train", processed))
            self.results.add(self.original_row(epoch, "test", processed))
            self.results.write()
        return results

    def eval_every(self, n):
        """``on_batch`` hook for ``--eval_every_nth_batch``: a test row after every n batches."""
        def hook(epoch, k):
            n_batches = math.ceil(len(self.splits["train"]) / int(self.cfg["batch_size"]))
            if n and (k + 1) % n == 0 and k + 1 < n_batches:
                self._cache = {}
                done = (epoch - 1) * len(self.splits["train"]) + (k + 1) * int(self.cfg["batch_size"])
                self.results.add(self.original_row(epoch, "test", done))
        return hook


# ------------------------------------------------------------------------------------- the CSV
class ResultsCSV:
    """The original's results table: evaluation rows, then every flag as a string column,
    ``init_method`` and ``result_filename``; written (atomically) to every path in ``paths``."""

    def __init__(self, flags: dict, paths: list, rows=None):
        self.flags, self.paths, self.rows = flags, [Path(p) for p in paths], list(rows or [])

    def add(self, row: dict):
        self.rows.append(row)

    def table(self) -> tuple[list, list]:
        columns = []
        for row in self.rows:
            columns += [k for k in row if k not in columns]
        extra = {**{k: str(v) for k, v in self.flags.items()},
                 "init_method": init_method_string(self.flags),
                 "result_filename": self.paths[0].name if self.paths else ""}
        return columns + list(extra), [{**r, **extra} for r in self.rows]

    def write(self):
        columns, rows = self.table()
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", restval="")
        w.writeheader()
        for r in rows:
            w.writerow({k: repr(v) if isinstance(v, float) else v for k, v in r.items()})
        for path in self.paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, buf.getvalue().encode())

    def resume_rows(self, path: Path, upto_epoch: int):
        """Take the evaluation rows of an earlier CSV (for --resume), up to ``upto_epoch``."""
        if not path.exists():
            return
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        skip = set(self.flags) | {"init_method", "result_filename"}
        ints = ("epoch", "processed_samples")
        self.rows = [{k: v if k == "loss_name" else int(v) if k in ints else float(v)
                      for k, v in r.items() if k not in skip and v != ""}
                     for r in rows if int(r["epoch"]) <= upto_epoch]


def original_csv_path(output_path, output_name) -> Path:
    today = datetime.datetime.today()
    folder = Path(output_path) / str(today.year) / f"{today.year}-{today.month}" / str(today.date())
    return folder / f"{today.strftime('%Y-%m-%d--%H-%M-%S')}-{output_name}-{str(uuid.uuid4())[:8]}.csv"


# ------------------------------------------------------------------------------------- running
def prepare(bk, cfg):
    """Data (CIFAR-10 normalised per channel as F³ does), network, rule, optimiser."""
    splits, ds = load_splits(bk, cfg)
    if cfg["dataset"] == "cifar10":
        for split in splits.values():
            n = split.x.shape[0]
            x = split.x.reshape(n, 3, -1)
            x -= bk.asarray(CIFAR_MEAN)[None, :, None]
            x /= bk.asarray(CIFAR_STD)[None, :, None]
    net, rule, opt, loss, streams = build(bk, cfg, ds)
    if getattr(rule, "delayed", False):   # one buffer row per training sample, allocated once
        rule.buffer = DelayedBuffer(bk, net.sizes[-1], len(splits["train"]))
    return splits, ds, net, rule, opt, loss, streams


def csv_paths(csv_path, in_run) -> list:
    """Where the results CSV goes: ``csv_path`` (the original's place, given by --output_path)
    first, then ``in_run``, the run directory's copy (the only one by default)."""
    if csv_path is None or Path(csv_path).resolve() == Path(in_run).resolve():
        return [in_run]
    return [Path(csv_path), in_run]


def execute_f3(cfg, flags, out_dir, args, csv_path=None, resume=False) -> dict:
    run = RunDir(out_dir)
    apply_divergence_flag(cfg, args)
    bk = get_backend(cfg["backend"], cfg["dtype"])
    splits, ds, net, rule, opt, loss, streams = prepare(bk, cfg)
    in_run = run.path / "f3_results.csv"
    paths = csv_paths(csv_path, in_run)
    results = None if flags["no_output"] else ResultsCSV(flags, paths)
    quiet = bool(getattr(args, "quiet", False))
    trainer = F3Trainer(bk, cfg, net, rule, opt, loss, splits, run=run,
                        shuffle_seed=int(streams[1].generate_state(1)[0]),
                        progress=progress_setting(args), log=None if quiet else print,
                        results=results, loss_name=DATASETS[flags["dataset"]][2])
    if flags["eval_every_nth_batch"] and results is not None:
        trainer.on_batch = trainer.eval_every(flags["eval_every_nth_batch"])
    args.resume_hint = f"simkit f3 --epochs {flags['epochs']} --resume {out_dir}"
    trainer.start(resume, cfg, paper_command="f3", f3_flags=flags, f3_csv=str(paths[0]),
                  data={"name": ds.name, "task": ds.task, "n_train": len(splits["train"]),
                        "n_test": len(splits["test"])})
    if resume and results is not None:
        results.resume_rows(in_run, trainer.epoch)
    if flags["print_eval"] and results is not None:
        trainer.log_epoch = lambda e, res, sec: print(", ".join(
            f"{k}: {v}" for r in results.rows[-2:] for k, v in r.items()))
    saving = None if results is None else \
        (lambda: print(f"Saving results to {paths[0].absolute()}"))
    return fit_and_report(trainer, out_dir, quiet, after_fit=saving)


def run(args) -> int:
    if args.resume:
        info, cfg, _ = stored_run(args.resume, "f3", args, flags_key="f3_flags")
        cfg["epochs"] = int(args.epochs)                             # required: always given
        flags = {k: info["f3_flags"][k] for k in ORIGINAL_FLAGS}     # in the original's order
        flags["epochs"] = cfg["epochs"]
        execute_f3(cfg, flags, args.resume, args, info.get("f3_csv"), resume=True)
        return 0
    cfg = f3_config(args)
    flags = {k: getattr(args, k) for k in ORIGINAL_FLAGS}
    flags["output_path"] = str(flags["output_path"])
    print(argparse.Namespace(**flags), file=sys.stderr if args.quiet else sys.stdout)
    out_dir = args.out_dir or default_out_dir(cfg, f"f3_{args.mode}")
    csv_path = None if args.output_path is None else \
        original_csv_path(args.output_path, args.output_name)
    execute_f3(cfg, flags, out_dir, args, csv_path)
    return 0
