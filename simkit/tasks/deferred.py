r"""Online SGD's first-layer updates applied k samples at a time, exactly (Fig. 4a's speed).

Online SGD (batch 1) with weight decay updates the first weight matrix after every sample
:math:`j` with input :math:`x_j` (data) and first-layer error :math:`\delta_j`:

.. math::  W^{(j+1)} = \rho\, W^{(j)} + u_j\,\eta\,\delta_j x_j^\top,
           \qquad \rho = 1 - \lambda                                                    \qquad (D1)

(:math:`u_j = 0` for a sample that does not update, with no decay either; :math:`\rho` then
reads 1). Unrolled over a block that starts from :math:`W^{(0)}`, with
:math:`c_j = \sum_{i<j} u_i` updates before sample :math:`j`:

.. math::  W^{(j)} = \rho^{c_j}\, W^{(0)}
           + \eta \sum_{i<j} u_i\, \rho^{\,c_j - c_i - 1}\, \delta_i x_i^\top              \qquad (D2)

and the only product of :math:`W^{(j)}` the step needs, the forward pass's, is

.. math::  W^{(j)} x_j = \rho^{c_j}\, \big(W^{(0)} x_j\big)
           + \eta \sum_{i<j} u_i\, \rho^{\,c_j - c_i - 1}\, \big(x_i^\top x_j\big)\, \delta_i  \qquad (D3)

The block's inputs are known in advance, so :math:`W^{(0)} x_j` for every :math:`j` is one
matrix product :math:`P = X W^{(0)\top}`, the :math:`x_i^\top x_j` one Gram matrix
:math:`K = X X^\top`, and Eq. (D3) a :math:`j \times d_h` product per sample. At the end of the
block Eq. (D2) with :math:`j = k` is one more matrix product. The errors and the upper layers
are untouched (they never read :math:`W_1`: a layer's error uses the weights above it).

Cost for a :math:`d_h \times d_{in}` matrix: the same :math:`4 d_h d_{in}` flops per sample, but
:math:`W_1` crosses the memory bus 3 times per *block* (read for :math:`P`, read and write for
Eq. D2) instead of 3 times per *sample* (forward read, update read and write), which is what
limits the per-sample loop (a 1000 x 784 float64 matrix is 6.3 MB, and Fig. 4a has five models).
The result equals the per-sample loop's up to round-off (tests: ``test_deferred.py``).
"""
from __future__ import annotations

import numpy as np


class DeferredFirstLayer:
    r"""One model's block state: ``P`` (Eq. D3's first term), stored errors ``D``, and the block's
    coefficients, fixed at the start because which samples update (``updates``) is known then:
    ``A[j, i]`` :math:`= \eta\,u_i\,\rho^{\,c_j - c_i - 1}` (i < j), ``decay[j]``
    :math:`= \rho^{c_j}` (host, j = 0..k). On a GPU ``A`` crosses to the device once per block."""

    def __init__(self, xp, W1, X, eta: float, decay: float, updates):
        self.xp, self.W1, self.X = xp, W1, X
        k = X.shape[0]
        rho = 1.0 - float(decay)
        self.u = np.asarray(updates, dtype=float).reshape(k)              # u_j
        c = np.concatenate([[0.0], np.cumsum(self.u)])                    # c_j, j = 0..k
        self.decay = rho ** c
        expo = c[:, None] - c[None, :k] - 1.0                             # c_j - c_i - 1
        keep = np.tri(k + 1, k, -1) * self.u[None, :]                     # i < j, u_i = 1
        A = np.where(keep > 0, float(eta) * rho ** np.maximum(expo, 0.0), 0.0)
        self.A_last = A[k]                                                # Eq. (D2), j = k
        self.A = xp.asarray(A[:k])
        self.any_update = c[:k] > 0                                       # c_j > 0
        self.P = X @ W1.T                                                 # W^(0) x_j, all j
        self.D = xp.zeros_like(self.P)                                    # delta_j (rows)

    def product(self, j: int, K):
        """:math:`W^{(j)} x_j` as a (1, d_h) row, Eq. (D3); ``K`` the block's Gram matrix."""
        a = self.decay[j] * self.P[j]
        if self.any_update[j]:
            a = a + (self.A[j, :j] * K[:j, j]) @ self.D[:j]
        return a[None, :]

    def record(self, j: int, delta):
        """Store sample j's first-layer error (one row) if it updates."""
        if self.u[j]:
            self.D[j] = delta[0]

    def apply(self):
        """Write Eq. (D2) at the end of the block into ``W1`` (in place)."""
        k = self.X.shape[0]
        if not self.u.any():
            return
        w = self.xp.asarray(self.A_last)
        self.W1 *= self.decay[k]
        self.W1 += (self.D * w[:, None]).T @ self.X                       # Eq. (D2)
