"""Podlaski & Machens 2020, Fig. 4b: MNIST autoencoder 784-500-250-30-250-500-784 with BP, FA,
PBP and NDI, from 'normal' (U(+-0.01)) and 'orthogonal' initial weights.

Minibatches of 100 with batch-sum updates, eta 1e-6, weight decay 1e-10; per-pixel test MSE every
10 minibatches (1000 examples). The original runs 20 epochs (12,000 minibatches) per init.

    python figures/fig4b_autoencoder.py [--batches 30] [--inits normal orthogonal] [--out DIR]
    python figures/fig4b_autoencoder.py --batches 12000    # the full figure (~1 h on 2 cores)
    python figures/fig4b_autoencoder.py --quick            # 3 minibatches, 500 test images

The two initialisations are independent runs: on a CPU they go to separate processes
(``--workers``, default the CPU count; each gets at most CPU count / workers BLAS threads).

Needs MNIST in ``$SIMKIT_DATA/mnist``. Writes ``curves.npz``, ``fig4b_autoencoder.png``/``.pdf``
and a run directory per initialisation, ``run_normal/`` and ``run_orthogonal/``: the same command
continues an interrupted run there; other settings need another ``--out`` (or its removal).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from simkit.backend import get_backend
from simkit.tasks.figure import figure_parser, run_figure, save_figure
from simkit.tasks.inversion import autoencoder_task, style
from simkit.training.parallel import fork_map

NAME = "fig4b_autoencoder"


def compute(args) -> dict:
    bk = get_backend(args.backend, args.dtype)
    kw = dict(n_batches=3, eval_every=1, n_test=500) if args.quick else \
        dict(n_batches=args.batches, eval_every=args.eval_every, n_test=None)
    t0 = time.perf_counter()

    def run(k):
        init = args.inits[k]
        return autoencoder_task(bk, args.seed, init=init, data_dir=args.data_dir,
                                eval_dtype=args.eval_dtype, run=args.out / f"run_{init}",
                                progress=None, position=k, **kw)

    workers = 1 if bk.name == "cupy" else args.workers
    out = {"inits": np.array(args.inits)}
    for init, r in zip(args.inits, fork_map(run, range(len(args.inits)), workers)):
        out.update({"names": np.array(r["names"]), f"{init}__examples": r["examples"],
                    f"{init}__test_mse": r["test_mse"]})
    out["seconds"] = time.perf_counter() - t0
    return out


def plot(res: dict, out: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    inits = [str(i) for i in res["inits"]]
    fig, ax = plt.subplots(1, len(inits), figsize=(5.5 * len(inits), 4), squeeze=False)
    for a, init in zip(ax[0], inits):
        for j, n in enumerate(res["names"]):
            a.plot(res[f"{init}__examples"], res[f"{init}__test_mse"][:, j], **style(str(n)))
        a.set(title=f"4b: autoencoder, {init} init", xlabel="training examples",
              ylabel="test MSE per pixel")
        a.legend()
    save_figure(fig, out, NAME)


def summary(res) -> list:
    inits = sorted({k.split("__")[0] for k in res if k.endswith("__test_mse")})
    lines = [f"{NAME} ({init}): test MSE after {int(res[f'{init}__examples'][-1])} examples: "
             + ", ".join(f"{n} {v:.5f}" for n, v in zip(res["names"], res[f"{init}__test_mse"][-1]))
             for init in inits]
    return lines + [f"{NAME}: {float(res['seconds']):.1f} s"]


def main(argv=None):
    p = figure_parser(__doc__, NAME, eval_dtype=True, workers=True)
    p.add_argument("--quick", action="store_true", help="3 minibatches, 500 test images")
    p.add_argument("--batches", type=int, default=30, help="minibatches of 100 (12000: 20 epochs)")
    p.add_argument("--eval-every", type=int, default=10, help="minibatches between evaluations")
    p.add_argument("--inits", nargs="+", default=["normal", "orthogonal"],
                   choices=["normal", "orthogonal"])
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    return run_figure(args, NAME, compute, plot, summary)


if __name__ == "__main__":
    main()
