"""Run directories at the edges: a file in the way, a lost or corrupt checkpoint, resuming with
other flags or more epochs, and two processes on one run (the lock)."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from simkit.cli import main
from simkit.training.rundir import RunDir, load_arrays

TINY = ["--dataset", "mnist5k", "--hidden", "16", "--batch-size", "100", "--max-batches", "3",
        "--val-size", "500", "--backend", "numpy", "--quiet"]
ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def error_line(err) -> str:
    """The one ``simkit: error:`` line of ``err``; no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("simkit: error:")]
    assert len(lines) == 1, err
    return lines[0]


def train(capsys, out, *flags):
    code, _, err = run_cli(capsys, "train", *TINY, *flags, "--out-dir", out)
    assert code == 0, err


# ------------------------------------------------------------------------------ --out-dir a file
OUT_DIR_COMMANDS = {
    "train": ["train", *TINY, "--out-dir"],
    "run_bp": ["run_bp", "--dataset", "mnist", "--epochs", "1", "--test", "--out_dir"],
    "f3": ["f3", "--depth", "1", "--width", "8", "--epochs", "1", "--quiet", "--out-dir"],
    "bdfa": ["bdfa", "-epoch", "1", "-num_layers", "1", "-num_hidden", "8", "--quiet", "-save"],
    "gait": ["gait", "--nb_epochs", "1", "--max_batches", "1", "--quiet", "--out_dir"],
}


@pytest.mark.parametrize("command", OUT_DIR_COMMANDS)
@pytest.mark.parametrize("sub", ["", "sub"])
def test_out_dir_that_is_a_file_is_one_line(tmp_path, capsys, command, sub):
    (tmp_path / "afile").write_text("not a folder\n")
    target = tmp_path / "afile" / sub if sub else tmp_path / "afile"
    if command != "train" and not (Path(os.environ.get("SIMKIT_DATA", "data")) / "mnist").exists():
        pytest.skip("needs MNIST")
    code, _, err = run_cli(capsys, *OUT_DIR_COMMANDS[command], target)
    assert code == 2
    line = error_line(err)
    assert f"{tmp_path / 'afile'} is a file, not a folder" in line
    assert "choose another run directory" in line


# ------------------------------------------------------------------------------ lost checkpoint
def test_resume_without_checkpoint_after_trained_epochs_is_refused(tmp_path, capsys):
    train(capsys, tmp_path / "r", "--epochs", "2")
    (tmp_path / "r" / "checkpoint.npz").unlink()
    code, _, err = run_cli(capsys, "train", "--resume", tmp_path / "r", "--quiet")
    assert code == 2
    line = error_line(err)
    assert "metrics.csv holds results up to epoch 2 but checkpoint.npz is missing" in line
    assert "restore checkpoint.npz, or start a new run" in line
    assert RunDir(tmp_path / "r").read_info()["status"] == "finished"      # nothing rewritten


def test_resume_without_checkpoint_before_any_epoch_starts_over(tmp_path, capsys):
    train(capsys, tmp_path / "r", "--epochs", "1")
    run = RunDir(tmp_path / "r")
    run.checkpoint.unlink()
    run.write_metrics([r for r in run.read_metrics() if r["epoch"] == "0"])
    code, _, err = run_cli(capsys, "train", "--resume", tmp_path / "r", "--quiet")
    assert code == 0, err
    assert int(load_arrays(run.checkpoint)["meta.epoch"]) == 1


@pytest.mark.parametrize("content", [b"this is text, not a checkpoint\n", b""])
def test_corrupt_checkpoint_says_it_is_no_npz_archive(tmp_path, capsys, content):
    train(capsys, tmp_path / "r", "--epochs", "1")
    (tmp_path / "r" / "checkpoint.npz").write_bytes(content)
    code, _, err = run_cli(capsys, "train", "--resume", tmp_path / "r", "--quiet")
    assert code == 2
    line = error_line(err)
    assert f"is not a valid .npz (zip) archive ({len(content)} bytes)" in line
    assert "pickled" not in line and "restore it, or start a new run" in line


# ------------------------------------------------------------------------------ resume and flags
def test_resume_with_more_epochs_extends_a_finished_run_exactly(tmp_path, capsys):
    train(capsys, tmp_path / "whole", "--epochs", "3", "--threads", "1")   # one BLAS thread:
    train(capsys, tmp_path / "short", "--epochs", "2", "--threads", "1")   # the same sums
    code, _, err = run_cli(capsys, "train", "--resume", tmp_path / "short", "--epochs", "3",
                           "--quiet", "--threads", "1")
    assert code == 0, err
    info = RunDir(tmp_path / "short").read_info()
    assert info["status"] == "finished" and info["config"]["epochs"] == 3
    a, b = (load_arrays(tmp_path / d / "checkpoint.npz") for d in ("whole", "short"))
    assert int(b["meta.epoch"]) == 3
    for key in a:
        if key.startswith(("net.", "opt.")):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    rows = [RunDir(tmp_path / d).read_metrics() for d in ("whole", "short")]
    assert [r for r in rows[0] if r["split"] == "test"] == [r for r in rows[1] if r["split"] == "test"]
    code, _, err = run_cli(capsys, "train", "--resume", tmp_path / "short", "--quiet")
    assert code == 0, err                                   # finished at 3: nothing to do
    assert int(load_arrays(tmp_path / "short" / "checkpoint.npz")["meta.epoch"]) == 3


def test_resume_with_other_flags_is_refused_with_the_list(tmp_path, capsys):
    train(capsys, tmp_path / "r", "--epochs", "1", "--lr", "0.001")
    code, _, err = run_cli(capsys, "train", "--resume", tmp_path / "r", "--lr", "0.5",
                           "--seed", "7", "--hidden", "16", "--quiet")
    assert code == 2
    line = error_line(err)
    assert "cannot resume" in line and "--lr 0.5 (run: 0.001)" in line
    assert "--seed 7 (run: 42)" in line and "--hidden" not in line           # 16 is the run's
    assert RunDir(tmp_path / "r").read_info()["config"]["lr"] == 0.001


def test_resume_with_fewer_epochs_than_finished_is_refused(tmp_path, capsys):
    train(capsys, tmp_path / "r", "--epochs", "2")
    code, _, err = run_cli(capsys, "train", "--resume", tmp_path / "r", "--epochs", "1", "--quiet")
    assert code == 2
    assert "has finished 2 epochs, more than the 1 asked for" in error_line(err)


# ------------------------------------------------------------------------------ the lock
def simkit_process(*argv):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "simkit", *map(str, argv)],
                            stderr=subprocess.PIPE, text=True, env=env)


def test_two_resumes_of_one_run_the_second_refuses_naming_the_pid(tmp_path, capsys):
    run = tmp_path / "r"
    train(capsys, run, "--epochs", "1")
    first = simkit_process("train", "--resume", run, "--epochs", "100000", "--quiet",
                           "--threads", "1")
    lock = run / ".lock"
    try:
        deadline = time.time() + 240
        while not (lock.exists() and lock.read_text().startswith(f"{first.pid} ")):
            assert first.poll() is None and time.time() < deadline, "the first run never locked"
            time.sleep(0.1)
        second = simkit_process("train", "--resume", run, "--epochs", "100000", "--quiet")
        err = second.communicate(timeout=240)[1]
        assert second.returncode == 2, err
        line = error_line(err)
        assert f"is in use by process {first.pid} on " in line and str(lock) in line
        first.terminate()
        first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 143
    assert not lock.exists()                                 # removed at the end, whatever the exit
    assert RunDir(run).read_info()["status"] == "interrupted"


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, capsys):
    import socket
    train(capsys, tmp_path / "r", "--epochs", "1")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "r" / ".lock").write_text(f"{dead.pid} {socket.gethostname()}\n")
    code, _, err = run_cli(capsys, "train", "--resume", tmp_path / "r", "--epochs", "2", "--quiet")
    assert code == 0, err
    notes = [line for line in err.splitlines() if "stale lock" in line]
    assert len(notes) == 1 and f"process {dead.pid} on {socket.gethostname()} is gone" in notes[0]
    assert not (tmp_path / "r" / ".lock").exists()


def test_lock_left_by_a_killed_run_is_taken_over(tmp_path, capsys):
    run = tmp_path / "r"
    train(capsys, run, "--epochs", "1")
    first = simkit_process("train", "--resume", run, "--epochs", "100000", "--quiet",
                           "--threads", "1")
    try:
        deadline = time.time() + 240
        while not ((run / ".lock").exists() and (run / ".lock").read_text().strip()):
            assert first.poll() is None and time.time() < deadline, "the first run never locked"
            time.sleep(0.1)
        first.kill()                              # SIGKILL; not reaped yet: a zombie
        time.sleep(0.5)
        done = int(load_arrays(run / "checkpoint.npz")["meta.epoch"])
        code, _, err = run_cli(capsys, "train", "--resume", run, "--epochs", done + 1, "--quiet")
    finally:
        first.kill()
        first.communicate(timeout=60)
    assert code == 0, err
    assert f"taking over the stale lock of {run} (process {first.pid} on " in err
    assert not (run / ".lock").exists()


def test_lock_of_a_live_process_in_a_library_call_is_refused(tmp_path, capsys):
    from simkit.errors import UserError
    from simkit.training.lock import RunLock
    train(capsys, tmp_path / "r", "--epochs", "1")
    held = RunLock(tmp_path / "r")
    held.acquire()
    try:
        with pytest.raises(UserError, match=f"in use by process {os.getpid()}"):
            RunLock(tmp_path / "r").acquire()
    finally:
        held.release()
    assert not (tmp_path / "r" / ".lock").exists()
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "finished"


PAPER_RUNS = {   # command: (new run, resume, a flag with another value, its stored value)
    "run_bp": (["run_bp", "--dataset", "mnist", "--test", "--no_cuda", "--out_dir", "{d}"],
               ["run_bp", "--resume", "--out_dir", "{d}"], ["--lr", "0.5"], "--lr 0.5 (run: 0.1)"),
    "f3": (["f3", "--depth", "1", "--width", "8", "--epochs", "1", "--dry_run", "1", "--no_output",
            "--backend", "numpy", "--out-dir", "{d}"],
           ["f3", "--epochs", "1", "--resume", "{d}"], ["--width", "9"], "--width 9 (run: 8)"),
    "bdfa": (["bdfa", "-epoch", "1", "-num_layers", "1", "-num_hidden", "8", "-batchSize", "6000",
              "--backend", "numpy", "-save", "{d}"],
             ["bdfa", "--resume", "{d}"], ["-num_hidden", "9"], "-num_hidden 9 (run: 8)"),
    "gait": (["gait", "--nb_epochs", "1", "--max_batches", "1", "--eval_every", "0", "--eval_splits", "test",
              "--backend", "numpy", "--out_dir", "{d}"],
             ["gait", "--nb_epochs", "1", "--eval_splits", "test", "--load", "--out_dir", "{d}"],
             ["--seed", "2"],
             "--seed 2 (run: 1)"),
}


@pytest.mark.parametrize("command", PAPER_RUNS)
def test_paper_commands_refuse_a_resume_with_other_flags(tmp_path, capsys, command):
    if not (Path(os.environ.get("SIMKIT_DATA", "data")) / "mnist").exists():
        pytest.skip("needs MNIST")
    new, resume, other, shown = PAPER_RUNS[command]
    fill = [str(a).replace("{d}", str(tmp_path / "r")) for a in new]
    code, _, err = run_cli(capsys, *fill, "--quiet")
    assert code == 0, err
    again = [str(a).replace("{d}", str(tmp_path / "r")) for a in resume]
    code, _, err = run_cli(capsys, *again, *other, "--quiet")
    assert code == 2
    line = error_line(err)
    assert "cannot resume" in line and shown in line, line
    assert RunDir(tmp_path / "r").read_info()["status"] == "finished"
    code, _, err = run_cli(capsys, *again, "--quiet", "--threads", "1")
    assert code == 0, err


def test_a_figure_output_folder_below_a_file_is_one_line_before_any_compute(tmp_path, capsys):
    import argparse

    from simkit.tasks.figure import run_figure
    (tmp_path / "afile").write_text("x")
    computed = []
    args = argparse.Namespace(out=tmp_path / "afile" / "sub", threads=1, plot_only=False)
    with pytest.raises(SystemExit) as exc:
        run_figure(args, "fig", lambda a: computed.append(a) or {}, lambda res, out: None)
    assert exc.value.code == 2 and not computed
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "afile is a file, not a folder" in err[0]
