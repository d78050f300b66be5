"""Building blocks written out by hand: activations, initialisers, losses, the dense MLP.

One layer convention for every network in simkit: rows are samples and a layer's weight matrix
``W[l-1]`` (the papers' :math:`W_l`) has shape (out, in), so :math:`a_l = h_{l-1} W_l^\top + b_l`
(PyTorch's layout, :mod:`simkit.nn.mlp`). The invertible networks (:mod:`simkit.nn.invertible`),
the online models of dynamic inversion (:mod:`simkit.tasks.inversion_model`) and DFC's parameters
follow it; activations and their derivatives come from :mod:`simkit.nn.activations`.
"""
from simkit.nn.activations import ACTIVATIONS, Activation, get_activation
from simkit.nn.losses import LOSSES, Loss, get_loss, soft_targets
from simkit.nn.mlp import MLP

__all__ = ["ACTIVATIONS", "Activation", "get_activation", "LOSSES", "Loss", "get_loss",
           "soft_targets", "MLP"]
