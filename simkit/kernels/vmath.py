r"""Elementary functions that Numba's compiler can vectorise, to round-off.

Numba compiles ``math.log``, ``math.cos`` and ``math.tanh`` to calls of the C library, one element
at a time; a loop containing one stays scalar, while NumPy's own ``np.tanh`` / ``np.log`` use SIMD.
The functions here are branch-free arithmetic on the float's bits (exponent and mantissa through
bit casts), so a loop that calls them vectorises (AVX-512 or AVX2, whichever the CPU has) and a
fused kernel keeps NumPy's speed per element without NumPy's one pass over memory per operation.
Each is a short series on a reduced range; the tests (``tests/test_vmath.py``) bound the error
against NumPy's.

* :func:`log`: :math:`\ln x = e\ln 2 + 2\,\mathrm{atanh}\,s`, :math:`s = (m-1)/(m+1)`,
  :math:`x = m 2^e`, :math:`m \in [\sqrt{1/2}, \sqrt 2)`, so :math:`|s| < 0.172`.
* :func:`sincos`: Taylor series on :math:`|t| \le \pi/4`.
* :func:`expm1`: :math:`e^y - 1 = 2^k(e^r - 1) + (2^k - 1)`, :math:`y = k\ln 2 + r`,
  :math:`|r| \le \ln 2 / 2`; :func:`tanh`: :math:`\tanh x = \mathrm{sign}(x)\,E/(E+2)`,
  :math:`E = e^{2|x|} - 1` (no cancellation near 0, unlike :math:`1 - 2/(e^{2x}+1)`).

Two things keep :func:`expm1` (and so :func:`tanh`) fast where the CPU has AVX2 but not AVX-512:
AVX2 has no vector conversion between float64 and int64, so a
``floor`` and an ``int64`` cast are done one lane at a time; here :math:`k` is rounded by adding
:data:`MAGIC` (:math:`1.5 \cdot 2^{52}`: the sum's low mantissa bits hold :math:`k`, read back
by a bit cast), the same :math:`k` as ``floor(y / ln 2 + 1/2)`` except at exact ties (rounded to
even; either k keeps :math:`|r| \le \ln 2 / 2`). And Numba does not fuse ``p * r + c``
into one instruction (it would change the rounding), so the series is written with :func:`fma`
(one rounding per term: within 3 ulp of NumPy's tanh), which halves the time of a tanh on AVX2.

The functions are inlined into the kernels that call them (Numba's cache of those kernels
follows this module through :mod:`simkit.backend.jit`). :func:`log_xp` and :func:`sincos_xp` are
:func:`log` and :func:`sincos` with array calls (NumPy or CuPy), the same operations in the same
order, so they give the same bits: the twins of the NumPy and CuPy backends
(:func:`simkit.kernels.gauss.normals_xp`).
"""
from __future__ import annotations

import math

from simkit.backend.jit import f2i, fma, i2f, njit

SQRT2, LN2 = math.sqrt(2.0), math.log(2.0)
LN2_HI, LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10   # fdlibm's split
TANH_ONE = 19.5          # |x| above it: tanh(x) rounds to +-1 in float64
MAGIC = 6755399441055744.0    # 1.5 * 2^52: y + MAGIC holds round(y) in its low mantissa bits
LOG_SERIES = (17, 15, 13, 11, 9, 7, 5, 3, 1)                # odd denominators after 1/19
SIN_SERIES = (6227020800, -39916800, 362880, -5040, 120, -6, 1)   # factorials after -1/15!
COS_SERIES = (-87178291200, 479001600, -3628800, 40320, -720, 24, -2, 1)   # ... after 1/16!
EXP_SERIES = (6227020800, 479001600, 39916800, 3628800, 362880, 40320, 5040, 720, 120, 24,
              6, 2, 1)                                      # factorials after 1/14!

inline = njit(inline="always", error_model="numpy")        # numpy model: no zero-division check


@inline
def log(x):
    """ln x for normal x > 0, not subnormals (ten terms of 2(s + s^3/3 + ...), remainder
    < 1e-17)."""
    b = f2i(x)
    e = ((b >> 52) & 0x7FF) - 1023
    m = i2f((b & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000)
    big = m > SQRT2
    m = m * 0.5 if big else m
    e = e + 1 if big else e
    s = (m - 1.0) / (m + 1.0)
    s2, p = s * s, 1.0 / 19
    for d in LOG_SERIES:
        p = p * s2 + 1.0 / d
    return e * LN2 + 2.0 * s * p


@inline
def sincos(t):
    """(sin t, cos t) for |t| <= pi/4: Taylor series to t^15 / t^16 (remainder < 1e-16)."""
    t2 = t * t
    s, c = -1.0 / 1307674368000, 1.0 / 20922789888000
    for d in SIN_SERIES:
        s = s * t2 + 1.0 / d
    for d in COS_SERIES:
        c = c * t2 + 1.0 / d
    return s * t, c


@inline
def expm1(y):
    """e^y - 1 for 0 <= y <= 2 TANH_ONE: Taylor series of e^r - 1 to r^14 on
    |r| <= ln2/2 (remainder < 1e-19)."""
    t = y * (1.0 / LN2) + MAGIC                          # k = round(y / ln 2), in t's bits
    k = t - MAGIC
    r = (y - k * LN2_HI) - k * LN2_LO
    p = 1.0 / 87178291200
    for d in EXP_SERIES:
        p = fma(p, r, 1.0 / d)
    p = p * r                                            # e^r - 1
    two_k = i2f((f2i(t) - f2i(MAGIC) + 1023) << 52)     # 2^k
    return two_k * p + (two_k - 1.0)


@inline
def tanh(x):
    """tanh x = sign(x) E / (E + 2), E = e^{2|x|} - 1; +-1 beyond TANH_ONE."""
    a = min(abs(x), TANH_ONE)
    E = expm1(2.0 * a)
    t = E / (E + 2.0)
    return -t if x < 0 else t


@njit(nogil=True, error_model="numpy", cache=True)
def apply(name, x, out):
    """``out[i] = f(x[i])`` for f in log, tanh, expm1, sin, cos (tests, benchmarks)."""
    for i in range(x.size):
        v = x.flat[i]
        if name == 0:
            out.flat[i] = log(v)
        elif name == 1:
            out.flat[i] = tanh(v)
        elif name == 2:
            out.flat[i] = expm1(v)
        else:
            out.flat[i] = sincos(v)[name - 3]


# ------------------------------------------------------------ the same series with array calls
def _series_xp(t2, lead, denominators):
    """``p = lead``, then ``p = p t2 + 1/d`` for each d: the scalar loops' steps, in place."""
    p = t2 * lead
    p += 1.0 / denominators[0]
    for d in denominators[1:]:
        p *= t2
        p += 1.0 / d
    return p


def log_xp(xp, x):
    """:func:`log` of a float64 array, elementwise (the same bits)."""
    b = x.view(xp.int64)
    e = ((b >> 52) & 0x7FF) - 1023
    m = ((b & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000).view(xp.float64)
    big = m > SQRT2
    m *= xp.where(big, 0.5, 1.0)                             # exact: a power of two
    e += big
    s = (m - 1.0) / (m + 1.0)
    p = _series_xp(s * s, 1.0 / 19, LOG_SERIES)
    s *= 2.0
    s *= p
    out = e * LN2
    out += s
    return out


def sincos_xp(xp, t):
    """:func:`sincos` of a float64 array, elementwise (the same bits)."""
    t2 = t * t
    s = _series_xp(t2, -1.0 / 1307674368000, SIN_SERIES)
    s *= t
    return s, _series_xp(t2, 1.0 / 20922789888000, COS_SERIES)
