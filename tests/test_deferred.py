"""Deferred first-layer updates (simkit/tasks/deferred.py) equal the per-sample online loop."""
import numpy as np
import pytest

from simkit.errors import UserError
from simkit.tasks.deferred import DeferredFirstLayer
from simkit.tasks.inversion import run_online, sse_eval
from simkit.tasks.inversion_model import ModelSpec, TaskConfig, build_models

from helpers import numba_backend, numpy_backend

SPECS = [ModelSpec("BP", "BP"), ModelSpec("FA", "FA", "random"), ModelSpec("PBP", "PBP"),
         ModelSpec("NDI", "NDI", "neg-transpose", 0.01), ModelSpec("DI", "DI", "neg-transpose", 0.05),
         ModelSpec("SDI", "SDI", "neg-transpose", 0.05)]


def _problem(seed=0, n=40, sizes=(12, 9, 6, 4)):
    rng = np.random.default_rng(seed)
    W0 = [rng.normal(0, 0.3, (o, i)) for i, o in zip(sizes[:-1], sizes[1:])]
    b0 = [rng.normal(0, 0.1, o) for o in sizes[1:]]
    X = rng.normal(size=(n, sizes[0]))
    Y = np.tanh(X @ rng.normal(size=(sizes[0], sizes[-1])))
    return W0, b0, X, Y


def _train(bk, defer, eval_every=5, skip_first=True, decay=1e-3):
    W0, b0, X, Y = _problem()
    cfg = TaskConfig(["tanh", "tanh", "linear"], eta=0.05, w_decay=decay, skip_first=skip_first)
    models = build_models(bk, SPECS, W0, b0, np.random.default_rng(1))
    order = np.random.default_rng(2).permutation(len(X))
    steps, evals, _ = run_online(bk, models, cfg, X, Y, order, sse_eval(bk, cfg, X, Y),
                                 eval_every=eval_every, rng=np.random.default_rng(3), defer=defer)
    return steps, evals, models


@pytest.mark.parametrize("make_bk", [numpy_backend, numba_backend])
@pytest.mark.parametrize("defer,skip_first,decay", [(7, True, 1e-3), (64, False, 0.0)])
def test_deferred_equals_per_sample_loop(make_bk, defer, skip_first, decay):
    bk = make_bk()
    s1, e1, m1 = _train(bk, 1, skip_first=skip_first, decay=decay)
    s2, e2, m2 = _train(bk, defer, skip_first=skip_first, decay=decay)
    np.testing.assert_array_equal(s1, s2)                  # same evaluation schedule
    np.testing.assert_allclose(e2, e1, rtol=1e-10)
    for a, b in zip(m1, m2):
        for w1, w2 in zip(a.W + a.b, b.W + b.b):
            np.testing.assert_allclose(w2, w1, rtol=1e-10, atol=1e-13)
    # and training did move the first layer (the comparison is not between two untouched copies)
    assert np.abs(m2[0].W[0] - _problem()[0][0]).max() > 1e-3
    # the DI/SDI loops end stable (parameters chosen so: an SSA re-run amplifies round-off)
    assert max(max(m.abscissa) for m in m2 if m.abscissa) < 0


def test_product_follows_explicit_updates():
    """Eq. (D3) for every sample of a block with decay and a skipped sample equals W^(j) x_j."""
    rng = np.random.default_rng(5)
    W = rng.normal(size=(7, 5))
    X = rng.normal(size=(6, 5))
    eta, decay = 0.3, 0.02
    updates = [j != 2 for j in range(len(X))]
    st = DeferredFirstLayer(np, W.copy(), X, eta, decay, updates)
    K = X @ X.T
    Wj = W.copy()
    for j, upd in enumerate(updates):
        np.testing.assert_allclose(st.product(j, K)[0], Wj @ X[j], rtol=1e-12)
        d = rng.normal(size=(1, 7))
        st.record(j, d)
        if upd:
            Wj = (1 - decay) * Wj + eta * d[0][:, None] * X[j][None, :]          # Eq. (D1)
    st.apply()
    np.testing.assert_allclose(st.W1, Wj, rtol=1e-12)


def test_defer_refuses_minibatches():
    bk = numpy_backend()
    W0, b0, X, Y = _problem()
    cfg = TaskConfig(["tanh", "tanh", "linear"], eta=0.05)
    models = build_models(bk, SPECS[:1], W0, b0, np.random.default_rng(1))
    with pytest.raises(UserError, match="batch 1"):
        run_online(bk, models, cfg, X, Y, np.arange(len(X)), sse_eval(bk, cfg, X, Y), batch=4,
                   defer=8)
