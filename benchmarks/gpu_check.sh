#!/usr/bin/env bash
# The GPU checks in one script, for a machine with a CUDA GPU, CuPy and NumPy but no internet
# access (simkit's GPU path needs no Numba; the source tree is imported as it is, not installed).
# Python packages it may lack (pytest, SciPy, tqdm, threadpoolctl) go there as wheels, downloaded
# once, from the repository root, on a machine that has internet access:
#
#     echo /.whl/ >> .git/info/exclude
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#         --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#         --platform manylinux_2_28_x86_64 -d .whl pytest pluggy iniconfig packaging scipy tqdm \
#         threadpoolctl
#
# then, with the checkout and its .whl/ copied to the GPU machine, run there:
#
#     bash benchmarks/gpu_check.sh            # results also under $OUT (or /tmp/simkit_gpu)
#
# 1. the GPU and versions; 2. the CuPy tests (tests/test_gpu_parity.py: the DFC persistent
# kernel, the array-call loops, DI/SDI, GAIT parity; the CuPy twins of test_backend.py);
# 3. compute-sanitizer's race and memory checks on the DFC kernel (one small case);
# 4. bench_dfc.py --path cuda on the five DFC cases, float64 and float32, with the GPU's peak,
#    the whole minibatch as one launch (--steps-per-launch 500) beside the default 50, the
#    cluster kernel (--cluster 8: a sample on 8 blocks, W in shared memory), and the array-call
#    loop (cupy-arrays) for the forward phase.
# About 6-8 minutes; each step has its own time limit so that one hang does not lose the rest.
set -uo pipefail
OUT=${OUT:-/tmp/simkit_gpu}
mkdir -p "$OUT"
for pkg in pytest:pytest,pluggy,iniconfig,packaging scipy:scipy tqdm:tqdm \
        threadpoolctl:threadpoolctl; do                 # install only what is missing there
    python3 -c "import ${pkg%%:*}" 2>/dev/null && continue
    for w in ${pkg#*:}; do ls .whl/${w}-*.whl 2>/dev/null; done | xargs -r python3 -m pip install \
        -q --no-index --no-deps --no-compile --target /tmp/site && echo "installed ${pkg%%:*}"
done
export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_DISABLE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__)" \
    | tee -a "$OUT/gpu.txt"
timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_gpu_parity.py \
    tests/test_dfc_cuda.py "tests/test_backend.py::test_cupy_twin_matches_reference" 2>&1 \
    | tee "$OUT/tests.log" | tail -n 30
if command -v compute-sanitizer >/dev/null; then
    for tool in racecheck memcheck; do
        timeout 120 compute-sanitizer --tool $tool python3 -m pytest -q -p no:cacheprovider \
            "tests/test_gpu_parity.py::test_dfc_persistent_kernel_on_cupy_matches_the_reference" \
            -k "True-ou" 2>&1 | tee "$OUT/sanitizer_$tool.log" | tail -n 5     # both kernels
    done
fi
for c in dfc_forward strong_single dfc_sleep strong2_ss strong2_sleep; do
    timeout 150 python3 benchmarks/bench_dfc.py --path cuda --case $c --batches 20 2>&1 \
        | tee -a "$OUT/bench.log"
done
for c in dfc_forward strong_single; do
    timeout 100 python3 benchmarks/bench_dfc.py --path cuda --case $c --batches 20 \
        --steps-per-launch 500 --dtype float64 2>&1 | tee -a "$OUT/bench.log"
    timeout 100 python3 benchmarks/bench_dfc.py --path cuda --case $c --batches 20 \
        --cluster 8 2>&1 | tee -a "$OUT/bench.log"
done
for S in 1 2 4; do                 # samples a cluster, against the default's choice (3)
    timeout 60 python3 benchmarks/bench_dfc.py --path cuda --case dfc_forward --batches 10 \
        --dtype float64 --cluster 8 --per-cluster $S 2>&1 | tee -a "$OUT/bench.log"
done
timeout 150 python3 benchmarks/bench_dfc.py --path cupy-arrays --case dfc_forward --batches 2 \
    --dtype float64 2>&1 | tee -a "$OUT/bench.log"
