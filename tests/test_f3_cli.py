"""``simkit f3`` (F³'s start_training.py) and ``simkit bdfa`` (bdfa-torch's Main.lua): flags,
defaults, one-line errors, the original's results CSV, run directories and resume."""
import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from simkit.cli import build_parser, main
from simkit.commands.bdfa import bdfa_config, normalise
from simkit.commands.f3 import f3_config, init_method_string, multilabel_auroc, multilabel_f1

DATA = Path(os.environ.get("SIMKIT_DATA", "data"))
needs_wine = pytest.mark.skipif(not (DATA / "wine-quality" / "winequality-red.csv").exists(),
                                reason="Wine Quality not found (set SIMKIT_DATA)")
needs_mnist = pytest.mark.skipif(not (DATA / "mnist" / "train-images-idx3-ubyte.gz").exists(),
                                 reason="MNIST not found (set SIMKIT_DATA)")


def parse(argv):
    return build_parser().parse_args(argv)


def run_cli(argv, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------------------ f3: flags
def test_f3_defaults_are_the_originals():
    a = parse(["f3", "--epochs", "3"])
    expected = {"depth": None, "width": None, "mode": "f3", "initialization_method": "kaiming_uniform",
                "scalar": 1.0, "discrete_values": [-1, 0, 1], "device": "cuda", "dataset": "mnist",
                "batch_size": 50, "test_batch_size": 1000, "lr": 1.5 * 1e-4, "dry_run": False, "seed": 1,
                "log_interval": 0, "print_eval": False, "eval_every_nth_batch": 0,
                "error_info": "one_hot_target", "no_output": False, "output_name": ""}
    for key, value in expected.items():
        assert getattr(a, key) == value, key
    assert a.output_path is None                        # the CSV goes into the run directory


def test_f3_flags_map_to_a_simkit_configuration():
    a = parse(["f3", "--depth", "2", "--width", "30", "--epochs", "4", "--error_info",
               "delayed_error_one_hot", "--initialization_method", "discrete_uniform",
               "--discrete_values", "0", "1", "--lr", "0.001", "--seed", "3"])
    cfg = f3_config(a)
    assert cfg["rule"] == "f3" and cfg["hidden"] == [30, 30] and cfg["hidden_activation"] == "tanh"
    assert cfg["rule_opts"] == {"error_info": "delayed_error_one_hot", "feedback": "discrete_uniform",
                                "scalar": 1.0, "discrete_values": [0.0, 1.0]}
    assert cfg["loss"] == "bce" and cfg["standardize"] == "mnist" and cfg["optimizer"] == "adam"
    assert cfg["init"] == "kaiming_uniform" and cfg["bias_init"] == "fan_in"
    assert (cfg["lr"], cfg["seed"], cfg["batch_size"], cfg["eval_batch_size"]) == (0.001, 3, 50, 1000)
    reg = f3_config(parse(["f3", "--depth", "1", "--width", "8", "--epochs", "1", "--mode", "bp",
                           "--dataset", "sgemm"]))
    assert reg["loss"] == "mse" and reg["dataset"] == "sgemm" and reg["rule"] == "bp" and not reg["rule_opts"]


def test_init_method_string_is_the_originals():
    flags = {"initialization_method": "discrete_uniform", "scalar": 1.0, "discrete_values": [-1.0, 0.0, 1.0]}
    assert init_method_string(flags) == "discrete_uniform_1.0_[-1.0, 0.0, 1.0]"
    assert init_method_string({**flags, "initialization_method": "kaiming_uniform"}) == "kaiming_uniform"


@pytest.mark.parametrize("argv,message", [
    (["f3", "--epochs", "1", "--depth", "1", "--width", "5", "--mode", "dfa"], "invalid choice"),
    (["f3", "--epochs", "1", "--depth", "1", "--width", "5", "--error_info", "delayed"], "invalid choice"),
    (["f3", "--depth", "1", "--width", "5"], "--epochs"),
    (["f3", "--epochs", "x"], "invalid int value"),
    (["f3", "--epochs", "1", "--width", "5"], "--depth and --width are required"),
    (["f3", "--epochs", "1", "--depth", "1", "--width", "5", "--dataset", "susy"], "not available"),
    (["f3", "--epochs", "1", "--depth", "1", "--width", "0"], "--width must be a positive"),
    (["f3", "--epochs", "1", "--depth", "1", "--width", "5", "--model", "fc"], "--model is not supported"),
])
def test_f3_bad_flags_give_one_line_and_status_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        rc = main(argv)
        raise SystemExit(rc)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


# ------------------------------------------------------------------------------ f3: metrics
def test_auroc_and_f1_match_their_definitions():
    rng = np.random.default_rng(0)
    y = np.round(rng.uniform(size=(40, 3)), 1)              # ties on purpose
    T = np.eye(3)[rng.integers(0, 3, 40)]
    aucs = []
    for c in range(3):
        pos, neg = y[T[:, c] == 1, c], y[T[:, c] == 0, c]
        aucs.append(np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg]))
    assert multilabel_auroc(y, T) == pytest.approx(np.mean(aucs), abs=1e-12)
    f1 = []
    for c in range(3):
        tp = np.sum((y[:, c] > 0.5) & (T[:, c] == 1))
        fp = np.sum((y[:, c] > 0.5) & (T[:, c] == 0))
        fn = np.sum((y[:, c] <= 0.5) & (T[:, c] == 1))
        f1.append(2 * tp / (2 * tp + fp + fn))
    assert multilabel_f1(y, T) == pytest.approx(np.mean(f1), abs=1e-12)


# ------------------------------------------------------------------------------ f3: runs
def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@needs_wine
def test_f3_regression_run_writes_the_original_csv_and_a_run_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["f3", "--depth", "1", "--width", "16", "--epochs", "2", "--dataset",
            "wine_quality_regression", "--error_info", "delayed_error", "--lr", "1e-3",
            "--output_name", "wine", "--output_path", "results", "--out-dir", "run", "--quiet",
            "--backend", "numpy"]
    rc, out, err = run_cli(argv, capsys)
    assert rc == 0, err
    files = list(Path("results").rglob("*.csv"))
    assert len(files) == 1 and "-wine-" in files[0].name and f"Saving results to {files[0].absolute()}" in out
    rows = read_csv(files[0])
    assert [(r["epoch"], bool(r["train_loss"]), bool(r["test_loss"])) for r in rows] == \
        [("0", True, False), ("0", False, True), ("1", True, False), ("1", False, True),
         ("2", True, False), ("2", False, True)]
    assert rows[0]["loss_name"] == "mse_loss" and rows[0]["error_info"] == "delayed_error"
    assert rows[3]["processed_samples"] == str(5197) and float(rows[5]["test_mae"]) > 0
    assert rows[0]["init_method"] == "kaiming_uniform" and rows[0]["result_filename"] == files[0].name
    assert float(rows[5]["test_loss"]) < float(rows[1]["test_loss"])     # it learned
    assert read_csv(Path("run") / "f3_results.csv") == rows
    metrics = read_csv(Path("run") / "metrics.csv")
    assert {"angle_bp", "angle_fb", "norm_ratio_fb"} <= {m["metric"] for m in metrics if m["layer"]}
    assert json.loads((Path("run") / "run.json").read_text())["status"] == "finished"


@needs_wine
def test_f3_resume_continues_exactly(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base = ["f3", "--depth", "1", "--width", "8", "--dataset", "wine_quality_regression",
            "--error_info", "delayed_loss", "--quiet", "--backend", "numpy", "--lr", "1e-3"]
    assert run_cli(base + ["--epochs", "2", "--out-dir", "full"], capsys)[0] == 0
    assert run_cli(base + ["--epochs", "1", "--out-dir", "half"], capsys)[0] == 0
    assert run_cli(["f3", "--epochs", "2", "--resume", "half", "--quiet"], capsys)[0] == 0
    with np.load("full/checkpoint.npz") as a, np.load("half/checkpoint.npz") as b:
        for key in ("net.W1", "net.W2", "rule.B1", "rule.buffer_D"):
            np.testing.assert_array_equal(a[key], b[key])
    full, half = read_csv("full/f3_results.csv"), read_csv("half/f3_results.csv")
    assert [r["epoch"] for r in half] == ["0", "0", "1", "1", "2", "2"]
    assert list(half[0]) == list(full[0])                    # same columns, same order
    for a, b in zip(full, half):
        assert a["test_loss"] == b["test_loss"] and a["train_loss"] == b["train_loss"]


@needs_mnist
def test_f3_dry_run_on_mnist_classification_columns(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_cli(["f3", "--depth", "1", "--width", "10", "--epochs", "5", "--dry_run", "x",
                            "--mode", "llo", "--out-dir", "r", "--quiet"], capsys)
    assert rc == 0, err
    assert not Path("results").exists()                 # no --output_path: only the run's CSV
    assert f"Saving results to {Path('r/f3_results.csv').absolute()}" in out
    rows = read_csv("r/f3_results.csv")
    assert rows[0]["result_filename"] == "f3_results.csv"
    assert len(rows) == 4 and rows[2]["processed_samples"] == "50" and rows[0]["dry_run"] == "True"
    for key in ("train_AUROC", "train_MultilabelF1", "train_correct", "train_accuracy"):
        assert rows[0][key] != "" and rows[1][key] == ""
    assert rows[0]["loss_name"] == "binary_cross_entropy"


# ------------------------------------------------------------------------------ bdfa
def test_bdfa_defaults_are_the_codes():
    a = parse(["bdfa"])
    assert (a.criterion, a.nonlin, a.num_layers, a.num_hidden, a.LR, a.batchSize, a.optimization,
            a.epoch, a.gradient, a.rfb_mag, a.dropout, a.eps, a.dataset) == \
        ("bce", "tanh", 2, 800, 1e-4, 128, "sgd", 200, "dfa", 0.0, 0, 0.0, "MNIST")
    cfg = bdfa_config(a)
    assert cfg["hidden"] == [800, 800] and cfg["init"] == "zeros" and cfg["optimizer"] == "sgd"
    assert cfg["rule"] == "bdfa_torch" and cfg["rule_opts"]["gradient"] == "dfa"
    assert cfg["rule_opts"]["feedback_lr"] == 5e-5 and cfg["epochs"] == 200
    assert bdfa_config(parse(["bdfa", "--original-epochs"]))["epochs"] == 199
    bp = bdfa_config(parse(["bdfa", "-gradient", "bp", "-optimization", "rmsprop", "-weightDecay", "0.1"]))
    assert bp["init"] == "kaiming_uniform" and bp["weight_decay"] == 0.1
    assert bp["rule_opts"]["weight_decay"] == 0


@pytest.mark.parametrize("argv,message", [
    (["bdfa", "-gradient", "tp"], "-gradient 'tp' is not supported"),
    (["bdfa", "-network", "conv.lua"], "-network 'conv' is not supported"),
    (["bdfa", "-dataset", "SVHN"], "allowed: MNIST, Cifar10"),
    (["bdfa", "-epoch_step", "0"], "-epoch_step 0"),
    (["bdfa", "-batchnorm", "1"], "-batchnorm"),
    (["bdfa", "-LR", "fast"], "invalid float value"),
])
def test_bdfa_bad_flags_give_one_line_and_status_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_bdfa_normalisations():
    rng = np.random.default_rng(0)
    x_tr, x_te = rng.uniform(2, 5, size=(50, 6)), rng.uniform(2, 5, size=(5, 6))
    a, _ = normalise(x_tr, x_te, "scale", 1)
    assert a.min() == 0 and a.max() == 1
    a, _ = normalise(x_tr, x_te, "simple", 1)
    assert abs(a.mean()) < 1e-12 and abs(a.std() - 1) < 1e-12
    a, _ = normalise(x_tr, x_te, "channel", 3)
    np.testing.assert_allclose(a.reshape(50, 3, 2).mean(axis=(0, 2)), 0, atol=1e-12)


@needs_mnist
def test_bdfa_short_mnist_run_learns(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_cli(["bdfa", "-epoch", "1", "-num_layers", "1", "-num_hidden", "64",
                            "-optimization", "rmsprop", "-LR", "1e-3", "-save", "b", "--quiet"], capsys)
    assert rc == 0, err
    info = json.loads(Path("b/run.json").read_text())
    assert info["summary"]["acc_test_last"] > 0.85 and info["bdfa_flags"]["gradient"] == "dfa"
