"""Dynamic inversion (Podlaski & Machens 2020) against numbers recorded from the original code.

Fixtures: tests/golden/di/ (README.md there; wpodlaski/dynamic-inversion at c77c5ad, float64, tiny
networks). The original works on one column vector at a time; simkit takes samples as rows, so a
fixture's rows are the original's columns. W is (d_out, d_in), B has W^T's shape, errors are
target - output and updates are added, in both. The rules, the Euler loops and the training
loop run on the numpy and the numba backend; SSA and the angles are host code.

Measure (the README's): normwise relative error max|simkit - original| / max|original| per key.
* ``SAME`` (1e-13): the same arithmetic (BP, FA, the DI and SDI Euler loops, the training loop's
  forward pass, errors and updates). Measured: at most 5e-15 (the training loop's weights, which
  carry the PBP/NDI round-off of earlier steps, and the Euler-unstable DI loop, whose state
  grows), otherwise about 1e-15.
* ``SOLVE`` (1e-12): PBP and NDI, where simkit solves square systems by LU (PBP by the normal
  equations of the smaller side) and the original by ``lstsq`` (SVD); the two differ by
  round-off times the condition number. Measured: at most 2e-14.
* SSA: the same operations as the original, bit for bit (iteration counts exact) on the
  fixtures' build (numpy 2.4.6, scipy 1.17.1); ``SAME`` leaves room for another LAPACK's
  round-off, which the singular Lyapunov solves can amplify (README).
* Angles: relative 1e-12, but absolute 1e-5 degrees within 1 degree of 0 or 180, where arccos
  turns 1e-16 of round-off into 1e-6 degrees. Spectral abscissae: absolute 1e-13 (their scale
  is |M| >= 1, and the true value can be 0).
* ``DIFF`` (1e-12): an update Delta W recovered as (W_post - W_pre) / eta, where the difference
  of nearly equal weights loses digits. Measured: at most 1e-14.

What the fixtures record as the original has it (the README's quirks) and how it is met here:
* Diagnostics (angles, abscissa) after the weight update, with the step's e and h': simkit's
  :func:`simkit.tasks.inversion.make_diag` runs after the update too.
* The NDI reference of the angle panels uses each model's fixed per-layer B (quirk 3; these
  cases have no SDI model: tests/test_inversion_figures.py checks SDI's reference).
* The original's SSA mutates its argument; simkit's :func:`simkit.dynamics.ssa.ssa_opt` returns a
  new array and leaves its input alone (checked below).
* Clipping at i = 0 (quirk 4) does not show: no update happens at i = 0 and angles do not
  depend on a vector's norm.
The double h' of the nonlinear script (quirk 1) is not exercised: these cases are linear.
"""
import json

import numpy as np
import pytest

from simkit.dynamics import ssa as ssa_module
from simkit.dynamics.di import (
    DI_KERNEL,
    SDI_KERNEL,
    DISolver,
    di_abscissa,
    di_jacobian,
    sdi_reference,
    spectral_abscissa,
)
from simkit.dynamics.ssa import ssa_opt
from simkit.metrics import angle_deg
from simkit.rules.inversion import backprop_error, mat_angle
from simkit.tasks.inversion import LINEAR_MODELS, run_online, sse_eval
from simkit.tasks.inversion_model import TaskConfig, build_models, ndi_reference_delta, train_step

from helpers import GOLDEN_DIR, numba_backend, numpy_backend

GOLDEN = GOLDEN_DIR / "di"
SAME, SOLVE = 1e-13, 1e-12
DIFF = 1e-12                # an update recovered as (W_post - W_pre) / eta: cancellation
ANGLE_ATOL, ABSCISSA_ATOL = 1e-5, 1e-13
BACKENDS = {"numpy": numpy_backend, "numba": numba_backend}
DT, N_STEPS = 0.5, 1000                                 # the original's module constants


def load(case):
    with np.load(GOLDEN / f"{case}.npz") as z:
        return {k: z[k] for k in z.files}, json.loads((GOLDEN / f"{case}.json").read_text())


def assert_close(actual, expected, rtol, what=""):
    """Normwise relative error max|actual - expected| / max|expected| <= rtol."""
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    assert actual.shape == expected.shape, what
    err = np.max(np.abs(actual - expected)) / np.max(np.abs(expected))
    assert err <= rtol, f"{what}: normwise relative error {err:.2e} > {rtol:.0e}"


def assert_angle(got, want, what=""):
    """Degrees: relative 1e-12, or absolute ``ANGLE_ATOL`` within 1 degree of 0 or 180."""
    want = float(want)
    tol = ANGLE_ATOL if min(want, 180.0 - want) < 1.0 else 1e-12 * want
    assert abs(got - want) <= tol, f"{what}: {got!r} degrees, original {want!r}"


# ----------------------------------------------------------------------------------------------
# rules_unit: backprop_error for every rule, get_maxreal_eig
# ----------------------------------------------------------------------------------------------

RULES = load("rules_unit")


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("cfg", list(RULES[1]["configs"]))
def test_backprop_error_matches_original(cfg, backend):
    z, meta = RULES
    bk = BACKENDS[backend]()
    W, dh, delta = z[f"{cfg}__W"], z[f"{cfg}__dh"], z[f"{cfg}__delta"]
    feedback = {"-W^T": -W.T, "B_rand": z[f"{cfg}__B_rand"], "none": None}
    for name, o in meta["configs"][cfg]["outputs"].items():
        di = DISolver(bk, dt=DT, n_steps=N_STEPS, g=o["tfunc"])
        got = backprop_error(bk.xp, o["rule"], W, feedback[o["B"]], o["alpha"], delta, dh, di)
        tol = SOLVE if o["rule"] in ("PBP", "NDI") else SAME
        assert_close(got, z[f"{cfg}__{name}"], tol, f"{cfg} {name}")


@pytest.mark.parametrize("cfg", list(RULES[1]["configs"]))
def test_spectral_abscissa_matches_get_maxreal_eig(cfg):
    z, _ = RULES
    W = z[f"{cfg}__W"]
    for b, B in (("neg", -W.T), ("rand", z[f"{cfg}__B_rand"])):
        for alpha in (0.0, 0.01):
            want = float(z[f"{cfg}__abscissa_{b}_a{alpha}"])
            assert spectral_abscissa(di_jacobian(W, B, alpha)) == pytest.approx(want, abs=ABSCISSA_ATOL)
            assert di_abscissa(W, B, alpha) == pytest.approx(want, abs=ABSCISSA_ATOL)


# ----------------------------------------------------------------------------------------------
# di_trajectory, sdi_unit: the Euler loops step by step
# ----------------------------------------------------------------------------------------------

def di_trajectory(bk, W, B, delta, alpha, g_tanh, K):
    """r after k = 1..K steps: the DI kernel run one step at a time on a state it keeps."""
    run, xp = bk.kernel(DI_KERNEL), bk.xp
    d_out, d_in = W.shape
    u, r, info = xp.zeros((1, d_out)), xp.zeros((1, d_in)), np.zeros(2)
    dims = np.array([1, d_out, d_in], dtype=np.int64)
    out = []
    for _ in range(K):
        run(W, B, delta[None], dims, float(alpha), DT, 2, int(g_tanh), 0.0, u, r, info)
        out.append(r[0].copy())
    return np.array(out)


TRAJ = load("di_trajectory")


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("case", list(TRAJ[1]["cases"]))
def test_di_euler_trajectory_matches_original(case, backend):
    z, meta = TRAJ
    c, bk = meta["cases"][case], BACKENDS[backend]()
    W, B, delta = (np.ascontiguousarray(z[f"{case}__{k}"]) for k in ("W", "B", "delta"))
    K, tanh = c["steps"], c["g"] == "tanh"
    assert_close(di_trajectory(bk, W, B, delta, c["alpha"], tanh, K), z[f"{case}__rx_traj"],
                 SAME, f"{case} r(k)")
    for k in (1, 2, 3, 10, K):                          # "after k steps" is tsteps = k + 1
        r = DISolver(bk, dt=DT, n_steps=k + 1, g=c["g"])(W, B, c["alpha"], delta[None])
        assert_close(r[0], z[f"{case}__rx_traj"][k - 1], SAME, f"{case} DISolver k={k}")
    assert_close(r[0], z[f"{case}__rx_end"], SAME, f"{case} end")
    assert spectral_abscissa(di_jacobian(W, B, c["alpha"])) == pytest.approx(
        float(z[f"{case}__abscissa"]), abs=ABSCISSA_ATOL)
    if f"{case}__ndi" in z:
        ndi = backprop_error(np, "NDI", W, B, c["alpha"], delta[None], np.ones((1, W.shape[1])))
        assert_close(ndi[0], z[f"{case}__ndi"], SOLVE, f"{case} NDI")


SDI = load("sdi_unit")


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("case", list(SDI[1]["cases"]))
def test_sdi_loop_matches_original(case, backend):
    z, meta = SDI
    bk = BACKENDS[backend]()
    W1, W2, B, delta = (z[f"{case}__{k}"] for k in ("W1", "W2", "B", "delta"))
    assert_close(B, -W1.T @ W2.T, SAME, "B = -W1^T W2^T")
    for g in ("tanh", "linear"):
        rx, ry = sdi_reference(bk.xp, W1, W2, B, delta, meta["cases"][case]["alpha"], DT, N_STEPS,
                               g == "tanh", bk=bk)
        assert_close(rx, z[f"{case}__{g}__rx"], SAME, f"{case} {g} r_x")
        assert_close(ry, z[f"{case}__{g}__ry"], SAME, f"{case} {g} r_y")


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_sdi_trajectory_matches_original(backend):
    z, meta = SDI
    bk, case = BACKENDS[backend](), "s03_a0.01"
    W1, W2, B, delta = (np.ascontiguousarray(z[f"{case}__{k}"]) for k in ("W1", "W2", "B", "delta"))
    run, n1, n2, n3 = bk.kernel(SDI_KERNEL), W1.shape[1], W1.shape[0], W2.shape[0]
    rx, ry, rz, info = np.zeros((1, n1)), np.zeros((1, n2)), np.zeros((1, n3)), np.zeros(2)
    dims = np.array([1, n1, n2, n3], dtype=np.int64)
    xs, ys = [], []
    for _ in range(len(z["traj_tanh_s03_a0.01__rx"])):           # one step at a time
        run(W1, W2, B, delta[:1], dims, meta["cases"][case]["alpha"], DT, 2, 1, rx, ry, rz, info)
        xs.append(rx[0].copy())
        ys.append(ry[0].copy())
    assert_close(xs, z["traj_tanh_s03_a0.01__rx"], SAME, "r_x(k)")
    assert_close(ys, z["traj_tanh_s03_a0.01__ry"], SAME, "r_y(k)")


# ----------------------------------------------------------------------------------------------
# ssa_unit: SSA_opt, its iterates and iteration count
# ----------------------------------------------------------------------------------------------

def ssa_iterates(monkeypatch, W, B_in, alpha, **opts):
    """ssa_opt's result, and B and s after every iteration (index 0: the start)."""
    Bs, ss = [], []

    def jacobian(W_, B_, a):
        Bs.append(np.array(B_))
        return di_jacobian(W_, B_, a)

    def abscissa(M):
        ss.append(spectral_abscissa(M))
        return ss[-1]
    monkeypatch.setattr(ssa_module, "di_jacobian", jacobian)
    monkeypatch.setattr(ssa_module, "spectral_abscissa", abscissa)
    B = ssa_opt(W, B_in, alpha, **opts)
    monkeypatch.undo()
    return B, Bs, ss


SSA = load("ssa_unit")


@pytest.mark.parametrize("case", list(SSA[1]["cases"]))
def test_ssa_matches_original(case, monkeypatch):
    z, meta = SSA
    c = meta["cases"][case]
    W, B_in = z[f"{case}__W"], z[f"{case}__B_in"]
    B_arg = B_in.copy()
    B, Bs, ss = ssa_iterates(monkeypatch, W, B_arg, c["alpha"], lr=c["lr"],
                             maxiters=c["maxiters"], miniters=c["miniters"])
    assert len(ss) - 1 == int(z[f"{case}__iters"]) == c["iters"]
    assert_close(B, z[f"{case}__B_out"], SAME, f"{case} B")
    np.testing.assert_array_equal(B_arg, B_in)          # simkit leaves its argument alone
    assert ss[0] == pytest.approx(float(z[f"{case}__s_in"]), abs=ABSCISSA_ATOL)
    assert ss[-1] == pytest.approx(float(z[f"{case}__s_out"]), abs=ABSCISSA_ATOL)
    for k, Bk, sk in zip(z[f"{case}__snap_k"], z[f"{case}__snap_B"], z[f"{case}__snap_s"]):
        assert_close(Bs[k], Bk, SAME, f"{case} B after {k} iterations")
        assert ss[k] == pytest.approx(float(sk), abs=ABSCISSA_ATOL)


# ----------------------------------------------------------------------------------------------
# angles_unit
# ----------------------------------------------------------------------------------------------

def test_angles_match_original():
    z, _ = load("angles_unit")
    for k, (B, want) in enumerate(zip(z["B"], z["mat_angle"])):
        assert_angle(mat_angle(B, z["W"]), want, f"B[{k}] vs -W^T")
    for k, (a, b, want) in enumerate(zip(z["a"], z["b"], z["vec_angle"])):
        assert_angle(angle_deg(np, a, b), want, f"a[{k}] vs b[{k}]")


# ----------------------------------------------------------------------------------------------
# linreg_train, linreg_normdelw_train: linear_regression.py's loop, 5-4-3, 4 samples
# ----------------------------------------------------------------------------------------------

FEEDBACK = {"n/a": None, "random": "random", "neg-transpose-fa": "neg50",
            "neg-transpose": "neg-transpose", "optim": "optim"}   # the original's names: simkit's
LINREG = {case: load(case) for case in ("linreg_train", "linreg_normdelw_train")}


class Recorded:
    """Stands in for a random stream: ``uniform`` returns the original's recorded draw."""

    def __init__(self, draw):
        self.draw = draw

    def uniform(self, low, high, shape):
        assert self.draw.shape == tuple(shape) and np.abs(self.draw).max() <= high
        return self.draw.copy()


def linreg_setup(bk, case):
    """The ten models of linear_regression.py on the recorded weights and feedback, the task's
    settings, its samples as rows and the order they are seen in."""
    z, meta = LINREG[case]
    assert [(s.name, s.rule, s.alpha, s.fback) for s in LINEAR_MODELS] == [
        (n, m["rule"], m["alpha"], FEEDBACK[m["feedback"]]) for n, m in meta["models"].items()]
    W0 = [z["W0_init"], z["W1_init"]]
    b0 = [np.zeros(len(w)) for w in W0]                 # the linear script has no biases
    models = build_models(bk, LINEAR_MODELS, W0, b0, Recorded(z["B1_random_lrg"]),
                          optim_B=[None, z["B1_opt"]])
    ssa = meta["ssa_calls"][0]
    cfg = TaskConfig(["linear", "linear"], eta=meta["eta"], clip={0: 10.0},
                     norm_delW=meta["norm_delW"], skip_first=True, bias=False,
                     ssa={k: ssa[k] for k in ("lr", "maxiters", "miniters")})
    return z, models, cfg, z["x"].T.copy(), z["y_true"].T.copy(), z["input_order"]


@pytest.mark.parametrize("case", list(LINREG))
def test_linreg_initial_ssa_matches_original(case):
    z, meta = LINREG[case]
    c = meta["ssa_calls"][0]
    assert c["alpha"] == 0.0 and not c["returned_none"]
    assert_close(z["ssa_call0__W"], z["W1_init"], 0.0, "SSA ran on W1_init")
    B = ssa_opt(z["ssa_call0__W"], z["ssa_call0__B_in"], c["alpha"], lr=c["lr"],
                maxiters=c["maxiters"], miniters=c["miniters"])
    assert_close(B, z["ssa_call0__B_out"], SAME, "B1_opt")
    assert_close(B, z["B1_opt"], SAME, "B1_opt")


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("case", list(LINREG))
def test_linreg_steps_match_original(case, backend):
    """Every model's forward pass, errors, update and diagnostics vectors, step by step."""
    bk = BACKENDS[backend]()
    z, models, cfg, X, Y, order = linreg_setup(bk, case)
    di, xp, h = DISolver(bk), bk.xp, bk.to_host
    for m in models:
        name, rule, alpha = m.spec.name, m.spec.rule, m.spec.alpha
        for i, n in enumerate(order):
            rec = {k.split("__")[1]: v[i] for k, v in z.items() if k.startswith(f"{name}__")}
            assert_close(X[n], rec["x_i"], 0.0, f"{name} sample of step {i}")
            pre = [h(w).copy() for w in m.W]
            assert_close(pre[0], rec["W0_pre"], SAME, f"{name} W0 before step {i}")
            assert_close(pre[1], rec["W1_pre"], SAME, f"{name} W1 before step {i}")
            raw = backprop_error(xp, rule, m.W[1], m.B[1], alpha, bk.asarray(rec["e"][None]),
                                 xp.ones((1, m.W[1].shape[1])), di)
            hs, deltas = train_step(bk, m, cfg, bk.asarray(X[n:n + 1]), bk.asarray(Y[n:n + 1]),
                                    di, np.random.default_rng(0), update_weights=i > 0)
            for k, got in (("a1", hs[1]), ("h1", hs[1]), ("y", hs[2]), ("e", deltas[1]),
                           ("del2", deltas[1]), ("del1_raw", raw), ("del1_used", deltas[0])):
                tol = SOLVE if k == "del1_raw" and rule in ("PBP", "NDI") else SAME
                assert_close(h(got)[0], rec[k], tol, f"{name} {k} at step {i}")
            for l in (0, 1):
                assert_close(h(m.W[l]), rec[f"W{l}_post"], SAME, f"{name} W{l} after step {i}")
                if i > 0:                               # W_post - W_pre cancels: DIFF
                    assert_close((h(m.W[l]) - pre[l]) / cfg.eta, rec[f"dW{l}"], DIFF,
                                 f"{name} dW{l} at step {i}")
            if m.B[1] is not None:
                assert_close(h(m.B[1]), rec["B1_post"], 0.0, f"{name} B1 (fixed)")
            if rule == "DI":                            # the diagnostics' vectors, updated W
                nd = ndi_reference_delta(xp, m, cfg, hs, deltas[1])[0]
                pbp = backprop_error(xp, "PBP", m.W[1], None, 0.0, deltas[1], xp.ones_like(hs[1]))
                assert_close(h(nd)[0], rec["del1_ndi"], SOLVE, f"{name} NDI reference")
                assert_close(h(pbp)[0], rec["del1_pbp"], SOLVE, f"{name} PBP reference")


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("case", list(LINREG))
def test_linreg_loop_matches_original(case, backend):
    """run_online (as regression_task drives it): training-set SSE after every step, the
    diagnostics (computed after the update, as the original) and the final weights."""
    bk = BACKENDS[backend]()
    z, models, cfg, X, Y, order = linreg_setup(bk, case)
    steps, sse, diag = run_online(bk, models, cfg, X, Y, order, sse_eval(bk, cfg, X, Y),
                                  di=DISolver(bk), rng=np.random.default_rng(0),
                                  diag_n=len(order))
    assert list(steps) == list(range(len(order)))
    for j, m in enumerate(models):
        name = m.spec.name
        assert_close(sse[:, j], z[f"{name}__error"], SAME, f"{name} SSE")
        assert_close(bk.to_host(m.W[1]), z[f"{name}__W1_post"][-1], SAME, f"{name} final W1")
        if m.spec.rule != "DI":
            assert name not in diag
            continue
        for i, row in enumerate(diag[name]):
            s = float(z[f"{name}__stability"][i, 0])
            assert row["abscissa"] == [pytest.approx(s, abs=ABSCISSA_ATOL)]
            for col, k in enumerate(("B1", "ndi1", "pbp1")):
                assert_angle(row[k], z[f"{name}__angles"][i, col], f"{name} {k} at step {i}")
