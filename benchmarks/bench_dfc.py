"""DFC / Strong-DFC speed: seconds per epoch extrapolated from N minibatches, FLOPs, % of peak.

Usage (from the repository root)::

    python benchmarks/bench_dfc.py                    # all cases, float64 and float32, 3 batches
    python benchmarks/bench_dfc.py --case dfc_forward --batches 5 --path fast

Cases (the published MNIST settings, 784-256-256-256-10, tanh, 55,000 training samples):

* ``dfc_forward``: DFC forward phase, batch 32, 500 time points, continuous update (Eq. (5));
* ``dfc_sleep``: DFC sleep epoch, batch 32, 44 time points, white noise, feedback update;
* ``strong_single``: single-phase Strong-DFC, batch 128, 500 time points, OU noise, forward and
  high-passed feedback update from the same simulation;
* ``strong2_ss`` and ``strong2_sleep``: two-phase Strong-DFC (``--ss``): the forward simulation
  (500 time points, only the steady state is used) and the sleep epoch (500 time points, white
  noise), batch 128; one epoch of the published command runs both.

Paths: ``reference`` (the readable ``controller_step``: BLAS products, NumPy's SIMD ufuncs),
``fast`` (``simulate_fast``: the same with reused buffers and chunked update products taken on a
helper thread while the loop goes on, so the second core works too; what ``simkit run_dfc`` uses
on the CPU for MNIST-sized nets) and ``numba`` (the fused kernel of
:mod:`simkit.kernels.dfc`); on a GPU, ``cuda`` (the persistent kernel of
:mod:`simkit.kernels.dfc_cuda`, what ``simkit run_dfc`` uses on CuPy, noise drawn in the kernel)
and ``cupy-arrays`` (``simulate_fast`` with CuPy array calls, ~35 per step); ``--cluster 8``
times the cluster kernel (samples on 8 blocks, W in shared memory) instead of one block a
sample. One controller simulation per minibatch is timed (plus the update scaling); data
loading and the optimiser are not.

FLOPs per Euler step and sample: sum_{l>=2} 2 n_l n_{l-1} (basal input) + 2 N n_L (Q u) and,
when learning, the same again for the forward sums and 2 N n_L for the feedback sums; the
constant W_1 x is computed once. ``--peak`` is the device's peak in GFLOP/s for float64 (float32:
twice it); by default it is measured at the start: one core's ``dgemm`` rate on 1024 x 1024
matrices times the number of cores (on the GPU paths: CuPy's 4096 x 4096 product), since CPUs
differ by 2x (AVX-512 or AVX2) and a busy machine reaches less than its nominal peak.
BLAS runs single-threaded unless ``--threads`` says otherwise (set before NumPy is imported); with
the helper thread, one BLAS thread is the fastest setting on two cores (DFC forward: about 1.5x
faster than two BLAS threads, or than one without the helper).
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", choices=("dfc_forward", "dfc_sleep", "strong_single", "strong2_ss",
                                      "strong2_sleep", "all"),
                   default="all")
    p.add_argument("--dtype", choices=("float64", "float32", "both"), default="both")
    p.add_argument("--path", choices=("reference", "fast", "numba", "all", "cuda", "cupy-arrays"),
                   default="all", help="all: the three CPU paths")
    p.add_argument("--batches", type=int, default=3, help="timed minibatches (after one warm-up)")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads")
    p.add_argument("--peak", type=float, default=None, help="peak GFLOP/s (float64; default: measured)")
    p.add_argument("--fused", choices=("on", "off", "both"), default="on",
                   help="fast path: tanh layers' Euler update as one Numba pass (on) or array calls")
    p.add_argument("--chunk-kernel", choices=("on", "off", "both"), default="on",
                   help="fast path: the steps of a chunk as one Numba call (on) or a Python loop")
    p.add_argument("--steps-per-launch", type=int, default=None,
                   help="cuda path: Euler steps per kernel launch (default 50; 500: one a minibatch)")
    p.add_argument("--cluster", type=int, default=None,
                   help="cuda path: blocks a sample (dfc_steps_cluster, sm_90; 2-8); default one")
    p.add_argument("--per-cluster", type=int, default=None,
                   help="cuda path with --cluster: samples a cluster (default: chosen by waves)")
    p.add_argument("--noise", choices=("counter", "numpy", "both"), default="counter",
                   help="normal stream of the noisy cases (DFC's noise_stream)")
    return p.parse_args()


ARGS = parse()
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(ARGS.threads))
os.environ.setdefault("OMP_NUM_THREADS", str(ARGS.threads))
os.environ.setdefault("MKL_NUM_THREADS", str(ARGS.threads))

import numpy as np  # noqa: E402

from simkit.backend import get_backend  # noqa: E402
from simkit.dynamics.controller import Dynamics, Learning, simulate_reference  # noqa: E402
from simkit.errors import UserError  # noqa: E402
from simkit.kernels import dfc_chunk, dfc_cuda, dfc_fast  # noqa: E402
from simkit.kernels.dfc import simulate  # noqa: E402
from simkit.kernels.dfc_cuda import simulate_cuda  # noqa: E402
from simkit.kernels.dfc_fast import simulate_fast  # noqa: E402
from simkit.nn import MLP  # noqa: E402
from simkit.rules.dfc import DFC  # noqa: E402

SIZES = [784, 256, 256, 256, 10]
N_TRAIN = 55000
CASES = {
    "dfc_forward": dict(B=32, dyn=dict(dt=0.02, T=500, tau_v=0.2, tau_A=0.02, alpha=0.00177,
                                       k_p=2.0), learn=Learning("nonlinear_difference", None)),
    "dfc_sleep": dict(B=32, dyn=dict(dt=0.00114, T=44, tau_v=0.00587, tau_A=0.14, alpha=0.399,
                                     k_p=0.0714, noise="white", sigma=0.0355, sigma_out=0.0355),
                      learn=Learning(None, "plain")),
    "strong_single": dict(B=128, dyn=dict(dt=0.001, T=500, tau_v=0.00927, tau_A=0.001,
                                          alpha=7.6e-6, k_p=2.0, noise="ou", sigma=0.0043,
                                          sigma_out=0.0297, tau_noise=0.07, error="ce"),
                          learn=Learning("nonlinear_difference", "highpass", a_u=0.002)),
    "strong2_ss": dict(B=128, dyn=dict(dt=0.001, T=500, tau_v=0.0355, tau_A=0.001, alpha=0.00808,
                                      k_p=2.0, error="ce"), learn=Learning(None, None)),
    "strong2_sleep": dict(B=128, dyn=dict(dt=0.00319, T=500, tau_v=0.00724, tau_A=0.1296,
                                         alpha=0.994, k_p=0.0692, noise="white", sigma=0.15,
                                         sigma_out=0.15, error="ce"),
                          learn=Learning(None, "plain")),
}


def flops_per_batch(case) -> float:
    B, T, learn = case["B"], case["dyn"]["T"], case["learn"]
    N, nL = sum(SIZES[1:]), SIZES[-1]
    deep = sum(2 * SIZES[l + 1] * SIZES[l] for l in range(1, len(SIZES) - 1))
    step = deep + 2 * N * nL + (deep if learn.fw else 0) + (2 * N * nL if learn.fb else 0)
    first = 2 * SIZES[1] * SIZES[0] * (2 if learn.fw else 1)          # W_1 x, (sum delta_1)^T x
    return B * ((T - 1) * step + first)


def gpu(path) -> bool:
    return path in ("cuda", "cupy-arrays")


def setup(dtype, B, path="fast"):
    bk = get_backend("cupy" if gpu(path) else "numba", dtype, announce=False)
    rng = np.random.default_rng(0)
    net = MLP(bk, SIZES, "tanh", "linear", rng=rng)
    Q = [bk.asarray(rng.normal(0, 0.1, size=(n, SIZES[-1]))) for n in SIZES[1:]]
    x = bk.asarray(rng.normal(size=(B, SIZES[0])))
    cache = net.forward(x)
    t = bk.asarray(np.eye(10)[rng.integers(0, 10, B)] * 0.99 + 0.001)
    P = {"W": net.W, "b": net.b, "Q": Q, "phi": net.phi, "v_ff1": cache.a[1], "x": x,
         "r_target": t}
    return bk, net, cache, P


def measured_peak() -> float:
    """float64 GFLOP/s of the whole CPU: the best of 5 single-threaded 1024^3 products (BLAS
    runs one thread here unless ``--threads``) times the cores."""
    if gpu(ARGS.path):
        import cupy
        a = cupy.random.default_rng(0).standard_normal((4096, 4096))
        sync = cupy.cuda.get_current_stream().synchronize
        a @ a
        best = min(_seconds(lambda: (a @ a, sync())) for _ in range(5))
        return 2 * 4096 ** 3 / best / 1e9
    a = np.random.default_rng(0).normal(size=(1024, 1024))
    a @ a
    best = min(_seconds(lambda: a @ a) for _ in range(5))
    return 2 * 1024 ** 3 / best / 1e9 * (os.cpu_count() or 1) / ARGS.threads


def _seconds(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def time_case(name, dtype, path, stream):
    case = CASES[name]
    bk, net, cache, P = setup(dtype, case["B"], path)
    if ARGS.steps_per_launch:
        dfc_cuda.STEPS_PER_LAUNCH = ARGS.steps_per_launch
    dfc_cuda.CLUSTER, dfc_cuda.PER_CLUSTER = ARGS.cluster, ARGS.per_cluster
    dyn = Dynamics(**case["dyn"]).check()
    rule = DFC(noise_stream=stream)            # its noise(): the run's source, drawn ahead
    rule.bk, rule.net, rule.noise_seed = bk, net, 1

    def noise(t0, t1):
        if t0 == 0:
            noise.draw = rule.noise(case["B"], sum(SIZES[1:]), 0, dyn.T - 1)
        return noise.draw(t0, t1)

    def one():
        if path == "cuda":
            return simulate_cuda(bk, P, cache.a[1:], cache.h[1:], dyn, case["learn"],
                                 rule.noise(case["B"], sum(SIZES[1:]), 0, dyn.T - 1))
        if path == "cupy-arrays":
            return simulate_fast(bk.xp, P, cache.a[1:], cache.h[1:], dyn, case["learn"], noise)
        if path == "numba":
            return simulate(bk, P, cache.a[1:], cache.h[1:], dyn, case["learn"], noise)
        if path == "fast":
            return simulate_fast(np, P, cache.a[1:], cache.h[1:], dyn, case["learn"], noise)
        return simulate_reference(np, P, cache.a[1:], cache.h[1:], dyn, case["learn"], noise)
    one()                                                              # compile / warm up
    bk.synchronize()
    t0 = time.perf_counter()
    for _ in range(ARGS.batches):
        one()
    bk.synchronize()
    s = (time.perf_counter() - t0) / ARGS.batches
    n_batches = -(-N_TRAIN // case["B"])
    flops = flops_per_batch(case) * n_batches
    peak = ARGS.peak * (2 if dtype == "float32" else 1)
    rate = flops_per_batch(case) / s / 1e9
    label = path + ("" if dfc_fast.FUSED or path != "fast" else "-arrays") + \
        ("" if dfc_chunk.ENABLED or path != "fast" else "-pystep")
    label += f"/{stream}" if case["dyn"].get("noise", "none") != "none" else ""
    label += f"/{dfc_cuda.STEPS_PER_LAUNCH}" if path == "cuda" else ""
    label += f"/x{dfc_cuda.CLUSTER}:{dfc_cuda.PER_CLUSTER or 'auto'}" \
        if path == "cuda" and dfc_cuda.CLUSTER else ""
    print(f"{name:14s} {dtype:8s} {label:14s} {s:8.3f} s/batch {s * n_batches:9.0f} s/epoch "
          f"{flops / 1e12:7.2f} TFLOP/epoch {rate:6.1f} GFLOP/s {100 * rate / peak:5.1f}% of "
          f"{peak:.0f}", flush=True)


def _variants(path):
    """(fused, chunk kernel) settings to time: both values of an option given as 'both'."""
    both = ("on", "off")
    fused = both if ARGS.fused == "both" and path == "fast" else (ARGS.fused,)
    kern = both if ARGS.chunk_kernel == "both" and path == "fast" else (ARGS.chunk_kernel,)
    return [(f, k) for f in fused for k in kern]


def main():
    names = list(CASES) if ARGS.case == "all" else [ARGS.case]
    dtypes = ["float64", "float32"] if ARGS.dtype == "both" else [ARGS.dtype]
    paths = ["reference", "fast", "numba"] if ARGS.path == "all" else [ARGS.path]
    streams = ["counter", "numpy"] if ARGS.noise == "both" else [ARGS.noise]
    if gpu(ARGS.path):
        try:
            get_backend("cupy", announce=False)
        except UserError as e:
            print(f"bench_dfc: --path {ARGS.path} needs a GPU: {e}", file=sys.stderr)
            sys.exit(2)
    measured = ARGS.peak is None
    ARGS.peak = measured_peak() if measured else ARGS.peak
    print(f"# {ARGS.batches} timed minibatches per row, {ARGS.threads} BLAS thread(s), "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; float64 peak "
          f"{ARGS.peak:.0f} GFLOP/s ({'measured: one core dgemm x cores' if measured else '--peak'})")
    for name in names:
        for dtype in dtypes:
            for path in paths:
                noisy = CASES[name]["dyn"].get("noise", "none") != "none"
                for stream in streams if noisy else streams[:1]:
                    for fused, kern in _variants(path):
                        dfc_fast.FUSED, dfc_chunk.ENABLED = fused == "on", kern == "on"
                        time_case(name, dtype, path, stream)


if __name__ == "__main__":
    main()
