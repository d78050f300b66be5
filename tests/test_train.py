"""The training loop: it learns, it resumes exactly, it writes its run directory atomically."""
import csv
import json

import numpy as np
import pytest

from simkit.commands.runner import execute
from simkit.errors import NumericalError, UserError
from simkit.training.config import resolve_config
from simkit.training.rundir import RunDir, load_arrays

QUICK = {"dataset": "mnist5k", "hidden": [32], "epochs": 3, "batch_size": 100,
         "max_batches": 8, "backend": "numpy", "val_size": 500, "lr": 3e-3}


class Interrupt:
    """Raise Ctrl-C at batch ``k`` of ``epoch``."""

    def __init__(self, epoch, k):
        self.epoch, self.k = epoch, k

    def __call__(self, epoch, k):
        if (epoch, k) == (self.epoch, self.k):
            raise KeyboardInterrupt


def test_bp_learns_mnist5k_quickly(tmp_path):
    cfg = resolve_config({**QUICK, "max_batches": 0, "epochs": 2, "hidden": [64]})
    summary = execute(cfg, tmp_path / "run")
    assert summary["acc_test_last"] > 0.80          # chance is 0.10


def test_interrupted_run_resumes_to_identical_weights(tmp_path):
    cfg = resolve_config(QUICK)
    execute(cfg, tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        execute(cfg, tmp_path / "cut", on_batch=Interrupt(epoch=2, k=3))
    info = json.loads((tmp_path / "cut" / "run.json").read_text())
    assert info["status"] == "interrupted"
    assert int(load_arrays(tmp_path / "cut" / "checkpoint.npz")["meta.epoch"]) == 1
    execute({}, tmp_path / "cut", resume=True)
    a = load_arrays(tmp_path / "whole" / "checkpoint.npz")
    b = load_arrays(tmp_path / "cut" / "checkpoint.npz")
    assert int(b["meta.epoch"]) == 3
    for key in a:
        if key.startswith(("net.", "opt.")):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    rows_a = [r for r in RunDir(tmp_path / "whole").read_metrics() if r["split"] == "test"]
    rows_b = [r for r in RunDir(tmp_path / "cut").read_metrics() if r["split"] == "test"]
    assert rows_a == rows_b


def test_checkpoint_inside_an_epoch_resumes_to_identical_weights_and_metrics(tmp_path):
    from types import SimpleNamespace
    cfg = resolve_config(QUICK)
    execute(cfg, tmp_path / "whole")
    every_batch = SimpleNamespace(checkpoint_minutes=1e-9, quiet=True)
    with pytest.raises(KeyboardInterrupt):
        execute(cfg, tmp_path / "cut", args=every_batch, on_batch=Interrupt(epoch=2, k=3))
    cut = load_arrays(tmp_path / "cut" / "checkpoint.npz")
    assert int(cut["meta.epoch"]) == 1 and list(cut["meta.partial"][:2]) == [2, 4]
    steps = []
    execute({}, tmp_path / "cut", resume=True, args=every_batch,
            on_batch=lambda e, k: steps.append((e, k)))
    assert steps[0] == (2, 4) and len(steps) == 4 + 8            # from the saved minibatch on
    a = load_arrays(tmp_path / "whole" / "checkpoint.npz")
    b = load_arrays(tmp_path / "cut" / "checkpoint.npz")
    assert int(b["meta.epoch"]) == 3 and "meta.partial" not in b   # none after the last batch
    for key in a:
        if key.startswith(("net.", "opt.")):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert RunDir(tmp_path / "whole").read_metrics() == RunDir(tmp_path / "cut").read_metrics()


def test_without_checkpoint_minutes_an_epoch_is_checkpointed_only_at_its_end(tmp_path):
    from types import SimpleNamespace
    with pytest.raises(KeyboardInterrupt):
        execute(resolve_config(QUICK), tmp_path / "r", on_batch=Interrupt(epoch=2, k=3),
                args=SimpleNamespace(checkpoint_minutes=0.0, quiet=True))
    cut = load_arrays(tmp_path / "r" / "checkpoint.npz")
    assert int(cut["meta.epoch"]) == 1 and "meta.partial" not in cut


def test_min_acc_stops_after_epoch_4_and_the_run_stays_stopped(tmp_path):
    cfg = resolve_config({**QUICK, "epochs": 6, "max_batches": 2, "min_acc": 0.99})
    summary = execute(cfg, tmp_path / "low")
    info = json.loads((tmp_path / "low" / "run.json").read_text())
    assert summary["epochs_done"] == 4 and info["status"] == "stopped"
    assert "after epoch 4" in info["reason"]
    assert execute({}, tmp_path / "low", resume=True)["epochs_done"] == 4
    assert json.loads((tmp_path / "low" / "run.json").read_text())["status"] == "stopped"
    ok = execute(resolve_config({**cfg, "min_acc": 0.05}), tmp_path / "ok")
    assert ok["epochs_done"] == 6


def test_run_directory_contents(tmp_path):
    execute(resolve_config({**QUICK, "epochs": 1}), tmp_path / "r")
    info = json.loads((tmp_path / "r" / "run.json").read_text())
    assert info["status"] == "finished" and info["config"]["hidden"] == [32]
    assert "numpy" in info["backend"] and info["versions"]["numpy"]
    with open(tmp_path / "r" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    assert {int(r["epoch"]) for r in rows} == {0, 1}
    assert not [p for p in (tmp_path / "r").iterdir() if p.name.endswith(".tmp")]


def test_existing_run_is_not_overwritten(tmp_path):
    cfg = resolve_config({**QUICK, "epochs": 1})
    execute(cfg, tmp_path / "r")
    with pytest.raises(UserError, match="pass --resume"):
        execute(cfg, tmp_path / "r")


def test_divergence_stops_with_a_diagnostic_and_keeps_the_checkpoint(tmp_path):
    cfg = resolve_config({**QUICK, "optimizer": "sgd", "lr": 1e12, "loss": "mse"})
    with pytest.raises(NumericalError, match="lower the learning rate"):
        execute(cfg, tmp_path / "r")
    info = json.loads((tmp_path / "r" / "run.json").read_text())
    assert info["status"] == "failed"
    assert (tmp_path / "r" / "checkpoint.npz").exists()


def test_unknown_config_key_is_rejected():
    with pytest.raises(UserError, match="unknown configuration key"):
        resolve_config({"learning_rate": 0.1})


def test_float32_run_trains_in_float32(tmp_path):
    summary = execute(resolve_config({**QUICK, "epochs": 1, "dtype": "float32"}), tmp_path / "r")
    ckpt = load_arrays(tmp_path / "r" / "checkpoint.npz")
    assert ckpt["net.W1"].dtype == np.float32
    assert summary["acc_test_last"] > 0.2


def test_the_loop_closes_the_rule_when_a_run_ends_or_is_interrupted(tmp_path, monkeypatch):
    import simkit.commands.runner as runner
    closed, build = [], runner.build

    def build_with_close(*a, **kw):
        net, rule, opt, loss, streams = build(*a, **kw)
        rule.close = lambda: closed.append(True)
        return net, rule, opt, loss, streams
    monkeypatch.setattr(runner, "build", build_with_close)
    cfg = resolve_config({**QUICK, "epochs": 1})
    execute(cfg, tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        execute(cfg, tmp_path / "b", on_batch=Interrupt(epoch=1, k=1))
    assert closed == [True, True]


def test_sigterm_stops_the_loop_as_ctrl_c_does(tmp_path):
    import os
    import signal

    from simkit.training.signals import Terminated

    def terminate(epoch, k):
        if (epoch, k) == (1, 2):
            os.kill(os.getpid(), signal.SIGTERM)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated):
        execute(resolve_config({**QUICK, "epochs": 1}), tmp_path / "r", on_batch=terminate)
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "interrupted"
    assert signal.getsignal(signal.SIGTERM) is before
