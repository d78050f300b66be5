"""Ahmad et al. 2020 (GAIT-prop): MNIST test error of BP, GAIT-prop and TP, simkit vs original.

Square net (784 wide, 4 hidden layers) and the tower 784-784-500-200-10 (GAIT-prop), simkit's
curves next to the original code's.

Reads saved results only: run directories written by ``simkit gait`` (their ``metrics.csv``: test
accuracy against fractional epochs) and, as dashed lines, the original code's curves
(``*_test_acc.txt``, one value per line: before training, then after the updates of batches 10,
20, ..., 990 of every epoch), by default from ``$SIMKIT_RESEARCH/gait_tp_ref_curves``.

    python figures/gait_curves.py --runs runs/gait_MNIST_BP_... runs/gait_... [--ref-dir DIR]
    python figures/gait_curves.py --quick        # computes tiny runs first (~10 s)
    python figures/gait_curves.py --plot-only    # redraw from the saved curves.npz
    python figures/gait_curves.py --full runs/gait_curves --methods BP GAIT [--epochs 100]

``--full ROOT`` trains the published commands (seed 1, test accuracy after every epoch: the
original's 99 evaluations of all 70k images per epoch would cost more than the training; a
checkpoint every 250 batches besides the epoch ends) into
``ROOT/BP``, ``ROOT/GAIT``, ... one after the other, then draws them. The same command after an
interruption continues each run with ``--load`` (a finished one only if ``--epochs`` grew).

Without ``--runs`` it takes every ``runs/gait_*`` run directory (``simkit gait``'s default).
``--quick`` trains each published command for 30 batches on the first 3,600 MNIST training images
(random pixels if MNIST is missing), with one hidden layer instead of four and a 1,000-image test
set, evaluating every 5 batches: it checks the pipeline, not the paper's numbers. Writes
``curves.npz``, ``gait_curves.png`` and ``.pdf`` into ``--out``.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from simkit.cli import main as simkit_main
from simkit.commands.runner import RUNS
from simkit.errors import UserError
from simkit.tasks.figure import (
    add_full_options,
    figure_parser,
    published_runs,
    run_figure,
    run_folders,
    save_figure,
)

NAME = "gait_curves"
_RESEARCH = os.environ.get("SIMKIT_RESEARCH")          # folder holding gait_tp_ref_curves/
REF_DIR = Path(_RESEARCH) / "gait_tp_ref_curves" if _RESEARCH else None
PUBLISHED = {   # label -> run.py flags (README of nasiryahm/GAIT-prop)
    "BP": ["--algorithm=BP", "--learning_rate=0.0001", "--nb_layers=4"],
    "GAIT": ["--algorithm=GAIT", "--learning_rate=0.0001", "--orthogonal_init",
             "--orthogonal_reg=0.1", "--nb_layers=4"],
    "TP": ["--algorithm=TP", "--learning_rate=0.00001", "--orthogonal_init",
           "--orthogonal_reg=1000.0", "--nb_layers=4"],
    "GAIT tower": ["--algorithm=GAIT", "--learning_rate=0.0001", "--orthogonal_init",
                   "--orthogonal_reg=0.1", "--nb_layers=4", "--tower"],
}
COLORS = {"BP": "C0", "GAIT": "C1", "TP": "C2", "GAIT tower": "C1"}


def original_epochs(n_points: int, per_epoch: int = 99, nb: int = 1000) -> np.ndarray:
    """x positions of the original's curve points: 0, then (e*nb + b + 1)/nb for b = 10..990."""
    xs = [0.0]
    e = 0
    while len(xs) < n_points:
        xs += [e + (b + 1) / nb for b in range(10, 10 * per_epoch + 1, 10)]
        e += 1
    return np.asarray(xs[:n_points])


def read_run(path: Path):
    """``(label, epochs, test accuracy, config)`` of a ``simkit gait`` run directory."""
    cfg = json.loads((path / "run.json").read_text())["config"]
    label = cfg["algorithm"] + (" tower" if cfg["tower"] else "")
    with open(path / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test" and r["metric"] == "acc"]
    pts = sorted({float(r["epoch"]): float(r["value"]) for r in rows}.items())
    return label, np.asarray([p[0] for p in pts]), np.asarray([p[1] for p in pts]), cfg


def read_reference(ref_dir: Path) -> dict:
    """The original's test curves by label (files named as run.py names its folders)."""
    out = {}
    if ref_dir is None or not Path(ref_dir).is_dir():
        return out
    ref_dir = Path(ref_dir)
    for f in sorted(ref_dir.glob("MNIST_*_test_acc.txt")):
        label = f.name.split("_")[1] + (" tower" if "TOWER" in f.name else "")
        acc = np.loadtxt(f)
        out[label] = (original_epochs(len(acc)), acc)
    return out


def quick_data():
    """3,600 training and 1,000 test images of MNIST (random pixels if MNIST is absent)."""
    from simkit.commands.gait import load_data
    try:
        x, y, xt, yt, C = load_data({"dataset": "MNIST", "data_dir": None})
        return x[:3600], y[:3600], xt[:1000], yt[:1000], C
    except UserError:
        rng = np.random.default_rng(0)
        return (rng.random((3600, 784)), rng.integers(0, 10, 3600), rng.random((1000, 784)),
                rng.integers(0, 10, 1000), 10)


def quick_runs(root: Path, backend=None) -> list:
    """Tiny versions of the published commands (see the module docstring)."""
    from simkit.commands.gait import config_from_flags, execute
    data = quick_data()
    paths = []
    for label, flags in PUBLISHED.items():
        flags = [f for f in flags if not f.startswith("--nb_layers")] + [
            "--nb_layers=1", "--nb_epochs=1", "--max_batches=30", "--eval_every=5",
            "--eval_splits=test"] + ([f"--backend={backend}"] if backend else [])
        path = root / label.replace(" ", "_")
        execute(config_from_flags(flags), path, data=data, log=None, progress=False)
        paths.append(path)
    return paths


def full_runs(args) -> list:
    """The published commands for ``--epochs`` epochs, run or continued in ``--full``."""
    commands = {m: ["gait", *PUBLISHED[m], "--seed=1", f"--nb_epochs={args.epochs}",
                    "--eval_every=0", "--eval_splits=test", "--checkpoint_every=250"]
                for m in args.methods}
    extra = [f"--threads={args.threads}"] + ([f"--backend={args.backend}"] if args.backend else [])
    return published_runs(args.full, commands, "--load", simkit_main, extra, rerun_finished=True)


def compute(args) -> dict:
    """Gather the curves: simkit runs (``--runs``, ``runs/gait_*`` or ``--quick``) and the
    original's."""
    paths = run_folders(args, quick_runs, "gait_quick_", full_runs=full_runs,
                        default=lambda: sorted(q.parent for q in RUNS.glob("gait_*/run.json")))
    runs = [read_run(q) for q in paths if (q / "metrics.csv").exists()]
    if not runs:
        raise UserError("no simkit gait runs found; pass --runs DIR... or --quick")
    curves = [(label, "simkit" + (" (orig. GAIT form)" if cfg.get("gait_formulation") == "original"
                                  else ""), x, y) for label, x, y, cfg in runs]
    curves += [(label, "original code", x, y) for label, (x, y) in
               read_reference(args.ref_dir).items()]
    res = {"labels": np.array([c[0] for c in curves]), "sources": np.array([c[1] for c in curves]),
           "quick": np.asarray(bool(args.quick))}
    for i, (_, _, x, y) in enumerate(curves):
        res[f"epoch_{i}"], res[f"acc_{i}"] = x, y
    return res


def plot(res: dict, out: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    note = " (quick: 30 batches, 1 hidden)" if bool(res["quick"]) else ""
    for ax, tower in zip(axes, (False, True)):
        for i, (label, source) in enumerate(zip(res["labels"], res["sources"])):
            label, source = str(label), str(source)
            if label.endswith("tower") != tower:
                continue
            original = source == "original code"
            color = "C3" if "orig. GAIT" in source else COLORS.get(label, "k")
            ax.plot(res[f"epoch_{i}"], 100 * (1 - res[f"acc_{i}"]), "--" if original else "-",
                    color=color, lw=1 if original else 1.5,
                    alpha=0.7 if original else 1.0, label=f"{label} ({source})")
        ax.set(title=("tower 784-784-500-200-10" if tower else "square, 784 wide, 4 hidden") + note,
               xlabel="epoch")
        ax.set_yscale("log")                   # 2% and 6% error stay apart; so does 88% at start
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper right")
        else:                                  # e.g. --quick without the original's curves
            ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes)
    axes[0].set_ylabel("MNIST test error (%, log scale)")
    save_figure(fig, out, NAME)


def summary(res) -> list:
    """Test accuracy at each epoch end of the simkit runs."""
    lines = []
    for i, (label, source) in enumerate(zip(res["labels"], res["sources"])):
        if str(source).startswith("simkit"):
            ends = [(int(e), a) for e, a in zip(res[f"epoch_{i}"], res[f"acc_{i}"])
                    if float(e).is_integer()]
            lines.append(f"{NAME}: {label} {source}: " +
                         "  ".join(f"ep{e} {100 * a:.2f}%" for e, a in ends))
    return lines


def main(argv=None):
    p = figure_parser(__doc__, NAME)
    p.add_argument("--runs", nargs="*", default=None, help="simkit gait run directories")
    p.add_argument("--ref-dir", default=REF_DIR, help="folder of the original's *_test_acc.txt "
                   "curves (default: $SIMKIT_RESEARCH/gait_tp_ref_curves; none: no dashed lines)")
    p.add_argument("--quick", action="store_true", help="compute tiny runs first, then plot")
    add_full_options(p, PUBLISHED, "the published commands")
    p.add_argument("--epochs", type=int, default=100, help="with --full: epochs per run (100)")
    args = p.parse_args(argv)
    return run_figure(args, NAME, compute, plot, summary)


if __name__ == "__main__":
    main()
