"""The vectorisable elementary functions (simkit.kernels.vmath) against NumPy's."""
import numpy as np
import pytest

from simkit.backend import jit
from simkit.kernels import vmath

if not jit.ENABLED:
    pytest.skip(f"Numba twins are off ({jit.REASON})", allow_module_level=True)
LOG, TANH, EXPM1, SIN, COS = range(5)


def run(which, x):
    out = np.empty_like(x)
    vmath.apply(which, x, out)
    return out


def rel_err(got, ref):
    return np.max(np.abs(got - ref) / np.maximum(np.abs(ref), np.finfo(float).tiny))


def test_tanh_is_numpys_to_a_few_ulp_everywhere():
    """Across 0, tiny, small (no cancellation), the expm1 reduction's branch points and the
    saturation at +-19.5, both signs."""
    mags = np.concatenate([np.logspace(-300, -1, 3000), np.linspace(0.1, 25, 200_001),
                           np.arange(1, 60) * np.log(2) / 2, [vmath.TANH_ONE, 30.0, 1e300]])
    x = np.concatenate([mags, -mags, [0.0]])
    assert rel_err(run(TANH, x), np.tanh(x)) < 5e-16
    assert run(TANH, np.array([np.inf, -np.inf])).tolist() == [1.0, -1.0]


def test_log_sin_cos_expm1_on_their_ranges():
    u = np.concatenate([np.logspace(-307, 0, 50_000), np.linspace(1e-6, 1, 100_001)])
    assert rel_err(run(LOG, u), np.log(u)) < 2e-14        # |ln u| down to 1e-6: m - 1 rounds
    assert rel_err(run(LOG, u[:50_000]), np.log(u[:50_000])) < 5e-16
    t = np.linspace(-np.pi / 4, np.pi / 4, 100_001)
    np.testing.assert_allclose(run(SIN, t), np.sin(t), rtol=3e-16, atol=1e-300)
    np.testing.assert_allclose(run(COS, t), np.cos(t), rtol=3e-16)
    y = np.linspace(0, 39, 100_001)
    assert rel_err(run(EXPM1, y)[1:], np.expm1(y)[1:]) < 5e-16


def test_array_twins_give_the_same_bits():
    """log_xp / sincos_xp (the NumPy and CuPy backends' series) equal the Numba functions."""
    u = np.concatenate([np.logspace(-307, 0, 50_000), np.linspace(1e-6, 1, 100_001)])
    np.testing.assert_array_equal(vmath.log_xp(np, u), run(LOG, u))
    t = np.linspace(-np.pi / 4, np.pi / 4, 100_001)
    sin, cos = vmath.sincos_xp(np, t)
    np.testing.assert_array_equal(sin, run(SIN, t))
    np.testing.assert_array_equal(cos, run(COS, t))


def test_the_digest_follows_every_kernel_module(tmp_path):
    """An edit of any module of the folder (not only vmath.py), or a new one, changes it."""
    from pathlib import Path
    src = Path(vmath.__file__).parent
    for name in ("vmath.py", "dfc_chunk.py"):
        (tmp_path / name).write_bytes((src / name).read_bytes())
    def digest():
        return jit.kernels_digest(sorted(tmp_path.glob("*.py")))
    d0 = digest()
    assert digest() == d0
    (tmp_path / "dfc_chunk.py").write_text((src / "dfc_chunk.py").read_text() + "# edited\n")
    d1 = digest()
    assert d1 != d0
    (tmp_path / "gauss.py").write_text("")
    assert digest() != d1
    assert set(jit.KERNEL_FILES) >= {p.resolve() for p in src.glob("*.py")}


def test_an_edit_of_any_kernel_module_makes_every_cached_twin_stale():
    """The twins' on-disk caches are stamped with the digest of all kernel modules (and of the
    intrinsics' module), not of their own file only: a twin that inlines an edited callee
    recompiles."""
    from simkit.kernels import gauss
    for twin in (vmath.apply, gauss.fill):
        locator = twin._cache._impl.locator
        assert type(locator).__name__.startswith("Simkit")
        assert locator.get_source_stamp() == jit.kernels_digest()
