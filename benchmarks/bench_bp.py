"""Time one BP training epoch: 784-256-256-256-10 tanh, batch 128, Adam, per-layer clipping.

This is the network and optimiser of strong_dfc's published BP command (REFERENCE.md §1), on
MNIST's 55,000 training images (the real data when SIMKIT_DATA or --data-dir holds it, else
random inputs of the same shape). Prints samples/s and seconds per epoch for each backend
present; numbers are the median of ``--repeats`` epochs after one warm-up epoch.

    python benchmarks/bench_bp.py [--backends numpy numba cupy] [--dtype float32] [--repeats 3]
                                  [--threads 1]

Targets: at most 3 s per epoch on a 2-core CPU (the original PyTorch code takes about
7 s on one thread), under 1 s on an H100.
"""
import argparse
import statistics
import time

import numpy as np

from simkit.backend import get_backend, limit_threads
from simkit.errors import UserError
from simkit.training.config import Split, build, resolve_config
from simkit.training.epochs import Trainer


def mnist_like(data_dir):
    from simkit import data
    try:
        t0 = time.perf_counter()
        ds = data.load("mnist", data_dir)
        x, y = ds.x_train[:55000], ds.y_train[:55000]
        return (x - 0.1307) / 0.3081, y, f"MNIST, loaded in {time.perf_counter() - t0:.2f} s"
    except UserError:
        rng = np.random.default_rng(0)
        return rng.normal(size=(55000, 784)), rng.integers(0, 10, 55000), "random (no MNIST found)"


class _DS:
    n_in, n_out = 784, 10


def time_backend(name, dtype, x, y, repeats):
    bk = get_backend(name, dtype, announce=False)
    cfg = resolve_config({"hidden": [256, 256, 256], "batch_size": 128, "optimizer": "adam",
                          "lr": 0.002, "eps": 0.002, "clip": 1.0, "dtype": dtype, "epochs": 1})
    from simkit.nn import soft_targets
    splits = {"train": Split(bk.asarray(x), bk.asarray(soft_targets(y, 10)), y),
              "test": Split(bk.asarray(x[:10]), bk.asarray(soft_targets(y[:10], 10)), y[:10])}
    net, rule, opt, loss, _ = build(bk, cfg, _DS)
    trainer = Trainer(bk, cfg, net, rule, opt, loss, splits, progress=False, log=None)
    times = []
    for e in range(repeats + 1):
        t0 = time.perf_counter()
        trainer.train_epoch(e + 1)
        bk.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", nargs="+", default=["numpy", "numba", "cupy"])
    p.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=None,
                   help="cap BLAS/Numba threads (default: all cores)")
    args = p.parse_args()
    if args.threads:
        limit_threads(args.threads)
    x, y, source = mnist_like(args.data_dir)
    print(f"BP epoch, 784-256-256-256-10 tanh, batch 128, {len(x)} samples ({source}), "
          f"{args.dtype}, threads {args.threads or 'all'}")
    for name in args.backends:
        try:
            s = time_backend(name, args.dtype, x, y, args.repeats)
        except UserError as exc:
            print(f"  {name:<6} skipped: {exc}")
            continue
        print(f"  {name:<6} {s:7.2f} s/epoch  {len(x) / s:10.0f} samples/s")


if __name__ == "__main__":
    main()
