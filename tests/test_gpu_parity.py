"""CuPy parity of the loops that have no elementwise CUDA twin (issues 3 and 5): the DFC
controller (``simulate_fast`` on CuPy, and the persistent kernel of simkit.kernels.dfc_cuda), the DI and SDI Euler loops, and a few online steps of the
inversion models. They run where a GPU and CuPy are present and skip elsewhere."""
import numpy as np
import pytest

from simkit.backend import _cupy_usable, get_backend
from simkit.dynamics.controller import Learning, simulate_reference
from simkit.dynamics.di import DISolver, sdi_reference

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpu():
    pytest.importorskip("cupy")
    ok, why = _cupy_usable()
    if not ok:
        pytest.skip(why)
    return get_backend("cupy", "float64", announce=False)


@pytest.mark.parametrize("noise,fw,fb", [("ou", "nonlinear_difference", "highpass"),
                                         ("none", "voltage_difference", "plain")])
def test_dfc_controller_on_cupy_matches_the_reference(gpu, noise, fw, fb):
    from simkit.kernels.dfc_fast import simulate_fast

    from test_dfc import parity_case
    net, cache, P, dyn, draws = parity_case(noise, "ce", True, True, 1.5)
    learn = Learning(fw, fb, a_u=0.3)
    ref = simulate_reference(np, P, cache.a[1:], cache.h[1:], dyn, learn, draws)
    Pg = {k: (gpu.asarray(v) if isinstance(v, np.ndarray) else
              [None if a is None else gpu.asarray(a) for a in v] if k in ("W", "b", "Q") else v)
          for k, v in P.items()}
    got = simulate_fast(gpu.xp, Pg, [gpu.asarray(a) for a in cache.a[1:]],
                        [gpu.asarray(h) for h in cache.h[1:]], dyn, learn,
                        lambda t0, t1: [gpu.asarray(x) for x in draws(t0, t1)])
    for k in ("v", "r", "A", "C"):
        for g, r in zip(getattr(got, k), getattr(ref, k)):
            np.testing.assert_allclose(gpu.to_host(g), r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("noise,fw,fb", [("ou", "nonlinear_difference", "highpass"),
                                         ("white", "voltage_difference", "plain")])
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("cluster", [None, 3])
def test_dfc_persistent_kernel_on_cupy_matches_the_reference(gpu, noise, fw, fb, stream, cluster,
                                                             monkeypatch):
    """simkit.kernels.dfc_cuda through CuPy (NVRTC): fixed draws copied in, or (``stream``)
    simkit's counter stream computed inside the kernel against the host's draws; ``cluster``:
    dfc_steps_cluster, 3 blocks a sample (needs sm_90)."""
    from simkit.kernels import dfc_cuda
    if cluster and int(gpu.xp.cuda.Device().compute_capability) < 90:
        pytest.skip("thread-block clusters need sm_90")
    monkeypatch.setattr(dfc_cuda, "CLUSTER", cluster)
    from simkit.dynamics.noise import noise_source
    from simkit.kernels.dfc_cuda import simulate_cuda

    from helpers import numpy_backend
    from test_dfc import parity_case
    net, cache, P, dyn, draws = parity_case(noise, "ce", True, True, 1.5)
    learn = Learning(fw, fb, a_u=0.3)
    host = noise_source(numpy_backend(), [1, 2], 3, [6, 5, 4], dyn.T - 1) if stream else draws
    ref = simulate_reference(np, P, cache.a[1:], cache.h[1:], dyn, learn, host)
    Pg = {k: (gpu.asarray(v) if isinstance(v, np.ndarray) else
              [None if a is None else gpu.asarray(a) for a in v] if k in ("W", "b", "Q") else v)
          for k, v in P.items()}
    dev = noise_source(gpu, [1, 2], 3, [6, 5, 4], dyn.T - 1) if stream else \
        (lambda t0, t1: [gpu.asarray(x) for x in draws(t0, t1)])
    got = simulate_cuda(gpu, Pg, [gpu.asarray(a) for a in cache.a[1:]],
                        [gpu.asarray(h) for h in cache.h[1:]], dyn, learn, dev)
    for k in ("v", "r", "A", "C"):
        for g, r in zip(getattr(got, k), getattr(ref, k)):
            np.testing.assert_allclose(gpu.to_host(g), r, rtol=1e-9, atol=1e-11)


def run_student_teacher(cmd, extra, backend, out):
    """A 2-epoch DFC run on the student-teacher task (noisy phases included); its metrics."""
    import csv

    from simkit.cli import main
    flags = [cmd, "--dataset=student_teacher", "--dt_di=0.02", "--tmax_di=60",
             "--time_constant_ratio=0.2", "--k_p=2.0", "--proactive_controller",
             "--inst_transmission", "--size_hidden=12,12", "--hidden_activation=tanh",
             "--epochs=2", "--quiet", "--teacher_num_train=64", "--teacher_num_test=16",
             "--batch_size=16", "--init_fb_epochs=1", "--lr_fb=1e-3", "--optimizer_fb=Adam",
             "--sigma=0.05", "--double_precision", "--tmax_di_fb=30", *extra]
    assert main(flags + ["--backend", backend, "--out_dir", str(out)]) == 0
    with open(out / "metrics.csv") as f:
        return {(r["epoch"], r["split"], r["metric"], r["layer"]): float(r["value"])
                for r in csv.DictReader(f)}


@pytest.mark.parametrize("cmd,extra", [
    ("run_dfc", ["--extra_fb_epochs=1", "--noisy_dynamics"]),
    ("run_dfc_single_phase", ["--strong_feedback"])])
def test_dfc_runs_on_cupy_as_on_the_cpu(gpu, cmd, extra, tmp_path):
    """Whole runs through the rule (the persistent kernel, its noise drawn inside, feedback
    learning, Adam, evaluation): every metric as on the NumPy backend."""
    cpu = run_student_teacher(cmd, extra, "numpy", tmp_path / "cpu")
    dev = run_student_teacher(cmd, extra, "cupy", tmp_path / "gpu")
    assert cpu.keys() == dev.keys() and len(cpu) > 10
    for k, v in cpu.items():
        if "seconds" not in k[2]:                                   # timings differ, of course
            assert dev[k] == pytest.approx(v, rel=1e-6, abs=1e-9), k


def test_di_and_sdi_loops_on_cupy_match_numpy(gpu):
    rng = np.random.default_rng(3)
    W = rng.uniform(-0.3, 0.3, (10, 20))
    B, delta = -W.T + 0.05 * rng.normal(size=(20, 10)), rng.normal(size=(16, 10))
    ref = DISolver(get_backend("numpy", announce=False), g="tanh")(W, B, 0.01, delta)
    got = DISolver(gpu, g="tanh")(gpu.asarray(W), gpu.asarray(B), 0.01, gpu.asarray(delta))
    np.testing.assert_allclose(gpu.to_host(got), ref, rtol=1e-10, atol=1e-12)
    W1, W2 = rng.uniform(-0.3, 0.3, (10, 20)), rng.uniform(-0.3, 0.3, (10, 10))
    Bs = -(W2 @ W1).T
    ref = sdi_reference(np, W1, W2, Bs, delta, 0.01, 0.5, 400, True)
    got = sdi_reference(gpu.xp, *(gpu.asarray(a) for a in (W1, W2, Bs, delta)), 0.01, 0.5, 400,
                        True, bk=gpu)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(gpu.to_host(g), r, rtol=1e-10, atol=1e-12)


def test_inversion_online_steps_on_cupy_match_numpy(gpu):
    from simkit.tasks.inversion import regression_task
    kw = dict(nonlinear=True, n_train=30, diag_n=0, eval_every=5)
    ref = regression_task(get_backend("numpy", announce=False), 2, **kw)
    got = regression_task(gpu, 2, **kw)
    np.testing.assert_allclose(got["error"], ref["error"], rtol=1e-8)
