"""Run directories: ``run.json``, ``metrics.csv``, ``checkpoint.npz``; every write is atomic.

A run directory holds

``run.json``        the resolved configuration, exact command, seed, backend, device, versions,
                    git commit, status (``running``, ``finished``, ``interrupted``, ``failed``,
                    ``stopped``), and a summary of the results
``metrics.csv``     long format ``epoch,split,metric,layer,value`` (``layer`` empty for whole-net
                    metrics); one block of rows per finished epoch, epoch 0 = before training
                    (``epoch`` may be fractional where a run evaluates inside epochs, as GAIT's
                    curves do)
``checkpoint.npz``  everything needed to resume, after the last finished epoch or inside one;
                    read with ``allow_pickle=False`` (its keys: :mod:`simkit.training.loop`)
``.lock``           while a process trains the run: its pid and host (:meth:`RunDir.lock`)

Each file is written to a temporary name in the same folder and renamed over the old one
(``os.replace``), with stop signals held until the write has finished
(:func:`~simkit.training.signals.deferred_signals`), so a crash or Ctrl-C leaves either the old or
the new file, never half of one; the temporary file a killed process leaves (``.NAME.*.tmp``) is
removed when the run is resumed (:meth:`RunDir.remove_temporaries`).
"""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from simkit.errors import NumericalError, UserError
from simkit.training.lock import RunLock
from simkit.training.signals import deferred_signals

METRIC_FIELDS = ("epoch", "split", "metric", "layer", "value")
TMP_SUFFIX = ".tmp"                      # atomic writes' temporary files: .NAME.XXXX.tmp


def atomic_write_bytes(path: Path, data: bytes):
    """Write ``data`` to ``path`` through a temporary file and a rename (signals held)."""
    path = Path(path)
    with deferred_signals():
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
        try:
            os.chmod(tmp, 0o666 & ~_umask())          # mkstemp makes 0600; use the usual mode
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: Path, obj):
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


def save_arrays(path: Path, arrays: dict):
    """Atomically save a dict of host arrays as an uncompressed ``.npz``."""
    with deferred_signals():                 # a signal inside np.savez breaks the zip
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
        atomic_write_bytes(path, buf.getvalue())


def load_arrays(path: Path) -> dict:
    """Read an ``.npz`` written by :func:`save_arrays` (no pickles admitted); one line when the
    file is no ``.npz`` archive or is damaged."""
    path = Path(path)
    size = path.stat().st_size
    what = "restore it, or start a new run in another folder"
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is not a valid .npz (zip) archive ({size} bytes): it is damaged "
                        f"or not a checkpoint; {what}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"cannot read {path} ({size} bytes): {exc}; {what}") from exc


def state_arrays(**parts) -> dict:
    """One flat dict of host arrays from objects' ``state_dict()``, keys ``PART.KEY``."""
    return {f"{prefix}.{k}": v for prefix, obj in parts.items()
            for k, v in obj.state_dict().items()}


def load_state_arrays(arrays: dict, **parts):
    """Hand each object its ``PART.*`` arrays (the inverse of :func:`state_arrays`)."""
    for prefix, obj in parts.items():
        n = len(prefix) + 1
        obj.load_state_dict({k[n:]: v for k, v in arrays.items() if k.startswith(prefix + ".")})


@contextmanager
def recording_status(run):
    """Record in ``run`` (a :class:`RunDir` or None) how the block ended, then re-raise: a Ctrl-C,
    a SIGTERM or a closed output pipe mark it ``interrupted``; any other exception (a
    :class:`~simkit.errors.NumericalError`, a refusal, a crash) ``failed``, with the reason. A run
    never stays ``running`` after its process has left the block."""
    try:
        yield
    except (KeyboardInterrupt, BrokenPipeError):
        if run is not None:
            run.update_info(status="interrupted")
        raise
    except Exception as exc:
        if run is not None:
            reason = str(exc) if isinstance(exc, NumericalError) else f"{type(exc).__name__}: {exc}"
            run.update_info(status="failed", reason=reason)
        raise


def make_folder(path: Path, check_only=False, what="run directory"):
    """Create the folder ``path`` (a ``what``) and its parents (``check_only``: only check that
    no file is in the way); one line when a file is in the way."""
    path = Path(path)
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        where = "" if blocker == path else f" (in the way of {path})"
        raise UserError(f"{what} {path}: {blocker} is a file, not a folder{where}; "
                        f"choose another {what}")
    if check_only:
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {what} {path}: {exc.strerror}; choose another "
                        f"{what}") from exc


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except Exception:
        return None


class RunDir:
    """One run's folder and its three files."""

    def __init__(self, path):
        self.path = Path(path)
        self.run_lock = RunLock(self.path)

    run_json = property(lambda self: self.path / "run.json")
    metrics_csv = property(lambda self: self.path / "metrics.csv")
    checkpoint = property(lambda self: self.path / "checkpoint.npz")

    def exists(self) -> bool:
        return self.run_json.exists()

    def create(self, info: dict):
        """Start a new run here (and lock it); refuses to overwrite an existing one."""
        self.check_new()
        make_folder(self.path)
        self.lock()
        info = dict(info, status="running", started=time.strftime("%Y-%m-%dT%H:%M:%S"),
                    command=sys.argv, git_commit=git_commit())
        atomic_write_json(self.run_json, info)
        self.write_metrics([])

    def check_new(self):
        """Refuse, before anything is written, a path that holds a run or has a file in the way
        (:meth:`create` checks it again)."""
        if self.exists():
            raise UserError(f"{self.path} already holds a run; pass --resume to continue it or "
                            "choose another --out-dir")
        make_folder(self.path, check_only=True)

    def lock(self):
        """Hold ``.lock`` until :meth:`unlock` (:mod:`simkit.training.lock`); refuses a run
        directory that another live process holds."""
        if not self.run_lock.held:
            self.run_lock.acquire()

    def unlock(self):
        self.run_lock.release()

    def read_info(self) -> dict:
        if not self.exists():
            raise UserError(f"no run to resume in {self.path} (run.json missing)")
        try:
            return json.loads(self.run_json.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{self.run_json} is corrupt ({exc}); start a new run") from exc

    def update_info(self, **fields):
        info = self.read_info()
        info.update(fields)
        atomic_write_json(self.run_json, info)

    def read_metrics(self) -> list[dict]:
        if not self.metrics_csv.exists():
            return []
        with open(self.metrics_csv, newline="") as f:
            return list(csv.DictReader(f))

    def write_metrics(self, rows: list[dict]):
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in METRIC_FIELDS})
        atomic_write_bytes(self.metrics_csv, buf.getvalue().encode())

    def save_checkpoint(self, arrays: dict):
        save_arrays(self.checkpoint, arrays)

    def remove_temporaries(self) -> list[str]:
        """Remove the temporary files of writes a killed process left (call it holding the
        run); returns their names."""
        stale = sorted(p for p in self.path.glob(f".*{TMP_SUFFIX}") if p.is_file())
        for p in stale:
            p.unlink(missing_ok=True)
        return [p.name for p in stale]

    def load_checkpoint(self) -> dict | None:
        """The checkpoint's arrays; None where the run has none yet (nothing trained: its
        metrics hold at most epoch 0). Trained epochs without a checkpoint: :class:`UserError`."""
        if self.checkpoint.exists():
            return load_arrays(self.checkpoint)
        done = [float(r["epoch"]) for r in self.read_metrics() if float(r["epoch"]) > 0]
        if done:
            raise UserError(f"cannot resume {self.path}: metrics.csv holds results up to epoch "
                            f"{max(done):g} but checkpoint.npz is missing; restore "
                            "checkpoint.npz, or start a new run in another folder")
        return None
