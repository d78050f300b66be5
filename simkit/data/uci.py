"""UCI Wine Quality and SGEMM, prepared exactly as F³'s ``prepare_data.py`` and data set classes.

F³ (Flügel et al. 2023, ``f3/datasets.py``) does, for both sets:

* split the rows with scikit-learn's ``train_test_split(test_size=0.2, random_state=1)``:
  ``n_test = ceil(0.2 n)``, ``p = RandomState(1).permutation(n)``, test rows ``p[:n_test]``,
  train rows ``p[n_test:]``, each in that permuted order (:func:`f3_split` reproduces it
  without scikit-learn);
* standardise features and target with hard-coded constants (means/stds of its training split).

Wine: red (1,599 rows) then white (4,898) concatenated; a ``color`` feature (red 0, white 1) is
appended after the 11 physico-chemical columns (12 features); the target is ``quality``.
SGEMM: the 241,600 configurations are split, then each part is "melted": the four runs
``Run1..Run4 (ms)`` become four rows (all Run1 rows first, then Run2, ...) with the raw runtime
as target (no log). 14 features, 1 target.
"""
from __future__ import annotations

import math

import numpy as np

from simkit.data.dataset import Dataset
from simkit.data.paths import locate, one_line, read_file
from simkit.data.sources import file_status
from simkit.errors import DataError

WINE_COLUMNS = ("fixed acidity", "volatile acidity", "citric acid", "residual sugar", "chlorides",
                "free sulfur dioxide", "total sulfur dioxide", "density", "pH", "sulphates",
                "alcohol", "quality")
WINE_FEATURE_MEAN = np.array([7.218837791033289, 0.3406147777563979, 0.31793534731575906,
                              5.407129112949779, 0.0563923417356167, 30.5420434866269,
                              115.37088705022128, 0.9946949942274388, 3.218785837983452,
                              0.5324995189532423, 10.49694118401642, 0.7494708485664806])
WINE_FEATURE_STD = np.array([1.295744632728374, 0.16478221261798476, 0.1451796332799575,
                             4.7194721844136795, 0.03548156287322057, 17.876643878598543,
                             56.604784167835156, 0.0029904908199930046, 0.16036887247044962,
                             0.150201578211253, 1.1897982752321445, 0.43335947206804276])
WINE_TARGET_MEAN, WINE_TARGET_STD = 5.825476236290167, 0.8781308165686595

SGEMM_COLUMNS = ("MWG", "NWG", "KWG", "MDIMC", "NDIMC", "MDIMA", "NDIMB", "KWI", "VWM", "VWN",
                 "STRM", "STRN", "SA", "SB", "Run1 (ms)", "Run2 (ms)", "Run3 (ms)", "Run4 (ms)")
SGEMM_FEATURE_MEAN = np.array([80.45099338, 80.33145695, 25.52218543, 13.93956954, 13.93000828,
                               17.37127483, 17.38451987, 4.9973303, 2.45177463, 2.45005174,
                               0.49980339, 0.50042943, 0.49984478, 0.50050186])
SGEMM_FEATURE_STD = np.array([42.47476047, 42.45861397, 7.85386979, 7.88287486, 7.86731171,
                              9.3888511, 9.39787133, 3.00000657, 1.95446444, 1.9563342,
                              0.50000125, 0.50000111, 0.50000127, 0.50000104])
SGEMM_TARGET_MEAN, SGEMM_TARGET_STD = 217.8314705220405, 369.30339822069976

WINE_FOLDERS = ("wine-quality", "wine_quality")
SGEMM_FOLDERS = ("sgemm", "sgemm_product_dataset")


def f3_split(n: int, test_size: float = 0.2, seed: int = 1):
    """Row indices of scikit-learn's ``train_test_split(test_size, random_state=seed)``.

    Returns
    -------
    train, test : numpy.ndarray
        Index arrays, in the order scikit-learn returns the rows.
    """
    n_test = math.ceil(test_size * n)
    perm = np.random.RandomState(seed).permutation(n)
    return perm[n_test:], perm[:n_test]


def read_csv(path, content: bytes, columns, sep: str) -> np.ndarray:
    """Parse a numeric CSV with a header row that must name exactly ``columns``.

    Returns a float64 array ``[rows, len(columns)]``; every entry must be a finite number.
    """
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({one_line(exc)}); not the UCI CSV file") from None
    lines = text.splitlines()
    header = tuple(h.strip().strip('"') for h in lines[0].split(sep)) if lines else ()
    if header != tuple(columns):
        shown = ", ".join(header[:4]) + (", ..." if len(header) > 4 else "")
        raise DataError(f"{path}: header has {len(header)} columns ({shown}); expected the "
                        f"{len(columns)} UCI columns {columns[0]!r} .. {columns[-1]!r} separated "
                        f"by {sep!r}")
    try:
        data = np.loadtxt(lines[1:], delimiter=sep, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise DataError(f"{path}: {one_line(exc)} (rows count from the first data row, from 0); "
                        "expected only numbers") from None
    if data.shape[0] == 0 or data.shape[1] != len(columns):
        raise DataError(f"{path}: {data.shape[0]} data rows of {data.shape[1]} fields; expected "
                        f"rows of {len(columns)} numbers")
    bad = np.argwhere(~np.isfinite(data))
    if bad.size:
        raise DataError(f"{path}: non-finite value in data row {bad[0][0]}, column "
                        f"{columns[bad[0][1]]!r}; expected only finite numbers")
    return data


def _read_wine(data_dir):
    files = {c: (f"winequality-{c}.csv", f"winequality-{c}.csv.gz") for c in ("red", "white")}
    paths = locate("wine_quality", data_dir, WINE_FOLDERS, files, hint=" (or .csv.gz)")
    tables, status = [], {}
    for path in paths.values():
        raw, content = read_file(path)
        data = read_csv(path, content, WINE_COLUMNS, ";")
        q = data[:, -1]
        if np.any((q != np.round(q)) | (q < 0) | (q > 10)):
            raise DataError(f"{path}: quality must be an integer score 0..10; the file is corrupt")
        tables.append(data)
        status[path.name] = file_status("wine_quality", path, raw, content)
    return tables, status, paths["red"].parent


def _read_sgemm(data_dir):
    files = {"csv": ("sgemm_product.csv", "sgemm_product.csv.gz")}
    path = locate("sgemm", data_dir, SGEMM_FOLDERS, files, hint=" (or .csv.gz)")["csv"]
    raw, content = read_file(path)
    data = read_csv(path, content, SGEMM_COLUMNS, ",")
    return data, {path.name: file_status("sgemm", path, raw, content)}, path.parent


def verify_wine(data_dir=None):
    """Validate the wine CSVs. Returns (folder, {file: status})."""
    _, status, folder = _read_wine(data_dir)
    return folder, status


def verify_sgemm(data_dir=None):
    """Validate the SGEMM CSV. Returns (folder, {file: status})."""
    _, status, folder = _read_sgemm(data_dir)
    return folder, status


def load_wine_quality(data_dir=None, normalize: bool = True) -> Dataset:
    """F³'s ``wine_quality_regression``: 12 features (``color`` last), target ``quality`` [N, 1].

    ``normalize=False`` skips F³'s standardisation (raw features and quality scores).
    """
    (red, white), status, folder = _read_wine(data_dir)
    data = np.concatenate([red, white])
    color = np.concatenate([np.zeros(len(red)), np.ones(len(white))])
    x = np.column_stack([data[:, :11], color])
    y = data[:, 11:12].copy()
    if normalize:
        x = (x - WINE_FEATURE_MEAN) / WINE_FEATURE_STD
        y = (y - WINE_TARGET_MEAN) / WINE_TARGET_STD
    train, test = f3_split(len(data))
    meta = {"source": str(folder), "files": status, "rows": {"red": len(red), "white": len(white)},
            "canonical": all(s.startswith("canonical") for s in status.values()),
            "features": list(WINE_COLUMNS[:11]) + ["color (red 0, white 1)"],
            "split": "F3: train_test_split(test_size=0.2, random_state=1) on red+white rows",
            "preprocessing": ("F3 constants: x=(x-mean)/std, quality=(q-5.8255)/0.8781" if normalize
                              else "none (raw values)"),
            "target_mean": WINE_TARGET_MEAN if normalize else 0.0,
            "target_std": WINE_TARGET_STD if normalize else 1.0}
    return Dataset("wine_quality", "regression", x[train], y[train], x[test], y[test],
                   meta=meta)


def _melt(rows: np.ndarray):
    """Four runs per configuration -> four rows: all Run1 rows, then Run2, Run3, Run4."""
    x = np.tile(rows[:, :14], (4, 1))
    y = rows[:, 14:18].T.reshape(-1, 1).copy()
    return x, y


def load_sgemm(data_dir=None, normalize: bool = True) -> Dataset:
    """F³'s ``sgemm``: split by configuration, melt the four runs, standardise (14 -> 1)."""
    data, status, folder = _read_sgemm(data_dir)
    if normalize:  # elementwise, so standardising before the melt gives the same numbers
        data[:, :14] -= SGEMM_FEATURE_MEAN
        data[:, :14] /= SGEMM_FEATURE_STD
        data[:, 14:] -= SGEMM_TARGET_MEAN
        data[:, 14:] /= SGEMM_TARGET_STD
    train, test = f3_split(len(data))
    parts = {part: _melt(data[idx]) for part, idx in (("train", train), ("test", test))}
    meta = {"source": str(folder), "files": status, "configurations": len(data),
            "canonical": all(s.startswith("canonical") for s in status.values()),
            "split": "F3: train_test_split(test_size=0.2, random_state=1) on configurations, "
                     "then 4 rows per configuration (Run1..Run4)",
            "preprocessing": ("F3 constants: x=(x-mean)/std, runtime ms=(t-217.83)/369.30, no log"
                              if normalize else "none (raw values)"),
            "target_mean": SGEMM_TARGET_MEAN if normalize else 0.0,
            "target_std": SGEMM_TARGET_STD if normalize else 1.0}
    return Dataset("sgemm", "regression", *parts["train"], *parts["test"], meta=meta)
