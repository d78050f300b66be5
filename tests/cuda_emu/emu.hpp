// A small emulator of CUDA thread blocks for testing kernel sources on a CPU (no GPU needed).
// Blocks (or clusters of blocks) run one after another; the threads of a block, or of all the
// blocks of a cluster, run as std::threads that meet at a barrier for __syncthreads() (and one
// for cluster_sync()), so a missing barrier can show up as a wrong result. Shared memory is one
// buffer per block, filled with NaN bit patterns before each block; in_block(p, rank) is p's
// place in the shared memory of block `rank` of the cluster (distributed shared memory).
#pragma once
#include <barrier>
#include <cmath>
#include <cstring>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

using std::exp;
using std::log;
using std::sin;
using std::cos;
using std::sqrt;
using std::tanh;

struct EmuDim { long long x, y, z; };
inline thread_local EmuDim threadIdx{0, 0, 0}, blockIdx{0, 0, 0};
inline EmuDim blockDim{1, 1, 1}, gridDim{1, 1, 1};
inline thread_local std::barrier<>* emu_block_barrier = nullptr;
inline thread_local std::barrier<>* emu_cluster_barrier = nullptr;
inline thread_local unsigned char* emu_shared = nullptr;            // this block's
inline thread_local unsigned char* const* emu_cluster_shared = nullptr;  // the cluster's blocks'

#define SIMKIT_EMULATE 1
#define __global__
#define __device__
#define __forceinline__ inline
#define CLUSTER_DIMS
#define __launch_bounds__(n)
#define __syncthreads() emu_block_barrier->arrive_and_wait()
#define SHARED_REALS(name) real* name = (real*)emu_shared

inline void cluster_sync() { emu_cluster_barrier->arrive_and_wait(); }

template <typename P> P* in_block(P* p, unsigned rank) {
    return (P*)(emu_cluster_shared[rank] + ((unsigned char*)p - emu_shared));
}

// grid blocks of `block` threads, `cluster` consecutive blocks running together
inline void emu_launch(long long grid, long long block, size_t shared, long long cluster,
                       const std::function<void()>& body) {
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    for (long long first = 0; first < grid; first += cluster) {
        std::vector<std::vector<unsigned char>> mem(cluster,
                                                    std::vector<unsigned char>(shared + 8, 0xFF));
        std::vector<unsigned char*> bases;
        for (auto& m : mem) bases.push_back(m.data());
        std::deque<std::barrier<>> bars;                // barriers cannot move
        for (long long c = 0; c < cluster; ++c) bars.emplace_back(block);
        std::barrier<> cluster_bar(cluster * block);
        std::vector<std::thread> threads;
        for (long long c = 0; c < cluster; ++c)
            for (long long t = 0; t < block; ++t)
                threads.emplace_back([&, c, t] {
                    threadIdx = {t, 0, 0};
                    blockIdx = {first + c, 0, 0};
                    emu_block_barrier = &bars[c];
                    emu_cluster_barrier = &cluster_bar;
                    emu_shared = bases[c];
                    emu_cluster_shared = bases.data();
                    body();
                });
        for (auto& th : threads) th.join();
    }
}
