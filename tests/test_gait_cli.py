"""``simkit gait``: run.py's command line, its run folder and curve files, resume, bad flags."""
import json
import os

import numpy as np
import pytest

from simkit.cli import main as _main
from simkit.commands import gait as gait_cmd
from simkit.training.rundir import load_arrays

from helpers import one_blas_thread  # noqa: F401 (autouse fixture)

GAIT_CMD = ["gait", "--algorithm=GAIT", "--learning_rate=0.0001", "--orthogonal_init",
            "--orthogonal_reg=0.1", "--nb_layers=4", "--nb_epochs=100"]
QUICK = ["--backend=numpy", "--quiet", "--batch_size=20", "--max_batches=6", "--eval_every=2"]


def main(argv):
    """``simkit`` with ``argv``: its exit status (argparse's own errors exit through SystemExit)."""
    try:
        return _main(argv)
    except SystemExit as exc:
        return exc.code


def synthetic(n=64, n_train=300, n_test=100, C=10):
    def load(cfg):
        rng = np.random.default_rng(0)
        y = rng.integers(0, C, n_train + n_test)
        x = np.clip(rng.random((C, n))[y] + 0.2 * rng.normal(size=(len(y), n)), 0, 1) * 255
        return x[:n_train] / 255, y[:n_train], x[n_train:] / 255, y[n_train:], C
    return load


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    monkeypatch.setattr(gait_cmd, "load_data", synthetic())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_published_command_runs_and_writes_the_original_folder(tiny):
    assert main(GAIT_CMD[:-1] + ["--nb_epochs=2"] + QUICK) == 0
    out = tiny / "runs" / "gait_MNIST_GAIT_OrthoInit_0.1OrthoReg_1Seed_0.0001LR_4L"
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "finished" and info["config"]["gait_formulation"] == "exact"
    assert info["config"]["batch_size"] == 20 and info["paper_command"] == "gait"
    for name in ("training_acc.txt", "test_acc.txt", "training_loss.txt", "test_loss.txt"):
        assert np.loadtxt(out / name).shape == (1 + 2 * 2,)       # init + batches 2, 4 per epoch
    assert len(list(out.glob("*Lweights.npy"))) == 5
    assert int(load_arrays(out / "checkpoint.npz")["meta.epoch"]) == 2
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0] == "epoch,split,metric,layer,value" and any(r.startswith("1,test,acc") for r in rows)


def test_load_resumes_and_a_second_start_is_refused(tiny, capsys):
    args = GAIT_CMD[:-1] + QUICK
    assert main(args + ["--nb_epochs=1"]) == 0
    assert main(args + ["--nb_epochs=1"]) == 2
    assert "--load" in capsys.readouterr().err
    assert main(args + ["--nb_epochs=2", "--load"]) == 0
    out = next((tiny / "runs").iterdir())
    assert int(load_arrays(out / "checkpoint.npz")["meta.epoch"]) == 2
    assert np.loadtxt(out / "test_acc.txt").shape == (5,)
    assert main(["gait", "--load", "--out_dir", str(tiny / "nothing")] + QUICK) == 2


def test_resume_after_interrupt_matches_uninterrupted(tiny, monkeypatch):
    flags = ["gait", "--algorithm=TP", "--orthogonal_reg=1000.0", "--nb_epochs=2"] + QUICK
    assert main(flags + ["--out_dir=whole"]) == 0

    def stop(epoch, b):
        if (epoch, b) == (2, 3):
            raise KeyboardInterrupt                                      # Ctrl-C mid-epoch
    real = gait_cmd.execute
    monkeypatch.setattr(gait_cmd, "execute", lambda *a, **kw: real(*a, **{**kw, "on_batch": stop}))
    assert main(flags + ["--out_dir=cut"]) == 130
    monkeypatch.setattr(gait_cmd, "execute", real)
    assert json.loads((tiny / "cut" / "run.json").read_text())["status"] == "interrupted"
    assert main(flags + ["--out_dir=cut", "--load"]) == 0
    a, b = load_arrays(tiny / "whole" / "checkpoint.npz"), load_arrays(tiny / "cut" / "checkpoint.npz")
    for key in a:
        if key.startswith(("net.", "opt.", "points.")):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert (tiny / "whole" / "test_acc.txt").read_text() == (tiny / "cut" / "test_acc.txt").read_text()


def test_quirks_and_their_flags(tiny):
    assert main(["gait", "--nb_epochs=0"] + QUICK) == 0                  # BP, lambda 0
    out = tiny / "runs" / "gait_MNIST_BP_0.0OrthoReg_1Seed_0.0001LR_1L"
    cfg = json.loads((out / "run.json").read_text())["config"]
    assert cfg["orthogonal_init_used"] and not cfg["orthogonal_init"]    # forced, as run.py
    assert main(["gait", "--nb_epochs=0", "--no_forced_ortho_init", "--distinct_output_seed",
                 "--algorithm=GAIT", "--gait_formulation=original"] + QUICK) == 0
    out = tiny / "runs" / ("gait_MNIST_GAIT_0.0OrthoReg_1Seed_0.0001LR_1L_origGAIT_xavier_"
                           "distinctOutSeed")
    cfg = json.loads((out / "run.json").read_text())["config"]
    assert not cfg["orthogonal_init_used"]


def test_tower_ignores_nb_layers_with_a_note(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(gait_cmd, "load_data", synthetic(n=784, n_train=60, n_test=20))
    monkeypatch.chdir(tmp_path)
    flags = GAIT_CMD[:-1] + ["--tower", "--nb_epochs=1", "--backend=numpy", "--batch_size=20",
                             "--eval_every=0", "--progress"]
    assert main(flags) == 0
    captured = capsys.readouterr()
    assert "--tower ignores --nb_layers=4" in captured.err
    out = tmp_path / "runs" / "gait_MNIST_GAIT_OrthoInit_0.1OrthoReg_1Seed_0.0001LR_4TOWER"
    ck = load_arrays(out / "checkpoint.npz")
    assert [ck[f"net.W{l}"].shape[0] for l in range(1, 5)] == [784, 500, 200, 10]


@pytest.mark.parametrize("flag,needle", [
    ("--algorithm=XX", "invalid choice"), ("--dataset=CIFAR", "invalid choice"),
    ("--nb_layers=-1", "--nb_layers"), ("--learning_rate=0", "--learning_rate"),
    ("--learning_rate=abc", "invalid float"), ("--gamma=2", "--gamma"),
    ("--eval_splits=train", "--eval_splits"), ("--orthogonal_reg=-1", "--orthogonal_reg"),
    ("--seed=-3", "--seed")])
def test_bad_flags_are_one_line_errors(tiny, capsys, flag, needle):
    assert main(["gait", flag] + QUICK) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err


@pytest.mark.skipif(not os.environ.get("SIMKIT_DATA"), reason="needs SIMKIT_DATA (real MNIST)")
def test_real_mnist_initial_accuracy_is_the_originals(tmp_path, capsys):
    """Orthogonal init, seed 1: 12.22% test accuracy before training (research note §4.5)."""
    assert main(GAIT_CMD[:-1] + ["--nb_epochs=1", "--max_batches=2", "--eval_every=0",
                                 "--eval_splits=test", "--backend=numpy",
                                 f"--out_dir={tmp_path / 'r'}"]) == 0
    out = capsys.readouterr().out
    assert "before training  test acc 12.22%" in out


def test_figure_quick_mode(tmp_path, monkeypatch):
    """figures/gait_curves.py --quick: tiny runs of the four published commands, then the plot."""
    import importlib.util
    from pathlib import Path
    monkeypatch.setattr(gait_cmd, "load_data", synthetic(n=784, n_train=3600, n_test=1000))
    spec = importlib.util.spec_from_file_location(
        "gait_curves", Path(__file__).parents[1] / "figures" / "gait_curves.py")
    fig = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fig)
    res = fig.main(["--quick", "--out", str(tmp_path), "--backend=numpy"])
    assert (tmp_path / "gait_curves.png").stat().st_size > 10000
    assert {"BP", "GAIT", "TP", "GAIT tower"} <= set(map(str, res["labels"]))
    assert fig.main(["--plot-only", "--out", str(tmp_path)]) is not None
    ref = fig.read_reference(fig.REF_DIR)
    if ref:                                                 # the original's x positions
        assert len(ref["BP"][0]) == 397 and abs(ref["BP"][0][99] - 0.991) < 1e-12


def test_figure_full_mode_runs_then_continues_the_published_commands(tiny, monkeypatch, capsys):
    """figures/gait_curves.py --full: the published BP command into ROOT/BP; the same call with
    more --epochs continues it from its checkpoint (--load) instead of starting again."""
    import importlib.util
    from pathlib import Path
    monkeypatch.setattr(gait_cmd, "load_data", synthetic(n=16, n_train=2000, n_test=100))
    spec = importlib.util.spec_from_file_location(
        "gait_curves", Path(__file__).parents[1] / "figures" / "gait_curves.py")
    fig = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fig)
    args = ["--full", "runs", "--methods", "BP", "--backend=numpy", "--out", "out",
            "--ref-dir", "none"]
    fig.main(args + ["--epochs", "1"])
    run = tiny / "runs" / "BP"
    assert int(load_arrays(run / "checkpoint.npz")["meta.epoch"]) == 1
    assert "starting" in capsys.readouterr().err
    res = fig.main(args + ["--epochs", "2"])
    assert "continuing" in capsys.readouterr().err
    assert int(load_arrays(run / "checkpoint.npz")["meta.epoch"]) == 2
    info = json.loads((run / "run.json").read_text())
    assert info["config"]["nb_layers"] == 4 and info["config"]["learning_rate"] == 0.0001
    assert info["config"]["eval_every"] == 0 and info["status"] == "finished"
    assert info["config"]["checkpoint_every"] == 250
    np.testing.assert_array_equal(res["epoch_0"], [0, 1, 2])     # one test curve, not two
