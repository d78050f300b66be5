r"""Losses with their gradients, written out.

Every loss has ``value(xp, y, t) -> float`` and ``grad(xp, y, t) -> dL/dy`` for a minibatch of
network outputs ``y`` (B, C) and targets ``t`` (B, C). The reduction is a mean over the batch, as
in PyTorch's defaults (BCE and MSE average over all B*C elements, as PyTorch does; see each).

Softmax cross-entropy (``ce``), on logits :math:`z` with soft targets :math:`t` (rows sum to 1):

.. math::

    L = -\frac1B \sum_{n,c} t_{nc} \log \operatorname{softmax}(z_n)_c, \qquad
    \frac{\partial L}{\partial z_n} = \frac1B\,(\operatorname{softmax}(z_n) - t_n)

Mean squared error (``mse``), PyTorch's ``MSELoss`` (mean over all B*C entries):

.. math::

    L = \frac{1}{BC}\sum_{n,c} (y_{nc}-t_{nc})^2, \qquad
    \frac{\partial L}{\partial y} = \frac{2}{BC}(y - t)

Binary cross-entropy (``bce``), on probabilities :math:`y \in (0,1)` (after a sigmoid):

.. math::

    L = -\frac{1}{BC}\sum_{n,c} t\log y + (1-t)\log(1-y), \qquad
    \frac{\partial L}{\partial y} = \frac{1}{BC}\,\frac{y-t}{y(1-y)}

(:math:`\log` is clamped at -100 and :math:`y(1-y)` at :math:`10^{-12}` like PyTorch's, so
:math:`y` = 0 or 1 gives a finite value and gradient.)
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from simkit.errors import UserError
from simkit.kernels.xpmath import log_softmax, softmax  # noqa: F401 (part of this module's API)


def _ce_value(xp, z, t):
    return float(-(t * log_softmax(xp, z)).sum() / z.shape[0])


def _ce_grad(xp, z, t):
    # exp(log_softmax): the probabilities whose logarithm the value sums (softmax() rounds
    # differently in the last bit).
    return (xp.exp(log_softmax(xp, z)) - t) / z.shape[0]


def _mse_value(xp, y, t):
    return float(((y - t) ** 2).mean())


def _mse_grad(xp, y, t):
    return 2.0 * (y - t) / y.size


def _bce_value(xp, y, t):
    with np.errstate(divide="ignore"):          # log(0) = -inf, clamped at -100 as PyTorch does
        log_y = xp.maximum(xp.log(y), -100.0)
        log_1my = xp.maximum(xp.log1p(-y), -100.0)
    return float(-(t * log_y + (1.0 - t) * log_1my).mean())


def _bce_grad(xp, y, t):
    # PyTorch clamps the denominator at 1e-12, so a saturated sigmoid gives a finite gradient.
    return (y - t) / xp.maximum(y * (1.0 - y), 1e-12) / y.size


@dataclass(frozen=True)
class Loss:
    name: str
    value: Callable
    grad: Callable
    output_activation: str   # what the output layer should apply before the loss


LOSSES = {
    "ce": Loss("ce", _ce_value, _ce_grad, "linear"),
    "mse": Loss("mse", _mse_value, _mse_grad, "linear"),
    "bce": Loss("bce", _bce_value, _bce_grad, "sigmoid"),
}
ALIASES = {"cross_entropy": "ce", "bce_loss": "bce"}


def get_loss(name: str) -> Loss:
    key = ALIASES.get(name, name)
    if key not in LOSSES:
        raise UserError(f"unknown loss {name!r}; allowed: {', '.join(LOSSES)}")
    return LOSSES[key]


def soft_targets(labels, n_classes: int, value: float = 1.0) -> np.ndarray:
    """One-hot rows, or soft ones: ``value`` for the true class and ``(1-value)/(C-1)`` elsewhere.

    This is DFC's ``target_class_value`` convention; ``value=1`` gives plain one-hot targets.
    ``labels`` is a host integer array; returns float64 (N, C) on the host.
    """
    labels = np.asarray(labels)
    off = (1.0 - value) / (n_classes - 1) if n_classes > 1 else 0.0
    t = np.full((labels.shape[0], n_classes), off)
    t[np.arange(labels.shape[0]), labels] = value
    return t
