r"""Standard normal draws from a counter-based stream: any slice drawn on its own, 5x NumPy's speed.

The noisy DFC phases draw one normal per neuron, sample and Euler step: 5e7 per minibatch of
the single-phase Strong-DFC command, where NumPy's ziggurat (~11 ns a draw) would be a third of
the epoch's work. Here element :math:`i` of the stream with key :math:`k` is a pure function of
:math:`(k, i)`, so the loop below has no carried state and the compiler vectorises it (~2 ns a
draw with AVX-512), and a resumed run or a replayed simulation draws the same numbers from any
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
The twins take :math:`\cos\theta` and :math:`\sin\theta` as :math:`\pm\cos` and :math:`\pm\sin`
of :math:`(f - \tfrac12)\tfrac{\pi}{2}`, by quadrant :math:`q`.
The twins evaluate :math:`\ln`, :math:`\sin` and :math:`\cos` with :mod:`simkit.kernels.vmath`'s
series (to 2 ulp of ``np.log`` / ``np.cos``; the tests compare them with the formulas above
written with NumPy's functions), because the C library's calls would stop the vectorisation:
:func:`fill` is the Numba twin, :func:`normals_xp` the same operations with array calls (NumPy
or CuPy), and they give the same bits. :func:`fill_normals` runs the twin of the run's backend.
"""
from __future__ import annotations

import math

import numpy as np

from simkit.backend.jit import njit
from simkit.kernels.vmath import inline, log, log_xp, sincos, sincos_xp

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


# ------------------------------------------------------------- the twins: array calls and Numba
def _mix_xp(z):
    """SplitMix64's finaliser of a uint64 array, in place."""
    z ^= z >> 30
    z *= M1
    z ^= z >> 27
    z *= M2
    z ^= z >> 31
    return z


def normals_xp(xp, key: int, start: int, shape, dtype=np.float64):
    """Elements ``start, start+1, ...`` of stream ``key`` as an array of ``shape``, with array
    calls (NumPy or CuPy): the module docstring's formulas in :func:`pair`'s order."""
    n = int(np.prod(shape))
    p0, p1 = start // 2, (start + n + 1) // 2                      # the pairs that cover the slice
    z = xp.arange(2 * p0, 2 * p1, dtype=xp.uint64)
    with np.errstate(over="ignore"):
        z *= xp.uint64(GAMMA)
        z ^= xp.uint64(key)
        _mix_xp(z)
    z1, z2 = z[0::2], z[1::2]
    R = log_xp(xp, ((z1 >> 11).astype(xp.int64) + 1.0) * INV53)
    R *= -2.0
    R = xp.sqrt(R, out=R)
    q = (z2 >> 62).astype(xp.int64)
    f = ((z2 >> 9) & xp.uint64((1 << 53) - 1)).astype(xp.int64) * INV53
    f -= 0.5
    f *= HALF_PI
    sn, cs = sincos_xp(xp, f)
    odd = (q & 1) == 1
    R *= 1.0 - 2.0 * (q >> 1)                                       # the sign of the quadrant
    pairs = xp.empty((p1 - p0, 2))
    pairs[:, 0] = xp.where(odd, -sn, cs)
    pairs[:, 1] = xp.where(odd, cs, sn)
    pairs *= R[:, None]
    lo = start - 2 * p0
    return pairs.reshape(-1)[lo:lo + n].astype(dtype).reshape(shape)


g, m1, m2, k53 = np.uint64(GAMMA), np.uint64(M1), np.uint64(M2), np.uint64((1 << 53) - 1)


@inline
def mix(z):
    z = (z ^ (z >> np.uint64(30))) * m1
    z = (z ^ (z >> np.uint64(27))) * m2
    return z ^ (z >> np.uint64(31))


@inline
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


@njit(nogil=True, error_model="numpy", cache=True)
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


def fill_normals(bk, out, key: int, start: int):
    """Fill the contiguous array ``out`` (on ``bk``'s device) with elements ``start, start+1,
    ...`` of stream ``key`` and return it: :func:`fill` on the numba backend (it releases the
    GIL, so a helper thread can draw while the main thread computes), else :func:`normals_xp`."""
    if bk.name == "numba":
        fill(out.reshape(-1), np.uint64(key), np.int64(start))
    else:
        out[...] = normals_xp(bk.xp, key, start, out.shape, out.dtype)
    return out


def normals(key: int, start: int, shape, dtype=np.float64, bk=None):
    """A new array of ``shape`` on ``bk`` (default: NumPy's twin on the host): elements
    ``start, start+1, ...`` of stream ``key``."""
    if bk is None:
        return normals_xp(np, key, start, shape, dtype)
    return fill_normals(bk, bk.xp.empty(shape, dtype=dtype), key, start)
