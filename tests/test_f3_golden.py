"""simkit's F³ / DFA / DRTP / BP / LLO against numbers recorded from the original F³ code.

The fixtures (tests/golden/f3, README there) hold a 6-5-5-3 tanh/sigmoid network, its
feedback matrices and three minibatch steps (s1, s2 in epoch 1; s3 revisits s1's samples in
epoch 2, so its delayed buffer rows were written at s1). Each case is replayed with simkit's
rule, BCE loss and Adam (lr 0.01), on the numpy and the numba backend, and every recorded
quantity is compared at the README's tolerances: gradients, E, G, buffers and outputs rtol 1e-10,
atol 1e-13; parameters after Adam atol 1e-10.
"""
import json
import math

import numpy as np
import pytest

from simkit.nn import MLP, get_loss
from simkit.optim import Adam
from simkit.rules import make_rule
from simkit.rules.f3 import DelayedBuffer
from simkit.rules.feedback import feedback_matrix

from helpers import GOLDEN_DIR, numba_backend, numpy_backend

GOLDEN = GOLDEN_DIR / "f3"
F3_CASES = ["f3_current_error", "f3_one_hot_target", "f3_delayed_error", "f3_delayed_loss",
            "f3_delayed_error_one_hot", "f3_delayed_loss_one_hot"]
TIGHT = dict(rtol=1e-10, atol=1e-13)
BACKENDS = {"numpy": numpy_backend, "numba": numba_backend}


def load(case):
    with np.load(GOLDEN / f"{case}.npz") as z:
        return {k: z[k] for k in z.files}


def build(case, g, bk):
    net = MLP(bk, [6, 5, 5, 3], "tanh", "sigmoid", rng=np.random.default_rng(0))
    net.load_state_dict({f"{p}{l}": g[f"{p}{l}_init"] for p in "Wb" for l in (1, 2, 3)})
    if case == "bp":
        rule = make_rule("bp")
    elif case == "llo":
        rule = make_rule("llo")
    else:
        rule = make_rule("f3", error_info=case[3:])
        rule.setup(net, np.random.default_rng(0), n_train=8)
        rule.B = [bk.asarray(g["B1"]), bk.asarray(g["B2"])]
    return net, rule


def step(net, rule, g, s, bk, epoch):
    idx = g[f"{s}_idx"].astype(np.int64)
    x, t = bk.asarray(g["X"][idx]), bk.asarray(g["T"][idx])
    loss = get_loss("bce")
    cache = net.forward(x)
    dL_dy = loss.grad(bk.xp, cache.y, t)
    return idx, cache, rule.grads(net, cache, dL_dy, t=t, loss=loss, idx=idx, epoch=epoch)


def check_gradients(g, s, grads, keys_present):
    for l in (1, 2, 3):
        if f"{s}_gW{l}" not in keys_present:
            assert grads[l - 1] is None, f"{s}: layer {l} must get no update"
            continue
        np.testing.assert_allclose(grads[l - 1][0], g[f"{s}_gW{l}"], **TIGHT, err_msg=f"{s} gW{l}")
        np.testing.assert_allclose(grads[l - 1][1], g[f"{s}_gb{l}"], **TIGHT, err_msg=f"{s} gb{l}")


def check_f3_state(g, s, rule, cache, rows_before):
    np.testing.assert_allclose(rows_before, g[f"{s}_buffer_rows_before"], **TIGHT) \
        if f"{s}_buffer_rows_before" in g else None
    np.testing.assert_allclose(rule.E, g[f"{s}_E"], **TIGHT, err_msg=f"{s} E")
    for l in (1, 2):
        np.testing.assert_allclose(rule.G[l - 1], g[f"{s}_G{l}"], **TIGHT, err_msg=f"{s} G{l}")
        np.testing.assert_allclose(cache.h[l], g[f"{s}_h{l}"], **TIGHT, err_msg=f"{s} h{l}")
    if f"{s}_buffer_after" in g:
        full = rule.buffer.read(np.arange(8), g["T"])
        np.testing.assert_allclose(full, g[f"{s}_buffer_after"], **TIGHT, err_msg=f"{s} buffer")


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("case", ["bp", "llo"] + F3_CASES)
def test_replay_matches_original(case, backend):
    g, bk = load(case), BACKENDS[backend]()
    net, rule = build(case, g, bk)
    opt = Adam(bk, net.params(), lr=0.01)
    for epoch, s in ((1, "s1"), (1, "s2"), (2, "s3")):
        idx = g[f"{s}_idx"].astype(np.int64)
        rows_before = (rule.buffer.read(idx, g["T"][idx]).copy()
                       if getattr(rule, "delayed", False) else None)
        _, cache, grads = step(net, rule, g, s, bk, epoch)
        np.testing.assert_allclose(cache.y, g[f"{s}_y"], **TIGHT, err_msg=f"{s} y")
        check_gradients(g, s, grads, g)
        if case.startswith("f3"):
            check_f3_state(g, s, rule, cache, rows_before)
        opt.step(net.params(), grads)
        for l in (1, 2, 3):
            np.testing.assert_allclose(net.W[l - 1], g[f"{s}_W{l}_after"], rtol=0, atol=1e-10)
            np.testing.assert_allclose(net.b[l - 1], g[f"{s}_b{l}_after"], rtol=0, atol=1e-10)


@pytest.mark.parametrize("case", F3_CASES)
def test_epoch_two_step_in_isolation(case):
    """s3 alone: s2's parameters and s3's stored buffer rows give s3's gradients (no Adam)."""
    g, bk = load(case), numpy_backend()
    net, rule = build(case, g, bk)
    net.load_state_dict({f"{p}{l}": g[f"s2_{p}{l}_after"] for p in "Wb" for l in (1, 2, 3)})
    idx = g["s3_idx"].astype(np.int64)
    if rule.delayed:
        rule.buffer.write(idx, g["s3_buffer_rows_before"])
    _, _, grads = step(net, rule, g, "s3", bk, 2)
    check_gradients(g, "s3", grads, g)
    np.testing.assert_allclose(rule.E, g["s3_E"], **TIGHT)


def test_delayed_variants_equal_drtp_in_epoch_one():
    """README: the buffer starts as T, so at s1 and s2 every delayed variant equals DRTP."""
    drtp = load("f3_one_hot_target")
    for case in F3_CASES[2:]:
        g = load(case)
        for s in ("s1", "s2"):
            for key in ("E", "gW1", "gW2", "gW3"):
                np.testing.assert_allclose(g[f"{s}_{key}"], drtp[f"{s}_{key}"], **TIGHT)


# ------------------------------------------------------------------ feedback initialisations
def feedback_golden():
    g = load("f3_feedback_init")
    return g, json.loads((GOLDEN / "f3_feedback_init.json").read_text())


@pytest.mark.parametrize("shape", ["3x5", "3x6", "3x7", "3x8", "1x5", "2x9"])
def test_identity_repeat_pm_is_exact(shape):
    g, _ = feedback_golden()
    C, H = (int(n) for n in shape.split("x"))
    B = feedback_matrix(np.random.default_rng(0), (C, H), "identity_repeat_pm")
    np.testing.assert_array_equal(B, g[f"identity_repeat_pm_{shape}"])


def draws(method, n=800, **kw):
    rng = np.random.default_rng(1)
    return np.concatenate([feedback_matrix(rng, (3, 5), method, **kw).ravel() for _ in range(n)])


def test_kaiming_uniform_bound_and_moments():
    g, _ = feedback_golden()
    bound = g["kaiming_uniform_bound"]
    assert bound == pytest.approx(1 / math.sqrt(5), abs=1e-15)
    v = draws("kaiming_uniform")
    assert v.min() >= -bound and v.max() <= bound
    assert abs(v.mean()) < 0.02 and abs(v.var() - bound ** 2 / 3) < 0.02
    assert abs(v.var() - g["kaiming_uniform_observed_mean_var"][1]) < 0.02


@pytest.mark.parametrize("name,values", [("m101", (-1.0, 0.0, 1.0)), ("01", (0.0, 1.0))])
def test_discrete_uniform_value_sets_and_frequencies(name, values):
    g, _ = feedback_golden()
    v = draws("discrete_uniform", scalar=1.0, discrete_values=values)
    np.testing.assert_array_equal(np.unique(v), g[f"discrete_{name}_value_set"])
    freq = np.array([(v == x).mean() for x in values])
    np.testing.assert_allclose(freq, 1 / len(values), atol=0.02)
    np.testing.assert_allclose(freq, g[f"discrete_{name}_observed_freq"], atol=0.02)


def test_buffer_reads_targets_until_written():
    bk = numpy_backend()
    buf = DelayedBuffer(bk, 3)                # no capacity: grows on demand
    T = np.eye(3)[[0, 1, 2, 0]]
    np.testing.assert_array_equal(buf.read(np.array([3, 1]), T[[3, 1]]), T[[3, 1]])
    buf.write(np.array([1]), np.array([[0.5, -0.5, 0.0]]))
    np.testing.assert_array_equal(buf.read(np.array([1, 2]), T[[1, 2]]), [[0.5, -0.5, 0.0], T[2]])
