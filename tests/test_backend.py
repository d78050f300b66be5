"""Backend choice, and parity of every kernel's twins with its reference."""
import os

import numpy as np
import pytest

from simkit import backend
from simkit.errors import UserError
from simkit.kernels.adam import ADAM
from simkit.kernels.di import RANK1_UPDATE

KERNEL_CASES = {
    "adam_step": (ADAM, lambda rng, n: (rng.normal(size=n), 1e-3, 0.9, 0.999, 1e-8, 0.19, 0.002, 0.01,
                                        rng.normal(size=n), rng.normal(size=n), rng.uniform(size=n))),
    # W <- (1 - decay) W + eta delta h^T on a (d_out, d_in) matrix, d_in = 3 for a 1-D shape
    "inversion_rank1_update": (RANK1_UPDATE, lambda rng, s: (
        rng.normal(size=s[0]), rng.normal(size=(s + (3,))[1]), 0.3, 1e-2,
        rng.normal(size=(s + (3,))[:2]))),
}


def test_unknown_backend_lists_the_allowed_ones():
    with pytest.raises(UserError, match="allowed: auto, numpy, numba, cupy"):
        backend.get_backend("torch", announce=False)


def test_unknown_dtype_is_a_user_error():
    with pytest.raises(UserError, match="allowed: float64, float32"):
        backend.get_backend("numpy", "float16", announce=False)


def test_environment_variable_selects_the_backend(monkeypatch):
    monkeypatch.setenv("SIMKIT_BACKEND", "numpy")
    assert backend.get_backend(announce=False).name == "numpy"


def test_disable_jit_turns_numba_into_numpy(monkeypatch):
    monkeypatch.setenv("SIMKIT_DISABLE_JIT", "1")
    bk = backend.get_backend("numba", announce=False)
    assert bk.name == "numpy" and "SIMKIT_DISABLE_JIT" in bk.reason


def test_auto_without_gpu_picks_numba(monkeypatch):
    monkeypatch.setattr(backend, "_cupy_usable", lambda: (False, "CuPy is not installed"))
    monkeypatch.delenv("SIMKIT_BACKEND", raising=False)
    monkeypatch.delenv("SIMKIT_DISABLE_JIT", raising=False)
    bk = backend.get_backend("auto", announce=False)
    assert bk.name == "numba" and "CuPy is not installed" in bk.reason


def test_requesting_cupy_without_gpu_says_what_to_do(monkeypatch):
    monkeypatch.setattr(backend, "_cupy_usable", lambda: (False, "CuPy is not installed"))
    with pytest.raises(UserError, match="use --backend numba or numpy"):
        backend.get_backend("cupy", announce=False)


def test_choice_is_announced_once(capsys, monkeypatch):
    monkeypatch.setattr(backend, "_announced", set())
    backend.get_backend("numpy")
    backend.get_backend("numpy")
    err = capsys.readouterr().err
    assert err.count("simkit: backend numpy") == 1


def test_float32_backend_moves_arrays_in_float32():
    bk = backend.get_backend("numpy", "float32", announce=False)
    assert bk.asarray([1.0, 2.0]).dtype == np.float32


def _run(bk, kernel, args):
    args = [bk.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
    bk.kernel(kernel)(*args)
    return [bk.to_host(a) for a in args if not np.isscalar(a)]


@pytest.mark.parametrize("name", KERNEL_CASES)
@pytest.mark.parametrize("shape", [(7,), (33, 5)])
def test_numba_twin_matches_reference(name, shape):
    kernel, make_args = KERNEL_CASES[name]
    args = make_args(np.random.default_rng(0), shape)
    ref = _run(backend.get_backend("numpy", announce=False), kernel, [np.copy(a) if isinstance(a, np.ndarray) else a for a in args])
    fast = _run(backend.get_backend("numba", announce=False), kernel, [np.copy(a) if isinstance(a, np.ndarray) else a for a in args])
    for r, f in zip(ref, fast):
        np.testing.assert_allclose(f, r, rtol=1e-13, atol=1e-15)


@pytest.mark.gpu
@pytest.mark.parametrize("name", KERNEL_CASES)
def test_cupy_twin_matches_reference(name):
    pytest.importorskip("cupy")
    ok, why = backend._cupy_usable()
    if not ok:
        pytest.skip(why)
    kernel, make_args = KERNEL_CASES[name]
    args = make_args(np.random.default_rng(0), (33, 5))
    ref = _run(backend.get_backend("numpy", announce=False), kernel, [np.copy(a) if isinstance(a, np.ndarray) else a for a in args])
    gpu = _run(backend.get_backend("cupy", announce=False), kernel, [np.copy(a) if isinstance(a, np.ndarray) else a for a in args])
    for r, g in zip(ref, gpu):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-14)


IMPORT_ALL = """if True:
    import importlib, pkgutil, sys
    import simkit, simkit.cli, simkit.commands, simkit.kernels, simkit.rules
    for pkg in (simkit.commands, simkit.kernels):
        for m in pkgutil.iter_modules(pkg.__path__):
            importlib.import_module(f"{pkg.__name__}.{m.name}")
    import numpy as np
    from simkit.backend import get_backend
    from simkit.kernels.gauss import normals
    bk = get_backend(announce=False)
    normals(1, 0, (10,), bk=bk)
    print(bk.name, *sorted(m for m in ("numba", "llvmlite") if m in sys.modules))
"""


@pytest.mark.parametrize("env", [{"SIMKIT_BACKEND": "numpy"}, {"SIMKIT_DISABLE_JIT": "1"}])
def test_numpy_backend_never_imports_numba(env):
    """With SIMKIT_BACKEND=numpy or SIMKIT_DISABLE_JIT=1, importing simkit (its CLI, rules,
    commands and kernels) and drawing noise loads neither Numba nor llvmlite."""
    import subprocess
    import sys
    base = {k: v for k, v in os.environ.items() if k not in ("SIMKIT_BACKEND", "SIMKIT_DISABLE_JIT")}
    out = subprocess.run([sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True,
                         env={**base, **env}, check=True)
    assert out.stdout.split() == ["numpy"], out.stdout + out.stderr


def test_numba_backend_compiles_its_twins():
    """Without those variables, the numba backend is chosen and its twins run."""
    import subprocess
    import sys
    pytest.importorskip("numba")
    base = {k: v for k, v in os.environ.items() if k not in ("SIMKIT_BACKEND", "SIMKIT_DISABLE_JIT")}
    out = subprocess.run([sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True,
                         env={**base, "SIMKIT_BACKEND": "numba"}, check=True)
    assert out.stdout.split() == ["numba", "llvmlite", "numba"], out.stdout + out.stderr


def test_numba_requested_after_an_import_without_numba_falls_back(monkeypatch):
    monkeypatch.setattr(backend.jit, "ENABLED", False)
    monkeypatch.setattr(backend.jit, "REASON", "SIMKIT_BACKEND=numpy")
    monkeypatch.delenv("SIMKIT_DISABLE_JIT", raising=False)
    bk = backend.get_backend("numba", announce=False)
    assert bk.name == "numpy" and "SIMKIT_BACKEND=numpy" in bk.reason


def test_thread_limit_reaches_the_blas_numba_loads_later():
    """Numba's compiled np.dot calls SciPy's OpenBLAS, loaded at its first call: ``--threads 1``
    must cap it too (uncapped, it spins two threads: 8-14x slower beside another run)."""
    import json
    import subprocess
    import sys
    pytest.importorskip("numba")
    pytest.importorskip("threadpoolctl")
    code = """if True:
        import json
        from simkit.backend import limit_threads
        limit_threads(1)
        import numba, numpy as np
        f = numba.njit(lambda a, b: np.dot(a, b))
        f(np.ones((64, 64)), np.ones((64, 64)))
        from threadpoolctl import threadpool_info
        print(json.dumps([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]))
    """
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    threads = json.loads(out.stdout.strip().splitlines()[-1])
    assert threads and all(n == 1 for n in threads), threads
