"""DFC / Strong-DFC against numbers recorded from the original (tests/golden/dfc/)."""
import json

import numpy as np
import pytest

from simkit.dynamics.controller import Learning, controller_inputs, simulate_reference
from simkit.kernels.dfc import simulate
from simkit.nn import MLP
from simkit.nn.losses import get_loss
from simkit.rules import dfc_feedback as fbk
from simkit.rules.dfc import DFC, dynamics

from helpers import GOLDEN_DIR, numba_backend, numpy_backend

GOLDEN = GOLDEN_DIR / "dfc"
KEYS = ("dt_di", "tmax_di", "time_constant_ratio", "apical_time_constant", "alpha_di", "k_p",
        "inst_transmission", "sigma", "sigma_output")
CASES = ("dfc_forward_phase", "strong_dfc_forward_phase", "feedback_phase")


def load(case):
    z = np.load(GOLDEN / f"{case}.npz")
    o = json.loads((GOLDEN / f"{case}.json").read_text())["options_after_post_processing"]
    opts = {k: o[k] for k in KEYS}
    opts.update({k + "_fb": o[k + "_fb"] for k in KEYS if k + "_fb" in o})
    opts["inst_transmission_fb"] = o["inst_transmission_fb"]
    opts.update({k: o[k] for k in ("proactive_controller", "target_stepsize", "strong_feedback",
                                   "error_as_loss_grad", "alpha_di_fb", "k_p_fb")})
    return z, opts


def golden_net(bk, z):
    net = MLP(bk, [6, 5, 4, 3], "tanh", "linear", rng=np.random.default_rng(0))
    for l in range(3):
        net.W[l][...] = z[f"W{l + 1}"]
        net.b[l][...] = z[f"b{l + 1}"]
    return net


def close(got, ref):
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())


def rule_for(bk, z, opts):
    net = golden_net(bk, z)
    rule = DFC(**opts, init_fb_epochs=0)
    rule.setup(net, np.random.default_rng(0))
    for l in range(3):
        rule.Q[l][...] = z[f"Q{l + 1}"]
    return net, rule


def golden_grads(bk, z, opts):
    """The rule's (dW, db) per layer on the fixture's minibatch, and the network's output."""
    net, rule = rule_for(bk, z, opts)
    cache = net.forward(z["x"])
    loss = get_loss("ce")
    t = z["y"]
    return rule.grads(net, cache, loss.grad(np, cache.y, t), t=t, loss=loss), cache.y


@pytest.mark.parametrize("case", CASES[:2])
def test_forward_phase_updates_match_original(case):
    z, opts = load(case)
    g, y = golden_grads(numpy_backend(), z, opts)
    close(y, z["r3_ff"])
    for l in range(3):
        close(g[l][0], z[f"grad_W{l + 1}"])
        close(g[l][1], z[f"grad_b{l + 1}"])


def trajectories(net, rule, z, dyn, learn, target, noise=None):
    cache = net.forward(z["x"])
    P = controller_inputs(net, rule.Q, cache, target)
    tr = {f"{k}{l + 1}_traj": [] for k in ("v", "v_ff", "v_fb", "r") for l in range(3)}
    tr["u_traj"], tr["u_int_traj"] = [], []

    def record(t, st):
        for l in range(3):
            for k in ("v", "v_ff", "v_fb", "r"):
                tr[f"{k}{l + 1}_traj"].append(getattr(st, k)[l].copy())
        tr["u_traj"].append(st.u.copy())
        tr["u_int_traj"].append(st.u_int.copy())
    from simkit.dynamics.controller import start
    record(0, start(np, P, cache.a[1:], cache.h[1:], dyn, learn, np.float64))
    st = simulate_reference(np, P, cache.a[1:], cache.h[1:], dyn, learn, noise, record=record)
    return {k: np.array(v) for k, v in tr.items()}, st, cache, P


@pytest.mark.parametrize("case", CASES[:2])
def test_forward_phase_trajectories_match_original(case):
    bk = numpy_backend()
    z, opts = load(case)
    net, rule = rule_for(bk, z, opts)
    cache = net.forward(z["x"])
    loss = get_loss("ce")
    from simkit.rules.common import output_target
    step = None if rule.o.strong_feedback else rule.o.target_stepsize
    target = output_target(np, cache.y, z["y"], step, loss.grad(np, cache.y, z["y"]))
    close(target, z["output_target"])
    tr, st, _, _ = trajectories(net, rule, z, rule.dyn, Learning(), target)
    for k, v in tr.items():
        close(v, z[k])
    close(st.u, z["u_final"])


def golden_noise(z):
    return lambda t0, t1: [z[f"noise{l}"][t0:t1] for l in (1, 2, 3)]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_feedback_phase_matches_original(backend):
    bk = numpy_backend() if backend == "numpy" else numba_backend()
    z, opts = load("feedback_phase")
    net, rule = rule_for(bk, z, opts)
    dyn = rule.dyn_fb
    assert dyn.noise == "white" and dyn.T == 44
    cache = net.forward(z["x"])
    learn = Learning(fw=None, fb="plain")
    if backend == "numpy":
        tr, st, cache, P = trajectories(net, rule, z, dyn, learn, cache.y, golden_noise(z))
        for k, v in tr.items():
            close(v, z[k])
    else:
        P = controller_inputs(net, rule.Q, cache, cache.y)
        st = simulate(bk, P, cache.a[1:], cache.h[1:], dyn, learn, golden_noise(z))
    scales = fbk.fb_scales([dyn.sigma, dyn.sigma, dyn.sigma_out], 3, False, dyn.tau_v, 0.8)
    for l in range(3):
        close(scales[l] / ((dyn.T - 1) * 4) * st.C[l], z[f"grad_Q{l + 1}"])
    close(st.u, z["u_final"])


def test_numba_kernel_matches_forward_golden():
    z, opts = load("dfc_forward_phase")
    g, _ = golden_grads(numba_backend(), z, {**opts, "kernel": "numba"})
    for l in range(3):
        close(g[l][0], z[f"grad_W{l + 1}"])
    assert dynamics(DFC(**opts).o).T == 50
