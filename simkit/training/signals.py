"""SIGINT and SIGTERM: both stop a run the same way, at a safe point.

Ctrl-C raises :class:`KeyboardInterrupt`; within :func:`sigterm_as_interrupt` SIGTERM raises
:class:`Terminated`, a subclass of it. The training loop marks the run ``interrupted`` and keeps
its last checkpoint (:func:`simkit.training.rundir.recording_status`); the command line says how
to resume and exits with 130 (SIGINT) or 143 (SIGTERM).

The handler records a signal and raises it only where stopping leaves nothing half done:

* inside :func:`deferred_signals` (every write of a run directory) a signal waits until the block
  has finished, then is raised: a write completes, or (on SIGKILL) leaves only a temporary file;
* inside :func:`safe_points` (the training loop) the first signal waits for the loop's next
  :func:`check_signal` (after each minibatch or step, and after each save); a second one, as when
  Ctrl-C is pressed twice, is raised at once (unless a write is in progress);
* elsewhere a signal is raised at once, as Python does.
"""
import signal
import threading
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill PID``, a batch scheduler's stop), raised in the main thread as an interrupt:
    a run stops as on Ctrl-C (marked ``interrupted``, its finished epochs and last checkpoint kept,
    the CLI prints how to resume) and the CLI exits with 143 = 128 + SIGTERM. It matters for runs
    started in the background, where the shell makes Python ignore SIGINT."""


class _Held:
    """The main thread's signal state: the recorded signal and the open holding blocks."""
    pending = None                       # the recorded, not yet raised signal number
    writes = 0                           # open deferred_signals() blocks
    loops = 0                            # open safe_points() blocks


def _exception(signum) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _on_signal(signum, frame):
    if _Held.writes or (_Held.loops and _Held.pending is None):
        _Held.pending = _Held.pending or signum
        return
    _Held.pending = None
    raise _exception(signum)


def check_signal():
    """A safe point: raise the recorded signal, if any (main thread only)."""
    if not _in_main_thread():
        return
    signum, _Held.pending = _Held.pending, None
    if signum is not None:
        raise _exception(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def _holding(kind: str):
    if not _in_main_thread():           # signals reach only the main thread
        yield
        return
    setattr(_Held, kind, getattr(_Held, kind) + 1)
    try:
        yield
    except KeyboardInterrupt:
        if not _Held.writes + _Held.loops - 1:
            _Held.pending = None        # already stopping: the recorded signal is spent
        raise
    finally:
        setattr(_Held, kind, getattr(_Held, kind) - 1)
    if not _Held.writes and not (_Held.loops and kind == "writes"):
        check_signal()                  # the block's end is a safe point


def deferred_signals():
    """Within the block (a write), a signal waits until the block finishes, then is raised
    (inside a :func:`safe_points` block it is left to the loop's next :func:`check_signal`)."""
    return _holding("writes")


def safe_points():
    """Within the block (a training loop), the first signal waits for :func:`check_signal` or
    the block's end; a second is raised at once."""
    return _holding("loops")


@contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGINT and SIGTERM go through the recording handler (main thread only;
    the handlers before are restored after; a SIGINT the shell ignores stays ignored)."""
    if not _in_main_thread():
        yield
        return
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s, handler in before.items():
        if s == signal.SIGTERM or handler is signal.default_int_handler:
            signal.signal(s, _on_signal)
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
