r"""Standard normal draws from a counter-based stream: any slice drawn on its own, 5x NumPy's speed.

The noisy DFC phases draw one normal per neuron, sample and Euler step: 5e7 per minibatch of
the single-phase Strong-DFC command, where NumPy's ziggurat (11 ns a draw on this project's
CPU) was a third of the epoch's work. Here element :math:`i` of the stream with key :math:`k`
is a pure function of :math:`(k, i)`, so the loop below has no carried state and the compiler
vectorises it (~2 ns a draw with AVX-512 on the machine of 2026-11-24; some of these machines
have AVX2 only), and a resumed run or a replayed simulation draws the same numbers from any
offset.

Pair :math:`p` (elements :math:`2p, 2p+1`) is the Box-Muller transform (Box & Muller 1958) of two
64-bit hashes :math:`z_1 = h(2p)`, :math:`z_2 = h(2p+1)`,
:math:`h(j) = \mathrm{mix}\big((j\gamma \bmod 2^{64}) \oplus k\big)` with SplitMix64's
finaliser mix and Weyl constant :math:`\gamma` (Steele, Lea & Flood 2014):

.. math::

    u &= (\lfloor z_1 / 2^{11}\rfloor + 1)\,2^{-53} \in (0, 1], \qquad R = \sqrt{-2\ln u},\\
    q &= \lfloor z_2 / 2^{62}\rfloor \in \{0,1,2,3\}, \qquad
    f = (\lfloor z_2 / 2^{9}\rfloor \bmod 2^{53})\,2^{-53} \in [0, 1),\\
    \theta &= q\,\tfrac{\pi}{2} + (f - \tfrac12)\tfrac{\pi}{2}, \qquad
    x_{2p} = R\cos\theta, \quad x_{2p+1} = R\sin\theta .

:math:`\theta` is uniform on a full turn, so the pair is two independent standard normals.
The kernel evaluates :math:`\ln`, :math:`\sin` and :math:`\cos` with :mod:`simkit.kernels.vmath`'s
series (to 2 ulp; the tests compare with ``np.log`` / ``np.cos``), because the C library's calls
would stop the vectorisation. :func:`normals_xp` is the same stream written with array calls
(NumPy or CuPy) for the tests and for machines without Numba.
"""
from __future__ import annotations

import math

import numpy as np

GAMMA, M1, M2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
MASK64 = (1 << 64) - 1
INV53 = 2.0 ** -53
HALF_PI = math.pi / 2


def stream_key(*ints) -> int:
    """A 64-bit stream key from non-negative integers (seed, epoch, counter, phase ...):
    SplitMix64 steps folded over them, so nearby tuples give unrelated keys."""
    k = 0
    for i in ints:
        k = _mix_int((k + (int(i) + 1) * GAMMA) & MASK64)
    return k


def _mix_int(z: int) -> int:
    z = ((z ^ (z >> 30)) * M1) & MASK64
    z = ((z ^ (z >> 27)) * M2) & MASK64
    return z ^ (z >> 31)


# ----------------------------------------------------------------- array-call version (NumPy/CuPy)
def _mix_xp(z):
    z = (z ^ (z >> 30)) * M1
    z = (z ^ (z >> 27)) * M2
    return z ^ (z >> 31)


def normals_xp(xp, key: int, start: int, shape, dtype=np.float64):
    """Elements ``start, start+1, ...`` of stream ``key`` as an array of ``shape``, with array
    calls (``np.log``, ``np.cos``): the definition above, for any backend."""
    n = int(np.prod(shape))
    p0, p1 = start // 2, (start + n + 1) // 2                      # the pairs that cover the slice
    j = xp.arange(2 * p0, 2 * p1, dtype=xp.uint64)
    with np.errstate(over="ignore"):
        z = _mix_xp((j * xp.uint64(GAMMA)) ^ xp.uint64(key))
    z1, z2 = z[0::2], z[1::2]
    u = ((z1 >> 11).astype(xp.float64) + 1.0) * INV53
    R = xp.sqrt(-2.0 * xp.log(u))
    q = (z2 >> 62).astype(xp.float64)
    f = ((z2 >> 9) & xp.uint64((1 << 53) - 1)).astype(xp.float64) * INV53
    theta = q * HALF_PI + (f - 0.5) * HALF_PI
    pairs = xp.stack([R * xp.cos(theta), R * xp.sin(theta)], axis=1).reshape(-1)
    lo = start - 2 * p0
    return pairs[lo:lo + n].astype(dtype).reshape(shape)


# --------------------------------------------------------------------------- the Numba kernel
from simkit.kernels.vmath import nb  # noqa: E402

if nb is not None:
    from simkit.kernels.vmath import jit, log, sincos

    g, m1, m2, k53 = np.uint64(GAMMA), np.uint64(M1), np.uint64(M2), np.uint64((1 << 53) - 1)

    @jit
    def mix(z):
        z = (z ^ (z >> np.uint64(30))) * m1
        z = (z ^ (z >> np.uint64(27))) * m2
        return z ^ (z >> np.uint64(31))

    @jit
    def pair(k, p):
        """Elements 2p and 2p+1 of stream k (the module docstring's formulas)."""
        z1 = mix((np.uint64(2) * p * g) ^ k)
        z2 = mix((np.uint64(2) * p * g + g) ^ k)
        R = math.sqrt(-2.0 * log((np.int64(z1 >> np.uint64(11)) + 1.0) * INV53))
        q = np.int64(z2 >> np.uint64(62))
        f = np.int64((z2 >> np.uint64(9)) & k53) * INV53
        sn, cs = sincos((f - 0.5) * HALF_PI)
        odd, sign = (q & 1) == 1, 1.0 - 2.0 * (q >> 1)
        return sign * R * (-sn if odd else cs), sign * R * (cs if odd else sn)

    @nb.njit(nogil=True, error_model="numpy", cache=True)
    def fill(out, key, start):
        """out[i] = element start + i of stream key (out flat, float64 or float32)."""
        k, n, i = key, out.size, 0
        if start % 2 == 1 and n > 0:                      # the slice starts mid-pair
            out[0] = pair(k, np.uint64(start // 2))[1]
            i = 1
        p0 = (start + i) // 2
        for j in range((n - i) // 2):
            a, b = pair(k, np.uint64(p0 + j))
            out[i + 2 * j] = a
            out[i + 2 * j + 1] = b
        if (n - i) % 2 == 1:                              # ... or ends mid-pair
            out[n - 1] = pair(k, np.uint64((start + n - 1) // 2))[0]


def fill_normals(out: np.ndarray, key: int, start: int) -> np.ndarray:
    """Fill the contiguous host array ``out`` with elements ``start, start+1, ...`` of stream
    ``key`` (the Numba kernel; :func:`normals_xp` where Numba is missing) and return it.
    Releases the GIL, so a helper thread can draw while the main thread computes."""
    if nb is None:                                          # pragma: no cover
        out[...] = normals_xp(np, key, start, out.shape, out.dtype)
    else:
        fill(out.reshape(-1), np.uint64(key), np.int64(start))
    return out


def normals(key: int, start: int, shape, dtype=np.float64) -> np.ndarray:
    """A new host array of ``shape``: elements ``start, start+1, ...`` of stream ``key``."""
    return fill_normals(np.empty(shape, dtype=dtype), key, start)
