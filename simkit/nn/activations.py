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
uses whichever is cheaper (tanh and sigmoid reuse ``h``). Every derivative here depends on ``a``
only through its sign and shape, which ``h`` shares, so :func:`df_from_output` gives :math:`\phi'(a)` from ``h``
alone for networks that keep no pre-activation. The default leaky-ReLU slope is 0.2, as in the
DFC code; ``leaky_relu:0.1`` picks another slope.

The invertible networks of GAIT-prop use the leaky ReLU as the original writes it
(:func:`sigma`, :func:`sigma_inv`, :func:`times_dsigma`): its derivative is read from the output,
with :math:`h = 0` counting as positive.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


def df_from_output(xp, phi: Activation, h):
    r""":math:`\phi'(a)` from :math:`h = \phi(a)` alone (``a`` enters only by sign and shape)."""
    return phi.df(xp, h, h)


# ------------------------------------------------------------------------------ GAIT-prop's sigma
SLOPE = 0.1        # leaky-ReLU negative slope of GAIT-prop's original code


def sigma(xp, z, slope=SLOPE, linear=False):
    r""":math:`\sigma(z) = \max(z, a z)`, the leaky ReLU for :math:`0 < a < 1` (identity if ``linear``)."""
    return z if linear else xp.maximum(z, slope * z)


def sigma_inv(xp, y, slope=SLOPE, linear=False):
    r""":math:`\sigma^{-1}(y) = \min(y, y/a)` (negative entries times ``1/slope``)."""
    return y if linear else xp.minimum(y, y * (1.0 / slope))


def times_dsigma(xp, h, e, slope=SLOPE, linear=False):
    r""":math:`e \odot \sigma'(h)` with :math:`\sigma'` read from the output: 1 where
    :math:`h \ge 0`, else ``slope``."""
    return e if linear else xp.where(h >= 0, e, slope * e)
