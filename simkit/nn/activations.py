r"""Activation functions with their derivative and inverse.

Each activation :math:`\phi` is given as three array functions of the namespace ``xp``:

=========  ================================  ======================================  ===========================
name       :math:`\phi(a)`                   :math:`\phi'(a)` (from ``a`` or ``h``)  :math:`\phi^{-1}(h)`
=========  ================================  ======================================  ===========================
linear     :math:`a`                         :math:`1`                               :math:`h`
tanh       :math:`\tanh a`                   :math:`1-h^2`                           :math:`\operatorname{artanh} h`
sigmoid    :math:`1/(1+e^{-a})`              :math:`h(1-h)`                          :math:`\log\frac{h}{1-h}`
relu       :math:`\max(a,0)`                 :math:`[a>0]`                           none (not invertible)
leaky_relu :math:`a` if :math:`a>0` else     :math:`1` or :math:`s`                  :math:`h` or :math:`h/s`
           :math:`s\,a`
=========  ================================  ======================================  ===========================

``df(xp, a, h)`` receives both the pre-activation ``a`` and ``h = phi(a)`` so each derivative
uses whichever is cheaper (tanh and sigmoid reuse ``h``). The default leaky-ReLU slope is 0.2, as
in the DFC code; ``leaky_relu:0.1`` picks another slope (GAIT-prop uses 0.1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from simkit.errors import UserError


@dataclass(frozen=True)
class Activation:
    """An element-wise nonlinearity :math:`\\phi` with :math:`\\phi'` and :math:`\\phi^{-1}`."""

    name: str
    f: Callable        # f(xp, a) -> h
    df: Callable       # df(xp, a, h) -> phi'(a)
    inv: Callable | None = None  # inv(xp, h) -> a


def _sigmoid(xp, a):
    # Split by sign so exp never overflows: 1/(1+e^-a) = e^a/(1+e^a).
    e = xp.exp(-xp.abs(a))
    return xp.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _leaky(slope: float) -> Activation:
    return Activation(
        f"leaky_relu:{slope:g}",
        f=lambda xp, a: xp.where(a > 0, a, slope * a),
        df=lambda xp, a, h: xp.where(a > 0, 1.0, slope),
        inv=lambda xp, h: xp.where(h > 0, h, h / slope),
    )


ACTIVATIONS = {
    "linear": Activation("linear", f=lambda xp, a: a, df=lambda xp, a, h: xp.ones_like(a),
                         inv=lambda xp, h: h),
    "tanh": Activation("tanh", f=lambda xp, a: xp.tanh(a), df=lambda xp, a, h: 1.0 - h * h,
                       inv=lambda xp, h: xp.arctanh(h)),
    "sigmoid": Activation("sigmoid", f=_sigmoid, df=lambda xp, a, h: h * (1.0 - h),
                          inv=lambda xp, h: xp.log(h) - xp.log1p(-h)),
    "relu": Activation("relu", f=lambda xp, a: xp.maximum(a, 0.0),
                       df=lambda xp, a, h: (a > 0).astype(a.dtype)),
    "leaky_relu": _leaky(0.2),
}
ALIASES = {"leakyrelu": "leaky_relu", "sigm": "sigmoid", "identity": "linear", "none": "linear"}


def get_activation(name: str) -> Activation:
    """Look up an activation by name (``leaky_relu:0.1`` sets the slope)."""
    key = ALIASES.get(name.lower(), name.lower())
    if key.startswith("leaky_relu:"):
        try:
            return _leaky(float(key.split(":", 1)[1]))
        except ValueError:
            pass
    if key not in ACTIVATIONS:
        raise UserError(f"unknown activation {name!r}; allowed: {', '.join(ACTIVATIONS)} "
                        "(leaky_relu:SLOPE for another slope)")
    return ACTIVATIONS[key]
