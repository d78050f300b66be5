r"""What every rule shares: from local error signals to weight gradients.

A rule assigns each layer an error signal :math:`\delta_l` (B, n_l), its stand-in for
:math:`\partial L / \partial a_l`. The weight and bias gradients are then local products
(one matrix product per layer, never per-sample outer products):

.. math::

    \nabla W_l = \delta_l^\top h_{l-1}, \qquad \nabla b_l = \textstyle\sum_n \delta_{l,n}

Gradients are "plus" gradients: the optimiser steps against them.
"""
from __future__ import annotations


def grads_from_deltas(net, cache, deltas) -> list:
    """Per-layer ``[dW, db]`` lists from per-layer error signals ``deltas[l]`` (B, n_l)."""
    grads = []
    for l, delta in enumerate(deltas):
        if delta is None:                       # a layer the rule does not train
            grads.append(None)
            continue
        dW = delta.T @ cache.h[l]               # (n_l, n_{l-1})
        grads.append([dW] if net.b[l] is None else [dW, delta.sum(axis=0)])
    return grads


def output_delta(net, cache, dL_dy):
    r""":math:`\delta_L = \partial L/\partial h_L \odot \phi_L'(a_L)` (no product for a linear output)."""
    return net.times_dphi(net.L, cache, dL_dy)


def output_target(xp, y, t, step=None, dL_dy=None):
    r"""The output target :math:`r^*_L` (or :math:`T_L`).

    Without ``step``: the label ``t`` on the first ``C = t.shape[1]`` units and the output's own
    value on the others (zero error there: GAIT-prop's wide outputs; for ``C = n_L`` the label).
    With ``step`` :math:`\lambda`: a step down the batch-summed loss instead,
    :math:`r^*_L = y - \lambda\,B\,\partial L/\partial y` (weak-feedback DFC, Eq. (6) there).
    """
    if step is not None:
        return y - step * y.shape[0] * dL_dy
    T = y.copy()
    T[:, :t.shape[1]] = t
    return T
