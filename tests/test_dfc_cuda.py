"""The GPU DFC kernel (simkit.kernels.dfc_cuda) without a GPU: its CUDA source run on the CPU
through the thread-block emulator (tests/cuda_emu), against the readable loop; compiled by nvcc
where it is installed. On a GPU: tests/test_gpu_parity.py."""
import dataclasses
import shutil
import subprocess

import numpy as np
import pytest

from simkit.dynamics.controller import Learning, controller_inputs, simulate_reference
from simkit.dynamics.noise import LayerDraws, noise_source
from simkit.kernels import dfc_cuda
from simkit.kernels.dfc import simulate

import emulator
from helpers import numba_backend
from test_dfc import parity_case

needs_gxx = pytest.mark.skipif(not emulator.have_compiler(), reason="no g++ for the emulator")


def emulated(dtype=np.float64, cluster=None):
    """The emulator's launch of ``dfc_steps``, or with ``cluster`` of ``dfc_steps_cluster``."""
    lib = emulator.build(dfc_cuda.source(dtype, cluster), "dfc_driver.cpp")
    return emulator.launcher(lib, "launch_dfc_steps_cluster" if cluster else "launch_dfc_steps")


def assert_state_close(got, ref, keys, rtol=1e-12):
    for k in keys:
        for g, r in zip(getattr(got, k), getattr(ref, k)):
            np.testing.assert_allclose(g, r, rtol=rtol, atol=rtol * 0.1 * np.abs(r).max(),
                                       err_msg=k)
    np.testing.assert_allclose(got.u, ref.u, rtol=rtol, atol=rtol * 1e-2)


@needs_gxx
@pytest.mark.parametrize("noise,error,inst,proactive,k_p", [
    ("ou", "ce", True, True, 1.5), ("white", "mse", False, False, 0.0),
    ("none", "mse", True, True, 2.0)])
@pytest.mark.parametrize("fw,fb", [("nonlinear_difference", "highpass"),
                                   ("voltage_difference", "plain"), (None, None)])
@pytest.mark.parametrize("threads,cluster,per_cluster", [(None, None, 1), (2, None, 1),
                                                         (None, 3, 1), (1, 3, 2), (5, 3, 2)])
def test_persistent_kernel_matches_reference(noise, error, inst, proactive, k_p, fw, fb, threads,
                                             cluster, per_cluster):
    """Every option the twins share, T not a multiple of the chunk, fixed draws; ``threads=2``:
    each thread owns several units of every layer (and of u). ``cluster=3``: the cluster kernel
    with slices of 2, 2, 2 / 2, 2, 1 / 2, 2, 0 units of the 6-5-4 layers, one sample a cluster
    or two (the 3 samples: a cluster of two and one of one); with one thread a block that
    thread does all of its block's work, with 5 the sums of Eq. (1) are split in two."""
    net, cache, P, dyn, _ = parity_case(noise, error, inst, proactive, k_p)
    dyn = dataclasses.replace(dyn, T=123).check()
    learn = Learning(fw, fb, a_u=0.3)
    xi = np.random.default_rng(9).normal(size=(122, 3, 15))
    offs = np.cumsum([0, 6, 5, 4])

    def draws(t0, t1):
        return [xi[t0:t1, :, offs[l]:offs[l + 1]] for l in range(3)]
    ref = simulate_reference(np, P, cache.a[1:], cache.h[1:], dyn, learn, draws)
    got = dfc_cuda.simulate_persistent(np, emulated(cluster=cluster), P, cache.a[1:],
                                       cache.h[1:], dyn, learn, draws, threads=threads,
                                       cluster=cluster, per_cluster=per_cluster)
    keys = ("v", "v_fb", "v_ff", "r") + (("A", "Ab") if fw else ()) + (("C",) if fb else ())
    assert_state_close(got, ref, keys)


@needs_gxx
@pytest.mark.parametrize("act", ["relu", "leaky_relu:0.2", "sigmoid", "linear"])
def test_persistent_kernel_activations_and_instant_system(act):
    from simkit.nn import MLP
    net, cache, P, dyn, draws = parity_case("white", "mse", True, True, 1.0)
    net = MLP(net.bk, list(net.sizes), act, "tanh", rng=np.random.default_rng(5))
    cache = net.forward(P["x"])
    P = {**P, "W": net.W, "b": net.b, "phi": net.phi, "v_ff1": cache.a[1]}
    dyn = dataclasses.replace(dyn, inst_system=act == "linear").check()
    learn = Learning("nonlinear_difference", "plain")
    ref = simulate_reference(np, P, cache.a[1:], cache.h[1:], dyn, learn, draws)
    got = dfc_cuda.simulate_persistent(np, emulated(), P, cache.a[1:], cache.h[1:], dyn, learn,
                                       draws)
    assert_state_close(got, ref, ("v", "r", "A", "Ab", "C"))


@needs_gxx
@pytest.mark.parametrize("threads", [None, 8])
def test_persistent_kernel_with_inputs_past_the_unrolled_blocks(threads):
    """Layer inputs of 21 and 37 units: ``dot_column``'s blocks of 16 and its remainder both
    count; with 8 threads each owns several units."""
    from helpers import numpy_backend
    from test_dfc import problem, small_net
    bk = numpy_backend()
    net = small_net(bk, "tanh", (5, 21, 37, 3), seed=6)
    rng = np.random.default_rng(7)
    Q = [rng.normal(size=(n, 3)) * 0.3 for n in net.sizes[1:]]
    cache, P = problem(bk, net, Q, B=2)
    _, _, _, dyn, _ = parity_case("white", "mse", False, True, 1.0)
    dyn = dataclasses.replace(dyn, T=31).check()
    xi = rng.normal(size=(30, 2, 61))
    offs = np.cumsum([0, 21, 37, 3])

    def draws(t0, t1):
        return [xi[t0:t1, :, offs[l]:offs[l + 1]] for l in range(3)]
    learn = Learning("nonlinear_difference", "highpass", a_u=0.3)
    ref = simulate_reference(np, P, cache.a[1:], cache.h[1:], dyn, learn, draws)
    got = dfc_cuda.simulate_persistent(np, emulated(), P, cache.a[1:], cache.h[1:], dyn, learn,
                                       draws, threads=threads)
    assert_state_close(got, ref, ("v", "v_ff", "r", "A", "Ab", "C"))


@needs_gxx
@pytest.mark.parametrize("per_launch,cluster", [(50, None), (1000, None), (50, 2)])
def test_in_kernel_counter_stream_equals_the_host_stream(per_launch, cluster, monkeypatch):
    """With simkit's counter stream the kernel computes the draws itself; the Numba twin reads
    the host's. Same numbers up to the last ulp of log/sin/cos; with 1000 steps a launch the
    whole simulation is one launch."""
    monkeypatch.setattr(dfc_cuda, "STEPS_PER_LAUNCH", per_launch)
    net, cache, P, dyn, _ = parity_case("ou", "ce", True, True, 1.5)
    dyn = dataclasses.replace(dyn, T=77).check()
    learn = Learning("nonlinear_difference", "highpass", a_u=0.3)
    bk = numba_backend()

    def source():
        return noise_source(bk, [3, 1, 4, 0], 3, [6, 5, 4], dyn.T - 1)
    ref = simulate(bk, P, cache.a[1:], cache.h[1:], dyn, learn, source())
    noise = source()
    assert noise.key is not None
    got = dfc_cuda.simulate_persistent(np, emulated(cluster=cluster), P, cache.a[1:],
                                       cache.h[1:], dyn, learn, noise, cluster=cluster,
                                       per_cluster=2)
    assert_state_close(got, ref, ("v", "v_fb", "r", "A", "C"), rtol=1e-10)
    noiseless = simulate(bk, P, cache.a[1:], cache.h[1:], dataclasses.replace(dyn, noise="none"),
                         learn)
    assert np.abs(noiseless.v[0] - got.v[0]).max() > 1e-3        # the noise did act


@needs_gxx
@pytest.mark.parametrize("cluster", [None, 2])
def test_persistent_kernel_in_float32_and_with_layer_draws(cluster):
    net, cache, P, dyn, draws = parity_case("ou", "mse", True, True, 1.0)
    f = lambda a: a.astype(np.float32)                       # noqa: E731
    P32 = {k: ([f(a) if a is not None else None for a in v] if k in ("W", "b", "Q") else
               (f(v) if isinstance(v, np.ndarray) else v)) for k, v in P.items()}

    def draws32(t0, t1):
        views = [f(a) for a in draws(t0, t1)]
        return LayerDraws(views, np.concatenate(views, axis=2))
    got = dfc_cuda.simulate_persistent(np, emulated(np.float32, cluster), P32,
                                       [f(a) for a in cache.a[1:]], [f(h) for h in cache.h[1:]],
                                       dyn, Learning(), draws32, cluster=cluster)
    ref = simulate_reference(np, P, cache.a[1:], cache.h[1:], dyn, Learning(), draws)
    assert got.u.dtype == np.float32 and got.A[1].dtype == np.float32
    for g, r in zip(got.r, ref.r):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got.A[1], ref.A[1], rtol=1e-3, atol=1e-4 * np.abs(ref.A[1]).max())


def test_layout_refuses_what_shared_memory_cannot_hold():
    assert dfc_cuda.layout([784, 256, 256, 256, 10], 32, 50, np.float64)[:2] == (256, 12_528)
    with pytest.raises(ValueError, match="at most 16 layers and 14523 neurons"):
        dfc_cuda.layout([10, 20_000, 10], 4, 50, np.float64)
    # reals: r and r_old 2 x 778, u 4 x 10, partial sums 8 x 32 (all per sample), W^T columns
    # 2 x 256 x 32 + 256 x 2, Q^T columns 10 x (3 x 32 + 2)
    sizes = [784, 256, 256, 256, 10]
    for S, threads, split in ((1, 256, 8), (2, 512, 8), (4, 512, 4)):
        assert dfc_cuda.cluster_layout(sizes, 32, 50, np.float64, 8, per_cluster=S)[:2] == \
            (threads, 8 * (S * (1556 + 40 + split * 32) + 16_896 + 980))
    assert dfc_cuda.layout([784, 1000, 10], 32, 50, np.float64)[0] == 512
    # an H100: 14 clusters of 8 at once. 32 samples: 3 a cluster (11 clusters, one wave); 128:
    # at most 6 fit in 227 kB, so 2 waves of 14, and 5 samples a cluster do it; float32: 10
    assert dfc_cuda.samples_per_cluster(sizes, 32, np.float64, 8, 132) == 3
    assert dfc_cuda.samples_per_cluster(sizes, 128, np.float64, 8, 132) == 5
    assert dfc_cuda.samples_per_cluster(sizes, 128, np.float32, 8, 132) == 10
    with pytest.raises(ValueError, match="cluster kernel takes at most 16 layers, clusters of"):
        dfc_cuda.cluster_layout([784, 1024, 1024, 10], 32, 50, np.float64, 8)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cuda_source_compiles_for_hopper(tmp_path, dtype):
    """Both kernels through nvcc and ptxas (which checks the cluster kernel's inline PTX)."""
    (tmp_path / "k.cu").write_text(dfc_cuda.source(dtype, cluster=8))
    out = subprocess.run(["nvcc", "-arch=sm_90", "-cubin", str(tmp_path / "k.cu"), "-o",
                          str(tmp_path / "k.cubin")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    names = (tmp_path / "k.cubin").read_bytes()
    assert b"dfc_steps\x00" in names and b"dfc_steps_cluster\x00" in names


def nvrtc_library():
    """libnvrtc (what CuPy compiles RawKernels with): ``$SIMKIT_NVRTC``, or the one of the pip
    package nvidia-cuda-nvrtc-cu12, or None."""
    import glob
    import importlib.util
    import os
    if os.environ.get("SIMKIT_NVRTC"):
        return os.environ["SIMKIT_NVRTC"]
    try:
        spec = importlib.util.find_spec("nvidia.cuda_nvrtc")
    except ModuleNotFoundError:                     # no nvidia.* package at all
        return None
    found = spec and glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "lib",
                                            "libnvrtc.so*"))
    return sorted(found)[0] if found else None


@pytest.mark.skipif(nvrtc_library() is None,
                    reason="no libnvrtc (pip install nvidia-cuda-nvrtc-cu12, or SIMKIT_NVRTC)")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cuda_source_compiles_with_nvrtc(dtype):
    """Both kernels through NVRTC for compute_90, as CuPy's RawKernel compiles them (no host
    headers: nvcc's check above would not see a missing one)."""
    import ctypes
    lib = ctypes.CDLL(nvrtc_library())
    prog = ctypes.c_void_p()
    src = dfc_cuda.source(dtype, cluster=8).encode()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), src, b"k.cu", 0, None, None) == 0
    opts = (ctypes.c_char_p * 1)(b"--gpu-architecture=compute_90")
    status = lib.nvrtcCompileProgram(prog, 1, opts)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    assert status == 0, log.value.decode()
    lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
    ptx = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetPTX(prog, ptx)
    assert b".entry dfc_steps(" in ptx.value and b".entry dfc_steps_cluster(" in ptx.value
    lib.nvrtcDestroyProgram(ctypes.byref(prog))


@needs_gxx
@pytest.mark.parametrize("cluster", [None, 8])
def test_persistent_kernel_on_the_published_net(cluster):
    """784-256-256-256-10 (256 threads a block, 12.5 kB of shared memory), a few steps; as
    both samples on 8 blocks: slices of 32, 32, 32 and 2 units (the last 3 blocks own no output
    unit), 512 threads and 167 kB of shared memory a block."""
    from simkit.dynamics.controller import Dynamics
    from simkit.nn import MLP

    from helpers import numpy_backend
    bk, rng = numpy_backend(), np.random.default_rng(2)
    net = MLP(bk, [784, 256, 256, 256, 10], "tanh", "linear", rng=rng)
    Q = [rng.normal(0, 0.1, size=(n, 10)) for n in net.sizes[1:]]
    x = rng.normal(size=(2, 784))
    cache = net.forward(x)
    P = controller_inputs(net, Q, cache, np.eye(10)[[3, 7]])
    dyn = Dynamics(dt=0.001, T=7, tau_v=0.009, tau_A=0.001, alpha=1e-5, k_p=2.0, noise="ou",
                   sigma=0.004, sigma_out=0.03, tau_noise=0.07, error="ce").check()
    learn = Learning("nonlinear_difference", "highpass", a_u=0.002)
    xi = rng.normal(size=(6, 2, 778))
    offs = np.cumsum([0, 256, 256, 256, 10])

    def draws(t0, t1):
        return [xi[t0:t1, :, offs[l]:offs[l + 1]] for l in range(4)]
    ref = simulate_reference(np, P, cache.a[1:], cache.h[1:], dyn, learn, draws)
    got = dfc_cuda.simulate_persistent(np, emulated(cluster=cluster), P, cache.a[1:],
                                       cache.h[1:], dyn, learn, draws, cluster=cluster,
                                       per_cluster=2)
    assert_state_close(got, ref, ("v", "v_fb", "r", "A", "Ab", "C"))
