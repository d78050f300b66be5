"""Progress inside an epoch where no progress bar is drawn: plain lines, rate-limited.

A log file or a scheduler's output shows no tqdm bar (output not a terminal, ``TQDM_DISABLE``),
and a long epoch would show nothing for minutes. :class:`PlainProgress` has the part of tqdm's
interface the schedules use and writes one line at most every ``every`` seconds, e.g.
``epoch 3: 41% (512/1250 batches), 12.3 s, loss=0.2871`` (the time since the epoch's part in
this process began).
"""
from __future__ import annotations

import sys
import time

PROGRESS_EVERY = 30.0          # seconds between two plain progress lines


class PlainProgress:
    """tqdm's ``update``, ``n``, ``set_postfix``, ``set_postfix_str`` and ``close``, as plain
    lines on ``file`` at most every ``every`` seconds."""

    def __init__(self, total: int, initial: int, desc: str, unit="batch", every=PROGRESS_EVERY,
                 file=None):
        self.total, self.n, self.desc, self.every = total, initial, desc, every
        self.units = unit + ("es" if unit.endswith(("ch", "s", "x")) else "s")
        self.file = file if file is not None else sys.stderr
        self.postfix = ""
        self.started = self.shown = time.perf_counter()

    def update(self, n=1):
        self.n += n
        now = time.perf_counter()
        if now - self.shown >= self.every:
            self.shown = now
            self.file.write(f"{self.line(now - self.started)}\n")
            self.file.flush()

    def line(self, seconds: float) -> str:
        pct = 100 * self.n / self.total if self.total else 100.0
        text = f"{self.desc}: {pct:.0f}% ({self.n}/{self.total} {self.units}), {seconds:.1f} s"
        return f"{text}, {self.postfix}" if self.postfix else text

    def set_postfix(self, **values):
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def set_postfix_str(self, text: str, refresh=True):
        self.postfix = text

    def close(self):
        """Nothing to clear (tqdm's interface)."""
