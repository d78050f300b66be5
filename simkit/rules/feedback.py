r"""Feedback-weight initialisations for feedback alignment and its direct variants.

A feedback matrix carries an error (or a target) from where it is known back to a hidden layer.
Two layouts occur, both with rows indexed by the *source* of the signal:

=============================  ===========================  ======================================
rule                           shape of :math:`B_l`         use
=============================  ===========================  ======================================
FA (layer-wise)                :math:`(n_l, n_{l-1})`,      :math:`\delta_{l-1} = (\delta_l B_l)\odot\phi'`
                               like :math:`W_l`
DFA, DRTP, F³ (direct)         :math:`(C, n_l)`             :math:`G_l = E\,B_l`,
                                                            :math:`\delta_l = G_l\odot\phi'`
=============================  ===========================  ======================================

Every matrix is drawn on the host from the rule's ``numpy.random.Generator`` (so a seed gives
the same feedback on every backend) and returned as float64. With :math:`R` rows and :math:`H`
columns (:math:`H` = the hidden width for the direct layout):

=============================  ================================================================
``kaiming_uniform``            :math:`\mathcal U(\pm b)`, :math:`b = \sqrt{6/((1+a^2)H)}`; with
                               F³'s ``a = sqrt(5)`` (PyTorch's ``Linear`` default)
                               :math:`b = 1/\sqrt H`; DRTP's code uses ``a = 0``
                               (:math:`b = \sqrt{6/H}`)
``discrete_uniform``           ``scalar`` times values drawn uniformly from ``discrete_values``:
                               trinomial {-1, 0, 1}, binomial {0, 1}
``constant``                   every entry ``scalar``
``alternate_negative``         ``scalar``, with columns 0, 2, 4, ... negated
``chunked_negative``           ``scalar``, with columns :math:`\lfloor H/2\rfloor ..` negated
``cartesian_product``          column :math:`j` is the :math:`j`-th element of the Cartesian
                               power ``discrete_values``:math:`^R` (last row varies fastest),
                               times ``scalar``; needs :math:`H = |\text{values}|^R`
``kaiming_uniform_repeat_line`` one column drawn from :math:`\mathcal U(\pm 1)` (Kaiming with
                               fan-in 1), repeated across all columns
``identity_fill_zero``         :math:`I` in the top-left corner, zeros elsewhere
``identity_repeat``            columns tile :math:`I_R`
``identity_repeat_pm``         columns tile :math:`[I_R \mid -I_R]` (F³'s ±I); when :math:`2R`
                               does not divide :math:`H` the last columns restart the pattern
``rfb_mag``                    bdfa-torch's ``-rfb_mag m``: :math:`\mathcal U(\pm m)`; ``m = 0``
                               means :math:`\mathcal U(\pm 1/\sqrt H)` (in its ``ErrorFeedback``;
                               its FA ``Linear`` instead copies the layer's initial forward
                               weights, see :func:`fa_feedback`)
=============================  ================================================================

The names and behaviour follow F³'s ``--initialization_method`` (research note §1.5) and
bdfa-torch's ``-rfb_mag`` (§5.3-5.4). Written from those descriptions, not from the code.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from simkit.errors import UserError
from simkit.nn import init as nn_init

SQRT5 = math.sqrt(5.0)


def _tile_columns(pattern: np.ndarray, H: int) -> np.ndarray:
    """Repeat ``pattern``'s columns until there are ``H``; the remainder restarts the pattern."""
    reps = -(-H // pattern.shape[1])
    return np.tile(pattern, (1, reps))[:, :H].copy()


def _constant_family(method, shape, scalar):
    B = np.full(shape, float(scalar))
    if method == "alternate_negative":
        B[:, ::2] *= -1.0
    elif method == "chunked_negative":
        B[:, shape[1] // 2:] *= -1.0
    return B


def _cartesian(shape, values, scalar):
    R, H = shape
    if H != len(values) ** R:
        raise UserError(f"cartesian_product feedback needs a hidden width of len(discrete_values)**C "
                        f"= {len(values) ** R}, got {H}")
    cols = np.array(list(itertools.product(values, repeat=R)), dtype=float).T   # (R, H)
    return float(scalar) * cols


def feedback_matrix(rng, shape, method="kaiming_uniform", *, scalar=1.0,
                    discrete_values=(-1.0, 0.0, 1.0), a=SQRT5, rfb_mag=0.0) -> np.ndarray:
    """Draw one feedback matrix of ``shape`` (rows, H) with ``method`` (see the module table)."""
    R, H = (int(n) for n in shape)
    values = [float(v) for v in discrete_values]
    if method == "kaiming_uniform":
        return nn_init.kaiming_uniform(rng, (R, H), a=float(a))
    if method == "discrete_uniform":
        if not values:
            raise UserError("discrete_uniform feedback needs at least one discrete value")
        return nn_init.discrete_uniform(rng, (R, H), values=values, scalar=float(scalar))
    if method in ("constant", "alternate_negative", "chunked_negative"):
        return _constant_family(method, (R, H), scalar)
    if method == "cartesian_product":
        return _cartesian((R, H), values, scalar)
    if method == "kaiming_uniform_repeat_line":
        return _tile_columns(nn_init.kaiming_uniform(rng, (R, 1), a=SQRT5), H)
    if method == "identity_fill_zero":
        return np.eye(R, H)
    if method == "identity_repeat":
        return _tile_columns(np.eye(R), H)
    if method == "identity_repeat_pm":
        return nn_init.identity_repeat_pm(rng, (R, H))
    if method == "rfb_mag":
        m = float(rfb_mag) if rfb_mag else 1.0 / math.sqrt(H)
        return rng.uniform(-m, m, size=(R, H))
    raise UserError(f"unknown feedback initialisation {method!r}; allowed: {', '.join(METHODS)}")


METHODS = ("kaiming_uniform", "discrete_uniform", "constant", "alternate_negative",
           "chunked_negative", "cartesian_product", "kaiming_uniform_repeat_line",
           "identity_fill_zero", "identity_repeat", "identity_repeat_pm", "rfb_mag")


def direct_feedback(rng, net, **kw) -> list:
    """Host matrices :math:`B_l` of shape ``(C, n_l)`` for the hidden layers ``l = 1..L-1``.

    Drawn in layer order, first hidden layer first (as F³ draws its connectors).
    """
    C = net.sizes[-1]
    return [feedback_matrix(rng, (C, n), **kw) for n in net.sizes[1:-1]]


def fa_feedback(rng, net, method="kaiming_uniform", **kw) -> list:
    """Host matrices :math:`B_l` shaped like :math:`W_l` for the layers ``l = 2..L``.

    The list has ``L`` entries; entry 0 is ``None`` (nothing is sent below the first layer).
    ``rfb_mag`` with ``m = 0`` follows bdfa-torch's FA ``Linear``: a copy of the layer's initial
    forward weights, or, where those are all zero (its tanh/sigmoid set-up zeroes them after
    copying), a fresh draw from the same :math:`\\mathcal U(\\pm 1/\\sqrt{n_{l-1}})`.
    """
    out = [None]
    for l in range(1, net.L):
        shape = (net.sizes[l + 1], net.sizes[l])
        if method == "rfb_mag" and not kw.get("rfb_mag"):
            W = net.bk.to_host(net.W[l]).astype(float)
            out.append(W.copy() if np.any(W) else
                       rng.uniform(-1.0, 1.0, size=shape) / math.sqrt(shape[1]))
        else:
            out.append(feedback_matrix(rng, shape, method, **kw))
    return out
