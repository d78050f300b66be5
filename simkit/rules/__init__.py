"""Learning rules, one module per family; each module's docstring is its derivation.

A rule object has ``grads(net, cache, dL_dy, **context) -> per-layer [dW, db] lists`` (plus
gradients, ``None`` for a layer it leaves alone) and ``state_dict()/load_state_dict()`` for any
state of its own (feedback weights, delayed-error buffers), which goes into checkpoints.
"""
from simkit.errors import UserError
from simkit.rules.bp import Backprop

RULES = {
    "bp": ("Backpropagation, written out layer by layer", Backprop),
}


def make_rule(name: str, **kw):
    if name not in RULES:
        raise UserError(f"unknown rule {name!r}; allowed: {', '.join(RULES)}")
    return RULES[name][1](**kw)
