"""The :class:`Dataset` container and two small helpers every experiment uses.

A data set is held on the host as NumPy arrays. Moving it to a device (CuPy) is the caller's job.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simkit.errors import DataError, UserError

TASKS = ("classification", "regression")


@dataclass
class Dataset:
    """A train/test pair of arrays plus what is known about them.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"mnist"``.
    task : str
        ``"classification"`` or ``"regression"``.
    x_train, x_test : numpy.ndarray
        float64 inputs of shape ``[N, D]`` (images are flattened).
    y_train, y_test : numpy.ndarray
        Classification: int64 labels of shape ``[N]``. Regression: float64 targets ``[N, d_out]``.
    n_classes : int or None
        Number of classes (classification only).
    meta : dict
        Free-form provenance: source folder, files and whether their checksums are canonical,
        the preprocessing applied, teacher weights of synthetic sets, and so on.
    """

    name: str
    task: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.task not in TASKS:
            raise DataError(f"{self.name}: task {self.task!r} is not one of {', '.join(TASKS)}")
        for part in ("train", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            y_ndim = 1 if self.task == "classification" else 2
            want = "[N] labels" if y_ndim == 1 else "[N, d_out] targets"
            if x.ndim != 2 or len(x) != len(y) or y.ndim != y_ndim:
                raise DataError(f"{self.name}: x_{part} has shape {x.shape} and y_{part} "
                                f"{y.shape}; expected [N, D] inputs and {want}")

    @property
    def n_in(self) -> int:
        """Input dimension D."""
        return int(self.x_train.shape[1])

    @property
    def n_out(self) -> int:
        """Number of classes (classification) or target dimension (regression)."""
        if self.task == "classification":
            return int(self.n_classes)
        return int(self.y_train.shape[1])

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, {self.task}, train {self.x_train.shape}, "
                f"test {self.x_test.shape}, n_out={self.n_out})")


def split_validation(x, y, n_val: int, seed) -> tuple:
    """Split a seeded random validation set off a training set.

    Parameters
    ----------
    x, y : numpy.ndarray
        Inputs ``[N, ...]`` and targets ``[N, ...]``.
    n_val : int
        Size of the validation set, ``0 <= n_val <= N``.
    seed : int or numpy.random.SeedSequence
        Seed of the ``numpy.random.default_rng`` that draws the validation indices.

    Returns
    -------
    x_train, y_train, x_val, y_val : numpy.ndarray
        Both parts keep the original relative order of the samples. With ``n_val == 0`` the
        inputs are returned as they are (no copy) and the validation arrays are empty.
    """
    n, n_val = len(x), int(n_val)
    if len(y) != n:
        raise UserError(f"split_validation: x has {n} samples but y has {len(y)}")
    if not 0 <= n_val <= n:
        raise UserError(f"validation size {n_val} is not in 0..{n} (the training set size)")
    if n_val == 0:
        return x, y, x[:0], y[:0]
    perm = np.random.default_rng(seed).permutation(n)
    val = np.sort(perm[:n_val])
    train = np.sort(perm[n_val:])
    return x[train], y[train], x[val], y[val]


def standardize(x, mean, std):
    """Return ``(x - mean) / std``.

    ``mean`` and ``std`` are scalars or per-feature arrays that broadcast against ``x``. The
    data sets are returned unstandardised (images in [0, 1]); experiments standardise with
    fixed constants, e.g. DFC's MNIST uses ``mean=0.1307, std=0.3081``. Works on NumPy and
    CuPy arrays alike; a new array is returned.
    """
    if not hasattr(std, "__cuda_array_interface__") and np.any(np.asarray(std) <= 0):
        raise UserError(f"standardize: std must be positive, got {std}")
    return (x - mean) / std
