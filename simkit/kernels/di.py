r"""Numba twins of the DI Euler loops: ``n_steps - 1`` semi-implicit Euler steps for a batch.

The equations are those of :mod:`simkit.dynamics.di`, whose ``di_reference`` is the reference
(read that one) and whose ``DI_KERNEL`` pairs it with :func:`di_loop`:

.. math::

    u &\leftarrow u + \Delta t(-\alpha u + W g(r) - \delta)   && \text{(Eq. 5)}\\
    r &\leftarrow r + \Delta t(-r + B u)                      && \text{(Eq. 6)}

Arguments (shared by the twins): inputs ``W`` (d_out, d_in), ``B`` (d_in, d_out), ``delta``
(n, d_out), ``dims`` = (n, d_out, d_in) int64, ``alpha, dt, n_steps, g_tanh, tol``; in-place
outputs ``u`` (n, d_out), ``r`` (n, d_in), ``info`` = [steps taken, divergence step or -1].

:func:`sdi_loop` is the same arrangement for the single loop (``SDI_KERNEL``, with
``sdi_loop_reference``). :data:`BLOWUP` and :data:`CHECK_EVERY` are shared with the references.

Twins: the Numba ``loop`` reshapes the flat arrays and uses ``np.dot`` (BLAS) for the two
products per step: one compiled call runs the whole loop for the whole batch, with no Python
per step. CuPy has no CUDA twin (``cuda=None``): an Euler loop of matrix products does not fit
an ``ElementwiseKernel``, so on a GPU the reference runs (two GEMMs and a few element-wise calls
per step, for the whole batch at once).
"""
from __future__ import annotations

import math

import numpy as np

from simkit.backend import Kernel

BLOWUP = 1e30     # |state| above this counts as diverged (errors are O(1))
CHECK_EVERY = 25  # divergence check interval (steps)
SMALL = 4096      # below this many multiply-adds per product, inline loops beat np.dot's call


def matvec_t(At, v, out):
    """out = A v with ``At`` = A^T (contiguous): axpy order, so the inner loop runs over the
    contiguous output and vectorises, while each out[j] still sums q = 0, 1, ... as a dot would."""
    for j in range(out.size):
        out[j] = 0.0
    for q in range(v.size):
        vq = v[q]
        for j in range(out.size):
            out[j] += At[q, j] * vq


def di_loop(W, B, delta, dims, alpha, dt, n_steps, g_tanh, tol, u, r, info):
    """Numba twin over flat arrays (same semantics as ``di_reference``)."""
    n, d_out, d_in = dims[0], dims[1], dims[2]
    Wm = W.reshape((d_out, d_in))
    Bm = B.reshape((d_in, d_out))
    Wt, Bt = np.ascontiguousarray(Wm.T), np.ascontiguousarray(Bm.T)
    D, U, R = delta.reshape((n, d_out)), u.reshape((n, d_out)), r.reshape((n, d_in))
    small = n * d_out * d_in < SMALL
    WG, BU, g = np.empty((n, d_out)), np.empty((n, d_in)), np.empty(d_in)
    info[0] = 0.0
    info[1] = -1.0
    for t in range(1, n_steps):
        if small:                          # WG = g(R) W^T, inline (a BLAS call costs more)
            for i in range(n):
                for q in range(d_in):
                    g[q] = math.tanh(R[i, q]) if g_tanh else R[i, q]
                matvec_t(Wt, g, WG[i])
        else:
            WG[:, :] = np.dot(np.tanh(R) if g_tanh else R, Wt)
        for i in range(n):
            for j in range(d_out):
                U[i, j] += dt * (-alpha * U[i, j] + WG[i, j] - D[i, j])   # Eq. (5)
        if small:                          # BU = U B^T
            for i in range(n):
                matvec_t(Bt, U[i], BU[i])
        else:
            BU[:, :] = np.dot(U, Bt)
        step = 0.0
        big = 0.0
        for i in range(n):
            for j in range(d_in):
                dr = dt * (-R[i, j] + BU[i, j])                           # Eq. (6)
                R[i, j] += dr
                step = max(step, abs(dr))
                big = max(big, abs(R[i, j]))
        info[0] = t
        if t % CHECK_EVERY == 0 or tol > 0:
            size = big + np.abs(U).max()
            if not size < BLOWUP:
                info[1] = t
                return
            if tol > 0 and step <= tol * big:
                return


def sdi_loop(W1, W2, B, delta, dims, alpha, dt, n_steps, g_tanh, rx, ry, rz, info):
    """Numba twin of the SDI loop (``dims`` = n, n_1, n_2, n_3); same step order as the reference.

    Products are inline (SDI is used at 20-10-10 sizes, where a BLAS call costs more).
    """
    n, n1, n2, n3 = dims[0], dims[1], dims[2], dims[3]
    A1t = np.ascontiguousarray(W1.reshape((n2, n1)).T)
    A2t = np.ascontiguousarray(W2.reshape((n3, n2)).T)
    Bt = np.ascontiguousarray(B.reshape((n1, n3)).T)
    D = delta.reshape((n, n3))
    X, Y, Z = rx.reshape((n, n1)), ry.reshape((n, n2)), rz.reshape((n, n3))
    gx, gy = np.empty(n1), np.empty(n2)
    px, py, pz = np.empty(n1), np.empty(n2), np.empty(n3)
    info[0] = 0.0
    info[1] = -1.0
    for t in range(1, n_steps):
        for i in range(n):
            matvec_t(Bt, Z[i], px)                              # r_x += dt(-r_x + B r_z)
            for j in range(n1):
                X[i, j] += dt * (-X[i, j] + px[j])
                gx[j] = math.tanh(X[i, j]) if g_tanh else X[i, j]
            matvec_t(A1t, gx, py)                               # r_y += dt(-r_y + W1 g(r_x))
            for j in range(n2):
                Y[i, j] += dt * (-Y[i, j] + py[j])
                gy[j] = math.tanh(Y[i, j]) if g_tanh else Y[i, j]
            matvec_t(A2t, gy, pz)                               # r_z += dt(-a r_z + W2 g(r_y) - d)
            for j in range(n3):
                Z[i, j] += dt * (-alpha * Z[i, j] + pz[j] - D[i, j])
        info[0] = t
        if t % CHECK_EVERY == 0 and not np.abs(Z).max() < BLOWUP:
            info[1] = t
            return


# ----------------------------------------------------------------------------------------------
# The per-sample weight update of the inversion tasks, fused into one pass over W
# ----------------------------------------------------------------------------------------------

def rank1_reference(xp, delta, h, eta, decay, W):
    r"""W <- (1 - lambda) W + eta delta h^T for one sample (``delta`` (d_out,), ``h`` (d_in,)).

    The original's ``W += eta * outer(delta, h) - lambda * W`` costs ~5 passes over W; this is
    one read and one write, which is what bounds online SGD on a 1000 x 784 matrix.
    """
    if decay:
        W *= 1.0 - decay
    W += (eta * delta)[:, None] * h                     # the loop's order: (eta delta_i) h_j


def rank1_loop(delta, h, eta, decay, W):
    """Numba twin: one pass over W."""
    n_in = h.size
    keep = 1.0 - decay
    for i in range(delta.size):
        di = eta * delta[i]
        o = i * n_in
        for j in range(n_in):
            W[o + j] = keep * W[o + j] + di * h[j]


RANK1_UPDATE = Kernel(
    "inversion_rank1_update",
    reference=rank1_reference,
    loop=rank1_loop,
    cuda=("raw T delta, raw T h, T eta, T decay", "T W",
          ("const ptrdiff_t n_in = h.size(); "
           "W = (1 - decay) * W + eta * delta[i / n_in] * h[i % n_in];")),
)
