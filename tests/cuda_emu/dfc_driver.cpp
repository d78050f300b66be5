// Runs simkit.kernels.dfc_cuda's dfc_steps (and dfc_steps_cluster, where CLUSTER is defined)
// in the emulator; `a` holds pointers to the kernel's arguments, in order, as cuLaunchKernel
// takes them. Built by tests/emulator.py.
typedef const long long* I;
typedef const real* CR;
typedef real* Rp;
#define DFC_ARGS(a) *(I*)a[0], *(int*)a[1], *(int*)a[2], *(long long*)a[3], *(CR*)a[4], \
    *(CR*)a[5], *(CR*)a[6], *(CR*)a[7], *(CR*)a[8], *(CR*)a[9], *(u64*)a[10], \
    *(const double**)a[11], *(I*)a[12], *(Rp*)a[13], *(Rp*)a[14], *(Rp*)a[15], *(Rp*)a[16], \
    *(Rp*)a[17], *(Rp*)a[18], *(Rp*)a[19], *(Rp*)a[20], *(Rp*)a[21], *(Rp*)a[22], *(Rp*)a[23], \
    *(Rp*)a[24]

extern "C" void launch_dfc_steps(long long grid, long long block, long long shared, void** a) {
    emu_launch(grid, block, (size_t)shared, 1, [a] { dfc_steps(DFC_ARGS(a)); });
}

#ifdef CLUSTER
extern "C" void launch_dfc_steps_cluster(long long grid, long long block, long long shared,
                                         void** a) {
    emu_launch(grid, block, (size_t)shared, CLUSTER,
               [a] { dfc_steps_cluster(DFC_ARGS(a), *(int*)a[25]); });
}
#endif
