"""The online schedule on the training loop (simkit.training.online.OnlineTrainer): an interrupted
run continues from its last checkpoint to exactly the curves and weights of an uninterrupted one;
SIGTERM, non-finite weights and a run directory of other settings stop it with its status."""
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from simkit.backend import get_backend
from simkit.data import resolve_data_dir
from simkit.errors import NumericalError, UserError
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
from simkit.training.online import OnlineTrainer
from simkit.training.rundir import RunDir
from simkit.training.signals import Terminated

CONFIG = {"task": "test", "seed": 4}


class Stop(Exception):
    pass


@pytest.fixture
def save_at_every_evaluation(monkeypatch):
    monkeypatch.setattr(OnlineTrainer, "save_every_s", 0.0)


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


def _stop_at(step, exc=Stop):
    def hook(epoch, i):
        if i == step:
            raise exc
    return hook


def _assert_same(out, ref, models, ref_models, rngs, ref_rngs):
    np.testing.assert_array_equal(out[0], ref[0])
    np.testing.assert_array_equal(out[1], ref[1])
    for m, r in zip(models, ref_models):
        for a, b in zip(m.W + m.b, r.W + r.b):
            np.testing.assert_array_equal(a, b)
    assert [g.random() for g in rngs] == [g.random() for g in ref_rngs]


def test_run_online_resumes_to_the_same_curves_and_weights(tmp_path, save_at_every_evaluation):
    bk = get_backend("numba", "float64")
    ref_models, cfg, X, Y, ref_rngs = _setup(bk)
    ref = _run(bk, ref_models, cfg, X, Y, ref_rngs)

    models, _, _, _, rngs = _setup(bk)
    with pytest.raises(Stop):
        _run(bk, models, cfg, X, Y, rngs, run=tmp_path, config=CONFIG, on_batch=_stop_at(13))
    state = RunDir(tmp_path).load_checkpoint()
    assert int(state["meta.step"]) == 13 and state["meta.evals"].shape == (3, len(models))

    models, _, _, _, rngs = _setup(bk)                # a fresh process: initial weights again
    out = _run(bk, models, cfg, X, Y, rngs, run=tmp_path, config=CONFIG)
    _assert_same(out, ref, models, ref_models, rngs, ref_rngs)
    info = RunDir(tmp_path).read_info()
    assert info["status"] == "finished" and info["config"] == CONFIG
    rows = RunDir(tmp_path).read_metrics()
    assert len(rows) == out[1].size and rows[0]["layer"] == NONLINEAR_MODELS[0].name
    assert float(rows[-1]["value"]) == out[1][-1, -1] and rows[-1]["split"] == "train"


def test_sigterm_stops_an_online_run_and_the_same_call_resumes_it(tmp_path,
                                                                  save_at_every_evaluation):
    bk = get_backend("numpy", "float64")
    ref_models, cfg, X, Y, ref_rngs = _setup(bk)
    ref = _run(bk, ref_models, cfg, X, Y, ref_rngs)

    def sigterm(epoch, i):
        if i == 19:
            os.kill(os.getpid(), signal.SIGTERM)
    models, _, _, _, rngs = _setup(bk)
    with pytest.raises(Terminated):
        _run(bk, models, cfg, X, Y, rngs, run=tmp_path, config=CONFIG, on_batch=sigterm)
    assert RunDir(tmp_path).read_info()["status"] == "interrupted"
    assert signal.getsignal(signal.SIGTERM) is not None          # the handler was put back
    models, _, _, _, rngs = _setup(bk)
    out = _run(bk, models, cfg, X, Y, rngs, run=tmp_path, config=CONFIG)
    _assert_same(out, ref, models, ref_models, rngs, ref_rngs)
    assert RunDir(tmp_path).read_info()["status"] == "finished"


def test_non_finite_weights_fail_the_run_and_keep_its_checkpoint(tmp_path,
                                                                 save_at_every_evaluation):
    bk = get_backend("numpy", "float64")
    models, cfg, X, Y, rngs = _setup(bk)

    def blow_up(epoch, i):
        if i == 8:
            models[2].W[0][0, 0] = np.nan
    with pytest.raises(NumericalError, match="NaN"):
        _run(bk, models, cfg, X, Y, rngs, run=tmp_path, config=CONFIG, on_batch=blow_up)
    run = RunDir(tmp_path)
    assert run.read_info()["status"] == "failed" and "NaN" in run.read_info()["reason"]
    assert int(run.load_checkpoint()["meta.step"]) == 7          # the last good evaluation


def test_a_run_directory_of_other_settings_is_refused_and_a_finished_one_reused(tmp_path,
                                                                               capsys):
    bk = get_backend("numpy", "float64")
    models, cfg, X, Y, rngs = _setup(bk)
    ref = _run(bk, models, cfg, X, Y, rngs, run=tmp_path, config=CONFIG)
    with pytest.raises(UserError, match="other settings; choose another --out or delete"):
        _run(bk, models, cfg, X, Y, rngs, run=tmp_path, config={**CONFIG, "seed": 5})
    assert json.loads((tmp_path / "run.json").read_text())["config"] == CONFIG

    models, _, _, _, rngs = _setup(bk)
    again = _run(bk, models, cfg, X, Y, rngs, run=tmp_path, config=CONFIG,
                 on_batch=_stop_at(1, AssertionError))            # nothing left to train
    np.testing.assert_array_equal(again[1], ref[1])
    assert "reusing the finished run" in capsys.readouterr().err


def _has_mnist():
    try:
        return (Path(resolve_data_dir(None)) / "mnist").is_dir()
    except Exception:
        return False


@pytest.mark.skipif(not _has_mnist(), reason="MNIST not in $SIMKIT_DATA")
def test_fig4a_task_interrupted_in_its_second_epoch_resumes_exactly(tmp_path,
                                                                   save_at_every_evaluation):
    bk = get_backend("numba", "float64")
    kw = dict(n_samples=300, epochs=2, eval_every=100, n_test=500, defer=40)
    ref = mnist_task(bk, 0, **kw)
    path = tmp_path / "run"

    def stop_in_epoch_two(epoch, i):
        if epoch == 2 and i == 101:                   # after the second evaluation of epoch 2
            raise Stop
    with pytest.raises(Stop):
        mnist_task(bk, 0, run=path, on_batch=stop_in_epoch_two, **kw)
    state = RunDir(path).load_checkpoint()
    assert (int(state["meta.epoch"]), int(state["meta.step"])) == (1, 101)
    out = mnist_task(bk, 0, run=path, **kw)
    np.testing.assert_array_equal(out["samples"], ref["samples"])
    np.testing.assert_array_equal(out["test_error"], ref["test_error"])
    assert RunDir(path).read_info()["status"] == "finished"
