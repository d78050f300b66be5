"""CUDA kernel sources run on the CPU through tests/cuda_emu/emu.hpp (g++, C++20 threads)."""
from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent / "cuda_emu"
_LIBS = {}


def have_compiler() -> bool:
    return shutil.which("g++") is not None


def build(source: str, driver: str) -> ctypes.CDLL:
    """Compile a kernel ``source`` (with its ``real`` typedef) and a driver from cuda_emu/."""
    text = '#include "emu.hpp"\n' + source + "\n" + (HERE / driver).read_text()
    tag = hashlib.sha1(text.encode()).hexdigest()[:16]
    if tag not in _LIBS:
        d = Path(tempfile.mkdtemp(prefix="simkit_emu_"))
        (d / "k.cpp").write_text(text)
        out = subprocess.run(["g++", "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread",
                              "-I", str(HERE), str(d / "k.cpp"), "-o", str(d / "k.so")],
                             capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"g++ could not build {d / 'k.cpp'}:\n{out.stderr[-4000:]}")
        _LIBS[tag] = ctypes.CDLL(str(d / "k.so"))
    return _LIBS[tag]


def _arg(a):
    """A ctypes holder of one kernel argument (arrays by their data pointer)."""
    if isinstance(a, np.ndarray):
        assert a.flags.c_contiguous
        return ctypes.c_void_p(a.ctypes.data)
    return {np.int32: ctypes.c_int32, np.int64: ctypes.c_int64, np.uint64: ctypes.c_uint64,
            np.float64: ctypes.c_double}[type(a)](a)


def launcher(lib: ctypes.CDLL, entry: str):
    """``launch(grid, block, args, shared_mem)``, the call CuPy's RawKernel takes."""
    fn = getattr(lib, entry)
    fn.argtypes = [ctypes.c_longlong, ctypes.c_longlong, ctypes.c_longlong,
                   ctypes.POINTER(ctypes.c_void_p)]

    def launch(grid, block, args, shared_mem):
        held = [_arg(a) for a in args]
        ptrs = (ctypes.c_void_p * len(held))(*[ctypes.cast(ctypes.pointer(h), ctypes.c_void_p)
                                               for h in held])
        fn(grid[0], block[0], shared_mem, ptrs)
    return launch
