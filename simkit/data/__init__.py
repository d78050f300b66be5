"""Data sets for simkit: loaders, downloads and checks.

All loaders return a :class:`Dataset` of host NumPy arrays (float64 inputs ``[N, D]``; int64
labels or float64 ``[N, d_out]`` targets). File-based sets are read from the data dir
(:func:`resolve_data_dir`: ``--data-dir``, else ``$SIMKIT_DATA``, else ``./data``); every
missing or corrupt file raises a one-line :class:`~simkit.errors.DataError`.

>>> from simkit import data
>>> ds = data.load("mnist")                      # doctest: +SKIP
>>> x_tr, y_tr, x_va, y_va = data.split_validation(ds.x_train, ds.y_train, 5000, seed=42)
"""
from simkit.data.check import check
from simkit.data.cli import register_cli
from simkit.data.dataset import Dataset, split_validation, standardize
from simkit.data.fetch import fetch
from simkit.data.paths import resolve_data_dir
from simkit.data.registry import DATASETS, load

__all__ = ["Dataset", "load", "DATASETS", "resolve_data_dir", "split_validation", "standardize",
           "fetch", "check", "register_cli"]
