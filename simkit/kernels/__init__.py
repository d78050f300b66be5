"""Hot loops written three times: an ``xp`` reference, a Numba twin and a CUDA twin.

Each kernel is a :class:`simkit.backend.Kernel`; get the callable for a run with
``backend.kernel(KERNEL)``. Numba twins loop over flat (1-D) arrays; the backend passes flat
views of the arguments, so callers hand over arrays of any shape.
"""
