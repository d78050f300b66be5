"""Schedule (c): online training, sample by sample, of paired models, evaluated every k steps.

Podlaski & Machens' tasks (:mod:`simkit.tasks.inversion`) train several models side by side on
the same samples in the same order (paired curves) and evaluate them all every ``eval_every``
steps (a step: one sample, or one minibatch of rows). :class:`OnlineTrainer` is that schedule on
the shared :class:`~simkit.training.loop.Loop`: an epoch (a unit of the loop) is one pass of
``n_steps`` steps (Fig. 4a: an epoch over the data; Figs. 3 and 4b: the whole run). It cuts the
steps into blocks that end at every evaluation (and, with ``defer`` > 1, every ``defer`` steps
between) and hands each block to the task's ``train_block(epoch, i, j)`` (steps ``i .. j-1``).
Steps ``k`` with ``k % eval_every == 0`` and an epoch's last step are evaluated; there is no
evaluation before training.

The loop owns the rest: the run directory (``run.json`` whose configuration is the task's
settings, ``metrics.csv`` with one row per evaluation and model, ``checkpoint.npz``), saves (at
the start, after every epoch, and after an evaluation when :attr:`OnlineTrainer.save_every_s`
have passed since the last), exact resume inside an epoch, Ctrl-C and SIGTERM, the status, and
a progress bar per epoch. The checkpoint's keys: the position ``meta.epoch`` (finished epochs),
``meta.step`` (the next step of the epoch under way) and every evaluation so far,
``meta.units`` (its epoch), ``meta.steps`` (its step), ``meta.evals`` (one row of values, a column
per model); each model's state as ``m{k}.*`` (its ``W``, ``b``, ``B`` lists, ``B_sdi`` and
``abscissa``) with the SSA streams' states as ``rng{k}``. At an evaluation no deferred update is
pending (blocks end there), so the saved weights are those of the per-sample loop, and a resumed
run reaches the curves of an uninterrupted one. :meth:`OnlineTrainer.fit_in` continues the run in
a folder that was started with the same settings (a finished run's curves are read back, not
recomputed) and refuses one started with others.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

from simkit.errors import UserError
from simkit.training.loop import Loop
from simkit.training.rundir import RunDir
from simkit.training.signals import check_signal


class OnlineTrainer(Loop):
    """Paired ``models`` (each with its SSA stream in ``rngs``, or None) trained online (module
    docstring). ``evaluate()`` returns one value per model, recorded in ``metrics.csv`` as
    ``metric = (split, name)`` with the model's name from ``names`` as its ``layer``.
    ``on_batch(epoch, i)`` runs after every block (``i``: the next step), after its save."""

    save_every_s = 60.0                   # the least time between two saves inside an epoch

    def __init__(self, bk, models, rngs, n_steps, train_block, evaluate, *, names, n_epochs=1,
                 eval_every=1, defer=1, metric=("train", "error"), progress=False,
                 on_batch=None, desc="online", position=None):
        super().__init__(bk, None, None, None, log=None, progress=progress, on_batch=on_batch)
        self.models, self.rngs, self.names = models, list(rngs), list(names)
        self.n_steps, self.train_block, self.evaluate = n_steps, train_block, evaluate
        self.n_epochs, self.eval_every, self.defer = n_epochs, eval_every, max(defer, 1)
        self.split, self.metric = metric
        self.desc, self.bar_line = desc, position
        self.step = 0                                    # next step of the epoch under way
        self.units, self.steps, self.evals = [], [], []  # every evaluation: epoch, step, values

    def fit_in(self, path, config: dict) -> dict:
        """:meth:`fit` in the run directory ``path`` (None: none), created for ``config`` or
        continued where it holds a run of the same ``config`` (a finished one gives its curves
        without training); another ``config`` is refused."""
        if path is not None:
            self.run = RunDir(path)
            info = self.run.read_info() if self.run.exists() else None
            if info is not None and info.get("config") != json.loads(json.dumps(config)):
                raise UserError(f"{path} holds a run with other settings; choose another --out "
                                "or delete that folder")
            if info is not None and info.get("status") == "finished":
                print(f"simkit: reusing the finished run in {path} (delete it to train again)",
                      file=sys.stderr)
            elif info is not None:
                print(f"simkit: continuing the run in {path}", file=sys.stderr)
            self.start(info is not None, config)
        return self.fit()

    # ------------------------------------------------------------------------------ the schedule
    def train_unit(self, epoch: int):
        n, i = self.n_steps, self.step
        bar = self.bar(n, i, f"{self.desc} epoch {epoch}" if self.n_epochs > 1 else self.desc,
                       unit="step", position=self.bar_line)
        while i < n:
            last = min(-(-i // self.eval_every) * self.eval_every, n - 1)  # next evaluated step
            j = min(i + self.defer, last + 1)
            self.train_block(epoch, i, j)
            i = self.step = j
            if bar is not None:
                bar.update(j - bar.n)
            if i - 1 == last:
                self.record(epoch, i - 1, bar)
            if self.on_batch is not None:
                self.on_batch(epoch, i)
            check_signal()
        if bar is not None:
            bar.close()
        self.epoch, self.step = epoch, 0

    def record(self, epoch: int, k: int, bar):
        """Evaluate after step ``k``; save when :attr:`save_every_s` have passed."""
        self.units.append(epoch)
        self.steps.append(k)
        self.evals.append(self.evaluate())
        if bar is not None:
            bar.set_postfix_str(f"best {self.split} {self.metric} {min(self.evals[-1]):.4g}",
                                refresh=False)
        if self.step < self.n_steps and time.perf_counter() - self.saved_at >= self.save_every_s:
            self.save()

    # ------------------------------------------------------------------------------ loop hooks
    def started(self) -> bool:
        return self.epoch > 0 or self.step > 0

    def evaluate_initial(self):
        """None: the online schedule's first evaluation follows the first step."""

    def summary(self) -> dict:
        out = {"epochs_done": self.epoch, "step": self.step, "evaluations": len(self.evals)}
        if self.evals:
            out[f"{self.split}_{self.metric}_last"] = dict(zip(self.names, map(float,
                                                                            self.evals[-1])))
        return out

    def metric_rows(self) -> list[dict]:
        rows = []
        for e, k, values in zip(self.units, self.steps, self.evals):
            epoch = f"{e - 1 + (k + 1) / self.n_steps:.8g}"
            rows += [{"epoch": epoch, "split": self.split, "metric": self.metric, "layer": name,
                      "value": repr(float(v))} for name, v in zip(self.names, values)]
        return rows

    def position(self, partial=None) -> dict:
        return {"meta.epoch": np.asarray(self.epoch), "meta.step": np.asarray(self.step),
                "meta.units": np.asarray(self.units, dtype=np.int64),
                "meta.steps": np.asarray(self.steps, dtype=np.int64),
                "meta.evals": np.asarray(self.evals, dtype=float).reshape(-1, len(self.models))}

    def restore(self, arrays: dict):
        self.epoch, self.step = int(arrays["meta.epoch"]), int(arrays["meta.step"])
        self.units = [int(e) for e in arrays["meta.units"]]
        self.steps = [int(k) for k in arrays["meta.steps"]]
        self.evals = [list(r) for r in arrays["meta.evals"]]

    def state_arrays(self) -> dict:
        return models_state(self.bk, self.models, self.rngs)

    def load_state(self, arrays: dict):
        restore_models(self.bk, self.models, self.rngs, arrays)


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
