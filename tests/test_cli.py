"""The command line: every user error is one line and exit status 2; the paper command parses."""
import os
import shlex
import subprocess
import sys

import pytest

from simkit.cli import build_parser, main
from simkit.commands.run_bp import dfc_config

PUBLISHED_BP = ('--epochs=40 --clip_grad_norm=1.0 --lr="0.002" --optimizer="Adam" --adam_beta1=0.9 '
                '--adam_beta2=0.999 --adam_epsilon="0.002" --dataset="mnist" --size_hidden="256,256,256" '
                '--hidden_activation="tanh" --initialization="xavier_normal"')


def run_cli(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        sys.exit(main(list(argv)))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def one_error_line(err):
    lines = [line for line in err.strip().splitlines() if not line.startswith("simkit: backend")]
    assert len(lines) == 1, err
    return lines[0]


def test_published_bp_command_translates_to_the_original_settings():
    args = build_parser().parse_args(["run_bp", *shlex.split(PUBLISHED_BP)])
    cfg = dfc_config(args)
    assert cfg["optimizer"] == "adam" and cfg["lr"] == 0.002 and cfg["eps"] == 0.002
    assert (cfg["beta1"], cfg["beta2"]) == (0.9, 0.999)
    assert cfg["clip"] == 1.0 and cfg["clip_mode"] == "per_layer"
    assert cfg["hidden"] == [256, 256, 256] and cfg["hidden_activation"] == "tanh"
    assert cfg["dtype"] == "float32" and cfg["val_size"] == 5000 and cfg["standardize"] == "mnist"
    assert cfg["batch_size"] == 128 and cfg["epochs"] == 40 and cfg["seed"] == 42


def test_run_bp_defaults_are_the_original_scripts():
    cfg = dfc_config(build_parser().parse_args(["run_bp"]))
    assert cfg["optimizer"] == "sgd" and cfg["lr"] == 0.1 and cfg["epochs"] == 2
    assert (cfg["beta1"], cfg["beta2"]) == (0.99, 0.99) and cfg["hidden"] == [5]
    assert cfg["hidden_activation"] == "linear" and cfg["clip"] == -1.0


def test_per_layer_learning_rates_parse():
    cfg = dfc_config(build_parser().parse_args(["run_bp", "--lr", "[0.1,0.2]", "--size_hidden", "4"]))
    assert cfg["lr"] == [0.1, 0.2]


@pytest.mark.parametrize("argv, needle", [
    (["train", "--optimizer", "adagrad"], "allowed: SGD, Adam, RMSprop"),
    (["train", "--rule", "hebb"], "unknown rule 'hebb'"),
    (["train", "--dataset", "imagenet"], "imagenet"),
    (["train", "--hidden", "0,5"], "positive integers"),
    (["train", "--hidden", "a"], "comma-separated positive integers"),
    (["train", "--epochs", "0"], "epochs must be a positive integer"),
    (["train", "--activation", "swish"], "unknown activation"),
    (["train", "--set", "learning_rate=0.1"], "unknown configuration key"),
    (["train", "--backend", "torch"], "invalid choice"),
    (["train", "--resume", "/nonexistent/run"], "no run to resume"),
    (["run_bp", "--optimizer", "Adagrad"], "invalid choice"),
    (["run_bp", "--no_such_flag"], "unrecognized arguments"),
    (["run_bp", "--lr", "fast"], "--lr must be a number"),
    (["run_bp", "--target_class_value", "1.5"], "target_class_value must be in (0, 1]"),
    (["run_bp", "--dataset", "emnist"], "invalid choice"),
])
def test_user_errors_are_one_line_and_exit_2(capsys, tmp_path, argv, needle):
    code, _, err = run_cli(capsys, *argv, "--out-dir" if argv[0] == "train" else "--out_dir",
                           str(tmp_path / "run"), "--backend" if "--backend" not in argv else "--quiet",
                           *(["numpy"] if "--backend" not in argv else []))
    assert code == 2
    assert needle in one_error_line(err)


def test_missing_data_names_the_files_and_exits_2(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--dataset", "mnist", "--data-dir", str(tmp_path),
                           "--out-dir", str(tmp_path / "run"), "--backend", "numpy")
    assert code == 2
    assert "train-images-idx3-ubyte" in one_error_line(err)


def test_corrupt_data_exits_2(capsys, tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (folder / name).write_bytes(b"\x00\x00\x08\x03not an idx file")
    code, _, err = run_cli(capsys, "train", "--dataset", "mnist", "--data-dir", str(tmp_path),
                           "--out-dir", str(tmp_path / "run"), "--backend", "numpy")
    assert code == 2 and "simkit: error:" in one_error_line(err)


def test_list_and_info(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0 and "bp" in out and "mnist5k" in out and "run_bp" in out
    code, out, _ = run_cli(capsys, "info", "--backend", "numpy")
    assert code == 0 and "backend: numpy" in out and "data dir:" in out


def test_train_runs_end_to_end_from_the_command_line(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "train", "--hidden", "16", "--epochs", "1", "--max-batches", "5",
                           "--out-dir", str(tmp_path / "r"), "--backend", "numpy")
    assert code == 0 and "acc_test_last" in out
    assert (tmp_path / "r" / "checkpoint.npz").exists()


@pytest.mark.parametrize("argv, needle", [
    (["--rule", "gait"], "run it with simkit gait --algorithm GAIT"),
    (["--rule", "tp"], "run it with simkit gait --algorithm TP"),
    (["--rule", "inv_bp"], "run it with simkit gait --algorithm BP"),
    (["--rule", "dfc"], "simkit run_dfc (DFC, two-phase Strong-DFC) or simkit run_dfc_single"),
    (["--set", "rule=gait"], "simkit gait"),
    (["--clip", "1", "--clip-mode", "norm"], "unknown clipping mode 'norm'; allowed: per_layer"),
    (["--set", "rule_opts={'x': 1}"], "unexpected keyword argument 'x'"),
])
def test_train_refuses_before_anything_is_written(capsys, tmp_path, argv, needle):
    """What would fail only once training runs (a rule that needs its own command, a clipping
    mode read at the first step) is refused first: one line, exit 2, no run directory."""
    code, out, err = run_cli(capsys, "train", *argv, "--epochs", "1", "--max-batches", "1",
                             "--out-dir", str(tmp_path / "run"), "--backend", "numpy")
    assert code == 2 and needle in one_error_line(err) and "epoch" not in out
    assert not (tmp_path / "run").exists()


def test_every_rule_trains_or_is_refused_before_anything_is_written(capsys, tmp_path):
    """Every rule of ``simkit list rules`` either trains a batch with ``simkit train`` or is
    refused up front (no rule fails after its run directory is written)."""
    from simkit.commands.train import OWN_COMMAND
    from simkit.rules import RULES
    for rule in RULES:
        out_dir = tmp_path / rule
        code, _, err = run_cli(capsys, "train", "--rule", rule, "--epochs", "1", "--max-batches",
                               "1", "--hidden", "8", "--out-dir", str(out_dir), "--backend",
                               "numpy", "--quiet")
        if rule in OWN_COMMAND:
            assert code == 2 and not out_dir.exists(), (rule, err)
        else:
            assert code == 0 and (out_dir / "checkpoint.npz").exists(), (rule, err)


@pytest.mark.parametrize("argv, runner, position, label", [
    (["train"], "train.execute", 1, "_bp_mnist5k_s42"),
    (["run_bp"], "run_bp.execute", 1, "_run_bp_mnist_s42"),
    (["run_dfc"], "run_dfc.execute", 1, "_run_dfc_mnist_s42"),
    (["run_dfc_single_phase"], "run_dfc.execute", 1, "_run_dfc_single_phase_mnist_s42"),
    (["f3", "--depth", "1", "--width", "2", "--epochs", "1"], "f3.execute_f3", 2, "_f3_f3_mnist_s1"),
    (["bdfa", "-gradient", "fa"], "bdfa.execute_bdfa", 2, "_bdfa_fa_mnist_s1"),
])
def test_every_command_writes_into_runs_by_default(monkeypatch, capsys, argv, runner, position,
                                                   label):
    """One default output root for every command: ``runs/DATE-TIME_LABEL_DATASET_sSEED``."""
    import importlib
    import re
    from pathlib import Path
    module, name = runner.split(".")
    seen = []
    monkeypatch.setattr(importlib.import_module(f"simkit.commands.{module}"), name,
                        lambda *a, **kw: seen.append(Path(a[position])))
    assert main(argv) == 0
    capsys.readouterr()
    assert seen[0].parent == Path("runs") and re.fullmatch(r"\d{8}-\d{6}" + label, seen[0].name)


@pytest.mark.skipif(not os.environ.get("SIMKIT_DATA"), reason="needs the real MNIST (SIMKIT_DATA)")
def test_run_bp_published_command_smoke_test_on_mnist(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "run_bp", *shlex.split(PUBLISHED_BP), "--test",
                           "--out_dir", str(tmp_path / "r"), "--backend", "numpy")
    assert code == 0 and "acc_test_last" in out


def test_python_dash_m_simkit_works():
    out = subprocess.run([sys.executable, "-m", "simkit", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "run_bp" in out.stdout


def test_threads_option_caps_blas_threads(capsys):
    from threadpoolctl import threadpool_info, threadpool_limits
    before = max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
    try:
        code, _, _ = run_cli(capsys, "list", "rules", "--threads", "1")
        assert code == 0
        assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")
    finally:
        threadpool_limits(limits=before, user_api="blas")


def test_zero_threads_is_a_user_error(capsys):
    code, _, err = run_cli(capsys, "list", "--threads", "0")
    assert code == 2 and "--threads must be at least 1" in one_error_line(err)


def test_sigterm_stops_a_run_as_ctrl_c_does(tmp_path):
    """``kill PID`` (what stops a background run, which ignores SIGINT) marks the run
    interrupted, keeps its finished epochs, prints how to resume, and exits 128 + 15."""
    import json
    import signal
    import time
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "simkit", "train", "--backend", "numpy",
                             "--hidden", "16", "--epochs", "100000", "--max-batches", "2",
                             "--threads", "1", "--quiet", "--out-dir", str(out)],
                            stderr=subprocess.PIPE, text=True, env=env)

    def epochs():                                     # the epochs metrics.csv has rows of
        f = out / "metrics.csv"
        rows = f.read_text().splitlines()[1:] if f.exists() else []
        return {int(r.split(",")[0]) for r in rows if r.count(",") >= 4} or {0}
    try:
        deadline = time.time() + 240
        while max(epochs()) < 1:
            assert proc.poll() is None and time.time() < deadline, "the run never got going"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1]
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "simkit: terminated; resume with: simkit train" in err
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "interrupted"
    assert 1 <= max(epochs()) < 100000


@pytest.mark.parametrize("rc", [130, 143, 1])
def test_a_figure_script_stops_with_its_interrupted_run(tmp_path, monkeypatch, rc):
    """An interrupted run (Ctrl-C 130, SIGTERM 143) ends the figure script with that status, no
    later run starts; a failed one is a one-line error."""
    from simkit.errors import UserError
    from simkit.tasks.figure import published_runs
    calls = []
    commands = {"first": ["run_dfc"], "second": ["run_dfc"]}
    with pytest.raises(SystemExit if rc != 1 else UserError) as exc:
        published_runs(tmp_path, commands, "--resume", lambda argv: calls.append(argv) or rc)
    assert len(calls) == 1
    if rc == 1:
        assert "the run of first" in str(exc.value) and "failed" in str(exc.value)
    else:
        assert exc.value.code == rc


def test_list_figures_names_every_script_of_the_figures_folder(capsys):
    from pathlib import Path

    from simkit.commands.info import FIGURES
    folder = Path(__file__).resolve().parents[1] / "figures"
    assert set(FIGURES) == {p.name for p in folder.glob("*.py")}
    code, out, _ = run_cli(capsys, "list", "figures")
    assert code == 0 and all(f"figures/{name}" in out for name in FIGURES)
    assert f"scripts: {folder}" in out


def test_list_figures_works_from_an_installed_copy(tmp_path):
    """An installed simkit holds the package only: the list comes from the package and says
    that the scripts are in the source tree."""
    import shutil
    from pathlib import Path

    import simkit
    from simkit.commands.info import FIGURES
    site = tmp_path / "site"
    shutil.copytree(Path(simkit.__file__).parent, site / "simkit",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-m", "simkit", "list", "figures"], cwd=tmp_path,
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert all(f"figures/{name}" in out.stdout for name in FIGURES)
    assert "source tree's figures/ folder (not installed" in out.stdout


def test_version_is_the_package_version(capsys):
    import simkit
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"simkit {simkit.__version__}"


@pytest.mark.parametrize("argv", [["list", "rules"], ["info"],
                                  ["train", "--dataset", "linear_regression", "--hidden", "8",
                                   "--epochs", "3", "--backend", "numpy", "--threads", "1"]],
                         ids=["list", "info", "train"])
def test_a_closed_pipe_ends_quietly_with_141(tmp_path, argv):
    """``simkit ... | head -1``: output into a pipe whose reader has gone ends the command with
    128 + SIGPIPE, as Unix tools do, without a traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)                                # the reader is gone before the first line
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.environ.get("PYTHONPATH")]))}
    extra = ["--out-dir", str(tmp_path / "run")] if argv[0] == "train" else []
    try:
        proc = subprocess.run([sys.executable, "-m", "simkit", *argv, *extra], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 141 and "Traceback" not in proc.stderr, proc.stderr
