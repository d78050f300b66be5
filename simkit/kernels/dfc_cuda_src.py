r"""The CUDA text of :mod:`simkit.kernels.dfc_cuda`'s two kernels (read that module's docstring
first): ``SOURCE`` holds the device functions both use (the counter stream, phi, Eq. (4)'s
controller, a unit's Eqs. (1)-(3)) and ``dfc_steps``, one block a sample; ``CLUSTER_SOURCE``
holds ``dfc_steps_cluster``, S samples on a cluster of blocks (sm_90 only, so a text of its own).
``real``, ``MAX_LAYERS``, ``MAX_THREADS``, ``CLUSTER`` and :mod:`simkit.kernels.dfc`'s
argument indices (as ``PRM_DT``, ..., ``FLG_FB``) and codes (``NOISE_WHITE``, ...) are
#define'd before them by
:func:`simkit.kernels.dfc_cuda.source`; compiled by NVRTC (CuPy), nvcc, or g++ against the
tests' emulator (``SIMKIT_EMULATE``).
"""

SOURCE = r"""
// simkit.kernels.dfc_cuda_src: K Euler steps of the DFC controller, one thread block per sample.
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

// phi by code (PHI_*): linear, tanh, relu, leaky relu (0.2), sigmoid
__device__ real phi_of(int code, real a) {
    if (code == PHI_TANH) return tanh(a);
    if (code == PHI_RELU) return a > (real)0 ? a : (real)0;
    if (code == PHI_LEAKY) return a > (real)0 ? a : (real)0.2 * a;
    if (code == PHI_SIGMOID) return a >= (real)0 ? (real)1 / ((real)1 + exp(-a))
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

struct Opts {                   // flg, decoded once (simkit.kernels.dfc's indices and codes)
    int proactive, inst_tr, inst_sys, noise, ce, phi_hidden, phi_out, fw, fb, stream;
};

__device__ Opts decode(const long long* flg) {
    Opts o;
    o.proactive = (int)flg[FLG_PROACTIVE]; o.inst_tr = (int)flg[FLG_INST_TRANSMISSION];
    o.inst_sys = (int)flg[FLG_INST_SYSTEM]; o.noise = (int)flg[FLG_NOISE];
    o.ce = (int)flg[FLG_CE]; o.phi_hidden = (int)flg[FLG_PHI_HIDDEN];
    o.phi_out = (int)flg[FLG_PHI_OUT]; o.fw = (int)flg[FLG_FW]; o.fb = (int)flg[FLG_FB];
    o.stream = (int)flg[FLG_STREAM];
    return o;
}

// Eq. (4) for output unit j of one sample (the pointers point at that sample's row): writes
// the u the layers receive to uc[j] and, where U_k is given, Eq. (13)'s u~[t+1] to U_k[j].
__device__ void control(int j, const real* rL, int nL, const real* r_target, const double* prm,
                        const Opts& o, real* u, real* u_int, real* u_lp, real* uc, real* U_k) {
    const real dt = prm[PRM_DT], alpha = prm[PRM_ALPHA], k_p = prm[PRM_K_P];
    const real a_u = prm[PRM_A_U];
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
        if (o.fb == FB_HIGHPASS) {                              // high-pass: u - u_lp
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
    const real dt = prm[PRM_DT], tau_v = prm[PRM_TAU_V], tau_A = prm[PRM_TAU_A];
    const real a_n = prm[PRM_A_NOISE];
    real f = v_fb[s] + (dt / tau_A) * (c - v_fb[s]);           // Eq. (2)
    if (o.noise == NOISE_WHITE) {                               // white
        f += sigma * sqrt(dt) / tau_A * x;
    } else if (o.noise == NOISE_OU) {                           // Ornstein-Uhlenbeck
        n[s] = (a_n / sqrt(dt)) * x + ((real)1 - a_n) * n[s];
        f += sigma * n[s];
    }
    v_fb[s] = f;
    const real vv = o.inst_sys ? f + vff : v[s] + (dt / tau_v) * (f + vff - v[s]);
    v[s] = vv;
    v_ff[s] = vff;
    const real rn = phi_of(code, vv);
    if (o.fw) {
        D[g] = o.fw == FW_NONLINEAR ? rn - phi_of(code, vff) : vv - vff;
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
// flg[FLG_STREAM] = 1: the noise from the counter stream `key` (else from xi). The read-only
// inputs are __restrict__ (no buffer aliases another), so the compiler may use the read-only cache.
extern "C" __global__ void __launch_bounds__(MAX_THREADS) dfc_steps(
        const long long* sizes, const int L, const int K, const long long t0,
        const real* __restrict__ WT, const real* __restrict__ b, const real* __restrict__ QT,
        const real* __restrict__ v_ff1, const real* __restrict__ r_target,
        const real* __restrict__ xi, const u64 key, const double* prm, const long long* flg,
        real* v, real* v_ff, real* v_fb, real* r, real* n, real* u, real* u_int, real* u_lp,
        real* D, real* R, real* V, real* U) {
    const long long B = flg[FLG_BATCH], i = blockIdx.x;
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
            const real sigma = l == L - 1 ? prm[PRM_SIGMA_OUT] : prm[PRM_SIGMA];
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

# The cluster variant (sm_90 only, so a separate text): CLUSTER blocks simulate S samples.
CLUSTER_SOURCE = r"""
// dfc_steps_cluster: the same K steps with S samples split across a cluster of CLUSTER thread
// blocks (#define'd before this text). Block c owns the c-th slice of every layer's units and
// keeps its columns of W_l^T and Q_l^T in its shared memory, so W is read from L2 once a launch
// instead of once a step, and serves the S samples. It writes its slice of r_l into every
// block's copy of r (distributed shared memory), and the cluster meets at a barrier before the
// next layer reads it, and once before the first layer (so L + 1 barriers a step; 2 without
// inst_transmission, where every layer reads the previous step's r). Eq. (4)'s n_L units are computed by every block alike from its own copy
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
    const long long B = flg[FLG_BATCH], i0 = (blockIdx.x / CLUSTER) * S;    // samples i0 .. i0+ns-1
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
            const real sigma = l == L - 1 ? prm[PRM_SIGMA_OUT] : prm[PRM_SIGMA];
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
