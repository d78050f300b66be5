"""Buffers kept from one call for the next call with the same shapes.

The controller loops need a few hundred MB of chunk buffers per minibatch (the single phase:
two sets of rates, mismatches, basal voltages and Eq. (13) factors, (50, 128, 778) each, about
320 MB, plus 80 MB of noise). Allocated afresh, every page of them is faulted in and zeroed by
the kernel on first touch, once per minibatch; kept, they are written in place. A
:class:`Spares` hands a spare set out (``take``) and gets it back when the call is done
(``give``), so a set is never in two calls at once (another thread finds none and allocates its
own). It keeps the sets of the ``keep`` most recently given shapes (a run alternates between at
most two: a full and the last, smaller, minibatch, or a forward and a feedback phase).
"""
from __future__ import annotations

import threading


class Spares:
    """Spare buffer sets by key (module docstring)."""

    def __init__(self, keep: int = 2):
        self.keep, self._sets, self._lock = keep, {}, threading.Lock()

    def take(self, key, make):
        """A spare set for ``key``, else ``make()``."""
        with self._lock:
            spare = self._sets.pop(key, None)
        return make() if spare is None else spare

    def give(self, key, obj):
        """Keep ``obj`` for the next ``take(key)``; the oldest other keys go beyond ``keep``."""
        with self._lock:
            self._sets.pop(key, None)
            self._sets[key] = obj                        # dicts keep insertion order: newest last
            while len(self._sets) > self.keep:
                del self._sets[next(iter(self._sets))]

    def clear(self):
        with self._lock:
            self._sets.clear()
