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
  (:mod:`~simkit.training.signals`) marks it ``interrupted``, a
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
* **resume** -- loads that file and hands the schedule its ``meta.*`` arrays
  (:meth:`Loop.restore`); a schedule that can stop inside an epoch resumes there, to the same
  weights an uninterrupted run reaches. Trained epochs in ``metrics.csv`` without a readable
  checkpoint are refused, never restarted from scratch.
* **non-finite stop** -- :meth:`Loop.check_loss` raises on a NaN or infinite loss.
* **progress** -- :meth:`Loop.bar`, a tqdm bar per epoch (None: only on a terminal).

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
from simkit.training.rundir import load_state_arrays, recording_status, state_arrays
from simkit.training.signals import sigterm_as_interrupt

try:
    from tqdm.auto import tqdm
except ImportError:  # tqdm is a dependency, but the loop must not need it
    tqdm = None


class Loop:
    """The shared loop (module docstring); a schedule overrides the hooks below ``fit``."""

    lr_hint = "the learning rate"        # what a diverged run should lower

    def __init__(self, bk, net, rule, opt, *, run=None, log=print, progress=None, on_batch=None):
        self.bk, self.net, self.rule, self.opt = bk, net, rule, opt
        self.run, self.log, self.progress, self.on_batch = run, log, progress, on_batch
        self.epoch = 0                   # finished epochs
        self.saved_at = time.perf_counter()

    # ------------------------------------------------------------------------------ the loop
    def fit(self) -> dict:
        """Train to :attr:`n_epochs` (or a stop reason); returns the summary."""
        try:
            with sigterm_as_interrupt(), recording_status(self.run):
                if not self.started():
                    self.evaluate_initial()
                    self.save()
                while self.epoch < self.n_epochs and self.stop_reason() is None:
                    self.train_unit(self.epoch + 1)
                    self.save()
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

    def bar(self, total: int, initial: int, desc: str, unit="batch", position=None):
        """A progress bar over an epoch's minibatches (or other ``unit``), or None (no tqdm, or
        ``progress`` False); ``position``: its terminal line where several processes draw one."""
        if tqdm is None or self.progress is False:
            return None
        return tqdm(total=total, initial=initial, desc=desc, leave=False, unit=unit,
                    disable=None if self.progress is None else False, file=sys.stderr,
                    mininterval=0.5, position=position)

    # ------------------------------------------------------------------------------ checkpoints
    def save(self, status="running", partial=None):
        """Metrics, the schedule's files, ``checkpoint.npz`` (``partial``: a position inside an
        epoch, for the schedules that have one) and ``run.json``."""
        self.saved_at = time.perf_counter()
        if self.run is None:
            return
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
        arrays = self.run.load_checkpoint()
        if arrays is None:
            return False
        self.load_state(arrays)
        self.restore(arrays)
        if self.epoch > self.n_epochs:
            raise UserError(f"{self.run.path} has finished {self.epoch} epochs, more than the "
                            f"{self.n_epochs} asked for; resume with {self.epoch} or more epochs")
        return True

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
