"""Schedule (b): GAIT-prop's fixed-order batches with evaluations every k updates.

The shared :class:`~simkit.training.loop.Loop` with the schedule of the original (``run.py`` of
``nasiryahm/GAIT-prop``), which shuffled epochs do not fit: its minibatches come in a fixed
order (no shuffling, batch ``b`` is always samples ``[b N, (b+1) N)``); its output target depends on the forward pass (one-hot on the first 10 units,
the output's own values elsewhere); the regulariser enters before the optimiser's normalisation;
the inverses must be refreshed after every step; and it evaluates the whole training and test sets
*inside* the epoch, after the update of every batch ``b != 0`` with ``b % 10 == 0`` (99 times an
epoch), which is what its accuracy curves are made of. This loop does exactly that, with the
evaluation interval as an option (``eval_every``; 0: only at epoch ends) and one more evaluation
at the end of every epoch (which the original never makes), recorded in ``metrics.csv`` only.

Files in the run directory (all written atomically at every checkpoint, see
:mod:`simkit.training.rundir`):

``run.json``, ``metrics.csv``, ``checkpoint.npz``
    as everywhere in simkit; ``metrics.csv``'s ``epoch`` column is fractional here
    (updates / batches per epoch), so every intra-epoch point has its place;
``training_acc.txt``, ``test_acc.txt``, ``training_loss.txt``, ``test_loss.txt``
    the original's curve files: one value per line, the evaluation before training and then
    every intra-epoch evaluation (not the extra end-of-epoch ones). The loss is the mean over
    samples of :math:`\\tfrac12\\lVert h_L^{[:10]} - \\text{onehot}\\rVert^2`, the quantity the
    updates descend (the original's logged loss is not a loss; research note §5.4);
``<l>Lweights.npy``, ``<l>Lbiases.npy``
    final parameters per layer ``l = 0..L-1`` in the original's row layout.

Divergence: every evaluation's losses are checked (:meth:`Loop.check_divergence`): a loss above
``divergence_factor`` (default 10) times that split's loss before training (at least 1) stops the
run with a :class:`~simkit.errors.NumericalError`, before a checkpoint of the diverged weights.

Resume: the batch order depends on nothing, so a checkpoint at any batch boundary (end of each
epoch, plus every ``checkpoint_every`` batches) resumes to the same weights an uninterrupted run
reaches, and the curves recorded before it are kept.
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass

import numpy as np

from simkit.rules.gait import output_target
from simkit.training.loop import Loop
from simkit.training.rundir import atomic_write_bytes
from simkit.training.signals import check_signal

CURVE_FILES = {("train", "acc"): "training_acc.txt", ("train", "loss"): "training_loss.txt",
               ("test", "acc"): "test_acc.txt", ("test", "loss"): "test_loss.txt"}


@dataclass
class Split:
    """Inputs ``x`` and one-hot targets ``onehot`` on the device, integer ``labels`` on the host."""

    x: object
    onehot: object
    labels: np.ndarray

    def __len__(self):
        return self.x.shape[0]


@dataclass
class Schedule:
    nb_epochs: int
    batch_size: int
    nb_batches: int                 # minibatches per epoch
    eval_every: int = 10            # evaluate after batch b != 0 with b % eval_every == 0; 0: never
    eval_splits: tuple = ("train", "test")
    checkpoint_every: int = 0       # extra checkpoints every so many batches; 0: epoch ends only
    eval_batch_size: int = 2048


class GaitTrainer(Loop):
    """Trains an invertible net with a rule from :mod:`simkit.rules.gait` (module docstring)."""

    lr_hint = "--learning_rate"

    def __init__(self, bk, net, rule, opt, splits, schedule, *, run=None, log=print,
                 progress=None, on_batch=None, divergence_factor=None):
        super().__init__(bk, net, rule, opt, run=run, log=log, progress=progress,
                         on_batch=on_batch)
        if divergence_factor is not None:
            self.divergence_factor = float(divergence_factor)
        self.splits, self.s, self.n_epochs = splits, schedule, schedule.nb_epochs
        self.batch = 0                      # next batch of the current epoch
        self.points: list[dict] = []        # every evaluation: updates, kind, split -> metrics
        self.train_seconds: list[float] = []
        self.eval_seconds: list[float] = []
        self._partial = [0.0, 0.0]          # train / eval seconds of the unfinished epoch

    @property
    def updates(self) -> int:
        return self.epoch * self.s.nb_batches + self.batch

    # ------------------------------------------------------------------------------ evaluation
    def evaluate(self, split: Split) -> dict:
        """Accuracy (argmax of the first C output units) and loss over a whole split."""
        C = split.onehot.shape[1]
        correct, loss = 0, 0.0
        for i in range(0, len(split), self.s.eval_batch_size):
            y = self.net.predict(split.x[i:i + self.s.eval_batch_size])[:, :C]
            t = split.onehot[i:i + self.s.eval_batch_size]
            correct += int((self.bk.to_host(y.argmax(axis=1)) ==
                            split.labels[i:i + self.s.eval_batch_size]).sum())
            loss += 0.5 * float(((y - t) ** 2).sum())
        return {"acc": correct / len(split), "loss": loss / len(split)}

    def eval_point(self, curve: bool):
        """Evaluate now; ``curve``: a point of the original's curves, else an epoch end."""
        if self.points and self.points[-1]["updates"] == self.updates:   # same weights: reuse
            point = self.points[-1]
        else:
            t0 = time.perf_counter()
            point = {"updates": self.updates, "curve": False, "epoch_end": False}
            for name in self.s.eval_splits:
                point[name] = self.evaluate(self.splits[name])
            self.points.append(point)
            self._partial[1] += time.perf_counter() - t0
            self.check_divergence({name: point[name]["loss"] for name in self.s.eval_splits},
                                  f"after {self.updates} updates")
        point["curve" if curve else "epoch_end"] = True
        return point

    # ------------------------------------------------------------------------------ training
    def train_step(self, b: int) -> float:
        """One minibatch in the original's fixed order; returns its loss."""
        xp, tr, N = self.bk.xp, self.splits["train"], self.s.batch_size
        x, onehot = tr.x[b * N:(b + 1) * N], tr.onehot[b * N:(b + 1) * N]
        cache = self.net.forward(x)
        T = output_target(xp, cache.y, onehot)
        grads = self.rule.grads(self.net, cache, None, t=T)
        self.opt.step(self.net.params(), grads)
        self.net.weights_changed()
        return 0.5 * float(((cache.y[:, :onehot.shape[1]] - onehot) ** 2).sum()) / x.shape[0]

    def train_epoch(self, e: int):
        nb, every = self.s.nb_batches, self.s.eval_every
        bar = self.bar(nb, self.batch, f"epoch {e}")
        for b in range(self.batch, nb):
            t0 = time.perf_counter()
            loss = self.train_step(b)
            self.bk.synchronize()
            self._partial[0] += time.perf_counter() - t0
            self.batch = b + 1
            self.check_loss(loss, e, b)
            if bar is not None:
                bar.update(1)
            if self.on_batch is not None:
                self.on_batch(e, b)
            if every and b != 0 and b % every == 0:
                self.eval_point(curve=True)
                if bar is not None and "test" in self.points[-1]:
                    bar.set_postfix(test_acc=f"{100 * self.points[-1]['test']['acc']:.2f}%")
            if self.s.checkpoint_every and self.batch % self.s.checkpoint_every == 0 \
                    and self.batch < nb:
                self.save()
            check_signal()
        if bar is not None:
            bar.close()

    # ------------------------------------------------------------------------------ loop hooks
    def started(self) -> bool:
        return bool(self.points)

    def evaluate_initial(self):
        p = self.eval_point(curve=True)
        self._partial[1] = 0.0
        self.say("before training", p)

    def train_unit(self, e: int):
        self.train_epoch(e)
        self.epoch, self.batch = e, 0
        self.eval_point(curve=False)
        self.train_seconds.append(self._partial[0])
        self.eval_seconds.append(self._partial[1])
        self._partial = [0.0, 0.0]

    def report(self):
        self.say(f"epoch {self.epoch:>3}/{self.s.nb_epochs}", self.points[-1],
                 self.train_seconds[-1], self.eval_seconds[-1])

    def say(self, what, point, train_s=None, eval_s=None):
        if self.log is None:
            return
        parts = [what]
        for name in self.s.eval_splits:
            parts.append(f"{name} acc {100 * point[name]['acc']:.2f}% loss {point[name]['loss']:.4f}")
        if train_s is not None:
            parts.append(f"train {train_s:.1f} s, eval {eval_s:.1f} s")
        self.log("  ".join(parts))

    def start_losses(self) -> dict:
        return {name: self.points[0][name]["loss"] for name in self.s.eval_splits} \
            if self.points else {}

    # ------------------------------------------------------------------------------ results
    def summary(self) -> dict:
        out = {"epochs_done": self.epoch, "updates": self.updates}
        for name in self.s.eval_splits:
            series = [p[name]["acc"] for p in self.points]
            if series:
                out[f"acc_{name}_init"] = series[0]
                out[f"acc_{name}_last"] = series[-1]
                out[f"acc_{name}_best"] = max(series)
        ends = [p for p in self.points if p["epoch_end"]]
        out["acc_test_by_epoch"] = [p["test"]["acc"] for p in ends if "test" in p]
        if self.train_seconds:
            out["train_seconds_per_epoch"] = float(np.mean(self.train_seconds))
            out["eval_seconds_per_epoch"] = float(np.mean(self.eval_seconds))
        return out

    def metric_rows(self) -> list[dict]:
        rows = []
        for p in self.points:
            epoch = f"{p['updates'] / self.s.nb_batches:.6g}"
            for name in self.s.eval_splits:
                for metric, value in p[name].items():
                    rows.append({"epoch": epoch, "split": name, "metric": metric, "layer": "",
                                 "value": repr(float(value))})
        return rows

    def write_outputs(self):
        curve = [p for p in self.points if p["curve"]]
        for (name, metric), fname in CURVE_FILES.items():
            if name in self.s.eval_splits:
                buf = io.BytesIO()
                np.savetxt(buf, np.asarray([p[name][metric] for p in curve], dtype=float))
                atomic_write_bytes(self.run.path / fname, buf.getvalue())

    def write_final(self):
        for l in range(self.net.L):
            for key, suffix in (("W", "weights"), ("b", "biases")):
                buf = io.BytesIO()
                p = self.bk.to_host((self.net.W if key == "W" else self.net.b)[l])
                np.save(buf, np.ascontiguousarray(p.T))          # W_l^T: the original's layout
                atomic_write_bytes(self.run.path / f"{l}L{suffix}.npy", buf.getvalue())

    # ------------------------------------------------------------------------------ checkpoints
    def position(self, partial=None) -> dict:
        arrays = {"meta.epoch": np.asarray(self.epoch), "meta.batch": np.asarray(self.batch),
                  "meta.train_seconds": np.asarray(self.train_seconds, dtype=float),
                  "meta.eval_seconds": np.asarray(self.eval_seconds, dtype=float),
                  "meta.partial_seconds": np.asarray(self._partial, dtype=float),
                  "points.updates": np.asarray([p["updates"] for p in self.points], dtype=np.int64),
                  "points.curve": np.asarray([p["curve"] for p in self.points]),
                  "points.epoch_end": np.asarray([p["epoch_end"] for p in self.points])}
        for name in self.s.eval_splits:
            for metric in ("acc", "loss"):
                arrays[f"points.{name}.{metric}"] = np.asarray(
                    [p[name][metric] for p in self.points], dtype=float)
        return arrays

    def restore(self, arrays: dict):
        self.epoch, self.batch = int(arrays["meta.epoch"]), int(arrays["meta.batch"])
        self.train_seconds = [float(s) for s in arrays["meta.train_seconds"]]
        self.eval_seconds = [float(s) for s in arrays["meta.eval_seconds"]]
        self._partial = [float(s) for s in arrays["meta.partial_seconds"]]
        self.points = []
        for i, u in enumerate(arrays["points.updates"]):
            p = {"updates": int(u), "curve": bool(arrays["points.curve"][i]),
                 "epoch_end": bool(arrays["points.epoch_end"][i])}
            for name in self.s.eval_splits:
                p[name] = {m: float(arrays[f"points.{name}.{m}"][i]) for m in ("acc", "loss")}
            self.points.append(p)
