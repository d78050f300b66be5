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

Which is faster is to be measured (``bench_dfc.py --path cuda [--cluster 8]``).

Testing without a GPU: the source also compiles as plain C++ against a small emulator of thread
blocks and clusters (``tests/cuda_emu/``: threads and a barrier per block, a barrier per
cluster, the blocks of a cluster run together and see each other's shared memory), which runs
:func:`simulate_persistent` through it and compares with the readable loop; ``nvcc`` (when
present) compiles both kernels for sm_90 through ptxas. Written on 2026-12-07 without access to
a GPU: their speed on one is not measured yet.
"""
from __future__ import annotations

import numpy as np

from simkit.dynamics.controller import NOISE_CHUNK, refuse_reference_only
from simkit.kernels.dfc import coded, flat_state, state_of

MAX_LAYERS = 16
# Euler steps per launch when no host noise is read (the counter stream is computed inside, or no
# noise): 50 (one noise chunk), or up to all T-1 (one launch and one product per layer for the
# whole minibatch; (T-1) B N trajectory elements per buffer, 0.4 GB for the single phase in
# float64). bench_dfc.py --steps-per-launch measures both; which is faster is to be measured.
STEPS_PER_LAUNCH = NOISE_CHUNK
MAX_SHARED = 227 * 1024            # an H100's dynamic shared memory per block (opt-in)
# Threads a block at most (__launch_bounds__: ptxas keeps the registers to 128 a thread, so a
# block fits in a multiprocessor's 64k registers); threads loop over the units they own.
MAX_THREADS = 512
# Blocks a sample: None, one (``dfc_steps``, any GPU); or a cluster of that many blocks
# (``dfc_steps_cluster``, sm_90; at most 8, the portable cluster size), W in shared memory.
# Which is faster is to be measured (bench_dfc.py --cluster 8).
CLUSTER = None
PER_CLUSTER = None                 # samples a cluster; None: samples_per_cluster's choice

SOURCE = r"""
// simkit.kernels.dfc_cuda: K Euler steps of the DFC controller, one thread block per sample.
// `real` (double or float) is defined before this text.
#ifndef SIMKIT_EMULATE
#define SHARED_REALS(name) extern __shared__ unsigned char simkit_shared[]; \
    real* name = (real*)simkit_shared
#endif
typedef unsigned long long u64;

__device__ u64 mix64(u64 z) {                     // SplitMix64's finaliser
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// Element e of simkit's counter stream `key` (simkit.kernels.gauss): pair p = e / 2 is the
// Box-Muller transform of the hashes of 2p and 2p+1.
__device__ double stream_normal(u64 key, u64 e) {
    const u64 g = 0x9E3779B97F4A7C15ULL, p = e >> 1;
    const u64 z1 = mix64((2 * p * g) ^ key), z2 = mix64((2 * p * g + g) ^ key);
    const double two53 = 9007199254740992.0, half_pi = 1.5707963267948966;
    const double R = sqrt(-2.0 * log(((double)(z1 >> 11) + 1.0) / two53));
    const double q = (double)(z2 >> 62);
    const double f = (double)((z2 >> 9) & ((1ULL << 53) - 1)) / two53;
    const double theta = q * half_pi + (f - 0.5) * half_pi;
    return (e & 1) ? R * sin(theta) : R * cos(theta);
}

// phi by code: 0 linear, 1 tanh, 2 relu, 3 leaky relu (0.2), 4 sigmoid
__device__ real phi_of(int code, real a) {
    if (code == 1) return tanh(a);
    if (code == 2) return a > (real)0 ? a : (real)0;
    if (code == 3) return a > (real)0 ? a : (real)0.2 * a;
    if (code == 4) return a >= (real)0 ? (real)1 / ((real)1 + exp(-a))
                                       : exp(a) / ((real)1 + exp(a));
    return a;
}

__device__ real softmax_at(const real* z, int n, int j) {
    real mx = z[0], s = 0;
    for (int m = 1; m < n; ++m) mx = z[m] > mx ? z[m] : mx;
    for (int m = 0; m < n; ++m) s += exp(z[m] - mx);
    return exp(z[j] - mx) / s;
}

// (W_l r)_j = sum_q W_l^T[q, j] r[q]. A warp reads 32 consecutive entries of a row of W^T per
// q; sixteen such loads are issued before the first is used (one sample per block leaves ~8 warps
// per SM to hide L2's latency), into four partial sums.
__device__ real dot_column(const real* __restrict__ WT, long long nl, long long j,
                           const real* r, long long nin) {
    real a[4] = {0, 0, 0, 0};
    long long q = 0;
    for (; q + 16 <= nin; q += 16) {
#pragma unroll
        for (int m = 0; m < 16; ++m) a[m & 3] += WT[(q + m) * nl + j] * r[q + m];
    }
    for (; q < nin; ++q) a[0] += WT[q * nl + j] * r[q];
    return (a[0] + a[1]) + (a[2] + a[3]);
}

struct Opts {                   // flg, decoded once (simkit.kernels.dfc's codes)
    int proactive, inst_tr, inst_sys, noise, ce, phi_hidden, phi_out, fw, fb, stream;
};

__device__ Opts decode(const long long* flg) {
    Opts o;
    o.proactive = (int)flg[2]; o.inst_tr = (int)flg[3]; o.inst_sys = (int)flg[4];
    o.noise = (int)flg[5]; o.ce = (int)flg[6]; o.phi_hidden = (int)flg[7];
    o.phi_out = (int)flg[8]; o.fw = (int)flg[9]; o.fb = (int)flg[10]; o.stream = (int)flg[11];
    return o;
}

// Eq. (4) for output unit j of one sample (the pointers point at that sample's row): writes
// the u the layers receive to uc[j] and, where U_k is given, Eq. (13)'s u~[t+1] to U_k[j].
__device__ void control(int j, const real* rL, int nL, const real* r_target, const double* prm,
                        const Opts& o, real* u, real* u_int, real* u_lp, real* uc, real* U_k) {
    const real dt = prm[0], alpha = prm[3], k_p = prm[4], a_u = prm[8];
    const real e = r_target[j] - (o.ce ? softmax_at(rL, nL, j) : rL[j]);         // Eq. (6)
    const real u_prev = u[j];
    real u_new;
    if (k_p > 0) {
        u_int[j] = u_int[j] + dt * (e - alpha * u_prev);        // leak on the total u
        u_new = u_int[j] + k_p * e;
    } else {
        u_new = u_prev + dt * (e - alpha * u_prev);
        u_int[j] = u_new;
    }
    u[j] = u_new;
    uc[j] = o.proactive ? u_new : u_prev;                       // proactive: the new u
    if (o.fb) {
        real uf = u_new;
        if (o.fb == 2) {                                        // high-pass: u - u_lp
            u_lp[j] = a_u * u_new + ((real)1 - a_u) * u_lp[j];
            uf = u_new - u_lp[j];
        }
        if (U_k) U_k[j] = uf;
    }
}

// Eqs. (2), (3) for one unit at state index s, given its v_ff (Eq. (1)), c = (Q_l u)_j and
// the draw x: updates v_fb, n, v, v_ff there and returns r = phi(v); with o.fw, Eq. (5)'s
// delta_l[t] and r_l[t] go to D[g], R[g].
__device__ real unit_step(const Opts& o, const double* prm, int code, real sigma, long long s,
                          real vff, real c, real x, real* v, real* v_ff, real* v_fb, real* n,
                          real* D, real* R, long long g) {
    const real dt = prm[0], tau_v = prm[1], tau_A = prm[2], a_n = prm[7];
    real f = v_fb[s] + (dt / tau_A) * (c - v_fb[s]);           // Eq. (2)
    if (o.noise == 1) {                                         // white
        f += sigma * sqrt(dt) / tau_A * x;
    } else if (o.noise == 2) {                                  // Ornstein-Uhlenbeck
        n[s] = (a_n / sqrt(dt)) * x + ((real)1 - a_n) * n[s];
        f += sigma * n[s];
    }
    v_fb[s] = f;
    const real vv = o.inst_sys ? f + vff : v[s] + (dt / tau_v) * (f + vff - v[s]);
    v[s] = vv;
    v_ff[s] = vff;
    const real rn = phi_of(code, vv);
    if (o.fw) {
        D[g] = o.fw == 1 ? rn - phi_of(code, vff) : vv - vff;
        R[g] = rn;
    }
    return rn;
}

// The draw for stream element e: computed from the counter stream, or read from this chunk's
// host draws xi (whose first element is e0).
__device__ real draw(const Opts& o, u64 key, const real* xi, long long e, long long e0) {
    return o.stream ? (real)stream_normal(key, (u64)e) : xi[e - e0];
}

// off[l]: where layer l+1's units start in the flat state; woff[l]: where W_{l+1}^T starts in WT
__device__ void offsets(const long long* sizes, int L, long long* off, long long* woff) {
    off[0] = 0;
    woff[0] = 0;
    for (int l = 0; l < L; ++l) {
        off[l + 1] = off[l] + sizes[l + 1];
        woff[l + 1] = woff[l] + (l > 0 ? sizes[l + 1] * sizes[l] : 0);
    }
}

// sizes: n_0..n_L; WT: W_l^T (n_{l-1}, n_l) for l = 2..L, concatenated; QT: Q_l^T (n_L, n_l)
// concatenated; state v, v_ff, v_fb, r, n layer-blocked (B n_l blocks, as simkit.kernels.dfc);
// D, R, V: (K B, n_l) blocks per layer; U: (K B, n_L). prm and flg as simkit.kernels.dfc, with
// flg[11] = 1: the noise from the counter stream `key` (else from xi). The read-only inputs
// are __restrict__ (no buffer aliases another), so the compiler may use the read-only cache.
extern "C" __global__ void __launch_bounds__(MAX_THREADS) dfc_steps(
        const long long* sizes, const int L, const int K, const long long t0,
        const real* __restrict__ WT, const real* __restrict__ b, const real* __restrict__ QT,
        const real* __restrict__ v_ff1, const real* __restrict__ r_target,
        const real* __restrict__ xi, const u64 key, const double* prm, const long long* flg,
        real* v, real* v_ff, real* v_fb, real* r, real* n, real* u, real* u_int, real* u_lp,
        real* D, real* R, real* V, real* U) {
    const long long B = flg[0], i = blockIdx.x;
    const Opts o = decode(flg);
    const int tid = threadIdx.x, NT = blockDim.x;
    long long off[MAX_LAYERS + 1], woff[MAX_LAYERS + 1];
    offsets(sizes, L, off, woff);
    const long long N = off[L];
    const int nL = (int)sizes[L];
    SHARED_REALS(rs);                  // this sample's r_l, all layers (N)
    real* r_old = rs + N;              // the previous step's r (without inst_transmission)
    real* uc = rs + 2 * N;             // the control the layers receive (n_L)
    for (int l = 0; l < L; ++l)
        for (long long j = tid; j < sizes[l + 1]; j += NT)
            rs[off[l] + j] = r[B * off[l] + i * sizes[l + 1] + j];
    __syncthreads();
    for (int k = 0; k < K; ++k) {
        for (int j = tid; j < nL; j += NT)
            control(j, rs + off[L - 1], nL, r_target + i * nL, prm, o, u + i * nL,
                    u_int + i * nL, u_lp + i * nL, uc, U + (k * B + i) * nL);
        for (int l = 0; l < L; ++l)
            for (long long j = tid; j < sizes[l + 1]; j += NT) {
                if (o.fb)              // Eq. (13)'s v_fb[t], before this step's update
                    V[K * B * off[l] + (k * B + i) * sizes[l + 1] + j] =
                        v_fb[B * off[l] + i * sizes[l + 1] + j];
                if (!o.inst_tr) r_old[off[l] + j] = rs[off[l] + j];
            }
        __syncthreads();
        for (int l = 0; l < L; ++l) {
            const long long nl = sizes[l + 1], nin = sizes[l];
            const real* r_in = (o.inst_tr ? rs : r_old) + (l > 0 ? off[l - 1] : 0);
            const real* Ql = QT + nL * off[l];
            const int code = l == L - 1 ? o.phi_out : o.phi_hidden;
            const real sigma = l == L - 1 ? prm[6] : prm[5];
            for (long long j = tid; j < nl; j += NT) {
                const real vff = l == 0 ? v_ff1[i * nl + j]             // Eq. (1)
                    : dot_column(WT + woff[l], nl, j, r_in, nin) + b[off[l] + j];
                real c = 0;                                     // (Q_l u)_j
                for (int m = 0; m < nL; ++m) c += Ql[m * nl + j] * uc[m];
                const long long e = ((t0 + k) * B + i) * N + off[l] + j;
                const real x = o.noise ? draw(o, key, xi, e, t0 * B * N) : (real)0;
                rs[off[l] + j] = unit_step(o, prm, code, sigma, B * off[l] + i * nl + j, vff, c,
                                           x, v, v_ff, v_fb, n, D, R,
                                           K * B * off[l] + (k * B + i) * nl + j);
            }
            __syncthreads();
        }
    }
    for (int l = 0; l < L; ++l)
        for (long long j = tid; j < sizes[l + 1]; j += NT)
            r[B * off[l] + i * sizes[l + 1] + j] = rs[off[l] + j];
}
"""

# The cluster variant (sm_90 only, so a separate text): CLUSTER blocks simulate one sample.
CLUSTER_SOURCE = r"""
// dfc_steps_cluster: the same K steps with S samples split across a cluster of CLUSTER thread
// blocks (#define'd before this text). Block c owns the c-th slice of every layer's units and
// keeps its columns of W_l^T and Q_l^T in its shared memory, so W is read from L2 once a launch
// instead of once a step, and serves the S samples. It writes its slice of r_l into every
// block's copy of r (distributed shared memory), and the cluster meets at a barrier before the
// next layer reads it (one barrier a step without inst_transmission, where every layer reads the
// previous step's r). Eq. (4)'s n_L units are computed by every block alike from its own copy
// of r_L; block 0 stores u.
#ifndef SIMKIT_EMULATE
__device__ __forceinline__ void cluster_sync() {
    asm volatile("barrier.cluster.arrive.release.aligned;\n\t"
                 "barrier.cluster.wait.acquire.aligned;" ::: "memory");
}
__device__ __forceinline__ real* in_block(real* p, unsigned rank) {   // p in block `rank`
    real* q;
    asm volatile("mapa.u64 %0, %1, %2;" : "=l"(q) : "l"(p), "r"(rank));
    return q;
}
#define CLUSTER_DIMS __cluster_dims__(CLUSTER, 1, 1)
#endif

extern "C" __global__ void __launch_bounds__(MAX_THREADS) CLUSTER_DIMS dfc_steps_cluster(
        const long long* sizes, const int L, const int K, const long long t0,
        const real* __restrict__ WT, const real* __restrict__ b, const real* __restrict__ QT,
        const real* __restrict__ v_ff1, const real* __restrict__ r_target,
        const real* __restrict__ xi, const u64 key, const double* prm, const long long* flg,
        real* v, real* v_ff, real* v_fb, real* r, real* n, real* u, real* u_int, real* u_lp,
        real* D, real* R, real* V, real* U, const int S) {
    const long long B = flg[0], i0 = (blockIdx.x / CLUSTER) * S;    // samples i0 .. i0+ns-1
    const long long ns = B - i0 < S ? B - i0 : S;
    const unsigned rank = blockIdx.x % CLUSTER;
    const Opts o = decode(flg);
    const int tid = threadIdx.x, NT = blockDim.x;
    long long off[MAX_LAYERS + 1], woff[MAX_LAYERS + 1], lo[MAX_LAYERS], cnt[MAX_LAYERS];
    long long ws[MAX_LAYERS + 1], qs[MAX_LAYERS + 1], per_max = 1;
    offsets(sizes, L, off, woff);
    ws[0] = 0;
    qs[0] = 0;
    for (int l = 0; l < L; ++l) {      // this block's units of layer l+1: lo[l] .. lo[l]+cnt[l]
        const long long nl = sizes[l + 1], per = (nl + CLUSTER - 1) / CLUSTER;
        lo[l] = rank * per;
        cnt[l] = nl - lo[l] < per ? (nl > lo[l] ? nl - lo[l] : 0) : per;
        per_max = per > per_max ? per : per_max;
        ws[l + 1] = ws[l] + (l > 0 ? sizes[l] * cnt[l] : 0);
        qs[l + 1] = qs[l] + sizes[L] * cnt[l];
    }
    const long long N = off[L], split = NT / (S * per_max) > 1 ? NT / (S * per_max) : 1;
    const int nL = (int)sizes[L];
    SHARED_REALS(rs);                  // r_l of the S samples, all layers (S x N), in each block
    real* r_old = rs + S * N;          // the previous step's r (without inst_transmission)
    real* uc = r_old + S * N;          // the control the layers receive (S x n_L)
    real* us = uc + S * nL;            // u, u_int, u_lp (S x 3 n_L)
    real* psum = us + 3 * S * nL;      // partial sums of W_l r (S x split x per_max)
    real* Ws = psum + S * split * per_max;     // this block's columns of W_l^T, l = 2..L
    real* Qs = Ws + ws[L];             // and of Q_l^T, l = 1..L
    for (int l = 0; l < L; ++l) {
        const long long nl = sizes[l + 1], c = cnt[l];
        for (long long e = tid; e < ns * nl; e += NT)
            rs[(e / nl) * N + off[l] + e % nl] = r[B * off[l] + i0 * nl + e];
        for (long long e = tid; l > 0 && e < sizes[l] * c; e += NT)
            Ws[ws[l] + e] = WT[woff[l] + (e / c) * nl + lo[l] + e % c];
        for (long long e = tid; e < nL * c; e += NT)
            Qs[qs[l] + e] = QT[nL * off[l] + (e / c) * nl + lo[l] + e % c];
    }
    for (long long e = tid; e < ns * nL; e += NT) {
        real* ui = us + (e / nL) * 3 * nL + e % nL;
        ui[0] = u[i0 * nL + e];
        ui[nL] = u_int[i0 * nL + e];
        ui[2 * nL] = u_lp[i0 * nL + e];
    }
    cluster_sync();                    // every block has started and loaded (DSMEM is valid)
    for (int k = 0; k < K; ++k) {
        for (long long e = tid; e < ns * nL; e += NT) {
            const long long s = e / nL;
            real* ui = us + s * 3 * nL;
            control((int)(e % nL), rs + s * N + off[L - 1], nL, r_target + (i0 + s) * nL, prm,
                    o, ui, ui + nL, ui + 2 * nL, uc + s * nL,
                    rank == 0 ? U + (k * B + i0 + s) * nL : (real*)0);
        }
        for (int l = 0; l < L; ++l)    // Eq. (13)'s v_fb[t], before this step's update
            for (long long e = tid; o.fb && e < ns * cnt[l]; e += NT) {
                const long long g = (i0 + e / cnt[l]) * sizes[l + 1] + lo[l] + e % cnt[l];
                V[K * B * off[l] + k * B * sizes[l + 1] + g] = v_fb[B * off[l] + g];
            }
        for (long long e = tid; !o.inst_tr && e < ns * N; e += NT) r_old[e] = rs[e];
        cluster_sync();                // no block overwrites r before every block has read it
        for (int l = 0; l < L; ++l) {
            const long long nl = sizes[l + 1], nin = sizes[l], c = cnt[l], sc = split * c;
            const real* r_in = (o.inst_tr ? rs : r_old) + (l > 0 ? off[l - 1] : 0);
            const int code = l == L - 1 ? o.phi_out : o.phi_hidden;
            const real sigma = l == L - 1 ? prm[6] : prm[5];
            if (l > 0) {               // Eq. (1): task (s, p, jj) sums inputs q = p, p + split, ..
                for (long long t = tid; t < ns * sc; t += NT) {
                    const long long s = t / sc, jj = t % c;
                    const real* ri = r_in + s * N;
                    real a = 0;
                    for (long long q = (t % sc) / c; q < nin; q += split)
                        a += Ws[ws[l] + q * c + jj] * ri[q];
                    psum[t] = a;
                }
                __syncthreads();
            }
            for (long long e = tid; e < ns * c; e += NT) {
                const long long s = e / c, jj = e % c, i = i0 + s, j = lo[l] + jj;
                real vff;
                if (l == 0) {
                    vff = v_ff1[i * nl + j];
                } else {
                    real a = 0;
                    for (long long p = 0; p < split; ++p) a += psum[s * sc + p * c + jj];
                    vff = a + b[off[l] + j];
                }
                real cq = 0;                                    // (Q_l u)_j
                for (int m = 0; m < nL; ++m) cq += Qs[qs[l] + m * c + jj] * uc[s * nL + m];
                const long long ei = ((t0 + k) * B + i) * N + off[l] + j;
                const real x = o.noise ? draw(o, key, xi, ei, t0 * B * N) : (real)0;
                const real rn = unit_step(o, prm, code, sigma, B * off[l] + i * nl + j, vff, cq, x,
                                          v, v_ff, v_fb, n, D, R,
                                          K * B * off[l] + (k * B + i) * nl + j);
                for (unsigned d = 0; d < CLUSTER; ++d) *in_block(rs + s * N + off[l] + j, d) = rn;
            }
            if (o.inst_tr || l == L - 1) cluster_sync(); else __syncthreads();
        }
    }
    for (int l = 0; l < L; ++l)        // after the last barrier: no block reads another's r now
        for (long long e = tid; e < ns * cnt[l]; e += NT) {
            const long long s = e / cnt[l], j = lo[l] + e % cnt[l];
            r[B * off[l] + (i0 + s) * sizes[l + 1] + j] = rs[s * N + off[l] + j];
        }
    for (long long e = tid; rank == 0 && e < ns * nL; e += NT) {
        const real* ui = us + (e / nL) * 3 * nL + e % nL;
        u[i0 * nL + e] = ui[0];
        u_int[i0 * nL + e] = ui[nL];
        u_lp[i0 * nL + e] = ui[2 * nL];
    }
}
"""


def source(dtype, cluster=None) -> str:
    """The kernels' text for ``dtype`` (float64 or float32); with ``cluster`` (blocks a sample)
    also ``dfc_steps_cluster``, which needs sm_90."""
    real = {"float64": "double", "float32": "float"}[np.dtype(dtype).name]
    head = f"typedef {real} real;\n#define MAX_LAYERS {MAX_LAYERS}\n" \
        f"#define MAX_THREADS {MAX_THREADS}\n"
    if cluster is None:
        return head + SOURCE
    return head + f"#define CLUSTER {int(cluster)}\n" + SOURCE + CLUSTER_SOURCE


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
    F = flat_state(xp, P, v_ff0, r0, dtype)
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
    prm, flg = xp.asarray(prm), xp.asarray(np.append(flg, int(key is not None)))
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
