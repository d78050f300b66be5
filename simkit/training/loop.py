"""The training loop that every schedule shares: run directory, checkpoints, resume, stops.

:class:`Loop` runs a network, a rule and an optimiser through epochs. What a step sees and when
the loop evaluates is the schedule's (a subclass's) business; everything around it is here, once:

* **start** -- creates the run directory (``run.json``: configuration, backend, versions, status
  ``running``) or resumes the run in it, and locks it (``.lock``,
  :mod:`~simkit.training.lock`) until ``fit`` ends, whatever the exit. A resumed run may be given
  more epochs than it was started with (it goes on to them; ``run.json`` records the new
  configuration and ``running`` again), never fewer than it has finished.
* **fit** -- an evaluation before training (skipped by a resumed run), then epochs until the
  schedule's epoch count or a :meth:`Loop.stop_reason`; after every epoch a save and a report.
  The run ends ``finished`` or ``stopped`` (with the reason); a Ctrl-C or a SIGTERM
  (:mod:`~simkit.training.signals`), acted on at the next safe point (after a minibatch or step,
  never inside a save), marks it ``interrupted``, a
  :class:`~simkit.errors.NumericalError` ``failed``
  (:func:`~simkit.training.rundir.recording_status`); the last checkpoint is kept. The rule's
  ``close()``, where it has one, runs at the end whatever happened.
* **save** -- ``metrics.csv`` (:meth:`Loop.metric_rows`), the schedule's own files, then
  ``checkpoint.npz`` and ``run.json``, each written atomically.
* **checkpoint.npz** -- one format for every schedule, read with ``allow_pickle=False``: the
  loop's position as ``meta.*`` arrays (``meta.epoch``, finished epochs, and whatever the schedule
  needs to go on inside an epoch) and its records, beside what is trained
  (:meth:`Loop.state_arrays`): the state of the network, optimiser and rule as ``net.*``,
  ``opt.*``, ``rule.*`` (their ``state_dict()``), or a schedule's own (the online schedule's
  paired models, ``m{k}.*``).
* **resume** -- removes the temporary files of a killed process's writes (saying so), loads
  that file and hands the schedule its ``meta.*`` arrays
  (:meth:`Loop.restore`); a schedule that can stop inside an epoch resumes there, to the same
  weights an uninterrupted run reaches. Trained epochs in ``metrics.csv`` without a readable
  checkpoint are refused, never restarted from scratch.
* **non-finite stop** -- :meth:`Loop.check_loss` raises on a NaN or infinite minibatch loss.
* **divergence stop** -- :meth:`Loop.check_divergence` raises before a save whose losses (the
  epoch's mean train loss, the evaluations' losses) are not finite or exceed
  ``divergence_factor`` times their value before training (:meth:`Loop.start_losses`), taken as
  at least :data:`LOSS_FLOOR`: no checkpoint of a diverged run is written. A blow-up that stays
  finite (a learning rate of 1e9: losses of 1e10, accuracy at chance) ends as a NaN does. The
  default factor is 10, not more: a binary cross-entropy is clamped at 100 per output (as
  PyTorch's), so from its start of ln 2 it can rise at most 145-fold (F³ at a learning rate of 1e9
  reaches 65-fold); normal runs stay near or below 1 (their losses fall from the start). The
  floor keeps a regression whose loss starts near 0 from stopping on noise. The bound is
  checked on epoch means and evaluations, not on single minibatches, which are noisier.
  Weights that go non-finite show there too: every evaluation is a forward pass with them.
* **progress** -- :meth:`Loop.bar`, a tqdm bar per epoch on a terminal (or with ``--progress``),
  else plain lines at most every :attr:`Loop.progress_every` seconds
  (:class:`~simkit.training.progress.PlainProgress`); nothing with ``progress`` False.

The schedules: :class:`~simkit.training.epochs.Trainer` (shuffled minibatch epochs),
:class:`~simkit.training.fixed_order.GaitTrainer` (fixed-order batches, evaluations every k
updates) and :class:`~simkit.training.online.OnlineTrainer` (sample by sample, paired models,
evaluations every k samples).
"""
from __future__ import annotations

import math
import sys
import time

from simkit.backend import versions
from simkit.errors import NumericalError, UserError
from simkit.training.progress import PROGRESS_EVERY, PlainProgress
from simkit.training.rundir import load_state_arrays, recording_status, state_arrays
from simkit.training.signals import (
    check_signal,
    deferred_signals,
    safe_points,
    sigterm_as_interrupt,
)

try:
    from tqdm.auto import tqdm
except ImportError:  # tqdm is a dependency, but the loop must not need it
    tqdm = None

DIVERGENCE_FACTOR = 10.0    # a loss above this times its value before training: diverged
LOSS_FLOOR = 1.0            # the least start value the bound is relative to (an MSE may start
#                             near 0; a cross-entropy starts near ln C)


class Loop:
    """The shared loop (module docstring); a schedule overrides the hooks below ``fit``."""

    lr_hint = "the learning rate"        # what a diverged run should lower
    divergence_factor = DIVERGENCE_FACTOR   # <= 0: no bound (non-finite losses still stop)
    progress_every = PROGRESS_EVERY      # seconds between plain progress lines

    def __init__(self, bk, net, rule, opt, *, run=None, log=print, progress=None, on_batch=None):
        self.bk, self.net, self.rule, self.opt = bk, net, rule, opt
        self.run, self.log, self.progress, self.on_batch = run, log, progress, on_batch
        self.epoch = 0                   # finished epochs
        self.saved_at = time.perf_counter()

    # ------------------------------------------------------------------------------ the loop
    def fit(self) -> dict:
        """Train to :attr:`n_epochs` (or a stop reason); returns the summary."""
        try:
            with sigterm_as_interrupt(), recording_status(self.run), safe_points():
                if not self.started():
                    self.evaluate_initial()
                    self.save()
                while self.epoch < self.n_epochs and self.stop_reason() is None:
                    self.train_unit(self.epoch + 1)
                    self.save()
                    check_signal()
                    self.report()
            return self.finish()
        finally:
            close = getattr(self.rule, "close", None)
            if close is not None:
                close()
            if self.run is not None:
                self.run.unlock()

    def finish(self) -> dict:
        """Mark the run ``stopped`` (with the reason) or write the final files and ``finished``."""
        reason = self.stop_reason()
        if reason is not None:
            if self.log is not None:
                self.log(f"stopped early: {reason}")
            if self.run is not None:
                self.run.update_info(status="stopped", reason=reason, summary=self.summary())
            return self.summary()
        if self.run is not None:
            self.write_final()
            self.run.update_info(status="finished", summary=self.summary())
        return self.summary()

    def check_loss(self, loss: float, epoch: int, batch: int):
        """Stop the run with a :class:`NumericalError` when ``loss`` is NaN or infinite."""
        if not math.isfinite(loss):
            raise NumericalError(f"loss became {loss} in epoch {epoch}, batch {batch}: the run "
                                 f"diverged; lower {self.lr_hint} (last good checkpoint kept)")

    def check_divergence(self, losses: dict, where: str):
        """Stop the run with a :class:`NumericalError` when a loss in ``losses`` (split -> value)
        is not finite or exceeds :attr:`divergence_factor` times ``max(its value before
        training, LOSS_FLOOR)``. Called before saves, so the last checkpoint stays a good one."""
        for split, value in losses.items():
            if not math.isfinite(value):
                raise NumericalError(f"{split} loss became {value} {where}: the run diverged; "
                                     f"lower {self.lr_hint} (last good checkpoint kept)")
        if not self.divergence_factor > 0:
            return
        start = self.start_losses()
        for split, value in losses.items():
            if split in start and value > self.divergence_factor * max(start[split], LOSS_FLOOR):
                raise NumericalError(
                    f"{split} loss {value:.4g} {where} is over {self.divergence_factor:g} times "
                    f"its value before training ({start[split]:.4g}): the run diverged; lower "
                    f"{self.lr_hint} (last good checkpoint kept; --divergence-factor sets the "
                    "bound, --no-divergence-check turns it off)")

    def bar(self, total: int, initial: int, desc: str, unit="batch", position=None):
        """A progress bar over an epoch's minibatches (or other ``unit``): tqdm's on a terminal
        or with ``progress`` True, else :class:`PlainProgress` lines; None with ``progress``
        False. ``position``: the bar's terminal line where several processes draw one."""
        if self.progress is False:
            return None
        if tqdm is not None:
            bar = tqdm(total=total, initial=initial, desc=desc, leave=False, unit=unit,
                       disable=None if self.progress is None else False, file=sys.stderr,
                       mininterval=0.5, position=position)
            if not bar.disable:
                return bar
            bar.close()
        return PlainProgress(total, initial, desc, unit, self.progress_every)

    # ------------------------------------------------------------------------------ checkpoints
    def save(self, status="running", partial=None):
        """Metrics, the schedule's files, ``checkpoint.npz`` (``partial``: a position inside an
        epoch, for the schedules that have one) and ``run.json``."""
        self.saved_at = time.perf_counter()
        if self.run is None:
            return
        with deferred_signals():             # all four files, or (on SIGKILL) the old ones
            self.run.write_metrics(self.metric_rows())
            self.write_outputs()
            self.run.save_checkpoint({**self.position(partial), **self.state_arrays()})
            self.run.update_info(status=status, summary=self.summary())

    def start(self, resume: bool, config: dict, **info) -> bool:
        """Open and lock the run directory: continue its run (True when it has a checkpoint;
        ``run.json`` then takes ``config`` and ``info`` and the status ``running``), or create it,
        ``run.json`` holding ``config``, the backend, the library versions and ``info``."""
        try:
            if not resume:
                self.run.create({"config": config, "backend": self.bk.describe(),
                                 "versions": versions(), **info})
                self.remove_temporaries()    # a killed process's, started in this folder before
                return False
            self.run.lock()
            resumed = self.resume()
            self.run.update_info(config=config, status="running", **info)
            return resumed
        except BaseException:
            self.run.unlock()
            raise

    def resume(self) -> bool:
        """Load the run directory's checkpoint; False if there is none yet."""
        self.remove_temporaries()
        arrays = self.run.load_checkpoint()
        if arrays is None:
            return False
        self.load_state(arrays)
        self.restore(arrays)
        if self.epoch > self.n_epochs:
            raise UserError(f"{self.run.path} has finished {self.epoch} epochs, more than the "
                            f"{self.n_epochs} asked for; resume with {self.epoch} or more epochs")
        return True

    def remove_temporaries(self):
        """Remove (and name) the temporary files of a killed process's unfinished writes."""
        stale = self.run.remove_temporaries()
        if stale and self.log is not None:
            self.log(f"removed {len(stale)} temporary file(s) of an unfinished write: "
                     + ", ".join(stale))

    # ------------------------------------------------------------------------------ schedule hooks
    n_epochs = 0                          # epochs to train

    def started(self) -> bool:
        """Whether the evaluation before training is done (a resumed run)."""
        raise NotImplementedError

    def evaluate_initial(self):
        """The evaluation before any training, recorded and reported."""
        raise NotImplementedError

    def train_unit(self, epoch: int):
        """Train epoch ``epoch`` (going on from a restored position) and evaluate it."""
        raise NotImplementedError

    def report(self):
        """Log the epoch just finished."""

    def start_losses(self) -> dict:
        """The losses before training (split -> value) that :meth:`check_divergence` bounds by."""
        return {}

    def stop_reason(self) -> str | None:
        """Why the run should stop before its last epoch, or None."""
        return None

    def summary(self) -> dict:
        raise NotImplementedError

    def metric_rows(self) -> list[dict]:
        """The rows of ``metrics.csv`` so far."""
        raise NotImplementedError

    def position(self, partial=None) -> dict:
        """The loop's ``meta.*`` arrays (and records) for ``checkpoint.npz``."""
        raise NotImplementedError

    def restore(self, arrays: dict):
        """The inverse of :meth:`position`."""
        raise NotImplementedError

    def state_arrays(self) -> dict:
        """What is trained, as ``checkpoint.npz`` arrays: the network's, optimiser's and rule's
        ``state_dict()`` as ``net.*``, ``opt.*``, ``rule.*``."""
        return state_arrays(net=self.net, opt=self.opt, rule=self.rule)

    def load_state(self, arrays: dict):
        """The inverse of :meth:`state_arrays`, in place."""
        load_state_arrays(arrays, net=self.net, opt=self.opt, rule=self.rule)

    def write_outputs(self):
        """The schedule's own files, written at every save."""

    def write_final(self):
        """The schedule's own files, written when the run finishes."""
