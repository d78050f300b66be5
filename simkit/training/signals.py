"""SIGINT and SIGTERM: both stop a run the same way.

Ctrl-C raises :class:`KeyboardInterrupt`; within :func:`sigterm_as_interrupt` SIGTERM raises
:class:`Terminated`, a subclass of it. The training loop marks the run ``interrupted`` and keeps
its last checkpoint (:func:`simkit.training.rundir.recording_status`); the command line says how
to resume and exits with 130 (SIGINT) or 143 (SIGTERM).
"""
import signal
import threading
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill PID``, a batch scheduler's stop), raised in the main thread as an interrupt:
    a run stops as on Ctrl-C (marked ``interrupted``, its finished epochs and last checkpoint kept,
    the CLI prints how to resume) and the CLI exits with 143 = 128 + SIGTERM. It matters for runs
    started in the background, where the shell makes Python ignore SIGINT."""


@contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises :class:`Terminated` (main thread only; restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise Terminated
    before = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)
