// A small emulator of CUDA thread blocks for testing kernel sources on a CPU (no GPU needed).
// Blocks run one after another; the threads of a block run as std::threads that meet at a
// barrier for __syncthreads(), so a missing barrier can show up as a wrong result. Shared
// memory is one buffer per block, filled with NaN bit patterns before each block.
#pragma once
#include <barrier>
#include <cmath>
#include <cstring>
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
inline thread_local EmuDim threadIdx{0, 0, 0};
inline EmuDim blockIdx{0, 0, 0}, blockDim{1, 1, 1}, gridDim{1, 1, 1};
inline std::barrier<>* emu_barrier = nullptr;
inline std::vector<unsigned char> emu_shared;

#define SIMKIT_EMULATE 1
#define __global__
#define __device__
#define __syncthreads() emu_barrier->arrive_and_wait()
#define SHARED_REALS(name) real* name = (real*)emu_shared.data()

inline void emu_launch(long long grid, long long block, size_t shared,
                       const std::function<void()>& body) {
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    for (long long bx = 0; bx < grid; ++bx) {
        emu_shared.assign(shared + 8, 0xFF);
        blockIdx = {bx, 0, 0};
        std::barrier<> bar(block);
        emu_barrier = &bar;
        std::vector<std::thread> threads;
        for (long long t = 0; t < block; ++t)
            threads.emplace_back([&body, t] { threadIdx = {t, 0, 0}; body(); });
        for (auto& th : threads) th.join();
    }
}
