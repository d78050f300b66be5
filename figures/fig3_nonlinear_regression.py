"""Podlaski & Machens 2020, Fig. 3g-k: nonlinear regression 30-20-10-10 (tanh) with BP, FA,
PBP, NDI, DI and SDI.

g: normalised training error (NSE); h: max Re eig of the DI loops (layer 1 solid, 2 dashed)
and of the SDI loop (dotted), drawn as the paper does: |max Re eig| on a log axis turned
upside down and labelled with the negative values (-10^k), so that up is towards 0; i: B
angles to -W^T; j: DI error angles to NDI (delta_1 solid, delta_2 dashed); k: SDI error angles
to NDI (delta_1 dotted, delta_2 dashed) (h-k over the first 500 examples).
As the original, h-k are computed after each example's weight update (updated W; the errors,
e and h' of the step), and the NDI reference of j and k is Eq. 7 with h' once, chained from e
with each model's fixed per-layer B: -W_init^T for SDI and SDI-2, the SSA-optimised B1, B2 for
SDI-3. h shows the SDI loop's own abscissa (the loop simkit checks), where the original records
the per-layer (W_l, B_l) ones.

    python figures/fig3_nonlinear_regression.py [--out DIR] [--seed 0] [--n-train 10000]
        [--dh-mode paper|code_2021] [--eval-every 1] [--eval-dtype float32|float64]
        [--workers 2]
    python figures/fig3_nonlinear_regression.py --quick   # 300 examples, under a minute

Writes ``curves.npz``, ``fig3_nonlinear_regression.png`` and ``.pdf`` into ``--out``.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from simkit.backend import get_backend
from simkit.tasks.figure import figure_parser, run_figure, save_figure
from simkit.tasks.inversion import diag_arrays, regression_task, style

NAME = "fig3_nonlinear_regression"


def compute(args) -> dict:
    bk = get_backend(args.backend, "float64")
    n, n_diag = (300, 100) if args.quick else (args.n_train, 500)
    t0 = time.perf_counter()
    r = regression_task(bk, args.seed, nonlinear=True, n_train=n, diag_n=n_diag,
                        eval_every=args.eval_every, dh_mode=args.dh_mode,
                        eval_dtype=args.eval_dtype, workers=args.workers)
    out = {"names": np.array(r["names"]), "steps": r["steps"], "nse": r["nse"],
           "seconds": time.perf_counter() - t0}
    out.update(diag_arrays(r["diag"]))
    return out


def _lines(a, res, names, key, col=None, **extra):
    """Plot column ``col`` of each model's diagnostic ``key`` (|.| for the abscissa); returns
    how many examples the diagnostics cover (0: none)."""
    n_diag = 0
    for n in names:
        y = res.get(f"{n}__{key}")
        if y is None:
            continue
        y = np.asarray(y).reshape(len(y), -1)
        y = y[:, col] if col is not None and y.shape[1] > col else y[:, 0]
        kw = dict(style(n), **extra)
        a.plot(np.abs(y) if key == "abscissa" else y, **kw)
        n_diag = len(y)
    return n_diag


def _negative_log_axis(a):
    r"""Panel h as the paper draws it: :math:`|\lambda_{max}|` on a log axis turned upside down,
    labelled with the negative values it stands for, so that up is towards 0 (less stable)."""
    from matplotlib.ticker import NullFormatter
    ys = np.concatenate([np.abs(line.get_ydata()) for line in a.get_lines()] or [[]])
    ys = ys[np.isfinite(ys) & (ys > 0)]
    if len(ys) == 0:
        return
    a.set_yscale("log")
    lo = int(np.floor(np.log10(ys.min()) - 0.1))          # a margin: no curve on the frame
    hi = int(np.ceil(np.log10(ys.max()) + 0.1))
    a.set_ylim(10.0 ** hi, 10.0 ** lo)                     # upside down: -10^lo at the top
    a.set_yticks(10.0 ** np.arange(lo, hi + 1), [f"$-10^{{{k}}}$" for k in range(lo, hi + 1)])
    a.yaxis.set_minor_formatter(NullFormatter())


def plot(res: dict, out: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [str(n) for n in res["names"]]
    di = [n for n in names if n.startswith("DI")]
    sdi = [n for n in names if n.startswith("SDI")]
    fig, ax = plt.subplots(2, 3, figsize=(14, 7.5), layout="constrained")
    for j, n in enumerate(names):
        ax[0, 0].semilogy(res["steps"], res["nse"][:, j], **style(n))
    ax[0, 0].set(title="g: training error", xlabel="examples", ylabel="error (NSE)")
    _lines(ax[0, 1], res, di, "abscissa", 0)
    _lines(ax[0, 1], res, di, "abscissa", 1, ls="--", label=None)
    n_diag = _lines(ax[0, 1], res, sdi, "abscissa", 0)
    _negative_log_axis(ax[0, 1])
    _lines(ax[0, 2], res, di, "B1")
    _lines(ax[0, 2], res, di, "B2", ls="--", label=None)
    _lines(ax[1, 0], res, di, "ndi1")
    _lines(ax[1, 0], res, di, "ndi2", ls="--", label=None)
    _lines(ax[1, 1], res, sdi, "ndi1")
    _lines(ax[1, 1], res, sdi, "ndi2", ls="--", label=None)
    for a, title, ylabel in [
            (ax[0, 1], "h: stability of the DI loops\n(layer 1 solid, 2 dashed; SDI loop dotted)",
             "max Re $\\lambda$ (1/$\\tau$)\n(log scale of $|\\lambda|$, upside down as in the paper)"),
            (ax[0, 2], "i: B vs $-W^T$ (layer 1 solid, 2 dashed)", "angle (deg)"),
            (ax[1, 0], r"j: DI error vs NDI ($\delta_1$ solid, $\delta_2$ dashed)", "angle (deg)"),
            (ax[1, 1], r"k: SDI error vs NDI ($\delta_1$ dotted, $\delta_2$ dashed)",
             "angle (deg)")]:
        a.set(title=title, ylabel=ylabel, xlabel=f"examples (first {n_diag} only)")
    ax[1, 2].axis("off")
    ax[1, 2].legend(*ax[0, 0].get_legend_handles_labels(), loc="center", ncol=2,
                    title="model (g-k)", fontsize=9)
    save_figure(fig, out, NAME)


def summary(res) -> list:
    return [f"{NAME}: computed in {float(res['seconds']):.1f} s; final NSE " + ", ".join(
        f"{n} {v:.1e}" for n, v in zip(res["names"], res["nse"][-1]))]


def main(argv=None):
    p = figure_parser(__doc__, NAME, eval_dtype=True, workers=True)
    p.add_argument("--quick", action="store_true", help="300 examples (pipeline check)")
    p.add_argument("--n-train", type=int, default=10000, help="examples (20000: 'exact' Fig. 3)")
    p.add_argument("--dh-mode", choices=("paper", "code_2021"), default="paper",
                   help="h' once (paper) or twice for BP/FA/PBP/NDI (the Jan-2021 script)")
    p.add_argument("--eval-every", type=int, default=1, help="training-set error every k examples")
    args = p.parse_args(argv)
    return run_figure(args, NAME, compute, plot, summary)


if __name__ == "__main__":
    main()
