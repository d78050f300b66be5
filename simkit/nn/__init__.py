"""Building blocks written out by hand: activations, initialisers, losses, the dense MLP."""
from simkit.nn.activations import ACTIVATIONS, Activation, get_activation
from simkit.nn.losses import LOSSES, Loss, get_loss, soft_targets
from simkit.nn.mlp import MLP

__all__ = ["ACTIVATIONS", "Activation", "get_activation", "LOSSES", "Loss", "get_loss",
           "soft_targets", "MLP"]
