"""Fault injection: runs stopped by SIGINT, SIGTERM and SIGKILL at random moments, inside
checkpoint writes too, end with 130 / 143 (or are killed), leave no temporary file once resumed,
and resume to the weights and test metrics of a run that was never stopped.

Each run is ``simkit.cli.main`` in a forked child of this process (no interpreter start, no
imports: a few hundred runs take a minute or two). A fault is one of

* ``timer``: the parent sends the signal at a random moment after the child entered ``main``;
* ``zip_close`` / ``fsync`` / ``replace``: the child sends it to itself from within its k-th
  call of that function: inside ``np.savez`` (as zipfile closes an array's entry, where an
  exception breaks the archive), before a temporary file is renamed, or just after it, in the
  middle of a save.

A run is stopped again on resume at random, and resumed (``simkit train --resume DIR``) until it
finishes. The default suite tries 30 runs; ``-m slow`` (``.ci/run``) 240.
"""
import contextlib
import io
import os
import signal
import sys
import time
import traceback

import numpy as np
import pytest

from simkit.training.rundir import RunDir, load_arrays

from helpers import one_blas_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

TRAIN = ["train", "--dataset", "linear_regression", "--hidden", "8", "--epochs", "3",
         "--batch-size", "400", "--backend", "numpy", "--threads", "1", "--quiet",
         "--checkpoint-minutes", "1e-9"]                  # a save after every minibatch
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
SITES = ("timer", "zip_close", "fsync", "replace")
STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -signal.SIGKILL}


def _signal_inside(site: str, k: int, sig: int):
    """Make the k-th call of ``site`` send ``sig`` to this process from within the call."""
    import zipfile
    owner, name = (zipfile._ZipWriteFile, "close") if site == "zip_close" else (os, site)
    original, calls = getattr(owner, name), [0]

    def hooked(*a, **kw):
        calls[0] += 1
        if calls[0] == k and site != "replace":
            os.kill(os.getpid(), sig)
        out = original(*a, **kw)
        if calls[0] == k and site == "replace":
            os.kill(os.getpid(), sig)
        return out
    setattr(owner, name, hooked)


def run_child(argv, log, fault=None):
    """``simkit`` ``argv`` in a forked child, output to ``log``; ``fault``: ``(site, k, signal)``
    or ``("timer", delay, signal)``. Returns ``(status, signal_sent)``: the exit status, or minus
    the signal that killed the child."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:                                         # the child
        code = 1
        try:
            os.close(ready_r)
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.stdout = sys.stderr = open(1, "w", buffering=1, closefd=False)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            if fault is not None and fault[0] != "timer":
                _signal_inside(*fault)
            from simkit.cli import main
            os.write(ready_w, b"x")
            code = main(argv)
            sys.stdout.flush()
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(ready_w)
    os.read(ready_r, 1)
    os.close(ready_r)
    sent, done = fault is not None and fault[0] != "timer", 0
    if fault is not None and fault[0] == "timer":
        time.sleep(fault[1])
        done, status = os.waitpid(pid, os.WNOHANG)
        if not done:
            os.kill(pid, fault[2])
            sent = True
    if not done:
        status = os.waitpid(pid, 0)[1]
    return (os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)), sent


def random_fault(rng):
    site, sig = SITES[rng.integers(len(SITES))], SIGNALS[rng.integers(len(SIGNALS))]
    return (site, float(rng.uniform(0.0, 0.3)), sig) if site == "timer" else \
        (site, int(rng.integers(1, 13)), sig)


def trained(path) -> dict:
    """The weights, optimiser state and test metrics of the finished run in ``path``."""
    arrays = load_arrays(path / "checkpoint.npz")
    out = {k: v for k, v in arrays.items() if k.startswith(("net.", "opt."))}
    out["test"] = [r for r in RunDir(path).read_metrics() if r["split"] == "test"]
    return out


def finished(path) -> bool:
    run = RunDir(path)
    return run.exists() and run.read_info()["status"] == "finished"


def faulty_run(path, rng, log, counts):
    """One run stopped by a random fault, then stopped again at random on resume, and resumed
    until it finishes."""
    fault, attempts = random_fault(rng), 0
    while True:
        argv = TRAIN + ["--out-dir", str(path)] if not (path / "run.json").exists() else \
            ["train", "--resume", str(path), "--quiet"]
        before = set(path.glob(".*.tmp"))     # a SIGKILL's, until a resume gets to clean them
        status, sent = run_child(argv, log, fault)
        if sent and status in (0, -fault[2]) and finished(path):
            counts["finished first"] += 1       # the timer fired as the finished run exited
            return
        if sent:
            counts["stopped"] += 1
            assert status == STATUS[fault[2]], (fault, status, log.read_text()[-2000:])
            # SIGINT/SIGTERM never leave a temporary file of their own (an earlier SIGKILL's may
            # stay when the stop comes before the resume's clean-up; the final check sees it go)
            assert set(path.glob(".*.tmp")) <= before or fault[2] == signal.SIGKILL, fault
        else:
            assert status == 0, (fault, status, log.read_text()[-2000:])
            return
        attempts += 1
        fault = random_fault(rng) if attempts < 3 and rng.random() < 0.5 else None


def fault_campaign(tmp_path, n_runs, seed):
    ref = tmp_path / "uninterrupted"
    from simkit.cli import main  # here: the children inherit its caches
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(TRAIN + ["--out-dir", str(ref)]) == 0
    want = trained(ref)
    rng = np.random.default_rng(seed)
    counts = {"stopped": 0, "finished first": 0}
    for i in range(n_runs):
        path = tmp_path / f"run{i}"
        faulty_run(path, rng, tmp_path / f"run{i}.log", counts)
        assert not list(path.glob(".*.tmp")), i
        got = trained(path)
        assert got["test"] == want["test"], i
        for key in want:
            if key != "test":
                np.testing.assert_array_equal(got[key], want[key], err_msg=f"run {i}: {key}")
    print(f"{n_runs} runs, {counts['stopped']} stops, "
          f"{counts['finished first']} timers after the run's end", file=sys.__stderr__)
    assert counts["finished first"] <= n_runs // 5
    return counts


def test_runs_stopped_at_random_moments_resume_to_identical_weights(tmp_path):
    counts = fault_campaign(tmp_path, 30, seed=0)
    assert counts["stopped"] >= 24


@pytest.mark.slow
def test_hundreds_of_stopped_runs_resume_to_identical_weights(tmp_path, request):
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("run with -m slow (as .ci/run does)")
    counts = fault_campaign(tmp_path, 240, seed=1)
    assert counts["stopped"] >= 200
