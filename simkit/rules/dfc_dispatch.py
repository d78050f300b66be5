"""Which Euler loop runs a DFC simulation, and the keys of its noise.

The loops compute the same steps (:mod:`simkit.dynamics.controller`; tests hold them to rtol
1e-12 with fixed noise):

* backend numpy: the readable reference loop (``kernel="vectorised"``: the fast one);
* backend numba: the Numba twin (:mod:`simkit.kernels.dfc`) for nets of at most
  :data:`KERNEL_MAX_UNITS` neurons (or ``kernel="numba"``), else the vectorised fast loop
  (:mod:`simkit.kernels.dfc_fast`: same sums, buffers reused, chunked products), which is faster
  there: BLAS products and NumPy's SIMD tanh beat Numba's scalar tanh on wide layers;
* backend cupy: the persistent kernel of :mod:`simkit.kernels.dfc_cuda` (``kernel="vectorised"``:
  the fast loop);
* any backend: the reference loop for the options only it has (low-pass control, Jacobian
  feedback, a sample mask).

Noise seeds: every noisy simulation draws from simkit's stream seeded by
:func:`simulation_seed`, so a resumed run draws the same numbers as an unbroken one.
"""
from __future__ import annotations

from simkit.dynamics.controller import needs_reference, simulate_reference
from simkit.kernels.dfc import simulate
from simkit.kernels.dfc_cuda import simulate_cuda
from simkit.kernels.dfc_fast import simulate_fast

KERNEL_MAX_UNITS = 64

# The noise stream's key of a simulation is (seed, stream epoch, simulation, phase):
PRETRAIN_EPOCH = 10 ** 6       # pre-training epoch p (from 0) draws as stream epoch 10^6 + p
SLEEP_SIMULATION = 10 ** 6     # sleep epoch k (from 0) of an epoch numbers its simulations
                               # from 10^6 (k + 1) on, apart from the forward phase's 0, 1, ...
ORDER_PHASE = 7                # the feedback epochs' sample order: the stream (seed, epoch, 7)


def simulation_seed(seed, epoch, simulation, phase) -> list:
    """The key of one simulation's normals: the run's ``seed``, the stream ``epoch`` (the
    training epoch, or :func:`pretrain_epoch`'s), the ``simulation``'s number within it (from
    0 in the forward phase, from :func:`sleep_start` in a sleep epoch) and the ``phase`` (0
    forward, 1 feedback)."""
    return [seed, epoch, simulation, phase]


def pretrain_epoch(p: int) -> int:
    """The stream epoch of feedback pre-training epoch ``p`` (from 0)."""
    return PRETRAIN_EPOCH + p


def sleep_start(k: int) -> int:
    """The first simulation number of sleep epoch ``k`` (from 0) of a training epoch."""
    return SLEEP_SIMULATION * (k + 1)


def order_key(seed, epoch) -> list:
    """The key of a feedback epoch's sample order (stream epoch ``epoch``)."""
    return [seed, epoch, ORDER_PHASE]


def pick_loop(bk, kernel, n_units, only_reference):
    """The function that runs the Euler loop: ``loop(P, v_ff0, r0, dyn, learn, noise)``;
    ``kernel`` is the option (auto, numba, vectorised), ``n_units`` the net's neurons."""
    xp = bk.xp
    small = kernel == "auto" and n_units <= KERNEL_MAX_UNITS
    if bk.name == "numba" and not only_reference and (kernel == "numba" or small):
        return lambda *a: simulate(bk, *a)
    if bk.name == "cupy" and not only_reference and kernel == "auto":
        return lambda *a: simulate_cuda(bk, *a)                     # one launch a chunk
    if only_reference or (bk.name == "numpy" and kernel == "auto"):
        return lambda *a: simulate_reference(xp, *a)                # the readable loop
    return lambda *a: simulate_fast(xp, *a)


def reference_only(dyn, P, converged_only) -> bool:
    """Whether only the readable loop has what this simulation asks for."""
    return needs_reference(dyn, P) or bool(converged_only)
