"""Quick modes of the dynamic-inversion figure scripts (Podlaski & Machens 2020, Figs. 3-4)."""
import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest

from simkit.backend import get_backend
from simkit.data import resolve_data_dir
from simkit.tasks.inversion import LINEAR_MODELS, regression_task
from simkit.training.rundir import RunDir, load_arrays

ROOT = Path(__file__).resolve().parents[1]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "figures" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _has_mnist():
    try:
        return (Path(resolve_data_dir(None)) / "mnist").is_dir()
    except Exception:
        return False


def _outputs(out, name):
    for ext in ("png", "pdf"):
        assert (out / f"{name}.{ext}").stat().st_size > 1000
    return load_arrays(out / "curves.npz")


def test_fig3_linear_quick(tmp_path):
    mod = _script("fig3_linear_regression")
    mod.main(["--quick", "--out", str(tmp_path), "--backend", "numba"])
    res = _outputs(tmp_path, mod.NAME)
    nse = res["nse_a"]
    assert nse.shape == (300, 10) and np.allclose(nse[0], nse[0, 0])   # first update skipped
    assert (nse[-1] < 0.1).all() and nse[-1, 0] > 2 * nse[-1, 3]       # PBP ahead of BP early
    j_ndi, j_di = list(res["names"]).index("NDI"), list(res["names"]).index("DI")
    np.testing.assert_allclose(nse[:, j_di], nse[:, j_ndi], rtol=2e-2)  # DI = NDI (alpha .01)
    assert np.nanmax(res["DI__abscissa"]) < 0
    mod.main(["--plot-only", "--out", str(tmp_path)])


def test_fig3_nonlinear_quick_short(tmp_path):
    mod = _script("fig3_nonlinear_regression")
    r = regression_task(get_backend("numba", "float64"), 1, nonlinear=True, n_train=60, diag_n=20)
    assert r["nse"].shape == (60, 13) and (r["nse"][-1] < r["nse"][0]).all()
    assert max(r["diag"]["DI"][-1]["ndi1"], r["diag"]["DI"][-1]["ndi2"]) < 1.0
    res = {"names": np.array(r["names"]), "steps": r["steps"], "nse": r["nse"]}
    from simkit.tasks.inversion import diag_arrays
    res.update(diag_arrays(r["diag"]))
    mod.plot(res, tmp_path)
    assert (tmp_path / f"{mod.NAME}.png").exists()


def _drawn_axes(mod, res, tmp_path, monkeypatch):
    """The axes ``mod.plot`` draws (the figure is kept instead of saved)."""
    drawn = []
    monkeypatch.setattr(mod, "save_figure", lambda f, out, name: drawn.append(f))
    mod.plot(res, tmp_path)
    (f,) = drawn
    f.canvas.draw()
    return [a for a in f.axes if a.axison]


def test_fig3_panels_label_both_axes_and_say_only_the_first_examples_are_shown(
        tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    steps, nse = np.arange(30), np.geomspace(1, 1e-2, 30)[:, None] * np.ones(3)
    for name, layers in [("fig3_linear_regression", 1), ("fig3_nonlinear_regression", 2)]:
        mod = _script(name)
        res = {"names": np.array(["BP", "DI", "SDI"]), "steps": steps, "nse": nse,
               "steps_a": steps, "nse_a": nse, "steps_b": steps, "nse_b": nse}
        for n in ("DI", "SDI"):
            res[f"{n}__abscissa"] = -rng.uniform(1e-3, 1e-1, (10, layers if n == "DI" else 1))
            for key in ("B1", "B2", "ndi1", "ndi2", "pbp1"):
                res[f"{n}__{key}"] = rng.uniform(0, 90, 10)
        axes = _drawn_axes(mod, res, tmp_path, monkeypatch)
        assert len(axes) == (6 if layers == 1 else 5)
        assert all(a.get_xlabel() and a.get_ylabel() for a in axes)
        assert sum("first 10 only" in a.get_xlabel() for a in axes) == 4      # c-f, h-k
    h = axes[1]                                            # |max Re eig| upside down, as the paper
    assert h.get_ylim()[0] > h.get_ylim()[1] and "upside down" in h.get_ylabel()
    assert all(t.get_text().startswith("$-10^") for t in h.get_yticklabels())


def test_models_in_parallel_processes_give_the_same_curves():
    """Each model has its own SSA stream, so splitting the models over processes changes nothing:
    errors, diagnostics and their order are those of one process (abscissae >= 0 would draw)."""
    from simkit.tasks.inversion import NONLINEAR_MODELS, ONLINE_COST
    from simkit.training.parallel import split_models
    groups = split_models(NONLINEAR_MODELS, 2, ONLINE_COST)
    assert sorted(sum(groups, [])) == list(range(13)) and len(groups) == 2
    bk = get_backend("numba", "float64")
    one, two = [regression_task(bk, 3, nonlinear=True, n_train=40, diag_n=10, workers=w,
                                eval_every=3) for w in (1, 2)]
    assert np.array_equal(one["error"], two["error"]) and np.array_equal(one["steps"], two["steps"])
    assert one["diag"] == two["diag"] and list(one["diag"]) == list(two["diag"])
    assert not np.allclose(one["error"][-1], one["error"][-1, 0])   # columns are distinct models


def test_sdi_angle_reference_is_ndi_with_the_fixed_per_layer_feedback():
    """Fig. 3k as the original: the NDI reference of an SDI model chains Eq. 7 (h' once) with its
    fixed per-layer B (SDI-3: the SSA-optimised B1, B2, far from -W^T), on the updated weights."""
    from simkit.dynamics.di import DISolver
    from simkit.metrics import angle_deg
    from simkit.rules.inversion import ndi_operator
    from simkit.tasks import inversion_model as inv
    from simkit.tasks.inversion import NONLINEAR_MODELS, make_diag
    bk, rng = get_backend("numpy", "float64"), np.random.default_rng(4)
    sizes, ssa = [6, 5, 4, 3], {"lr": 0.5, "maxiters": 2000, "miniters": 100}
    W0 = [rng.uniform(-0.01, 0.01, (o, i)) for i, o in itertools.pairwise(sizes)]
    specs = [s for s in NONLINEAR_MODELS if s.rule == "SDI"]
    models = inv.build_models(bk, specs, W0, [np.zeros(o) for o in sizes[1:]], rng,
                              inv.optim_feedback(W0, rng, ssa))
    cfg = inv.TaskConfig(["tanh", "tanh", "linear"], eta=0.5, clip={0: 1.0, 1: 1.0}, ssa=ssa)
    x, t, store = rng.standard_normal((1, 6)), rng.standard_normal((1, 3)), {}
    diag = make_diag(bk, cfg, store)
    for m in models:
        hs, deltas = inv.train_step(bk, m, cfg, x, t, DISolver(bk), rng)
        diag(m, hs, deltas[-1], deltas)
        row, ref = store[m.spec.name][0], deltas[-1]
        for l in (2, 1):
            ref = ndi_operator(np, m.W[l], m.B[l], m.spec.alpha, ref) * (1 - hs[l] ** 2)
            assert row[f"ndi{l}"] == pytest.approx(angle_deg(np, deltas[l - 1], ref), abs=1e-9)
            assert row[f"B{l}"] == pytest.approx(angle_deg(np, m.B[l], -m.W[l].T), abs=1e-9)
    assert min(store["SDI-3"][0]["B1"], store["SDI-3"][0]["B2"]) > 20.0


def test_float32_training_error_matches_float64():
    bk = get_backend("numpy", "float64")
    e64, e32 = [regression_task(bk, 1, nonlinear=True, n_train=50, diag_n=0, eval_every=10,
                                specs=LINEAR_MODELS[:2], eval_dtype=d)["error"]
                for d in (None, "float32")]
    np.testing.assert_allclose(e32, e64, rtol=1e-4)
    assert not np.array_equal(e32, e64)


def test_minibatch_option_runs_and_models_share_init():
    bk = get_backend("numpy", "float64")
    r = regression_task(bk, 2, n_train=64, batch=8, diag_n=0, specs=LINEAR_MODELS[:4])
    assert r["error"].shape == (8, 4) and np.allclose(r["error"][0], r["error"][0, 0])


@pytest.mark.skipif(not _has_mnist(), reason="MNIST not in $SIMKIT_DATA")
def test_fig4a_quick(tmp_path):
    mod = _script("fig4a_mnist")
    mod.main(["--quick", "--out", str(tmp_path), "--backend", "numba"])
    res = _outputs(tmp_path, mod.NAME)
    assert res["test_error"].shape == (3, 5) and (res["test_error"][-1] < 60).all()


@pytest.mark.skipif(not _has_mnist(), reason="MNIST not in $SIMKIT_DATA")
def test_fig4a_run_directory_of_other_settings_is_a_one_line_error(tmp_path, capsys):
    mod = _script("fig4a_mnist")
    mod.main(["--quick", "--out", str(tmp_path), "--backend", "numpy"])
    assert RunDir(tmp_path / "run").read_info()["status"] == "finished"
    with pytest.raises(SystemExit) as exc:
        mod.main(["--quick", "--seed", "1", "--out", str(tmp_path), "--backend", "numpy"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "other settings; choose another --out" in err
    assert "Traceback" not in err


@pytest.mark.skipif(not _has_mnist(), reason="MNIST not in $SIMKIT_DATA")
def test_fig4b_quick(tmp_path):
    mod = _script("fig4b_autoencoder")
    mod.main(["--quick", "--inits", "normal", "--out", str(tmp_path), "--backend", "numba"])
    res = _outputs(tmp_path, mod.NAME)
    assert res["normal__test_mse"].shape == (3, 5)


def test_bad_worker_count_is_a_one_line_usage_error(capsys):
    mod = _script("fig3_nonlinear_regression")
    with pytest.raises(SystemExit) as exc:
        mod.main(["--workers", "0"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--workers" in err and ">= 1" in err and "Traceback" not in err


@pytest.mark.skipif(not _has_mnist(), reason="MNIST not in $SIMKIT_DATA")
def test_fig4b_inits_in_two_processes_give_the_one_process_curves(tmp_path):
    mod = _script("fig4b_autoencoder")
    for w in ("1", "2"):
        mod.main(["--quick", "--workers", w, "--out", str(tmp_path / w), "--backend", "numba"])
    one, two = (_outputs(tmp_path / w, mod.NAME) for w in ("1", "2"))
    assert list(two["inits"]) == ["normal", "orthogonal"]
    for k in ("normal__test_mse", "orthogonal__test_mse", "normal__examples"):
        np.testing.assert_array_equal(one[k], two[k])
    assert not np.array_equal(one["normal__test_mse"], one["orthogonal__test_mse"])


def test_an_interrupted_figure_says_how_to_continue(tmp_path, monkeypatch, capsys):
    from simkit.training.signals import Terminated
    mod = _script("fig4b_autoencoder")

    def stopped(args):
        raise Terminated
    monkeypatch.setattr(mod, "compute", stopped)
    with pytest.raises(SystemExit) as exc:
        mod.main(["--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert exc.value.code == 143 and "continuing any training run" in err and "Traceback" not in err


def test_fork_map_keeps_the_order_and_uses_other_processes():
    import os

    from simkit.training.parallel import fork_map
    scale = 3                                           # a closure: nothing is pickled in

    def job(x):
        return x * scale, os.getpid()

    one = fork_map(job, range(5), 1)
    two = fork_map(job, range(5), 2)
    assert [r[0] for r in one] == [r[0] for r in two] == [0, 3, 6, 9, 12]
    assert {r[1] for r in one} == {os.getpid()}
    assert os.getpid() not in {r[1] for r in two}


def test_fork_map_gives_each_worker_its_share_of_the_cores():
    import os

    from threadpoolctl import threadpool_info, threadpool_limits

    from simkit.training.parallel import fork_map

    def blas_threads(_):
        return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")

    with threadpool_limits(limits=4, user_api="blas"):
        assert blas_threads(0) == 4
        two = fork_map(blas_threads, range(2), 2)
        one = fork_map(blas_threads, range(2), 1)
    assert two == [min(4, max(1, (os.cpu_count() or 1) // 2))] * 2
    assert one == [4, 4]                                  # in-process: left as it was
