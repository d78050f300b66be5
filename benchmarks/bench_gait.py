"""Time GAIT-prop / BP / TP training and evaluation on the published 784-wide, 4-hidden-layer net.

Training and evaluation are timed separately: ``--batches`` training steps of 60 MNIST images
(after one warm-up step) extrapolated to an epoch of 1000 batches, and one evaluation of all
60,000 + 10,000 images. Each line also gives the floating-point work and the rate achieved, to
compare with what the device can do (roughly 50-100 GFLOP/s in float64 on two CPU cores).

    python benchmarks/bench_gait.py [--backends numpy numba] [--algorithms BP GAIT TP]
                                    [--batches 20] [--threads 1 2] [--data-dir DIR]

``--threads`` limits the BLAS threads (through threadpoolctl, if installed). On a 2-core CPU
two BLAS threads are fastest when the machine is otherwise idle, and many times slower than one
thread when another process keeps the cores busy (the threads wait for each other).

Targets: a GAIT epoch in at most 60 s on a 2-core CPU (the original NumPy code takes
about 4 h), in at most 3 s on an H100 (original CuPy: about 31 s). Per step the work is
5 x (forward + weight gradient) products of 60 x 784 x 784, plus for GAIT and TP 4 LU
factorisations (2/3 n^3 each) with solves, plus the orthogonality regulariser's
W W^T (n^3) and offdiag(W W^T) W (2 n^3) on each of the 5 layers whenever lambda != 0.
"""
import argparse
import statistics
import time

import numpy as np

from simkit.backend import get_backend
from simkit.errors import UserError
from simkit.nn.invertible import InvertibleNet
from simkit.optim import Adam
from simkit.rules.gait import InvertibleRule
from simkit.training.fixed_order import GaitTrainer, Schedule, Split

PUBLISHED = {"BP": (1e-4, 0.0), "GAIT": (1e-4, 0.1), "TP": (1e-5, 1000.0)}   # (lr, lambda)
N, n, HIDDEN = 60, 784, 4


def mnist(data_dir):
    from simkit import data
    try:
        ds = data.load("mnist", data_dir)
        return ds.x_train, ds.y_train, ds.x_test, ds.y_test, "MNIST"
    except UserError:
        rng = np.random.default_rng(0)
        return (rng.random((60000, n)), rng.integers(0, 10, 60000), rng.random((10000, n)),
                rng.integers(0, 10, 10000), "random (no MNIST found)")


def flops_per_step(alg) -> float:
    L = HIDDEN + 1
    products = 2 * L * 2 * N * n * n                       # forward + weight gradients
    if alg == "BP":
        return products + (L - 1) * 2 * N * n * n          # + errors through W^T
    lu = (L - 1) * (2 / 3 * n ** 3 + 2 * N * n * n)        # LU + two triangular solves
    reg = L * 3 * n ** 3 if PUBLISHED[alg][1] else 0.0     # W W^T (syrk) + offdiag(G) W
    return products + lu + reg


def make_trainer(bk, alg, x, y, xt, yt, eval_batch_size):
    lr, lam = PUBLISHED[alg]
    net = InvertibleNet.square(bk, n, HIDDEN, seed=1)
    rule = InvertibleRule(alg, lam)
    opt = Adam(bk, net.params(), lr, beta1=0.9, beta2=0.99, eps=1e-8, bias_correction=False)
    eye = np.eye(10)
    splits = {"train": Split(bk.asarray(x), bk.asarray(eye[y]), y),
              "test": Split(bk.asarray(xt), bk.asarray(eye[yt]), yt)}
    schedule = Schedule(1, N, 1000, eval_every=0, eval_batch_size=eval_batch_size)
    return GaitTrainer(bk, net, rule, opt, splits, schedule, log=None, progress=False)


def time_training(bk, tr, batches, repeats):
    tr.train_step(0)                                       # warm-up: JIT, first factorisations
    bk.synchronize()
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        for b in range(1 + r * batches, 1 + (r + 1) * batches):
            tr.train_step(b)
        bk.synchronize()
        times.append((time.perf_counter() - t0) / batches)
    return statistics.median(times)


def time_eval(bk, tr):
    t0 = time.perf_counter()
    tr.evaluate(tr.splits["train"])
    tr.evaluate(tr.splits["test"])
    bk.synchronize()
    return time.perf_counter() - t0


def blas_threads(n):
    """A context limiting BLAS to ``n`` threads (no-op without threadpoolctl or for n = 0)."""
    import contextlib
    if not n:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("(threadpoolctl not installed: --threads ignored; set OPENBLAS_NUM_THREADS)")
        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", nargs="+", default=["numpy", "numba"])
    p.add_argument("--algorithms", nargs="+", default=["BP", "GAIT", "TP"])
    p.add_argument("--batches", type=int, default=20, help="timed steps per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--eval-batch-size", type=int, default=2048)
    p.add_argument("--threads", nargs="+", type=int, default=[0], help="BLAS threads (0: as is)")
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    x, y, xt, yt, what = mnist(args.data_dir)
    print(f"data: {what}; net 784 x ({HIDDEN} hidden + output), batch {N}, float64")
    eval_flops = (len(x) + len(xt)) * (HIDDEN + 1) * 2 * n * n
    for name in args.backends:
        try:
            bk = get_backend(name, "float64", announce=False)
        except UserError as exc:
            print(f"{name}: skipped ({exc})")
            continue
        for threads, alg in [(t, a) for t in args.threads for a in args.algorithms]:
            with blas_threads(threads):
                tr = make_trainer(bk, alg, x, y, xt, yt, args.eval_batch_size)
                step = time_training(bk, tr, args.batches, args.repeats)
                ev = time_eval(bk, tr)
            f = flops_per_step(alg)
            print(f"{bk.describe():<34} {threads or '-'} thr {alg:<4} train "
                  f"{1000 * step:7.1f} ms/step = "
                  f"{1000 * step:6.1f} s/epoch ({f * 1e-9:.2f} GFLOP/step, {f / step * 1e-9:5.1f} "
                  f"GFLOP/s) | eval 70k {ev:5.2f} s ({eval_flops / ev * 1e-9:5.1f} GFLOP/s) | "
                  f"epoch + 1 eval {1000 * step + ev:6.1f} s, + 99 evals (original) "
                  f"{1000 * step + 99 * ev:7.1f} s")


if __name__ == "__main__":
    main()
