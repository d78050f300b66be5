"""DFC / Strong-DFC: limits, closed forms, stability, parity and feedback learning (issue 3)."""
import dataclasses

import numpy as np
import pytest

from simkit.dynamics.controller import (
    Dynamics,
    Learning,
    controller_inputs,
    feedback_input,
    simulate_reference,
)
from simkit.errors import UserError
from simkit.kernels.dfc import simulate
from simkit.kernels.gauss import normals, stream_key
from simkit.nn import MLP
from simkit.nn.losses import get_loss
from simkit.rules import dfc_feedback as fbk
from simkit.rules.dfc import DFC
from simkit.rules.dfc_feedback import ssa_state
from simkit.rules.dfc_updates import ss_grads

from helpers import numba_backend, numpy_backend


def small_net(bk, act="linear", sizes=(6, 5, 4, 3), seed=0):
    return MLP(bk, list(sizes), act, "linear", rng=np.random.default_rng(seed))


def problem(bk, net, Q, B=4, seed=1, step=0.1):
    rng = np.random.default_rng(seed)
    x = bk.asarray(rng.normal(size=(B, net.sizes[0])))
    cache = net.forward(x)
    target = cache.y + step * bk.asarray(rng.normal(size=cache.y.shape))
    P = controller_inputs(net, Q, cache, target)
    return cache, P


def weight_product_Q(net):
    return [net.bk.asarray(q) for q in fbk.init_Q(None, net, "weight_product")]


def settled_rule(net, T, init_fb="weight_product", **kw):
    """DFC-SS with a fast, damped controller (dt = tau_A = 0.01, tau_v 0.05, k_p 1, alpha 0.3)
    on the Numba twin, set up on ``net``; a few thousand steps reach a linear net's fixed point."""
    rule = DFC(**{**dict(ss=True, dt_di=0.01, tmax_di=T, time_constant_ratio=0.05,
                         apical_time_constant=0.01, alpha_di=0.3, k_p=1.0, target_stepsize=0.05,
                         initialization_fb=init_fb, kernel="numba"), **kw})
    rule.setup(net, np.random.default_rng(0))
    return rule


def test_linear_steady_state_equals_closed_form_and_ssa():
    bk = numba_backend()
    net = small_net(bk)
    Q = weight_product_Q(net)
    cache, P = problem(bk, net, Q)
    dyn = Dynamics(dt=0.01, T=4000, tau_v=0.05, tau_A=0.01, alpha=0.3, k_p=1.0).check()
    st = simulate(bk, P, cache.a[1:], cache.h[1:], dyn, Learning(fw=None))
    J = fbk.jacobians(np, net, cache)
    Jf, Qb = np.concatenate(J, axis=2), np.concatenate(Q, axis=0)
    delta = P["r_target"] - cache.y
    u_ss = np.linalg.solve(Jf @ Qb + dyn.alpha * np.eye(3), delta[:, :, None])[:, :, 0]
    np.testing.assert_allclose(st.u, u_ss, rtol=1e-6, atol=1e-9)
    for l in range(net.L):                                  # Delta v = Q u
        np.testing.assert_allclose(st.v[l] - st.v_ff[l], u_ss @ Q[l].T, rtol=1e-6, atol=1e-9)
    # DFC-SSA (--ssa) solves this fixed point directly: same state, same DFC-SS update
    ssa = ssa_state(np, net, cache, Q, P["r_target"], dyn)
    np.testing.assert_allclose(ssa.u, st.u, rtol=1e-6, atol=1e-9)
    for l in range(net.L):
        np.testing.assert_allclose(ssa.v[l], st.v[l], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(ssa.r[l], st.r[l], rtol=1e-6, atol=1e-9)
    for a, b in zip(ss_grads(np, net, ssa, P["x"], "nonlinear_difference"),
                    ss_grads(np, net, st, P["x"], "nonlinear_difference")):
        np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("alpha", [1e-2, 1e-4])
def test_small_alpha_gives_gauss_newton_minimum_norm_update(alpha):
    bk = numba_backend()
    net = small_net(bk)
    Q = weight_product_Q(net)                                # Q = J^T for a linear net
    cache, P = problem(bk, net, Q, step=1e-3)
    dyn = Dynamics(dt=0.1, T=1000, tau_v=0.1, tau_A=0.1, alpha=alpha, k_p=0.0,
                   inst_system=True).check()              # instant neurons, integral control
    st = simulate(bk, P, cache.a[1:], cache.h[1:], dyn, Learning(fw=None))
    J = fbk.jacobians(np, net, cache)
    dv_gn = fbk.gn_delta_v(np, J, P["r_target"] - cache.y)
    g = ss_grads(np, net, st, P["x"], "nonlinear_difference")
    angles = []
    for l in range(net.L):
        np.testing.assert_allclose(st.v[l] - st.v_ff[l], dv_gn[l], rtol=50 * alpha, atol=1e-12)
        r_in = P["x"] if l == 0 else st.r[l - 1]              # both at the steady-state rates
        angles.append(fbk.angle_deg(np, g[l][0], -(dv_gn[l].T @ r_in)))
    assert max(angles) < 100 * alpha


def test_large_alpha_gives_the_backprop_direction():
    """Gradient-descent limit (research note §5.5): with Q = J^T and alpha >> ||J Q||,
    u_ss = (J Q + alpha I)^-1 delta_L ~ delta_L / alpha, so Delta v_l = Q_l u ~ -J_l^T dL/dy / alpha
    and the DFC-SS update points along BP's gradient, at an angle that shrinks like ||J Q|| / alpha."""
    from simkit.rules.bp import Backprop
    bk = numba_backend()
    net = small_net(bk)
    Q = weight_product_Q(net)                                # Q = J^T for a linear net
    cache, P = problem(bk, net, Q)
    J = np.concatenate(fbk.jacobians(np, net, cache), axis=2)
    JQ = np.linalg.norm(J @ np.concatenate(Q, axis=0), ord=2, axis=(1, 2)).max()
    bp = Backprop().grads(net, cache, cache.y - P["r_target"])      # L = 1/2 ||r_L - r*||^2
    worst = []
    for ratio in (10.0, 1000.0):
        alpha = ratio * JQ
        dt = 0.5 / (alpha + JQ)                              # u contracts by <= 0.55 a step
        dyn = Dynamics(dt=dt, T=300, tau_v=dt, tau_A=dt, alpha=alpha, k_p=0.0,
                       inst_system=True).check()
        st = simulate(bk, P, cache.a[1:], cache.h[1:], dyn, Learning(fw=None))
        g = ss_grads(np, net, st, P["x"], "nonlinear_difference")
        worst.append(max(fbk.angle_deg(np, g[l][0], bp[l][0]) for l in range(net.L)))
    assert worst[1] < 0.2 and worst[1] < worst[0] / 20, worst


@pytest.mark.parametrize("noise,dt", [("white", 0.01), ("ou", 0.01), ("ou", 0.002)])
def test_noise_reaches_the_apical_voltages_with_its_stated_std(noise, dt):
    """Noise statistics (research note §5.9), read off v_fb with Q = 0 and tau_A = dt, where
    Eq. (2) makes v_fb the last step's noise term: white sigma sqrt(dt) / tau_A; OU the stationary
    std of n <- (a / sqrt(dt)) xi + (1 - a) n, a = dt / tau_noise, times sigma:
    sigma / sqrt(tau_noise (2 - a)), about sigma / sqrt(2 tau_noise) whatever dt; sigma_out on
    the output layer."""
    bk = numpy_backend()
    net = small_net(bk, "tanh")
    B, T, tau_noise, sigma, sigma_out = 2000, int(2.0 / dt) + 1, 0.1, 0.05, 0.2
    cache, P = problem(bk, net, [bk.xp.zeros((n, 3)) for n in net.sizes[1:]], B=B)
    dyn = Dynamics(dt=dt, T=T, tau_v=0.05, tau_A=dt, alpha=0.1, k_p=1.0, noise=noise,
                   sigma=sigma, sigma_out=sigma_out, tau_noise=tau_noise).check()
    xi = np.random.default_rng(5).normal(size=(T, B, 12))
    offs = np.cumsum([0, *net.sizes[1:]])

    def draws(t0, t1):
        return [xi[t0:t1, :, offs[l]:offs[l + 1]] for l in range(3)]
    st = simulate(bk, P, cache.a[1:], cache.h[1:], dyn, Learning(fw=None), draws)
    a = dt / tau_noise
    unit = np.sqrt(dt) / dyn.tau_A if noise == "white" else 1.0 / np.sqrt(tau_noise * (2 - a))
    hidden = np.concatenate(st.v_fb[:2], axis=1)
    np.testing.assert_allclose(hidden.std(), sigma * unit, rtol=0.02)
    np.testing.assert_allclose(st.v_fb[2].std(), sigma_out * unit, rtol=0.03)
    assert abs(hidden.mean()) < 0.03 * sigma * unit


def test_controller_settles_under_published_settings():
    """DFC's published forward settings (dt 0.02, 500 steps, tau_v 0.2, k_p 2) on a tanh net
    whose feedback satisfies the GN condition: the output reaches the target up to alpha u."""
    bk = numba_backend()
    net = small_net(bk, "tanh", (20, 16, 16, 10))
    Q = weight_product_Q(net)
    cache, P = problem(bk, net, Q, B=8, step=0.0138)
    dyn = Dynamics(dt=0.02, T=500, tau_v=0.2, tau_A=0.02, alpha=0.0017723664900917734, k_p=2.0,
                   proactive=True).check()
    st = simulate(bk, P, cache.a[1:], cache.h[1:], dyn, Learning(fw=None))
    e = P["r_target"] - st.r[-1]
    residual = np.linalg.norm(e - dyn.alpha * st.u) / np.linalg.norm(P["r_target"] - cache.y)
    assert residual < 1e-2                                  # from 1 at t = 0


def parity_case(noise, error, inst, proactive, k_p):
    bk = numpy_backend()
    net = small_net(bk, "tanh", (7, 6, 5, 4), seed=3)
    rng = np.random.default_rng(4)
    Q = [bk.asarray(rng.normal(size=(n, 4)) * 0.3) for n in net.sizes[1:]]
    cache, P = problem(bk, net, Q, B=3)
    xi = rng.normal(size=(80, 3, 15))
    offs = np.cumsum([0, 6, 5, 4])

    def draws(t0, t1):
        return [xi[t0:t1, :, offs[l]:offs[l + 1]] for l in range(3)]
    dyn = Dynamics(dt=0.01, T=80, tau_v=0.05, tau_A=0.02, alpha=0.1, k_p=k_p, proactive=proactive,
                   inst_transmission=inst, noise=noise, sigma=0.1, sigma_out=0.2, tau_noise=0.1,
                   error=error).check()
    return net, cache, P, dyn, draws


@pytest.mark.parametrize("noise,error,inst,proactive,k_p", [
    ("ou", "ce", True, True, 1.5), ("white", "mse", False, False, 0.0), ("none", "mse", True, True, 2.0)])
@pytest.mark.parametrize("fw,fb", [("nonlinear_difference", "highpass"), ("voltage_difference", "plain")])
def test_numba_euler_loop_matches_reference_on_fixed_noise(noise, error, inst, proactive, k_p, fw, fb):
    net, cache, P, dyn, draws = parity_case(noise, error, inst, proactive, k_p)
    learn = Learning(fw, fb, a_u=0.3)
    ref = simulate_reference(np, P, cache.a[1:], cache.h[1:], dyn, learn, draws)
    for bk in (numpy_backend(), numba_backend()):
        got = simulate(bk, P, cache.a[1:], cache.h[1:], dyn, learn, draws)
        for k in ("A", "Ab", "C", "v", "v_fb", "r"):
            for g, r in zip(getattr(got, k), getattr(ref, k)):
                np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-13 * np.abs(r).max())
        np.testing.assert_allclose(got.u, ref.u, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("k_p", [1.5, 0.0])
def test_high_pass_starts_at_the_first_control_as_the_originals(k_p):
    """Single phase (research note §1.9): the original high-passes u[1:] with a low pass that
    starts at u[1], u_aux[0] = u[1], u_aux[k] = a u[k+1] + (1 - a) u_aux[k-1], and pairs
    v_fb[k] with u[k+1] - u_aux[k]. Its C, recomputed from the recorded trajectory, is simkit's
    (``lp_start`` first). With k_p > 0 (published: 2) u[1] carries the kick k_p e, and a low
    pass started at zero is measurably off."""
    net, cache, P, dyn, draws = parity_case("ou", "ce", True, True, k_p)
    v_fb, u = [[np.zeros_like(a) for a in cache.a[1:]]], [np.zeros_like(cache.y)]

    def record(t, st):
        v_fb.append([a.copy() for a in st.v_fb])
        u.append(st.u.copy())
    a_u = 0.05
    st = simulate_reference(np, P, cache.a[1:], cache.h[1:], dyn, Learning(None, "highpass", a_u),
                            draws, record=record)
    u_aux = [u[1]]
    for k in range(1, dyn.T - 1):
        u_aux.append(a_u * u[k + 1] + (1 - a_u) * u_aux[-1])
    for l in range(net.L):
        C = sum(v_fb[k][l].T @ (u[k + 1] - u_aux[k]) for k in range(dyn.T - 1))
        np.testing.assert_allclose(st.C[l], C, rtol=1e-10, atol=1e-13 * np.abs(C).max())
    old = simulate_reference(np, P, cache.a[1:], cache.h[1:], dyn,
                             Learning(None, "highpass", a_u, lp_start="zero"), draws)
    assert (np.abs(old.C[-1] - st.C[-1]).max() > 0.05 * np.abs(st.C[-1]).max()) == (k_p > 0)


@pytest.mark.parametrize("loop", ["numba", "fast", "fast-chunk-kernel"])
def test_float32_kernel_runs(loop):
    from simkit.dynamics.noise import LayerDraws
    from simkit.kernels.dfc_fast import simulate_fast
    net, cache, P, dyn, draws = parity_case("ou", "mse", True, True, 1.0)
    bk = numba_backend("float32")
    f = lambda a: a.astype(np.float32)                       # noqa: E731
    P32 = {k: ([f(a) if a is not None else None for a in v] if k in ("W", "b", "Q") else
               (f(v) if isinstance(v, np.ndarray) else v)) for k, v in P.items()}

    def draws32(t0, t1):                 # LayerDraws: the chunk kernel's input
        views = [f(a) for a in draws(t0, t1)]
        return LayerDraws(views, np.concatenate(views, axis=2)) if "chunk" in loop else views
    args = (P32, [f(a) for a in cache.a[1:]], [f(h) for h in cache.h[1:]], dyn, Learning(),
            draws32)
    got = simulate(bk, *args) if loop == "numba" else simulate_fast(np, *args)
    ref = simulate_reference(np, P, cache.a[1:], cache.h[1:], dyn, Learning(), draws)
    assert got.u.dtype == np.float32 and got.r[0].dtype == np.float32
    for g, r in zip(got.r, ref.r):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got.A[1], ref.A[1], rtol=1e-3, atol=1e-4 * np.abs(ref.A[1]).max())


def test_unstable_feedback_is_counted_as_diverged_and_a_blow_up_refused():
    """Research note §5.6: the loop is stable when J Q + alpha I has eigenvalues with positive
    real part. For a linear net Q = J^T settles (every sample converged); Q = -J^T makes every
    eigenvalue negative: u grows, the samples are counted diverged, and once u overflows the run
    stops with a NumericalError that says what to do."""
    from simkit.errors import NumericalError
    bk = numba_backend()
    net = small_net(bk)
    counts = {}
    for sign, T in ((1, 2000), (-1, 400), (-1, 20000)):
        rule = settled_rule(net, T, alpha_di=0.1)
        rule.Q = [sign * q for q in rule.Q]
        cache, P = problem(bk, net, rule.Q, B=5)
        if T == 20000:
            with np.errstate(all="ignore"), pytest.raises(NumericalError, match="lower the step"):
                rule.run(cache, P["r_target"], rule.dyn, Learning(fw=None), phase=0)
            continue
        rule.run(cache, P["r_target"], rule.dyn, Learning(fw=None), phase=0)
        counts[sign] = rule.epoch_metrics(net)["net"]
    assert counts[1]["converged"] == 1.0 and counts[1]["diverged"] == 0.0
    assert counts[-1]["converged"] == 0.0 and counts[-1]["diverged"] == 1.0


@pytest.mark.parametrize("kw,what", [({"dt": 0.5, "tau_v": 0.2}, "time_constant_ratio"),
                                     ({"dt": 0.05, "tau_A": 0.01}, "apical")])
def test_too_large_euler_step_is_refused(kw, what):
    base = dict(dt=0.01, T=10, tau_v=0.2, tau_A=kw.get("dt", 0.01), alpha=0.1, k_p=1.0)
    base.update(kw)
    with pytest.raises(UserError, match=what):
        Dynamics(**base).check()
    with pytest.raises(UserError, match="larger than"):
        DFC(dt_di=0.5, time_constant_ratio=0.2, tmax_di=10)


def test_ss_shortcut_agrees_with_long_simulation():
    """As T grows the time average is dominated by the steady state: continuous -> SS update."""
    bk = numba_backend()
    net = small_net(bk, "tanh", (6, 5, 4, 3))
    Q = weight_product_Q(net)
    cache, P = problem(bk, net, Q, step=0.05)
    dyn = Dynamics(dt=0.02, T=20000, tau_v=0.05, tau_A=0.02, alpha=0.05, k_p=1.0).check()
    st = simulate(bk, P, cache.a[1:], cache.h[1:], dyn, Learning())
    g_ss = ss_grads(np, net, st, P["x"], "nonlinear_difference")
    c = -2.0 / (4 * dyn.T)
    for l in range(net.L):
        np.testing.assert_allclose(c * st.A[l], g_ss[l][0], rtol=0.01,
                                   atol=0.01 * np.abs(g_ss[l][0]).max())


class InMemory:
    """Training inputs for feedback epochs, given directly (what fbk.SplitInputs provides)."""

    def __init__(self, x, t):
        self.x, self.t = x, t

    def __len__(self):
        return len(self.x)

    def batch(self, idx):
        return self.x[idx], self.t[idx]


# the published DFC command's sleep phase, on a small tanh net (8-12-10-4)
SLEEP = dict(dt_di=0.001, time_constant_ratio=0.01, dt_di_fb=0.001142, tmax_di_fb=44,
             time_constant_ratio_fb=0.00587, alpha_di_fb=0.4, k_p_fb=0.0714,
             apical_time_constant_fb=0.14, sigma=0.0355, inst_transmission_fb=True,
             proactive_controller=True, optimizer_fb="Adam", lr_fb_init=1e-2, weight_decay_fb=0.0,
             fb_schedule={"batch_size": 32}, kernel="numba")


def test_feedback_learning_raises_condition_two():
    bk = numba_backend()
    net = small_net(bk, "tanh", (8, 12, 10, 4), seed=1)
    rule = DFC(**SLEEP, init_fb_epochs=0)
    rule.setup(net, np.random.default_rng(2))
    x = np.random.default_rng(3).normal(size=(128, 8))
    rule.data = InMemory(bk.asarray(x), bk.asarray(np.zeros((128, 4))))

    def condition():
        return fbk.condition_two(np, fbk.jacobians(np, net, net.forward(rule.data.x)), rule.Q)
    before = condition()
    for e in range(10):
        rule.epoch = e
        rule.feedback_epoch(init=True)
    assert condition() > before + 0.1


def test_pre_training_reports_condition_two_after_each_epoch():
    """--save_condition_fb (any diagnostics flag): after each feedback pre-training epoch the
    original logs condition 2 on that epoch's last minibatch and keeps the last value
    (gn_condition_init). simkit reports it with the epoch's line (the rule's ``log``), records
    it once as the first epoch's ``condition_2_init``, and a checkpoint taken before that epoch
    ends carries it."""
    bk = numba_backend()
    net = small_net(bk, "tanh", (8, 12, 10, 4), seed=1)
    opts = dict(SLEEP, init_fb_epochs=2, diagnostics=True)
    rule, lines = DFC(**opts), []
    rule.log = lines.append
    rule.setup(net, np.random.default_rng(2))
    rule.data = InMemory(bk.asarray(np.random.default_rng(3).normal(size=(100, 8))),
                         bk.asarray(np.zeros((100, 4))))
    seen, batch = [], rule.feedback_batch                    # (x, Q after its update)

    def spy(x, *a):
        cache = batch(x, *a)
        seen.append((x, [q.copy() for q in rule.Q]))
        return cache
    rule.feedback_batch = spy
    rule.begin_epoch(1)
    assert len(seen) == 12               # 2 pre-training epochs of 4 minibatches, 1 sleep epoch
    x, Q = seen[7]                       # the last pre-training minibatch
    want = fbk.condition_two(np, fbk.jacobians(np, net, net.forward(x)), Q)
    # "feedback pre-training epoch 2/2 done (1.2 s, condition 2: 0.546)"
    printed = [float(ln.rsplit(": ", 1)[1].rstrip(")")) for ln in lines if "condition 2" in ln]
    assert len(printed) == 2 and printed[1] == pytest.approx(want, abs=5e-4)
    state = rule.state_dict()
    assert rule.epoch_metrics(net)["net"]["condition_2_init"] == pytest.approx(want, rel=1e-12)
    assert "condition_2_init" not in rule.epoch_metrics(net)["net"]
    resumed = DFC(**opts)
    resumed.setup(net, np.random.default_rng(2))
    resumed.load_state_dict(state)
    assert resumed.epoch_metrics(net)["net"]["condition_2_init"] == pytest.approx(want, rel=1e-12)
    quiet, lines = DFC(**dict(opts, diagnostics=False)), []
    quiet.log = lines.append
    quiet.setup(net, np.random.default_rng(2))
    quiet.data = rule.data
    quiet.begin_epoch(1)
    assert len(lines) == 2 and not any("condition 2" in ln for ln in lines)
    assert "condition_2_init" not in quiet.epoch_metrics(net)["net"]


def test_single_phase_step_updates_Q_and_state_roundtrip():
    bk = numba_backend()
    net = small_net(bk, "tanh", (6, 5, 4, 3))
    rule = DFC(single_phase=True, strong_feedback=True, dt_di=0.001, tmax_di=60,
               time_constant_ratio=0.0093, sigma=0.0043, sigma_output=0.0297, tau_noise=0.07,
               tau_f=0.5, alpha_di=1e-5, k_p=2.0, proactive_controller=True,
               inst_transmission=True, scaling_fb_updates=True, optimizer_fb="Adam",
               lr_fb=1e-3, init_fb_epochs=0)
    assert rule.dyn.noise == "ou" and rule.dyn.error == "ce"
    rule.setup(net, np.random.default_rng(0))
    Q0 = [q.copy() for q in rule.Q]
    x = np.random.default_rng(1).normal(size=(4, 6))
    t = np.full((4, 3), 0.005) + np.eye(3)[[0, 1, 2, 0]] * 0.985
    cache, loss = net.forward(x), get_loss("ce")
    g = rule.grads(net, cache, loss.grad(np, cache.y, t), t=t, loss=loss, epoch=1)
    assert all(np.isfinite(p).all() for layer in g for p in layer)
    assert any(not np.allclose(a, b) for a, b in zip(Q0, rule.Q))
    state = rule.state_dict()
    other = DFC(single_phase=True, strong_feedback=True, dt_di=0.001, tmax_di=60,
                time_constant_ratio=0.0093, tau_noise=0.07, tau_f=0.5, optimizer_fb="Adam")
    other.setup(net, np.random.default_rng(5))
    other.load_state_dict(state)
    for a, b in zip(other.Q, rule.Q):
        np.testing.assert_array_equal(a, b)


def test_bad_option_combinations_are_refused():
    with pytest.raises(UserError, match="strong_feedback"):
        DFC(error_as_loss_grad=True)
    with pytest.raises(UserError, match="unknown DFC option"):
        DFC(not_an_option=1)
    with pytest.raises(UserError, match=r"^unknown DFC option\(s\) sigmaa \(did you mean sigma\?\)"):
        DFC(sigmaa=0.1)


@pytest.mark.parametrize("noise,error,inst,proactive,k_p", [
    ("ou", "ce", True, True, 1.5), ("white", "mse", False, False, 0.0), ("none", "mse", True, True, 2.0)])
@pytest.mark.parametrize("fw,fb", [("nonlinear_difference", "highpass"), ("voltage_difference", "plain"),
                                   (None, "plain"), (None, None)])
@pytest.mark.parametrize("apical_dt", [False, True])
@pytest.mark.parametrize("whole_rows", [False, True])
def test_fast_vectorised_loop_matches_reference(noise, error, inst, proactive, k_p, fw, fb, apical_dt,
                                                whole_rows):
    """The fast loop (tanh layers through the fused kernel, the linear output layer through array
    calls) against the readable one, with plain per-layer draws or LayerDraws (the rule's)."""
    from simkit.dynamics.noise import LayerDraws
    from simkit.kernels.dfc_fast import simulate_fast
    net, cache, P, dyn, _ = parity_case(noise, error, inst, proactive, k_p)
    dyn = dataclasses.replace(dyn, T=123,                            # not a multiple of the chunk
                              tau_A=dyn.dt if apical_dt else dyn.tau_A).check()  # tau_A = dt: v_fb = Q u
    learn = Learning(fw, fb, a_u=0.3)
    xi = np.random.default_rng(9).normal(size=(122, 3, 15))
    offs = np.cumsum([0, 6, 5, 4])

    def draws(t0, t1):
        views = [xi[t0:t1, :, offs[l]:offs[l + 1]] for l in range(3)]
        return LayerDraws(views, xi[t0:t1]) if whole_rows else views
    ref = simulate_reference(np, P, cache.a[1:], cache.h[1:], dyn, learn, draws)
    got = simulate_fast(np, P, cache.a[1:], cache.h[1:], dyn, learn, draws)
    keys = ("v", "v_fb", "v_ff", "r") + (("A", "Ab") if fw else ()) + (("C",) if fb else ())
    for k in keys:
        for g, r in zip(getattr(got, k), getattr(ref, k)):
            np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-13 * np.abs(r).max())
    np.testing.assert_allclose(got.u, ref.u, rtol=1e-12, atol=1e-14)


def test_build_hands_the_rule_the_runs_training_split(tmp_path):
    from simkit.training.config import build, load_splits, resolve_config
    cfg = resolve_config({"dataset": "student_teacher", "val_size": 10, "loss": "mse",
                          "hidden": [3], "rule": "dfc",
                          "rule_opts": {"fb_schedule": {"batch_size": 8}},
                          "dataset_opts": {"n_train": 50, "n_test": 5, "n_in": 4, "n_out": 2,
                                           "hidden": [3], "seed": 1}})
    bk = numpy_backend()
    splits, ds = load_splits(bk, cfg)
    rule = build(bk, cfg, ds, train=splits["train"])[1]
    data, bs, _ = rule.training_data()
    idx = np.array([3, 0, 17])
    x, t = data.batch(idx)
    assert len(data) == 40 and bs == 8
    np.testing.assert_array_equal(x, splits["train"].x[idx])
    np.testing.assert_array_equal(t, splits["train"].t[idx])


def test_feedback_epochs_without_training_data_say_what_to_do():
    rule = DFC(fb_schedule={"batch_size": 8})
    rule.setup(small_net(numpy_backend(), "tanh"), np.random.default_rng(0))
    with pytest.raises(UserError, match="need the training data"):
        rule.training_data()


@pytest.mark.parametrize("stream", ["counter", "numpy"])
def test_noise_stream_is_the_same_with_prefetching(stream):
    """Chunks drawn ahead on the helper thread (into reused buffers) are the stream's numbers in
    order: the counter stream's elements at offset (t B + b) N + n, or NumPy's generator."""
    bk = numpy_backend()
    net = small_net(bk, "tanh")
    rule = DFC(noisy_dynamics=True, dt_di=0.01, tmax_di=130, time_constant_ratio=0.05,
               noise_stream=stream)
    rule.setup(net, np.random.default_rng(0))
    draw = rule.noise(3, 12, 0, 129)
    got = np.concatenate([np.concatenate(draw(t0, min(t0 + 50, 129)), axis=2)
                          for t0 in range(0, 129, 50)])
    seed = [rule.noise_seed, 0, 0, 0]
    if stream == "counter":
        expected = normals(stream_key(*seed), 0, (129, 3, 12))
    else:
        ref = np.random.default_rng(seed).standard_normal
        expected = np.concatenate([ref((50, 3, 12)), ref((50, 3, 12)), ref((29, 3, 12))])
    np.testing.assert_array_equal(got, expected)
    assert np.array_equal(np.concatenate(rule.noise(3, 12, 0, 129, counter=0)(0, 50), axis=2),
                          expected[:50])                      # a replay draws the same numbers
    assert not np.array_equal(np.concatenate(rule.noise(3, 12, 0, 129)(0, 50), axis=2),
                              expected[:50])                  # the next simulation does not


def test_ssa_rule_on_a_tanh_net_is_close_to_the_simulation_and_descends():
    """On a tanh net with a small output step the linearisation is accurate: the SSA update is
    within a few degrees of the simulated steady state's, and a step along it lowers the loss."""
    bk = numba_backend()
    net = small_net(bk, "tanh", (6, 5, 4, 3))
    Q = weight_product_Q(net)
    cache, P = problem(bk, net, Q, step=1e-3)
    dyn = Dynamics(dt=0.02, T=3000, tau_v=0.05, tau_A=0.02, alpha=0.01, k_p=1.0).check()
    sim = simulate(bk, P, cache.a[1:], cache.h[1:], dyn, Learning(fw=None))
    ssa = ssa_state(np, net, cache, Q, P["r_target"], dyn)
    g_sim, g_ssa = (ss_grads(np, net, s, P["x"], "nonlinear_difference") for s in (sim, ssa))
    for a, b in zip(g_ssa, g_sim):
        assert fbk.angle_deg(np, a[0], b[0]) < 2.0
    loss = lambda: float(((net.forward(P["x"]).y - P["r_target"]) ** 2).sum())   # noqa: E731
    before = loss()
    for W, g in zip(net.W, g_ssa):
        W -= 0.5 * g[0]
    assert loss() < before


def test_ndi_diagnostics_vanish_when_the_simulation_reaches_the_linear_steady_state():
    """--save_ndi_angle / --compare_with_ndi: for a linear net simulated to its fixed point, the
    DFC-SS update is the SSA update (angle ~0) and the output is the SSA output (distance ~0);
    a simulation stopped early is measurably away from both."""
    bk = numba_backend()
    net = small_net(bk)
    rule = settled_rule(net, 4000)
    rng = np.random.default_rng(1)
    x = bk.asarray(rng.normal(size=(4, 6)))
    t = bk.asarray(rng.normal(size=(4, 3)))
    cache = net.forward(x)
    loss = get_loss("mse")
    dL = loss.grad(np, cache.y, t)
    out = []
    for T in (4000, 20):
        rule.dyn = dataclasses.replace(rule.dyn, T=T)
        r_t = cache.y - rule.o.target_stepsize * 4 * dL
        st = rule.run(cache, r_t, rule.dyn, Learning(fw=None), phase=0)
        g = ss_grads(np, net, st, x, "nonlinear_difference")
        out.append(rule.diagnose(net, cache, dL, r_t, g, st, feedback_input({"Q": rule.Q}, st.u)))
    assert out[0]["dist_to_ndi"] < 1e-6 and max(out[0][f"angle_ndi/{l}"] for l in (1, 2, 3)) < 1e-3
    assert out[1]["dist_to_ndi"] > 1e-2 and max(out[1][f"angle_ndi/{l}"] for l in (1, 2, 3)) > 0.1


def test_ratio_ff_fb_reads_the_steady_states_apical_and_basal_drives():
    """--save_ratio_ff_fb: at a linear net's settled steady state v_l = v_ff,l + Q_l u and
    v_ff,l = W_l r_{l-1} + b_l, so the diagnostic must equal the batch mean of
    ||v_l - v_ff,l|| / ||v_ff,l - b_l|| read off the simulated state (the original's divisor,
    ||r_l^-T W_l||, would not); scaling Q scales the ratio."""
    bk = numba_backend()
    net = small_net(bk, sizes=(6, 5, 5, 3))        # square W_2: the original's divisor runs too
    # xavier Q: J Q has an eigenvalue -0.27, so J Q + 0.3 I settles slowly; hence T = 20000
    rule = settled_rule(net, 20000, "xavier_normal")
    rng = np.random.default_rng(1)
    x = bk.asarray(rng.normal(size=(4, 6)))
    cache = net.forward(x)
    dL = get_loss("mse").grad(np, cache.y, bk.asarray(rng.normal(size=(4, 3))))
    r_t = cache.y - 0.2 * dL
    st = rule.run(cache, r_t, rule.dyn, Learning(fw=None), phase=0)
    g = ss_grads(np, net, st, x, "nonlinear_difference")
    out = rule.diagnose(net, cache, dL, r_t, g, st, feedback_input({"Q": rule.Q}, st.u))
    ratio = []
    for l in range(net.L):
        want = np.mean([np.linalg.norm(st.v[l][b] - st.v_ff[l][b]) /
                        np.linalg.norm(st.v_ff[l][b] - net.b[l].ravel()) for b in range(4)])
        np.testing.assert_allclose(out[f"ratio_ff_fb/{l + 1}"], want, rtol=1e-5)
        ratio.append(want)
    np.testing.assert_allclose(out["ratio_ff_fb"], np.mean(ratio), rtol=1e-6)
    orig_l2 = np.mean([np.linalg.norm(st.u[b] @ rule.Q[1].T) /      # r_2^-T W_2, the original's
                       np.linalg.norm(cache.h[2][b] @ net.W[1]) for b in range(4)])
    assert abs(orig_l2 / out["ratio_ff_fb/2"] - 1) > 0.05
    scaled = fbk.ratio_ff_fb(np, net.W, feedback_input({"Q": [3 * q for q in rule.Q]}, st.u),
                             [x, *st.r[:-1]])
    np.testing.assert_allclose(scaled, [3 * r for r in ratio], rtol=1e-6)


def test_lu_loss_is_the_epochs_mean_of_the_squared_apical_help_per_neuron():
    """The epoch metric ``lu_loss`` (the original's ``--save_lu_loss``):
    sum over the epoch's samples of ||Q u_b||^2, over (number of neurons x number of samples);
    minibatches of unequal size weigh by their samples. The original divides once more by the
    batch size (its per-batch value is already a mean, and it divides the sum by the samples)."""
    bk = numba_backend()
    net = small_net(bk, "tanh")
    rule = settled_rule(net, 300, "xavier_normal")
    finals, run = [], rule.run
    rule.run = lambda *a, **k: finals.append(run(*a, **k)) or finals[-1]
    rng, loss = np.random.default_rng(1), get_loss("mse")
    for B in (4, 2):
        cache = net.forward(rng.normal(size=(B, 6)))
        t = rng.normal(size=(B, 3))
        rule.grads(net, cache, loss.grad(np, cache.y, t), t=t, loss=loss)
    help2 = sum(((st.u @ q.T) ** 2).sum() for st in finals for q in rule.Q)
    want = help2 / (sum(net.sizes[1:]) * 6)
    np.testing.assert_allclose(rule.epoch_metrics(net)["net"]["lu_loss"], want, rtol=1e-12)
    assert "lu_loss" not in rule.epoch_metrics(net)["net"]              # reset for the next epoch


def test_surrogate_h_gradient_matches_finite_differences_with_j_held():
    """dH/dW_l of H = 1/B sum_b 1/2 ||Q u_b||^2, u_b = (J_b Q + alpha I)^-1 (r* - r_L(W))_b with
    J held at W's: central differences on a tanh net against fbk.h_grads."""
    bk = numpy_backend()
    net = small_net(bk, "tanh", seed=2)
    rng = np.random.default_rng(3)
    Q = [rng.normal(size=(n, 3)) * 0.5 for n in net.sizes[1:]]
    cache, P = problem(bk, net, Q, B=5)
    J = fbk.jacobians(np, net, cache)
    M = np.concatenate(J, axis=2) @ np.concatenate(Q, axis=0) + 0.3 * np.eye(3)
    Qb = np.concatenate(Q, axis=0)

    def u_of(y):
        return np.linalg.solve(M, (P["r_target"] - y)[:, :, None])[:, :, 0]

    def H():
        u = u_of(net.forward(P["x"]).y)
        return 0.5 * ((u @ Qb.T) ** 2).sum() / u.shape[0]
    g = fbk.h_grads(np, J, Q, u_of(cache.y), 0.3, cache.h)
    eps = 1e-6
    for l in range(net.L):
        fd = np.zeros_like(net.W[l])
        for i, j in np.ndindex(*fd.shape):
            w0 = net.W[l][i, j]
            net.W[l][i, j] = w0 + eps
            hp = H()
            net.W[l][i, j] = w0 - eps
            fd[i, j] = (hp - H()) / (2 * eps)
            net.W[l][i, j] = w0
        np.testing.assert_allclose(g[l], fd, rtol=1e-6, atol=1e-9 * np.abs(fd).max())


def test_surrogate_h_gradient_agrees_in_direction_with_resimulated_finite_differences():
    """Research note §5.10: differentiate H = 1/B sum_b 1/2 ||Q u_ss,b||^2 by re-simulating the
    tanh net's controller to its steady state for each perturbed weight (J moves with W, the
    closed form holds it fixed). The closed form's neglected term is O(|u|): the angle between
    the two is a few degrees for a small output step and shrinks about in proportion to it."""
    bk = numba_backend()
    net = small_net(bk, "tanh", seed=2)
    rule = settled_rule(net, 3000)
    rng = np.random.default_rng(3)
    rule.Q = [q + 0.1 * rng.normal(size=q.shape) for q in rule.Q]          # off J^T
    Qb = np.concatenate(rule.Q, axis=0)
    x = rng.normal(size=(5, 6))
    direction = rng.normal(size=(5, 3))

    def H(r_t):
        st = rule.run(net.forward(x), r_t, rule.dyn, Learning(fw=None), phase=1)
        return 0.5 * ((st.u @ Qb.T) ** 2).sum() / 5, st.u

    def angle(step, eps=1e-6):
        cache = net.forward(x)
        r_t = cache.y + step * direction
        g = fbk.h_grads(np, fbk.jacobians(np, net, cache), rule.Q, H(r_t)[1], 0.3, cache.h)
        fd = [np.zeros_like(w) for w in net.W]
        for l, i, j in ((k, *ij) for k in range(net.L) for ij in np.ndindex(*net.W[k].shape)):
            w0 = net.W[l][i, j]
            net.W[l][i, j] = w0 + eps
            hp = H(r_t)[0]
            net.W[l][i, j] = w0 - eps
            fd[l][i, j] = (hp - H(r_t)[0]) / (2 * eps)
            net.W[l][i, j] = w0
        return fbk.angle_deg(np, np.concatenate([a.ravel() for a in g]),
                             np.concatenate([a.ravel() for a in fd]))
    small, large = angle(0.03), angle(0.3)
    assert small < 4.0 and large > 4 * small


def test_with_q_equal_jt_and_small_alpha_the_dfc_update_descends_h():
    """Strong-DFC's claim (2022, Sec. 4): with Q = J^T and alpha -> 0, u^T Q^T Q (J Q + alpha I)^-1 J
    -> u^T J, so -dH/dW_l = Q_l u r_{l-1}^T, the DFC update: the angle between DFC's gradient and
    dH/dW shrinks with alpha; a Q off J^T leaves it open."""
    bk = numba_backend()
    net = small_net(bk)
    Q = weight_product_Q(net)                                # Q = J^T for a linear net
    cache, P = problem(bk, net, Q, step=1e-5)       # the update's r_{l-1} ~ the feed-forward's
    J = fbk.jacobians(np, net, cache)

    def worst(Q, alpha):
        dyn = Dynamics(dt=0.1, T=1000, tau_v=0.1, tau_A=0.1, alpha=alpha, k_p=0.0,
                       inst_system=True).check()
        st = fbk.ssa_state(np, net, cache, Q, P["r_target"], dyn)
        g = ss_grads(np, net, st, P["x"], "nonlinear_difference")
        h = fbk.h_grads(np, J, Q, st.u, alpha, cache.h)
        return max(fbk.angle_deg(np, g[l][0], h[l]) for l in range(net.L))
    assert worst(Q, 1e-4) < 0.01 and worst(Q, 1e-4) < worst(Q, 1e-1) / 10
    Q_off = [q + 0.5 * np.random.default_rng(l).normal(size=q.shape) for l, q in enumerate(Q)]
    assert worst(Q_off, 1e-4) > 5.0
