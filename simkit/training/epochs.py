"""Schedule (a): shuffled minibatch epochs, on the shared :class:`~simkit.training.loop.Loop`.

One epoch visits the training set once in an order drawn from the run's shuffle stream,
``default_rng([shuffle_seed, epoch])``: the order of epoch ``e`` depends on nothing but the seed
and ``e``, so a resumed run replays exactly the epochs an uninterrupted run would have.

For each minibatch: forward pass (cached state) -> loss gradient ``dL/dy`` -> the rule's weight
gradients -> clipping -> optimiser step. Train loss and accuracy are the means over the epoch's
minibatches (as the original codes report them); validation and test are plain forward passes
after each epoch. Epoch 0 is an evaluation before any training.

After every epoch the run directory gets its metrics and a checkpoint (atomically). A Ctrl-C or
a crash loses only the unfinished epoch; ``--resume`` continues after the last finished one.
With ``checkpoint_seconds`` a long epoch is checkpointed inside too, after the first minibatch
that ends that long after the last save: the weights, the optimiser, the rule's state and the
epoch's running sums (``meta.partial``: epoch, next minibatch, loss sum, correct count, seconds).
A resumed run skips the rule's ``begin_epoch`` for that epoch and goes on from that minibatch
in the same order, to the weights an uninterrupted run reaches (tested). Subclasses whose epochs
keep more state than this set ``mid_epoch_checkpoints = False``.
A rule with a ``checkpoint`` attribute gets :meth:`Trainer.save` there, to call after stages of
its own that are epochs too (DFC's feedback pre-training epochs, 20 of them before epoch 1).
A NaN or inf loss stops the run with :class:`~simkit.errors.NumericalError`, keeping the last
good checkpoint; so does a blow-up that stays finite: the epoch's mean train loss (checked at the
epoch's end, before its evaluations, and before a checkpoint inside it) or an evaluation's loss
above ``divergence_factor`` (default 10) times that split's loss at epoch 0 (at least 1, for a
regression's small MSE). Normal runs stay far below: their losses fall from epoch 0 on. Inside an
epoch the check sees minibatch losses, each computed before its update: a checkpoint there may
hold the weights of one update more than the losses checked. ``min_acc`` > 0 (strong_dfc's ``--min_acc``, for hyper-parameter searches) stops a
classification run after epoch 4 when that epoch's train accuracy is below it: status
``stopped``, and a resumed run stays stopped. The original compares the accuracy of epoch 4's
last minibatch; simkit the epoch's mean (no published number uses the option).
"""
from __future__ import annotations

import time

import numpy as np

from simkit.optim import clip_grads
from simkit.training.loop import Loop
from simkit.training.signals import check_signal

MIN_ACC_EPOCH = 4                    # the epoch strong_dfc's --min_acc looks at


def epoch_order(seed_seq_entropy: int, epoch: int, n: int) -> np.ndarray:
    """The permutation of ``n`` training samples for ``epoch`` (host int64)."""
    return np.random.default_rng([seed_seq_entropy, epoch]).permutation(n)


class Trainer(Loop):
    """Shuffled minibatch epochs; see the module docstring."""

    mid_epoch_checkpoints = True

    def __init__(self, bk, cfg, net, rule, opt, loss, splits, *, run=None, shuffle_seed=0,
                 progress=None, log=print, on_batch=None, checkpoint_seconds=None):
        super().__init__(bk, net, rule, opt, run=run, log=log, progress=progress,
                         on_batch=on_batch)
        self.cfg, self.loss, self.splits, self.shuffle_seed = cfg, loss, splits, shuffle_seed
        self.n_epochs = int(cfg["epochs"])
        self.divergence_factor = float(cfg.get("divergence_factor", self.divergence_factor))
        self.checkpoint_seconds = checkpoint_seconds if self.mid_epoch_checkpoints else None
        self.partial = None          # (epoch, next batch, loss sum, correct, seconds) to go on from
        self.rows: list[dict] = []
        self.epoch_seconds: list[float] = []
        self.last = None             # (epoch, results, seconds) of the epoch to report
        if hasattr(rule, "checkpoint"):      # a rule's own long stages (DFC's pre-training)
            rule.checkpoint = self.save
        if hasattr(rule, "log"):             # and its lines on them
            rule.log = self.log

    # ----------------------------------------------------------------------------- evaluation
    def evaluate(self, split) -> dict:
        """Mean loss (and accuracy for classification) of a plain forward pass over a split."""
        xp, n, bs = self.bk.xp, len(split), int(self.cfg["eval_batch_size"])
        loss_sum, correct, abs_err, rel_err = 0.0, 0, 0.0, 0.0
        for i in range(0, n, bs):
            y = self.net.predict(split.x[i:i + bs])
            t = split.t[i:i + bs]
            loss_sum += self.loss.value(xp, y, t) * y.shape[0]
            if split.labels is not None:
                correct += int((self.bk.to_host(y.argmax(axis=1)) == split.labels[i:i + bs]).sum())
            else:
                err = xp.abs(y - t)
                abs_err += float(err.sum())
                rel_err += float((err / xp.maximum(xp.abs(t), 1.17e-6)).sum())
        out = {"loss": loss_sum / n}
        if split.labels is not None:
            out["acc"] = correct / n
        else:   # mean absolute (percentage) error over all outputs, torchmetrics' MAE and MAPE
            out["mae"] = abs_err / split.t.size
            out["mape"] = rel_err / split.t.size
        return out

    # ----------------------------------------------------------------------------- training
    def train_step(self, x, t, idx=None, epoch=0):
        """One minibatch (``idx``: its sample indices in the training set); returns ``(loss, y)``."""
        xp = self.bk.xp
        cache = self.net.forward(x)
        y = cache.y
        dL_dy = self.loss.grad(xp, y, t)
        grads = self.rule.grads(self.net, cache, dL_dy, t=t, loss=self.loss, idx=idx, epoch=epoch)
        clip_grads(self.bk, grads, float(self.cfg["clip"]), self.cfg["clip_mode"])
        self.opt.step(self.net.params(), grads)
        return self.loss.value(xp, y, t), y

    def epoch_batches(self, epoch: int):
        """``(order, batch starts, samples seen)`` of ``epoch`` (``max_batches`` applied)."""
        n, bs = len(self.splits["train"]), int(self.cfg["batch_size"])
        order = epoch_order(self.shuffle_seed, epoch, n)
        batches = range(0, n, bs)
        if int(self.cfg.get("max_batches", 0)) > 0:
            batches = batches[:int(self.cfg["max_batches"])]
            n = min(n, len(batches) * bs)
        return order, batches, n

    def train_epoch(self, epoch: int) -> dict:
        tr, bs = self.splits["train"], int(self.cfg["batch_size"])
        order, batches, n = self.epoch_batches(epoch)
        start, self.partial = self.partial, None
        k0, loss_sum, correct, before = (0, 0.0, 0, 0.0) if start is None else \
            (int(start[1]), float(start[2]), int(start[3]), float(start[4]))
        t0 = time.perf_counter() - before
        bar = self.bar(len(batches), k0, f"epoch {epoch}")
        for k in range(k0, len(batches)):
            idx = order[batches[k]:batches[k] + bs]
            dev_idx = idx if self.bk.name != "cupy" else self.bk.xp.asarray(idx)
            if hasattr(self.rule, "last_batch"):      # a rule's per-epoch diagnostics (DFC's)
                self.rule.last_batch = k == len(batches) - 1
            loss, y = self.train_step(tr.x[dev_idx], tr.t[dev_idx], dev_idx, epoch)
            loss_sum += loss * len(idx)
            if tr.labels is not None:
                correct += int((self.bk.to_host(y.argmax(axis=1)) == tr.labels[idx]).sum())
            if bar is not None:
                bar.update(1)
                if k % 50 == 0:
                    bar.set_postfix(loss=f"{loss:.4f}")
            self.check_loss(loss, epoch, k)
            if self.checkpoint_seconds is not None and k + 1 < len(batches) and \
                    time.perf_counter() - self.saved_at >= self.checkpoint_seconds:
                self.bk.synchronize()
                self.check_divergence({"train": loss_sum / min(n, (k + 1) * bs)},
                                      f"in epoch {epoch} (mean of {k + 1} batches)")
                self.save(partial=(epoch, k + 1, loss_sum, correct, time.perf_counter() - t0))
            if self.on_batch is not None:
                self.on_batch(epoch, k)
            check_signal()
        if bar is not None:
            bar.close()
        self.bk.synchronize()
        self.epoch_time = time.perf_counter() - t0
        out = {"loss": loss_sum / n}
        if tr.labels is not None:
            out["acc"] = correct / n
        return out

    # ----------------------------------------------------------------------------- loop hooks
    def started(self) -> bool:
        return self.epoch > 0 or bool(self.rows)

    def evaluate_initial(self):
        self.log_epoch(0, self.evaluate_all(0, None), None)

    def train_unit(self, e: int):
        if self.partial is None and hasattr(self.rule, "begin_epoch"):
            self.rule.begin_epoch(e)           # (a resumed epoch had it before its save)
        with np.errstate(over="ignore", invalid="ignore"):   # a NaN loss is reported
            train_metrics = self.train_epoch(e)
        seconds = self.epoch_time
        self.check_divergence({"train": train_metrics["loss"]}, f"in epoch {e}")
        results = self.evaluate_all(e, train_metrics)
        self.check_divergence({split: m["loss"] for split, m in results.items()},
                              f"after epoch {e}")
        self.epoch = e
        self.epoch_seconds.append(seconds)
        self.last = (e, results, seconds)

    def report(self):
        self.log_epoch(*self.last)

    def start_losses(self) -> dict:
        return {r["split"]: float(r["value"]) for r in self.rows
                if int(r["epoch"]) == 0 and r["metric"] == "loss" and not r["layer"]}

    def stop_reason(self):
        """``min_acc``: the reason to stop when epoch 4's train accuracy is below it, else None."""
        min_acc = float(self.cfg.get("min_acc", 0.0))
        if min_acc <= 0 or self.epoch < MIN_ACC_EPOCH:
            return None
        acc = [float(r["value"]) for r in self.rows if int(r["epoch"]) == MIN_ACC_EPOCH and
               r["split"] == "train" and r["metric"] == "acc" and not r["layer"]]
        if not acc or acc[0] >= min_acc:
            return None
        return (f"min_acc: train accuracy {100 * acc[0]:.2f}% after epoch {MIN_ACC_EPOCH} is "
                f"below {100 * min_acc:.2f}%")

    # ----------------------------------------------------------------------------- bookkeeping
    def record(self, epoch: int, split: str, metrics: dict, layer=""):
        for name, value in metrics.items():
            self.rows.append({"epoch": epoch, "split": split, "metric": name, "layer": layer,
                              "value": repr(float(value))})

    def evaluate_all(self, epoch: int, train_metrics: dict | None):
        results = {"train": train_metrics if train_metrics is not None
                   else self.evaluate(self.splits["train"])}
        for name in ("val", "test"):
            if name in self.splits:
                results[name] = self.evaluate(self.splits[name])
        for split, metrics in results.items():
            self.record(epoch, split, metrics)
        if hasattr(self.rule, "epoch_metrics"):
            for layer, metrics in self.rule.epoch_metrics(self.net).items():
                self.record(epoch, "train", metrics, layer=str(layer))
        return results

    def metric_rows(self) -> list[dict]:
        return self.rows

    def summary(self) -> dict:
        """``acc_test_last``, ``acc_test_best``, ``acc_test_val_best`` (test accuracy at the epoch
        of best validation accuracy, as the DFC paper reports), mean seconds per epoch, and the
        last recorded value of each of the rule's ``summary_metrics`` (whole-net, ``{key: metric}``)."""
        def series(split, metric, layer=""):
            return {int(r["epoch"]): float(r["value"]) for r in self.rows
                    if r["split"] == split and r["metric"] == metric and r["layer"] == layer}
        out = {"epochs_done": self.epoch}
        metric = "acc" if self.splits["test"].labels is not None else "loss"
        test, val = series("test", metric), series("val", metric)
        trained = {e: v for e, v in test.items() if e > 0}
        if trained:
            out[f"{metric}_test_last"] = trained[max(trained)]
            out[f"{metric}_test_best"] = (max if metric == "acc" else min)(trained.values())
        val_trained = {e: v for e, v in val.items() if e > 0}
        if val_trained and trained:
            pick = max if metric == "acc" else min
            best_epoch = pick(val_trained, key=lambda e: val_trained[e])
            out[f"{metric}_test_val_best"] = trained.get(best_epoch)
            out["epoch_val_best"] = best_epoch
        if self.epoch_seconds:
            out["avg_time_per_epoch"] = float(np.mean(self.epoch_seconds))
        for key, metric in getattr(self.rule, "summary_metrics", {}).items():
            values = series("train", metric, layer="net")
            if values:
                out[key] = values[max(values)]
        return out

    def position(self, partial=None) -> dict:
        out = {"meta.epoch": np.asarray(self.epoch),
               "meta.epoch_seconds": np.asarray(self.epoch_seconds, dtype=float)}
        if partial is not None:
            out["meta.partial"] = np.asarray(partial, dtype=float)
        return out

    def restore(self, arrays: dict):
        self.epoch = int(arrays["meta.epoch"])
        self.epoch_seconds = [float(s) for s in arrays["meta.epoch_seconds"]]
        part = arrays.get("meta.partial")
        self.partial = None if part is None or int(part[0]) != self.epoch + 1 else tuple(part)
        self.rows = [r for r in self.run.read_metrics() if int(r["epoch"]) <= self.epoch]

    def log_epoch(self, epoch, results, seconds):
        if self.log is None:
            return
        parts = [f"epoch {epoch:>3}/{self.cfg['epochs']}"]
        for split, m in results.items():
            txt = f"{split} loss {m['loss']:.4f}"
            if "acc" in m:
                txt += f" acc {100 * m['acc']:.2f}%"
            parts.append(txt)
        if seconds is not None:
            parts.append(f"{seconds:.2f} s")
        note = getattr(self.rule, "epoch_note", lambda: "")()   # time spent outside the epoch
        if seconds is not None and note:
            parts.append(f"({note})")
        self.log("  ".join(parts))
