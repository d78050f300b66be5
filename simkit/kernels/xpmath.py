r"""Array functions written once for any ``xp`` (NumPy or CuPy), for the layers above and the
kernels' references alike: row-wise softmax and log-softmax, shifted by the row maximum.

.. math::  \operatorname{softmax}(z)_c = \frac{e^{z_c - \max z}}{\sum_k e^{z_k - \max z}},
           \qquad \log\operatorname{softmax}(z)_c = (z_c - \max z) - \log\sum_k e^{z_k - \max z}
"""
from __future__ import annotations


def log_softmax(xp, z):
    """Row-wise :math:`\\log\\operatorname{softmax}`, shifted by the row max for stability."""
    s = z - z.max(axis=1, keepdims=True)
    return s - xp.log(xp.exp(s).sum(axis=1, keepdims=True))


def softmax(xp, z):
    r"""Row-wise :math:`\operatorname{softmax}(z)_c = e^{z_c - \max z} / \sum_k e^{z_k - \max z}`."""
    e = xp.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
