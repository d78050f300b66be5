"""Speed of dynamic inversion (Podlaski & Machens 2020): DI/SDI loops, per-sample MNIST steps,
memory bandwidth reached, and projected figure times.

    python benchmarks/bench_inversion.py [--backend numba] [--quick]

Prints one line per measurement. The per-sample MNIST update of the 1000 x 784 matrix is
memory-bound: per model and sample it reads W_0 for the forward pass and reads and writes it
once in the fused update (``simkit.kernels.di.RANK1_UPDATE``), i.e. ~3 x 6.27 MB in float64;
the fraction of the machine's bandwidth (measured here with a large array copy) is reported.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simkit.backend import get_backend, limit_threads  # noqa: E402
from simkit.dynamics.di import DISolver, sdi_reference    # noqa: E402


def timeit(f, reps):
    f()
    t = time.perf_counter()
    for _ in range(reps):
        f()
    return (time.perf_counter() - t) / reps


def bandwidth_gbs():
    """Copy bandwidth (read + write) of a 256 MB array, GB/s."""
    a, b = np.ones(2**25), np.empty(2**25)
    t = timeit(lambda: np.copyto(b, a), 5)
    return 2 * a.nbytes / t / 1e9


def bench_di(bk, reps):
    rng = np.random.default_rng(0)
    W = rng.uniform(-0.01, 0.01, (10, 20))
    s = DISolver(bk)
    for n in (1, 100):
        d = bk.asarray(rng.standard_normal((n, 10)))
        t = timeit(lambda: s(W, -W.T, 0.01, d), reps)
        print(f"DI 10x20, 999 Euler steps, batch {n:4d}: {t * 1e3:8.3f} ms/call, "
              f"{t / n * 1e6:8.1f} us/sample")
    W1, W2 = W, rng.uniform(-0.01, 0.01, (10, 10))
    d = rng.standard_normal((1, 10))
    t = timeit(lambda: sdi_reference(np, W1, W2, -(W2 @ W1).T, d, 0.01, 0.5, 1000, True, bk=bk), reps)
    print(f"SDI 20-10-10, 999 Euler steps, batch 1: {t * 1e3:8.3f} ms/call (original: 2.1 ms)")


def bench_mnist_step(bk, n):
    from simkit.dynamics.di import DISolver
    from simkit.inversion_tasks import MNIST_MODELS
    from simkit.rules.inversion import TaskConfig, build_models, train_step
    rng = np.random.default_rng(0)
    W0 = [rng.uniform(-0.01, 0.01, (1000, 784)), rng.uniform(-0.01, 0.01, (10, 1000))]
    b0 = [np.zeros(1000), np.zeros(10)]
    models = build_models(bk, MNIST_MODELS, W0, b0, rng)
    cfg = TaskConfig(["tanh", "softmax"], eta=1e-3, w_decay=1e-6)
    X = bk.asarray(rng.standard_normal((n, 784)))
    Y = bk.asarray(np.eye(10)[rng.integers(0, 10, n)])
    di = DISolver(bk)
    per = {m.spec.name: 0.0 for m in models}
    for i in range(n):                    # as the task loop: every model takes sample i in turn
        for m in models:
            t = time.perf_counter()
            train_step(bk, m, cfg, X[i:i + 1], Y[i:i + 1], di, rng, "softmax")
            bk.synchronize()
            if i:
                per[m.spec.name] += time.perf_counter() - t
    Xte = bk.asarray(rng.standard_normal((10000, 784)))
    from simkit.rules.inversion import forward
    t_eval = timeit(lambda: forward(bk.xp, models[0].W, models[0].b, cfg.acts, Xte), 2)
    return {k: v / (n - 1) for k, v in per.items()}, t_eval


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default=None)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS/Numba threads (per-sample products are small: 1 was 10x faster "
                        "than 2 on a shared 2-core box)")
    args = p.parse_args(argv)
    limit_threads(args.threads)
    bk = get_backend(args.backend, "float64")
    bw = bandwidth_gbs()
    print(f"machine: {os.cpu_count()} CPUs, copy bandwidth {bw:.1f} GB/s, backend {bk.describe()}")
    bench_di(bk, 3 if args.quick else 20)
    per, t_eval = bench_mnist_step(bk, 50 if args.quick else 500)
    mb = 3 * 1000 * 784 * 8 / 1e6
    for name, t in per.items():
        print(f"MNIST 784-1000-10 online step {name:6s}: {t * 1e3:7.3f} ms/sample; "
              f"{mb / t / 1e3:6.1f} GB/s moved = {mb / t / 1e3 / bw:5.1%} of copy bandwidth")
    step = sum(per.values())
    ev = t_eval * 5 * 60 * 15
    print(f"MNIST test-set evaluation (10k images, one model): {t_eval:.3f} s")
    print(f"Fig. 4a projected (5 models x 60000 x 15 epochs): training {step * 9e5 / 60:.1f} min "
          f"+ test evaluation every 1000 samples {ev / 60:.1f} min (original: ~19 h)")


if __name__ == "__main__":
    main()
