"""``simkit run_dfc`` / ``simkit run_dfc_single_phase``: the published command lines, verbatim."""
import json
import os
import shlex
from pathlib import Path

import numpy as np
import pytest

from simkit.cli import build_parser, main
from simkit.commands import dfc_published as published
from simkit.commands.run_dfc import build_config

DATA = Path(os.environ.get("SIMKIT_DATA", "data"))
needs_mnist = pytest.mark.skipif(not (DATA / "mnist" / "train-images-idx3-ubyte.gz").exists(),
                                 reason="MNIST not found (set SIMKIT_DATA)")

# REFERENCE.md §1, verbatim (script name dropped), kept in simkit.commands.dfc_published.
DFC = published.DFC
SINGLE = published.STRONG_SINGLE
TWO_PHASE = published.STRONG_TWO_PHASE


def parse(cmd, flags, extra=()):
    return build_parser().parse_args([cmd, *shlex.split(flags), *extra])


def test_published_commands_parse_to_the_originals_settings():
    cfg = build_config(parse("run_dfc", DFC))
    o = cfg["rule_opts"]
    assert cfg["batch_size"] == 32 and cfg["dtype"] == "float64" and cfg["beta2"] == 0.99
    assert cfg["clip_mode"] == "per_layer" and cfg["val_size"] == 5000 and cfg["beta1"] == 0.9
    assert o["tmax_di"] == 500 and o["tmax_di_fb"] == 44 and o["sigma_fb"] == -1.0
    assert o["init_fb_epochs"] == 20 and not o["single_phase"]
    a = parse("run_dfc_single_phase", SINGLE)
    a.ss, a.extra_fb_epochs = False, 0
    cfg = build_config(a, single_phase=True)
    assert cfg["batch_size"] == 128 and cfg["rule_opts"]["single_phase"]
    assert cfg["rule_opts"]["diagnostics"] and cfg["target_value"] == 0.99
    cfg = build_config(parse("run_dfc", TWO_PHASE))
    assert cfg["rule_opts"]["ss"] and cfg["rule_opts"]["strong_feedback"]
    assert cfg["rule_opts"]["adam_beta1_fb"] == 0.999


def test_apical_time_constant_fb_is_run_dfcs_alone_as_in_the_original(capsys):
    """run_dfc.py takes --apical_time_constant_fb (default: dt_di_fb); run_dfc_single_phase.py
    has no such option and refuses it, its feedback phase keeping dt_di_fb."""
    from simkit.rules.dfc_options import resolve

    def opts(cmd, flags):
        return resolve(build_config(parse(cmd, flags), single_phase=cmd != "run_dfc")["rule_opts"])
    both = "--dt_di_fb=0.01 --apical_time_constant_fb=0.3"
    assert opts("run_dfc", both).apical_time_constant_fb == 0.3
    assert opts("run_dfc", "--dt_di_fb=0.01").apical_time_constant_fb == 0.01
    assert opts("run_dfc_single_phase", "--dt_di_fb=0.01").apical_time_constant_fb == 0.01
    with pytest.raises(SystemExit) as exc:
        main(["run_dfc_single_phase", "--apical_time_constant_fb=0.3", "--test"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "unrecognized arguments: --apical_time_constant_fb" in err


def test_unstable_step_is_a_one_line_error(capsys, tmp_path):
    rc = main(["run_dfc", "--dt_di=0.5", "--time_constant_ratio=0.2", "--dataset=student_teacher",
               "--out_dir", str(tmp_path / "r"), "--test", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "time_constant_ratio" in err and "Traceback" not in err


def test_unavailable_option_combinations_are_refused(capsys, tmp_path):
    for cmd, flags, what in (("run_dfc", ["--use_jacobian_as_fb", "--noisy_dynamics"], "noisy_dynamics"),
                             ("run_dfc_single_phase", ["--ssa"], "--ssa")):
        rc = main([cmd, *flags, "--dataset=student_teacher", "--out_dir", str(tmp_path / "r"),
                   "--test", "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and what in err and "Traceback" not in err


def test_min_acc_reaches_the_configuration():
    assert build_config(parse("run_dfc", "--dataset=mnist --min_acc=0.9"))["min_acc"] == 0.9
    assert build_config(parse("run_dfc", "--dataset=mnist"))["min_acc"] == 0.0


def test_compute_jacobian_at_has_no_effect_as_in_the_original(capsys):
    a = build_config(parse("run_dfc", "--dataset=student_teacher --compute_jacobian_at=average_ss"))
    assert "no effect" in capsys.readouterr().err
    assert a == build_config(parse("run_dfc", "--dataset=student_teacher"))


@pytest.mark.parametrize("cmd,flags", [
    ("run_dfc", ["--low_pass_filter_u", "--include_only_converged_samples", "--epsilon_di=0.9"]),
    ("run_dfc", ["--use_jacobian_as_fb", "--ssa"]),
    ("run_dfc_single_phase", ["--use_jacobian_as_fb", "--strong_feedback"])])
def test_reference_loop_options_run_from_the_command_line(cmd, flags, tmp_path):
    out = tmp_path / "o"
    rc = main([cmd, *flags, "--dataset=student_teacher", "--dt_di=0.02", "--tmax_di=30",
               "--time_constant_ratio=0.2", "--k_p=2.0", "--proactive_controller",
               "--inst_transmission", "--size_hidden=8", "--hidden_activation=tanh", "--epochs=1",
               "--out_dir", str(out), "--quiet", "--teacher_num_train=32",
               "--teacher_num_test=16", "--batch_size=16", "--init_fb_epochs=1"])
    assert rc == 0
    info = json.loads((out / "run.json").read_text())
    opts = info["config"]["rule_opts"]
    assert all(opts[f.lstrip("-").split("=")[0]] not in (False, None) for f in flags)
    metrics = (out / "metrics.csv").read_text()
    assert ("converged" in metrics) == ("--ssa" not in flags)


def test_student_teacher_smoke(tmp_path, monkeypatch):
    """Two epochs of 4 minibatches; the diagnostics run on each epoch's last one, as the
    original's, and reach metrics.csv."""
    from simkit.rules.dfc import DFC
    calls, diagnose = [], DFC.diagnose
    monkeypatch.setattr(DFC, "diagnose", lambda self, *a: calls.append(1) or diagnose(self, *a))
    out = tmp_path / "st"
    rc = main(["run_dfc", "--dataset=student_teacher", "--dt_di=0.02", "--tmax_di=50",
               "--time_constant_ratio=0.2", "--k_p=2.0", "--proactive_controller",
               "--inst_transmission", "--size_hidden=8", "--hidden_activation=tanh",
               "--epochs=2", "--save_bp_angle", "--out_dir", str(out), "--quiet",
               "--teacher_num_train=64", "--teacher_num_test=32", "--batch_size=16",
               "--init_fb_epochs=1", "--extra_fb_epochs=1", "--lr_fb=1e-4", "--optimizer_fb=Adam"])
    assert rc == 0
    metrics = (out / "metrics.csv").read_text()
    assert all(k in metrics for k in ("condition_2", "angle_bp", "angle_ndi", "dist_to_ndi",
                                      "angle_H", "ratio_ff_fb"))
    assert [r.split(",")[0] for r in metrics.splitlines() if ",condition_2_init," in r] == ["1"]
    assert len(calls) == 2
    assert {r.split(",")[0] for r in metrics.splitlines() if ",angle_H," in r} == {"1", "2"}
    info = json.loads((out / "run.json").read_text())
    assert info["config"]["rule"] == "dfc"
    # the original's summary keys: the last epoch's values in metrics.csv
    last = {r.split(",")[2]: float(r.split(",")[4]) for r in metrics.splitlines()[1:]
            if r.split(",")[3] == "net"}
    assert {k: info["summary"][k] for k in ("gn_condition", "gn_condition_init", "loss_lu")} \
        == {"gn_condition": last["condition_2"], "gn_condition_init": last["condition_2_init"],
            "loss_lu": last["lu_loss"]}


@pytest.mark.parametrize("init_fb", ["weight_product", "xavier_normal"])
def test_strong_dfc_single_phase_lowers_the_surrogate_h_every_epoch(tmp_path, init_fb):
    """Strong-DFC (2022, Sec. 4; research note §5.10): training lowers the surrogate
    H = ||Q u||^2 (metric ``lu_loss``) every epoch, whether Q starts at the GN condition
    (weight product, condition 2 ~0.97) or not (xavier); from the GN condition the test loss
    falls as well (a student-teacher regression, the published single-phase flags scaled down)."""
    out = tmp_path / init_fb
    rc = main(["run_dfc_single_phase", "--dataset=student_teacher", "--double_precision",
               "--epochs=4", "--optimizer=Adam", "--adam_beta1=0.9", "--lr=0.001",
               "--size_hidden=8", "--hidden_activation=tanh", "--strong_feedback",
               "--error_as_loss_grad", "--lr_fb=1e-6", "--optimizer_fb=Adam",
               "--weight_decay_fb=0.5", "--tau_noise=0.07", "--init_fb_epochs=1",
               "--lr_fb_init=1e-6", "--scaling_fb_updates", "--proactive_controller",
               "--tau_f=0.5", "--dt_di=0.001", "--tmax_di=500", "--inst_transmission",
               "--time_constant_ratio=0.01", "--sigma=0.004", "--sigma_output=0.03",
               "--alpha_di=1e-4", "--k_p=2.0", f"--initialization_fb={init_fb}",
               "--teacher_num_train=256", "--teacher_num_test=64", "--batch_size=32",
               "--out_dir", str(out), "--quiet"])
    assert rc == 0
    rows = [r.split(",") for r in (out / "metrics.csv").read_text().splitlines()[1:]]
    h = [float(r[4]) for r in rows if r[2] == "lu_loss"]
    test_loss = [float(r[4]) for r in rows if r[1:3] == ["test", "loss"]]
    assert len(h) == 4 and all(b < a for a, b in zip(h, h[1:]))
    if init_fb == "weight_product":
        assert all(b < a for a, b in zip(test_loss, test_loss[1:]))


@needs_mnist
@pytest.mark.parametrize("cmd,flags", [("run_dfc", DFC), ("run_dfc_single_phase", SINGLE),
                                       ("run_dfc", TWO_PHASE)])
def test_published_commands_run_in_test_mode(cmd, flags, tmp_path):
    out = tmp_path / "run"
    rc = main([cmd, *shlex.split(flags), "--test", "--out_dir", str(out), "--quiet"])
    assert rc == 0
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "finished" and info["paper_command"] == cmd
    assert info["config"]["rule_opts"]["noise_stream"] == "counter"      # stored, so it resumes so


def test_noise_stream_and_highpass_start_flags_reach_the_rule():
    """``--noise_stream`` and ``--highpass_start`` pick either value, and the single phase's
    simulations get the chosen one."""
    from simkit.rules.dfc import DFC
    opts = build_config(parse("run_dfc_single_phase", SINGLE, ["--noise_stream", "numpy",
                                                               "--highpass_start", "zero"]))
    assert (opts["rule_opts"]["noise_stream"], opts["rule_opts"]["highpass_start"]) == \
        ("numpy", "zero")
    from simkit.nn import MLP

    from helpers import numba_backend
    net = MLP(numba_backend(), [6, 5, 3], "tanh", "linear", rng=np.random.default_rng(0))
    cache = net.forward(np.ones((2, 6)))
    for start in ("zero", "first"):
        rule, seen = DFC(single_phase=True, strong_feedback=True, highpass_start=start), []
        rule.setup(net, np.random.default_rng(0))
        rule.run = lambda cache, r_t, dyn, learn, phase, seen=seen: seen.append(learn) or 1 / 0
        with pytest.raises(ZeroDivisionError):
            rule.grads(net, cache, None, t=np.eye(3)[:2], loss=None)
        assert (seen[0].fb, seen[0].lp_start) == ("highpass", start)


def test_published_dfc_command_sets_the_feedback_schedule():
    cfg = build_config(parse("run_dfc", DFC))
    assert cfg["rule_opts"]["fb_schedule"] == {"batch_size": 32, "max_batches": 0}


def test_strong_feedback_error_follows_the_task():
    """-dL/dr_L is t - softmax(r) for classification, t - r for MSE tasks (the original's
    loss_function_name); simkit once used the softmax form for regression too."""
    from simkit.rules.dfc import DFC
    for dataset, error in (("mnist", "ce"), ("student_teacher", "mse"), ("mnist_autoencoder", "mse")):
        cfg = build_config(parse("run_dfc", f"--dataset={dataset} --strong_feedback --ss"))
        assert DFC(**cfg["rule_opts"]).error == error, dataset


@needs_mnist
def test_mnist_autoencoder_targets_are_the_standardised_inputs(tmp_path):
    from simkit.backend import get_backend
    from simkit.training.config import load_splits, resolve_config
    cfg = resolve_config(build_config(parse("run_dfc", "--dataset=mnist_autoencoder --test")))
    assert cfg["loss"] == "mse" and cfg["autoencode"]
    splits, ds = load_splits(get_backend("numpy", announce=False), cfg)
    assert ds.task == "regression" and ds.n_out == 784 and splits["train"].labels is None
    for part, n in (("train", 55000), ("val", 5000), ("test", 10000)):
        assert splits[part].t is splits[part].x and len(splits[part].x) == n   # one copy
    assert abs(float(splits["train"].x.mean())) < 0.05 and abs(float(splits["train"].x.std()) - 1) < 0.05
    out = tmp_path / "ae"
    rc = main(["run_dfc", "--dataset=mnist_autoencoder", "--size_hidden=32", "--tmax_di=20",
               "--dt_di=0.02", "--k_p=2.0", "--proactive_controller", "--hidden_activation=tanh",
               "--test", "--out_dir", str(out), "--quiet", "--backend", "numpy"])
    assert rc == 0
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "finished" and info["data"]["task"] == "regression"
    assert "mnist_autoencoder" in info["data"]["name"]


@pytest.mark.parametrize("cmd", ["run_dfc", "run_dfc_single_phase"])
def test_epoch_line_adds_the_feedback_phase_time_it_leaves_out(cmd, tmp_path, capsys):
    """The epoch's time covers the forward phase; the line adds the feedback phase's seconds
    (metric ``fb_seconds``): every two-phase epoch's sleep, the single phase's pre-training."""
    out = tmp_path / "r"
    assert main([cmd, "--dataset=student_teacher", "--dt_di=0.02", "--tmax_di=20",
                 "--time_constant_ratio=0.2", "--k_p=2.0", "--inst_transmission",
                 "--size_hidden=6", "--epochs=2", "--teacher_num_train=32",
                 "--teacher_num_test=16", "--batch_size=16", "--init_fb_epochs=1",
                 "--tmax_di_fb=10", "--threads=1", "--out_dir", str(out)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("epoch ")]
    fb = {r.split(",")[0]: float(r.split(",")[4]) for r in
          (out / "metrics.csv").read_text().splitlines() if ",fb_seconds," in r}
    assert f"(+ {fb['1']:.1f} s feedback phase)" in lines[1]
    assert ("feedback phase" in lines[2]) == (cmd == "run_dfc")
    assert "feedback phase" not in lines[0]


def test_run_interrupted_in_pre_training_resumes_after_its_last_pre_training_epoch(
        tmp_path, monkeypatch, capsys):
    from simkit.rules.dfc import DFC
    from simkit.training.rundir import load_arrays
    flags = ["run_dfc", "--dataset=student_teacher", "--dt_di=0.02", "--tmax_di=20",
             "--time_constant_ratio=0.2", "--k_p=2.0", "--proactive_controller",
             "--inst_transmission", "--size_hidden=6", "--hidden_activation=tanh", "--epochs=1",
             "--quiet", "--teacher_num_train=32", "--teacher_num_test=16", "--batch_size=16",
             "--init_fb_epochs=3", "--lr_fb=1e-3", "--lr_fb_init=1e-2", "--optimizer_fb=Adam",
             "--tmax_di_fb=10", "--threads=1"]
    assert main(flags + ["--out_dir", str(tmp_path / "whole")]) == 0
    real, calls = DFC.feedback_epoch, []

    def stop_in_the_second(self, init=False):
        calls.append(init)
        if len(calls) == 2:
            raise KeyboardInterrupt                       # Ctrl-C in pre-training epoch 2
        return real(self, init)
    monkeypatch.setattr(DFC, "feedback_epoch", stop_in_the_second)
    capsys.readouterr()
    assert main(flags + ["--out_dir", str(tmp_path / "cut")]) == 130
    hint = capsys.readouterr().err.split("resume with: ")[1].split()
    assert hint == ["simkit", "run_dfc", "--resume", "--out_dir", str(tmp_path / "cut")]
    cut = load_arrays(tmp_path / "cut" / "checkpoint.npz")
    assert int(cut["rule.pretrained"]) == 1                # the finished pre-training epoch kept
    monkeypatch.setattr(DFC, "feedback_epoch", real)
    assert main(hint[1:] + ["--quiet"]) == 0                # the printed command, as printed
    capsys.readouterr()
    a, b = (load_arrays(tmp_path / d / "checkpoint.npz") for d in ("whole", "cut"))
    assert int(b["rule.pretrained"]) == 3
    for key in a:
        if key.startswith(("net.", "rule.Q")):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("cmd,extra", [
    ("run_dfc", ["--extra_fb_epochs=1", "--tmax_di_fb=10", "--noisy_dynamics"]),
    ("run_dfc_single_phase", ["--strong_feedback", "--tmax_di_fb=10"])])
def test_checkpoint_inside_an_epoch_resumes_exactly(cmd, extra, tmp_path, monkeypatch):
    """Ctrl-C in the middle of epoch 2: the checkpoint taken after its second minibatch holds
    the rule's epoch state (noise counter, sums), and the resumed run neither repeats that
    epoch's sleep phase nor its first minibatches: it reaches the uninterrupted run's weights."""
    from simkit.rules.dfc import DFC
    from simkit.training.rundir import load_arrays
    flags = [cmd, "--dataset=student_teacher", "--dt_di=0.02", "--tmax_di=20",
             "--time_constant_ratio=0.2", "--k_p=2.0", "--proactive_controller",
             "--inst_transmission", "--size_hidden=6", "--hidden_activation=tanh", "--epochs=2",
             "--quiet", "--teacher_num_train=64", "--teacher_num_test=16", "--batch_size=16",
             "--init_fb_epochs=1", "--lr_fb=1e-3", "--optimizer_fb=Adam", "--sigma=0.05",
             "--threads=1", "--checkpoint-minutes=1e-9", *extra]
    assert main(flags + ["--out_dir", str(tmp_path / "whole")]) == 0
    real, calls = DFC.grads, []

    def stop(self, *a, **kw):
        calls.append(self.epoch)
        if calls.count(2) == 3:
            raise KeyboardInterrupt                       # in epoch 2's third minibatch
        return real(self, *a, **kw)
    monkeypatch.setattr(DFC, "grads", stop)
    assert main(flags + ["--out_dir", str(tmp_path / "cut")]) == 130
    cut = load_arrays(tmp_path / "cut" / "checkpoint.npz")
    assert list(cut["meta.partial"][:2]) == [2, 2]
    monkeypatch.setattr(DFC, "grads", real)
    sleeps = []
    monkeypatch.setattr(DFC, "feedback_epoch", lambda self, init=False: sleeps.append(init))
    assert main([cmd, "--resume", "--out_dir", str(tmp_path / "cut"), "--quiet"]) == 0
    assert sleeps == []                                  # epoch 2's sleep phase is not repeated
    a, b = (load_arrays(tmp_path / d / "checkpoint.npz") for d in ("whole", "cut"))
    for key in a:
        if key.startswith(("net.", "rule.Q", "opt.")):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
