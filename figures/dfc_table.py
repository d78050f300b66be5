"""Meulemans et al. 2021/2022: MNIST test accuracy of DFC, Strong-DFC and Strong-DFC 2-phase, simkit vs the papers.

The papers' table entry for each method is the test accuracy at the epoch of best validation
accuracy after 40 epochs of the published command (97.80, 97.72 and 97.75%). This script reads
saved runs of those commands (``simkit run_dfc`` / ``run_dfc_single_phase`` run folders, finished
or still running), prints the table (epochs done, test accuracy after the last epoch and at the
best validation epoch, the published number and the target) and plots test accuracy per epoch
with the published numbers as dashed lines.

    python figures/dfc_table.py --runs runs/dfc40_s0 runs/sdfc40_s0 runs/sdfc2_40_s0
    python figures/dfc_table.py --quick        # the three published commands with --test first
    python figures/dfc_table.py --plot-only    # redraw from the saved curves.npz
    python figures/dfc_table.py --full runs/dfc_table [--methods Strong-DFC] [--threads 1]

``--full ROOT`` runs the published commands verbatim (40 epochs each, float64, seed 42; 6-11 h
each on one CPU core, epochs of 600-1,000 s) into ``ROOT/DFC``, ``ROOT/Strong-DFC`` and
``ROOT/Strong-DFC_2-phase``, one after the other, and then draws the table. Run it again after an interruption: finished runs are
kept, unfinished ones continue with ``--resume`` (nothing finished is lost; docs/reproductions/dfc.md). To use
two cores, start two of them with ``--methods`` in two shells, one thread each.

``--quick`` runs each published command with ``--test`` (one epoch of 2 minibatches, needs MNIST;
about a minute): it checks the pipeline, not the papers' numbers. Writes ``curves.npz``,
``dfc_table.png`` and ``.pdf`` into ``--out``.
"""
from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np

from simkit.cli import main as simkit_main
from simkit.commands.dfc_published import PUBLISHED, method_of
from simkit.errors import UserError
from simkit.tasks.figure import (
    add_full_options,
    figure_parser,
    published_runs,
    run_figure,
    run_folders,
    save_figure,
)
from simkit.training.rundir import RunDir

NAME = "dfc_table"


def read_run(path: Path):
    """(method, status, epochs, test accuracies, validation accuracies) of one run folder."""
    run = RunDir(path)
    info = run.read_info()
    if info.get("paper_command") not in ("run_dfc", "run_dfc_single_phase"):
        raise UserError(f"{path} is not a simkit run_dfc / run_dfc_single_phase run")
    acc = {"test": {}, "val": {}}
    for row in run.read_metrics():
        if row["metric"] == "acc" and row["split"] in acc and str(row["epoch"]).isdigit():
            acc[row["split"]][int(row["epoch"])] = float(row["value"])
    epochs = sorted(e for e in acc["test"] if e >= 1)
    val = [acc["val"].get(e, np.nan) for e in epochs]
    return method_of(info["config"]), info.get("status", "?"), np.array(epochs), \
        np.array([acc["test"][e] for e in epochs]), np.array(val)


def quick_runs(root: Path, backend=None) -> list:
    """The published commands with ``--test`` into ``root`` (see the module docstring)."""
    paths = []
    for label, pub in PUBLISHED.items():
        path = root / label.replace(" ", "_")
        extra = ["--backend", backend] if backend else []
        if simkit_main([pub.command, *shlex.split(pub.flags), "--test", "--quiet", "--out_dir",
                 str(path), *extra]) != 0:
            raise UserError(f"the quick run of {label} failed")
        paths.append(path)
    return paths


def full_runs(args) -> list:
    """The published commands, 40 epochs each, run or continued in ``--full`` (module docstring)."""
    commands = {m: [PUBLISHED[m].command, *shlex.split(PUBLISHED[m].flags)] for m in args.methods}
    extra = ["--threads", str(args.threads)] + (["--backend", args.backend] if args.backend else [])
    return published_runs(args.full, commands, "--resume", simkit_main, extra)


def compute(args) -> dict:
    """The runs' per-epoch accuracies (``--runs``, ``--quick`` or ``--full``)."""
    paths = run_folders(args, quick_runs, "dfc_quick_", what="simkit run_dfc run folders",
                        full_runs=full_runs)
    runs = [read_run(p) for p in paths]
    res = {"methods": np.array([r[0] for r in runs]), "status": np.array([r[1] for r in runs]),
           "folders": np.array([p.name for p in paths]), "quick": np.asarray(bool(args.quick))}
    for i, (_, _, epochs, test, val) in enumerate(runs):
        res[f"epoch_{i}"], res[f"test_{i}"], res[f"val_{i}"] = epochs, test, val
    return res


def at_best_val(epochs, test, val):
    """(test accuracy, epoch) at the best validation accuracy (the first such epoch)."""
    if len(epochs) == 0 or np.all(np.isnan(val)):
        return np.nan, 0
    i = int(np.nanargmax(val))
    return float(test[i]), int(epochs[i])


def summary(res) -> list:
    """The table, one row per run, as Markdown."""
    lines = ["| method | run | epochs | test, last | test at best val. (epoch) | published | "
             "target | status |", "|---|---|---|---|---|---|---|---|"]
    for i, method in enumerate(res["methods"]):
        epochs, test, val = res[f"epoch_{i}"], res[f"test_{i}"], res[f"val_{i}"]
        best, e = at_best_val(epochs, test, val)
        pub = PUBLISHED[str(method)]
        last = f"{100 * test[-1]:.2f}%" if len(test) else "-"
        lines.append(f"| {method} | {res['folders'][i]} | {len(epochs)} | {last} | "
                     f"{100 * best:.2f}% ({e}) | {100 * pub.accuracy:.2f}% | "
                     f">= {100 * pub.target:.1f}% | {res['status'][i]} |")
    return lines


def plot(res: dict, out: Path):
    """Test accuracy per epoch (markers, so a one-epoch run shows), the best validation epoch
    (open star) and the published numbers (dashed); integer epoch ticks, the legend outside."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator
    fig, ax = plt.subplots(figsize=(9, 4.2), layout="constrained")
    colours = dict(zip(PUBLISHED, ("C0", "C1", "C2")))
    last = 1
    for i, method in enumerate(res["methods"]):
        method, c, folder = str(method), colours[str(method)], str(res["folders"][i])
        epochs, test, val = res[f"epoch_{i}"], res[f"test_{i}"], res[f"val_{i}"]
        run = method if folder == method.replace(" ", "_") else f"{method} ({folder})"
        ax.plot(epochs, 100 * test, "-o", ms=5, color=c, label=f"{run}: simkit")
        best, e = at_best_val(epochs, test, val)
        if e:
            ax.plot([e], [100 * best], "*", ms=16, mfc="none", mec=c, mew=1.5)
        last = max(last, int(epochs[-1]) if len(epochs) else 1)
    for method in sorted(set(map(str, res["methods"])), key=list(PUBLISHED).index):
        pub = 100 * PUBLISHED[method].accuracy
        ax.axhline(pub, ls="--", lw=1, color=colours[method], label=f"{method}: published {pub:.2f}%")
    handles, _ = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], ls="", marker="*", ms=12, mfc="none", mec="0.3", mew=1.5,
                          label="best validation epoch"))
    ax.set_xlim(0.5, last + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set(xlabel="epoch", ylabel="MNIST test accuracy (%)")
    title = "DFC / Strong-DFC on MNIST: test accuracy per epoch, simkit vs published"
    if bool(res["quick"]):
        title += "\n(--quick: one epoch of 2 minibatches per method, a pipeline check)"
    ax.set_title(title, fontsize=11)
    ax.legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    ax.grid(alpha=0.3)
    save_figure(fig, out, NAME)


def main(argv=None):
    p = figure_parser(__doc__, NAME)
    p.add_argument("--runs", nargs="+", default=None, help="simkit run_dfc run folders")
    p.add_argument("--quick", action="store_true", help="run the commands with --test first")
    add_full_options(p, PUBLISHED, "the published commands (40 epochs)")
    args = p.parse_args(argv)
    return run_figure(args, NAME, compute, plot, summary)


if __name__ == "__main__":
    main()
