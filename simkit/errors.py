"""Errors a user can fix.

Every error that comes from bad input (a flag value, a missing or corrupt data file, an impossible
shape, an unstable step size) is a :class:`UserError`. The command line prints its message as one
line and exits with status 2; library callers can catch it. Its message says what is wrong and what
is allowed.

A stop from outside (SIGTERM) is not an error: :func:`sigterm_as_interrupt` turns it into an
interrupt, so that a run stops as it does on Ctrl-C.
"""
import signal
import threading
from contextlib import contextmanager


class UserError(Exception):
    """Bad input: the message says what is wrong and what is allowed (CLI exit status 2)."""


class DataError(UserError):
    """A data file is missing, corrupt, truncated or of the wrong format."""


class NumericalError(UserError):
    """A run diverged (NaN/inf) or a step size is unstable; the last good checkpoint is kept."""


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
