r"""Stabilising feedback weights by (smoothed) spectral-abscissa descent (SSA).

The DI dynamics are stable iff the spectral abscissa :math:`s(M) = \max\operatorname{Re}\lambda(M)`
of their Jacobian (:func:`simkit.dynamics.di.di_jacobian`) is negative. Following Vanbiervliet et
al. 2009 / Hennequin et al. 2014 as used by Podlaski & Machens (supplement, "optim" feedback),
B is moved down the gradient of the abscissa, restricted to B's block of M. With
:math:`A = M - \tilde s I`,

.. math::

    A^\top Q + Q A = 2I, \qquad A P + P A^\top = 2I, \qquad
    G = \frac{Q P}{\operatorname{tr}(Q P)}, \qquad B \leftarrow B - \eta\,G_{B},

where :math:`G_B` is G's block at B's position in M (rows of r, columns of u).

* ``smoothed=False`` (the original): :math:`\tilde s = s`, the exact abscissa. A then has an
  eigenvalue on the imaginary axis, the Lyapunov equations are singular and scipy perturbs them;
  G approximates the gradient of the exact abscissa (normalised gradient descent).
* ``smoothed=True`` (documented option): :math:`\tilde s = s + \epsilon` with a fixed margin
  ``eps`` > 0, so A is stable and the Lyapunov equations are well posed. (Hennequin et al.
  define :math:`\tilde s` implicitly from :math:`\operatorname{tr}Q = 1/\epsilon`; the fixed margin
  is a simpler, well-posed stand-in.)

The loop runs at least ``miniters`` and at most ``maxiters`` iterations, stopping once
:math:`s \le` ``target`` (-0.01 in the original); it succeeds when :math:`s < 0`.

Deviations from the original: B is never modified in place (a copy is optimised); failure
raises :class:`SSAError` (with the final abscissa and iteration count) instead of returning
None; :func:`stabilise` retries a bounded number of times from fresh draws with derived seeds
(the original loops forever, and in nonlinear regression retries from the mutated B).
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy.linalg import solve_continuous_lyapunov

from simkit.dynamics.di import di_jacobian, sdi_jacobian, spectral_abscissa
from simkit.errors import NumericalError

LR, MAXITERS, MINITERS, TARGET = 5e-2, 200, 10, -0.01   # linear-regression call site
RETRIES = 3


class SSAError(NumericalError):
    """SSA could not bring the spectral abscissa below zero."""

    def __init__(self, abscissa: float, iterations: int, tries: int = 1):
        self.abscissa, self.iterations, self.tries = abscissa, iterations, tries
        super().__init__(f"SSA could not stabilise the feedback: spectral abscissa {abscissa:.3g} "
                         f">= 0 after {iterations} iterations ({tries} tries); raise maxiters/lr "
                         "or use neg-transpose feedback")


def _descent(jacobian, B, rows, cols, lr, maxiters, miniters, target, smoothed, eps):
    """Generic SSA loop on a copy of B; ``jacobian(B)`` builds M. Returns (B, s, iterations)."""
    B = np.array(B, dtype=np.float64, copy=True)
    M = jacobian(B)
    s, itr = spectral_abscissa(M), 0
    eye = np.eye(M.shape[0])
    while itr < miniters or (s > target and itr < maxiters):
        A = M - (s + (eps if smoothed else 0.0)) * eye
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)         # singular when not smoothed
            Q = solve_continuous_lyapunov(A.T, 2 * eye)             # A^T Q + Q A = 2I
            P = solve_continuous_lyapunov(A, 2 * eye)               # A P + P A^T = 2I
        QP = Q @ P
        G = QP / np.trace(QP)
        B -= lr * G[rows, cols]                                     # descend on B's block only
        M = jacobian(B)
        s, itr = spectral_abscissa(M), itr + 1
    return B, s, itr


def ssa_opt(W, B, alpha, lr=LR, maxiters=MAXITERS, miniters=MINITERS, target=TARGET,
            smoothed=False, eps=1e-3):
    """Optimise per-layer feedback B (d_in, d_out) for W; returns a new stable B or raises SSAError."""
    W = np.asarray(W, dtype=np.float64)
    d_in = W.shape[1]
    B, s, itr = _descent(lambda b: di_jacobian(W, b, alpha), B, slice(0, d_in), slice(d_in, None),
                         lr, maxiters, miniters, target, smoothed, eps)
    if not s < 0:
        raise SSAError(s, itr)
    return B


def ssa_opt_sdi(W1, W2, B, alpha, lr=LR, maxiters=MAXITERS, miniters=MINITERS, target=TARGET,
                smoothed=False, eps=1e-3):
    """SSA on the SDI loop's B (n_1, n_3) (the original never does this; see di.py)."""
    W1, W2 = np.asarray(W1, dtype=np.float64), np.asarray(W2, dtype=np.float64)
    n1, n12 = W1.shape[1], W1.shape[1] + W1.shape[0]
    B, s, itr = _descent(lambda b: sdi_jacobian(W1, W2, b, alpha), B, slice(0, n1),
                         slice(n12, None), lr, maxiters, miniters, target, smoothed, eps)
    if not s < 0:
        raise SSAError(s, itr)
    return B


def stabilise(B0, optimise, rng, retries=RETRIES):
    """``optimise(B0)`` (e.g. ``lambda b: ssa_opt(W, b, alpha)``); on :class:`SSAError`, up to
    ``retries`` more tries from fresh ``U(-a, a)`` draws (a = max|B0|) with seeds derived from
    ``rng``. Raises the last error, with the number of tries."""
    scale = float(np.max(np.abs(B0))) or 1.0
    seeds = np.random.SeedSequence(int(rng.integers(2**63))).spawn(max(retries, 1))
    B, err = B0, None
    for k in range(retries + 1):
        try:
            return optimise(B)
        except SSAError as exc:
            err = exc
            if k < retries:
                B = np.random.default_rng(seeds[k]).uniform(-scale, scale, np.shape(B0))
    raise SSAError(err.abscissa, err.iterations, tries=retries + 1)
