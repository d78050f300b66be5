"""Podlaski & Machens 2020, Fig. 3a-f: linear regression 30-20-10 with BP, FA, PBP, NDI and DI.

a: normalised training error (NSE) per example; b: the same with each update divided by its
Frobenius norm (4000 examples); c: spectral abscissa of the DI loops; d: B angle to -W^T;
e: DI error angle to NDI; f: DI error angle to PBP (c-f over the first 500 examples).
As the original, c-f are computed after each example's weight update: the abscissa, the B angle
and the NDI and PBP references use the updated W, the DI error is the one the update used.

    python figures/fig3_linear_regression.py [--out DIR] [--seed 0] [--backend numba]
    python figures/fig3_linear_regression.py --quick      # 300 examples, well under a minute

Writes ``curves.npz`` (all curves), ``fig3_linear_regression.png`` and ``.pdf`` into ``--out``.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from simkit.backend import get_backend
from simkit.tasks.figure import figure_parser, run_figure, save_figure
from simkit.tasks.inversion import diag_arrays, regression_task, style

NAME = "fig3_linear_regression"


def compute(args) -> dict:
    bk = get_backend(args.backend, "float64")
    n_a, n_b, n_diag = (300, 300, 100) if args.quick else (2000, 4000, 500)
    t0 = time.perf_counter()
    a = regression_task(bk, args.seed, n_train=n_a, diag_n=n_diag, eval_every=args.eval_every,
                        workers=args.workers)
    b = regression_task(bk, args.seed, n_train=n_b, norm_delW=True, diag_n=0,
                        eval_every=args.eval_every, workers=args.workers)
    out = {"names": np.array(a["names"]), "steps_a": a["steps"], "nse_a": a["nse"],
           "steps_b": b["steps"], "nse_b": b["nse"], "seconds": time.perf_counter() - t0}
    out.update(diag_arrays(a["diag"]))
    return out


def plot(res: dict, out: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [str(n) for n in res["names"]]
    fig, ax = plt.subplots(2, 3, figsize=(15, 7.5), layout="constrained")
    for k, (panel, key) in enumerate([("a", "a"), ("b", "b")]):
        for j, n in enumerate(names):
            ax[0, k].semilogy(res[f"steps_{key}"], res[f"nse_{key}"][:, j], **style(n))
        ax[0, k].set(title=f"{panel}: training error, "
                           f"{'normalised updates' if key == 'b' else 'online SGD'}",
                     xlabel="examples", ylabel="error (NSE)")
    fig.legend(*ax[0, 0].get_legend_handles_labels(), loc="outside right center",
               title="model", fontsize=9)
    di = [n for n in names if n.startswith("DI")]
    panels = [(ax[0, 2], "abscissa", "c: stability of the DI loop", r"max Re $\lambda$ (1/$\tau$)"),
              (ax[1, 0], "B1", "d: B vs $-W^T$", "angle (deg)"),
              (ax[1, 1], "ndi1", "e: DI error vs NDI", "angle (deg)"),
              (ax[1, 2], "pbp1", "f: DI error vs PBP", "angle (deg)")]
    for a, key, title, ylabel in panels:
        n_diag = 0
        for n in di:
            y = res.get(f"{n}__{key}")
            if y is not None:
                a.plot(np.asarray(y).reshape(len(y), -1)[:, 0], **style(n))
                n_diag = len(y)
        a.set(title=title, ylabel=ylabel, xlabel=f"examples (first {n_diag} only)")
    ax[0, 2].axhline(0, color="k", ls="--", lw=1)          # the stability bound, as the original
    save_figure(fig, out, NAME)


def summary(res) -> list:
    return [f"{NAME}: computed in {float(res['seconds']):.1f} s; final NSE " + ", ".join(
        f"{n} {v:.1e}" for n, v in zip(res["names"], res["nse_a"][-1]))]


def main(argv=None):
    p = figure_parser(__doc__, NAME, workers=True)
    p.add_argument("--quick", action="store_true", help="300 examples (pipeline check)")
    p.add_argument("--eval-every", type=int, default=1, help="training-set error every k examples")
    args = p.parse_args(argv)
    return run_figure(args, NAME, compute, plot, summary)


if __name__ == "__main__":
    main()
