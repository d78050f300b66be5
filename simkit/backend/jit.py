"""The Numba face of the backend: the one module that imports Numba (and llvmlite).

Kernel modules write their Numba twins in plain Python and decorate them with :func:`njit`; they
never import Numba. Numba is imported when this module is first imported, unless
``SIMKIT_DISABLE_JIT=1`` or ``SIMKIT_BACKEND=numpy`` is set or Numba is missing. Then
:data:`ENABLED` is False, :func:`njit` returns the function as written, the intrinsics are stubs
that raise, and the ``numba`` backend falls back to ``numpy`` (:data:`REASON` says why). Numba
compiles a twin at its first call, so a run that never uses a twin compiles nothing.

Cache freshness
---------------
Numba keeps compiled twins on disk (``cache=True``) and reuses them while the source file of the
decorated function is unchanged. Twins inline functions of other modules (``gauss.fill`` inlines
``vmath.log``, ``kernels.dfc``'s twin inlines ``dfc_chunk.control``, all of them the intrinsics
below), so an edit of such a callee alone would leave its callers' old machine code in use. The
cache locators registered here give every function of :mod:`simkit.kernels` and of this module
one source stamp, :func:`kernels_digest` of all those files: an edit of any of them recompiles
every twin once, and nothing is deleted.
"""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

KERNEL_FILES = (Path(__file__).resolve(), *sorted(
    (Path(__file__).resolve().parents[1] / "kernels").glob("*.py")))


def _off_reason() -> str:
    if os.environ.get("SIMKIT_DISABLE_JIT", "") not in ("", "0"):
        return "SIMKIT_DISABLE_JIT is set"
    if os.environ.get("SIMKIT_BACKEND") == "numpy":
        return "SIMKIT_BACKEND=numpy"
    return ""


REASON = _off_reason()          # why the twins are off ("" when they are on)
if not REASON:
    try:
        import numba
    except ImportError:
        REASON = "Numba is not installed"
ENABLED = not REASON


def njit(fn=None, **options):
    """``numba.njit(**options)`` (as ``@njit`` or ``@njit(...)``); the function itself when the
    twins are off."""
    if fn is not None:
        return njit(**options)(fn)
    if not ENABLED:
        return lambda f: f
    return numba.njit(**options)


def is_compiled(f) -> bool:
    """Whether ``f`` is a Numba dispatcher (a compiled twin)."""
    return ENABLED and isinstance(f, numba.core.dispatcher.Dispatcher)


def set_num_threads(n: int):
    """Cap Numba's parallel threads at ``n`` (no-op when the twins are off)."""
    if ENABLED:
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


def kernels_digest(files=KERNEL_FILES) -> str:
    """A digest of the names and texts of ``files`` (what the twins' machine code depends on)."""
    h = hashlib.sha256()
    for f in files:
        h.update(Path(f).name.encode() + b"\0" + Path(f).read_bytes() + b"\0")
    return h.hexdigest()[:16]


@lru_cache(maxsize=1)
def _digest() -> str:
    return kernels_digest()


def _one_stamp(base):
    """Numba's locator ``base``, for the files of :data:`KERNEL_FILES`, with their common stamp."""
    class Locator(base):
        def get_source_stamp(self):
            return _digest()

        @classmethod
        def from_function(cls, py_func, py_file):
            ours = Path(py_file).resolve() in KERNEL_FILES
            return super().from_function(py_func, py_file) if ours else None
    Locator.__name__ = Locator.__qualname__ = f"Simkit{base.__name__}"
    return Locator


def _register_locators():
    from numba.core import caching
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    if impl is not None and not any(c.__name__.startswith("Simkit") for c in impl._locator_classes):
        impl._locator_classes[:0] = [_one_stamp(c) for c in impl._locator_classes]


def _off(*args, **kwargs):
    raise RuntimeError(f"Numba twins are off ({REASON}); use the numpy backend's references")


if ENABLED:
    _register_locators()
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def f2i(typingctx, x):
        """The bits of a float64, as int64 (no conversion)."""
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], context.get_value_type(types.int64))
        return types.int64(types.float64), codegen

    @intrinsic
    def i2f(typingctx, i):
        """The float64 with the bits of an int64."""
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], context.get_value_type(types.float64))
        return types.float64(types.int64), codegen

    @intrinsic
    def fma(typingctx, a, b, c):
        """a * b + c rounded once (LLVM's ``llvm.fma``; a vector FMA in a vectorised loop)."""
        def codegen(context, builder, sig, args):
            from llvmlite import ir
            d = ir.DoubleType()
            fn = builder.module.declare_intrinsic("llvm.fma", [d], ir.FunctionType(d, [d, d, d]))
            return builder.call(fn, args)
        return types.float64(types.float64, types.float64, types.float64), codegen
else:
    f2i = i2f = fma = _off
