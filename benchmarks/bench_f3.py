"""Time one training epoch of F³'s MNIST set-up: 784-500-10 (tanh, sigmoid + BCE), batch 50, Adam.

The configuration is the one ``simkit f3 --depth 1 --width 500 --epochs 1 --mode M
[--error_info E --initialization_method discrete_uniform]`` builds (the original's defaults),
on MNIST's 60,000 training images (the real data when SIMKIT_DATA or --data-dir holds it, else
random inputs of the same shape). For each backend and mode it prints the median seconds per
training epoch over ``--repeats`` epochs after a warm-up epoch (evaluation excluded, as in the
original's 24 s, of which ~12 s is its training loop), and the machine's load average.

    python benchmarks/bench_f3.py [--backends numpy numba cupy] [--dtype float32] [--threads 1]

Targets: at most 3 s per epoch on a 2-core CPU, at most 0.5 s on an H100. On a busy
machine, pin the BLAS threads (``--threads 1``): two OpenBLAS threads competing with other jobs
can run 5-20x slower than one.
"""
import argparse
import os
import statistics
import sys
import time


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", nargs="+", default=["numpy", "numba", "cupy"])
    p.add_argument("--modes", nargs="+", default=["bp", "dfa", "f3"],
                   help="bp, dfa (f3 --error_info current_error), f3 (delayed_error_one_hot), "
                        "drtp (one_hot_target), llo")
    p.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="BLAS threads (0: library default)")
    p.add_argument("--data-dir", default=None)
    return p.parse_args()


ARGS = parse()
if ARGS.threads:                      # before NumPy loads its BLAS
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402

from simkit.backend import get_backend  # noqa: E402
from simkit.cli import build_parser  # noqa: E402
from simkit.commands.f3 import f3_config, prepare  # noqa: E402
from simkit.errors import UserError  # noqa: E402
from simkit.nn import soft_targets  # noqa: E402
from simkit.training.config import Split  # noqa: E402
from simkit.training.epochs import Trainer  # noqa: E402

MODES = {"bp": ["--mode", "bp"], "llo": ["--mode", "llo"],
         "dfa": ["--error_info", "current_error"], "drtp": ["--error_info", "one_hot_target"],
         "f3": ["--error_info", "delayed_error_one_hot"]}


def config(mode, backend):
    argv = ["f3", "--depth", "1", "--width", "500", "--epochs", "1", "--batch_size", "50",
            "--initialization_method", "discrete_uniform", "--dtype", ARGS.dtype, *MODES[mode]]
    if ARGS.data_dir:
        argv += ["--data-dir", ARGS.data_dir]
    cfg = f3_config(build_parser().parse_args(argv))
    cfg["backend"] = backend
    return cfg


def random_prepare(bk, cfg):
    """Stand-in data of MNIST's shape when the real files are missing."""
    from simkit.training.config import build
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 60000)
    train = Split(bk.asarray(rng.normal(size=(60000, 784))), bk.asarray(soft_targets(y, 10)), y)

    class DS:
        n_in, n_out = 784, 10
    net, rule, opt, loss, streams = build(bk, cfg, DS)
    return {"train": train, "test": train}, net, rule, opt, loss


def time_mode(mode, backend):
    bk = get_backend(backend, ARGS.dtype, announce=False)
    cfg = config(mode, backend)
    try:
        splits, _, net, rule, opt, loss, _ = prepare(bk, cfg)
        source = "MNIST"
    except UserError:
        splits, net, rule, opt, loss = random_prepare(bk, cfg)
        source = "random data (no MNIST found)"
    trainer = Trainer(bk, cfg, net, rule, opt, loss, splits, progress=False, log=None)
    times = []
    for epoch in range(1, ARGS.repeats + 2):
        t0 = time.perf_counter()
        trainer.train_epoch(epoch)
        bk.synchronize()
        times.append(time.perf_counter() - t0)
    acc = trainer.evaluate(splits["test"]).get("acc", float("nan"))
    return statistics.median(times[1:]), source, acc


def main():
    print(f"F3 MNIST epoch: 784-500-10, batch 50, Adam, {ARGS.dtype}, BLAS threads "
          f"{ARGS.threads or 'default'}, load average {os.getloadavg()[0]:.2f} "
          f"({os.cpu_count()} cores)")
    for backend in ARGS.backends:
        for mode in ARGS.modes:
            try:
                s, source, acc = time_mode(mode, backend)
            except UserError as exc:
                print(f"  {backend:<6} {mode:<5} skipped: {exc}")
                break
            print(f"  {backend:<6} {mode:<5} {s:7.2f} s/epoch  ({source}; test acc after "
                  f"{ARGS.repeats + 1} epochs {100 * acc:.2f}%)", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
