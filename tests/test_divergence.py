"""A run that blows up but stays finite stops as a NaN does: status ``failed``, exit 2, one line
that says what to lower, and the last good checkpoint kept; the bound is configurable, off with
``--no-divergence-check``, and does not change a normal run's numbers."""
import csv
import json

import numpy as np
import pytest

from simkit.cli import main as _main
from simkit.commands import gait as gait_cmd
from simkit.commands.runner import execute
from simkit.errors import NumericalError, UserError
from simkit.training.config import resolve_config
from simkit.training.rundir import load_arrays

from helpers import one_blas_thread  # noqa: F401 (autouse fixture)

TRAIN = ["train", "--backend", "numpy", "--hidden", "32", "--batch-size", "100",
         "--max-batches", "8", "--epochs", "2", "--quiet"]
QUICK = {"dataset": "mnist5k", "hidden": [32], "epochs": 2, "batch_size": 100,
         "max_batches": 8, "backend": "numpy", "lr": 3e-3}


def main(argv):
    try:
        return _main(argv)
    except SystemExit as exc:
        return exc.code


def epochs_in(path):
    with open(path / "metrics.csv") as f:
        return sorted({int(r["epoch"]) for r in csv.DictReader(f)})


def test_a_finite_blow_up_fails_the_run_with_one_line_and_keeps_epoch_0(tmp_path, capsys):
    assert main(TRAIN + ["--lr", "1e9", "--out-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("simkit: error: train loss ") and "in epoch 1 is over 10 times" in err[-1]
    assert "lower the learning rate" in err[-1] and "--no-divergence-check" in err[-1]
    info = json.loads((tmp_path / "r" / "run.json").read_text())
    assert info["status"] == "failed" and "diverged" in info["reason"]
    assert int(load_arrays(tmp_path / "r" / "checkpoint.npz")["meta.epoch"]) == 0
    assert epochs_in(tmp_path / "r") == [0]


def test_the_check_can_be_turned_off_or_loosened(tmp_path):
    assert main(TRAIN + ["--lr", "1e9", "--no-divergence-check", "--out-dir", str(tmp_path / "a")]) == 0
    info = json.loads((tmp_path / "a" / "run.json").read_text())
    assert info["status"] == "finished" and info["config"]["divergence_factor"] == 0.0
    assert main(TRAIN + ["--lr", "1e9", "--divergence-factor", "1e30",
                         "--out-dir", str(tmp_path / "b")]) == 0


def test_a_failed_run_resumes_with_the_check_off(tmp_path):
    assert main(TRAIN + ["--lr", "1e9", "--out-dir", str(tmp_path / "r")]) == 2
    assert main(["train", "--resume", str(tmp_path / "r"), "--no-divergence-check", "--quiet"]) == 0
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "finished"
    assert epochs_in(tmp_path / "r") == [0, 1, 2]


def test_the_check_does_not_change_a_normal_run(tmp_path):
    def values(path):
        with open(path / "metrics.csv") as f:
            return [r for r in csv.DictReader(f)]
    execute(resolve_config(QUICK), tmp_path / "on")
    execute(resolve_config({**QUICK, "divergence_factor": 0}), tmp_path / "off")
    assert values(tmp_path / "on") == values(tmp_path / "off")
    a, b = load_arrays(tmp_path / "on" / "checkpoint.npz"), load_arrays(tmp_path / "off" / "checkpoint.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a if k.startswith("net."))


def test_a_checkpoint_inside_an_epoch_is_checked_first(tmp_path, monkeypatch):
    """With checkpoints after every minibatch, the blow-up is caught inside epoch 1."""
    from simkit.training import epochs
    original = epochs.Trainer.__init__

    def every_batch(self, *a, **kw):
        original(self, *a, **{**kw, "checkpoint_seconds": 0.0})
    monkeypatch.setattr(epochs.Trainer, "__init__", every_batch)
    with pytest.raises(NumericalError, match=r"in epoch 1 \(mean of \d batches\)"):
        execute(resolve_config({**QUICK, "lr": 1e9}), tmp_path / "r")
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "failed"


def test_a_regression_bound_has_a_floor():
    from simkit.training.loop import LOSS_FLOOR, Loop

    class Probe(Loop):
        def start_losses(self):
            return {"train": 1e-4}
    probe = Probe(None, None, None, None)
    probe.check_divergence({"train": 5e-3}, "in epoch 1")          # 50x a tiny start: noise
    with pytest.raises(NumericalError, match="over 10 times"):
        probe.check_divergence({"train": 10.5 * LOSS_FLOOR}, "in epoch 1")
    with pytest.raises(NumericalError, match="train loss became nan"):
        probe.check_divergence({"train": float("nan")}, "in epoch 1")
    probe.divergence_factor = 0.0
    probe.check_divergence({"train": 1e30}, "in epoch 1")             # off


def test_a_bad_factor_is_refused(capsys):
    with pytest.raises(UserError, match="divergence_factor must be a number"):
        resolve_config({"divergence_factor": "high"})
    assert main(["train", "--divergence-factor", "high"]) == 2
    assert "--divergence-factor" in capsys.readouterr().err


def test_gait_stops_at_the_evaluation_after_a_blow_up(tmp_path, monkeypatch, capsys):
    from test_gait_cli import synthetic
    monkeypatch.setattr(gait_cmd, "load_data", synthetic())
    argv = ["gait", "--backend=numpy", "--quiet", "--batch_size=20", "--max_batches=6",
            "--eval_every=2", "--nb_epochs=1", "--learning_rate=1e9", "--out_dir", str(tmp_path / "g")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "after 3 updates is over 10 times" in err and "lower --learning_rate" in err
    info = json.loads((tmp_path / "g" / "run.json").read_text())
    assert info["status"] == "failed"
    assert main(argv[:-2] + ["--no-divergence-check", "--out_dir", str(tmp_path / "h")]) == 0
