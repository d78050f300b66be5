"""Schedule (c): online training, sample by sample, of paired models, evaluated every k steps.

Podlaski & Machens' tasks (:mod:`simkit.tasks.inversion`) train several models side by side on
the same samples in the same order (paired curves) and evaluate them all every ``eval_every``
steps (a step: one sample, or one minibatch of rows). :func:`online_loop` is that schedule: it
cuts the steps into blocks that end at every evaluation (and, with ``defer`` > 1, every ``defer``
steps between), hands each block to the task's ``train_block(i, j)`` (steps ``i .. j-1``), and
after each evaluation calls ``progress`` and ``on_eval``; ``resume`` continues from a position
saved there.

Checkpoints have the loop's format (:mod:`simkit.training.loop`): an ``.npz`` read with
``allow_pickle=False``, the position as ``meta.*`` arrays (``meta.key``: the settings it belongs
to, ``meta.epoch``, ``meta.step``: the next step, ``meta.steps``/``meta.evals``: the curve so far),
the finished epochs' curves as ``done.*``, and each model's state as ``m{k}.*`` (its ``W``, ``b``,
``B`` lists, ``B_sdi`` and ``abscissa``) with the SSA streams' states as ``rng{k}``. At an
evaluation no deferred update is pending (blocks end there), so the saved weights are those of the
per-sample loop. A task saves at most once a minute (:class:`TaskResume`); a run restarted with
the same settings continues from the last save to the same curves, and a finished task removes
its file. A file written for other settings is left alone and the run starts afresh, saying so.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from simkit.training.rundir import load_arrays, save_arrays


def online_loop(n_steps: int, train_block, evaluate, *, eval_every=1, defer=1, resume=None,
                on_eval=None, progress=None):
    """Train steps ``0 .. n_steps-1`` in blocks; evaluate after every ``eval_every``-th step.

    ``train_block(i, j)`` trains steps ``i .. j-1``; ``evaluate()`` returns one row of values (one
    per model). Steps ``k`` with ``k % eval_every == 0`` and the last step are evaluated.
    ``progress(k, n_steps, row)`` and ``on_eval(i, steps, evals)`` (``i``: the next step) run
    after every evaluation; ``resume = (i, steps, evals)`` continues from there.
    Returns ``(steps, evals)``, lists.
    """
    steps, evals, i = [], [], 0
    if resume is not None:
        i, steps, evals = resume
    while i < n_steps:
        last_eval = min(-(-i // eval_every) * eval_every, n_steps - 1)   # next evaluated step
        j = min(i + max(defer, 1), last_eval + 1)
        train_block(i, j)
        i = j
        if i - 1 == last_eval:
            steps.append(i - 1)
            evals.append(evaluate())
            if progress:
                progress(i - 1, n_steps, evals[-1])
            if on_eval:
                on_eval(i, steps, evals)
    return steps, evals


class OnlineCheckpoint:
    """One task's checkpoint file ``path`` for the settings ``key``."""

    def __init__(self, path, key: str, every_s: float = 60.0):
        self.path, self.key, self.every_s = Path(path), str(key), float(every_s)
        self.last = time.monotonic()

    def load(self) -> dict | None:
        """The saved arrays, or None (no file, or one for other settings)."""
        if not self.path.exists():
            return None
        arrays = load_arrays(self.path)
        if str(arrays.get("meta.key", "")) != self.key:
            print(f"simkit: {self.path} was saved for other settings; starting afresh",
                  file=sys.stderr)
            return None
        print(f"simkit: resuming from {self.path}", file=sys.stderr)
        return arrays

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.every_s

    def save(self, arrays: dict):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        save_arrays(self.path, {"meta.key": np.array(self.key), **arrays})
        self.last = time.monotonic()

    def clear(self):
        self.path.unlink(missing_ok=True)


def models_state(bk, models, rngs=None) -> dict:
    """Flat arrays of every model's W, b, B, B_sdi and abscissa, and the streams' states."""
    out = {}
    for k, m in enumerate(models):
        for name in ("W", "b", "B"):
            for l, a in enumerate(getattr(m, name)):
                if a is not None:
                    out[f"m{k}.{name}{l}"] = bk.to_host(a)
        if m.B_sdi is not None:
            out[f"m{k}.B_sdi"] = bk.to_host(m.B_sdi)
        out[f"m{k}.abscissa"] = np.asarray(m.abscissa, dtype=float)
    for k, r in enumerate(rngs or []):
        if r is not None:
            out[f"rng{k}"] = np.array(json.dumps(r.bit_generator.state))
    return out


def restore_models(bk, models, rngs, arrays: dict):
    """The inverse of :func:`models_state`, in place."""
    for k, m in enumerate(models):
        for name in ("W", "b", "B"):
            seq = getattr(m, name)
            for l in range(len(seq)):
                if f"m{k}.{name}{l}" in arrays:
                    seq[l] = bk.asarray(arrays[f"m{k}.{name}{l}"])
        if f"m{k}.B_sdi" in arrays:
            m.B_sdi = bk.asarray(arrays[f"m{k}.B_sdi"])
        m.abscissa = list(arrays[f"m{k}.abscissa"])
    for k, r in enumerate(rngs or []):
        if r is not None:
            r.bit_generator.state = json.loads(str(arrays[f"rng{k}"]))


def loop_state(i: int, steps, evals, n_models: int) -> dict:
    """The loop's position: the next step and the curve so far."""
    return {"meta.step": np.asarray(i), "meta.steps": np.asarray(steps, dtype=np.int64),
            "meta.evals": np.asarray(evals, dtype=float).reshape(-1, n_models)}


def loop_resume(arrays: dict):
    """``(i, steps, evals)`` for :func:`online_loop`'s ``resume``."""
    return (int(arrays["meta.step"]), list(arrays["meta.steps"]),
            [list(r) for r in arrays["meta.evals"]])


class TaskResume:
    """A task's use of its checkpoint: restore at the start, save after evaluations, remove at
    the end (``path`` None: none of it). ``done`` lists are the finished epochs' curves."""

    def __init__(self, bk, models, rngs, path, key, n_models):
        self.bk, self.models, self.rngs, self.n = bk, models, rngs, n_models
        self.file = OnlineCheckpoint(path, key) if path else None
        self.state = self.file.load() if self.file else None
        if self.state is not None:
            restore_models(bk, models, rngs, self.state)
        self.epoch = int(self.state["meta.epoch"]) if self.state is not None else 0

    def done(self, name) -> list:
        a = None if self.state is None else self.state.get(f"done.{name}")
        return [] if a is None or not len(a) else [a]

    def resume(self, epoch):
        return loop_resume(self.state) if self.state is not None and epoch == self.epoch \
            else None

    def saver(self, epoch, **done):
        """``on_eval`` for the loop: save when a minute has passed since the last save."""
        if self.file is None:
            return None

        def save(i, steps, evals):
            if self.file.due():
                finished = {f"done.{k}": np.concatenate(v) if v else np.zeros(0)
                            for k, v in done.items()}
                self.file.save({"meta.epoch": np.asarray(epoch), **finished,
                                **loop_state(i, steps, evals, self.n),
                                **models_state(self.bk, self.models, self.rngs)})
        return save

    def finish(self):
        if self.file is not None:
            self.file.clear()
