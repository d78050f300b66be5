"""Podlaski & Machens 2020, Fig. 4a: MNIST classification 784-1000-10 with BP, FA, PBP and NDI.

Online SGD (one sample per update, eta 1e-3, weight decay 1e-6 per sample), z-scored pixels,
test error every 1000 samples; all models share initial weights and sample order.

    python figures/fig4a_mnist.py [--epochs 15] [--samples N] [--seed 0] [--out DIR]
    python figures/fig4a_mnist.py --samples 2000          # the 2000-sample check of REFERENCE.md
    python figures/fig4a_mnist.py --quick                 # 200 samples, 1000 test images

Needs MNIST in ``$SIMKIT_DATA/mnist`` (``simkit data fetch mnist``). Writes ``curves.npz``,
``fig4a_mnist.png`` and ``.pdf`` into ``--out``, and the training's run directory ``run/``
(``run.json``, ``metrics.csv``, ``checkpoint.npz``, saved about once a minute): the same command
continues an interrupted run there; other settings need another ``--out`` (or its removal).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from simkit.backend import get_backend
from simkit.tasks.figure import figure_parser, run_figure, save_figure
from simkit.tasks.inversion import mnist_task, style

NAME = "fig4a_mnist"


def compute(args) -> dict:
    bk = get_backend(args.backend, args.dtype)
    quick = dict(n_samples=200, eval_every=100, n_test=1000) if args.quick else \
        dict(n_samples=args.samples, eval_every=args.eval_every, n_test=None)
    t0 = time.perf_counter()
    r = mnist_task(bk, args.seed, epochs=1 if args.quick else args.epochs, batch=args.batch,
                   data_dir=args.data_dir, defer=args.defer, eval_dtype=args.eval_dtype,
                   progress=None, run=args.out / "run", **quick)
    return {"names": np.array(r["names"]), "samples": r["samples"],
            "test_error": r["test_error"], "seconds": time.perf_counter() - t0}


def plot(res: dict, out: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for j, n in enumerate(res["names"]):
        ax.plot(res["samples"], res["test_error"][:, j], **style(str(n)))
    ax.set(xlabel="training examples", ylabel="test error (%)", title="4a: MNIST classification")
    err = res["test_error"]
    if np.nanmin(err) > 0:               # log axis: the last epochs' 2-3% stay apart
        ax.set_yscale("log")
    else:
        ax.set_ylim(0, min(100.0, 1.05 * float(np.nanmax(err))))
    ax.legend()
    save_figure(fig, out, NAME)


def summary(res) -> list:
    return [f"{NAME}: {float(res['seconds']):.1f} s; test error (%) after "
            f"{int(res['samples'][-1])} samples: " + ", ".join(
                f"{n} {v:.1f}" for n, v in zip(res["names"], res["test_error"][-1]))]


def main(argv=None):
    p = figure_parser(__doc__, NAME, eval_dtype=True)
    p.add_argument("--quick", action="store_true", help="200 samples, 1000 test images")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--samples", type=int, default=None, help="samples per epoch (default: 60000)")
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--batch", type=int, default=1, help="minibatch (1: the original's online SGD)")
    p.add_argument("--defer", type=int, default=100,
                   help="apply the first layer's online updates this many samples at a time, "
                        "exactly (simkit/tasks/deferred.py); 1: one update per sample, as the original")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    return run_figure(args, NAME, compute, plot, summary)


if __name__ == "__main__":
    main()
