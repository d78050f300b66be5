"""The vectorisable elementary functions (simkit.kernels.vmath) against NumPy's."""
import numpy as np
import pytest

vmath = pytest.importorskip("simkit.kernels.vmath")
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


def test_an_edit_of_the_kernels_clears_their_caches(tmp_path):
    """Caches built from older kernel modules are deleted once; a current stamp keeps them."""
    old = ["dfc_fast._layer_kernel-271.py311.nbi", "dfc_fast._layer_kernel-271.py311.1.nbc",
           "gauss.fill-109.py311.nbi"]
    for name in old + ["dfc_fast.cpython-311.pyc"]:
        (tmp_path / name).write_bytes(b"x")
    assert vmath.refresh_kernel_caches(tmp_path, "aaaa")           # no stamp yet: stale
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dfc_fast.cpython-311.pyc", vmath.STAMP]
    (tmp_path / old[0]).write_bytes(b"x")                         # rebuilt under the same vmath
    assert not vmath.refresh_kernel_caches(tmp_path, "aaaa")
    assert (tmp_path / old[0]).exists()
    assert vmath.refresh_kernel_caches(tmp_path, "bbbb")           # a kernel module edited
    assert not (tmp_path / old[0]).exists()
    assert (tmp_path / vmath.STAMP).read_text() == "bbbb"


def test_the_digest_follows_every_kernel_module(tmp_path):
    """An edit of any module of the folder (not only vmath.py), or a new one, changes it."""
    from pathlib import Path
    src = Path(vmath.__file__).parent
    for name in ("vmath.py", "dfc_chunk.py"):
        (tmp_path / name).write_bytes((src / name).read_bytes())
    d0 = vmath.source_digest(tmp_path)
    assert vmath.source_digest(tmp_path) == d0
    (tmp_path / "dfc_chunk.py").write_text((src / "dfc_chunk.py").read_text() + "# edited\n")
    d1 = vmath.source_digest(tmp_path)
    assert d1 != d0
    (tmp_path / "gauss.py").write_text("")
    assert vmath.source_digest(tmp_path) != d1
    assert vmath.source_digest() == vmath.source_digest(src)


def test_the_package_cache_folder_carries_the_current_digest():
    cache_dir = getattr(getattr(vmath.apply, "_cache", None), "_cache_path", None)
    if cache_dir is None:
        pytest.skip("this Numba keeps no on-disk cache for vmath")
    from pathlib import Path
    stamp = Path(cache_dir) / vmath.STAMP
    if not stamp.exists():
        pytest.skip(f"{cache_dir} is not writable")
    assert stamp.read_text() == vmath.source_digest()
