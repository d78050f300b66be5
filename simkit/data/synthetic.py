"""Synthetic regression tasks: dynamic inversion's Fig. 3 tasks and DFC's student-teacher set.

Every set is a deterministic function of its options and ``seed``. Teacher weights are returned
in ``meta["teacher"]`` as a list of ``(W, b)`` with ``W`` of shape ``[d_out, d_in]``.
"""
from __future__ import annotations

import numpy as np

from simkit.data.dataset import Dataset
from simkit.errors import DataError


def _sizes(name, value, what, allow_empty=False) -> list[int]:
    """Parse ``5``, ``"5"``, ``"10,10"``, ``"[10, 10]"`` or a sequence into positive ints."""
    if isinstance(value, str):
        value = [v for v in value.strip("[]() ").replace(" ", "").split(",") if v]
    elif np.isscalar(value):
        value = [value]
    try:
        sizes = [int(v) for v in value]
    except (TypeError, ValueError):
        sizes = None
    if sizes is None or any(s < 1 for s in sizes) or (not sizes and not allow_empty):
        raise DataError(f"{name}: {what} must be positive integers (e.g. 5 or '10,10'), "
                        f"got {value!r}")
    return sizes


def _count(name, what, n) -> int:
    try:
        ok = int(n) == n and n >= 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataError(f"{name}: {what} must be an integer >= 0, got {n!r}")
    return int(n)


def _streams(name, seed, n=3):
    """``n`` independent generators derived from ``seed`` (teacher, train, test)."""
    try:
        return [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(n)]
    except (TypeError, ValueError):
        raise DataError(f"{name}: seed must be an integer >= 0, got {seed!r}") from None


def _mlp(x, layers, hidden):
    """Forward pass: ``hidden`` activation on hidden layers, linear output."""
    h = x
    for i, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if i < len(layers) - 1:
            h = hidden(h)
    return h


def linear_regression(n_train=2000, n_test=1000, dims=(30, 10), seed=0) -> Dataset:
    """Dynamic inversion Fig. 3a-f: ``y = T x``, ``T ~ U(-1, 1)`` [10, 30], ``x ~ N(0, I)``.

    No noise, no bias. The paper trains online for one pass over 2,000 samples (4,000 for 3b)
    and reports the error on the training set; the test set here is extra (``n_test=0`` is
    allowed). Teacher, training and test inputs come from independent streams of ``seed``.
    """
    sizes = _sizes("linear_regression", dims, "dims (n_in, n_out)")
    if len(sizes) != 2:
        raise DataError(f"linear_regression: dims must be (n_in, n_out), got {dims!r}")
    n_in, n_out = sizes
    n_train, n_test = _count("linear_regression", "n_train", n_train), \
        _count("linear_regression", "n_test", n_test)
    s_teacher, s_train, s_test = _streams("linear_regression", seed)
    t = s_teacher.uniform(-1.0, 1.0, (n_out, n_in))
    x_tr, x_te = s_train.standard_normal((n_train, n_in)), s_test.standard_normal((n_test, n_in))
    meta = {"teacher": [(t, np.zeros(n_out))], "seed": seed,
            "task": "dynamic inversion Fig. 3a-f: y = T x, T ~ U(-1,1), x ~ N(0, I), no noise"}
    return Dataset("linear_regression", "regression", x_tr, x_tr @ t.T, x_te, x_te @ t.T, meta=meta)


def nonlinear_regression(n_train=10000, n_test=1000, dims=(30, 20, 10, 10), weight_scale=0.01,
                         seed=0) -> Dataset:
    """Dynamic inversion Fig. 3g-k: a tanh teacher 30-20-10-10 with W, b ~ U(+-0.01), x ~ N(0, I).

    tanh on both hidden layers, linear output, no noise; the targets are tiny because the
    teacher weights are. The paper uses 10,000 samples (20,000 "for exact replication").
    """
    sizes = _sizes("nonlinear_regression", dims, "dims")
    if len(sizes) < 2 or not weight_scale > 0:
        raise DataError(f"nonlinear_regression: dims needs at least (n_in, n_out) and "
                        f"weight_scale must be > 0, got {dims!r}, {weight_scale!r}")
    n_train, n_test = _count("nonlinear_regression", "n_train", n_train), \
        _count("nonlinear_regression", "n_test", n_test)
    s_teacher, s_train, s_test = _streams("nonlinear_regression", seed)
    a = float(weight_scale)
    layers = [(s_teacher.uniform(-a, a, (o, i)), s_teacher.uniform(-a, a, o))
              for i, o in zip(sizes[:-1], sizes[1:])]
    x_tr = s_train.standard_normal((n_train, sizes[0]))
    x_te = s_test.standard_normal((n_test, sizes[0]))
    meta = {"teacher": layers, "seed": seed,
            "task": "dynamic inversion Fig. 3g-k: tanh teacher, W,b ~ U(+-scale), x ~ N(0, I)"}
    return Dataset("nonlinear_regression", "regression", x_tr, _mlp(x_tr, layers, np.tanh),
                   x_te, _mlp(x_te, layers, np.tanh), meta=meta)


def _teacher(rng, sizes):
    """DFC's 'teacher' init: Xavier-normal weights with gain 3, zero biases."""
    return [(rng.normal(0.0, 3.0 * np.sqrt(2.0 / (i + o)), (o, i)), np.zeros(o))
            for i, o in zip(sizes[:-1], sizes[1:])]


def student_teacher(n_train=1000, n_test=1000, n_val=1000, n_in=10, n_out=2, hidden=(5,),
                    linear=False, seed=42, shared_teacher=True) -> Dataset:
    """DFC's ``student_teacher`` regression set (``datahandlers/student_teacher_data.py``).

    Inputs are uniform in [-1, 1]; targets are the output of a random teacher MLP
    ``n_in - hidden - n_out`` with tanh (or, with ``linear``, identity) hidden layers and a
    linear output, weights Xavier-normal with gain 3 and zero biases. As in DFC, the seeds of
    the test, train and validation inputs are ``RandomState(seed).randint(100)`` drawn in that
    order, and each part's inputs are ``RandomState(part_seed).uniform(-1, 1, (n, n_in))``, so
    the inputs equal the original's. The teacher weights come from ``default_rng(seed)`` (DFC
    draws them from torch's global generator, which cannot be reproduced without torch).

    DFC builds a *new* teacher for each part, so its test and validation targets come from
    other teachers than its training targets. ``shared_teacher=True`` (default) uses one
    teacher for all parts; ``False`` reproduces DFC's three teachers (test, train, val).

    The validation set (``n_val`` samples, DFC's ``teacher_num_val``) is returned in
    ``meta["x_val"]``, ``meta["y_val"]``. The ``teacher_*`` option names are accepted as
    aliases (see :func:`simkit.data.load`).
    """
    name = "student_teacher"
    counts = {k: _count(name, k, v) for k, v in (("n_train", n_train), ("n_test", n_test),
                                                 ("n_val", n_val))}
    n_in, n_out = _sizes(name, n_in, "n_in")[0], _sizes(name, n_out, "n_out")[0]
    sizes = [n_in, *_sizes(name, hidden, "hidden sizes", allow_empty=True), n_out]
    _streams(name, seed)  # validates the seed
    seeds = np.random.RandomState(int(seed))
    part_seeds = {p: int(seeds.randint(100)) for p in ("test", "train", "val")}
    w_rng = np.random.default_rng(int(seed))
    shared = _teacher(w_rng, sizes)
    act = (lambda h: h) if linear else np.tanh
    data, teachers = {}, {}
    for part in ("test", "train", "val"):
        layers = shared if shared_teacher or part == "test" else _teacher(w_rng, sizes)
        x = np.random.RandomState(part_seeds[part]).uniform(-1, 1, (counts[f"n_{part}"], n_in))
        data[part], teachers[part] = (x, _mlp(x, layers, act)), layers
    meta = {"teacher": teachers["train"], "seed": int(seed), "input_seeds": part_seeds,
            "shared_teacher": bool(shared_teacher), "activation": "linear" if linear else "tanh",
            "sizes": sizes, "x_val": data["val"][0], "y_val": data["val"][1]}
    if not shared_teacher:
        meta["teachers"] = teachers
    return Dataset(name, "regression", *data["train"], *data["test"], meta=meta)
