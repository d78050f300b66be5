"""Checkpoints of the online schedule (simkit.training.online): an interrupted run continues
from its last save to exactly the curves and weights of an uninterrupted one."""
from pathlib import Path

import numpy as np
import pytest

from simkit.backend import get_backend
from simkit.data import resolve_data_dir
from simkit.tasks.inversion import (
    NONLINEAR_MODELS,
    TaskConfig,
    _uniform_net,
    build_models,
    mnist_task,
    optim_feedback,
    run_online,
    sse_eval,
)
from simkit.training.online import (
    OnlineCheckpoint,
    loop_resume,
    loop_state,
    models_state,
    restore_models,
)


class Stop(Exception):
    pass


def _setup(bk, seed=4):
    rng = np.random.default_rng(seed)
    W0, b0 = _uniform_net(rng, [30, 20, 10, 10], scale=0.3)
    ssa = dict(lr=0.5, maxiters=200, miniters=10)
    models = build_models(bk, NONLINEAR_MODELS, W0, b0, rng, optim_feedback(W0, rng, ssa))
    cfg = TaskConfig(["tanh", "tanh", "linear"], eta=0.05, clip={0: 1.0, 1: 1.0}, ssa=ssa)
    X, Y = rng.normal(size=(40, 30)), rng.normal(size=(40, 10))
    rngs = [np.random.default_rng([seed, k]) for k in range(len(models))]
    return models, cfg, X, Y, rngs


def _run(bk, models, cfg, X, Y, rngs, **kw):
    return run_online(bk, models, cfg, X, Y, np.arange(len(X)), sse_eval(bk, cfg, X, Y),
                      eval_every=6, rng=rngs, **kw)


def test_run_online_resumes_to_the_same_curves_and_weights(tmp_path):
    bk = get_backend("numba", "float64")
    ref_models, cfg, X, Y, ref_rngs = _setup(bk)
    ref = _run(bk, ref_models, cfg, X, Y, ref_rngs)

    models, _, _, _, rngs = _setup(bk)
    ck = OnlineCheckpoint(tmp_path / "r.npz", "k", every_s=0.0)

    def save_then_stop(i, steps, evals):
        ck.save({**loop_state(i, steps, evals, len(models)), **models_state(bk, models, rngs)})
        if len(evals) == 3:
            raise Stop
    with pytest.raises(Stop):
        _run(bk, models, cfg, X, Y, rngs, on_eval=save_then_stop)

    models, _, _, _, rngs = _setup(bk)                # a fresh process: initial weights again
    state = ck.load()
    assert int(state["meta.step"]) == 13 and state["meta.evals"].shape == (3, len(models))
    restore_models(bk, models, rngs, state)
    out = _run(bk, models, cfg, X, Y, rngs, resume=loop_resume(state))
    np.testing.assert_array_equal(out[0], ref[0])
    np.testing.assert_array_equal(out[1], ref[1])
    for m, r in zip(models, ref_models):
        for a, b in zip(m.W + m.b, r.W + r.b):
            np.testing.assert_array_equal(a, b)
    assert [g.random() for g in rngs] == [g.random() for g in ref_rngs]


def test_checkpoint_for_other_settings_is_ignored(tmp_path, capsys):
    ck = OnlineCheckpoint(tmp_path / "r.npz", "settings A")
    ck.save({"meta.step": np.asarray(3)})
    assert OnlineCheckpoint(tmp_path / "r.npz", "settings A").load()["meta.step"] == 3
    assert OnlineCheckpoint(tmp_path / "r.npz", "settings B").load() is None
    assert "other settings" in capsys.readouterr().err
    ck.clear()
    assert not (tmp_path / "r.npz").exists()


def _has_mnist():
    try:
        return (Path(resolve_data_dir(None)) / "mnist").is_dir()
    except Exception:
        return False


@pytest.mark.skipif(not _has_mnist(), reason="MNIST not in $SIMKIT_DATA")
def test_fig4a_task_interrupted_in_its_second_epoch_resumes_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(OnlineCheckpoint, "due", lambda self: True)
    bk = get_backend("numba", "float64")
    kw = dict(n_samples=300, epochs=2, eval_every=100, n_test=500, defer=40)
    ref = mnist_task(bk, 0, **kw)
    path = tmp_path / "resume.npz"
    calls = []

    def stop_in_epoch_two(i, n, evals):
        calls.append(i)
        if len(calls) == 5:                           # the second evaluation of epoch 2
            raise Stop
    with pytest.raises(Stop):
        mnist_task(bk, 0, ckpt=path, progress=stop_in_epoch_two, **kw)
    assert path.exists()
    out = mnist_task(bk, 0, ckpt=path, **kw)
    np.testing.assert_array_equal(out["samples"], ref["samples"])
    np.testing.assert_array_equal(out["test_error"], ref["test_error"])
    assert not path.exists()                          # a finished task removes its file
