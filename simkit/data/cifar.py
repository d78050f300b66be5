"""CIFAR-10, from the binary version (``cifar-10-batches-bin``) or the Python pickles.

Binary records are 1 label byte + 3072 pixel bytes (1024 red, 1024 green, 1024 blue, each 32x32
row-major), so the flattened image is already in C, H, W order. The Python batches are pickles;
they are read with :class:`RestrictedUnpickler`, which admits only the globals a CIFAR batch
needs to rebuild its NumPy array, and refuses anything else (a pickle can run arbitrary code).
"""
from __future__ import annotations

import io
import pickle

import numpy as np

from simkit.data.dataset import Dataset
from simkit.data.paths import (
    MissingDataError,
    locate,
    missing_message,
    one_line,
    read_file,
    resolve_data_dir,
)
from simkit.errors import DataError

RECORD = 1 + 3072
N_CLASSES = 10
TRAIN_BIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_BIN = "test_batch.bin"
TRAIN_PY = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_PY = "test_batch"
BIN_FOLDER, PY_FOLDER = "cifar-10-batches-bin", "cifar-10-batches-py"


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


# (module, name) -> object. The real batches (Python 2 pickles) reference only the first
# three; ``_codecs.encode`` is how Python 3 writes ``bytes`` at pickle protocol 2.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: __import__("codecs").encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds NumPy arrays, dicts, lists, strings, bytes and numbers.

    Any other global (``os.system``, ``builtins.eval``, ...) raises :class:`DataError`.
    """

    def __init__(self, file, path, **kw):
        super().__init__(file, **kw)
        self.path = path

    def find_class(self, module, name):
        maker = _ALLOWED.get((module, name))
        if maker is None:
            raise DataError(f"{self.path}: refused to unpickle: it references {module}.{name}, "
                            "which a CIFAR-10 batch never needs; the file is not a genuine batch")
        return maker()


def unpickle_batch(path, content: bytes):
    """Unpickle one Python CIFAR-10 batch. Returns (uint8 pixels [N, 3072], int64 labels [N])."""
    try:
        obj = RestrictedUnpickler(io.BytesIO(content), path, encoding="bytes").load()
    except DataError:
        raise
    except Exception as exc:  # any malformed pickle: truncated, bad opcode, bad array state
        raise DataError(f"{path}: not a readable CIFAR-10 pickle ({one_line(exc)}); "
                        "download it again") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: holds a {type(obj).__name__}, expected a CIFAR-10 batch dict")
    get = lambda key: obj.get(key.encode(), obj.get(key))  # noqa: E731 (py2 bytes or py3 str keys)
    data, labels = get("data"), get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072 or labels is None:
        shape = getattr(data, "shape", None)
        raise DataError(f"{path}: 'data' is {type(data).__name__} {shape}, expected uint8 "
                        "[N, 3072] with 'labels'; not a CIFAR-10 batch")
    labels = np.asarray(labels)
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise DataError(f"{path}: {labels.shape} labels ({labels.dtype}) for {len(data)} images; "
                        "expected one integer label per image")
    return data, _check_labels(path, labels)


def parse_bin(path, content: bytes):
    """Parse one binary batch. Returns (uint8 pixels [N, 3072], int64 labels [N])."""
    if len(content) == 0 or len(content) % RECORD:
        raise DataError(f"{path}: {len(content)} bytes is not a whole number of {RECORD}-byte "
                        "records (1 label + 3072 pixels); truncated, or not CIFAR-10 binary")
    rec = np.frombuffer(content, np.uint8).reshape(-1, RECORD)
    return rec[:, 1:], _check_labels(path, rec[:, 0])


def _check_labels(path, labels):
    bad = np.flatnonzero((labels < 0) | (labels >= N_CLASSES))
    if bad.size:
        raise DataError(f"{path}: label {int(labels[bad[0]])} of record {int(bad[0])} is out of "
                        f"range 0..{N_CLASSES - 1}; the file is corrupt or not CIFAR-10")
    return labels.astype(np.int64)


def _locate(data_dir):
    """Find the binary batches, else the Python ones. Returns (kind, paths)."""
    for kind, folder, train, test in (("bin", BIN_FOLDER, TRAIN_BIN, TEST_BIN),
                                      ("py", PY_FOLDER, TRAIN_PY, TEST_PY)):
        files = {n: (n,) for n in (*train, test)}
        try:
            return kind, locate("cifar10", data_dir, (folder,), files)
        except MissingDataError:
            continue
    root = resolve_data_dir(data_dir)
    raise MissingDataError(missing_message(
        "cifar10", root, (BIN_FOLDER, PY_FOLDER), ["data_batch_1.bin .. data_batch_5.bin",
                                                   "test_batch.bin"],
        hint=f" (binary version; or data_batch_1 .. data_batch_5, test_batch in {PY_FOLDER})"))


def _read(data_dir):
    kind, paths = _locate(data_dir)
    parse = parse_bin if kind == "bin" else unpickle_batch
    parts = {}
    for part, names in (("train", TRAIN_BIN if kind == "bin" else TRAIN_PY),
                        ("test", (TEST_BIN if kind == "bin" else TEST_PY,))):
        read = [parse(paths[n], read_file(paths[n])[1]) for n in names]
        parts[part] = (np.concatenate([r[0] for r in read]), np.concatenate([r[1] for r in read]))
    return kind, parts, paths[TEST_BIN if kind == "bin" else TEST_PY].parent


def verify(data_dir=None):
    """Validate the CIFAR-10 batches. Returns (folder, {file: status}).

    Only the tarballs have published checksums, so the batches are ``"unverified"`` (their
    record structure and labels are checked).
    """
    kind, _, folder = _read(data_dir)
    names = (*TRAIN_BIN, TEST_BIN) if kind == "bin" else (*TRAIN_PY, TEST_PY)
    return folder, {n: "unverified" for n in names}


def load_cifar10(data_dir=None) -> Dataset:
    """Load CIFAR-10: pixels / 255 as float64, flattened in C, H, W order (3072)."""
    kind, parts, folder = _read(data_dir)
    out = {}
    for part, (pixels, labels) in parts.items():
        x = pixels.astype(np.float64)
        x /= 255.0
        out[f"x_{part}"], out[f"y_{part}"] = x, labels
    meta = {"source": str(folder), "format": "binary" if kind == "bin" else "python pickle",
            "canonical": None, "preprocessing": "pixels / 255 as float64 in [0, 1], "
            "flattened in C, H, W order (3x32x32 = 3072)"}
    return Dataset("cifar10", "classification", n_classes=N_CLASSES, meta=meta, **out)
