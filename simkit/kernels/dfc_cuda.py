r"""The DFC controller loop on a GPU: one persistent kernel runs a chunk of Euler steps.

The equations are those of :mod:`simkit.dynamics.controller` (``controller_step`` is the
reference; read that one). The samples of a minibatch do not interact during the simulation,
so thread block :math:`i` simulates sample :math:`i` alone for all K steps of a chunk, with
:math:`r` (all layers) in shared memory and one ``__syncthreads`` per layer per step; thread
:math:`j` owns unit :math:`j` of every layer (and :math:`j + \text{blockDim}`, ...):

* Eq. (4), the PI controller: thread :math:`j` updates :math:`u_j` (and :math:`u_{lp}`);
* Eqs. (1)-(2) per layer in order: :math:`v_{ff,l,j} = \sum_k W^\top_l[k, j]\,r_{l-1,k} + b_{l,j}`
  (:math:`W_l` is passed transposed so that a warp reads consecutive addresses),
  :math:`(\bar Q u)_j`, the noise, :math:`v_{fb}`, :math:`v`, :math:`r = \phi(v)`.

One launch replaces the ~35 array calls of a step (14-30 us each on an H100; DESIGN.md's
performance model), so a 500-step minibatch is ten launches (one per noise chunk; see
``STEPS_PER_LAUNCH``) plus the sums.

The time-averaged updates are not accumulated inside the loop: the kernel writes this chunk's
:math:`\delta_l[t]`, :math:`r_l[t]` (Eq. (5)), :math:`v_{fb,l}[t]` and :math:`\tilde u[t+1]`
(Eq. (13)) to trajectory buffers laid out per layer as (K B, n_l) blocks, and the host adds one
product per layer per chunk: :math:`A_l \mathrel{+}= \Delta_l^\top R_{l-1}`,
:math:`C_l \mathrel{+}= V_l^\top \tilde U`, :math:`A_1` and the bias sums by column sums
(cuBLAS on (K B)-row operands instead of K products of B rows).

Noise: with simkit's counter stream (:mod:`simkit.kernels.gauss`) the kernel computes each draw
from its index, :math:`((t_0 + k) B + i) N + o_l + j`, as the host stream does (Box-Muller on
SplitMix64 hashes; equal up to the last ulp of ``log``/``sin``/``cos``), so no draws cross the
bus; any other source is copied in per chunk (``xi``, sample-major (K, B, N)).

Two ways to lay a minibatch on the GPU (``CLUSTER``):

* ``dfc_steps`` (the default, any GPU): one block a sample. Each step every block reads W_2 ..
  W_L from L2 (1.1 MB a step for the published net in float64), so a step takes at least that
  over one multiprocessor's L2 bandwidth (~100 GB/s: ~10 us), and a batch of 32 uses 32 of an
  H100's 132 multiprocessors. ``dot_column`` keeps ~16 loads in flight a thread for it.
* ``dfc_steps_cluster`` (sm_90, ``CLUSTER = 8``): S samples on a cluster of 8 blocks. Block c
  owns the c-th eighth of every layer's units and keeps its columns of W^T and Q^T in shared
  memory (135 kB in float64), loaded once a launch; each block writes its units' r into every
  block's copy of r (distributed shared memory) and the cluster meets at a barrier before the
  next layer. A step is then bounded by latency (the barriers, tanh, the noise), not by L2.
  :func:`samples_per_cluster` takes S so that the clusters run in as few waves as shared memory
  allows (batch 32: 3 samples a cluster, 11 clusters, 88 multiprocessors; ``PER_CLUSTER``
  overrides it).

``bench_dfc.py --path cuda [--cluster 8]`` compares the two.

Testing without a GPU: the source also compiles as plain C++ against a small emulator of thread
blocks and clusters (``tests/cuda_emu/``: threads and a barrier per block, a barrier per
cluster, the blocks of a cluster run together and see each other's shared memory), which runs
:func:`simulate_persistent` through it and compares with the readable loop; ``nvcc`` (when
present) compiles both kernels for sm_90 through ptxas.
"""
from __future__ import annotations

import numpy as np

from simkit.kernels import dfc
from simkit.kernels.dfc import STREAM, coded, flat_state, state_of
from simkit.kernels.dfc_cuda_src import CLUSTER_SOURCE, SOURCE
from simkit.kernels.dfc_step import NOISE_CHUNK, refuse_reference_only

MAX_LAYERS = 16
# Euler steps per launch when no host noise is read (the counter stream is computed inside, or no
# noise): 50 (one noise chunk), or up to all T-1 (one launch and one product per layer for the
# whole minibatch; (T-1) B N trajectory elements per buffer, 0.4 GB for the single phase in
# float64). bench_dfc.py --steps-per-launch compares the two.
STEPS_PER_LAUNCH = NOISE_CHUNK
MAX_SHARED = 227 * 1024            # an H100's dynamic shared memory per block (opt-in)
# Threads a block at most (__launch_bounds__: ptxas keeps the registers to 128 a thread, so a
# block fits in a multiprocessor's 64k registers); threads loop over the units they own.
MAX_THREADS = 512
# Blocks a sample: None, one (``dfc_steps``, any GPU); or a cluster of that many blocks
# (``dfc_steps_cluster``, sm_90; at most 8, the portable cluster size), W in shared memory.
# bench_dfc.py --cluster 8 compares the two.
CLUSTER = None
PER_CLUSTER = None                 # samples a cluster; None: samples_per_cluster's choice


def source(dtype, cluster=None) -> str:
    """The kernels' text for ``dtype`` (float64 or float32); with ``cluster`` (blocks a sample)
    also ``dfc_steps_cluster``, which needs sm_90."""
    real = {"float64": "double", "float32": "float"}[np.dtype(dtype).name]
    head = f"typedef {real} real;\n#define MAX_LAYERS {MAX_LAYERS}\n" \
        f"#define MAX_THREADS {MAX_THREADS}\n" + argument_names()
    if cluster is None:
        return head + SOURCE
    return head + f"#define CLUSTER {int(cluster)}\n" + SOURCE + CLUSTER_SOURCE


def argument_names() -> str:
    """``#define`` lines naming :mod:`simkit.kernels.dfc`'s ``prm`` and ``flg`` indices
    (``PRM_DT``, ``FLG_NOISE``, ...) and codes (``NOISE_WHITE``, ``PHI_TANH``, ...)."""
    prm = ("DT", "TAU_V", "TAU_A", "ALPHA", "K_P", "SIGMA", "SIGMA_OUT", "A_NOISE", "A_U")
    flg = ("BATCH", "STEPS", "PROACTIVE", "INST_TRANSMISSION", "INST_SYSTEM", "NOISE", "CE",
           "PHI_HIDDEN", "PHI_OUT", "FW", "FB", "STREAM")
    codes = [k for k, v in vars(dfc).items() if isinstance(v, int) and k not in flg and
             k.startswith(("NOISE_", "PHI_", "FW_", "FB_"))]
    lines = [f"#define PRM_{k} {getattr(dfc, k)}" for k in prm] + \
        [f"#define FLG_{k} {getattr(dfc, k)}" for k in flg] + \
        [f"#define {k} {getattr(dfc, k)}" for k in codes]
    return "\n".join(lines) + "\n"


def cupy_launcher(bk, dtype, cluster=None):
    """``launch(grid, block, args, shared_mem)`` running ``dfc_steps`` (or, with ``cluster``,
    ``dfc_steps_cluster``) on the CuPy backend."""
    kern = bk.raw_kernel(source(dtype, cluster), "dfc_steps_cluster" if cluster else "dfc_steps")

    def launch(grid, block, args, shared_mem):
        if shared_mem > 48 * 1024:                     # above the default: opt in
            kern.max_dynamic_shared_size_bytes = shared_mem
        kern(grid, block, args, shared_mem=shared_mem)
    return launch


def layout(sizes, B, K, dtype):
    """Threads per block, shared-memory bytes, and the trajectory buffers' lengths."""
    N, nL = sum(sizes[1:]), sizes[-1]
    threads = min(MAX_THREADS, 32 * -(-max(sizes[1:]) // 32))
    shared = (2 * N + nL) * np.dtype(dtype).itemsize
    if len(sizes) - 1 > MAX_LAYERS or shared > MAX_SHARED:
        raise ValueError(f"the GPU DFC kernel takes at most {MAX_LAYERS} layers and "
                         f"{(MAX_SHARED // np.dtype(dtype).itemsize - nL) // 2} neurons per "
                         f"sample; got {len(sizes) - 1} layers, {N} neurons")
    return threads, shared, K * B * N, K * B * nL


def cluster_layout(sizes, B, K, dtype, cluster, threads=None, per_cluster=1):
    """``layout`` for ``dfc_steps_cluster``: each block holds a 1/cluster slice of every
    layer's units with its columns of W^T and Q^T, and r of ``per_cluster`` samples; ``threads``
    ~256 a sample by default, the sums of Eq. (1) split over threads // (samples x largest
    slice) of them."""
    per = [-(-n // cluster) for n in sizes[1:]]
    pmax, N, nL, S = max(per), sum(sizes[1:]), sizes[-1], per_cluster
    threads = min(MAX_THREADS, threads or S * pmax * max(1, 256 // pmax))
    split = max(1, threads // (S * pmax))
    reals = S * (2 * N + 4 * nL + split * pmax) + nL * sum(per) + \
        sum(sizes[l] * per[l] for l in range(1, len(per)))
    shared = reals * np.dtype(dtype).itemsize
    if len(sizes) - 1 > MAX_LAYERS or shared > MAX_SHARED or not 1 <= cluster <= 8:
        raise ValueError(f"the GPU DFC cluster kernel takes at most {MAX_LAYERS} layers, "
                         f"clusters of 1-8 blocks and {MAX_SHARED} bytes of shared memory a "
                         f"block; got {len(sizes) - 1} layers, {cluster} blocks, {shared} bytes")
    return threads, shared, K * B * N, K * B * nL


def samples_per_cluster(sizes, B, dtype, cluster, n_sm):
    """Samples a cluster simulates: the fewest that keep the clusters to as few waves as shared
    memory allows. A cluster's blocks must share a GPC, whose multiprocessors are not all a
    multiple of 8, so 7/8 of n_sm // cluster clusters (one block a multiprocessor) are taken to
    run at once: 14 on an H100's 132."""
    at_once = max(1, n_sm // cluster * 7 // 8)
    fits = -(-B // at_once)
    while fits > 1:
        try:
            cluster_layout(sizes, B, 1, dtype, cluster, per_cluster=fits)
            break
        except ValueError:
            fits -= 1
    clusters = -(-B // fits)
    waves = -(-clusters // at_once)
    return -(-B // (waves * at_once))


def chunk_sums(xp, sizes, B, K, trj, sums, learn):
    r"""Add one chunk's terms to the running sums: :math:`\sum_t \delta_1[t]` (B, n_1),
    :math:`A_l \mathrel{+}= \Delta_l^\top R_{l-1}`, the bias sums, :math:`C_l \mathrel{+}=
    V_l^\top \tilde U` (``trj``: the D, R, V, U buffers; ``sums``: views of the flat sums)."""
    D, R, V, U = trj
    o = np.cumsum([0] + list(sizes[1:])) * K * B
    block = lambda a, l: a[o[l]:o[l + 1]].reshape(K * B, sizes[l + 1])   # noqa: E731
    Uk = U[:K * B * sizes[-1]].reshape(K * B, sizes[-1])
    for l in range(len(sizes) - 1):
        if learn.fw:
            Dl = block(D, l)
            if l == 0:
                sums["A1"] += Dl.reshape(K, B * sizes[1]).sum(axis=0)
            else:
                sums["AW"][l - 1] += Dl.T @ block(R, l - 1)
            sums["Ab"][l] += Dl.sum(axis=0)
        if learn.fb:
            sums["C"][l] += block(V, l).T @ Uk


def simulate_persistent(xp, launch, P, v_ff0, r0, dyn, learn, noise=None, threads=None,
                        cluster=None, per_cluster=1):
    r"""Run the T-1 Euler steps with the persistent kernel through ``launch`` (CuPy's, or the
    tests' emulator with NumPy arrays); returns a :class:`~simkit.dynamics.controller.State` as
    :func:`simkit.kernels.dfc.simulate` does. ``noise(t0, t1)`` as there; a source with a
    ``key`` attribute (simkit's counter stream) is drawn inside the kernel instead.
    ``threads``: per block (default: the widest layer, rounded up to a warp, at most
    ``MAX_THREADS``); ``cluster``: ``launch`` runs ``dfc_steps_cluster``, ``per_cluster``
    samples on that many blocks."""
    dtype = v_ff0[0].dtype
    F = flat_state(xp, P, v_ff0, r0, dyn, learn, dtype)
    sizes, B, L = F["sizes"], F["B"], len(P["W"])
    key = getattr(noise, "key", None) if dyn.noise != "none" else None
    drawn_inside = key is not None or dyn.noise == "none"       # no host chunks to follow
    Kmax = min(STEPS_PER_LAUNCH if drawn_inside else NOISE_CHUNK, dyn.T - 1)
    if cluster:
        threads, shared, n_trj, n_u = cluster_layout(sizes, B, Kmax, dtype, cluster, threads,
                                                     per_cluster)
    else:
        width, shared, n_trj, n_u = layout(sizes, B, Kmax, dtype)
        threads = threads or width
    trj = [xp.empty(n_trj if learn.fw else 1, dtype=dtype) for _ in range(2)] + \
        [xp.empty(n_trj if learn.fb else 1, dtype=dtype), xp.empty(max(n_u, 1), dtype=dtype)]
    WT = F["pack"]([w.T for w in P["W"][1:]])
    QT = F["pack"]([q.T for q in P["Q"]])
    prm, flg = coded(dyn, learn, P, B, Kmax)
    flg = np.append(flg, 0)
    flg[STREAM] = key is not None                    # draw the counter stream inside
    prm, flg = xp.asarray(prm), xp.asarray(flg)
    sz = xp.asarray(np.asarray(sizes, dtype=np.int64))
    dense = lambda a: xp.ascontiguousarray(a, dtype=dtype)     # noqa: E731 (a kernel reads raw)
    v_ff1, r_target = dense(P["v_ff1"]), dense(P["r_target"])
    no_xi = xp.zeros(1, dtype=dtype)
    sums = {"A1": F["A1"], "AW": F["AW_blocks"], "Ab": F["Ab_blocks"], "C": F["C_blocks"]}
    for t0 in range(0, dyn.T - 1, Kmax):
        K = min(Kmax, dyn.T - 1 - t0)
        xi = no_xi
        if dyn.noise != "none" and key is None:
            chunk = noise(t0, t0 + K)
            full = getattr(chunk, "full", None)
            xi = full if full is not None else xp.concatenate(chunk, axis=2)
        args = (sz, np.int32(L), np.int32(K), np.int64(t0), WT, F["b"], QT, v_ff1, r_target,
                dense(xi), np.uint64(key or 0), prm, flg,
                *(F[k] for k in ("v", "v_ff", "v_fb", "r", "n", "u", "u_int", "u_lp")), *trj)
        if cluster:
            launch((-(-B // per_cluster) * cluster,), (threads,), args + (np.int32(per_cluster),),
                   shared)
        else:
            launch((B,), (threads,), args, shared)
        chunk_sums(xp, sizes, B, K, trj, sums, learn)
    return state_of(xp, F, P["x"])


def simulate_cuda(bk, P, v_ff0, r0, dyn, learn, noise=None):
    """:func:`simulate_persistent` on the CuPy backend."""
    refuse_reference_only(dyn, P, "the GPU DFC kernel")
    dtype = v_ff0[0].dtype
    launch = cupy_launcher(bk, dtype, CLUSTER)
    S = 1
    if CLUSTER:
        n_sm = bk.xp.cuda.Device().attributes["MultiProcessorCount"]
        sizes = [P["x"].shape[1]] + [a.shape[1] for a in v_ff0]
        S = PER_CLUSTER or samples_per_cluster(sizes, v_ff0[0].shape[0], dtype, CLUSTER, n_sm)
    return simulate_persistent(bk.xp, launch, P, v_ff0, r0, dyn, learn, noise, cluster=CLUSTER,
                               per_cluster=S)
