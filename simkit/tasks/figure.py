"""What every figure script shares: its common options and the compute -> save -> plot driver.

A figure script defines ``compute(args) -> dict of arrays`` and ``plot(results, out_dir)``; it
builds its parser with :func:`figure_parser` (which adds ``--out``, ``--seed``, ``--backend``,
``--plot-only`` and ``--threads``), adds its own options, and hands over to :func:`run_figure`.
Results are saved as ``curves.npz`` in the output folder (atomically), so ``--plot-only``
redraws a figure without recomputing it.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from simkit.backend import limit_threads
from simkit.errors import UserError
from simkit.training.rundir import load_arrays, make_folder, save_arrays


def first_paragraph(doc: str) -> str:
    """A docstring's first paragraph as one line (what a figure script is about)."""
    return " ".join(doc.strip().split("\n\n")[0].split()) if doc and doc.strip() else ""


def figure_parser(doc: str, name: str, eval_dtype: bool = False,
                  workers: bool = False) -> argparse.ArgumentParser:
    """The common options; ``eval_dtype`` adds ``--eval-dtype`` (the test pass's precision),
    ``workers`` adds ``--workers`` (processes the figure's models are spread over)."""
    p = argparse.ArgumentParser(description=first_paragraph(doc))
    if eval_dtype:
        p.add_argument("--eval-dtype", default="float32", choices=["float32", "float64"],
                       help="precision of the evaluation's forward pass (default float32: "
                            "a fraction of the cost of the evaluations, which dominate the "
                            "figure; training stays in the run's dtype)")
    if workers:
        p.add_argument("--workers", type=_positive, default=os.cpu_count() or 1,
                       help="processes the models (or runs) are spread over (default: the CPU "
                            "count; the curves do not depend on it; each process gets at most "
                            "CPU count / workers BLAS threads)")
    p.add_argument("--out", type=Path, default=Path("figures/out") / name,
                   help="output folder (curves.npz, NAME.png, NAME.pdf)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default=None, help="numpy, numba or cupy (default: auto)")
    p.add_argument("--plot-only", action="store_true", help="redraw from the saved curves.npz")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS/Numba threads (default 1: the per-sample products are small, "
                        "so more threads mostly wait for each other)")
    return p


def _positive(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return int(text)


def run_figure(args, name: str, compute, plot, summary=None):
    """Compute (unless ``--plot-only``), save, print ``summary(results)`` lines, and plot.

    Bad input (missing data, a bad option value) prints one line and exits with status 2; Ctrl-C
    or SIGTERM says how to continue and exits with 130 or 143.
    """
    from simkit.training.signals import Terminated
    try:
        return _run(args, name, compute, plot, summary)
    except UserError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as exc:
        print(f"{name}: interrupted; the same command starts again, continuing any training "
              f"run kept in {args.out}", file=sys.stderr)
        sys.exit(143 if isinstance(exc, Terminated) else 130)


def _run(args, name, compute, plot, summary):
    limit_threads(args.threads)
    path = args.out / "curves.npz"
    make_folder(args.out, check_only=True, what="output folder (--out)")   # before any compute
    if args.plot_only:
        res = load_arrays(path)
    else:
        res = compute(args)
        make_folder(args.out, what="output folder (--out)")
        save_arrays(path, res)
        for line in (summary(res) if summary else []):
            print(line)
    plot(res, args.out)
    print(f"wrote {args.out}/{name}.png, .pdf, curves.npz")
    return res


def run_folders(args, quick_runs, prefix: str, default=None, what="run folders",
                full_runs=None) -> list:
    """The run folders a figure reads: with ``--quick`` tiny runs that ``quick_runs(root,
    backend)`` makes in a fresh temporary folder; with ``--full ROOT`` the published runs that
    ``full_runs(args)`` starts or continues there; else ``--runs``, else ``default()`` (none: a
    one-line error naming ``what``)."""
    import tempfile
    if args.quick:
        return quick_runs(Path(tempfile.mkdtemp(prefix=prefix)), args.backend)
    if getattr(args, "full", None) is not None:
        return full_runs(args)
    if args.runs:
        return [Path(r) for r in args.runs]
    if default is None:
        raise UserError(f"pass --runs DIR... ({what}) or --quick")
    return default()


def add_full_options(p: argparse.ArgumentParser, methods, what: str):
    """``--full ROOT`` and ``--methods``: run the published commands (see :func:`published_runs`)."""
    p.add_argument("--full", type=Path, default=None, metavar="ROOT",
                   help=f"run {what} in ROOT/METHOD first (hours each), continuing the "
                        "unfinished ones (see the script's docstring); the same command "
                        "after an interruption resumes")
    p.add_argument("--methods", nargs="+", default=list(methods), choices=list(methods),
                   metavar="METHOD", help="with --full: which ones, in this order (default: "
                                          + ", ".join(methods) + ")")


def published_runs(root: Path, commands: dict, resume_flag: str, main, extra=(),
                   rerun_finished=False) -> list:
    """Run or continue each ``label -> argv`` of ``commands`` (a simkit command line) in
    ``root/label`` with ``--out_dir``, one after the other: a finished run is left as it is (or,
    with ``rerun_finished``, handed to the command with ``resume_flag`` too, for commands whose
    resume extends a finished run to a larger epoch count), an unfinished one (a ``run.json``
    that is not ``finished``) continues with ``resume_flag``. ``main(argv) -> exit status`` runs
    a command (:func:`simkit.cli.main`). Returns the run folders; a command that fails stops with
    a one-line error."""
    from simkit.training.rundir import RunDir
    paths = []
    for label, argv in commands.items():
        path = Path(root) / label.replace(" ", "_")
        run = RunDir(path)
        status = run.read_info().get("status") if run.exists() else None
        if status != "finished" or rerun_finished:
            resume = [resume_flag] if status is not None else []
            print(f"{label}: {'continuing' if resume else 'starting'} {path}", file=sys.stderr)
            rc = main([*argv, *extra, "--out_dir", str(path), *resume])
            if rc in (130, 143):            # Ctrl-C or SIGTERM: main has said how to resume
                sys.exit(rc)
            if rc != 0:
                raise UserError(f"the run of {label} in {path} failed; see its run.json, fix "
                                "the cause and run the same command again to continue")
        paths.append(path)
    return paths


def save_figure(fig, out: Path, name: str):
    """Lay out (``tight_layout``, unless the figure has its own layout engine, e.g.
    ``layout="constrained"``), save as PNG and PDF in ``out``, and close a matplotlib figure."""
    import matplotlib.pyplot as plt
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "pdf"):
        fig.savefig(out / f"{name}.{ext}", dpi=120)
    plt.close(fig)
