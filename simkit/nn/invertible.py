r"""Invertible networks: square layers with exact inverses, as in GAIT-prop.

Ahmad, van Gerven & Ambrogioni, "GAIT-prop: A biologically plausible learning rule derived from
backpropagation of error", NeurIPS 2020, arXiv:2006.06438; original code ``nasiryahm/GAIT-prop``.

Layout and layer
----------------
The layout of :class:`simkit.nn.MLP`: rows are samples and ``W[l-1]``, the paper's :math:`W_l`, is
an :math:`n_l \times n_l` matrix of shape (out, in) (the original stores its transpose). With
:math:`h_0 = x` (a batch ``(N, n_0)``) and :math:`l = 1..L`:

.. math::

    h_l &= \sigma\big(h_{l-1}^{[:n_l]} W_l^\top + b_l\big)                        && (1)\\
    g_l(y) &= \big(\sigma^{-1}(y) - b_l\big)\, W_l^{-\top}                        && (2)

:math:`h^{[:n]}` is the first :math:`n` units. A *square* network has :math:`n_l = n_0` for every
layer (784 for MNIST; the output layer is 784 wide too and its first 10 units are the classes).
The *tower* ``784 -> 784 -> 500 -> 200 -> 10`` has square blocks of decreasing width; layer
:math:`l` reads only the first :math:`n_l` units of :math:`h_{l-1}`, the others are "auxiliary".
Inverting layer :math:`l` recovers those first :math:`n_l` units by (2); the auxiliary units are
taken from the forward pass, so the inverse is exact given the stored activity:

.. math:: h_{l-1} = \big[\, g_l(h_l),\; h_{l-1}^{[n_l:]} \,\big]                    \qquad (3)

:math:`\sigma` is the leaky ReLU with slope :math:`a = 0.1` (or the identity with ``linear``),
:func:`simkit.nn.activations.sigma`:

.. math::

    \sigma(z) = \max(z, a z), \quad \sigma^{-1}(y) = \min(y, y/a), \quad
    \sigma'(h) = 1 \text{ if } h \ge 0 \text{ else } a                              \qquad (4)

The derivative is read from the post-activation :math:`h` (the sign survives :math:`\sigma`), so
no pre-activation is stored; :math:`h = 0` counts as positive, as in the original.

Inverses
--------
:math:`y W_l^{-\top}` is never formed from an explicit inverse: it is one LU solve
(``xp.linalg.solve``, :math:`\tfrac23 n^3` flops instead of :math:`2n^3` for ``inv``). Every
rule here applies each layer's inverse exactly once per step, so one factorisation per layer and
step is the minimum. A few fixed random probe rows :math:`R` are solved along with :math:`Y`; they
give the condition estimate

.. math:: \hat\kappa(W) = \frac{\lVert W\rVert_F\, \lVert R\,W^{-\top}\rVert_F}{\sqrt{n}\,\lVert R\rVert_F}

(1 for an orthogonal matrix, within a factor :math:`\sqrt n` of the 2-norm condition number for
Gaussian probes). A singular, non-finite or ill-conditioned layer (:math:`\hat\kappa` above
``max_cond``, default :data:`MAX_COND`) raises :class:`~simkit.errors.NumericalError` instead of
producing NaNs or targets without correct digits. NumPy's own LAPACK is used rather than SciPy's:
SciPy ships a second OpenBLAS whose idle threads would compete with NumPy's on a small machine.

Orthogonality regulariser
-------------------------
The soft penalty on the off-diagonal entries of the Gram matrix of the columns (one column per
input unit, the original's rows), :math:`G = W^\top W`; its diagonal is free: columns become
mutually orthogonal, not normalised. Its closed-form gradient
(:math:`dG = dW^\top W + W^\top dW` and :math:`G - \mathrm{diag}(G)` symmetric):

.. math::

    R(W) = \lambda \sum_{i \ne j} \big(W^\top W\big)_{ij}^2, \qquad
    \nabla_W R = 4 \lambda \, W \big(W^\top W - \mathrm{diag}(W^\top W)\big)          \qquad (5)

Two products: :math:`W^\top W` (a symmetric rank-k update, :math:`n^3` flops) and one general
product (:math:`2 n^3`). The original obtained it through Chainer's autograd on einsums.

Initialisation (the original's, for seed-for-seed agreement)
-----------------------------------------------------------
Layer :math:`l` of a square net is seeded with ``seed + l - 1`` for the hidden layers, and the
output layer *reuses the last hidden layer's seed*, so its initial matrix equals that layer's
(``distinct_output_seed=True`` gives it ``seed + L - 1`` instead). Tower layers are seeded
``seed + l - 1``. Orthogonal: ``scipy.stats.ortho_group.rvs(n)`` from ``RandomState(seed)``
(Haar-random); otherwise Xavier normal ``RandomState(seed).randn(n, n) * sqrt(1/n)``; each is
transposed into the (out, in) layout. Biases start at zero. These are local ``RandomState``
objects, not NumPy's global state; this departs from simkit's ``SeedSequence`` streams on purpose:
it reproduces the original's initial weights (and so its 12.22% initial MNIST accuracy) to
round-off.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from simkit.errors import NumericalError, UserError
from simkit.nn.activations import SLOPE, sigma, sigma_inv, times_dsigma

MAX_COND = 1e12    # a layer whose condition number exceeds this is reported, not inverted
PROBES = 2         # random rows solved along with every inverse, for the condition estimate


# ------------------------------------------------------------------------------ initialisation
def original_init(n: int, seed: int, orthogonal: bool) -> np.ndarray:
    """An ``n x n`` host matrix drawn exactly as the original's ``InvLayer`` draws it (its layout:
    the transpose of :math:`W_l`)."""
    rs = np.random.RandomState(seed)
    if orthogonal:
        from scipy.stats import ortho_group
        return ortho_group.rvs(n, random_state=rs)
    return rs.randn(n, n) * math.sqrt(2.0 / (n + n))


def square_seeds(seed: int, n_hidden: int, distinct_output_seed=False) -> list:
    """Per-layer seeds of the square net (output reuses the last hidden seed, see module doc)."""
    hidden = [seed + k for k in range(n_hidden)]
    out = seed + n_hidden if distinct_output_seed or n_hidden == 0 else hidden[-1]
    return hidden + [out]


# ------------------------------------------------------------------------------ regulariser
def ortho_penalty(xp, W) -> float:
    r""":math:`R(W)/\lambda = \sum_{i\ne j} (W^\top W)_{ij}^2` (Eq. 5)."""
    G = W.T @ W
    return float((G * G).sum() - (xp.diagonal(G) ** 2).sum())        # Eq. (5)


def ortho_grad(xp, W, lam: float, out=None, gram=None):
    r""":math:`4\lambda\,W (W^\top W - \mathrm{diag}(W^\top W))` (Eq. 5); ``out``/``gram``: buffers."""
    G = xp.matmul(W.T, W, out=gram)             # symmetric rank-k update, n^3 flops
    xp.fill_diagonal(G, 0.0)                    # off-diagonal part of the Gram matrix
    out = xp.matmul(W, G, out=out)              # 2 n^3 flops
    out *= 4.0 * lam                            # Eq. (5)
    return out


# ------------------------------------------------------------------------------ inverses
def probe_rows(n: int, k: int = PROBES) -> np.ndarray:
    """Fixed Gaussian probe rows for the condition estimate (the same in every run)."""
    return np.random.default_rng(20200611).normal(size=(k, n))


def solve_right(xp, W, Y, R, layer: int, max_cond: float = MAX_COND):
    """``(Y W^{-T}, cond)``: one LU solve for the rows ``Y`` and probes ``R`` (module docstring)."""
    N = Y.shape[0]
    try:
        X = xp.linalg.solve(W, xp.concatenate([Y, R]).T).T        # W X^T = [Y; R]^T
    except np.linalg.LinAlgError:                                   # an exactly zero pivot
        cond = math.inf
    else:
        Z = X[N:]
        cond = float(xp.linalg.norm(W) * xp.linalg.norm(Z) /
                     (math.sqrt(W.shape[0]) * xp.linalg.norm(R)))
    if not math.isfinite(cond) or cond > max_cond:
        raise NumericalError(
            f"layer {layer} is singular or ill-conditioned (condition number ~{cond:.3g} > "
            f"{max_cond:.3g}): its inverse has no correct digits, so targets cannot be "
            "propagated; lower the learning rate or raise --orthogonal_reg")
    return X[:N], cond


def pad_aux(xp, a, n):
    """``a`` with zero columns appended up to width ``n`` (a tower's auxiliary units)."""
    if a.shape[1] == n:
        return a
    return xp.concatenate([a, xp.zeros((a.shape[0], n - a.shape[1]), dtype=a.dtype)], axis=1)


# ------------------------------------------------------------------------------ network
@dataclass
class InvCache:
    """Forward state of one batch: ``h[0] = x``, ``h[l]`` the output of layer ``l``."""

    h: list

    @property
    def y(self):
        return self.h[-1]


class InvertibleNet:
    r"""Square or tower network of invertible layers (module docstring, Eqs. 1-4).

    Parameters
    ----------
    bk : Backend
    widths : list of int
        :math:`[n_0, n_1, \dots, n_L]`: input width, then each layer's (square) width; non-increasing.
    W, b : lists of host arrays, optional
        Initial weights ``(n_l, n_l)`` in the (out, in) layout and biases; default identity / zeros.
    linear : bool
        Identity transfer function instead of the leaky ReLU.
    """

    def __init__(self, bk, widths, W=None, b=None, *, linear=False, slope=SLOPE,
                 max_cond=MAX_COND):
        widths = [int(n) for n in widths]
        if len(widths) < 2 or min(widths) < 1 or any(m > n for n, m in pairwise(widths)):
            raise UserError(f"impossible invertible-network widths {widths}: need an input width "
                            "and at least one layer, positive and non-increasing")
        if not 0.0 < slope < 1.0:
            raise UserError(f"leaky-ReLU slope must be in (0, 1), got {slope}")
        self.bk, self.widths, self.linear, self.slope = bk, widths, bool(linear), float(slope)
        self.max_cond = float(max_cond)
        L = len(widths) - 1
        W = W if W is not None else [np.eye(n) for n in widths[1:]]
        b = b if b is not None else [np.zeros(n) for n in widths[1:]]
        for l, (Wl, n) in enumerate(zip(W, widths[1:]), start=1):
            if tuple(np.shape(Wl)) != (n, n):
                raise UserError(f"W_{l} has shape {np.shape(Wl)}, expected ({n}, {n})")
        self.W = [bk.asarray(np.array(Wl, order="C")) for Wl in W[:L]]   # copies: the net owns them
        self.b = [bk.asarray(np.array(bl)) for bl in b[:L]]
        self._probes = {n: bk.asarray(probe_rows(n)) for n in set(widths[1:])}
        self.cond = [None] * L          # last condition estimate of each layer (diagnostics)

    @property
    def L(self) -> int:
        return len(self.W)

    # -------------------------------------------------------------------------- constructors
    @classmethod
    def square(cls, bk, n_units, n_hidden, *, seed=1, orthogonal=True, linear=False,
               distinct_output_seed=False, **kw):
        """``n_hidden`` hidden layers plus the output layer, all ``n_units`` wide (original init)."""
        seeds = square_seeds(seed, n_hidden, distinct_output_seed)
        W = [original_init(n_units, s, orthogonal).T for s in seeds]
        return cls(bk, [n_units] * (n_hidden + 2), W, linear=linear, **kw)

    @classmethod
    def tower(cls, bk, widths=(784, 784, 500, 200, 10), *, seed=1, orthogonal=True, linear=False,
              **kw):
        """The original's variable-width net; layer ``l`` is seeded ``seed + l - 1``."""
        W = [original_init(n, seed + k, orthogonal).T for k, n in enumerate(widths[1:])]
        return cls(bk, widths, W, linear=linear, **kw)

    # -------------------------------------------------------------------------- forward
    def layer(self, l: int, h_prev):
        """Eq. (1) for layer ``l`` (1-based)."""
        z = h_prev[:, :self.widths[l]] @ self.W[l - 1].T             # Eq. (1)
        z += self.b[l - 1]
        return sigma(self.bk.xp, z, self.slope, self.linear)

    def forward(self, x) -> InvCache:
        h = [x]
        for l in range(1, self.L + 1):
            h.append(self.layer(l, h[-1]))
        return InvCache(h)

    def predict(self, x, batch_size: int = 10000):
        """Output :math:`h_L` for many rows, in chunks (no state kept)."""
        out = []
        for i in range(0, x.shape[0], batch_size):
            h = x[i:i + batch_size]
            for l in range(1, self.L + 1):
                h = self.layer(l, h)
            out.append(h)
        return out[0] if len(out) == 1 else self.bk.xp.concatenate(out)

    # -------------------------------------------------------------------------- backward
    def back(self, l: int, delta, W=None):
        r""":math:`[\delta_l W_l,\; 0]`: the error at layer ``l``'s pre-activation carried to its
        input by :math:`W_l^\top` (``W[l-1]`` instead, if given); auxiliary units receive zero."""
        return pad_aux(self.bk.xp, delta @ (self.W if W is None else W)[l - 1], self.widths[l - 1])

    def times_dphi(self, l: int, cache: InvCache, e):
        r""":math:`e \odot \sigma'(h_l)` (Eq. 4)."""
        return times_dsigma(self.bk.xp, cache.h[l], e, self.slope, self.linear)

    # -------------------------------------------------------------------------- inverse
    def solve(self, l: int, Y):
        """:math:`Y W_l^{-T}` (one LU solve; checks the layer's conditioning)."""
        X, self.cond[l - 1] = solve_right(self.bk.xp, self.W[l - 1], Y, self._probes[self.widths[l]],
                                          l, self.max_cond)
        return X

    def g(self, l: int, y, h_below):
        """Eqs. (2)-(3): invert layer ``l`` for outputs ``y``; auxiliary units from ``h_below``."""
        xp = self.bk.xp
        z = sigma_inv(xp, y, self.slope, self.linear) - self.b[l - 1]   # Eq. (2)
        x = self.solve(l, z)                                            # Eq. (2)
        n_l = self.widths[l]
        if h_below.shape[1] == n_l:
            return x
        return xp.concatenate([x, h_below[:, n_l:]], axis=1)          # Eq. (3)

    def inverse_pass(self, y, cache: InvCache, bottom=True) -> list:
        """Invert the whole net from output ``y``: ``[h_0, ..., h_L = y]`` by Eqs. (2)-(3).

        ``bottom=False`` skips the (often unused) input layer's inverse; entry 0 is then None.
        """
        out = [y]
        for l in range(self.L, 0 if bottom else 1, -1):
            out.append(self.g(l, out[-1], cache.h[l - 1]))
        out = out[::-1]
        return out if bottom else [None] + out

    def weights_changed(self):
        """Call after every parameter update: forgets the recorded condition estimates."""
        self.cond = [None] * self.L

    # -------------------------------------------------------------------------- parameters
    def params(self) -> list:
        return [[W, b] for W, b in zip(self.W, self.b)]

    def state_dict(self) -> dict:
        out = {}
        for l in range(1, self.L + 1):
            out[f"W{l}"] = self.bk.to_host(self.W[l - 1])
            out[f"b{l}"] = self.bk.to_host(self.b[l - 1])
        return out

    def load_state_dict(self, state: dict):
        for l in range(1, self.L + 1):
            for name, arr in (("W", self.W), ("b", self.b)):
                key = f"{name}{l}"
                if key not in state or tuple(state[key].shape) != tuple(arr[l - 1].shape):
                    raise UserError(f"checkpoint does not fit this network: {key} missing or of "
                                    f"another shape (expected {tuple(arr[l - 1].shape)})")
                arr[l - 1][...] = self.bk.asarray(state[key])
        self.weights_changed()
