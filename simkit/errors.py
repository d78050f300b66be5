"""Errors a user can fix.

Every error that comes from bad input (a flag value, a missing or corrupt data file, an impossible
shape, an unstable step size) is a :class:`UserError`. The command line prints its message as one
line and exits with status 2; library callers can catch it. Its message says what is wrong and what
is allowed.

A stop from outside (SIGTERM) is not an error: :mod:`simkit.training.signals` turns it into an
interrupt, so that a run stops as it does on Ctrl-C.
"""


class UserError(Exception):
    """Bad input: the message says what is wrong and what is allowed (CLI exit status 2)."""


class DataError(UserError):
    """A data file is missing, corrupt, truncated or of the wrong format."""


class NumericalError(UserError):
    """A run diverged (NaN/inf) or a step size is unstable; the last good checkpoint is kept."""
