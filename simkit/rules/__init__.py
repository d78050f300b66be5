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
from simkit.rules.bidirectional import BDFA, BFA, BdfaTorch
from simkit.rules.bp import Backprop
from simkit.rules.dfa import DFA, DRTP
from simkit.rules.dfc import DFC
from simkit.rules.f3 import F3
from simkit.rules.fa import FeedbackAlignment
from simkit.rules.gait import make_gait, make_inv_bp, make_tp
from simkit.rules.llo import LastLayerOnly
from simkit.rules.sign_symmetry import SignSymmetry

RULES = {
    "bp": ("Backpropagation, written out layer by layer", Backprop),
    "fa": ("Feedback alignment (Lillicrap et al. 2016): fixed random B instead of W^T", FeedbackAlignment),
    "dfa": ("Direct feedback alignment (Nokland 2016): output error to every hidden layer", DFA),
    "drtp": ("Direct random target projection (Frenkel et al. 2021): target to every hidden layer", DRTP),
    "f3": ("F3 (Fluegel et al. 2023): direct feedback of each sample's delayed error", F3),
    "llo": ("Last layer only (shallow learning): hidden layers stay at their init", LastLayerOnly),
    "bdfa": ("Bidirectional DFA (Luo et al. 2017): DFA whose feedback learns", BDFA),
    "bfa": ("Bidirectional FA (Luo et al. 2017, reconstructed): FA whose feedback learns", BFA),
    "bdfa_torch": ("bdfa-torch's Main.lua training step around bp/fa/dfa/bfa/bdfa", BdfaTorch),
    "gait": ("GAIT-prop (Ahmad et al. 2020), invertible nets only: simkit gait", make_gait),
    "tp": ("Exact-inverse target propagation, invertible nets only: simkit gait", make_tp),
    "inv_bp": ("BP on invertible nets (GAIT-prop's baseline): simkit gait", make_inv_bp),
    "dfc": ("Deep Feedback Control / Strong-DFC (Meulemans et al. 2021/2022): simkit run_dfc", DFC),
    "sign_symmetry": ("Sign symmetry (Liao et al. 2016): B = sign(W^T), read off W at every step", SignSymmetry),
}


def make_rule(name: str, **kw):
    if name not in RULES:
        raise UserError(f"unknown rule {name!r}; allowed: {', '.join(RULES)}")
    return RULES[name][1](**kw)
