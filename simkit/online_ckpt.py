"""Resume points of the long online figure runs (Fig. 4a: 24 min, Fig. 4b: 100 min on a CPU).

:func:`simkit.inversion_tasks.run_online` calls back after every evaluation; the task saves
there, at most every ``every_s`` seconds, everything the rest of the run depends on: the step
reached, the curves so far, every model's weights and feedback, and the SSA streams' states. At
an evaluation no deferred first-layer update is pending (blocks end there), so the saved weights
are the per-sample loop's. A run restarted with the same settings continues from the last save and
produces the same curves; a finished task removes its file. Files are ``.npz`` (no pickles),
written atomically, and carry a key of the settings they belong to: a file written for other
settings is left alone and the run starts afresh, saying so.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from simkit.results import load_arrays, save_arrays


class OnlineCheckpoint:
    """One task's resume file ``path`` for the settings ``key``."""

    def __init__(self, path, key: str, every_s: float = 60.0):
        self.path, self.key, self.every_s = Path(path), str(key), float(every_s)
        self.last = time.monotonic()

    def load(self) -> dict | None:
        """The saved arrays, or None (no file, or one for other settings)."""
        if not self.path.exists():
            return None
        arrays = load_arrays(self.path)
        if str(arrays.get("key", "")) != self.key:
            print(f"simkit: {self.path} was saved for other settings; starting afresh",
                  file=sys.stderr)
            return None
        print(f"simkit: resuming from {self.path}", file=sys.stderr)
        return arrays

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.every_s

    def save(self, arrays: dict):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        save_arrays(self.path, {"key": np.array(self.key), **arrays})
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
    """run_online's position: the next step and the curves so far."""
    return {"i": np.asarray(i), "steps": np.asarray(steps, dtype=np.int64),
            "evals": np.asarray(evals, dtype=float).reshape(-1, n_models)}


def loop_resume(arrays: dict):
    """``(i, steps, evals)`` for run_online's ``resume``."""
    return int(arrays["i"]), list(arrays["steps"]), [list(r) for r in arrays["evals"]]


class TaskResume:
    """A task's use of its resume file: restore at the start, save after evaluations, remove at
    the end (``path`` None: none of it). ``done`` lists are the finished epochs' curves."""

    def __init__(self, bk, models, rngs, path, key, n_models):
        self.bk, self.models, self.rngs, self.n = bk, models, rngs, n_models
        self.file = OnlineCheckpoint(path, key) if path else None
        self.state = self.file.load() if self.file else None
        if self.state is not None:
            restore_models(bk, models, rngs, self.state)
        self.epoch = int(self.state["epoch"]) if self.state is not None else 0

    def done(self, name) -> list:
        a = None if self.state is None else self.state.get(f"done.{name}")
        return [] if a is None or not len(a) else [a]

    def resume(self, epoch):
        return loop_resume(self.state) if self.state is not None and epoch == self.epoch \
            else None

    def saver(self, epoch, **done):
        """``on_eval`` for run_online: save when a minute has passed since the last save."""
        if self.file is None:
            return None

        def save(i, steps, evals):
            if self.file.due():
                finished = {f"done.{k}": np.concatenate(v) if v else np.zeros(0)
                            for k, v in done.items()}
                self.file.save({"epoch": np.asarray(epoch), **finished,
                                **loop_state(i, steps, evals, self.n),
                                **models_state(self.bk, self.models, self.rngs)})
        return save

    def finish(self):
        if self.file is not None:
            self.file.clear()
