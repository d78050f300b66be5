"""Speed of dynamic inversion (Podlaski & Machens 2020): DI/SDI loops, per-sample MNIST steps,
memory bandwidth reached, and projected figure times.

    python benchmarks/bench_inversion.py [--backend numba] [--quick]

Prints one line per measurement. The per-sample MNIST update of the 1000 x 784 matrix is
memory-bound: per model and sample it reads W_0 for the forward pass and reads and writes it
once in the fused update (``simkit.kernels.di.RANK1_UPDATE``), i.e. ~3 x 6.27 MB in float64;
the fraction of the machine's bandwidth (measured here with a large array copy) is reported.
With deferred updates (``simkit.tasks.deferred``, ``--defer 100`` in Fig. 4a) the same three passes
serve a block of 100 samples, and the step is bound by the per-sample arithmetic instead.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from simkit.backend import get_backend, limit_threads
from simkit.dynamics.di import DISolver, sdi_reference


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
        t = timeit(lambda d=d: s(W, -W.T, 0.01, d), reps)
        print(f"DI 10x20, 999 Euler steps, batch {n:4d}: {t * 1e3:8.3f} ms/call, "
              f"{t / n * 1e6:8.1f} us/sample")
    W1, W2 = W, rng.uniform(-0.01, 0.01, (10, 10))
    d = rng.standard_normal((1, 10))
    t = timeit(lambda: sdi_reference(np, W1, W2, -(W2 @ W1).T, d, 0.01, 0.5, 1000, True, bk=bk), reps)
    print(f"SDI 20-10-10, 999 Euler steps, batch 1: {t * 1e3:8.3f} ms/call (original: 2.1 ms)")


def bench_mnist_step(bk, n, defer):
    """Seconds per sample of Fig. 4a's online loop, all five models, no evaluation."""
    from simkit.tasks.inversion import MNIST_MODELS, run_online
    from simkit.tasks.inversion_model import TaskConfig, build_models
    rng = np.random.default_rng(0)
    W0 = [rng.uniform(-0.01, 0.01, (1000, 784)), rng.uniform(-0.01, 0.01, (10, 1000))]
    b0 = [np.zeros(1000), np.zeros(10)]
    models = build_models(bk, MNIST_MODELS, W0, b0, rng)
    cfg = TaskConfig(["tanh", "softmax"], eta=1e-3, w_decay=1e-6)
    X = rng.standard_normal((n + 1, 784))
    Y = np.eye(10)[rng.integers(0, 10, n + 1)]
    none = lambda models: [0.0] * len(models)                              # noqa: E731
    run_online(bk, models, cfg, X, Y, np.arange(1), none, out_act="softmax", defer=defer)  # warm-up
    t = time.perf_counter()
    run_online(bk, models, cfg, X, Y, np.arange(1, n + 1), none, eval_every=n, out_act="softmax",
               defer=defer)
    bk.synchronize()
    return (time.perf_counter() - t) / n, len(models)


def bench_mnist_eval(bk, dtype):
    """Seconds for one model's forward pass over 10k test images in ``dtype``."""
    from simkit.tasks.inversion import eval_forward
    from simkit.tasks.inversion_model import Model, ModelSpec, TaskConfig
    rng = np.random.default_rng(0)
    m = Model(ModelSpec("BP", "BP"), [bk.asarray(rng.uniform(-0.01, 0.01, s))
                                      for s in ((1000, 784), (10, 1000))],
              [bk.asarray(np.zeros(1000)), bk.asarray(np.zeros(10))])
    Xte = bk.asarray(rng.standard_normal((10000, 784))).astype(dtype)
    cfg = TaskConfig(["tanh", "softmax"], eta=1e-3)
    return timeit(lambda: (eval_forward(bk.xp, m, cfg, Xte), bk.synchronize()), 3)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default=None)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS/Numba threads (per-sample products are small, so more threads "
                        "mostly wait for each other)")
    args = p.parse_args(argv)
    limit_threads(args.threads)
    bk = get_backend(args.backend, "float64")
    bw = bandwidth_gbs()
    print(f"machine: {os.cpu_count()} CPUs, copy bandwidth {bw:.1f} GB/s, backend {bk.describe()}")
    bench_di(bk, 3 if args.quick else 20)
    n = 200 if args.quick else 2000
    mb = 3 * 1000 * 784 * 8 / 1e6                       # W_0 passes per model and sample, MB
    steps = {}
    for defer in (1, 100):
        t, n_models = bench_mnist_step(bk, n, defer)
        steps[defer] = t
        moved = n_models * mb / (1 if defer == 1 else defer)
        print(f"MNIST 784-1000-10 online step, {n_models} models, defer {defer:3d}: "
              f"{t * 1e3:7.3f} ms/sample; W_0 traffic {moved / t / 1e3:6.1f} GB/s = "
              f"{moved / t / 1e3 / bw:5.1%} of copy bandwidth")
    evals = {d: bench_mnist_eval(bk, d) for d in ("float64", "float32")}
    for d, t in evals.items():
        print(f"MNIST test-set evaluation (10k images, one model, {d}): {t:.3f} s")
    for defer, dtype in ((1, "float64"), (100, "float32")):
        train, ev = steps[defer] * 9e5, evals[dtype] * 5 * 60 * 15
        print(f"Fig. 4a projected (5 models x 60000 x 15 epochs, defer {defer}, {dtype} test pass): "
              f"training {train / 60:.1f} min + evaluation every 1000 samples {ev / 60:.1f} min "
              f"= {(train + ev) / 60:.1f} min (original: ~19 h)")


if __name__ == "__main__":
    main()
