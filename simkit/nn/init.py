r"""Weight initialisers, drawn on the host so a seed gives the same weights on every backend.

Every initialiser takes a ``numpy.random.Generator`` and a shape ``(n_out, n_in)`` (PyTorch's
layout: a layer computes :math:`a = W h + b`, ``W`` of shape ``(n_out, n_in)``) and returns a
float64 NumPy array. With :math:`n_\mathrm{in}` = fan-in and :math:`n_\mathrm{out}` = fan-out:

====================  ==========================================================================
xavier_normal         :math:`\mathcal N(0, \sigma^2)`, :math:`\sigma = g\sqrt{2/(n_\mathrm{in}+n_\mathrm{out})}`
                      (Glorot & Bengio 2010)
xavier_uniform        :math:`\mathcal U(-b, b)`, :math:`b = g\sqrt{6/(n_\mathrm{in}+n_\mathrm{out})}`
kaiming_normal        :math:`\mathcal N(0, \sigma^2)`, :math:`\sigma = g/\sqrt{n_\mathrm{in}}` (He et al. 2015)
kaiming_uniform       :math:`\mathcal U(-b, b)`, :math:`b = g\sqrt{3/n_\mathrm{in}}`,
                      :math:`g = \sqrt{2/(1+a^2)}`; ``a = sqrt(5)`` gives :math:`b = 1/\sqrt{n_\mathrm{in}}`
                      (PyTorch's default for ``Linear``)
orthogonal            Q of the QR decomposition of a Gaussian matrix, signs fixed by diag(R)
                      (Saxe et al. 2014), times ``gain``
discrete_uniform      ``scalar`` times values drawn uniformly from ``values`` (F³'s trinomial
                      {-1, 0, 1} and binomial {0, 1} feedback)
identity_repeat_pm    columns tile :math:`[I_C \mid -I_C]` (F³'s ±I feedback, C = n_out rows)
====================  ==========================================================================
"""
from __future__ import annotations

import math

import numpy as np

from simkit.errors import UserError


def xavier_normal(rng, shape, gain=1.0):
    n_out, n_in = shape
    return rng.normal(0.0, gain * math.sqrt(2.0 / (n_in + n_out)), size=shape)


def xavier_uniform(rng, shape, gain=1.0):
    n_out, n_in = shape
    bound = gain * math.sqrt(6.0 / (n_in + n_out))
    return rng.uniform(-bound, bound, size=shape)


def kaiming_normal(rng, shape, a=0.0):
    gain = math.sqrt(2.0 / (1.0 + a * a))
    return rng.normal(0.0, gain / math.sqrt(shape[1]), size=shape)


def kaiming_uniform(rng, shape, a=0.0):
    gain = math.sqrt(2.0 / (1.0 + a * a))
    bound = gain * math.sqrt(3.0 / shape[1])
    return rng.uniform(-bound, bound, size=shape)


def orthogonal(rng, shape, gain=1.0):
    n_out, n_in = shape
    g = rng.normal(size=(max(shape), min(shape)))
    q, r = np.linalg.qr(g)
    q = q * np.sign(np.diag(r))            # a unique, Haar-distributed Q
    q = q if n_out >= n_in else q.T
    return gain * q[:n_out, :n_in]


def discrete_uniform(rng, shape, values=(-1.0, 0.0, 1.0), scalar=1.0):
    return scalar * rng.choice(np.asarray(values, dtype=float), size=shape)


def identity_repeat_pm(rng, shape):
    """Columns tile [I_C | -I_C]: column j is +e_j for j mod 2C < C, else -e_(j-C)."""
    C, H = shape
    pattern = np.concatenate([np.eye(C), -np.eye(C)], axis=1)
    reps = -(-H // (2 * C))
    return np.tile(pattern, (1, reps))[:, :H].copy()


def zeros(rng, shape):
    return np.zeros(shape)


INITIALISERS = {
    "xavier_normal": xavier_normal, "xavier_uniform": xavier_uniform,
    "kaiming_normal": kaiming_normal, "kaiming_uniform": kaiming_uniform,
    "orthogonal": orthogonal, "discrete_uniform": discrete_uniform,
    "identity_repeat_pm": identity_repeat_pm, "zeros": zeros,
}
ALIASES = {"xavier": "xavier_uniform"}


def get_initialiser(name: str):
    key = ALIASES.get(name, name)
    if key not in INITIALISERS:
        raise UserError(f"unknown initialisation {name!r}; allowed: {', '.join(INITIALISERS)}")
    return INITIALISERS[key]


def init_weights(rng, shape, name: str, **kw) -> np.ndarray:
    """Draw a weight matrix of ``shape`` with the named initialiser (host, float64)."""
    return get_initialiser(name)(rng, tuple(shape), **kw)
