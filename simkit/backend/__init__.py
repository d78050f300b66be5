"""The array backend: the only package that imports CuPy or Numba (Numba in :mod:`.jit`).

A :class:`Backend` is a value chosen once per run and passed to everything that touches arrays:

==========  =============================================================================
``numpy``   plain NumPy; every kernel runs its readable ``xp`` reference (what a teacher
            steps through)
``numba``   NumPy arrays; kernels run their Numba-compiled twins on the CPU
``cupy``    CuPy arrays on a GPU; kernels run their CUDA twins
``auto``    CuPy if a GPU is usable, else Numba if it imports, else NumPy
==========  =============================================================================

The choice comes from the ``--backend`` flag, else the ``SIMKIT_BACKEND`` environment variable,
else ``auto``; ``SIMKIT_DISABLE_JIT=1`` turns ``numba`` (and an ``auto`` that would pick it)
into ``numpy``. :func:`get_backend` says once, in one line on stderr, what it chose and why.
With ``SIMKIT_BACKEND=numpy`` or ``SIMKIT_DISABLE_JIT=1`` set before simkit is imported, Numba is
never imported (:mod:`simkit.backend.jit`).

Kernels
-------
A hot loop is a :class:`Kernel`: a readable reference written with ``xp`` array operations, a
plain-Python loop version that this package compiles with ``numba.njit`` (its "Numba twin"), and
the source of a CuPy ``ElementwiseKernel`` (its "CUDA twin"). Modules that define kernels never
import Numba or CuPy themselves; :meth:`Backend.kernel` builds the twin for the chosen backend
and caches it, and twins that are plain Numba functions take :func:`simkit.backend.jit.njit`.
Parity tests check that the twins match the reference.

Random numbers are never drawn here: weights are drawn on the host with ``numpy.random.Generator``
streams and moved with :meth:`Backend.asarray`, and the DFC noise comes from the counter stream of
:mod:`simkit.kernels.gauss`, whose twins give the same bits; so one seed gives the same network
and the same noise on every backend.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata

import numpy as np

from simkit.backend import jit
from simkit.errors import UserError

BACKENDS = ("auto", "numpy", "numba", "cupy")
DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class Kernel:
    """A hot loop with a readable reference and fast twins.

    Parameters
    ----------
    name : str
        Kernel name (for messages and caches).
    reference : callable
        ``reference(xp, *args)``: plain array code; it is the definition. Arguments are the
        inputs (arrays and scalars) followed by the outputs, which are written in place: the
        order of a ``cupy.ElementwiseKernel`` call, shared by all three twins.
    loop : callable
        The same computation as explicit loops over flat arrays, in the subset of Python that
        Numba compiles; called with the same arguments minus ``xp``.
    cuda : tuple of str, optional
        ``(in_params, out_params, operation)`` of a ``cupy.ElementwiseKernel`` over the
        same arguments; ``None`` falls back to the reference on CuPy.
    helpers : tuple of callables, optional
        Plain functions of the loop's module that ``loop`` calls; they are compiled first and
        bound in that module under their names (Numba resolves a call by the global name).
    """

    name: str
    reference: Callable
    loop: Callable
    cuda: tuple | None = None
    helpers: tuple = ()


@dataclass
class Backend:
    """The chosen array library, dtype and compiled kernels of one run."""

    name: str                      # 'numpy' | 'numba' | 'cupy'
    xp: object                     # the array namespace: numpy or cupy
    dtype: np.dtype
    reason: str = ""
    _kernels: dict = field(default_factory=dict, repr=False)

    def asarray(self, a, dtype=None):
        """Move a host array (or scalar) to the device in the run's dtype (or ``dtype``)."""
        return self.xp.asarray(a, dtype=self.dtype if dtype is None else dtype)

    def to_host(self, a):
        """Return ``a`` as a NumPy array (a no-op on the CPU backends)."""
        return a.get() if self.name == "cupy" else np.asarray(a)

    def synchronize(self):
        """Wait for queued GPU work (for honest timings); a no-op on the CPU."""
        if self.name == "cupy":
            self.xp.cuda.get_current_stream().synchronize()

    def kernel(self, k: Kernel) -> Callable:
        """The callable that runs kernel ``k`` on this backend (built once, then cached)."""
        if k.name not in self._kernels:
            self._kernels[k.name] = _build(self, k)
        return self._kernels[k.name]

    def raw_kernel(self, source: str, name: str):
        """The CUDA C kernel ``name`` of ``source``, compiled by CuPy (NVRTC) once and cached;
        called as ``k(grid, block, args, shared_mem=bytes)`` (CuPy backend only)."""
        key = (name, source)
        if key not in self._kernels:
            import cupy
            self._kernels[key] = cupy.RawKernel(source, name)
        return self._kernels[key]

    def describe(self) -> str:
        """One line: backend, dtype, device."""
        return f"{self.name} ({np.dtype(self.dtype).name}) on {device_name(self)}"


def _build(bk: Backend, k: Kernel) -> Callable:
    if bk.name == "numba":
        # error_model="numpy": no zero-division check per element, which would stop LLVM from
        # vectorising the loop (6x slower Adam step); IEEE semantics like the NumPy reference.
        compile_ = jit.njit(cache=True, error_model="numpy")
        for h in k.helpers:
            if not jit.is_compiled(k.loop.__globals__.get(h.__name__)):
                k.loop.__globals__[h.__name__] = compile_(h)
        compiled = compile_(k.loop)
        return lambda *args: compiled(*[_flat(a) for a in args])
    if bk.name == "cupy" and k.cuda is not None:
        import cupy
        elementwise = cupy.ElementwiseKernel(*k.cuda, name=f"simkit_{k.name}")
        return elementwise
    xp = bk.xp
    return lambda *args: k.reference(xp, *args)


def _flat(a):
    """A flat view of an array (Numba twins loop over 1-D arrays); scalars pass through."""
    return a.reshape(-1) if isinstance(a, np.ndarray) else a


def device_name(bk: Backend) -> str:
    """Human-readable device: the GPU's name, or the CPU."""
    if bk.name == "cupy":
        import cupy
        dev = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(dev.id)
        name = props["name"]
        return f"GPU {dev.id} ({name.decode() if isinstance(name, bytes) else name})"
    return f"CPU ({os.cpu_count()} cores)"


def _cupy_usable() -> tuple[bool, str]:
    try:
        import cupy
        n = cupy.cuda.runtime.getDeviceCount()
        if n < 1:
            return False, "CuPy found no GPU"
        cupy.zeros(1).sum()  # a real launch: catches a broken driver or toolkit
        return True, f"CuPy sees {n} GPU(s)"
    except ImportError:
        return False, "CuPy is not installed"
    except Exception as exc:  # driver/runtime errors come in many types
        return False, f"CuPy cannot use a GPU ({type(exc).__name__})"


def _numba_usable() -> tuple[bool, str]:
    if os.environ.get("SIMKIT_DISABLE_JIT", "") not in ("", "0"):
        return False, "SIMKIT_DISABLE_JIT is set"
    if not jit.ENABLED:
        return False, f"Numba was not loaded ({jit.REASON} when simkit was imported)"
    return True, "Numba is installed"


def resolve_name(name: str | None = None) -> tuple[str, str]:
    """Turn a requested backend into a concrete one; returns ``(name, reason)``."""
    requested = name or os.environ.get("SIMKIT_BACKEND") or "auto"
    if requested not in BACKENDS:
        raise UserError(f"unknown backend {requested!r}; allowed: {', '.join(BACKENDS)}")
    if requested == "numpy":
        return "numpy", "requested"
    if requested == "cupy":
        ok, why = _cupy_usable()
        if not ok:
            raise UserError(f"backend 'cupy' requested but {why}; use --backend numba or numpy "
                            "(pip install 'simkit[gpu]' for CuPy)")
        return "cupy", "requested"
    if requested == "numba":
        ok, why = _numba_usable()
        return ("numba", "requested") if ok else ("numpy", f"fallback: {why}")
    ok, why = _cupy_usable()
    if ok:
        return "cupy", f"auto: {why}"
    ok2, why2 = _numba_usable()
    if ok2:
        return "numba", f"auto: {why}; {why2}"
    return "numpy", f"auto: {why}; {why2}"


_announced: set = set()


def get_backend(name: str | None = None, dtype: str = "float64", announce: bool = True) -> Backend:
    """Choose the backend (see the module docstring) and say once what was chosen and why."""
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; allowed: {', '.join(DTYPES)}")
    chosen, reason = resolve_name(name)
    if chosen == "cupy":
        import cupy as xp
    else:
        xp = np
    bk = Backend(chosen, xp, np.dtype(dtype), reason)
    key = (chosen, reason)
    if announce and key not in _announced:
        _announced.add(key)
        print(f"simkit: backend {bk.describe()} [{reason}]", file=sys.stderr)
    return bk


def load_blas():
    """Load SciPy's BLAS now if SciPy is installed: Numba's compiled ``np.dot`` calls it (a
    second OpenBLAS beside NumPy's), and a thread limit set before it loads would miss it (two
    processes on two cores whose Numba products each spin two OpenBLAS threads run 8-14x
    slower)."""
    try:
        import scipy.linalg.cython_blas  # noqa: F401
    except ImportError:
        pass


def limit_threads(n: int):
    """Cap the threads of the BLAS library (and Numba) at ``n`` for the rest of the process.

    On a machine shared with other jobs, BLAS threads that wait for busy cores can make dense
    products many times slower; ``--threads 1`` avoids that.
    """
    if n < 1:
        raise UserError(f"--threads must be at least 1, got {n}")
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(n)  # loaded later
    load_blas()
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=n)
    jit.set_num_threads(n)


def versions() -> dict:
    """Versions of the array libraries installed (for run.json and ``simkit info``), read from
    their package metadata without importing them."""
    out = {"python": sys.version.split()[0], "numpy": np.__version__}
    for mod, dists in (("scipy", ("scipy",)), ("numba", ("numba",)),
                       ("cupy", ("cupy", "cupy-cuda12x", "cupy-cuda11x"))):
        out[mod] = next((v for v in map(_version, dists) if v), None)
    return out


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
