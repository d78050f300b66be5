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
    phi = net.phi[-1]
    if phi.name == "linear":
        return dL_dy
    return dL_dy * phi.df(net.bk.xp, cache.a[-1], cache.h[-1])
