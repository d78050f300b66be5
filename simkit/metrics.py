r"""Diagnostics, one definition each, on any backend.

``angle_deg(a, b)``
    the angle between two arrays taken as flat vectors,
    :math:`\arccos\big(\langle a,b\rangle / (\lVert a\rVert\,\lVert b\rVert)\big)` in degrees,
    with the cosine clipped to [-1, 1] before the arccos (round-off can push it past 1); 90
    degrees when either is zero. Used for a rule's update vs the BP gradient and for forward vs
    feedback weights (then ``b`` is the feedback matrix in the forward matrix's layout).
``norm_ratio(a, b)``
    :math:`\lVert a\rVert_F / \lVert b\rVert_F`.
``accuracy(y, labels)``
    fraction of rows whose arg-max is the label.
"""
from __future__ import annotations

import math


def _dot(xp, a, b) -> float:
    return float(xp.vdot(a.ravel(), b.ravel()))


def angle_deg(xp, a, b) -> float:
    na, nb = math.sqrt(_dot(xp, a, a)), math.sqrt(_dot(xp, b, b))
    if na == 0.0 or nb == 0.0:
        return 90.0
    cos = max(-1.0, min(1.0, _dot(xp, a, b) / (na * nb)))
    return math.degrees(math.acos(cos))


def norm_ratio(xp, a, b) -> float:
    nb = math.sqrt(_dot(xp, b, b))
    return math.sqrt(_dot(xp, a, a)) / nb if nb else math.inf


def accuracy(xp, y, labels) -> float:
    return float((y.argmax(axis=1) == labels).mean())
