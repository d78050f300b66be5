"""Learning rules, one module per family; each module's docstring is its derivation.

A rule object has

``grads(net, cache, dL_dy, *, t, loss, idx, epoch)``
    per-layer ``[dW, db]`` lists (plus gradients; ``None`` for a layer it leaves alone) from the
    network's cached forward state, the loss gradient at the output, the targets ``t``, the
    :class:`~simkit.nn.losses.Loss`, the minibatch's sample indices ``idx`` in the training set
    (for per-sample buffers) and the epoch number (1-based);
``state_dict()`` / ``load_state_dict(state)``
    host arrays of any state of its own (feedback weights, delayed-error buffers); it goes into
    checkpoints so runs resume exactly;

and optionally ``setup(net, rng)`` (draw feedback weights from the run's rule stream, once, at
build time), ``begin_epoch(epoch)``, and ``epoch_metrics(net) -> {layer: {metric: value}}``
(per-layer diagnostics logged to metrics.csv after each epoch).
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
