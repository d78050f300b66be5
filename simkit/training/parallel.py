"""Paired models in parallel processes: they are independent given their own streams.

Fig. 3's thirteen models see the same samples in the same order but never each other; with one
SSA re-stabilisation stream per model (instead of one shared stream) a model's curve does not
depend on which models share its process, so the models can be split over forked processes and
the curves put back together column for column (test: 1 and 2 workers give identical results).
:func:`fork_map` is the general piece: Fig. 4b runs its two initialisations through it.
"""
from __future__ import annotations

import numpy as np

_JOB = None                                  # the function the forked workers call (inherited)


def split_models(specs, workers, cost=None):
    """Indices of ``specs`` in at most ``workers`` groups of about equal cost (largest first);
    ``cost``: relative time per step by ``spec.rule`` (1 for a rule it does not name)."""
    cost = cost or {}
    groups = [[] for _ in range(max(1, min(workers, len(specs))))]
    load = [0.0] * len(groups)
    for k in sorted(range(len(specs)), key=lambda k: -cost.get(specs[k].rule, 1.0)):
        g = load.index(min(load))
        groups[g].append(k)
        load[g] += cost.get(specs[k].rule, 1.0)
    return [sorted(g) for g in groups]


def fork_map(fn, items, workers):
    """``[fn(x) for x in items]`` over at most ``workers`` forked processes.

    The children inherit ``fn`` and everything it closes over by ``fork`` (nothing is pickled in;
    only the results come back). Each child's BLAS threads are capped at its share of the cores
    (:func:`share_cores`), so ``n`` children never oversubscribe the machine. One worker, or a
    system without ``fork`` (Windows), runs the items in this process, in order.
    """
    import multiprocessing as mp
    items = list(items)
    n = max(1, min(workers, len(items)))
    if n < 2 or "fork" not in mp.get_all_start_methods():
        return [fn(x) for x in items]
    global _JOB
    _JOB = fn
    try:
        with mp.get_context("fork").Pool(n, initializer=share_cores, initargs=(n,)) as pool:
            return pool.map(_call_job, items, chunksize=1)
    finally:
        _JOB = None


def share_cores(n):
    """Cap this process's BLAS threads at ``cpu_count // n`` (at least 1), never raising them:
    a ``--threads`` the user gave stays an upper bound."""
    import os

    from threadpoolctl import threadpool_info, threadpool_limits
    per = max(1, (os.cpu_count() or 1) // n)
    now = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    threadpool_limits(limits=min([per] + now), user_api="blas")


def _call_job(x):
    return _JOB(x)


def run_models_parallel(run, bk, models, *args, workers=1, cost=None, **kw):
    """``run(bk, models, *args, **kw)`` (an online loop returning ``(steps, evals, store)``) with
    the models split over ``workers`` forked processes (:func:`split_models` by ``cost``).

    Needs one SSA stream per model (``rng`` a list), so that a model's curve does not depend on
    which others share its process: the results are those of ``workers=1``, column for column.
    The parent's models are left at their initial weights. CuPy, ``workers`` 1 and systems
    without ``fork`` (Windows) run in-process. Split groups run without a run directory (a
    ``run`` keyword must be None): their loops keep no checkpoint, and an interrupted run starts
    again.
    """
    groups = split_models([m.spec for m in models], workers, cost)
    if len(groups) < 2 or bk.name == "cupy":
        return run(bk, models, *args, **kw)
    if kw.get("run") is not None:
        raise ValueError("models split over processes run without a run directory; pass run=None")

    def run_group(idx):
        return run(bk, [models[k] for k in idx], *args,
                   **dict(kw, rng=[kw["rng"][k] for k in idx]))

    parts = fork_map(run_group, groups, len(groups))
    cols = np.argsort(np.concatenate(groups))                      # back to the models' order
    evals = np.concatenate([p[1] for p in parts], axis=1)[:, cols]
    merged = {k: v for p in parts for k, v in p[2].items()}
    store = {m.spec.name: merged[m.spec.name] for m in models if m.spec.name in merged}
    return parts[0][0], evals, store
