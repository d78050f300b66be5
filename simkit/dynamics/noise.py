"""The noise of the DFC controller's noisy phases: standard normals per Euler step, chunked.

Every simulation loop (:func:`~simkit.dynamics.controller.simulate_reference`, the Numba twin,
the fast loop) takes ``noise(t0, t1)``: the draws of steps t0..t1-1 per layer, shape
(t1-t0, B, n_l), t0 a multiple of ``NOISE_CHUNK``. :func:`noise_source` makes one from a stream
key; :class:`LayerDraws` carries the whole (steps, B, N) array beside the per-layer views.
"""
from __future__ import annotations

import numpy as np

from simkit.dynamics.controller import NOISE_CHUNK
from simkit.kernels.gauss import fill_normals, stream_key


class LayerDraws(list):
    """Per-layer views of one array ``full`` whose last axis is split at the layer offsets (a
    noise chunk, or one step of it): loops that want the whole row read ``full``."""

    def __init__(self, views, full):
        super().__init__(views)
        self.full = full

    def step(self, i):
        """The draws of the chunk's i-th step, as LayerDraws."""
        return LayerDraws([v[i] for v in self], self.full[i])


def noise_source(bk, seed, B, sizes, steps, stream="counter", pool=None, dtype=np.float64,
                 spares=None):
    """``draw(t0, t1)``: the standard normals of Euler steps t0..t1-1 of one noisy simulation,
    shape (t1-t0, B, n_l) per layer, t0 a multiple of NOISE_CHUNK. On the CPU the next chunk is
    drawn on ``pool``'s thread while the loop runs (the generators release the GIL), in the same
    order (a GPU queues its work anyway); a chunk stays valid until the next call.

    ``stream="counter"``: :mod:`simkit.kernels.gauss` with key ``stream_key(*seed)``, element
    (t, b, n) at offset (t B + b) N + n, in ``dtype``, into two reused buffers on ``bk``'s
    device, drawn by ``bk``'s twin; ``"numpy"``: NumPy's PCG64 ziggurat seeded with ``seed``,
    float64, on the host (5x slower). ``spares``: a :class:`~simkit.kernels.spares.Spares` that
    lends the two buffers and gets them back once the last chunk is drawn (the next simulation
    reuses them; the caller runs one simulation at a time per ``spares``)."""
    offs, N = np.cumsum([0, *sizes]), int(sum(sizes))
    if stream == "numpy":
        rng = np.random.default_rng(seed)

        def make(t0):
            return rng.standard_normal((min(t0 + NOISE_CHUNK, steps) - t0, B, N))
    else:
        key, shape = stream_key(*seed), (min(NOISE_CHUNK, steps), B, N)
        layout = (shape, np.dtype(dtype))

        def fresh():
            return [bk.xp.empty(shape, dtype=dtype) for _ in range(2)]
        held = {}                      # the two buffers, taken at the first draw (a GPU kernel
                                       # computes the draws itself and takes none)

        def make(t0):                  # chunk c fills bufs[c % 2]: the loop is done with it
            if not held:
                held["bufs"] = spares.take(layout, fresh) if spares is not None else fresh()
            out = held["bufs"][(t0 // NOISE_CHUNK) % 2][:min(t0 + NOISE_CHUNK, steps) - t0]
            return fill_normals(bk, out, key, t0 * B * N)
    pending, ahead = {}, pool is not None and bk.name != "cupy"

    def draw(t0, t1):
        chunk = pending.pop(t0).result() if t0 in pending else make(t0)
        if t1 < steps and ahead:
            pending[t1] = pool.submit(make, t1)
        if t1 >= steps and spares is not None and stream != "numpy":
            spares.give(layout, held["bufs"])  # read until the simulation ends; taken after it
        xi = bk.asarray(chunk)
        return LayerDraws([xi[:, :, offs[l]:offs[l + 1]] for l in range(len(sizes))], xi)
    draw.key = None if stream == "numpy" else key     # a kernel may compute the draws itself
    return draw
