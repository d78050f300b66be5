"""DFC's options: the record that holds them, the kernels' packing of them, and the original's
options that no published command uses: --low_pass_filter_u, --use_jacobian_as_fb,
--include_only_converged_samples (reference loop only)."""
import dataclasses

import numpy as np
import pytest

from simkit.dynamics.controller import Dynamics, Learning, controller_inputs, simulate_reference
from simkit.errors import UserError
from simkit.rules import dfc_feedback as fbk
from simkit.rules.dfc import DFC
from simkit.rules.dfc_updates import ss_grads

from helpers import numpy_backend
from test_dfc import problem, small_net, weight_product_Q


def run_ref(P, cache, dyn, learn=None, noise=None):
    learn = Learning(fw=None) if learn is None else learn
    return simulate_reference(np, P, cache.a[1:], cache.h[1:], dyn, learn, noise)


# --------------------------------------------------------------------------- low_pass_filter_u
@pytest.mark.parametrize("proactive", [True, False])
def test_low_pass_with_factor_one_is_the_plain_controller(proactive):
    net = small_net(numpy_backend(), "tanh", (6, 5, 4, 3))
    cache, P = problem(net.bk, net, weight_product_Q(net))
    dyn = Dynamics(dt=0.01, T=300, tau_v=0.05, tau_A=0.01, alpha=0.1, k_p=1.0,
                   proactive=proactive).check()
    plain = run_ref(P, cache, dyn, Learning())
    same = run_ref(P, cache, dataclasses.replace(dyn, lp_u=1.0), Learning())
    slow = run_ref(P, cache, dataclasses.replace(dyn, lp_u=0.05), Learning())
    for a, b, c in zip(plain.A, same.A, slow.A):
        np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-15)
        assert np.abs(c - a).max() > 1e-3 * np.abs(a).max()      # the filter changes the path


def test_low_pass_keeps_the_linear_fixed_point_and_starts_at_the_first_u():
    """u_f = u at a fixed point, so a linear net settles where the closed form says; and the
    filter starts at u[1] (not at 0), then follows u_f <- a u + (1 - a) u_f."""
    net = small_net(numpy_backend())
    Q = weight_product_Q(net)
    cache, P = problem(net.bk, net, Q)
    dyn = Dynamics(dt=0.01, T=6000, tau_v=0.05, tau_A=0.01, alpha=0.3, k_p=1.0, lp_u=0.02).check()
    seen = []
    st = simulate_reference(np, P, cache.a[1:], cache.h[1:], dyn, Learning(fw=None),
                            record=lambda t, s: seen.append((s.u.copy(), s.u_f.copy())) if t < 4 else None)
    Jf, Qb = np.concatenate(fbk.jacobians(np, net, cache), axis=2), np.concatenate(Q, axis=0)
    u_ss = np.linalg.solve(Jf @ Qb + dyn.alpha * np.eye(3), (P["r_target"] - cache.y)[:, :, None])
    np.testing.assert_allclose(st.u, u_ss[:, :, 0], rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(seen[0][1], seen[0][0])
    for (u, uf), (_, uf_old) in zip(seen[1:], seen[:-1]):
        np.testing.assert_allclose(uf, 0.02 * u + 0.98 * uf_old, rtol=1e-14)


def test_the_fast_twins_refuse_the_reference_only_options():
    from simkit.kernels.dfc import simulate
    from simkit.kernels.dfc_fast import simulate_fast

    from helpers import numba_backend
    net = small_net(numpy_backend())
    cache, P = problem(net.bk, net, weight_product_Q(net))
    dyn = Dynamics(dt=0.01, T=20, tau_v=0.05, tau_A=0.01, alpha=0.1, k_p=1.0).check()
    for d, extra in ((dataclasses.replace(dyn, lp_u=0.5), {}), (dyn, {"jacobian_fb": True}),
                     (dyn, {"mask": np.ones((4, 1))})):
        with pytest.raises(ValueError, match="simulate_reference"):
            simulate_fast(np, dict(P, **extra), cache.a[1:], cache.h[1:], d, Learning())
        with pytest.raises(ValueError, match="simulate_reference"):
            simulate(numba_backend(), dict(P, **extra), cache.a[1:], cache.h[1:], d, Learning())


def test_low_pass_step_larger_than_tau_f_is_refused():
    with pytest.raises(UserError, match="tau_f"):
        DFC(low_pass_filter_u=True, dt_di=0.1, tau_f=0.05, inst_system_dynamics=True,
            apical_time_constant=0.1)


# --------------------------------------------------------------------------- use_jacobian_as_fb
def test_jacobian_feedback_of_a_linear_net_is_the_weight_product():
    """For a linear net J^T is constant and equals prod_{j>l} W_j^T: same simulation."""
    net = small_net(numpy_backend())
    cache, P = problem(net.bk, net, weight_product_Q(net))
    dyn = Dynamics(dt=0.01, T=200, tau_v=0.05, tau_A=0.01, alpha=0.1, k_p=1.0).check()
    a = run_ref(P, cache, dyn, Learning())
    b = run_ref(dict(P, jacobian_fb=True), cache, dyn, Learning())
    for x, y in zip(a.A + a.v, b.A + b.v):
        np.testing.assert_allclose(y, x, rtol=1e-10, atol=1e-13)


def test_jacobian_feedback_on_tanh_settles_at_its_linearised_fixed_point_and_gn_limit():
    net = small_net(numpy_backend(), "tanh", (6, 5, 4, 3))
    rng = np.random.default_rng(7)
    Q = [net.bk.asarray(rng.normal(size=(n, 3))) for n in net.sizes[1:]]   # unused by J-feedback
    cache, P = problem(net.bk, net, Q, step=1e-4)
    dyn = Dynamics(dt=0.01, T=4000, tau_v=0.05, tau_A=0.01, alpha=1e-3, k_p=1.0).check()
    sim = run_ref(dict(P, jacobian_fb=True), cache, dyn)
    ssa = fbk.ssa_state(np, net, cache, Q, P["r_target"], dyn, jacobian_fb=True)
    dv_gn = fbk.gn_delta_v(np, fbk.jacobians(np, net, cache), P["r_target"] - cache.y)
    for l in range(net.L):
        dv_sim = sim.v[l] - sim.v_ff[l]
        np.testing.assert_allclose(dv_sim, ssa.v_fb[l], rtol=0.02, atol=1e-3 * np.abs(dv_gn[l]).max())
        np.testing.assert_allclose(ssa.v_fb[l], dv_gn[l], rtol=0.05, atol=1e-2 * np.abs(dv_gn[l]).max())
    plain = fbk.ssa_state(np, net, cache, Q, P["r_target"], dyn)
    assert not np.allclose(plain.v_fb[0], ssa.v_fb[0], rtol=0.1)   # the flag matters


def test_jacobian_feedback_freezes_feedback_learning_and_refuses_noise():
    rule = DFC(use_jacobian_as_fb=True, init_fb_epochs=3, extra_fb_epochs=2)
    assert rule.o.freeze_fb_weights and rule.o.init_fb_epochs == 0 and not rule.train_fb
    assert rule.o.extra_fb_epochs == 0
    single = DFC(use_jacobian_as_fb=True, single_phase=True, strong_feedback=True)
    assert single.dyn.noise == "none"                    # the single phase's noise is not forced
    with pytest.raises(UserError, match="noisy_dynamics"):
        DFC(use_jacobian_as_fb=True, noisy_dynamics=True)


# --------------------------------------------------------------------------- converged samples
def mixed_batch(noisy, fw="nonlinear_difference"):
    """A tanh net, half the batch a tiny output step (converges), half a large one (does not
    within T), and a rule simulating it."""
    bk = numpy_backend()
    net = small_net(bk, "tanh", (6, 5, 4, 3))
    rule = DFC(include_only_converged_samples=True, noisy_dynamics=noisy, dt_di=0.01, tmax_di=120,
               time_constant_ratio=0.05, alpha_di=0.1, k_p=1.0, sigma=1e-12,
               initialization_fb="weight_product", epsilon_di=0.5)
    rule.setup(net, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 6))
    cache = net.forward(x)
    step = np.array([1e-7, 1.0, 1e-7, 1.0, 1e-7, 1.0])[:, None]
    r_t = cache.y + step * rng.normal(size=cache.y.shape)
    return net, rule, cache, r_t, Learning(fw=fw)


@pytest.mark.parametrize("noisy", [False, True])
def test_only_converged_samples_give_the_converged_subsets_sums(noisy):
    net, rule, cache, r_t, learn = mixed_batch(noisy)
    st = rule.run(cache, r_t, rule.dyn, learn, phase=0)
    ok = np.array([True, False] * 3)
    assert rule.conv[0] == 3 and rule.conv[2] == 6          # the precondition: a mixed batch
    rule_diverged = rule.conv[1]
    sub = net.forward(cache.h[0][ok])
    P = controller_inputs(net, rule.Q, sub, r_t[ok])
    noise = None
    if noisy:
        full = rule.noise(6, sum(net.sizes[1:]), 0, rule.dyn.T - 1, counter=0)
        noise = lambda t0, t1: [c[:, ok] for c in full(t0, t1)]     # noqa: E731
    ref = run_ref(P, sub, rule.dyn, learn, noise)
    for a, b in zip(st.A + st.Ab, ref.A + ref.Ab):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14)
    for l in range(net.L):                                   # the others: feed-forward, u = 0
        np.testing.assert_array_equal(st.v[l][~ok], cache.a[l + 1][~ok])
        np.testing.assert_array_equal(st.r[l][~ok], cache.h[l + 1][~ok])
        np.testing.assert_allclose(st.r[l][ok], ref.r[l], rtol=1e-12)
    assert not st.u[~ok].any() and st.u[ok].any()
    out = rule.epoch_metrics(net)["net"]
    assert out["converged"] == 0.5 and out["diverged"] == rule_diverged / 6 <= 0.5


def test_without_the_flag_every_sample_counts_and_ss_updates_vanish_for_the_others():
    net, rule, cache, r_t, learn = mixed_batch(False)
    keep = DFC(**dict(rule.o.to_dict(), include_only_converged_samples=False))
    keep.setup(net, np.random.default_rng(0))
    a = keep.run(cache, r_t, keep.dyn, learn, phase=0)
    b = rule.run(cache, r_t, rule.dyn, learn, phase=0)
    assert keep.conv[0] == 3 and np.abs(a.A[1] - b.A[1]).max() > 1e-6
    g = ss_grads(np, net, b, cache.h[0], "nonlinear_difference")   # DFC-SS on the reset state
    ok = np.array([True, False] * 3)
    sub = net.forward(cache.h[0][ok])
    P = controller_inputs(net, rule.Q, sub, r_t[ok])
    g_sub = ss_grads(np, net, run_ref(P, sub, rule.dyn), sub.h[0], "nonlinear_difference")
    for l in range(net.L):                                   # mean over the full batch of 6
        np.testing.assert_allclose(g[l][0], g_sub[l][0] * 3 / 6, rtol=1e-11, atol=1e-15)


def test_options_are_a_documented_record_that_round_trips_through_json():
    """Every DFC option is a field with its default, unit and strong_dfc flag; run.json's dict
    reads back to the same options, and a misspelt key is one clear line."""
    import json

    from simkit.rules.dfc_options import DEFAULT, DFCOptions, resolve
    for f in dataclasses.fields(DFCOptions):
        assert {"unit", "doc", "flag"} <= set(f.metadata) and f.metadata["doc"], f.name
    o = resolve({"sigma": 0.1, "strong_feedback": True, "lr_fb": [0.1, 0.2]})
    assert isinstance(o, DFCOptions) and o.error_as_loss_grad and o.sigma_fb == 0.1
    assert DFCOptions.from_dict(json.loads(json.dumps(o.to_dict()))) == o
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.sigma = 0.2
    with pytest.raises(UserError) as exc:
        DFCOptions.from_dict({"tmax_dii": 3})
    assert "\n" not in str(exc.value) and "tmax_di?" in str(exc.value)
    assert DEFAULT.dt_di == 0.1 and DEFAULT.tmax_di == 10


def test_kernel_arguments_are_packed_at_their_named_places():
    """``coded`` writes each setting where the twins read it (``prm[DT]``, ``flg[FB]``, ...)."""
    from simkit.kernels import dfc as kd
    from simkit.nn.activations import get_activation
    dyn = Dynamics(dt=0.1, T=5, tau_v=0.2, tau_A=0.3, alpha=0.01, k_p=2.0, proactive=False,
                   inst_transmission=True, noise="ou", sigma=0.05, sigma_out=0.07,
                   tau_noise=0.5, error="ce")
    P = {"W": [None, None], "phi": [get_activation("tanh"), get_activation("linear")]}
    prm, flg = kd.coded(dyn, Learning(fw="voltage_difference", fb="highpass", a_u=0.4), P, 3, 7)
    assert (prm[kd.DT], prm[kd.TAU_V], prm[kd.TAU_A], prm[kd.ALPHA], prm[kd.K_P]) == \
        (0.1, 0.2, 0.3, 0.01, 2.0)
    assert (prm[kd.SIGMA], prm[kd.SIGMA_OUT], prm[kd.A_NOISE], prm[kd.A_U]) == \
        (0.05, 0.07, 0.1 / 0.5, 0.4)
    assert (flg[kd.BATCH], flg[kd.STEPS], flg[kd.PROACTIVE], flg[kd.INST_TRANSMISSION],
            flg[kd.INST_SYSTEM], flg[kd.CE]) == (3, 7, 0, 1, 0, 1)
    assert (flg[kd.NOISE], flg[kd.PHI_HIDDEN], flg[kd.PHI_OUT], flg[kd.FW], flg[kd.FB]) == \
        (kd.NOISE_OU, kd.PHI_TANH, kd.PHI_LINEAR, kd.FW_VOLTAGE, kd.FB_HIGHPASS)
